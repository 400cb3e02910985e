"""User-facing errors: the CLI prints them as one line on stderr and exits with code 2."""


class PagbenchError(Exception):
    """A problem with the user's input or environment, not a bug in pagbench."""

    exit_code = 2


class UnknownNameError(PagbenchError):
    """A name that is not registered; the message lists the closest registered names."""


class MetricUnavailable(PagbenchError):
    """A metric cannot be computed in this setting (missing weights, no score provider, ...)."""
