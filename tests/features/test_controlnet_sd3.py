"""SD3 ControlNets through `controls`: pixels equal Diffusers' StableDiffusion3ControlNetPipeline (one unit and
SD3MultiControlNetModel) on the tiny SD3.5 demo with the scheduler built here (FlowMatch Euler, shift 3.0); detection
of an SD3ControlNetModel folder; img2img and the prompt/controlnet modes are refused by field. Diffusers' pipeline
samples the control image's VAE latents from torch's global RNG: the engine seeds it with the request's seed per
call, the reference here the same way."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import (FlowMatchEulerDiscreteScheduler, SD3ControlNetModel, SD3MultiControlNetModel,
                       StableDiffusion3ControlNetPipeline)
from PIL import Image, ImageDraw

from sdcodex.core.errors import ValidationError
from sdcodex.models.detect import detect_path
from tests.conftest import png_b64

REQ = {"task": "txt2img", "model": "sd35-large-demo", "prompt": "a lighthouse", "negative_prompt": "blurry",
       "width": 64, "height": 64, "steps": 3, "cfg_scale": 4.0, "seed": 7}


def _net(transformer, seed: int) -> SD3ControlNetModel:
    net = SD3ControlNetModel.from_transformer(transformer, num_layers=1, num_extra_conditioning_channels=0)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # the output blocks and the control embedding start at zero (no effect): wake them
        for name, param in net.named_parameters():
            if name.startswith(("controlnet_blocks", "pos_embed_input")):
                param.copy_(torch.randn(param.shape, generator=gen) * 0.05)
    return net.eval()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from sdcodex.models.demo import build_demo_model
    from sdcodex.runtime import LocalModels, build_orchestrator

    root = tmp_path_factory.mktemp("cn-sd3")
    build_demo_model("sd3", root)
    models = LocalModels(root)
    model = models.load(models.resolve("sd35-large-demo"))
    for i, name in enumerate(("cn-sd3-a", "cn-sd3-b")):
        _net(model.components["transformer"], i + 1).save_pretrained(root / "ControlNet" / name)
    models.refresh()
    return root, models, model, build_orchestrator(models=models, outdir=root / "out", device="cpu")


def _reference(model, controlnet, **kw):
    names = ("transformer", "vae", "text_encoder", "text_encoder_2", "text_encoder_3", "tokenizer", "tokenizer_2",
             "tokenizer_3")
    pipe = StableDiffusion3ControlNetPipeline(**{n: model.components[n] for n in names}, controlnet=controlnet,
                                              scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000,
                                                                                        shift=3.0))
    pipe.set_progress_bar_config(disable=True)
    torch.manual_seed(7)  # Diffusers samples the control image's VAE latents from the global RNG: ours seeds it so
    return pipe(prompt=REQ["prompt"], negative_prompt=REQ["negative_prompt"], num_inference_steps=3, guidance_scale=4.0,
                width=64, height=64, generator=torch.Generator("cpu").manual_seed(7), **kw).images[0]


def _close(ours, ref):
    diff = np.abs(np.asarray(ours, dtype=int) - np.asarray(ref, dtype=int)).max()
    assert diff <= 1, diff


def test_sd3_controlnets_equal_diffusers(setup):
    root, models, model, orch = setup
    a = Image.new("RGB", (64, 64))
    ImageDraw.Draw(a).rectangle((8, 8, 40, 56), fill=(255, 255, 255))
    b = Image.new("RGB", (64, 64), (30, 30, 30))
    ImageDraw.Draw(b).ellipse((16, 4, 60, 48), outline=(250, 250, 250), width=3)
    net_a = SD3ControlNetModel.from_pretrained(root / "ControlNet" / "cn-sd3-a").eval()
    net_b = SD3ControlNetModel.from_pretrained(root / "ControlNet" / "cn-sd3-b").eval()

    one = orch.run({**REQ, "controls": [{"image": png_b64(a), "model": "cn-sd3-a", "weight": 0.8,
                                         "guidance_end": 0.7}]})
    _close(one.pil_images[0], _reference(model, net_a, control_image=a, controlnet_conditioning_scale=0.8,
                                         control_guidance_end=0.7))
    assert not np.array_equal(np.asarray(one.pil_images[0]), np.asarray(orch.run(REQ).pil_images[0]))
    two = orch.run({**REQ, "controls": [{"image": png_b64(a), "model": "cn-sd3-a", "weight": 0.7},
                                        {"image": png_b64(b), "model": "cn-sd3-b", "weight": 1.2}]})
    _close(two.pil_images[0], _reference(model, SD3MultiControlNetModel([net_a, net_b]), control_image=[a, b],
                                         controlnet_conditioning_scale=[0.7, 1.2], control_guidance_start=[0.0, 0.0],
                                         control_guidance_end=[1.0, 1.0]))

    found = detect_path(root / "ControlNet" / "cn-sd3-a")
    assert (found.kind, found.family.value) == ("controlnet", "sd3")
    unit = {"image": png_b64(a), "model": "cn-sd3-a"}
    for request, field in (({**REQ, "task": "img2img", "init_image": png_b64(a), "controls": [unit]}, "controls"),
                           ({**REQ, "controls": [{**unit, "control_mode": "prompt"}]}, "controls[0].control_mode")):
        with pytest.raises(ValidationError) as e:
            orch.run(request)
        assert e.value.field == field
