"""The `upscale` task engine: an engine without a checkpoint that upscales `init_image` with a named upscaler
(built-in Lanczos/Nearest/None, the packaged Real-ESRGAN models, or an upscaler file from the models folder)
by `scale` or to `resize_x` x `resize_y`, tiled, with one progress event per tile.

`{"task": "upscale", "init_image": ..., "upscaler": "R-ESRGAN 4x+", "scale": 2.5}` runs through the
orchestrator like any generation; the work itself is `upscale_ops.upscale_image`.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sdcodex.core.engine import EngineInterface, EngineOutput
from sdcodex.core.enums import StrEnum, Task
from sdcodex.core.errors import CodexError, InterruptedError_, ValidationError
from sdcodex.core.events import EventSink, Interrupted, Skipped
from sdcodex.core.params import Params
from sdcodex.core.registry import ENGINES

DEFAULT_UPSCALER = "R-ESRGAN 4x+"


class ToolKey(StrEnum):
    """Keys of engines that are tools rather than model families (not request `engine` values)."""

    UPSCALE = "upscale"


def upscaler_names(provider: Any) -> list[str]:
    """Every upscaler a request may name: built-ins, packaged Real-ESRGAN, files in the models folder."""
    from sdcodex.models.upscalers import builtin_upscalers

    return [info.name for info in builtin_upscalers(_files(provider))]


def _files(provider: Any) -> list[tuple[str, Path]]:
    entries = []
    if provider is not None and hasattr(provider, "entries"):
        try:
            entries = provider.entries(kind="upscaler")
        except CodexError:
            entries = []
    return [(e.name, Path(e.path)) for e in entries]


def load_named_upscaler(provider: Any, name: str, device: str = "cpu", *, field: str = "upscaler") -> Any:
    """Load an upscaler by A1111 name, models-folder file name, or path (loaded models are cached)."""
    from sdcodex.models.upscalers import PACKAGED, RESIZE_ONLY, load_upscaler

    models_dir = getattr(provider, "models_dir", None)
    allow_pickle = bool(getattr(provider, "allow_pickle", False))
    target: str | Path = name
    if name not in RESIZE_ONLY and name not in PACKAGED:
        files = dict(_files(provider))
        if name in files:
            target = files[name]
        elif not Path(name).is_file():
            raise ValidationError(f"unknown upscaler {name!r}", field=field, allowed=upscaler_names(provider))
    cache: dict[Any, Any] = provider.__dict__.setdefault("_upscalers", {}) if provider is not None else {}
    key = (str(target), str(device))
    if key not in cache:
        try:
            cache[key] = load_upscaler(target, device, models_dir=models_dir, allow_pickle=allow_pickle)
        except CodexError as exc:
            if exc.field in (None, "upscaler"):
                exc.field = field
            raise
        while len(cache) > 2:
            cache.pop(next(iter(cache)))
    return cache[key]


@ENGINES.register("upscale", "upscaler", "extras")
class UpscaleEngine(EngineInterface):
    key = ToolKey.UPSCALE  # type: ignore[assignment]
    label = "Upscale"
    tasks = frozenset({Task.UPSCALE})
    defaults = {"upscaler": DEFAULT_UPSCALER, "tile_size": 192, "tile_overlap": 16}
    provider: Any = None

    def validate(self, params: Params) -> list[str]:
        from .upscale_ops import MAX_SCALE

        if params.scale is not None and not 0 < params.scale <= MAX_SCALE:
            raise ValidationError(f"{params.scale:g} is out of range", field="scale",
                                  allowed=f"> 0 and <= {MAX_SCALE:g}")
        if params.init_image is not None and params.resize_x and params.resize_y:
            w, h = params.init_image.size
            if params.resize_x > w * MAX_SCALE or params.resize_y > h * MAX_SCALE:
                raise ValidationError(f"{params.resize_x}x{params.resize_y} is more than {MAX_SCALE:g}x the "
                                      f"{w}x{h} image", field="resize_x", allowed=f"up to {MAX_SCALE:g}x per side")
        return []

    def run(self, params: Params, events: EventSink) -> EngineOutput:
        from .upscale_ops import upscale_image

        out = EngineOutput()
        name = params.upscaler or DEFAULT_UPSCALER
        t = time.perf_counter()
        model = load_named_upscaler(self.provider, name, self.device)
        out.timings["load_upscaler"] = time.perf_counter() - t
        planned = {"done": False}

        def progress(done: int, total: int) -> None:
            if not planned["done"]:  # upscale_image announces (0, total) before the first tile: rates are real
                events.plan(total)
                planned["done"] = True
            if done:
                events.step(done, total, stage="upscale")

        resize_to = (params.resize_x, params.resize_y) if params.resize_x and params.resize_y else None
        t = time.perf_counter()
        try:
            image = upscale_image(params.init_image, model, scale=None if resize_to else params.scale,
                                  resize_to=resize_to, tile_size=params.tile_size, tile_overlap=params.tile_overlap,
                                  progress=progress, should_stop=lambda: events.control.interrupted)
        except (Interrupted, InterruptedError_):
            out.interrupted = True
            events.emit("interrupted", kept=0)
            return out
        except Skipped:
            out.skipped = 1
            return out
        out.timings["upscale"] = time.perf_counter() - t
        out.images.append(image)
        out.seeds.append(params.seed)
        w, h = params.init_image.size
        out.info.update(upscaler=model.name, upscaler_scale=model.scale, architecture=model.architecture,
                        input_size=[w, h], output_size=list(image.size),
                        infotext_extra={"Postprocess upscaler": model.name,
                                        "Postprocess upscale by": round(image.size[0] / w, 4)})
        return out
