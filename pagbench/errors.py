"""User-facing errors: the CLI prints them as one line on stderr and exits with code 2."""


class PagbenchError(Exception):
    """A problem with the user's input or environment, not a bug in pagbench."""

    exit_code = 2


class UnknownNameError(PagbenchError):
    """A name that is not registered; the message lists the closest registered names."""


class MetricUnavailable(PagbenchError):
    """A metric cannot be computed in this setting (missing weights, no score provider, ...)."""


class DegenerateImagesWarning(UserWarning):
    """Some images had zero or non-finite gradients or outputs and were excluded from the gradient
    metrics. The count is in the result (``degenerate``, ``warnings``) and in the CLI's table, so
    the CLI silences this one warning; every other warning (third-party ones too) stays visible."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (what schedulers send) turned into an exception by the CLI: it unwinds exactly like
    Ctrl-C (atomic writes remove their temporary files, training keeps its last epoch
    checkpoint), and the CLI exits with code 143 (128 + 15) without a traceback."""

    exit_code = 143
