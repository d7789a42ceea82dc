"""LTX-2 parts from their own files. The video VAE: Lightricks' layout (the all-in-one ltx-2-19b-*.safetensors keeps it under
`vae.`: one numbered block list per side, `res_blocks`, `per_channel_statistics`), written by our own exporter from a
VAE whose weights differ from the folder's, replaces the folder's VAE (request key `vae`); the frames equal Diffusers'
LTX2Pipeline with that VAE and the scheduler built here from Diffusers' class; the all-in-one file's own VAE; the
Gemma 3 text encoder from ComfyUI's text-only file."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import sdcodex.engines  # noqa: F401  (registers engines)
from sdcodex.models.demo import build_demo_model
from tests.engines.test_flow_single_file import _module
from tests.engines.test_qwen_image_files import _shifted
from tests.helpers import flow_export as fx

BASE = {"task": "txt2vid", "model": "ltx2-demo", "prompt": "a robot dancing", "width": 64, "height": 32,
        "num_frames": 9, "fps": 24.0, "steps": 2, "cfg_scale": 1.0, "seed": 11}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("ltx2-vae-file")
    folder = build_demo_model("ltx2", root)
    vae = _shifted(_module(folder, "vae"), 6)
    with torch.no_grad():
        vae.latents_std.mul_(1.5)  # the statistics come from the file too
    fx._save(fx.ltx2_vae_to_original(vae), root / "vae" / "ltx2_video_vae_tiny.safetensors", "vae.")
    return root, folder, vae


def frames(result) -> np.ndarray:
    return np.stack([np.asarray(f, dtype=np.int16) for f in result.frames[0]])


def reference(folder: Path, **modules) -> np.ndarray:
    """Diffusers' LTX2Pipeline on the folder with `modules` in place of its own, the scheduler built here from
    Diffusers' class with LTX-2's published settings; the frames as int16."""
    from diffusers import FlowMatchEulerDiscreteScheduler, LTX2Pipeline

    pipe = LTX2Pipeline.from_pretrained(folder, local_files_only=True, **modules)
    pipe.scheduler = FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=True, base_shift=0.95, max_shift=2.05,
        base_image_seq_len=1024, max_image_seq_len=4096, shift_terminal=0.1, time_shift_type="exponential")
    pipe.set_progress_bar_config(disable=True)
    ref = pipe(prompt=BASE["prompt"], width=64, height=32, num_frames=9, frame_rate=24.0, num_inference_steps=2,
               guidance_scale=1.0, output_type="pil", generator=torch.Generator("cpu").manual_seed(11))
    return np.stack([np.asarray(f, dtype=np.int16) for f in ref.frames[0]])


def test_the_vae_file_replaces_the_folders(setup, tmp_path):
    from sdcodex.models.detect import detect_path
    from sdcodex.runtime import LocalModels, build_orchestrator

    root, folder, vae = setup
    found = detect_path(root / "vae" / "ltx2_video_vae_tiny.safetensors")
    assert found.kind == "vae" and found.prefix == "vae."
    orch = build_orchestrator(models=LocalModels(root), outdir=tmp_path, device="cpu")
    expected = reference(folder, vae=vae)
    assert np.abs(frames(orch.run(BASE)) - expected).max() > 1  # the file's weights differ from the folder's
    ours = frames(orch.run({**BASE, "vae": "ltx2_video_vae_tiny"}))
    assert ours.shape == expected.shape and np.abs(ours - expected).max() <= 1


def test_the_all_in_one_files_own_vae_is_used(setup, tmp_path):
    """ltx-2-19b-*.safetensors carries its video VAE under `vae.`: a file with a whole VAE there runs with it (the
    folder's is the base for everything else); the frames equal the folder's run with that VAE as a separate file."""
    from safetensors.torch import save_file

    from sdcodex.runtime import LocalModels, build_orchestrator

    root, folder, vae = setup
    state = fx.ltx2_to_original(_module(folder, "transformer"))
    state.update({f"vae.{k}": v for k, v in fx.ltx2_vae_to_original(vae).items()})
    (root / "checkpoints").mkdir(exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, root / "checkpoints" / "ltx2_all_in_one_tiny.safetensors")
    orch = build_orchestrator(models=LocalModels(root), outdir=tmp_path, device="cpu")
    result = orch.run({**BASE, "model": "ltx2_all_in_one_tiny"})
    want = frames(orch.run({**BASE, "vae": "ltx2_video_vae_tiny"}))
    assert np.abs(frames(result) - want).max() <= 1


def test_gemma_text_encoder_file(setup, tmp_path):
    """ComfyUI's text-only gemma_3_12B_it file (the language model under `model.`): built as a Gemma3TextModel, whose
    hidden states are all LTX2Pipeline reads; the frames equal Diffusers' pipeline with the whole
    Gemma3ForConditionalGeneration those weights came from."""
    from safetensors.torch import save_file

    from sdcodex.runtime import LocalModels, build_orchestrator

    root, folder, _ = setup
    gemma = _shifted(_module(folder, "text_encoder"), 9)
    (root / "text_encoders").mkdir(exist_ok=True)
    language = {k.replace("model.language_model.", "model.", 1): v.contiguous()
                for k, v in gemma.state_dict().items() if k.startswith("model.language_model.")}
    save_file(language, root / "text_encoders" / "gemma_3_tiny.safetensors")
    expected = reference(folder, text_encoder=gemma)
    orch = build_orchestrator(models=LocalModels(root), outdir=tmp_path, device="cpu")
    assert np.abs(frames(orch.run(BASE)) - expected).max() > 1
    ours = frames(orch.run({**BASE, "text_encoders": ["gemma_3_tiny"]}))
    assert np.abs(ours - expected).max() <= 1
