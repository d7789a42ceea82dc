"""FLUX (dev, schnell), SVD, HunyuanVideo 1.0 and 1.5, WAN 2.2 (TI2V-5B, T2V-A14B, I2V-A14B), every task, against
Diffusers' own pipeline loaded from the same tiny demo folder with `from_pretrained`, the scheduler built here from
Diffusers' classes (not through create_sampler), the same seed: pixels/frames equal (at most 1/255 apart).

Where Codex deliberately differs from a plain pipeline call, the reference is given the same adjusted input and
docs/engines.md says why: HunyuanVideo-I2V (latent_concat) is asked for 4 more frames than the request."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import (EulerDiscreteScheduler, FlowMatchEulerDiscreteScheduler, FluxImg2ImgPipeline,
                       FluxInpaintPipeline, FluxPipeline, HunyuanVideo15ImageToVideoPipeline, HunyuanVideo15Pipeline,
                       HunyuanVideoImageToVideoPipeline, HunyuanVideoPipeline, StableVideoDiffusionPipeline,
                       UniPCMultistepScheduler, WanImageToVideoPipeline, WanPipeline)
from diffusers.guiders import ClassifierFreeGuidance
from PIL import Image, ImageDraw

from sdcodex.core.orchestrator import Orchestrator
from sdcodex.models import demo_video  # noqa: F401  (registers the demo builders)
from sdcodex.models.demo import DEMO_BUILDERS, build_demo_model
from sdcodex.runtime import MediaSaver
from tests.helpers.inpaint_overlay import overlay
from tests.engines.test_video import FlowModels

FAMILIES = ("flux", "flux_schnell", "svd", "hunyuan_video", "hunyuan_video_i2v", "hunyuan_video15",
            "hunyuan_video15_i2v", "wan22_ti2v_5b", "wan22_i2v_a14b")
SEED = 11


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("reference-models")
    for family in FAMILIES:
        build_demo_model(family, root)
    return root


@pytest.fixture(scope="module")
def provider(root) -> FlowModels:
    return FlowModels(root)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict:
    image = Image.new("RGB", (64, 64))
    image.putdata([(4 * x, 4 * y, 128) for y in range(64) for x in range(64)])
    ImageDraw.Draw(image).ellipse((20, 20, 44, 44), fill=(240, 200, 40))
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((16, 16, 48, 48), fill=255)
    folder = tmp_path_factory.mktemp("reference-inputs")
    image.save(folder / "image.png")
    image.resize((32, 32), Image.LANCZOS).save(folder / "small.png")
    mask.save(folder / "mask.png")
    return {"image": image, "mask": mask, "small": Image.open(folder / "small.png").convert("RGB"),
            "paths": {k: str(folder / f"{k}.png") for k in ("image", "mask", "small")}}


@pytest.fixture()
def orch(provider, tmp_path) -> Orchestrator:
    return Orchestrator(provider, MediaSaver(tmp_path / "out"), image_loader=lambda value, field: Image.open(value))


def reference(root: Path, family: str, cls: type, scheduler_cls: type, **extra):
    """Diffusers' pipeline `cls` from the demo folder, with `scheduler_cls` built from the folder's config."""
    pipe = cls.from_pretrained(root / DEMO_BUILDERS[family][0], local_files_only=True, **extra)
    pipe.scheduler = scheduler_cls.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def gen() -> torch.Generator:
    return torch.Generator("cpu").manual_seed(SEED)


def assert_frames_equal(ours: list, theirs: list) -> None:
    assert len(ours) == len(theirs)
    for i, (a, b) in enumerate(zip(ours, theirs)):
        a, b = np.asarray(a.convert("RGB"), dtype=int), np.asarray(b.convert("RGB"), dtype=int)
        assert a.shape == b.shape, (i, a.shape, b.shape)
        assert np.abs(a - b).max() <= 1, f"frame {i} differs by {np.abs(a - b).max()}"


# ------------------------------------------------------------------------------------------------ FLUX
FLUX_CLASSES = {"txt2img": FluxPipeline, "img2img": FluxImg2ImgPipeline, "inpaint": FluxInpaintPipeline}


@pytest.mark.parametrize("family,guidance", [("flux", 3.5), ("flux_schnell", 0.0)])
@pytest.mark.parametrize("task", list(FLUX_CLASSES))
def test_flux_tasks_equal_diffusers(orch, root, inputs, family, guidance, task):
    """Dev: the model card's guidance 3.5 into the guidance embedding; schnell: guidance 0 (no embedding)."""
    req = {"task": task, "model": DEMO_BUILDERS[family][0], "prompt": "a lighthouse", "width": 64, "height": 64,
           "steps": 2, "seed": SEED}
    kw = dict(prompt="a lighthouse", width=64, height=64, num_inference_steps=2, guidance_scale=guidance)
    if task != "txt2img":
        req.update(init_image=inputs["paths"]["image"], denoising_strength=0.6)
        kw.update(image=inputs["image"], strength=0.6)
    if task == "inpaint":
        req.update(mask=inputs["paths"]["mask"], mask_blur=0)
        kw.update(mask_image=inputs["mask"])
    ours = orch.run(req).pil_images[0]
    theirs = reference(root, family, FLUX_CLASSES[task], FlowMatchEulerDiscreteScheduler)(**kw, generator=gen()).images
    if task == "inpaint":  # A1111 pastes the original back outside the mask
        theirs = [overlay(theirs[0], inputs["image"], inputs["mask"])]
    assert_frames_equal([ours], theirs)


def test_flux_dev_true_cfg_equals_diffusers(orch, root):
    """cfg_scale above 1 with a negative prompt is Diffusers' true_cfg_scale on top of the distilled guidance."""
    ours = orch.run({"task": "txt2img", "model": "flux-dev-demo", "prompt": "a lighthouse", "negative_prompt": "fog",
                     "width": 64, "height": 64, "steps": 2, "seed": SEED, "cfg_scale": 2.5,
                     "distilled_cfg_scale": 4.0}).pil_images[0]
    theirs = reference(root, "flux", FluxPipeline, FlowMatchEulerDiscreteScheduler)(
        prompt="a lighthouse", negative_prompt="fog", true_cfg_scale=2.5, guidance_scale=4.0, width=64, height=64,
        num_inference_steps=2, generator=gen())
    assert_frames_equal([ours], theirs.images)


# ------------------------------------------------------------------------------------------------- SVD
def test_svd_equals_diffusers(orch, root, inputs):
    """The request's conditioning values go to the pipeline as they are (fps 8, motion bucket 60, noise aug 0.1,
    guidance from 1.0 to cfg_scale); default sampler Euler with the model's Karras sigmas."""
    ours = orch.run({"task": "img2vid", "model": "svd-demo", "init_image": inputs["paths"]["image"], "width": 64,
                     "height": 64, "num_frames": 3, "steps": 2, "seed": SEED, "cfg_scale": 3.0, "fps": 8.0,
                     "motion_bucket_id": 60, "noise_aug_strength": 0.1, "output_format": "mp4"}).frames[0]
    pipe = reference(root, "svd", StableVideoDiffusionPipeline, EulerDiscreteScheduler)
    assert pipe.scheduler.config.use_karras_sigmas
    theirs = pipe(image=inputs["image"], height=64, width=64, num_frames=3, num_inference_steps=2,
                  min_guidance_scale=1.0, max_guidance_scale=3.0, fps=8, motion_bucket_id=60, noise_aug_strength=0.1,
                  generator=gen(), output_type="pil").frames[0]
    assert_frames_equal(ours, theirs)


# ---------------------------------------------------------------------------------------------- videos
def video(family: str, task: str, inputs: dict, **extra) -> dict:
    req = {"task": task, "model": DEMO_BUILDERS[family][0], "prompt": "a red fox", "steps": 2, "seed": SEED,
           "num_frames": 5, "fps": 8.0, "width": 32, "height": 32, "output_format": "mp4", **extra}
    if task == "img2vid":
        req["init_image"] = inputs["paths"]["small"]
    return req


def test_hunyuan_video_t2v_equals_diffusers(orch, root, inputs):
    """Distilled guidance 6.0 (the pipeline's and model card's default) and true CFG with a negative prompt."""
    ours = orch.run(video("hunyuan_video", "txt2vid", inputs, negative_prompt="blurry", cfg_scale=2.0)).frames[0]
    theirs = reference(root, "hunyuan_video", HunyuanVideoPipeline, FlowMatchEulerDiscreteScheduler)(
        prompt="a red fox", negative_prompt="blurry", true_cfg_scale=2.0, guidance_scale=6.0, height=32, width=32,
        num_frames=5, num_inference_steps=2, generator=gen(), output_type="pil").frames[0]
    assert_frames_equal(ours, theirs)


def test_hunyuan_video_i2v_equals_diffusers_asked_for_4_more_frames(orch, root, inputs):
    """latent_concat I2V drops the image's 4 frames from its output: Codex asks for num_frames + 4 so the user gets
    the frames they asked for; Diffusers given the same 9 frames returns the same 5."""
    ours = orch.run(video("hunyuan_video_i2v", "img2vid", inputs)).frames[0]
    theirs = reference(root, "hunyuan_video_i2v", HunyuanVideoImageToVideoPipeline, FlowMatchEulerDiscreteScheduler)(
        image=inputs["small"], prompt="a red fox", guidance_scale=6.0, height=32, width=32, num_frames=9,
        num_inference_steps=2, generator=gen(), output_type="pil").frames[0]
    assert len(ours) == 5
    assert_frames_equal(ours, theirs)


@pytest.mark.parametrize("family,task,cls", [("hunyuan_video15", "txt2vid", HunyuanVideo15Pipeline),
                                             ("hunyuan_video15_i2v", "img2vid", HunyuanVideo15ImageToVideoPipeline)])
def test_hunyuan_video15_equals_diffusers(orch, root, inputs, family, task, cls):
    """Codex sets the pipeline's guider to ClassifierFreeGuidance(cfg_scale) per request and reads progress through
    its progress bar (the pipeline has no step callback); the frames are the plain pipeline's."""
    steps = []
    from sdcodex.core.events import EventSink

    ours = orch.run(video(family, task, inputs, negative_prompt="blurry", cfg_scale=3.0),
                    events=EventSink([lambda e: steps.append(e.data["done"]) if e.kind == "progress" else None])
                    ).frames[0]
    assert steps == [1, 2]
    pipe = reference(root, family, cls, FlowMatchEulerDiscreteScheduler)
    pipe.guider = ClassifierFreeGuidance(guidance_scale=3.0)
    kw = dict(prompt="a red fox", negative_prompt="blurry", num_frames=5, num_inference_steps=2, generator=gen(),
              output_type="pil")
    kw.update(image=inputs["small"]) if task == "img2vid" else kw.update(height=32, width=32)
    assert_frames_equal(ours, pipe(**kw).frames[0])


@pytest.mark.parametrize("task", ["txt2vid", "img2vid"])
def test_wan_ti2v_5b_equals_diffusers(orch, root, inputs, task):
    """TI2V-5B: one transformer, expand_timesteps; img2vid is WanImageToVideoPipeline on the same components."""
    ours = orch.run(video("wan22_ti2v_5b", task, inputs, negative_prompt="blurry", cfg_scale=5.0)).frames[0]
    pipe = reference(root, "wan22_ti2v_5b", WanPipeline, UniPCMultistepScheduler)
    kw = dict(prompt="a red fox", negative_prompt="blurry", height=32, width=32, num_frames=5, num_inference_steps=2,
              guidance_scale=5.0, generator=gen(), output_type="pil")
    if task == "img2vid":
        assert pipe.config.expand_timesteps
        pipe = WanImageToVideoPipeline(**pipe.components, image_processor=None, image_encoder=None,
                                       expand_timesteps=True)
        pipe.set_progress_bar_config(disable=True)
        kw["image"] = inputs["small"]
    assert_frames_equal(ours, pipe(**kw).frames[0])


def test_wan_i2v_a14b_equals_diffusers_with_both_experts(orch, root, provider, inputs):
    """I2V-A14B: high-noise expert at or above boundary 0.9 x 1000, low-noise expert below, each with its own CFG."""
    model = provider.load(provider.resolve("wan22-i2v-a14b-demo"))
    calls = {"transformer": 0, "transformer_2": 0}
    handles = [model.components[n].register_forward_pre_hook(lambda *a, _n=n: calls.__setitem__(_n, calls[_n] + 1))
               for n in calls]
    try:
        ours = orch.run(video("wan22_i2v_a14b", "img2vid", inputs, steps=3, cfg_scale=3.5, guidance_scale_2=2.0,
                              negative_prompt="blurry")).frames[0]
    finally:
        for h in handles:
            h.remove()
    assert calls["transformer"] and calls["transformer_2"]  # both experts ran
    pipe = reference(root, "wan22_i2v_a14b", WanImageToVideoPipeline, UniPCMultistepScheduler)
    assert pipe.config.boundary_ratio == 0.9
    theirs = pipe(image=inputs["small"], prompt="a red fox", negative_prompt="blurry", height=32, width=32,
                  num_frames=5, num_inference_steps=3, guidance_scale=3.5, guidance_scale_2=2.0, generator=gen(),
                  output_type="pil").frames[0]
    assert_frames_equal(ours, theirs)


def test_flux_hires_fix_equals_two_diffusers_passes(orch, root):
    """FLUX hires fix with the Lanczos upscaler: the first pass's image resized with PIL's Lanczos to the hires
    size, then FluxImg2ImgPipeline at that size (given explicitly) with the hires steps and denoise, re-seeded."""
    ours = orch.run({"task": "txt2img", "model": "flux-dev-demo", "prompt": "a lighthouse", "width": 64, "height": 64,
                     "steps": 2, "seed": SEED, "hires": {"scale": 1.5, "upscaler": "Lanczos", "steps": 4,
                                                         "denoising_strength": 0.5}}).pil_images[0]
    first = reference(root, "flux", FluxPipeline, FlowMatchEulerDiscreteScheduler)(
        prompt="a lighthouse", width=64, height=64, num_inference_steps=2, guidance_scale=3.5,
        generator=gen()).images[0]
    theirs = reference(root, "flux", FluxImg2ImgPipeline, FlowMatchEulerDiscreteScheduler)(
        prompt="a lighthouse", image=first.resize((96, 96), Image.LANCZOS), strength=0.5, num_inference_steps=4,
        width=96, height=96, guidance_scale=3.5, generator=gen()).images
    assert_frames_equal([ours], theirs)
