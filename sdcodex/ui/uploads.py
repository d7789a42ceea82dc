"""Image fields that never raise in Gradio's preprocessing: a file that is not an image, or an image over the
size limit, arrives in the event as a `BadUpload` (the reason, no server path) instead of a framework error
toast and a failing call on every later edit. The tab turns it into a field error naming the field's label.
Also a slider whose typed value reaches the request as typed (the API then refuses it, never a silent clamp)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import gradio as gr

#: the same limits the API applies to a decoded image (media.imageio)
from sdcodex.media.imageio import MAX_IMAGE_PIXELS, MAX_INPUT_BYTES


@dataclass(frozen=True)
class BadUpload:
    """An upload that could not be read as an image; `reason` is safe to show (no server path)."""

    reason: str

    def convert(self, *_a: Any, **_k: Any) -> "BadUpload":  # so `value.convert("RGB")` does not hide it
        return self


def check_upload(path: str | None, *, max_pixels: int = MAX_IMAGE_PIXELS) -> BadUpload | None:
    """A BadUpload when the file at `path` is not a readable image or is over the limits, else None."""
    from PIL import Image, UnidentifiedImageError

    if not path:
        return None
    try:
        if os.path.getsize(path) > MAX_INPUT_BYTES:
            return BadUpload(f"the file is larger than {MAX_INPUT_BYTES // (1024 * 1024)} MB")
        with Image.open(path) as image:
            w, h = image.size
    except UnidentifiedImageError:
        return BadUpload("is not an image (PNG, JPEG, WebP, GIF or BMP expected)")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return BadUpload("could not be read as an image (the file is damaged or not an image)")
    if w * h > max_pixels:
        return BadUpload(f"the image is too large: {w}x{h} ({w * h} pixels; at most {max_pixels})")
    return None


def _payload_path(payload: Any) -> str | None:
    path = getattr(payload, "path", None)
    url = getattr(payload, "url", None) or ""
    return None if url.startswith("data:") else path


# Subclasses, not patched instances: Gradio re-creates a component from its class when an event updates it in a
# session, so only a class keeps the behaviour. (Gradio writes a type stub, uploads.pyi, beside a module that
# subclasses a component; it is git-ignored and the write is skipped where the folder is read-only.)
class _SafeImage(gr.Image):
    def get_block_name(self) -> str:
        return "image"

    def preprocess(self, payload: Any) -> Any:
        return _guarded(super().preprocess, payload, payload)


class _SafeImageEditor(gr.ImageEditor):
    def get_block_name(self) -> str:
        return "imageeditor"

    def preprocess(self, payload: Any) -> Any:
        return _guarded(super().preprocess, payload, getattr(payload, "background", None))


class _FreeSlider(gr.Slider):
    def get_block_name(self) -> str:
        return "slider"

    def preprocess(self, payload: Any) -> Any:
        return None if payload is None else gr.Number.round_to_precision(payload, self.precision)


def _guarded(preprocess: Any, payload: Any, source: Any) -> Any:
    """The component's own preprocessing; a bad file becomes a BadUpload for the event, never an exception."""
    bad = check_upload(_payload_path(source)) if source is not None else None
    if bad is not None:
        return bad
    try:
        return preprocess(payload)
    except Exception:  # noqa: BLE001 - anything Pillow/Gradio raise on a broken file
        return BadUpload("could not be read as an image (the file is damaged or not an image)")


def safe_image(**kw: Any) -> Any:
    """gr.Image whose preprocessing hands a BadUpload to the event instead of raising."""
    return _SafeImage(**kw)


def safe_image_editor(**kw: Any) -> Any:
    """gr.ImageEditor (inpaint) whose preprocessing hands a BadUpload to the event instead of raising."""
    return _SafeImageEditor(**kw)


def free_slider(**kw: Any) -> Any:
    """A slider whose typed value is passed on as typed: the request's strict validation refuses an out-of-range
    value with the API's own message. (The page's script stops the browser from clamping it, assets.JS.)"""
    return _FreeSlider(**kw)
