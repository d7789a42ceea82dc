"""Engines, one module per family; importing this package registers every engine that can run.

A family whose Diffusers pipeline classes are missing from the installed Diffusers is simply not registered."""
import importlib
import logging

from . import sd, upscale  # noqa: F401

for _name in ("flux", "svd", "hunyuan", "wan"):
    try:
        importlib.import_module(f"{__name__}.{_name}")
    except ImportError as _exc:  # an older Diffusers without this family's pipelines
        logging.getLogger("sdcodex.engines").warning("engine module %s not registered: %s", _name, _exc)
