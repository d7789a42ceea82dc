"""Demo models: deterministic tiny random-weight Diffusers folders that generate 64x64 images quickly."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from sdcodex.core.errors import ValidationError
from sdcodex.models import demo
from sdcodex.models.tokenizers import VOCAB_SIZE


@pytest.fixture(scope="module")
def demo_models(demo_models_dir):
    """{family: folder} of the session's demo models (tests/conftest.py builds them; this call only reuses)."""
    return demo.build_demo_models(demo_models_dir / "demo")


def test_folders_are_complete_diffusers_pipelines(demo_models):
    assert {p.name for p in demo_models.values()} == {"sd15-demo", "sdxl-demo", "sd15-inpaint-demo"}
    classes = {f: json.loads((p / "model_index.json").read_text())["_class_name"] for f, p in demo_models.items()}
    assert classes == {"sd15": "StableDiffusionPipeline", "sdxl": "StableDiffusionXLPipeline",
                       "sd15_inpaint": "StableDiffusionInpaintPipeline"}
    for path in demo_models.values():
        assert "RANDOM weights" in (path / "README.txt").read_text()
        assert demo.is_valid_demo(path)
        assert list(path.rglob("*.bin")) == []  # safetensors only
    unet = json.loads((demo_models["sd15_inpaint"] / "unet" / "config.json").read_text())
    assert unet["in_channels"] == 9
    xl = json.loads((demo_models["sdxl"] / "unet" / "config.json").read_text())
    assert xl["addition_embed_type"] == "text_time"
    te = json.loads((demo_models["sd15"] / "text_encoder" / "config.json").read_text())
    assert te["vocab_size"] == VOCAB_SIZE and te["hidden_size"] == 32


def test_build_is_deterministic_and_idempotent(demo_models, tmp_path):
    again = demo.build_demo_model("sd15", tmp_path)
    a = load_file(str(demo_models["sd15"] / "unet" / "diffusion_pytorch_model.safetensors"))
    b = load_file(str(again / "unet" / "diffusion_pytorch_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    weights = again / "unet" / "diffusion_pytorch_model.safetensors"
    stamp = weights.stat().st_mtime_ns
    assert demo.build_demo_model("sd15", tmp_path) == again
    assert weights.stat().st_mtime_ns == stamp  # present and valid: skipped
    (again / "README.txt").unlink()  # incomplete folder: rebuilt
    assert demo.build_demo_model("sd15", tmp_path) == again and (again / "README.txt").is_file()


def test_unknown_family_is_named(tmp_path):
    with pytest.raises(ValidationError) as err:
        demo.build_demo_models(tmp_path, families=("sd15", "nope"))
    assert err.value.field == "families" and "sdxl" in err.value.allowed


def test_registry_accepts_new_families(tmp_path, monkeypatch):
    monkeypatch.setitem(demo.DEMO_BUILDERS, "sd15_copy", ("copy-demo", demo.build_sd15))
    out = demo.build_demo_models(tmp_path, families=("sd15_copy",))
    assert out["sd15_copy"].name == "copy-demo" and demo.is_valid_demo(out["sd15_copy"])


@pytest.mark.parametrize("family", ["sd15", "sdxl", "sd15_inpaint"])
def test_demo_generates_64px(demo_models, family):
    from diffusers import DiffusionPipeline
    from PIL import Image

    pipe = DiffusionPipeline.from_pretrained(demo_models[family], local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    kwargs = dict(prompt="a photo of a cat", num_inference_steps=2, height=64, width=64, output_type="np",
                  generator=torch.Generator("cpu").manual_seed(0))
    if family == "sd15_inpaint":
        kwargs.update(image=Image.new("RGB", (64, 64), "gray"), mask_image=Image.new("L", (64, 64), 255))
    first = pipe(**kwargs).images
    kwargs["generator"] = torch.Generator("cpu").manual_seed(0)
    second = pipe(**kwargs).images
    assert first.shape == (1, 64, 64, 3) and np.isfinite(first).all()
    assert np.array_equal(first, second)  # seeded: reproducible
