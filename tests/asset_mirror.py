"""A local mirror of pagbench's remote assets for tests (written for pagbench): an HTTP server on
127.0.0.1 with scripted faults, and files generated in the real formats.

* :class:`Mirror` — a ``ThreadingHTTPServer`` in a thread serving ``files`` (URL path → bytes),
  honouring ``Range: bytes=N-`` (206 with ``Content-Range``). ``faults[path]`` is a list of faults
  consumed one per request: ``404``, ``500``, ``html`` (an HTML page with Content-Type
  text/html), ``html-body`` (an HTML page labelled application/octet-stream), ``drop`` (the
  headers announce the whole file, half the body is sent, then the connection is closed) and
  ``stall`` (a first block, then the handler waits for :attr:`Mirror.release`) and ``ignore-range``
  (the whole file with 200, as servers without Range support answer). Every request is
  logged as (path, Range header or None).
* :func:`cifar_archive` — ``cifar-10-python.tar.gz`` holding python-pickled batches (a few random
  images each) under ``cifar-10-batches-py/``, as the real archive.
* :func:`alexnet_state_dict_bytes` — torchvision AlexNet's state dict (its exact keys and shapes,
  random weights) saved with ``torch.save``.
* :func:`table` — the JSON body of ``PAGBENCH_TEST_ASSET_TABLE`` for files on the mirror.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

CIFAR_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):  # noqa: N802 - http.server's name
        mirror = self.server.mirror
        path = self.path.split("?")[0]
        header = self.headers.get("Range")
        with mirror.lock:
            mirror.log.append((path, header))
            queue = mirror.faults.get(path) or []
            fault = queue.pop(0) if queue else None
        body = mirror.files.get(path)
        if fault == "404" or body is None:
            return self._send(404, b"not found", "text/plain")
        if fault == "500":
            return self._send(500, b"internal error", "text/plain")
        if fault == "html":
            return self._send(200, b"<!DOCTYPE html><html><body>Sign in to continue</body></html>", "text/html; charset=utf-8")
        if fault == "html-body":
            return self._send(200, b"<html><head><title>Error</title></head><body>quota exceeded</body></html>",
                              "application/octet-stream")
        start = 0
        if fault == "ignore-range":
            header = None
        if header and header.startswith("bytes=") and header.endswith("-"):
            start = int(header[len("bytes="):-1])
            if start >= len(body):
                return self._send(416, b"", "text/plain")
        self.send_response(206 if start else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body) - start))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.end_headers()
        remaining = body[start:]
        try:
            if fault == "drop":
                self.wfile.write(remaining[: len(remaining) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            if fault == "stall":
                self.wfile.write(remaining[: 1 << 16])
                self.wfile.flush()
                mirror.stalled.set()
                mirror.release.wait(60)
                self.close_connection = True
                return
            self.wfile.write(remaining)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _send(self, code, body, content_type):
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Mirror:
    """The server; :meth:`stop` shuts it down (bounded). ``url(path)`` is the file's URL."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.faults: dict[str, list[str]] = {}
        self.log: list[tuple[str, str | None]] = []
        self.lock = threading.Lock()
        self.stalled, self.release = threading.Event(), threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.mirror = self
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def requests(self, path: str) -> list:
        return [header for logged, header in self.log if logged == path]

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def table(mirror: Mirror, entries: dict) -> str:
    """``{asset name: url path}`` → the JSON override table (URL, SHA-256 and size of each file)."""
    return json.dumps({name: {"url": mirror.url(path), "sha256": hashlib.sha256(mirror.files[path]).hexdigest(),
                              "size": len(mirror.files[path])} for name, path in entries.items()})


def cifar_archive(count: int = 4, seed: int = 0) -> bytes:
    """``cifar-10-python.tar.gz`` with ``count`` random images per batch (the real layout)."""
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name in CIFAR_FILES + ["batches.meta"]:
            if name == "batches.meta":
                entry = {b"label_names": [b"airplane"] * 10, b"num_cases_per_batch": count}
            else:
                entry = {b"batch_label": name.encode(), b"labels": rng.integers(0, 10, count).tolist(),
                         b"data": rng.integers(0, 256, (count, 3072), dtype=np.uint8), b"filenames": [b"x.png"] * count}
            data = pickle.dumps(entry, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def alexnet_state_dict_bytes(seed: int = 0) -> bytes:
    """torchvision's AlexNet state dict (its keys and shapes) with random weights, ``torch.save``d."""
    import torch
    import torchvision

    torch.manual_seed(seed)
    buffer = io.BytesIO()
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), buffer)
    return buffer.getvalue()
