"""The public API for plugins: everything a plugin imports from pagbench comes from here
(or from the top-level ``pagbench``: ``hookimpl``, the entry records, ``evaluate``).

The rest of the package (``pagbench.extensions``, ``pagbench.evaluation``, ``pagbench.models``,
``pagbench.files``, ``pagbench.results``, ``pagbench.leaderboard``) is private and may move between
releases; tests/test_layout.py fails when a built-in plugin or the example plugin imports it.
Names resolve lazily (PEP 562), so importing this module stays light: torch is imported only
when a name that needs it is first used. A few modules are offered as narrow facades
(e.g. ``assets.resolve``): only the listed attributes are public.
"""

from __future__ import annotations

import importlib

#: public name -> (module, attribute)
_NAMES = {
    'AssetEntry': ('pagbench.files.assets', 'AssetEntry'),
    'Attribution': ('pagbench.evaluation.attributions', 'Attribution'),
    'AttributionEntry': ('pagbench.extensions.records', 'AttributionEntry'),
    'Batch': ('pagbench.evaluation.data', 'Batch'),
    'BoardColumn': ('pagbench.evaluation.metrics', 'BoardColumn'),
    'BuiltModel': ('pagbench.models.loading', 'BuiltModel'),
    'CheckpointLayout': ('pagbench.models.checkpoint_fitting', 'CheckpointLayout'),
    'DamagedFile': ('pagbench.files.integrity', 'DamagedFile'),
    'Dataset': ('pagbench.evaluation.data', 'Dataset'),
    'DatasetEntry': ('pagbench.extensions.records', 'DatasetEntry'),
    'DownloadFailed': ('pagbench.files.assets', 'DownloadFailed'),
    'EntryColumn': ('pagbench.extensions.records', 'EntryColumn'),
    'EvaluationOptions': ('pagbench.evaluation.options', 'EvaluationOptions'),
    'FitReport': ('pagbench.models.checkpoint_fitting', 'FitReport'),
    'ImageClassifier': ('pagbench.models.wrappers', 'ImageClassifier'),
    'ImageSplit': ('pagbench.evaluation.data', 'ImageSplit'),
    'InertObject': ('pagbench.models.checkpoint_reading', 'InertObject'),
    'ManifoldProvider': ('pagbench.evaluation.manifold', 'ManifoldProvider'),
    'ManifoldProviderEntry': ('pagbench.extensions.records', 'ManifoldProviderEntry'),
    'Metric': ('pagbench.evaluation.metrics', 'Metric'),
    'MetricContext': ('pagbench.evaluation.metrics', 'MetricContext'),
    'MetricOption': ('pagbench.evaluation.metrics', 'MetricOption'),
    'MetricOutput': ('pagbench.evaluation.metrics', 'MetricOutput'),
    'MetricUnavailable': ('pagbench.errors', 'MetricUnavailable'),
    'ModelCard': ('pagbench.extensions.records', 'ModelCard'),
    'ModelEntry': ('pagbench.extensions.records', 'ModelEntry'),
    'ModelFamily': ('pagbench.extensions.records', 'ModelFamily'),
    'NetworkScoreProvider': ('pagbench.evaluation.scores', 'NetworkScoreProvider'),
    'PagbenchError': ('pagbench.errors', 'PagbenchError'),
    'ScoreProvider': ('pagbench.evaluation.scores', 'ScoreProvider'),
    'ScoreProviderEntry': ('pagbench.extensions.records', 'ScoreProviderEntry'),
    'SeedInterval': ('pagbench.leaderboard.seeds', 'SeedInterval'),
    'SelectOutput': ('pagbench.models.wrappers', 'SelectOutput'),
    'TensorSplit': ('pagbench.evaluation.data', 'TensorSplit'),
    'TrainerEntry': ('pagbench.extensions.records', 'TrainerEntry'),
    'UnknownNameError': ('pagbench.errors', 'UnknownNameError'),
    '__version__': ('pagbench.version', '__version__'),
    'accepts_size': ('pagbench.models.wrappers', 'accepts_size'),
    'attribution_option_value': ('pagbench.evaluation.attributions', 'option_value'),
    'build_architecture': ('pagbench.models.loading', 'build_architecture'),
    'cache_dir': ('pagbench.files.paths', 'cache_dir'),
    'canonical_json': ('pagbench.files.fingerprint', 'canonical_json'),
    'cpu_numerics': ('pagbench.numerics', 'cpu_numerics'),
    'card_strength': ('pagbench.evaluation.checks', 'card_strength'),
    'check_cache_dir': ('pagbench.evaluation.checks', 'check_cache_dir'),
    'check_device': ('pagbench.evaluation.checks', 'check_device'),
    'check_folder': ('pagbench.evaluation.checks', 'check_folder'),
    'check_grid': ('pagbench.evaluation.checks', 'check_grid'),
    'check_model_options': ('pagbench.models.loading', 'check_model_options'),
    'check_pinned': ('pagbench.files.pinned', 'check_pinned'),
    'check_replaceable': ('pagbench.files.paths', 'check_replaceable'),
    'check_writable_file': ('pagbench.files.paths', 'check_writable_file'),
    'console': ('pagbench.console', 'console'),
    'cosine': ('pagbench.evaluation.metrics', 'cosine'),
    'datasets': ('pagbench.extensions.registry', 'datasets'),
    'describe_options': ('pagbench.models.loading', 'describe_options'),
    'entry_key': ('pagbench.leaderboard.store', 'entry_key'),
    'evaluate_many': ('pagbench.evaluation.runner', 'evaluate_many'),
    'file_digest': ('pagbench.files.pinned', 'file_digest'),
    'fingerprint': ('pagbench.files.fingerprint', 'fingerprint'),
    'fit_checkpoint': ('pagbench.models.checkpoint_fitting', 'fit_checkpoint'),
    'hookimpl': ('pagbench.extensions.hookspecs', 'hookimpl'),
    'in_grid': ('pagbench.evaluation.checks', 'in_grid'),
    'input_size_option': ('pagbench.models.wrappers', 'input_size_option'),
    'interval_text': ('pagbench.leaderboard.seeds', 'interval_text'),
    'is_stored': ('pagbench.models.store', 'is_stored'),
    'lazy_family': ('pagbench.models.loading', 'lazy_family'),
    'listing': ('pagbench.models.checkpoint_fitting', 'listing'),
    'load_record': ('pagbench.models.store', 'load_record'),
    'load_result': ('pagbench.results.documents', 'load_result'),
    'load_tensors': ('pagbench.models.store', 'load_tensors'),
    'load_weights': ('pagbench.models.store', 'load_weights'),
    'matches': ('pagbench.files.pinned', 'matches'),
    'model_dir': ('pagbench.models.store', 'model_dir'),
    'model_lock': ('pagbench.models.store', 'model_lock'),
    'model_option_value': ('pagbench.models.wrappers', 'option_value'),
    'models': ('pagbench.extensions.registry', 'models'),
    'normalise_pin': ('pagbench.files.pinned', 'normalise_pin'),
    'normalize_module': ('pagbench.models.loading', 'normalize_module'),
    'offline': ('pagbench.files.paths', 'offline'),
    'one_line': ('pagbench.models.checkpoint_reading', 'one_line'),
    'option_flag': ('pagbench.models.loading', 'option_flag'),
    'orthonormalize': ('pagbench.evaluation.manifold', 'orthonormalize'),
    'parse_floats': ('pagbench.console', 'parse_floats'),
    'pixel_scale': ('pagbench.evaluation.checks', 'pixel_scale'),
    'progress_bar': ('pagbench.progress', 'progress_bar'),
    'read_checkpoint': ('pagbench.models.checkpoint_reading', 'read_checkpoint'),
    'resolve_device': ('pagbench.models.loading', 'resolve_device'),
    'save_model': ('pagbench.models.store', 'save_model'),
    'save_tensors': ('pagbench.models.store', 'save_tensors'),
    'score_image_shape': ('pagbench.evaluation.scores', 'score_image_shape'),
    'seed_interval': ('pagbench.leaderboard.seeds', 'seed_interval'),
    'sniff_format': ('pagbench.models.checkpoint_reading', 'sniff_format'),
    'strict_load_error': ('pagbench.models.checkpoint_fitting', 'strict_load_error'),
    'summarize_ratio': ('pagbench.evaluation.aggregate', 'summarize_ratio'),
    'trainers': ('pagbench.extensions.registry', 'trainers'),
    'unwrap': ('pagbench.models.checkpoint_reading', 'unwrap'),
    'warn_damaged': ('pagbench.files.integrity', 'warn_damaged'),
    'with_normalization': ('pagbench.models.loading', 'with_normalization'),
    'write_atomic': ('pagbench.files.paths', 'write_atomic'),
    'write_result': ('pagbench.results.documents', 'write_result'),
}

#: facade name -> (module, its public attributes)
_FACADES = {
    'assets': ('pagbench.files.assets', ('AssetEntry', 'AssetUnavailable', 'OVERRIDE_FOLDER', 'download', 'fetch_command', 'for_provider', 'get', 'local_path', 'overridden', 'override_table_path', 'resolve')),
    'paths': ('pagbench.files.paths', ('offline',)),
    'registry': ('pagbench.extensions.registry', ('datasets', 'score_providers')),
    'store': ('pagbench.models.store', ('WEIGHTS', 'load_record', 'load_tensors', 'records', 'save_model', 'store_dir')),
}


class _Facade:
    """The listed attributes of a private module, and nothing else."""

    def __init__(self, name: str, module: str, attributes: tuple[str, ...]):
        self._name, self._module, self._attributes = name, module, attributes

    def __getattr__(self, attribute: str):
        if attribute not in self._attributes:
            raise AttributeError(f"pagbench.plugin.{self._name} has no public attribute {attribute!r} "
                                 f"(public: {', '.join(self._attributes)})")
        return getattr(importlib.import_module(self._module), attribute)

    def __dir__(self):
        return list(self._attributes)

    def __repr__(self):
        return f"<pagbench.plugin.{self._name}: {', '.join(self._attributes)}>"


def __getattr__(name: str):
    if name in _NAMES:
        module, attribute = _NAMES[name]
        value = getattr(importlib.import_module(module), attribute)
    elif name in _FACADES:
        value = _Facade(name, *_FACADES[name])
    else:
        raise AttributeError(f"module 'pagbench.plugin' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)


__all__ = sorted([*_NAMES, *_FACADES])
