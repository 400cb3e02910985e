"""Hook specifications: the whole plugin interface of pagbench.

Every hook receives a ``register`` callback (or the click group, for commands). A plugin
implements only the hooks it needs, naming only the arguments it uses::

    from pagbench import hookimpl

    @hookimpl
    def register_models(register):
        register(ModelEntry(name="my-model", factory=build_my_model, card=ModelCard(...)))

Implementations never give their arguments defaults; new arguments may be added to a spec later
without breaking old plugins. Each spec's docstring (markdown) is the single source of the hook
reference: ``python scripts/hook_reference.py`` renders it into CONTRIBUTING.md and
docs/reference/hooks.md, and tests/test_hooks.py fails when either is stale or a docstring does
not name every argument of its hook.
"""

import pluggy

hookspec = pluggy.HookspecMarker("pagbench")
hookimpl = pluggy.HookimplMarker("pagbench")


@hookspec
def register_datasets(register):
    """`register(DatasetEntry(name, factory, description, num_classes, image_shape, source,
    licence, default_score_provider, default_manifold_provider, default_gradient))`
    (`default_gradient`: the `--gradient` used on this dataset when none is named, one whose paired
    score the default score provider can serve; None: `logprob`). `factory(data_root)` returns
    a `pagbench.plugin.Dataset`: `name`, `num_classes`, `image_shape` (C, H, W), `splits` (name →
    a `pagbench.plugin.ImageSplit`, or a zero-argument callable that loads one on first use),
    `config` (whatever determines the content; it keys the caches), `robustness_epsilons` /
    `headline_epsilon` (l2, pixel units) and, for datasets with a distractor, `noise_levels` and
    `has_signal_mask=True` with `Batch.signal_mask` (B, 1, H, W) bool, True on the signal.
    `TensorSplit(images, labels, signal_mask)` holds a split in memory. Import heavy libraries
    inside the factory, never at module level.
    """


@hookspec
def register_models(register):
    """`register(ModelEntry(name, factory, card, architecture))` for one model, or
    `register(ModelFamily(prefix, factory, card, description, examples, architecture))` for
    every name that starts with `prefix` (matched with `startswith`, longest prefix first, e.g.
    `resnet18-` or `mylib:`). `factory(name, dataset,
    device)` returns a `torch.nn.Module` mapping [0,1] images to logits. `card` is a
    `ModelCard(architecture, dataset, regime, strength, source, licence, description,
    requires_finetuning, provenance)` (for a family, a function of the name returning one); it
    is copied into every result.

    - **Model options.** A factory that also names an `options` argument receives a dict of the
      model options: `weights`, `arch`, `trust_checkpoint`, `replace_head` (from `--weights`,
      `--arch`, `--trust-checkpoint`, `--replace-head`) and any `--model-option KEY=VALUE`
      (values are strings). A factory that does not name it keeps working, and pagbench refuses
      options given to it. Check the keys with `pagbench.plugin.check_model_options(name,
      options, accepted)` and read flags with `option_flag(options, key)`. `card.FIELD=VALUE`
      options (e.g. `card.regime=pgd`) are applied to the card by pagbench and never reach the
      factory.
    - **A precise card.** The factory may return `pagbench.plugin.BuiltModel(module, card)` when
      what it built depends on the options (where the weights came from — `provenance` —,
      whether the head was replaced — `requires_finetuning`).
    - **Usable as `--arch`.** `architecture(name, dataset, device[, options])` builds the same
      network with untrained weights, never downloading or training; `checkpoint:PATH --arch
      NAME` loads weights into it strictly. Without it, the factory's model is used and its
      weights replaced. Put the normalisation in a layer made by
      `pagbench.plugin.normalize_module` (or wrap foreign networks in
      `pagbench.plugin.ImageClassifier`), so a checkpoint's own mean/std can replace it.
    """


@hookspec
def register_score_providers(register):
    """`register(ScoreProviderEntry(name, factory, description, options))`. `factory(dataset,
    options)` returns a `pagbench.plugin.ScoreProvider` whose scores are in [0,1] pixel units at σ
    given in [0,1] pixel units (`options`: the `--provider-option KEY=VALUE` pairs). The entry's `options` is the tuple of keys the provider accepts: any
    other key is refused in one line before compute (`None`, the default, accepts every key;
    `trust_pickle` is always allowed, and comes only from a typed `--trust-pickle`). Implement
    `conditional(images, labels, sigma)` and `unconditional(images, sigma)` — the posterior
    score is their difference by default — or `scores(images, labels, sigma, kind)` directly.
    Set `default_sigma`, a `fingerprint` that changes with the weights, and `disk_cache = False`
    for closed forms that are cheaper to recompute than to read; `check(sigma, kind)` runs
    before any compute and raises `PagbenchError` for what the provider cannot give (e.g. σ ≤
    0); `effective_sigma(sigma)` returns the σ the scores are really taken at when it differs
    from the requested one (a discrete noise schedule), and results record it as `sigma_used`.
    Raise `pagbench.plugin.MetricUnavailable` from the factory when the dataset is not
    supported. For a network, subclass `pagbench.plugin.NetworkScoreProvider`: set
    `image_shape`, `has_conditional`, `has_unconditional` and implement `network_score(images,
    labels, sigma)`; it checks σ, the kinds and the image shape, and resizes images for datasets
    scored at another resolution (`Dataset.score_image_shape`, e.g. `imagenet` at 64×64; the
    gradient is resized alike).
    """


@hookspec
def register_manifold_providers(register):
    """`register(ManifoldProviderEntry(name, factory, description, options))` (`options`: accepted
    keys, as for score providers). `factory(dataset, options)` returns a
    `pagbench.plugin.ManifoldProvider` whose `tangent_basis(images, labels)` is (B, k, D) with
    orthonormal rows (`pagbench.plugin.orthonormalize` does batched QR).
    """


@hookspec
def register_trainers(register):
    """`register(TrainerEntry(name, loss, description, strength_name, default_strengths))`.
    `loss(model, images, labels, strength, **options)` returns the scalar loss of one training
    batch (images in [0,1]); strength 0 must be plain cross-entropy. `options` are the recipe's
    `regime_options` (e.g. PGD's `steps`, `step_factor`); accept `**unused` if you take none.
    The training loop, the model store and `pagbench train --regime NAME` pick it up.
    """


@hookspec
def register_metrics(register):
    """`register(metric)` with an instance of a `pagbench.plugin.Metric` subclass: `name`,
    `higher_is_better` (True, False or None for descriptive values), `requires` (a subset of
    `gradient`, `score`, `tangent_basis`, `signal_mask`), `compute(context)` returning a
    `MetricOutput` of per-image values (B,) — NaN marks an excluded image — and optionally
    curves (B, G). Means, standard errors and exclusion counts are computed by pagbench. Raise
    `MetricUnavailable` from `check_available(setup)` when the metric cannot run; it is then
    reported as unavailable with your reason. Keep `check_available` cheap (no networks built,
    no heavy imports: build them on the first `compute`). A metric declares its options as
    `options = (MetricOption(name, type, default=..., help=..., setting=...),)`: the CLI flag
    (`--name-with-dashes`), the `pagbench.evaluate(name=...)` keyword and the configuration key
    are generated from it, and `key=True` options (the default) join the leaderboard entry key,
    read from `metric_settings[metric][setting]` (what `describe` recorded) or else the
    configuration. Read a value with `self.option(options, name)`; `check_options(options)` refuses
    a bad value (one `PagbenchError` line) before any data or model is loaded. `hidden=True` keeps
    a flag out of `--help`; `recorded_after=KEY` records the option in every run's configuration
    (null, or false for a flag, when unset) right after KEY; `board_text="grid {value}"` shows the
    recorded value in the board's configuration line (a flag's text when true). `board_columns =
    (BoardColumn(header, output),)` adds columns to the leaderboard (`position` orders them,
    `with_stderr` appends ± se, `always` shows the column even when no row reports it, `rank=N`
    makes it the N-th sort key of the board and a column of every model card). The example plugin's `gradient_norm` shows both.
    `value_ranges = {output: (low, high)}` states what each output can take (±inf for an open end):
    the leaderboard refuses an entry outside it; undeclared outputs must be finite and at most 1e12
    in magnitude.
    """


@hookspec
def register_attributions(register):
    """`register(AttributionEntry(name, factory, description, options))`
    (`pagbench.plugin.AttributionEntry`) adds an attribution method that `--attribution NAME`
    selects; every metric that requires the gradient then scores it instead of the raw input
    gradient. `factory(options)` receives
    the `--attribution-option KEY=VALUE` values (strings from the command line, any type from
    Python; `options` lists the keys you accept, others are refused before compute), checks them
    (raise `PagbenchError` with one line; the helper `pagbench.plugin.attribution_option_value`
    converts and checks one value) and returns a `pagbench.plugin.Attribution` whose
    `settings` dict holds every resolved setting (recorded as `config.attribution_settings`) and
    whose `attribute(target)` returns a (B, C, H, W) float64 map. `target` (`AttributionTarget`)
    has the batch's `images` (device and `--dtype` precision), `labels`, `logits`, the raw
    `input_gradient`, `gradient_at(inputs)` (the chosen gradient at other inputs, with
    pagbench's numerics), `objective(inputs)` (a differentiable (B,) function with that
    gradient, for libraries such as Captum) and `randomness.randn(stream, *shape)` (per-image
    seeded noise, so numbers do not depend on the batch size). Import heavy libraries inside
    `attribute`. The built-ins are in `plugins/attributions/`; the test
    `test_hook_register_attributions` registers a throwaway one.
    """


@hookspec
def register_checkpoint_layouts(register):
    """`register(CheckpointLayout(name, recognise, split, description, normalization_source,
    clamps_input, clamp_kept, clamp_dropped, clamp_unavailable, normalization_keys))`
    (`pagbench.plugin.CheckpointLayout`)
    declares a checkpoint layout that `pagbench.plugin.fit_checkpoint` (and so `checkpoint:PATH`)
    recognises before fitting: `recognise(state)` says whether a dict of tensors is in it;
    `split(state)` returns (the network's weights, (mean, std) the file stores for its input
    normalisation or `None`). `description` becomes the card's `layout`, `normalization_source`
    its `normalization`. `clamps_input=True`: the layout's models clamp their input to [0,1]
    before normalising; the clamp is kept unless `--model-option clamp=false`, and the card's
    `input_clamp` says `clamp_kept`, `clamp_dropped` or `clamp_unavailable`.
    `normalization_keys`: (mean key, std key) pairs under which files store a normalisation next
    to a network's keys, tried before the core's. Layouts are tried in registration order; the
    first that recognises a file is used.
    """


@hookspec
def register_board_columns(register):
    """`register(EntryColumn(name, cells, description, rule))` (`pagbench.plugin.EntryColumn`)
    adds a leaderboard column computed from all entries at once, where a metric's `BoardColumn`
    (one value per run) is not enough: `cells(results)` receives the result documents of every
    entry (datasets, regimes and configurations mixed) and returns one markdown cell per
    document in the same order (`-` when undecided). `description` becomes the column's bullet
    in the board's legend and `rule` a paragraph after it. The zoo's `regime label` column
    (`plugins/zoo/regime_labels.py`) is one.
    """


@hookspec
def register_assets(register):
    """Declare the files a dataset, metric or provider needs: `register(AssetEntry(name,
    filename, url, size, size_exact, sha256, md5, licence, description, datasets, metrics,
    providers, folder, manual))` (`pagbench.plugin.AssetEntry`). `url=None` marks a manual-only
    file (`manual` says how to get it); `sha256` (full or a prefix of at least 8 hex digits) or
    `md5` is the published hash (none: the first download is pinned); `datasets` / `metrics` /
    `providers` say who needs it. The file lives at `<asset root>/<folder or name>/<filename>`.
    `pagbench assets list/fetch/verify/manifest` show and fetch them; a plugin gets the checked
    local file with `pagbench.plugin.assets.resolve(pagbench.plugin.assets.get(name))` (downloaded when online,
    else `pagbench.plugin.assets.AssetUnavailable` naming `pagbench assets fetch NAME`), and
    `pagbench.plugin.assets.for_provider(provider, dataset)` finds the one declared for a provider.
    """


@hookspec
def register_commands(cli):
    """`cli` is the root `click.Group`; add commands with `@cli.command()`. Raise
    `pagbench.plugin.PagbenchError` for user errors: pagbench prints it as one line and exits 2.
    """
