"""How the leaderboard writes numbers: one fixed format for the board, the cards, the site and ``verify``."""

from __future__ import annotations


def number(value, digits: int = 3) -> str:
    """Fixed format: ``0.528``; values below 10⁻³ in magnitude as ``1.8e-07``; None as ``n/a``."""
    if value is None:
        return "n/a"
    value = float(value)
    if value != 0 and abs(value) < 10**-digits:
        return f"{value:.1e}"
    return f"{value:.{digits}f}"
