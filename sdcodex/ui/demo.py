"""First start: when the models folder holds no checkpoint, the page says so and offers to build the tiny
RANDOM-WEIGHT demo models (noise-like images by design) so a fresh user can see the whole path work."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("sdcodex.ui")

DEFAULT_FAMILIES = ("sd15", "sd15_inpaint")


def families() -> list[str]:
    """Demo families that can be built here (image and, when registered, video ones)."""
    from sdcodex.models.demo import load_demo_builders

    return list(load_demo_builders())


def notice(models: Any) -> str:
    where = getattr(models, "models_dir", "the models folder")
    return (f"### No models found\nThere is no checkpoint in `{where}`. Put your `.safetensors` checkpoints or "
            "Diffusers folders there and press ↻ (refresh) — or build the **demo models** to see the whole path work now. "
            "They are tiny models with **random weights**: their images are noise, by design.")


def build(models: Any, chosen: list[str] | None) -> str:
    """Build the chosen demo families into <models_dir>/demo and rescan; a status line."""
    from sdcodex.models.demo import build_demo_model

    chosen = list(chosen or DEFAULT_FAMILIES)
    families()
    dest = Path(models.models_dir) / "demo"
    built = []
    for family in chosen:
        log.info("building demo model %s into %s", family, dest)
        built.append(build_demo_model(family, dest).name)
    models.refresh()
    return f"Built {len(built)} random-weight demo model(s) in `{dest}`: {', '.join(built)}."
