"""WAN VAE files in the original Wan-Video layout (ComfyUI's wan_2.1_vae / wan2.2_vae.safetensors): the tiny demo
VAEs exported by the test-only exporter load through the request key `vae` and give the same frames as the Diffusers
folder's own VAE (2.1 for A14B, 2.2 for TI2V-5B; Diffusers folder and single transformer files); the tables cover
the published VAE configs exactly; a VAE with the wrong latent channels or stray keys is refused naming the file."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import sdcodex.engines  # noqa: F401  (registers engines)
from sdcodex.core.errors import ModelLoadError
from sdcodex.core.orchestrator import Orchestrator
from sdcodex.models import convert_flow as cv
from sdcodex.models import demo_video  # noqa: F401  (registers the demo builders)
from sdcodex.models.demo import build_demo_model
from sdcodex.models.loader import CONFIG_ROOT, load_model
from sdcodex.runtime import LocalModels, MediaSaver
from tests.helpers import flow_export as fx

FOLDERS = {"wan22_ti2v_5b": "wan22-ti2v-5b-demo", "wan22_t2v_a14b": "wan22-t2v-a14b-demo"}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _vae(folder: Path):
    from diffusers import AutoencoderKLWan

    return AutoencoderKLWan.from_pretrained(folder / "vae")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    """Demo folders (bases) + their VAEs in the original layout (one under a 'vae.' prefix) + A14B expert files."""
    root = tmp_path_factory.mktemp("wan-vae-models")
    for family in FOLDERS:
        build_demo_model(family, root)
    fx.export_wan_vae(_vae(root / FOLDERS["wan22_t2v_a14b"]), root / "vae" / "wan_2.1_vae_tiny.safetensors")
    fx.export_wan_vae(_vae(root / FOLDERS["wan22_ti2v_5b"]), root / "vae" / "wan2.2_vae_tiny.safetensors", "vae.")
    from diffusers import WanTransformer3DModel

    for sub, mark in (("transformer", "high"), ("transformer_2", "low")):
        module = WanTransformer3DModel.from_pretrained(root / FOLDERS["wan22_t2v_a14b"] / sub)
        fx.export_wan(module, root / "diffusion_models" / f"wan2.2_t2v_{mark}_noise_tiny.safetensors")
    return root


@pytest.fixture(scope="module")
def local(models) -> LocalModels:
    return LocalModels(models, device="cpu")


def orchestrator(provider, out: Path) -> Orchestrator:
    return Orchestrator(provider, MediaSaver(out), image_loader=lambda value, field: Image.open(value).convert("RGB"))


def wan_req(engine: str, model: str, **extra) -> dict:
    return {"engine": engine, "task": "txt2vid", "model": model, "prompt": "a red fox", "steps": 2, "seed": 7,
            "num_frames": 5, "fps": 8.0, "width": 32, "height": 32, "cfg_scale": 4.0, **extra}


def same_frames(a, b) -> bool:
    return len(a) == len(b) and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b))


@pytest.mark.parametrize("family", ["wan22_t2v_a14b", "wan22_ti2v_5b"])
def test_tables_cover_the_published_vaes(family):
    """The real Wan 2.1 / 2.2 VAE configs (built empty): every tensor is claimed, shapes fit, config read back."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKLWan

    cfg = json.loads((CONFIG_ROOT / family / "vae" / "config.json").read_text())
    with init_empty_weights():
        vae = AutoencoderKLWan.from_config(cfg)
    original = fx.wan_vae_to_original(vae)
    assert "decoder.head.0.gamma" in original and "conv2.weight" in original
    keymap = cv.wan_vae_keymap(list(original))
    ours = vae.state_dict()
    assert set(keymap) == set(ours)
    assert all(tuple(original[src].shape) == tuple(ours[dst].shape) for dst, src in keymap.items())
    unread = {k: v for k, v in cfg.items() if k.startswith("latents") or k in ("attn_scales", "dropout")}
    read = cv.wan_vae_config({k: list(v.shape) for k, v in original.items()}, unread)
    assert {k: read.get(k) for k in vae.config if not k.startswith("_")} == \
        {k: v for k, v in vae.config.items() if not k.startswith("_")}
    assert cv.wan_vae_version(list(original)) == ("2.2" if family == "wan22_ti2v_5b" else "2.1")


@pytest.mark.parametrize("family,vae", [("wan22_t2v_a14b", "wan_2.1_vae_tiny"), ("wan22_ti2v_5b", "wan2.2_vae_tiny")])
def test_original_layout_vae_through_the_request_key_equals_the_folder(local, models, tmp_path, family, vae):
    orch = orchestrator(local, tmp_path)
    ref = orch.run(wan_req(family, FOLDERS[family]))
    ours = orch.run(wan_req(family, FOLDERS[family], vae=vae))
    assert len(ours.frames[0]) == 5 and ours.frames[0][0].size == (32, 32)
    assert same_frames(ours.frames[0], ref.frames[0])
    loaded = local.load(local.resolve(FOLDERS[family]), vae=vae)
    assert loaded.variant["separate_files"] == ["vae"]
    folder_vae = _vae(models / FOLDERS[family]).state_dict()
    assert all(torch.equal(t, folder_vae[k]) for k, t in loaded.components["vae"].state_dict().items())


def test_single_transformer_files_with_an_original_layout_vae(local, tmp_path):
    orch = orchestrator(local, tmp_path)
    ref = orch.run(wan_req("wan22_t2v_a14b", FOLDERS["wan22_t2v_a14b"]))
    ours = orch.run(wan_req("wan22_t2v_a14b", "wan2.2_t2v_high_noise_tiny", vae="wan_2.1_vae_tiny"))
    assert same_frames(ours.frames[0], ref.frames[0])


def test_vae_of_the_other_wan_version_is_refused(models):
    with pytest.raises(ModelLoadError) as err:
        load_model(models / FOLDERS["wan22_ti2v_5b"], models_dir=models, vae="wan_2.1_vae_tiny")
    assert err.value.field == "vae" and "wan_2.1_vae_tiny.safetensors" in str(err.value)
    assert "Wan 2.1 (16-channel)" in str(err.value) and "48-channel" in str(err.value)


def test_stray_keys_are_named(models, tmp_path):
    from safetensors.torch import load_file, save_file

    state = load_file(models / "vae" / "wan_2.1_vae_tiny.safetensors")
    bad = tmp_path / "wan-vae-extra.safetensors"
    save_file({**state, "decoder.upsamples.0.residual.9.weight": torch.zeros(1)}, bad)
    with pytest.raises(ModelLoadError) as err:
        load_model(models / FOLDERS["wan22_t2v_a14b"], models_dir=models, vae=str(bad))
    assert str(bad) in str(err.value) and "decoder.upsamples.0.residual.9.weight" in str(err.value)
    assert err.value.field == "vae"


def test_copy_in_another_folder_keeps_working(models, tmp_path):
    """The converter reads nothing but the file: a copy elsewhere, by path, loads the same VAE."""
    copy = tmp_path / "elsewhere.safetensors"
    shutil.copy(models / "vae" / "wan2.2_vae_tiny.safetensors", copy)
    loaded = load_model(models / FOLDERS["wan22_ti2v_5b"], models_dir=models, vae=str(copy))
    assert loaded.components["vae"].config.is_residual is True and loaded.components["vae"].config.z_dim == 48
