"""FLUX engine with tiny random-weight dev-type and schnell-type models through the orchestrator: every task,
distilled guidance vs schnell handling, flow sampler rules. (Pixels against Diffusers' own FLUX pipelines for every
task: tests/engines/test_reference_flow.py.)"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from sdcodex.core.errors import UnsupportedSamplerError
from sdcodex.core.orchestrator import Orchestrator
from sdcodex.models.demo import build_demo_model
from sdcodex.runtime import MediaSaver
from tests.engines.test_video import FlowModels


@pytest.fixture(scope="module")
def flux_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("flux-models")
    for family in ("flux", "flux_schnell"):
        build_demo_model(family, root)
    return root


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("flux-inputs")
    image = Image.new("RGB", (64, 64))
    image.putdata([(4 * x, 4 * y, 128) for y in range(64) for x in range(64)])
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((16, 16, 48, 48), fill=255)
    image.save(folder / "image.png")
    mask.save(folder / "mask.png")
    return {"init_image": str(folder / "image.png"), "mask": str(folder / "mask.png")}


@pytest.fixture()
def orch(flux_root, tmp_path) -> Orchestrator:
    return Orchestrator(FlowModels(flux_root), MediaSaver(tmp_path / "out"),
                        image_loader=lambda value, field: Image.open(value))


def req(task: str, model: str = "flux-dev-demo", **extra) -> dict:
    return {"task": task, "model": model, "prompt": "a lighthouse", "width": 64, "height": 64, "steps": 2,
            "seed": 3, **extra}


@pytest.mark.parametrize("task", ["txt2img", "img2img", "inpaint"])
def test_flux_tasks_make_images(orch, images, task):
    extra = {"init_image": images["init_image"]} if task != "txt2img" else {}
    if task == "inpaint":
        extra["mask"] = images["mask"]
    result = orch.run(req(task, **extra))
    assert len(result.pil_images) == 1 and result.pil_images[0].size == (64, 64)
    assert Path(result.images[0]).is_file()
    assert result.info["guidance_embed"] is True and result.info["distilled_cfg_scale"] == 3.5
    assert result.info["sampler_effective"] == "Euler"


def test_distilled_guidance_changes_the_image(orch):
    a = orch.run(req("txt2img", distilled_cfg_scale=1.0)).pil_images[0]
    b = orch.run(req("txt2img", distilled_cfg_scale=8.0)).pil_images[0]
    assert not np.array_equal(np.asarray(a), np.asarray(b))


def test_schnell_runs_with_cfg_off_and_warns(orch):
    result = orch.run(req("txt2img", model="flux-schnell-demo", steps=8, cfg_scale=4.0, distilled_cfg_scale=3.5))
    warnings = " | ".join(result.info["warnings"])
    assert result.info["guidance_embed"] is False and "distilled_cfg_scale" not in result.info
    assert "distilled_cfg_scale is ignored" in warnings
    assert "cfg_scale 4.0 ignored" in warnings
    assert "distilled for 1-4 steps" in warnings


def test_schnell_turbo_preset_is_four_steps_cfg_off(orch):
    raw = req("txt2img", model="flux-schnell-demo", mode="turbo")
    del raw["steps"]
    result = orch.run(raw)
    assert result.info["applied_preset_patch"]["steps"] == 4
    assert result.info["applied_preset_patch"]["cfg_scale"] == 1.0
    assert result.info["warnings"] == []


@pytest.mark.parametrize("sampler", ["UniPC", "DPM++ 2M"])
def test_flow_solvers_run_on_flux(orch, sampler):
    result = orch.run(req("txt2img", sampler=sampler))
    assert result.info["sampler_effective"] == sampler


@pytest.mark.parametrize("sampler,why", [("DDIM", "no Diffusers form for flow-matching"),
                                         ("Heun", "cannot do the resolution-dependent shift")])
def test_invalid_flow_samplers_are_clear_errors(orch, sampler, why):
    with pytest.raises(UnsupportedSamplerError) as err:
        orch.run(req("txt2img", sampler=sampler))
    assert err.value.field == "sampler" and why in str(err.value) and "Euler" in err.value.allowed


def test_schnell_refuses_sampler_that_cannot_take_sigmas(orch):
    with pytest.raises(UnsupportedSamplerError) as err:
        orch.run(req("txt2img", model="flux-schnell-demo", sampler="Heun"))
    assert "custom sigmas" in str(err.value) and "Heun" not in err.value.allowed


def test_flux_live_previews_unpack_the_packed_latents(orch, flux_root):
    from sdcodex.core.events import EventSink

    events = []
    orch.run(req("txt2img", width=96, height=64, steps=2), events=EventSink([events.append], preview_every=1))
    previews = [e.data for e in events if e.kind == "preview"]
    vae_scale = 2 ** (len(__import__("json").loads((flux_root / "flux-dev-demo" / "vae" / "config.json")
                                                   .read_text())["block_out_channels"]) - 1)
    assert [p["done"] for p in previews] == [1, 2]
    assert all(p["image"].size == (96 // vae_scale, 64 // vae_scale) for p in previews)
