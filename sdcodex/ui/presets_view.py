"""The Presets view: pick a preset, see its values, and exactly what it would fill — into an empty request
and into the request the matching tab would send now (the same `presets.fill` the orchestrator runs)."""
from __future__ import annotations

import json
from typing import Any

from sdcodex.core.errors import CodexError
from sdcodex.core.presets import all_presets, fill

from .progress import error_html


def preset_ids() -> list[str]:
    try:
        return sorted(all_presets())
    except CodexError:
        return []


def describe(preset_id: str | None, tab_requests: dict[str, dict[str, Any]]) -> tuple[str, str, str, str]:
    """(summary markdown, values JSON, "would fill" JSON, error html) for one preset."""
    if not preset_id:
        return "", "{}", "{}", ""
    try:
        preset = all_presets()[preset_id]
    except KeyError:
        return "", "{}", "{}", error_html({"field": "preset", "message": f"unknown preset {preset_id!r}"})
    except CodexError as exc:
        return "", "{}", "{}", error_html(exc)
    lines = [f"**{preset.id}** — engine `{preset.engine}`, mode `{preset.mode}`, task `{preset.task}`, "
             f"schema_version {preset.schema_version}"]
    if preset.description:
        lines.append(preset.description)
    if preset.source:
        lines.append(f"Source: {preset.source}")
    lines.append(f"File: `{preset.path}`")
    tab_request = dict(tab_requests.get(preset.task) or {})
    if tab_request and tab_request.get("engine") == preset.engine and tab_request.get("mode", "normal") == preset.mode:
        filled = fill(tab_request, preset)
        lines.append(f"Against the **{preset.task}** tab's current request it fills {len(filled.patch)} key(s) "
                     "(a preset never overrides a key the request gives):")
        patch = filled.patch
    else:
        filled = fill({"task": preset.task}, preset)
        lines.append(f"Into a request that gives only its task it fills {len(filled.patch)} key(s) (the "
                     f"{preset.task} tab is set to another engine or mode, so it would not apply there):")
        patch = filled.patch
    values = json.dumps(preset.values, indent=2, ensure_ascii=False)
    return "\n\n".join(lines), values, json.dumps(patch, indent=2, ensure_ascii=False), ""


def loadable(preset_id: str | None, tab_requests: dict[str, dict[str, Any]]) -> tuple[Any, str]:
    """(preset, "") when "Load" may copy the preset into its tab — the tab exists and is set to the preset's
    engine and mode — else (None, error html saying why)."""
    try:
        preset = all_presets().get(preset_id or "")
    except CodexError as exc:
        return None, error_html(exc)
    if preset is None:
        return None, error_html({"field": "preset", "message": f"unknown preset {preset_id!r}"})
    if preset.task not in tab_requests:
        return None, error_html({"field": "preset", "message": f"there is no {preset.task} tab to load it into"})
    current = tab_requests.get(preset.task) or {}
    engine, mode = current.get("engine"), current.get("mode") or "normal"
    if engine != preset.engine or mode != preset.mode:
        return None, error_html({"field": "preset", "message": (
            f"it is for {preset.engine} ({preset.mode}); the {preset.task} tab is set to {engine or 'no engine'} "
            f"({mode}). Choose that engine and mode first.")})
    return preset, ""


def field_values(preset: Any, task: Any) -> dict[str, Any]:
    from .request import request_to_fields

    return request_to_fields(preset.values, task)
