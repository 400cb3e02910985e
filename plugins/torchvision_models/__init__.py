"""Built-in plugin: torchvision's classification models as ``torchvision:NAME`` (e.g.
``torchvision:resnet50``, ``torchvision:resnet50.IMAGENET1K_V2``), and as architectures for
``checkpoint:PATH --arch torchvision:NAME``.

Weights: the ``.TAG`` of the name picks a weights enum member (``DEFAULT`` when no tag is given),
downloaded into torch's hub cache when online and read from there (``torch.load`` with
``weights_only=True``); under ``PAGBENCH_OFFLINE=1`` nothing is downloaded and the error names
the cache file to put it in. ``--weights FILE`` loads a file strictly instead (prefixes stripped,
see :func:`pagbench.plugin.fit_checkpoint`); ``--model-option pretrained=false`` gives random weights. The
weights' normalisation (ImageNet mean/std by default), resize and optional evaluation transform
(``--model-option transform=eval``: resize 256, centre crop 224, as the weights' ``transforms()``)
live inside the model. torchvision is imported only when such a model is built.
"""

from pagbench.plugin import ModelCard, hookimpl, lazy_family

PREFIX = "torchvision:"


def _card(name: str) -> ModelCard:
    return ModelCard(
        architecture=f"torchvision {name[len(PREFIX):].split('.')[0]}",
        dataset="unspecified",
        regime="unspecified",
        source="https://github.com/pytorch/vision",
        licence="unspecified",
    )


@hookimpl
def register_models(register):
    register(
        lazy_family(
            PREFIX, __name__ + ".build", "torchvision_model",
            card=_card,
            architecture="torchvision_architecture",
            description=(
                "any torchvision classification model: NAME[.WEIGHTS_ENUM] weights (online, or from torch's hub cache "
                "offline), --weights FILE, or --model-option pretrained=false; normalised (and resized) inside"
            ),
            examples=("torchvision:resnet50", "torchvision:resnet50.IMAGENET1K_V2"),
        )
    )
