"""The Ray Serve backend (`sdcodex serve --backend ray`): jobs run on replicas of a Serve deployment of the
orchestrator, while this server stays the one ingress (APIs, UI, job store, output files).

- Each replica holds up to K models through `@serve.multiplexed(max_num_models_per_replica=K)` keyed by the
  job's model path, and the ingress calls it with `handle.options(multiplexed_model_id=path)`, so Serve routes a
  job to a replica that already holds its model (LRU eviction beyond K).
- A replica streams the orchestrator's events (progress, previews) back; the ingress worker records them as for an
  in-process job. Interrupt and skip go through a small "board" actor that the replica long-polls while it runs
  the job; the board also lists the replicas (GET /api/v1/workers).
- A replica saves nothing: its saver records each save call, the images/frames travel back, and the ingress
  replays the calls on its own saver, so files and metadata are written exactly as in-process.
- A replica that dies mid-job raises `WorkerLost`: the worker puts the job back in the queue once.

Ray is imported lazily: the core install does not need it (`pip install .[ray]`).
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from sdcodex.core.errors import CodexError, EngineError
from sdcodex.core.events import Control, EventSink
from sdcodex.jobs.executor import WorkerLost

log = logging.getLogger("sdcodex.server.ray")

APP_NAME = "sdcodex"
NAMESPACE = "sdcodex"
BOARD_NAME = "sdcodex-board"
#: placeholder paths a replica's saver returns; the ingress replaces them by the files it writes
DEFERRED = "deferred-output:"
READY_TIMEOUT_S = 600.0


def import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise CodexError("the Ray backend needs Ray Serve: pip install '.[ray]' (see docs/scale.md)") from exc
    return ray


def package_root() -> str:
    """The folder holding the `sdcodex` package this process imports (replicas of a local Ray import the same)."""
    import sdcodex

    return str(Path(sdcodex.__file__).resolve().parent.parent)


def start_ray(address: str | None = None, *, num_cpus: float | None = None, log_to_driver: bool = True) -> bool:
    """Join the Ray cluster at `address`, or start a local instance (None). Returns True when this call started
    or joined Ray, False when this process was connected already."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, namespace=NAMESPACE, log_to_driver=log_to_driver)
        return True
    path = os.pathsep.join(p for p in (package_root(), os.environ.get("PYTHONPATH")) if p)
    ray.init(namespace=NAMESPACE, num_cpus=int(num_cpus) if num_cpus else None, include_dashboard=False,
             log_to_driver=log_to_driver, runtime_env={"env_vars": {"PYTHONPATH": path}})
    return True


# -- the replica side --------------------------------------------------------------------------------------
class JobBoard:
    """A tiny async actor: the replicas that exist (for the listing) and the interrupt/skip signals of jobs."""

    def __init__(self) -> None:
        self.replicas: dict[str, dict[str, Any]] = {}
        self.signals: dict[str, list[str]] = {}
        self.waiters: dict[str, asyncio.Event] = {}

    async def register(self, replica: str, info: dict[str, Any]) -> None:
        self.replicas[replica] = dict(info)

    async def update(self, replica: str, fields: dict[str, Any]) -> None:
        if replica in self.replicas:
            self.replicas[replica].update(fields)

    async def remove(self, replica: str) -> None:
        self.replicas.pop(replica, None)

    async def listing(self) -> list[dict[str, Any]]:
        return [{"id": rid, **info} for rid, info in sorted(self.replicas.items())]

    async def signal(self, job_id: str, what: str) -> None:
        self.signals.setdefault(job_id, []).append(what)
        waiter = self.waiters.get(job_id)
        if waiter is not None:
            waiter.set()

    async def wait_signals(self, job_id: str, timeout: float) -> list[str]:
        """The signals for `job_id` (waiting up to `timeout` for one)."""
        if not self.signals.get(job_id):
            waiter = self.waiters.setdefault(job_id, asyncio.Event())
            try:
                await asyncio.wait_for(waiter.wait(), timeout)
            except asyncio.TimeoutError:
                pass
            finally:
                self.waiters.pop(job_id, None)
        return self.signals.pop(job_id, [])

    async def clear(self, job_id: str) -> None:
        self.signals.pop(job_id, None)
        waiter = self.waiters.pop(job_id, None)
        if waiter is not None:
            waiter.set()


class RecordingSaver:
    """A saver that writes nothing: each `save_*` call is kept (with its images or frames) and answered with a
    placeholder path; the ingress replays the calls on its real saver (`replay_saves`)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, tuple, dict]] = []

    def __getattr__(self, name: str) -> Any:
        if not name.startswith("save"):
            raise AttributeError(name)

        def record(*args: Any, **kwargs: Any) -> str:
            token = f"{DEFERRED}{len(self.calls)}"
            self.calls.append((token, name, args, kwargs))
            return token

        return record


def replay_saves(saver: Any, calls: list[tuple[str, str, tuple, dict]]) -> dict[str, str]:
    """Run recorded save calls on `saver`; placeholder -> the path written."""
    return {token: str(getattr(saver, name)(*args, **kwargs)) for token, name, args, kwargs in calls}


def _replace_tokens(value: Any, paths: dict[str, str]) -> Any:
    if isinstance(value, str) and value.startswith(DEFERRED):
        return paths.get(value, value)
    if isinstance(value, dict):
        return {k: _replace_tokens(v, paths) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_replace_tokens(v, paths) for v in value]
    return value


class _Held:
    """What the multiplexer keeps per model id; `__del__` (called by Serve when it evicts) frees the model."""

    def __init__(self, replica: "CodexReplica", model_id: str, path: str) -> None:
        self.replica, self.model_id, self.path = replica, model_id, path
        self.released = False

    def __del__(self) -> None:
        if not self.released:
            self.released = True
            self.replica.release(self)


class CodexReplica:
    """One replica: an orchestrator over its own model cache. `deployment()` adds the multiplexed loader."""

    def __init__(self, config: dict[str, Any]) -> None:
        import ray
        from ray import serve

        from sdcodex.runtime import LocalModels, build_orchestrator

        self.config = config
        self.models_dir = Path(config["models_dir"])
        self.ingress_models_dir = Path(config["ingress_models_dir"])
        device = config.get("device") or os.environ.get("SDCODEX_DEVICE") or None
        k = int(config["models_per_replica"])
        self.models = LocalModels(self.models_dir, device=device or "cpu", cache_size=2 * k)
        self.device = build_orchestrator(models=self.models, save=False, device=device).device
        self.replica_id = serve.get_replica_context().replica_id.unique_id
        self.held: dict[str, str] = {}
        self.job: str | None = None
        self._lock = threading.Lock()
        self._board = ray.get_actor(config["board"], namespace=NAMESPACE)
        self._board.register.remote(self.replica_id, {"device": str(self.device),
                                                      "node": socket.gethostname(), "pid": os.getpid(),
                                                      "models": [], "job": None})

    # -- models --------------------------------------------------------------------------------
    def local_path(self, model_id: str) -> str:
        """The replica's path of a model the ingress named by its path: the same path when this node sees it,
        else the same place under this replica's models folder."""
        if Path(model_id).exists():
            return model_id
        try:
            return str(self.models_dir / Path(model_id).relative_to(self.ingress_models_dir))
        except ValueError:
            return model_id

    async def load_model(self, model_id: str) -> _Held:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self._load_sync, model_id)

    def _load_sync(self, model_id: str) -> _Held:
        entry = self.models.resolve(self.local_path(model_id))
        self.models.load(entry)  # the default variant; a request's own VAE or precision loads beside it
        with self._lock:
            self.held[model_id] = str(entry.path)
        self._report()
        return _Held(self, model_id, str(entry.path))

    def release(self, held: _Held) -> None:
        """Serve evicted `held` (least recently used beyond K): drop every variant of that model."""
        with self._lock:
            self.held.pop(held.model_id, None)
        for key in self.models.cache.loaded_keys():
            if (key[0] if isinstance(key, tuple) else key) == held.path:
                self.models.cache.evict(key)
        self._report()

    def _report(self) -> None:
        with self._lock:
            fields = {"models": sorted(self.held), "job": self.job}
        self._board.update.remote(self.replica_id, fields)

    # -- a job ---------------------------------------------------------------------------------
    async def run(self, message: dict[str, Any]):
        """Stream one job: hello, then events, then result (or error)."""
        from ray import serve

        job_id = message["job_id"]
        yield {"kind": "hello", "worker": self.replica_id, "pid": os.getpid(), "node": socket.gethostname()}
        with self._lock:
            self.job = job_id
        self._report()
        try:
            model_id = serve.get_multiplexed_model_id()
            request = dict(message["request"])
            if model_id:
                try:
                    await self.get_model(model_id)  # type: ignore[attr-defined]  (added by deployment())
                except CodexError as exc:
                    yield {"kind": "error", "error": exc}
                    return
                except Exception as exc:  # noqa: BLE001 - a model this replica cannot load fails the job
                    yield {"kind": "error", "error": EngineError(f"could not load model {model_id!r} on replica "
                                                                 f"{self.replica_id}: {type(exc).__name__}: {exc}")}
                    return
                request["model"] = self.held.get(model_id) or self.local_path(model_id)
            async for item in self._generate(job_id, request, message):
                yield item
        finally:
            with self._lock:
                self.job = None
            self._report()

    def _orchestrator(self, saver: RecordingSaver, settings: dict[str, Any] | None,
                      styles: list[dict[str, str]] | None = None) -> Any:
        """An orchestrator for one job: this replica's models, the recording saver, the ingress's settings and
        prompt styles."""
        from sdcodex.core.settings import SettingsStore
        from sdcodex.core.styles import StyleSet
        from sdcodex.runtime import build_orchestrator

        orchestrator = build_orchestrator(models=self.models, save=False, device=self.device,
                                          offload=self.config.get("offload"),
                                          attention=self.config.get("attention"), compile=self.config.get("compile"),
                                          settings=SettingsStore(None, defaults=settings) if settings else None)
        orchestrator.saver = saver
        orchestrator.styles = StyleSet(styles or [])
        return orchestrator

    async def _generate(self, job_id: str, request: dict[str, Any], message: dict[str, Any]):
        preview_every = int(message.get("preview_every") or 0)
        loop = asyncio.get_running_loop()
        out: asyncio.Queue = asyncio.Queue()
        control = Control()
        done = threading.Event()

        def put(item: dict[str, Any]) -> None:
            loop.call_soon_threadsafe(out.put_nowait, item)

        sink = EventSink([lambda e: put({"kind": "event", "event": e.kind, "data": e.data})], control,
                         preview_every=preview_every)
        saver = RecordingSaver()

        def work() -> None:
            try:
                orchestrator = self._orchestrator(saver, message.get("settings"), message.get("styles"))
                result = orchestrator.run(request, events=sink, job_id=job_id)
                put({"kind": "result", "images": result.images, "videos": result.videos, "info": result.info,
                     "saves": saver.calls})
            except Exception as exc:  # noqa: BLE001 - every failure goes back to the ingress
                put({"kind": "error", "error": exc if isinstance(exc, CodexError)
                     else EngineError(f"{type(exc).__name__}: {exc}")})
            finally:
                done.set()

        def listen() -> None:  # interrupt / skip from the ingress, while the job runs
            import ray

            while not done.is_set():
                try:
                    signals = ray.get(self._board.wait_signals.remote(job_id, 1.0))
                except Exception:  # noqa: BLE001 - the board is gone: the job still finishes
                    log.exception("reading signals for job %s failed", job_id)
                    return
                for what in signals:
                    control.interrupt() if what == "interrupt" else control.skip()

        threading.Thread(target=work, name=f"job-{job_id[:8]}", daemon=True).start()
        threading.Thread(target=listen, name=f"signals-{job_id[:8]}", daemon=True).start()
        while True:
            item = await out.get()
            yield item
            if item["kind"] != "event":
                return


def deployment(config: dict[str, Any], *, replicas: int, models_per_replica: int,
               actor_options: dict[str, Any]) -> Any:
    """The Serve deployment: CodexReplica with `get_model` multiplexed over K models per replica."""
    from ray import serve

    class Replica(CodexReplica):
        @serve.multiplexed(max_num_models_per_replica=models_per_replica)
        async def get_model(self, model_id: str) -> _Held:
            return await self.load_model(model_id)

    Replica.__name__ = Replica.__qualname__ = "CodexReplica"
    return serve.deployment(Replica, name="CodexReplica", num_replicas=replicas, max_ongoing_requests=1,
                            ray_actor_options=actor_options).bind(config)


# -- the ingress side --------------------------------------------------------------------------------------
class RayBackend:
    """Starts (or joins) Ray, deploys the replicas, and gives the ingress one executor per replica slot."""

    def __init__(self, settings: Any, *, models_dir: str | Path, orchestrator: Any) -> None:
        import_ray()
        self.settings = settings
        #: the ingress's orchestrator: its saver writes the files, its settings store goes with each job
        self.orchestrator = orchestrator
        self.saver = orchestrator.saver
        self.models_dir = Path(models_dir).absolute()
        self.replicas = int(settings.replicas)
        self.handle: Any = None
        self.board: Any = None
        self._owns_ray = False
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Deploy in the background: the server answers at once; jobs wait until the replicas are up."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._start, name="sdcodex-ray-start", daemon=True)
            self._thread.start()

    def _start(self) -> None:
        try:
            ray = import_ray()
            from ray import serve

            s = self.settings
            t0 = time.perf_counter()
            self._owns_ray = start_ray(s.ray_address, num_cpus=max(os.cpu_count() or 1,
                                                                   self.replicas * s.ray_cpus_per_replica + 1))
            local = not s.ray_address
            self.board = ray.remote(num_cpus=0)(JobBoard).options(
                name=BOARD_NAME, namespace=NAMESPACE, get_if_exists=True, lifetime="detached").remote()
            serve.start(proxy_location="Disabled")
            options: dict[str, Any] = {"num_cpus": s.ray_cpus_per_replica, "num_gpus": s.ray_gpus_per_replica}
            if local:
                options["runtime_env"] = {"env_vars": {"PYTHONPATH": package_root()}}
            config = {"models_dir": str(s.ray_models_dir or self.models_dir),
                      "ingress_models_dir": str(self.models_dir), "models_per_replica": s.models_per_replica,
                      "board": BOARD_NAME, "offload": s.offload, "attention": s.attention, "compile": s.compile,
                      "device": "cuda" if s.ray_gpus_per_replica else "cpu"}
            app = deployment(config, replicas=self.replicas, models_per_replica=s.models_per_replica,
                             actor_options=options)
            self.handle = serve.run(app, name=APP_NAME, route_prefix=None)
            log.warning("ray backend: %d replica(s) ready in %.1fs", self.replicas, time.perf_counter() - t0)
        except BaseException as exc:  # noqa: BLE001 - reported to every job and in the log
            log.exception("starting the Ray backend failed")
            self._error = exc
        finally:
            self._ready.set()

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        if not self._ready.wait(timeout):
            raise WorkerLost("the Ray replicas did not start in time")
        if self._error is not None:
            raise CodexError(f"the Ray backend did not start: {type(self._error).__name__}: {self._error}")

    def executors(self) -> list["RayExecutor"]:
        """One per replica: the ingress runs at most as many jobs at once as there are replicas."""
        return [RayExecutor(self) for _ in range(self.replicas)]

    def listing(self) -> list[dict[str, Any]]:
        """The replicas the board knows (id, device, node, pid, models, job); empty until they are up."""
        if not self._ready.is_set() or self.board is None:
            return []
        ray = import_ray()
        try:
            return ray.get(self.board.listing.remote(), timeout=10)
        except Exception:  # noqa: BLE001 - a listing must not fail a request
            log.exception("listing the Ray replicas failed")
            return []

    def close(self) -> None:
        if self._thread is not None:
            self._thread.join(READY_TIMEOUT_S)
        ray = import_ray()
        if not ray.is_initialized():
            return
        from ray import serve

        try:
            if self._owns_ray and not self.settings.ray_address:
                serve.shutdown()
                ray.shutdown()
                return
            serve.delete(APP_NAME)
            if self.board is not None:
                ray.kill(self.board)
        except Exception:  # noqa: BLE001 - shutting down: log and go on
            log.exception("stopping the Ray backend failed")


class RayExecutor:
    """Runs a job on whichever replica Serve routes it to (the one holding its model, when one does)."""

    def __init__(self, backend: RayBackend) -> None:
        self.backend = backend

    def loaded(self) -> set[str]:
        return set()  # Serve's router, not the ingress, knows which replica holds which model

    def describe(self) -> dict[str, Any]:
        return {"device": "ray", "node": socket.gethostname(), "pid": os.getpid()}

    def run(self, request: dict[str, Any], *, events: EventSink, job_id: str) -> Any:
        import ray.exceptions as rex

        from sdcodex.core.orchestrator import Result

        backend = self.backend
        backend.wait_ready()
        board = backend.board
        control = events.control
        control.on_signal(lambda what: board.signal.remote(job_id, what))
        if control.interrupted:
            board.signal.remote(job_id, "interrupt")
        model_id = str(request.get("model") or "")
        handle = backend.handle.options(stream=True, **({"multiplexed_model_id": model_id} if model_id else {}))
        settings = getattr(backend.orchestrator, "settings", None)
        styles = getattr(backend.orchestrator, "styles", None)
        message = {"job_id": job_id, "request": request, "preview_every": events.preview_every,
                   "settings": settings.values() if settings is not None else None,
                   # the ingress's styles.csv, so a replica expands `styles` as the in-process path does
                   "styles": [s.to_dict() for s in styles.all().values()] if styles is not None else []}
        replica = None
        try:
            for item in handle.run.remote(message):
                kind = item["kind"]
                if kind == "hello":
                    replica = item["worker"]
                elif kind == "event":
                    events.emit(item["event"], **item["data"])
                elif kind == "error":
                    raise item["error"]
                elif kind == "result":
                    paths = replay_saves(backend.saver, item["saves"])
                    info = _replace_tokens(item["info"], paths)
                    info["worker"] = replica
                    return Result(images=[paths.get(p, p) for p in item["images"]],
                                  videos=[paths.get(p, p) for p in item["videos"]], info=info)
            raise WorkerLost(f"replica {replica} ended the job's stream without a result")
        except rex.RayActorError as exc:
            if replica is not None:
                board.remove.remote(replica)
            raise WorkerLost(f"replica {replica or '?'} died while running the job ({type(exc).__name__})") from exc
        finally:
            board.clear.remote(job_id)
