"""Single-file FLUX and WAN transformers: the tiny demo transformers exported to the original layouts (BFL / Wan-Video,
with and without ComfyUI/A1111 prefixes) load through load_model and the orchestrator and give the same pixels as
the Diffusers folder; A14B experts pair by name; separate VAE / text-encoder files; bad paths (missing tokenizer
folder, text encoder of the wrong kind, missing components). Also HunyuanVideo 1.0 img2vid with its demo model."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

import sdcodex.engines  # noqa: F401  (registers engines)
from sdcodex.core.errors import ModelLoadError, TokenizerMissingError
from sdcodex.core.orchestrator import Orchestrator
from sdcodex.models import convert_flow as cv
from sdcodex.models import demo_video  # noqa: F401  (registers the demo builders)
from sdcodex.models.demo import build_demo_model
from sdcodex.models.flow_single import expert_pair
from sdcodex.models.loader import load_model
from sdcodex.runtime import LocalModels, MediaSaver
from tests.helpers import flow_export as fx

PREFIXES = {"bare": "", "comfy": "model.diffusion_model.", "dm": "diffusion_model.", "model": "model."}


@pytest.fixture(scope="module")
def demos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("flow-demos")
    for family in ("flux", "wan22_t2v_a14b", "wan22_ti2v_5b", "hunyuan_video_i2v"):
        build_demo_model(family, root)
    return root


def _module(folder: Path, sub: str):
    import diffusers
    import transformers

    cfg = json.loads((folder / sub / "config.json").read_text())
    name = cfg.get("_class_name") or cfg["architectures"][0]
    cls = getattr(diffusers, name, None) or getattr(transformers, name)
    return cls.from_pretrained(folder / sub)


@pytest.fixture(scope="module")
def with_base(demos, tmp_path_factory) -> Path:
    """A models folder with the Diffusers folders (bases) and single files exported from them."""
    root = tmp_path_factory.mktemp("models-with-base")
    for name in ("flux-dev-demo", "wan22-t2v-a14b-demo"):
        shutil.copytree(demos / name, root / name)
    flux = _module(demos / "flux-dev-demo", "transformer")
    for tag, prefix in PREFIXES.items():
        fx.export_flux(flux, root / "diffusion_models" / f"flux-tiny-{tag}.safetensors", prefix)
    for sub, mark in (("transformer", "high"), ("transformer_2", "low")):
        fx.export_wan(_module(demos / "wan22-t2v-a14b-demo", sub),
                      root / "diffusion_models" / f"wan2.2_t2v_{mark}_noise_tiny.safetensors")
    fx.export_plain(_module(demos / "flux-dev-demo", "vae"), root / "vae" / "flux-vae-tiny.safetensors")
    fx.export_clip(_module(demos / "flux-dev-demo", "text_encoder"), root / "text_encoders" / "clip-l-tiny.safetensors")
    fx.export_t5(_module(demos / "flux-dev-demo", "text_encoder_2"), root / "text_encoders" / "t5-tiny.safetensors")
    fx.export_t5(_module(demos / "wan22-t2v-a14b-demo", "text_encoder"),
                 root / "text_encoders" / "umt5-tiny.safetensors")
    return root


@pytest.fixture(scope="module")
def no_base(demos, tmp_path_factory) -> Path:
    """A models folder with only single files (no Diffusers folder to take components from)."""
    root = tmp_path_factory.mktemp("models-no-base")
    wan = demos / "wan22-ti2v-5b-demo"
    fx.export_wan(_module(wan, "transformer"), root / "diffusion_models" / "wan-ti2v-tiny.safetensors",
                  "model.diffusion_model.")
    fx.export_plain(_module(wan, "vae"), root / "vae" / "wan22-vae-tiny.safetensors")
    fx.export_t5(_module(wan, "text_encoder"), root / "text_encoders" / "umt5-tiny.safetensors")
    return root


def orchestrator(models, out: Path) -> Orchestrator:
    return Orchestrator(models, MediaSaver(out), image_loader=lambda value, field: Image.open(value).convert("RGB"))


class Preloaded:
    """ModelProvider that hands out one already-loaded model."""

    def __init__(self, loaded) -> None:
        self.loaded = loaded

    def resolve(self, ref, *, engine=None):
        return SimpleNamespace(name=ref, path=self.loaded.path, family=self.loaded.family.value)

    def load(self, entry, *, vae=None, precision="auto", params=None):
        return self.loaded

    def short_hash(self, entry):
        return None


def flux_req(model: str, **extra) -> dict:
    return {"engine": "flux", "task": "txt2img", "model": model, "prompt": "a lighthouse", "width": 64, "height": 64,
            "steps": 2, "seed": 3, "distilled_cfg_scale": 4.0, **extra}


def wan_req(engine: str, model: str, **extra) -> dict:
    return {"engine": engine, "task": "txt2vid", "model": model, "prompt": "a red fox", "steps": 2, "seed": 7,
            "num_frames": 5, "fps": 8.0, "width": 32, "height": 32, "cfg_scale": 4.0, **extra}


def same_frames(a, b) -> bool:
    return len(a) == len(b) and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b))


@pytest.fixture(scope="module")
def models_with_base(with_base) -> LocalModels:
    return LocalModels(with_base, device="cpu")


def test_flux_single_files_equal_the_folder(models_with_base, tmp_path):
    orch = orchestrator(models_with_base, tmp_path)
    ref = orch.run(flux_req("flux-dev-demo")).pil_images[0]
    for tag, prefix in PREFIXES.items():
        result = orch.run(flux_req(f"flux-tiny-{tag}"))
        assert np.array_equal(np.asarray(result.pil_images[0]), np.asarray(ref)), tag
        assert result.info["guidance_embed"] is True and result.info["model"] == f"flux-tiny-{tag}"


def test_flux_single_file_variant_and_base(with_base):
    loaded = load_model(with_base / "diffusion_models" / "flux-tiny-comfy.safetensors", family="flux",
                        models_dir=with_base)
    assert loaded.variant["format"] == "single_file" and loaded.variant["prefix"] == "model.diffusion_model."
    assert loaded.variant["base"] == str(with_base / "flux-dev-demo") and loaded.variant["type"] == "dev"


def test_flux_separate_files_replace_the_base_components(models_with_base, tmp_path):
    orch = orchestrator(models_with_base, tmp_path)
    ref = orch.run(flux_req("flux-dev-demo")).pil_images[0]
    result = orch.run(flux_req("flux-tiny-bare", vae="flux-vae-tiny", text_encoders=["t5-tiny", "clip-l-tiny"]))
    assert np.array_equal(np.asarray(result.pil_images[0]), np.asarray(ref))


def test_wan_a14b_expert_files_pair_and_equal_the_folder(models_with_base, with_base, tmp_path):
    orch = orchestrator(models_with_base, tmp_path)
    ref = orch.run(wan_req("wan22_t2v_a14b", "wan22-t2v-a14b-demo", guidance_scale_2=3.0))
    # either expert's file names the pair; the high-noise one is always `transformer`
    for name in ("wan2.2_t2v_low_noise_tiny", "wan2.2_t2v_high_noise_tiny"):
        result = orch.run(wan_req("wan22_t2v_a14b", name, guidance_scale_2=3.0))
        assert result.info["experts"] == 2 and result.info["boundary_ratio"] == 0.875
        assert same_frames(result.frames[0], ref.frames[0]), name
    loaded = load_model(with_base / "diffusion_models" / "wan2.2_t2v_low_noise_tiny.safetensors",
                        family="wan22_t2v_a14b", models_dir=with_base)
    assert [Path(f).name for f in loaded.variant["files"]] == ["wan2.2_t2v_high_noise_tiny.safetensors",
                                                               "wan2.2_t2v_low_noise_tiny.safetensors"]


def test_expert_pairing_rule(tmp_path):
    high, low = tmp_path / "Wan_T2V_HIGH_noise.safetensors", tmp_path / "Wan_T2V_LOW_noise.safetensors"
    high.write_bytes(b"")
    low.write_bytes(b"")
    assert expert_pair(low) == (high, low) and expert_pair(high) == (high, low)
    lone = tmp_path / "wan_i2v_high-noise_fp16.safetensors"
    lone.write_bytes(b"")
    with pytest.raises(ModelLoadError, match="wan_i2v_low-noise_fp16.safetensors"):
        expert_pair(lone)
    with pytest.raises(ModelLoadError, match="high_noise.*low_noise"):
        expert_pair(tmp_path / "wan_a14b.safetensors")
    plain = tmp_path / "expert_b.safetensors"
    assert expert_pair(tmp_path / "expert_a.safetensors", plain) == (tmp_path / "expert_a.safetensors", plain)
    assert expert_pair(low, tmp_path / "x.safetensors") == (tmp_path / "x.safetensors", low)


def _own_copy(no_base: Path, tmp_path: Path) -> Path:
    """A private copy of the shared no-base folder, for a test that adds to it (tests run in any order)."""
    root = tmp_path / "models"
    shutil.copytree(no_base, root)
    return root


def test_wan_single_file_without_base_uses_separate_files(no_base, demos, tmp_path):
    no_base = _own_copy(no_base, tmp_path)
    model = no_base / "diffusion_models" / "wan-ti2v-tiny.safetensors"
    common = dict(family="wan22_ti2v_5b", models_dir=no_base, configs=demos / "wan22-ti2v-5b-demo",
                  vae="wan22-vae-tiny", text_encoders=["umt5-tiny"])
    with pytest.raises(TokenizerMissingError) as err:
        load_model(model, **common)
    assert str(no_base / "tokenizers" / "tokenizer-umt5-xxl") in str(err.value)
    assert "sdcodex cache-models tokenizer-umt5-xxl" in str(err.value)
    shutil.copytree(demos / "wan22-ti2v-5b-demo" / "tokenizer", no_base / "tokenizers" / "tokenizer-umt5-xxl")
    loaded = load_model(model, **common)
    assert loaded.variant["separate_files"] == ["text_encoder", "vae"] and "base" not in loaded.variant
    assert loaded.components["expand_timesteps"] is True
    ours = orchestrator(Preloaded(loaded), tmp_path).run(wan_req("wan22_ti2v_5b", "x"))
    ref = orchestrator(Preloaded(load_model(demos / "wan22-ti2v-5b-demo", models_dir=no_base)), tmp_path).run(
        wan_req("wan22_ti2v_5b", "y"))
    assert same_frames(ours.frames[0], ref.frames[0])


def test_missing_components_without_base_are_named(no_base, demos, tmp_path):
    # the tokenizer is there (else it is named first, see above): the missing VAE file is named
    no_base = _own_copy(no_base, tmp_path)
    shutil.copytree(demos / "wan22-ti2v-5b-demo" / "tokenizer", no_base / "tokenizers" / "tokenizer-umt5-xxl")
    with pytest.raises(ModelLoadError) as err:
        load_model(no_base / "diffusion_models" / "wan-ti2v-tiny.safetensors", family="wan22_ti2v_5b",
                   models_dir=no_base, configs=demos / "wan22-ti2v-5b-demo", text_encoders=["umt5-tiny"])
    assert err.value.field == "vae" and "needs vae" in str(err.value), (err.value.field, str(err.value))


def test_text_encoder_of_the_wrong_kind_is_refused(with_base):
    model = with_base / "diffusion_models" / "flux-tiny-bare.safetensors"
    with pytest.raises(ModelLoadError) as err:
        load_model(model, family="flux", models_dir=with_base, text_encoders=["umt5-tiny"])
    assert "umt5-tiny.safetensors" in str(err.value) and "is a umt5 text encoder" in str(err.value)
    assert err.value.field == "text_encoders[0]" and "t5xxl" in err.value.allowed
    with pytest.raises(ModelLoadError) as err:
        load_model(model, family="flux", models_dir=with_base, text_encoders=["clip-l-tiny", "flux-vae-tiny"])
    assert "flux-vae-tiny.safetensors: is a vae file" in str(err.value) and err.value.field == "text_encoders[1]"
    with pytest.raises(ModelLoadError) as err:  # a CLIP file for WAN
        load_model(with_base / "diffusion_models" / "wan2.2_t2v_high_noise_tiny.safetensors", family="wan22_t2v_a14b",
                   models_dir=with_base, text_encoders=["clip-l-tiny"])
    assert "clip-l-tiny.safetensors: is a clip" in str(err.value) and "umt5" in err.value.allowed


def test_wan_file_of_the_wrong_model_is_refused(no_base):
    with pytest.raises(ModelLoadError) as err:
        load_model(no_base / "diffusion_models" / "wan-ti2v-tiny.safetensors", family="wan22_t2v_a14b",
                   models_dir=no_base)
    assert "48 input channels" in str(err.value) and err.value.allowed == ["wan22_ti2v_5b"]


def test_converter_tables_cover_schnell_and_wan21_i2v():
    from diffusers import FluxTransformer2DModel, WanTransformer3DModel

    torch.manual_seed(0)
    flux = FluxTransformer2DModel(patch_size=1, in_channels=16, num_layers=2, num_single_layers=3, attention_head_dim=8,
                                  num_attention_heads=2, joint_attention_dim=12, pooled_projection_dim=10,
                                  guidance_embeds=False, axes_dims_rope=(2, 2, 4))
    bfl = fx.flux_to_bfl(flux.state_dict())
    cfg = cv.flux_config({k: list(v.shape) for k, v in bfl.items()}, {"axes_dims_rope": [2, 2, 4], "patch_size": 1})
    assert (cfg["num_layers"], cfg["num_single_layers"], cfg["guidance_embeds"], cfg["joint_attention_dim"]) == \
        (2, 3, False, 12)
    ours = cv.convert_flux(bfl, cfg)
    assert set(ours) == set(flux.state_dict()) and all(torch.equal(ours[k], flux.state_dict()[k]) for k in ours)
    wan = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=4, in_channels=36,
                                out_channels=16, text_dim=8, freq_dim=16, ffn_dim=12, num_layers=3, image_dim=6,
                                added_kv_proj_dim=8, cross_attn_norm=True, qk_norm="rms_norm_across_heads")
    orig = fx.wan_to_original(wan.state_dict())
    cfg = cv.wan_config({k: list(v.shape) for k, v in orig.items()}, {"attention_head_dim": 4})
    assert (cfg["num_layers"], cfg["image_dim"], cfg["added_kv_proj_dim"], cfg["in_channels"]) == (3, 6, 8, 36)
    ours = cv.convert_wan(orig)
    assert set(ours) == set(wan.state_dict()) and all(torch.equal(ours[k], wan.state_dict()[k]) for k in ours)
    with pytest.raises(ModelLoadError, match="not part of a WAN transformer"):
        cv.convert_wan({**orig, "vace_blocks.0.before_proj.weight": torch.zeros(1)})


@pytest.mark.parametrize("family,component,billions", [
    ("flux", "transformer", 11.9), ("flux", "transformer_schnell", 11.9), ("wan22_t2v_a14b", "transformer", 14.3),
    ("wan22_i2v_a14b", "transformer", 14.3), ("wan22_ti2v_5b", "transformer", 5.0)])
def test_bundled_configs_build_the_published_sizes(family, component, billions):
    import diffusers
    from accelerate import init_empty_weights

    from sdcodex.core.enums import EngineKey
    from sdcodex.models.model_configs import bundled

    cfg = bundled(EngineKey(family), component)
    with init_empty_weights():
        model = getattr(diffusers, cfg["_class_name"]).from_config(cfg)
    assert round(sum(p.numel() for p in model.parameters()) / 1e9, 1) == billions


def test_hunyuan_video_i2v_demo_through_the_orchestrator(demos, tmp_path):
    from sdcodex.media.reader import read_info
    from sdcodex.models.flow_loader import load_flow_model

    still = tmp_path / "still.png"
    image = Image.new("RGB", (64, 64))
    image.putdata([(4 * x, 4 * y, 128) for y in range(64) for x in range(64)])
    image.save(still)
    loaded = load_flow_model(demos / "hunyuan-video-i2v-demo", models_dir=demos)
    assert loaded.variant["i2v"] is True and loaded.variant["image_condition_type"] == "latent_concat"
    orch = orchestrator(Preloaded(loaded), tmp_path / "out")
    result = orch.run({"task": "img2vid", "model": "hunyuan-video-i2v-demo", "prompt": "a red fox", "steps": 2,
                       "seed": 7, "num_frames": 9, "fps": 8.0, "width": 32, "height": 32, "init_image": str(still)})
    # Diffusers' HunyuanVideo-I2V (latent_concat) drops the image's 4 decoded frames; the engine asks for 4
    # more, so the user gets exactly the frames asked for
    assert len(result.frames[0]) == 9 and result.frames[0][0].size == (32, 32)
    info = read_info(result.videos[0])
    assert (info["frames"], info["fps"], info["width"], info["height"]) == (9, 8.0, 32, 32)
    from sdcodex.core.errors import ValidationError

    with pytest.raises(ValidationError) as err:  # the I2V weights do not do txt2vid
        orch.run({"task": "txt2vid", "model": "hunyuan-video-i2v-demo", "prompt": "x", "steps": 1, "num_frames": 5,
                  "width": 32, "height": 32})
    assert err.value.field == "task"
