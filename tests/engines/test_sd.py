"""SD1.5 / SDXL through the one path: pixels equal Diffusers' own pipeline for every sampler, seeds,
batches, interrupt/skip, inpaint options, and the bad paths."""
from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from diffusers import (StableDiffusionImg2ImgPipeline, StableDiffusionInpaintPipeline, StableDiffusionPipeline,
                       StableDiffusionXLImg2ImgPipeline, StableDiffusionXLInpaintPipeline, StableDiffusionXLPipeline)

from sdcodex.core.enums import EngineKey
from sdcodex.core.errors import ModelNotFoundError, UnsupportedSamplerError, ValidationError
from sdcodex.core.events import EventSink
from sdcodex.core.samplers import list_samplers

from tests.helpers.inpaint_overlay import overlay
from tests.conftest import png_b64
from tests.helpers.sampler_reference import reference_scheduler

BASE = {"prompt": "a red fox in snow", "negative_prompt": "blurry", "width": 64, "height": 64, "steps": 3,
        "cfg_scale": 6.5, "seed": 1234}


def _model(local_models, name):
    entry = local_models.resolve(name)
    return entry, local_models.load(entry)


def _reference(pipeline_cls, model, sampler, schedule, family, seed, **kwargs):
    """Diffusers' own pipeline on the same components, the scheduler the independent table names (built here from
    Diffusers' classes, not through create_sampler) and a CPU generator."""
    return _reference_pipe(pipeline_cls, model, sampler, schedule, seed)(
        generator=torch.Generator("cpu").manual_seed(seed), **kwargs).images[0]


def _reference_pipe(pipeline_cls, model, sampler, schedule, seed):
    params = inspect.signature(pipeline_cls.__init__).parameters
    init = {n: model.components[n] for n in params if n in model.components}
    init.update({n: None for n, p in params.items()
                 if n not in init and n != "self" and p.default is inspect.Parameter.empty})
    if "requires_safety_checker" in params:
        init["requires_safety_checker"] = False
    pipe = pipeline_cls(**init)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = reference_scheduler(sampler, schedule, dict(model.scheduler_config), flow=False)
    if hasattr(pipe.scheduler, "noise_sampler_seed"):  # DPM++ SDE: its Brownian tree is seeded by the image seed
        pipe.scheduler.noise_sampler_seed = seed
    return pipe


CLASSIC = [s["name"] for s in list_samplers("epsilon")]


@pytest.mark.parametrize("sampler", CLASSIC)
def test_sd15_pixels_equal_diffusers_for_every_sampler(orchestrator, local_models, sampler):
    schedule = "Automatic"
    result = orchestrator.run({"task": "txt2img", "model": "sd15-demo", "sampler": sampler,
                               "scheduler": schedule, **BASE})
    _, model = _model(local_models, "sd15-demo")
    ref = _reference(StableDiffusionPipeline, model, sampler, schedule, "sd15", BASE["seed"],
                     prompt=BASE["prompt"], negative_prompt=BASE["negative_prompt"], width=64, height=64,
                     num_inference_steps=3, guidance_scale=6.5)
    assert np.array_equal(np.asarray(result.pil_images[0]), np.asarray(ref)), sampler
    assert result.info["sampler_effective"] == sampler


@pytest.mark.parametrize("sampler,schedule", [("DPM++ 2M", "Karras"), ("Euler a", "Automatic"), ("DDIM", "Automatic")])
def test_sdxl_pixels_equal_diffusers(orchestrator, local_models, sampler, schedule):
    result = orchestrator.run({"task": "txt2img", "model": "sdxl-demo", "sampler": sampler, "scheduler": schedule,
                               **BASE})
    _, model = _model(local_models, "sdxl-demo")
    ref = _reference(StableDiffusionXLPipeline, model, sampler, schedule, "sdxl", BASE["seed"],
                     prompt=BASE["prompt"], negative_prompt=BASE["negative_prompt"], width=64, height=64,
                     num_inference_steps=3, guidance_scale=6.5)
    assert np.array_equal(np.asarray(result.pil_images[0]), np.asarray(ref))


def test_img2img_and_inpaint_equal_diffusers(orchestrator, local_models, sample_image, sample_mask):
    _, model = _model(local_models, "sd15-demo")
    req = {"task": "img2img", "model": "sd15-demo", "init_image": png_b64(sample_image), "denoising_strength": 0.6,
           "sampler": "Euler", "scheduler": "Automatic", **BASE}
    result = orchestrator.run(req)
    ref = _reference(StableDiffusionImg2ImgPipeline, model, "Euler", "Automatic", "sd15", BASE["seed"],
                     prompt=BASE["prompt"], negative_prompt=BASE["negative_prompt"], image=sample_image,
                     strength=0.6, num_inference_steps=3, guidance_scale=6.5)
    assert np.array_equal(np.asarray(result.pil_images[0]), np.asarray(ref))

    _, inpaint_model = _model(local_models, "sd15-inpaint-demo")
    req = {**req, "task": "inpaint", "model": "sd15-inpaint-demo", "mask": png_b64(sample_mask), "mask_blur": 0}
    result = orchestrator.run(req)
    ref = _reference(StableDiffusionInpaintPipeline, inpaint_model, "Euler", "Automatic", "sd15", BASE["seed"],
                     prompt=BASE["prompt"], negative_prompt=BASE["negative_prompt"], image=sample_image,
                     mask_image=sample_mask.convert("L"), strength=0.6, num_inference_steps=3, guidance_scale=6.5,
                     width=64, height=64)
    ref = overlay(ref, sample_image, sample_mask)  # A1111 pastes the original back outside the mask
    assert np.abs(np.asarray(result.pil_images[0], dtype=np.int16) - np.asarray(ref, dtype=np.int16)).max() <= 1


def test_sdxl_img2img_and_inpaint_equal_diffusers(orchestrator, local_models, sample_image, sample_mask):
    _, model = _model(local_models, "sdxl-demo")
    req = {"task": "img2img", "model": "sdxl-demo", "init_image": png_b64(sample_image), "denoising_strength": 0.6,
           "sampler": "DPM++ 2M", "scheduler": "Karras", **BASE}
    result = orchestrator.run(req)
    common = dict(prompt=BASE["prompt"], negative_prompt=BASE["negative_prompt"], image=sample_image, strength=0.6,
                  num_inference_steps=3, guidance_scale=6.5)
    ref = _reference(StableDiffusionXLImg2ImgPipeline, model, "DPM++ 2M", "Karras", "sdxl", BASE["seed"], **common)
    assert np.array_equal(np.asarray(result.pil_images[0]), np.asarray(ref))

    result = orchestrator.run({**req, "task": "inpaint", "mask": png_b64(sample_mask), "mask_blur": 0})
    ref = _reference(StableDiffusionXLInpaintPipeline, model, "DPM++ 2M", "Karras", "sdxl", BASE["seed"], **common,
                     mask_image=sample_mask, width=64, height=64)
    ref = overlay(ref, sample_image, sample_mask)
    assert np.abs(np.asarray(result.pil_images[0], dtype=np.int16) - np.asarray(ref, dtype=np.int16)).max() <= 1


@pytest.mark.parametrize("name,txt2img,img2img", [
    ("sd15-demo", StableDiffusionPipeline, StableDiffusionImg2ImgPipeline),
    ("sdxl-demo", StableDiffusionXLPipeline, StableDiffusionXLImg2ImgPipeline)])
def test_hires_fix_equals_two_diffusers_passes(orchestrator, local_models, name, txt2img, img2img):
    """A1111's hires fix with the "Latent" upscaler: the first pass's latents, bilinear-resized (no antialias) to
    the hires size / the VAE factor, then img2img on them with the hires denoise, re-seeded with the image's seed."""
    result = orchestrator.run({"task": "txt2img", "model": name, "sampler": "Euler", "scheduler": "Automatic",
                               **BASE, "hires": {"scale": 2.0, "upscaler": "Latent", "denoising_strength": 0.7}})
    _, model = _model(local_models, name)
    seed, prompts = BASE["seed"], dict(prompt=BASE["prompt"], negative_prompt=BASE["negative_prompt"])
    pipe = _reference_pipe(txt2img, model, "Euler", "Automatic", seed)
    first = pipe(**prompts, width=64, height=64, num_inference_steps=3, guidance_scale=6.5, output_type="latent",
        generator=torch.Generator("cpu").manual_seed(seed)).images
    size = (128 // pipe.vae_scale_factor, 128 // pipe.vae_scale_factor)
    latents = torch.nn.functional.interpolate(first, size=size, mode="bilinear", antialias=False)
    ref = _reference_pipe(img2img, model, "Euler", "Automatic", seed)(
        **prompts, image=latents, strength=0.7, num_inference_steps=3, guidance_scale=6.5,
        generator=torch.Generator("cpu").manual_seed(seed)).images[0]
    assert result.pil_images[0].size == (128, 128)
    assert np.array_equal(np.asarray(result.pil_images[0]), np.asarray(ref))


def test_inpaint_options_change_output_and_keep_size(orchestrator, sample_image, sample_mask):
    req = {"task": "inpaint", "model": "sd15-demo", "init_image": png_b64(sample_image), "mask": png_b64(sample_mask),
           "sampler": "Euler", **BASE}
    plain = np.asarray(orchestrator.run({**req, "mask_blur": 0}).pil_images[0])
    blurred = np.asarray(orchestrator.run({**req, "mask_blur": 8}).pil_images[0])
    inverted = np.asarray(orchestrator.run({**req, "mask_blur": 0, "mask_invert": True}).pil_images[0])
    full_res = orchestrator.run({**req, "mask_blur": 0, "inpaint_full_res": True, "inpaint_full_res_padding": 4})
    assert plain.shape == (64, 64, 3) and full_res.pil_images[0].size == (64, 64)
    assert not np.array_equal(plain, blurred) and not np.array_equal(plain, inverted)
    assert not np.array_equal(plain, np.asarray(full_res.pil_images[0]))


def test_batch_images_reproducible_alone(orchestrator):
    req = {"task": "txt2img", "model": "sd15-demo", "sampler": "Euler a", **BASE}
    batch = orchestrator.run({**req, "batch_size": 2, "batch_count": 2})
    assert batch.info["seeds"] == [1234, 1235, 1236, 1237] and len(batch.images) == 4
    for index in (1, 2):
        alone = orchestrator.run({**req, "seed": 1234 + index})
        diff = np.abs(np.asarray(batch.pil_images[index], dtype=int) - np.asarray(alone.pil_images[0], dtype=int))
        assert diff.max() <= 1, f"image {index} differs by {diff.max()}"


def test_seed_zero_is_valid_and_minus_one_random(orchestrator):
    req = {"task": "txt2img", "model": "sd15-demo", **BASE}
    zero = orchestrator.run({**req, "seed": 0})
    assert zero.info["seeds"] == [0] and zero.info["request"]["seed"] == 0
    rnd = orchestrator.run({**req, "seed": -1})
    seed = rnd.info["seeds"][0]
    assert seed != -1 and rnd.info["request"]["seed"] == seed
    again = orchestrator.run({**req, "seed": seed})
    assert np.array_equal(np.asarray(rnd.pil_images[0]), np.asarray(again.pil_images[0]))


def test_clip_skip_changes_output(orchestrator):
    req = {"task": "txt2img", "model": "sd15-demo", **BASE}
    one = np.asarray(orchestrator.run({**req, "clip_skip": 1}).pil_images[0])
    two = np.asarray(orchestrator.run({**req, "clip_skip": 2}).pil_images[0])
    assert not np.array_equal(one, two)


def test_info_is_complete(orchestrator):
    result = orchestrator.run({"task": "txt2img", "model": "sd15-demo", "prompt": "x", "width": 64, "height": 64,
                               "steps": 2, "sampler": "DPM++ 2M Karras"})
    info = result.info
    for key in ("engine", "task", "model", "model_hash", "mode", "seeds", "sampler_in", "scheduler_in",
                "sampler_effective", "scheduler_effective", "applied_preset_patch", "warnings", "metrics", "request"):
        assert key in info, key
    assert info["sampler_effective"] == "DPM++ 2M" and info["scheduler_effective"] == "Karras"
    assert info["applied_preset_patch"]["cfg_scale"] == 7.0 and "steps" not in info["applied_preset_patch"]
    assert info["model_hash"] and len(info["model_hash"]) == 10
    m = info["metrics"]
    assert m["denoise"] > 0 and m["decode"] > 0 and m["text_encode"] > 0
    assert m["load"] + m["text_encode"] + m["denoise"] + m["decode"] + m["save"] <= m["total"] + 1e-3
    assert info["metrics"]["peak_rss_mb"] > 0
    assert len(result.images) == 1


def test_interrupt_keeps_finished_images(orchestrator):
    sink = EventSink()

    def listener(event):
        if event.kind == "image":
            sink.control.interrupt()

    sink.listeners.append(listener)
    result = orchestrator.run({"task": "txt2img", "model": "sd15-demo", **BASE, "batch_count": 3}, events=sink)
    assert result.info["interrupted"] is True
    assert len(result.images) == 1 and result.info["seeds"] == [1234]


def test_skip_drops_current_image_and_goes_on(orchestrator):
    sink = EventSink()
    state = {"skipped": False}

    def listener(event):
        if event.kind == "progress" and event.data["image_index"] == 1 and not state["skipped"]:
            state["skipped"] = True
            sink.control.skip()

    sink.listeners.append(listener)
    result = orchestrator.run({"task": "txt2img", "model": "sd15-demo", **BASE, "batch_count": 3}, events=sink)
    assert result.info["skipped"] == 1 and result.info["seeds"] == [1234, 1236]


def test_bad_size_names_rule(orchestrator):
    with pytest.raises(ValidationError) as err:
        orchestrator.run({"task": "txt2img", "model": "sd15-demo", **{**BASE, "width": 60}})
    assert err.value.field == "width" and "multiple of 8" in str(err.value)


def test_unknown_model_lists_existing(orchestrator):
    with pytest.raises(ModelNotFoundError) as err:
        orchestrator.run({"task": "txt2img", "model": "nope", **BASE})
    assert "sd15-demo" in str(err.value)


def test_engine_must_agree_with_model(orchestrator):
    with pytest.raises(ValidationError) as err:
        orchestrator.run({"task": "txt2img", "model": "sd15-demo", "engine": "sdxl", **BASE})
    assert err.value.field == "engine"


def test_flow_sampler_rejected_for_sd(orchestrator):
    with pytest.raises(UnsupportedSamplerError) as err:
        orchestrator.run({"task": "txt2img", "model": "sd15-demo", **BASE, "sampler": "Flow Euler"})
    assert err.value.field == "sampler"


def test_inpaint_model_refuses_txt2img(orchestrator):
    with pytest.raises(ValidationError) as err:
        orchestrator.run({"task": "txt2img", "model": "sd15-inpaint-demo", **BASE})
    assert err.value.field == "task"


def test_inpaint_needs_mask(orchestrator, sample_image):
    with pytest.raises(ValidationError) as err:
        orchestrator.run({"task": "inpaint", "model": "sd15-demo", "init_image": png_b64(sample_image), **BASE})
    assert err.value.field == "mask"


def test_bad_base64_names_field(orchestrator):
    with pytest.raises(ValidationError) as err:
        orchestrator.run({"task": "img2img", "model": "sd15-demo", "init_image": "not-an-image!!", **BASE})
    assert err.value.field == "init_image"


def test_unsupported_task_for_engine(orchestrator):
    from sdcodex.core.errors import UnsupportedTaskError

    with pytest.raises(UnsupportedTaskError) as err:
        orchestrator.run({"task": "txt2vid", "model": "sd15-demo", "prompt": "x", "num_frames": 5})
    assert "txt2img" in str(err.value)


def test_img2img_needs_at_least_one_denoising_step(orchestrator, sample_image):
    with pytest.raises(ValidationError) as err:
        orchestrator.run({"task": "img2img", "model": "sd15-demo", "init_image": png_b64(sample_image),
                          **{**BASE, "steps": 1}, "denoising_strength": 0.75})
    assert err.value.field == "denoising_strength" and "at least one" in str(err.value)


def test_every_job_logs_one_record_with_what_it_did(orchestrator, caplog, monkeypatch):
    import logging

    monkeypatch.setattr(logging.getLogger("sdcodex"), "propagate", True)  # setup_logging turns it off
    with caplog.at_level(logging.INFO, logger="sdcodex.orchestrator"):
        orchestrator.run({"task": "txt2img", "model": "sd15-demo", "prompt": "x", "width": 64, "height": 64,
                          "steps": 2, "sampler": "Euler"}, job_id="job-123")
    records = [r for r in caplog.records if getattr(r, "job_id", None) == "job-123"]
    # one record per job (pytest may capture it through more than one handler)
    assert records and len({(r.created, r.getMessage()) for r in records}) == 1
    rec = records[0]
    assert rec.engine == "sd15" and rec.model == "sd15-demo" and rec.sampler_in == "Euler"
    assert rec.sampler_effective == "Euler" and "cfg_scale" in rec.preset_keys
    assert rec.applied_preset_patch["cfg_scale"] == 7.0 and rec.timings["denoise"] > 0


def test_ambiguous_model_name_lists_the_matching_paths(demo_models_dir, tmp_path):
    """Two folders hold a model of the same name: the name alone is refused naming both paths; a path works."""
    import shutil

    from sdcodex.core.errors import AmbiguousModelError
    from sdcodex.runtime import LocalModels, build_orchestrator

    for sub in ("a", "b"):
        shutil.copytree(demo_models_dir / "demo" / "sd15-demo", tmp_path / "models" / sub / "sd15-demo")
    orch = build_orchestrator(models=LocalModels(tmp_path / "models"), outdir=tmp_path / "out", device="cpu")
    with pytest.raises(AmbiguousModelError) as err:
        orch.run({"task": "txt2img", "model": "sd15-demo", **BASE, "steps": 1})
    assert "ambiguous" in str(err.value) and err.value.field == "model"
    assert sorted(err.value.allowed) == sorted(str(tmp_path / "models" / s / "sd15-demo") for s in ("a", "b"))
    assert err.value.to_dict()["error"] == "model_ambiguous"
    result = orch.run({"task": "txt2img", "model": str(tmp_path / "models" / "b" / "sd15-demo"), **BASE, "steps": 1})
    assert result.info["model"] == "sd15-demo" and len(result.pil_images) == 1
