"""FLUX.2 single transformer files as BFL publishes them (flux2-dev.safetensors, flux-2-klein-*.safetensors; bare
or under ComfyUI's prefix): the tiny demo transformers exported to that layout, loaded with the text encoder, VAE
and scheduler of a Diffusers folder in the models folder, give Diffusers' own pipeline's pixels; dev and Klein files
are told apart by the guidance embedding and never taken for FLUX.1."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image

import sdcodex.engines  # noqa: F401  (registers engines)
from sdcodex.core.errors import ModelLoadError
from sdcodex.core.orchestrator import Orchestrator
from sdcodex.models.demo import build_demo_model
from sdcodex.models.detect import detect_file
from sdcodex.models.loader import load_model
from sdcodex.runtime import MediaSaver
from tests.engines.test_flow_single_file import Preloaded, _module
from tests.engines.test_flux2 import assert_same, reference
from tests.helpers import flow_export as fx

CM = "model.diffusion_model."
CASES = {"flux2": ("flux2-dev-demo", {"guidance_scale": 4.0}, {}),
         "flux2_klein": ("flux2-klein-base-demo", {"guidance_scale": 2.0}, {"cfg_scale": 2.0})}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("flux2-files")
    for family, (folder, _, _) in CASES.items():
        demo = build_demo_model(family, root / "demo")
        transformer = _module(demo, "transformer")
        fx.export_flux2(transformer, root / "files" / f"{family}_tiny_bare.safetensors")
        fx.export_flux2(transformer, root / "files" / f"{family}_tiny_comfy.safetensors", CM)
    return root


@pytest.mark.parametrize("family", list(CASES))
@pytest.mark.parametrize("style", ["bare", "comfy"])
def test_single_file_with_a_base_folder_equals_diffusers(root, tmp_path, family, style):
    folder, ref_kw, req_kw = CASES[family]
    models = tmp_path / "models"
    (models / "diffusion_models").mkdir(parents=True)
    path = shutil.copy(root / "files" / f"{family}_tiny_{style}.safetensors", models / "diffusion_models")
    shutil.copytree(root / "demo" / folder, models / folder)
    det = detect_file(path)
    assert det.family.value == family and det.variant["layout"] == "bfl"
    loaded = load_model(path, models_dir=models)
    assert loaded.family.value == family and loaded.variant["layout"] == family
    assert loaded.variant["base"] == str(models / folder)
    orch = Orchestrator(Preloaded(loaded), MediaSaver(tmp_path / "out"),
                        image_loader=lambda v, f: Image.open(v).convert("RGB"))
    result = orch.run({"engine": family, "task": "txt2img", "model": "x", "prompt": "a lighthouse", "width": 80,
                       "height": 64, "steps": 3, "seed": 5, **req_kw})
    assert_same(result.pil_images[0], reference(models / folder, **ref_kw))


def test_a_flux2_file_is_not_loaded_as_flux1_or_as_the_other_flux2(root, tmp_path):
    with pytest.raises(ModelLoadError) as err:
        load_model(root / "files" / "flux2_klein_tiny_bare.safetensors", family="flux", models_dir=tmp_path)
    assert err.value.field == "family"
    with pytest.raises(ModelLoadError) as err:
        load_model(root / "files" / "flux2_tiny_bare.safetensors", family="flux2_klein", models_dir=tmp_path)
    assert err.value.field == "family" and "flux2" in str(err.value)
