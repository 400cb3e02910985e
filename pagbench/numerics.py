"""CPU arithmetic that is the same on every x86-64 machine: the AVX2 code paths of torch's libraries.

On a CPU, torch picks its kernels by the instruction sets the processor has: ATen's vectorised
ops (``ATEN_CPU_CAPABILITY``), oneDNN's convolutions (``ONEDNN_MAX_CPU_ISA``) and MKL's matrix
products (``MKL_CBWR``). AVX-512 and AVX2 kernels round differently, and training amplifies
rounding into different weights (measured: the synthetic ResNet18 recipe gives a different
weights digest after 2 steps with each of the three left free, see ``benchmarks/README.md``). So
``import pagbench`` caps all three at AVX2, which every x86-64 machine since 2013 has, and the
same recipe trains to the same weights on any of them. The caps must be in the environment before
torch first runs an op: when torch was imported before pagbench they are left alone, and
:func:`cpu_numerics` says the arithmetic is not pinned (a zoo training run then warns).

``PAGBENCH_CPU_NUMERICS=native`` keeps the processor's own kernels (faster on AVX-512 machines;
weights then match only machines with the same instruction sets). Other processors (ARM) have
one code path each; their weights differ from x86-64 ones at rounding, which
``leaderboard verify`` treats as retrained weights.
"""

from __future__ import annotations

import os
import platform
import sys

#: The environment that caps each library at AVX2 (names and values as the libraries read them).
PINNED_ENVIRONMENT = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"}
#: ``PAGBENCH_CPU_NUMERICS``: ``pinned`` (the default) or ``native``.
SWITCH = "PAGBENCH_CPU_NUMERICS"


def _x86() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64")


def pin_cpu_numerics() -> bool:
    """Put :data:`PINNED_ENVIRONMENT` into ``os.environ`` (values already set are kept) unless
    ``PAGBENCH_CPU_NUMERICS=native``, the machine is not x86-64, or torch is already imported
    (too late to take effect). Returns whether it set them."""
    if os.environ.get(SWITCH, "pinned").lower() == "native" or not _x86() or "torch" in sys.modules:
        return False
    for name, value in PINNED_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    return True


def cpu_numerics() -> dict:
    """What this process's CPU arithmetic is: ``{"pinned": bool, "capability": ATen's capability
    (e.g. "AVX2"), "machine": platform.machine(), **the three variables as set (None when
    unset)}``. ``pinned`` is true on x86-64 when all three are the pinned values and ATen runs its
    AVX2 kernels (which shows they were set before torch started). Imports torch."""
    import torch

    capability = torch.backends.cpu.get_cpu_capability()
    variables = {name: os.environ.get(name) for name in PINNED_ENVIRONMENT}
    pinned = _x86() and capability == "AVX2" and all(
        (variables[name] or "").lower() == value.lower() for name, value in PINNED_ENVIRONMENT.items())
    return {"pinned": pinned, "capability": capability, "machine": platform.machine(), **variables}
