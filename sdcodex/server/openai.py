"""OpenAI-style routes: `POST /v1/images/generations` (synchronous, through the queue) and the async
video API `POST /v1/videos`, `GET /v1/videos/{id}`, `GET /v1/videos/{id}/content`. Errors use
OpenAI's shape ({"error": {"message", "type", "param", "code"}})."""
from __future__ import annotations

import math
import re
from typing import Any, Literal, Optional

from fastapi import APIRouter, Body, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from sdcodex.core.errors import CodexError, ValidationError
from sdcodex.jobs import Job

from .sync import b64_file, edits_pictures, output_files, submit_and_wait

router = APIRouter(prefix="/v1", tags=["openai"])

#: OpenAI model names mean "the server's default model"
_OPENAI_MODELS = re.compile(r"^(dall-e-\d|gpt-image-[\w.-]+|sora[\w.-]*)$", re.IGNORECASE)
_SIZE = re.compile(r"^(\d{1,5})x(\d{1,5})$")
_VIDEO_PREFIX = "video_"


class ImageGenerationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt: str = Field(..., max_length=32000)
    model: Optional[str] = None
    n: int = Field(1, ge=1, le=10)
    size: Optional[str] = Field(None, description='"WxH" or "auto"')
    response_format: Literal["b64_json", "url"] = "b64_json"
    quality: Optional[str] = None
    style: Optional[str] = None
    user: Optional[str] = None
    background: Optional[str] = None
    moderation: Optional[str] = None
    output_format: Optional[Literal["png", "webp", "jpeg"]] = None
    output_compression: Optional[int] = Field(None, ge=0, le=100)
    negative_prompt: Optional[str] = Field(None, description="extension: our negative prompt")
    seed: Optional[int] = Field(None, ge=-1, le=2**32 - 1, description="extension")
    steps: Optional[int] = Field(None, ge=1, le=500, description="extension")
    emphasis: Optional[Literal["Original", "No norm", "None"]] = Field(
        None, description="extension: A1111 emphasis mode for (weighted:1.2) prompt syntax")


class ImageData(BaseModel):
    b64_json: Optional[str] = None
    url: Optional[str] = None
    revised_prompt: Optional[str] = None


class ImageGenerationResponse(BaseModel):
    created: int
    data: list[ImageData]


class VideoRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt: str = Field(..., max_length=32000)
    model: Optional[str] = None
    seconds: Optional[str] = Field(None, pattern=r"^\d{1,3}(\.\d+)?$", description='e.g. "4"')
    size: Optional[str] = Field(None, description='"WxH"')
    input_reference: Optional[str] = Field(None, description="base64 image (data URL allowed): image to video")
    negative_prompt: Optional[str] = None
    seed: Optional[int] = Field(None, ge=-1, le=2**32 - 1)
    steps: Optional[int] = Field(None, ge=1, le=500)
    fps: Optional[float] = Field(None, gt=0, le=240)
    num_frames: Optional[int] = Field(None, ge=1, le=1024)
    emphasis: Optional[Literal["Original", "No norm", "None"]] = Field(
        None, description="extension: A1111 emphasis mode for (weighted:1.2) prompt syntax")


class VideoObject(BaseModel):
    id: str
    object: str = "video"
    model: Optional[str] = None
    status: str = Field(description="queued | in_progress | completed | failed")
    progress: int
    created_at: int
    completed_at: Optional[int] = None
    expires_at: Optional[int] = None
    size: Optional[str] = None
    seconds: Optional[str] = None
    quality: str = "standard"
    error: Optional[dict[str, Any]] = None


def _service(request: Request) -> Any:
    return request.app.state.codex


def _size(size: Optional[str], field: str = "size") -> tuple[int, int] | None:
    if size is None or size == "auto":
        return None
    m = _SIZE.match(size.strip())
    if not m:
        raise ValidationError(f"must be WIDTHxHEIGHT, e.g. 1024x1024 (got {size!r})", field=field,
                              allowed='"WxH" or "auto"')
    return int(m.group(1)), int(m.group(2))


def _model(model: Optional[str]) -> Optional[str]:
    return None if not model or _OPENAI_MODELS.match(model) else model


@router.post("/images/generations", response_model=ImageGenerationResponse, response_model_exclude_none=True)
async def image_generations(request: Request, body: ImageGenerationRequest = Body(...)) -> dict[str, Any]:
    """Generate `n` images; `model` names one of our checkpoints (OpenAI names use the default)."""
    service = _service(request)
    native: dict[str, Any] = {"task": "txt2img", "prompt": body.prompt, "batch_size": body.n}
    size = _size(body.size)
    if size:
        native["width"], native["height"] = size
    if _model(body.model):
        native["model"] = body.model
    if body.output_format:
        native["output_format"] = body.output_format
    for key in ("negative_prompt", "seed", "steps", "emphasis"):
        if getattr(body, key) is not None:
            native[key] = getattr(body, key)
    job = await submit_and_wait(service, native, kind="openai_image")
    return _image_response(request, service, job, body.response_format)


def _image_response(request: Request, service: Any, job: Job, response_format: str) -> dict[str, Any]:
    if response_format == "url":
        base = str(request.base_url).rstrip("/")
        data = [{"url": f"{base}/api/v1/outputs/{rel}"} for rel in (job.result or {}).get("images", [])]
    else:
        data = [{"b64_json": b64_file(p)} for p in output_files(service, job)]
    return {"created": int(job.created), "data": data}


async def _b64(upload: UploadFile) -> str:
    import base64

    return base64.b64encode(await upload.read()).decode("ascii")


@router.post("/images/edits", response_model=ImageGenerationResponse, response_model_exclude_none=True)
async def image_edits(request: Request, prompt: str = Form(..., max_length=32000),
                      image: Optional[list[UploadFile]] = File(None, description="the picture(s); also image[]"),
                      image_list: Optional[list[UploadFile]] = File(None, alias="image[]"),
                      mask: Optional[UploadFile] = File(None, description="white = repaint (img2img models)"),
                      model: Optional[str] = Form(None), n: int = Form(1, ge=1, le=10),
                      size: Optional[str] = Form(None), response_format: Literal["b64_json", "url"] = Form("b64_json"),
                      output_format: Optional[Literal["png", "webp", "jpeg"]] = Form(None),
                      negative_prompt: Optional[str] = Form(None),
                      seed: Optional[int] = Form(None, ge=-1, le=2**32 - 1), steps: Optional[int] = Form(None, ge=1, le=500),
                      ) -> dict[str, Any]:
    """OpenAI's image edit (multipart). On a model that edits reference pictures (FLUX.2, Qwen-Image-Edit) every
    `image` is one of its `images`; on any other model one `image` is img2img's input, with `mask` an inpaint."""
    service = _service(request)
    pictures = [await _b64(f) for f in [*(image or []), *(image_list or [])]]
    if not pictures:
        raise ValidationError("is required: one or more picture files", field="image")
    native: dict[str, Any] = {"prompt": prompt, "batch_size": n}
    size_wh = _size(size)
    if size_wh:
        native["width"], native["height"] = size_wh
    if _model(model):
        native["model"] = model
    for key, value in (("output_format", output_format), ("negative_prompt", negative_prompt), ("seed", seed),
                       ("steps", steps)):
        if value is not None:
            native[key] = value
    if await run_in_threadpool(edits_pictures, service, native):
        if mask is not None:
            raise ValidationError("an editing model takes pictures to edit, not a mask", field="mask")
        native.update(task="txt2img", images=pictures)
    else:
        if len(pictures) > 1:
            raise ValidationError(f"this model edits one picture (img2img); got {len(pictures)}", field="image",
                                  allowed="one image, or a model that takes reference images (FLUX.2, "
                                          "Qwen-Image-Edit)")
        native.update(task="inpaint" if mask is not None else "img2img", init_image=pictures[0])
        if mask is not None:
            native["mask"] = await _b64(mask)
    try:
        job = await submit_and_wait(service, native, kind="openai_image")
    except CodexError as exc:
        field = exc.field or ""
        if field.startswith("images") or field == "init_image":  # name the form field the client sent
            exc.field = "image" + field[len("images"):] if field.startswith("images") else "image"
            if isinstance(exc, ValidationError) and exc.errors:
                exc.errors[0]["field"] = exc.field
        raise
    return _image_response(request, service, job, response_format)


def _frames_for(service: Any, native: dict[str, Any], seconds: Optional[str], fps: Optional[float]) -> None:
    """Turn OpenAI `seconds` into a frame count that fits the engine's frame rule (rounded up). Without `fps` the
    engine's default frame rate counts (LTX-2, WAN TI2V-5B: 24), else 16."""
    if seconds is None or "num_frames" in native:
        return
    try:
        from sdcodex.core.registry import get_engine

        entry = service.find_model(native["model"]) if native.get("model") else None
        family = getattr(entry, "family", None)
        engine = get_engine(family.value) if family is not None else None
    except CodexError:
        engine = None
    rule = engine.frame_rule if engine is not None else None
    fps = fps or float((engine.defaults if engine is not None else {}).get("fps") or 16.0)
    frames = max(1, math.ceil(float(seconds) * fps))
    if rule:
        k, r = rule
        frames = frames + ((r - frames) % k)
    native["num_frames"] = min(frames, 1024)


def video_object(job: Job) -> dict[str, Any]:
    status = {"queued": "queued", "running": "in_progress", "done": "completed"}.get(job.state, "failed")
    p = job.progress or {}
    progress = 100 if job.state == "done" else int(100 * float(p.get("progress", 0) or 0))
    meta = job.meta or {}
    error = None
    if status == "failed":
        e = job.error or {"error": job.state, "message": f"the job ended as {job.state}"}
        error = {"code": e.get("error"), "message": e.get("message")}
    return {"id": f"{_VIDEO_PREFIX}{job.id}", "object": "video", "model": job.model, "status": status,
            "progress": progress, "created_at": int(job.created),
            "completed_at": int(job.finished) if job.finished else None, "expires_at": None,
            "size": meta.get("size"), "seconds": meta.get("seconds"), "quality": "standard", "error": error}


@router.post("/videos", response_model=VideoObject)
async def create_video(request: Request, body: VideoRequest = Body(...)) -> dict[str, Any]:
    """Queue a video job (txt2vid, or img2vid with `input_reference`); poll GET /v1/videos/{id}."""
    service = _service(request)
    native: dict[str, Any] = {"task": "img2vid" if body.input_reference else "txt2vid", "prompt": body.prompt}
    if body.input_reference:
        native["init_image"] = body.input_reference
    size = _size(body.size)
    if size:
        native["width"], native["height"] = size
    if _model(body.model):
        native["model"] = body.model
    for key in ("negative_prompt", "seed", "steps", "fps", "num_frames", "emphasis"):
        if getattr(body, key) is not None:
            native[key] = getattr(body, key)
    _frames_for(service, native, body.seconds, body.fps)
    job = await run_in_threadpool(service.submit, native, kind="openai_video",
                                  meta={"size": body.size, "seconds": body.seconds})
    return video_object(job)


def _video_job(service: Any, video_id: str) -> Job:
    job_id = video_id[len(_VIDEO_PREFIX):] if video_id.startswith(_VIDEO_PREFIX) else video_id
    job = service.store.get(job_id)
    if job is None or job.kind != "openai_video":
        raise HTTPException(404, f"no video {video_id!r}")
    return job


@router.get("/videos/{video_id}", response_model=VideoObject)
async def get_video(request: Request, video_id: str) -> dict[str, Any]:
    return video_object(_video_job(_service(request), video_id))


@router.get("/videos/{video_id}/content", response_class=FileResponse,
            responses={200: {"content": {"video/mp4": {}}}, 409: {"description": "the video is not ready"}})
async def video_content(request: Request, video_id: str,
                        variant: str = Query("video", pattern="^(video|thumbnail|spritesheet)$")) -> FileResponse:
    service = _service(request)
    job = _video_job(service, video_id)
    if job.state != "done":
        raise HTTPException(409, f"video {video_id} is {video_object(job)['status']}, not completed")
    if variant != "video":
        raise HTTPException(404, f"variant {variant!r} is not available; only 'video'")
    files = output_files(service, job, "videos")
    if not files:
        raise HTTPException(404, f"video {video_id} has no file")
    import mimetypes

    return FileResponse(files[0], media_type=mimetypes.guess_type(files[0].name)[0] or "video/mp4")

