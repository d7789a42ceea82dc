"""Hires fix on FLUX (tiny demo, dev-type) through the orchestrator: the output has the hires size (FLUX img2img is
given it explicitly), the infotext carries A1111's Hires fields, progress plans both passes, and a latent upscaler
falls back to Lanczos in pixel space with a warning (FLUX latents are packed)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sdcodex.core.events import EventSink
from sdcodex.media.infotext import build_infotext, parse_infotext

FLUX = {"task": "txt2img", "model": "flux-dev-demo", "prompt": "a lighthouse", "width": 64, "height": 64, "steps": 2,
        "seed": 3}


@pytest.fixture(scope="module")
def orch(tmp_path_factory):
    from sdcodex.models import demo_video  # noqa: F401  (registers the demo builders)
    from sdcodex.models.demo import build_demo_model
    from sdcodex.runtime import LocalModels, build_orchestrator

    torch.set_num_threads(1)
    root: Path = tmp_path_factory.mktemp("flux-hires-models")
    build_demo_model("flux", root)
    return build_orchestrator(models=LocalModels(root), outdir=tmp_path_factory.mktemp("flux-hires-out"), device="cpu")


def test_flux_hires_size_infotext_and_progress(orch):
    events = []
    result = orch.run({**FLUX, "hires": {"scale": 1.5, "upscaler": "Lanczos", "steps": 4, "denoising_strength": 0.5}},
                      events=EventSink([events.append]))
    assert result.pil_images[0].size == (96, 96)
    parsed = parse_infotext(build_infotext(result.info["infotext_fields"]))
    assert parsed["Size-1"] == "64" and parsed["Size-2"] == "64"  # A1111 writes the first-pass size
    assert parsed["Hires upscale"] == "1.5" and parsed["Hires steps"] == "4"
    assert parsed["Hires upscaler"] == "Lanczos" and parsed["Denoising strength"] == "0.5"
    hires = result.info["hires"]
    assert (hires["width"], hires["height"], hires["steps"], hires["first_pass"]) == (96, 96, 4, [64, 64])
    assert hires["sampler_effective"] == "Euler"
    progress = [e for e in events if e.kind == "progress"]
    assert len(progress) == 2 + 2 and progress[-1].data["total"] == 4  # 2 first-pass + int(4 * 0.5) hires steps
    with Image.open(result.images[0]) as saved:
        assert saved.size == (96, 96) and "Hires upscaler: Lanczos" in saved.info["parameters"]
    assert not any("hires" in w for w in result.info.get("warnings", []))


def test_flux_hires_resize_rounds_to_the_size_multiple(orch):
    result = orch.run({**FLUX, "hires": {"resize_x": 100, "resize_y": 84, "upscaler": "Nearest",
                                         "denoising_strength": 0.5}})
    assert result.pil_images[0].size == (96, 80)  # rounded down to multiples of 16
    assert "hires_scale" not in result.info["infotext_fields"]


def test_flux_hires_latent_mode_falls_back_to_lanczos_with_a_warning(orch):
    hires = {"scale": 1.5, "steps": 4, "denoising_strength": 0.5}
    latent = orch.run({**FLUX, "hires": {**hires, "upscaler": "Latent (bicubic)"}})
    lanczos = orch.run({**FLUX, "hires": {**hires, "upscaler": "Lanczos"}})
    assert latent.pil_images[0].size == (96, 96)
    warnings = latent.info.get("warnings", [])
    assert any("Latent (bicubic)" in w and "Lanczos" in w and "packed" in w for w in warnings)
    assert latent.info["hires"]["upscaler"] == "Lanczos"
    assert latent.info["infotext_fields"]["hires_upscaler"] == "Lanczos"  # the infotext says what really ran
    assert np.array_equal(np.asarray(latent.pil_images[0]), np.asarray(lanczos.pil_images[0]))
