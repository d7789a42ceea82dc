"""Request limits: the body size middleware (413 naming the limit before the app reads a byte too many),
the input image pixel limit, and the per-job output size limit."""
from __future__ import annotations

import json
from typing import Any

from sdcodex.core.errors import CodexError, ValidationError

DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_IMAGE_PIXELS = 8192 * 8192
# Job-size defaults (each has a `serve` flag and an env var; 0 turns a limit off). Generous for real use:
# 1024x1024 x 128 images or a 1280x720 x 129-frame video fit; a 50 MB prompt or 10^5 steps do not.
DEFAULT_MAX_PROMPT_BYTES = 16 * 1024
DEFAULT_MAX_OUTPUT_PIXELS = 128 * 1024 * 1024
DEFAULT_MAX_STEPS = 150
DEFAULT_MAX_FRAMES = 257
DEFAULT_MAX_IMAGES = 256


class PayloadTooLargeError(CodexError):
    """A request, an input image or a job is larger than the server allows; `allowed` names the limit."""

    http_status = 413
    code = "payload_too_large"


def _reply_413(limit: int) -> tuple[dict[str, Any], bytes]:
    body = json.dumps(PayloadTooLargeError(f"request body is larger than the limit of {limit} bytes",
                                           allowed=f"at most {limit} bytes").to_dict()).encode()
    start = {"type": "http.response.start", "status": 413,
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                         (b"connection", b"close")]}
    return start, body


class BodyLimitMiddleware:
    """ASGI middleware: a declared Content-Length over the limit is refused at once; a streamed body
    is read up to the limit and refused as soon as it goes past it."""

    def __init__(self, app: Any, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = int(max_bytes)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or self.max_bytes <= 0:
            await self.app(scope, receive, send)
            return
        length = None
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = None
        if length is not None and length > self.max_bytes:
            await self._refuse(send)
            return
        if length is not None:
            await self.app(scope, receive, send)
            return
        # no length given (chunked): buffer up to the limit, then replay
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(send)
                return
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        body, sent = b"".join(chunks), False

        async def replay() -> dict:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Any) -> None:
        start, body = _reply_413(self.max_bytes)
        await send(start)
        await send({"type": "http.response.body", "body": body})


def image_loader(max_pixels: int) -> Any:
    """The orchestrator's image decoder for the server: base64 only (never a path), pixel-limited;
    an image over the limit is a 413 that names the field and the limit."""
    from sdcodex.media.imageio import load_image

    def load(value: str, field: str) -> Any:
        try:
            return load_image(value, field=field, allow_path=False, max_pixels=max_pixels)
        except ValidationError as exc:
            if "too large" in exc.message:
                raise PayloadTooLargeError(exc.message, field=field, allowed=f"at most {max_pixels} pixels") from None
            raise

    return load


def check_prompt_size(texts: Any, max_bytes: int | None) -> None:
    """Refuse a prompt longer than `max_bytes` UTF-8 bytes (a huge prompt holds the worker for its whole
    tokenisation) before anything else is parsed."""
    if not max_bytes:
        return
    for field, text in texts:
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > max_bytes:
            raise PayloadTooLargeError(f"the prompt is {size} bytes, more than this server allows", field=field,
                                       allowed=f"at most {max_bytes} bytes")


def check_job_size(params: Any, *, max_output_pixels: int | None, max_steps: int | None,
                   max_frames: int | None = None, max_images: int | None = None) -> None:
    """Refuse jobs whose steps, frames, images (batch_size x batch_count) or total output pixels (all images,
    frames and the hires pass) exceed the server's limits (0 or None: no limit)."""
    if max_steps and getattr(params, "steps", 0) and params.steps > max_steps:
        raise PayloadTooLargeError(f"{params.steps} steps is more than this server allows", field="steps",
                                   allowed=f"at most {max_steps}")
    hires = params.hires or {}
    hires_steps = int(hires.get("steps") or 0) if isinstance(hires, dict) else 0
    if max_steps and hires_steps > max_steps:
        raise PayloadTooLargeError(f"{hires_steps} hires steps is more than this server allows", field="hires.steps",
                                   allowed=f"at most {max_steps}")
    frames = int(params.num_frames or 1)
    if max_frames and frames > max_frames:
        raise PayloadTooLargeError(f"{frames} frames is more than this server allows", field="num_frames",
                                   allowed=f"at most {max_frames}")
    images = int(params.images_total)
    if max_images and images > max_images:
        raise PayloadTooLargeError(f"{images} images (batch_size x batch_count) is more than this server allows",
                                   field="batch_count", allowed=f"at most {max_images} per job")
    if not max_output_pixels:
        return
    w, h = int(params.width or 0), int(params.height or 0)
    if hires:
        if hires.get("resize_x") and hires.get("resize_y"):
            w, h = int(hires["resize_x"]), int(hires["resize_y"])
        elif hires.get("scale"):
            w, h = int(w * hires["scale"]), int(h * hires["scale"])
    total = w * h * frames * images
    if total > max_output_pixels:
        raise PayloadTooLargeError(f"the job would make {total} output pixels (width x height x frames x images)",
                                   field="width", allowed=f"at most {max_output_pixels} pixels per job")
