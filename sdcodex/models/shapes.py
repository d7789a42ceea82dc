"""Architecture from shapes: the config a file's tensors imply, one small pure function per architecture.

Each rule takes the tensor shapes of one component (tool prefix stripped) and a starting config (the bundled config
of the family, or one the user gave) and returns that config with everything the shapes show set from the file:
widths, depths per level, embeddings present or not, in/out channels. What shapes cannot show comes from the
starting config, or, where its value cannot fit the widths read, from the architecture's convention:

  * SD UNets: heads — 8 per attention (SD1.5-style conv projections) or a head width of 64 (SD2/SDXL linear
    projections); group norms of 32.
  * CLIP text encoders: a head width of 64. T5/UMT5: heads are read (relative attention bias).
  * FLUX / HunyuanVideo: the head width is read (q/k norm); rope axes from the starting config.
  * WAN: a head width of 128 (every published model).
  * Llama / Qwen2.5-VL / Qwen3 / Mistral text encoders: the head width is read where q/k norms show it (Qwen3), else
    the starting config's when its width matches the file's, else 128.

A shape no rule can build is a ModelLoadError naming the tensor, the shape found and what was expected.
`summary(kind, config, base)` says in one line what was read ("sd15 variant: 2 levels × 1 block, context 768").
"""
from __future__ import annotations

import math
import re
from typing import Any, Mapping, Sequence

from sdcodex.core.errors import ModelLoadError
from sdcodex.models.model_configs import bundled, bundled_config

Shapes = Mapping[str, Sequence[int]]
SD15_HEADS = 8
UNET_HEAD_WIDTH = 64
CLIP_HEAD_WIDTH = 64
WAN_HEAD_WIDTH = 128
LLM_HEAD_WIDTH = 128  # Llama 3 8B, Qwen2.5-VL 7B, Qwen3, Mistral-Small-3: every published decoder text encoder
NO_ATTENTION_DEPTH = 1  # the placeholder depth Diffusers configs keep for levels without attention


# ---- small helpers ---------------------------------------------------------------------------------------------
def need(shapes: Shapes, key: str, what: str) -> list[int]:
    """The shape of `key`; a ModelLoadError naming it when the file lacks it."""
    if key not in shapes:
        raise ModelLoadError(f"not a complete {what}: tensor {key!r} is missing", field="model")
    return list(shapes[key])


def depth(shapes: Shapes, prefix: str) -> int:
    """1 + the highest N in keys '<prefix>N.'; 0 when there is none."""
    pat = re.compile(re.escape(prefix) + r"(\d+)\.")
    return 1 + max((int(m.group(1)) for k in shapes if (m := pat.match(k))), default=-1)


def _bad(key: str, found: Any, expected: str, what: str) -> ModelLoadError:
    return ModelLoadError(f"cannot build this {what}: tensor {key!r} has shape {list(found)}, expected {expected}",
                          field="model")


def _uniform(values: Sequence[Any]) -> Any:
    """The one value of a list whose entries are all equal, else the list."""
    return values[0] if values and all(v == values[0] for v in values) else list(values)


# ---- SD UNets (LDM layout: input_blocks / middle_block / output_blocks) -----------------------------------------
def unet_config(shapes: Shapes, base: Mapping[str, Any], *, pooled_dim: int | None = None,
                keep_heads: bool = False) -> dict[str, Any]:
    """UNet2DConditionModel config for an LDM-layout UNet (prefix 'model.diffusion_model.' stripped).

    Reads base channels, channels per level, blocks per level, transformer depth per block, context width,
    linear or conv projections, the ADM (SDXL 'text_time') embedding, time embedding width and in/out channels.
    `pooled_dim` (the second text encoder's projection width) splits the ADM width into its time and text parts;
    `keep_heads` keeps the starting config's heads (a config the user gave) instead of the convention."""
    what = "UNet"
    conv_in = need(shapes, "input_blocks.0.0.weight", what)
    base_ch, in_ch = conv_in[0], conv_in[1]
    down: list[list[int]] = [[]]
    channels: list[int] = []
    for i in range(1, depth(shapes, "input_blocks.")):
        if f"input_blocks.{i}.0.op.weight" in shapes:
            down.append([])
            continue
        width = need(shapes, f"input_blocks.{i}.0.out_layers.3.weight", what)[0]
        if not down[-1]:
            channels.append(width)
        elif width != channels[-1]:
            raise _bad(f"input_blocks.{i}.0.out_layers.3.weight", shapes[f"input_blocks.{i}.0.out_layers.3.weight"],
                       f"{channels[-1]} output channels like the level's first block", what)
        down[-1].append(depth(shapes, f"input_blocks.{i}.1.transformer_blocks."))
    if not down[-1] or len(channels) != len(down):
        raise ModelLoadError("cannot build this UNet: a level of input_blocks has no residual block", field="model")
    up: list[list[int]] = [[]]
    n_out = depth(shapes, "output_blocks.")
    for j in range(n_out):
        up[-1].append(depth(shapes, f"output_blocks.{j}.1.transformer_blocks."))
        if j < n_out - 1 and (f"output_blocks.{j}.1.conv.weight" in shapes or f"output_blocks.{j}.2.conv.weight" in shapes):
            up.append([])
    up.reverse()  # up[k] is the up path of level k
    if len(up) != len(down):
        raise ModelLoadError(f"cannot build this UNet: output_blocks have {len(up)} levels, input_blocks {len(down)}",
                             field="model")
    for k, (d, u) in enumerate(zip(down, up)):
        if len(u) != len(d) + 1:
            raise ModelLoadError(f"cannot build this UNet: level {k} has {len(d)} input blocks and {len(u)} output "
                                 f"blocks (a Diffusers UNet has one more output block than input blocks per level)",
                                 field="model")
        for blocks, side in ((d, "input"), (u, "output")):
            if any(blocks) and not all(blocks):
                raise ModelLoadError(f"cannot build this UNet: level {k} has {side} blocks with and without "
                                     "attention", field="model")
        if bool(any(d)) != bool(any(u)):
            raise ModelLoadError(f"cannot build this UNet: level {k} has attention on one side only", field="model")
    attn = [bool(any(d)) for d in down]
    layers = [len(d) for d in down]
    down_depth = [(_uniform(d) if any(d) else NO_ATTENTION_DEPTH) for d in down]
    up_depth = [(_uniform(u) if any(u) else NO_ATTENTION_DEPTH) for u in up]

    cfg = dict(base)
    mid = "middle_block.0.in_layers.0.weight" in shapes
    mid_type = "UNetMidBlock2DCrossAttn" if mid else None
    mid_depth = depth(shapes, "middle_block.1.transformer_blocks.")
    if mid and not mid_depth:  # SSD-1B: a single residual block, no attention
        if any(k.startswith(("middle_block.1.", "middle_block.2.")) for k in shapes):
            raise ModelLoadError("cannot build this UNet: its middle block has residual blocks without a transformer "
                                 "between them (middle_block.1); Diffusers builds one residual block or "
                                 "residual-transformer-residual", field="model")
        mid_type = "UNetMidBlock2D"
    elif mid:
        last = down_depth[-1]
        if not attn[-1]:
            down_depth[-1] = up_depth[-1] = mid_depth
        elif (last if isinstance(last, int) else last[0]) != mid_depth:
            raise ModelLoadError(f"cannot build this UNet: the middle block has {mid_depth} transformer blocks and the "
                                 f"deepest level {last}; Diffusers gives both the same depth", field="model")
    simple = all(isinstance(x, int) for x in down_depth) and up_depth == down_depth
    cfg.update(
        in_channels=in_ch, out_channels=need(shapes, "out.2.weight", what)[0],
        block_out_channels=channels, layers_per_block=_uniform(layers),
        down_block_types=["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attn],
        up_block_types=["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)],
        mid_block_type=mid_type,
        transformer_layers_per_block=_uniform(down_depth) if simple else down_depth,
        reverse_transformer_layers_per_block=None if simple else list(reversed(up_depth)),
    )
    time_dim = need(shapes, "time_embed.0.weight", what)[0]
    cfg["time_embedding_dim"] = None if time_dim == 4 * base_ch else time_dim
    to_k = next((k for k in sorted(shapes) if k.endswith(".attn2.to_k.weight")), None)
    proj_in = next((k for k in sorted(shapes) if k.endswith(".proj_in.weight") and ".1.proj_in" in k), None)
    if to_k is not None:
        cfg["cross_attention_dim"] = shapes[to_k][1]
    if proj_in is not None:
        cfg["use_linear_projection"] = len(shapes[proj_in]) == 2
    if not keep_heads:
        if cfg.get("use_linear_projection"):
            cfg["attention_head_dim"] = _uniform([max(1, c // UNET_HEAD_WIDTH) for c in channels])
        else:
            cfg["attention_head_dim"] = SD15_HEADS
        cfg["num_attention_heads"] = None
    cfg.update(_adm(shapes, base, pooled_dim))
    return cfg


def _adm(shapes: Shapes, base: Mapping[str, Any], pooled_dim: int | None) -> dict[str, Any]:
    """SDXL's ADM input: width = 6 × addition_time_embed_dim (size/crop/target) + pooled text width."""
    if "label_emb.0.0.weight" not in shapes:
        return {"addition_embed_type": None, "projection_class_embeddings_input_dim": None,
                "addition_time_embed_dim": None, "class_embed_type": None}
    adm = shapes["label_emb.0.0.weight"][1]
    per_value = base.get("addition_time_embed_dim") or 256
    if pooled_dim is not None:
        if (adm - pooled_dim) <= 0 or (adm - pooled_dim) % 6:
            raise _bad("label_emb.0.0.weight", shapes["label_emb.0.0.weight"],
                       f"an input width of 6 × time width + {pooled_dim} (the pooled text width)", "UNet")
        per_value = (adm - pooled_dim) // 6
    elif adm - 6 * per_value <= 0:
        raise _bad("label_emb.0.0.weight", shapes["label_emb.0.0.weight"],
                   f"an input width above 6 × {per_value}", "UNet")
    return {"addition_embed_type": "text_time", "projection_class_embeddings_input_dim": adm,
            "addition_time_embed_dim": per_value, "class_embed_type": None}


# ---- ControlNets (Diffusers layout; the original layout is renamed first by convert_ldm.convert_controlnet) --------
#: SDXL's pooled text width (OpenCLIP bigG projection): splits a ControlNet's ADM width into time and text parts
SDXL_POOLED_WIDTH = 1280


def controlnet_config(shapes: Shapes, base: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """ControlNetModel config of a Diffusers-layout ControlNet: widths and blocks per level, transformer depth, context,
    linear or conv projections, the SDXL ADM embedding and the hint encoder's channels. Heads follow the UNet
    convention (8 heads with conv projections, a head width of 64 with linear ones) unless `base` gives them."""
    what = "ControlNet"
    cfg = dict(base or {})
    conv_in = need(shapes, "conv_in.weight", what)
    channels, layers, depths = [], [], []
    for b in range(depth(shapes, "down_blocks.")):
        channels.append(need(shapes, f"down_blocks.{b}.resnets.0.conv1.weight", what)[0])
        layers.append(depth(shapes, f"down_blocks.{b}.resnets."))
        depths.append(depth(shapes, f"down_blocks.{b}.attentions.0.transformer_blocks."))
    if not channels:
        raise ModelLoadError("not a complete ControlNet: it has no down_blocks", field="model")
    mid_depth = depth(shapes, "mid_block.attentions.0.transformer_blocks.")
    hint = [need(shapes, "controlnet_cond_embedding.conv_in.weight", what)]
    hint += [list(shapes[f"controlnet_cond_embedding.blocks.{i}.weight"])
             for i in range(depth(shapes, "controlnet_cond_embedding.blocks."))]
    down_depth = [d or NO_ATTENTION_DEPTH for d in depths]
    if mid_depth and not depths[-1]:
        down_depth[-1] = mid_depth
    cfg.update(
        in_channels=conv_in[1], conditioning_channels=hint[0][1], block_out_channels=channels,
        layers_per_block=_uniform(layers),
        down_block_types=["CrossAttnDownBlock2D" if d else "DownBlock2D" for d in depths],
        mid_block_type="UNetMidBlock2DCrossAttn" if mid_depth else "UNetMidBlock2D",
        transformer_layers_per_block=_uniform(down_depth),
        conditioning_embedding_out_channels=[hint[0][0]] + [h[0] for h in hint[2::2]],
    )
    to_k = next((k for k in sorted(shapes) if k.endswith(".attn2.to_k.weight")), None)
    proj_in = next((k for k in sorted(shapes) if k.endswith(".proj_in.weight")), None)
    if to_k is not None:
        cfg["cross_attention_dim"] = shapes[to_k][1]
    if proj_in is not None:
        cfg["use_linear_projection"] = len(shapes[proj_in]) == 2
    if "attention_head_dim" not in (base or {}):
        cfg["attention_head_dim"] = (_uniform([max(1, c // UNET_HEAD_WIDTH) for c in channels])
                                     if cfg.get("use_linear_projection") else SD15_HEADS)
        cfg["num_attention_heads"] = None
    adm = shapes.get("add_embedding.linear_1.weight")
    if adm is not None:
        width = adm[1]
        per_value = (width - SDXL_POOLED_WIDTH) // 6 if width > SDXL_POOLED_WIDTH else None
        per_value = cfg.get("addition_time_embed_dim") or per_value
        if not per_value:
            raise _bad("add_embedding.linear_1.weight", adm, f"an input width of 6 x time width + "
                       f"{SDXL_POOLED_WIDTH} (SDXL), or a config giving addition_time_embed_dim", what)
        cfg.update(addition_embed_type="text_time", projection_class_embeddings_input_dim=width,
                   addition_time_embed_dim=per_value)
    return cfg


# ---- KL VAEs (LDM or Diffusers layout) ------------------------------------------------------------------------
def kl_vae_config(shapes: Shapes, base: Mapping[str, Any]) -> dict[str, Any]:
    """AutoencoderKL config: channels per level, blocks per level, latent / in / out channels, quant convs,
    mid-block attention. LDM layout ('encoder.down.N.block.M') or Diffusers ('encoder.down_blocks.N.resnets.M')."""
    what = "VAE"
    ldm = "encoder.down.0.block.0.conv1.weight" in shapes
    level, block = ("encoder.down.", ".block.") if ldm else ("encoder.down_blocks.", ".resnets.")
    levels = depth(shapes, level)
    if not levels:
        raise ModelLoadError("not a complete VAE: no encoder.down.0 / encoder.down_blocks.0 tensors", field="vae")
    channels = [need(shapes, f"{level}{i}{block}0.conv2.weight", what)[0] for i in range(levels)]
    cfg = dict(base)
    cfg.update(
        block_out_channels=channels, layers_per_block=depth(shapes, f"{level}0{block}"),
        down_block_types=["DownEncoderBlock2D"] * levels, up_block_types=["UpDecoderBlock2D"] * levels,
        in_channels=need(shapes, "encoder.conv_in.weight", what)[1],
        out_channels=need(shapes, "decoder.conv_out.weight", what)[0],
        latent_channels=need(shapes, "decoder.conv_in.weight", what)[1],
        use_quant_conv="quant_conv.weight" in shapes, use_post_quant_conv="post_quant_conv.weight" in shapes,
        mid_block_add_attention=any(k.startswith(("encoder.mid.attn_1.", "encoder.mid_block.attentions.0."))
                                    for k in shapes),
    )
    return cfg


# ---- text encoders ---------------------------------------------------------------------------------------------
def _heads(width: int, base: Mapping[str, Any], width_key: str, heads_key: str, head_width: int) -> int:
    if base.get(width_key) == width and base.get(heads_key):
        return int(base[heads_key])
    return max(1, width // head_width)


def clip_text_config(shapes: Shapes, base: Mapping[str, Any]) -> dict[str, Any]:
    """CLIPTextConfig fields for a transformers-layout CLIP text model (with or without 'text_model.')."""
    what = "CLIP text encoder"
    p = "text_model." if any(k.startswith("text_model.") for k in shapes) else ""
    vocab, hidden = need(shapes, f"{p}embeddings.token_embedding.weight", what)
    cfg = dict(base)
    cfg.update(vocab_size=vocab, hidden_size=hidden,
               max_position_embeddings=need(shapes, f"{p}embeddings.position_embedding.weight", what)[0],
               num_hidden_layers=depth(shapes, f"{p}encoder.layers."),
               intermediate_size=need(shapes, f"{p}encoder.layers.0.mlp.fc1.weight", what)[0],
               num_attention_heads=_heads(hidden, base, "hidden_size", "num_attention_heads", CLIP_HEAD_WIDTH))
    if "text_projection.weight" in shapes:
        cfg["projection_dim"] = shapes["text_projection.weight"][0]
    return cfg


def open_clip_text_config(shapes: Shapes, base: Mapping[str, Any]) -> dict[str, Any]:
    """CLIPTextConfig fields for an OpenCLIP text tower (SDXL 'conditioner.embedders.1.model.*', stripped)."""
    what = "OpenCLIP text encoder"
    vocab, hidden = need(shapes, "token_embedding.weight", what)
    cfg = dict(base)
    cfg.update(vocab_size=vocab, hidden_size=hidden, max_position_embeddings=need(shapes, "positional_embedding", what)[0],
               num_hidden_layers=depth(shapes, "transformer.resblocks."),
               intermediate_size=need(shapes, "transformer.resblocks.0.mlp.c_fc.weight", what)[0],
               num_attention_heads=_heads(hidden, base, "hidden_size", "num_attention_heads", CLIP_HEAD_WIDTH))
    if "text_projection" in shapes:
        cfg["projection_dim"] = shapes["text_projection"][1]
    return cfg


#: SD2 conditions on OpenCLIP-H's penultimate layer (then ln_final): Diffusers' SD2 text encoder keeps all layers but
#: the last (23 of 24), so CLIPTextModel's last hidden state is that layer's output
SD2_SKIPPED_LAYERS = 1


def sd2_text_config(shapes: Shapes, base: Mapping[str, Any]) -> dict[str, Any]:
    """CLIPTextConfig fields for SD2's OpenCLIP text tower ('cond_stage_model.model.*', stripped): the tower's width,
    heads and feed-forward width, and its layers but the last (SD2_SKIPPED_LAYERS)."""
    cfg = open_clip_text_config(shapes, base)
    if cfg["num_hidden_layers"] <= SD2_SKIPPED_LAYERS:
        raise _bad("transformer.resblocks.0.attn.in_proj_weight", shapes["transformer.resblocks.0.attn.in_proj_weight"],
                   "at least 2 resblocks (SD2 uses the penultimate layer)", "SD2 text encoder")
    cfg["num_hidden_layers"] -= SD2_SKIPPED_LAYERS
    if "projection_dim" in base:  # CLIPTextModel has no projection: the file's text_projection is not used
        cfg["projection_dim"] = base["projection_dim"]
    return cfg


def decoder_lm_config(shapes: Shapes, base: Mapping[str, Any]) -> dict[str, Any]:
    """LlamaConfig / Qwen2Config / Qwen3Config fields for a decoder LM used as a text encoder (HunyuanVideo's Llama 3,
    Qwen2.5-VL's language model, Qwen3, Mistral-Small-3; prefix such as 'model.' stripped): vocabulary, width,
    layers, feed-forward width, query and key/value heads (grouped-query attention), head width and attention bias."""
    what = "decoder text encoder"
    vocab, hidden = need(shapes, "embed_tokens.weight", what)
    q = need(shapes, "layers.0.self_attn.q_proj.weight", what)
    k = need(shapes, "layers.0.self_attn.k_proj.weight", what)
    if "layers.0.self_attn.q_norm.weight" in shapes:  # Qwen3: per-head RMS norms have the head width
        head_dim = int(shapes["layers.0.self_attn.q_norm.weight"][0])
    elif base.get("hidden_size") == hidden and base.get("num_attention_heads"):
        head_dim = int(base.get("head_dim") or hidden // int(base["num_attention_heads"]))
    else:
        head_dim = LLM_HEAD_WIDTH
    for key, shape in (("layers.0.self_attn.q_proj.weight", q), ("layers.0.self_attn.k_proj.weight", k)):
        if shape[0] % head_dim:
            raise _bad(key, shape, f"an output width that is a multiple of the head width {head_dim}", what)
    heads = q[0] // head_dim
    cfg = dict(base)
    cfg.update(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=depth(shapes, "layers."),
               intermediate_size=need(shapes, "layers.0.mlp.gate_proj.weight", what)[0],
               num_attention_heads=heads, num_key_value_heads=k[0] // head_dim)
    if "head_dim" in base or head_dim * heads != hidden:  # Mistral-Small-3 / Qwen3-4B: q width differs from hidden
        cfg["head_dim"] = head_dim
    if "attention_bias" in base or "layers.0.self_attn.q_proj.bias" in shapes:  # Llama-type configs; Qwen2 always has
        cfg["attention_bias"] = "layers.0.self_attn.q_proj.bias" in shapes
    return cfg


QWEN_VL_LANGUAGE_PREFIXES = ("model.language_model.", "model.")


def qwen_vl_config(shapes: Shapes, base: Mapping[str, Any]) -> dict[str, Any]:
    """Qwen2_5_VLConfig fields for a Qwen2.5-VL file (ComfyUI's qwen_2.5_vl_7b.safetensors: the language model under
    'model.', the vision tower under 'visual.'; or transformers' 'model.language_model.' / 'model.visual.'): the
    language model's widths, depth and heads by `decoder_lm_config` into `text_config`; the vision tower's config is
    `base`'s (the file's vision keys must then fit it, which the builder checks tensor by tensor)."""
    lang: dict[str, Any] = {}
    for key, shape in shapes.items():
        if key.startswith(("model.visual.", "visual.")):
            continue
        prefix = next((p for p in QWEN_VL_LANGUAGE_PREFIXES if key.startswith(p)), None)
        if prefix is not None:
            lang[key[len(prefix):]] = shape
    cfg = dict(base)
    text = decoder_lm_config(lang, dict(base.get("text_config") or {}))
    cfg["text_config"] = text
    if "vocab_size" in cfg:
        cfg["vocab_size"] = text["vocab_size"]
    return cfg


def t5_config(shapes: Shapes, base: Mapping[str, Any]) -> dict[str, Any]:
    """T5Config / UMT5Config fields for a T5-family encoder: width, layers, heads (from the relative attention
    bias), head width, feed-forward width and gating, vocabulary, relative-attention buckets."""
    what = "T5 encoder"
    q = need(shapes, "encoder.block.0.layer.0.SelfAttention.q.weight", what)
    bias = need(shapes, "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", what)
    heads = bias[1]
    if q[0] % heads:
        raise _bad("encoder.block.0.layer.0.SelfAttention.q.weight", q, f"a multiple of {heads} heads rows", what)
    vocab_key = "shared.weight" if "shared.weight" in shapes else "encoder.embed_tokens.weight"
    cfg = dict(base)
    cfg.update(d_model=q[1], d_kv=q[0] // heads, num_heads=heads, relative_attention_num_buckets=bias[0],
               num_layers=depth(shapes, "encoder.block."), vocab_size=need(shapes, vocab_key, what)[0])
    gated = "encoder.block.0.layer.1.DenseReluDense.wi_0.weight" in shapes
    if gated:
        cfg["d_ff"] = shapes["encoder.block.0.layer.1.DenseReluDense.wi_0.weight"][0]
        if not str(cfg.get("feed_forward_proj", "")).startswith("gated"):
            cfg["feed_forward_proj"] = "gated-gelu"
    else:
        cfg["d_ff"] = need(shapes, "encoder.block.0.layer.1.DenseReluDense.wi.weight", what)[0]
        if str(cfg.get("feed_forward_proj", "relu")).startswith("gated"):
            cfg["feed_forward_proj"] = "relu"
    if "num_decoder_layers" in cfg:
        cfg["num_decoder_layers"] = cfg["num_layers"]
    return cfg


# ---- FLUX-type transformers (BFL layout) -----------------------------------------------------------------------
def rope_head_width(shapes: Shapes, norm_key: str, hidden: int, axes: Any, what: str) -> int:
    """The head width of a rope transformer, read from its first q-norm; it must divide the width and equal the sum
    of the rope axes (from the base config; FLUX's (16, 56, 56) when it has none)."""
    head_dim = need(shapes, norm_key, what)[0]
    if hidden % head_dim:
        raise _bad(norm_key, shapes[norm_key], f"a head width dividing the width {hidden}", what)
    axes = list(axes or (16, 56, 56))
    if sum(axes) != head_dim:
        raise _bad(norm_key, shapes[norm_key], f"a head width of {sum(axes)} (rope axes {axes}); give a config "
                   "beside the file for other head widths", what)
    return head_dim


def flux_config(shapes: Shapes, base: Mapping[str, Any]) -> dict[str, Any]:
    """FluxTransformer2DModel config for BFL-layout keys: double/single block counts, width, head width (q norm),
    in/out channels, text and pooled widths, guidance embedding present or not. Rope axes and patch size come from
    `base`; their sum must be the head width read."""
    what = "FLUX transformer"
    img_in = need(shapes, "img_in.weight", what)
    hidden, in_channels = img_in[0], img_in[1]
    head_dim = rope_head_width(shapes, "double_blocks.0.img_attn.norm.query_norm.scale", hidden,
                               base.get("axes_dims_rope"), what)
    out = need(shapes, "final_layer.linear.weight", what)[0]
    patch = int(base.get("patch_size", 1))
    cfg = dict(base)
    cfg.update(in_channels=in_channels, num_layers=depth(shapes, "double_blocks."),
               num_single_layers=depth(shapes, "single_blocks."), attention_head_dim=head_dim,
               num_attention_heads=hidden // head_dim, joint_attention_dim=need(shapes, "txt_in.weight", what)[1],
               pooled_projection_dim=need(shapes, "vector_in.in_layer.weight", what)[1],
               guidance_embeds="guidance_in.in_layer.weight" in shapes,
               out_channels=None if out // (patch * patch) == in_channels else out // (patch * patch))
    return cfg


# ---- WAN transformers (Wan-Video original layout) --------------------------------------------------------------
def wan_config(shapes: Shapes, base: Mapping[str, Any]) -> dict[str, Any]:
    """WanTransformer3DModel config for original-layout keys: layers, width, heads (head width 128, or the starting
    config's), in/out channels, patch, feed-forward, text and time widths, cross-attention norm and the image
    embedding (Wan 2.1 i2v). `base` supplies qk_norm, eps and rope_max_seq_len."""
    what = "WAN transformer"
    pe = need(shapes, "patch_embedding.weight", what)
    dim, in_channels, patch = pe[0], pe[1], list(pe[2:])
    head_dim = int(base.get("attention_head_dim") or WAN_HEAD_WIDTH)
    if dim % head_dim:
        raise _bad("patch_embedding.weight", pe, f"a width that is a multiple of the head width {head_dim}", what)
    head = need(shapes, "head.head.weight", what)[0]
    cfg = dict(base)
    cfg.update(patch_size=patch, in_channels=in_channels, out_channels=head // math.prod(patch),
               num_layers=depth(shapes, "blocks."), num_attention_heads=dim // head_dim, attention_head_dim=head_dim,
               ffn_dim=need(shapes, "blocks.0.ffn.0.weight", what)[0],
               text_dim=need(shapes, "text_embedding.0.weight", what)[1],
               freq_dim=need(shapes, "time_embedding.0.weight", what)[1],
               cross_attn_norm="blocks.0.norm3.weight" in shapes,
               image_dim=shapes["img_emb.proj.0.weight"][0] if "img_emb.proj.0.weight" in shapes else None,
               added_kv_proj_dim=dim if "blocks.0.cross_attn.k_img.weight" in shapes else None,
               pos_embed_seq_len=shapes["img_emb.emb_pos"][1] if "img_emb.emb_pos" in shapes else None)
    return cfg


# ---- HunyuanVideo transformers (Diffusers layout) --------------------------------------------------------------
#: HunyuanVideo 1.0's transformer (hunyuanvideo-community/HunyuanVideo), the starting point when no config is given
HUNYUAN_VIDEO_TRANSFORMER: dict[str, Any] = {
    "_class_name": "HunyuanVideoTransformer3DModel", "in_channels": 16, "out_channels": 16, "num_attention_heads": 24,
    "attention_head_dim": 128, "num_layers": 20, "num_single_layers": 40, "num_refiner_layers": 2, "mlp_ratio": 4.0,
    "patch_size": 2, "patch_size_t": 1, "qk_norm": "rms_norm", "guidance_embeds": True, "text_embed_dim": 4096,
    "pooled_projection_dim": 768, "rope_theta": 256.0, "rope_axes_dim": [16, 56, 56], "image_condition_type": None}


def hunyuan_video_config(shapes: Shapes, base: Mapping[str, Any]) -> dict[str, Any]:
    """HunyuanVideoTransformer3DModel config for Diffusers-layout keys: double/single/refiner layer counts, width,
    head width (q norm), in/out channels, patch sizes, text and pooled widths, guidance embedding."""
    what = "HunyuanVideo transformer"
    proj = need(shapes, "x_embedder.proj.weight", what)
    hidden, in_channels, patch_t, patch = proj[0], proj[1], proj[2], proj[3]
    head_dim = need(shapes, "transformer_blocks.0.attn.norm_q.weight", what)[0]
    if hidden % head_dim:
        raise _bad("transformer_blocks.0.attn.norm_q.weight", [head_dim], f"a head width dividing {hidden}", what)
    out = need(shapes, "proj_out.weight", what)[0]
    cfg = dict(base)
    cfg.update(in_channels=in_channels, out_channels=out // (patch * patch * patch_t), patch_size=patch,
               patch_size_t=patch_t, attention_head_dim=head_dim, num_attention_heads=hidden // head_dim,
               num_layers=depth(shapes, "transformer_blocks."),
               num_single_layers=depth(shapes, "single_transformer_blocks."),
               num_refiner_layers=depth(shapes, "context_embedder.token_refiner.refiner_blocks."),
               text_embed_dim=need(shapes, "context_embedder.proj_in.weight", what)[1],
               pooled_projection_dim=need(shapes, "time_text_embed.text_embedder.linear_1.weight", what)[1],
               guidance_embeds=any(k.startswith("time_text_embed.guidance_embedder.") for k in shapes))
    return cfg


# ---- HunyuanVideo transformers (Tencent's original layout, as ComfyUI and the GGUFs keep it) ----------------------
#: HunyuanVideo 1.5's transformer (hunyuanvideo-community/HunyuanVideo-1.5-480p_t2v), the starting point without a base
HUNYUAN_VIDEO15_TRANSFORMER: dict[str, Any] = {
    "_class_name": "HunyuanVideo15Transformer3DModel", "in_channels": 65, "out_channels": 32, "num_attention_heads": 16,
    "attention_head_dim": 128, "num_layers": 54, "num_refiner_layers": 2, "mlp_ratio": 4.0, "patch_size": 1,
    "patch_size_t": 1, "qk_norm": "rms_norm", "text_embed_dim": 3584, "text_embed_2_dim": 1472, "image_embed_dim": 1152,
    "rope_theta": 256.0, "rope_axes_dim": [16, 56, 56], "use_meanflow": False, "target_size": 640, "task_type": "t2v"}
LATENT_CONCAT = "latent_concat"  # HunyuanVideo-I2V: latents + image latents + a mask channel in


def _hunyuan_common(shapes: Shapes, base: Mapping[str, Any], what: str) -> dict[str, Any]:
    """What HunyuanVideo 1.0 and 1.5 files show alike: width, head width (q norm), patch sizes, in/out channels, depths,
    MLP ratio, text width. The rope axes come from `base`; their sum must be the head width read."""
    proj = need(shapes, "img_in.proj.weight", what)
    hidden, in_channels, patch_t, patch = proj[0], proj[1], proj[2], proj[3]
    head_dim = rope_head_width(shapes, "double_blocks.0.img_attn_q_norm.weight", hidden, base.get("rope_axes_dim"),
                               what)
    cfg = dict(base)
    cfg.update(in_channels=in_channels, patch_size=patch, patch_size_t=patch_t, attention_head_dim=head_dim,
               num_attention_heads=hidden // head_dim,
               out_channels=need(shapes, "final_layer.linear.weight", what)[0] // (patch * patch * patch_t),
               num_layers=depth(shapes, "double_blocks."),
               num_refiner_layers=depth(shapes, "txt_in.individual_token_refiner.blocks."),
               mlp_ratio=need(shapes, "double_blocks.0.img_mlp.fc1.weight", what)[0] / hidden,
               text_embed_dim=need(shapes, "txt_in.input_embedder.weight", what)[1])
    return cfg


def hunyuan_video_original_config(shapes: Shapes, base: Mapping[str, Any]) -> dict[str, Any]:
    """HunyuanVideoTransformer3DModel config for original-layout keys (double_blocks.N.img_attn_qkv ...): double/
    single/refiner depths, width, head width, in/out channels, pooled width, guidance embedding, and the image
    condition: 2 x out + 1 input channels is HunyuanVideo-I2V's latent_concat; a file with as many inputs as outputs
    keeps the starting config's token_replace (the shapes cannot tell it from text-to-video), else none."""
    what = "HunyuanVideo transformer"
    cfg = _hunyuan_common(shapes, base, what)
    condition = base.get("image_condition_type")
    if cfg["in_channels"] == 2 * cfg["out_channels"] + 1:
        condition = LATENT_CONCAT
    elif cfg["in_channels"] == cfg["out_channels"]:
        condition = condition if condition == "token_replace" else None
    else:
        raise _bad("img_in.proj.weight", shapes["img_in.proj.weight"],
                   f"{cfg['out_channels']} or {2 * cfg['out_channels'] + 1} input channels (text-to-video or I2V)",
                   what)
    cfg.update(num_single_layers=depth(shapes, "single_blocks."), image_condition_type=condition,
               pooled_projection_dim=need(shapes, "vector_in.in_layer.weight", what)[1],
               guidance_embeds="guidance_in.mlp.0.weight" in shapes)
    return cfg


def hunyuan_video15_original_config(shapes: Shapes, base: Mapping[str, Any]) -> dict[str, Any]:
    """HunyuanVideo15Transformer3DModel config for original-layout keys: depths, width, head width, in/out channels,
    MLP ratio, text (Qwen2.5-VL), ByT5 and image (SigLIP) embedding widths. t2v/i2v (`task_type`), the target size and
    meanflow come from `base` (the base folder's config; the shapes are the same)."""
    what = "HunyuanVideo 1.5 transformer"
    cfg = _hunyuan_common(shapes, base, what)
    cfg.update(text_embed_2_dim=need(shapes, "byt5_in.fc1.weight", what)[1],
               image_embed_dim=need(shapes, "vision_in.proj.1.weight", what)[1])
    return cfg


# ---- Z-Image transformers (Tongyi-MAI original layout) --------------------------------------------------------
def sd3_config(shapes: Shapes, base: Mapping[str, Any]) -> dict[str, Any]:
    """SD3Transformer2DModel config for Stability-layout keys (prefix stripped): widths, depth, head size (from the
    qk RMS norm; `base` gives it for SD3 Medium, which has none), the pos-embed grid and the MMDiT-X blocks."""
    what = "SD3 transformer"
    proj = need(shapes, "x_embedder.proj.weight", what)
    hidden, in_channels, patch = proj[0], proj[1], proj[2]
    ln_q = shapes.get("joint_blocks.0.x_block.attn.ln_q.weight")
    head_dim = int(ln_q[0]) if ln_q else int(base.get("attention_head_dim", 64))
    context = need(shapes, "context_embedder.weight", what)
    dual = sorted({int(k.split(".")[1]) for k in shapes if k.startswith("joint_blocks.") and ".x_block.attn2." in k})
    cfg = dict(base)
    cfg.update(in_channels=in_channels, patch_size=patch, num_layers=depth(shapes, "joint_blocks."),
               attention_head_dim=head_dim, num_attention_heads=hidden // head_dim, caption_projection_dim=context[0],
               joint_attention_dim=context[1], pooled_projection_dim=need(shapes, "y_embedder.mlp.0.weight", what)[1],
               pos_embed_max_size=math.isqrt(need(shapes, "pos_embed", what)[1]),
               out_channels=need(shapes, "final_layer.linear.weight", what)[0] // (patch * patch),
               qk_norm="rms_norm" if ln_q else None, dual_attention_layers=tuple(dual))
    return cfg


def qwen_image_config(shapes: Shapes, base: Mapping[str, Any]) -> dict[str, Any]:
    """QwenImageTransformer2DModel config for Diffusers/ComfyUI-layout keys (prefix stripped): width, depth, head size
    (from the q RMS norm), text width and channels; `base` gives the patch size and the rope axes."""
    what = "Qwen-Image transformer"
    hidden, in_channels = need(shapes, "img_in.weight", what)
    head_dim = need(shapes, "transformer_blocks.0.attn.norm_q.weight", what)[0]
    patch = int(base.get("patch_size", 2))
    cfg = dict(base)
    cfg.update(in_channels=in_channels, num_layers=depth(shapes, "transformer_blocks."), attention_head_dim=head_dim,
               num_attention_heads=hidden // head_dim, joint_attention_dim=need(shapes, "txt_norm.weight", what)[0],
               out_channels=need(shapes, "proj_out.weight", what)[0] // (patch * patch),
               guidance_embeds="time_text_embed.guidance_embedder.linear_1.weight" in shapes)
    return cfg


def z_image_config(shapes: Mapping[str, Sequence[int]], base: Mapping[str, Any]) -> dict[str, Any]:
    """ZImageTransformer2DModel config for original-layout keys (prefix stripped): width and caption width from
    cap_embedder.1, head size from the q-norm, KV heads from the fused qkv rows, depths from the block indices,
    latent channels from x_embedder; `base` supplies the patch sizes, rope axes/theta, eps and t_scale."""
    cap = need(shapes, "cap_embedder.1.weight", "Z-Image transformer")
    dim, cap_feat_dim = cap[0], cap[1]
    head_dim = need(shapes, "layers.0.attention.q_norm.weight", "Z-Image transformer")[0]
    heads = dim // head_dim
    kv = (need(shapes, "layers.0.attention.qkv.weight", "Z-Image transformer")[0] // head_dim - heads) // 2
    patch, frames = int(list(base.get("all_patch_size", [2]))[0]), int(list(base.get("all_f_patch_size", [1]))[0])
    if (patch, frames) != (2, 1):
        raise ModelLoadError(f"a Z-Image base config with patch size {patch}x{patch}x{frames} does not fit the "
                             "original layout (one 2x2 patch embedder)", field="model")
    axes = list(base.get("axes_dims", [32, 48, 48]))
    if sum(axes) != head_dim:
        raise ModelLoadError(f"the Z-Image base config's rope axes {axes} do not add up to the file's head size "
                             f"{head_dim}; give the model's own configs", field="model")
    cfg = dict(base)
    cfg.update(dim=dim, cap_feat_dim=cap_feat_dim, n_heads=heads, n_kv_heads=kv,
               n_layers=depth(shapes, "layers."), n_refiner_layers=depth(shapes, "noise_refiner."),
               in_channels=need(shapes, "x_embedder.weight", "Z-Image transformer")[1] // (patch * patch * frames))
    return cfg


# ---- Chroma transformers (lodestones' BFL layout) ---------------------------------------------------------------
def chroma_config(shapes: Shapes, base: Mapping[str, Any]) -> dict[str, Any]:
    """ChromaTransformer2DModel config for BFL-layout keys: FLUX's block counts, widths and in/out channels (no
    pooled or guidance input) plus the approximator's input channels, width and depth. Rope axes and patch size
    come from `base`; their sum must be the head width read."""
    what = "Chroma transformer"
    img_in = need(shapes, "img_in.weight", what)
    hidden, in_channels = img_in[0], img_in[1]
    norm_key = "double_blocks.0.img_attn.norm.query_norm.scale"
    head_dim = need(shapes, norm_key, what)[0]
    axes = list(base.get("axes_dims_rope") or (16, 56, 56))
    if hidden % head_dim or sum(axes) != head_dim:
        raise _bad(norm_key, shapes[norm_key], f"a head width of {sum(axes)} (rope axes {axes}) dividing the width "
                   f"{hidden}; give a config beside the file for other head widths", what)
    approx = need(shapes, "distilled_guidance_layer.in_proj.weight", what)
    out = need(shapes, "final_layer.linear.weight", what)[0]
    patch = int(base.get("patch_size", 1))
    cfg = dict(base)
    cfg.update(in_channels=in_channels, num_layers=depth(shapes, "double_blocks."),
               num_single_layers=depth(shapes, "single_blocks."), attention_head_dim=head_dim,
               num_attention_heads=hidden // head_dim, joint_attention_dim=need(shapes, "txt_in.weight", what)[1],
               approximator_num_channels=approx[1], approximator_hidden_dim=approx[0],
               approximator_layers=depth(shapes, "distilled_guidance_layer.layers."),
               out_channels=None if out // (patch * patch) == in_channels else out // (patch * patch))
    return cfg


def flux2_config(shapes: Shapes, base: Mapping[str, Any]) -> dict[str, Any]:
    """Flux2Transformer2DModel config for BFL-layout keys (flux2-dev.safetensors, flux-2-klein-*.safetensors): block
    counts, head width (the q-norm), heads (img_in width / head width), text width (txt_in), timestep channels
    (time_in), MLP ratio (img_mlp.0 is a SwiGLU: 2 x ratio x width rows), the guidance embedding (dev only). Rope axes
    and theta come from `base`; their sum must be the head width read."""
    what = "FLUX.2 transformer"
    img_in = need(shapes, "img_in.weight", what)
    hidden, in_channels = img_in[0], img_in[1]
    norm_key = "double_blocks.0.img_attn.norm.query_norm.scale"
    head_dim = need(shapes, norm_key, what)[0]
    axes = list(base.get("axes_dims_rope") or (32, 32, 32, 32))
    if hidden % head_dim or sum(axes) != head_dim:
        raise _bad(norm_key, shapes[norm_key], f"a head width of {sum(axes)} (rope axes {axes}) dividing the width "
                   f"{hidden}; give a config beside the file for other head widths", what)
    mlp = need(shapes, "double_blocks.0.img_mlp.0.weight", what)[0]
    out = need(shapes, "final_layer.linear.weight", what)[0]
    cfg = dict(base)
    cfg.update(in_channels=in_channels, out_channels=None if out == in_channels else out,
               num_layers=depth(shapes, "double_blocks."), num_single_layers=depth(shapes, "single_blocks."),
               attention_head_dim=head_dim, num_attention_heads=hidden // head_dim,
               joint_attention_dim=need(shapes, "txt_in.weight", what)[1],
               timestep_guidance_channels=need(shapes, "time_in.in_layer.weight", what)[1],
               mlp_ratio=mlp / 2 / hidden, guidance_embeds="guidance_in.in_layer.weight" in shapes)
    return cfg


# ---- LTX-2 transformers (Lightricks' layout: ltx-2-19b-*.safetensors under model.diffusion_model.) ----------------
def ltx2_config(shapes: Shapes, base: Mapping[str, Any]) -> dict[str, Any]:
    """LTX2VideoTransformer3DModel config for Lightricks-layout keys (prefix stripped): video and audio widths and
    latent channels from the patchify projections, depth from the blocks, cross-attention widths from the text
    attentions' keys, caption width from the caption projection (absent: the connector projects, LTX-2.3). The
    q/k RMS norms span all heads, so head sizes come from `base` (the base folder's config); heads = width / head."""
    what = "LTX-2 transformer"
    hidden, in_channels = need(shapes, "patchify_proj.weight", what)
    audio_hidden, audio_in = need(shapes, "audio_patchify_proj.weight", what)
    head, audio_head = int(base.get("attention_head_dim", 128)), int(base.get("audio_attention_head_dim", 64))
    if hidden % head or audio_hidden % audio_head:
        raise _bad("patchify_proj.weight", shapes["patchify_proj.weight"], f"widths dividing into heads of {head} "
                   f"(video) and {audio_head} (audio), the base config's; give a config beside the file", what)
    cfg = dict(base)
    cfg.update(in_channels=in_channels, out_channels=need(shapes, "proj_out.weight", what)[0],
               audio_in_channels=audio_in, audio_out_channels=need(shapes, "audio_proj_out.weight", what)[0],
               num_attention_heads=hidden // head, attention_head_dim=head,
               audio_num_attention_heads=audio_hidden // audio_head, audio_attention_head_dim=audio_head,
               cross_attention_dim=need(shapes, "transformer_blocks.0.attn2.to_k.weight", what)[1],
               audio_cross_attention_dim=need(shapes, "transformer_blocks.0.audio_attn2.to_k.weight", what)[1],
               num_layers=depth(shapes, "transformer_blocks."))
    if "caption_projection.linear_1.weight" in shapes:
        cfg.update(use_prompt_embeddings=True, caption_channels=shapes["caption_projection.linear_1.weight"][1])
    return cfg


# ---- what was read ---------------------------------------------------------------------------------------------
#: config keys each summary reports, per component kind
SUMMARY_KEYS: dict[str, tuple[str, ...]] = {
    "llm": ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "intermediate_size",
            "vocab_size"),
    "unet": ("block_out_channels", "layers_per_block", "transformer_layers_per_block",
             "reverse_transformer_layers_per_block", "cross_attention_dim", "attention_head_dim", "mid_block_type",
             "projection_class_embeddings_input_dim", "in_channels", "out_channels", "use_linear_projection"),
    "vae": ("block_out_channels", "layers_per_block", "latent_channels", "in_channels", "out_channels"),
    "clip": ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "projection_dim"),
    "t5": ("d_model", "num_layers", "num_heads", "d_kv", "d_ff", "vocab_size"),
    "flux": ("num_layers", "num_single_layers", "num_attention_heads", "attention_head_dim", "in_channels",
             "joint_attention_dim", "guidance_embeds"),
    "wan": ("num_layers", "num_attention_heads", "attention_head_dim", "in_channels", "ffn_dim", "text_dim",
            "image_dim"),
    "z_image": ("n_layers", "n_refiner_layers", "dim", "n_heads", "n_kv_heads", "in_channels", "cap_feat_dim"),
    "chroma": ("num_layers", "num_single_layers", "num_attention_heads", "attention_head_dim", "in_channels",
               "joint_attention_dim", "approximator_hidden_dim", "approximator_layers"),
    "hunyuan_video": ("num_layers", "num_single_layers", "num_attention_heads", "attention_head_dim", "in_channels",
                      "text_embed_dim", "guidance_embeds", "image_condition_type"),
    "hunyuan_video15": ("num_layers", "num_attention_heads", "attention_head_dim", "in_channels", "text_embed_dim",
                        "text_embed_2_dim", "image_embed_dim"),
    **{k: ("num_layers", "num_single_layers", "num_attention_heads", "attention_head_dim", "in_channels",
           "joint_attention_dim", "guidance_embeds") for k in ("flux2", "flux2_klein")},
    "sd3": ("num_layers", "num_attention_heads", "attention_head_dim", "in_channels", "joint_attention_dim",
            "pos_embed_max_size", "qk_norm", "dual_attention_layers"),
    "ltx2": ("num_layers", "num_attention_heads", "attention_head_dim", "audio_num_attention_heads",
             "audio_attention_head_dim", "in_channels", "audio_in_channels", "caption_channels"),
}


#: the class defaults of reported keys a bundled config may leave out
DEFAULTS: dict[str, Any] = {"mid_block_type": "UNetMidBlock2DCrossAttn", "transformer_layers_per_block": 1,
                            "use_linear_projection": False}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def differences(kind: str, config: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, Any]:
    """The reported config values that differ from the starting config: {key: value read}."""
    def norm(v: Any) -> Any:
        return list(v) if isinstance(v, tuple) else v
    return {k: config.get(k) for k in SUMMARY_KEYS.get(kind, ())
            if norm(config.get(k, DEFAULTS.get(k))) != norm(base.get(k, DEFAULTS.get(k)))}


def summary(kind: str, name: str, config: Mapping[str, Any], base: Mapping[str, Any]) -> str:
    """One line saying what was read, e.g. 'sd15 variant: 2 levels × 1 block, context 768' or 'flux: standard'."""
    label = f"{name} variant" if differences(kind, config, base) else name
    c = config
    if kind == "unet":
        layers = c.get("layers_per_block")
        per = _plural(layers, "block") if isinstance(layers, int) else f"{list(layers)} blocks"
        depth_ = c.get("transformer_layers_per_block", 1)
        parts = [f"{len(c['block_out_channels'])} levels × {per}", f"channels {list(c['block_out_channels'])}",
                 f"transformer depth {depth_ if isinstance(depth_, int) else list(depth_)}",
                 f"context {c.get('cross_attention_dim')}"]
        if c.get("projection_class_embeddings_input_dim"):
            parts.append(f"adm {c['projection_class_embeddings_input_dim']}")
        if c.get("mid_block_type") is None:
            parts.append("no middle block")
        elif c.get("mid_block_type") == "UNetMidBlock2D":
            parts.append("middle block without attention")
    elif kind == "vae":
        parts = [f"{len(c['block_out_channels'])} levels × {_plural(c['layers_per_block'], 'block')}",
                 f"channels {list(c['block_out_channels'])}", f"{c['latent_channels']} latent channels"]
    elif kind == "clip":
        parts = [f"width {c['hidden_size']}", _plural(c["num_hidden_layers"], "layer"),
                 _plural(c["num_attention_heads"], "head")]
    elif kind == "llm":
        kv = c.get("num_key_value_heads") or c["num_attention_heads"]
        parts = [f"width {c['hidden_size']}", _plural(c["num_hidden_layers"], "layer"),
                 _plural(c["num_attention_heads"], "head") + (f" ({kv} KV)" if kv != c["num_attention_heads"] else ""),
                 f"ff {c['intermediate_size']}"]
    elif kind == "t5":
        parts = [f"width {c['d_model']}", _plural(c["num_layers"], "layer"), _plural(c["num_heads"], "head"),
                 f"ff {c['d_ff']}"]
    elif kind in ("flux", "hunyuan_video", "flux2", "flux2_klein"):
        parts = [f"{c['num_layers']} double + {c['num_single_layers']} single blocks",
                 f"width {c['num_attention_heads'] * c['attention_head_dim']}",
                 "guidance embedding" if c.get("guidance_embeds") else "no guidance embedding"]
        if kind == "hunyuan_video":
            parts[2:2] = [_plural(c["num_attention_heads"], "head"), f"{c['in_channels']} in channels"]
            parts += [f"image condition {c['image_condition_type']}"] if c.get("image_condition_type") else []
    elif kind == "hunyuan_video15":
        parts = [_plural(c["num_layers"], "double block"), f"width {c['num_attention_heads'] * c['attention_head_dim']}",
                 _plural(c["num_attention_heads"], "head"), f"{c['in_channels']} in channels",
                 f"image embedding {c['image_embed_dim']}"]
    elif kind == "wan":
        parts = [_plural(c["num_layers"], "layer"), f"width {c['num_attention_heads'] * c['attention_head_dim']}",
                 f"{c['in_channels']} in channels"] + (["image embedding"] if c.get("image_dim") else [])
    elif kind == "sd3":
        parts = [_plural(c["num_layers"], "joint block"), f"width {c['num_attention_heads'] * c['attention_head_dim']}",
                 f"pos-embed grid {c.get('pos_embed_max_size')}"]
        parts += ["qk norm"] if c.get("qk_norm") else []
        parts += [f"MMDiT-X self-attention in {len(c['dual_attention_layers'])} blocks"] \
            if c.get("dual_attention_layers") else []
    elif kind == "z_image":
        parts = [_plural(c["n_layers"], "layer"), f"width {c['dim']}", _plural(c["n_heads"], "head")]
    elif kind == "ltx2":
        parts = [_plural(c["num_layers"], "block"), f"video width {c['num_attention_heads'] * c['attention_head_dim']}",
                 f"audio width {c['audio_num_attention_heads'] * c['audio_attention_head_dim']}"]
    elif kind == "chroma":
        parts = [f"{c['num_layers']} double + {c['num_single_layers']} single blocks",
                 f"width {c['num_attention_heads'] * c['attention_head_dim']}",
                 f"approximator {c['approximator_layers']} x {c['approximator_hidden_dim']}"]
    else:
        parts = []
    return f"{label}: " + ", ".join(parts) if parts else label


# ---- whole files -------------------------------------------------------------------------------------------------
#: SD checkpoint component -> (summary kind, name in summaries, rule)
SD_COMPONENTS: dict[str, tuple[str, str | None, Any]] = {
    "unet": ("unet", None, unet_config), "vae": ("vae", None, kl_vae_config),
    "text_encoder": ("clip", "clip_l", clip_text_config), "text_encoder_2": ("clip", "clip_g", open_clip_text_config),
}


def sd_configs(parts: Mapping[str, Shapes], family: str, given: Mapping[str, Mapping[str, Any]] | None = None
               ) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Configs of an SD1.5/SD2/SDXL checkpoint's components from their shapes ({component: local key -> shape}), and
    one summary line per component. `given` (configs the user gave: `configs=` or a config beside the file) replaces
    the bundled starting config of a component; the summaries compare with the bundled (published) model."""
    given = dict(given or {})
    unet_in = need(parts["unet"], "input_blocks.0.0.weight", "UNet")[1] if "unet" in parts else 4
    pooled = (parts.get("text_encoder_2") or {}).get("text_projection")
    configs: dict[str, dict[str, Any]] = {}
    read: dict[str, str] = {}
    for comp, (kind, name, rule) in SD_COMPONENTS.items():
        if comp not in parts:
            continue
        if comp == "text_encoder" and "transformer.resblocks.0.attn.in_proj_weight" in parts[comp]:
            name, rule = "clip_h", sd2_text_config  # SD2: OpenCLIP-H under cond_stage_model.model
        official = bundled_config(family, "unet_inpaint" if comp == "unet" and unet_in == 9 else comp)
        start = dict(given.get(comp) or official)
        try:
            if comp == "unet":
                cfg = rule(parts[comp], start, pooled_dim=pooled[1] if pooled else None, keep_heads=comp in given)
            else:
                cfg = rule(parts[comp], start)
        except ModelLoadError as exc:
            raise ModelLoadError(f"{comp}: {exc.message}", field=exc.field) from None
        configs[comp] = cfg
        read[comp] = summary(kind, name or family, cfg, official)
    return configs, read


#: a separate text-encoder file (detected name) -> (summary kind, family and component of its bundled config, rule)
TEXT_ENCODER_FILES: dict[str, tuple[str, str, str, Any]] = {
    "clip_l": ("clip", "sd15", "text_encoder", clip_text_config),
    "clip_g": ("clip", "sdxl", "text_encoder_2", clip_text_config),
    "t5xxl": ("t5", "flux", "text_encoder_2", t5_config),
    "umt5": ("t5", "wan22_ti2v_5b", "text_encoder", t5_config),
    # decoder LMs: no bundled config (their folders carry one); the summary compares with nothing ("variant")
    "llama": ("llm", "", "", decoder_lm_config), "qwen2_5_vl": ("llm", "", "", decoder_lm_config),
    "qwen3_4b": ("llm", "z_image", "text_encoder", decoder_lm_config), "qwen3_8b": ("llm", "", "", decoder_lm_config),
    "mistral3_small": ("llm", "", "", decoder_lm_config),
}


def architecture_of(shapes: Shapes, kind: str, family: Any, prefix: str, variant: Mapping[str, Any]) -> dict[str, str]:
    """What the shapes of a detected file say, one line per component ({'unet': 'sd15 variant: ...'}), or
    {'error': ...} naming the tensor no rule can build. Empty when no rule covers the file."""
    from sdcodex.models import convert_ldm

    fam = str(getattr(family, "value", family or ""))
    try:
        if fam in ("sd15", "sd2", "sdxl") and kind in ("checkpoint", "diffusion_model"):
            keys = list(shapes)
            root = convert_ldm.find_root_prefix(keys)
            parts = {comp: {local: shapes[full] for local, full in names.items()}
                     for comp, names in convert_ldm.split_components(keys, root).items()}
            if "unet" not in parts:
                return {}
            return sd_configs(parts, fam)[1]
        local = {k[len(prefix):]: v for k, v in shapes.items() if k.startswith(prefix)}
        if fam == "flux" and variant.get("layout") == "bfl":
            base = bundled_config("flux", "transformer" if variant.get("guidance_embed") else "transformer_schnell")
            return {"transformer": summary("flux", "flux", flux_config(local, base), base)}
        if fam == "chroma" and variant.get("layout") == "bfl":
            base = bundled_config("chroma", "transformer")
            return {"transformer": summary("chroma", "chroma", chroma_config(local, base), base)}
        if fam == "z_image" and variant.get("layout") == "original":
            base = bundled_config("z_image", "transformer")
            return {"transformer": summary("z_image", "z_image", z_image_config(local, base), base)}
        if fam == "sd3" and variant.get("layout") == "original":
            base = bundled_config("sd3", "transformer_medium" if variant.get("model") == "sd35_medium" else "transformer")
            return {"transformer": summary("sd3", str(variant.get("model") or "sd3"), sd3_config(local, base), base)}
        if fam.startswith("wan22") and variant.get("layout") == "original":
            base = bundled_config(fam, "transformer")
            return {"transformer": summary("wan", fam, wan_config(local, base), base)}
        if fam == "hunyuan_video" and variant.get("layout") == "diffusers":
            base = HUNYUAN_VIDEO_TRANSFORMER
            return {"transformer": summary("hunyuan_video", fam, hunyuan_video_config(local, base), base)}
        if fam in ("hunyuan_video", "hunyuan_video15") and variant.get("layout") == "original":
            base, rule = ((HUNYUAN_VIDEO_TRANSFORMER, hunyuan_video_original_config) if fam == "hunyuan_video" else
                          (HUNYUAN_VIDEO15_TRANSFORMER, hunyuan_video15_original_config))
            return {"transformer": summary(fam, fam, rule(local, base), base)}
        if kind == "text_encoder" and variant.get("text_encoder") in TEXT_ENCODER_FILES:
            what, src, comp, rule = TEXT_ENCODER_FILES[variant["text_encoder"]]
            base = (bundled(src, comp) or {}) if src else {}
            if what == "clip" and "transformer.resblocks.0.attn.in_proj_weight" in local:
                rule = open_clip_text_config
            cfg = rule(local, base)
            return {"text_encoder": summary(what, variant["text_encoder"], cfg, base or cfg)}
        if kind == "vae" and variant.get("latent_channels") in (4, 16) and "decoder.conv_in.weight" in local \
                and len(local["decoder.conv_in.weight"]) == 4:
            base = bundled_config("flux" if variant["latent_channels"] == 16 else "sd15", "vae")
            return {"vae": summary("vae", "vae", kl_vae_config(local, base), base)}
    except ModelLoadError as exc:
        return {"error": exc.message}
    except (KeyError, IndexError, TypeError, ValueError, ZeroDivisionError) as exc:  # a header no rule expects
        return {"error": f"the shapes do not describe a buildable model ({type(exc).__name__}: {exc})"}
    return {}


__all__ = ["sd2_text_config", "SD2_SKIPPED_LAYERS", "controlnet_config", "flux2_config", "sd_configs", "architecture_of", "unet_config", "kl_vae_config", "clip_text_config", "open_clip_text_config", "t5_config", "flux_config",
           "wan_config", "hunyuan_video_config", "hunyuan_video_original_config", "hunyuan_video15_original_config",
           "HUNYUAN_VIDEO15_TRANSFORMER", "z_image_config", "HUNYUAN_VIDEO_TRANSFORMER", "chroma_config", "sd3_config", "qwen_image_config", "summary", "differences", "need", "depth", "SUMMARY_KEYS",
           "SD15_HEADS", "UNET_HEAD_WIDTH", "CLIP_HEAD_WIDTH", "WAN_HEAD_WIDTH", "decoder_lm_config", "LLM_HEAD_WIDTH"]
