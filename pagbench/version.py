"""The pagbench version (its own module, so any core module can import it without importing the package's API)."""

__version__ = "0.1.0"
