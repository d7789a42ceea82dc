"""What the UI offers, read from the engines' declared capabilities and the presets — never hard-coded
per engine: which tabs an engine enables, its samplers and schedule types, which fields show, their
step sizes and the values a tab starts from."""
from __future__ import annotations

import threading
from functools import lru_cache
from typing import Any

from sdcodex.core.enums import Mode, Task
from sdcodex.core.request import TASK_KEYS

#: the generation tabs, in A1111's order, with their labels
GEN_TASKS: tuple[tuple[Task, str], ...] = (
    (Task.TXT2IMG, "Txt2img"), (Task.IMG2IMG, "Img2img"), (Task.INPAINT, "Inpaint"),
    (Task.UPSCALE, "Upscale"), (Task.TXT2VID, "Txt2Vid"), (Task.IMG2VID, "Img2Vid"),
)
#: keys a family only understands when it declares them (extra_keys), gives them a default, or a preset of
#: that family fills them
ENGINE_SPECIFIC = frozenset({"distilled_cfg_scale", "guidance_scale_2", "flow_shift", "motion_bucket_id",
                             "noise_aug_strength", "decode_chunk_size", "clip_skip", "images", "audio"})
#: tasks that do not run a checkpoint (the quicksettings model/engine/mode/VAE are not sent)
MODEL_FREE = frozenset({Task.UPSCALE})
#: keys a checkpoint-free tab does not show: an upscale uses no seed
NO_FIELD_WITHOUT_MODEL = frozenset({"seed"})
MODE_LABELS = {Mode.NORMAL.value: "Normal", Mode.LCM.value: "LCM", Mode.TURBO.value: "Turbo",
               Mode.LIGHTNING.value: "Lightning"}


def _engines() -> dict[str, type]:
    """Registered engines that run checkpoints (a tool engine that only does checkpoint-free tasks, like
    upscaling, is reached through its tab, not the Engine dropdown)."""
    import sdcodex.engines  # noqa: F401 - registers the engines
    from sdcodex.core.registry import ENGINES

    free = {t.value for t in MODEL_FREE}
    return {key: cls for key, cls in ENGINES.items() if set(cls.capabilities()["tasks"]) - free}


def engine_keys() -> list[str]:
    return list(_engines())


def engine_choices() -> list[tuple[str, str]]:
    """(label, key) for the Engine dropdown."""
    return [(cls.capabilities()["label"], key) for key, cls in _engines().items()]


def caps(engine: str | None) -> dict[str, Any]:
    """The engine's capabilities() dict; an unknown or empty engine gives the first registered one."""
    engines = _engines()
    cls = engines.get(engine or "") or next(iter(engines.values()))
    return cls.capabilities()


def tasks_for(engine: str | None) -> set[str]:
    """Tabs the engine enables (Upscale does not need a checkpoint, so it is always on)."""
    return set(caps(engine)["tasks"]) | {t.value for t in MODEL_FREE}


def modes_for(engine: str | None) -> list[tuple[str, str]]:
    order = [m.value for m in Mode]
    modes = sorted(caps(engine)["modes"], key=order.index)
    return [(MODE_LABELS.get(m, m), m) for m in modes]


def samplers_for(engine: str | None) -> list[str]:
    from sdcodex.core.samplers import list_samplers

    names = [s["name"] for s in list_samplers(caps(engine)["prediction"]) if s.get("available", True)]
    return ["Automatic"] + [n for n in names if n != "Automatic"]


@lru_cache(maxsize=1)
def schedulers() -> list[str]:
    from sdcodex.core.samplers import list_schedulers

    return [s["label"] for s in list_schedulers()]


def _preset_values(engine: str, mode: str, task: str) -> dict[str, Any]:
    from sdcodex.core.presets import find_preset

    try:
        preset, _warnings = find_preset(engine, mode, task)
    except Exception:  # noqa: BLE001 - a broken preset file must not break the page
        return {}
    return dict(preset.values) if preset else {}


def _family_keys(engine: str) -> set[str]:
    """Engine-specific keys this family declares: extra_keys, defaults, and anything its presets fill."""
    from sdcodex.core.presets import all_presets

    c = caps(engine)
    keys = set(c["extra_keys"]) | set(c["defaults"])
    try:
        for preset in all_presets().values():
            if preset.engine == c["engine"]:
                keys |= set(preset.values)
    except Exception:  # noqa: BLE001
        pass
    return keys


def visible_keys(engine: str | None, task: Task | str) -> set[str]:
    """Request keys a tab shows for this engine: the task's keys minus other families' knobs."""
    task = Task(task)
    keys = set(TASK_KEYS[task])
    if task in MODEL_FREE:
        return keys - NO_FIELD_WITHOUT_MODEL
    family = _family_keys(caps(engine)["engine"])
    return {k for k in keys if k not in ENGINE_SPECIFIC or k in family}


def start_values(engine: str | None, mode: str | None, task: Task | str,
                 family_defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """The values a tab starts from: the engine's declared defaults, then its preset for (mode, task), then (normal
    mode only) the Settings tab's defaults for this family (`codex_family_defaults`, docs/settings.md)."""
    task = Task(task)
    c = caps(engine)
    values: dict[str, Any] = {}
    if task not in MODEL_FREE:
        values.update(c["defaults"])
        values.update(_preset_values(c["engine"], mode or Mode.NORMAL.value, task.value))
        if (mode or Mode.NORMAL.value) == Mode.NORMAL.value:
            values.update((family_defaults or {}).get(c["engine"]) or {})
        values.setdefault("sampler", "Automatic")
        values.setdefault("scheduler", "Automatic")
    # the format starts at "From Settings" (the Settings tab's image/video format), not the preset's png
    values.pop("output_format", None)
    return {k: v for k, v in values.items() if k in TASK_KEYS[task]}


def size_rule(engine: str | None) -> str:
    c = caps(engine)
    text = f"multiple of {c['size_multiple']}, {c['min_size']}–{c['max_size']}"
    return text


def frame_rule(engine: str | None) -> str:
    c = caps(engine)
    parts = []
    if c.get("frame_rule"):
        parts.append(f"frames = {c['frame_rule']}")
    if c.get("max_frames"):
        parts.append(f"at most {c['max_frames']}")
    return ", ".join(parts) or "any count"


_WARMED = threading.Event()


def warm_prompt_tokens() -> None:
    """Build the CLIP tokenizer and the counter's chunker in the background, once per process, so the first
    keystroke's count does not wait for them (seconds on a small machine)."""
    if _WARMED.is_set():
        return
    _WARMED.set()
    engine = next((key for key, cls in _engines().items() if cls.clip_conditioning is not None), None)
    if engine is not None:
        threading.Thread(target=prompt_tokens, args=(engine, "warm"), name="codex-token-warm", daemon=True).start()


def prompt_tokens(engine: str | None, text: str | None, emphasis: str | None = None, steps: Any = None) -> str:
    """The token counter of a prompt box ("12/75", "80/150"), from the engine's own count; "" when the engine's
    encoder has no 75-token chunks."""
    cls = _engines().get(engine or "")
    if cls is None:
        return ""
    try:
        count = cls.prompt_tokens(text or "", emphasis or "Original", int(steps or 20))
    except Exception:  # noqa: BLE001 - the counter must never break the page
        return ""
    return "" if count is None else f"{count[0]}/{count[1]}"
