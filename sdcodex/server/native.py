"""The native API under /api/v1: strict requests (the same JSON as the CLI), jobs with state, progress,
server-sent events (resumable with Last-Event-ID) and cancel, outputs, models, engines, samplers,
presets and health."""
from __future__ import annotations

import asyncio
import json
import mimetypes
from typing import Any, Optional

from fastapi import APIRouter, Body, Header, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from sdcodex import __version__
from sdcodex.core.request import TASK_KEYS, GenerationRequest
from sdcodex.jobs import STATES, Job

router = APIRouter(prefix="/api/v1", tags=["native"])
KEEPALIVE_S = 15.0


class JobUrls(BaseModel):
    self: str
    events: str
    cancel: str


class JobResult(BaseModel):
    images: list[str] = Field(description="URLs of the saved images (under /api/v1/outputs/)")
    videos: list[str] = Field(description="URLs of the saved videos")
    files: list[str] = Field(description="paths of the outputs relative to the output folder")
    info: dict[str, Any] = Field(description="what was really done: seeds, sampler asked/used, model hash, "
                                             "warnings, timings, the effective request")


class JobView(BaseModel):
    id: str
    kind: str
    state: str = Field(description="queued | running | done | failed | cancelled | interrupted")
    priority: int
    model: Optional[str] = None
    position: Optional[int] = Field(None, description="place in the queue (0 = next) while queued")
    progress: Optional[dict[str, Any]] = None
    result: Optional[JobResult] = None
    error: Optional[dict[str, Any]] = None
    attempts: int
    cancel_requested: bool
    created: float
    started: Optional[float] = None
    finished: Optional[float] = None
    request: dict[str, Any]
    urls: JobUrls


class JobList(BaseModel):
    jobs: list[JobView]
    counts: dict[str, int]


def output_url(rel: str) -> str:
    return f"/api/v1/outputs/{rel}"


def job_view(service: Any, job: Job) -> dict[str, Any]:
    from sdcodex.media.images import compact_request

    result = None
    if job.result is not None:
        files = list(job.result.get("images", [])) + list(job.result.get("videos", []))
        result = {"images": [output_url(p) for p in job.result.get("images", [])],
                  "videos": [output_url(p) for p in job.result.get("videos", [])],
                  "files": files, "info": job.result.get("info") or {}}
    base = f"/api/v1/jobs/{job.id}"
    return {"id": job.id, "kind": job.kind, "state": job.state, "priority": job.priority, "model": job.model,
            "position": service.store.position(job), "progress": job.progress, "result": result,
            "error": job.error, "attempts": job.attempts, "cancel_requested": job.cancel_requested,
            "created": job.created, "started": job.started, "finished": job.finished,
            "request": compact_request(job.request),
            "urls": {"self": base, "events": f"{base}/events", "cancel": f"{base}/cancel"}}


def _service(request: Request) -> Any:
    return request.app.state.codex


def _job_or_404(service: Any, job_id: str) -> Job:
    job = service.store.get(job_id)
    if job is None:
        raise HTTPException(404, f"no job {job_id!r}")
    return job


@router.post("/jobs", status_code=202, response_model=JobView, summary="Submit a generation job",
             responses={404: {"description": "unknown model (lists the models that exist)"},
                        413: {"description": "body, input image or job over the server's limits"},
                        422: {"description": "invalid request; `field` is the JSON path"}})
async def submit_job(request: Request, body: GenerationRequest = Body(...),
                     priority: int = Query(0, ge=-100, le=100, description="higher runs first")) -> JSONResponse:
    """Validate the request exactly as the CLI does, persist the job (committed before this answers)
    and answer 202 with its id. The worker runs it in queue order."""
    raw = await request.json()
    service = _service(request)
    job = await run_in_threadpool(service.submit, raw, kind="native", priority=priority)
    view = job_view(service, job)
    return JSONResponse(view, status_code=202, headers={"Location": view["urls"]["self"]})


@router.get("/jobs", response_model=JobList, summary="List jobs, newest first")
async def list_jobs(request: Request, state: Optional[str] = Query(None, description="comma-separated states"),
                    kind: Optional[str] = Query(None, max_length=32), limit: int = Query(50, ge=1, le=500),
                    offset: int = Query(0, ge=0, le=10**9)) -> dict[str, Any]:
    service = _service(request)
    states = [s.strip() for s in state.split(",") if s.strip()] if state else []
    bad = [s for s in states if s not in STATES]
    if bad:
        from sdcodex.core.errors import ValidationError

        raise ValidationError(f"unknown state {bad[0]!r}", field="query.state", allowed=list(STATES))
    jobs = service.store.list(states=states, kind=kind, limit=limit, offset=offset)
    return {"jobs": [job_view(service, j) for j in jobs], "counts": service.store.counts()}


@router.get("/jobs/{job_id}", response_model=JobView, summary="A job: state, progress, result, output URLs")
async def get_job(request: Request, job_id: str) -> dict[str, Any]:
    service = _service(request)
    return job_view(service, _job_or_404(service, job_id))


@router.post("/jobs/{job_id}/cancel", response_model=JobView, summary="Cancel a queued or running job",
             responses={409: {"description": "the job has already ended"}})
async def cancel_job(request: Request, job_id: str) -> dict[str, Any]:
    """A queued job is cancelled at once; a running job is interrupted at its next step and ends as
    `cancelled` (images finished before keep their files)."""
    service = _service(request)
    job = _job_or_404(service, job_id)
    if job.terminal:
        raise HTTPException(409, f"job {job_id} has already ended ({job.state})")
    service.queue.cancel(job_id)
    return job_view(service, _job_or_404(service, job_id))


def _sse(n: int, kind: str, data: dict[str, Any]) -> str:
    return f"id: {n}\nevent: {kind}\ndata: {json.dumps(data, default=str, separators=(',', ':'))}\n\n"


@router.get("/jobs/{job_id}/preview", summary="The running job's latest live preview (PNG)",
            response_class=Response,
            responses={200: {"content": {"image/png": {}}, "description": "latent preview, 1/8 of the size"},
                       404: {"description": "no such job, or no preview (not running, family without one, "
                                            "or previews off)"}})
async def job_preview(request: Request, job_id: str) -> Response:
    """A cheap approximation of the current latents (no VAE call), made every `show_progress_every_n_steps`
    steps while the job runs; the `X-Step` header says after which step of the job it was made."""
    service = _service(request)
    _job_or_404(service, job_id)
    preview = service.worker.preview(job_id)
    if preview is None:
        raise HTTPException(404, f"job {job_id!r} has no live preview now")
    return Response(await run_in_threadpool(preview.png), media_type="image/png",
                    headers={"X-Step": str(preview.done), "Cache-Control": "no-store"})


@router.get("/jobs/{job_id}/events", summary="Server-sent events of a job",
            response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}, "description": "event stream"}})
async def job_events(request: Request, job_id: str,
                     last_event_id: Optional[str] = Header(None, description="resume after this event id"),
                     after: Optional[int] = Query(None, ge=0, le=2**31, description="resume after this id")
                     ) -> StreamingResponse:
    """Every event of the job in order, each with an `id`: queued, started, start, progress (step,
    steps, done, total, progress, it_per_s, eta), image, result | error | cancelled | interrupted.
    The stream closes after the job's last event. Reconnect with `Last-Event-ID` (or `?after=`) to
    get only what came after; events are stored, so a resume after a restart works too."""
    service = _service(request)
    _job_or_404(service, job_id)
    start = after if after is not None else 0
    if after is None and last_event_id:
        try:
            start = max(int(last_event_id.strip()), 0)
        except ValueError:
            start = 0

    async def stream() -> Any:
        n = start
        with service.queue.notifier.listen(job_id) as changed:
            while True:
                changed.clear()
                job = service.store.get(job_id)
                events = service.store.events(job_id, after=n, limit=500)
                for k, kind, data in events:
                    n = k
                    yield _sse(k, kind, data)
                if len(events) == 500:
                    continue
                if job is None or job.terminal:
                    return
                if await request.is_disconnected():
                    return
                try:
                    await asyncio.wait_for(changed.wait(), KEEPALIVE_S)
                except asyncio.TimeoutError:
                    yield ": keep-alive\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/outputs/{path:path}", summary="An output file", response_class=FileResponse,
            responses={200: {"content": {"image/png": {}, "video/mp4": {}}}})
async def get_output(request: Request, path: str) -> FileResponse:
    file = _service(request).output_path(path)
    if file is None:
        raise HTTPException(404, f"no output {path!r}")
    media_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    return FileResponse(file, media_type=media_type)


def _model_rows(service: Any, kind: Optional[str]) -> list[dict[str, Any]]:
    inv = getattr(service.models, "inventory", None)
    rows = []
    for entry in service.models.entries(kind=kind):
        cached = None
        if inv is not None and hasattr(inv, "cached_short_hash"):
            cached = inv.cached_short_hash(entry)
        rows.append(entry.to_dict(cached) if hasattr(entry, "to_dict") else {"name": entry.name})
    return rows


@router.get("/models", summary="Models found in the models folder")
async def list_models(request: Request, kind: Optional[str] = Query(None, max_length=32,
                      description="checkpoint, vae, lora, text_encoder, upscaler, embedding ...")) -> dict[str, Any]:
    service = _service(request)
    rows = await run_in_threadpool(_model_rows, service, kind)
    return {"models": rows, "models_dir": str(service.models.models_dir)}


@router.post("/models/refresh", summary="Scan the models folder again")
async def refresh_models(request: Request) -> dict[str, Any]:
    service = _service(request)
    await run_in_threadpool(service.models.refresh)
    rows = await run_in_threadpool(_model_rows, service, None)
    return {"models": rows, "models_dir": str(service.models.models_dir)}


def _request_schema_for(task_keys: frozenset[str]) -> dict[str, Any]:
    schema = GenerationRequest.model_json_schema()
    schema["properties"] = {k: v for k, v in schema["properties"].items() if k in task_keys}
    return schema


@router.get("/engines", summary="Engines and what each can do")
async def list_engines() -> dict[str, Any]:
    """Per engine: tasks, modes, samplers valid for its prediction type, schedule types, size and
    frame rules, defaults, and per task the JSON schema of the request keys that apply."""
    import sdcodex.engines  # noqa: F401 - registers the engines
    from sdcodex.core.registry import ENGINES
    from sdcodex.core.samplers import list_samplers, list_schedulers

    schedulers = [s["name"] for s in list_schedulers()]
    out = []
    for _key, cls in ENGINES.items():
        caps = dict(cls.capabilities())
        caps["samplers"] = [s["name"] for s in list_samplers(cls.prediction)]
        caps["schedulers"] = schedulers
        caps["params_schema"] = {t.value: _request_schema_for(TASK_KEYS[t]) for t in sorted(cls.tasks)}
        out.append(caps)
    return {"engines": out}


@router.get("/samplers", summary="Samplers and schedule types")
async def samplers() -> dict[str, Any]:
    from sdcodex.core.samplers import list_samplers, list_schedulers

    return {"samplers": list_samplers(), "schedulers": list_schedulers()}


@router.get("/presets", summary="The presets (fill-only defaults per engine, mode and task)")
async def presets() -> dict[str, Any]:
    from sdcodex.core.presets import all_presets

    return {"presets": [p.to_dict() for p in all_presets().values()]}


class WorkerView(BaseModel):
    id: str = Field(description="worker name (in-process) or Ray Serve replica id; results name it in info.worker")
    device: Optional[str] = None
    node: Optional[str] = Field(None, description="host name of the machine it runs on")
    pid: Optional[int] = None
    models: list[str] = Field(description="model paths it holds loaded")
    job: Optional[str] = Field(None, description="the job it runs now")


class WorkerList(BaseModel):
    backend: str = Field(description="local (workers in the server process) or ray (Ray Serve replicas)")
    workers: list[WorkerView]


@router.get("/workers", response_model=WorkerList, summary="Every worker or Ray replica and what it holds")
def workers(request: Request) -> dict[str, Any]:
    """One entry per worker (`--devices`) or Ray Serve replica (`--backend ray`): where it runs, the models it
    holds loaded and the job it runs now."""
    service = _service(request)
    return {"backend": service.settings.backend, "workers": service.worker.listing()}


@router.get("/health", summary="Liveness, device, worker and queue counts")
async def health(request: Request) -> dict[str, Any]:
    service = _service(request)
    return {"status": "ok" if service.worker.alive or not service.settings.start_worker else "degraded",
            "version": __version__, "device": service.device,
            "worker": {"alive": service.worker.alive, "current_job": service.worker.current_job,
                       "jobs_run": service.worker.jobs_run},
            "queue": service.store.counts(), "loaded_models": sorted(service.loaded_model_paths())}
