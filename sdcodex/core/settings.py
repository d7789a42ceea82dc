"""The server's settings: one typed schema and one store, persisted as JSON in the data folder beside the job
database. The A1111 `/sdapi/v1/options` routes, the web UI's Settings tab and the orchestrator all read and
write this store, so a setting changed anywhere takes effect on the next job (docs/settings.md).

Names follow A1111's options where A1111 has one (`samples_format`, `jpeg_quality`, `emphasis`, ...); settings
of our own start with `codex_` or name a server limit (`max_steps`, ...)."""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from .enums import Emphasis, EngineKey, Mode, Task
from .errors import ValidationError

log = logging.getLogger("sdcodex.settings")

SETTINGS_NAME = "settings.json"
IMAGE_FORMATS = ("png", "jpeg", "jpg", "webp")
VIDEO_FORMATS = ("mp4", "webm", "gif", "webp")
#: the keys a per-family default may set (`codex_family_defaults.<engine>.<key>`)
FAMILY_DEFAULT_KEYS = ("steps", "width", "height", "cfg_scale", "sampler", "scheduler")
#: what a file name pattern may hold (A1111's names); the file is always `<NNNNN>-<pattern>.<ext>`
FILENAME_TOKENS = ("seed", "prompt", "prompt_words", "prompt_no_styles", "model_name", "model_hash", "steps", "cfg",
                   "sampler", "scheduler", "width", "height", "engine", "task", "date", "datetime", "job_timestamp",
                   "batch_number")


@dataclass(frozen=True)
class Option:
    """One setting: its type (`kind`), default, allowed values, and where it shows and takes effect."""

    key: str
    section: str
    label: str
    kind: str                          # bool | int | float | str | choice | pattern | family_defaults
    default: Any
    choices: tuple[Any, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    effect: str = ""                   # where it takes effect (shown in the Settings tab and docs)
    ui: bool = True                    # shown in the Settings tab (False: kept for A1111 clients only)
    nullable: bool = False

    def allowed(self) -> Any:
        if self.kind in ("choice",):
            return list(self.choices)
        if self.kind in ("int", "float"):
            top = "" if self.maximum is None else f" to {self.maximum:g}"
            return f"{'an integer' if self.kind == 'int' else 'a number'} from {self.minimum:g}{top}"
        if self.kind == "bool":
            return "true or false"
        if self.kind == "pattern":
            return "text with " + ", ".join(f"[{t}]" for t in FILENAME_TOKENS)
        if self.kind == "family_defaults":
            return f"{{engine: {{{', '.join(FAMILY_DEFAULT_KEYS)}}}}} for engines {', '.join(EngineKey.values())}"
        return "text" + (" or null" if self.nullable else "")


def _opt(*args: Any, **kw: Any) -> Option:
    return Option(*args, **kw)


S_SAVE, S_PROMPT, S_MODELS, S_PREVIEW, S_LIMITS, S_DEFAULTS, S_A1111 = (
    "Saving images and videos", "Prompts", "Models", "Live previews", "Job-size limits", "Defaults per family",
    "A1111 compatibility")

OPTIONS: tuple[Option, ...] = (
    _opt("samples_format", S_SAVE, "Image file format", "choice", "png", IMAGE_FORMATS,
         effect="next job without `output_format` (image tasks)"),
    _opt("codex_video_format", S_SAVE, "Video file format", "choice", "mp4", VIDEO_FORMATS,
         effect="next job without `output_format` (video tasks)"),
    _opt("jpeg_quality", S_SAVE, "Quality for JPEG and WebP images (1-100)", "int", 95, minimum=1, maximum=100,
         effect="next file saved"),
    _opt("webp_lossless", S_SAVE, "Lossless WebP", "bool", False, effect="next file saved"),
    _opt("samples_filename_pattern", S_SAVE, "File name pattern (after the number)", "pattern", "[seed]",
         effect="next file saved: <outputs>/<task>/<date>/<NNNNN>-<pattern>.<ext>"),
    _opt("enable_pnginfo", S_SAVE, "Write generation parameters (infotext) into files", "bool", True,
         effect="next file saved"),
    _opt("emphasis", S_PROMPT, "Emphasis mode for (text:1.2)", "choice", Emphasis.ORIGINAL.value,
         tuple(Emphasis.values()), effect="next job without `emphasis`"),
    _opt("CLIP_stop_at_last_layers", S_PROMPT, "Clip skip", "int", 1, minimum=1, maximum=12,
         effect="next job without `clip_skip` (CLIP families)"),
    _opt("sd_model_checkpoint", S_MODELS, "Default checkpoint", "str", None, nullable=True,
         effect="next job without `model`"),
    _opt("sd_checkpoints_limit", S_MODELS, "Models kept loaded (model cache size)", "int", 2, minimum=1, maximum=16,
         effect="at once (the least recently used models beyond it are unloaded)"),
    _opt("live_previews_enable", S_PREVIEW, "Show live previews", "bool", True, effect="next job"),
    _opt("show_progress_every_n_steps", S_PREVIEW, "Live preview every N steps (-1: at the end only)", "int", 10,
         minimum=-1, maximum=1000, effect="next job"),
    _opt("max_steps", S_LIMITS, "Most steps per job (0: no limit)", "int", 150, minimum=0, maximum=100000,
         effect="next submitted job"),
    _opt("max_frames", S_LIMITS, "Most video frames per job (0: no limit)", "int", 257, minimum=0, maximum=100000,
         effect="next submitted job"),
    _opt("max_images", S_LIMITS, "Most images per job, batch size x batch count (0: no limit)", "int", 256,
         minimum=0, maximum=100000, effect="next submitted job"),
    _opt("max_output_pixels", S_LIMITS, "Most output pixels per job, width x height x frames x images (0: no limit)",
         "int", 128 * 1024 * 1024, minimum=0, maximum=2**40, effect="next submitted job"),
    _opt("max_prompt_bytes", S_LIMITS, "Longest prompt in UTF-8 bytes (0: no limit)", "int", 16 * 1024, minimum=0,
         maximum=2**24, effect="next submitted job"),
    _opt("codex_family_defaults", S_DEFAULTS, "Defaults per family (steps, size, CFG, sampler per engine)",
         "family_defaults", {}, effect="next job in normal mode without a `preset`: fills the keys it leaves out, "
                                       "before the engine's preset"),
    # kept for A1111 clients that read or post them; Codex does not act on them
    _opt("sd_checkpoint_hash", S_A1111, "Hash of the default checkpoint", "str", None, nullable=True, ui=False),
    _opt("sd_vae", S_A1111, "VAE for A1111 requests", "str", "Automatic", ui=False,
         effect="next A1111 request"),
    _opt("eta_noise_seed_delta", S_A1111, "Eta noise seed delta", "int", 0, minimum=0, maximum=2**32 - 1, ui=False),
    _opt("sd_vae_checkpoint_cache", S_A1111, "VAE cache", "int", 0, minimum=0, maximum=16, ui=False),
    _opt("samples_save", S_A1111, "Save samples", "bool", True, ui=False),
    _opt("grid_save", S_A1111, "Save grids", "bool", False, ui=False),
    _opt("outdir_samples", S_A1111, "Output folder (not used: outputs go to the server's folder)", "str", "",
         ui=False),
)
SCHEMA: dict[str, Option] = {o.key: o for o in OPTIONS}
#: settings changed only through the server (derived from another one)
DERIVED = frozenset({"sd_checkpoint_hash"})


def sections() -> list[tuple[str, list[Option]]]:
    """The Settings tab's sections in order, each with the settings it shows."""
    out: dict[str, list[Option]] = {}
    for o in OPTIONS:
        if o.ui:
            out.setdefault(o.section, []).append(o)
    return list(out.items())


def _number(opt: Option, value: Any, field: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(f"must be {opt.allowed()}, not {type(value).__name__}", field=field,
                              allowed=opt.allowed())
    if opt.kind == "int":
        if isinstance(value, float):
            if not value.is_integer():
                raise ValidationError(f"must be a whole number (got {value:g})", field=field, allowed=opt.allowed())
            value = int(value)
    else:
        value = float(value)
    if (opt.minimum is not None and value < opt.minimum) or (opt.maximum is not None and value > opt.maximum):
        raise ValidationError(f"is out of range (got {value:g})", field=field, allowed=opt.allowed())
    return value


def check_pattern(pattern: str, field: str = "samples_filename_pattern") -> str:
    """A file name pattern: known [tokens] and no path separators (files stay in their task/date folder)."""
    import re

    if any(c in pattern for c in "/\\\x00") or ".." in pattern:
        raise ValidationError("must not hold '/', '\\' or '..' (files stay in <outputs>/<task>/<date>/)",
                              field=field, allowed=SCHEMA["samples_filename_pattern"].allowed())
    for token in re.findall(r"\[([^\]]*)\]", pattern):
        if token.lower() not in FILENAME_TOKENS:
            raise ValidationError(f"unknown pattern token [{token}]", field=field,
                                  allowed=[f"[{t}]" for t in FILENAME_TOKENS])
    if len(pattern) > 200:
        raise ValidationError(f"is too long ({len(pattern)} characters)", field=field, allowed="at most 200")
    return pattern


def check_family_defaults(value: Any, field: str = "codex_family_defaults") -> dict[str, dict[str, Any]]:
    """{engine: {steps, width, height, cfg_scale, sampler, scheduler}} checked as a request would be (ranges, the
    engine's size rule, known sampler names); errors name `codex_family_defaults.<engine>.<key>`."""
    from .request import from_pydantic, validate_request

    if not isinstance(value, dict):
        raise ValidationError("must be an object of engine -> defaults", field=field,
                              allowed=SCHEMA["codex_family_defaults"].allowed())
    out: dict[str, dict[str, Any]] = {}
    for engine, values in value.items():
        where = f"{field}.{engine}"
        if engine not in EngineKey.values():
            raise ValidationError(f"unknown engine {engine!r}", field=where, allowed=EngineKey.values())
        if not isinstance(values, dict):
            raise ValidationError("must be an object", field=where, allowed=list(FAMILY_DEFAULT_KEYS))
        values = {k: v for k, v in values.items() if v not in (None, "")}
        for key in values:
            if key not in FAMILY_DEFAULT_KEYS:
                raise ValidationError("unknown key", field=f"{where}.{key}", allowed=list(FAMILY_DEFAULT_KEYS))
        if not values:
            continue
        try:
            req = validate_request({"task": "txt2img", **values})
        except ValidationError as exc:
            exc.field = f"{where}.{exc.field}"
            raise
        except Exception as exc:  # pydantic's own error type
            if hasattr(exc, "errors"):
                raise from_pydantic(exc, prefix=where) from None
            raise
        clean = req.model_dump(mode="json", exclude_unset=True)
        clean.pop("task", None)
        _check_engine_rules(engine, clean, where)
        out[engine] = clean
    return out


def _check_engine_rules(engine: str, values: dict[str, Any], where: str) -> None:
    """The engine's own size rules and sampler names, when that engine is registered."""
    from .params import parse_params
    from .registry import get_engine

    try:
        cls = get_engine(engine)
    except Exception:  # noqa: BLE001 - engines not imported (a bare core): ranges were checked
        return
    task = next((t for t in (Task.TXT2IMG, Task.TXT2VID) if t in cls.tasks), None)
    if task is None:
        return
    try:
        parse_params(engine, task, {"task": task.value, **values})
    except ValidationError as exc:
        if exc.field in FAMILY_DEFAULT_KEYS:
            exc.field = f"{where}.{exc.field}"
            exc.args = (str(exc),)
            raise
        raise


def _max_clip_skip(engine: str) -> int | None:
    from .registry import get_engine

    try:
        return getattr(get_engine(str(engine)), "max_clip_skip", None)
    except Exception:  # noqa: BLE001 - an unregistered engine: nothing to fill
        return None


def check_value(key: str, value: Any) -> Any:
    """A setting's value, checked against its schema (the ValidationError names the setting and what is
    allowed); returns the normalised value."""
    opt = SCHEMA.get(key)
    if opt is None:
        raise ValidationError("unknown setting", field=key, allowed=sorted(SCHEMA))
    if value is None and opt.nullable:
        return None
    if opt.kind == "bool":
        if not isinstance(value, bool):
            raise ValidationError(f"must be true or false, not {type(value).__name__}", field=key,
                                  allowed=opt.allowed())
        return value
    if opt.kind in ("int", "float"):
        return _number(opt, value, key)
    if not isinstance(value, (str, dict)) or (opt.kind != "family_defaults" and not isinstance(value, str)):
        raise ValidationError(f"must be {opt.allowed()}, not {type(value).__name__}", field=key,
                              allowed=opt.allowed())
    if opt.kind == "choice":
        norm = value.lower() if key in ("samples_format", "codex_video_format") else value
        if norm not in opt.choices:
            raise ValidationError(f"unknown value {value!r}", field=key, allowed=list(opt.choices))
        return norm
    if opt.kind == "pattern":
        return check_pattern(value.strip() or "[seed]", key)
    if opt.kind == "family_defaults":
        return check_family_defaults(value, key)
    return value


class SettingsStore:
    """Defaults (the schema's, then `defaults` — e.g. the server's command-line limits) under the values saved in
    `path` (JSON, written atomically). Thread-safe; `listeners` are called with the changed keys after a save."""

    def __init__(self, path: str | Path | None, *, defaults: dict[str, Any] | None = None,
                 checks: dict[str, Callable[[Any], dict[str, Any]]] | None = None) -> None:
        self.path = Path(path) if path else None
        self.defaults = {o.key: o.default for o in OPTIONS}
        self.defaults.update({k: v for k, v in (defaults or {}).items() if k in SCHEMA})
        #: extra checks per key, e.g. the server resolving `sd_model_checkpoint`; each returns the values to store
        self.checks = dict(checks or {})
        self.listeners: list[Callable[[set[str]], None]] = []
        self._lock = threading.RLock()
        self._saved: dict[str, Any] = self._load()

    # -- reading -------------------------------------------------------------------------------------------
    def _load(self) -> dict[str, Any]:
        if self.path is None or not self.path.is_file():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as exc:
            bad = self.path.with_name(f"{self.path.name}.bad-{int(time.time())}")
            log.warning("settings file %s is unreadable (%s); kept as %s, using defaults", self.path, exc, bad)
            try:
                os.replace(self.path, bad)
            except OSError:
                pass
            return {}
        out = {}
        for key, value in data.items():
            if key not in SCHEMA:
                continue
            try:
                out[key] = value if key in DERIVED else check_value(key, value)
            except ValidationError as exc:  # a hand edit gone wrong: that one setting falls back to its default
                log.warning("settings file %s: %s; using the default", self.path, exc)
        return out

    def values(self) -> dict[str, Any]:
        """Every setting: the saved value, else its default."""
        with self._lock:
            return {**self.defaults, **self._saved}

    def get(self, key: str) -> Any:
        with self._lock:
            return self._saved.get(key, self.defaults.get(key))

    def saved(self) -> dict[str, Any]:
        """Only the values saved (what differs from the defaults is what a user chose)."""
        with self._lock:
            return dict(self._saved)

    # -- writing -------------------------------------------------------------------------------------------
    def update(self, values: dict[str, Any], *, ignore_unknown: bool = True) -> set[str]:
        """Check every value first (nothing is saved when one is wrong), then save; returns the keys that changed.
        Unknown keys are ignored (A1111 clients post back the whole dict they read) unless `ignore_unknown` is
        False."""
        if not isinstance(values, dict):
            raise ValidationError("must be a JSON object of setting -> value", field="(settings)")
        clean: dict[str, Any] = {}
        for key, value in values.items():
            if key not in SCHEMA or key in DERIVED:
                if not ignore_unknown and key not in DERIVED:
                    check_value(key, value)
                continue
            clean[key] = check_value(key, value)
            if key in self.checks:
                clean.update(self.checks[key](clean[key]))
        with self._lock:
            current = self.values()
            changed = {k for k, v in clean.items() if current.get(k) != v}
            self._saved.update(clean)
            self._write()
        if changed:
            for listener in list(self.listeners):
                try:
                    listener(changed)
                except Exception:  # noqa: BLE001 - a listener must not undo a save
                    log.exception("settings listener failed")
        return changed

    def reset(self, keys: Iterable[str] | None = None) -> set[str]:
        """Back to the defaults (all settings, or `keys`)."""
        with self._lock:
            before = self.values()
            for key in list(self._saved) if keys is None else list(keys):
                self._saved.pop(key, None)
            self._write()
            changed = {k for k, v in self.values().items() if before.get(k) != v}
        for listener in list(self.listeners):
            listener(changed)
        return changed

    def _write(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(self._saved, indent=2, sort_keys=True, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, self.path)

    # -- what a job gets ------------------------------------------------------------------------------------
    def request_defaults(self, engine: str, task: Task | str, given: dict[str, Any], *,
                         allowed: Iterable[str] | None = None) -> dict[str, Any]:
        """The keys these settings fill into a request that left them out (fill-only): output format, emphasis,
        clip skip, and the family's defaults in normal mode when no preset is named. `allowed`: the keys the
        task takes."""
        from .request import TASK_KEYS

        task = Task(task)
        keys = set(TASK_KEYS[task] if allowed is None else allowed)
        v = self.values()
        patch: dict[str, Any] = {}
        fmt = v["codex_video_format"] if task.is_video else {"jpg": "jpeg"}.get(v["samples_format"],
                                                                                v["samples_format"])
        if fmt != ("mp4" if task.is_video else "png"):
            patch["output_format"] = fmt
        if v["emphasis"] != Emphasis.ORIGINAL.value:
            patch["emphasis"] = v["emphasis"]
        if int(v["CLIP_stop_at_last_layers"]) > 1:  # only where the engine has CLIP layers to skip
            top = _max_clip_skip(engine)
            if top:
                patch["clip_skip"] = min(int(v["CLIP_stop_at_last_layers"]), top)
        normal = given.get("mode") in (None, Mode.NORMAL.value) and not given.get("preset")
        if normal:
            patch.update((v["codex_family_defaults"] or {}).get(str(engine), {}))
        return {k: val for k, val in patch.items() if k in keys and k not in given}
