"""The worker: one thread per device that claims jobs in queue order and runs each through the ONE
orchestrator, recording progress events, writing outputs before the job is marked done, and turning
every failure into a failed job (memory freed) so the next job runs.
"""
from __future__ import annotations

import gc
import logging
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from sdcodex.core.errors import CodexError
from sdcodex.core.events import Control, Event, EventSink

from .queue import JobQueue
from .store import Job

log = logging.getLogger("sdcodex.jobs.worker")

#: orchestrator events that are recorded for SSE ("done" is replaced by the job's "result" event)
RECORDED = ("start", "progress", "image", "skipped", "interrupted", "stage", "warning")


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
    """Runs queued jobs one at a time on one device. `loaded()` gives the model paths the cache holds."""

    def __init__(self, queue: JobQueue, orchestrator: Any, *, outdir: str | Path,
                 loaded: Callable[[], set[str]] | None = None, name: str = "worker-0",
                 preview_every: Callable[[], int] | None = None) -> None:
        self.queue = queue
        self.store = queue.store
        self.orchestrator = orchestrator
        self.outdir = Path(outdir)
        self.loaded = loaded or (lambda: set())
        self.name = name
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._lock = threading.Lock()
        self._current: tuple[str, Control] | None = None
        #: steps between live previews, asked at the start of each job (0: none)
        self.preview_every = preview_every or (lambda: 0)
        self._preview: Preview | None = None
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
        self.queue.notifier.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    def pause(self) -> None:
        """Finish the current job, then take no new one until `resume()`."""
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()
        self.queue.notifier.notify()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

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

    def interrupt(self) -> str | None:
        """Interrupt whatever runs now (A1111 /interrupt); the job keeps finished images."""
        with self._lock:
            if self._current is None:
                return None
            self._current[1].interrupt()
            return self._current[0]

    def skip(self) -> str | None:
        with self._lock:
            if self._current is None:
                return None
            self._current[1].skip()
            return self._current[0]

    # -- the loop ------------------------------------------------------------------------------
    def _loop(self) -> None:
        seen = self.queue.notifier.version
        while not self._stop.is_set():
            job = None
            if not self._paused.is_set():
                try:
                    job = self.queue.next_job(self.loaded())
                except Exception:  # a broken database must not kill the thread silently
                    log.exception("claiming the next job failed")
            if job is None:
                seen = self.queue.notifier.wait(seen, 1.0)
                continue
            self.run_job(job)

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
        failed = False
        try:
            try:
                every = int(self.preview_every() or 0)
            except Exception:  # noqa: BLE001 - a broken setting must not stop the job
                every = 0
            sink = EventSink([record], control, preview_every=every)
            result = self.orchestrator.run(request, events=sink, job_id=job.id)
        except CodexError as exc:
            if exc.code == "interrupted" and control.interrupted:  # an engine that stops by raising
                self._stopped(job, control, result={"images": [], "videos": [], "info": {"interrupted": True}})
            else:
                failed = True
                log.warning("job %s failed: %s", job.id, exc)
                self.store.finish(job.id, "failed", error=dict(exc.to_dict(), status=exc.http_status))
        except Exception as exc:  # noqa: BLE001 - any failure ends this job only
            failed = True
            log.exception("job %s failed", job.id)
            self.store.finish(job.id, "failed", error={"error": "internal_error", "status": 500,
                                                       "message": f"{type(exc).__name__}: {exc}"})
        else:
            from sdcodex.media.images import compact_request

            out = {"images": [self._relative(p) for p in result.images],
                   "videos": [self._relative(p) for p in result.videos],
                   "info": compact_request(_jsonable(result.info))}
            if result.info.get("interrupted") or control.interrupted:
                self._stopped(job, control, result=out)
            else:
                self.store.finish(job.id, "done", result=out)
        finally:
            with self._lock:
                self._current = None
                self._preview = None
            self.jobs_run += 1
            if failed:
                free_memory()
            self.queue.notifier.notify(job.id)

    def _stopped(self, job: Job, control: Control, *, result: dict[str, Any]) -> None:
        """A job that stopped early: back to the queue on shutdown, else cancelled or interrupted."""
        if self._stop.is_set():
            # runs again after the restart: the files this attempt wrote would be listed by no job
            self._remove_outputs(result)
            self.store.requeue(job.id, "server shutting down")
            return
        cancelled = (self.store.get(job.id) or job).cancel_requested
        self.store.finish(job.id, "cancelled" if cancelled else "interrupted", result=result)

    def _remove_outputs(self, result: dict[str, Any]) -> None:
        for rel in list(result.get("images") or []) + list(result.get("videos") or []):
            path = Path(rel) if Path(rel).is_absolute() else self.outdir / rel
            try:
                path.resolve().relative_to(self.outdir.resolve())
                path.unlink(missing_ok=True)
            except (ValueError, OSError) as exc:
                log.warning("could not remove %s of a re-queued job: %s", path, exc)
