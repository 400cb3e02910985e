"""CPU arithmetic pinned at ``import pagbench`` (pagbench/numerics.py): the AVX2 kernels of ATen,
oneDNN and MKL, so a zoo recipe trains to the same weights on any x86-64 machine."""

import json
import platform
import subprocess
import sys
import warnings

import pytest

from pagbench.numerics import PINNED_ENVIRONMENT, SWITCH

x86 = pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="the pins are x86-64 kernels")


def numerics_in_a_new_process(code: str, **environment) -> dict:
    """``code`` then ``print(json.dumps(cpu_numerics()))`` in a fresh interpreter whose environment
    lacks the pins (plus ``environment``)."""
    import os

    env = {key: value for key, value in os.environ.items() if key not in PINNED_ENVIRONMENT and key != SWITCH}
    env.update(environment)
    script = f"{code}\nimport json; from pagbench.plugin import cpu_numerics; print(json.dumps(cpu_numerics()))"
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def has_avx2() -> bool:
    try:
        return " avx2 " in f" {open('/proc/cpuinfo').read().split(chr(10) + chr(10))[0].replace(chr(10), ' ')} "
    except OSError:
        return False


@x86
@pytest.mark.skipif(not has_avx2(), reason="this CPU has no AVX2")
def test_importing_pagbench_first_pins_the_avx2_kernels():
    numerics = numerics_in_a_new_process("import pagbench")
    assert numerics["pinned"] is True and numerics["capability"] == "AVX2"
    assert {name: numerics[name] for name in PINNED_ENVIRONMENT} == PINNED_ENVIRONMENT


@x86
def test_torch_imported_first_or_native_leaves_the_kernels_alone_and_says_so():
    too_late = numerics_in_a_new_process("import torch, pagbench")
    assert too_late["pinned"] is False and all(too_late[name] is None for name in PINNED_ENVIRONMENT)
    native = numerics_in_a_new_process("import pagbench", **{SWITCH: "native"})
    assert native["pinned"] is False and all(native[name] is None for name in PINNED_ENVIRONMENT)
    # a user's own setting is kept
    own = numerics_in_a_new_process("import pagbench", ATEN_CPU_CAPABILITY="default")
    assert own["ATEN_CPU_CAPABILITY"] == "default" and own["pinned"] is False and own["capability"] == "DEFAULT"


@x86
def test_zoo_training_records_the_numerics_and_warns_when_they_are_not_pinned(monkeypatch):
    from pagbench_plugins.regimes import standard_loss
    from pagbench_plugins.synthetic.dataset import build_dataset
    from pagbench_plugins.zoo.build import architecture
    from pagbench_plugins.zoo.training import TrainingRecipe, train

    import pagbench.numerics
    import pagbench.plugin

    dataset = build_dataset(train_size=64, test_size=16)
    recipe = TrainingRecipe(dataset="synthetic", width=2, epochs=1, batch_size=64, lr_milestones=())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the suite imports pagbench before torch: pinned, no warning
        _, record = train(recipe, lambda: architecture(recipe, dataset), dataset, standard_loss, progress=False)
    assert record["execution"]["cpu_numerics"]["pinned"] is True
    unpinned = {**pagbench.numerics.cpu_numerics(), "pinned": False, "capability": "AVX512"}
    monkeypatch.setattr(pagbench.plugin, "cpu_numerics", lambda: unpinned, raising=False)
    other = TrainingRecipe(dataset="synthetic", width=2, epochs=1, batch_size=64, lr_milestones=(), seed=1)
    with pytest.warns(UserWarning, match=r"training .* with this CPU's own AVX512 kernels .* import pagbench before torch"):
        _, record = train(other, lambda: architecture(other, dataset), dataset, standard_loss, progress=False)
    assert record["execution"]["cpu_numerics"] == unpinned
