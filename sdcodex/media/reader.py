"""Read generation metadata back from any file Codex writes (and from A1111's own images).

This is the "PNG info" feature of the CLI, API and UI: infotext, our request payload, size, frames, fps.
"""
from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

from PIL import Image

from sdcodex.core.errors import ValidationError
from sdcodex.media.images import EXIF_IFD_POINTER, PAYLOAD_KEY, USER_COMMENT
from sdcodex.media.imageio import decode_b64_bytes
from sdcodex.media.infotext import parse_infotext
from sdcodex.media.video import GIF_APP_ID

_XMP_REQUEST = re.compile(rb"<sdcodex:request>(.*?)</sdcodex:request>", re.DOTALL)


def sniff_format(head: bytes) -> str | None:
    """Format from the first bytes: png, jpeg, webp, gif, mp4 (ISO BMFF) or webm (EBML/Matroska)."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[4:8] == b"ftyp":
        return "mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "webm"
    return None


def decode_user_comment(raw: bytes | str | tuple) -> str:
    """Text of an EXIF UserComment: UNICODE (UTF-16; big-endian as A1111/piexif, little-endian
    recognised by its zero bytes), ASCII, JIS, or undefined (UTF-8)."""
    if isinstance(raw, str):
        return raw
    raw = bytes(raw)
    prefix, body = raw[:8], raw[8:]
    if prefix == b"UNICODE\x00":
        odd_zeros = body[1::2].count(0)
        even_zeros = body[0::2].count(0)
        encoding = "utf-16-le" if odd_zeros > even_zeros else "utf-16-be"
        return body.decode(encoding, errors="replace").rstrip("\x00")
    if prefix == b"ASCII\x00\x00\x00":
        return body.decode("ascii", errors="replace").rstrip("\x00")
    if prefix == b"JIS\x00\x00\x00\x00\x00":
        return body.decode("shift_jis", errors="replace").rstrip("\x00")
    if prefix == b"\x00" * 8:
        return body.decode("utf-8", errors="replace").rstrip("\x00")
    return raw.decode("utf-8", errors="ignore").rstrip("\x00")


def _payload(text: str | bytes | None) -> tuple[dict | None, dict | None]:
    """(request, info) from our payload JSON; a bare JSON object is taken as the request itself."""
    if not text:
        return None, None
    try:
        data = json.loads(text)
    except ValueError:
        return None, None
    if not isinstance(data, dict):
        return None, None
    if "request" in data and isinstance(data["request"], dict):
        return data["request"], data.get("info") if isinstance(data.get("info"), dict) else None
    return data, None


def _xmp_payload(xmp: Any) -> str | None:
    if not xmp:
        return None
    raw = xmp.encode("utf-8") if isinstance(xmp, str) else bytes(xmp)
    m = _XMP_REQUEST.search(raw)
    if m is None:
        return None
    from xml.sax.saxutils import unescape

    return unescape(m.group(1).decode("utf-8", errors="replace"))


def _gif_app_payload(data: bytes) -> str | None:
    """Our application extension among the blocks before the first image descriptor."""
    flags = data[10]
    at = 13 + (3 * (2 << (flags & 7)) if flags & 0x80 else 0)
    while at + 2 < len(data) and data[at] == 0x21:
        label, at = data[at + 1], at + 2
        chunks: list[bytes] = []
        while at < len(data) and data[at] != 0:
            size = data[at]
            chunks.append(data[at + 1: at + 1 + size])
            at += 1 + size
        at += 1
        if label == 0xFF and chunks and chunks[0] == GIF_APP_ID:
            return b"".join(chunks[1:]).decode("utf-8", errors="replace")
    return None


def _read_image(data: bytes, fmt: str) -> dict[str, Any]:
    with Image.open(io.BytesIO(data)) as im:
        params: str | None = None
        payload: str | None = None
        if fmt == "png":
            params = im.info.get("parameters")
            payload = im.info.get(PAYLOAD_KEY)
        if params is None and "exif" in im.info:
            comment = im.getexif().get_ifd(EXIF_IFD_POINTER).get(USER_COMMENT)
            if comment:
                params = decode_user_comment(comment) or None
        if params is None and im.info.get("comment"):
            comment = im.info["comment"]
            params = comment.decode("utf-8", errors="ignore") if isinstance(comment, bytes) else str(comment)
        if payload is None:
            payload = _gif_app_payload(data) if fmt == "gif" else _xmp_payload(im.info.get("xmp"))
        frames = getattr(im, "n_frames", 1)
        fps = None
        if frames > 1:
            total_ms = 0
            for i in range(frames):
                im.seek(i)
                if fmt == "webp":
                    im.load()  # Pillow sets a WebP frame's duration when it decodes it
                total_ms += im.info.get("duration", 0) or 0
            fps = frames * 1000 / total_ms if total_ms else None
        width, height = im.size
    return {"parameters": params, "payload": payload, "frames": frames, "fps": fps, "width": width,
            "height": height}


def _read_video(data: bytes | Path) -> dict[str, Any]:
    import av

    with av.open(str(data) if isinstance(data, Path) else io.BytesIO(data)) as container:
        tags = {k.lower(): v for k, v in container.metadata.items()}
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        frames = stream.frames
        if not frames:
            frames = sum(1 for packet in container.demux(stream) if packet.size)
        return {"parameters": tags.get("comment") or tags.get("description"), "payload": tags.get(PAYLOAD_KEY),
                "frames": frames, "fps": float(rate) if rate else None, "width": stream.width,
                "height": stream.height}


def _source(source: str | Path | bytes) -> bytes | Path:
    """Raw bytes, or the Path of an existing file (videos are then read in place, not loaded whole)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if isinstance(source, Path):
        if not source.is_file():
            raise ValidationError(f"file not found: {source}", field="image")
        return source
    if isinstance(source, str):
        if not source.startswith("data:") and len(source) < 4096:
            path = Path(source).expanduser()
            if path.is_file():
                return path
        try:
            return decode_b64_bytes(source, field="image", max_bytes=1 << 31)
        except ValidationError:
            raise ValidationError(f"is neither an existing file nor valid base64 data: {source[:80]!r}",
                                  field="image") from None
    raise ValidationError(f"expected a path, bytes or base64 string, got {type(source).__name__}", field="image")


def read_info(source: str | Path | bytes) -> dict[str, Any]:
    """Metadata of a PNG/JPEG/WebP/GIF/MP4/WebM given as a path, raw bytes, or base64 / data URL.

    Returns {"parameters": infotext or None, "request": our request dict or None, "info": our result
    info or None, "parsed": parse_infotext(parameters) or {}, "format", "frames", "fps" (None for
    stills), "width", "height"}. Raises ValidationError(field="image") for unknown content.
    """
    src = _source(source)
    if isinstance(src, Path):
        with open(src, "rb") as fh:
            head = fh.read(32)
    else:
        head = src[:32]
    fmt = sniff_format(head)
    if fmt is None:
        raise ValidationError("is not a PNG, JPEG, WebP, GIF, MP4 or WebM file", field="image",
                              allowed=["png", "jpeg", "webp", "gif", "mp4", "webm"])
    try:
        if fmt in ("mp4", "webm"):
            raw = _read_video(src)
        else:
            raw = _read_image(src.read_bytes() if isinstance(src, Path) else src, fmt)
    except ValidationError:
        raise
    except Exception as exc:  # noqa: BLE001 - decoder errors come in many types
        raise ValidationError(f"cannot read {fmt} metadata ({exc})", field="image") from None
    request, info = _payload(raw.pop("payload"))
    params = raw["parameters"] or None
    return {"parameters": params, "request": request, "info": info,
            "parsed": parse_infotext(params) if params else {}, "format": fmt, **{k: raw[k] for k in
            ("frames", "fps", "width", "height")}}
