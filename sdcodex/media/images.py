"""Write still images (PNG, WebP, JPEG) atomically with A1111 infotext and our full request JSON.

PNG: text chunk "parameters" = infotext (tEXt, or iTXt when not Latin-1, exactly as A1111's PngInfo.add_text
does) and a compressed text chunk "sdcodex" = payload JSON. WebP/JPEG: EXIF UserComment (Exif IFD tag
0x9286) = b"UNICODE\\0" + UTF-16BE infotext in a big-endian TIFF, the layout A1111 writes through
piexif, so A1111's reader (piexif.load + UserComment.load) reads ours; the payload JSON sits in XMP
as <sdcodex:request>. The payload is {"request": ..., "info": ..., "writer": "sdcodex-vX"}; see docs/media.md.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable
from xml.sax.saxutils import escape

from PIL import Image, PngImagePlugin

from sdcodex import __version__
from sdcodex.core.errors import ValidationError
from sdcodex.media.naming import next_output_path

log = logging.getLogger(__name__)

PAYLOAD_KEY = "sdcodex"
XMP_NAMESPACE = "https://sdcodex.invalid/ns/1.0/"
EXIF_IFD_POINTER = 0x8769
USER_COMMENT = 0x9286
_UNICODE_PREFIX = b"UNICODE\x00"
_JPEG_MARKER_MAX = 65533 - 2 - 29            # APP1 payload room left after the XMP namespace header
_INLINE_STRING_MAX = 4096                    # longer base64/data-URL strings are summarised in the payload

_UMASK = os.umask(0o022)
os.umask(_UMASK)                             # read once: mkstemp files are 0600, outputs get 0666 & ~umask

IMAGE_FORMATS = {"png": ("PNG", "png"), "webp": ("WEBP", "webp"), "jpeg": ("JPEG", "jpg"), "jpg": ("JPEG", "jpg")}


# ----------------------------------------------------------------------------------------------- payload

def _looks_like_blob(text: str) -> bool:
    if text.startswith("data:"):
        return True
    head = text[:256]
    return all(c.isalnum() or c in "+/=_-\n\r" for c in head)


def compact_request(value: Any) -> Any:
    """A copy of ``value`` where long base64 / data-URL strings (input images) are replaced by
    "<omitted N chars sha256:XXXXXXXXXXXX>" so metadata stays small; everything else is kept."""
    if isinstance(value, dict):
        return {str(k): compact_request(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [compact_request(v) for v in value]
    if isinstance(value, str) and len(value) > _INLINE_STRING_MAX and _looks_like_blob(value):
        digest = hashlib.sha256(value.encode("utf-8")).hexdigest()[:12]
        return f"<omitted {len(value)} chars sha256:{digest}>"
    return value


def request_payload(request: dict[str, Any] | None, info: dict[str, Any] | None = None) -> str:
    """The JSON stored next to the infotext: {"request", "info", "writer"} (compacted, UTF-8)."""
    body: dict[str, Any] = {"request": compact_request(request or {})}
    if info:
        body["info"] = compact_request(info)
    body["writer"] = f"sdcodex-v{__version__}"
    return json.dumps(body, ensure_ascii=False, default=str, separators=(",", ":"))


# ----------------------------------------------------------------------------------------- EXIF and XMP

def exif_user_comment(text: str) -> bytes:
    """EXIF block ("Exif\\0\\0" + big-endian TIFF) holding only UserComment = UNICODE + UTF-16BE text.

    Same layout as piexif.dump({"Exif": {UserComment: UserComment.dump(text, "unicode")}}) in A1111:
    IFD0 with one ExifIFD pointer, the Exif IFD with one UNDEFINED entry, then the comment bytes
    (we also write the Exif IFD's 4-byte next-IFD offset, which the TIFF spec asks for and piexif omits).
    """
    comment = _UNICODE_PREFIX + text.encode("utf-16-be")
    exif_ifd_at = 8 + 2 + 12 + 4
    data_at = exif_ifd_at + 2 + 12 + 4
    tiff = b"MM\x00\x2a" + struct.pack(">I", 8)
    tiff += struct.pack(">HHHII", 1, EXIF_IFD_POINTER, 4, 1, exif_ifd_at) + struct.pack(">I", 0)
    tiff += struct.pack(">HHHII", 1, USER_COMMENT, 7, len(comment), data_at) + struct.pack(">I", 0)
    return b"Exif\x00\x00" + tiff + comment


def xmp_packet(payload_json: str) -> bytes:
    """An XMP packet with the payload JSON as the text of <sdcodex:request>."""
    body = (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">'
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        f'<rdf:Description rdf:about="" xmlns:sdcodex="{XMP_NAMESPACE}">'
        f"<sdcodex:request>{escape(payload_json)}</sdcodex:request>"
        "</rdf:Description></rdf:RDF></x:xmpmeta>"
        '<?xpacket end="w"?>'
    )
    return body.encode("utf-8")


# ------------------------------------------------------------------------------------------ atomic write

def atomic_write(path: str | Path, write: Callable[[BinaryIO, Path], None], *, reserved: bool = False) -> Path:
    """Write ``path`` through a hidden temp file in the same folder, fsync, then ``os.replace``.

    ``write(fileobj, temp_path)`` fills the temp file (use the path for writers that need one).
    On any error the temp file is removed, an existing ``path`` is left untouched, and a reserved
    placeholder (the empty file ``naming.next_output_path`` created; any empty file at ``path`` counts)
    is removed too.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        reserved = reserved or path.stat().st_size == 0
    except FileNotFoundError:
        pass
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh, tmp)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        if reserved:
            try:
                if path.stat().st_size == 0:
                    path.unlink()
            except FileNotFoundError:
                pass
        raise
    return path


# ------------------------------------------------------------------------------------------- save_image

def _image_format(fmt: str) -> tuple[str, str]:
    key = str(fmt).lower()
    if key not in IMAGE_FORMATS:
        raise ValidationError(f"unsupported image format {fmt!r}", field="format", allowed=["png", "webp", "jpeg"])
    return IMAGE_FORMATS[key]


def _encode(image: Image.Image, fh: BinaryIO, pil_format: str, infotext: str, payload: str,
            quality: int, lossless: bool) -> None:
    if pil_format == "PNG":
        info = PngImagePlugin.PngInfo()
        info.add_text("parameters", infotext)
        info.add_text(PAYLOAD_KEY, payload, zip=True)
        image.save(fh, format="PNG", pnginfo=info)
        return
    if pil_format == "JPEG" and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    elif pil_format == "WEBP" and image.mode not in ("RGB", "RGBA"):
        image = image.convert("RGBA" if "A" in image.mode or "transparency" in image.info else "RGB")
    xmp = xmp_packet(payload)
    if pil_format == "JPEG" and len(xmp) > _JPEG_MARKER_MAX:
        log.warning("request JSON (%d bytes) does not fit a JPEG XMP segment; written without it", len(xmp))
        xmp = b""
    kwargs: dict[str, Any] = {"quality": int(quality), "exif": exif_user_comment(infotext)}
    if xmp:
        kwargs["xmp"] = xmp
    if pil_format == "WEBP":
        kwargs["lossless"] = lossless
    image.save(fh, format=pil_format, **kwargs)


def save_image(image: Image.Image, path_or_dir: str | Path, *, fmt: str = "png", infotext: str,
               request: dict[str, Any] | None, info: dict[str, Any] | None = None, quality: int = 95,
               lossless: bool = False, date: Any = None) -> Path:
    """Save ``image`` with metadata; return the final path.

    ``path_or_dir``: a file path, or an existing folder, in which case the A1111 layout
    ``<dir>/<task>/<date>/<NNNNN>-<seed>.<ext>`` is used with ``request["task"]`` (default txt2img)
    and ``request["seed"]``. ``fmt``: png | webp | jpeg. ``quality`` is for WebP/JPEG; ``lossless`` for WebP.
    """
    pil_format, ext = _image_format(fmt)
    request = request or {}
    payload = request_payload(request, info)
    target = Path(path_or_dir)
    reserved = False
    if target.is_dir():
        seed = request.get("seed")
        target = next_output_path(target, str(request.get("task") or "txt2img"),
                                  int(seed) if isinstance(seed, int) and seed >= 0 else None, ext, date=date)
        reserved = True
    return atomic_write(
        target, lambda fh, _tmp: _encode(image, fh, pil_format, infotext or "", payload, quality, lossless),
        reserved=reserved)
