"""Engines, one module per family; importing this package registers every engine that can run.

Every module of this package is imported (a family module registers its engine with `@ENGINES.register`), so a
new family is one new module here. A family whose Diffusers pipeline classes are missing from the installed
Diffusers is simply not registered."""
import importlib
import logging
import pkgutil

from . import sd, upscale  # noqa: F401

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    try:
        importlib.import_module(f"{__name__}.{_info.name}")
    except ImportError as _exc:  # an older Diffusers without this family's pipelines
        logging.getLogger("sdcodex.engines").warning("engine module %s not registered: %s", _info.name, _exc)
