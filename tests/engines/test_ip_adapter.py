"""IP-Adapter through the one path: pixels equal Diffusers' own pipeline with the same tiny adapter and CLIP image
encoder (built here), the UNet is put back afterwards, infotext records it, and bad input names its field."""
from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
from safetensors.torch import save_file

from sdcodex.core.errors import ValidationError

from tests.conftest import png_b64
from tests.helpers.sampler_reference import reference_scheduler

BASE = {"prompt": "a red fox in snow", "negative_prompt": "blurry", "width": 64, "height": 64, "steps": 2,
        "cfg_scale": 6.5, "seed": 77, "sampler": "Euler", "scheduler": "Automatic"}


def _tiny_encoder(seed: int):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection
    torch.manual_seed(seed)
    config = CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                              image_size=32, patch_size=8, projection_dim=16)
    return CLIPVisionModelWithProjection(config).eval()


def _tiny_adapter(unet, embed_dim: int, seed: int) -> dict[str, torch.Tensor]:
    """A flat h94-layout IP-Adapter for `unet`: image_proj (4 tokens) + to_k_ip/to_v_ip per cross-attention."""
    g = torch.Generator().manual_seed(seed)
    cross = unet.config.cross_attention_dim
    rand = lambda *shape: torch.randn(*shape, generator=g) * 0.3  # noqa: E731
    flat = {"image_proj.proj.weight": rand(4 * cross, embed_dim), "image_proj.proj.bias": rand(4 * cross),
            "image_proj.norm.weight": 1 + rand(cross), "image_proj.norm.bias": rand(cross)}
    key_id = 1
    for name, proc in unet.attn_processors.items():
        if name.endswith("attn1.processor"):
            continue
        if name.startswith("mid_block"):
            hidden = unet.config.block_out_channels[-1]
        elif name.startswith("up_blocks"):
            hidden = list(reversed(unet.config.block_out_channels))[int(name[len("up_blocks.")])]
        else:
            hidden = unet.config.block_out_channels[int(name[len("down_blocks.")])]
        flat[f"ip_adapter.{key_id}.to_k_ip.weight"] = rand(hidden, cross)
        flat[f"ip_adapter.{key_id}.to_v_ip.weight"] = rand(hidden, cross)
        key_id += 2
    return flat


@pytest.fixture(scope="session")
def ip_setup(demo_models_dir, local_models, tmp_path_factory):
    """A models folder: the demo models (linked) + tiny IP-Adapters for sd15-demo and sdxl-demo + one encoder."""
    root = tmp_path_factory.mktemp("ipmodels")
    (root / "demo").symlink_to(demo_models_dir / "demo", target_is_directory=True)
    base = local_models
    encoder = _tiny_encoder(5)
    (root / "clip_vision").mkdir()
    save_file({k: v.contiguous() for k, v in encoder.state_dict().items()}, root / "clip_vision" / "tiny-vit.safetensors")
    (root / "clip_vision" / "tiny-vit.json").write_text(encoder.config.to_json_string())
    (root / "ipadapter").mkdir()
    flats = {}
    for name, demo in (("ip-tiny-sd15", "sd15-demo"), ("ip-tiny-sdxl", "sdxl-demo")):
        unet = base.load(base.resolve(demo)).components["unet"]
        flats[name] = _tiny_adapter(unet, encoder.config.projection_dim, seed=len(name))
        save_file(flats[name], root / "ipadapter" / f"{name}.safetensors")
    return root, encoder, flats


@pytest.fixture(scope="module")
def ip_orchestrator(ip_setup, tmp_path_factory):
    from sdcodex.runtime import LocalModels, build_orchestrator
    return build_orchestrator(models=LocalModels(ip_setup[0]), outdir=tmp_path_factory.mktemp("out"), device="cpu")


def _reference(pipeline_cls, model, encoder, flat, image, scale):
    params = inspect.signature(pipeline_cls.__init__).parameters
    init = {n: model.components[n] for n in params if n in model.components}
    init.update({n: None for n, p in params.items()
                 if n not in init and n != "self" and p.default is inspect.Parameter.empty})
    init["image_encoder"] = encoder
    if "requires_safety_checker" in params:
        init["requires_safety_checker"] = False
    pipe = pipeline_cls(**init)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = reference_scheduler("Euler", "Automatic", dict(model.scheduler_config), flow=False)
    state = {"image_proj": {}, "ip_adapter": {}}
    for key, value in flat.items():
        head, _, rest = key.partition(".")
        state[head][rest] = value
    pipe.load_ip_adapter(state, subfolder="", weight_name="", image_encoder_folder=None)
    pipe.set_ip_adapter_scale(scale)
    try:
        return pipe(prompt=BASE["prompt"], negative_prompt=BASE["negative_prompt"], width=64, height=64,
                    num_inference_steps=2, guidance_scale=6.5, ip_adapter_image=image,
                    generator=torch.Generator("cpu").manual_seed(BASE["seed"])).images[0]
    finally:
        pipe.unload_ip_adapter()


@pytest.mark.parametrize("demo,adapter,pipeline_cls", [("sd15-demo", "ip-tiny-sd15", StableDiffusionPipeline),
                                                        ("sdxl-demo", "ip-tiny-sdxl", StableDiffusionXLPipeline)])
def test_ip_adapter_pixels_equal_diffusers_and_the_unet_is_restored(ip_setup, ip_orchestrator, sample_image,
                                                                    demo, adapter, pipeline_cls):
    root, encoder, flats = ip_setup
    plain = ip_orchestrator.run({"task": "txt2img", "model": demo, **BASE}) if demo == "sd15-demo" else None
    req = {"task": "txt2img", "model": demo, **BASE,
           "ip_adapter": {"model": adapter, "images": [png_b64(sample_image)], "scale": 0.8}}
    result = ip_orchestrator.run(req)
    model = ip_orchestrator.models.load(ip_orchestrator.models.resolve(demo))
    ref = _reference(pipeline_cls, model, encoder, flats[adapter], sample_image, 0.8)
    ours = np.asarray(result.pil_images[0]).astype(int)
    assert np.abs(ours - np.asarray(ref).astype(int)).max() <= 1
    assert result.info["ip_adapter"] == {"model": adapter, "image_encoder": "tiny-vit", "scale": 0.8, "images": 1}
    from sdcodex.media.infotext import build_infotext
    text = build_infotext(result.info["infotext_fields"])
    assert f"IP-Adapter: {adapter} [" in text and "IP-Adapter scale: 0.8" in text and "IP-Adapter encoder: tiny-vit" in text
    if plain is not None:
        assert not np.array_equal(ours, np.asarray(plain.pil_images[0]))  # the adapter changed the image
    unet = model.components["unet"]  # put back: no IP-Adapter processors, no image projection, no encoder
    assert unet.encoder_hid_proj is None and unet.config.encoder_hid_dim_type is None
    assert not any("IPAdapter" in type(p).__name__ for p in unet.attn_processors.values())
    assert all(getattr(p, "image_encoder", None) is None for p in model.__dict__.get("_pipelines", {}).values())


def test_ip_adapter_bad_input_names_the_field(ip_setup, ip_orchestrator, sample_image):
    good = png_b64(sample_image)
    cases = [
        ({"model": "nope", "images": [good]}, "ip_adapter.model"),
        ({"model": "ip-tiny-sd15", "images": ["%%%"]}, "ip_adapter.images[0]"),
        ({"model": "ip-tiny-sd15", "images": []}, "ip_adapter.images"),
        ({"model": "ip-tiny-sd15", "images": [good], "scale": 3.0}, "ip_adapter.scale"),
        ({"model": "ip-tiny-sd15", "images": [good], "weight": 1.0}, "ip_adapter.weight"),
        ({"model": "ip-tiny-sdxl", "images": [good]}, "ip_adapter.model"),       # projects into SDXL's width
        ({"model": "ip-tiny-sd15", "images": [good], "image_encoder": "nope"}, "ip_adapter.image_encoder"),
    ]
    for spec, field in cases:
        with pytest.raises(ValidationError) as e:
            ip_orchestrator.run({"task": "txt2img", "model": "sd15-demo", **BASE, "ip_adapter": spec})
        assert e.value.field == field, (spec, e.value)
    from sdcodex.core.params import parse_params
    with pytest.raises(ValidationError) as e:  # an engine without IP-Adapter support
        parse_params("sd3", "txt2img", {"task": "txt2img", "prompt": "x", "width": 64, "height": 64,
                                         "ip_adapter": {"model": "ip-tiny-sd15", "images": [good]}},
                     image_loader=lambda value, field: sample_image)
    assert e.value.field == "ip_adapter"
    unet = ip_orchestrator.models.load(ip_orchestrator.models.resolve("sd15-demo")).components["unet"]
    assert unet.encoder_hid_proj is None  # a failed load left nothing behind
    assert not any("IPAdapter" in type(p).__name__ for p in unet.attn_processors.values())


def test_detection_of_adapter_and_encoder_files(ip_setup):
    from sdcodex.models.inventory import Inventory
    inv = Inventory(ip_setup[0])
    kinds = {e.name: (e.kind, e.variant.get("cross_attention_dim")) for e in inv.scan()
             if e.kind in ("ip_adapter", "image_encoder")}
    assert kinds["tiny-vit"] == ("image_encoder", None)
    assert kinds["ip-tiny-sd15"][0] == "ip_adapter"


@pytest.mark.parametrize("hidden,layers,patch,image,proj", [(1280, 32, 14, 224, 1024), (1664, 48, 14, 224, 1280),
                                                            (1024, 24, 14, 224, 768)])
def test_encoder_config_from_the_shapes_of_known_towers(hidden, layers, patch, image, proj):
    """A single-file CLIP vision tower without a config: ViT-H/14, ViT-bigG/14, ViT-L/14 (built on the meta device,
    no memory) give back their own config from their shapes."""
    from sdcodex.models.build import empty_model
    from sdcodex.models.ip_adapter import KNOWN_TOWERS, encoder_config_from_shapes
    heads, intermediate, act = KNOWN_TOWERS[hidden]
    config = {"hidden_size": hidden, "intermediate_size": intermediate, "num_attention_heads": heads,
              "num_hidden_layers": layers, "patch_size": patch, "image_size": image, "hidden_act": act,
              "projection_dim": proj}
    shapes = {k: list(v.shape) for k, v in empty_model("CLIPVisionModelWithProjection", config).state_dict().items()}
    derived = encoder_config_from_shapes(shapes)
    assert {k: derived[k] for k in config} == config
    rebuilt = empty_model("CLIPVisionModelWithProjection", derived).state_dict()
    assert {k: list(v.shape) for k, v in rebuilt.items()} == shapes


def test_ip_adapter_with_a_controlnet_unit_equals_diffusers(ip_setup, ip_orchestrator, sample_image):
    """`controls` and `ip_adapter` together: the ControlNet pipeline carries the adapter (Diffusers'
    StableDiffusionControlNetPipeline with the same tiny ControlNet, adapter and encoder as the reference)."""
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline
    root, encoder, flats = ip_setup
    model = ip_orchestrator.models.load(ip_orchestrator.models.resolve("sd15-demo"))
    torch.manual_seed(3)
    cn = ControlNetModel.from_unet(model.components["unet"], conditioning_embedding_out_channels=(16, 32))
    with torch.no_grad():  # a ControlNet made from a UNet starts with zero convolutions: wake them
        for name, param in cn.named_parameters():
            if name.startswith(("controlnet_down_blocks", "controlnet_mid_block")):
                param.copy_(torch.randn(param.shape) * 0.05)
    cn.eval().save_pretrained(root / "ControlNet" / "cn-ip-test")
    ip_orchestrator.models.refresh()
    result = ip_orchestrator.run({"task": "txt2img", "model": "sd15-demo", **BASE,
                                  "controls": [{"image": png_b64(sample_image), "model": "cn-ip-test"}],
                                  "ip_adapter": {"model": "ip-tiny-sd15", "images": [png_b64(sample_image)],
                                                 "scale": 0.8}})
    params = inspect.signature(StableDiffusionControlNetPipeline.__init__).parameters
    init = {n: model.components[n] for n in params if n in model.components}
    init.update({n: None for n, p in params.items()
                 if n not in init and n != "self" and p.default is inspect.Parameter.empty})
    init.update(controlnet=cn, image_encoder=encoder, requires_safety_checker=False)
    pipe = StableDiffusionControlNetPipeline(**init)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = reference_scheduler("Euler", "Automatic", dict(model.scheduler_config), flow=False)
    state = {"image_proj": {}, "ip_adapter": {}}
    for key, value in flats["ip-tiny-sd15"].items():
        head, _, rest = key.partition(".")
        state[head][rest] = value
    pipe.load_ip_adapter(state, subfolder="", weight_name="", image_encoder_folder=None)
    pipe.set_ip_adapter_scale(0.8)
    try:
        ref = pipe(prompt=BASE["prompt"], negative_prompt=BASE["negative_prompt"], image=sample_image, width=64,
                   height=64, num_inference_steps=2, guidance_scale=6.5, ip_adapter_image=sample_image,
                   generator=torch.Generator("cpu").manual_seed(BASE["seed"])).images[0]
    finally:
        pipe.unload_ip_adapter()
    diff = np.abs(np.asarray(result.pil_images[0]).astype(int) - np.asarray(ref).astype(int)).max()
    assert diff <= 1 and result.info["ip_adapter"]["model"] == "ip-tiny-sd15" and result.info["controls"]


def test_flux_xlabs_ip_adapter_equals_diffusers(ip_setup, sample_image, tmp_path_factory):
    """XLabs' FLUX IP-Adapter layout (ip_adapter_proj_model + double_blocks.<i>.processor...): pixels equal Diffusers'
    FluxPipeline with `load_ip_adapter` reading the same file itself (its own XLabs conversion); the transformer is
    put back; detection says FLUX; a second image is refused."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline
    from transformers import CLIPImageProcessor

    from sdcodex.models.demo import build_demo_model
    from sdcodex.models.detect import detect_path
    from sdcodex.runtime import LocalModels, build_orchestrator

    root, encoder, _ = ip_setup
    flux_root = tmp_path_factory.mktemp("ipflux")
    build_demo_model("flux", flux_root)
    (flux_root / "clip_vision").symlink_to(root / "clip_vision", target_is_directory=True)
    orch = build_orchestrator(models=LocalModels(flux_root), outdir=flux_root / "out", device="cpu")
    model = orch.models.load(orch.models.resolve("flux-dev-demo"))
    transformer = model.components["transformer"]
    joint, inner = transformer.config.joint_attention_dim, transformer.inner_dim
    g = torch.Generator().manual_seed(11)
    rand = lambda *shape: torch.randn(*shape, generator=g) * 0.3  # noqa: E731
    flat = {"ip_adapter_proj_model.proj.weight": rand(4 * joint, encoder.config.projection_dim),
            "ip_adapter_proj_model.proj.bias": rand(4 * joint),
            "ip_adapter_proj_model.norm.weight": 1 + rand(joint), "ip_adapter_proj_model.norm.bias": rand(joint)}
    for i in range(transformer.config.num_layers):
        for kv in ("k", "v"):
            flat[f"double_blocks.{i}.processor.ip_adapter_double_stream_{kv}_proj.weight"] = rand(inner, joint)
            flat[f"double_blocks.{i}.processor.ip_adapter_double_stream_{kv}_proj.bias"] = rand(inner)
    (flux_root / "ipadapter").mkdir()
    save_file(flat, flux_root / "ipadapter" / "ip-xlabs-tiny.safetensors")
    orch.models.refresh()
    found = detect_path(flux_root / "ipadapter" / "ip-xlabs-tiny.safetensors")
    assert (found.kind, found.family.value, found.variant["layout"]) == ("ip_adapter", "flux", "xlabs")

    req = {"task": "txt2img", "model": "flux-dev-demo", "prompt": "a lighthouse", "width": 64, "height": 64,
           "steps": 2, "seed": 77}
    result = orch.run({**req, "ip_adapter": {"model": "ip-xlabs-tiny", "images": [png_b64(sample_image)],
                                             "scale": 0.7}})
    params = inspect.signature(FluxPipeline.__init__).parameters
    pipe = FluxPipeline(**{n: model.components[n] for n in params if n in model.components
                           and n not in ("image_encoder", "feature_extractor")}, image_encoder=encoder, feature_extractor=CLIPImageProcessor(size=32, crop_size=32))
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(model.scheduler_config)
    pipe.load_ip_adapter(str(flux_root / "ipadapter"), weight_name="ip-xlabs-tiny.safetensors",
                         image_encoder_pretrained_model_name_or_path=None)
    pipe.set_ip_adapter_scale(0.7)
    try:
        ref = pipe(prompt="a lighthouse", width=64, height=64, num_inference_steps=2, guidance_scale=3.5,
                   ip_adapter_image=sample_image, generator=torch.Generator("cpu").manual_seed(77)).images[0]
    finally:
        pipe.unload_ip_adapter()
    ours = np.asarray(result.pil_images[0]).astype(int)
    assert np.abs(ours - np.asarray(ref).astype(int)).max() <= 1
    assert not np.array_equal(ours, np.asarray(orch.run(req).pil_images[0]))  # the adapter changed the image
    assert result.info["ip_adapter"]["model"] == "ip-xlabs-tiny"
    assert transformer.encoder_hid_proj is None
    assert not any("IPAdapter" in type(p).__name__ for p in transformer.attn_processors.values())
    with pytest.raises(ValidationError) as e:
        orch.run({**req, "ip_adapter": {"model": "ip-xlabs-tiny", "images": [png_b64(sample_image)] * 2}})
    assert e.value.field == "ip_adapter.images"
