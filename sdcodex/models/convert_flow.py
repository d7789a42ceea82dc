"""Our own table-driven converters from the original single-file layouts to the Diffusers layouts of the flow models:
FLUX.1 in the BFL layout (``double_blocks.N.img_attn.qkv`` ...) -> FluxTransformer2DModel, and WAN in the original
layout (``blocks.N.self_attn.q`` ...) -> WanTransformer3DModel; plus the config each file implies (depth from the
highest block index, widths from tensor shapes) and the key clean-up of separate CLIP / T5 / UMT5 / VAE files.

Each table row is ``source name -> target name(s)`` with an operation: ``copy``, ``split`` (one fused tensor into
several along dim 0) or ``swap`` (the two halves of a shift/scale projection exchanged). ``{i}`` stands for a block
index. Parameter suffixes ``.weight``/``.bias`` follow the row; the BFL ``.scale`` of an RMSNorm becomes ``.weight``.
Tensors are read lazily (a Mapping of name -> tensor), so a memory-mapped file is touched only once per tensor.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch

from sdcodex.core.errors import ModelLoadError

#: key prefixes tools add in front of a bare transformer (ComfyUI, A1111/Forge, kohya)
TRANSFORMER_PREFIXES = ("model.diffusion_model.", "diffusion_model.", "model.", "")


@dataclass(frozen=True)
class Row:
    """One source tensor group -> one or more target tensor groups."""

    dst: tuple[str, ...]
    op: str = "copy"  # "copy" | "split" | "swap"


def _rows(table: Mapping[str, str | tuple[str, ...]], op: str = "copy") -> dict[str, Row]:
    return {src: Row((dst,) if isinstance(dst, str) else tuple(dst), op) for src, dst in table.items()}


# ---- FLUX.1 (black-forest-labs layout) ---------------------------------------------------------------------
FLUX_ROWS: dict[str, Row] = {
    **_rows({
        "img_in": "x_embedder",
        "txt_in": "context_embedder",
        "time_in.in_layer": "time_text_embed.timestep_embedder.linear_1",
        "time_in.out_layer": "time_text_embed.timestep_embedder.linear_2",
        "vector_in.in_layer": "time_text_embed.text_embedder.linear_1",
        "vector_in.out_layer": "time_text_embed.text_embedder.linear_2",
        "guidance_in.in_layer": "time_text_embed.guidance_embedder.linear_1",
        "guidance_in.out_layer": "time_text_embed.guidance_embedder.linear_2",
        "final_layer.linear": "proj_out",
        # double-stream blocks: image stream / text stream
        "double_blocks.{i}.img_mod.lin": "transformer_blocks.{i}.norm1.linear",
        "double_blocks.{i}.txt_mod.lin": "transformer_blocks.{i}.norm1_context.linear",
        "double_blocks.{i}.img_attn.norm.query_norm": "transformer_blocks.{i}.attn.norm_q",
        "double_blocks.{i}.img_attn.norm.key_norm": "transformer_blocks.{i}.attn.norm_k",
        "double_blocks.{i}.txt_attn.norm.query_norm": "transformer_blocks.{i}.attn.norm_added_q",
        "double_blocks.{i}.txt_attn.norm.key_norm": "transformer_blocks.{i}.attn.norm_added_k",
        "double_blocks.{i}.img_attn.proj": "transformer_blocks.{i}.attn.to_out.0",
        "double_blocks.{i}.txt_attn.proj": "transformer_blocks.{i}.attn.to_add_out",
        "double_blocks.{i}.img_mlp.0": "transformer_blocks.{i}.ff.net.0.proj",
        "double_blocks.{i}.img_mlp.2": "transformer_blocks.{i}.ff.net.2",
        "double_blocks.{i}.txt_mlp.0": "transformer_blocks.{i}.ff_context.net.0.proj",
        "double_blocks.{i}.txt_mlp.2": "transformer_blocks.{i}.ff_context.net.2",
        # single-stream blocks
        "single_blocks.{i}.modulation.lin": "single_transformer_blocks.{i}.norm.linear",
        "single_blocks.{i}.norm.query_norm": "single_transformer_blocks.{i}.attn.norm_q",
        "single_blocks.{i}.norm.key_norm": "single_transformer_blocks.{i}.attn.norm_k",
        "single_blocks.{i}.linear2": "single_transformer_blocks.{i}.proj_out",
    }),
    **_rows({
        "double_blocks.{i}.img_attn.qkv": ("transformer_blocks.{i}.attn.to_q", "transformer_blocks.{i}.attn.to_k",
                                           "transformer_blocks.{i}.attn.to_v"),
        "double_blocks.{i}.txt_attn.qkv": ("transformer_blocks.{i}.attn.add_q_proj",
                                           "transformer_blocks.{i}.attn.add_k_proj",
                                           "transformer_blocks.{i}.attn.add_v_proj"),
        # q, k, v (hidden each) then the MLP input projection (the rest)
        "single_blocks.{i}.linear1": ("single_transformer_blocks.{i}.attn.to_q",
                                      "single_transformer_blocks.{i}.attn.to_k",
                                      "single_transformer_blocks.{i}.attn.to_v",
                                      "single_transformer_blocks.{i}.proj_mlp"),
    }, op="split"),
    # BFL's final adaLN projects to (shift, scale); Diffusers' AdaLayerNormContinuous reads (scale, shift)
    **_rows({"final_layer.adaLN_modulation.1": "norm_out.linear"}, op="swap"),
}

# ---- WAN 2.1 / 2.2 (Wan-Video original layout) -------------------------------------------------------------
_WAN_ATTN = {"q": "to_q", "k": "to_k", "v": "to_v", "o": "to_out.0", "norm_q": "norm_q", "norm_k": "norm_k"}
WAN_ROWS: dict[str, Row] = _rows({
    "patch_embedding": "patch_embedding",
    "text_embedding.0": "condition_embedder.text_embedder.linear_1",
    "text_embedding.2": "condition_embedder.text_embedder.linear_2",
    "time_embedding.0": "condition_embedder.time_embedder.linear_1",
    "time_embedding.2": "condition_embedder.time_embedder.linear_2",
    "time_projection.1": "condition_embedder.time_proj",
    "head.head": "proj_out",
    "head.modulation": "scale_shift_table",
    # Wan 2.1 image-to-video (CLIP image branch) only; 2.2 models have none of these
    "img_emb.proj.0": "condition_embedder.image_embedder.norm1",
    "img_emb.proj.1": "condition_embedder.image_embedder.ff.net.0.proj",
    "img_emb.proj.3": "condition_embedder.image_embedder.ff.net.2",
    "img_emb.proj.4": "condition_embedder.image_embedder.norm2",
    "img_emb.emb_pos": "condition_embedder.image_embedder.pos_embed",
    "blocks.{i}.modulation": "blocks.{i}.scale_shift_table",
    # the original applies norm1 (self-attn), norm3 (cross-attn), norm2 (FFN); Diffusers numbers them in order
    "blocks.{i}.norm3": "blocks.{i}.norm2",
    "blocks.{i}.norm2": "blocks.{i}.norm3",
    "blocks.{i}.ffn.0": "blocks.{i}.ffn.net.0.proj",
    "blocks.{i}.ffn.2": "blocks.{i}.ffn.net.2",
    **{f"blocks.{{i}}.self_attn.{a}": f"blocks.{{i}}.attn1.{b}" for a, b in _WAN_ATTN.items()},
    **{f"blocks.{{i}}.cross_attn.{a}": f"blocks.{{i}}.attn2.{b}" for a, b in _WAN_ATTN.items()},
    "blocks.{i}.cross_attn.k_img": "blocks.{i}.attn2.add_k_proj",
    "blocks.{i}.cross_attn.v_img": "blocks.{i}.attn2.add_v_proj",
    "blocks.{i}.cross_attn.norm_k_img": "blocks.{i}.attn2.norm_added_k",
})

_BLOCK = re.compile(r"^(double_blocks|single_blocks|blocks)\.(\d+)\.")
_SUFFIXES = {"weight": "weight", "bias": "bias", "scale": "weight"}


def _split_key(key: str) -> tuple[str, str, str | None]:
    """'double_blocks.3.img_attn.qkv.weight' -> ('double_blocks.{i}.img_attn.qkv', 'weight', '3')."""
    m = _BLOCK.match(key)
    index = m.group(2) if m else None
    generic = f"{m.group(1)}.{{i}}.{key[m.end():]}" if m else key
    stem, _, last = generic.rpartition(".")
    if last in _SUFFIXES and stem:
        return stem, _SUFFIXES[last], index
    return generic, "", index  # a bare parameter (WAN's modulation)


def find_prefix(keys: Sequence[str], marker: str) -> str:
    """The tool prefix in front of `marker` (e.g. 'model.diffusion_model.'), '' when bare."""
    for prefix in TRANSFORMER_PREFIXES:
        if prefix + marker in keys:
            return prefix
    raise ModelLoadError(f"no {marker!r} key (with or without a {', '.join(p for p in TRANSFORMER_PREFIXES if p)} "
                         "prefix)", field="model")


def strip_prefix(keys: Sequence[str], prefix: str) -> dict[str, str]:
    """local name -> file name for every key under `prefix` (other keys, e.g. a bundled VAE, are left out)."""
    return {k[len(prefix):]: k for k in keys if k.startswith(prefix)}


def plan(keys: Sequence[str], rows: Mapping[str, Row]) -> tuple[list[tuple[str, tuple[str, ...], str]], list[str]]:
    """[(source key, target keys, op)] for every key a row claims, and the keys no row claims."""
    out, unknown = [], []
    for key in keys:
        stem, suffix, index = _split_key(key)
        row = rows.get(stem)
        if row is None:
            unknown.append(key)
            continue
        tail = f".{suffix}" if suffix else ""
        out.append((key, tuple(d.replace("{i}", index or "") + tail for d in row.dst), row.op))
    return out, unknown


def convert(sd: Mapping[str, torch.Tensor], rows: Mapping[str, Row], split_sizes: Callable[[str, int], list[int]],
            what: str) -> dict[str, torch.Tensor]:
    """Apply a table to a (lazy) state dict. Unknown keys are an error naming a few of them."""
    steps, unknown = plan(list(sd), rows)
    if unknown:
        raise ModelLoadError(f"{len(unknown)} keys that are not {what} (e.g. {', '.join(unknown[:3])})", field="model")
    out: dict[str, torch.Tensor] = {}
    for src, dst, op in steps:
        tensor = sd[src]
        if op == "copy":
            out[dst[0]] = tensor
        elif op == "swap":
            first, second = tensor.chunk(2, dim=0)
            out[dst[0]] = torch.cat([second, first], dim=0)
        else:
            sizes = split_sizes(src, tensor.shape[0])
            for name, part in zip(dst, torch.split(tensor, sizes, dim=0)):
                out[name] = part.contiguous()
    return out


# ---- configs implied by a file -------------------------------------------------------------------------------
def _depth(shapes: Mapping[str, Sequence[int]], prefix: str) -> int:
    pat = re.compile(re.escape(prefix) + r"(\d+)\.")
    return 1 + max((int(m.group(1)) for k in shapes if (m := pat.match(k))), default=-1)


def _need(shapes: Mapping[str, Sequence[int]], key: str, what: str) -> list[int]:
    if key not in shapes:
        raise ModelLoadError(f"not a complete {what} file: {key!r} is missing", field="model")
    return list(shapes[key])


def flux_config(shapes: Mapping[str, Sequence[int]], base: Mapping[str, Any]) -> dict[str, Any]:
    """FluxTransformer2DModel config for BFL-layout keys (prefix stripped); `base` supplies what shapes cannot
    say (axes_dims_rope, patch_size)."""
    img_in = _need(shapes, "img_in.weight", "FLUX transformer")
    hidden, in_channels = img_in[0], img_in[1]
    head_dim = _need(shapes, "double_blocks.0.img_attn.norm.query_norm.scale", "FLUX transformer")[0]
    out = _need(shapes, "final_layer.linear.weight", "FLUX transformer")[0]
    patch = int(base.get("patch_size", 1))
    cfg = dict(base)
    cfg.update(in_channels=in_channels, num_layers=_depth(shapes, "double_blocks."),
               num_single_layers=_depth(shapes, "single_blocks."), attention_head_dim=head_dim,
               num_attention_heads=hidden // head_dim,
               joint_attention_dim=_need(shapes, "txt_in.weight", "FLUX transformer")[1],
               pooled_projection_dim=_need(shapes, "vector_in.in_layer.weight", "FLUX transformer")[1],
               guidance_embeds="guidance_in.in_layer.weight" in shapes,
               out_channels=None if out // (patch * patch) == in_channels else out // (patch * patch))
    return cfg


def flux_split_sizes(config: Mapping[str, Any]) -> Callable[[str, int], list[int]]:
    hidden = int(config["num_attention_heads"]) * int(config["attention_head_dim"])

    def sizes(key: str, rows: int) -> list[int]:
        if ".linear1." in key:  # q, k, v, then the MLP input
            return [hidden, hidden, hidden, rows - 3 * hidden]
        return [rows // 3] * 3
    return sizes


def wan_config(shapes: Mapping[str, Sequence[int]], base: Mapping[str, Any]) -> dict[str, Any]:
    """WanTransformer3DModel config for original-layout keys (prefix stripped); `base` supplies the head size
    (attention_head_dim), qk_norm, eps and rope_max_seq_len."""
    pe = _need(shapes, "patch_embedding.weight", "WAN transformer")
    dim, in_channels, patch = pe[0], pe[1], list(pe[2:])
    head_dim = int(base.get("attention_head_dim", 128))
    head = _need(shapes, "head.head.weight", "WAN transformer")[0]
    cfg = dict(base)
    cfg.update(patch_size=patch, in_channels=in_channels, out_channels=head // math.prod(patch),
               num_layers=_depth(shapes, "blocks."), num_attention_heads=dim // head_dim, attention_head_dim=head_dim,
               ffn_dim=_need(shapes, "blocks.0.ffn.0.weight", "WAN transformer")[0],
               text_dim=_need(shapes, "text_embedding.0.weight", "WAN transformer")[1],
               freq_dim=_need(shapes, "time_embedding.0.weight", "WAN transformer")[1],
               cross_attn_norm="blocks.0.norm3.weight" in shapes,
               image_dim=shapes["img_emb.proj.0.weight"][0] if "img_emb.proj.0.weight" in shapes else None,
               added_kv_proj_dim=dim if "blocks.0.cross_attn.k_img.weight" in shapes else None,
               pos_embed_seq_len=shapes["img_emb.emb_pos"][1] if "img_emb.emb_pos" in shapes else None)
    return cfg


def convert_flux(sd: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """BFL-layout FLUX.1 transformer (prefix stripped) -> FluxTransformer2DModel state dict."""
    return convert(sd, FLUX_ROWS, flux_split_sizes(config), "part of a FLUX.1 transformer")


def convert_wan(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Original-layout WAN transformer (prefix stripped) -> WanTransformer3DModel state dict."""
    return convert(sd, WAN_ROWS, lambda key, rows: [rows], "part of a WAN transformer")


# ---- separate component files --------------------------------------------------------------------------------
IGNORED_TEXT_KEYS = ("position_ids", "logit_scale", "text_projection.weight", "text_projection")


def text_encoder_keys(keys: Sequence[str], prefix: str, kind: str, expected: set[str]) -> dict[str, str]:
    """Module name -> file name for a CLIP or T5/UMT5 text-encoder file (tool prefix stripped, tied and unused
    tensors handled): CLIP files may or may not carry 'text_model.'; T5 files may hold only one of 'shared' and
    'encoder.embed_tokens' (they are the same tensor)."""
    local = {k[len(prefix):]: k for k in keys if k.startswith(prefix)}
    local = {k: v for k, v in local.items() if not k.endswith(IGNORED_TEXT_KEYS)}
    if kind == "clip":
        with_prefix = any(k.startswith("text_model.") for k in expected)
        fixed = {}
        for k, v in local.items():
            bare = k[len("text_model."):] if k.startswith("text_model.") else k
            fixed[("text_model." + bare) if with_prefix else bare] = v
        return fixed
    for a, b in (("shared.weight", "encoder.embed_tokens.weight"), ("encoder.embed_tokens.weight", "shared.weight")):
        if a in expected and a not in local and b in local:
            local[a] = local[b]
    tied = ("shared.weight", "encoder.embed_tokens.weight")
    return {k: v for k, v in local.items() if k in expected or k not in tied}


__all__ = ["FLUX_ROWS", "WAN_ROWS", "Row", "convert", "convert_flux", "convert_wan", "find_prefix", "flux_config",
           "flux_split_sizes", "plan", "strip_prefix", "text_encoder_keys", "wan_config", "TRANSFORMER_PREFIXES"]
