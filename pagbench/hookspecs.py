"""Hook specifications: the whole plugin interface of pagbench.

Every hook receives a ``register`` callback (or the click group, for commands). A plugin
implements only the hooks it needs, naming only the arguments it uses::

    from pagbench import hookimpl

    @hookimpl
    def register_models(register):
        register(ModelEntry(name="my-model", factory=build_my_model, card=ModelCard(...)))

Implementations never give their arguments defaults; new arguments may be added to a spec later
without breaking old plugins. Each spec's docstring is rendered into the README's hook reference
and a test keeps the two in step.
"""

import pluggy

hookspec = pluggy.HookspecMarker("pagbench")
hookimpl = pluggy.HookimplMarker("pagbench")


@hookspec
def register_datasets(register):
    """Register datasets: call ``register(DatasetEntry(name, factory, ...))`` once per dataset.

    ``factory(data_root)`` returns a :class:`pagbench.data.Dataset`; ``data_root`` is a path or
    ``None``. Import heavy libraries inside the factory, not at module level.
    """


@hookspec
def register_models(register):
    """Register models: ``register(ModelEntry(name, factory, card))`` for one named model, or
    ``register(ModelFamily(prefix, factory, card, description))`` for every name starting with ``prefix``
    (e.g. ``timm:``).

    ``factory(name, dataset, device)`` returns a ``torch.nn.Module`` that maps images
    (B, C, H, W) in [0,1] to logits (B, num_classes), with any normalisation inside it. A factory
    that also names ``options`` receives the model options (``--weights``, ``--arch``,
    ``--model-option KEY=VALUE``, ...) and may return a ``pagbench.models.BuiltModel(module, card)``;
    an optional ``architecture`` builder makes the name usable as ``--arch`` for checkpoints.
    """


@hookspec
def register_score_providers(register):
    """Register score providers: ``register(ScoreProviderEntry(name, factory, ...))``.

    ``factory(dataset, options)`` returns a :class:`pagbench.scores.ScoreProvider` whose scores
    are in [0,1] pixel units at σ given in [0,1] pixel units. ``options`` is a dict of provider
    options from the command line (e.g. a checkpoint path).
    """


@hookspec
def register_manifold_providers(register):
    """Register manifold providers: ``register(ManifoldProviderEntry(name, factory, ...))``.

    ``factory(dataset, options)`` returns a :class:`pagbench.manifold.ManifoldProvider` whose
    ``tangent_basis`` has orthonormal rows, shape (B, k, D).
    """


@hookspec
def register_trainers(register):
    """Register training regimes: ``register(TrainerEntry(name, loss, ...))``.

    ``loss(model, images, labels, strength, **options)`` returns the scalar training loss of one
    batch (images (B, C, H, W) in [0,1]); ``strength`` is the regime's strength (0 = standard);
    ``options`` are the recipe's ``regime_options``.
    """


@hookspec
def register_metrics(register):
    """Register metrics: ``register(metric)`` with an instance of :class:`pagbench.metrics.Metric`."""


@hookspec
def register_attributions(register):
    """Register attribution methods: ``register(AttributionEntry(name, factory, description, options))``
    (:class:`pagbench.entries.AttributionEntry`).

    ``factory(options)`` receives the ``--attribution-option KEY=VALUE`` values (a dict; values
    are strings from the command line, any type from Python) and returns a
    :class:`pagbench.attributions.Attribution`: its ``settings`` (every resolved setting, recorded
    in the result) and ``attribute(target)``, which maps an
    :class:`pagbench.attributions.AttributionTarget` to a (B, C, H, W) float64 attribution in the
    gradient's units (what every gradient metric then reads instead of the raw input gradient).
    ``options`` lists the keys the method accepts; others are refused before compute. Import heavy
    libraries (``captum``) inside ``attribute``, never at module level.
    """


@hookspec
def register_board_columns(register):
    """Register leaderboard columns computed from the entries: ``register(EntryColumn(name, cells,
    description, rule))`` (:class:`pagbench.entries.EntryColumn`).

    ``cells(results)`` receives the result documents of every leaderboard entry and returns one
    cell text per document, same order. The columns follow the metric columns (which metrics
    declare themselves, :class:`pagbench.metrics.BoardColumn`), in registration order.
    """


@hookspec
def register_commands(cli):
    """Add commands to the ``pagbench`` command line: ``cli`` is the root ``click.Group``."""
