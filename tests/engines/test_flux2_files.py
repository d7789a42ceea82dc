"""FLUX.2 from ComfyUI's split files: a Klein text encoder in ComfyUI's qwen_3_4b layout (the Qwen3 decoder under
`model.`, no LM head) and a VAE in BFL's flux2 ae layout (the LDM AutoencoderKL names plus the latents' batch-norm
statistics `bn.running_mean/var`), written here by our own exporters from modules whose weights differ from the
folder's, replace a Klein Diffusers folder's parts, for the folder and for a single BFL transformer file on it; the
pixels equal Diffusers' Flux2KleinPipeline with those modules and the scheduler built here from Diffusers' class."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import sdcodex.engines  # noqa: F401  (registers engines)
from sdcodex.models.demo import build_demo_model
from tests.engines.test_flow_single_file import _module
from tests.engines.test_qwen_image_files import _shifted
from tests.helpers import flow_export as fx
from tests.helpers.ldm_export import vae_to_ldm

BASE = {"task": "txt2img", "prompt": "a lighthouse", "width": 64, "height": 64, "steps": 2, "seed": 5,
        "cfg_scale": 1.0}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("flux2-files")
    folder = build_demo_model("flux2_klein", root)
    text_encoder = _shifted(_module(folder, "text_encoder"), 3)
    vae = _shifted(_module(folder, "vae"), 4)
    (root / "text_encoders").mkdir()
    decoder = {k: v.contiguous() for k, v in text_encoder.state_dict().items() if k.startswith("model.")}
    save_file(decoder, root / "text_encoders" / "qwen_3_tiny.safetensors")
    state = vae.state_dict()
    ldm = vae_to_ldm({k: v for k, v in state.items() if not k.startswith("bn.")}, dict(vae.config))
    ldm.update({k: state[k] for k in ("bn.running_mean", "bn.running_var")})  # BFL's file has no batch counter
    fx._save(ldm, root / "vae" / "flux2_vae_tiny.safetensors")
    fx.export_flux2(_module(folder, "transformer"), root / "diffusion_models" / "flux2_klein_tiny.safetensors")
    return root, folder, text_encoder, vae


def reference(folder, text_encoder, vae) -> np.ndarray:
    from diffusers import FlowMatchEulerDiscreteScheduler, Flux2KleinPipeline

    pipe = Flux2KleinPipeline.from_pretrained(folder, local_files_only=True, text_encoder=text_encoder, vae=vae)
    pipe.scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True,
                                                     base_shift=0.5, max_shift=1.15, base_image_seq_len=256,
                                                     max_image_seq_len=4096)
    pipe.set_progress_bar_config(disable=True)
    out = pipe(prompt=BASE["prompt"], width=64, height=64, num_inference_steps=2, guidance_scale=1.0,
               generator=torch.Generator("cpu").manual_seed(5)).images[0]
    return np.asarray(out, dtype=np.int16)


def test_separate_files_replace_the_folders_parts(setup, tmp_path):
    from sdcodex.models.detect import detect_path
    from sdcodex.runtime import LocalModels, build_orchestrator

    root, folder, text_encoder, vae = setup
    assert detect_path(root / "vae" / "flux2_vae_tiny.safetensors").kind == "vae"
    orch = build_orchestrator(models=LocalModels(root), outdir=tmp_path, device="cpu")
    files = {"text_encoders": ["qwen_3_tiny"], "vae": "flux2_vae_tiny"}
    expected = reference(folder, text_encoder, vae)
    plain = np.asarray(orch.run({**BASE, "model": "flux2-klein-base-demo"}).pil_images[0], dtype=np.int16)
    assert np.abs(plain - expected).max() > 1  # the files' weights differ from the folder's
    for model in ("flux2-klein-base-demo", "flux2_klein_tiny"):  # the folder, and a BFL transformer file on it
        result = orch.run({**BASE, "model": model, **files})
        ours = np.asarray(result.pil_images[0], dtype=np.int16)
        assert np.abs(ours - expected).max() <= 1, (model, np.abs(ours - expected).max())


def test_dev_mistral_text_encoder_file(tmp_path_factory, tmp_path):
    """FLUX.2 dev with ComfyUI's text-only mistral_3_small file (the language model under `model.`): built as a
    MistralModel, whose hidden states are what Flux2Pipeline reads, the pixels equal Diffusers' pipeline with the
    whole Mistral3ForConditionalGeneration those weights came from."""
    from diffusers import FlowMatchEulerDiscreteScheduler, Flux2Pipeline

    from sdcodex.runtime import LocalModels, build_orchestrator

    root = tmp_path_factory.mktemp("flux2-dev-files")
    folder = build_demo_model("flux2", root)
    mistral = _shifted(_module(folder, "text_encoder"), 8)
    (root / "text_encoders").mkdir()
    language = {k.replace("model.language_model.", "model.", 1): v.contiguous()
                for k, v in mistral.state_dict().items() if k.startswith("model.language_model.")}
    save_file(language, root / "text_encoders" / "mistral_3_small_tiny.safetensors")
    pipe = Flux2Pipeline.from_pretrained(folder, local_files_only=True, text_encoder=mistral)
    pipe.scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True,
                                                     base_shift=0.5, max_shift=1.15, base_image_seq_len=256,
                                                     max_image_seq_len=4096)
    pipe.set_progress_bar_config(disable=True)
    expected = np.asarray(pipe(prompt=BASE["prompt"], width=64, height=64, num_inference_steps=2, guidance_scale=4.0,
                               generator=torch.Generator("cpu").manual_seed(5)).images[0], dtype=np.int16)
    orch = build_orchestrator(models=LocalModels(root), outdir=tmp_path, device="cpu")
    req = {**BASE, "model": "flux2-dev-demo"}
    plain = np.asarray(orch.run(req).pil_images[0], dtype=np.int16)
    assert np.abs(plain - expected).max() > 1
    ours = np.asarray(orch.run({**req, "text_encoders": ["mistral_3_small_tiny"]}).pil_images[0], dtype=np.int16)
    assert np.abs(ours - expected).max() <= 1


def test_a_text_encoder_of_another_width_is_refused(setup, tmp_path):
    """A Qwen3 file whose width is not the one the transformer's text input takes (3 stacked layers) is refused at load,
    naming `text_encoders[0]` and the width allowed, before anything runs."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from sdcodex.core.errors import ModelLoadError
    from sdcodex.runtime import LocalModels, build_orchestrator

    root = setup[0]
    wide = Qwen3ForCausalLM(Qwen3Config(hidden_size=24, intermediate_size=16, num_hidden_layers=28,
                                        num_attention_heads=2, num_key_value_heads=2, head_dim=8, vocab_size=300))
    save_file({k: v.contiguous() for k, v in wide.state_dict().items() if k.startswith("model.")},
              root / "text_encoders" / "qwen_3_wide_tiny.safetensors")
    orch = build_orchestrator(models=LocalModels(root), outdir=tmp_path, device="cpu")
    with pytest.raises(ModelLoadError) as err:
        orch.run({**BASE, "model": "flux2-klein-base-demo", "text_encoders": ["qwen_3_wide_tiny"]})
    assert err.value.field == "text_encoders[0]" and "24 wide" in str(err.value) and err.value.allowed
