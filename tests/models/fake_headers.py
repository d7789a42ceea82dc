"""Write real-layout .safetensors files for tests: real key names, real shapes, no real data.

`write_fake_safetensors(path, {key: shape | (shape, dtype)})` writes a valid header whose data
offsets cover a sparse file (`truncate`), so a multi-GB layout costs a few KB of disk. The
`*_keys()` builders return the key sets of each family's real layout (enough of each to be
realistic, not every tensor); combine them with `prefixed()` and `merge()`.
"""
from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any, Iterable, Mapping, Union

Shape = Union[list, tuple]
Spec = Union[Shape, tuple]  # shape, or (shape, dtype)
KeySet = dict[str, Any]

DTYPE_BYTES = {"F16": 2, "BF16": 2, "F32": 4, "F64": 8, "I64": 8, "I32": 4, "U8": 1, "I8": 1, "F8_E4M3": 1,
               "F8_E5M2": 1, "BOOL": 1}


def _split(spec: Spec, dtype: str) -> tuple[list[int], str]:
    if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[1], str):
        return list(spec[0]), spec[1]
    return list(spec), dtype


def write_fake_safetensors(path: str | Path, tensors: Mapping[str, Spec], metadata: Mapping[str, str] | None = None,
                           dtype: str = "F16") -> Path:
    """Write a structurally valid safetensors file with zero (sparse) data; returns the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    offset = 0
    for name in sorted(tensors):
        shape, dt = _split(tensors[name], dtype)
        nbytes = math.prod(shape) * DTYPE_BYTES[dt]
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    with p.open("wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        f.truncate(8 + len(raw) + offset)
    return p


def numel(spec: Spec) -> int:
    """Element count of a shape or (shape, dtype) spec."""
    return math.prod(_split(spec, "F16")[0])


def prefixed(prefix: str, keys: Mapping[str, Spec]) -> KeySet:
    return {prefix + k: v for k, v in keys.items()}


def merge(*sets: Mapping[str, Spec]) -> KeySet:
    out: KeySet = {}
    for s in sets:
        out.update(s)
    return out


def _blocks(fmt: str, n: Iterable[int], keys: Mapping[str, Spec]) -> KeySet:
    return {fmt.format(i) + k: v for i in n for k, v in keys.items()}


# ---- UNet (LDM layout) ---------------------------------------------------------------------------

def _ldm_unet(in_ch: int, context: int, levels: dict[int, int], adm: int | None, linear_proj: bool) -> KeySet:
    """levels: input block index -> channels of its attention transformer."""
    keys: KeySet = {
        "input_blocks.0.0.weight": [320, in_ch, 3, 3], "input_blocks.0.0.bias": [320],
        "time_embed.0.weight": [1280, 320], "time_embed.0.bias": [1280], "time_embed.2.weight": [1280, 1280],
        "out.0.weight": [320], "out.2.weight": [4, 320, 3, 3], "out.2.bias": [4],
        "input_blocks.1.0.in_layers.2.weight": [320, 320, 3, 3],
        "middle_block.0.in_layers.2.weight": [1280, 1280, 3, 3],
        "middle_block.1.transformer_blocks.0.attn2.to_k.weight": [1280, context],
    }
    for idx, ch in levels.items():
        keys[f"input_blocks.{idx}.1.proj_in.weight"] = [ch, ch] if linear_proj else [ch, ch, 1, 1]
        keys[f"input_blocks.{idx}.1.transformer_blocks.0.attn1.to_q.weight"] = [ch, ch]
        keys[f"input_blocks.{idx}.1.transformer_blocks.0.attn2.to_k.weight"] = [ch, context]
        keys[f"input_blocks.{idx}.1.transformer_blocks.0.attn2.to_v.weight"] = [ch, context]
        keys[f"input_blocks.{idx}.1.transformer_blocks.0.ff.net.0.proj.weight"] = [ch * 8, ch]
    if adm is not None:
        keys["label_emb.0.0.weight"] = [1280, adm]
        keys["label_emb.0.2.weight"] = [1280, 1280]
    return keys


def sd15_unet_keys(in_channels: int = 4) -> KeySet:
    k = _ldm_unet(in_channels, 768, {1: 320, 2: 320, 4: 640, 5: 640, 7: 1280, 8: 1280}, None, False)
    k["output_blocks.11.0.skip_connection.weight"] = [320, 640, 1, 1]
    return k


def sdxl_unet_keys(in_channels: int = 4) -> KeySet:
    k = _ldm_unet(in_channels, 2048, {4: 640, 5: 640, 7: 1280, 8: 1280}, 2816, True)
    for i in range(1, 10):
        k[f"input_blocks.7.1.transformer_blocks.{i}.attn2.to_k.weight"] = [1280, 2048]
    k["output_blocks.8.0.skip_connection.weight"] = [320, 960, 1, 1]
    return k


# ---- VAEs -----------------------------------------------------------------------------------------

def ldm_vae_keys(latent_channels: int = 4, quant_conv: bool = True) -> KeySet:
    z = latent_channels
    k: KeySet = {
        "encoder.conv_in.weight": [128, 3, 3, 3], "encoder.conv_in.bias": [128],
        "encoder.down.0.block.0.norm1.weight": [128], "encoder.down.0.block.0.conv1.weight": [128, 128, 3, 3],
        "encoder.down.0.downsample.conv.weight": [128, 128, 3, 3],
        "encoder.down.1.block.0.nin_shortcut.weight": [256, 128, 1, 1],
        "encoder.down.2.downsample.conv.weight": [256, 256, 3, 3],
        "encoder.mid.attn_1.q.weight": [512, 512, 1, 1], "encoder.mid.block_1.conv1.weight": [512, 512, 3, 3],
        "encoder.conv_out.weight": [2 * z, 512, 3, 3],
        "decoder.conv_in.weight": [512, z, 3, 3], "decoder.mid.block_1.conv1.weight": [512, 512, 3, 3],
        "decoder.up.3.block.0.conv1.weight": [512, 512, 3, 3], "decoder.up.3.upsample.conv.weight": [512, 512, 3, 3],
        "decoder.up.0.block.0.conv1.weight": [128, 256, 3, 3], "decoder.conv_out.weight": [3, 128, 3, 3],
    }
    if quant_conv:
        k["quant_conv.weight"] = [2 * z, 2 * z, 1, 1]
        k["post_quant_conv.weight"] = [z, z, 1, 1]
    return k


def diffusers_vae_keys(latent_channels: int = 4) -> KeySet:
    z = latent_channels
    return {
        "encoder.conv_in.weight": [128, 3, 3, 3], "encoder.down_blocks.0.resnets.0.conv1.weight": [128, 128, 3, 3],
        "encoder.down_blocks.0.resnets.0.norm1.weight": [128], "encoder.mid_block.attentions.0.to_q.weight": [512, 512],
        "encoder.conv_out.weight": [2 * z, 512, 3, 3], "decoder.conv_in.weight": [512, z, 3, 3],
        "decoder.up_blocks.0.resnets.0.norm1.weight": [512], "decoder.conv_out.weight": [3, 128, 3, 3],
        "quant_conv.weight": [2 * z, 2 * z, 1, 1], "post_quant_conv.weight": [z, z, 1, 1],
    }


def svd_vae_keys() -> KeySet:
    k = ldm_vae_keys(4)
    k.update({"decoder.mid.block_1.mix_factor": [1], "decoder.mid.block_1.time_stack.in_layers.2.weight": [512, 512, 3, 1, 1],
              "decoder.up.0.block.0.time_stack.in_layers.2.weight": [128, 128, 3, 1, 1],
              "decoder.time_mix_conv.weight": [3, 3, 3, 1, 1]})
    return k


def wan21_vae_keys() -> KeySet:
    return {
        "encoder.conv1.weight": [96, 3, 3, 3, 3], "encoder.downsamples.0.residual.0.gamma": [96, 1, 1, 1],
        "encoder.middle.0.residual.0.gamma": [384, 1, 1, 1], "encoder.head.2.weight": [32, 384, 3, 3, 3],
        "conv1.weight": [32, 32, 1, 1, 1], "conv2.weight": [16, 16, 1, 1, 1],
        "decoder.conv1.weight": [384, 16, 3, 3, 3], "decoder.middle.0.residual.0.gamma": [384, 1, 1, 1],
        "decoder.upsamples.0.residual.2.weight": [384, 384, 3, 3, 3], "decoder.head.2.weight": [3, 96, 3, 3, 3],
    }


def wan22_vae_keys() -> KeySet:
    return {
        "encoder.conv1.weight": [160, 12, 3, 3, 3], "encoder.middle.0.residual.0.gamma": [640, 1, 1, 1],
        "encoder.head.2.weight": [96, 640, 3, 3, 3], "conv1.weight": [96, 96, 1, 1, 1], "conv2.weight": [48, 48, 1, 1, 1],
        "decoder.conv1.weight": [1024, 48, 3, 3, 3], "decoder.middle.0.residual.0.gamma": [1024, 1, 1, 1],
        "decoder.upsamples.0.upsamples.0.residual.2.weight": [1024, 1024, 3, 3, 3],
        "decoder.head.2.weight": [12, 256, 3, 3, 3],
    }


def hunyuan_video_vae_keys(latent_channels: int = 16) -> KeySet:
    z, top = latent_channels, (512 if latent_channels == 16 else 1024)
    return {
        "encoder.conv_in.conv.weight": [128, 3, 3, 3, 3], "encoder.down.0.block.0.conv1.conv.weight": [128, 128, 3, 3, 3],
        "encoder.mid.attn_1.q.weight": [top, top, 1, 1, 1], "encoder.conv_out.conv.weight": [2 * z, top, 3, 3, 3],
        "decoder.conv_in.conv.weight": [top, z, 3, 3, 3], "decoder.up.0.block.0.conv1.conv.weight": [top, top, 3, 3, 3],
        "decoder.conv_out.conv.weight": [3, 128, 3, 3, 3],
    }


# ---- text encoders -------------------------------------------------------------------------------

def clip_keys(hidden: int = 768, layers: int = 12, projection: bool = False) -> KeySet:
    k: KeySet = {"text_model.embeddings.token_embedding.weight": [49408, hidden],
                 "text_model.embeddings.position_embedding.weight": [77, hidden],
                 "text_model.embeddings.position_ids": ([1, 77], "I64"),
                 "text_model.final_layer_norm.weight": [hidden]}
    k.update(_blocks("text_model.encoder.layers.{}.", range(layers), {
        "self_attn.q_proj.weight": [hidden, hidden], "self_attn.k_proj.weight": [hidden, hidden],
        "mlp.fc1.weight": [hidden * 4, hidden], "layer_norm1.weight": [hidden]}))
    if projection:
        k["text_projection.weight"] = [hidden, hidden]
    return k


def clip_l_keys() -> KeySet:
    return clip_keys(768, 12)


def clip_g_keys() -> KeySet:
    return clip_keys(1280, 32, projection=True)


def open_clip_g_keys() -> KeySet:
    k: KeySet = {"token_embedding.weight": [49408, 1280], "positional_embedding": [77, 1280],
                 "text_projection": [1280, 1280], "ln_final.weight": [1280], "logit_scale": []}
    k.update(_blocks("transformer.resblocks.{}.", range(32), {
        "attn.in_proj_weight": [3840, 1280], "attn.out_proj.weight": [1280, 1280],
        "mlp.c_fc.weight": [5120, 1280], "mlp.c_proj.bias": [1280]}))
    return k


def t5_keys(d_model: int = 4096, vocab: int = 32128, layers: int = 24, umt5: bool = False,
            d_ff: int = 10240, inner: int | None = None) -> KeySet:
    inner = inner or d_model
    k: KeySet = {"shared.weight": [vocab, d_model], "encoder.final_layer_norm.weight": [d_model],
                 "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight": [32, 64]}
    k.update(_blocks("encoder.block.{}.layer.", range(layers), {
        "0.SelfAttention.q.weight": [inner, d_model], "0.SelfAttention.k.weight": [inner, d_model],
        "0.SelfAttention.o.weight": [d_model, inner], "0.layer_norm.weight": [d_model],
        "1.DenseReluDense.wi_0.weight": [d_ff, d_model], "1.DenseReluDense.wo.weight": [d_model, d_ff]}))
    if umt5:
        k.update(_blocks("encoder.block.{}.layer.0.SelfAttention.relative_attention_bias.weight", range(1, layers),
                         {"": [32, 64]}))
    return k


def t5xxl_keys() -> KeySet:
    return t5_keys()


def umt5_xxl_keys() -> KeySet:
    return t5_keys(vocab=256384, umt5=True)


def byt5_small_keys() -> KeySet:
    return t5_keys(d_model=1472, vocab=384, layers=12, d_ff=3584, inner=384)


def llama_keys(hidden: int = 4096, layers: int = 32, vocab: int = 128320, qkv_bias: bool = False,
               kv: int = 1024, ff: int = 14336) -> KeySet:
    k: KeySet = {"model.embed_tokens.weight": [vocab, hidden], "model.norm.weight": [hidden]}
    block: KeySet = {"self_attn.q_proj.weight": [hidden, hidden], "self_attn.k_proj.weight": [kv, hidden],
                     "self_attn.v_proj.weight": [kv, hidden], "self_attn.o_proj.weight": [hidden, hidden],
                     "mlp.gate_proj.weight": [ff, hidden], "mlp.up_proj.weight": [ff, hidden],
                     "mlp.down_proj.weight": [hidden, ff], "input_layernorm.weight": [hidden],
                     "post_attention_layernorm.weight": [hidden]}
    if qkv_bias:
        block.update({"self_attn.q_proj.bias": [hidden], "self_attn.k_proj.bias": [kv], "self_attn.v_proj.bias": [kv]})
    k.update(_blocks("model.layers.{}.", range(layers), block))
    return k


def qwen25_vl_7b_keys() -> KeySet:
    return llama_keys(hidden=3584, layers=28, vocab=152064, qkv_bias=True, kv=512, ff=18944)


def qwen3_4b_keys() -> KeySet:
    """Qwen3-4B as ComfyUI's split_files/text_encoders/qwen_3_4b.safetensors (Z-Image): 36 layers, hidden 2560,
    8 KV heads of 128, per-head q/k RMS norms, no qkv bias, vocab 151936."""
    k = llama_keys(hidden=2560, layers=36, vocab=151936, kv=1024, ff=9728)
    k.update(_blocks("model.layers.{}.", range(36), {"self_attn.q_norm.weight": [128], "self_attn.k_norm.weight": [128],
                                                      "self_attn.q_proj.weight": [4096, 2560],
                                                      "self_attn.o_proj.weight": [2560, 4096]}))
    return k


# ---- full checkpoints ------------------------------------------------------------------------------

def sd15_checkpoint_keys(in_channels: int = 4, v_pred: bool = False) -> KeySet:
    k = merge(prefixed("model.diffusion_model.", sd15_unet_keys(in_channels)),
              prefixed("first_stage_model.", ldm_vae_keys(4)),
              prefixed("cond_stage_model.transformer.", clip_l_keys()),
              {"alphas_cumprod": ([1000], "F32"), "betas": ([1000], "F32")})
    if v_pred:
        k["v_pred"] = []
    return k


def sdxl_checkpoint_keys(in_channels: int = 4, v_pred: bool = False) -> KeySet:
    k = merge(prefixed("model.diffusion_model.", sdxl_unet_keys(in_channels)),
              prefixed("first_stage_model.", ldm_vae_keys(4)),
              prefixed("conditioner.embedders.0.transformer.", clip_l_keys()),
              prefixed("conditioner.embedders.1.model.", open_clip_g_keys()))
    if v_pred:
        k["v_pred"] = []
    return k


def svd_checkpoint_keys() -> KeySet:
    unet = _ldm_unet(8, 1024, {1: 320, 4: 640, 7: 1280}, 768, True)
    unet.update({"input_blocks.1.0.time_stack.in_layers.2.weight": [320, 320, 3, 1, 1],
                 "input_blocks.1.0.time_mixer.mix_factor": [1],
                 "input_blocks.1.1.time_stack.0.attn1.to_q.weight": [320, 320],
                 "input_blocks.1.1.time_stack.0.attn2.to_k.weight": [320, 1024],
                 "input_blocks.1.1.time_pos_embed.0.weight": [1280, 320]})
    visual = {"conv1.weight": [1280, 3, 14, 14], "proj": [1280, 1024], "positional_embedding": [257, 1280],
              "transformer.resblocks.0.attn.in_proj_weight": [3840, 1280], "ln_post.weight": [1280]}
    return merge(prefixed("model.diffusion_model.", unet), prefixed("first_stage_model.", svd_vae_keys()),
                 prefixed("conditioner.embedders.0.open_clip.model.visual.", visual),
                 prefixed("conditioner.embedders.3.encoder.", ldm_vae_keys(4)))


# ---- FLUX, HunyuanVideo, Wan (transformers) --------------------------------------------------------

def flux_keys(prefix: str = "", guidance: bool = True, in_channels: int = 64) -> KeySet:
    h = 3072
    k: KeySet = {"img_in.weight": [h, in_channels], "img_in.bias": [h], "txt_in.weight": [h, 4096], "txt_in.bias": [h],
                 "time_in.in_layer.weight": [h, 256], "time_in.out_layer.weight": [h, h],
                 "vector_in.in_layer.weight": [h, 768], "vector_in.out_layer.weight": [h, h],
                 "final_layer.linear.weight": [64, h], "final_layer.adaLN_modulation.1.weight": [2 * h, h]}
    if guidance:
        k.update({"guidance_in.in_layer.weight": [h, 256], "guidance_in.out_layer.weight": [h, h]})
    k.update(_blocks("double_blocks.{}.", range(19), {
        "img_attn.qkv.weight": [3 * h, h], "img_attn.norm.key_norm.scale": [128], "img_attn.norm.query_norm.scale": [128],
        "img_attn.proj.weight": [h, h], "img_mlp.0.weight": [4 * h, h], "img_mod.lin.weight": [6 * h, h],
        "txt_attn.qkv.weight": [3 * h, h], "txt_mlp.0.weight": [4 * h, h], "txt_mod.lin.weight": [6 * h, h]}))
    k.update(_blocks("single_blocks.{}.", range(38), {
        "linear1.weight": [21504, h], "linear2.weight": [h, 15360], "modulation.lin.weight": [3 * h, h],
        "norm.key_norm.scale": [128]}))
    return prefixed(prefix, k)


def flux_dev_keys(prefix: str = "") -> KeySet:
    return flux_keys(prefix, guidance=True)


def flux_schnell_keys(prefix: str = "") -> KeySet:
    return flux_keys(prefix, guidance=False)


def flux_fill_keys(prefix: str = "") -> KeySet:
    return flux_keys(prefix, guidance=True, in_channels=384)


def flux_diffusers_keys(guidance: bool = True) -> KeySet:
    h = 3072
    k: KeySet = {"x_embedder.weight": [h, 64], "x_embedder.bias": [h], "context_embedder.weight": [h, 4096],
                 "time_text_embed.timestep_embedder.linear_1.weight": [h, 256], "proj_out.weight": [64, h]}
    if guidance:
        k["time_text_embed.guidance_embedder.linear_1.weight"] = [h, 256]
    k.update(_blocks("transformer_blocks.{}.", range(19), {
        "attn.to_q.weight": [h, h], "attn.add_q_proj.weight": [h, h], "attn.norm_added_k.weight": [128],
        "ff.net.0.proj.weight": [4 * h, h], "norm1.linear.weight": [6 * h, h]}))
    k.update(_blocks("single_transformer_blocks.{}.", range(38), {
        "attn.to_q.weight": [h, h], "proj_mlp.weight": [4 * h, h], "proj_out.weight": [h, 5 * h]}))
    return k


def flux_checkpoint_keys() -> KeySet:
    """ComfyUI all-in-one FLUX checkpoint: transformer + VAE + CLIP-L + T5-XXL."""
    return merge(flux_dev_keys("model.diffusion_model."), prefixed("vae.", ldm_vae_keys(16, quant_conv=False)),
                 prefixed("text_encoders.clip_l.transformer.", clip_l_keys()),
                 prefixed("text_encoders.t5xxl.transformer.", t5xxl_keys()))


def hunyuan_video_keys(prefix: str = "", in_channels: int = 16) -> KeySet:
    h = 3072
    k: KeySet = {"img_in.proj.weight": [h, in_channels, 1, 2, 2], "img_in.proj.bias": [h],
                 "txt_in.input_embedder.weight": [h, 4096], "txt_in.t_embedder.mlp.0.weight": [h, 256],
                 "txt_in.c_embedder.linear_1.weight": [h, 4096],
                 "txt_in.individual_token_refiner.blocks.0.norm1.weight": [h],
                 "txt_in.individual_token_refiner.blocks.0.self_attn_qkv.weight": [3 * h, h],
                 "txt_in.individual_token_refiner.blocks.0.adaLN_modulation.1.bias": [2 * h],
                 "time_in.mlp.0.weight": [h, 256], "vector_in.in_layer.weight": [h, 768],
                 "guidance_in.mlp.0.weight": [h, 256], "final_layer.linear.weight": [64, h]}
    k.update(_blocks("double_blocks.{}.", range(20), {
        "img_attn_qkv.weight": [3 * h, h], "img_attn_q_norm.weight": [128], "img_attn_proj.weight": [h, h],
        "img_mod.linear.weight": [6 * h, h], "img_mlp.fc1.weight": [4 * h, h], "txt_attn_qkv.weight": [3 * h, h]}))
    k.update(_blocks("single_blocks.{}.", range(40), {
        "linear1.weight": [21504, h], "linear2.weight": [h, 15360], "q_norm.weight": [128],
        "modulation.linear.weight": [3 * h, h]}))
    return prefixed(prefix, k)


def hunyuan_video15_keys(prefix: str = "") -> KeySet:
    h = 2048
    k: KeySet = {"img_in.proj.weight": [h, 65, 1, 1, 1], "img_in.proj.bias": [h],
                 "txt_in.input_embedder.weight": [h, 3584], "txt_in.individual_token_refiner.blocks.0.norm1.weight": [h],
                 "txt_in.individual_token_refiner.blocks.1.norm1.weight": [h],
                 "cond_type_embedding.weight": [3, h], "byt5_in.fc1.weight": [2048, 1472], "byt5_in.fc3.weight": [h, 2048],
                 "vision_in.proj.0.weight": [1152], "vision_in.proj.1.weight": [h, 1152],
                 "time_in.mlp.0.weight": [h, 256], "final_layer.linear.weight": [32, h]}
    k.update(_blocks("double_blocks.{}.", range(54), {
        "img_attn_q.weight": [h, h], "img_attn_k.weight": [h, h], "img_attn_q_norm.weight": [128],
        "img_mod.linear.weight": [6 * h, h], "img_mlp.fc1.weight": [4 * h, h]}))
    return prefixed(prefix, k)


def wan_keys(dim: int, in_dim: int, out_dim: int, layers: int, ffn: int, prefix: str = "", clip: bool = False) -> KeySet:
    k: KeySet = {"patch_embedding.weight": [dim, in_dim, 1, 2, 2], "patch_embedding.bias": [dim],
                 "text_embedding.0.weight": [dim, 4096], "text_embedding.2.weight": [dim, dim],
                 "time_embedding.0.weight": [dim, 256], "time_embedding.2.weight": [dim, dim],
                 "time_projection.1.weight": [6 * dim, dim], "head.head.weight": [out_dim * 4, dim],
                 "head.modulation": [1, 2, dim]}
    block: KeySet = {"self_attn.q.weight": [dim, dim], "self_attn.k.weight": [dim, dim], "self_attn.v.weight": [dim, dim],
                     "self_attn.o.weight": [dim, dim], "self_attn.norm_q.weight": [dim], "cross_attn.q.weight": [dim, dim],
                     "cross_attn.k.weight": [dim, dim], "ffn.0.weight": [ffn, dim], "ffn.2.weight": [dim, ffn],
                     "modulation": [1, 6, dim], "norm3.weight": [dim]}
    if clip:
        block["cross_attn.k_img.weight"] = [dim, dim]
        k.update({"img_emb.proj.0.weight": [1280], "img_emb.proj.1.weight": [1280, 1280], "img_emb.proj.3.weight": [dim, 1280]})
    k.update(_blocks("blocks.{}.", range(layers), block))
    return prefixed(prefix, k)


def wan_ti2v_5b_keys(prefix: str = "") -> KeySet:
    return wan_keys(3072, 48, 48, 30, 14336, prefix)


def wan_t2v_a14b_keys(prefix: str = "") -> KeySet:
    return wan_keys(5120, 16, 16, 40, 13824, prefix)


def wan_i2v_a14b_keys(prefix: str = "") -> KeySet:
    return wan_keys(5120, 36, 16, 40, 13824, prefix)


def wan21_i2v_14b_keys(prefix: str = "") -> KeySet:
    return wan_keys(5120, 36, 16, 40, 13824, prefix, clip=True)


def wan_diffusers_5b_keys() -> KeySet:
    dim = 3072
    k: KeySet = {"patch_embedding.weight": [dim, 48, 1, 2, 2], "scale_shift_table": [1, 2, dim],
                 "condition_embedder.time_embedder.linear_1.weight": [dim, 256],
                 "condition_embedder.text_embedder.linear_1.weight": [dim, 4096], "proj_out.weight": [192, dim]}
    k.update(_blocks("blocks.{}.", range(30), {"attn1.to_q.weight": [dim, dim], "attn2.to_k.weight": [dim, dim],
                                                "ffn.net.0.proj.weight": [14336, dim], "scale_shift_table": [1, 6, dim]}))
    return k


def chroma_keys(prefix: str = "") -> KeySet:
    """Chroma1-HD in the BFL layout (lodestones' Chroma1-HD.safetensors): FLUX.1-schnell's 19 double / 38 single
    blocks without img_mod / txt_mod / modulation, no time_in / vector_in, final_layer without adaLN, plus the
    distilled_guidance_layer approximator (in_proj [5120, 64], 5 MLP layers, RMS norms, out_proj [3072, 5120])."""
    h = 3072
    k: KeySet = {"img_in.weight": [h, 64], "img_in.bias": [h], "txt_in.weight": [h, 4096], "txt_in.bias": [h],
                 "final_layer.linear.weight": [64, h], "final_layer.linear.bias": [64],
                 "distilled_guidance_layer.in_proj.weight": [5120, 64], "distilled_guidance_layer.in_proj.bias": [5120],
                 "distilled_guidance_layer.out_proj.weight": [h, 5120], "distilled_guidance_layer.out_proj.bias": [h]}
    k.update(_blocks("distilled_guidance_layer.layers.{}.", range(5), {
        "in_layer.weight": [5120, 5120], "out_layer.weight": [5120, 5120]}))
    k.update(_blocks("distilled_guidance_layer.norms.{}.", range(5), {"scale": [5120]}))
    k.update(_blocks("double_blocks.{}.", range(19), {
        "img_attn.qkv.weight": [3 * h, h], "img_attn.norm.key_norm.scale": [128], "img_attn.norm.query_norm.scale": [128],
        "img_attn.proj.weight": [h, h], "img_mlp.0.weight": [4 * h, h], "img_mlp.2.weight": [h, 4 * h],
        "txt_attn.qkv.weight": [3 * h, h], "txt_mlp.0.weight": [4 * h, h]}))
    k.update(_blocks("single_blocks.{}.", range(38), {
        "linear1.weight": [21504, h], "linear2.weight": [h, 15360], "norm.key_norm.scale": [128]}))
    return prefixed(prefix, k)


def chroma_diffusers_keys() -> KeySet:
    """ChromaTransformer2DModel (the Diffusers folder's transformer/), a few keys of each part."""
    h = 3072
    k: KeySet = {"x_embedder.weight": [h, 64], "x_embedder.bias": [h], "context_embedder.weight": [h, 4096],
                 "proj_out.weight": [64, h], "distilled_guidance_layer.in_proj.weight": [5120, 64],
                 "distilled_guidance_layer.layers.0.linear_1.weight": [5120, 5120]}
    k.update(_blocks("transformer_blocks.{}.", range(19), {"attn.to_q.weight": [h, h],
                                                            "attn.norm_added_k.weight": [128]}))
    k.update(_blocks("single_transformer_blocks.{}.", range(38), {"attn.to_q.weight": [h, h]}))
    return k


def _z_image_block(layout: str, modulation: bool) -> KeySet:
    d = 3840
    if layout == "original":
        attn: KeySet = {"attention.qkv.weight": [3 * d, d], "attention.out.weight": [d, d],
                        "attention.q_norm.weight": [128], "attention.k_norm.weight": [128]}
    else:
        attn = {"attention.to_q.weight": [d, d], "attention.to_k.weight": [d, d], "attention.to_v.weight": [d, d],
                "attention.to_out.0.weight": [d, d], "attention.norm_q.weight": [128], "attention.norm_k.weight": [128]}
    block = {**attn, "feed_forward.w1.weight": [10240, d], "feed_forward.w2.weight": [d, 10240],
             "feed_forward.w3.weight": [10240, d], "attention_norm1.weight": [d], "attention_norm2.weight": [d],
             "ffn_norm1.weight": [d], "ffn_norm2.weight": [d]}
    if modulation:
        block.update({"adaLN_modulation.0.weight": [4 * d, 256], "adaLN_modulation.0.bias": [4 * d]})
    return block


def z_image_keys(prefix: str = "", layout: str = "original") -> KeySet:
    """Z-Image(-Turbo) transformer: original layout as ComfyUI's split_files/diffusion_models/
    z_image_turbo_bf16.safetensors (dim 3840, 30 layers + 2 noise / 2 context refiner layers, Qwen3-4B captions
    of 2560), or Diffusers' ZImageTransformer2DModel layout (Tongyi-MAI/Z-Image-Turbo transformer/)."""
    d = 3840
    x_in, final = ("x_embedder", "final_layer") if layout == "original" else ("all_x_embedder.2-1", "all_final_layer.2-1")
    k: KeySet = {f"{x_in}.weight": [d, 64], f"{x_in}.bias": [d], f"{final}.linear.weight": [64, d],
                 f"{final}.adaLN_modulation.1.weight": [d, 256], "t_embedder.mlp.0.weight": [1024, 256],
                 "t_embedder.mlp.2.weight": [256, 1024], "cap_embedder.0.weight": [2560],
                 "cap_embedder.1.weight": [d, 2560], "cap_embedder.1.bias": [d], "x_pad_token": [1, d],
                 "cap_pad_token": [1, d]}
    if layout == "original":
        k["norm_final.weight"] = [d]
    k.update(_blocks("layers.{}.", range(30), _z_image_block(layout, True)))
    k.update(_blocks("noise_refiner.{}.", range(2), _z_image_block(layout, True)))
    k.update(_blocks("context_refiner.{}.", range(2), _z_image_block(layout, False)))
    return prefixed(prefix, k)


# ---- LoRAs, embeddings, upscalers --------------------------------------------------------------------

def _lora_pair(base: str, rank: int, d_in: int, d_out: int, style: str) -> KeySet:
    if style == "kohya":
        return {f"{base}.lora_down.weight": [rank, d_in], f"{base}.lora_up.weight": [d_out, rank], f"{base}.alpha": []}
    return {f"{base}.lora_A.weight": [rank, d_in], f"{base}.lora_B.weight": [d_out, rank]}


def z_image_lora_keys(rank: int = 16, style: str = "peft") -> KeySet:
    """A Z-Image LoRA as ai-toolkit writes it (`diffusion_model.layers.N.attention.to_q.lora_A`, dim 3840) or in
    kohya/musubi flat names (`lora_unet_layers_N_attention_to_q.lora_down`)."""
    k: KeySet = {}
    for i in range(30):
        for part, d_out in (("attention.to_q", 3840), ("attention.to_k", 3840), ("attention.to_v", 3840),
                            ("attention.to_out.0", 3840), ("feed_forward.w1", 10240)):
            base = f"diffusion_model.layers.{i}.{part}" if style == "peft" else \
                "lora_unet_" + f"layers.{i}.{part}".replace(".", "_")
            k.update(_lora_pair(base, rank, 3840, d_out, style))
    return k


def sd15_lora_kohya_keys(rank: int = 16) -> KeySet:
    k: KeySet = {}
    for blk, ch in (("down_blocks_0_attentions_0", 320), ("down_blocks_1_attentions_0", 640), ("up_blocks_3_attentions_2", 320)):
        base = f"lora_unet_{blk}_transformer_blocks_0"
        k.update(_lora_pair(f"{base}_attn1_to_q", rank, ch, ch, "kohya"))
        k.update(_lora_pair(f"{base}_attn2_to_k", rank, 768, ch, "kohya"))
        k.update(_lora_pair(f"{base}_attn2_to_v", rank, 768, ch, "kohya"))
    for i in range(12):
        k.update(_lora_pair(f"lora_te_text_model_encoder_layers_{i}_self_attn_q_proj", rank, 768, 768, "kohya"))
    return k


def sdxl_lora_kohya_keys(rank: int = 16) -> KeySet:
    k: KeySet = {}
    for blk, ch in (("input_blocks_4_1", 640), ("input_blocks_7_1", 1280), ("output_blocks_2_1", 1280)):
        base = f"lora_unet_{blk}_transformer_blocks_0"
        k.update(_lora_pair(f"{base}_attn1_to_q", rank, ch, ch, "kohya"))
        k.update(_lora_pair(f"{base}_attn2_to_k", rank, 2048, ch, "kohya"))
    k.update(_lora_pair("lora_te1_text_model_encoder_layers_0_self_attn_q_proj", rank, 768, 768, "kohya"))
    k.update(_lora_pair("lora_te2_text_model_encoder_layers_0_self_attn_q_proj", rank, 1280, 1280, "kohya"))
    return k


def sdxl_lora_peft_keys(rank: int = 8) -> KeySet:
    k: KeySet = {}
    for blk, ch in (("down_blocks.1.attentions.0", 640), ("down_blocks.2.attentions.1", 1280), ("mid_block.attentions.0", 1280)):
        base = f"unet.{blk}.transformer_blocks.0"
        k.update(_lora_pair(f"{base}.attn1.to_q", rank, ch, ch, "peft"))
        k.update(_lora_pair(f"{base}.attn2.to_k", rank, 2048, ch, "peft"))
    return k


def flux_lora_kohya_keys(rank: int = 16) -> KeySet:
    k: KeySet = {}
    for i in range(19):
        k.update(_lora_pair(f"lora_unet_double_blocks_{i}_img_attn_qkv", rank, 3072, 9216, "kohya"))
        k.update(_lora_pair(f"lora_unet_double_blocks_{i}_img_mlp_0", rank, 3072, 12288, "kohya"))
    for i in range(38):
        k.update(_lora_pair(f"lora_unet_single_blocks_{i}_linear1", rank, 3072, 21504, "kohya"))
    return k


def flux_lora_peft_keys(rank: int = 16) -> KeySet:
    k: KeySet = {}
    for i in range(19):
        k.update(_lora_pair(f"transformer.transformer_blocks.{i}.attn.to_q", rank, 3072, 3072, "peft"))
        k.update(_lora_pair(f"transformer.transformer_blocks.{i}.attn.add_q_proj", rank, 3072, 3072, "peft"))
    for i in range(38):
        k.update(_lora_pair(f"transformer.single_transformer_blocks.{i}.proj_mlp", rank, 3072, 12288, "peft"))
    return k


def hunyuan_video_lora_keys(rank: int = 32) -> KeySet:
    k: KeySet = {}
    for i in range(20):
        k.update(_lora_pair(f"diffusion_model.double_blocks.{i}.img_attn_qkv", rank, 3072, 9216, "peft"))
        k.update(_lora_pair(f"diffusion_model.double_blocks.{i}.img_mlp.fc1", rank, 3072, 12288, "peft"))
    for i in range(40):
        k.update(_lora_pair(f"diffusion_model.single_blocks.{i}.linear1", rank, 3072, 21504, "peft"))
    return k


def wan_lora_keys(dim: int = 5120, layers: int = 40, rank: int = 32, style: str = "peft") -> KeySet:
    k: KeySet = {}
    for i in range(layers):
        if style == "kohya":
            for part in ("self_attn_q", "self_attn_k", "cross_attn_k", "ffn_0"):
                k.update(_lora_pair(f"lora_unet_blocks_{i}_{part}", rank, dim, dim, "kohya"))
        else:
            for part in ("self_attn.q", "self_attn.k", "cross_attn.k", "ffn.0"):
                k.update(_lora_pair(f"diffusion_model.blocks.{i}.{part}", rank, dim, dim, "peft"))
    return k


def sd15_embedding_keys(vectors: int = 4) -> KeySet:
    return {"emb_params": ([vectors, 768], "F32")}


def sdxl_embedding_keys(vectors: int = 4) -> KeySet:
    return {"clip_l": ([vectors, 768], "F32"), "clip_g": ([vectors, 1280], "F32")}


def esrgan_old_keys(scale: int = 4, blocks: int = 23) -> KeySet:
    k: KeySet = {"model.0.weight": [64, 3, 3, 3], "model.0.bias": [64], f"model.1.sub.{blocks}.weight": [64, 64, 3, 3]}
    for b in range(blocks):
        for r in (1, 2, 3):
            for c in (1, 5):
                k[f"model.1.sub.{b}.RDB{r}.conv{c}.0.weight"] = [32 if c < 5 else 64, 64 if c == 1 else 192, 3, 3]
    idx = 3
    for _ in range({1: 0, 2: 1, 4: 2, 8: 3}[scale]):
        k[f"model.{idx}.weight"] = [64, 64, 3, 3]
        idx += 3
    k[f"model.{idx - 1}.weight"] = [64, 64, 3, 3]
    k[f"model.{idx + 1}.weight"] = [3, 64, 3, 3]
    return k


def realesrgan_keys(scale: int = 4, blocks: int = 23) -> KeySet:
    in_ch = {4: 3, 2: 12, 1: 48}[scale]
    k: KeySet = {"conv_first.weight": [64, in_ch, 3, 3], "conv_body.weight": [64, 64, 3, 3],
                 "conv_up1.weight": [64, 64, 3, 3], "conv_up2.weight": [64, 64, 3, 3],
                 "conv_hr.weight": [64, 64, 3, 3], "conv_last.weight": [3, 64, 3, 3]}
    k.update(_blocks("body.{}.", range(blocks), {"rdb1.conv1.weight": [32, 64, 3, 3], "rdb3.conv5.weight": [64, 192, 3, 3]}))
    return k


def swinir_keys(scale: int = 4) -> KeySet:
    k: KeySet = {"conv_first.weight": [180, 3, 3, 3], "patch_embed.norm.weight": [180],
                 "conv_after_body.weight": [180, 180, 3, 3], "conv_before_upsample.0.weight": [64, 180, 3, 3],
                 "conv_last.weight": [3, 64, 3, 3]}
    k.update(_blocks("layers.{}.", range(6), {"residual_group.blocks.0.attn.relative_position_bias_table": [225, 6],
                                              "residual_group.blocks.0.attn.qkv.weight": [540, 180], "conv.weight": [180, 180, 3, 3]}))
    for i in range({2: 1, 4: 2, 8: 3}[scale]):
        k[f"upsample.{2 * i}.weight"] = [256, 64, 3, 3]
    return k


def compact_keys(scale: int = 4, convs: int = 32) -> KeySet:
    k: KeySet = {"body.0.weight": [64, 3, 3, 3], "body.0.bias": [64], "body.1.weight": [64]}
    for i in range(1, convs + 1):
        k[f"body.{2 * i}.weight"] = [64, 64, 3, 3]
        k[f"body.{2 * i}.bias"] = [64]
        k[f"body.{2 * i + 1}.weight"] = [64]
    last = 2 * convs + 2
    k[f"body.{last}.weight"] = [3 * scale * scale, 64, 3, 3]
    k[f"body.{last}.bias"] = [3 * scale * scale]
    return k


# ---- SD3 / SD3.5 MMDiT (stabilityai/stable-diffusion-3.5-large|medium, stable-diffusion-3-medium) ---------------

def sd3_keys(prefix: str = "", hidden: int = 2432, depth: int = 38, pos: int = 192, qk_norm: bool = True,
             dual: Iterable[int] = ()) -> KeySet:
    """Original layout of sd3.5_large.safetensors / sd3.5_medium.safetensors / sd3_medium.safetensors: joint blocks
    with x_block and context_block; the last context block is "pre-only" (adaLN to 2h, no proj/mlp)."""
    h, dual = hidden, set(dual)
    k: KeySet = {"pos_embed": [1, pos * pos, h], "x_embedder.proj.weight": [h, 16, 2, 2], "x_embedder.proj.bias": [h],
                 "t_embedder.mlp.0.weight": [h, 256], "t_embedder.mlp.2.weight": [h, h],
                 "y_embedder.mlp.0.weight": [h, 2048], "y_embedder.mlp.2.weight": [h, h],
                 "context_embedder.weight": [h, 4096], "final_layer.linear.weight": [64, h],
                 "final_layer.adaLN_modulation.1.weight": [2 * h, h]}
    attn = {"attn.qkv.weight": [3 * h, h], "attn.qkv.bias": [3 * h], "attn.proj.weight": [h, h]}
    if qk_norm:
        attn.update({"attn.ln_q.weight": [64], "attn.ln_k.weight": [64]})
    for i in range(depth):
        x = {**attn, "mlp.fc1.weight": [4 * h, h], "mlp.fc2.weight": [h, 4 * h],
             "adaLN_modulation.1.weight": [(9 if i in dual else 6) * h, h]}
        if i in dual:
            x.update({"attn2.qkv.weight": [3 * h, h], "attn2.proj.weight": [h, h]})
        c = dict(x) if i < depth - 1 else {"attn.qkv.weight": [3 * h, h], "adaLN_modulation.1.weight": [2 * h, h]}
        c = {n: v for n, v in c.items() if "attn2" not in n}
        if i < depth - 1:
            c["adaLN_modulation.1.weight"] = [6 * h, h]
        k.update(_blocks(f"joint_blocks.{{}}.x_block.", [i], x))
        k.update(_blocks(f"joint_blocks.{{}}.context_block.", [i], c))
    return prefixed(prefix, k)


def sd35_large_keys(prefix: str = "") -> KeySet:
    return sd3_keys(prefix)


def sd35_medium_keys(prefix: str = "") -> KeySet:
    return sd3_keys(prefix, hidden=1536, depth=24, pos=384, dual=range(13))


def sd3_medium_keys(prefix: str = "") -> KeySet:
    return sd3_keys(prefix, hidden=1536, depth=24, pos=192, qk_norm=False)


def sd35_large_diffusers_keys() -> KeySet:
    """transformer/diffusion_pytorch_model-*.safetensors of stabilityai/stable-diffusion-3.5-large."""
    h = 2432
    k: KeySet = {"pos_embed.pos_embed": [1, 36864, h], "pos_embed.proj.weight": [h, 16, 2, 2],
                 "context_embedder.weight": [h, 4096], "time_text_embed.text_embedder.linear_1.weight": [h, 2048],
                 "time_text_embed.timestep_embedder.linear_1.weight": [h, 256], "proj_out.weight": [64, h],
                 "norm_out.linear.weight": [2 * h, h]}
    k.update(_blocks("transformer_blocks.{}.", range(38), {
        "attn.to_q.weight": [h, h], "attn.add_q_proj.weight": [h, h], "attn.norm_q.weight": [64],
        "attn.norm_added_k.weight": [64], "ff.net.0.proj.weight": [4 * h, h], "norm1.linear.weight": [6 * h, h]}))
    return k


def sd35_checkpoint_keys() -> KeySet:
    """sd3.5_large.safetensors as published (MMDiT + VAE under first_stage_model.) with the text encoders ComfyUI's
    all-in-one SD3 files add under text_encoders.{clip_l,clip_g,t5xxl}.transformer."""
    return merge(sd35_large_keys("model.diffusion_model."), prefixed("first_stage_model.", ldm_vae_keys(16, quant_conv=False)),
                 prefixed("text_encoders.clip_l.transformer.", clip_keys(768, 12, projection=True)),
                 prefixed("text_encoders.clip_g.transformer.", clip_g_keys()),
                 prefixed("text_encoders.t5xxl.transformer.", t5xxl_keys()))


# ---- Qwen-Image (Qwen/Qwen-Image transformer/; ComfyUI qwen_image_bf16.safetensors uses the same names) ----------

def qwen_image_keys(prefix: str = "", layers: int = 60) -> KeySet:
    h, t = 3072, 3584
    k: KeySet = {"img_in.weight": [h, 64], "img_in.bias": [h], "txt_norm.weight": [t], "txt_in.weight": [h, t],
                 "time_text_embed.timestep_embedder.linear_1.weight": [h, 256], "norm_out.linear.weight": [2 * h, h],
                 "proj_out.weight": [64, h]}
    k.update(_blocks("transformer_blocks.{}.", range(layers), {
        "img_mod.1.weight": [6 * h, h], "txt_mod.1.weight": [6 * h, h], "attn.to_q.weight": [h, h],
        "attn.add_q_proj.weight": [h, h], "attn.norm_q.weight": [128], "attn.norm_added_k.weight": [128],
        "attn.to_out.0.weight": [h, h], "attn.to_add_out.weight": [h, h], "img_mlp.net.0.proj.weight": [4 * h, h],
        "txt_mlp.net.2.weight": [h, 4 * h]}))
    return prefixed(prefix, k)


def qwen_image_vae_keys() -> KeySet:
    """Qwen/Qwen-Image vae/ (AutoencoderKLQwenImage): the Wan 2.1 layout, 16 latent channels."""
    return {"decoder.conv_in.weight": [384, 16, 3, 3, 3], "decoder.mid_block.resnets.0.norm1.gamma": [384, 1, 1, 1],
            "encoder.conv_in.weight": [96, 3, 3, 3, 3], "post_quant_conv.weight": [16, 16, 1, 1, 1]}



def flux2_keys(variant: str = "dev", prefix: str = "") -> KeySet:
    """FLUX.2 in the BFL layout (black-forest-labs/FLUX.2-dev flux2-dev.safetensors, FLUX.2-klein-4B/9B
    flux-2-klein-*.safetensors, ComfyUI split_files/diffusion_models/): shared modulations, no biases, img_in
    [hidden, 128], txt_in [hidden, 3 x text width], guidance_in on dev only. dev: hidden 6144, 8 + 48 blocks, text
    15360; klein4b: 3072, 5 + 20, text 7680; klein9b: 4096, 8 + 24, text 12288."""
    h, double, single, text = {"dev": (6144, 8, 48, 15360), "klein4b": (3072, 5, 20, 7680),
                               "klein9b": (4096, 8, 24, 12288)}[variant]
    k: KeySet = {"img_in.weight": [h, 128], "txt_in.weight": [h, text], "time_in.in_layer.weight": [h, 256],
                 "time_in.out_layer.weight": [h, h], "double_stream_modulation_img.lin.weight": [6 * h, h],
                 "double_stream_modulation_txt.lin.weight": [6 * h, h], "single_stream_modulation.lin.weight": [3 * h, h],
                 "final_layer.adaLN_modulation.1.weight": [2 * h, h], "final_layer.linear.weight": [128, h]}
    if variant == "dev":
        k.update({"guidance_in.in_layer.weight": [h, 256], "guidance_in.out_layer.weight": [h, h]})
    k.update(_blocks("double_blocks.{}.", range(double), {
        "img_attn.qkv.weight": [3 * h, h], "img_attn.norm.query_norm.scale": [128], "img_attn.norm.key_norm.scale": [128],
        "img_attn.proj.weight": [h, h], "img_mlp.0.weight": [6 * h, h], "img_mlp.2.weight": [h, 3 * h],
        "txt_attn.qkv.weight": [3 * h, h], "txt_attn.norm.key_norm.scale": [128], "txt_mlp.0.weight": [6 * h, h]}))
    k.update(_blocks("single_blocks.{}.", range(single), {
        "linear1.weight": [9 * h, h], "linear2.weight": [h, 4 * h], "norm.query_norm.scale": [128],
        "norm.key_norm.scale": [128]}))
    return prefixed(prefix, k)


def flux2_diffusers_keys(variant: str = "klein4b") -> KeySet:
    """Flux2Transformer2DModel (the FLUX.2 Diffusers folders' transformer/), a few keys of each part."""
    h, double, single, text = {"dev": (6144, 8, 48, 15360), "klein4b": (3072, 5, 20, 7680)}[variant]
    k: KeySet = {"x_embedder.weight": [h, 128], "context_embedder.weight": [h, text],
                 "time_guidance_embed.timestep_embedder.linear_1.weight": [h, 256],
                 "double_stream_modulation_img.linear.weight": [6 * h, h],
                 "single_stream_modulation.linear.weight": [3 * h, h], "proj_out.weight": [128, h]}
    if variant == "dev":
        k["time_guidance_embed.guidance_embedder.linear_1.weight"] = [h, 256]
    k.update(_blocks("transformer_blocks.{}.", range(double), {"attn.to_q.weight": [h, h],
                                                                "attn.norm_added_k.weight": [128]}))
    k.update(_blocks("single_transformer_blocks.{}.", range(single), {"attn.to_qkv_mlp_proj.weight": [9 * h, h]}))
    return k


def qwen3_8b_keys() -> KeySet:
    """Qwen3-8B (FLUX.2 Klein 9B's encoder, ComfyUI split_files/text_encoders/qwen_3_8b*): 36 layers, hidden 4096,
    8 KV heads of 128, q/k RMS norms, vocab 151936."""
    k = llama_keys(hidden=4096, layers=36, vocab=151936, kv=1024, ff=12288)
    k.update(_blocks("model.layers.{}.", range(36), {"self_attn.q_norm.weight": [128], "self_attn.k_norm.weight": [128]}))
    return k


def mistral3_small_keys() -> KeySet:
    """Mistral-Small-3.x 24B language model (FLUX.2 dev's encoder): 40 layers, hidden 5120, 8 KV heads of 128,
    q projection 32 x 128 = 4096 wide, vocab 131072, no biases, no q/k norms."""
    k = llama_keys(hidden=5120, layers=40, vocab=131072, kv=1024, ff=32768)
    k.update(_blocks("model.layers.{}.", range(40), {"self_attn.q_proj.weight": [4096, 5120],
                                                      "self_attn.o_proj.weight": [5120, 4096]}))
    return k


def ltx2_keys(layout: str = "ltx", bundled: bool = True) -> KeySet:
    """LTX-2 19B. layout "ltx": the published all-in-one file (Lightricks/LTX-2 ltx-2-19b-dev.safetensors; ComfyUI
    checkpoints/): transformer and text connectors under model.diffusion_model., then vae., audio_vae., vocoder.
    (`bundled`); original names (patchify_proj, adaln_single, av_ca_*_adaln_single, q_norm). layout "diffusers": the
    Diffusers folder's transformer/ (proj_in, time_embed, av_cross_attn_*, norm_q). 48 blocks, video 32 x 128 heads,
    audio 32 x 64, 128 latent channels each, Gemma 3 12B width 3840."""
    h, a = 4096, 2048
    names = {"ltx": ("patchify_proj", "audio_patchify_proj", "adaln_single", "audio_adaln_single",
                     "av_ca_video_scale_shift_adaln_single", "av_ca_a2v_gate_adaln_single",
                     "av_ca_audio_scale_shift_adaln_single", "av_ca_v2a_gate_adaln_single", "q_norm", "k_norm"),
             "diffusers": ("proj_in", "audio_proj_in", "time_embed", "audio_time_embed",
                           "av_cross_attn_video_scale_shift", "av_cross_attn_video_a2v_gate",
                           "av_cross_attn_audio_scale_shift", "av_cross_attn_audio_v2a_gate", "norm_q", "norm_k")}[layout]
    proj, audio_proj, ada, audio_ada, v_ss, a2v, a_ss, v2a, qn, kn = names
    k: KeySet = {f"{proj}.weight": [h, 128], f"{audio_proj}.weight": [a, 128], "scale_shift_table": [2, h],
                 "audio_scale_shift_table": [2, a], "caption_projection.linear_1.weight": [h, 3840],
                 "audio_caption_projection.linear_1.weight": [a, 3840], "proj_out.weight": [128, h],
                 "audio_proj_out.weight": [128, a], f"{ada}.linear.weight": [6 * h, h],
                 f"{audio_ada}.linear.weight": [6 * a, a]}
    for name, width in ((ada, h), (audio_ada, a), (v_ss, h), (a2v, h), (a_ss, a), (v2a, a)):
        k[f"{name}.emb.timestep_embedder.linear_1.weight"] = [width, 256]
    k.update(_blocks("transformer_blocks.{}.", range(48), {
        "scale_shift_table": [6, h], "audio_scale_shift_table": [6, a], "attn1.to_q.weight": [h, h],
        f"attn1.{qn}.weight": [h], f"attn1.{kn}.weight": [h], "attn2.to_k.weight": [h, h],
        "audio_attn1.to_q.weight": [a, a], "audio_to_video_attn.to_q.weight": [a, h],
        "video_to_audio_attn.to_k.weight": [a, h], "ff.net.0.proj.weight": [4 * h, h],
        "audio_ff.net.0.proj.weight": [4 * a, a]}))
    if layout == "diffusers":
        return k
    k.update(_blocks("video_embeddings_connector.transformer_1d_blocks.{}.", range(2),
                     {"attn1.to_q.weight": [3840, 3840], "attn1.q_norm.weight": [3840]}))
    k["video_embeddings_connector.learnable_registers"] = [128, 3840]
    k["audio_embeddings_connector.learnable_registers"] = [128, 3840]
    k = prefixed("model.diffusion_model.", k)
    if bundled:
        k.update({"vae.per_channel_statistics.mean-of-means": [128], "vae.per_channel_statistics.std-of-means": [128],
                  "vae.encoder.conv_in.conv.weight": [128, 48, 3, 3, 3],
                  "vae.encoder.down_blocks.0.res_blocks.0.conv1.conv.weight": [128, 128, 3, 3, 3],
                  "vae.decoder.conv_in.conv.weight": [1024, 128, 3, 3, 3],
                  "vae.decoder.up_blocks.0.res_blocks.0.conv1.conv.weight": [1024, 1024, 3, 3, 3],
                  "vae.decoder.conv_out.conv.weight": [48, 128, 3, 3, 3],
                  "audio_vae.per_channel_statistics.mean-of-means": [128],
                  "audio_vae.encoder.conv_in.conv.weight": [128, 2, 3, 3],
                  "audio_vae.decoder.conv_out.conv.weight": [2, 128, 3, 3],
                  "vocoder.conv_pre.weight": [1024, 128, 7], "vocoder.ups.0.weight": [1024, 512, 16],
                  "vocoder.conv_post.weight": [2, 32, 7]})
    return k
