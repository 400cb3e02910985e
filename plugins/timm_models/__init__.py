"""Built-in plugin: every timm model as ``timm:NAME`` (e.g. ``timm:resnet18``,
``timm:resnet50.a1_in1k``), and as an architecture for ``checkpoint:PATH --arch timm:NAME``.

Weights come from the Hugging Face hub when online, or from ``--weights FILE`` offline (read
safely by pagbench, then handed to timm through its pretrained-config override so timm's own
checkpoint filters apply). The model's data config (mean, std, input size, interpolation) lives
inside the wrapper: images are resized and normalised in the model, so gradients are w.r.t. the
dataset's [0,1] pixels. timm is imported only when such a model is built.
"""

from pagbench.plugin import ModelCard, hookimpl, lazy_family

PREFIX = "timm:"


def _card(name: str) -> ModelCard:
    return ModelCard(
        architecture=f"timm {name[len(PREFIX):]}",
        dataset="unspecified",
        regime="unspecified",
        source="https://github.com/huggingface/pytorch-image-models",
        licence="unspecified",
    )


@hookimpl
def register_models(register):
    register(
        lazy_family(
            PREFIX, __name__ + ".build", "timm_model",
            card=_card,
            architecture="timm_architecture",
            description=(
                "any timm model: hub weights when online, --weights FILE offline, --model-option pretrained=false "
                "for random weights; resized to its input size and normalised inside"
            ),
            examples=("timm:resnet18", "timm:resnet50.a1_in1k"),
        )
    )
