"""Qwen-Image from ComfyUI's split files: a text-encoder file in ComfyUI's qwen_2.5_vl_7b layout (language model under
`model.`, vision tower under `visual.`) and a VAE file in the Wan-Video layout of qwen_image_vae.safetensors (written
here by our own exporters from modules whose weights differ from the folder's) replace a Diffusers folder's parts,
for the folder itself and for a single transformer file that takes the folder as its base; the pixels equal
Diffusers' QwenImagePipeline with those modules and the scheduler built here from Diffusers' class."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import sdcodex.engines  # noqa: F401  (registers engines)
from sdcodex.core.errors import ModelLoadError
from sdcodex.models.demo import build_demo_model
from tests.engines.test_flow_single_file import _module
from tests.engines.test_qwen_image_edit import small_inputs  # noqa: F401  (autouse: the Edit pipelines' small inputs)
from tests.helpers import flow_export as fx

BASE = {"task": "txt2img", "prompt": "a lighthouse", "negative_prompt": "blurry", "width": 64, "height": 64,
        "steps": 2, "seed": 5, "cfg_scale": 4.0}


def _shifted(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """The module with every weight moved a little (seeded), so pixels show which weights ran."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.add_(torch.randn(param.shape, generator=gen) * 0.05)
    return module.eval()


def comfy_qwen_vl(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers 5's Qwen2.5-VL names -> ComfyUI's qwen_2.5_vl_7b.safetensors names (model.layers, visual.)."""
    out = {}
    for key, tensor in state.items():
        key = key.replace("model.language_model.", "model.", 1).replace("model.visual.", "visual.", 1)
        out[key] = tensor.contiguous()
    return out


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("qwen-files")
    folder = build_demo_model("qwen_image", root)
    text_encoder = _shifted(_module(folder, "text_encoder"), 1)
    vae = _shifted(_module(folder, "vae"), 2)
    (root / "text_encoders").mkdir()
    save_file(comfy_qwen_vl(text_encoder.state_dict()), root / "text_encoders" / "qwen_2.5_vl_tiny.safetensors")
    fx._save(fx.wan_vae_to_original(vae), root / "vae" / "qwen_image_vae_tiny.safetensors")
    fx.export_plain(_module(folder, "transformer"), root / "diffusion_models" / "qwen_image_tiny.safetensors",
                    "model.diffusion_model.")
    return root, folder, text_encoder, vae


def reference(folder: Path, text_encoder, vae) -> np.ndarray:
    import transformers
    from diffusers import FlowMatchEulerDiscreteScheduler, QwenImagePipeline

    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=True,
                                                base_shift=0.5, max_shift=0.9, base_image_seq_len=256,
                                                max_image_seq_len=8192, shift_terminal=0.02)
    pipe = QwenImagePipeline(scheduler=scheduler, transformer=_module(folder, "transformer").eval(), vae=vae,
                             text_encoder=text_encoder,
                             tokenizer=transformers.AutoTokenizer.from_pretrained(folder / "tokenizer"))
    pipe.set_progress_bar_config(disable=True)
    out = pipe(prompt=BASE["prompt"], negative_prompt=BASE["negative_prompt"], true_cfg_scale=4.0, width=64,
               height=64, num_inference_steps=2, generator=torch.Generator("cpu").manual_seed(5)).images[0]
    return np.asarray(out, dtype=np.int16)


def test_separate_files_replace_the_folders_parts(setup, tmp_path):
    from sdcodex.runtime import LocalModels, build_orchestrator

    root, folder, text_encoder, vae = setup
    orch = build_orchestrator(models=LocalModels(root), outdir=tmp_path, device="cpu")
    files = {"text_encoders": ["qwen_2.5_vl_tiny"], "vae": "qwen_image_vae_tiny"}
    expected = reference(folder, text_encoder, vae)
    plain = np.asarray(orch.run({**BASE, "model": "qwen-image-demo"}).pil_images[0], dtype=np.int16)
    assert np.abs(plain - expected).max() > 1  # the files' weights differ from the folder's
    for model in ("qwen-image-demo", "qwen_image_tiny"):  # the folder, and a single transformer file on it as base
        result = orch.run({**BASE, "model": model, **files})
        ours = np.asarray(result.pil_images[0], dtype=np.int16)
        assert np.abs(ours - expected).max() <= 1, (model, np.abs(ours - expected).max())


def test_a_single_file_without_its_folder_says_so(setup, tmp_path):
    from sdcodex.models.loader import load_model

    root = setup[0]
    lone = tmp_path / "models"
    for sub in ("diffusion_models", "text_encoders", "vae"):
        shutil.copytree(root / sub, lone / sub)
    with pytest.raises(ModelLoadError) as err:
        load_model(lone / "diffusion_models" / "qwen_image_tiny.safetensors", models_dir=lone,
                   text_encoders=[str(lone / "text_encoders" / "qwen_2.5_vl_tiny.safetensors")],
                   vae=lone / "vae" / "qwen_image_vae_tiny.safetensors")
    assert err.value.field == "model" and "qwen_image Diffusers folder" in str(err.value)


def test_a_single_edit_transformer_runs_as_edit_when_asked(tmp_path_factory, tmp_path):
    """An Edit transformer file has Qwen-Image's tensors: detected as qwen_image (fitting qwen_image_edit), and with
    `engine: qwen_image_edit` it loads on the Edit folder as its base and gives that folder's pixels."""
    from PIL import Image

    from sdcodex.models.detect import detect_path
    from sdcodex.runtime import LocalModels, build_orchestrator

    root = tmp_path_factory.mktemp("qwen-edit-file")
    folder = build_demo_model("qwen_image_edit", root)
    path = fx.export_plain(_module(folder, "transformer"), root / "diffusion_models" / "qwen_image_edit_tiny.safetensors")
    found = detect_path(path)
    assert found.family.value == "qwen_image" and "qwen_image_edit" in [f.value for f in found.compatible]
    import base64
    import io

    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (30, 140, 90)).save(buffer, format="PNG")
    picture = base64.b64encode(buffer.getvalue()).decode()
    orch = build_orchestrator(models=LocalModels(root), outdir=tmp_path / "out", device="cpu")
    req = {**BASE, "images": [picture], "steps": 2}
    want = np.asarray(orch.run({**req, "model": "qwen-image-edit-demo"}).pil_images[0], dtype=np.int16)
    result = orch.run({**req, "model": "qwen_image_edit_tiny", "engine": "qwen_image_edit"})
    assert result.info["engine"] == "qwen_image_edit"
    assert np.abs(np.asarray(result.pil_images[0], dtype=np.int16) - want).max() <= 1
