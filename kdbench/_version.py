"""kdbench's version: one place (pyproject.toml reads it; records and model cards write it)."""
__version__ = "0.1.0"
