"""T2I-Adapters through `controls`: pixels equal Diffusers' StableDiffusionAdapterPipeline (one adapter, MultiAdapter)
and StableDiffusionXLAdapterPipeline (adapter_conditioning_factor from guidance_end), a light (colour) adapter
with the t2ia_color_grid module, on tiny components with the scheduler built here from Diffusers' classes;
TencentARC-layout full and light files load to the same weights; detection
and the refusals (mixing with ControlNets, img2img, guidance start, prompt editing)."""
from __future__ import annotations

import inspect
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import (ControlNetModel, MultiAdapter, StableDiffusionAdapterPipeline, StableDiffusionPipeline,
                       StableDiffusionXLAdapterPipeline, T2IAdapter, UNet2DConditionModel)
from PIL import Image, ImageDraw
from safetensors.torch import save_file

from sdcodex.core.errors import ValidationError
from sdcodex.models.detect import detect_path
from tests.conftest import png_b64
from tests.helpers.sampler_reference import reference_scheduler

BASE = {"prompt": "a red fox", "negative_prompt": "blurry", "width": 64, "height": 64, "steps": 2, "cfg_scale": 6.0,
        "seed": 77, "sampler": "Euler", "scheduler": "Automatic"}


def _adapter(seed: int, **kw) -> T2IAdapter:
    torch.manual_seed(seed)
    return T2IAdapter(**kw).eval()


@pytest.fixture(scope="module")
def root(demo_models_dir, tmp_path_factory) -> Path:
    """The demo models, an SD1.5 model whose first UNet block has cross-attention (as SD1.5's: the adapter's
    first feature meets it before any downsampling) and tiny adapters under models/ControlNet."""
    root = tmp_path_factory.mktemp("t2i-models")
    os.symlink(demo_models_dir / "demo", root / "demo")
    pipe = StableDiffusionPipeline.from_pretrained(demo_models_dir / "demo" / "sd15-demo")
    torch.manual_seed(3)
    pipe.unet = UNet2DConditionModel(block_out_channels=(32, 64), layers_per_block=1, sample_size=32,
                                     cross_attention_dim=32, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                     up_block_types=("UpBlock2D", "CrossAttnUpBlock2D")).eval()
    pipe.save_pretrained(root / "sd15-adapt")
    folder = root / "ControlNet"
    ControlNetModel.from_unet(pipe.unet, conditioning_embedding_out_channels=(16, 32)).save_pretrained(folder / "cn")
    # the demo VAE scales by 2: the adapter's first feature must land on the 32 px latent
    sd15 = dict(in_channels=3, channels=[32, 64], num_res_blocks=1, downscale_factor=2, adapter_type="full_adapter")
    _adapter(1, **sd15).save_pretrained(folder / "t2i-sd15-a")
    _adapter(2, **sd15).save_pretrained(folder / "t2i-sd15-b")
    # SDXL's UNet adds the first feature after its first (plain) block has halved the latent: 16 px from 64 px
    _adapter(4, in_channels=3, channels=[32, 64, 64, 64], num_res_blocks=1, downscale_factor=4,
             adapter_type="full_adapter_xl").save_pretrained(folder / "t2i-sdxl")
    # TencentARC's SD1.5 sketch layout (v2: four levels, two resnets each, 1 x 64 unshuffled input), tiny widths
    sketch = _adapter(5, in_channels=1, channels=[8, 16, 16, 16], num_res_blocks=2, downscale_factor=8)
    original = {}
    for key, value in sketch.state_dict().items():
        parts = key.split(".")
        if parts[1] == "conv_in":
            original[".".join(parts[1:])] = value
        elif parts[3] == "in_conv":
            original[f"body.{int(parts[2]) * 2}.{'.'.join(parts[3:])}"] = value
        else:
            original[f"body.{int(parts[2]) * 2 + int(parts[4])}.{'.'.join(parts[5:])}"] = value
    save_file({k: v.contiguous() for k, v in original.items()}, str(folder / "t2iadapter_sketch_tiny.safetensors"))
    sketch.save_pretrained(root / ".reference" / "sketch")
    # a light (colour) adapter: a Diffusers folder that runs, and TencentARC's layout of one at real unshuffle 8
    _adapter(6, in_channels=3, channels=[32, 64], num_res_blocks=1, downscale_factor=2,
             adapter_type="light_adapter").save_pretrained(folder / "t2i-sd15-light")
    color = _adapter(7, in_channels=3, channels=[8, 16, 16], num_res_blocks=2, downscale_factor=8,
                     adapter_type="light_adapter")
    save_file({k.replace("adapter.", "", 1).replace(".resnets.", ".body.", 1): v.contiguous()
               for k, v in color.state_dict().items()}, str(folder / "t2iadapter_color_tiny.safetensors"))
    color.save_pretrained(root / ".reference" / "color")
    return root


@pytest.fixture(scope="module")
def models(root):
    from sdcodex.runtime import LocalModels

    return LocalModels(root)


@pytest.fixture()
def orch(models, tmp_path):
    from sdcodex.runtime import build_orchestrator

    return build_orchestrator(models=models, outdir=tmp_path / "out", device="cpu")


@pytest.fixture(scope="module")
def maps():
    a = Image.new("RGB", (64, 64))
    ImageDraw.Draw(a).rectangle((8, 8, 40, 56), fill=(255, 255, 255))
    b = Image.new("RGB", (64, 64), (30, 30, 30))
    ImageDraw.Draw(b).ellipse((16, 4, 60, 48), outline=(250, 250, 250), width=3)
    return a, b


def _reference(pipeline_cls, model, adapter, **kw):
    params = inspect.signature(pipeline_cls.__init__).parameters
    init = {n: model.components[n] for n in params if n in model.components}
    init.update({n: None for n, p in params.items()
                 if n not in init and n != "self" and p.default is inspect.Parameter.empty})
    init["adapter"] = adapter
    if "requires_safety_checker" in params:
        init["requires_safety_checker"] = False
    pipe = pipeline_cls(**init)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = reference_scheduler("Euler", "Automatic", dict(model.scheduler_config), flow=False)
    return pipe(prompt=BASE["prompt"], negative_prompt=BASE["negative_prompt"], width=64, height=64,
                num_inference_steps=2, guidance_scale=6.0, generator=torch.Generator("cpu").manual_seed(BASE["seed"]),
                **kw).images[0]


def _close(ours: Image.Image, theirs: Image.Image) -> None:
    diff = np.abs(np.asarray(ours, dtype=int) - np.asarray(theirs, dtype=int)).max()
    assert diff <= 1, diff


def _unit(image, model, **kw):
    return {"image": png_b64(image), "model": model, **kw}


def test_adapters_equal_diffusers_adapter_pipelines(orch, models, root, maps):
    a, b = maps
    sd15 = models.load(models.resolve("sd15-adapt"))
    net_a = T2IAdapter.from_pretrained(root / "ControlNet" / "t2i-sd15-a").eval()
    net_b = T2IAdapter.from_pretrained(root / "ControlNet" / "t2i-sd15-b").eval()
    req = {"task": "txt2img", "model": "sd15-adapt", **BASE}

    one = orch.run({**req, "controls": [_unit(a, "t2i-sd15-a", weight=0.8)]})
    _close(one.pil_images[0], _reference(StableDiffusionAdapterPipeline, sd15, net_a, image=a,
                                         adapter_conditioning_scale=0.8))
    plain = orch.run(req).pil_images[0]
    assert not np.array_equal(np.asarray(plain), np.asarray(one.pil_images[0]))  # the adapter steered the image
    assert one.info["controls"][0]["model"].startswith("t2i-sd15-a")
    assert one.info["infotext_fields"]["extra"]["ControlNet 0"].startswith("Module: none, Model: t2i-sd15-a")

    two = orch.run({**req, "controls": [_unit(a, "t2i-sd15-a", weight=0.7), _unit(b, "t2i-sd15-b", weight=1.2)]})
    _close(two.pil_images[0], _reference(StableDiffusionAdapterPipeline, sd15, MultiAdapter([net_a, net_b]),
                                         image=[a, b], adapter_conditioning_scale=[0.7, 1.2]))

    net_light = T2IAdapter.from_pretrained(root / "ControlNet" / "t2i-sd15-light").eval()
    light = orch.run({**req, "controls": [_unit(b, "t2i-sd15-light", module="t2ia_color_grid", processor_res=64)]})
    from sdcodex.engines.preprocessors import run_preprocessor
    grid = run_preprocessor("t2ia_color_grid", b, resolution=64)
    _close(light.pil_images[0], _reference(StableDiffusionAdapterPipeline, sd15, net_light, image=grid))

    hires = orch.run({**req, "controls": [_unit(a, "t2i-sd15-a")],
                      "hires": {"scale": 1.5, "upscaler": "Latent", "denoising_strength": 0.5}})
    assert hires.pil_images[0].size == (96, 96)
    assert any("first pass only" in w for w in hires.info["warnings"])

    sdxl = models.load(models.resolve("sdxl-demo"))
    net_xl = T2IAdapter.from_pretrained(root / "ControlNet" / "t2i-sdxl").eval()
    xl = orch.run({"task": "txt2img", "model": "sdxl-demo", **BASE,
                   "controls": [_unit(b, "t2i-sdxl", weight=1.1, guidance_end=0.5)]})
    _close(xl.pil_images[0], _reference(StableDiffusionXLAdapterPipeline, sdxl, net_xl, image=b,
                                        adapter_conditioning_scale=1.1, adapter_conditioning_factor=0.5))


def test_adapter_files_detect_load_and_bad_units(orch, root, maps):
    from sdcodex.models.controlnet import load_controlnet

    folder = detect_path(root / "ControlNet" / "t2i-sdxl")
    assert (folder.kind, folder.family.value, folder.variant["adapter"]) == ("controlnet", "sdxl", True)
    single = root / "ControlNet" / "t2iadapter_sketch_tiny.safetensors"
    found = detect_path(single)
    assert (found.kind, found.family.value, found.variant["layout"]) == ("controlnet", "sd15", "original")
    public = lambda config: {k: v for k, v in dict(config).items() if not k.startswith("_")}  # noqa: E731
    for file, ref_name, layout in ((single, "sketch", "original"),
                                   (root / "ControlNet" / "t2iadapter_color_tiny.safetensors", "color",
                                    "original_light")):
        found = detect_path(file)
        assert (found.kind, found.family.value, found.variant["layout"]) == ("controlnet", "sd15", layout)
        loaded = load_controlnet(file)
        reference = T2IAdapter.from_pretrained(root / ".reference" / ref_name)
        assert public(loaded.config) == public(reference.config)
        ref_state = reference.state_dict()
        assert loaded.state_dict().keys() == ref_state.keys()
        assert all(torch.equal(v, ref_state[k]) for k, v in loaded.state_dict().items())

    a, _ = maps
    req = {"task": "txt2img", "model": "sd15-adapt", **BASE}
    cases = [
        ({**req, "controls": [_unit(a, "t2i-sd15-a"), _unit(a, "cn")]}, "controls[1].model"),
        ({**req, "task": "img2img", "init_image": png_b64(a), "controls": [_unit(a, "t2i-sd15-a")]}, "controls"),
        ({**req, "controls": [_unit(a, "t2i-sd15-a", guidance_start=0.2)]}, "controls[0].guidance_start"),
        ({**req, "controls": [_unit(a, "t2i-sd15-a", guidance_end=0.5)]}, "controls[0].guidance_end"),
        ({**req, "controls": [_unit(a, "t2i-sd15-a", control_mode="prompt")]}, "controls[0].control_mode"),
        ({**req, "prompt": "a [fox:house:0.5]", "controls": [_unit(a, "t2i-sd15-a")]}, "prompt"),
        ({**req, "controls": [_unit(a, "t2i-sd15-a")], "ip_adapter": {"model": "any", "images": [png_b64(a)]}},
         "ip_adapter"),
    ]
    for request, field in cases:
        with pytest.raises(ValidationError) as e:
            orch.run(request)
        assert e.value.field == field, (field, e.value.field, str(e.value))
