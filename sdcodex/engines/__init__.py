"""Engines, one module per family; importing this package registers every engine that can run."""
from . import sd  # noqa: F401
