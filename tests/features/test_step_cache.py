"""Step caching (`cache` request key): tiny FLUX at 28 steps with each cache kind equals Diffusers' FluxPipeline with
the same hook config enabled here on its transformer (the scheduler built here from Diffusers' class); the counts in
`info` equal the full computes counted here on the reference; families without a cache context answer 422."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline
from diffusers.hooks import FirstBlockCacheConfig, MagCacheConfig, TaylorSeerCacheConfig
from diffusers.hooks.mag_cache import FLUX_MAG_RATIOS
from PIL import Image

from sdcodex.core.errors import ValidationError
from sdcodex.core.orchestrator import Orchestrator
from sdcodex.core.request import validate_request
from sdcodex.media.infotext import build_infotext
from sdcodex.models import demo_video  # noqa: F401  (registers the demo builders)
from sdcodex.models.demo import DEMO_BUILDERS, build_demo_model
from sdcodex.runtime import MediaSaver
from tests.engines.test_reference_flow import assert_frames_equal
from tests.engines.test_video import FlowModels

SEED, STEPS = 5, 28


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cache-models")
    for family in ("flux", "wan22_ti2v_5b"):
        build_demo_model(family, root)
    return root


@pytest.fixture(scope="module")
def orch(root, tmp_path_factory) -> Orchestrator:
    return Orchestrator(FlowModels(root), MediaSaver(tmp_path_factory.mktemp("cache-out")),
                        image_loader=lambda value, field: Image.open(value))


def reference(root: Path, config, steps: int = STEPS):
    """Diffusers' FluxPipeline with `config` on its transformer; counts the tail block's attention runs."""
    pipe = FluxPipeline.from_pretrained(root / DEMO_BUILDERS["flux"][0], local_files_only=True)
    pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    runs = []
    pipe.transformer.single_transformer_blocks[-1].attn.to_q.register_forward_pre_hook(lambda *_: runs.append(1))
    pipe.transformer.enable_cache(config)
    image = pipe(prompt="a lighthouse", width=64, height=64, num_inference_steps=steps, guidance_scale=3.5,
                 generator=torch.Generator("cpu").manual_seed(SEED)).images[0]
    return image, len(runs)


CASES = {
    "first_block": ({"kind": "first_block", "threshold": 0.2}, lambda: FirstBlockCacheConfig(threshold=0.2)),
    "taylorseer": ({"kind": "taylorseer", "interval": 4, "warmup": 2},
                   lambda: TaylorSeerCacheConfig(cache_interval=4, disable_cache_before_step=2,
                                                 taylor_factors_dtype=torch.float32)),
    "mag": ({"kind": "mag", "threshold": 0.1},
            lambda: MagCacheConfig(threshold=0.1, num_inference_steps=STEPS, mag_ratios=FLUX_MAG_RATIOS.clone())),
}


@pytest.mark.parametrize("kind", list(CASES))
def test_flux_cache_equals_diffusers_and_counts(orch, root, kind):
    spec, config = CASES[kind]
    result = orch.run({"task": "txt2img", "model": "flux-dev-demo", "prompt": "a lighthouse", "width": 64,
                       "height": 64, "steps": STEPS, "seed": SEED, "cache": spec})
    theirs, computed = reference(root, config())
    assert_frames_equal(result.pil_images, [theirs])
    info = result.info["cache"]
    assert info["kind"] == kind and info["steps"] == STEPS
    assert info["transformer_calls"] == STEPS          # no true CFG: one transformer call per step
    assert info["computed"] == computed                # counted on Diffusers' own run
    assert 0 < computed < STEPS                        # the cache skipped work at this threshold
    assert info["skipped"] == STEPS - computed
    # recorded in the request (what `generate --from` replays) and in the infotext
    assert result.info["request"]["cache"] == spec
    assert "Step cache: " in build_infotext({"prompt": "p", **result.info["infotext_fields"]})


def test_cache_off_runs_every_step(orch):
    result = orch.run({"task": "txt2img", "model": "flux-dev-demo", "prompt": "a lighthouse", "width": 64,
                       "height": 64, "steps": 2, "seed": SEED})
    assert "cache" not in result.info


def test_wan_first_block_counts(orch):
    """WAN through its own cache context: every step calls the transformer (CFG on: twice), fewer compute."""
    result = orch.run({"task": "txt2vid", "model": DEMO_BUILDERS["wan22_ti2v_5b"][0], "prompt": "waves",
                       "width": 32, "height": 32, "num_frames": 5, "steps": 8, "seed": SEED, "cfg_scale": 5.0,
                       "cache": {"kind": "first_block", "threshold": 0.5}})
    info = result.info["cache"]
    assert info["transformer_calls"] == 2 * 8
    assert 0 < info["computed"] < info["transformer_calls"]


def test_family_without_cache_context_is_422(orch, root, tmp_path):
    image = tmp_path / "in.png"
    Image.new("RGB", (64, 64), (90, 20, 200)).save(image)
    with pytest.raises(ValidationError) as err:
        orch.run({"task": "img2img", "model": "flux-dev-demo", "prompt": "x", "width": 64, "height": 64, "steps": 2,
                  "init_image": str(image), "cache": {"kind": "first_block"}})
    assert err.value.field == "cache" and err.value.http_status == 422
    assert "flux.txt2img" in err.value.allowed and "flux.img2img" not in err.value.allowed
    with pytest.raises(ValidationError) as err:
        orch.run({"task": "txt2vid", "model": DEMO_BUILDERS["wan22_ti2v_5b"][0], "prompt": "x", "width": 32,
                  "height": 32, "num_frames": 5, "steps": 2, "cache": {"kind": "mag"}})
    assert err.value.field == "cache.kind" and "first_block" in err.value.allowed


@pytest.mark.parametrize("spec,field", [
    ({"kind": "teacache"}, "cache.kind"),
    ({"kind": "first_block", "threshold": 0}, "cache.threshold"),
    ({"kind": "taylorseer", "threshold": 0.1}, "cache.threshold"),
    ({"kind": "mag", "interval": 2}, "cache.interval"),
    ({"kind": "first_block", "speed": 2}, "cache.speed"),
])
def test_bad_cache_spec_names_the_field(spec, field):
    with pytest.raises(ValidationError) as err:
        validate_request({"task": "txt2img", "cache": spec})
    assert err.value.field == field


def test_mag_ratios_only_for_flux1():
    """FLUX.2 klein takes a cache (its pipeline has a cache context) but not FLUX.1's magnitude ratios."""
    from sdcodex.core.enums import Task
    from sdcodex.core.params import Params
    from sdcodex.core.registry import get_engine
    from sdcodex.engines import step_cache

    klein = get_engine("flux2_klein")
    params = Params(engine=klein.key, task=Task.TXT2IMG, cache={"kind": "first_block"})
    step_cache.check(klein, params)
    with pytest.raises(ValidationError) as err:
        step_cache.check(klein, Params(engine=klein.key, task=Task.TXT2IMG, cache={"kind": "mag"}))
    assert err.value.field == "cache.kind"
