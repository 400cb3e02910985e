"""Assets: the files a run needs (dataset archives, network pickles, backbone weights), declared by
plugins and fetched by one downloader.

A plugin declares each file it needs as an :class:`AssetEntry` through the ``register_assets``
hook; the core never names one. Every asset lies at ``<asset root>/<folder>/<filename>``
(:func:`local_path`); the asset root is ``$PAGBENCH_ASSETS_DIR``, else ``<cache dir>/assets``
(:func:`asset_root`), so an air-gapped cluster copies files there by hand
(``pagbench assets manifest``).

**Hashes.** An asset's published SHA-256 (full, or a prefix of at least 8 hex digits as
torch.hub's ``hash_prefix``) or MD5 is checked after every download and by ``verify``. An asset
without a published hash is *pinned on first download*: the SHA-256 of its first complete
download is recorded in ``<cache dir>/asset-pins.json`` and shown, and every later download or
verification must match it.

**Downloads** (:func:`download`) stream to ``<target>.part`` (never the target path), resume a
``.part`` with an HTTP Range request, retry 5xx answers and dropped connections with exponential
backoff (``retry_delay`` seconds, doubled per attempt; ``$PAGBENCH_DOWNLOAD_RETRY_DELAY``),
check Content-Length and the declared size, refuse HTML pages where a binary file is expected,
check the hash, and only then move the file into place atomically. Ctrl-C or SIGTERM leave only
the resumable ``.part``. urllib only (no new dependency).

**Test-only table override.** ``$PAGBENCH_TEST_ASSET_TABLE`` names a JSON object
``{name: {"url", "sha256", "md5", "size"}}`` replacing those fields of registered assets (for
rehearsals against a server on 127.0.0.1). It is announced on stderr, recorded where results
record assets, and it cannot weaken a real user's pins: overridden assets live under
``<asset root>/test-override/`` and pin into ``<cache dir>/asset-pins.test-override.json``, so a
file fetched under the override is never found at, or pinned for, the real path.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from pagbench.errors import MetricUnavailable, PagbenchError

OVERRIDE_ENV = "PAGBENCH_TEST_ASSET_TABLE"
OVERRIDE_FOLDER = "test-override"
CHUNK = 1 << 16
_SHOWN = {"sha256": "SHA-256", "md5": "MD5"}
_HTML_HEADS = (b"<!doctype", b"<html", b"<?xml", b"<head", b"<body")


@dataclass(frozen=True)
class AssetEntry:
    """One file a run may need.

    ``url``: where it is downloaded from (None: manual only; ``manual`` then says how to get it).
    ``filename``: its name on disk; ``folder``: the folder under the asset root (default ``name``;
    assets that must lie together share one). ``size``: bytes (``size_exact``: the published size,
    checked; otherwise approximate, shown only). ``sha256`` (full or a ≥ 8-digit prefix) / ``md5``:
    the published hash, when one exists (else the first download is pinned). ``datasets`` /
    ``metrics`` / ``providers``: who needs it (``pagbench assets list --dataset D --metric M``);
    a provider may look up the asset declared for its name and a dataset (:func:`for_provider`).
    """

    name: str
    filename: str
    url: str | None = None
    size: int | None = None
    size_exact: bool = False
    sha256: str | None = None
    md5: str | None = None
    licence: str = ""
    description: str = ""
    datasets: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()
    providers: tuple[str, ...] = ()
    folder: str | None = None
    manual: str = ""

    def __post_init__(self):
        for text, what in ((self.name, "name"), (self.filename, "filename"), (self.folder or "x", "folder")):
            if not text or "/" in text or "\\" in text or text in (".", "..") or text.startswith("."):
                raise ValueError(f"asset {self.name!r}: {what} {text!r} must be a plain file name")

    @property
    def published_hash(self) -> tuple[str, str] | None:
        """(algorithm, hex) of the published hash, or None."""
        if self.sha256:
            return "sha256", self.sha256.lower()
        if self.md5:
            return "md5", self.md5.lower()
        return None


class AssetUnavailable(MetricUnavailable):
    """An asset is missing and cannot be downloaded here (offline or manual-only)."""


# ------------------------------------------------------------------------------ where things are
def asset_root() -> Path:
    """``$PAGBENCH_ASSETS_DIR``, else ``<cache dir>/assets``."""
    explicit = os.environ.get("PAGBENCH_ASSETS_DIR")
    if explicit:
        return Path(explicit)
    from pagbench.files.paths import cache_dir

    return cache_dir() / "assets"


def override_table_path() -> str | None:
    return os.environ.get(OVERRIDE_ENV) or None


_ANNOUNCED: set[str] = set()


def _override_table() -> dict:
    """The test-only table (validated), announced once per process on stderr; {} when unset."""
    location = override_table_path()
    if not location:
        return {}
    try:
        table = json.loads(Path(location).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise PagbenchError(f"{OVERRIDE_ENV}={location}: not a readable JSON table ({error})") from None
    if not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values()):
        raise PagbenchError(f"{OVERRIDE_ENV}={location}: expected a JSON object of name -> {{url, sha256, md5, size}}")
    for name, fields in table.items():
        unknown = set(fields) - {"url", "sha256", "md5", "size"}
        if unknown:
            raise PagbenchError(f"{OVERRIDE_ENV}: asset {name!r} sets {', '.join(sorted(unknown))}; only url, sha256, md5, size")
    if location not in _ANNOUNCED:
        _ANNOUNCED.add(location)
        print(f"WARNING: TEST-ONLY asset table {location} ({OVERRIDE_ENV}) overrides the URLs and hashes of "
              f"{', '.join(sorted(table))}; these files are kept under {asset_root() / OVERRIDE_FOLDER}, never used "
              f"for real runs", file=sys.stderr)
    return table


def overridden(entry: AssetEntry) -> bool:
    """Whether ``entry`` comes from the test-only table."""
    return entry.name in _override_table()


def _apply_override(entry: AssetEntry, table: dict) -> AssetEntry:
    fields = table.get(entry.name)
    if not fields:
        return entry
    changes = {key: fields[key] for key in ("url", "sha256", "md5") if key in fields}
    if "sha256" in fields and "md5" not in fields:
        changes["md5"] = None
    if "md5" in fields and "sha256" not in fields:
        changes["sha256"] = None
    size = fields.get("size")  # another file: the real size does not apply unless the table gives one
    changes.update(size=int(size) if size is not None else None, size_exact=size is not None)
    return replace(entry, **changes)


def registered() -> dict[str, AssetEntry]:
    """name → entry over every plugin's ``register_assets``, with the test-only table applied."""
    from pagbench.extensions import registry

    table = _override_table()
    return {entry.name: _apply_override(entry, table) for entry in registry.assets()}


def get(name: str) -> AssetEntry:
    """The registered asset ``name`` (unknown: a one-line error with the closest names)."""
    from pagbench.extensions import registry

    registry.assets().get(name)  # unknown name: the registry's error
    return registered()[name]


def select(dataset: str | None = None, metrics=(), names=()) -> list[AssetEntry]:
    """The assets named, else those a run on ``dataset`` with ``metrics`` needs: an asset that
    declares datasets is kept only for those, one that declares metrics only for those (an empty
    declaration matches everything; no dataset and no metric: every asset)."""
    if names:
        return [get(name) for name in names]
    chosen = []
    for entry in registered().values():
        if entry.datasets and dataset is not None and dataset not in entry.datasets:
            continue
        if entry.metrics and metrics and not set(metrics) & set(entry.metrics):
            continue
        chosen.append(entry)
    return chosen


def for_provider(provider: str, dataset: str) -> AssetEntry | None:
    """The one asset declared for ``provider`` on ``dataset``, or None."""
    matches = [entry for entry in registered().values() if provider in entry.providers and dataset in entry.datasets]
    return matches[0] if len(matches) == 1 else None


def local_path(entry: AssetEntry, root: str | os.PathLike | None = None) -> Path:
    """``<root>/<folder>/<filename>`` (``<root>/test-override/...`` for overridden assets)."""
    base = Path(root) if root is not None else asset_root()
    if overridden(entry):
        base = base / OVERRIDE_FOLDER
    return base / (entry.folder or entry.name) / entry.filename


def part_path(target: Path) -> Path:
    return target.with_name(target.name + ".part")


def fetch_command(*names: str) -> str:
    """The command that fetches ``names``: what every "missing" message names."""
    return "pagbench assets fetch " + " ".join(names)


# ------------------------------------------------------------------------------------ pins
def _pins_file() -> Path:
    from pagbench.files.paths import cache_dir

    suffix = ".test-override" if override_table_path() else ""
    return cache_dir() / f"asset-pins{suffix}.json"


def pins() -> dict:
    """name → recorded SHA-256 of its first download (assets without a published hash)."""
    try:
        data = json.loads(_pins_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {key: value for key, value in data.items() if isinstance(value, str)} if isinstance(data, dict) else {}


def _record_pin(entry: AssetEntry, digest: str) -> None:
    from pagbench.files.paths import write_json_atomic

    data = pins()
    data[entry.name] = digest
    write_json_atomic(_pins_file(), data)
    print(f"pinned {entry.name}: SHA-256 {digest} (first download; later copies must match; recorded in {_pins_file()})",
          file=sys.stderr)


def expected_hash(entry: AssetEntry) -> tuple[str, str, str] | None:
    """(algorithm, hex, "published" | "pinned") the file must match, or None (no hash yet)."""
    published = entry.published_hash
    if published:
        return (*published, "published")
    pin = pins().get(entry.name)
    return ("sha256", pin, "pinned") if pin else None


def _digest(path: Path, algorithm: str) -> str:
    from pagbench.files.pinned import file_digest

    return file_digest(path, algorithm)


def _check_file(entry: AssetEntry, path: Path, *, pin_if_new: bool) -> str:
    """The file's SHA-256 after its size and hash checks; a mismatch is a one-line PagbenchError."""
    size = path.stat().st_size
    if entry.size_exact and entry.size is not None and size != entry.size:
        raise PagbenchError(f"asset {entry.name}: {path} has {size:,} bytes, expected {entry.size:,} (damaged or a different file)")
    expected = expected_hash(entry)
    if expected:
        algorithm, value, how = expected
        digest = _digest(path, algorithm)
        if not digest.startswith(value):
            raise PagbenchError(f"asset {entry.name}: {path} has {_SHOWN[algorithm]} {digest[:16]}…, not the {how} {value[:16]}…: "
                                f"refusing to use it (damaged or a different file); delete it and run `{fetch_command(entry.name)}`")
    sha = _digest(path, "sha256")
    if expected is None and pin_if_new:
        _record_pin(entry, sha)
    return sha


def status(entry: AssetEntry, root=None) -> str:
    """``present``, ``missing``, ``partial`` (only a ``.part``) or ``damaged`` (size or hash differs)."""
    path = local_path(entry, root)
    if not path.is_file():
        return "partial" if part_path(path).is_file() else "missing"
    try:
        _check_file(entry, path, pin_if_new=False)
    except PagbenchError:
        return "damaged"
    return "present"


def verify(entry: AssetEntry, root=None) -> str:
    """Re-hash the file (pinning it if it has no hash yet); its SHA-256, or a one-line error."""
    from pagbench.files.pinned import forget

    path = local_path(entry, root)
    if not path.is_file():
        raise PagbenchError(f"asset {entry.name}: {path} is missing; run `{fetch_command(entry.name)}`")
    forget(path)
    return _check_file(entry, path, pin_if_new=True)


# ------------------------------------------------------------------------------ the downloader
class DownloadFailed(PagbenchError):
    """The file could not be fetched (unreachable host, HTTP error, retries used up): nothing of it
    is kept but a resumable ``.part``. Integrity failures (hash, size, HTML page) are
    plain :class:`PagbenchError` instead."""


class _Retry(Exception):
    """A transient failure (5xx, dropped connection, short body): try again, resuming."""


def _retry_delay(value: float | None) -> float:
    if value is not None:
        return float(value)
    try:
        return float(os.environ.get("PAGBENCH_DOWNLOAD_RETRY_DELAY", "1"))
    except ValueError:
        return 1.0


def _looks_like_html(head: bytes) -> bool:
    text = head[:512].lstrip().lower()
    return text.startswith(_HTML_HEADS) or b"<html" in text


def _progress(enabled: bool, description: str, total: int | None):
    import contextlib

    if not enabled:
        return contextlib.nullcontext(lambda completed: None)

    @contextlib.contextmanager
    def bar():
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                      TimeRemainingColumn(), console=Console(stderr=True), transient=False) as progress:
            task = progress.add_task(description, total=total)
            yield lambda completed: progress.update(task, completed=completed)

    return bar()


def _open_response(url: str, part: Path, have: int, *, timeout: float, expected_size: int | None, ranges: list):
    """The response to GET ``url`` (with ``Range: bytes=have-`` when ``have``), or None when the
    server says the ``.part`` of ``have`` bytes is already complete. Raises :class:`_Retry` for
    transient failures, :class:`DownloadFailed` for final ones."""
    import http.client
    import socket
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, headers={"User-Agent": "pagbench", "Accept-Encoding": "identity"})
    if have:
        request.add_header("Range", f"bytes={have}-")
        ranges.append(have)
    try:
        return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 — http(s) checked by the caller
    except urllib.error.HTTPError as error:
        if error.code == 416 and have and expected_size is not None and have >= expected_size:
            return None  # the .part is already complete
        if error.code == 416:
            part.unlink(missing_ok=True)  # the .part does not fit the file: start afresh
            raise _Retry("HTTP 416 for a resumed download; starting over") from None
        if 500 <= error.code < 600 or error.code in (408, 429):
            raise _Retry(f"HTTP {error.code} {error.reason}") from None
        raise DownloadFailed(f"download of {url} failed: HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", error)
        if isinstance(reason, socket.gaierror) or (isinstance(error, urllib.error.URLError)
                                                   and not isinstance(reason, (OSError, socket.timeout))):
            raise DownloadFailed(f"download of {url} failed: {reason}") from None  # no name resolution: no network
        raise _Retry(f"{type(error).__name__}: {reason}") from None


def _transfer(url: str, part: Path, *, timeout: float, progress: bool, label: str, expected_size: int | None,
              binary: bool, ranges: list) -> None:
    """One attempt: GET ``url`` (with ``Range`` when ``part`` holds bytes) appending to ``part``.
    Raises :class:`_Retry` for transient failures, :class:`PagbenchError` for final ones."""
    import http.client

    have = part.stat().st_size if part.is_file() else 0
    response = _open_response(url, part, have, timeout=timeout, expected_size=expected_size, ranges=ranges)
    if response is None:
        return
    with response:
        content_type = (response.headers.get("Content-Type") or "").lower()
        if binary and content_type.startswith("text/html"):
            raise PagbenchError(f"download of {url} failed: the server sent an HTML page (Content-Type {content_type}), "
                                f"not the file (a login or error page?)")
        status_code = getattr(response, "status", 200)
        if status_code == 206:
            content_range = response.headers.get("Content-Range") or ""
            if not content_range.startswith(f"bytes {have}-"):
                part.unlink(missing_ok=True)
                raise _Retry(f"the server resumed at the wrong place ({content_range!r})")
            mode, offset = "ab", have
        else:
            mode, offset = "wb", 0  # the server ignored Range: start from the beginning
        length = response.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        total = offset + length if length is not None else expected_size
        if expected_size is not None and total is not None and total != expected_size:
            raise PagbenchError(f"download of {url} failed: the server announces {total:,} bytes, expected {expected_size:,}")
        received = offset
        first = offset == 0
        try:
            stream = open(part, mode)
        except OSError as error:
            raise PagbenchError(f"cannot write {part}: {error.strerror or error}") from None
        with _progress(progress, label, total) as advance, stream:
            advance(received)
            while True:
                try:
                    block = response.read(CHUNK)
                except (http.client.HTTPException, OSError) as error:  # IncompleteRead, resets, timeouts
                    raise _Retry(f"connection dropped after {received:,} bytes ({type(error).__name__})") from None
                if not block:
                    break
                if first:
                    first = False
                    if binary and _looks_like_html(block):
                        stream.close()
                        part.unlink(missing_ok=True)
                        raise PagbenchError(f"download of {url} failed: the server sent an HTML page, not the file "
                                            f"(a login or error page?)")
                try:
                    stream.write(block)
                except OSError as error:
                    raise PagbenchError(f"cannot write {part}: {error.strerror or error}") from None
                received += len(block)
                advance(received)
        if total is not None and received < total:
            raise _Retry(f"connection closed after {received:,} of {total:,} bytes")
        if total is not None and received > total:
            part.unlink(missing_ok=True)
            raise PagbenchError(f"download of {url} failed: received {received:,} bytes, more than the {total:,} announced")


def download(entry: AssetEntry, root=None, *, progress: bool | None = None, retries: int = 4, retry_delay: float | None = None,
             timeout: float = 60.0, ranges: list | None = None) -> Path:
    """Download ``entry`` to :func:`local_path` (see the module docstring) and return that path.

    ``retries``: extra attempts after a transient failure, waiting ``retry_delay``·2^attempt
    seconds; ``ranges``, when given, collects the byte offsets of every Range request (for tests).
    ``progress`` None: a progress bar when stderr is a terminal. Nothing is ever written at the
    target path but the complete, checked file."""
    if progress is None:
        progress = sys.stderr.isatty()
    if not entry.url:
        raise AssetUnavailable(f"asset {entry.name} cannot be downloaded: {entry.manual or 'no URL'}; put {entry.filename} at "
                               f"{local_path(entry, root)}")
    if not entry.url.startswith(("http://", "https://")):
        raise PagbenchError(f"asset {entry.name}: only http(s) URLs are downloaded, got {entry.url!r}")
    target = local_path(entry, root)
    part = part_path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PagbenchError(f"cannot create {target.parent}: {error.strerror or error}") from None
    delay = _retry_delay(retry_delay)
    ranges = ranges if ranges is not None else []
    expected_size = entry.size if entry.size_exact else None
    binary = not entry.filename.lower().endswith((".html", ".htm"))
    for attempt in range(retries + 1):
        try:
            _transfer(entry.url, part, timeout=timeout, progress=progress, label=entry.name, expected_size=expected_size,
                      binary=binary, ranges=ranges)
            break
        except _Retry as error:
            if attempt == retries:
                raise DownloadFailed(f"download of {entry.url} failed after {retries + 1} attempts ({error}); "
                                    f"rerun `{fetch_command(entry.name)}` to resume {part}") from None
            print(f"{entry.name}: {error}; retrying in {delay * 2 ** attempt:g} s", file=sys.stderr)
            time.sleep(delay * 2 ** attempt)
    from pagbench.files.pinned import forget

    forget(part)
    try:
        sha = _check_file(entry, part, pin_if_new=False)
    except PagbenchError as error:
        part.unlink(missing_ok=True)  # a complete download that is not the file: never kept, never resumed
        raise PagbenchError(str(error).replace(str(part), f"the download of {entry.url}")) from None
    try:
        os.replace(part, target)
    except OSError as error:
        raise PagbenchError(f"cannot move {part} to {target}: {error.strerror or error}") from None
    forget(target)
    if expected_hash(entry) is None:
        _record_pin(entry, sha)
    return target


def resolve(entry: AssetEntry, root=None, *, progress: bool | None = None, who: str = "", command: str | None = None) -> Path:
    """The checked local file of ``entry``: present → checked and returned; missing and online →
    downloaded; missing offline (``PAGBENCH_OFFLINE``), unreachable (:class:`DownloadFailed`) or
    manual-only → :class:`AssetUnavailable` naming the fetch command (``command``, default ``pagbench assets fetch NAME``). A damaged file
    is a one-line :class:`PagbenchError` naming it."""
    from pagbench.files.paths import offline

    path = local_path(entry, root)
    if path.is_file():
        _check_file(entry, path, pin_if_new=True)
        return path
    prefix = f"{who}: " if who else ""
    if not entry.url:
        raise AssetUnavailable(f"{prefix}{entry.filename} not found at {path}; {entry.manual or 'it cannot be downloaded'} "
                               f"(`pagbench assets manifest` lists what to put where)")
    if offline():
        raise AssetUnavailable(f"{prefix}{entry.filename} not found at {path} and PAGBENCH_OFFLINE is set; run "
                               f"`{command or fetch_command(entry.name)}` where the network is reachable (or copy it there: "
                               f"`pagbench assets manifest`)")
    try:
        return download(entry, root, progress=progress)
    except DownloadFailed as error:  # unreachable: as good as offline for whoever needs the file
        raise AssetUnavailable(f"{prefix}{entry.filename} not found at {path} and {error}; run "
                               f"`{command or fetch_command(entry.name)}` where the network is reachable (or copy it there: "
                               f"`pagbench assets manifest`)") from None


def describe(entry: AssetEntry, root=None) -> dict:
    """What a result records about an asset it used: name, URL, local path, SHA-256, override."""
    path = local_path(entry, root)
    record = {"asset": entry.name, "url": entry.url, "path": str(path)}
    if path.is_file():
        record["sha256"] = _digest(path, "sha256")
    if overridden(entry):
        record["asset_table"] = f"TEST-ONLY override {override_table_path()}"
    return record


__all__ = ["AssetEntry", "AssetUnavailable", "DownloadFailed", "asset_root", "describe", "download", "expected_hash", "fetch_command", "for_provider",
           "get", "local_path", "part_path", "pins", "registered", "resolve", "select", "status", "verify"]
