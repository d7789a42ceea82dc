"""The one path from a raw request to saved outputs: validate → resolve model → preset fill →
parse_params → engine.run → save, with stage timings, events and a complete `info`."""
from __future__ import annotations

import copy
import logging
import resource
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from .engine import EngineInterface, EngineOutput
from .enums import EngineKey, Mode, Task
from .errors import CodexError, EngineError, ValidationError
from .events import EventSink
from .logs import log_job
from .params import ImageLoader, Params, check_model_limits, parse_params
from .presets import fill, find_preset
from .registry import get_engine
from .request import validate_request
from .styles import apply_styles, pick

log = logging.getLogger("sdcodex.orchestrator")


class ModelProvider(Protocol):
    """What the orchestrator needs from the model room (implemented in sdcodex.runtime)."""

    def resolve(self, ref: str | None, *, engine: str | None) -> Any: ...  # entry with name, path, family, title
    def load(self, entry: Any, *, vae: str | None, precision: str, params: Params) -> Any: ...
    def short_hash(self, entry: Any) -> str | None: ...


class Saver(Protocol):
    def save_image(self, image: Any, *, task: str, seed: int, fmt: str, fields: dict[str, Any],
                   request: dict[str, Any]) -> str: ...
    def save_video(self, frames: list[Any], *, task: str, seed: int, fmt: str, fps: float,
                   fields: dict[str, Any], request: dict[str, Any], audio: Any = None) -> str: ...


@dataclass
class Result:
    images: list[str] = field(default_factory=list)      # saved image paths
    videos: list[str] = field(default_factory=list)      # saved video paths
    pil_images: list[Any] = field(default_factory=list)  # in-memory images, same order as `images`
    frames: list[list[Any]] = field(default_factory=list)
    audio: list[Any] = field(default_factory=list)        # (waveform, sample rate) or None per video, as the engine's
    info: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"images": self.images, "videos": self.videos, "info": self.info}


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def _peak_vram_mb() -> float | None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return None


class Orchestrator:
    """Every face calls `run()`; nothing else talks to engines."""

    def __init__(self, models: ModelProvider, saver: Saver | None = None, *,
                 image_loader: ImageLoader | None = None, device: str = "cpu",
                 default_model: Callable[[], str | None] | None = None, offload: str | None = None,
                 attention: str | None = None, compile: bool = False,
                 grid_drawer: Callable[..., Any] | None = None, settings: Any = None) -> None:
        self.models = models
        #: draws the X/Y/Z plot's grid (media.grid.draw_xyz_grid; core draws nothing itself)
        self.grid_drawer = grid_drawer
        #: the settings store (core/settings.py): fills output format, emphasis, clip skip and per-family
        #: defaults a request leaves out, before the preset (`info.applied_settings` says what it filled)
        self.settings = settings
        #: the server's offload policy (--offload): auto|none|model|group|sequential; a request's `offload` wins
        self.offload = offload
        #: the server's attention backend (--attention; a request's `attention` wins) and --compile
        self.attention = attention
        self.compile = compile
        #: checks of the parsed params that need this worker's device or packages (runtime adds the attention
        #: backend's); each raises ValidationError naming the field, so a server answers 422 at submission
        self.param_checks: list[Callable[[Params, str], None]] = []
        self.saver = saver
        self.image_loader = image_loader
        self.device = device
        self.default_model = default_model
        #: the prompt styles a request's `styles` names (a StyleStore); None: no styles file
        self.styles: Any = None

    # -- steps ---------------------------------------------------------------------------------
    def prepare(self, raw: dict[str, Any]) -> tuple[Any, type[EngineInterface], dict[str, Any], dict[str, Any],
                                                     Params, list[str]]:
        """Validate, resolve the model and engine, fill from the preset, parse params. No generation.
        For an X/Y/Z plot every cell is prepared, and the first cell's values are returned."""
        if isinstance(raw, dict) and raw.get("xyz") is not None:
            return self.prepare_plot(raw)[1][0]
        req = validate_request(raw)
        data = req.model_dump(mode="json", exclude_unset=True)
        styles = self._apply_styles(data)
        warnings: list[str] = []
        entry = None
        if req.task is Task.UPSCALE and not req.model:
            engine_key = EngineKey(req.engine) if req.engine else "upscale"  # the checkpoint-less upscale engine
        else:
            ref = req.model or (self.default_model() if self.default_model else None)
            entry = self.models.resolve(ref, engine=req.engine.value if req.engine else None)
            family = EngineKey(entry.family) if entry.family else None
            fits = tuple(EngineKey(f) for f in getattr(entry, "compatible", ()) or ())
            if req.engine and family and req.engine != family and req.engine not in fits:
                raise ValidationError(f"model {entry.name!r} is a {family.value} model, not {req.engine.value}",
                                      field="engine", allowed=[family.value])
            engine_key = req.engine or family
            if engine_key is None:
                raise ValidationError(f"cannot tell which engine model {entry.name!r} needs; give 'engine'",
                                      field="engine", allowed=EngineKey.values())
        engine_key_value = getattr(engine_key, "value", engine_key)
        engine_cls = get_engine(engine_key_value)
        engine_key = engine_cls.key
        mode = (req.mode or Mode.NORMAL).value
        mode_reason = self._mode_ignored_reason(engine_cls, mode, entry, data)
        if mode_reason:
            warnings.append(f"mode {mode!r} ignored: {mode_reason}")
            mode = Mode.NORMAL.value
            data["mode"] = mode
        applied = (self.settings.request_defaults(engine_key.value, req.task, data)
                   if self.settings is not None else {})
        data = {**applied, **data}
        preset, preset_warnings = find_preset(engine_key.value, mode, req.task.value, name=req.preset)
        warnings += preset_warnings
        filled = fill(data, preset)
        params = parse_params(engine_key, req.task, filled.data, image_loader=self.image_loader)
        if entry is not None:
            check_model_limits(params, engine_cls.model_limits(entry), entry.name)
        warnings += engine_cls.check_params(params)
        for check in self.param_checks:
            check(params, self.device)
        meta = {"preset": filled.preset_id, "applied_preset_patch": filled.patch, "mode_ignored_reason": mode_reason,
                "applied_settings": applied, "styles": styles}
        return entry, engine_cls, filled.data, meta, params, warnings

    def prepare_plot(self, raw: dict[str, Any], *, transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None
                     ) -> tuple[Any, list[tuple]]:
        """An X/Y/Z plot request (`xyz`): its plan and every cell prepared (core/xyz_run.py)."""
        from .xyz_run import prepare_plot

        return prepare_plot(self, raw, transform=transform)

    def run(self, raw: dict[str, Any], *, events: EventSink | None = None, job_id: str | None = None) -> Result:
        t0 = time.perf_counter()
        events = events or EventSink()
        if isinstance(raw, dict) and raw.get("xyz") is not None:  # an X/Y/Z plot: one job over its cells
            from .xyz_run import run_plot

            return run_plot(self, raw, events=events, job_id=job_id)
        entry, engine_cls, filled, meta, params, warnings = self.prepare(raw)
        timings: dict[str, float] = {}
        t = time.perf_counter()
        model = None
        if entry is not None:
            model = self.models.load(entry, vae=params.vae, precision=params.precision.value, params=params)
        timings["load"] = time.perf_counter() - t
        engine = engine_cls(model, device=self.device)
        engine.provider = self.models  # engines find LoRAs, embeddings and upscalers through it
        engine.server_offload = self.offload
        engine.server_attention = self.attention
        engine.server_compile = self.compile
        warnings += engine.validate(params)
        effective_request = copy.deepcopy(filled)
        effective_request["seed"] = params.seed
        effective_request["engine"] = engine_cls.key.value
        if entry is not None:
            effective_request["model"] = entry.name
        log.info("job start engine=%s task=%s model=%s preset=%s patch=%s", engine_cls.key.value,
                 params.task.value, entry.name if entry else None, meta["preset"], meta["applied_preset_patch"])
        events.emit("start", engine=engine_cls.key.value, task=params.task.value, images=params.images_total)
        try:
            out: EngineOutput = engine.run(params, events)
        except CodexError:
            raise
        except Exception as exc:  # an engine bug or a library error: name it, keep the server alive
            log.exception("engine %s failed", engine_cls.key.value)
            raise EngineError(f"{engine_cls.key.value} {params.task.value} failed: {type(exc).__name__}: {exc}") from exc
        timings.update(out.timings)
        warnings += out.warnings
        if params.batch_index is not None:  # the batch was re-made for one of its images: keep that one
            keep = slice(params.batch_index, params.batch_index + 1)
            out.images, out.videos, out.seeds = out.images[keep], out.videos[keep], out.seeds[keep]

        model_hash = self.models.short_hash(entry) if entry is not None else None
        info: dict[str, Any] = {
            "engine": engine_cls.key.value,
            "task": params.task.value,
            "model": entry.name if entry else None,
            "model_hash": model_hash,
            **({"model_architecture": arch} if (arch := (getattr(model, "variant", None) or {}).get("architecture"))
               else {}),
            "mode": params.mode.value,
            "seeds": out.seeds,
            "sampler_in": raw.get("sampler"),
            "scheduler_in": raw.get("scheduler"),
            "sampler_effective": out.info.get("sampler_effective"),
            "scheduler_effective": out.info.get("scheduler_effective"),
            "preset": meta["preset"],
            "applied_preset_patch": meta["applied_preset_patch"],
            "applied_settings": meta["applied_settings"],
            "mode_ignored_reason": meta["mode_ignored_reason"],
            **({"styles": meta["styles"]} if meta["styles"] else {}),
            "warnings": warnings,
            "interrupted": out.interrupted,
            "skipped": out.skipped,
            **{k: v for k, v in out.info.items()
               if k not in ("sampler_effective", "scheduler_effective", "warnings", "infotext_extra")},
            "request": effective_request,
        }
        weights = (getattr(model, "variant", None) or {}).get("weights") if model is not None else None
        if weights:
            info["weights"] = weights
        fields = self._infotext_fields(params, {**info, "infotext_extra": out.info.get("infotext_extra")}, entry)
        result = Result(pil_images=list(out.images), frames=list(out.videos), audio=list(out.audio), info=info)
        t = time.perf_counter()
        if self.saver is not None:
            for image, seed in zip(out.images, out.seeds):
                req_i, fields_i = self._member(params, effective_request, fields, seed)
                result.images.append(self.saver.save_image(image, task=params.task.value, seed=seed,
                                                            fmt=params.output_format.value,
                                                            fields=fields_i, request=req_i))
            tracks = list(out.audio) + [None] * (len(out.videos) - len(out.audio))
            for frames, seed, track in zip(out.videos, out.seeds[len(out.images):] or out.seeds, tracks):
                req_i, fields_i = self._member(params, effective_request, fields, seed)
                fmt = params.output_format.value if params.output_format.value in ("mp4", "webm", "gif", "webp") else "mp4"
                sound: dict[str, Any] = {}
                if track is not None and fmt in ("mp4", "webm"):
                    sound["audio"] = track
                elif track is not None and not any(w.startswith("audio dropped") for w in warnings):
                    warnings.append(f"audio dropped: {fmt} holds frames only (mp4 and webm keep the sound track)")
                result.videos.append(self.saver.save_video(frames, task=params.task.value, seed=seed, fmt=fmt,
                                                           fps=params.fps or 8.0, fields=fields_i,
                                                           request=req_i, **sound))
        timings["save"] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - t0
        metrics: dict[str, Any] = {k: round(v, 4) for k, v in timings.items()}
        metrics["peak_rss_mb"] = _peak_rss_mb()
        metrics["peak_vram_mb"] = _peak_vram_mb()
        if "it_per_s" in out.info:
            metrics["it_per_s"] = out.info["it_per_s"]
        info["metrics"] = metrics
        info["infotext_fields"] = fields
        log_job(log, job_id or uuid.uuid4().hex[:12], {
            "engine": info["engine"], "task": info["task"], "model": info["model"], "preset": info["preset"],
            "preset_keys": sorted(info["applied_preset_patch"]), "applied_preset_patch": info["applied_preset_patch"],
            "sampler_in": info["sampler_in"], "sampler_effective": info["sampler_effective"],
            "scheduler_in": info["scheduler_in"], "scheduler_effective": info["scheduler_effective"],
            "timings": {k: v for k, v in metrics.items() if isinstance(v, float)},
            "images": len(result.images), "videos": len(result.videos), "warnings": warnings})
        events.emit("done", images=len(out.images), videos=len(out.videos), interrupted=out.interrupted)
        return result

    def _apply_styles(self, data: dict[str, Any]) -> list[str]:
        """Expand the request's `styles` into its prompts (A1111's rule, see core.styles) and drop the key, so
        the effective request and the infotext carry the expanded prompts; the names applied."""
        names = data.pop("styles", None) or []
        if not names:
            return []
        known = self.styles.all() if self.styles is not None else {}
        chosen = pick(names, known)
        data["prompt"], data["negative_prompt"] = apply_styles(data.get("prompt") or "",
                                                               data.get("negative_prompt") or "", chosen)
        if not data["negative_prompt"]:
            del data["negative_prompt"]
        return list(names)

    @staticmethod
    def _mode_ignored_reason(engine_cls: type, mode: str, entry: Any, data: dict[str, Any]) -> str | None:
        """Why a fast mode cannot apply (the engine does not know it, or the model is not distilled for it)."""
        if mode == Mode.NORMAL.value:
            return None
        if Mode(mode) not in engine_cls.modes:
            return (f"engine {engine_cls.key.value!r} has no mode {mode!r} "
                    f"(it has: {', '.join(sorted(m.value for m in engine_cls.modes))})")
        check = getattr(engine_cls, "mode_ignored_reason", None)
        return check(mode, entry, data) if check is not None else None

    @staticmethod
    def _member(params: Params, request: dict[str, Any], fields: dict[str, Any],
                seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """The request and infotext fields stored with one image of the job: its own seed, and for a member of a
        batch the batch size and its position (a batch runs the model on all its images at once, so the same image
        alone differs in the last bits; `batch_index` re-makes the batch and keeps this one)."""
        req = {**request, "seed": seed, "batch_size": 1, "batch_count": 1}
        req.pop("batch_index", None)
        # an upscale uses no seed: its infotext records none (the file name still carries one)
        fields = {**fields, "seed": seed} if params.task is not Task.UPSCALE else dict(fields)
        extras = params.batch_extras(seed)
        if extras:
            req.update(batch_size=params.batch_size, batch_index=extras["Batch pos"])
            fields["extra"] = {**(fields.get("extra") or {}), **extras}
        return req, fields

    @staticmethod
    def _infotext_fields(params: Params, info: dict[str, Any], entry: Any) -> dict[str, Any]:
        """The values A1111's infotext shows, in our native names (media builds the text)."""
        if params.task is Task.UPSCALE:
            size = info.get("output_size") or [None, None]
            source = (getattr(params.init_image, "info", None) or {}).get("parameters")
            return {"width": size[0], "height": size[1], "extra": dict(info.get("infotext_extra") or {}),
                    "source_parameters": source if isinstance(source, str) else None}
        fields: dict[str, Any] = {
            "prompt": params.prompt,
            "negative_prompt": params.negative_prompt,
            "steps": params.steps,
            "sampler": info.get("sampler_effective") or params.sampler,
            "scheduler": info.get("scheduler_effective") or params.scheduler,
            "cfg_scale": params.cfg_scale,
            "width": params.width,
            "height": params.height,
            "model_hash": info.get("model_hash"),
            "model": entry.name if entry else None,
            "clip_skip": params.clip_skip,
            "emphasis": params.emphasis.value,
            "extra": dict(info.get("infotext_extra") or {}),
        }
        if params.task in (Task.IMG2IMG, Task.INPAINT):
            fields["denoising_strength"] = params.denoising_strength
        if params.task is Task.INPAINT:
            fields["mask_blur"] = params.mask_blur
        if params.vae:
            fields["vae"] = params.vae
        fields.update(info.get("infotext_native") or {})  # engine-added native keys: hires_*, lora/ti hashes
        if params.task.is_video:  # what a video was made with: its frame count, rate and flow shift
            fields["extra"].setdefault("Frames", params.num_frames)
            fields["extra"].setdefault("FPS", params.fps or 8.0)
            shift = params.flow_shift if params.flow_shift is not None else info.get("flow_shift")
            if shift is not None:
                fields["extra"].setdefault("Flow shift", shift)
        fields["extra"].setdefault("Engine", params.engine.value)
        if params.mode is not Mode.NORMAL:
            fields["extra"].setdefault("Mode", params.mode.value)
        return fields
