"""Key conversion from the original LDM / SGM single-file layout (A1111, Forge, ComfyUI checkpoints) to Diffusers.

Table-driven: each component gets a table of block prefixes (built from its Diffusers config) and a table of
sub-layer renames. Converters read tensors from any Mapping (a lazy safetensors view works) and only touch
the keys they map; keys they cannot map are passed through unchanged so a strict ``load_state_dict`` names them.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

import torch

# Single-file prefix -> pipeline component. SD1.5 uses cond_stage_model (HF CLIP-L), SD2 cond_stage_model.model
# (OpenCLIP-H), SDXL conditioner.embedders.N.
COMPONENT_PREFIXES: dict[str, str] = {
    "model.diffusion_model.": "unet",
    "first_stage_model.": "vae",
    "cond_stage_model.transformer.": "text_encoder",
    "cond_stage_model.model.": "text_encoder",
    "conditioner.embedders.0.transformer.": "text_encoder",
    "conditioner.embedders.1.model.": "text_encoder_2",
}
UNET_MARKER = "model.diffusion_model.input_blocks.0.0.weight"
# Keys single files carry that belong to no module (training state, markers, buffers).
IGNORED_SUFFIXES = ("position_ids", "logit_scale", "attn_mask")

UNET_RESNET_RENAMES = {"in_layers.0": "norm1", "in_layers.2": "conv1", "out_layers.0": "norm2",
                       "out_layers.3": "conv2", "emb_layers.1": "time_emb_proj", "skip_connection": "conv_shortcut"}
VAE_RESNET_RENAMES = {"nin_shortcut": "conv_shortcut"}
VAE_ATTENTION_RENAMES = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}
# Older Diffusers VAE files name the mid attention differently.
OLD_DIFFUSERS_VAE_ATTENTION = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}
OPEN_CLIP_RENAMES = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "attn": "self_attn",
                     "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"}
OPEN_CLIP_TOP = {"positional_embedding": "text_model.embeddings.position_embedding.weight",
                 "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
                 "ln_final.weight": "text_model.final_layer_norm.weight",
                 "ln_final.bias": "text_model.final_layer_norm.bias"}

BlockTable = dict[str, tuple[str, dict[str, str]]]  # ldm prefix -> (diffusers prefix, sub-layer renames)


def find_root_prefix(keys: Iterable[str]) -> str:
    """The tool prefix wrapped around a single file's LDM keys ('' for a plain file, e.g. 'model.' if nested)."""
    for key in keys:
        if key.endswith(UNET_MARKER):
            return key[: -len(UNET_MARKER)]
    for key in keys:
        for prefix in COMPONENT_PREFIXES:
            at = key.find(prefix)
            if at > 0 and not key.startswith(tuple(COMPONENT_PREFIXES)):
                return key[:at]
    return ""


def split_components(keys: Iterable[str], root: str = "") -> dict[str, dict[str, str]]:
    """Group single-file keys by component: {component: {key inside component: full file key}}."""
    out: dict[str, dict[str, str]] = {}
    for full in keys:
        if not full.startswith(root):
            continue
        key = full[len(root):]
        for prefix, component in COMPONENT_PREFIXES.items():
            if key.startswith(prefix):
                out.setdefault(component, {})[key[len(prefix):]] = full
                break
    return out


def _rename_parts(rest: str, renames: Mapping[str, str]) -> str:
    """Rename the leading dotted segment(s) of `rest` using the longest matching entry of `renames`."""
    for old in sorted(renames, key=len, reverse=True):
        if rest == old or rest.startswith(old + "."):
            return renames[old] + rest[len(old):]
    return rest


def _apply_table(sd: Mapping[str, torch.Tensor], table: BlockTable,
                 fix: Callable[[str, torch.Tensor], torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for key in sd:
        if key.endswith(IGNORED_SUFFIXES):
            continue
        parts = key.split(".")
        for n in range(min(len(parts) - 1, 5), 0, -1):
            prefix = ".".join(parts[:n])
            if prefix in table:
                new_prefix, renames = table[prefix]
                rest = _rename_parts(".".join(parts[n:]), renames)
                new_key = f"{new_prefix}.{rest}"
                out[new_key] = fix(new_key, sd[key]) if fix else sd[key]
                break
        else:
            out[key] = sd[key]  # unknown: let strict loading name it
    return out


def unet_table(config: Mapping[str, Any]) -> BlockTable:
    """LDM UNet block prefixes -> Diffusers prefixes for a UNet2DConditionModel config."""
    down, up = list(config["down_block_types"]), list(config["up_block_types"])
    layers = config["layers_per_block"]
    per = [int(layers)] * len(down) if isinstance(layers, int) else [int(n) for n in layers]
    res, none = UNET_RESNET_RENAMES, {}
    table: BlockTable = {
        "time_embed.0": ("time_embedding.linear_1", none), "time_embed.2": ("time_embedding.linear_2", none),
        "input_blocks.0.0": ("conv_in", none), "out.0": ("conv_norm_out", none), "out.2": ("conv_out", none),
        "label_emb.0.0": ("add_embedding.linear_1", none), "label_emb.0.2": ("add_embedding.linear_2", none),
        "middle_block.0": ("mid_block.resnets.0", res), "middle_block.1": ("mid_block.attentions.0", none),
        "middle_block.2": ("mid_block.resnets.1", res),
    }
    if config.get("class_embed_type") in ("timestep", "projection"):
        table["label_emb.0.0"] = ("class_embedding.linear_1", none)
        table["label_emb.0.2"] = ("class_embedding.linear_2", none)
    index = 1
    for b, kind in enumerate(down):
        for layer in range(per[b]):
            table[f"input_blocks.{index}.0"] = (f"down_blocks.{b}.resnets.{layer}", res)
            if "CrossAttn" in kind:
                table[f"input_blocks.{index}.1"] = (f"down_blocks.{b}.attentions.{layer}", none)
            index += 1
        if b < len(down) - 1:
            table[f"input_blocks.{index}.0.op"] = (f"down_blocks.{b}.downsamplers.0.conv", none)
            index += 1
    index = 0
    for b, kind in enumerate(up):
        attn, level = "CrossAttn" in kind, per[len(up) - 1 - b]
        for layer in range(level + 1):
            table[f"output_blocks.{index}.0"] = (f"up_blocks.{b}.resnets.{layer}", res)
            if attn:
                table[f"output_blocks.{index}.1"] = (f"up_blocks.{b}.attentions.{layer}", none)
            if layer == level and b < len(up) - 1:
                table[f"output_blocks.{index}.{2 if attn else 1}.conv"] = (f"up_blocks.{b}.upsamplers.0.conv", none)
            index += 1
    return table


def convert_unet(sd: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """UNet keys without the 'model.diffusion_model.' prefix -> UNet2DConditionModel state dict."""
    return _apply_table(sd, unet_table(config))


def vae_table(config: Mapping[str, Any]) -> BlockTable:
    """LDM VAE block prefixes -> AutoencoderKL prefixes (decoder blocks are stored in reverse order in LDM)."""
    n, per = len(config["block_out_channels"]), int(config["layers_per_block"])
    res, attn, none = VAE_RESNET_RENAMES, VAE_ATTENTION_RENAMES, {}
    table: BlockTable = {"quant_conv": ("quant_conv", none), "post_quant_conv": ("post_quant_conv", none)}
    for part in ("encoder", "decoder"):
        table[f"{part}.conv_in"] = (f"{part}.conv_in", none)
        table[f"{part}.conv_out"] = (f"{part}.conv_out", none)
        table[f"{part}.norm_out"] = (f"{part}.conv_norm_out", none)
        table[f"{part}.mid.block_1"] = (f"{part}.mid_block.resnets.0", res)
        table[f"{part}.mid.block_2"] = (f"{part}.mid_block.resnets.1", res)
        table[f"{part}.mid.attn_1"] = (f"{part}.mid_block.attentions.0", attn)
    for b in range(n):
        for layer in range(per):
            table[f"encoder.down.{b}.block.{layer}"] = (f"encoder.down_blocks.{b}.resnets.{layer}", res)
        if b < n - 1:
            table[f"encoder.down.{b}.downsample.conv"] = (f"encoder.down_blocks.{b}.downsamplers.0.conv", none)
        ldm = n - 1 - b
        for layer in range(per + 1):
            table[f"decoder.up.{ldm}.block.{layer}"] = (f"decoder.up_blocks.{b}.resnets.{layer}", res)
        if b < n - 1:
            table[f"decoder.up.{ldm}.upsample.conv"] = (f"decoder.up_blocks.{b}.upsamplers.0.conv", none)
    return table


def _attention_to_linear(key: str, tensor: torch.Tensor) -> torch.Tensor:
    """LDM VAE attention uses 1x1 convs; Diffusers uses Linear: drop the trailing 1-sized dims."""
    if ".attentions." in key and key.endswith(".weight") and tensor.ndim > 2 and "group_norm" not in key:
        return tensor.reshape(tensor.shape[0], tensor.shape[1])
    return tensor


def convert_vae(sd: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """VAE keys (LDM 'encoder.down.N...' or Diffusers layout) -> AutoencoderKL state dict."""
    if any(k.startswith(("encoder.down_blocks.", "decoder.up_blocks.")) for k in sd):
        table = {f"{p}.mid_block.attentions.0": (f"{p}.mid_block.attentions.0", OLD_DIFFUSERS_VAE_ATTENTION)
                 for p in ("encoder", "decoder")}
        return _apply_table(sd, table, _attention_to_linear)
    return _apply_table(sd, vae_table(config), _attention_to_linear)


def convert_clip_l(sd: Mapping[str, torch.Tensor], *, text_model_prefix: bool) -> dict[str, torch.Tensor]:
    """HF-layout CLIP keys ('text_model.*') -> CLIPTextModel keys; transformers >= 5.6 has no 'text_model.'."""
    out: dict[str, torch.Tensor] = {}
    for key in sd:
        if key.endswith(IGNORED_SUFFIXES):
            continue
        new = key
        if not text_model_prefix and key.startswith("text_model."):
            new = key[len("text_model."):]
        elif text_model_prefix and not key.startswith(("text_model.", "text_projection")):
            new = "text_model." + key
        out[new] = sd[key]
    return out


def is_open_clip(keys: Iterable[str]) -> bool:
    """Keys of an OpenCLIP text tower (prefix stripped): `transformer.resblocks.N.*` and `token_embedding`."""
    keys = list(keys)
    return "token_embedding.weight" in keys and any(k.startswith("transformer.resblocks.") for k in keys)


def open_clip_layers(keys: Mapping[str, str], layers: int) -> dict[str, str]:
    """The keys of an OpenCLIP text tower a CLIPTextModel of `layers` layers uses: SD2 conditions on the penultimate
    layer (Diffusers' SD2 text encoder keeps 23 of OpenCLIP-H's 24), so later resblocks and the projection go."""
    out = {}
    for key, full in keys.items():
        if key.startswith("transformer.resblocks.") and int(key.split(".")[2]) >= layers:
            continue
        if key == "text_projection":
            continue
        out[key] = full
    return out


def convert_open_clip(sd: Mapping[str, torch.Tensor], *, text_model_prefix: bool = True) -> dict[str, torch.Tensor]:
    """OpenCLIP text tower keys (SDXL 'conditioner.embedders.1.model.*', SD2 'cond_stage_model.model.*') ->
    CLIPTextModel(WithProjection) keys."""
    out: dict[str, torch.Tensor] = {}
    for key in sd:
        if key.endswith(IGNORED_SUFFIXES):
            continue
        if key in OPEN_CLIP_TOP:
            out[OPEN_CLIP_TOP[key]] = sd[key]
        elif key == "text_projection":
            out["text_projection.weight"] = sd[key].t().contiguous()
        elif key.startswith("transformer.resblocks."):
            parts = key.split(".")
            layer, rest = parts[2], ".".join(parts[3:])
            base = f"text_model.encoder.layers.{layer}."
            if rest in ("attn.in_proj_weight", "attn.in_proj_bias"):
                kind = "weight" if rest.endswith("weight") else "bias"
                q, k, v = sd[key].chunk(3, dim=0)
                for name, value in (("q_proj", q), ("k_proj", k), ("v_proj", v)):
                    out[f"{base}self_attn.{name}.{kind}"] = value.contiguous()
            else:
                out[base + _rename_parts(rest, OPEN_CLIP_RENAMES)] = sd[key]
        else:
            out[key] = sd[key]
    if not text_model_prefix:
        out = {k[len("text_model."):] if k.startswith("text_model.") else k: v for k, v in out.items()}
    return out


# ---- ControlNet (the original ControlNet layout: control_model.input_blocks / input_hint_block / zero_convs) ------
CONTROLNET_PREFIX = "control_model."


def ldm_controlnet_levels(keys: Iterable[str]) -> tuple[list[int], list[bool]]:
    """(blocks per level, attention per level) of an original-layout ControlNet (its `control_model.` prefix
    stripped), read from which input blocks exist: an `.0.op` block ends a level."""
    keys = list(keys)
    count = 1 + max((int(k.split(".")[1]) for k in keys if k.startswith("input_blocks.")), default=0)
    per: list[int] = [0]
    attn: list[bool] = [False]
    for i in range(1, count):
        if f"input_blocks.{i}.0.op.weight" in keys:
            per.append(0)
            attn.append(False)
            continue
        per[-1] += 1
        attn[-1] = attn[-1] or any(k.startswith(f"input_blocks.{i}.1.") for k in keys)
    return per, attn


def controlnet_table(per: list[int], attn: list[bool], hint_convs: int) -> BlockTable:
    """Original ControlNet prefixes -> ControlNetModel prefixes: the UNet encoder half (as `unet_table`), the hint
    encoder (`hint_convs` convolutions at even indices), one zero convolution per input block and the middle one."""
    down = ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attn]
    config = {"down_block_types": down, "up_block_types": [], "layers_per_block": per}
    table = {k: v for k, v in unet_table(config).items() if not k.startswith(("out.", "output_blocks."))}
    none: dict[str, str] = {}
    for n in range(hint_convs):
        name = "conv_in" if n == 0 else "conv_out" if n == hint_convs - 1 else f"blocks.{n - 1}"
        table[f"input_hint_block.{2 * n}"] = (f"controlnet_cond_embedding.{name}", none)
    for i in range(1 + sum(per) + len(per) - 1):
        table[f"zero_convs.{i}.0"] = (f"controlnet_down_blocks.{i}", none)
    table["middle_block_out.0"] = ("controlnet_mid_block", none)
    return table


def convert_controlnet(sd: Mapping[str, Any]) -> dict[str, Any]:
    """Original ControlNet keys (`control_model.` prefix stripped or not) -> ControlNetModel keys. Works on any
    mapping whose values are tensors or shapes (so the config can be read from the converted shapes)."""
    plain = {(k[len(CONTROLNET_PREFIX):] if k.startswith(CONTROLNET_PREFIX) else k): k for k in sd}
    per, attn = ldm_controlnet_levels(plain)
    hints = len({k.split(".")[1] for k in plain if k.startswith("input_hint_block.") and k.endswith(".weight")})
    table = controlnet_table(per, attn, hints)
    view = {local: sd[full] for local, full in plain.items()}
    return _apply_table(view, table)
