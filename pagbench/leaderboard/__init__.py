"""The leaderboard: the entry store and verification, the markdown board, the web site, galleries and the leaderboard commands."""
