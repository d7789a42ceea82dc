"""The A1111 ControlNet extension's preprocessor routes: `GET /controlnet/module_list` and
`POST /controlnet/detect`, answered as the extension answers them (its field names, its lenient sliders: a
value out of a slider's range, like the -1 its clients send, means the default). The preprocessors run through
`sdcodex.runtime`; errors are 422s that name the field (`controlnet_input_images[1]`)."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from sdcodex.core.errors import ValidationError

router = APIRouter(prefix="/controlnet", tags=["controlnet"])


class DetectRequest(BaseModel):
    """The extension's detect body. Unknown keys are ignored, as the extension's FastAPI `Body` fields do."""

    model_config = ConfigDict(extra="ignore")

    controlnet_module: str = "none"
    controlnet_input_images: list[str] = Field(default_factory=list)
    controlnet_processor_res: float = -1
    controlnet_threshold_a: float = -1
    controlnet_threshold_b: float = -1
    controlnet_masks: list[str] = Field(default_factory=list)
    low_vram: bool = False


@router.get("/module_list")
async def module_list(alias_names: bool = Query(False)) -> dict[str, Any]:
    """Every preprocessor (`none` first) and its sliders; `alias_names=true` gives the UI names
    (`softedge_hed` for `hed`, ...)."""
    from sdcodex import runtime

    names, detail = runtime.preprocessor_modules(alias_names)
    return {"module_list": names, "module_detail": detail}


def _detect(service: Any, body: DetectRequest) -> dict[str, Any]:
    from sdcodex import runtime
    from sdcodex.media.imageio import encode_image_b64

    names, _ = runtime.preprocessor_modules()
    aliases, _ = runtime.preprocessor_modules(alias_names=True)
    if body.controlnet_module not in set(names) | set(aliases):
        raise ValidationError(f"unknown preprocessor {body.controlnet_module!r}", field="controlnet_module",
                              allowed=names)
    if not body.controlnet_input_images:
        raise ValidationError("no image: give at least one base64 image", field="controlnet_input_images")
    res, a, b = runtime.preprocessor_bounds(body.controlnet_module, body.controlnet_processor_res,
                                            body.controlnet_threshold_a, body.controlnet_threshold_b)
    load = service.orchestrator.image_loader
    models_dir = getattr(service.models, "models_dir", None)
    device = str(getattr(service, "device", "cpu") or "cpu")
    device = device if device.startswith("cuda") else "cpu"
    images = []
    for i, value in enumerate(body.controlnet_input_images):
        image = load(value, f"controlnet_input_images[{i}]")
        mask = load(body.controlnet_masks[i], f"controlnet_masks[{i}]") if i < len(body.controlnet_masks) else None
        out = runtime.preprocess(body.controlnet_module, image, resolution=res, threshold_a=a, threshold_b=b,
                                 mask=mask, models_dir=models_dir, device=device, field="controlnet_module")
        images.append(encode_image_b64(out, "png"))
    return {"info": "Success", "images": images}


#: what `GET /controlnet/version` answers (the sd-webui-controlnet API version its clients check)
EXTENSION_API_VERSION = 2


@router.get("/version")
async def version() -> dict[str, Any]:
    return {"version": EXTENSION_API_VERSION}


@router.get("/model_list")
async def model_list(request: Request, update: bool = Query(True)) -> dict[str, Any]:
    """Every ControlNet in the models folder as the extension lists them: "name [hash]" (the short hash once it is
    known; a file not hashed yet is listed by name), any family; `update` rescans the folder first."""
    models = request.app.state.codex.models

    def listing() -> list[str]:
        if update and hasattr(models, "refresh"):
            models.refresh()
        names = []
        for entry in models.entries(kind="controlnet"):
            digest = models.inventory.cached_short_hash(entry)
            names.append(f"{entry.name} [{digest[:8]}]" if digest else entry.name)
        return names

    return {"model_list": await run_in_threadpool(listing)}


@router.post("/detect")
async def detect(request: Request, body: DetectRequest = Body(...)) -> dict[str, Any]:
    """Run a preprocessor on each of `controlnet_input_images` (with `controlnet_masks[i]` for the inpaint
    modules); answers `{"info": "Success", "images": [base64 PNG, ...]}`."""
    return await run_in_threadpool(_detect, request.app.state.codex, body)


__all__ = ["router"]
