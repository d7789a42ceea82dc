"""The job queue over the store: submit, pick the next job, cancel, and wake whoever waits on a job.

Order rule ("the loaded model goes first among equals"): jobs run by priority (higher first), then in
submission order — except that among jobs of the SAME priority, the first job whose model is already
loaded in the model cache (or that needs no model) may go ahead of older jobs whose model would have to
be loaded. A job can be passed over at most `max_bypass` times; after that it runs next, whatever it
needs, so nothing starves.
"""
from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any, Callable, Iterable, Iterator

from .store import Job, JobStore

DEFAULT_MAX_BYPASS = 3


def choose_next(queued: list[Job], loaded: set[str], *, max_bypass: int = DEFAULT_MAX_BYPASS) -> tuple[Job, list[str]]:
    """The job to run next and the ids of the jobs it goes ahead of (see the module's rule)."""
    head = queued[0]
    passed: list[str] = []
    for job in queued:
        if job.priority != head.priority:
            break
        ready = not job.model_path or job.model_path in loaded
        if ready or job.bypassed >= max_bypass:
            return job, passed
        passed.append(job.id)
    return head, []


class Notifier:
    """Wakes threads and asyncio tasks waiting for changes of a job (or of any job, key "*")."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._version = 0
        self._async: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}

    def notify(self, job_id: str | None = None) -> None:
        with self._cond:
            self._version += 1
            self._cond.notify_all()
            targets = list(self._async.get("*", ())) + (list(self._async.get(job_id, ())) if job_id else [])
        for loop, event in targets:
            with contextlib.suppress(RuntimeError):  # the loop may have closed
                loop.call_soon_threadsafe(event.set)

    def wait(self, seen: int, timeout: float) -> int:
        """Block the calling thread until the version moves past `seen` (or timeout); the new version."""
        with self._cond:
            self._cond.wait_for(lambda: self._version != seen, timeout=timeout)
            return self._version

    @property
    def version(self) -> int:
        with self._lock:
            return self._version

    @contextlib.contextmanager
    def listen(self, job_id: str = "*") -> Iterator[asyncio.Event]:
        """An asyncio.Event set whenever `job_id` changes (clear it before reading the state)."""
        entry = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._async.setdefault(job_id, set()).add(entry)
        try:
            yield entry[1]
        finally:
            with self._lock:
                waiters = self._async.get(job_id)
                if waiters is not None:
                    waiters.discard(entry)
                    if not waiters:
                        del self._async[job_id]


class JobQueue:
    """Submission, selection and cancellation; the worker calls `next_job()` and the `on_*` hooks."""

    def __init__(self, store: JobStore, *, max_bypass: int = DEFAULT_MAX_BYPASS) -> None:
        self.store = store
        self.notifier = Notifier()
        self.max_bypass = max_bypass
        self._cancel_hooks: list[Callable[[str], None]] = []
        self._select_lock = threading.Lock()

    def submit(self, request: dict[str, Any], *, kind: str = "native", priority: int = 0, model: str | None = None,
               model_path: str | None = None, meta: dict[str, Any] | None = None) -> Job:
        """Persist the job (committed before this returns) and wake the worker."""
        job = self.store.create(request, kind=kind, priority=priority, model=model, model_path=model_path, meta=meta)
        self.notifier.notify(job.id)
        return job

    def next_job(self, loaded: Iterable[str] = ()) -> Job | None:
        """Claim the next job by the order rule; None when the queue is empty."""
        with self._select_lock:
            for _ in range(5):  # a job cancelled between listing and claiming: choose again
                queued = self.store.queued()
                if not queued:
                    return None
                job, passed = choose_next(queued, set(loaded), max_bypass=self.max_bypass)
                claimed = self.store.claim(job.id, passed)
                if claimed is not None:
                    self.notifier.notify(job.id)
                    return claimed
        return None

    def on_cancel(self, hook: Callable[[str], None]) -> None:
        """Register a callback run with a job id when a running job is asked to stop (the worker's)."""
        self._cancel_hooks.append(hook)

    def cancel(self, job_id: str) -> str | None:
        """Cancel a queued job now or ask the worker to stop a running one; the state before, or None."""
        before = self.store.cancel(job_id)
        if before == "running":
            for hook in self._cancel_hooks:
                hook(job_id)
        if before is not None:
            self.notifier.notify(job_id)
        return before

    def wait(self, job_id: str, timeout: float | None = None) -> Job | None:
        """Block a thread until the job ends (or timeout); the job as it is then."""
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        seen = self.notifier.version
        while True:
            job = self.store.get(job_id)
            if job is None or job.terminal:
                return job
            left = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
            if left <= 0:
                return job
            seen = self.notifier.wait(seen, left)

    async def wait_async(self, job_id: str, timeout: float | None = None) -> Job | None:
        """Await the end of a job without holding a thread (or timeout); the job as it is then."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        with self.notifier.listen(job_id) as changed:
            while True:
                changed.clear()
                job = self.store.get(job_id)
                if job is None or job.terminal:
                    return job
                left = 5.0 if deadline is None else min(5.0, deadline - loop.time())
                if left <= 0:
                    return job
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(changed.wait(), left)
