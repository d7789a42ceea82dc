"""Huge jobs ask before they run: a request over a number of images or of output pixels is held with a notice
in the tab; pressing Generate again with the same request runs it (A1111 users expect no popup)."""
from __future__ import annotations

import hashlib
import html
import json
from typing import Any

#: more images than this in one job (batch size x batch count) asks first
CONFIRM_IMAGES = 100
#: more output pixels than this (width x height x images, the hires pass included; a video's frames are bounded by
#: the server's frame limit instead) asks first. Both thresholds sit below the server's hard limits (server/limits.py)
CONFIRM_PIXELS = 64 * 1024 * 1024


def job_size(request: dict[str, Any]) -> tuple[int, int]:
    """(images, output pixels of the images' first frames) a request would make."""
    images = int(request.get("batch_size") or 1) * int(request.get("batch_count") or 1)
    w, h = int(request.get("width") or 512), int(request.get("height") or 512)
    hires = request.get("hires") or {}
    if isinstance(hires, dict) and hires:
        if hires.get("resize_x") and hires.get("resize_y"):
            w, h = int(hires["resize_x"]), int(hires["resize_y"])
        elif hires.get("scale"):
            w, h = int(w * float(hires["scale"])), int(h * float(hires["scale"]))
    return images, w * h * images


def fingerprint(request: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(request, sort_keys=True, default=str).encode()).hexdigest()[:16]


def needs_confirmation(request: dict[str, Any], confirmed: str | None) -> str | None:
    """The notice to show when the request is huge and was not confirmed yet (`confirmed`: the fingerprint of
    the request the user already saw the notice for), else None."""
    if request.get("task") == "upscale":
        return None
    images, pixels = job_size(request)
    if images <= CONFIRM_IMAGES and pixels <= CONFIRM_PIXELS:
        return None
    if confirmed and confirmed == fingerprint(request):
        return None
    what = []
    if images > CONFIRM_IMAGES:
        what.append(f"{images} images (more than {CONFIRM_IMAGES})")
    if pixels > CONFIRM_PIXELS:
        what.append(f"{pixels / 1e6:.0f} megapixels of output (more than {CONFIRM_PIXELS / 1e6:.0f})")
    return ("This is a large job: " + " and ".join(what) + ". Press Generate again to run it, or change the "
            "batch or size.")


def notice_html(text: str) -> str:
    return f'<div class="codex-error codex-confirm" role="alert">⚠ {html.escape(text)}</div>'
