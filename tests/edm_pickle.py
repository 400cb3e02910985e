"""Writes tiny network pickles in the NVlabs EDM layout (test helper, written for pagbench).

The pickle is ``{'ema': net, ...}`` where ``net``'s class is defined by source code stored in
the file: the object reduces to ``torch_utils.persistence._reconstruct_persistent_obj(meta)``
with ``meta = {type, version, module_src, class_name, state}``. The writer installs throwaway
``torch_utils`` / ``dnnlib`` modules only while pickling and removes them afterwards, so the
reader under test cannot lean on them.

The network is the exact denoiser of Gaussian data N(μ_y, s²I) in [−1,1] units:
D(x; σ, y) = (s²x + σ²μ_y)/(s² + σ²). In [0,1] units the data are N(m, (s/2)²I) with
m = (μ+1)/2, so the exact score there is −(x − m)/((s/2)² + σ²).

With ``training_loss=True`` the file also holds a ``'loss_fn'`` object whose module imports a
``torch_utils`` part that only training code has (as EDM2 snapshots do: their loss object's
module imports ``torch_utils.training_stats``, ``torch_utils.distributed`` and psutil).
"""

import pickle
import sys
import types

SOURCE = '''
import numpy as np
import torch
from torch_utils import persistence


@persistence.persistent_class
class GaussianPrecond(torch.nn.Module):
    def __init__(self, img_resolution, img_channels, label_dim=0, spread=0.3):
        super().__init__()
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.label_dim = label_dim
        self.sigma_data = 0.5
        self.spread = float(spread)
        generator = torch.Generator().manual_seed(0)
        shape = [max(label_dim, 1), img_channels, img_resolution, img_resolution]
        self.means = torch.nn.Parameter(0.4 * torch.randn(shape, generator=generator))
        self.mix = torch.nn.Conv2d(img_channels, img_channels, 1)
        with torch.no_grad():
            self.mix.weight.copy_(torch.eye(img_channels).view(img_channels, img_channels, 1, 1))
            self.mix.bias.zero_()

    def forward(self, x, sigma, class_labels=None, force_fp32=False, **model_kwargs):
        sigma = sigma.to(torch.float32).reshape(-1, 1, 1, 1)
        if self.label_dim:
            mean = torch.einsum("bk,kchw->bchw", class_labels.to(torch.float32), self.means)
        else:
            mean = self.means[:1]
        s2 = self.spread ** 2
        return (s2 * self.mix(x.to(torch.float32)) + sigma ** 2 * mean) / (s2 + sigma ** 2)
'''

LOSS_SOURCE = '''
from torch_utils import persistence
from torch_utils import training_stats


@persistence.persistent_class
class TrainingLoss:
    def __init__(self, sigma_data=0.5):
        self.sigma_data = sigma_data
'''


def _fake_modules():
    torch_utils = types.ModuleType("torch_utils")
    persistence = types.ModuleType("torch_utils.persistence")
    dnnlib = types.ModuleType("dnnlib")
    util = types.ModuleType("dnnlib.util")

    def _reconstruct_persistent_obj(meta):  # only referenced by name in the pickle
        raise AssertionError("the writer's reconstructor must never run")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"

    class EasyDict(dict):
        pass

    EasyDict.__module__ = "dnnlib.util"
    EasyDict.__qualname__ = "EasyDict"

    def persistent_class(cls):
        source = SOURCES[cls.__module__]

        def __reduce__(self):
            meta = dict(type="class", version=6, module_src=source, class_name=cls.__name__, state=dict(self.__dict__))
            return (_reconstruct_persistent_obj, (meta,))

        cls.__reduce__ = __reduce__
        return cls

    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
    persistence.persistent_class = persistent_class
    training_stats = types.ModuleType("torch_utils.training_stats")
    torch_utils.persistence, torch_utils.training_stats = persistence, training_stats
    util.EasyDict = dnnlib.EasyDict = EasyDict
    dnnlib.util = util
    return {"torch_utils": torch_utils, "torch_utils.persistence": persistence, "torch_utils.training_stats": training_stats,
            "dnnlib": dnnlib, "dnnlib.util": util}


SOURCES = {"_edm_test_network": SOURCE, "_edm_test_training": LOSS_SOURCE}


def _run(name):
    namespace = types.ModuleType(name)
    exec(compile(SOURCES[name], f"<{name}>", "exec"), namespace.__dict__)
    return namespace


def write_edm_pickle(path, resolution=16, channels=3, label_dim=10, spread=0.3, training_loss=False, loss_as_ema=False):
    """Write the pickle; returns (means in [0,1] units (max(label_dim,1), C, H, W), std in [0,1] units).
    ``loss_as_ema`` stores the training-loss object under ``'ema'`` (a network that cannot load)."""
    modules = _fake_modules()
    saved = {name: sys.modules.get(name) for name in modules}
    sys.modules.update(modules)
    try:
        net = _run("_edm_test_network").GaussianPrecond(resolution, channels, label_dim, spread)
        loss = _run("_edm_test_training").TrainingLoss() if training_loss or loss_as_ema else None
        easy_dict = modules["dnnlib.util"].EasyDict
        payload = (easy_dict if loss else dict)(ema=loss if loss_as_ema else net, loss_fn=loss, augment_pipe=None,
                                                dataset_kwargs=easy_dict(resolution=resolution))
        with open(path, "wb") as stream:
            pickle.dump(payload, stream)
        means = (net.means.detach().double() + 1) / 2
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    return means, spread / 2


# ---------------------------------------------------------------------------------------------
# Rewriting a real EDM pickle (e.g. tests/fixtures/edm/*) record by record, for hostile variants.
def rewrite_edm_pickle(data, edit=None, module_src=None, class_names=None):
    """Bytes of the EDM pickle ``data`` re-pickled in the same layout after changing it.

    The pickle is read inertly (pagbench's ``read_records``: nothing from it runs); ``edit(contents)``
    may then change the record tree in place (a record's ``state`` holds ``_parameters``,
    ``_buffers``, ``_modules``, plain attributes and ``_init_kwargs``); ``module_src`` replaces every
    record's embedded source; ``class_names`` maps old class names to new ones. Records pickle back to
    ``torch_utils.persistence._reconstruct_persistent_obj(meta)`` and torch ``ModuleDict``s to
    themselves, through the same throwaway modules :func:`write_edm_pickle` uses."""
    import io

    import torch

    from pagbench_plugins.diffusion.edm_restricted import AttributeDict, PersistentRecord, TorchModuleRecord, read_records

    contents = read_records(data)
    if edit is not None:
        edit(contents)
    modules = _fake_modules()
    reconstruct = modules["torch_utils.persistence"]._reconstruct_persistent_obj
    easy_dict = modules["dnnlib.util"].EasyDict
    sources = {}

    class Persistent:
        def __init__(self, record):
            self.record = record

        def __reduce__(self):
            record = self.record
            source = module_src if module_src is not None else sources.setdefault(record.module_src_sha256, f"<source {record.module_src_sha256}>")
            name = (class_names or {}).get(record.class_name, record.class_name)
            return reconstruct, (dict(type="class", version=record.version, module_src=source, class_name=name,
                                      state=convert(record.state)),)

    converted = {}  # id(record) -> its stand-in, so shared (or cyclic) records stay shared

    def module_dict(record):  # a ModuleDict whose __dict__ is the record's state, pickled by torch as usual
        instance = converted[id(record)] = torch.nn.ModuleDict.__new__(torch.nn.ModuleDict)
        object.__setattr__(instance, "__dict__", convert(record.state))
        return instance

    def convert(value):
        if id(value) in converted:
            return converted[id(value)]
        if isinstance(value, PersistentRecord):
            converted[id(value)] = Persistent(value)
            return converted[id(value)]
        if isinstance(value, TorchModuleRecord):
            return module_dict(value)
        if isinstance(value, AttributeDict):
            return easy_dict({key: convert(item) for key, item in value.items()})
        if isinstance(value, dict):
            return type(value)((key, convert(item)) for key, item in value.items())
        if isinstance(value, list):
            return [convert(item) for item in value]
        if isinstance(value, tuple):
            return tuple(convert(item) for item in value)
        return value

    saved = {name: sys.modules.get(name) for name in modules}
    sys.modules.update(modules)
    try:
        stream = io.BytesIO()
        pickle.dump(convert(contents), stream, protocol=4)
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    return stream.getvalue()
