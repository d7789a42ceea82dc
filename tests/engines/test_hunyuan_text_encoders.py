"""HunyuanVideo 1.0 separate text-encoder files: the tiny demo's Llama text encoder saved as ComfyUI keeps
llava_llama3_fp16.safetensors ('model.' prefix, an LM head), bare, or under 'language_model.model.', and its CLIP
text encoder as a clip_l file, fill `text_encoder` / `text_encoder_2` of the Diffusers folder through the request's
`text_encoders` and give the folder's own frames; T5/UMT5 files are refused naming the file and their real kind."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

import sdcodex.engines  # noqa: F401  (registers engines)
from sdcodex.core.errors import ModelLoadError
from sdcodex.core.orchestrator import Orchestrator
from sdcodex.models import demo_video  # noqa: F401  (registers the demo builders)
from sdcodex.models.demo import build_demo_model
from sdcodex.models.flow_loader import load_flow_model
from sdcodex.runtime import LocalModels, MediaSaver

FOLDER = "hunyuan-video-demo"


def _module(folder: Path, sub: str) -> torch.nn.Module:
    import transformers

    cfg = json.loads((folder / sub / "config.json").read_text())
    return getattr(transformers, cfg["architectures"][0]).from_pretrained(folder / sub)


def _save(state: dict[str, torch.Tensor], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous().clone() for k, v in state.items()}, str(path))


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A models folder: the HunyuanVideo demo folder plus text-encoder files exported from it (and T5/UMT5 ones)."""
    from transformers import T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel

    root = tmp_path_factory.mktemp("hunyuan-te")
    build_demo_model("hunyuan_video", root)
    te = root / "text_encoders"
    llama = _module(root / FOLDER, "text_encoder").state_dict()
    vocab, hidden = llama["embed_tokens.weight"].shape
    lm_head = torch.randn(vocab, hidden, generator=torch.Generator().manual_seed(0))
    # ComfyUI's llava_llama3_fp16.safetensors: LlamaForCausalLM keys, LM head included
    _save({**{f"model.{k}": v for k, v in llama.items()}, "lm_head.weight": lm_head},
          te / "llava-llama3-tiny.safetensors")
    _save(llama, te / "llama-bare-tiny.safetensors")
    _save({**{f"language_model.model.{k}": v for k, v in llama.items()}, "language_model.lm_head.weight": lm_head},
          te / "llava-full-tiny.safetensors")
    _save({f"model.{k}": v * 1.5 if k == "embed_tokens.weight" else v for k, v in llama.items()},
          te / "llama-other-tiny.safetensors")
    clip = _module(root / FOLDER, "text_encoder_2").state_dict()
    _save({k if k.startswith("text_model.") else f"text_model.{k}": v for k, v in clip.items()},
          te / "clip-l-tiny.safetensors")
    # a T5-XXL-wide encoder (d_model 4096) and a UMT5 (relative bias in every block), both tiny otherwise
    t5 = T5EncoderModel(T5Config(vocab_size=32, d_model=4096, d_kv=4, d_ff=8, num_layers=1, num_heads=1))
    _save({k: v for k, v in t5.state_dict().items() if k != "encoder.embed_tokens.weight"},
          te / "t5xxl-tiny.safetensors")
    umt5 = UMT5EncoderModel(UMT5Config(vocab_size=32, d_model=16, d_kv=4, d_ff=8, num_layers=2, num_heads=2))
    _save({k: v for k, v in umt5.state_dict().items() if k != "encoder.embed_tokens.weight"},
          te / "umt5-tiny.safetensors")
    return root


@pytest.fixture(scope="module")
def models(root) -> LocalModels:
    return LocalModels(root, device="cpu")


def run(models: LocalModels, out: Path, **extra):
    orch = Orchestrator(models, MediaSaver(out), image_loader=lambda value, field: Image.open(value).convert("RGB"))
    return orch.run({"task": "txt2vid", "model": FOLDER, "prompt": "a red fox", "steps": 2, "seed": 7,
                     "num_frames": 5, "fps": 8.0, "width": 32, "height": 32, "output_format": "mp4", **extra})


def same_frames(a, b) -> bool:
    return len(a) == len(b) and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b))


@pytest.fixture(scope="module")
def reference(models, tmp_path_factory):
    return run(models, tmp_path_factory.mktemp("ref")).frames[0]


def test_llama_and_clip_files_give_the_folders_frames(models, reference, tmp_path):
    result = run(models, tmp_path, text_encoders=["llava-llama3-tiny", "clip-l-tiny"])
    assert same_frames(result.frames[0], reference)


@pytest.mark.parametrize("name", ["llama-bare-tiny", "llava-full-tiny"])
def test_llama_file_layouts(root, name):
    loaded = load_flow_model(root / FOLDER, models_dir=root, text_encoders=[name])
    assert loaded.variant["separate_files"] == ["text_encoder"]
    own = _module(root / FOLDER, "text_encoder").state_dict()
    got = loaded.components["text_encoder"].state_dict()
    assert type(loaded.components["text_encoder"]).__name__ == "LlamaModel" and set(got) == set(own)
    assert all(torch.equal(got[k], own[k]) for k in own)


def test_a_changed_llama_file_changes_the_frames(models, reference, tmp_path):
    """The file really is used: another Llama's weights give other frames."""
    result = run(models, tmp_path, text_encoders=["llama-other-tiny"])
    assert not same_frames(result.frames[0], reference)


@pytest.mark.parametrize("name,kind", [("t5xxl-tiny", "t5xxl"), ("umt5-tiny", "umt5")])
def test_t5_files_are_refused_naming_their_kind(root, name, kind):
    with pytest.raises(ModelLoadError) as err:
        load_flow_model(root / FOLDER, models_dir=root, text_encoders=["clip-l-tiny", name])
    assert f"{name}.safetensors: is a {kind} text encoder" in str(err.value)
    assert "hunyuan_video takes llama + clip_l" in str(err.value)
    assert err.value.field == "text_encoders[1]" and set(err.value.allowed) == {"llama", "clip_l"}


def test_two_llama_files_are_refused(root):
    with pytest.raises(ModelLoadError) as err:
        load_flow_model(root / FOLDER, models_dir=root, text_encoders=["llava-llama3-tiny", "llama-bare-tiny"])
    assert "a second file for the text_encoder slot" in str(err.value) and err.value.field == "text_encoders[1]"


def test_i2v_llava_encoder_is_not_replaced_by_a_llama_file(root, tmp_path):
    """HunyuanVideo-I2V's text encoder is a LLaVA model (text + vision tower): a Llama-only file is refused."""
    build_demo_model("hunyuan_video_i2v", tmp_path)
    llama = root / "text_encoders" / "llava-llama3-tiny.safetensors"
    with pytest.raises(ModelLoadError) as err:
        load_flow_model(tmp_path / "hunyuan-video-i2v-demo", models_dir=tmp_path, text_encoders=[str(llama)])
    assert "llava-llama3-tiny.safetensors: this model's text encoder is a llava model" in str(err.value)
    assert err.value.field == "text_encoders[0]"
