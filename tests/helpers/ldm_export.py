"""TEST-ONLY: write a Diffusers SD1.5/SD2/SDXL folder as an original LDM/SGM single file (the A1111 layout).

This is the inverse of sdcodex.models.convert_ldm, written independently (regex rules, Diffusers -> LDM)
so the round-trip tests check two separate statements of the mapping against each other.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import save_file

Rule = tuple[str, Callable[[re.Match], str]]
RESNET_BACK = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"),
               ("conv2", "out_layers.3"), ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection")]


def _sub_resnet(rest: str, table=RESNET_BACK) -> str:
    for new, old in table:
        if rest.startswith(new + "."):
            return old + rest[len(new):]
    return rest


def unet_to_ldm(sd: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    n = len(config["down_block_types"])
    layers = config["layers_per_block"]
    per = [layers] * n if isinstance(layers, int) else list(layers)  # blocks per level (BK-SDM: fewer)
    up_attn = ["CrossAttn" in t for t in config["up_block_types"]]
    start, out_start = [1], [0]  # LDM index of each level's first input / output block
    for b in range(n - 1):
        start.append(start[-1] + per[b] + 1)
        out_start.append(out_start[-1] + per[n - 1 - b] + 1)
    fixed = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
             "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2",
             "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2",
             "mid_block.attentions.0": "middle_block.1"}
    rules: list[Rule] = [
        (r"down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)",
         lambda m: f"input_blocks.{start[int(m[1])] + int(m[2])}.0.{_sub_resnet(m[3])}"),
        (r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.*)",
         lambda m: f"input_blocks.{start[int(m[1])] + int(m[2])}.1.{m[3]}"),
        (r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)",
         lambda m: f"input_blocks.{start[int(m[1])] + per[int(m[1])]}.0.op.{m[2]}"),
        (r"mid_block\.resnets\.(\d+)\.(.*)", lambda m: f"middle_block.{2 * int(m[1])}.{_sub_resnet(m[2])}"),
        (r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)",
         lambda m: f"output_blocks.{out_start[int(m[1])] + int(m[2])}.0.{_sub_resnet(m[3])}"),
        (r"up_blocks\.(\d+)\.attentions\.(\d+)\.(.*)",
         lambda m: f"output_blocks.{out_start[int(m[1])] + int(m[2])}.1.{m[3]}"),
        (r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)",
         lambda m: f"output_blocks.{out_start[int(m[1])] + per[n - 1 - int(m[1])]}."
                   f"{2 if up_attn[int(m[1])] else 1}.conv.{m[2]}"),
    ]
    return {_map(k, fixed, rules): v for k, v in sd.items()}


def vae_to_ldm(sd: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    n = len(config["block_out_channels"])
    attn = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
    res = [("conv_shortcut", "nin_shortcut")]
    rules: list[Rule] = [
        (r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)",
         lambda m: f"encoder.down.{m[1]}.block.{m[2]}.{_sub_resnet(m[3], res)}"),
        (r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)",
         lambda m: f"encoder.down.{m[1]}.downsample.conv.{m[2]}"),
        (r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)",
         lambda m: f"decoder.up.{n - 1 - int(m[1])}.block.{m[2]}.{_sub_resnet(m[3], res)}"),
        (r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)",
         lambda m: f"decoder.up.{n - 1 - int(m[1])}.upsample.conv.{m[2]}"),
        (r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.*)",
         lambda m: f"{m[1]}.mid.block_{int(m[2]) + 1}.{_sub_resnet(m[3], res)}"),
        (r"(encoder|decoder)\.mid_block\.attentions\.0\.(group_norm|to_q|to_k|to_v|to_out\.0)\.(.*)",
         lambda m: f"{m[1]}.mid.attn_1.{attn[m[2]]}.{m[3]}"),
        (r"(encoder|decoder)\.conv_norm_out\.(.*)", lambda m: f"{m[1]}.norm_out.{m[2]}"),
    ]
    out = {}
    for key, value in sd.items():
        new = _map(key, {}, rules)
        if re.search(r"mid\.attn_1\.(q|k|v|proj_out)\.weight$", new):
            value = value.reshape(*value.shape, 1, 1)  # LDM stores these as 1x1 convs
        out[new] = value
    return out


def clip_to_ldm(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {("text_model." + k if not k.startswith("text_model.") else k): v for k, v in sd.items()}
    out["text_model.embeddings.position_ids"] = torch.arange(77).unsqueeze(0)  # real files carry this buffer
    return out


def open_clip_to_ldm(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    sd = {k[len("text_model."):] if k.startswith("text_model.") else k: v for k, v in sd.items()}
    out = {"token_embedding.weight": sd.pop("embeddings.token_embedding.weight"),
           "positional_embedding": sd.pop("embeddings.position_embedding.weight"),
           "ln_final.weight": sd.pop("final_layer_norm.weight"), "ln_final.bias": sd.pop("final_layer_norm.bias"),
           "text_projection": sd.pop("text_projection.weight").t().contiguous(),
           "logit_scale": torch.tensor(4.6052)}
    layers = sorted({int(k.split(".")[2]) for k in sd if k.startswith("encoder.layers.")})
    names = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj",
             "self_attn.out_proj": "attn.out_proj"}
    for i in layers:
        src, dst = f"encoder.layers.{i}.", f"transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            out[dst + f"attn.in_proj_{kind}"] = torch.cat([sd.pop(f"{src}self_attn.{p}_proj.{kind}") for p in "qkv"])
            for new, old in names.items():
                out[dst + f"{old}.{kind}"] = sd.pop(f"{src}{new}.{kind}")
    sd.pop("embeddings.position_ids", None)
    assert not sd, f"unconverted OpenCLIP keys: {sorted(sd)[:5]}"
    return out


def sd2_text_to_ldm(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """SD2's text encoder as the file has it: the whole OpenCLIP tower — one resblock more than the CLIPTextModel
    (SD2 uses the penultimate layer; the last one is in the file but unused) and its text projection."""
    sd = {k[len("text_model."):] if k.startswith("text_model.") else k: v for k, v in sd.items()}
    layers = sorted({int(k.split(".")[2]) for k in sd if k.startswith("encoder.layers.")})
    gen = torch.Generator().manual_seed(7)
    last = f"encoder.layers.{layers[-1]}."
    extra = f"encoder.layers.{layers[-1] + 1}."
    for key in [k for k in sd if k.startswith(last)]:
        sd[extra + key[len(last):]] = torch.randn(sd[key].shape, generator=gen)
    width = sd["embeddings.token_embedding.weight"].shape[1]
    sd["text_projection.weight"] = torch.randn(width, width, generator=gen)
    return open_clip_to_ldm(sd)


def _map(key: str, fixed: dict[str, str], rules: list[Rule]) -> str:
    for old, new in fixed.items():
        if key.startswith(old + "."):
            return new + key[len(old):]
    for pattern, build in rules:
        m = re.fullmatch(pattern, key)
        if m:
            return build(m)
    return key


def export_ldm(folder: Path, out: Path, *, prefix: str = "", v_pred: bool = False,
               dtype: torch.dtype | None = None, sd2: bool = False) -> Path:
    """Write the Diffusers folder `folder` as one LDM single file `out`; `prefix` wraps every key (e.g. 'model.').
    `sd2`: the text encoder is written as SD2's OpenCLIP tower under 'cond_stage_model.model.'."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    folder = Path(folder)
    xl = (folder / "text_encoder_2").is_dir()
    unet_cfg = json.loads((folder / "unet" / "config.json").read_text())
    vae_cfg = json.loads((folder / "vae" / "config.json").read_text())
    unet = UNet2DConditionModel.from_pretrained(folder / "unet", local_files_only=True).state_dict()
    vae = AutoencoderKL.from_pretrained(folder / "vae", local_files_only=True).state_dict()
    te = CLIPTextModel.from_pretrained(folder / "text_encoder", local_files_only=True).state_dict()
    state: dict[str, torch.Tensor] = {}
    state.update({"model.diffusion_model." + k: v for k, v in unet_to_ldm(unet, unet_cfg).items()})
    state.update({"first_stage_model." + k: v for k, v in vae_to_ldm(vae, vae_cfg).items()})
    te_prefix = "conditioner.embedders.0.transformer." if xl else "cond_stage_model.transformer."
    if sd2:
        state.update({"cond_stage_model.model." + k: v for k, v in sd2_text_to_ldm(te).items()})
    else:
        state.update({te_prefix + k: v for k, v in clip_to_ldm(te).items()})
    if xl:
        te2 = CLIPTextModelWithProjection.from_pretrained(folder / "text_encoder_2", local_files_only=True).state_dict()
        state.update({"conditioner.embedders.1.model." + k: v for k, v in open_clip_to_ldm(te2).items()})
    state["alphas_cumprod"] = torch.linspace(0.99, 0.01, 1000)  # training leftovers real files carry
    if v_pred:
        state["v_pred"] = torch.tensor([])
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    out = Path(out)
    save_file({prefix + k: v.contiguous() for k, v in state.items()}, str(out))
    return out
