"""Our own table-driven converters from the original single-file layouts to the Diffusers layouts of the flow models:
FLUX.1 in the BFL layout (``double_blocks.N.img_attn.qkv`` ...) -> FluxTransformer2DModel, and WAN in the original
layout (``blocks.N.self_attn.q`` ...) -> WanTransformer3DModel, SD3/SD3.5 in the Stability layout
(``joint_blocks.N.x_block.attn.qkv`` ...) -> SD3Transformer2DModel, and the WAN 2.1 / 2.2 VAEs in the Wan-Video layout
(``encoder.downsamples.N`` ...) -> AutoencoderKLWan; plus the config each file implies (depth from the highest block
index, widths from tensor shapes) and the key clean-up of separate CLIP / T5 / UMT5 / VAE files.

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
from sdcodex.models.shapes import chroma_config, flux2_config, flux_config, hunyuan_video15_original_config, hunyuan_video_original_config, ltx2_config, qwen_image_config, sd3_config, wan_config, z_image_config  # noqa: F401  (re-exported)
from sdcodex.models.shapes import need as _need

#: key prefixes tools add in front of a bare transformer (ComfyUI, A1111/Forge, kohya)
TRANSFORMER_PREFIXES = ("model.diffusion_model.", "diffusion_model.", "model.", "")


@dataclass(frozen=True)
class Row:
    """One source tensor group -> one or more target tensor groups."""

    dst: tuple[str, ...]
    op: str = "copy"  # "copy" | "split" | "swap" | "drop" (a tensor the Diffusers model has no place for)


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

# ---- FLUX.2 (black-forest-labs layout: flux2-dev.safetensors, flux-2-klein-*.safetensors) -------------------------
# The renames of Diffusers' convert_flux2_transformer_checkpoint_to_diffusers: shared modulations keep their names
# (`.lin` -> `.linear`), the double blocks' fused qkv is split into q/k/v, the single blocks keep their fused
# qkv+MLP projection (`linear1` -> `attn.to_qkv_mlp_proj`), and the final adaLN's (shift, scale) is swapped.
FLUX2_ROWS: dict[str, Row] = {
    **_rows({
        "img_in": "x_embedder",
        "txt_in": "context_embedder",
        "time_in.in_layer": "time_guidance_embed.timestep_embedder.linear_1",
        "time_in.out_layer": "time_guidance_embed.timestep_embedder.linear_2",
        "guidance_in.in_layer": "time_guidance_embed.guidance_embedder.linear_1",
        "guidance_in.out_layer": "time_guidance_embed.guidance_embedder.linear_2",
        "double_stream_modulation_img.lin": "double_stream_modulation_img.linear",
        "double_stream_modulation_txt.lin": "double_stream_modulation_txt.linear",
        "single_stream_modulation.lin": "single_stream_modulation.linear",
        "final_layer.linear": "proj_out",
        "double_blocks.{i}.img_attn.norm.query_norm": "transformer_blocks.{i}.attn.norm_q",
        "double_blocks.{i}.img_attn.norm.key_norm": "transformer_blocks.{i}.attn.norm_k",
        "double_blocks.{i}.txt_attn.norm.query_norm": "transformer_blocks.{i}.attn.norm_added_q",
        "double_blocks.{i}.txt_attn.norm.key_norm": "transformer_blocks.{i}.attn.norm_added_k",
        "double_blocks.{i}.img_attn.proj": "transformer_blocks.{i}.attn.to_out.0",
        "double_blocks.{i}.txt_attn.proj": "transformer_blocks.{i}.attn.to_add_out",
        "double_blocks.{i}.img_mlp.0": "transformer_blocks.{i}.ff.linear_in",
        "double_blocks.{i}.img_mlp.2": "transformer_blocks.{i}.ff.linear_out",
        "double_blocks.{i}.txt_mlp.0": "transformer_blocks.{i}.ff_context.linear_in",
        "double_blocks.{i}.txt_mlp.2": "transformer_blocks.{i}.ff_context.linear_out",
        "single_blocks.{i}.linear1": "single_transformer_blocks.{i}.attn.to_qkv_mlp_proj",
        "single_blocks.{i}.linear2": "single_transformer_blocks.{i}.attn.to_out",
        "single_blocks.{i}.norm.query_norm": "single_transformer_blocks.{i}.attn.norm_q",
        "single_blocks.{i}.norm.key_norm": "single_transformer_blocks.{i}.attn.norm_k",
    }),
    **_rows({
        "double_blocks.{i}.img_attn.qkv": ("transformer_blocks.{i}.attn.to_q", "transformer_blocks.{i}.attn.to_k",
                                           "transformer_blocks.{i}.attn.to_v"),
        "double_blocks.{i}.txt_attn.qkv": ("transformer_blocks.{i}.attn.add_q_proj",
                                           "transformer_blocks.{i}.attn.add_k_proj",
                                           "transformer_blocks.{i}.attn.add_v_proj"),
    }, op="split"),
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

# ---- SD3 / SD3.5 MMDiT (Stability AI layout: sd3.5_large.safetensors, sd3.5_medium.safetensors) ------------------
# joint_blocks.N.x_block (image stream) / context_block (text stream); 3.5 Medium adds an image self-attention
# (x_block.attn2) in its first blocks; the last context block is "pre-only" (no proj/mlp, adaLN to shift+scale).
SD3_ROWS: dict[str, Row] = {
    **_rows({
        "pos_embed": "pos_embed.pos_embed",
        "x_embedder.proj": "pos_embed.proj",
        "t_embedder.mlp.0": "time_text_embed.timestep_embedder.linear_1",
        "t_embedder.mlp.2": "time_text_embed.timestep_embedder.linear_2",
        "y_embedder.mlp.0": "time_text_embed.text_embedder.linear_1",
        "y_embedder.mlp.2": "time_text_embed.text_embedder.linear_2",
        "context_embedder": "context_embedder",
        "final_layer.linear": "proj_out",
        "joint_blocks.{i}.x_block.adaLN_modulation.1": "transformer_blocks.{i}.norm1.linear",
        "joint_blocks.{i}.context_block.adaLN_modulation.1": "transformer_blocks.{i}.norm1_context.linear",
        "joint_blocks.{i}.x_block.attn.ln_q": "transformer_blocks.{i}.attn.norm_q",
        "joint_blocks.{i}.x_block.attn.ln_k": "transformer_blocks.{i}.attn.norm_k",
        "joint_blocks.{i}.context_block.attn.ln_q": "transformer_blocks.{i}.attn.norm_added_q",
        "joint_blocks.{i}.context_block.attn.ln_k": "transformer_blocks.{i}.attn.norm_added_k",
        "joint_blocks.{i}.x_block.attn.proj": "transformer_blocks.{i}.attn.to_out.0",
        "joint_blocks.{i}.context_block.attn.proj": "transformer_blocks.{i}.attn.to_add_out",
        "joint_blocks.{i}.x_block.attn2.ln_q": "transformer_blocks.{i}.attn2.norm_q",
        "joint_blocks.{i}.x_block.attn2.ln_k": "transformer_blocks.{i}.attn2.norm_k",
        "joint_blocks.{i}.x_block.attn2.proj": "transformer_blocks.{i}.attn2.to_out.0",
        "joint_blocks.{i}.x_block.mlp.fc1": "transformer_blocks.{i}.ff.net.0.proj",
        "joint_blocks.{i}.x_block.mlp.fc2": "transformer_blocks.{i}.ff.net.2",
        "joint_blocks.{i}.context_block.mlp.fc1": "transformer_blocks.{i}.ff_context.net.0.proj",
        "joint_blocks.{i}.context_block.mlp.fc2": "transformer_blocks.{i}.ff_context.net.2",
    }),
    **_rows({
        "joint_blocks.{i}.x_block.attn.qkv": ("transformer_blocks.{i}.attn.to_q", "transformer_blocks.{i}.attn.to_k",
                                              "transformer_blocks.{i}.attn.to_v"),
        "joint_blocks.{i}.context_block.attn.qkv": ("transformer_blocks.{i}.attn.add_q_proj",
                                                    "transformer_blocks.{i}.attn.add_k_proj",
                                                    "transformer_blocks.{i}.attn.add_v_proj"),
        "joint_blocks.{i}.x_block.attn2.qkv": ("transformer_blocks.{i}.attn2.to_q", "transformer_blocks.{i}.attn2.to_k",
                                               "transformer_blocks.{i}.attn2.to_v"),
    }, op="split"),
    # Stability's final adaLN projects to (shift, scale); Diffusers' AdaLayerNormContinuous reads (scale, shift)
    **_rows({"final_layer.adaLN_modulation.1": "norm_out.linear"}, op="swap"),
}

# ---- Z-Image (Tongyi-MAI original layout: ComfyUI's z_image_turbo_bf16.safetensors) --------------------------
# The renames are the ones Diffusers' convert_z_image_transformer_checkpoint_to_diffusers applies: the fused
# attention.qkv is split into to_q/to_k/to_v, out -> to_out.0, q_norm/k_norm -> norm_q/norm_k, the one patch size
# (2x2, 1 frame) gets its "2-1" key, and `norm_final` (unused by the model) is dropped.
_Z_BLOCK = {"attention.out": "attention.to_out.0", "attention.q_norm": "attention.norm_q",
            "attention.k_norm": "attention.norm_k", "feed_forward.w1": "feed_forward.w1",
            "feed_forward.w2": "feed_forward.w2", "feed_forward.w3": "feed_forward.w3",
            "attention_norm1": "attention_norm1", "attention_norm2": "attention_norm2", "ffn_norm1": "ffn_norm1",
            "ffn_norm2": "ffn_norm2", "adaLN_modulation.0": "adaLN_modulation.0"}
Z_IMAGE_ROWS: dict[str, Row] = {
    **_rows({
        "x_embedder": "all_x_embedder.2-1",
        "final_layer.linear": "all_final_layer.2-1.linear",
        "final_layer.adaLN_modulation.1": "all_final_layer.2-1.adaLN_modulation.1",
        "t_embedder.mlp.0": "t_embedder.mlp.0", "t_embedder.mlp.2": "t_embedder.mlp.2",
        "cap_embedder.0": "cap_embedder.0", "cap_embedder.1": "cap_embedder.1",
        "x_pad_token": "x_pad_token", "cap_pad_token": "cap_pad_token",
        **{f"{stack}.{{i}}.{a}": f"{stack}.{{i}}.{b}" for stack in ("layers", "noise_refiner", "context_refiner")
           for a, b in _Z_BLOCK.items()},
    }),
    **_rows({f"{stack}.{{i}}.attention.qkv": (f"{stack}.{{i}}.attention.to_q", f"{stack}.{{i}}.attention.to_k",
                                               f"{stack}.{{i}}.attention.to_v")
             for stack in ("layers", "noise_refiner", "context_refiner")}, op="split"),
    "norm_final": Row((), "drop"),
}

# ---- Chroma (lodestones, BFL layout) -------------------------------------------------------------------------
# FLUX.1's rows (Chroma's blocks are FLUX's without the modulation projections, whose rows simply go unused) plus the
# distilled guidance approximator, renamed as Diffusers' convert_chroma_transformer_checkpoint_to_diffusers does.
CHROMA_ROWS: dict[str, Row] = {
    **FLUX_ROWS,
    **_rows({
        "distilled_guidance_layer.in_proj": "distilled_guidance_layer.in_proj",
        "distilled_guidance_layer.out_proj": "distilled_guidance_layer.out_proj",
        "distilled_guidance_layer.layers.{i}.in_layer": "distilled_guidance_layer.layers.{i}.linear_1",
        "distilled_guidance_layer.layers.{i}.out_layer": "distilled_guidance_layer.layers.{i}.linear_2",
        "distilled_guidance_layer.norms.{i}": "distilled_guidance_layer.norms.{i}",
    }),
}

# ---- HunyuanVideo 1.0 / 1.5 (Tencent's original layout: hunyuan_video_720_cfgdistill_bf16.safetensors, ComfyUI's
# diffusion_models/ files and city96's GGUFs) --------------------------------------------------------------------
# The renames of Diffusers' convert_hunyuan_video_transformer_to_diffusers (1.0) and of its HunyuanVideo 1.5 script:
# the text input's token refiner (txt_in.*) becomes context_embedder.*, fused qkv projections are split, the single
# blocks' linear1 holds q, k, v and the MLP input (1.0 only: 1.5 has no single blocks), the final adaLN's (shift,
# scale) is swapped. 1.5 keeps q, k, v apart and adds the ByT5 (byt5_in), image (vision_in) and condition-type
# embeddings. Affine-free LayerNorms (img_norm1 ...) have no tensors.
_HY_REFINER = "txt_in.individual_token_refiner.blocks.{i}"
_HY_TXT_IN = {
    "txt_in.input_embedder": "context_embedder.proj_in",
    "txt_in.t_embedder.mlp.0": "context_embedder.time_text_embed.timestep_embedder.linear_1",
    "txt_in.t_embedder.mlp.2": "context_embedder.time_text_embed.timestep_embedder.linear_2",
    "txt_in.c_embedder.linear_1": "context_embedder.time_text_embed.text_embedder.linear_1",
    "txt_in.c_embedder.linear_2": "context_embedder.time_text_embed.text_embedder.linear_2",
    **{f"{_HY_REFINER}.{a}": f"context_embedder.token_refiner.refiner_blocks.{{i}}.{b}" for a, b in (
        ("norm1", "norm1"), ("norm2", "norm2"), ("self_attn_proj", "attn.to_out.0"), ("mlp.fc1", "ff.net.0.proj"),
        ("mlp.fc2", "ff.net.2"), ("adaLN_modulation.1", "norm_out.linear"))},
}
_HY_DOUBLE = {
    "img_in.proj": "x_embedder.proj",
    "final_layer.linear": "proj_out",
    **{f"double_blocks.{{i}}.{a}": f"transformer_blocks.{{i}}.{b}" for a, b in (
        ("img_mod.linear", "norm1.linear"), ("txt_mod.linear", "norm1_context.linear"),
        ("img_attn_q_norm", "attn.norm_q"), ("img_attn_k_norm", "attn.norm_k"),
        ("txt_attn_q_norm", "attn.norm_added_q"), ("txt_attn_k_norm", "attn.norm_added_k"),
        ("img_attn_proj", "attn.to_out.0"), ("txt_attn_proj", "attn.to_add_out"),
        ("img_mlp.fc1", "ff.net.0.proj"), ("img_mlp.fc2", "ff.net.2"),
        ("txt_mlp.fc1", "ff_context.net.0.proj"), ("txt_mlp.fc2", "ff_context.net.2"))},
}
HUNYUAN_VIDEO_ROWS: dict[str, Row] = {
    **_rows({
        **_HY_TXT_IN, **_HY_DOUBLE,
        "time_in.mlp.0": "time_text_embed.timestep_embedder.linear_1",
        "time_in.mlp.2": "time_text_embed.timestep_embedder.linear_2",
        "vector_in.in_layer": "time_text_embed.text_embedder.linear_1",
        "vector_in.out_layer": "time_text_embed.text_embedder.linear_2",
        "guidance_in.mlp.0": "time_text_embed.guidance_embedder.linear_1",
        "guidance_in.mlp.2": "time_text_embed.guidance_embedder.linear_2",
        "single_blocks.{i}.modulation.linear": "single_transformer_blocks.{i}.norm.linear",
        "single_blocks.{i}.q_norm": "single_transformer_blocks.{i}.attn.norm_q",
        "single_blocks.{i}.k_norm": "single_transformer_blocks.{i}.attn.norm_k",
        "single_blocks.{i}.linear2": "single_transformer_blocks.{i}.proj_out",
    }),
    **_rows({
        f"{_HY_REFINER}.self_attn_qkv": tuple(f"context_embedder.token_refiner.refiner_blocks.{{i}}.attn.to_{x}"
                                               for x in "qkv"),
        "double_blocks.{i}.img_attn_qkv": tuple(f"transformer_blocks.{{i}}.attn.to_{x}" for x in "qkv"),
        "double_blocks.{i}.txt_attn_qkv": tuple(f"transformer_blocks.{{i}}.attn.add_{x}_proj" for x in "qkv"),
        # q, k, v (hidden each) then the MLP input projection (the rest), as FLUX's single blocks
        "single_blocks.{i}.linear1": tuple(f"single_transformer_blocks.{{i}}.{x}"
                                           for x in ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp")),
    }, op="split"),
    **_rows({"final_layer.adaLN_modulation.1": "norm_out.linear"}, op="swap"),
}
HUNYUAN_VIDEO15_ROWS: dict[str, Row] = {
    **_rows({
        **_HY_TXT_IN, **_HY_DOUBLE,
        "time_in.mlp.0": "time_embed.timestep_embedder.linear_1",
        "time_in.mlp.2": "time_embed.timestep_embedder.linear_2",
        "cond_type_embedding": "cond_type_embed",
        "byt5_in.layernorm": "context_embedder_2.norm",
        "byt5_in.fc1": "context_embedder_2.linear_1",
        "byt5_in.fc2": "context_embedder_2.linear_2",
        "byt5_in.fc3": "context_embedder_2.linear_3",
        "vision_in.proj.0": "image_embedder.norm_in",
        "vision_in.proj.1": "image_embedder.linear_1",
        "vision_in.proj.3": "image_embedder.linear_2",
        "vision_in.proj.4": "image_embedder.norm_out",
        **{f"double_blocks.{{i}}.{s}_attn_{x}": f"transformer_blocks.{{i}}.attn.{t}" for s, x, t in (
            ("img", "q", "to_q"), ("img", "k", "to_k"), ("img", "v", "to_v"),
            ("txt", "q", "add_q_proj"), ("txt", "k", "add_k_proj"), ("txt", "v", "add_v_proj"))},
    }),
    **_rows({f"{_HY_REFINER}.self_attn_qkv": tuple(f"context_embedder.token_refiner.refiner_blocks.{{i}}.attn.to_{x}"
                                                    for x in "qkv")}, op="split"),
    **_rows({"final_layer.adaLN_modulation.1": "norm_out.linear"}, op="swap"),
}

_BLOCK = re.compile(r"^(double_blocks|single_blocks|joint_blocks|blocks|layers|noise_refiner|context_refiner"
                    r"|txt_in\.individual_token_refiner\.blocks"
                    r"|distilled_guidance_layer\.layers|distilled_guidance_layer\.norms)\.(\d+)\.")
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
        if op == "drop":
            continue
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


# ---- LTX-2 (Lightricks layout: ltx-2-19b-dev.safetensors, model.diffusion_model.) ------------------------------
# Whole name parts renamed (the renames of Diffusers' convert_ltx2_transformer_to_diffusers, applied per dotted part
# so a name that contains another, audio_patchify_proj / patchify_proj, cannot be half-renamed); nothing is split.
LTX2_PARTS: dict[str, str] = {
    "patchify_proj": "proj_in", "audio_patchify_proj": "audio_proj_in",
    "adaln_single": "time_embed", "audio_adaln_single": "audio_time_embed",
    "av_ca_video_scale_shift_adaln_single": "av_cross_attn_video_scale_shift",
    "av_ca_a2v_gate_adaln_single": "av_cross_attn_video_a2v_gate",
    "av_ca_audio_scale_shift_adaln_single": "av_cross_attn_audio_scale_shift",
    "av_ca_v2a_gate_adaln_single": "av_cross_attn_audio_v2a_gate",
    "scale_shift_table_a2v_ca_video": "video_a2v_cross_attn_scale_shift_table",
    "scale_shift_table_a2v_ca_audio": "audio_a2v_cross_attn_scale_shift_table",
    "q_norm": "norm_q", "k_norm": "norm_k",
}
#: parts of the file under the transformer's prefix that are not the transformer (the text connectors: Diffusers
#: keeps them in their own `connectors` component, which comes from the base folder)
LTX2_NOT_TRANSFORMER = ("video_embeddings_connector.", "audio_embeddings_connector.")


def ltx2_name(key: str) -> str:
    """A Lightricks-layout transformer key -> its LTX2VideoTransformer3DModel name."""
    return ".".join(LTX2_PARTS.get(part, part) for part in key.split("."))


def convert_ltx2(sd: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Lightricks-layout LTX-2 transformer (prefix stripped) -> LTX2VideoTransformer3DModel state dict; the text
    connectors in the same file are left out (the base folder's `connectors` is used)."""
    return {ltx2_name(k): sd[k] for k in sd if not k.startswith(LTX2_NOT_TRANSFORMER)}


# ---- LTX-2 video VAE (Lightricks layout: the all-in-one file's `vae.` part, a separate video VAE file) ------------
# Lightricks number the encoder's blocks and its downsamplers in one list (even: a stage's residual blocks, odd: the
# stage's downsampler, the last: the mid block) and the decoder's likewise (0: the mid block, then an upsampler and a
# stage's residual blocks in turn); `res_blocks` are Diffusers' `resnets`, the per-channel latent statistics are the
# latents_mean / latents_std buffers. (The numbering Diffusers' convert_ltx2_vae_to_diffusers spells out for the
# 4-stage VAE, for any depth.)
LTX2_VAE_STATS = {"per_channel_statistics.mean-of-means": "latents_mean",
                  "per_channel_statistics.std-of-means": "latents_std"}
LTX2_VAE_UNUSED = ("per_channel_statistics.channel", "per_channel_statistics.mean-of-stds")
_LTX2_VAE_BLOCK = re.compile(r"^(encoder\.down_blocks|decoder\.up_blocks)\.(\d+)\.(.+)$")


def ltx2_vae_keymap(keys: Sequence[str]) -> dict[str, str]:
    """AutoencoderKLLTX2Video name -> file name for a Lightricks-layout video VAE (prefix stripped)."""
    last = max((int(m.group(2)) for k in keys if (m := _LTX2_VAE_BLOCK.match(k)) and m.group(1).startswith("enc")),
               default=0)
    out: dict[str, str] = {}
    for key in keys:
        if key in LTX2_VAE_STATS:
            out[LTX2_VAE_STATS[key]] = key
            continue
        if key in LTX2_VAE_UNUSED:
            continue
        name = key
        m = _LTX2_VAE_BLOCK.match(key)
        if m:
            n, rest = int(m.group(2)), m.group(3)
            if m.group(1).startswith("enc"):
                name = ("encoder.mid_block." if n == last else f"encoder.down_blocks.{n // 2}." if n % 2 == 0
                        else f"encoder.down_blocks.{n // 2}.downsamplers.0.") + rest
            else:
                name = ("decoder.mid_block." if n == 0 else f"decoder.up_blocks.{(n - 1) // 2}.upsamplers.0."
                        if n % 2 else f"decoder.up_blocks.{(n - 2) // 2}.") + rest
        out[".".join("resnets" if part == "res_blocks" else part for part in name.split("."))] = key
    return out


# ---- configs implied by a file: the rules live in shapes.py (flux_config, wan_config are re-exported here) ----
def flux_split_sizes(config: Mapping[str, Any]) -> Callable[[str, int], list[int]]:
    hidden = int(config["num_attention_heads"]) * int(config["attention_head_dim"])

    def sizes(key: str, rows: int) -> list[int]:
        if ".linear1." in key:  # q, k, v, then the MLP input
            return [hidden, hidden, hidden, rows - 3 * hidden]
        return [rows // 3] * 3
    return sizes


def convert_chroma(sd: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """BFL-layout Chroma transformer (prefix stripped) -> ChromaTransformer2DModel state dict."""
    return convert(sd, CHROMA_ROWS, flux_split_sizes(config), "part of a Chroma transformer")


def convert_flux2(sd: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """BFL-layout FLUX.2 transformer (prefix stripped) -> Flux2Transformer2DModel state dict."""
    return convert(sd, FLUX2_ROWS, lambda key, rows: [rows // 3] * 3, "part of a FLUX.2 transformer")


def convert_z_image(sd: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Original-layout Z-Image transformer (prefix stripped) -> ZImageTransformer2DModel state dict."""
    head = int(config["dim"]) // int(config["n_heads"])
    sizes = [int(config["n_heads"]) * head, int(config["n_kv_heads"]) * head, int(config["n_kv_heads"]) * head]
    return convert(sd, Z_IMAGE_ROWS, lambda key, rows: sizes, "part of a Z-Image transformer")


def convert_sd3(sd: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Stability-layout SD3/SD3.5 transformer (prefix stripped) -> SD3Transformer2DModel state dict. The last block's
    pre-only context adaLN holds (shift, scale) like the final layer, so its halves are exchanged too."""
    out = convert(sd, SD3_ROWS, lambda key, rows: [rows // 3] * 3, "part of an SD3 transformer")
    last = int(config["num_layers"]) - 1
    for param in ("weight", "bias"):
        key = f"transformer_blocks.{last}.norm1_context.linear.{param}"
        if key in out:
            shift, scale = out[key].chunk(2, dim=0)
            out[key] = torch.cat([scale, shift], dim=0)
    return out


def convert_flux(sd: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """BFL-layout FLUX.1 transformer (prefix stripped) -> FluxTransformer2DModel state dict."""
    return convert(sd, FLUX_ROWS, flux_split_sizes(config), "part of a FLUX.1 transformer")


def convert_hunyuan_video(sd: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Original-layout HunyuanVideo 1.0 transformer (prefix stripped) -> HunyuanVideoTransformer3DModel state dict."""
    return convert(sd, HUNYUAN_VIDEO_ROWS, flux_split_sizes(config), "part of a HunyuanVideo transformer")


def convert_hunyuan_video15(sd: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Original-layout HunyuanVideo 1.5 transformer (prefix stripped) -> HunyuanVideo15Transformer3DModel state dict."""
    return convert(sd, HUNYUAN_VIDEO15_ROWS, lambda key, rows: [rows // 3] * 3,
                   "part of a HunyuanVideo 1.5 transformer")


def convert_wan(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Original-layout WAN transformer (prefix stripped) -> WanTransformer3DModel state dict."""
    return convert(sd, WAN_ROWS, lambda key, rows: [rows], "part of a WAN transformer")


# ---- WAN VAE (Wan-Video original layout: ComfyUI's wan_2.1_vae / wan2.2_vae) ---------------------------------
# Block lists are Sequentials in the original: Wan 2.1 keeps one flat list per side (encoder: residual blocks and
# resamples in order; decoder: num_res_blocks+1 residual blocks then an upsample, per stage), Wan 2.2 nests one
# list per stage (`downsamples.I.downsamples.J`). Each entry is numbered (n = flat index, stage, k = index among
# the stage's residual blocks) and placed by WAN_VAE_BLOCKS; the parts inside an entry by WAN_VAE_PARTS.
#: whole modules outside the block lists; {s} = encoder | decoder
WAN_VAE_FIXED: dict[str, str] = {
    "conv1": "quant_conv", "conv2": "post_quant_conv",
    "{s}.conv1": "{s}.conv_in", "{s}.head.0": "{s}.norm_out", "{s}.head.2": "{s}.conv_out",
    "{s}.middle.0": "{s}.mid_block.resnets.0", "{s}.middle.1": "{s}.mid_block.attentions.0",
    "{s}.middle.2": "{s}.mid_block.resnets.1",
}
#: inside an entry: a residual block's Sequential (RMS norm, SiLU, conv, RMS norm, SiLU, dropout, conv) and shortcut;
#: resample and attention parts keep their names
WAN_VAE_PARTS: dict[str, str] = {
    "residual.0": "norm1", "residual.2": "conv1", "residual.3": "norm2", "residual.6": "conv2",
    "shortcut": "conv_shortcut", "resample.1": "resample.1", "time_conv": "time_conv",
    "norm": "norm", "to_qkv": "to_qkv", "proj": "proj",
}
#: (version, side, entry kind) -> target module
WAN_VAE_BLOCKS: dict[tuple[str, str, str], str] = {
    ("2.1", "encoder", "residual"): "encoder.down_blocks.{n}",
    ("2.1", "encoder", "resample"): "encoder.down_blocks.{n}",
    ("2.1", "encoder", "attention"): "encoder.down_blocks.{n}",
    ("2.1", "decoder", "residual"): "decoder.up_blocks.{stage}.resnets.{k}",
    ("2.1", "decoder", "resample"): "decoder.up_blocks.{stage}.upsamplers.0",
    ("2.2", "encoder", "residual"): "encoder.down_blocks.{stage}.resnets.{k}",
    ("2.2", "encoder", "resample"): "encoder.down_blocks.{stage}.downsampler",
    ("2.2", "decoder", "residual"): "decoder.up_blocks.{stage}.resnets.{k}",
    ("2.2", "decoder", "resample"): "decoder.up_blocks.{stage}.upsampler",
}
_VAE_ENTRY = re.compile(r"^(encoder|decoder)\.(?:downsamples|upsamples)\.(\d+)\.(?:(?:downsamples|upsamples)\.(\d+)\.)?"
                        r"(.+)$")
_VAE_PARAMS = ("weight", "bias", "gamma")


@dataclass(frozen=True)
class VaeEntry:
    """One residual block / resample of a WAN VAE block list, with its place in the Diffusers model."""

    side: str
    source: str     # key prefix in the file, e.g. 'decoder.upsamples.4.'
    kind: str       # 'residual' | 'resample' | 'attention'
    n: int
    stage: int
    k: int


def wan_vae_version(keys: Sequence[str]) -> str:
    """'2.2' when the block lists are nested per stage (Wan 2.2 residual VAE), else '2.1'."""
    return "2.2" if any(_nested(k) for k in keys) else "2.1"


def _nested(key: str) -> bool:
    m = _VAE_ENTRY.match(key)
    return bool(m and m.group(3) is not None)


def vae_entries(keys: Sequence[str]) -> list[VaeEntry]:
    """The block-list entries of an original-layout WAN VAE, numbered in order per side."""
    parts: dict[tuple[str, int, int | None], set[str]] = {}
    for key in keys:
        m = _VAE_ENTRY.match(key)
        if m:
            j = int(m.group(3)) if m.group(3) is not None else None
            parts.setdefault((m.group(1), int(m.group(2)), j), set()).add(m.group(4).split(".")[0])
    out: list[VaeEntry] = []
    for side in ("encoder", "decoder"):
        stage = k = 0
        for (s, i, j), names in sorted((e for e in parts.items() if e[0][0] == side),
                                       key=lambda e: (e[0][1], -1 if e[0][2] is None else e[0][2])):
            kind = ("resample" if names & {"resample", "time_conv"} else "attention" if "to_qkv" in names
                    else "residual")
            list_name = "downsamples" if side == "encoder" else "upsamples"
            source = f"{side}.{list_name}.{i}." + (f"{list_name}.{j}." if j is not None else "")
            if j is not None:  # 2.2: one list per stage
                out.append(VaeEntry(side, source, kind, i, i, j))
                continue
            out.append(VaeEntry(side, source, kind, i, stage, k))
            if kind == "resample":
                stage, k = stage + 1, 0
            elif kind == "residual":
                k += 1
    return out


def _vae_part(rest: str) -> str | None:
    """'residual.2.weight' -> 'conv1.weight'; None for a part no row names."""
    part, _, param = rest.rpartition(".")
    if param not in _VAE_PARAMS:
        return None
    if not part:
        return rest
    return f"{WAN_VAE_PARTS[part]}.{param}" if part in WAN_VAE_PARTS else None


def wan_vae_keymap(keys: Sequence[str]) -> dict[str, str]:
    """Diffusers AutoencoderKLWan name -> file name for an original-layout WAN VAE (prefix stripped).
    A key no row claims is a ModelLoadError naming a few of them."""
    version = wan_vae_version(keys)
    out: dict[str, str] = {}
    claimed: set[str] = set()
    fixed = {src.replace("{s}", s): dst.replace("{s}", s) for src, dst in WAN_VAE_FIXED.items()
             for s in ("encoder", "decoder")}
    places = {e.source: e for e in vae_entries(keys)}
    for key in keys:
        m = _VAE_ENTRY.match(key)
        if m:
            entry = places[key[: len(key) - len(m.group(4))]]
            target = WAN_VAE_BLOCKS.get((version, entry.side, entry.kind))
            part = _vae_part(m.group(4))
            if target is None or part is None:
                continue
            base = target.format(n=entry.n, stage=entry.stage, k=entry.k)
        else:
            module, _, param = key.rpartition(".")
            stem = next((s for s in fixed if module == s or module.startswith(s + ".")), None)
            if stem is None or param not in _VAE_PARAMS:
                continue
            part = _vae_part(key[len(stem) + 1:])
            if part is None:
                continue
            base = fixed[stem]
        out[f"{base}.{part}"] = key
        claimed.add(key)
    unknown = [k for k in keys if k not in claimed]
    if unknown:
        raise ModelLoadError(f"{len(unknown)} keys that are not part of a Wan {version} VAE (e.g. "
                             f"{', '.join(unknown[:3])})", field="vae")
    return out


def wan_vae_config(shapes: Mapping[str, Sequence[int]], base: Mapping[str, Any]) -> dict[str, Any]:
    """AutoencoderKLWan config for an original-layout file (prefix stripped): widths, depth, latent channels,
    temporal downsampling, patching and the Wan 2.2 residual form from the shapes; `base` supplies the rest
    (latents_mean/std, attn_scales)."""
    keys = list(shapes)
    entries = vae_entries(keys)
    conv_in = _need(shapes, "encoder.conv1.weight", "WAN VAE")
    z_dim = _need(shapes, "conv2.weight", "WAN VAE")[0]
    head = _need(shapes, "decoder.head.2.weight", "WAN VAE")
    enc = [e for e in entries if e.side == "encoder"]
    stages = 1 + max((e.stage for e in enc), default=0)
    widths = []
    for s in range(stages):
        res = [e for e in enc if e.stage == s and e.kind == "residual"]
        if not res:
            raise ModelLoadError(f"not a complete WAN VAE file: encoder stage {s} has no residual blocks", field="vae")
        widths.append(_need(shapes, f"{res[-1].source}residual.2.weight", "WAN VAE")[0])
    base_dim = conv_in[0]
    temporal = [any(e.kind == "resample" and e.stage == s and f"{e.source}time_conv.weight" in shapes for e in enc)
                for s in range(stages - 1)]
    in_ch = conv_in[1]
    patch = round(math.sqrt(in_ch / 3)) if in_ch > 3 else None
    cfg = dict(base)
    cfg.update(base_dim=base_dim, z_dim=z_dim, in_channels=in_ch, out_channels=head[0],
               dim_mult=[w // base_dim for w in widths],
               num_res_blocks=sum(1 for e in enc if e.stage == 0 and e.kind == "residual"),
               temperal_downsample=temporal, is_residual=wan_vae_version(keys) == "2.2", patch_size=patch,
               decoder_base_dim=_need(shapes, "decoder.head.0.gamma", "WAN VAE")[0] // max(1, widths[0] // base_dim),
               scale_factor_spatial=2 ** (stages - 1) * (patch or 1), scale_factor_temporal=2 ** sum(temporal))
    if cfg["decoder_base_dim"] == base_dim:
        cfg["decoder_base_dim"] = None
    return cfg


# ---- separate component files --------------------------------------------------------------------------------
IGNORED_TEXT_KEYS = ("position_ids", "logit_scale", "text_projection.weight", "text_projection")


def text_encoder_keys(keys: Sequence[str], prefix: str, kind: str, expected: set[str]) -> dict[str, str]:
    """Module name -> file name for a CLIP, T5/UMT5 or Llama text-encoder file (tool prefix stripped, tied and unused
    tensors handled): CLIP files may or may not carry 'text_model.'; T5 files may hold only one of 'shared' and
    'encoder.embed_tokens' (they are the same tensor); Llama files (llava_llama3: 'model.layers.N...', bare, or
    under 'language_model.model.') lose their LM head and any saved rotary table."""
    local = {k[len(prefix):]: k for k in keys if k.startswith(prefix)}
    keep = {"text_projection.weight"} & set(expected)  # CLIPTextModelWithProjection (SD3) uses it
    local = {k: v for k, v in local.items() if k in keep or not k.endswith(IGNORED_TEXT_KEYS)}
    if kind == "qwen_vl":  # ComfyUI's names (model.layers, visual.) -> transformers 5's (model.language_model, model.visual)
        fixed = {}
        for k, v in local.items():
            if k.startswith("visual."):
                k = "model." + k
            elif k.startswith("model.") and not k.startswith(("model.language_model.", "model.visual.")):
                k = "model.language_model." + k[len("model."):]
            fixed[k] = v
        if "lm_head.weight" in expected and "lm_head.weight" not in fixed:
            # the pipelines read hidden states only; a file saved without the LM head gets the embedding in its place
            fixed["lm_head.weight"] = fixed.get("model.language_model.embed_tokens.weight", "")
        return {k: v for k, v in fixed.items() if v}
    if kind == "llama_causal":  # Qwen3ForCausalLM (FLUX.2 Klein): the decoder under `model.`, the LM head tied
        fixed = {}
        for k, v in local.items():
            if k.endswith("rotary_emb.inv_freq"):
                continue
            fixed[k if k in expected else "model." + k] = v
        if "lm_head.weight" in expected and "lm_head.weight" not in fixed:
            # Qwen3-4B ties it to the embedding; the pipeline reads hidden states only, never the head
            fixed["lm_head.weight"] = fixed.get("model.embed_tokens.weight", "")
        return {k: v for k, v in fixed.items() if v}
    if kind == "llama":
        fixed = {}
        for k, v in local.items():
            if k.startswith(("lm_head.", "language_model.lm_head.")) or k.endswith("rotary_emb.inv_freq"):
                continue
            bare = next((k[len(p):] for p in ("language_model.model.", "model.") if k.startswith(p)), k)
            fixed[k if k in expected else bare] = v
        return fixed
    if kind == "clip":
        with_prefix = any(k.startswith("text_model.") for k in expected)
        fixed = {}
        for k, v in local.items():
            bare = k[len("text_model."):] if k.startswith("text_model.") else k
            fixed[bare if bare in keep else ("text_model." + bare) if with_prefix else bare] = v
        return fixed
    for a, b in (("shared.weight", "encoder.embed_tokens.weight"), ("encoder.embed_tokens.weight", "shared.weight")):
        if a in expected and a not in local and b in local:
            local[a] = local[b]
    tied = ("shared.weight", "encoder.embed_tokens.weight")
    return {k: v for k, v in local.items() if k in expected or k not in tied}


__all__ = ["LTX2_PARTS", "ltx2_vae_keymap", "LTX2_VAE_STATS", "convert_ltx2", "ltx2_name", "ltx2_config", "FLUX_ROWS", "FLUX2_ROWS", "convert_flux2", "flux2_config", "SD3_ROWS", "sd3_config", "convert_sd3", "WAN_ROWS", "Z_IMAGE_ROWS", "z_image_config", "convert_z_image", "CHROMA_ROWS",
           "chroma_config", "convert_chroma", "WAN_VAE_BLOCKS", "WAN_VAE_FIXED", "WAN_VAE_PARTS", "Row", "VaeEntry", "convert",
           "convert_flux", "convert_wan", "find_prefix", "flux_config", "flux_split_sizes", "plan", "strip_prefix",
           "text_encoder_keys", "vae_entries", "wan_config", "wan_vae_config", "wan_vae_keymap", "wan_vae_version",
           "TRANSFORMER_PREFIXES"]
