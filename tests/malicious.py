"""Pickles that would run code when loaded (test helpers): loading one creates ``marker``, so a
test can assert that nothing ran without a typed trust flag."""


def plant(marker):
    """What a malicious pickle runs when loaded: creates the marker file."""
    open(marker, "w").close()
    return {}


class Malicious:
    """Unpickling this calls :func:`plant` (``__reduce__``)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (plant, (self.marker,))
