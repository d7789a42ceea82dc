"""Where a job's orchestrator run happens: the one interface between the queue's workers and what generates.

A worker (`jobs/worker.py`) claims a job and calls `executor.run(request, events=, job_id=)`; the executor
returns the orchestrator's `Result` with its output files written. `LocalExecutor` runs the orchestrator of one
device in this process; the Ray Serve backend (`sdcodex/server/ray_backend.py`) runs it on a replica and streams
the events back. Neither the faces nor the job store know which one runs a job.
"""
from __future__ import annotations

import os
import socket
from typing import Any, Protocol

from sdcodex.core.events import EventSink


class WorkerLost(Exception):
    """The process running a job went away mid-job (a replica died): the job may run again elsewhere."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Executor(Protocol):
    """Runs one job at a time for one worker."""

    def run(self, request: dict[str, Any], *, events: EventSink, job_id: str) -> Any:
        """The orchestrator's Result (files written); events go to `events`, whose control it honours.
        Raises CodexError for a failed job, WorkerLost when the process running it died."""
        ...

    def loaded(self) -> set[str]:
        """Model paths it holds loaded now (the dispatcher prefers a worker that holds a job's model)."""
        ...

    def describe(self) -> dict[str, Any]:
        """`device`, `node`, `pid` (for GET /api/v1/workers)."""
        ...


def loaded_paths(models: Any) -> set[str]:
    """Model paths a model provider's cache holds (its keys start with the path)."""
    cache = getattr(models, "cache", None)
    keys = cache.loaded_keys() if cache is not None and hasattr(cache, "loaded_keys") else []
    return {str(k[0]) if isinstance(k, tuple) else str(k) for k in keys}


class LocalExecutor:
    """The orchestrator of one device, in this process (its own model cache)."""

    def __init__(self, orchestrator: Any) -> None:
        self.orchestrator = orchestrator

    def run(self, request: dict[str, Any], *, events: EventSink, job_id: str) -> Any:
        return self.orchestrator.run(request, events=events, job_id=job_id)

    def loaded(self) -> set[str]:
        return loaded_paths(self.orchestrator.models)

    def describe(self) -> dict[str, Any]:
        return {"device": str(self.orchestrator.device), "node": socket.gethostname(), "pid": os.getpid()}
