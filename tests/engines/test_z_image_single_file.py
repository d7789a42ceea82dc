"""Z-Image single files as ComfyUI users keep them: the tiny demo transformer exported to Tongyi-MAI's original layout
(fused qkv, bare or under ComfyUI's prefix), the Qwen3 text encoder as `model.*` keys and the FLUX VAE in the LDM
layout (ae.safetensors). Loaded with a base Diffusers folder, or without one from the separate files, they give
the same pixels as Diffusers' ZImagePipeline on the folder."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

import sdcodex.engines  # noqa: F401  (registers engines)
from sdcodex.core.errors import ModelLoadError, TokenizerMissingError
from sdcodex.core.orchestrator import Orchestrator
from sdcodex.models.demo import build_demo_model
from sdcodex.models.loader import load_model
from sdcodex.runtime import LocalModels, MediaSaver
from tests.engines.test_flow_single_file import Preloaded, _module
from tests.engines.test_z_image import assert_same, reference
from tests.helpers import flow_export as fx
from tests.helpers.ldm_export import vae_to_ldm

CM = "model.diffusion_model."


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    return build_demo_model("z_image", tmp_path_factory.mktemp("z-demo"))


@pytest.fixture(scope="module")
def files(demo, tmp_path_factory) -> Path:
    """diffusion_models/, text_encoders/, vae/ exported from the demo folder (no Diffusers folder beside them)."""
    root = tmp_path_factory.mktemp("z-files")
    transformer = _module(demo, "transformer")
    fx.export_z_image(transformer, root / "diffusion_models" / "z_image_tiny_bare.safetensors")
    fx.export_z_image(transformer, root / "diffusion_models" / "z_image_tiny_comfy.safetensors", CM)
    fx.export_decoder_lm(_module(demo, "text_encoder"), root / "text_encoders" / "qwen_3_tiny.safetensors")
    vae = _module(demo, "vae")
    fx._save(vae_to_ldm(vae.state_dict(), dict(vae.config)), root / "vae" / "ae_tiny.safetensors")
    return root


def run(loaded, out: Path) -> Image.Image:
    orch = Orchestrator(Preloaded(loaded), MediaSaver(out), image_loader=lambda v, f: Image.open(v).convert("RGB"))
    return orch.run({"engine": "z_image", "task": "txt2img", "model": "x", "prompt": "a lighthouse", "width": 64,
                     "height": 64, "steps": 3, "seed": 5, "cfg_scale": 1.0}).pil_images[0]


@pytest.mark.parametrize("name", ["z_image_tiny_bare", "z_image_tiny_comfy"])
def test_single_file_with_a_base_folder_equals_diffusers(demo, files, tmp_path, name):
    root = tmp_path / "models"
    shutil.copytree(files, root)
    shutil.copytree(demo, root / "z-image-demo")
    loaded = load_model(root / "diffusion_models" / f"{name}.safetensors", family="z_image", models_dir=root)
    assert loaded.variant["layout"] == "z_image" and loaded.variant["base"] == str(root / "z-image-demo")
    assert loaded.variant["prefix"] == ("" if name.endswith("bare") else CM)
    assert_same(run(loaded, tmp_path / "out"), reference(demo, "txt2img", guidance_scale=0.0))


def test_single_file_without_base_takes_the_separate_files(demo, files, tmp_path):
    root = tmp_path / "models"
    shutil.copytree(files, root)
    common = dict(family="z_image", models_dir=root, configs=demo, vae="ae_tiny", text_encoders=["qwen_3_tiny"])
    model = root / "diffusion_models" / "z_image_tiny_comfy.safetensors"
    with pytest.raises(TokenizerMissingError) as err:
        load_model(model, **common)
    assert "sdcodex cache-models tokenizer-qwen3" in str(err.value)
    shutil.copytree(demo / "tokenizer", root / "tokenizers" / "tokenizer-qwen3")
    loaded = load_model(model, **common)
    assert loaded.variant["separate_files"] == ["text_encoder", "vae"] and "base" not in loaded.variant
    assert type(loaded.components["scheduler"]).__name__ == "FlowMatchEulerDiscreteScheduler"
    assert_same(run(loaded, tmp_path / "out"), reference(demo, "txt2img", guidance_scale=0.0))


def test_missing_text_encoder_is_named(demo, files, tmp_path):
    root = tmp_path / "models"
    shutil.copytree(files, root)
    shutil.copytree(demo / "tokenizer", root / "tokenizers" / "tokenizer-qwen3")
    with pytest.raises(ModelLoadError) as err:
        load_model(root / "diffusion_models" / "z_image_tiny_bare.safetensors", family="z_image", models_dir=root,
                   configs=demo, vae="ae_tiny")
    assert err.value.field == "text_encoders" and "qwen3_4b" in str(err.value)


def test_rope_axes_that_do_not_fit_the_file_are_refused(demo, files, tmp_path):
    root = tmp_path / "models"
    shutil.copytree(files, root)
    shutil.copytree(demo / "tokenizer", root / "tokenizers" / "tokenizer-qwen3")
    cfg = json.loads((demo / "transformer" / "config.json").read_text())
    configs = {"transformer": {**cfg, "axes_dims": [32, 48, 48]}}
    with pytest.raises(ModelLoadError, match="rope axes"):
        load_model(root / "diffusion_models" / "z_image_tiny_bare.safetensors", family="z_image", models_dir=root,
                   configs=configs, vae="ae_tiny", text_encoders=["qwen_3_tiny"])


def test_local_models_resolves_the_files_by_name(demo, files, tmp_path):
    root = tmp_path / "models"
    shutil.copytree(files, root)
    shutil.copytree(demo, root / "z-image-demo")
    orch = Orchestrator(LocalModels(root, device="cpu"), MediaSaver(tmp_path / "out"))
    result = orch.run({"engine": "z_image", "task": "txt2img", "model": "z_image_tiny_comfy", "prompt": "a lighthouse",
                       "width": 64, "height": 64, "steps": 3, "seed": 5, "cfg_scale": 1.0, "vae": "ae_tiny",
                       "text_encoders": ["qwen_3_tiny"]})
    assert_same(result.pil_images[0], reference(demo, "txt2img", guidance_scale=0.0))
