"""A worker: one thread that runs the jobs the dispatcher (`jobs/pool.py`) hands it, one at a time, through an
executor (this process's orchestrator of one device, or a Ray replica) — recording progress events, writing
outputs before the job is marked done, and turning every failure into a failed job (memory freed) so the next
job runs. A job whose worker process died goes back to the queue once (`requeued` with the reason).
"""
from __future__ import annotations

import gc
import logging
import math
import queue as stdqueue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from sdcodex.core.errors import CodexError
from sdcodex.core.events import Control, Event, EventSink

from .executor import Executor, WorkerLost
from .queue import JobQueue
from .store import Job

log = logging.getLogger("sdcodex.jobs.worker")

#: orchestrator events that are recorded for SSE ("done" is replaced by the job's "result" event)
RECORDED = ("start", "progress", "image", "skipped", "interrupted", "stage", "warning")
#: a job whose worker process died mid-job runs again once: two attempts in all
MAX_LOST = 2


def free_memory() -> None:
    """gc + the CUDA cache, after a failed job (the model cache keeps what it holds)."""
    try:
        from sdcodex.models.cache import free_memory as _free

        _free()
    except ImportError:  # pragma: no cover - models room not installed
        gc.collect()


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # inf/nan are not JSON
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


@dataclass(frozen=True)
class Preview:
    """A live preview: the job, the job's step count when it was made, and the PIL image."""

    job_id: str
    done: int
    image: Any

    def png(self) -> bytes:
        import io

        buf = io.BytesIO()
        self.image.save(buf, format="PNG")
        return buf.getvalue()


class Worker:
    """Runs the jobs it is given one at a time through `executor`. `loaded()` gives the model paths it holds."""

    def __init__(self, queue: JobQueue, executor: Executor, *, outdir: str | Path, name: str = "worker-0",
                 preview_every: Callable[[], int] | None = None, max_lost: int = MAX_LOST) -> None:
        self.queue = queue
        self.store = queue.store
        self.executor = executor
        self.outdir = Path(outdir)
        self.name = name
        #: a job that lost its worker process runs at most this many times in all
        self.max_lost = max_lost
        self._thread: threading.Thread | None = None
        self._inbox: "stdqueue.Queue[Job | None]" = stdqueue.Queue()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._busy = False
        self._current: tuple[str, Control] | None = None
        #: steps between live previews, asked at the start of each job (0: none)
        self.preview_every = preview_every or (lambda: 0)
        self._preview: Preview | None = None
        self._last_used: dict[str, float] = {}
        self.jobs_run = 0
        queue.on_cancel(self._cancel_running)

    # -- life cycle ----------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name=f"sdcodex-{self.name}", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the current job; a running job is interrupted and goes back to the queue."""
        self._stop.set()
        with self._lock:
            if self._current is not None:
                self._current[1].interrupt()
        self._inbox.put(None)
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def idle(self) -> bool:
        with self._lock:
            return not self._busy and not self._stop.is_set()

    def assign(self, job: Job) -> None:
        """Run `job` next (the dispatcher gives a job only to an idle worker)."""
        with self._lock:
            self._busy = True
        self._inbox.put(job)

    def loaded(self) -> set[str]:
        try:
            return set(self.executor.loaded())
        except Exception:  # noqa: BLE001 - a listing must not stop dispatching
            log.exception("%s: listing loaded models failed", self.name)
            return set()

    def recency(self) -> float:
        """When this worker last used any model it still holds (0: it holds none)."""
        loaded = self.loaded()
        with self._lock:
            return max((t for m, t in self._last_used.items() if m in loaded), default=0.0)

    def describe(self) -> dict[str, Any]:
        """This worker for GET /api/v1/workers."""
        return {"id": self.name, **self.executor.describe(), "models": sorted(self.loaded()),
                "job": self.current_job}

    @property
    def current_job(self) -> str | None:
        with self._lock:
            return self._current[0] if self._current else None

    def preview(self, job_id: str | None = None) -> Preview | None:
        """The latest live preview of the running job (of `job_id` when given); None when there is none."""
        with self._lock:
            current, preview = self._current, self._preview
        if current is None or preview is None or preview.job_id != current[0]:
            return None
        return preview if job_id in (None, preview.job_id) else None

    # -- controls from the faces ---------------------------------------------------------------
    def _cancel_running(self, job_id: str) -> None:
        with self._lock:
            if self._current is not None and self._current[0] == job_id:
                self._current[1].interrupt()

    def interrupt(self, job_id: str | None = None) -> str | None:
        """Interrupt the running job (only if it is `job_id`, when given); it keeps finished images."""
        with self._lock:
            if self._current is None or job_id not in (None, self._current[0]):
                return None
            self._current[1].interrupt()
            return self._current[0]

    def skip(self, job_id: str | None = None) -> str | None:
        with self._lock:
            if self._current is None or job_id not in (None, self._current[0]):
                return None
            self._current[1].skip()
            return self._current[0]

    # -- the loop ------------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            job = self._inbox.get()
            if job is None:
                if self._stop.is_set():
                    return
                continue
            if self._stop.is_set():  # handed over while stopping: it waits in the queue for the restart
                self.store.requeue(job.id, "server shutting down", attempt=job.attempts)
                with self._lock:
                    self._busy = False
                continue
            try:
                self.run_job(job)
            finally:
                with self._lock:
                    self._busy = False
                self.queue.notifier.notify(job.id)

    def _relative(self, path: str) -> str:
        try:
            return Path(path).resolve().relative_to(self.outdir.resolve()).as_posix()
        except ValueError:
            return str(path)

    def run_job(self, job: Job) -> None:
        control = Control()
        with self._lock:
            self._current = (job.id, control)
        fresh = self.store.get(job.id)
        if fresh is not None and fresh.cancel_requested:
            control.interrupt()

        def record(event: Event) -> None:
            if event.kind == "preview":  # kept in memory only: the latest one is all a face shows
                with self._lock:
                    self._preview = Preview(job.id, int(event.data.get("done", 0)), event.data["image"])
                return
            if event.kind in RECORDED:
                self.store.progress(job.id, event.kind, _jsonable(event.data))
                self.queue.notifier.notify(job.id)

        request = dict(job.request)
        if (job.model_path or job.model) and not request.get("model"):
            request["model"] = job.model_path or job.model  # pinned at submit
        if job.model_path:
            with self._lock:
                self._last_used[job.model_path] = time.time()
        failed = False
        try:
            try:
                every = int(self.preview_every() or 0)
            except Exception:  # noqa: BLE001 - a broken setting must not stop the job
                every = 0
            sink = EventSink([record], control, preview_every=every)
            result = self.executor.run(request, events=sink, job_id=job.id)
        except WorkerLost as exc:
            self._lost(job, exc.reason)
        except CodexError as exc:
            if exc.code == "interrupted" and control.interrupted:  # an engine that stops by raising
                self._stopped(job, control, result={"images": [], "videos": [], "info": {"interrupted": True}})
            else:
                failed = True
                log.warning("job %s failed: %s", job.id, exc)
                self.store.finish(job.id, "failed", error=dict(exc.to_dict(), status=exc.http_status),
                                  attempt=job.attempts)
        except Exception as exc:  # noqa: BLE001 - any failure ends this job only
            failed = True
            log.exception("job %s failed", job.id)
            self.store.finish(job.id, "failed", error={"error": "internal_error", "status": 500,
                                                       "message": f"{type(exc).__name__}: {exc}"},
                              attempt=job.attempts)
        else:
            from sdcodex.media.images import compact_request

            info = compact_request(_jsonable(result.info))
            info.setdefault("worker", self.name)
            out = {"images": [self._relative(p) for p in result.images],
                   "videos": [self._relative(p) for p in result.videos], "info": info}
            if result.info.get("interrupted") or control.interrupted:
                self._stopped(job, control, result=out)
            else:
                self.store.finish(job.id, "done", result=out, attempt=job.attempts)
        finally:
            with self._lock:
                self._current = None
                self._preview = None
                if job.model_path:
                    self._last_used[job.model_path] = time.time()
            self.jobs_run += 1
            if failed:
                free_memory()
            self.queue.notifier.notify(job.id)

    def _lost(self, job: Job, reason: str) -> None:
        """The process running the job died: back to the queue once (another worker takes it), then failed."""
        cancelled = (self.store.get(job.id) or job).cancel_requested
        if cancelled:
            self.store.finish(job.id, "cancelled", result={"images": [], "videos": [], "info": {}},
                              attempt=job.attempts)
        elif job.attempts < self.max_lost and not self._stop.is_set():
            log.warning("job %s: %s; running it again", job.id, reason)
            self.store.requeue(job.id, reason, attempt=job.attempts)
        elif self._stop.is_set():
            self.store.requeue(job.id, "server shutting down", attempt=job.attempts)
        else:
            log.warning("job %s: %s; it ran %d times, not again", job.id, reason, job.attempts)
            self.store.finish(job.id, "failed", error={"error": "worker_lost", "status": 500, "message":
                                                       f"{reason} (attempt {job.attempts} of {self.max_lost})"},
                              attempt=job.attempts)

    def _stopped(self, job: Job, control: Control, *, result: dict[str, Any]) -> None:
        """A job that stopped early: back to the queue on shutdown, else cancelled or interrupted."""
        if self._stop.is_set():
            # runs again after the restart: the files this attempt wrote would be listed by no job
            self._remove_outputs(result)
            self.store.requeue(job.id, "server shutting down", attempt=job.attempts)
            return
        cancelled = (self.store.get(job.id) or job).cancel_requested
        self.store.finish(job.id, "cancelled" if cancelled else "interrupted", result=result, attempt=job.attempts)

    def _remove_outputs(self, result: dict[str, Any]) -> None:
        for rel in list(result.get("images") or []) + list(result.get("videos") or []):
            path = Path(rel) if Path(rel).is_absolute() else self.outdir / rel
            try:
                path.resolve().relative_to(self.outdir.resolve())
                path.unlink(missing_ok=True)
            except (ValueError, OSError) as exc:
                log.warning("could not remove %s of a re-queued job: %s", path, exc)
