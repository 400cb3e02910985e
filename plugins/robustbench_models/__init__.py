"""Built-in plugin: RobustBench's model zoo as ``robustbench:NAME``.

Names: ``robustbench:NAME``, ``robustbench:DATASET/NAME`` or ``robustbench:DATASET/THREAT/NAME``
(RobustBench's own directory layout, e.g. ``robustbench:cifar10/Linf/Carmon2019Unlabeled``), or
the options ``--model-option dataset=cifar10`` / ``threat_model=Linf``. The threat model defaults to
Linf, the dataset to the evaluation dataset when it is one of RobustBench's (cifar10, cifar100,
imagenet), else cifar10 (RobustBench's own default).

The network is RobustBench's own architecture from its model zoo (the ``robustbench`` package, an
optional extra, imported only when such a model is built). Weights: ``--weights FILE``, else
``MODEL_DIR/DATASET/THREAT/NAME.pt`` (``--model-option model_dir=DIR``, RobustBench's layout, so
an existing RobustBench ``./models`` directory can be reused; default ``<pagbench cache>/robustbench``),
downloaded there through RobustBench's downloader when missing and the network is allowed
(never under ``PAGBENCH_OFFLINE=1``). Files are read safely (``torch.load(weights_only=True)``).
RobustBench models take [0,1] images and normalise inside: pagbench feeds them the dataset's
images unchanged. Cards carry RobustBench's model information (paper, ε, clean and robust
accuracy) when its ``model_info`` JSON file for the model is found: ``--model-option
model_info=DIR`` (a RobustBench checkout's ``model_info`` folder), else ``MODEL_DIR/model_info/``,
else, online, the single file downloaded from RobustBench's repository into ``MODEL_DIR/model_info/``
(see :mod:`.modelinfo`; pagbench holds no copy of it). Without it the model is evaluated all
the same and its card says that no information was found.
"""

from pagbench.plugin import ModelCard, hookimpl, lazy_family

PREFIX = "robustbench:"
DATASETS = {"cifar10": 10, "cifar100": 100, "imagenet": 1000}
THREAT_MODELS = ("Linf", "L2", "corruptions")


def _card(name: str) -> ModelCard:
    """A card from the name alone (the built model's card is more precise)."""
    from pagbench.plugin import cache_dir

    from .modelinfo import find
    from .spec import parse_name

    try:
        spec = parse_name(name, {}, None)
    except Exception:  # an unparsable name: the factory reports it
        return ModelCard(architecture="RobustBench model", dataset="unspecified", regime="unspecified", source="RobustBench")
    try:  # a file already in the default model directory only: no download, no options here
        info = find(spec, {}, cache_dir() / "robustbench", download=False)[0] or {}
    except Exception:  # a malformed file: the factory reports it
        info = {}
    return ModelCard(
        architecture=info.get("architecture", "RobustBench model"),
        dataset=spec.dataset,
        regime=spec.regime,
        strength=info.get("eps") if spec.regime == "adversarial" else None,
        source=info.get("link", "https://robustbench.github.io"),
        licence="unspecified",
        description=f"RobustBench {spec.key}" + (f": {info['paper']}" if info.get("paper") else ""),
    )


@hookimpl
def register_models(register):
    register(
        lazy_family(
            PREFIX, __name__ + ".build", "robustbench_model",
            card=_card,
            description=(
                "a RobustBench model: robustbench:[DATASET/][THREAT/]NAME (pip install 'pagbench[robustbench]'); "
                "weights from its model directory or --weights FILE; takes [0,1] images unchanged"
            ),
            examples=("robustbench:Carmon2019Unlabeled", "robustbench:cifar10/Linf/Wong2020Fast"),
            card_fields={"robustbench": ("paper", "threat_model", "eps", "clean_accuracy", "robust_accuracy",
                                         "autoattack_accuracy", "link")},
        )
    )
