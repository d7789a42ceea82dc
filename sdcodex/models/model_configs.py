"""Component configs a module is built from: the bundled configs of each family (configs/<family>/<component>/) and
per-component overrides given by the caller (a mapping, or a Diffusers folder whose component configs are used)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from sdcodex.core.errors import ModelLoadError

CONFIG_ROOT = Path(__file__).parent / "configs"
CONFIG_FILES = ("config.json", "scheduler_config.json", "tokenizer_config.json")


def bundled(family: Any, component: str) -> dict[str, Any] | None:
    """A bundled config of a real model (configs/<family>/<component>/), None when there is none."""
    folder = CONFIG_ROOT / str(getattr(family, "value", family)) / component
    for name in CONFIG_FILES:
        if (folder / name).is_file():
            return json.loads((folder / name).read_text())
    return None


def bundled_config(family: Any, component: str) -> dict[str, Any]:
    """A bundled Diffusers/transformers config, e.g. ('sdxl', 'text_encoder_2') or ('sd15', 'unet_inpaint');
    a ModelLoadError when the family has none."""
    found = bundled(family, component)
    if found is None:
        have = sorted(p.name for p in CONFIG_ROOT.iterdir() if p.is_dir())
        raise ModelLoadError(f"no bundled config for {getattr(family, 'value', family)}/{component}", field="family",
                             allowed=have)
    return found


def configs_from(source: str | Path | Mapping[str, dict] | None) -> dict[str, dict]:
    """Per-component config overrides: a mapping, or a Diffusers folder whose component configs are used."""
    if source is None:
        return {}
    if isinstance(source, Mapping):
        return dict(source)
    out = {}
    for sub in Path(source).iterdir():
        for name in ("config.json", "scheduler_config.json"):
            if (sub / name).is_file():
                out[sub.name] = json.loads((sub / name).read_text())
    return out


__all__ = ["CONFIG_ROOT", "bundled", "bundled_config", "configs_from"]
