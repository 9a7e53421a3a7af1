"""The version of cnnlab (read by pyproject.toml too)."""

__version__ = "0.2.0"
