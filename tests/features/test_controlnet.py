"""ControlNet units through the one path: pixels equal Diffusers' ControlNet / MultiControlNet pipelines built here on
the same tiny components (SD1.5, SDXL, FLUX; scheduler from Diffusers' classes), guidance start/end, guess mode, an
original-layout single file that round-trips, detection and the bad paths."""
from __future__ import annotations

import inspect
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import (ControlNetModel, ControlNetUnionModel, FlowMatchEulerDiscreteScheduler, FluxControlNetModel, FluxControlNetPipeline,
                       MultiControlNetModel, StableDiffusionControlNetImg2ImgPipeline,
                       StableDiffusionControlNetInpaintPipeline, StableDiffusionControlNetPipeline,
                       StableDiffusionXLControlNetPipeline, StableDiffusionXLControlNetUnionPipeline)
from PIL import Image, ImageDraw

from sdcodex.core.errors import ValidationError
from tests.helpers.inpaint_overlay import overlay
from sdcodex.models.detect import detect_path
from tests.conftest import png_b64
from tests.helpers.controlnet_export import export_controlnet
from tests.helpers.sampler_reference import reference_scheduler

BASE = {"prompt": "a red fox", "negative_prompt": "blurry", "width": 64, "height": 64, "steps": 2, "cfg_scale": 6.0,
        "seed": 77, "sampler": "Euler", "scheduler": "Automatic"}


def _wake(net: torch.nn.Module, seed: int) -> torch.nn.Module:
    """A ControlNet made from a UNet starts with zero convolutions (no effect): give them small random weights."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in net.named_parameters():
            if name.startswith(("controlnet_down_blocks", "controlnet_mid_block", "controlnet_blocks",
                                "controlnet_single_blocks", "controlnet_x_embedder", "spatial_ch_projs")):
                param.copy_(torch.randn(param.shape, generator=gen) * 0.05)
    return net.eval()


@pytest.fixture(scope="session")
def cn_root(demo_models_dir, tmp_path_factory) -> Path:
    """The demo models plus tiny ControlNets under models/ControlNet: SD1.5 (two folders, one original-layout
    single file), SDXL (folder), FLUX (folder)."""
    from diffusers import FluxTransformer2DModel, UNet2DConditionModel

    from sdcodex.models.demo import build_demo_model

    root = tmp_path_factory.mktemp("cn-models")
    os.symlink(demo_models_dir / "demo", root / "demo")
    build_demo_model("flux", root / "flux")
    folder = root / "ControlNet"
    demo = demo_models_dir / "demo"
    unet = UNet2DConditionModel.from_pretrained(demo / "sd15-demo" / "unet")
    for i, name in enumerate(("cn-sd15-a", "cn-sd15-b")):
        _wake(ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32)), i + 1).save_pretrained(
            folder / name)
    single = _wake(ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32)), 3)
    export_controlnet(single, folder / "cn_sd15_single.safetensors")
    single.save_pretrained(root / ".reference" / "cn-sd15-single")  # hidden: not in the inventory
    xl = UNet2DConditionModel.from_pretrained(demo / "sdxl-demo" / "unet")
    _wake(ControlNetModel.from_unet(xl, conditioning_embedding_out_channels=(16, 32)), 4).save_pretrained(
        folder / "cn-sdxl")
    union = {k: v for k, v in dict(xl.config).items() if k in inspect.signature(ControlNetUnionModel.__init__).parameters}
    torch.manual_seed(6)
    _wake(ControlNetUnionModel(**union, conditioning_embedding_out_channels=(16, 32), num_trans_channel=32,
                               num_trans_head=2, num_proj_channel=32), 6).save_pretrained(folder / "cn-sdxl-union")
    transformer = FluxTransformer2DModel.from_pretrained(root / "flux" / "flux-dev-demo" / "transformer")
    flux = FluxControlNetModel.from_transformer(transformer, num_layers=1, num_single_layers=1, attention_head_dim=16,
                                                num_attention_heads=2)
    _wake(flux, 5).save_pretrained(folder / "cn-flux")
    torch.manual_seed(7)
    _wake(FluxControlNetModel(patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=16,
                              num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32,
                              guidance_embeds=True, axes_dims_rope=[4, 4, 8], num_mode=7), 7).save_pretrained(
        folder / "cn-flux-union")
    return root


@pytest.fixture(scope="session")
def cn_models(cn_root):
    from sdcodex.runtime import LocalModels

    return LocalModels(cn_root)


@pytest.fixture()
def orch(cn_models, tmp_path):
    from sdcodex.runtime import build_orchestrator

    return build_orchestrator(models=cn_models, outdir=tmp_path / "out", device="cpu")


@pytest.fixture(scope="session")
def control_maps():
    a = Image.new("RGB", (64, 64))
    ImageDraw.Draw(a).rectangle((8, 8, 40, 56), fill=(255, 255, 255))
    b = Image.new("RGB", (64, 64), (30, 30, 30))
    ImageDraw.Draw(b).ellipse((16, 4, 60, 48), outline=(250, 250, 250), width=3)
    return a, b


def _net(cn_root: Path, name: str, cls=ControlNetModel):
    return cls.from_pretrained(cn_root / "ControlNet" / name).eval()


def _reference(pipeline_cls, model, controlnet, sampler="Euler", flow=False, **kw):
    params = inspect.signature(pipeline_cls.__init__).parameters
    init = {n: model.components[n] for n in params if n in model.components}
    init.update({n: None for n, p in params.items()
                 if n not in init and n != "self" and p.default is inspect.Parameter.empty})
    init["controlnet"] = controlnet
    if "requires_safety_checker" in params:
        init["requires_safety_checker"] = False
    if "add_watermarker" in params:
        init["add_watermarker"] = False
    pipe = pipeline_cls(**init)
    pipe.set_progress_bar_config(disable=True)
    if flow:
        pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(model.scheduler_config)
    else:
        pipe.scheduler = reference_scheduler(sampler, "Automatic", dict(model.scheduler_config), flow=False)
    return pipe(generator=torch.Generator("cpu").manual_seed(BASE["seed"]), **kw).images[0]


def _close(ours: Image.Image, theirs: Image.Image) -> None:
    diff = np.abs(np.asarray(ours, dtype=int) - np.asarray(theirs, dtype=int)).max()
    assert diff <= 1, diff


def _unit(image, model, **kw):
    return {"image": png_b64(image), "model": model, **kw}


def _model(cn_models, name):
    entry = cn_models.resolve(name)
    return cn_models.load(entry)


def test_sd15_units_equal_diffusers_controlnet_pipelines(orch, cn_models, cn_root, control_maps):
    """One unit (weight, guidance start/end), two units (MultiControlNet), guess mode: Diffusers' own pipelines."""
    a, b = control_maps
    model = _model(cn_models, "sd15-demo")
    net_a, net_b = _net(cn_root, "cn-sd15-a"), _net(cn_root, "cn-sd15-b")
    common = dict(prompt=BASE["prompt"], negative_prompt=BASE["negative_prompt"], width=64, height=64,
                  num_inference_steps=2, guidance_scale=6.0)

    one = orch.run({"task": "txt2img", "model": "sd15-demo", **BASE, "controls": [
        _unit(a, "cn-sd15-a", weight=0.8, guidance_start=0.5, guidance_end=1.0)]})
    ref = _reference(StableDiffusionControlNetPipeline, model, net_a, image=a, controlnet_conditioning_scale=0.8,
                     control_guidance_start=0.5, control_guidance_end=1.0, **common)
    _close(one.pil_images[0], ref)
    plain = orch.run({"task": "txt2img", "model": "sd15-demo", **BASE}).pil_images[0]
    assert not np.array_equal(np.asarray(plain), np.asarray(one.pil_images[0]))  # the control steered the image
    unit = one.info["controls"][0]
    assert unit["model"].startswith("cn-sd15-a [") and unit["weight"] == 0.8
    assert one.info["infotext_fields"]["extra"]["ControlNet 0"].startswith("Module: none, Model: cn-sd15-a [")

    two = orch.run({"task": "txt2img", "model": "sd15-demo", **BASE, "controls": [
        _unit(a, "cn-sd15-a", weight=0.7), _unit(b, "cn-sd15-b", weight=1.3, guidance_end=0.5)]})
    ref = _reference(StableDiffusionControlNetPipeline, model, MultiControlNetModel([net_a, net_b]), image=[a, b],
                     controlnet_conditioning_scale=[0.7, 1.3], control_guidance_start=[0.0, 0.0],
                     control_guidance_end=[1.0, 0.5], **common)
    _close(two.pil_images[0], ref)

    guess = orch.run({"task": "txt2img", "model": "sd15-demo", **BASE, "controls": [
        _unit(a, "cn-sd15-a", control_mode="controlnet")]})
    ref = _reference(StableDiffusionControlNetPipeline, model, net_a, image=a, guess_mode=True, **common)
    _close(guess.pil_images[0], ref)

    # composable prompts (AND) run the UNet per part: the control residuals are split with the batch
    both = {"task": "txt2img", "model": "sd15-demo", **BASE, "prompt": "a red fox AND a blue house"}
    split = orch.run({**both, "controls": [_unit(a, "cn-sd15-a")]}).pil_images[0]
    assert not np.array_equal(np.asarray(split), np.asarray(orch.run(both).pil_images[0]))

    # a preprocessor first (pixel perfect: the 64 px image is read at 64 px), then the map as the control image
    from sdcodex.engines.preprocessors import run_preprocessor

    canny = orch.run({"task": "txt2img", "model": "sd15-demo", **BASE, "controls": [
        _unit(b, "cn-sd15-b", module="canny", pixel_perfect=True, threshold_a=50.0, threshold_b=150.0)]})
    edges = run_preprocessor("canny", b, resolution=64, threshold_a=50.0, threshold_b=150.0)
    ref = _reference(StableDiffusionControlNetPipeline, model, net_b, image=edges, **common)
    _close(canny.pil_images[0], ref)
    assert "Module: canny" in canny.info["infotext_fields"]["extra"]["ControlNet 0"]


def test_hires_fix_controls_both_passes(orch, cn_models, cn_root, control_maps):
    """Hires fix ("Latent") with a unit: Diffusers' ControlNet txt2img to latents, bilinear upscale, then its ControlNet
    img2img with the control map made again at the hires size (A1111's extension controls both passes)."""
    from sdcodex.engines.base import resize_image
    from sdcodex.core.enums import ResizeMode

    a, _ = control_maps
    model = _model(cn_models, "sd15-demo")
    net = _net(cn_root, "cn-sd15-a")
    ours = orch.run({"task": "txt2img", "model": "sd15-demo", **BASE, "controls": [_unit(a, "cn-sd15-a", weight=0.9)],
                     "hires": {"scale": 2.0, "upscaler": "Latent", "denoising_strength": 0.7}})
    prompts = dict(prompt=BASE["prompt"], negative_prompt=BASE["negative_prompt"], guidance_scale=6.0,
                   num_inference_steps=2, controlnet_conditioning_scale=0.9)
    first = _reference(StableDiffusionControlNetPipeline, model, net, image=a, width=64, height=64,
                       output_type="latent", **prompts)[None]
    factor = 2 ** (len(model.components["vae"].config.block_out_channels) - 1)
    latents = torch.nn.functional.interpolate(first, size=(128 // factor, 128 // factor), mode="bilinear",
                                              antialias=False)
    big = resize_image(a, 128, 128, ResizeMode.CROP_AND_RESIZE)
    ref = _reference(StableDiffusionControlNetImg2ImgPipeline, model, net, image=latents, control_image=big,
                     strength=0.7, **prompts)
    assert ours.pil_images[0].size == (128, 128)
    _close(ours.pil_images[0], ref)


def test_sd15_img2img_and_inpaint_units_equal_diffusers(orch, cn_models, cn_root, control_maps, sample_image,
                                                         sample_mask):
    a, _ = control_maps
    model = _model(cn_models, "sd15-demo")
    net = _net(cn_root, "cn-sd15-a")
    req = {"task": "img2img", "model": "sd15-demo", **BASE, "steps": 3, "init_image": png_b64(sample_image),
           "denoising_strength": 0.7, "controls": [_unit(a, "cn-sd15-a", weight=1.2)]}
    common = dict(prompt=BASE["prompt"], negative_prompt=BASE["negative_prompt"], num_inference_steps=3,
                  guidance_scale=6.0, image=sample_image, control_image=a, strength=0.7,
                  controlnet_conditioning_scale=1.2)
    _close(orch.run(req).pil_images[0], _reference(StableDiffusionControlNetImg2ImgPipeline, model, net, **common))
    inpaint = orch.run({**req, "task": "inpaint", "mask": png_b64(sample_mask), "mask_blur": 0})
    ref = _reference(StableDiffusionControlNetInpaintPipeline, model, net, mask_image=sample_mask, width=64,
                     height=64, **common)
    _close(inpaint.pil_images[0], overlay(ref, sample_image, sample_mask))  # A1111 pastes the original back

    # an inpaint module: the RGBA result becomes the float control map with -1 on masked pixels
    from sdcodex.engines.preprocessors import inpaint_condition, run_preprocessor

    rgba = sample_image.convert("RGBA")
    rgba.putalpha(Image.eval(sample_mask, lambda v: 255 - v))
    ours = orch.run({**req, "task": "inpaint", "mask": png_b64(sample_mask), "mask_blur": 0,
                     "controls": [_unit(rgba, "cn-sd15-a", module="inpaint_only", weight=1.2)]})
    cond = torch.from_numpy(inpaint_condition(run_preprocessor("inpaint_only", rgba, resolution=64)))
    ref = _reference(StableDiffusionControlNetInpaintPipeline, model, net, mask_image=sample_mask, width=64,
                     height=64, **{**common, "control_image": cond.permute(2, 0, 1)[None]})
    _close(ours.pil_images[0], overlay(ref, sample_image, sample_mask))


def test_sdxl_and_flux_units_equal_diffusers(orch, cn_models, cn_root, control_maps):
    a, _ = control_maps
    xl = _model(cn_models, "sdxl-demo")
    ours = orch.run({"task": "txt2img", "model": "sdxl-demo", **BASE, "controls": [
        _unit(a, "cn-sdxl", weight=0.9, guidance_start=0.0, guidance_end=0.5)]})
    ref = _reference(StableDiffusionXLControlNetPipeline, xl, _net(cn_root, "cn-sdxl"), image=a,
                     controlnet_conditioning_scale=0.9, control_guidance_end=0.5, prompt=BASE["prompt"],
                     negative_prompt=BASE["negative_prompt"], width=64, height=64, num_inference_steps=2,
                     guidance_scale=6.0)
    _close(ours.pil_images[0], ref)

    flux = _model(cn_models, "flux-dev-demo")
    ours = orch.run({"task": "txt2img", "model": "flux-dev-demo", "prompt": "a lighthouse", "width": 64, "height": 64,
                     "steps": 2, "seed": BASE["seed"], "controls": [_unit(a, "cn-flux", weight=0.6)]})
    ref = _reference(FluxControlNetPipeline, flux, _net(cn_root, "cn-flux", FluxControlNetModel), flow=True,
                     control_image=a, controlnet_conditioning_scale=0.6, prompt="a lighthouse", width=64, height=64,
                     num_inference_steps=2, guidance_scale=3.5)
    _close(ours.pil_images[0], ref)


def test_union_units_equal_diffusers(orch, cn_models, cn_root, control_maps):
    """ControlNet-Union: SDXL (one Union model reads every unit's image with its control type) and FLUX (the mode
    index per unit); an unknown type names the unit's union_type."""
    a, b = control_maps
    xl = _model(cn_models, "sdxl-demo")
    ours = orch.run({"task": "txt2img", "model": "sdxl-demo", **BASE, "controls": [
        _unit(a, "cn-sdxl-union", union_type="canny", weight=0.8), _unit(b, "cn-sdxl-union", union_type="depth",
                                                                         weight=0.8)]})
    assert ours.info["controls"][1]["union_type"] == "depth"
    ref = _reference(StableDiffusionXLControlNetUnionPipeline, xl, _net(cn_root, "cn-sdxl-union", ControlNetUnionModel),
                     control_image=[a, b], control_mode=[3, 1], controlnet_conditioning_scale=0.8,
                     prompt=BASE["prompt"], negative_prompt=BASE["negative_prompt"], width=64, height=64,
                     num_inference_steps=2, guidance_scale=6.0)
    _close(ours.pil_images[0], ref)

    flux = _model(cn_models, "flux-dev-demo")
    ours = orch.run({"task": "txt2img", "model": "flux-dev-demo", "prompt": "a lighthouse", "width": 64, "height": 64,
                     "steps": 2, "seed": BASE["seed"], "controls": [_unit(a, "cn-flux-union", union_type="tile")]})
    ref = _reference(FluxControlNetPipeline, flux, _net(cn_root, "cn-flux-union", FluxControlNetModel), flow=True,
                     control_image=a, control_mode=1, prompt="a lighthouse", width=64, height=64,
                     num_inference_steps=2, guidance_scale=3.5)
    _close(ours.pil_images[0], ref)
    with pytest.raises(ValidationError) as err:
        orch.run({"task": "txt2img", "model": "sdxl-demo", **BASE,
                  "controls": [_unit(a, "cn-sdxl-union", union_type="tile")]})  # 6 types: no tile (ProMax has it)
    assert err.value.field == "controls[0].union_type"


def test_original_layout_single_file_round_trips(orch, cn_models, cn_root, control_maps):
    """An A1111 single file (control_model.* keys) is detected, converted and built from its shapes: pixels equal the
    Diffusers module it was exported from."""
    a, _ = control_maps
    path = cn_root / "ControlNet" / "cn_sd15_single.safetensors"
    det = detect_path(path)
    assert (det.kind, det.family.value, det.variant["layout"]) == ("controlnet", "sd15", "original")
    assert {e.name for e in cn_models.inventory.entries("controlnet")} >= {"cn-sd15-a", "cn-sd15-b",
                                                                          "cn_sd15_single", "cn-sdxl", "cn-flux"}
    from sdcodex.models.controlnet import load_controlnet

    loaded = load_controlnet(path)
    original = ControlNetModel.from_pretrained(cn_root / ".reference" / "cn-sd15-single").eval()
    assert {k: v for k, v in loaded.config.items() if not k.startswith("_")} == {
        k: v for k, v in original.config.items() if not k.startswith("_")}
    ref_sd = original.state_dict()
    assert loaded.state_dict().keys() == ref_sd.keys()
    assert all(torch.equal(t, ref_sd[k]) for k, t in loaded.state_dict().items())
    model = _model(cn_models, "sd15-demo")
    ours = orch.run({"task": "txt2img", "model": "sd15-demo", **BASE,
                     "controls": [_unit(a, "cn_sd15_single", weight=1.0)]})
    ref = _reference(StableDiffusionControlNetPipeline, model, original, image=a, prompt=BASE["prompt"],
                     negative_prompt=BASE["negative_prompt"], width=64, height=64, num_inference_steps=2,
                     guidance_scale=6.0)
    _close(ours.pil_images[0], ref)


@pytest.mark.parametrize("unit,field", [
    ({"model": "cn-sdxl"}, "controls[1].model"),                 # another family than the base model
    ({"image": "bm90IGFuIGltYWdl"}, "controls[1].image"),       # does not decode
    ({"weight": 2.5}, "controls[1].weight"),                      # out of range
    ({"module": "no_such_preprocessor"}, "controls[1].module"),   # unknown module
    ({"guidance_start": 0.8, "guidance_end": 0.2}, "controls[1].guidance_end"),
    ({"model": "nope"}, "controls[1].model"),
    ({"control_mode": "controlnet"}, "controls[1].control_mode"),  # guess mode is for all units or none
])
def test_bad_units_name_the_unit_and_field(orch, control_maps, unit, field):
    a, _ = control_maps
    good = _unit(a, "cn-sd15-a")
    with pytest.raises(ValidationError) as err:
        orch.run({"task": "txt2img", "model": "sd15-demo", **BASE, "controls": [good, {**good, **unit}]})
    assert err.value.field == field


def test_a1111_controlnet_units_infotext_and_model_list(cn_models, tmp_path, control_maps, orch):
    """alwayson_scripts.controlnet.args (the extension's unit shape: input_image, int modes, -1 sliders) equals the
    native `controls`; the infotext's `ControlNet 0` reads back into a unit; /controlnet/model_list and /version."""
    import base64
    import io
    import json

    from sdcodex.media.infotext import infotext_to_request, parse_infotext
    from tests.server.live import live_server

    a, _ = control_maps
    native = orch.run({"task": "txt2img", "model": "sd15-demo", **BASE, "controls": [
        _unit(a, "cn-sd15-a", weight=0.75, guidance_end=0.6, control_mode="prompt", resize_mode="just_resize")]})
    body = {"prompt": BASE["prompt"], "negative_prompt": BASE["negative_prompt"], "seed": BASE["seed"], "steps": 2,
            "width": 64, "height": 64, "cfg_scale": 6.0, "sampler_name": "Euler",
            "override_settings": {"sd_model_checkpoint": "sd15-demo"},
            "alwayson_scripts": {"controlnet": {"args": [
                {"enabled": False, "model": "cn-sd15-b", "input_image": png_b64(a)},
                {"input_image": png_b64(a), "module": "none", "model": "cn-sd15-a [0123abcd]", "weight": 0.75,
                 "guidance_start": 0.0, "guidance_end": 0.6, "control_mode": 1, "resize_mode": "Just Resize",
                 "processor_res": -1, "threshold_a": -1, "threshold_b": -1, "pixel_perfect": False,
                 "lowvram": False}]}}}
    with live_server(models=cn_models, outdir=str(tmp_path / "srv"), db_path=str(tmp_path / "jobs.sqlite"),
                     device="cpu") as srv, srv.client() as client:
        listed = client.get("/controlnet/model_list").json()["model_list"]
        assert {n.split(" [")[0] for n in listed} >= {"cn-sd15-a", "cn-sdxl", "cn-flux", "cn_sd15_single"}
        assert client.get("/controlnet/version").json() == {"version": 2}
        r = client.post("/sdapi/v1/txt2img", json=body)
        assert r.status_code == 200, r.text
        bad = client.post("/sdapi/v1/txt2img", json={**body, "alwayson_scripts": {"controlnet": {"args": [
            {"input_image": png_b64(a), "model": "cn-sd15-a", "weight": 5}]}}})
        assert bad.status_code == 422 and bad.json()["field"] == "alwayson_scripts.controlnet.args[0].weight"
    image = Image.open(io.BytesIO(base64.b64decode(r.json()["images"][0])))
    assert np.array_equal(np.asarray(image.convert("RGB")), np.asarray(native.pil_images[0]))
    info = json.loads(r.json()["info"])
    assert info["extra_generation_params"]["ControlNet 0"].startswith("Module: none, Model: cn-sd15-a [")
    units = infotext_to_request(parse_infotext(image.info["parameters"]))["controls"]
    assert len(units) == 1
    assert {k: units[0][k] for k in ("module", "weight", "guidance_start", "guidance_end", "control_mode",
                                     "resize_mode", "pixel_perfect", "processor_res")} == {
        "module": "none", "weight": 0.75, "guidance_start": 0.0, "guidance_end": 0.6, "control_mode": "prompt",
        "resize_mode": "just_resize", "pixel_perfect": False, "processor_res": 512}
    assert units[0]["model"].startswith("cn-sd15-a [")
