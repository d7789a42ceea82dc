"""Qwen-Image and Z-Image ControlNets through `controls`: pixels equal Diffusers' QwenImageControlNetPipeline (one
unit, and two units over one net as QwenImageMultiControlNetModel) and ZImageControlNetPipeline on the tiny demo
models, with ControlNets built here from config (one layer) and the schedulers built here from Diffusers' class;
detection of each ControlNet folder by its class; a ControlNet of another family, units naming different Qwen-Image
nets and a Z-Image guidance window are refused by field."""
from __future__ import annotations

import pytest
import torch
from diffusers import (ControlNetModel, FlowMatchEulerDiscreteScheduler, QwenImageControlNetModel,
                       QwenImageControlNetPipeline, QwenImageMultiControlNetModel, ZImageControlNetModel,
                       ZImageControlNetPipeline)
from PIL import Image, ImageDraw

from sdcodex.core.errors import ValidationError
from sdcodex.models.demo_qwen import QWEN_IMAGE_SCHEDULER
from sdcodex.models.detect import detect_path
from tests.conftest import png_b64
from tests.engines.test_z_image import assert_same

QWEN = {"task": "txt2img", "model": "qwen-image-demo", "prompt": "a lighthouse", "negative_prompt": "blurry",
        "width": 64, "height": 64, "steps": 3, "cfg_scale": 4.0, "seed": 7}


def _wake(net: torch.nn.Module, seed: int, prefixes: tuple[str, ...]) -> torch.nn.Module:
    """Random weights for the parts a new ControlNet starts at zero (no effect), so that the control shows."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in net.named_parameters():
            if name.startswith(prefixes):
                param.copy_(torch.randn(param.shape, generator=gen) * 0.05)
    return net.eval()


def _maps() -> tuple[Image.Image, Image.Image]:
    a = Image.new("RGB", (64, 64))
    ImageDraw.Draw(a).rectangle((8, 8, 40, 56), fill=(255, 255, 255))
    b = Image.new("RGB", (64, 64), (30, 30, 30))
    ImageDraw.Draw(b).ellipse((16, 4, 60, 48), outline=(250, 250, 250), width=3)
    return a, b


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from sdcodex.models.demo import build_demo_model
    from sdcodex.runtime import LocalModels, build_orchestrator

    root = tmp_path_factory.mktemp("cn-new")
    build_demo_model("qwen_image", root)
    build_demo_model("z_image", root)
    models = LocalModels(root)
    qwen = models.load(models.resolve("qwen-image-demo"))
    for i, name in enumerate(("cn-qwen-a", "cn-qwen-b")):
        net = QwenImageControlNetModel.from_transformer(qwen.components["transformer"], num_layers=1,
                                                        attention_head_dim=16, num_attention_heads=2)
        _wake(net, i + 1, ("controlnet_blocks", "controlnet_x_embedder")).save_pretrained(root / "ControlNet" / name)
    z = models.load(models.resolve("z-image-demo")).components["transformer"].config
    # alibaba-pai's Fun-Controlnet-Union layout in small: control blocks at layers 0 and 1, the control noise refiner
    _wake(ZImageControlNetModel(control_layers_places=[0, 1], control_refiner_layers_places=[0],
                                control_in_dim=z.in_channels, add_control_noise_refiner="control_noise_refiner",
                                dim=z.dim, n_refiner_layers=z.n_refiner_layers, n_heads=z.n_heads,
                                n_kv_heads=z.n_kv_heads), 3, ("control_",)).save_pretrained(root / "ControlNet" / "cn-z")
    # an SD1.5 ControlNet (another family), as small as the class allows
    ControlNetModel(block_out_channels=(8, 16), layers_per_block=1, cross_attention_dim=8, attention_head_dim=2,
                    norm_num_groups=4, conditioning_embedding_out_channels=(4, 8),
                    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D")).save_pretrained(root / "ControlNet" / "cn-sd15")
    models.refresh()
    return root, models, qwen, build_orchestrator(models=models, outdir=root / "out", device="cpu")


def _qwen_reference(model, controlnet, **kw):
    pipe = QwenImageControlNetPipeline(**{n: model.components[n] for n in ("transformer", "vae", "text_encoder",
                                                                          "tokenizer")},
                                       controlnet=controlnet,
                                       scheduler=FlowMatchEulerDiscreteScheduler(**QWEN_IMAGE_SCHEDULER))
    pipe.set_progress_bar_config(disable=True)
    return pipe(prompt=QWEN["prompt"], negative_prompt=QWEN["negative_prompt"], num_inference_steps=3,
                true_cfg_scale=4.0, width=64, height=64, generator=torch.Generator("cpu").manual_seed(7),
                **kw).images[0]


def test_qwen_image_controlnets_equal_diffusers(setup):
    root, models, model, orch = setup
    a, b = _maps()
    net_a = QwenImageControlNetModel.from_pretrained(root / "ControlNet" / "cn-qwen-a").eval()

    one = orch.run({**QWEN, "controls": [{"image": png_b64(a), "model": "cn-qwen-a", "weight": 0.8,
                                          "guidance_start": 0.2, "guidance_end": 0.7}]})
    assert_same(one.pil_images[0], _qwen_reference(model, net_a, control_image=a, controlnet_conditioning_scale=0.8,
                                                   control_guidance_start=0.2, control_guidance_end=0.7))
    assert one.pil_images[0].tobytes() != orch.run(QWEN).pil_images[0].tobytes()
    assert one.info["warnings"] == [] and one.info["controls"][0]["guidance_start"] == 0.2
    two = orch.run({**QWEN, "controls": [{"image": png_b64(a), "model": "cn-qwen-a", "weight": 0.7},
                                         {"image": png_b64(b), "model": "cn-qwen-a", "weight": 1.2,
                                          "guidance_end": 0.5}]})
    assert_same(two.pil_images[0], _qwen_reference(model, QwenImageMultiControlNetModel([net_a]), control_image=[a, b],
                                                   controlnet_conditioning_scale=[0.7, 1.2],
                                                   control_guidance_start=[0.0, 0.0], control_guidance_end=[1.0, 0.5]))

    found = detect_path(root / "ControlNet" / "cn-qwen-a")
    assert (found.kind, found.family.value) == ("controlnet", "qwen_image")
    unit = {"image": png_b64(a), "model": "cn-qwen-a"}
    for controls, field in (([{**unit, "model": "cn-sd15"}], "controls[0].model"),
                            ([unit, {**unit, "model": "cn-qwen-b"}], "controls[1].model")):
        with pytest.raises(ValidationError) as e:
            orch.run({**QWEN, "controls": controls})
        assert e.value.field == field


def test_z_image_controlnet_equals_diffusers(setup):
    root, models, _, orch = setup
    model = models.load(models.resolve("z-image-demo"))
    a, _ = _maps()
    request = {"task": "txt2img", "model": "z-image-demo", "prompt": "a lighthouse", "negative_prompt": "blurry",
               "width": 64, "height": 64, "steps": 3, "cfg_scale": 3.0, "seed": 5}
    ours = orch.run({**request, "controls": [{"image": png_b64(a), "model": "cn-z", "weight": 0.8}]})
    pipe = ZImageControlNetPipeline(**{n: model.components[n] for n in ("transformer", "vae", "text_encoder",
                                                                       "tokenizer")},
                                    controlnet=ZImageControlNetModel.from_pretrained(root / "ControlNet" / "cn-z"),
                                    # Tongyi-MAI/Z-Image-Turbo's scheduler, built from Diffusers' class here
                                    scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0,
                                                                              use_dynamic_shifting=False))
    pipe.set_progress_bar_config(disable=True)
    ref = pipe(prompt="a lighthouse", negative_prompt="blurry", guidance_scale=2.0, width=64, height=64,
               num_inference_steps=3, control_image=a, controlnet_conditioning_scale=0.8,
               generator=torch.Generator("cpu").manual_seed(5)).images[0]
    assert_same(ours.pil_images[0], ref)
    assert ours.pil_images[0].tobytes() != orch.run(request).pil_images[0].tobytes()
    assert ours.info["warnings"] == []

    found = detect_path(root / "ControlNet" / "cn-z")
    assert (found.kind, found.family.value) == ("controlnet", "z_image")
    unit = {"image": png_b64(a), "model": "cn-z"}
    for controls, field in (([{**unit, "model": "cn-qwen-a"}], "controls[0].model"),
                            ([{**unit, "guidance_end": 0.5}], "controls[0].guidance_end"),
                            ([unit, unit], "controls")):
        with pytest.raises(ValidationError) as e:
            orch.run({**request, "controls": controls})
        assert e.value.field == field
