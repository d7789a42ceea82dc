"""The A1111 ControlNet extension's preprocessor routes: `GET /controlnet/module_list` and
`POST /controlnet/detect`, answered as the extension answers them (its field names, its lenient sliders: a
value out of a slider's range, like the -1 its clients send, means the default). The preprocessors run through
`CodexService.detect_control` (the web UI's preview runs the same); errors are 422s that name the field
(`controlnet_input_images[1]`)."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool


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
    from sdcodex.media.imageio import encode_image_b64

    maps = service.detect_control(body.controlnet_module, body.controlnet_input_images,
                                  processor_res=body.controlnet_processor_res, threshold_a=body.controlnet_threshold_a,
                                  threshold_b=body.controlnet_threshold_b, masks=body.controlnet_masks)
    return {"info": "Success", "images": [encode_image_b64(m, "png") for m in maps]}


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
