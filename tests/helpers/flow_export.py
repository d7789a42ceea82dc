"""TEST-ONLY: write Diffusers FLUX / WAN transformers back into the original single-file layouts (BFL's
double_blocks/single_blocks; Wan-Video's blocks.N.self_attn ...), and text encoders / VAEs as the separate files
ComfyUI users keep. Written independently of sdcodex.models.convert_flow (explicit code, no shared tables) so a
round trip through both checks the converter instead of repeating it."""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file


def _save(state: dict[str, torch.Tensor], path: Path, prefix: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({prefix + k: v.contiguous().clone() for k, v in state.items()}, str(path))
    return path


def flux_to_bfl(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """FluxTransformer2DModel state dict -> black-forest-labs flux layout."""
    out: dict[str, torch.Tensor] = {}

    def pair(dst: str, src: str) -> None:
        for p in ("weight", "bias"):
            if f"{src}.{p}" in sd:
                out[f"{dst}.{p}"] = sd[f"{src}.{p}"]

    pair("img_in", "x_embedder")
    pair("txt_in", "context_embedder")
    for ours, theirs in (("time_in", "timestep_embedder"), ("vector_in", "text_embedder"),
                         ("guidance_in", "guidance_embedder")):
        pair(f"{ours}.in_layer", f"time_text_embed.{theirs}.linear_1")
        pair(f"{ours}.out_layer", f"time_text_embed.{theirs}.linear_2")
    pair("final_layer.linear", "proj_out")
    for p in ("weight", "bias"):
        scale, shift = sd[f"norm_out.linear.{p}"].chunk(2, dim=0)
        out[f"final_layer.adaLN_modulation.1.{p}"] = torch.cat([shift, scale])
    n_double = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("transformer_blocks."))
    n_single = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("single_transformer_blocks."))
    for i in range(n_double):
        d, b = f"double_blocks.{i}", f"transformer_blocks.{i}"
        pair(f"{d}.img_mod.lin", f"{b}.norm1.linear")
        pair(f"{d}.txt_mod.lin", f"{b}.norm1_context.linear")
        for p in ("weight", "bias"):
            out[f"{d}.img_attn.qkv.{p}"] = torch.cat([sd[f"{b}.attn.to_{x}.{p}"] for x in "qkv"])
            out[f"{d}.txt_attn.qkv.{p}"] = torch.cat([sd[f"{b}.attn.add_{x}_proj.{p}"] for x in "qkv"])
        out[f"{d}.img_attn.norm.query_norm.scale"] = sd[f"{b}.attn.norm_q.weight"]
        out[f"{d}.img_attn.norm.key_norm.scale"] = sd[f"{b}.attn.norm_k.weight"]
        out[f"{d}.txt_attn.norm.query_norm.scale"] = sd[f"{b}.attn.norm_added_q.weight"]
        out[f"{d}.txt_attn.norm.key_norm.scale"] = sd[f"{b}.attn.norm_added_k.weight"]
        pair(f"{d}.img_attn.proj", f"{b}.attn.to_out.0")
        pair(f"{d}.txt_attn.proj", f"{b}.attn.to_add_out")
        pair(f"{d}.img_mlp.0", f"{b}.ff.net.0.proj")
        pair(f"{d}.img_mlp.2", f"{b}.ff.net.2")
        pair(f"{d}.txt_mlp.0", f"{b}.ff_context.net.0.proj")
        pair(f"{d}.txt_mlp.2", f"{b}.ff_context.net.2")
    for i in range(n_single):
        s, b = f"single_blocks.{i}", f"single_transformer_blocks.{i}"
        pair(f"{s}.modulation.lin", f"{b}.norm.linear")
        for p in ("weight", "bias"):
            out[f"{s}.linear1.{p}"] = torch.cat([sd[f"{b}.attn.to_q.{p}"], sd[f"{b}.attn.to_k.{p}"],
                                                 sd[f"{b}.attn.to_v.{p}"], sd[f"{b}.proj_mlp.{p}"]])
        out[f"{s}.norm.query_norm.scale"] = sd[f"{b}.attn.norm_q.weight"]
        out[f"{s}.norm.key_norm.scale"] = sd[f"{b}.attn.norm_k.weight"]
        pair(f"{s}.linear2", f"{b}.proj_out")
    return out


_WAN_TOP = {"condition_embedder.time_embedder.linear_1": "time_embedding.0",
            "condition_embedder.time_embedder.linear_2": "time_embedding.2",
            "condition_embedder.text_embedder.linear_1": "text_embedding.0",
            "condition_embedder.text_embedder.linear_2": "text_embedding.2",
            "condition_embedder.time_proj": "time_projection.1", "proj_out": "head.head",
            "patch_embedding": "patch_embedding",
            "condition_embedder.image_embedder.norm1": "img_emb.proj.0",
            "condition_embedder.image_embedder.ff.net.0.proj": "img_emb.proj.1",
            "condition_embedder.image_embedder.ff.net.2": "img_emb.proj.3",
            "condition_embedder.image_embedder.norm2": "img_emb.proj.4"}
_WAN_BLOCK = {"attn1.to_q": "self_attn.q", "attn1.to_k": "self_attn.k", "attn1.to_v": "self_attn.v",
              "attn1.to_out.0": "self_attn.o", "attn1.norm_q": "self_attn.norm_q", "attn1.norm_k": "self_attn.norm_k",
              "attn2.to_q": "cross_attn.q", "attn2.to_k": "cross_attn.k", "attn2.to_v": "cross_attn.v",
              "attn2.to_out.0": "cross_attn.o", "attn2.norm_q": "cross_attn.norm_q",
              "attn2.norm_k": "cross_attn.norm_k", "attn2.add_k_proj": "cross_attn.k_img",
              "attn2.add_v_proj": "cross_attn.v_img", "attn2.norm_added_k": "cross_attn.norm_k_img",
              "norm2": "norm3", "ffn.net.0.proj": "ffn.0", "ffn.net.2": "ffn.2"}


def wan_to_original(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """WanTransformer3DModel state dict -> Wan-Video original layout."""
    out: dict[str, torch.Tensor] = {}
    for key, tensor in sd.items():
        if key == "scale_shift_table":
            out["head.modulation"] = tensor
            continue
        if key.startswith("blocks."):
            _, i, rest = key.split(".", 2)
            if rest == "scale_shift_table":
                out[f"blocks.{i}.modulation"] = tensor
                continue
            stem, param = rest.rsplit(".", 1)
            out[f"blocks.{i}.{_WAN_BLOCK[stem]}.{param}"] = tensor
            continue
        stem, param = key.rsplit(".", 1)
        out[f"{_WAN_TOP[stem]}.{param}"] = tensor
    return out


def export_flux(module: torch.nn.Module, path: Path, prefix: str = "") -> Path:
    return _save(flux_to_bfl(module.state_dict()), path, prefix)


def export_wan(module: torch.nn.Module, path: Path, prefix: str = "") -> Path:
    return _save(wan_to_original(module.state_dict()), path, prefix)


def export_clip(module: torch.nn.Module, path: Path) -> Path:
    """A CLIP text model as ComfyUI's clip_l.safetensors keeps it: 'text_model.*' keys."""
    sd = {k if k.startswith("text_model.") else "text_model." + k: v for k, v in module.state_dict().items()}
    return _save(sd, path)


def export_t5(module: torch.nn.Module, path: Path) -> Path:
    """A T5/UMT5 encoder as ComfyUI keeps it: 'shared.weight' + 'encoder.*' (no tied duplicate)."""
    sd = {k: v for k, v in module.state_dict().items() if k != "encoder.embed_tokens.weight"}
    return _save(sd, path)


def export_plain(module: torch.nn.Module, path: Path, prefix: str = "") -> Path:
    """Any module's own state dict (a Diffusers-layout VAE file)."""
    return _save(dict(module.state_dict()), path, prefix)


_VAE_RESIDUAL = {"norm1": "residual.0", "conv1": "residual.2", "norm2": "residual.3", "conv2": "residual.6",
                 "conv_shortcut": "shortcut"}


def wan_vae_to_original(vae: torch.nn.Module) -> dict[str, torch.Tensor]:
    """AutoencoderKLWan (or AutoencoderKLQwenImage) -> Wan-Video original layout (what ComfyUI keeps as wan_2.1_vae / wan2.2_vae.safetensors),
    walking the built module: Wan 2.1 (flat block lists) or Wan 2.2 (`is_residual`, one list per stage)."""
    RESIDUAL_BLOCKS = ("WanResidualBlock", "QwenImageResidualBlock")  # Qwen-Image's VAE is the Wan 2.1 form

    sd = vae.state_dict()
    out: dict[str, torch.Tensor] = {}

    def put(dst: str, src: str, residual: bool = False) -> None:
        for key, tensor in sd.items():
            if key.startswith(src + "."):
                rest = key[len(src) + 1:]
                if residual:
                    head, _, param = rest.rpartition(".")
                    rest = f"{_VAE_RESIDUAL.get(head, head)}.{param}" if head else rest
                out[f"{dst}.{rest}"] = tensor

    put("conv1", "quant_conv")
    put("conv2", "post_quant_conv")
    for side in ("encoder", "decoder"):
        put(f"{side}.conv1", f"{side}.conv_in")
        put(f"{side}.head.0", f"{side}.norm_out")
        put(f"{side}.head.2", f"{side}.conv_out")
        put(f"{side}.middle.0", f"{side}.mid_block.resnets.0", True)
        put(f"{side}.middle.1", f"{side}.mid_block.attentions.0")
        put(f"{side}.middle.2", f"{side}.mid_block.resnets.1", True)
    if vae.config.get("is_residual", False):  # Qwen-Image's VAE (the Wan 2.1 form) has no such field
        for i, block in enumerate(vae.encoder.down_blocks):
            for j in range(len(block.resnets)):
                put(f"encoder.downsamples.{i}.downsamples.{j}", f"encoder.down_blocks.{i}.resnets.{j}", True)
            if block.downsampler is not None:
                put(f"encoder.downsamples.{i}.downsamples.{len(block.resnets)}", f"encoder.down_blocks.{i}.downsampler")
        for i, block in enumerate(vae.decoder.up_blocks):
            for j in range(len(block.resnets)):
                put(f"decoder.upsamples.{i}.upsamples.{j}", f"decoder.up_blocks.{i}.resnets.{j}", True)
            if block.upsampler is not None:
                put(f"decoder.upsamples.{i}.upsamples.{len(block.resnets)}", f"decoder.up_blocks.{i}.upsampler")
    else:
        for n, block in enumerate(vae.encoder.down_blocks):
            put(f"encoder.downsamples.{n}", f"encoder.down_blocks.{n}", type(block).__name__ in RESIDUAL_BLOCKS)
        n = 0
        for i, block in enumerate(vae.decoder.up_blocks):
            for j in range(len(block.resnets)):
                put(f"decoder.upsamples.{n}", f"decoder.up_blocks.{i}.resnets.{j}", True)
                n += 1
            if block.upsamplers is not None:
                put(f"decoder.upsamples.{n}", f"decoder.up_blocks.{i}.upsamplers.0")
                n += 1
    assert len(out) == len(sd), f"{len(sd) - len(out)} VAE tensors not exported"
    return out


def export_wan_vae(vae: torch.nn.Module, path: Path, prefix: str = "") -> Path:
    """A WAN VAE as ComfyUI's wan_2.1_vae.safetensors / wan2.2_vae.safetensors keep it (original layout)."""
    return _save(wan_vae_to_original(vae), path, prefix)


def z_image_to_original(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """ZImageTransformer2DModel state dict -> Tongyi-MAI's original layout (ComfyUI's z_image_turbo_bf16): fused
    attention.qkv, attention.out, q_norm/k_norm, x_embedder / final_layer without the "2-1" patch key, and the
    unused norm_final the published files carry."""
    out: dict[str, torch.Tensor] = {}
    for key, tensor in sd.items():
        if ".attention.to_k." in key or ".attention.to_v." in key:
            continue
        if ".attention.to_q." in key:
            stem, param = key.split(".attention.to_q.")
            out[f"{stem}.attention.qkv.{param}"] = torch.cat(
                [sd[f"{stem}.attention.to_{x}.{param}"] for x in "qkv"])
            continue
        new = (key.replace("all_x_embedder.2-1.", "x_embedder.").replace("all_final_layer.2-1.", "final_layer.")
               .replace(".attention.to_out.0.", ".attention.out.").replace(".attention.norm_q.", ".attention.q_norm.")
               .replace(".attention.norm_k.", ".attention.k_norm."))
        out[new] = tensor
    dim = sd["cap_embedder.1.weight"].shape[0]
    out["norm_final.weight"] = torch.ones(dim)
    return out


def export_z_image(module: torch.nn.Module, path: Path, prefix: str = "") -> Path:
    return _save(z_image_to_original(module.state_dict()), path, prefix)


def export_decoder_lm(module: torch.nn.Module, path: Path) -> Path:
    """A decoder LM text encoder (Llama, Qwen3) as ComfyUI keeps it: 'model.*' keys."""
    return _save({f"model.{k}": v for k, v in module.state_dict().items()}, path)


def chroma_to_bfl(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """ChromaTransformer2DModel state dict -> lodestones' BFL layout (Chroma1-HD.safetensors): fused qkv and
    linear1, `.scale` norms, img_in / txt_in / final_layer.linear, and the distilled_guidance_layer with its
    in_layer / out_layer names. Chroma has no modulation projections, so none are written."""
    out: dict[str, torch.Tensor] = {}

    def pair(dst: str, src: str) -> None:
        for p in ("weight", "bias"):
            if f"{src}.{p}" in sd:
                out[f"{dst}.{p}"] = sd[f"{src}.{p}"]

    pair("img_in", "x_embedder")
    pair("txt_in", "context_embedder")
    pair("final_layer.linear", "proj_out")
    g = "distilled_guidance_layer"
    pair(f"{g}.in_proj", f"{g}.in_proj")
    pair(f"{g}.out_proj", f"{g}.out_proj")
    n_guidance = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith(f"{g}.layers."))
    for i in range(n_guidance):
        pair(f"{g}.layers.{i}.in_layer", f"{g}.layers.{i}.linear_1")
        pair(f"{g}.layers.{i}.out_layer", f"{g}.layers.{i}.linear_2")
        out[f"{g}.norms.{i}.scale"] = sd[f"{g}.norms.{i}.weight"]
    n_double = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("transformer_blocks."))
    n_single = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("single_transformer_blocks."))
    for i in range(n_double):
        d, b = f"double_blocks.{i}", f"transformer_blocks.{i}"
        for p in ("weight", "bias"):
            out[f"{d}.img_attn.qkv.{p}"] = torch.cat([sd[f"{b}.attn.to_{x}.{p}"] for x in "qkv"])
            out[f"{d}.txt_attn.qkv.{p}"] = torch.cat([sd[f"{b}.attn.add_{x}_proj.{p}"] for x in "qkv"])
        out[f"{d}.img_attn.norm.query_norm.scale"] = sd[f"{b}.attn.norm_q.weight"]
        out[f"{d}.img_attn.norm.key_norm.scale"] = sd[f"{b}.attn.norm_k.weight"]
        out[f"{d}.txt_attn.norm.query_norm.scale"] = sd[f"{b}.attn.norm_added_q.weight"]
        out[f"{d}.txt_attn.norm.key_norm.scale"] = sd[f"{b}.attn.norm_added_k.weight"]
        pair(f"{d}.img_attn.proj", f"{b}.attn.to_out.0")
        pair(f"{d}.txt_attn.proj", f"{b}.attn.to_add_out")
        pair(f"{d}.img_mlp.0", f"{b}.ff.net.0.proj")
        pair(f"{d}.img_mlp.2", f"{b}.ff.net.2")
        pair(f"{d}.txt_mlp.0", f"{b}.ff_context.net.0.proj")
        pair(f"{d}.txt_mlp.2", f"{b}.ff_context.net.2")
    for i in range(n_single):
        s, b = f"single_blocks.{i}", f"single_transformer_blocks.{i}"
        for p in ("weight", "bias"):
            out[f"{s}.linear1.{p}"] = torch.cat([sd[f"{b}.attn.to_q.{p}"], sd[f"{b}.attn.to_k.{p}"],
                                                 sd[f"{b}.attn.to_v.{p}"], sd[f"{b}.proj_mlp.{p}"]])
        out[f"{s}.norm.query_norm.scale"] = sd[f"{b}.attn.norm_q.weight"]
        out[f"{s}.norm.key_norm.scale"] = sd[f"{b}.attn.norm_k.weight"]
        pair(f"{s}.linear2", f"{b}.proj_out")
    missing = [k for k in sd if not any(v is sd[k] for v in out.values())
               and not k.startswith(("transformer_blocks.", "single_transformer_blocks."))]
    assert not missing, f"Chroma tensors not exported: {missing[:5]}"
    return out


def export_chroma(module: torch.nn.Module, path: Path, prefix: str = "") -> Path:
    return _save(chroma_to_bfl(module.state_dict()), path, prefix)


def sd3_to_original(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """SD3Transformer2DModel state dict -> Stability's layout (sd3.5_large.safetensors: joint_blocks.N.x_block /
    context_block, fused qkv, (shift, scale) order in the final and the last pre-only context adaLN)."""
    out: dict[str, torch.Tensor] = {}

    def pair(dst: str, src: str) -> None:
        for p in ("weight", "bias"):
            if f"{src}.{p}" in sd:
                out[f"{dst}.{p}"] = sd[f"{src}.{p}"]

    def swapped(dst: str, src: str) -> None:
        for p in ("weight", "bias"):
            scale, shift = sd[f"{src}.{p}"].chunk(2, dim=0)
            out[f"{dst}.{p}"] = torch.cat([shift, scale])

    out["pos_embed"] = sd["pos_embed.pos_embed"]
    pair("x_embedder.proj", "pos_embed.proj")
    pair("t_embedder.mlp.0", "time_text_embed.timestep_embedder.linear_1")
    pair("t_embedder.mlp.2", "time_text_embed.timestep_embedder.linear_2")
    pair("y_embedder.mlp.0", "time_text_embed.text_embedder.linear_1")
    pair("y_embedder.mlp.2", "time_text_embed.text_embedder.linear_2")
    pair("context_embedder", "context_embedder")
    pair("final_layer.linear", "proj_out")
    swapped("final_layer.adaLN_modulation.1", "norm_out.linear")
    depth = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("transformer_blocks."))
    for i in range(depth):
        j, b = f"joint_blocks.{i}", f"transformer_blocks.{i}"
        for p in ("weight", "bias"):
            out[f"{j}.x_block.attn.qkv.{p}"] = torch.cat([sd[f"{b}.attn.to_{x}.{p}"] for x in "qkv"])
            out[f"{j}.context_block.attn.qkv.{p}"] = torch.cat([sd[f"{b}.attn.add_{x}_proj.{p}"] for x in "qkv"])
            if f"{b}.attn2.to_q.{p}" in sd:
                out[f"{j}.x_block.attn2.qkv.{p}"] = torch.cat([sd[f"{b}.attn2.to_{x}.{p}"] for x in "qkv"])
        for ours, theirs in (("x_block.attn.ln_q", "attn.norm_q"), ("x_block.attn.ln_k", "attn.norm_k"),
                             ("context_block.attn.ln_q", "attn.norm_added_q"),
                             ("context_block.attn.ln_k", "attn.norm_added_k"), ("x_block.attn2.ln_q", "attn2.norm_q"),
                             ("x_block.attn2.ln_k", "attn2.norm_k"), ("x_block.attn.proj", "attn.to_out.0"),
                             ("context_block.attn.proj", "attn.to_add_out"), ("x_block.attn2.proj", "attn2.to_out.0"),
                             ("x_block.adaLN_modulation.1", "norm1.linear"), ("x_block.mlp.fc1", "ff.net.0.proj"),
                             ("x_block.mlp.fc2", "ff.net.2"), ("context_block.mlp.fc1", "ff_context.net.0.proj"),
                             ("context_block.mlp.fc2", "ff_context.net.2")):
            pair(f"{j}.{ours}", f"{b}.{theirs}")
        if i == depth - 1:
            swapped(f"{j}.context_block.adaLN_modulation.1", f"{b}.norm1_context.linear")
        else:
            pair(f"{j}.context_block.adaLN_modulation.1", f"{b}.norm1_context.linear")
    missing = sum(v.numel() for v in sd.values()) - sum(v.numel() for v in out.values())
    assert missing == 0, f"{missing} SD3 weights not exported"
    return out


def export_sd3(module: torch.nn.Module, path: Path, prefix: str = "",
               extra: dict[str, torch.Tensor] | None = None) -> Path:
    """An SD3 transformer in Stability's layout, plus `extra` tensors (an LDM-layout VAE under first_stage_model.,
    text encoders under text_encoders.<name>.transformer.) as sd3.5_large.safetensors / ComfyUI files carry them."""
    state = {prefix + k: v for k, v in sd3_to_original(module.state_dict()).items()}
    state.update(extra or {})
    return _save(state, path)


def flux2_to_bfl(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Flux2Transformer2DModel state dict -> black-forest-labs FLUX.2 layout (flux2-dev.safetensors,
    flux-2-klein-*.safetensors): fused double-block qkv, `.lin` modulations, `.scale` norms, (shift, scale) final."""
    sd = _Reads(sd)
    out: dict[str, torch.Tensor] = {}
    plain = {"x_embedder": "img_in", "context_embedder": "txt_in", "proj_out": "final_layer.linear",
             "time_guidance_embed.timestep_embedder.linear_1": "time_in.in_layer",
             "time_guidance_embed.timestep_embedder.linear_2": "time_in.out_layer",
             "time_guidance_embed.guidance_embedder.linear_1": "guidance_in.in_layer",
             "time_guidance_embed.guidance_embedder.linear_2": "guidance_in.out_layer",
             "double_stream_modulation_img.linear": "double_stream_modulation_img.lin",
             "double_stream_modulation_txt.linear": "double_stream_modulation_txt.lin",
             "single_stream_modulation.linear": "single_stream_modulation.lin"}
    for theirs, ours in plain.items():
        if f"{theirs}.weight" in sd:
            out[f"{ours}.weight"] = sd[f"{theirs}.weight"]
    scale, shift = sd["norm_out.linear.weight"].chunk(2, dim=0)
    out["final_layer.adaLN_modulation.1.weight"] = torch.cat([shift, scale])
    n_double = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("transformer_blocks."))
    n_single = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("single_transformer_blocks."))
    for i in range(n_double):
        d, b = f"double_blocks.{i}", f"transformer_blocks.{i}"
        out[f"{d}.img_attn.qkv.weight"] = torch.cat([sd[f"{b}.attn.to_{x}.weight"] for x in "qkv"])
        out[f"{d}.txt_attn.qkv.weight"] = torch.cat([sd[f"{b}.attn.add_{x}_proj.weight"] for x in "qkv"])
        for ours, theirs in (("img_attn.norm.query_norm.scale", "attn.norm_q.weight"),
                             ("img_attn.norm.key_norm.scale", "attn.norm_k.weight"),
                             ("txt_attn.norm.query_norm.scale", "attn.norm_added_q.weight"),
                             ("txt_attn.norm.key_norm.scale", "attn.norm_added_k.weight"),
                             ("img_attn.proj.weight", "attn.to_out.0.weight"),
                             ("txt_attn.proj.weight", "attn.to_add_out.weight"),
                             ("img_mlp.0.weight", "ff.linear_in.weight"), ("img_mlp.2.weight", "ff.linear_out.weight"),
                             ("txt_mlp.0.weight", "ff_context.linear_in.weight"),
                             ("txt_mlp.2.weight", "ff_context.linear_out.weight")):
            out[f"{d}.{ours}"] = sd[f"{b}.{theirs}"]
    for i in range(n_single):
        s, b = f"single_blocks.{i}", f"single_transformer_blocks.{i}"
        out[f"{s}.linear1.weight"] = sd[f"{b}.attn.to_qkv_mlp_proj.weight"]
        out[f"{s}.linear2.weight"] = sd[f"{b}.attn.to_out.weight"]
        out[f"{s}.norm.query_norm.scale"] = sd[f"{b}.attn.norm_q.weight"]
        out[f"{s}.norm.key_norm.scale"] = sd[f"{b}.attn.norm_k.weight"]
    missing = set(sd) - sd.read
    assert not missing, f"exporter left tensors out: {sorted(missing)[:5]}"
    return out


class _Reads(dict):
    """A state dict that remembers which names were read (so an exporter can say it wrote every tensor)."""

    def __init__(self, sd: dict[str, torch.Tensor]) -> None:
        super().__init__(sd)
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> torch.Tensor:
        self.read.add(key)
        return super().__getitem__(key)


def export_flux2(module: torch.nn.Module, path: Path, prefix: str = "") -> Path:
    return _save(flux2_to_bfl(module.state_dict()), path, prefix)


def ltx2_to_original(transformer: torch.nn.Module, connectors: torch.nn.Module | None = None,
                     vae_stats: int | None = None) -> dict[str, torch.Tensor]:
    """LTX2VideoTransformer3DModel (+ its text connectors) -> Lightricks' all-in-one layout, with the prefixes of
    ltx-2-19b-dev.safetensors: model.diffusion_model. for both; `vae_stats` (latent channels) adds the video and
    audio VAEs' per-channel statistics under vae. / audio_vae., as the real file has them beside the transformer."""
    top = {"proj_in": "patchify_proj", "audio_proj_in": "audio_patchify_proj", "time_embed": "adaln_single",
           "audio_time_embed": "audio_adaln_single",
           "av_cross_attn_video_scale_shift": "av_ca_video_scale_shift_adaln_single",
           "av_cross_attn_video_a2v_gate": "av_ca_a2v_gate_adaln_single",
           "av_cross_attn_audio_scale_shift": "av_ca_audio_scale_shift_adaln_single",
           "av_cross_attn_audio_v2a_gate": "av_ca_v2a_gate_adaln_single"}
    out: dict[str, torch.Tensor] = {}
    for key, tensor in transformer.state_dict().items():
        head, _, rest = key.partition(".")
        if head in top:
            key = f"{top[head]}.{rest}"
        elif head == "transformer_blocks":
            key = (key.replace(".video_a2v_cross_attn_scale_shift_table", ".scale_shift_table_a2v_ca_video")
                   .replace(".audio_a2v_cross_attn_scale_shift_table", ".scale_shift_table_a2v_ca_audio")
                   .replace(".norm_q.", ".q_norm.").replace(".norm_k.", ".k_norm."))
        out["model.diffusion_model." + key] = tensor
    if connectors is not None:
        for key, tensor in connectors.state_dict().items():
            if key.startswith(("video_connector.", "audio_connector.")):
                key = (key.replace("video_connector.", "video_embeddings_connector.", 1)
                       .replace("audio_connector.", "audio_embeddings_connector.", 1)
                       .replace(".transformer_blocks.", ".transformer_1d_blocks.")
                       .replace(".norm_q.", ".q_norm.").replace(".norm_k.", ".k_norm."))
                out["model.diffusion_model." + key] = tensor
    if vae_stats:
        for part in ("vae", "audio_vae"):
            for stat in ("mean-of-means", "std-of-means"):
                out[f"{part}.per_channel_statistics.{stat}"] = torch.zeros(vae_stats)
    return out


def export_ltx2(transformer: torch.nn.Module, path: Path, connectors: torch.nn.Module | None = None,
                vae_stats: int | None = None) -> Path:
    return _save(ltx2_to_original(transformer, connectors, vae_stats), path)


def _hy_txt_in(sd: dict[str, torch.Tensor], out: dict[str, torch.Tensor]) -> None:
    """HunyuanVideo's text input (Diffusers context_embedder.*) -> Tencent's txt_in.* (1.0 and 1.5 alike)."""
    for key, tensor in sd.items():
        if not key.startswith("context_embedder."):
            continue
        rest = key[len("context_embedder."):]
        if rest.startswith("token_refiner.refiner_blocks."):
            i, sub = rest[len("token_refiner.refiner_blocks."):].split(".", 1)
            base = f"txt_in.individual_token_refiner.blocks.{i}"
            if sub.startswith("attn.to_q."):
                p = sub.rsplit(".", 1)[1]
                pre = f"context_embedder.token_refiner.refiner_blocks.{i}.attn"
                out[f"{base}.self_attn_qkv.{p}"] = torch.cat([sd[f"{pre}.to_{x}.{p}"] for x in "qkv"])
                continue
            if sub.startswith(("attn.to_k.", "attn.to_v.")):
                continue
            sub = (sub.replace("attn.to_out.0", "self_attn_proj").replace("ff.net.0.proj", "mlp.fc1")
                   .replace("ff.net.2", "mlp.fc2").replace("norm_out.linear", "adaLN_modulation.1"))
            out[f"{base}.{sub}"] = tensor
            continue
        rest = (rest.replace("proj_in", "input_embedder")
                .replace("time_text_embed.timestep_embedder.linear_1", "t_embedder.mlp.0")
                .replace("time_text_embed.timestep_embedder.linear_2", "t_embedder.mlp.2")
                .replace("time_text_embed.text_embedder.", "c_embedder."))
        out[f"txt_in.{rest}"] = tensor


_HY_PAIRS = (("norm1.linear", "img_mod.linear"), ("norm1_context.linear", "txt_mod.linear"),
             ("attn.norm_q", "img_attn_q_norm"), ("attn.norm_k", "img_attn_k_norm"),
             ("attn.norm_added_q", "txt_attn_q_norm"), ("attn.norm_added_k", "txt_attn_k_norm"),
             ("attn.to_out.0", "img_attn_proj"), ("attn.to_add_out", "txt_attn_proj"),
             ("ff.net.0.proj", "img_mlp.fc1"), ("ff.net.2", "img_mlp.fc2"),
             ("ff_context.net.0.proj", "txt_mlp.fc1"), ("ff_context.net.2", "txt_mlp.fc2"))


def _hy_double(sd: dict[str, torch.Tensor], out: dict[str, torch.Tensor], fused: bool) -> None:
    n = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("transformer_blocks."))
    for i in range(n):
        b, d = f"transformer_blocks.{i}", f"double_blocks.{i}"
        for p in ("weight", "bias"):
            for ours, theirs in _HY_PAIRS:
                if f"{b}.{ours}.{p}" in sd:
                    out[f"{d}.{theirs}.{p}"] = sd[f"{b}.{ours}.{p}"]
            img = [sd[f"{b}.attn.to_{x}.{p}"] for x in "qkv"]
            txt = [sd[f"{b}.attn.add_{x}_proj.{p}"] for x in "qkv"]
            if fused:
                out[f"{d}.img_attn_qkv.{p}"], out[f"{d}.txt_attn_qkv.{p}"] = torch.cat(img), torch.cat(txt)
            else:
                for x, a, t in zip("qkv", img, txt):
                    out[f"{d}.img_attn_{x}.{p}"], out[f"{d}.txt_attn_{x}.{p}"] = a, t
    for p in ("weight", "bias"):
        scale, shift = sd[f"norm_out.linear.{p}"].chunk(2)  # Diffusers (scale, shift) -> Tencent (shift, scale)
        out[f"final_layer.adaLN_modulation.1.{p}"] = torch.cat([shift, scale])
        out[f"img_in.proj.{p}"] = sd[f"x_embedder.proj.{p}"]
        out[f"final_layer.linear.{p}"] = sd[f"proj_out.{p}"]


def hunyuan_video_to_original(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HunyuanVideoTransformer3DModel state dict -> Tencent's HunyuanVideo 1.0 layout (double_blocks.N.img_attn_qkv)."""
    out: dict[str, torch.Tensor] = {}
    _hy_txt_in(sd, out)
    _hy_double(sd, out, fused=True)
    for ours, theirs in (("timestep_embedder.linear_1", "time_in.mlp.0"), ("timestep_embedder.linear_2", "time_in.mlp.2"),
                         ("text_embedder.linear_1", "vector_in.in_layer"),
                         ("text_embedder.linear_2", "vector_in.out_layer"),
                         ("guidance_embedder.linear_1", "guidance_in.mlp.0"),
                         ("guidance_embedder.linear_2", "guidance_in.mlp.2")):
        for p in ("weight", "bias"):
            if f"time_text_embed.{ours}.{p}" in sd:
                out[f"{theirs}.{p}"] = sd[f"time_text_embed.{ours}.{p}"]
    n = 1 + max((int(k.split(".")[1]) for k in sd if k.startswith("single_transformer_blocks.")), default=-1)
    for i in range(n):
        b, s = f"single_transformer_blocks.{i}", f"single_blocks.{i}"
        for p in ("weight", "bias"):
            out[f"{s}.linear1.{p}"] = torch.cat([sd[f"{b}.attn.to_{x}.{p}"] for x in "qkv"] + [sd[f"{b}.proj_mlp.{p}"]])
            out[f"{s}.linear2.{p}"] = sd[f"{b}.proj_out.{p}"]
            out[f"{s}.modulation.linear.{p}"] = sd[f"{b}.norm.linear.{p}"]
        out[f"{s}.q_norm.weight"] = sd[f"{b}.attn.norm_q.weight"]
        out[f"{s}.k_norm.weight"] = sd[f"{b}.attn.norm_k.weight"]
    return out


def hunyuan_video15_to_original(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HunyuanVideo15Transformer3DModel state dict -> Tencent's HunyuanVideo 1.5 layout (img_attn_q/k/v apart, byt5_in,
    vision_in, cond_type_embedding)."""
    out: dict[str, torch.Tensor] = {}
    _hy_txt_in(sd, out)
    _hy_double(sd, out, fused=False)
    for key, tensor in sd.items():
        head, _, rest = key.partition(".")
        if head == "time_embed":
            out["time_in.mlp." + {"timestep_embedder.linear_1": "0", "timestep_embedder.linear_2": "2"}[
                rest.rsplit(".", 1)[0]] + "." + rest.rsplit(".", 1)[1]] = tensor
        elif head == "context_embedder_2":
            stem, p = rest.rsplit(".", 1)
            out[f"byt5_in.{ {'norm': 'layernorm', 'linear_1': 'fc1', 'linear_2': 'fc2', 'linear_3': 'fc3'}[stem]}.{p}"] = tensor
        elif head == "image_embedder":
            stem, p = rest.rsplit(".", 1)
            out[f"vision_in.proj.{ {'norm_in': 0, 'linear_1': 1, 'linear_2': 3, 'norm_out': 4}[stem]}.{p}"] = tensor
        elif head == "cond_type_embed":
            out[f"cond_type_embedding.{rest}"] = tensor
    return out


def ltx2_vae_to_original(vae: torch.nn.Module) -> dict[str, torch.Tensor]:
    """AutoencoderKLLTX2Video -> Lightricks' layout (the all-in-one file's `vae.` part, prefix left off): per side one
    numbered block list (encoder: a stage's residual blocks, its downsampler, ..., the mid block last; decoder: the mid
    block first, then an upsampler and a stage's residual blocks in turn), `res_blocks`, per-channel statistics."""
    stages = len(vae.encoder.down_blocks)
    out: dict[str, torch.Tensor] = {}
    for key, tensor in vae.state_dict().items():
        parts = key.split(".")
        if key in ("latents_mean", "latents_std"):
            key = {"latents_mean": "per_channel_statistics.mean-of-means",
                   "latents_std": "per_channel_statistics.std-of-means"}[key]
        elif parts[:2] == ["encoder", "mid_block"]:
            key = ".".join(["encoder", "down_blocks", str(2 * stages)] + parts[2:])
        elif parts[:2] == ["encoder", "down_blocks"]:
            i, rest = int(parts[2]), parts[3:]
            key = ".".join(["encoder", "down_blocks", str(2 * i + 1)] + rest[2:] if rest[0] == "downsamplers"
                           else ["encoder", "down_blocks", str(2 * i)] + rest)
        elif parts[:2] == ["decoder", "mid_block"]:
            key = ".".join(["decoder", "up_blocks", "0"] + parts[2:])
        elif parts[:2] == ["decoder", "up_blocks"]:
            i, rest = int(parts[2]), parts[3:]
            key = ".".join(["decoder", "up_blocks", str(2 * i + 1)] + rest[2:] if rest[0] == "upsamplers"
                           else ["decoder", "up_blocks", str(2 * i + 2)] + rest)
        out[".".join("res_blocks" if p == "resnets" else p for p in key.split("."))] = tensor
    out["per_channel_statistics.mean-of-stds"] = torch.ones_like(vae.latents_std)  # in the file, unused by the model
    return out
