"""Building ``checkpoint:PATH`` models (imports torch)."""

from __future__ import annotations

import torch

from pagbench.plugin import FitReport, fit_checkpoint, read_checkpoint, unwrap
from pagbench.plugin import ModelCard
from pagbench.plugin import PagbenchError
from pagbench.plugin import BuiltModel, build_architecture, describe_options, option_flag, with_normalization

from . import PREFIX

#: Options the checkpoint family uses itself; any other option is passed to the --arch builder.
OWN_OPTIONS = ("arch", "trust_checkpoint", "replace_head", "checkpoint_key", "mean", "std", "output")


def _floats(options: dict, key: str):
    value = options.get(key)
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return [float(v) for v in value]
    try:
        return [float(part) for part in str(value).split(",") if part.strip()]
    except ValueError:
        raise PagbenchError(f"--model-option {key}: expected comma-separated numbers, got {value!r}") from None


def _normalization(options: dict):
    mean, std = _floats(options, "mean"), _floats(options, "std")
    if (mean is None) != (std is None):
        raise PagbenchError("--model-option mean and std go together")
    if std is not None and not all(value > 0 for value in std):
        raise PagbenchError(f"--model-option std must be positive, got {std}")
    return None if mean is None else (mean, std)


def _output_index(options: dict, module) -> int | None:
    """``--model-option output=N`` for a whole module returning a tuple; a robustness-library
    ``AttackerModel`` (whose forward returns ``(logits, input)``) is recognised by its class."""
    value = options.get("output")
    if value is None:
        return 0 if type(module).__name__ == "AttackerModel" else None
    try:
        index = int(str(value))
    except ValueError:
        raise PagbenchError(f"--model-option output: expected the integer index of the logits, got {value!r}") from None
    if index < 0:
        raise PagbenchError(f"--model-option output: expected an index >= 0, got {index}")
    return index


def _check_architecture_name(arch: str) -> None:
    from pagbench.plugin import ModelFamily
    from pagbench.plugin import models

    entry = models().get(arch)  # unknown → one line with the closest names
    if isinstance(entry, ModelFamily) and entry.prefix == PREFIX:
        raise PagbenchError(f"--arch {arch!r} is itself a checkpoint; name an architecture (a zoo name, timm:NAME, a plugin's model)")


def checkpoint_model(name: str, dataset, options: dict) -> BuiltModel:
    path = name[len(PREFIX) :]
    if not path:
        raise PagbenchError("checkpoint models are named checkpoint:PATH")
    if "weights" in options:
        raise PagbenchError(f"{name} takes its weights from {path}; --weights is for models such as timm:NAME")
    arch = options.get("arch")
    passthrough = {key: value for key, value in options.items() if key not in OWN_OPTIONS}
    if arch is not None and "output" in options:
        raise PagbenchError("--model-option output applies to whole modules (no --arch)")
    if arch is None and passthrough:
        raise PagbenchError(f"{describe_options(passthrough)} would go to the architecture, but no --arch was given")
    normalization = _normalization(options)
    replace_head = option_flag(options, "replace_head")
    if arch is not None:
        _check_architecture_name(str(arch))

    checkpoint = read_checkpoint(path, trust=option_flag(options, "trust_checkpoint"))
    content, wrapper_keys = unwrap(checkpoint, options.get("checkpoint_key"))
    resolved = str(checkpoint.path.resolve())
    provenance = {"weights_file": resolved, "sha256": checkpoint.sha256, "format": checkpoint.format}
    if checkpoint.trusted_load:
        provenance["trusted_load"] = True
    source = f"file {resolved} (sha256 {checkpoint.sha256[:16]})"

    if arch is None:
        if not isinstance(content, torch.nn.Module):
            raise PagbenchError(
                f"{checkpoint.path} holds a state dict of {len(content)} tensors; name its architecture with --arch "
                "(a zoo name, timm:NAME or a plugin's model)"
            )
        if replace_head:
            raise PagbenchError("--replace-head needs --arch (pagbench cannot find the head of an arbitrary module)")
        module = content.float() if not isinstance(content, torch.jit.ScriptModule) else content
        output = _output_index(options, content)
        if output is not None:
            from pagbench.plugin import SelectOutput

            module = SelectOutput(module, output)
            provenance["output"] = f"element {output} of the module's tuple output" + (
                " (a robustness-library AttackerModel returns (logits, input))" if "output" not in options else ""
            )
        if normalization is not None:
            module = with_normalization(module, *normalization)
        provenance.update(
            loaded_as="whole module" + (" (TorchScript)" if checkpoint.format == "torchscript" else ""),
            checkpoint_keys=wrapper_keys,
            normalization="model options mean/std" if normalization else "assumed inside the module (it must take [0,1] images)",
        )
        card = ModelCard(
            architecture=type(content).__name__ + (" (TorchScript)" if checkpoint.format == "torchscript" else ""),
            dataset="unspecified", regime="unspecified", source=source, licence="unspecified", provenance=provenance,
        )
        return BuiltModel(module, card)

    state = content.state_dict() if isinstance(content, torch.nn.Module) else content
    skeleton, arch_card = build_architecture(str(arch), dataset, passthrough)
    report = fit_checkpoint(
        skeleton,
        state,
        num_classes=dataset.num_classes,
        replace_head=replace_head,
        normalization=normalization,
        source=f"checkpoint {checkpoint.path}",
        architecture=f"--arch {arch}",
        report=FitReport(wrapper_keys=wrapper_keys),
    )
    provenance["architecture"] = str(arch)
    provenance.update(report.as_dict())
    data_config = dict(arch_card.provenance.get("data_config", {}))
    for key in ("mean", "std"):
        data_config.pop(key, None)  # the normalisation actually used is recorded above
    if data_config:
        provenance["input"] = data_config
    card = ModelCard(
        architecture=f"{arch_card.architecture} ({arch})",
        dataset="unspecified",
        regime="unspecified",
        source=source,
        licence="unspecified",
        requires_finetuning=bool(report.replaced_head),
        provenance=provenance,
    )
    return BuiltModel(skeleton, card)
