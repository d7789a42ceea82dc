"""Offloading policy and VAE tiling: the choosers as pure functions over tables of (sizes, free memory, device),
what a CPU run reports in `info.memory`, request/server overrides, and the decode facts the tiling rule relies on
(slicing is exact; tiling changes nothing while the image fits one tile). GPU paths: see docs/memory.md."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL

from sdcodex.core.errors import ValidationError
from sdcodex.core.orchestrator import Orchestrator
from sdcodex.core.request import validate_request
from sdcodex.engines.memory import GIB, choose_offload, choose_vae_tiling
from sdcodex.models import demo_video  # noqa: F401  (registers the demo builders)
from sdcodex.models.demo import DEMO_BUILDERS, build_demo_model
from tests.engines.test_video import FlowModels

WAN_A14B = {"text_encoder": 11 * GIB, "transformer": 27 * GIB, "transformer_2": 27 * GIB, "vae": GIB // 4}
FLUX = {"text_encoder": GIB // 4, "text_encoder_2": 9 * GIB, "transformer": 22 * GIB, "vae": GIB // 6}


@pytest.mark.parametrize("device,budget,components,block,expected", [
    ("cpu", 4 * GIB, FLUX, None, "none"),                       # CPU: never offload
    ("mps", 64 * GIB, FLUX, None, "none"),                      # no CUDA: never offload
    ("cuda", None, FLUX, None, "none"),                         # free memory unknown
    ("cuda", 80 * GIB, FLUX, None, "none"),                     # H100 80 GB: FLUX bf16 fits whole
    ("cuda", 24 * GIB, FLUX, None, "model"),                    # 24 GB: the 22 GiB transformer alone fits (+2 headroom)
    ("cuda", 16 * GIB, FLUX, 400 * 2**20, "group"),             # 16 GB: two blocks of 0.4 GiB fit
    ("cuda", 2 * GIB + 100 * 2**20, FLUX, 400 * 2**20, "sequential"),  # only headroom left
    ("cuda", 48 * GIB, WAN_A14B, None, "model"),                # both experts 54 GiB + T5: one expert at a time
    ("cuda", 140 * GIB, WAN_A14B, None, "none"),                # H200: everything
    ("cuda", 24 * GIB, WAN_A14B, 700 * 2**20, "group"),         # 24 GB: an expert does not fit, its blocks do
    ("cuda", 12 * GIB, {"unet": 5 * GIB // 2, "text_encoder": GIB // 4, "vae": GIB // 6}, None, "none"),  # SDXL
])
def test_offload_policy_table(device, budget, components, block, expected):
    choice = choose_offload(device, budget, components, largest_block_bytes=block)
    assert choice.value == expected, choice.reason
    assert choice.reason


def test_offload_boundaries_are_exact():
    comps = {"transformer": 10 * GIB, "vae": GIB}
    assert choose_offload("cuda", 13 * GIB, comps).value == "none"           # 11 + 2 headroom
    assert choose_offload("cuda", 13 * GIB - 1, comps).value == "model"
    assert choose_offload("cuda", 12 * GIB, comps).value == "model"          # 10 + 2
    assert choose_offload("cuda", 12 * GIB - 1, comps, largest_block_bytes=GIB).value == "group"
    assert choose_offload("cuda", 4 * GIB - 1, comps, largest_block_bytes=GIB).value == "sequential"


@pytest.mark.parametrize("video,size,images,dtype_bytes,free,expected", [
    (True, 64, 1, 2, 100 * GIB, "on"),          # video: always tiled
    (False, 512, 1, 2, 16 * GIB, "off"),        # 0.75 GiB decode
    (False, 1024, 1, 2, 16 * GIB, "off"),       # 3 GiB of 16
    (False, 1024, 4, 2, 16 * GIB, "on"),        # 12 GiB of 16
    (False, 1024, 1, 4, 8 * GIB, "on"),         # fp32: 6 GiB of 8
    (False, 2048, 1, 2, 24 * GIB, "off"),       # 12 GiB of 24: exactly half still decodes whole
    (False, 2048, 1, 2, 20 * GIB, "on"),        # 12 GiB of 20: over half
    (False, 1024, 1, 2, None, "off"),           # unknown
])
def test_vae_tiling_table(video, size, images, dtype_bytes, free, expected):
    choice = choose_vae_tiling(video=video, width=size, height=size, images=images, dtype_bytes=dtype_bytes,
                               free_bytes=free)
    assert choice.value == expected, choice.reason


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("memory-models")
    for family in ("flux", "wan22_ti2v_5b"):
        build_demo_model(family, root)
    return root


@pytest.fixture(scope="module")
def provider(root):
    return FlowModels(root)


def run(provider, offload=None, **req):
    orch = Orchestrator(provider, None, offload=offload)
    base = {"task": "txt2img", "model": "flux-dev-demo", "prompt": "a lighthouse", "width": 64, "height": 64,
            "steps": 1, "seed": 3}
    return orch.run({**base, **req})


def test_cpu_run_reports_policy_and_reason(provider):
    result = run(provider)
    memory = result.info["memory"]
    assert memory["offload"] == "none" and "device is cpu" in memory["offload_reason"]
    assert memory["resident_mb"] > 0
    assert memory["vae_tiling"] is False and "fits" in memory["vae_reason"]


def test_request_and_server_overrides(provider):
    result = run(provider, offload="model")        # server says model: CUDA only, ignored with a warning
    assert result.info["memory"]["offload"] == "none"
    assert any("offload='model' needs a CUDA device" in w for w in result.info["warnings"])
    result = Orchestrator(provider, None, offload="model").run(
        {"task": "txt2img", "model": "flux-dev-demo", "prompt": "x", "width": 64, "height": 64, "steps": 1,
         "offload": "none"})                        # the request wins over the server
    assert result.info["memory"]["offload_reason"] == "set by the request"
    assert not any("offload" in w for w in result.info["warnings"])
    result = run(provider, vae_tiling="on")
    assert result.info["memory"]["vae_tiling"] is True and result.info["memory"]["vae_reason"] == "set by the request"
    assert run(provider, vae_tiling=False).info["memory"]["vae_tiling"] is False


def test_video_tiles_automatically(provider):
    result = run(provider, task="txt2vid", model=DEMO_BUILDERS["wan22_ti2v_5b"][0], width=32, height=32,
                 num_frames=5, steps=1)
    assert result.info["memory"]["vae_tiling"] is True and "video" in result.info["memory"]["vae_reason"]


@pytest.mark.parametrize("key,value", [("offload", "gpu"), ("vae_tiling", "maybe")])
def test_bad_memory_keys_name_the_field(key, value):
    with pytest.raises(ValidationError) as err:
        validate_request({"task": "txt2img", key: value})
    assert err.value.field == key


def test_decode_facts_the_tiling_rule_relies_on(root):
    """Slicing decodes one image at a time: equal to float rounding. Tiling is pixel-neutral while the image fits one tile (so small
    outputs, and the tiny reference tests, are unaffected by the automatic choice)."""
    vae = AutoencoderKL.from_pretrained(root / DEMO_BUILDERS["flux"][0] / "vae")
    z = torch.randn(2, vae.config.latent_channels, 4, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        plain = vae.decode(z).sample
        vae.enable_slicing()
        sliced = vae.decode(z).sample
        vae.disable_slicing()
        vae.enable_tiling()
        tiled = vae.decode(z).sample          # 32x32 output, tile size 32: one tile
    assert (plain - sliced).abs().max() <= 1e-5     # float rounding of a batch of 1 vs 2
    assert torch.equal(plain, tiled)


def test_offload_hooks_run_switch_and_come_off_on_cpu(provider, root, monkeypatch, tmp_path):
    """SDCODEX_OFFLOAD_ON_CPU=1 runs Diffusers' model and group offloading hooks on the CPU (onload = offload = CPU),
    so the paths a CUDA worker takes — install, switch between policies on the cached model, removal — run here:
    every run equals the plain one, and group offloading equals Diffusers' FluxPipeline with the same hooks."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline

    from tests.engines.test_reference_flow import assert_frames_equal

    monkeypatch.setenv("SDCODEX_OFFLOAD_ON_CPU", "1")
    req = {"offload": "none", "steps": 2}
    plain = run(provider, **req)
    assert plain.info["memory"]["offload"] == "none"
    for policy in ("group", "model", "none", "group"):
        result = run(provider, **{**req, "offload": policy})
        assert result.info["memory"]["offload"] == policy, result.info["memory"]
        assert not result.info["warnings"]
        assert_frames_equal(result.pil_images, plain.pil_images)
    # img2img on the same cached model after the switches (another pipeline over the same modules)
    from PIL import Image

    plain.pil_images[0].save(tmp_path / "init.png")
    orch = Orchestrator(provider, None, image_loader=lambda value, field: Image.open(value).convert("RGB"))
    i2i = orch.run({"task": "img2img", "model": "flux-dev-demo", "prompt": "a lighthouse", "width": 64, "height": 64,
                    "steps": 2, "seed": 3, "offload": "model", "init_image": str(tmp_path / "init.png"),
                    "denoising_strength": 0.5})
    assert i2i.info["memory"]["offload"] == "model" and i2i.pil_images[0].size == (64, 64)
    pipe = FluxPipeline.from_pretrained(root / DEMO_BUILDERS["flux"][0], local_files_only=True)
    pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    pipe.enable_group_offload(onload_device=torch.device("cpu"), offload_device=torch.device("cpu"),
                              offload_type="block_level", num_blocks_per_group=1, use_stream=False)
    theirs = pipe(prompt="a lighthouse", width=64, height=64, num_inference_steps=2, guidance_scale=3.5,
                  generator=torch.Generator("cpu").manual_seed(3)).images[0]
    assert_frames_equal(plain.pil_images, [theirs])
    monkeypatch.delenv("SDCODEX_OFFLOAD_ON_CPU")
    assert run(provider, **{**req, "offload": "group"}).info["memory"]["offload"] == "none"   # off again: ignored
