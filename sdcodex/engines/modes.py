"""Can a fast-sampling mode (LCM, Turbo, Lightning) apply to this model? The mode presets
(configs/presets/<engine>/<mode>/) only make sense on a model distilled for them; on any other model the
run goes on with the normal settings and `info.mode_ignored_reason` says why.

How we tell, strongest evidence first (the first that answers wins):
1. the checkpoint's own safetensors metadata (`modelspec.*`, `ss_*`, `name`) names the distillation;
2. a Diffusers folder ships the distilled scheduler (LCMScheduler => LCM);
3. FLUX without a guidance embedding is schnell-type, a FLUX.2 Klein folder says `is_distilled`: distilled for
   few steps => Turbo;
4. a LoRA in the request (the `loras` key or a `<lora:...>` tag) is named for the mode (LCM-LoRA,
   SDXL-Lightning LoRA, Turbo LoRA) — the usual way to run these modes on any base model;
5. last resort: the model's file or folder name carries the hint (e.g. "sdxl-turbo", "juggernaut_lightning").
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sdcodex.core.enums import Mode

HINTS: dict[str, tuple[str, ...]] = {
    Mode.LCM.value: ("lcm",),
    Mode.TURBO.value: ("turbo", "schnell"),
    Mode.LIGHTNING.value: ("lightning",),
}
_META_KEYS = ("modelspec.title", "modelspec.architecture", "modelspec.description", "modelspec.usage_hint",
              "modelspec.implementation", "ss_output_name", "ss_sd_model_name", "name")


def _has_hint(text: str | None, mode: str) -> bool:
    low = (text or "").lower()
    return any(h in low for h in HINTS.get(mode, ()))


def _metadata(path: Path) -> dict[str, str]:
    if path.is_file() and path.suffix.lower() in (".safetensors", ".sft"):
        from sdcodex.models.safetensors_io import read_header

        try:
            return dict(read_header(path)[1])
        except Exception:  # noqa: BLE001 - a header we cannot read gives no evidence
            return {}
    return {}


def _folder_scheduler(path: Path) -> str | None:
    cfg = path / "scheduler" / "scheduler_config.json"
    if path.is_dir() and cfg.is_file():
        try:
            return str(json.loads(cfg.read_text()).get("_class_name"))
        except (OSError, ValueError):
            return None
    return None


def evidence(mode: str, entry: Any, request: dict[str, Any]) -> str | None:
    """What shows the model (or a requested LoRA) is distilled for `mode`; None when nothing does."""
    path = Path(getattr(entry, "path", "") or "")
    meta = _metadata(path)
    for key in _META_KEYS:
        if _has_hint(meta.get(key), mode):
            return f"safetensors metadata {key}={meta[key]!r}"
    if mode == Mode.LCM.value and _folder_scheduler(path) == "LCMScheduler":
        return "the model ships an LCMScheduler"
    variant = getattr(entry, "variant", None) or {}
    if mode == Mode.TURBO.value and variant.get("guidance_embed") is False:
        return "FLUX without guidance embedding (schnell-type)"
    if mode == Mode.TURBO.value and variant.get("step_distilled") is True:
        return "the model says is_distilled (step-distilled FLUX.2 Klein)"
    from .lora import parse_prompt

    names = [str(d.get("name", "")) for d in request.get("loras") or [] if isinstance(d, dict)]
    names += [use.name for use in parse_prompt(str(request.get("prompt") or ""))[1]]
    for name in names:
        if _has_hint(name, mode):
            return f"LoRA {name!r}"
    name = getattr(entry, "name", None)
    if _has_hint(name, mode):
        return f"model name {name!r}"
    return None


def mode_ignored_reason(engine_cls: type, mode: str, entry: Any, request: dict[str, Any]) -> str | None:
    """None when `mode` applies; otherwise why it does not (the run then uses the normal settings)."""
    if mode == Mode.NORMAL.value:
        return None
    if Mode(mode) not in engine_cls.modes:
        return f"engine {engine_cls.key.value!r} has no mode {mode!r}"
    if entry is None or evidence(mode, entry, request) is not None:
        return None
    hints = "/".join(HINTS[mode])
    return (f"model {getattr(entry, 'name', entry)!r} is not {mode}-distilled (no sign in its safetensors metadata, "
            f"scheduler, name or requested LoRAs: looked for {hints!r}); ran with the normal settings")
