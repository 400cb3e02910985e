"""pagbench's built-in plugins, registered through the ``pagbench`` entry-point group exactly
like a third-party package (see pyproject.toml). Each module is also an example plugin."""
