"""The workers of one server and the dispatcher that hands them jobs.

Dispatch rule: while some worker is idle, the queue picks the next job (`JobQueue.next_job`, with the models the
idle workers hold counting as loaded), and the job goes to an idle worker that holds its model; when none does,
to the idle worker whose loaded models were used least recently (a worker holding no model first). In-process
workers (one per device) and Ray Serve slots are both `Worker`s, so this is the one dispatch path; with Ray,
Serve's multiplexed routing then picks the replica that holds the model.

`WorkerPool` is what the faces see as `service.worker`: interrupt, skip and previews reach whichever worker
runs the job.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Iterable

from .queue import JobQueue
from .worker import Preview, Worker

log = logging.getLogger("sdcodex.jobs.pool")


def choose_worker(idle: Iterable[Worker], model_path: str | None) -> Worker:
    """The idle worker for a job of `model_path` (see the module's rule); ties go to the first listed."""
    idle = list(idle)
    if model_path:
        for worker in idle:
            if model_path in worker.loaded():
                return worker
    return min(idle, key=lambda w: w.recency())


class WorkerPool:
    """Several workers over one queue, and the dispatcher thread that feeds them."""

    def __init__(self, queue: JobQueue, workers: list[Worker], *,
                 listing: Callable[[], list[dict[str, Any]]] | None = None) -> None:
        if not workers:
            raise ValueError("a worker pool needs at least one worker")
        self.queue = queue
        self.workers = list(workers)
        #: GET /api/v1/workers: by default each worker describes itself; the Ray backend lists its replicas
        self._listing = listing
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._paused = threading.Event()

    # -- life cycle ----------------------------------------------------------------------------
    def start(self) -> None:
        for worker in self.workers:
            worker.start()
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._dispatch, name="sdcodex-dispatcher", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Hand out no more jobs; running jobs are interrupted and go back to the queue."""
        self._stop.set()
        self.queue.notifier.notify()
        if self._thread is not None:
            self._thread.join(timeout)
        for worker in self.workers:
            worker.stop(timeout)

    def pause(self) -> None:
        """Running jobs finish; no new one starts until `resume()`."""
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()
        self.queue.notifier.notify()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and all(w.alive for w in self.workers)

    @property
    def jobs_run(self) -> int:
        return sum(w.jobs_run for w in self.workers)

    # -- dispatching ---------------------------------------------------------------------------
    def _dispatch(self) -> None:
        seen = self.queue.notifier.version
        while not self._stop.is_set():
            assigned = False
            if not self._paused.is_set():
                try:
                    assigned = self.dispatch_once()
                except Exception:  # a broken database must not kill the thread silently
                    log.exception("dispatching the next job failed")
            if not assigned:
                seen = self.queue.notifier.wait(seen, 1.0)

    def dispatch_once(self) -> bool:
        """Give the next job to an idle worker; False when no worker is idle or no job is queued."""
        idle = [w for w in self.workers if w.idle]
        if not idle:
            return False
        loaded: set[str] = set()
        for worker in idle:
            loaded |= worker.loaded()
        job = self.queue.next_job(loaded)
        if job is None:
            return False
        worker = choose_worker(idle, job.model_path)
        log.debug("job %s -> %s", job.id, worker.name)
        worker.assign(job)
        return True

    # -- what the faces ask --------------------------------------------------------------------
    def running(self) -> list[str]:
        """Ids of the running jobs, the one running longest first."""
        jobs = [j for j in (w.current_job for w in self.workers) if j]
        found = [self.queue.store.get(j) for j in jobs]
        return [j.id for j in sorted((j for j in found if j is not None), key=lambda j: j.started or 0.0)]

    @property
    def current_job(self) -> str | None:
        """The job running longest (A1111's /progress shows one job)."""
        running = self.running()
        return running[0] if running else None

    def runs(self, job_id: str) -> bool:
        return any(w.current_job == job_id for w in self.workers)

    def preview(self, job_id: str | None = None) -> Preview | None:
        """The latest live preview of `job_id` (of the job running longest when None)."""
        job_id = job_id or self.current_job
        for worker in self.workers:
            if job_id and worker.current_job == job_id:
                return worker.preview(job_id)
        return None

    def interrupt(self, job_id: str | None = None) -> str | None:
        """Interrupt `job_id`, or every running job when None (A1111 /interrupt); the (first) job interrupted."""
        hit = [j for j in (w.interrupt(job_id) for w in self.workers) if j]
        return hit[0] if hit else None

    def skip(self, job_id: str | None = None) -> str | None:
        """Skip the current image of `job_id`, or of the job running longest when None."""
        job_id = job_id or self.current_job
        for worker in self.workers:
            if job_id and worker.current_job == job_id:
                return worker.skip(job_id)
        return None

    def listing(self) -> list[dict[str, Any]]:
        """Every worker (or Ray replica): id, device, node, pid, models (loaded), job (running or null)."""
        if self._listing is not None:
            return self._listing()
        return [w.describe() for w in self.workers]

    def loaded(self) -> set[str]:
        """Model paths any worker holds."""
        out: set[str] = set()
        for worker in self.workers:
            out |= worker.loaded()
        return out
