"""LCM / Turbo / Lightning modes (effective sampler, schedule, steps and CFG; ignored with a reason on a model
that is not distilled or an engine that lacks the mode) and the `upscale` task through the orchestrator."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sdcodex.core.errors import ValidationError
from sdcodex.core.events import EventSink

from tests.conftest import png_b64

REQ = {"task": "txt2img", "prompt": "a fox", "width": 64, "height": 64, "seed": 3}
EXPECTED = {  # mode -> (sampler, schedule type, timestep_spacing or None, steps, cfg)
    "lcm": ("LCM", None, None, 6, 1.5),
    "turbo": ("Euler a", "SGM Uniform", "trailing", 1, 1.0),
    "lightning": ("Euler", "SGM Uniform", "trailing", 4, 1.0),
}


@pytest.mark.parametrize("mode", sorted(EXPECTED))
def test_mode_effective_settings(forch, mode):
    sampler, schedule, spacing, steps, cfg = EXPECTED[mode]
    events = []
    result = forch.run({**REQ, "model": f"sd15-{mode}-demo", "mode": mode}, events=EventSink([events.append]))
    info = result.info
    assert info["mode"] == mode and info["mode_ignored_reason"] is None
    assert info["preset"] == f"sd15/{mode}/txt2img"
    assert info["sampler_effective"] == sampler
    assert info["diffusers_class"] == {"LCM": "LCMScheduler", "Euler a": "EulerAncestralDiscreteScheduler",
                                       "Euler": "EulerDiscreteScheduler"}[sampler]
    if schedule:
        assert info["scheduler_effective"] == schedule
    if spacing:
        assert info["config"]["timestep_spacing"] == spacing
    assert info["request"]["steps"] == steps and info["request"]["cfg_scale"] == cfg
    assert len([e for e in events if e.kind == "progress"]) == steps


def test_mode_applies_through_a_lora_named_for_it(forch):
    result = forch.run({**REQ, "model": "sd15-demo", "mode": "lcm", "loras": [{"name": "lcm-tiny", "weight": 1.0}]})
    assert result.info["mode_ignored_reason"] is None and result.info["sampler_effective"] == "LCM"


def test_mode_on_a_model_that_is_not_distilled_runs_normal(forch):
    result = forch.run({**REQ, "model": "sd15-demo", "mode": "turbo", "steps": 2})
    info = result.info
    assert info["mode"] == "normal" and "not turbo-distilled" in info["mode_ignored_reason"]
    assert info["preset"] == "sd15/normal/txt2img"
    assert info["sampler_effective"] == "DPM++ 2M" and info["request"]["cfg_scale"] == 7.0
    assert any("mode 'turbo' ignored" in w for w in info["warnings"])


def test_mode_the_engine_does_not_know():
    import sdcodex.engines  # noqa: F401
    from sdcodex.core.orchestrator import Orchestrator
    from sdcodex.core.registry import get_engine

    reason = Orchestrator._mode_ignored_reason(get_engine("flux"), "lcm", None, {})
    assert "has no mode 'lcm'" in reason and "turbo" in reason


def test_upscale_task_through_the_orchestrator(forch, sample_image):
    result = forch.run({"task": "upscale", "init_image": png_b64(sample_image), "upscaler": "Lanczos",
                        "scale": 2.5})
    assert result.pil_images[0].size == (160, 160)
    assert result.info["engine"] == "upscale" and result.info["upscaler"] == "Lanczos"
    with Image.open(result.images[0]) as saved:
        assert saved.size == (160, 160) and "Postprocess upscaler: Lanczos" in saved.info["parameters"]


def test_upscaled_image_keeps_its_source_parameters(forch):
    """As A1111's Extras: the upscaled file keeps the generation parameters and adds the Postprocess fields."""
    first = forch.run({"task": "txt2img", "model": "sd15-demo", "prompt": "a lighthouse", "width": 64, "height": 64,
                       "steps": 2, "seed": 9})
    with open(first.images[0], "rb") as f:
        import base64

        source = base64.b64encode(f.read()).decode()
    with Image.open(first.images[0]) as original:
        params = original.info["parameters"]
    result = forch.run({"task": "upscale", "init_image": source, "upscaler": "Lanczos", "scale": 2})
    with Image.open(result.images[0]) as saved:
        text = saved.info["parameters"]
    assert text.startswith(params) and text.endswith("Postprocess upscaler: Lanczos, Postprocess upscale by: 2.0")
    assert "Seed: 9" in text and saved.size == (128, 128)


def test_upscale_with_a_model_reports_progress_per_tile(forch, sample_image):
    events = []
    result = forch.run({"task": "upscale", "init_image": png_b64(sample_image), "upscaler": "R-ESRGAN AnimeVideo",
                        "scale": 2.0, "tile_size": 32, "tile_overlap": 4}, events=EventSink([events.append]))
    image = result.pil_images[0]
    assert image.size == (128, 128)
    progress = [e.data for e in events if e.kind == "progress"]
    assert len(progress) == 9 and progress[-1]["done"] == progress[-1]["total"] == 9  # 3 x 3 tiles of 32 on 64
    assert result.info["upscaler_scale"] == 4
    lanczos = sample_image.resize((128, 128), Image.LANCZOS)
    assert not np.array_equal(np.asarray(image), np.asarray(lanczos))


def test_upscale_bad_paths(forch, sample_image):
    img = png_b64(sample_image)
    with pytest.raises(ValidationError) as err:
        forch.run({"task": "upscale", "init_image": img, "scale": 20.0})
    assert err.value.field == "scale"
    with pytest.raises(ValidationError) as err:
        forch.run({"task": "upscale", "init_image": img, "resize_x": 5000, "resize_y": 64})
    assert err.value.field == "resize_x"
    with pytest.raises(ValidationError) as err:
        forch.run({"task": "upscale", "init_image": img, "upscaler": "Nope"})
    assert err.value.field == "upscaler" and "R-ESRGAN 4x+" in err.value.allowed and "Lanczos" in err.value.allowed
