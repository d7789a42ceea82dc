"""Z-Image engine with tiny random-weight models through the orchestrator: txt2img and img2img pixels equal
Diffusers' own ZImagePipeline / ZImageImg2ImgPipeline (scheduler built here from Diffusers' class), CFG mapping,
the Turbo mode (presets on a Turbo-named model, ignored with a reason on the base model), flow sampler rules,
infotext and the request round trip."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import sdcodex.engines  # noqa: F401  (registers engines)
from sdcodex.core.errors import UnsupportedSamplerError
from sdcodex.core.orchestrator import Orchestrator
from sdcodex.models.demo import build_demo_model
from sdcodex.runtime import MediaSaver
from tests.engines.test_video import FlowModels

MAX_DIFF = 1  # <= 1/255 per channel


@pytest.fixture(scope="module")
def zroot(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("z-image-models")
    for family in ("z_image", "z_image_turbo"):
        build_demo_model(family, root)
    return root


@pytest.fixture(scope="module")
def provider(zroot) -> FlowModels:
    return FlowModels(zroot)


@pytest.fixture()
def orch(provider, tmp_path) -> Orchestrator:
    return Orchestrator(provider, MediaSaver(tmp_path / "out"),
                        image_loader=lambda value, field: Image.open(value).convert("RGB"))


@pytest.fixture(scope="module")
def init_image(tmp_path_factory) -> str:
    image = Image.new("RGB", (64, 64))
    image.putdata([(4 * x, 4 * y, 128) for y in range(64) for x in range(64)])
    path = tmp_path_factory.mktemp("z-inputs") / "image.png"
    image.save(path)
    return str(path)


def req(task: str = "txt2img", model: str = "z-image-demo", **extra) -> dict:
    return {"task": task, "model": model, "prompt": "a lighthouse", "width": 64, "height": 64, "steps": 3,
            "seed": 5, **extra}


def reference(folder: Path, task: str, **kw) -> Image.Image:
    from diffusers import FlowMatchEulerDiscreteScheduler, ZImageImg2ImgPipeline, ZImagePipeline

    cls = ZImagePipeline if task == "txt2img" else ZImageImg2ImgPipeline
    pipe = cls.from_pretrained(folder, local_files_only=True)
    # Tongyi-MAI/Z-Image-Turbo's scheduler, built from Diffusers' class here (not through our sampler policy)
    pipe.scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe(prompt="a lighthouse", width=64, height=64, num_inference_steps=3,
                generator=torch.Generator("cpu").manual_seed(5), **kw).images[0]


def assert_same(a: Image.Image, b: Image.Image) -> None:
    diff = np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16))
    assert a.size == b.size and diff.max() <= MAX_DIFF


@pytest.mark.parametrize("cfg", [1.0, 4.0])
def test_txt2img_equals_diffusers(orch, zroot, cfg):
    extra = {"negative_prompt": "blurry"} if cfg > 1 else {}
    result = orch.run(req(cfg_scale=cfg, **extra))
    ref = reference(zroot / "z-image-demo", "txt2img", guidance_scale=cfg - 1.0,
                    **({"negative_prompt": "blurry"} if cfg > 1 else {}))
    assert_same(result.pil_images[0], ref)
    assert result.info["sampler_effective"] == "Euler" and result.info["pipeline_guidance_scale"] == cfg - 1.0


def test_img2img_equals_diffusers(orch, zroot, init_image):
    result = orch.run(req("img2img", init_image=init_image, denoising_strength=0.7, cfg_scale=3.0))
    ref = reference(zroot / "z-image-demo", "img2img", image=Image.open(init_image).convert("RGB"), strength=0.7,
                    guidance_scale=2.0)
    assert_same(result.pil_images[0], ref)
    assert result.info["request"]["denoising_strength"] == 0.7


def test_turbo_mode_fills_few_step_defaults_on_a_turbo_model(orch):
    raw = req(model="z-image-turbo-demo", mode="turbo")
    del raw["steps"]
    result = orch.run(raw)
    info = result.info
    assert info["mode"] == "turbo" and info["mode_ignored_reason"] is None
    assert info["preset"] == "z_image/turbo/txt2img"
    assert info["applied_preset_patch"]["steps"] == 9 and info["applied_preset_patch"]["cfg_scale"] == 1.0
    assert info["pipeline_guidance_scale"] == 0.0


def test_turbo_mode_is_ignored_with_a_reason_on_the_base_model(orch):
    result = orch.run(req(mode="turbo"))
    info = result.info
    assert info["mode"] == "normal" and "not turbo-distilled" in info["mode_ignored_reason"]
    assert info["preset"] == "z_image/normal/txt2img" and info["request"]["cfg_scale"] == 5.0


def test_flow_shift_changes_the_schedule(orch):
    a = orch.run(req()).pil_images[0]
    b = orch.run(req(flow_shift=1.0)).pil_images[0]
    assert not np.array_equal(np.asarray(a), np.asarray(b))


def test_classic_sampler_is_refused_naming_the_field(orch):
    with pytest.raises(UnsupportedSamplerError) as err:
        orch.run(req(sampler="DDIM"))
    assert err.value.field == "sampler" and "Euler" in err.value.allowed


def test_infotext_and_generate_from_round_trip(orch, zroot, tmp_path, capsys):
    """`sdcodex generate --from IMAGE` reads the request from the image's metadata and gives the same pixels."""
    import json

    from sdcodex.cli.main import main
    from sdcodex.media.reader import read_info

    result = orch.run(req(cfg_scale=2.5, negative_prompt="fog"))
    meta = read_info(result.images[0])
    assert meta["parsed"].get("Model") == "z-image-demo" and str(meta["parsed"]["CFG scale"]) == "2.5"
    assert meta["request"]["engine"] == "z_image" and meta["request"]["negative_prompt"] == "fog"
    code = main(["--models-dir", str(zroot), "generate", "--from", str(result.images[0]), "--outdir",
                 str(tmp_path / "again")])
    out, err = capsys.readouterr()
    assert code == 0, err
    again = Image.open(json.loads(out)["images"][0])
    assert np.array_equal(np.asarray(again.convert("RGB")), np.asarray(result.pil_images[0]))


def test_live_previews(orch, zroot):
    import json

    from sdcodex.core.events import EventSink

    events = []
    orch.run(req(width=96, height=64, steps=2), events=EventSink([events.append], preview_every=1))
    previews = [e.data for e in events if e.kind == "preview"]
    scale = 2 ** (len(json.loads((zroot / "z-image-demo" / "vae" / "config.json").read_text())["block_out_channels"]) - 1)
    assert [p["done"] for p in previews] == [1, 2]
    assert all(p["image"].size == (96 // scale, 64 // scale) for p in previews)
