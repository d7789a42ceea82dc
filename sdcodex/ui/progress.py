"""The UI's side of the job queue: submit a request through the server's service (the same queue and
worker as the APIs), follow a job through its stored events, interrupt/skip it, list the queue, and
render progress, errors and outputs as HTML/file lists for the page."""
from __future__ import annotations

import base64
import html
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from sdcodex.core.errors import CodexError

UI_KIND = "ui"
TERMINAL = ("done", "failed", "cancelled", "interrupted")


@dataclass
class Status:
    """What the progress bar shows, updated from the job's events."""

    job_id: str
    state: str = "queued"
    step: int = 0
    steps: int = 0
    done: int = 0
    total: int = 0
    progress: float = 0.0
    eta: float | None = None
    it_per_s: float | None = None
    image_index: int = 0
    images: int = 1
    position: int | None = None
    skipped: int = 0
    error: dict[str, Any] | None = None
    started: float = field(default_factory=time.time)
    preview: str | None = None  # data: URI of the latest live preview while running
    preview_done: int = 0

    def apply(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "progress":
            for key in ("step", "steps", "done", "total", "image_index", "images"):
                if isinstance(data.get(key), int):
                    setattr(self, key, data[key])
            self.progress = float(data.get("progress") or 0.0)
            self.eta = data.get("eta") if isinstance(data.get("eta"), (int, float)) else None
            self.it_per_s = data.get("it_per_s") if isinstance(data.get("it_per_s"), (int, float)) else None
        elif kind in ("started", "start"):
            self.state = "running"
        elif kind == "skipped":
            self.skipped += len(data.get("seeds") or [None])
        elif kind == "requeued":
            self.state = "queued"
        elif kind == "result":
            self.state, self.progress = "done", 1.0
        elif kind == "error":
            self.state, self.error = "failed", data.get("error")
        elif kind in ("cancelled", "interrupted"):
            self.state = kind


class UIJobs:
    """Bridge to the server's CodexService: the UI never calls an engine or the orchestrator itself."""

    def __init__(self, service: Any) -> None:
        self.service = service
        self.active: dict[str, str] = {}  # browser session -> its latest job id (for Interrupt/Skip)

    @property
    def store(self) -> Any:
        return self.service.store

    def submit(self, request: dict[str, Any], *, session: str | None = None, tab: str = "") -> Any:
        """Validate and queue (raises CodexError naming the field); remembers the session's job."""
        job = self.service.submit(request, kind=UI_KIND, meta={"face": "ui", "tab": tab})
        if session:
            self.active[session] = job.id
        return job

    def follow(self, job_id: str, *, every: float = 0.2, timeout: float | None = None) -> Iterator[Status]:
        """Yield the job's Status as its events arrive (at most every `every` s); the last one is terminal."""
        status = Status(job_id)
        n, seen = 0, self.service.queue.notifier.version
        deadline = None if timeout is None else time.monotonic() + timeout
        last_yield = 0.0
        while True:
            for k, kind, data in self.store.events(job_id, after=n):
                n = k
                status.apply(kind, data)
            job = self.store.get(job_id)
            if job is None:
                status.state, status.error = "failed", {"message": f"job {job_id} is gone"}
                yield status
                return
            if job.terminal:
                status.state = job.state
                status.error = job.error or status.error
                yield status
                return
            status.state = job.state
            status.position = self.store.position(job)
            self._refresh_preview(status)
            now = time.monotonic()
            if now - last_yield >= every:
                last_yield = now
                yield status
            if deadline is not None and now > deadline:
                return
            seen = self.service.queue.notifier.wait(seen, every)

    def _refresh_preview(self, status: Status) -> None:
        """Take the worker's latest live preview of this job (encoded only when it is a new one)."""
        preview = self.service.worker.preview(status.job_id) if status.state == "running" else None
        if preview is None:
            status.preview = None
        elif preview.done != status.preview_done or status.preview is None:
            status.preview = "data:image/png;base64," + base64.b64encode(preview.png()).decode()
            status.preview_done = preview.done

    def job(self, job_id: str) -> Any:
        return self.store.get(job_id)

    def interrupt(self, session: str | None, job_id: str | None = None) -> str | None:
        """Stop the session's job: a running one ends 'interrupted' (finished images kept), a queued one
        is cancelled. Returns the id acted on."""
        job_id = job_id or self.active.get(session or "")
        if not job_id:
            return None
        job = self.store.get(job_id)
        if job is None or job.terminal:
            return None
        if self.service.worker.runs(job_id):
            self.service.worker.interrupt(job_id)
        else:
            self.service.queue.cancel(job_id)
        return job_id

    def skip(self, session: str | None) -> str | None:
        job_id = self.active.get(session or "")
        if job_id and self.service.worker.runs(job_id):
            self.service.worker.skip(job_id)
            return job_id
        return None

    def outputs(self, job: Any) -> tuple[list[str], list[str]]:
        """Absolute paths of the job's images and videos."""
        result = job.result or {}
        out = Path(self.service.outdir)

        def paths(rel: list[str]) -> list[str]:
            return [str(p) for p in (out / r for r in rel) if p.is_file()]

        return paths(result.get("images", [])), paths(result.get("videos", []))

    def queue_rows(self, limit: int = 30) -> list[list[Any]]:
        """Rows for the queue table, newest first: id, tab/task, state, progress, position, model, age."""
        rows = []
        now = time.time()
        for job in self.store.list(limit=limit):
            prog = job.progress or {}
            pct = "100%" if job.state == "done" else (f"{round(100 * float(prog.get('progress') or 0))}%"
                                                     if prog else "")
            task = (job.request or {}).get("task", "")
            rows.append([job.id, task, job.kind, job.state, pct, self.store.position(job), job.model or "",
                         _age(now - job.created)])
        return rows


def _age(seconds: float) -> str:
    if seconds < 60:
        return f"{int(seconds)} s ago"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    return f"{int(seconds // 3600)} h ago"


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "…"
    seconds = max(int(round(seconds)), 0)
    return f"{seconds // 60}:{seconds % 60:02d}"


def rate_text(it_per_s: float) -> str:
    """A1111's speed: "2.50 it/s", and below 1 it/s "4.00 s/it"."""
    return f"{it_per_s:.2f} it/s" if it_per_s >= 1 else f"{1 / it_per_s:.2f} s/it"


STATE_TEXT = {"queued": "Queued", "running": "Running", "done": "Done", "failed": "Failed",
              "cancelled": "Cancelled", "interrupted": "Interrupted"}


def progress_html(status: Status | None) -> str:
    """The progress bar: state, step/total, percent, it/s and ETA; data-* attributes for tests."""
    if status is None:
        return '<div class="codex-progress" data-state="idle"></div>'
    pct = 100.0 * (1.0 if status.state == "done" else min(max(status.progress, 0.0), 1.0))
    parts = [STATE_TEXT.get(status.state, status.state)]
    if status.state == "queued" and status.position is not None:
        parts.append(f"position {status.position + 1} in the queue")
    if status.total:
        parts.append(f"Step {status.done}/{status.total}")
        if status.images > 1:
            shown = status.images if status.state == "done" else min(status.image_index + 1, status.images)
            parts.append(f"image {shown}/{status.images}")
    if status.skipped:
        parts.append(f"{status.skipped} skipped")
    parts.append(f"{pct:.0f}%")
    if status.state == "running":
        if status.it_per_s:
            parts.append(rate_text(status.it_per_s))
        parts.append(f"ETA {_clock(status.eta)}")
    elif status.state in TERMINAL:
        parts.append(f"{time.time() - status.started:.1f} s")
    text = " · ".join(parts)
    preview = ""
    if status.preview and status.state == "running":
        preview = (f'<img class="codex-preview" alt="live preview after step {status.preview_done}" '
                   f'data-step="{status.preview_done}" src="{status.preview}">')
    return (f'<div class="codex-progress" data-state="{status.state}" data-done="{status.done}" '
            f'data-total="{status.total}" data-skipped="{status.skipped}" data-job="{status.job_id}">'
            f'<div class="codex-progress-bar"><div class="codex-progress-fill" style="width:{pct:.1f}%"></div></div>'
            f'<div class="codex-progress-text">{html.escape(text)} <span class="codex-job">job {status.job_id[:8]}'
            f'</span></div>{preview}</div>')


def error_html(error: Any, labels: Any = None) -> str:
    """A visible error naming the field and the rule; '' clears the box. `labels(key) -> label` names the field
    as the page shows it ("Sampling steps (steps)"); the message itself is the API's, word for word."""
    if error is None:
        return ""
    if isinstance(error, CodexError):
        field, message, allowed = error.field, error.message, error.allowed
        extra = [p for p in getattr(error, "errors", [])[1:] if p.get("field")]
    elif isinstance(error, dict):
        field, message, allowed = error.get("field"), error.get("message") or error.get("error"), error.get("allowed")
        extra = [p for p in (error.get("errors") or [])[1:] if isinstance(p, dict) and p.get("field")]
        if field and isinstance(message, str) and message.startswith(f"{field}: "):
            message = message[len(field) + 2:]
        if allowed is not None and isinstance(message, str) and " (allowed: " in message:
            message = message.split(" (allowed: ")[0]
    else:
        field, message, allowed, extra = None, str(error), None, []
    if isinstance(allowed, (list, tuple, set, frozenset)):
        allowed = ", ".join(str(a) for a in allowed)
    def named(key: Any) -> str:
        label = labels(str(key)) if labels is not None else str(key)
        if label == str(key):
            return f'<b class="codex-error-field">{html.escape(str(key))}</b>'
        return (f'<b class="codex-error-field">{html.escape(label)}</b> '
                f'<code class="codex-error-key">({html.escape(str(key))})</code>')

    head = f"{named(field)}: " if field else ""
    body = f"{head}{html.escape(str(message))}"
    if allowed not in (None, ""):
        body += f' <span class="codex-error-allowed">(allowed: {html.escape(str(allowed))})</span>'
    for problem in extra[:5]:
        body += (f'<br>{named(problem["field"])}: '
                 f'{html.escape(str(problem.get("message", "")))}')
    return f'<div class="codex-error" role="alert">⚠ {body}</div>'
