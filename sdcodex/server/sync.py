"""Synchronous faces (A1111, OpenAI images) over the same queue: submit, wait without holding a thread,
and turn a failed job back into its error (same status and body as if it had failed in the request)."""
from __future__ import annotations

import base64
from typing import Any

from starlette.concurrency import run_in_threadpool

from sdcodex.core.errors import CodexError
from sdcodex.jobs import Job


class JobFailed(CodexError):
    """A job the request waited for failed; carries the job's own error code and status."""

    def __init__(self, job: Job) -> None:
        error = dict(job.error or {})
        super().__init__(str(error.get("message") or f"job {job.id} failed"))
        self.code = str(error.get("error") or "job_failed")
        self.http_status = int(error.get("status") or 500)
        self.job_error = error
        self.job_id = job.id

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.job_error)
        out.pop("status", None)
        out.setdefault("error", self.code)
        out.setdefault("message", self.message)
        out["job_id"] = self.job_id
        return out


class WaitTimeout(CodexError):
    http_status = 504
    code = "timeout"


async def submit_and_wait(service: Any, request: dict[str, Any], *, kind: str,
                          meta: dict[str, Any] | None = None) -> Job:
    """Run one request through the queue and wait for it. Raises the job's error if it failed."""
    job = await run_in_threadpool(service.submit, request, kind=kind, meta=meta)
    done = await service.queue.wait_async(job.id, timeout=service.settings.sync_timeout)
    if done is None:  # pragma: no cover - jobs are never deleted
        raise CodexError(f"job {job.id} vanished")
    if not done.terminal:
        raise WaitTimeout(f"job {job.id} is still {done.state} after {service.settings.sync_timeout}s; follow it "
                          f"at /api/v1/jobs/{job.id}")
    if done.state == "failed":
        raise JobFailed(done)
    return done


def output_files(service: Any, job: Job, key: str = "images") -> list[Any]:
    """Absolute paths of a finished job's outputs of one kind (missing files are left out)."""
    out = []
    for rel in (job.result or {}).get(key, []):
        path = service.output_path(rel)
        if path is not None:
            out.append(path)
    return out


def b64_file(path: Any) -> str:
    with open(path, "rb") as fh:
        return base64.b64encode(fh.read()).decode("ascii")


def edits_pictures(service: Any, native: dict[str, Any]) -> bool:
    """Whether the request's model (or the default one) is for an engine that edits reference pictures and has no
    img2img (Qwen-Image-Edit, FLUX.2), read from the engine registry; False when the model cannot be resolved (the
    job then reports that itself)."""
    from sdcodex.core.enums import Task
    from sdcodex.core.registry import get_engine

    try:
        ref = native.get("model") or service.default_model_ref()
        family = getattr(service.find_model(ref), "family", None) if ref else None
        engine = get_engine(str(getattr(family, "value", family))) if family else None
    except CodexError:
        return False
    return engine is not None and engine.max_images > 0 and Task.IMG2IMG not in engine.tasks
