"""LTX-2 with a tiny random-weight model through the orchestrator: the frames (<= 1/255) and the sound track
(<= 1e-5 per sample) equal Diffusers' own LTX2Pipeline and LTX2ImageToVideoPipeline with the scheduler built here
from Diffusers' class; the MP4 carries the sound as an AAC track, `audio: false` and frames-only formats leave it
out (the latter with a warning); the frame and size rules name their field."""
from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

import sdcodex.engines  # noqa: F401  (registers engines)
from sdcodex.core.errors import UnsupportedSamplerError, ValidationError
from sdcodex.core.orchestrator import Orchestrator
from sdcodex.models.demo import build_demo_model
from sdcodex.runtime import MediaSaver
from tests.engines.test_video import FlowModels

MAX_DIFF = 1            # <= 1/255 per channel
AUDIO_TOL = 1e-5        # waveform samples in [-1, 1], fp32 on CPU
DEMO = "ltx2-demo"
BASE = {"model": DEMO, "prompt": "a robot dancing", "negative_prompt": "blurry", "width": 64, "height": 32,
        "num_frames": 9, "fps": 24.0, "steps": 2, "cfg_scale": 3.0, "seed": 11}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ltx2-models")
    build_demo_model("ltx2", root)
    return root


@pytest.fixture(scope="module")
def provider(root) -> FlowModels:
    return FlowModels(root)


@pytest.fixture()
def orch(provider, tmp_path) -> Orchestrator:
    return Orchestrator(provider, MediaSaver(tmp_path / "out"),
                        image_loader=lambda value, field: Image.open(value).convert("RGB"))


@pytest.fixture(scope="module")
def still(tmp_path_factory) -> str:
    pixels = (np.arange(32 * 64 * 3).reshape(32, 64, 3) * 7 % 251).astype(np.uint8)
    path = tmp_path_factory.mktemp("ltx2-still") / "still.png"
    Image.fromarray(pixels).save(path)
    return str(path)


def reference(folder: Path, image: Image.Image | None = None, transformer=None):
    """Diffusers' own pipeline on the demo folder (with `transformer` in place of the folder's, when given), with
    LTX-2's published scheduler built here from its class."""
    from diffusers import FlowMatchEulerDiscreteScheduler, LTX2ImageToVideoPipeline, LTX2Pipeline

    extra_parts = {} if transformer is None else {"transformer": transformer}
    pipe = LTX2Pipeline.from_pretrained(folder, local_files_only=True, **extra_parts)
    if image is not None:
        pipe = LTX2ImageToVideoPipeline(**pipe.components)
    pipe.scheduler = FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=True, base_shift=0.95, max_shift=2.05,
        base_image_seq_len=1024, max_image_seq_len=4096, shift_terminal=0.1, time_shift_type="exponential")
    pipe.set_progress_bar_config(disable=True)
    extra = {} if image is None else {"image": image}
    return pipe(prompt=BASE["prompt"], negative_prompt=BASE["negative_prompt"], width=64, height=32, num_frames=9,
                frame_rate=24.0, num_inference_steps=2, guidance_scale=3.0, output_type="pil",
                generator=torch.Generator("cpu").manual_seed(11), **extra)


def assert_same(result, expected) -> None:
    frames = result.frames[0]
    assert len(frames) == len(expected.frames[0]) == 9
    for ours, theirs in zip(frames, expected.frames[0]):
        diff = np.abs(np.asarray(ours, dtype=np.int16) - np.asarray(theirs, dtype=np.int16))
        assert ours.size == theirs.size == (64, 32) and diff.max() <= MAX_DIFF
    wave, rate = result.audio[0]
    theirs = expected.audio[0].float().numpy()
    assert wave.shape == theirs.shape and rate == 16000
    assert np.abs(wave - theirs).max() <= AUDIO_TOL


def streams(path: str) -> dict[str, tuple]:
    with av.open(path) as container:
        return {s.type: (s.codec_context.name, getattr(s.codec_context, "sample_rate", None),
                         getattr(getattr(s, "layout", None), "nb_channels", None), s.frames)
                for s in container.streams}


def test_txt2vid_frames_and_audio_equal_diffusers(orch, root):
    result = orch.run({"task": "txt2vid", **BASE})
    assert_same(result, reference(root / DEMO))
    info = result.info
    assert info["engine"] == "ltx2" and info["sampler_effective"] == "Euler" and info["preset"] == "ltx2/normal/txt2vid"
    wave = result.audio[0][0]
    assert info["audio"] == {"sample_rate": 16000, "channels": 2, "seconds": round(wave.shape[-1] / 16000, 3)}
    found = streams(result.videos[0])
    assert found["video"][0] == "h264" and found["video"][3] == 9
    assert found["audio"][:3] == ("aac", 16000, 2)


def test_img2vid_frames_and_audio_equal_diffusers(orch, root, still):
    result = orch.run({"task": "img2vid", "init_image": still, **BASE})
    assert_same(result, reference(root / DEMO, image=Image.open(still).convert("RGB")))
    assert "audio" in streams(result.videos[0])


def test_audio_off_and_frames_only_formats(orch):
    silent = orch.run({"task": "txt2vid", **BASE, "audio": False, "output_format": "webm"})
    assert silent.info["audio"] is None and set(streams(silent.videos[0])) == {"video"}
    assert not any("audio" in w for w in silent.info["warnings"])
    gif = orch.run({"task": "txt2vid", **BASE, "output_format": "gif"})
    assert gif.videos[0].endswith(".gif") and len(gif.frames[0]) == 9
    assert any(w.startswith("audio dropped: gif") for w in gif.info["warnings"])
    webm = orch.run({"task": "txt2vid", **BASE, "output_format": "webm", "seed": 12})
    assert streams(webm.videos[0])["audio"][:3] == ("opus", 48000, 2)  # Opus decodes at 48 kHz whatever went in


@pytest.mark.parametrize("key, value", [("num_frames", 12), ("width", 48)])
def test_frame_and_size_rules_name_the_field(orch, key, value):
    with pytest.raises(ValidationError) as err:
        orch.run({"task": "txt2vid", **BASE, key: value})
    assert err.value.field == key


def test_classic_sampler_is_refused_naming_the_field(orch):
    with pytest.raises(UnsupportedSamplerError) as err:
        orch.run({"task": "txt2vid", **BASE, "sampler": "DDIM"})
    assert err.value.field == "sampler" and "Euler" in err.value.allowed
