"""The plugin machinery: hook specifications, the plugin manager, the registries and their records. Plugins import none of it directly: `pagbench.plugin` is their public API."""
