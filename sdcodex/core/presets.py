"""Versioned YAML presets: `configs/presets/<engine>/<mode>/<task>.yaml`. A preset only FILLS keys a
request left out (0, "" and false are values, not gaps) and reports what it filled."""
from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError as PydanticValidationError

from .enums import EngineKey, Mode, Task
from .errors import PresetError, ValidationError
from .request import GenerationRequest, TASK_KEYS, from_pydantic

log = logging.getLogger("sdcodex.presets")

SCHEMA_VERSION = 1
_META_KEYS = {"schema_version", "name", "description", "source", "values"}
_NEVER_IN_PRESET = {"task", "engine", "model", "preset", "init_image", "mask", "prompt"}


def presets_dir() -> Path:
    """SDCODEX_PRESETS_DIR, else the repository's configs/presets."""
    env = os.environ.get("SDCODEX_PRESETS_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "configs" / "presets"


@dataclass(frozen=True)
class Preset:
    id: str  # "<engine>/<mode>/<task>"
    engine: str
    mode: str
    task: str
    path: Path
    values: dict[str, Any]
    description: str = ""
    source: str = ""
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "engine": self.engine, "mode": self.mode, "task": self.task,
                "description": self.description, "source": self.source, "schema_version": self.schema_version,
                "values": copy.deepcopy(self.values)}


@dataclass
class FillResult:
    data: dict[str, Any]
    patch: dict[str, Any] = field(default_factory=dict)
    preset_id: str | None = None
    warnings: list[str] = field(default_factory=list)


def load_preset_file(path: Path, root: Path | None = None) -> Preset:
    """Read and validate one preset file. An unknown or misplaced key is a PresetError naming file and key."""
    root = root or presets_dir()
    rel = path.relative_to(root)
    if len(rel.parts) != 3:
        raise PresetError(f"{path}: presets live at <engine>/<mode>/<task>.yaml")
    engine, mode, task = rel.parts[0], rel.parts[1], rel.with_suffix("").parts[2]
    where = str(path)
    for value, enum, name in ((engine, EngineKey, "engine"), (mode, Mode, "mode"), (task, Task, "task")):
        if value not in enum.values():
            raise PresetError(f"{where}: folder/file name {value!r} is not a known {name}", allowed=enum.values())
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise PresetError(f"{where}: not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise PresetError(f"{where}: a preset is a mapping with schema_version and values")
    unknown = set(doc) - _META_KEYS
    if unknown:
        raise PresetError(f"{where}: unknown top-level key {sorted(unknown)[0]!r}", field=sorted(unknown)[0],
                          allowed=sorted(_META_KEYS))
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise PresetError(f"{where}: schema_version must be {SCHEMA_VERSION}", field="schema_version",
                          allowed=[SCHEMA_VERSION])
    values = doc.get("values") or {}
    if not isinstance(values, dict):
        raise PresetError(f"{where}: 'values' must be a mapping", field="values")
    bad = set(values) & _NEVER_IN_PRESET
    if bad:
        raise PresetError(f"{where}: key {sorted(bad)[0]!r} cannot come from a preset", field=f"values.{sorted(bad)[0]}")
    try:
        GenerationRequest.model_validate({"task": task, **values})
    except PydanticValidationError as exc:
        err = from_pydantic(exc, prefix="values")
        raise PresetError(f"{where}: {err}", field=err.field, errors=err.errors) from None
    wrong_task = [k for k in values if k not in TASK_KEYS[Task(task)]]
    if wrong_task:
        raise PresetError(f"{where}: key {wrong_task[0]!r} does not apply to task {task!r}",
                          field=f"values.{wrong_task[0]}")
    return Preset(id=f"{engine}/{mode}/{task}", engine=engine, mode=mode, task=task, path=path,
                  values=values, description=str(doc.get("description", "")), source=str(doc.get("source", "")))


@lru_cache(maxsize=4)
def _load_all(root_str: str, stamp: float) -> dict[str, Preset]:
    root = Path(root_str)
    out: dict[str, Preset] = {}
    if root.is_dir():
        for path in sorted(root.rglob("*.yaml")):
            preset = load_preset_file(path, root)
            out[preset.id] = preset
    return out


def _stamp(root: Path) -> float:
    if not root.is_dir():
        return 0.0
    return max([p.stat().st_mtime for p in root.rglob("*.yaml")] + [root.stat().st_mtime])


def all_presets(root: Path | None = None) -> dict[str, Preset]:
    """Every preset under root, validated (cached until a file changes)."""
    root = root or presets_dir()
    return _load_all(str(root), _stamp(root))


def find_preset(engine: str, mode: str, task: str, *, name: str | None = None,
                root: Path | None = None) -> tuple[Preset | None, list[str]]:
    """The preset for (engine, mode, task), or the one a request names. Falls back to the normal mode."""
    presets = all_presets(root)
    warnings: list[str] = []
    if name:
        if name not in presets:
            raise ValidationError(f"unknown preset {name!r}", field="preset",
                                  allowed=sorted(presets))
        preset = presets[name]
        if preset.task != task:
            raise ValidationError(f"preset {name!r} is for task {preset.task!r}, not {task!r}", field="preset")
        return preset, warnings
    key = f"{engine}/{mode}/{task}"
    if key in presets:
        return presets[key], warnings
    if mode != Mode.NORMAL.value:
        fallback = f"{engine}/{Mode.NORMAL.value}/{task}"
        warnings.append(f"no preset for mode {mode!r} of engine {engine!r} and task {task!r}; used {fallback}")
        return presets.get(fallback), warnings
    return None, warnings


def _fill(target: dict[str, Any], values: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in values.items():
        if key not in target or target[key] is None:
            target[key] = copy.deepcopy(value)
            patch[key] = copy.deepcopy(value)
        elif isinstance(value, dict) and isinstance(target[key], dict):
            sub: dict[str, Any] = {}
            _fill(target[key], value, sub)
            if sub:
                patch[key] = sub


def fill(data: dict[str, Any], preset: Preset | None) -> FillResult:
    """Fill-only merge: keys the request gave are never touched; returns what was filled as the patch."""
    out = copy.deepcopy(data)
    patch: dict[str, Any] = {}
    if preset is not None:
        _fill(out, preset.values, patch)
        log.debug("preset %s filled %s", preset.id, sorted(patch))
    return FillResult(data=out, patch=patch, preset_id=preset.id if preset else None)
