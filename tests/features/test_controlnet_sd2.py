"""ControlNets on SD 2.x: the sd2 engine runs Diffusers' StableDiffusionControlNetPipeline over its own (v-prediction)
components; pixels equal that pipeline built here with the scheduler from Diffusers' classes. SD 2.x ControlNets are
told from SD 1.5's by their linear attention projections (or a 1024 context): folder and original-layout file."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from diffusers import ControlNetModel, StableDiffusionControlNetPipeline, UNet2DConditionModel
from PIL import Image, ImageDraw

from sdcodex.core.errors import ValidationError
from sdcodex.models.detect import detect_path
from tests.conftest import png_b64
from tests.helpers.controlnet_export import export_controlnet
from tests.helpers.sampler_reference import reference_scheduler

BASE = {"prompt": "a red fox", "negative_prompt": "blurry", "width": 64, "height": 64, "steps": 2, "cfg_scale": 6.0,
        "seed": 77, "sampler": "Euler", "scheduler": "Automatic"}


def _woken(unet: UNet2DConditionModel, seed: int) -> ControlNetModel:
    net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # a ControlNet made from a UNet starts with zero convolutions (no effect)
        for name, param in net.named_parameters():
            if name.startswith(("controlnet_down_blocks", "controlnet_mid_block")):
                param.copy_(torch.randn(param.shape, generator=gen) * 0.05)
    return net.eval()


@pytest.fixture(scope="module")
def root(demo_models_dir, tmp_path_factory):
    from sdcodex.models.demo import build_demo_model

    root = tmp_path_factory.mktemp("cn-sd2")
    os.symlink(demo_models_dir / "demo" / "sd15-demo", root / "sd15-demo")
    build_demo_model("sd2", root)
    _woken(UNet2DConditionModel.from_pretrained(root / "sd2-demo" / "unet"), 1).save_pretrained(
        root / "ControlNet" / "cn-sd2")
    sd15 = _woken(UNet2DConditionModel.from_pretrained(demo_models_dir / "demo" / "sd15-demo" / "unet"), 2)
    sd15.save_pretrained(root / "ControlNet" / "cn-sd15")
    return root


def test_sd2_controlnet_equals_diffusers_and_is_told_from_sd15(root, tmp_path):
    from sdcodex.runtime import LocalModels, build_orchestrator

    models = LocalModels(root)
    orch = build_orchestrator(models=models, outdir=tmp_path / "out", device="cpu")
    image = Image.new("RGB", (64, 64))
    ImageDraw.Draw(image).rectangle((8, 8, 40, 56), fill=(255, 255, 255))
    req = {"task": "txt2img", "model": "sd2-demo", **BASE}
    ours = orch.run({**req, "controls": [{"image": png_b64(image), "model": "cn-sd2", "weight": 0.9,
                                          "guidance_end": 0.5}]})
    model = models.load(models.resolve("sd2-demo"))
    assert model.scheduler_config["prediction_type"] == "v_prediction"
    net = ControlNetModel.from_pretrained(root / "ControlNet" / "cn-sd2").eval()
    pipe = StableDiffusionControlNetPipeline(**{k: model.components[k] for k in
                                                ("vae", "text_encoder", "tokenizer", "unet")},
                                             controlnet=net, safety_checker=None, feature_extractor=None,
                                             requires_safety_checker=False,
                                             scheduler=reference_scheduler("Euler", "Automatic",
                                                                           dict(model.scheduler_config), flow=False))
    pipe.set_progress_bar_config(disable=True)
    ref = pipe(prompt=BASE["prompt"], negative_prompt=BASE["negative_prompt"], image=image, width=64, height=64,
               num_inference_steps=2, guidance_scale=6.0, controlnet_conditioning_scale=0.9,
               control_guidance_end=0.5, generator=torch.Generator("cpu").manual_seed(BASE["seed"])).images[0]
    diff = np.abs(np.asarray(ours.pil_images[0], dtype=int) - np.asarray(ref, dtype=int)).max()
    assert diff <= 1, diff
    assert not np.array_equal(np.asarray(ours.pil_images[0]), np.asarray(orch.run(req).pil_images[0]))

    with pytest.raises(ValidationError) as e:  # an SD 1.5 ControlNet on SD 2.x
        orch.run({**req, "controls": [{"image": png_b64(image), "model": "cn-sd15"}]})
    assert e.value.field == "controls[0].model" and "sd15" in str(e.value)

    assert detect_path(root / "ControlNet" / "cn-sd2").family.value == "sd2"
    assert detect_path(root / "ControlNet" / "cn-sd15").family.value == "sd15"
    single = tmp_path / "control_sd21_tiny.safetensors"
    export_controlnet(net, single)
    assert detect_path(single).family.value == "sd2"
    from sdcodex.models.controlnet import load_controlnet
    assert load_controlnet(single).config.use_linear_projection is True
