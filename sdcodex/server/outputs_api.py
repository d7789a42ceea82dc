"""The outputs browser's API under /api/v1: list outputs by task and date in pages, one file's metadata, delete to
the trash, list the trash, restore. Paths are `<task>/<YYYY-MM-DD>/<file>` inside the outputs folder
(media/outputs.py refuses anything else with a 422 naming `path`)."""
from __future__ import annotations

from typing import Any, Optional

from fastapi import APIRouter, Body, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

router = APIRouter(prefix="/api/v1", tags=["outputs"])


class PathBody(BaseModel):
    path: str = Field(description="<task>/<YYYY-MM-DD>/<file>, as the listing gives it")


def _outputs(request: Request) -> Any:
    return request.app.state.codex.outputs


@router.get("/outputs", summary="Output files by task and date, newest first, in pages")
async def list_outputs(request: Request, task: Optional[str] = Query(None, max_length=64),
                       date: Optional[str] = Query(None, max_length=10), page: int = Query(1),
                       per_page: int = Query(24)) -> dict[str, Any]:
    return await run_in_threadpool(_outputs(request).list, task=task, date=date, page=page, per_page=per_page)


@router.get("/output-info/{path:path}", summary="What an output file records: infotext, request, size, frames, fps")
async def output_info(request: Request, path: str) -> dict[str, Any]:
    return await run_in_threadpool(_outputs(request).info, path)


@router.delete("/outputs/{path:path}", summary="Move an output file to the trash (restorable)")
async def delete_output(request: Request, path: str) -> dict[str, Any]:
    return {"trashed": await run_in_threadpool(_outputs(request).delete, path)}


@router.get("/trash", summary="Files in the trash, latest deleted first, in pages")
async def list_trash(request: Request, page: int = Query(1), per_page: int = Query(24)) -> dict[str, Any]:
    return await run_in_threadpool(_outputs(request).list, page=page, per_page=per_page, trash=True)


@router.post("/trash/restore", summary="Move a file from the trash back to the outputs")
async def restore(request: Request, body: PathBody = Body(...)) -> dict[str, Any]:
    return {"restored": await run_in_threadpool(_outputs(request).restore, body.path)}
