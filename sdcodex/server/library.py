"""Native routes for the prompt library: prompt styles (A1111's styles.csv: list, save, delete) and extra
networks as cards (checkpoints, LoRAs, embeddings, VAEs with header metadata and preview images). Previews
are looked up from an inventory entry's own path: a client names an entry, never a file."""
from __future__ import annotations

from typing import Any, Literal, Optional

from fastapi import APIRouter, Body, HTTPException, Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field, StrictStr
from starlette.concurrency import run_in_threadpool

from sdcodex.core.styles import Style

router = APIRouter(prefix="/api/v1", tags=["native"])
Kind = Literal["checkpoint", "lora", "embedding", "vae"]


class StyleBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt: StrictStr = ""
    negative_prompt: StrictStr = ""
    #: a new name for the style (it keeps its place in the file)
    rename: Optional[StrictStr] = Field(None, min_length=1, max_length=200)


def _service(request: Request) -> Any:
    return request.app.state.codex


@router.get("/styles", summary="Prompt styles (A1111 styles.csv)")
async def list_styles(request: Request) -> dict[str, Any]:
    service = _service(request)
    styles = await run_in_threadpool(service.styles.all)
    return {"file": str(service.styles.path), "styles": [s.to_dict() for s in styles.values()]}


@router.put("/styles/{name}", summary="Add or replace a prompt style")
async def save_style(request: Request, name: str, body: StyleBody = Body(...)) -> dict[str, Any]:
    from .checks import check_unicode

    check_unicode({"name": name, **body.model_dump()})
    store = _service(request).styles
    new = Style(body.rename or name, body.prompt, body.negative_prompt)
    saved = await run_in_threadpool(lambda: store.save(new, old_name=name))
    return saved.to_dict()


@router.delete("/styles/{name}", summary="Delete a prompt style")
async def delete_style(request: Request, name: str) -> dict[str, Any]:
    await run_in_threadpool(_service(request).styles.delete, name)
    return {"deleted": name}


@router.get("/networks", summary="Extra networks as cards: metadata, trigger words, what a click inserts")
async def networks(request: Request, kind: Kind = Query("lora"),
                   metadata: bool = Query(True, description="include the full safetensors metadata")) -> dict[str, Any]:
    service = _service(request)
    rows = await run_in_threadpool(lambda: service.network_cards(kind, with_metadata=metadata))
    for row in rows:
        row["preview_url"] = preview_url(kind, row["name"]) if row["preview"] else None
    return {"kind": kind, "cards": rows}


def preview_url(kind: str, name: str) -> str:
    from urllib.parse import quote

    return f"/api/v1/networks/{kind}/{quote(name, safe='')}/preview"


@router.get("/networks/{kind}/{name}/preview", summary="The preview image of an extra network",
            response_class=FileResponse, responses={404: {"description": "no such entry, or it has no preview"}})
async def network_preview(request: Request, kind: Kind, name: str) -> FileResponse:
    from sdcodex.models.networks import PREVIEW_TYPES

    path = await run_in_threadpool(_service(request).network_preview, kind, name)
    if path is None:
        raise HTTPException(404, f"no preview for {kind} {name!r}")
    return FileResponse(path, media_type=PREVIEW_TYPES.get(path.suffix.lower(), "application/octet-stream"),
                        headers={"Cache-Control": "no-cache"})
