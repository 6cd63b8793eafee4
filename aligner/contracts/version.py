"""The package's version, in a module of its own so a report or a server can stamp it without importing
the root package (which loads the public API, applications included)."""
__version__ = "0.1.0"
