"""Built-in plugin (placeholder, being written)."""
