"""Chroma engine with a tiny random-weight model through the orchestrator: txt2img (with and without CFG) and
img2img pixels equal Diffusers' own ChromaPipeline / ChromaImg2ImgPipeline (scheduler built here from Diffusers'
class), the normal preset, flow sampler rules, and the `generate --from` round trip."""
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
from tests.engines.test_z_image import assert_same

FOLDER = "chroma-demo"


@pytest.fixture(scope="module")
def croot(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("chroma-models")
    build_demo_model("chroma", root)
    return root


@pytest.fixture()
def orch(croot, tmp_path) -> Orchestrator:
    return Orchestrator(FlowModels(croot), MediaSaver(tmp_path / "out"),
                        image_loader=lambda value, field: Image.open(value).convert("RGB"))


@pytest.fixture(scope="module")
def init_image(tmp_path_factory) -> str:
    image = Image.new("RGB", (64, 64))
    image.putdata([(4 * x, 4 * y, 128) for y in range(64) for x in range(64)])
    path = tmp_path_factory.mktemp("chroma-inputs") / "image.png"
    image.save(path)
    return str(path)


def req(task: str = "txt2img", **extra) -> dict:
    return {"task": task, "model": FOLDER, "prompt": "a lighthouse", "width": 64, "height": 64, "steps": 3,
            "seed": 5, **extra}


def reference(folder: Path, task: str, **kw) -> Image.Image:
    from diffusers import ChromaImg2ImgPipeline, ChromaPipeline, FlowMatchEulerDiscreteScheduler

    cls = ChromaPipeline if task == "txt2img" else ChromaImg2ImgPipeline
    pipe = cls.from_pretrained(folder, local_files_only=True)
    # the Chroma1-HD scheduler (FLUX.1's dynamic shifting), built from Diffusers' class here
    pipe.scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True,
                                                     base_shift=0.5, max_shift=1.15, base_image_seq_len=256,
                                                     max_image_seq_len=4096)
    pipe.set_progress_bar_config(disable=True)
    return pipe(prompt="a lighthouse", width=64, height=64, num_inference_steps=3,
                generator=torch.Generator("cpu").manual_seed(5), **kw).images[0]


@pytest.mark.parametrize("cfg", [1.0, 3.0])
def test_txt2img_equals_diffusers(orch, croot, cfg):
    result = orch.run(req(cfg_scale=cfg, negative_prompt="blurry" if cfg > 1 else ""))
    extra = {"negative_prompt": "blurry"} if cfg > 1 else {}
    assert_same(result.pil_images[0], reference(croot / FOLDER, "txt2img", guidance_scale=cfg, **extra))
    assert result.info["sampler_effective"] == "Euler" and result.info["engine"] == "chroma"


def test_img2img_equals_diffusers(orch, croot, init_image):
    result = orch.run(req("img2img", init_image=init_image, denoising_strength=0.7, cfg_scale=2.0, negative_prompt=""))
    ref = reference(croot / FOLDER, "img2img", image=Image.open(init_image).convert("RGB"), strength=0.7,
                    guidance_scale=2.0)
    assert_same(result.pil_images[0], ref)


def test_normal_preset_fills_the_model_card_values(orch):
    result = orch.run(req())
    patch = result.info["applied_preset_patch"]
    assert result.info["preset"] == "chroma/normal/txt2img" and patch["cfg_scale"] == 3.0
    assert patch["negative_prompt"].startswith("low quality, ugly")


def test_flow_shift_is_ignored_with_a_warning_under_dynamic_shifting(orch):
    result = orch.run(req(flow_shift=2.0, cfg_scale=1.0))
    assert any("flow_shift is ignored" in w for w in result.info["warnings"])


def test_classic_sampler_is_refused_naming_the_field(orch):
    with pytest.raises(UnsupportedSamplerError) as err:
        orch.run(req(sampler="Euler a"))
    assert err.value.field == "sampler" and "Euler" in err.value.allowed


def test_infotext_and_generate_from_round_trip(orch, croot, tmp_path, capsys):
    """`sdcodex generate --from IMAGE` reads the request from the image's metadata and gives the same pixels."""
    import json

    from sdcodex.cli.main import main
    from sdcodex.media.reader import read_info

    result = orch.run(req(cfg_scale=2.5, negative_prompt="fog"))
    meta = read_info(result.images[0])
    assert meta["parsed"].get("Model") == FOLDER and str(meta["parsed"]["CFG scale"]) == "2.5"
    assert meta["request"]["engine"] == "chroma" and meta["request"]["negative_prompt"] == "fog"
    code = main(["--models-dir", str(croot), "generate", "--from", str(result.images[0]), "--outdir",
                 str(tmp_path / "again")])
    out, err = capsys.readouterr()
    assert code == 0, err
    again = Image.open(json.loads(out)["images"][0])
    assert np.array_equal(np.asarray(again.convert("RGB")), np.asarray(result.pil_images[0]))


def test_live_previews_unpack_the_packed_latents(orch, croot):
    import json

    from sdcodex.core.events import EventSink

    events = []
    orch.run(req(width=96, height=64, steps=2, cfg_scale=1.0), events=EventSink([events.append], preview_every=1))
    previews = [e.data for e in events if e.kind == "preview"]
    scale = 2 ** (len(json.loads((croot / FOLDER / "vae" / "config.json").read_text())["block_out_channels"]) - 1)
    assert [p["done"] for p in previews] == [1, 2]
    assert all(p["image"].size == (96 // scale, 64 // scale) for p in previews)
