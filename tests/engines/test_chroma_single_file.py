"""Chroma single files as ComfyUI users keep them: the tiny demo transformer exported to lodestones' BFL layout
(bare or under ComfyUI's prefix), T5-XXL as `shared` + `encoder.*` and the FLUX VAE in the LDM layout. With a base
Diffusers folder, or from the separate files alone, they give Diffusers' ChromaPipeline's pixels; a Chroma file is
never mistaken for FLUX."""
from __future__ import annotations

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
from tests.engines.test_chroma import reference
from tests.engines.test_flow_single_file import Preloaded, _module
from tests.engines.test_z_image import assert_same
from tests.helpers import flow_export as fx
from tests.helpers.ldm_export import vae_to_ldm

CM = "model.diffusion_model."
REQ = {"engine": "chroma", "task": "txt2img", "prompt": "a lighthouse", "width": 64, "height": 64, "steps": 3,
       "seed": 5, "cfg_scale": 2.0, "negative_prompt": "blurry"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    return build_demo_model("chroma", tmp_path_factory.mktemp("chroma-demo"))


@pytest.fixture(scope="module")
def files(demo, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("chroma-files")
    transformer = _module(demo, "transformer")
    fx.export_chroma(transformer, root / "diffusion_models" / "chroma_tiny_bare.safetensors")
    fx.export_chroma(transformer, root / "diffusion_models" / "chroma_tiny_comfy.safetensors", CM)
    fx.export_t5(_module(demo, "text_encoder"), root / "text_encoders" / "t5xxl_tiny.safetensors")
    vae = _module(demo, "vae")
    fx._save(vae_to_ldm(vae.state_dict(), dict(vae.config)), root / "vae" / "ae_tiny.safetensors")
    return root


def expected(demo: Path) -> Image.Image:
    return reference(demo, "txt2img", guidance_scale=2.0, negative_prompt="blurry")


def run(loaded, out: Path) -> Image.Image:
    orch = Orchestrator(Preloaded(loaded), MediaSaver(out), image_loader=lambda v, f: Image.open(v).convert("RGB"))
    return orch.run({**REQ, "model": "x"}).pil_images[0]


@pytest.mark.parametrize("name", ["chroma_tiny_bare", "chroma_tiny_comfy"])
def test_single_file_with_a_base_folder_equals_diffusers(demo, files, tmp_path, name):
    root = tmp_path / "models"
    shutil.copytree(files, root)
    shutil.copytree(demo, root / "chroma-demo")
    loaded = load_model(root / "diffusion_models" / f"{name}.safetensors", family="chroma", models_dir=root)
    assert loaded.family.value == "chroma" and loaded.variant["layout"] == "chroma"
    assert loaded.variant["base"] == str(root / "chroma-demo")
    assert_same(run(loaded, tmp_path / "out"), expected(demo))


def test_single_file_without_base_takes_the_separate_files(demo, files, tmp_path):
    root = tmp_path / "models"
    shutil.copytree(files, root)
    common = dict(family="chroma", models_dir=root, configs=demo, vae="ae_tiny", text_encoders=["t5xxl_tiny"])
    model = root / "diffusion_models" / "chroma_tiny_comfy.safetensors"
    with pytest.raises(TokenizerMissingError) as err:
        load_model(model, **common)
    assert "sdcodex cache-models tokenizer-t5-xxl" in str(err.value)
    shutil.copytree(demo / "tokenizer", root / "tokenizers" / "tokenizer-t5-xxl")
    loaded = load_model(model, **common)
    assert loaded.variant["separate_files"] == ["text_encoder", "vae"] and "base" not in loaded.variant
    assert_same(run(loaded, tmp_path / "out"), expected(demo))


def test_a_chroma_file_is_not_loaded_as_flux(files, tmp_path):
    with pytest.raises(ModelLoadError) as err:
        load_model(files / "diffusion_models" / "chroma_tiny_bare.safetensors", family="flux", models_dir=tmp_path)
    assert err.value.field == "family" and "chroma" in str(err.value)


def test_local_models_resolves_the_files_by_name(demo, files, tmp_path):
    root = tmp_path / "models"
    shutil.copytree(files, root)
    shutil.copytree(demo, root / "chroma-demo")
    orch = Orchestrator(LocalModels(root, device="cpu"), MediaSaver(tmp_path / "out"))
    result = orch.run({**REQ, "model": "chroma_tiny_bare", "vae": "ae_tiny", "text_encoders": ["t5xxl_tiny"]})
    assert_same(result.pil_images[0], expected(demo))
