"""What every API face of the server shares: settings, the ONE orchestrator, the model provider, the job
store/queue/worker, the persisted A1111-style options, and job submission (validate, resolve the model,
apply limits, persist) — so the native, A1111 and OpenAI routes differ only in their shapes."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdcodex.core.errors import CodexError, ModelNotFoundError, ValidationError
from sdcodex.core.settings import SETTINGS_NAME, SettingsStore, check_value
from sdcodex.jobs import Job, JobQueue, JobStore, LocalExecutor, Worker, WorkerPool
from sdcodex.media.outputs import MEDIA_SUFFIXES, OutputsFolder  # the outputs route serves media files only

from .checks import NameChecker, check_unicode, confine, prompt_texts
from .limits import (DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_FRAMES, DEFAULT_MAX_IMAGE_PIXELS, DEFAULT_MAX_IMAGES,
                     DEFAULT_MAX_OUTPUT_PIXELS, DEFAULT_MAX_PROMPT_BYTES, DEFAULT_MAX_STEPS, check_job_size,
                     check_prompt_size, image_loader)

log = logging.getLogger("sdcodex.server")

OPTIONS_KEY = "a1111_options"
DB_NAME = "jobs.sqlite"


@dataclass
class ServerSettings:
    """Everything `create_app` needs. `models` may be a ready LocalModels (tests share one)."""

    models_dir: str | None = None
    outdir: str | None = None
    data_dir: str | None = None            # job database; default: a `data` folder beside the outputs folder
    db_path: str | None = None
    styles_file: str | None = None         # A1111 styles.csv; default: $SDCODEX_STYLES_FILE, else <data dir>/styles.csv
    host: str = "127.0.0.1"
    port: int = 7860
    api_auth: list[tuple[str, str]] = field(default_factory=list)
    api_tokens: list[str] = field(default_factory=list)
    insecure_no_auth: bool = False
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    max_output_pixels: int | None = DEFAULT_MAX_OUTPUT_PIXELS  # width x height x frames x images; 0/None: none
    max_steps: int | None = DEFAULT_MAX_STEPS
    max_frames: int | None = DEFAULT_MAX_FRAMES
    max_images: int | None = DEFAULT_MAX_IMAGES    # batch_size x batch_count
    max_prompt_bytes: int | None = DEFAULT_MAX_PROMPT_BYTES
    allowed_hosts: list[str] = field(default_factory=list)   # Host names accepted besides the bound address
    sync_timeout: float | None = None      # A1111/OpenAI sync routes: give up waiting after this (504)
    device: str | None = None
    devices: list[str] | None = None       # one worker per entry ("cpu,cpu", "cuda:0,cuda:1"); see runtime.parse_devices
    offload: str | None = None             # auto|none|model|group|sequential (a request's `offload` wins)
    attention: str | None = None           # attention backend of every worker (a request's `attention` wins)
    compile: bool | None = None            # regional torch.compile of the denoisers (None: env SDCODEX_COMPILE)
    backend: str = "local"                 # local: workers in this process | ray: Ray Serve replicas (ray_backend.py)
    ray_address: str | None = None         # join this Ray cluster; None: start a local Ray instance
    replicas: int = 1                      # Ray Serve replicas of the orchestrator
    models_per_replica: int = 2            # models one replica keeps loaded (@serve.multiplexed, LRU)
    ray_gpus_per_replica: float = 0.0      # ray_actor_options num_gpus of each replica
    ray_cpus_per_replica: float = 1.0      # ray_actor_options num_cpus of each replica
    ray_models_dir: str | None = None      # the models folder as replicas see it (default: this server's)
    start_worker: bool = True
    max_bypass: int = 3
    max_attempts: int = 3
    models: Any = None

    def resolved_outdir(self) -> Path:
        return Path(self.outdir or os.environ.get("SDCODEX_OUTPUTS_DIR", "outputs")).absolute()

    def resolved_data_dir(self) -> Path:
        given = self.data_dir or os.environ.get("SDCODEX_DATA_DIR")
        return Path(given).expanduser().absolute() if given else self.resolved_outdir().parent / "data"

    def resolved_styles_file(self) -> Path:
        from sdcodex.runtime import default_styles_file

        if self.styles_file:
            return Path(self.styles_file).expanduser().absolute()
        return default_styles_file(self.resolved_data_dir())

    def resolved_db(self) -> Path:
        """--db / $SDCODEX_DB, else <data dir>/jobs.sqlite. A database left by an older version inside the
        outputs folder (where the outputs route could serve it) is moved there once."""
        if self.db_path:
            return Path(self.db_path).absolute()
        env = os.environ.get("SDCODEX_DB")
        if env:
            return Path(env).absolute()
        db = self.resolved_data_dir() / DB_NAME
        migrate_db(self.resolved_outdir() / DB_NAME, db)
        return db


def migrate_db(old: Path, new: Path) -> None:
    """Move an SQLite database (with its -wal/-shm files) from `old` to `new` when only the old one exists."""
    if new.exists() or not old.is_file():
        return
    new.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        src = old.with_name(old.name + suffix)
        if src.exists():
            os.replace(src, new.with_name(new.name + suffix))
    log.warning("moved the job database out of the outputs folder: %s -> %s", old, new)


def default_options() -> dict[str, Any]:
    """The settings this server knows with their schema defaults (core/settings.py); others posted by clients are
    ignored."""
    from sdcodex.core.settings import OPTIONS

    return {o.key: o.default for o in OPTIONS}


class CodexService:
    """The server's state. `start()` recovers the queue and starts the worker; `stop()` ends both."""

    def __init__(self, settings: ServerSettings) -> None:
        from sdcodex.runtime import LocalModels, build_orchestrator, parse_devices

        self.settings = settings
        self.outdir = settings.resolved_outdir()
        self.outdir.mkdir(parents=True, exist_ok=True)
        devices = parse_devices(settings.devices) if settings.devices else [None]
        device = devices[0] or settings.device or os.environ.get("SDCODEX_DEVICE") or None
        self.models = settings.models or LocalModels(settings.models_dir, device=device or "cpu")
        db = settings.resolved_db()
        self.store = JobStore(db)
        self.options_store = self._open_options(db.parent / SETTINGS_NAME)
        #: the outputs browser's view of the outputs folder; deleted files go to a trash beside the job database
        self.outputs = OutputsFolder(self.outdir, db.parent / "trash")
        #: one orchestrator per device (each with its own model cache); the first also validates submissions
        self.orchestrators = [build_orchestrator(models=self.models if i == 0 else self.models.on_device(dev),
                                                 outdir=self.outdir, device=dev or device, offload=settings.offload,
                                                 attention=settings.attention, compile=settings.compile,
                                                 settings=self.options_store,
                                                 styles_file=settings.resolved_styles_file())
                              for i, dev in enumerate(devices)]
        for orchestrator in self.orchestrators:
            orchestrator.styles = self.orchestrators[0].styles  # one styles.csv, one store
            orchestrator.image_loader = image_loader(settings.max_image_pixels)
            orchestrator.default_model = self.default_model_ref
        self.orchestrator = self.orchestrators[0]
        #: the prompt styles (styles.csv) requests name in `styles`; the UI and /api/v1/styles edit it
        self.styles = self.orchestrator.styles
        self.device = self.orchestrator.device
        self.queue = JobQueue(self.store, max_bypass=settings.max_bypass)
        self.backend: Any = None
        if settings.backend == "ray":
            from .ray_backend import RayBackend

            self.backend = RayBackend(settings, models_dir=self.models.models_dir, orchestrator=self.orchestrator)
            executors, listing = self.backend.executors(), self.backend.listing
        elif settings.backend == "local":
            executors, listing = [LocalExecutor(o) for o in self.orchestrators], None
        else:
            raise ValidationError("must be local or ray", field="backend", allowed=["local", "ray"])
        #: the faces' one handle on the workers (interrupt, skip, previews, listing), whatever runs the jobs
        self.worker = WorkerPool(self.queue, [Worker(self.queue, ex, outdir=self.outdir, name=f"worker-{i}",
                                                     preview_every=self.preview_every)
                                              for i, ex in enumerate(executors)], listing=listing)
        self.recovered: tuple[list[str], list[str]] = ([], [])

    # -- life cycle ----------------------------------------------------------------------------
    def start(self) -> None:
        self.recovered = self.store.recover(max_attempts=self.settings.max_attempts)
        if self.recovered[0]:
            log.warning("re-queued %d job(s) that were running when the server stopped", len(self.recovered[0]))
        if self.backend is not None:
            self.backend.start()
        if self.settings.start_worker:
            self.worker.start()

    def stop(self) -> None:
        self.worker.stop()
        if self.backend is not None:
            self.backend.close()
        self.store.close()

    # -- models --------------------------------------------------------------------------------
    def loaded_model_paths(self) -> set[str]:
        """Model paths some worker (or replica) holds loaded."""
        return {m for w in self.worker.listing() for m in w.get("models") or ()}

    def checkpoints(self) -> list[Any]:
        return list(self.models.checkpoints())

    def network_cards(self, kind: str, *, with_metadata: bool = True) -> list[dict[str, Any]]:
        """Extra networks of one kind (checkpoint, lora, embedding, vae) as cards: header metadata, trigger words,
        whether a preview exists, what a click inserts (see models.networks)."""
        from sdcodex.models.networks import cards

        self.models.entries()  # scans once if needed
        return cards(self.models.inventory, kind, with_metadata=with_metadata)

    def network_preview(self, kind: str, name: str) -> Path | None:
        """The preview image file of an inventory entry, or None."""
        from sdcodex.models.networks import find_preview

        self.models.entries()
        return find_preview(self.models.inventory, kind, name)

    def find_model(self, ref: str, field: str = "model") -> Any:
        """A checkpoint by name, file name, A1111 title, hash or a path inside the models folder;
        ModelNotFoundError lists names."""
        if not isinstance(ref, str) or not ref.strip():
            raise ValidationError("must be a model name or title", field=field,
                                  allowed=[e.name for e in self.checkpoints()])
        return self.models.resolve(confine(ref.strip(), self.models.models_dir, field))

    @staticmethod
    def title(entry: Any) -> str:
        try:
            return entry.title
        except Exception:  # noqa: BLE001 - no hash available: the bare file name
            return getattr(entry, "filename", entry.name)

    def default_model_ref(self) -> str | None:
        """The A1111 option sd_model_checkpoint, when set and still present."""
        ref = self.options().get("sd_model_checkpoint")
        if not ref:
            return None
        try:
            return str(self.find_model(ref).path)
        except ModelNotFoundError:
            return None

    def preview_every(self) -> int:
        """Steps between live previews from the A1111 options (`live_previews_enable`,
        `show_progress_every_n_steps`; -1 there means "at the end only", which is no live preview)."""
        options = self.options()
        if not options.get("live_previews_enable", True):
            return 0
        try:
            return max(int(options.get("show_progress_every_n_steps") or 0), 0)
        except (TypeError, ValueError):
            return 0

    # -- options (the settings store, core/settings.py) ----------------------------------------
    def _open_options(self, path: Path) -> SettingsStore:
        """The settings store beside the job database. The server's limits (flags, env) and the model cache size
        are its defaults; options an older version kept in the job database are moved into it once."""
        s = self.settings
        cache = getattr(self.models, "cache", None)
        defaults = {"max_steps": s.max_steps or 0, "max_frames": s.max_frames or 0, "max_images": s.max_images or 0,
                    "max_output_pixels": s.max_output_pixels or 0, "max_prompt_bytes": s.max_prompt_bytes or 0}
        if cache is not None:
            defaults["sd_checkpoints_limit"] = int(cache.max_loaded)
        existed = path.is_file()
        store = SettingsStore(path, defaults=defaults, checks={"sd_model_checkpoint": self._check_checkpoint})
        old = self.store.get_value(OPTIONS_KEY, None)
        if not existed and isinstance(old, dict) and old:
            kept = {}
            for key, value in old.items():
                try:
                    check_value(key, value)
                    kept[key] = value
                except CodexError:
                    log.warning("option %s=%r from the job database is not valid now; dropped", key, value)
            try:
                store.update(kept)
            except CodexError as exc:  # e.g. the default checkpoint is gone
                log.warning("could not move the options out of the job database: %s", exc)
            log.warning("moved the A1111 options from the job database to %s", path)
        store.listeners.append(self._options_changed)
        self._options_changed({"sd_checkpoints_limit"}, store)
        return store

    def _check_checkpoint(self, ref: Any) -> dict[str, Any]:
        if not ref:
            return {"sd_model_checkpoint": None, "sd_checkpoint_hash": None}
        entry = self.find_model(str(ref), "sd_model_checkpoint")
        return {"sd_model_checkpoint": self.title(entry), "sd_checkpoint_hash": self._sha(entry)}

    def _options_changed(self, keys: set[str], store: SettingsStore | None = None) -> None:
        store = store or self.options_store
        if "sd_checkpoints_limit" not in keys:
            return
        providers = [self.models] + [o.models for o in getattr(self, "orchestrators", [])[1:]]  # one cache per device
        for cache in {id(c): c for c in (getattr(p, "cache", None) for p in providers) if c is not None}.values():
            if hasattr(cache, "resize"):
                cache.resize(int(store.get("sd_checkpoints_limit")))

    def options(self) -> dict[str, Any]:
        """Every setting (saved value, else its default)."""
        return self.options_store.values()

    def set_options(self, values: dict[str, Any]) -> dict[str, Any]:
        """Check and save posted settings (core/settings.py): all or none. sd_model_checkpoint must name an existing
        model (404 listing them); any other bad value is a 422 naming the setting and what is allowed. Keys this
        server does not know are ignored, so posting back a whole dict works. Queued jobs keep what they were
        submitted with."""
        check_unicode(values)
        if not isinstance(values, dict):
            raise ValidationError("must be a JSON object of option -> value", field="(options)")
        self.options_store.update(values)
        return self.options()

    def limits(self) -> dict[str, int]:
        """The job-size limits in force (settings, whose defaults are the server's flags; 0 = none)."""
        v = self.options()
        return {k: int(v[k] or 0) for k in ("max_steps", "max_frames", "max_images", "max_output_pixels",
                                             "max_prompt_bytes")}

    @staticmethod
    def _sha(entry: Any) -> str | None:
        try:
            return entry.sha256
        except Exception:  # noqa: BLE001
            return None

    # -- ControlNet preprocessors ---------------------------------------------------------------
    def detect_control(self, module: str, images: list[str], *, processor_res: float | None = -1,
                       threshold_a: float | None = -1, threshold_b: float | None = -1, masks: Any = (),
                       module_field: str = "controlnet_module",
                       image_field: str = "controlnet_input_images[{i}]",
                       mask_field: str = "controlnet_masks[{i}]") -> list[Any]:
        """Run preprocessor `module` on each base64 image (with `masks[i]` for the inpaint modules) without
        generating; returns the control maps (PIL). What `POST /controlnet/detect` and the web UI's preview run.
        Sliders follow the extension's lenient rule (out of range, like -1, is the default); errors name
        `module_field` / `image_field` / `mask_field` (a missing preprocessor weight names the `sdcodex cache-models` command)."""
        from sdcodex import runtime

        names, _ = runtime.preprocessor_modules()
        aliases, _ = runtime.preprocessor_modules(alias_names=True)
        if module not in set(names) | set(aliases):
            raise ValidationError(f"unknown preprocessor {module!r}", field=module_field, allowed=names)
        if not images:
            raise ValidationError("no image: give at least one base64 image", field=image_field.split("[")[0])
        res, a, b = runtime.preprocessor_bounds(module, processor_res, threshold_a, threshold_b)
        load = self.orchestrator.image_loader
        models_dir = getattr(self.models, "models_dir", None)
        device = str(self.device or "cpu")
        device = device if device.startswith("cuda") else "cpu"
        out = []
        for i, value in enumerate(images):
            image = load(value, image_field.format(i=i))
            mask = load(masks[i], mask_field.format(i=i)) if i < len(masks) else None
            out.append(runtime.preprocess(module, image, resolution=res, threshold_a=a, threshold_b=b, mask=mask,
                                          models_dir=models_dir, device=device, field=module_field))
        return out

    # -- jobs ----------------------------------------------------------------------------------
    def prepare(self, request: dict[str, Any]) -> tuple[Any, Any]:
        """Full validation without generating: strict request, model, preset, family rules, images,
        limits. Returns (model entry or None, params). Raises CodexError (422/404/413)."""
        entry, params, _request, _applied = self._prepare(request)
        return entry, params

    def _prepare(self, request: dict[str, Any]) -> tuple[Any, Any, dict[str, Any], dict[str, Any]]:
        """prepare(), plus the request to store (its paths checked against the models folder, with what the
        settings filled) and what the settings filled."""
        if not isinstance(request, dict):
            raise ValidationError("the request must be a JSON object", field="(request)")
        limits = self.limits()
        check_unicode(request)
        check_prompt_size(prompt_texts(request), limits["max_prompt_bytes"])
        names = NameChecker(self.models)
        if isinstance(request.get("xyz"), dict):  # an X/Y/Z plot: every cell is checked like a job of its own
            return self._prepare_plot(request, names, limits)
        request = names.confine_paths(request)
        entry, engine, _filled, meta, params, _warnings = self.orchestrator.prepare(request)
        check_job_size(params, max_output_pixels=limits["max_output_pixels"], max_steps=limits["max_steps"],
                       max_frames=limits["max_frames"], max_images=limits["max_images"])
        names.check(request, engine)
        # what the settings filled is stored with the job: a queued job keeps it when the settings change
        applied = dict(meta.get("applied_settings") or {})
        return entry, params, {**applied, **request}, applied

    def _prepare_plot(self, request: dict[str, Any], names: NameChecker,
                      limits: dict[str, int]) -> tuple[Any, Any, dict[str, Any], dict[str, Any]]:
        from sdcodex.core.xyz_run import cell_errors

        plan, cells = self.orchestrator.prepare_plot(request, transform=names.confine_paths)
        for cell, (_entry, engine, _filled, _meta, params, _warnings) in zip(plan.cells, cells):
            with cell_errors(plan, cell):
                check_job_size(params, max_output_pixels=limits["max_output_pixels"], max_steps=limits["max_steps"],
                               max_frames=limits["max_frames"], max_images=limits["max_images"])
                names.check(cell.request, engine)
        return cells[0][0], cells[0][4], request, {}

    def submit(self, request: dict[str, Any], *, kind: str = "native", priority: int = 0,
               meta: dict[str, Any] | None = None) -> Job:
        """Validate then persist (committed before returning). The model is pinned now, so a later
        change of the default model does not change what a queued job makes."""
        entry, _params, request, applied = self._prepare(request)
        if meta is not None:
            check_unicode(meta)
        if applied:
            meta = {**(meta or {}), "applied_settings": applied}
        return self.queue.submit(request, kind=kind, priority=priority, model=entry.name if entry else None,
                                 model_path=str(entry.path) if entry else None, meta=meta)

    def output_path(self, rel: str) -> Path | None:
        """An output file under outdir, or None (outside it, missing, or a malformed name)."""
        try:
            if "\x00" in rel or not rel.lower().endswith(MEDIA_SUFFIXES):
                return None
            path = (self.outdir / rel).resolve()
            path.relative_to(self.outdir.resolve())
            if path == self.store.path.resolve():
                return None
        except (ValueError, OSError, RuntimeError):
            return None
        return path if path.is_file() else None
