"""What a model declares about itself beside its weights: `codex.json` inside a Diffusers folder, or
`NAME.codex.json` next to a single file — {"defaults": {request key: value}}. The UI fills the form from these
when the model is selected (a demo model declares small sizes and few steps); a missing or broken file declares
nothing."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("sdcodex.models")

DECLARED_FILE = "codex.json"
#: request keys a model may declare defaults for (anything else in the file is ignored)
DECLARABLE = frozenset({"width", "height", "steps", "cfg_scale", "sampler", "scheduler", "num_frames", "fps",
                        "flow_shift", "distilled_cfg_scale", "guidance_scale_2", "clip_skip"})


def declared_path(model: str | Path) -> Path:
    path = Path(model)
    return path / DECLARED_FILE if path.is_dir() else path.with_name(f"{path.stem}.{DECLARED_FILE}")


def read_declared(model: str | Path) -> dict[str, Any]:
    """{"defaults": {...}} (only declarable keys with plain values); {} when there is no valid file."""
    path = declared_path(model)
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        log.warning("ignoring %s: not valid JSON", path)
        return {}
    defaults = data.get("defaults") if isinstance(data, dict) else None
    if not isinstance(defaults, dict):
        return {}
    return {"defaults": {k: v for k, v in defaults.items()
                         if k in DECLARABLE and isinstance(v, (int, float, str)) and not isinstance(v, bool)}}


def write_declared(folder: str | Path, defaults: dict[str, Any]) -> Path:
    path = declared_path(folder)
    path.write_text(json.dumps({"defaults": dict(defaults)}, indent=2) + "\n", encoding="utf-8")
    return path


#: SD 2.x models trained at 512 (the epsilon base and the inpainting model) start the form there, not at the sd2
#: engine's 768 (the 768-v flagship's size)
SD2_BASE_SIZE = 512


def sd2_defaults(path: str | Path, variant: dict[str, Any]) -> dict[str, Any]:
    """What an SD 2.x checkpoint without a codex.json implies: 512 × 512 for an epsilon model (the 512 base, by its
    detected prediction type, else the loader's SD2 rule: inpainting or a '512'/'base' file name); {} for 768-v."""
    from sdcodex.models.loader import sd2_prediction

    prediction = variant.get("prediction")
    if prediction is None:
        in_channels = int(variant.get("in_channels") or (9 if variant.get("inpaint") else 4))
        prediction = sd2_prediction(Path(path), in_channels)[0].value
    return {"width": SD2_BASE_SIZE, "height": SD2_BASE_SIZE} if prediction == "epsilon" else {}
