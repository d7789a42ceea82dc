"""The AUTOMATIC1111-compatible API under /sdapi/v1 (field names and response shapes of A1111 1.10).
Generation routes are synchronous for the client but run through the same job queue as every job."""
from __future__ import annotations

import base64
import time
from typing import Any, Optional

import psutil
from fastapi import APIRouter, Body, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from sdcodex.core.errors import CodexError, ValidationError
from sdcodex.core.params import batch_extras

from .a1111_map import (Img2ImgRequest, Txt2ImgRequest, as_edit, info_string, model_name_of, parameters,
                        to_a1111_field, to_request)
from .checks import LATENT_UPSCALE_MODES, check_unicode
from .sync import b64_file, edits_pictures, output_files, submit_and_wait

router = APIRouter(prefix="/sdapi/v1", tags=["a1111"])


class ImageResponse(BaseModel):
    images: list[str] = Field(description="base64 PNG/WebP/JPEG files, with their infotext embedded")
    parameters: dict[str, Any]
    info: str = Field(description="a JSON string with A1111's keys (prompt, all_seeds, infotexts, ...)")


class ProgressState(BaseModel):
    skipped: bool
    interrupted: bool
    stopping_generation: bool
    job: str
    job_count: int
    job_timestamp: str
    job_no: int
    sampling_step: int
    sampling_steps: int


class ProgressResponse(BaseModel):
    progress: float
    eta_relative: float
    state: ProgressState
    current_image: Optional[str] = None
    textinfo: Optional[str] = None


class PngInfoRequest(BaseModel):
    image: str = Field(description="base64 image (data URL allowed)")


class PngInfoResponse(BaseModel):
    info: str
    items: dict[str, Any]
    parameters: dict[str, Any]


class ExtrasSingleImageRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    image: str = ""
    resize_mode: int = 0
    show_extras_results: bool = True
    gfpgan_visibility: float = 0
    codeformer_visibility: float = 0
    codeformer_weight: float = 0
    upscaling_resize: float = 2
    upscaling_resize_w: int = 512
    upscaling_resize_h: int = 512
    upscaling_crop: bool = True
    upscaler_1: str = "None"
    upscaler_2: str = "None"
    extras_upscaler_2_visibility: float = 0
    upscale_first: bool = False


class ExtrasSingleImageResponse(BaseModel):
    html_info: str
    image: str


def _service(request: Request) -> Any:
    return request.app.state.codex


async def _generate(request: Request, body: Txt2ImgRequest, task: str) -> dict[str, Any]:
    from sdcodex.media.infotext import build_infotext

    service = _service(request)
    try:
        native, ignored = to_request(body, task=task, options=service.options())
        if task == "img2img" and edits_pictures(service, native):
            as_edit(native, ignored, list(getattr(body, "init_images", None) or []))
        job = await submit_and_wait(service, native, kind="a1111", meta={"ignored": ignored})
    except CodexError as exc:
        raise to_a1111_field(exc) from None
    info = (job.result or {}).get("info") or {}
    fields = info.get("infotext_fields") or {}
    req = info.get("request") or {}
    first, size = (req.get("seed") or 0) - (req.get("batch_index") or 0), req.get("batch_size", 1)
    infotexts = [build_infotext({**fields, "seed": seed,
                                 "extra": {**(fields.get("extra") or {}), **batch_extras(seed, first, size)}})
                 for seed in info.get("seeds") or []]
    files = output_files(service, job)
    if info.get("xyz"):  # a plot: the grid(s) first, the cells only with include_lone_images (as A1111)
        files, infotexts = plot_outputs(files, info["xyz"])
    images = [b64_file(p) for p in files] if body.send_images else []
    return {"images": images, "parameters": parameters(body, info.get("request") or {}),
            "info": info_string(job.id, info, infotexts, ignored)}


def plot_outputs(files: list[Any], xyz: dict[str, Any]) -> tuple[list[Any], list[str]]:
    """The files an A1111 client gets for an X/Y/Z plot, and their infotexts (read from the files)."""
    from sdcodex.media.reader import read_info

    keep = files if xyz.get("include_sub_images") else files[:int(xyz.get("grids") or 0)]
    return keep, [str(read_info(str(p)).get("parameters") or "") for p in keep]


@router.post("/txt2img", response_model=ImageResponse)
async def txt2img(request: Request, body: Txt2ImgRequest = Body(...)) -> dict[str, Any]:
    """A1111 txt2img. Unknown extra fields are accepted and listed in info.ignored_fields."""
    return await _generate(request, body, "txt2img")


@router.post("/img2img", response_model=ImageResponse)
async def img2img(request: Request, body: Img2ImgRequest = Body(...)) -> dict[str, Any]:
    """A1111 img2img; with `mask` it is an inpaint job (mask_blur, inpainting_mask_invert,
    inpaint_full_res, inpaint_full_res_padding apply)."""
    return await _generate(request, body, "img2img")


@router.post("/extra-single-image", response_model=ExtrasSingleImageResponse)
async def extra_single_image(request: Request, body: ExtrasSingleImageRequest = Body(...)) -> dict[str, Any]:
    """Upscale one image with `upscaler_1` (by `upscaling_resize`, or to w x h with resize_mode 1)."""
    service = _service(request)
    native: dict[str, Any] = {"task": "upscale", "init_image": body.image, "upscaler": body.upscaler_1}
    if body.resize_mode == 1:
        native.update(resize_x=int(body.upscaling_resize_w), resize_y=int(body.upscaling_resize_h))
    else:
        native["scale"] = float(body.upscaling_resize)
    try:
        job = await submit_and_wait(service, native, kind="a1111")
    except CodexError as exc:
        if exc.field == "init_image":
            exc.field = "image"
        raise
    files = output_files(service, job)
    if not files:
        raise CodexError(f"upscale job {job.id} produced no image")
    return {"html_info": "", "image": b64_file(files[0])}


@router.get("/progress", response_model=ProgressResponse)
async def progress(request: Request, skip_current_image: bool = Query(False)) -> dict[str, Any]:
    """Progress of the running job; state.job_count is the number of jobs running or queued."""
    service = _service(request)
    counts = service.store.counts()
    job_id = service.worker.current_job
    job = service.store.get(job_id) if job_id else None
    p = (job.progress if job else None) or {}
    state = {"skipped": False, "interrupted": bool(job and job.cancel_requested), "stopping_generation": False,
             "job": f"task({job.id})" if job else "", "job_count": counts["queued"] + counts["running"],
             "job_timestamp": time.strftime("%Y%m%d%H%M%S", time.localtime(job.started)) if job and job.started
             else "0", "job_no": int(p.get("image_index", 0) or 0),
             "sampling_step": int(p.get("step", 0) or 0), "sampling_steps": int(p.get("steps", 0) or 0)}
    eta = p.get("eta")
    preview = None if skip_current_image or job is None else service.worker.preview(job.id)
    return {"progress": float(p.get("progress", 0.0) or 0.0), "eta_relative": float(eta) if eta else 0.0,
            "state": state, "current_image": base64.b64encode(preview.png()).decode() if preview else None,
            "textinfo": f"Step {preview.done}" if preview else None}


@router.post("/interrupt")
async def interrupt(request: Request) -> dict[str, Any]:
    """Stop the running job after its current step; finished images are kept (state interrupted)."""
    return {"interrupted": _service(request).worker.interrupt()}


@router.post("/skip")
async def skip(request: Request) -> dict[str, Any]:
    """Drop the current batch of the running job and go on with the next."""
    return {"skipped": _service(request).worker.skip()}


@router.get("/options")
async def get_options(request: Request) -> dict[str, Any]:
    service = _service(request)
    opts = service.options()
    if not opts.get("sd_model_checkpoint"):
        checkpoints = await run_in_threadpool(service.checkpoints)
        if checkpoints:
            opts["sd_model_checkpoint"] = await run_in_threadpool(service.title, checkpoints[0])
    return opts


@router.post("/options", responses={404: {"description": "sd_model_checkpoint names no model"}})
async def set_options(request: Request, body: dict[str, Any] = Body(...)) -> None:
    """Set options; `sd_model_checkpoint` switches the default model. Posting back the whole dict
    from GET works (unknown keys are kept and echoed)."""
    await run_in_threadpool(_service(request).set_options, body)
    return None


@router.get("/cmd-flags")
async def cmd_flags(request: Request) -> dict[str, Any]:
    s = _service(request).settings
    return {"api": True, "listen": s.host not in ("127.0.0.1", "localhost"), "port": s.port,
            "ckpt_dir": str(_service(request).models.models_dir), "api_auth": None}


def _entries(service: Any, kind: str) -> list[Any]:
    return list(service.models.entries(kind=kind))


@router.get("/sd-models")
async def sd_models(request: Request) -> list[dict[str, Any]]:
    service = _service(request)

    def rows() -> list[dict[str, Any]]:
        out = []
        for e in service.checkpoints():
            title = service.title(e)
            sha = service._sha(e)
            out.append({"title": title, "model_name": e.name, "hash": sha[:10] if sha else None, "sha256": sha,
                        "filename": str(e.path), "config": None})
        return out

    return await run_in_threadpool(rows)


@router.post("/refresh-checkpoints")
async def refresh_checkpoints(request: Request) -> None:
    await run_in_threadpool(_service(request).models.refresh)


@router.post("/refresh-loras")
async def refresh_loras(request: Request) -> None:
    await run_in_threadpool(_service(request).models.refresh)


@router.post("/refresh-vae")
async def refresh_vae(request: Request) -> None:
    await run_in_threadpool(_service(request).models.refresh)


@router.get("/samplers")
async def samplers() -> list[dict[str, Any]]:
    from sdcodex.core.samplers import list_samplers

    return [{"name": s["name"], "aliases": s["aliases"], "options": {}} for s in list_samplers()]


@router.get("/schedulers")
async def schedulers() -> list[dict[str, Any]]:
    from sdcodex.core.samplers import list_schedulers

    return [{"name": s["name"], "label": s["label"], "aliases": s["aliases"] or None, "default_rho": -1,
             "need_inner_model": False} for s in list_schedulers()]


@router.get("/upscalers")
async def upscalers(request: Request) -> list[dict[str, Any]]:
    from sdcodex.models.upscalers import list_upscalers

    service = _service(request)
    models_dir = service.models.models_dir
    files = [(e.name, e.path) for e in await run_in_threadpool(_entries, service, "upscaler")]
    rows = await run_in_threadpool(list_upscalers, models_dir, files)
    return [u if isinstance(u, dict) else u.to_api(models_dir) for u in rows]


@router.get("/latent-upscale-modes")
async def latent_upscale_modes() -> list[dict[str, Any]]:
    return [{"name": n} for n in LATENT_UPSCALE_MODES]


@router.get("/sd-vae")
async def sd_vae(request: Request) -> list[dict[str, Any]]:
    return [{"model_name": e.filename, "filename": str(e.path)}
            for e in await run_in_threadpool(_entries, _service(request), "vae")]


@router.get("/sd-modules")
async def sd_modules(request: Request) -> list[dict[str, Any]]:
    return [{"model_name": e.filename, "filename": str(e.path)}
            for e in await run_in_threadpool(_entries, _service(request), "text_encoder")]


@router.get("/loras")
async def loras(request: Request) -> list[dict[str, Any]]:
    """A1111 shape (name, alias, path, metadata): the file's safetensors metadata with JSON values decoded (as
    A1111 gives ss_tag_frequency), plus its family, base model, trigger words and top training tags."""
    from sdcodex.models.networks import a1111_loras

    service = _service(request)
    await run_in_threadpool(_entries, service, "lora")  # scans the models folder once if needed
    return await run_in_threadpool(a1111_loras, service.models.inventory)


@router.get("/prompt-styles")
async def prompt_styles(request: Request) -> list[dict[str, Any]]:
    """The prompt styles of styles.csv (name, prompt, negative_prompt), as A1111 lists them."""
    return [s.to_dict() for s in (await run_in_threadpool(_service(request).styles.all)).values()]


@router.get("/embeddings")
async def embeddings(request: Request) -> dict[str, Any]:
    loaded = {e.name: {"step": None, "sd_checkpoint": None, "sd_checkpoint_name": None, "shape": None,
                       "vectors": None} for e in await run_in_threadpool(_entries, _service(request), "embedding")}
    return {"loaded": loaded, "skipped": {}}


@router.post("/png-info", response_model=PngInfoResponse)
async def png_info(request: Request, body: PngInfoRequest = Body(...)) -> dict[str, Any]:
    """Generation parameters stored in an image (A1111 infotext) and our request, when present. The image
    is base64 or a data URL only: a file path is never read on the server."""
    from sdcodex.media.imageio import decode_b64_bytes
    from sdcodex.media.reader import read_info

    if not body.image:
        raise ValidationError("is required: a base64 image", field="image")
    check_unicode(body.image, ("image",))
    data = decode_b64_bytes(body.image, field="image", max_bytes=_service(request).settings.max_body_bytes)
    info = await run_in_threadpool(read_info, data)
    items = {k: v for k, v in info.items() if k not in ("parameters", "parsed") and v is not None}
    return {"info": info.get("parameters") or "", "items": items, "parameters": info.get("parsed") or {}}


@router.get("/memory")
async def memory() -> dict[str, Any]:
    vm = psutil.virtual_memory()
    ram = {"free": vm.available, "used": vm.total - vm.available, "total": vm.total}
    cuda: dict[str, Any] = {"error": "unavailable"}
    try:
        import torch

        if torch.cuda.is_available():
            free, total = torch.cuda.mem_get_info()
            stats = torch.cuda.memory_stats()
            cuda = {"system": {"free": free, "used": total - free, "total": total},
                    "active": {"current": stats.get("active_bytes.all.current", 0),
                               "peak": stats.get("active_bytes.all.peak", 0)},
                    "allocated": {"current": stats.get("allocated_bytes.all.current", 0),
                                  "peak": stats.get("allocated_bytes.all.peak", 0)},
                    "reserved": {"current": stats.get("reserved_bytes.all.current", 0),
                                 "peak": stats.get("reserved_bytes.all.peak", 0)},
                    "inactive": {"current": stats.get("inactive_split_bytes.all.current", 0),
                                 "peak": stats.get("inactive_split_bytes.all.peak", 0)},
                    "events": {"retries": stats.get("num_alloc_retries", 0), "oom": stats.get("num_ooms", 0)}}
    except Exception as exc:  # noqa: BLE001 - report, never fail
        cuda = {"error": str(exc)}
    return {"ram": ram, "cuda": cuda}


__all__ = ["router", "model_name_of"]
