"""Video engines (SVD, HunyuanVideo 1.0/1.5, WAN 2.2) with tiny random-weight models through the orchestrator:
frame count and size, the written MP4/WebM decodes back with PyAV to the right frames/fps and carries the
request, WAN A14B expert switching at the boundary, WAN frames equal Diffusers' own pipeline, bad paths."""
from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

import sdcodex.engines  # noqa: F401  (registers engines)
from sdcodex.core.errors import TokenizerMissingError, UnsupportedSamplerError, ValidationError
from sdcodex.core.orchestrator import Orchestrator
from sdcodex.models import demo_video  # noqa: F401  (registers the demo builders)
from sdcodex.models.demo import DEMO_BUILDERS, build_demo_model
from sdcodex.models.detect import detect_folder
from sdcodex.models.flow_loader import load_flow_model
from sdcodex.runtime import MediaSaver

FAMILIES = ("svd", "hunyuan_video", "hunyuan_video15", "hunyuan_video15_i2v", "wan22_ti2v_5b", "wan22_t2v_a14b",
            "wan22_i2v_a14b")


class FlowModels:
    """ModelProvider over demo folders: names are folder names, loading goes through load_flow_model."""

    def __init__(self, root: Path) -> None:
        self.root, self.cache = root, {}

    def resolve(self, ref, *, engine=None):
        path = self.root / ref
        return SimpleNamespace(name=ref, path=path, family=detect_folder(path).family.value)

    def load(self, entry, *, vae=None, precision="auto", params=None):
        if entry.name not in self.cache:
            self.cache[entry.name] = load_flow_model(entry.path, family=entry.family, models_dir=self.root)
        return self.cache[entry.name]

    def short_hash(self, entry):
        return "0123456789"


@pytest.fixture(scope="module")
def video_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("video-models")
    for family in FAMILIES:
        build_demo_model(family, root)
    return root


@pytest.fixture(scope="module")
def provider(video_root) -> FlowModels:
    return FlowModels(video_root)


@pytest.fixture()
def orch(provider, tmp_path) -> Orchestrator:
    return Orchestrator(provider, MediaSaver(tmp_path / "out"),
                        image_loader=lambda value, field: Image.open(value).convert("RGB"))


@pytest.fixture(scope="module")
def still(tmp_path_factory) -> str:
    image = Image.new("RGB", (64, 64))
    image.putdata([(4 * x, 4 * y, 128) for y in range(64) for x in range(64)])
    path = tmp_path_factory.mktemp("inputs") / "still.png"
    image.save(path)
    return str(path)


def folder(family: str) -> str:
    return DEMO_BUILDERS[family][0]


def request(family: str, task: str, still: str | None = None, **extra) -> dict:
    size = 64 if family == "svd" else 32
    req = {"task": task, "model": folder(family), "prompt": "a red fox", "steps": 2, "seed": 7, "num_frames": 5,
           "fps": 8.0, "width": size, "height": size, "output_format": "mp4"}
    if task == "img2vid":
        req["init_image"] = still
    req.update(extra)
    return req


CASES = [("hunyuan_video", "txt2vid"), ("hunyuan_video15", "txt2vid"),
         ("hunyuan_video15_i2v", "img2vid"), ("wan22_ti2v_5b", "txt2vid"), ("wan22_ti2v_5b", "img2vid"),
         ("wan22_t2v_a14b", "txt2vid")]


@pytest.mark.parametrize("family,task", CASES)
def test_video_engine_writes_a_decodable_video(orch, still, family, task):
    from sdcodex.media.reader import read_info

    result = orch.run(request(family, task, still, output_format="webm" if family == "hunyuan_video" else "mp4"))
    assert len(result.frames) == 1 and len(result.frames[0]) == 5
    size = 32
    assert result.frames[0][0].size == (size, size)
    assert len(result.videos) == 1
    info = read_info(result.videos[0])
    assert info["format"] == ("webm" if family == "hunyuan_video" else "mp4")
    assert (info["frames"], info["fps"], info["width"], info["height"]) == (5, 8.0, size, size)
    assert info["request"]["model"] == folder(family) and info["request"]["num_frames"] == 5
    assert "a red fox" in info["parameters"]
    assert "Frames: 5" in info["parameters"] and "FPS: 8," in info["parameters"]  # what the video was made with
    metrics = result.info["metrics"]
    assert {"load", "text_encode", "denoise", "decode", "save", "total", "peak_rss_mb"} <= set(metrics)
    memory = result.info["memory"]
    assert memory["offload"] == "none" and "device is cpu" in memory["offload_reason"]
    assert memory["vae_tiling"] is (family != "svd")       # video tiles automatically where the VAE can


def test_svd_conditioning_values_and_cpu_offload_warning(orch, still):
    result = orch.run(request("svd", "img2vid", still, motion_bucket_id=60, noise_aug_strength=0.1,
                              decode_chunk_size=2, offload="model", vae_tiling=True, num_frames=3, steps=1))
    assert len(result.frames[0]) == 3 and result.frames[0][0].size == (64, 64)
    from sdcodex.media.reader import read_info

    info = read_info(result.videos[0])
    assert (info["frames"], info["fps"]) == (3, 8.0) and info["request"]["motion_bucket_id"] == 60
    assert result.info["svd"] == {"min_guidance_scale": 1.0, "max_guidance_scale": 3.0, "fps": 8,
                                  "motion_bucket_id": 60, "noise_aug_strength": 0.1, "decode_chunk_size": 2}
    assert any("offload='model' needs a CUDA device" in w for w in result.info["warnings"])
    assert any("AutoencoderKLTemporalDecoder has no tiled decoding" in w for w in result.info["warnings"])
    assert result.info["memory"]["offload"] == "none" and result.info["memory"]["vae_tiling"] is False


def test_wan_a14b_experts_split_at_the_boundary(orch, provider):
    model = provider.load(provider.resolve(folder("wan22_t2v_a14b")))
    seen: dict[str, list[float]] = {"transformer": [], "transformer_2": []}
    handles = []
    for name in seen:
        def hook(module, args, kwargs, _name=name):
            seen[_name].append(float(kwargs["timestep"].flatten()[0]))
        handles.append(model.components[name].register_forward_pre_hook(hook, with_kwargs=True))
    try:
        result = orch.run(request("wan22_t2v_a14b", "txt2vid", steps=6, cfg_scale=1.0, guidance_scale_2=1.0,
                                  flow_shift=3.0))
    finally:
        for handle in handles:
            handle.remove()
    boundary = 0.875 * 1000
    assert result.info["boundary_ratio"] == 0.875 and result.info["experts"] == 2
    assert seen["transformer"] and seen["transformer_2"]
    assert len(seen["transformer"]) + len(seen["transformer_2"]) == 6
    assert all(t >= boundary for t in seen["transformer"])
    assert all(t < boundary for t in seen["transformer_2"])


def test_wan_i2v_boundary_is_0_9(orch, still):
    result = orch.run(request("wan22_i2v_a14b", "img2vid", still, steps=1, num_frames=1))
    assert result.info["boundary_ratio"] == 0.9 and len(result.frames[0]) == 1
    assert result.info["sampler_effective"] == "UniPC"


def test_wan_frames_equal_diffusers_pipeline(orch, video_root):
    from diffusers import UniPCMultistepScheduler, WanPipeline

    result = orch.run(request("wan22_t2v_a14b", "txt2vid", cfg_scale=4.0, guidance_scale_2=3.0,
                              negative_prompt="blurry"))
    pipe = WanPipeline.from_pretrained(video_root / folder("wan22_t2v_a14b"), local_files_only=True)
    pipe.scheduler = UniPCMultistepScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    ref = pipe(prompt="a red fox", negative_prompt="blurry", height=32, width=32, num_frames=5, num_inference_steps=2,
               guidance_scale=4.0, guidance_scale_2=3.0, generator=torch.Generator("cpu").manual_seed(7),
               output_type="pil").frames[0]
    ours = result.frames[0]
    assert len(ours) == len(ref) == 5
    for a, b in zip(ours, ref):
        assert np.array_equal(np.asarray(a), np.asarray(b.convert("RGB")))


def test_wrong_frame_count_names_the_rule(orch):
    with pytest.raises(ValidationError) as err:
        orch.run(request("wan22_ti2v_5b", "txt2vid", num_frames=6))
    assert err.value.field == "num_frames" and "4k+1" in str(err.value) and "5 or 9" in str(err.value)


def test_ti2v_size_rule_is_32(orch):
    with pytest.raises(ValidationError) as err:
        orch.run(request("wan22_ti2v_5b", "txt2vid", width=48))
    assert err.value.field == "width" and "multiple of 32" in str(err.value)


def test_img2vid_without_image_is_an_error(orch):
    with pytest.raises(ValidationError) as err:
        orch.run(request("wan22_i2v_a14b", "img2vid"))
    assert err.value.field == "init_image"


def test_txt2vid_model_refuses_img2vid(orch, still):
    with pytest.raises(ValidationError) as err:
        orch.run(request("hunyuan_video15", "img2vid", still))
    assert err.value.field == "task"


def test_flow_models_refuse_classic_samplers(orch):
    with pytest.raises(UnsupportedSamplerError) as err:
        orch.run(request("wan22_t2v_a14b", "txt2vid", sampler="DDIM"))
    assert err.value.field == "sampler" and "UniPC" in err.value.allowed


def test_missing_tokenizer_folder_names_folder_and_command(video_root, tmp_path):
    copy = tmp_path / "wan-no-tokenizer"
    shutil.copytree(video_root / folder("wan22_ti2v_5b"), copy)
    shutil.rmtree(copy / "tokenizer")
    with pytest.raises(TokenizerMissingError) as err:
        load_flow_model(copy, family="wan22_ti2v_5b", models_dir=tmp_path)
    text = str(err.value)
    assert str(tmp_path / "tokenizers" / "tokenizer-umt5-xxl") in text
    assert "sdcodex cache-models tokenizer-umt5-xxl" in text
    # with the tokenizer in models/tokenizers/<name>/ the same folder loads
    shutil.copytree(video_root / folder("wan22_ti2v_5b") / "tokenizer", tmp_path / "tokenizers" / "tokenizer-umt5-xxl")
    loaded = load_flow_model(copy, family="wan22_ti2v_5b", models_dir=tmp_path)
    assert loaded.components["tokenizer"] is not None


@pytest.mark.parametrize("family,task,expected", [("wan22_t2v_a14b", "txt2vid", True), ("wan22_i2v_a14b", "img2vid", True),
                                                  ("wan22_ti2v_5b", "txt2vid", False)])
def test_video_live_previews_show_the_first_frame(orch, still, family, task, expected):
    """Families with a latent-to-RGB map preview the first latent frame; WAN's 48-channel VAE has none. (The
    HunyuanVideo demo's VAE has 4 latent channels, not the real 16, so its map is tested on its own.)"""
    from sdcodex.core.events import EventSink

    events = []
    orch.run(request(family, task, still), events=EventSink([events.append], preview_every=1))
    previews = [e.data for e in events if e.kind == "preview"]
    progress = [e for e in events if e.kind == "progress"]
    if not expected:
        assert previews == [] and progress
        return
    assert [p["done"] for p in previews] == [e.data["done"] for e in progress]
    assert all(p["image"].mode == "RGB" and p["image"].size[0] == p["image"].size[1] < 32 for p in previews)
