"""Video writers: MP4 (H.264) and WebM (VP9) decode back with PyAV; GIF/WebP frame counts; metadata."""
from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
from PIL import Image

from sdcodex.core.errors import ValidationError
from sdcodex.media.reader import read_info
from sdcodex.media.video import frame_rate, save_video, video_codec

INFOTEXT = "a fox running, snow\nNegative prompt: blur\nSteps: 4, Sampler: Euler, CFG scale: 5, Seed: 9, Size: 66x48"
REQUEST = {"task": "txt2vid", "seed": 9, "prompt": "a fox running, snow", "num_frames": 9}


def _frames(n: int = 9, size: tuple[int, int] = (65, 47)) -> list[Image.Image]:
    w, h = size
    out = []
    for i in range(n):
        arr = np.zeros((h, w, 3), np.uint8)
        arr[..., 0] = 20 + i * 20
        arr[..., 1] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
        arr[..., 2] = 128
        out.append(Image.fromarray(arr))
    return out


@pytest.mark.parametrize("fmt,codec", [("mp4", "h264"), ("webm", "vp9")])
def test_mp4_webm_decode_back(tmp_path, fmt, codec):
    frames = _frames()
    out = save_video(frames, tmp_path / f"v.{fmt}", fps=23.976, fmt=fmt, infotext=INFOTEXT, request=REQUEST)
    with av.open(str(out)) as c:
        stream = c.streams.video[0]
        assert stream.codec_context.name == codec
        assert stream.average_rate == Fraction(24000, 1001)
        decoded = [f.to_ndarray(format="rgb24") for f in c.decode(stream)]
        tags = {k.lower(): v for k, v in c.metadata.items()}
    assert len(decoded) == 9
    assert decoded[0].shape == (48, 66, 3)                       # odd 65x47 padded to even 66x48
    src = np.asarray(frames[4], dtype=np.float32)
    assert np.abs(decoded[4][:47, :65].astype(np.float32) - src).mean() < 6   # same picture, lossy codec
    assert tags["comment"] == INFOTEXT and tags["description"] == INFOTEXT
    r = read_info(out)
    assert (r["format"], r["frames"], r["width"], r["height"]) == (fmt, 9, 66, 48)
    assert r["fps"] == pytest.approx(24000 / 1001)
    assert r["parameters"] == INFOTEXT and r["request"] == REQUEST
    assert r["parsed"]["Seed"] == "9"


def test_fractional_fps_and_codec_choice(tmp_path):
    assert video_codec("mp4") in ("libx264", "libopenh264", "mpeg4")
    assert frame_rate(29.97) == Fraction(30000, 1001) and frame_rate(7.5) == Fraction(15, 2)
    out = save_video(_frames(4, (32, 32)), tmp_path / "a.mp4", fps=7.5, infotext=INFOTEXT, request=REQUEST)
    assert read_info(out)["fps"] == 7.5
    with pytest.raises(ValidationError, match="fps"):
        frame_rate(0)


@pytest.mark.parametrize("fmt", ["gif", "webp"])
def test_gif_and_animated_webp(tmp_path, fmt):
    out = save_video(_frames(), tmp_path / f"a.{fmt}", fps=8, fmt=fmt, infotext=INFOTEXT, request=REQUEST)
    with Image.open(out) as im:
        assert im.n_frames == 9 and im.size == (65, 47)
        if fmt == "gif":
            assert im.info["comment"].decode("utf-8") == INFOTEXT      # what A1111's reader looks at
    r = read_info(out)
    assert (r["format"], r["frames"], r["width"], r["height"]) == (fmt, 9, 65, 47)
    assert r["fps"] == pytest.approx(8, rel=0.02)                      # GIF delays are 1/100 s
    assert r["parameters"] == INFOTEXT and r["request"] == REQUEST


def test_failed_video_write_leaves_no_file(tmp_path):
    frames = _frames(5) + [Image.new("RGB", (10, 10))]
    for fmt in ("mp4", "gif"):
        with pytest.raises(ValidationError, match="frame 5 is 10x10"):
            save_video(frames, tmp_path, fps=8, fmt=fmt, infotext=INFOTEXT, request=REQUEST)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_folder_layout(tmp_path):
    out = save_video(_frames(2), tmp_path, fps=8, fmt="webm", infotext="", request=REQUEST, date="2025-01-01")
    assert out.relative_to(tmp_path).as_posix() == "txt2vid/2025-01-01/00000-9.webm"
