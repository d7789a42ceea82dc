"""The values the form starts from and which of the user's values survive a switch: a selected model fills
its own declared defaults (a demo model: small size, few steps) over the engine's defaults and preset; changing
Engine or Mode keeps the user's size and steps unless the new engine's rules or the model require others."""
from __future__ import annotations

from typing import Any

from sdcodex.core.enums import Mode, Task
from sdcodex.core.request import TASK_KEYS

from . import caps

#: the user's values an Engine/Mode switch keeps when they still fit
KEPT_ON_SWITCH = ("width", "height", "steps")


def declared(models: Any, engine: str | None, checkpoint: str | None) -> dict[str, Any]:
    """The defaults the checkpoint declares for itself (models/declared.py); {} for none or an unknown name."""
    if not checkpoint:
        return {}
    try:
        for entry in models.checkpoints(engine):
            if entry.name == checkpoint:
                return dict(entry.declared_defaults())
    except Exception:  # noqa: BLE001 - a broken scan or an entry without declarations declares nothing
        return {}
    return {}


def fits(engine: str | None, key: str, value: Any) -> bool:
    """Whether a kept value still meets the engine's declared rules (size multiple and range; steps >= 1)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    c = caps.caps(engine)
    if key in ("width", "height"):
        return value % c["size_multiple"] == 0 and c["min_size"] <= value <= c["max_size"]
    return value >= 1


def start_values(engine: str | None, mode: str | None, task: Task | str, model_defaults: dict[str, Any] | None = None,
                 current: dict[str, Any] | None = None, *, mode_switch: bool = False,
                 family_defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """The values a tab is set to: the engine's defaults and preset (and the Settings tab's family defaults), then
    the model's declared defaults. With
    `current` (an Engine/Mode switch) the user's width/height/steps are kept where they fit and the model does not
    declare its own — except steps when switching to a fast mode, whose preset needs its own step count."""
    task = Task(task)
    values = caps.start_values(engine, mode, task, family_defaults)  # with the Settings tab's per-family defaults
    model_defaults = {k: v for k, v in (model_defaults or {}).items() if k in TASK_KEYS[task]}
    if task not in caps.MODEL_FREE:
        values.update(model_defaults)
    if current is None:
        return values
    for key in KEPT_ON_SWITCH:
        if key in model_defaults or key not in current or not fits(engine, key, current.get(key)):
            continue
        if key == "steps" and mode_switch and (mode or Mode.NORMAL.value) != Mode.NORMAL.value:
            continue
        values.pop(key, None)
    return values
