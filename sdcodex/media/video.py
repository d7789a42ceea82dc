"""Write frame lists as MP4 (H.264), WebM (VP9), GIF or animated WebP, atomically, with our metadata.

MP4/WebM go through PyAV: yuv420p, even size (odd width/height get one edge-replicated column/row on the
right/bottom), a Fraction frame rate. A sound track (a float waveform [channels, samples] and its sample rate, as
LTX-2 makes) is muxed beside the frames: AAC in MP4, Opus in WebM; GIF and animated WebP hold frames only. Container tags: "comment" and "description" = infotext,
"sdcodex" = payload JSON (MP4 uses movflags=use_metadata_tags so the custom key survives; Matroska
stores every tag; PyAV reads all of them back). GIF: infotext in the comment extension (what A1111's
reader looks at) and the payload JSON in an application extension "SDCODEX1JSN". Animated WebP: the
same EXIF UserComment + XMP as still WebP (see images.py).
"""
from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO, Sequence

import numpy as np
from PIL import Image

from sdcodex.core.errors import ValidationError
from sdcodex.media.images import atomic_write, exif_user_comment, request_payload, xmp_packet
from sdcodex.media.naming import next_output_path

VIDEO_FORMATS = ("mp4", "webm", "gif", "webp")
GIF_APP_ID = b"SDCODEX1JSN"                 # 8-byte application identifier + 3-byte auth code
_H264_CANDIDATES = ("libx264", "libopenh264", "mpeg4")
_DEFAULT_QUALITY = {"libx264": 65, "libopenh264": 65, "mpeg4": 65, "libvpx-vp9": 50, "webp": 90}
_CRF_MAX = {"libx264": 51, "libvpx-vp9": 63}
AUDIO_CODECS = {"mp4": "aac", "webm": "libopus"}
_AUDIO_BIT_RATE = 128_000
_OPUS_RATES = (8000, 12000, 16000, 24000, 48000)


def _encoder_available(name: str) -> bool:
    import av

    try:
        av.codec.Codec(name, "w")
    except Exception:  # noqa: BLE001 - PyAV raises several types for a missing encoder
        return False
    return True


def video_codec(fmt: str) -> str:
    """The encoder ``save_video`` uses for ``fmt`` (mp4: libx264, else libopenh264, else mpeg4)."""
    if fmt == "mp4":
        for name in _H264_CANDIDATES:
            if _encoder_available(name):
                return name
        raise ValidationError("no H.264/MPEG-4 encoder in this PyAV build", field="format", allowed=["webm", "gif"])
    if fmt == "webm":
        return "libvpx-vp9"
    return {"gif": "gif", "webp": "webp"}[fmt]


def frame_rate(fps: float | Fraction) -> Fraction:
    """``fps`` as an exact Fraction: NTSC rates (23.976, 29.97, 59.94 ...) become N*1000/1001."""
    if isinstance(fps, Fraction):
        rate = fps
    else:
        value = float(fps)
        if not math.isfinite(value) or value <= 0:
            raise ValidationError(f"fps must be a positive number, got {fps!r}", field="fps")
        rate = Fraction(value).limit_denominator(1001)
        for base in (24, 25, 30, 48, 50, 60, 120):
            if abs(value - base * 1000 / 1001) < 5e-3:
                rate = Fraction(base * 1000, 1001)
    if rate <= 0 or rate > 1000:
        raise ValidationError(f"fps must be in (0, 1000], got {float(rate)}", field="fps")
    return rate


def _even_rgb(frame: Image.Image, size: tuple[int, int], index: int) -> np.ndarray:
    if frame.size != size:
        raise ValidationError(f"frame {index} is {frame.size[0]}x{frame.size[1]}, expected "
                              f"{size[0]}x{size[1]} like frame 0", field="frames")
    arr = np.asarray(frame.convert("RGB"))
    pad_h, pad_w = arr.shape[0] % 2, arr.shape[1] % 2
    if pad_h or pad_w:
        arr = np.pad(arr, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return np.ascontiguousarray(arr)


def _crf(codec: str, quality: int | None) -> int:
    q = _DEFAULT_QUALITY[codec] if quality is None else max(0, min(100, int(quality)))
    return round(_CRF_MAX.get(codec, 51) * (100 - q) / 100)


def audio_track(audio: Any) -> tuple[np.ndarray, int]:
    """``(waveform, sample_rate)`` checked: float32 [channels (1 or 2), samples], values clipped to [-1, 1]."""
    try:
        wave, rate = audio
        wave = np.asarray(wave, dtype=np.float32)
        rate = int(rate)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"audio must be (waveform, sample_rate), got {type(audio).__name__}",
                              field="audio") from exc
    if wave.ndim == 1:
        wave = wave[None]
    if wave.ndim != 2 or wave.shape[0] not in (1, 2) or wave.shape[1] == 0 or rate <= 0:
        raise ValidationError(f"audio waveform must be [1 or 2 channels, samples] with a positive sample rate, "
                              f"got shape {list(wave.shape)} at {rate} Hz", field="audio")
    return np.ascontiguousarray(np.clip(np.nan_to_num(wave), -1.0, 1.0)), rate


def _add_audio(container: Any, fmt: str, wave: np.ndarray, rate: int) -> Any:
    """An audio stream for ``wave`` (Opus only takes 8/12/16/24/48 kHz: other rates are resampled to 48 kHz)."""
    codec = AUDIO_CODECS[fmt]
    out_rate = rate if codec != "libopus" or rate in _OPUS_RATES else 48000
    stream = container.add_stream(codec, rate=out_rate)
    stream.layout = "stereo" if wave.shape[0] == 2 else "mono"
    stream.codec_context.bit_rate = _AUDIO_BIT_RATE
    return stream


def _encode_audio(container: Any, stream: Any, wave: np.ndarray, rate: int) -> None:
    import av

    frame = av.AudioFrame.from_ndarray(wave, format="fltp", layout="stereo" if wave.shape[0] == 2 else "mono")
    frame.sample_rate, frame.pts, frame.time_base = rate, 0, Fraction(1, rate)
    resampler = av.AudioResampler(format=stream.codec_context.format.name, layout=stream.layout.name,
                                  rate=stream.codec_context.sample_rate)
    for chunk in [*resampler.resample(frame), *resampler.resample(None)]:
        for packet in stream.encode(chunk):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)


def _write_av(frames: Sequence[Image.Image], tmp: Path, fmt: str, rate: Fraction, infotext: str,
              payload: str, quality: int | None, audio: tuple[np.ndarray, int] | None = None) -> None:
    import av

    codec = video_codec(fmt)
    options = {"movflags": "+faststart+use_metadata_tags"} if fmt == "mp4" else {}
    with av.open(str(tmp), mode="w", format=fmt, options=options) as container:
        container.metadata["comment"] = infotext
        container.metadata["description"] = infotext
        container.metadata["sdcodex"] = payload
        stream = container.add_stream(codec, rate=rate)
        w, h = frames[0].size
        stream.width, stream.height = w + w % 2, h + h % 2
        stream.pix_fmt = "yuv420p"
        stream.time_base = 1 / rate
        if codec in _CRF_MAX:
            stream.options = {"crf": str(_crf(codec, quality))}
            if codec == "libvpx-vp9":
                stream.codec_context.bit_rate = 0
                stream.options.update({"row-mt": "1", "deadline": "good", "cpu-used": "4"})
        else:
            stream.codec_context.bit_rate = int(stream.width * stream.height * float(rate) * 0.3)
        sound = _add_audio(container, fmt, *audio) if audio is not None else None
        for i, frame in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(_even_rgb(frame, (w, h), i), format="rgb24")
            vf.pts, vf.time_base = i, 1 / rate
            for packet in stream.encode(vf):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if sound is not None:
            _encode_audio(container, sound, *audio)


def _durations_ms(n: int, rate: Fraction, unit_ms: int) -> list[int]:
    """Per-frame durations in multiples of ``unit_ms`` whose running sum tracks i/fps (no drift)."""
    step = Fraction(1000, 1) / rate / unit_ms
    marks = [round(i * step) for i in range(n + 1)]
    return [max(1, b - a) * unit_ms for a, b in zip(marks, marks[1:])]


def _gif_insert_app_extension(data: bytes, payload: bytes) -> bytes:
    """Insert an application extension holding ``payload`` right after the global colour table."""
    flags = data[10]
    at = 13 + (3 * (2 << (flags & 7)) if flags & 0x80 else 0)
    blocks = b"".join(bytes([len(payload[i:i + 255])]) + payload[i:i + 255] for i in range(0, len(payload), 255))
    ext = b"\x21\xff" + bytes([len(GIF_APP_ID)]) + GIF_APP_ID + blocks + b"\x00"
    return data[:at] + ext + data[at:]


def _write_pillow(frames: Sequence[Image.Image], fh: BinaryIO, fmt: str, rate: Fraction, infotext: str,
                  payload: str, quality: int | None) -> None:
    import io

    size = frames[0].size
    for i, frame in enumerate(frames):
        if frame.size != size:
            raise ValidationError(f"frame {i} is {frame.size[0]}x{frame.size[1]}, expected "
                                  f"{size[0]}x{size[1]} like frame 0", field="frames")
    if fmt == "gif":
        rgb = [f.convert("RGB") for f in frames]
        buf = io.BytesIO()
        rgb[0].save(buf, format="GIF", save_all=True, append_images=rgb[1:], loop=0,
                    duration=_durations_ms(len(rgb), rate, 10), comment=infotext.encode("utf-8"))
        fh.write(_gif_insert_app_extension(buf.getvalue(), payload.encode("utf-8")))
        return
    mode = "RGBA" if any(f.mode in ("RGBA", "LA") for f in frames) else "RGB"
    conv = [f.convert(mode) for f in frames]
    conv[0].save(fh, format="WEBP", save_all=True, append_images=conv[1:], loop=0,
                 duration=_durations_ms(len(conv), rate, 1), quality=_DEFAULT_QUALITY["webp"] if quality is None
                 else int(quality), exif=exif_user_comment(infotext), xmp=xmp_packet(payload))


def save_video(frames: Sequence[Image.Image], path: str | Path, *, fps: float | Fraction, fmt: str = "mp4",
               infotext: str, request: dict[str, Any] | None, info: dict[str, Any] | None = None,
               quality: int | None = None, date: Any = None, audio: Any = None) -> Path:
    """Encode ``frames`` to ``path`` (a file, or an existing folder: A1111 layout with request task/seed).

    ``audio``: ``(waveform [channels, samples], sample_rate)`` muxed as the sound track (MP4: AAC, WebM: Opus);
    GIF/WebP cannot hold one, and the caller says so (the orchestrator warns that the audio was dropped).

    ``quality`` 0-100, higher is better: mp4/webm map it to CRF = max_crf * (100 - q) / 100
    (None: x264 CRF 18, VP9 CRF 32); animated WebP uses it directly (None: 90); GIF ignores it.
    Note: Pillow merges identical consecutive GIF frames (summing their durations).
    """
    fmt = str(fmt).lower()
    if fmt not in VIDEO_FORMATS:
        raise ValidationError(f"unsupported video format {fmt!r}", field="format", allowed=list(VIDEO_FORMATS))
    if not frames:
        raise ValidationError("no frames to write", field="frames")
    rate = frame_rate(fps)
    track = audio_track(audio) if audio is not None and fmt in AUDIO_CODECS else None
    request = request or {}
    payload = request_payload(request, info)
    target, reserved = Path(path), False
    if target.is_dir():
        seed = request.get("seed")
        target = next_output_path(target, str(request.get("task") or "txt2vid"),
                                  int(seed) if isinstance(seed, int) and seed >= 0 else None, fmt, date=date)
        reserved = True

    def write(fh: BinaryIO, tmp: Path) -> None:
        if fmt in ("mp4", "webm"):
            fh.flush()
            _write_av(frames, tmp, fmt, rate, infotext or "", payload, quality, track)
            fh.seek(0, 2)  # PyAV wrote through the path; keep the handle at the end for fsync
        else:
            _write_pillow(frames, fh, fmt, rate, infotext or "", payload, quality)

    return atomic_write(target, write, reserved=reserved)
