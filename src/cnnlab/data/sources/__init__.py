"""Data sources: one module per format, each defining a Source; registry.py lists them."""
