"""The robustness library's architectures: its own classes when the package imports, else
pagbench's state-dict-compatible re-implementations (imports torch).

The library's CIFAR networks (``robustness.cifar_models``) are not torchvision's: a 3×3 stem
without max-pooling, residual shortcuts named ``shortcut``, a head named ``linear`` and a fixed
4×4 average pool, so they take 32×32 images. Its ImageNet ResNets (``robustness.imagenet_models``)
are torchvision's ResNets (same modules, same keys, same forward) with extra keyword arguments.
Written for pagbench from the architecture's description, not copied from the library.
"""

from __future__ import annotations

import difflib
import importlib
import sys
import types

import torch
from torch import nn
from torch.nn import functional

from pagbench.plugin import PagbenchError

#: Library dataset name → (class count, mean, std, architecture family), as in robustness.datasets.
DATASETS = {
    "cifar": (10, (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010), "cifar"),
    "cinic": (10, (0.47889522, 0.47227842, 0.43047404), (0.24205776, 0.23828046, 0.25874835), "cifar"),
    "imagenet": (1000, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "imagenet"),
    "restricted_imagenet": (9, (0.4717, 0.4499, 0.3837), (0.2600, 0.2516, 0.2575), "imagenet"),
    "places365": (365, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "imagenet"),
}

#: Architecture names of robustness.cifar_models / robustness.imagenet_models (1.2.1.post2).
LIBRARY_ARCHS = {
    "cifar": (
        "resnet18", "ResNet18", "ResNet34", "resnet50", "ResNet50", "resnet101", "ResNet101", "resnet152", "ResNet152",
        "resnet18wide", "ResNet18Wide", "vgg11", "vgg13", "vgg16", "vgg19", "VGG11", "VGG13", "VGG16", "VGG19",
        "densenet121", "densenet161", "densenet169", "densenet201", "DenseNet121", "DenseNet161", "DenseNet169",
        "DenseNet201", "densenet_cifar", "inceptionv3",
    ),
    "imagenet": (
        "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d", "resnext101_32x8d",
        "wide_resnet50_2", "wide_resnet50_3", "wide_resnet50_4", "wide_resnet50_5", "wide_resnet50_6", "wide_resnet101_2",
        "leaky_resnet18", "leaky_resnet34", "leaky_resnet50", "leaky_resnet101", "leaky_resnet152",
        "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn",
        "densenet121", "densenet161", "densenet169", "densenet201", "alexnet", "squeezenet1_0", "squeezenet1_1",
    ),
}

#: CIFAR ResNets pagbench implements itself: name → (block, blocks per stage, width multiplier).
_CIFAR_RESNETS = {
    "resnet18": ("basic", (2, 2, 2, 2), 1),
    "resnet34": ("basic", (3, 4, 6, 3), 1),
    "resnet50": ("bottleneck", (3, 4, 6, 3), 1),
    "resnet101": ("bottleneck", (3, 4, 23, 3), 1),
    "resnet152": ("bottleneck", (3, 8, 36, 3), 1),
    "resnet18wide": ("basic", (2, 2, 2, 2), 5),
}
#: ImageNet ResNets built from torchvision: name → (block, blocks per stage, groups, width per group).
_IMAGENET_RESNETS = {
    "resnet18": ("basic", (2, 2, 2, 2), 1, 64),
    "resnet34": ("basic", (3, 4, 6, 3), 1, 64),
    "resnet50": ("bottleneck", (3, 4, 6, 3), 1, 64),
    "resnet101": ("bottleneck", (3, 4, 23, 3), 1, 64),
    "resnet152": ("bottleneck", (3, 8, 36, 3), 1, 64),
    "resnext50_32x4d": ("bottleneck", (3, 4, 6, 3), 32, 4),
    "resnext101_32x8d": ("bottleneck", (3, 4, 23, 3), 32, 8),
    "wide_resnet50_2": ("bottleneck", (3, 4, 6, 3), 1, 128),
    "wide_resnet50_3": ("bottleneck", (3, 4, 6, 3), 1, 192),
    "wide_resnet50_4": ("bottleneck", (3, 4, 6, 3), 1, 256),
    "wide_resnet50_5": ("bottleneck", (3, 4, 6, 3), 1, 320),
    "wide_resnet50_6": ("bottleneck", (3, 4, 6, 3), 1, 384),
    "wide_resnet101_2": ("bottleneck", (3, 4, 23, 3), 1, 128),
}
OWN_ARCHS = {"cifar": tuple(_CIFAR_RESNETS), "imagenet": tuple(_IMAGENET_RESNETS)}


# ------------------------------------------------------------------------------ the library itself
def import_library():
    """``(robustness, notes)`` or ``(None, why not)``. robustness 1.2.1.post2 imports
    ``torchvision.models.utils.load_state_dict_from_url``, which torchvision removed (0.13+): the
    same function lives in ``torch.hub``, and a stand-in module providing it is installed first."""
    notes = []
    try:
        importlib.import_module("torchvision.models.utils")
    except ImportError:
        import torchvision.models

        shim = types.ModuleType("torchvision.models.utils")
        shim.load_state_dict_from_url = torch.hub.load_state_dict_from_url
        sys.modules["torchvision.models.utils"] = shim
        torchvision.models.utils = shim
        notes.append("torchvision.models.utils provided from torch.hub.load_state_dict_from_url (removed from torchvision)")
    try:
        library = importlib.import_module("robustness")
        importlib.import_module("robustness.cifar_models")
        importlib.import_module("robustness.imagenet_models")
    except Exception as error:  # not installed, or one of its imports fails
        return None, f"{type(error).__name__}: {' '.join(str(error).split())[:120]}"
    return library, "; ".join(notes)


# -------------------------------------------------------------------------- names and inference
def canonical_arch(arch: str, family: str) -> str:
    """The library's spelling of ``arch`` for ``family`` (case-insensitive), or a one-line error
    naming the closest architectures."""
    names = LIBRARY_ARCHS[family]
    if arch in names:
        return arch
    by_lower = {}
    for name in names:
        by_lower.setdefault(name.lower(), name)
    if arch.lower() in by_lower:
        return by_lower[arch.lower()]
    close = difflib.get_close_matches(arch, names, n=3, cutoff=0.5) or difflib.get_close_matches(arch.lower(), list(by_lower), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(dict.fromkeys(by_lower.get(c, c) for c in close))}?" if close else ""
    raise PagbenchError(f"unknown robustness-library {family} architecture {arch!r}{hint} (known: {', '.join(sorted(set(by_lower.values())))})")


def family_of(state: dict) -> str | None:
    """``cifar`` or ``imagenet`` from a network's keys: the library's CIFAR networks end in a
    ``linear`` head (VGG: a single ``classifier`` Linear), its ImageNet ResNets in ``fc`` after a
    7×7 stem; None when the keys do not say."""
    stem = state.get("conv1.weight")
    if "linear.weight" in state or ("classifier.weight" in state and "features.0.weight" in state):
        return "cifar"
    if "fc.weight" in state and isinstance(stem, torch.Tensor) and stem.ndim == 4 and stem.shape[-1] == 7:
        return "imagenet"
    if "classifier.0.weight" in state or "features.conv0.weight" in state:
        return "imagenet"
    return None


def resnet_from_keys(state: dict, family: str) -> str | None:
    """The ResNet of ``family`` whose structure the network's weights have, or None."""
    counts = []
    for stage in range(1, 5):
        indices = {key.split(".")[1] for key in state if key.startswith(f"layer{stage}.") and key.split(".")[1].isdigit()}
        counts.append(len(indices))
    if 0 in counts:
        return None
    bottleneck = "layer1.0.conv3.weight" in state
    block = "bottleneck" if bottleneck else "basic"
    if family == "cifar":
        stem = state.get("conv1.weight")
        multiplier = int(stem.shape[0]) // 64 if isinstance(stem, torch.Tensor) and stem.ndim == 4 else 1
        for name, spec in _CIFAR_RESNETS.items():
            if spec == (block, tuple(counts), multiplier):
                return canonical_arch(name, family)
        return None
    middle = state.get("layer1.0.conv2.weight")
    groups, width = 1, 64
    if bottleneck and isinstance(middle, torch.Tensor) and middle.ndim == 4:
        groups = max(1, int(middle.shape[0]) // int(middle.shape[1]))
        width = int(middle.shape[0]) // groups
    for name, spec in _IMAGENET_RESNETS.items():
        if spec == (block, tuple(counts), groups, width):
            return name
    return None


# ------------------------------------------------------------------------ pagbench's own networks
class _Basic(nn.Module):
    expansion = 1

    def __init__(self, inputs: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(inputs, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _shortcut(inputs, planes * self.expansion, stride)

    def forward(self, x):
        y = functional.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        y += self.shortcut(x)
        return functional.relu(y)


class _Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inputs: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(inputs, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.shortcut = _shortcut(inputs, planes * self.expansion, stride)

    def forward(self, x):
        y = functional.relu(self.bn1(self.conv1(x)))
        y = functional.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        y += self.shortcut(x)
        return functional.relu(y)


def _shortcut(inputs: int, outputs: int, stride: int) -> nn.Sequential:
    """Identity (an empty Sequential, no keys) or a strided 1×1 projection with BatchNorm."""
    if stride == 1 and inputs == outputs:
        return nn.Sequential()
    return nn.Sequential(nn.Conv2d(inputs, outputs, 1, stride=stride, bias=False), nn.BatchNorm2d(outputs))


class CifarResNet(nn.Module):
    """The robustness library's CIFAR ResNet: 32×32 inputs, 3×3 stem, four stages of widths
    64·m … 512·m, a 4×4 average pool and a ``linear`` head; same state-dict keys as
    ``robustness.cifar_models.ResNet``."""

    def __init__(self, block: str, blocks, num_classes: int = 10, multiplier: int = 1):
        super().__init__()
        unit = _Bottleneck if block == "bottleneck" else _Basic
        widths = [int(w * multiplier) for w in (64, 128, 256, 512)]
        self.conv1 = nn.Conv2d(3, widths[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        channels = widths[0]
        for stage, (width, count) in enumerate(zip(widths, blocks), start=1):
            layers = []
            for index in range(count):
                layers.append(unit(channels, width, 2 if index == 0 and stage > 1 else 1))
                channels = width * unit.expansion
            setattr(self, f"layer{stage}", nn.Sequential(*layers))
        self.linear = nn.Linear(channels, num_classes)

    def forward(self, x):
        x = functional.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = functional.avg_pool2d(x, 4)
        return self.linear(x.view(x.size(0), -1))


def _own(arch: str, family: str, num_classes: int) -> nn.Module:
    key = arch.lower()
    if family == "cifar":
        block, blocks, multiplier = _CIFAR_RESNETS[key]
        return CifarResNet(block, blocks, num_classes, multiplier)
    from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

    block, blocks, groups, width = _IMAGENET_RESNETS[key]
    return ResNet(Bottleneck if block == "bottleneck" else BasicBlock, list(blocks), num_classes=num_classes, groups=groups, width_per_group=width)


def build_network(arch: str, family: str, num_classes: int, implementation: str | None):
    """``(network, description)``: the library's ``arch`` of ``family`` (``cifar`` /
    ``imagenet``) with ``num_classes`` outputs, untrained (seed 0). ``implementation`` is
    ``library``, ``pagbench`` or None (the library when it imports, else pagbench's own)."""
    if implementation not in (None, "library", "pagbench"):
        raise PagbenchError(f"--model-option implementation: expected library or pagbench, got {implementation!r}")
    library, notes = (None, "not tried") if implementation == "pagbench" else import_library()
    own = arch.lower() in OWN_ARCHS[family]
    if library is None and (implementation == "library" or not own):
        why = f"the robustness library is needed for {family} architecture {arch!r}" if not own else "--model-option implementation=library"
        raise PagbenchError(
            f"{why} but it cannot be imported ({notes}); install it (pip install robustness) or use one of pagbench's own: "
            f"{', '.join(OWN_ARCHS[family])}"
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        if library is not None:
            models = importlib.import_module(f"robustness.{family}_models")
            network = models.__dict__[arch](num_classes=num_classes)
            module = f"robustness.{family}_models.{arch}"
            description = f"robustness library {getattr(library, '__version__', '?')} ({module})" + (f"; {notes}" if notes else "")
        else:
            network = _own(arch, family, num_classes)
            origin = "pagbench's CIFAR ResNet" if family == "cifar" else "torchvision.models.resnet.ResNet"
            description = f"{origin}, state-dict compatible with robustness.{family}_models.{arch} (the library is not used)"
    return network, description
