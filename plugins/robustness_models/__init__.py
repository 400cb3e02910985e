"""Built-in plugin: ``robustness:PATH`` — a checkpoint of the MadryLab robustness library
(https://github.com/MadryLab/robustness; the layout of the robust ImageNet and CIFAR ResNets the
paper evaluates), evaluated with one command and no plugin to write.

``pagbench evaluate --model robustness:PATH --dataset cifar10`` reads PATH safely (weights only;
dill-pickled metadata the weights-only reader refuses becomes inert placeholders), finds the
network in the library's ``AttackerModel`` layout (``model`` wrapper key; ``module.model.*`` kept,
``module.attacker.*`` dropped, ``module.normalizer.new_mean/new_std`` used; with or without
``module.``; :mod:`.layout`, which this plugin also declares to the core, so that
``checkpoint:PATH`` recognises it too), rebuilds the library's architecture and loads the weights
strictly. The model then
computes exactly what the library's ``AttackerModel(x)`` does: clamp x to [0,1], normalise with the
checkpoint's mean and std, run the network; logits and input gradients equal the library's.

Model options (``--model-option KEY=VALUE``):

* ``arch`` — the library's architecture name (``resnet50``, ``resnet18``, ``ResNet34``,
  ``resnet18wide``, ``vgg16``, ``densenet121``, … for CIFAR; ``resnet50``, ``wide_resnet50_2``,
  ``resnext50_32x4d``, … for ImageNet). Default: the checkpoint's stored ``args.arch`` when it
  has one, else read off the weights' structure for ResNets, else ``resnet50`` (the
  architecture of the library's robust CIFAR-10 and ImageNet releases).
* ``dataset`` — the library dataset the model was trained on (``cifar``, ``cinic``,
  ``imagenet``, ``restricted_imagenet``, ``places365``): picks ``cifar_models`` or
  ``imagenet_models`` and the normalisation used when the checkpoint stores none. Default: the
  stored ``args.dataset``, else from pagbench's ``--dataset`` (cifar10 → cifar, imagenet /
  imagenet64 → imagenet), else from the weights (``linear`` head → cifar, ``fc`` → imagenet).
* ``clamp`` — ``true`` (default, as the library) or ``false`` (pixels outside [0,1] pass
  unclamped; no longer the library's model, and the card says so).
* ``implementation`` — ``library`` (the installed ``robustness`` package's classes; the
  default when it imports) or ``pagbench`` (pagbench's own state-dict-compatible CIFAR ResNets,
  torchvision's ResNets for ImageNet; the default when it does not).
* ``output`` — for whole pickled modules (``--trust-checkpoint``): the index of the logits in a
  tuple output. A whole ``AttackerModel`` returns ``(logits, input)`` and is detected: 0.
* ``checkpoint_key``, ``--trust-checkpoint``, ``--replace-head`` as for ``checkpoint:PATH``.

The library itself is optional (``pip install robustness``, see README) and imported only when
such a model is built, never at plugin import.
"""

from pagbench.plugin import ModelCard, hookimpl, lazy_family

PREFIX = "robustness:"


def _card(name: str) -> ModelCard:
    return ModelCard(
        architecture="robustness library (arch from the checkpoint or --model-option arch)",
        dataset="unspecified",
        regime="unspecified",
        source=f"file {name[len(PREFIX):]}",
        licence="unspecified",
    )


@hookimpl
def register_models(register):
    register(
        lazy_family(
            PREFIX, __name__ + ".build", "robustness_model",
            card=_card,
            description=(
                "a MadryLab robustness-library checkpoint: robustness:PATH [--model-option arch=resnet50 dataset=cifar "
                "clamp=false]; clamps to [0,1] and normalises inside, as the library's AttackerModel"
            ),
            examples=("robustness:cifar_l2_0_5.pt", "robustness:imagenet_l2_3_0.pt"),
        )
    )


@hookimpl
def register_checkpoint_layouts(register):
    from .layout import robustness_layout

    register(robustness_layout())
