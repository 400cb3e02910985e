"""``raw-gradient``: the raw input gradient, unchanged (results are those of pagbench without attributions)."""

from __future__ import annotations

from pagbench.plugin import Attribution


class RawGradient(Attribution):
    name = "raw-gradient"

    def __init__(self, options):
        super().__init__({})

    def attribute(self, target):
        return target.input_gradient
