"""The version of metarep (one place: the package root, the CLI and the provenance of results read it)."""

__version__ = "0.1.0"
