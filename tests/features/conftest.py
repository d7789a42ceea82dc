"""Fixtures for the feature tests: a models folder with the tiny demo models (linked), tiny LoRAs in kohya,
PEFT and SDXL layouts, tiny embeddings and a tiny VAE, all made here from the demo models' own modules."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

RANK = 4


def _linears(module: torch.nn.Module, needle: str) -> list[tuple[str, torch.nn.Linear]]:
    return [(n, m) for n, m in module.named_modules() if isinstance(m, torch.nn.Linear) and needle in n]


def _pair(gen: torch.Generator, mod: torch.nn.Linear) -> tuple[torch.Tensor, torch.Tensor]:
    down = torch.randn(RANK, mod.in_features, generator=gen) * 0.3
    up = torch.randn(mod.out_features, RANK, generator=gen) * 0.3
    return down, up


def kohya_lora(model, seed: int, *, te_prefixes=("lora_te_",), unet_name=lambda n: n) -> dict[str, torch.Tensor]:
    """kohya keys: lora_unet_<flat module> / lora_te_text_model_<flat module>, with alpha = rank / 2."""
    gen = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    for name, mod in _linears(model.components["unet"], "attn"):
        key = "lora_unet_" + unet_name(name).replace(".", "_")
        sd[f"{key}.lora_down.weight"], sd[f"{key}.lora_up.weight"] = _pair(gen, mod)
        sd[f"{key}.alpha"] = torch.tensor(RANK / 2)
    for prefix, slot in zip(te_prefixes, ("text_encoder", "text_encoder_2")):
        for name, mod in _linears(model.components[slot], "self_attn"):
            flat = name.replace(".", "_")
            key = prefix + (flat if flat.startswith("text_model_") else "text_model_" + flat)
            sd[f"{key}.lora_down.weight"], sd[f"{key}.lora_up.weight"] = _pair(gen, mod)
    return sd


def peft_lora(model, seed: int) -> dict[str, torch.Tensor]:
    """Diffusers/PEFT keys: unet.<module>.lora_A.weight / lora_B.weight (UNet only, no alpha = scale 1)."""
    gen = torch.Generator().manual_seed(seed)
    sd = {}
    for name, mod in _linears(model.components["unet"], "attn2"):
        sd[f"unet.{name}.lora_A.weight"], sd[f"unet.{name}.lora_B.weight"] = _pair(gen, mod)
    return sd


def sgm_name(name: str) -> str:
    """Diffusers -> SGM block names for the tiny SDXL UNet (2 blocks, 2 layers), written out by hand."""
    table = {"down_blocks.1.attentions.0": "input_blocks.4.1", "down_blocks.1.attentions.1": "input_blocks.5.1",
             "mid_block.attentions.0": "middle_block.1", "up_blocks.0.attentions.0": "output_blocks.0.1",
             "up_blocks.0.attentions.1": "output_blocks.1.1", "up_blocks.0.attentions.2": "output_blocks.2.1"}
    for old, new in table.items():
        if name.startswith(old + "."):
            return new + name[len(old):]
    raise AssertionError(name)


@pytest.fixture(scope="session")
def features_dir(demo_models_dir, tmp_path_factory) -> Path:
    from diffusers import AutoencoderKL

    from sdcodex.runtime import LocalModels

    root = tmp_path_factory.mktemp("features-models")
    demo = demo_models_dir / "demo"
    for name in ("sd15-demo", "sdxl-demo"):
        os.symlink(demo / name, root / name)
    for mode in ("lcm", "turbo", "lightning"):
        os.symlink(demo / "sd15-demo", root / f"sd15-{mode}-demo")
    plain = LocalModels(demo_models_dir)
    sd15 = plain.load(plain.resolve("sd15-demo"))
    sdxl = plain.load(plain.resolve("sdxl-demo"))
    (root / "Lora").mkdir()
    save_file(kohya_lora(sd15, 1), root / "Lora" / "tiny-kohya.safetensors", metadata={"ss_base_model_version": "sd_v1"})
    save_file(peft_lora(sd15, 2), root / "Lora" / "tiny-peft.safetensors")
    save_file(peft_lora(sd15, 3), root / "Lora" / "lcm-tiny.safetensors")
    save_file(kohya_lora(sdxl, 4, te_prefixes=("lora_te1_", "lora_te2_")), root / "Lora" / "tiny-xl.safetensors")
    save_file(kohya_lora(sdxl, 4, te_prefixes=("lora_te1_", "lora_te2_"), unet_name=sgm_name),
              root / "Lora" / "tiny-xl-sgm.safetensors")
    (root / "embeddings").mkdir()
    gen = torch.Generator().manual_seed(5)
    save_file({"emb_params": torch.randn(2, 32, generator=gen)}, root / "embeddings" / "tinyemb.safetensors")
    save_file({"clip_l": torch.randn(2, 32, generator=gen), "clip_g": torch.randn(2, 32, generator=gen)},
              root / "embeddings" / "tinyxlemb.safetensors")
    (root / "VAE").mkdir()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(123)
        vae = AutoencoderKL.from_config(sd15.components["vae"].config)
    save_file({k: v.contiguous() for k, v in vae.state_dict().items()}, root / "VAE" / "tiny-vae.safetensors")
    return root


@pytest.fixture(scope="session")
def features_models(features_dir):
    from sdcodex.runtime import LocalModels

    return LocalModels(features_dir, cache_size=3)


@pytest.fixture()
def forch(features_models, tmp_path):
    from sdcodex.runtime import build_orchestrator

    return build_orchestrator(models=features_models, outdir=tmp_path / "outputs", device="cpu")
