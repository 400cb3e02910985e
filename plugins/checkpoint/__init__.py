"""Built-in plugin: ``checkpoint:PATH`` — a model from a weights file on disk.

``checkpoint:PATH --arch ARCH`` loads the file's weights into the untrained network of any
registered model name ARCH (a zoo name such as ``resnet18-cifar10-standard-0``, ``timm:NAME``, or
a plugin's model). Raw state dicts, training-script wrappers, DataParallel / torch.compile
prefixes, the layouts other plugins declare (``register_checkpoint_layouts``, e.g. the robustness
library's) and safetensors files load strictly, with a report of missing and unexpected keys (see
:func:`pagbench.plugin.fit_checkpoint`). A file holding a whole pickled module or a TorchScript
program needs ``--trust-checkpoint`` and no ``--arch``.
"""

from pagbench.plugin import ModelCard, hookimpl, lazy_family

PREFIX = "checkpoint:"


def _card(name: str) -> ModelCard:
    return ModelCard(architecture="given by --arch", dataset="unspecified", regime="unspecified", source=f"file {name[len(PREFIX):]}", licence="unspecified")


@hookimpl
def register_models(register):
    register(
        lazy_family(
            PREFIX, __name__ + ".build", "checkpoint_model",
            card=_card,
            description=(
                "weights from a file: checkpoint:PATH --arch ARCH (any model name, e.g. timm:resnet50 or a zoo name); "
                "whole pickled modules / TorchScript need --trust-checkpoint"
            ),
            examples=("checkpoint:robust.pt --arch timm:resnet50",),
        )
    )
