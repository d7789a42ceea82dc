"""Wires the rooms together for the faces: the model provider (inventory + loader + cache), the media
saver and image decoder, and the engines — so CLI, server and UI build the SAME orchestrator."""
from __future__ import annotations

import copy
import logging
import os
import threading
from pathlib import Path
from typing import Any

from sdcodex.core.errors import AmbiguousModelError, ModelNotFoundError
from sdcodex.core.orchestrator import Orchestrator
from sdcodex.core.params import Params

log = logging.getLogger("sdcodex.runtime")
#: serializes model loading between the workers of one process (see LocalModels.load)
_LOAD_LOCK = threading.Lock()

def default_outdir() -> Path:
    return Path(os.environ.get("SDCODEX_OUTPUTS_DIR", "outputs"))


class LocalModels:
    """ModelProvider over a models folder: resolves names, loads through the model cache."""

    def __init__(self, models_dir: str | Path | None = None, *, cache_size: int | None = None,
                 allow_pickle: bool = False, device: str = "cpu") -> None:
        from sdcodex.models.cache import ModelCache
        from sdcodex.models.inventory import Inventory, default_models_dir

        self.models_dir = Path(models_dir) if models_dir else default_models_dir()
        self.inventory = Inventory(self.models_dir)
        size = cache_size or int(os.environ.get("SDCODEX_MODEL_CACHE", "2"))
        self.cache = ModelCache(max_loaded=size)
        self.allow_pickle = allow_pickle
        self.device = device
        self._scanned = False
        self._lock = threading.Lock()

    def on_device(self, device: str) -> "LocalModels":
        """A provider over the same inventory with its own model cache, for another worker on `device`."""
        from sdcodex.models.cache import ModelCache

        other = copy.copy(self)
        other.cache = ModelCache(max_loaded=self.cache.max_loaded)
        other.device = device
        return other

    # -- inventory ------------------------------------------------------------------------------
    def refresh(self) -> list[Any]:
        with self._lock:
            entries = self.inventory.scan()
            self._scanned = True
            return entries

    def entries(self, kind: str | None = None, family: str | None = None) -> list[Any]:
        if not self._scanned:
            self.refresh()
        return self.inventory.entries(kind=kind, family=family)

    def checkpoints(self, family: str | None = None) -> list[Any]:
        """What a request may name as `model`: full checkpoints and bare diffusion models (the inventory's
        "checkpoint" kind covers both)."""
        return self.entries(kind="checkpoint", family=family)

    def resolve(self, ref: str | None, *, engine: str | None = None) -> Any:
        if not self._scanned:
            self.refresh()
        if ref is None:
            candidates = self.checkpoints(engine)
            if not candidates:
                where = f" of engine {engine!r}" if engine else ""
                raise ModelNotFoundError(f"no model{where} in {self.models_dir}; put checkpoints there or run "
                                         f"`sdcodex demo` to build the random-weight demo models", field="model",
                                         allowed=[e.name for e in self.checkpoints()])
            return candidates[0]
        try:
            return self.inventory.resolve(ref, kind="checkpoint")
        except ModelNotFoundError as exc:
            if isinstance(exc, AmbiguousModelError) or Path(ref).exists():
                raise  # it names the matching paths, or what the file at that path is
        self.refresh()  # a file may have been added since the last scan
        try:
            return self.inventory.resolve(ref, kind="checkpoint")
        except AmbiguousModelError:
            raise
        except ModelNotFoundError as exc:
            raise ModelNotFoundError(f"unknown model {ref!r}", field="model",
                                     allowed=[e.name for e in self.checkpoints()]) from exc

    def resolve_vae(self, ref: str | None) -> str | None:
        if not ref or ref.lower() in ("automatic", "none", "auto"):
            return None
        if Path(ref).exists():
            return str(ref)
        return str(self.inventory.resolve(ref, kind="vae").path)

    def resolve_text_encoder(self, ref: str) -> str:
        """A request's `text_encoders` entry: a path as is, else a text-encoder name from the models folder (a name of
        another kind resolves too, so the loader can refuse it naming its real kind)."""
        if Path(ref).exists():
            return str(ref)
        try:
            return str(self.inventory.resolve(ref, kind="text_encoder").path)
        except ModelNotFoundError:
            return str(self.inventory.resolve(ref, kind=None).path)

    def short_hash(self, entry: Any) -> str | None:
        try:
            return self.inventory.short_hash(entry)
        except Exception:  # hashing must never fail a generation
            log.exception("hashing %s failed", getattr(entry, "path", entry))
            return None

    def load(self, entry: Any, *, vae: str | None = None, precision: str = "auto",
             params: Params | None = None) -> Any:
        from sdcodex.models.loader import load_model

        vae_path = self.resolve_vae(vae)
        text_encoders = tuple(self.resolve_text_encoder(ref) for ref in (params.text_encoders if params else []))
        # a file detection cannot place (e.g. an unusual size) loads as the engine the request named
        family = entry.family or (params.engine if params else None)
        if params is not None and params.engine and params.engine in (getattr(entry, "compatible", ()) or ()):
            family = params.engine  # a file that fits another engine too (a Qwen-Image-Edit transformer), asked as it
        weights_dtype = str(params.weights_dtype.value) if params is not None else "auto"
        key = (str(entry.path), vae_path, precision, text_encoders, weights_dtype)

        def load() -> Any:
            # one load at a time per process: loaders build modules under process-wide patches (empty weights)
            with _LOAD_LOCK:
                return load_model(str(entry.path), family=family, vae=vae_path, precision=precision,
                                  device=self.device, allow_pickle=self.allow_pickle, models_dir=self.models_dir,
                                  text_encoders=text_encoders, weights_dtype=weights_dtype)

        return self.cache.get(key, load)


class MediaSaver:
    """Writes outputs with A1111 names and metadata under outdir/<task>/<date>/. With a settings store
    (core/settings.py) the file name pattern, JPEG/WebP quality, lossless WebP and whether infotext is written
    are read from it at each save."""

    def __init__(self, outdir: str | Path | None = None, settings: Any = None) -> None:
        self.outdir = Path(outdir) if outdir else default_outdir()
        self.settings = settings

    def _options(self) -> dict[str, Any]:
        return self.settings.values() if self.settings is not None else {}

    def _path(self, task: str, seed: int, ext: str, fields: dict[str, Any], options: dict[str, Any]) -> Path:
        from sdcodex.media.naming import expand_pattern, next_output_path

        pattern = options.get("samples_filename_pattern") or "[seed]"
        name = None if pattern == "[seed]" else expand_pattern(pattern, fields, seed=seed, task=task)
        return next_output_path(self.outdir, task, seed, ext, name=name)

    def save_image(self, image: Any, *, task: str, seed: int, fmt: str, fields: dict[str, Any],
                   request: dict[str, Any]) -> str:
        from sdcodex.media.images import save_image

        options = self._options()
        ext = {"jpeg": "jpg"}.get(fmt, fmt)
        path = self._path(task, seed, ext, fields, options)
        keep_info = options.get("enable_pnginfo", True)
        return str(save_image(image, path, fmt=fmt, infotext=self.infotext(fields) if keep_info else "",
                              request=request if keep_info else None, quality=int(options.get("jpeg_quality", 95)),
                              lossless=bool(options.get("webp_lossless", False))))

    @staticmethod
    def infotext(fields: dict[str, Any]) -> str:
        """A1111 infotext; an upscaled image keeps its source's parameters and adds the Postprocess fields,
        as A1111's Extras tab does."""
        from sdcodex.media.infotext import build_infotext

        fields = dict(fields)
        source = fields.pop("source_parameters", None)
        if not source:
            return build_infotext(fields)
        extra = ", ".join(f"{k}: {v}" for k, v in (fields.get("extra") or {}).items()
                          if k.startswith("Postprocess"))
        return f"{source.rstrip()}, {extra}" if extra else source

    def save_video(self, frames: list[Any], *, task: str, seed: int, fmt: str, fps: float,
                   fields: dict[str, Any], request: dict[str, Any], audio: Any = None) -> str:
        from sdcodex.media.video import save_video

        options = self._options()
        path = self._path(task, seed, fmt, fields, options)
        keep_info = options.get("enable_pnginfo", True)
        return str(save_video(frames, path, fps=fps, fmt=fmt, infotext=self.infotext(fields) if keep_info else "",
                              request=request if keep_info else None, audio=audio))


def load_request_image(value: str, field: str, *, allow_path: bool) -> Any:
    from sdcodex.media.imageio import load_image

    return load_image(value, field=field, allow_path=allow_path)


_PREPROCESS_LOCK = threading.Lock()


def preprocessor_modules(alias_names: bool = False) -> tuple[list[str], dict[str, Any]]:
    """(module names, per-module sliders) of the ControlNet preprocessors, as `/controlnet/module_list` answers."""
    from sdcodex.engines import preprocessors

    return preprocessors.list_modules(alias_names), preprocessors.module_details(alias_names)


def preprocessor_bounds(module: str, resolution: float | None, threshold_a: float | None,
                        threshold_b: float | None) -> tuple[int | None, float | None, float | None]:
    """The A1111 extension's lenient slider rule (out of range, e.g. -1, means the default)."""
    from sdcodex.engines import preprocessors

    return preprocessors.bound_check(module, resolution, threshold_a, threshold_b)


def preprocess(module: str, image: Any, *, resolution: int | None, threshold_a: float | None = None,
               threshold_b: float | None = None, mask: Any = None, seed: int = 0,
               models_dir: str | Path | None = None, device: str = "cpu", field: str = "module") -> Any:
    """Run one ControlNet preprocessor on a PIL image (one at a time per process); see engines/preprocessors.py."""
    from sdcodex.engines import preprocessors

    with _PREPROCESS_LOCK:
        return preprocessors.run_preprocessor(module, image, resolution=resolution or 512, threshold_a=threshold_a,
                                              threshold_b=threshold_b, mask=mask, seed=seed,
                                              models_dir=models_dir, device=device, field=field)


def quiet_libraries() -> None:
    """Our own progress bar and log lines replace Diffusers'/transformers'/hub's tqdm bars and notices."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        import diffusers.utils.logging as dlog
        import transformers.utils.logging as tlog

        dlog.disable_progress_bar()
        dlog.set_verbosity_error()
        tlog.disable_progress_bar()
        tlog.set_verbosity_error()
    except ImportError:  # pragma: no cover
        pass


def build_orchestrator(models_dir: str | Path | None = None, outdir: str | Path | None = None, *,
                       allow_paths: bool = False, allow_pickle: bool = False, device: str | None = None,
                       models: LocalModels | None = None, save: bool = True,
                       offload: str | None = None, attention: str | None = None, compile: bool | None = None,
                       settings: Any = None,
                       styles_file: str | Path | None = None) -> Orchestrator:
    """The orchestrator every face uses. `allow_paths`: image fields may be file paths (CLI only); `settings`:
    the server's settings store (core/settings.py), read by the orchestrator and the saver; `styles_file`: the
    styles.csv a request's `styles` names (default: `default_styles_file()`); `attention` (env SDCODEX_ATTENTION) and
    `compile` (env SDCODEX_COMPILE=1): the worker's attention backend and regional compile (engines/speed.py) — a
    backend this device cannot run is a ValidationError naming --attention."""
    from sdcodex.core.styles import StyleStore

    import sdcodex.engines  # noqa: F401  (registers the engines)

    quiet_libraries()
    device = device or os.environ.get("SDCODEX_DEVICE") or _default_device()
    models = models or LocalModels(models_dir, allow_pickle=allow_pickle, device=device)
    _set_cpu_threads(device)
    attention = attention or os.environ.get("SDCODEX_ATTENTION") or None
    if compile is None:
        compile = os.environ.get("SDCODEX_COMPILE", "").lower() in ("1", "true", "yes", "on")
    if attention:
        from sdcodex.engines.speed import check_attention

        check_attention(attention, device, field="--attention")  # a worker that cannot run it does not start
    from sdcodex.media.grid import draw_xyz_grid

    orchestrator = Orchestrator(models, MediaSaver(outdir, settings) if save else None, grid_drawer=draw_xyz_grid,
                                image_loader=lambda value, field: load_request_image(value, field,
                                                                                     allow_path=allow_paths),
                                device=device, offload=offload or os.environ.get("SDCODEX_OFFLOAD") or None,
                                attention=attention, compile=compile,
                                settings=settings)
    orchestrator.styles = StyleStore(styles_file or default_styles_file())
    from sdcodex.engines.speed import check_request

    orchestrator.param_checks.append(check_request)
    return orchestrator


def default_styles_file(data_dir: str | Path | None = None) -> Path:
    """$SDCODEX_STYLES_FILE, else styles.csv in the data folder (`data_dir`, $SDCODEX_DATA_DIR or ./data)
    — beside the job database, as A1111 keeps styles.csv beside its settings."""
    env = os.environ.get("SDCODEX_STYLES_FILE")
    if env:
        return Path(env).expanduser().absolute()
    base = data_dir or os.environ.get("SDCODEX_DATA_DIR") or "data"
    return Path(base).expanduser().absolute() / "styles.csv"


def cpu_threads(env: dict[str, str] | None = None, affinity: set[int] | None = None) -> int:
    """Threads for a CPU worker: SDCODEX_THREADS, else OMP_NUM_THREADS, else the cores this process may run on
    (its CPU affinity: a container or `taskset` share, not the machine's count)."""
    env = os.environ if env is None else env
    for key in ("SDCODEX_THREADS", "OMP_NUM_THREADS"):
        value = env.get(key, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    if affinity is None:
        affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    return max(1, len(affinity))


def _set_cpu_threads(device: str) -> None:
    import torch

    if torch.device(device).type == "cpu":
        threads = cpu_threads()
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
            logging.getLogger("sdcodex").info("cpu worker: %d threads", threads)


def parse_devices(spec: str | list[str] | None) -> list[str]:
    """`--devices`: "cpu,cpu", "cuda:0,cuda:1" or "auto" (every CUDA device, else one CPU) -> one device per
    worker. ValidationError naming `devices` for an empty list or a name torch does not know."""
    from sdcodex.core.errors import ValidationError

    items = [d.strip() for d in (spec.split(",") if isinstance(spec, str) else list(spec or [])) if d.strip()]
    if items == ["auto"]:
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return [f"cuda:{i}" for i in range(count)] or ["cpu"]
    if not items:
        raise ValidationError("give at least one device", field="devices", allowed=["auto", "cpu", "cuda:N"])
    import torch

    for item in items:
        try:
            torch.device(item)
        except (RuntimeError, ValueError) as exc:
            raise ValidationError(f"unknown device {item!r}: {exc}", field="devices",
                                  allowed=["auto", "cpu", "cuda", "cuda:N", "mps"]) from exc
    return items


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
