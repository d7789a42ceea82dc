"""Decode input images (base64, data URL, or a file path for the CLI) and encode images to base64.

Every failure is a ValidationError naming the request field, so the API can answer 422 with the path.
"""
from __future__ import annotations

import base64
import binascii
import io
import re
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from sdcodex.core.errors import ValidationError

MAX_INPUT_BYTES = 64 * 1024 * 1024          # decoded file size
MAX_IMAGE_PIXELS = 8192 * 8192              # width * height

_DATA_URL = re.compile(r"^data:([\w.+-]+/[\w.+-]+)?((?:;[\w.+-]+=[^;,]*)*)(;base64)?,", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")


def decode_b64_bytes(value: str, *, field: str, max_bytes: int = MAX_INPUT_BYTES) -> bytes:
    """Bytes of a base64 string, with or without a ``data:...;base64,`` prefix (padding optional)."""
    if not isinstance(value, str):
        raise ValidationError(f"is not a valid base64 image (expected a string, got {type(value).__name__})",
                              field=field)
    text = value.strip()
    m = _DATA_URL.match(text)
    if m is not None:
        if not m.group(3):
            raise ValidationError("is not a valid base64 image (data URL is not ;base64 encoded)", field=field)
        text = text[m.end():]
    text = _WHITESPACE.sub("", text)
    if not text:
        raise ValidationError("is not a valid base64 image (empty string)", field=field)
    if len(text) > (max_bytes * 4) // 3 + 4:
        raise ValidationError(f"image is too large (more than {max_bytes} bytes)", field=field)
    text += "=" * (-len(text) % 4)
    try:
        if "-" in text or "_" in text:
            return base64.urlsafe_b64decode(text)
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        reason = str(exc)
        if "Only base64 data" in reason:
            reason = "characters outside the base64 alphabet"
        raise ValidationError(f"is not a valid base64 image ({reason})", field=field) from None


def _open_checked(data: bytes | Path, *, field: str, what: str, max_pixels: int) -> Image.Image:
    src = io.BytesIO(data) if isinstance(data, bytes) else data
    try:
        image = Image.open(src)
        w, h = image.size
        if w * h > max_pixels:
            raise ValidationError(f"image is too large: {w}x{h} ({w * h} pixels, max {max_pixels})",
                                  field=field)
        image.load()
    except ValidationError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError) as exc:
        reason = "not an image format Pillow can read" if isinstance(exc, UnidentifiedImageError) else str(exc)
        raise ValidationError(f"{what} ({reason})", field=field) from None
    return _normalise(image)


def _normalise(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation and bring odd modes (P, LA, I;16, CMYK ...) to RGB or RGBA."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGB", "RGBA", "L"):
        return image
    has_alpha = image.mode in ("LA", "PA", "RGBa", "La") or "transparency" in image.info
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):  # 16-bit grey: scale 0..65535 to 0..255
        return image.convert("I").point(lambda v: v * (1 / 257)).convert("L")
    return image.convert("RGBA" if has_alpha else "RGB")


def load_image(value: str, *, field: str, allow_path: bool = False,
               max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """A loaded PIL image from base64 / data URL, or (allow_path=True, the CLI) from a file path.

    Raises ValidationError(field=field): "is not a valid base64 image (...)" for undecodable input,
    "image is too large: WxH ..." beyond ``max_pixels``, "file not found" for a missing path.
    """
    if isinstance(value, Image.Image):
        return value
    if allow_path and (isinstance(value, Path) or (isinstance(value, str) and not value.startswith("data:")
                                                   and len(value) < 4096 and Path(value).expanduser().is_file())):
        path = Path(value).expanduser()
        if not path.is_file():
            raise ValidationError(f"file not found: {path}", field=field)
        if path.stat().st_size > MAX_INPUT_BYTES:
            raise ValidationError(f"image is too large: {path} has more than {MAX_INPUT_BYTES} bytes", field=field)
        return _open_checked(path, field=field, what=f"{path} is not a readable image", max_pixels=max_pixels)
    try:
        data = decode_b64_bytes(value, field=field)
    except ValidationError as exc:
        if allow_path and "base64" in exc.message:
            shown = value if len(value) <= 120 else value[:117] + "..."
            raise ValidationError(f"is neither an existing file nor a valid base64 image (no file {shown!r}; "
                                  f"{exc.message.partition('(')[2].rstrip(')')})", field=field) from None
        raise
    return _open_checked(data, field=field, what="is not a valid base64 image", max_pixels=max_pixels)


def encode_image_b64(image: Image.Image, fmt: str = "png", *, quality: int = 95) -> str:
    """Base64 (no data-URL prefix) of ``image`` encoded as png, webp or jpeg."""
    fmt = str(fmt).lower()
    pil_format = {"png": "PNG", "webp": "WEBP", "jpeg": "JPEG", "jpg": "JPEG"}.get(fmt)
    if pil_format is None:
        raise ValidationError(f"unsupported image format {fmt!r}", field="format",
                              allowed=["png", "webp", "jpeg"])
    if pil_format == "JPEG" and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    buf = io.BytesIO()
    kwargs = {} if pil_format == "PNG" else {"quality": quality}
    image.save(buf, format=pil_format, **kwargs)
    return base64.b64encode(buf.getvalue()).decode("ascii")
