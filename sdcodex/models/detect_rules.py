"""Detection rules: the key view (`Keys`) and claim (`Found`) rules are written in, and one rule function plus
one exclusive family table per architecture (UNet, FLUX, HunyuanVideo, Wan, VAEs, text encoders, LoRA, ...).

`detect.py` runs every rule in `RULES` and combines their claims into a `Detection`.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from sdcodex.core.enums import EngineKey

# ---- the key view and what a rule returns ------------------------------------------------------

DENOISER_PREFIXES = ("", "model.diffusion_model.", "diffusion_model.", "model.")
VAE_PREFIXES = ("", "first_stage_model.", "vae.")
_LORA_MARKERS = (".lora_down.", ".lora_up.", ".lora_A.", ".lora_B.", ".lora.down.", ".lora.up.",
                 "_lora.down.", "_lora.up.", ".hada_w1_a", ".lokr_w1", ".lora_mid.")


class Keys:
    """Tensor names -> shapes, with the lookups rules need."""

    def __init__(self, shapes: Mapping[str, Iterable[int]], metadata: Mapping[str, str] | None = None) -> None:
        self.shapes = {k: list(v) for k, v in shapes.items()}
        self.sorted = sorted(self.shapes)
        self.metadata = dict(metadata or {})

    def __contains__(self, key: str) -> bool:
        return key in self.shapes

    def shape(self, key: str) -> list[int] | None:
        return self.shapes.get(key)

    def dim(self, key: str, i: int, ndim: int | None = None) -> int | None:
        """shape[i] of `key`, or None when absent (or not `ndim`-dimensional, e.g. packed NF4)."""
        s = self.shapes.get(key)
        if s is None or (ndim is not None and len(s) != ndim) or len(s) <= abs(i) - (i < 0):
            return None
        return s[i]

    def any_with(self, prefix: str, *parts: str) -> bool:
        return any(k.startswith(prefix) and all(x in k for x in parts) for k in self.sorted)

    def count_blocks(self, prefix: str) -> int:
        """Number of distinct N in keys "<prefix>N....": depth of a block list."""
        pat = re.compile(re.escape(prefix) + r"(\d+)\.")
        return len({m.group(1) for k in self.sorted if (m := pat.match(k))})

    def prefixes_of(self, suffix: str) -> list[str]:
        """Every prefix p with p + suffix a key (p ends with "." or is empty)."""
        out = []
        for k in self.sorted:
            if k.endswith(suffix):
                p = k[: len(k) - len(suffix)]
                if p == "" or p.endswith("."):
                    out.append(p)
        return out


@dataclass(frozen=True)
class Found:
    """One rule's claim on (part of) a file."""

    rule: str
    role: str  # "denoiser" | "vae" | "text_encoder" | "whole"
    prefix: str
    family: EngineKey | None
    variant: Mapping[str, Any] = field(default_factory=dict, hash=False)
    compatible: tuple[EngineKey, ...] = ()
    kind: str | None = None  # for role "whole"


Row = tuple[str, "EngineKey | None", tuple[EngineKey, ...], Callable[[dict[str, Any]], bool]]


def pick(table: tuple[Row, ...], facts: dict[str, Any]) -> list[Row]:
    """All rows of a family table whose predicate holds for `facts` (exactly one, when the table is right)."""
    return [row for row in table if row[3](facts)]


def _from_table(rule: str, role: str, prefix: str, table: tuple[Row, ...], facts: dict[str, Any],
                kind: str | None = None) -> Found:
    rows = pick(table, facts)
    variant = {k: v for k, v in facts.items() if v is not None and not k.startswith("_")}
    if len(rows) == 1:
        name, family, compat, _ = rows[0]
        variant.setdefault("model", name)
        return Found(rule, role, prefix, family, variant, compat, kind)
    if rows:
        variant["ambiguous"] = [r[0] for r in rows]
    return Found(rule, role, prefix, None, variant, (), kind)


def _prediction(k: Keys) -> str | None:
    if "v_pred" in k or "edm_vpred.sigma_max" in k:
        return "v_prediction"
    if k.metadata.get("modelspec.prediction_type", "").lower() in ("v", "v_prediction"):
        return "v_prediction"
    return None


# ---- denoisers -----------------------------------------------------------------------------------

E = EngineKey
SD_ANY = (E.SD15, E.SDXL)
WAN_A14B = (E.WAN22_T2V_A14B, E.WAN22_I2V_A14B)

# UNet (LDM or diffusers layout): facts are in_channels, context (cross-attention width),
# adm (label/add embedding input width, None when absent), temporal (video UNet).
UNET_TABLE: tuple[Row, ...] = (
    # SD1.5 and its distilled / narrow variants: no ADM input, a CLIP-L text encoder (or none) and any context but
    # SD2's 1024; SD 2.x: OpenCLIP-H (1024) context, or its OpenCLIP text tower under cond_stage_model.model
    ("sd15", E.SD15, (), lambda f: not f["temporal"] and f["adm"] is None and not _sd2(f)),
    ("sd2", E.SD2, (), lambda f: not f["temporal"] and f["adm"] is None and _sd2(f)),
    # SDXL (2816), its refiner (2560) and variants (SSD-1B, Vega, narrow test models): an ADM input
    ("sdxl", E.SDXL, (), lambda f: not f["temporal"] and f["adm"] is not None and f["context"] != 1024),
    ("svd", E.SVD, (), lambda f: f["temporal"]),
)


def _sd2(f: dict[str, Any]) -> bool:
    """SD 2.x: OpenCLIP-H's 1024-wide context, its text tower in the file, or -- a UNet alone of another width (a
    narrow or test model) -- linear attention projections, which no SD1.x UNet has (they are SD2's)."""
    return f["context"] == 1024 or bool(f.get("_open_clip_te")) or bool(f.get("_linear_proj"))


def linear_projections(shapes: Mapping[str, Any], prefix: str = "") -> bool:
    """Whether a UNet's spatial transformers project in and out with Linear layers (SD2, SDXL) rather than 1x1
    convolutions (SD1.x): the first `proj_in` weight under `prefix` is 2-D."""
    key = next((k for k in sorted(shapes) if k.startswith(prefix) and k.endswith(".proj_in.weight")
                and "time_stack" not in k and "temporal" not in k), None)
    return key is not None and len(shapes[key]) == 2


def rule_unet(k: Keys) -> list[Found]:
    out = []
    for p in DENOISER_PREFIXES:
        if is_controlnet(k, p):
            continue  # rule_controlnet
        if f"{p}input_blocks.0.0.weight" in k and f"{p}time_embed.0.weight" in k:
            layout, conv_in, adm_key, temporal = "ldm", f"{p}input_blocks.0.0.weight", f"{p}label_emb.0.0.weight", (
                k.any_with(p + "input_blocks.", ".time_stack.") or k.any_with(p + "input_blocks.", ".time_mixer."))
        elif f"{p}conv_in.weight" in k and f"{p}time_embedding.linear_1.weight" in k and k.any_with(p + "down_blocks."):
            layout, conv_in, adm_key = "diffusers", f"{p}conv_in.weight", f"{p}add_embedding.linear_1.weight"
            temporal = k.any_with(p + "down_blocks.", "temporal_transformer_blocks")
        else:
            continue
        context = next((k.dim(key, 1) for key in k.sorted if key.startswith(p) and key.endswith("attn2.to_k.weight")
                        and "transformer_blocks" in key and "time_stack" not in key and "temporal" not in key), None)
        in_ch = k.dim(conv_in, 1)
        facts = {"layout": layout, "in_channels": in_ch, "context": context, "adm": k.dim(adm_key, 1),
                 "temporal": temporal, "inpaint": True if in_ch == 9 else None, "prediction": _prediction(k),
                 "refiner": True if k.dim(adm_key, 1) == 2560 else None,
                 "ztsnr": True if "ztsnr" in k else None,
                 "_open_clip_te": k.any_with("", "cond_stage_model.model.transformer.resblocks."),
                 "_linear_proj": linear_projections(k.shapes, p)}
        out.append(_from_table("unet", "denoiser", p, UNET_TABLE, facts))
    return out


FLUX_TABLE: tuple[Row, ...] = (
    ("flux1", E.FLUX, (), lambda f: True),  # FLUX.1 and its variants (FLUX.1-lite, Flex: fewer blocks; narrower)
)


def rule_flux(k: Keys) -> list[Found]:
    """FLUX.1 in BFL layout (double_blocks/single_blocks) or diffusers layout (transformer_blocks)."""
    out = []
    for p in DENOISER_PREFIXES:
        bfl = (k.prefixes_of("double_blocks.0.img_attn.norm.key_norm.scale") +
               k.prefixes_of("double_blocks.0.img_attn.norm.key_norm.weight"))
        if f"{p}distilled_guidance_layer.in_proj.weight" in k:  # Chroma: rule_chroma
            continue
        if is_controlnet(k, p):
            continue  # a FLUX ControlNet: rule_controlnet
        if f"{p}single_stream_modulation.lin.weight" in k or f"{p}single_stream_modulation.linear.weight" in k:
            continue  # FLUX.2: rule_flux2
        if p in bfl and f"{p}img_in.weight" in k and f"{p}double_stream_modulation_img.lin.weight" not in k:
            img_in, hidden = f"{p}img_in.weight", k.dim(f"{p}img_in.bias", 0)
            guidance = k.any_with(p + "guidance_in.")
            depth = (k.count_blocks(p + "double_blocks."), k.count_blocks(p + "single_blocks."))
            layout = "bfl"
        elif (f"{p}x_embedder.weight" in k and f"{p}transformer_blocks.0.attn.norm_added_k.weight" in k
              and k.any_with(p + "single_transformer_blocks.0.")):
            img_in, hidden = f"{p}x_embedder.weight", k.dim(f"{p}x_embedder.bias", 0)
            guidance = k.any_with(p + "time_text_embed.guidance_embedder.")
            depth = (k.count_blocks(p + "transformer_blocks."), k.count_blocks(p + "single_transformer_blocks."))
            layout = "diffusers"
        else:
            continue
        in_ch = k.dim(img_in, 1, ndim=2) if k.dim(img_in, 0) == hidden else None
        facts = {"layout": layout, "hidden": hidden, "in_channels": in_ch, "guidance_embed": guidance,
                 "inpaint": True if in_ch == 384 else None, "control": "depth_or_canny" if in_ch == 128 else None,
                 "double_blocks": depth[0], "single_blocks": depth[1],
                 "quantization": "nf4" if any("bitsandbytes__nf4" in x for x in k.sorted) else None}
        out.append(_from_table("flux", "denoiser", p, FLUX_TABLE, facts))
    return out


# ---- ControlNets ---------------------------------------------------------------------------------------------
CONTROLNET_PREFIXES = ("", "control_model.")
#: facts: layout ("original" / "diffusers" / "flux"), context (cross-attention width), adm (SDXL's ADM input)
CONTROLNET_TABLE: tuple[Row, ...] = (
    ("controlnet_sd15", E.SD15, (), lambda f: f["layout"] != "flux" and f["adm"] is None and not _sd2_control(f)),
    ("controlnet_sd2", E.SD2, (), lambda f: f["layout"] != "flux" and f["adm"] is None and _sd2_control(f)),
    ("controlnet_sdxl", E.SDXL, (), lambda f: f["layout"] != "flux" and f["adm"] is not None),
    ("controlnet_flux", E.FLUX, (), lambda f: f["layout"] == "flux"),
)


def _sd2_control(f: Mapping[str, Any]) -> bool:
    """An SD 2.x ControlNet: OpenCLIP-H's context (1024) or SD2's linear attention projections (SD 1.5's are 1x1
    convolutions; SDXL's linear ones come with its ADM input)."""
    return f["context"] == 1024 or bool(f.get("linear"))


def controlnet_layout(k: Keys, p: str) -> str | None:
    """"original" (input_hint_block + zero_convs), "diffusers" (controlnet_cond_embedding + controlnet_down_blocks)
    or "flux" (controlnet_x_embedder + controlnet_blocks) when the keys under `p` are a ControlNet; else None."""
    if f"{p}input_hint_block.0.weight" in k and f"{p}zero_convs.0.0.weight" in k:
        return "original"
    if f"{p}controlnet_cond_embedding.conv_in.weight" in k and f"{p}controlnet_down_blocks.0.weight" in k:
        return "diffusers"
    if f"{p}controlnet_x_embedder.weight" in k and (f"{p}controlnet_blocks.0.weight" in k
                                                     or f"{p}controlnet_single_blocks.0.weight" in k):
        return "flux"
    return None


def is_controlnet(k: Keys, p: str = "") -> bool:
    return any(controlnet_layout(k, q) for q in {p, *CONTROLNET_PREFIXES})


def rule_controlnet(k: Keys) -> list[Found]:
    """ControlNets: the original layout (SD1.5 / SDXL, `control_model.` prefix or none), the Diffusers layout
    (ControlNetModel; ControlNet-Union adds a task embedding) and FLUX ControlNets (FluxControlNetModel)."""
    for p in CONTROLNET_PREFIXES:
        layout = controlnet_layout(k, p)
        if layout is None:
            continue
        context = next((k.dim(key, 1) for key in k.sorted if key.startswith(p) and key.endswith("attn2.to_k.weight")),
                       None)
        adm = k.dim(f"{p}label_emb.0.0.weight", 1) or k.dim(f"{p}add_embedding.linear_1.weight", 1)
        union = True if (f"{p}task_embedding" in k or f"{p}controlnet_mode_embedder.weight" in k) else None
        linear = True if linear_projections(k.shapes, p) else None
        facts = {"layout": layout, "context": context, "adm": adm, "union": union, "linear": linear,
                 "hint_channels": k.dim(f"{p}input_hint_block.0.weight", 1)
                 or k.dim(f"{p}controlnet_cond_embedding.conv_in.weight", 1)}
        found = _from_table("controlnet", "whole", p, CONTROLNET_TABLE, facts, kind="controlnet")
        return [found]
    return []


#: T2I-Adapter: the pixel-unshuffle input width (conv_in's input channels = image channels x factor^2) -> family.
#: SD1.5 adapters unshuffle by 8 (3 x 64 colour, 1 x 64 sketch), SDXL's by 16 (3 x 256, 1 x 256).
T2I_ADAPTER_INPUT = {192: E.SD15, 64: E.SD15, 768: E.SDXL, 256: E.SDXL}


def t2i_adapter_layout(k: Keys) -> str | None:
    """"diffusers" / "original" for a full T2I-Adapter (Diffusers' T2IAdapter state: `adapter.conv_in`,
    `adapter.body.<i>.resnets.<j>`; TencentARC's files: `conv_in`, `body.<n>.block1/block2`), "diffusers_light" /
    "original_light" for a light one (the colour adapter: `[adapter.]body.<i>.in_conv/out_conv` around
    `resnets.<j>` / `body.<j>`); else None."""
    if "adapter.conv_in.weight" in k and "adapter.body.0.resnets.0.block1.weight" in k:
        return "diffusers"
    if "conv_in.weight" in k and "body.0.block1.weight" in k and "body.0.block2.weight" in k:
        return "original"
    if "adapter.body.0.in_conv.weight" in k and "adapter.body.0.resnets.0.block1.weight" in k \
            and "adapter.body.0.out_conv.weight" in k:
        return "diffusers_light"
    if "body.0.in_conv.weight" in k and "body.0.body.0.block1.weight" in k and "body.0.out_conv.weight" in k:
        return "original_light"
    return None


#: the tensor whose input width is the unshuffled image (channels x factor^2), per layout
T2I_ADAPTER_INPUT_KEY = {"diffusers": "adapter.conv_in.weight", "original": "conv_in.weight",
                         "diffusers_light": "adapter.body.0.in_conv.weight", "original_light": "body.0.in_conv.weight"}


def rule_t2i_adapter(k: Keys) -> list[Found]:
    """T2I-Adapters (full and light adapters, SD1.5 and SDXL), listed with the ControlNets (kind `controlnet`,
    variant `adapter`) as A1111's extension lists them; the family from the unshuffle width."""
    layout = t2i_adapter_layout(k)
    if layout is None:
        return []
    width = k.dim(T2I_ADAPTER_INPUT_KEY[layout], 1) or 0
    family = T2I_ADAPTER_INPUT.get(width)
    return [Found("t2i_adapter", "whole", "", family, {"adapter": True, "layout": layout, "input_width": width},
                  (family,) if family else (), "controlnet")]


HUNYUAN_TABLE: tuple[Row, ...] = (
    ("hunyuan_video", E.HUNYUAN_VIDEO, (), lambda f: not f["v15"]),
    ("hunyuan_video15", E.HUNYUAN_VIDEO15, (), lambda f: f["v15"]),
)


def rule_hunyuan(k: Keys) -> list[Found]:
    """HunyuanVideo 1.0 / 1.5: a token refiner on the text input; 1.5 adds a condition-type embedding."""
    out = []
    for p in DENOISER_PREFIXES:
        if f"{p}txt_in.individual_token_refiner.blocks.0.norm1.weight" in k and f"{p}img_in.proj.weight" in k:
            layout, img_in = "original", f"{p}img_in.proj.weight"
            v15 = f"{p}cond_type_embedding.weight" in k
            guidance = k.any_with(p + "guidance_in.")
        elif f"{p}context_embedder.token_refiner.refiner_blocks.0.norm1.weight" in k and f"{p}x_embedder.proj.weight" in k:
            layout, img_in = "diffusers", f"{p}x_embedder.proj.weight"
            v15 = f"{p}cond_type_embed.weight" in k
            guidance = k.any_with(p + "time_text_embed.guidance_embedder.")
        else:
            continue
        in_ch = k.dim(img_in, 1)
        facts = {"layout": layout, "v15": v15, "in_channels": in_ch, "hidden": k.dim(img_in, 0),
                 "guidance_embed": guidance, "i2v": True if (not v15 and in_ch in (32, 33)) else None}
        found = _from_table("hunyuan", "denoiser", p, HUNYUAN_TABLE, facts)
        out.append(Found(found.rule, found.role, found.prefix, found.family,
                         {k2: v for k2, v in found.variant.items() if k2 != "v15"}, found.compatible))
    return out


# Wan: dim = patch_embedding out, in_dim = its input channels (16 t2v, 36 i2v, 48 ti2v-5B),
# clip = has a CLIP image branch (Wan 2.1 i2v), vace = VACE control blocks.
WAN_TABLE: tuple[Row, ...] = (
    # 48 input channels (the Wan 2.2 VAE's latents) mark TI2V-5B and its variants of any width
    ("wan22_ti2v_5b", E.WAN22_TI2V_5B, (), lambda f: f["in_dim"] == 48),
    ("wan22_t2v_a14b", E.WAN22_T2V_A14B, (),
     lambda f: f["dim"] == 5120 and f["in_dim"] == 16 and not f["_clip"] and not f["_vace"]),
    ("wan22_i2v_a14b", E.WAN22_I2V_A14B, (), lambda f: f["dim"] == 5120 and f["in_dim"] == 36 and not f["_clip"]),
)
_WAN_SIZES = {1536: "1.3B", 3072: "5B", 5120: "14B"}


def rule_wan(k: Keys) -> list[Found]:
    out = []
    for p in DENOISER_PREFIXES:
        if f"{p}head.modulation" in k and f"{p}patch_embedding.weight" in k and f"{p}blocks.0.self_attn.q.weight" in k:
            layout, head = "original", f"{p}head.head.weight"
            clip = f"{p}img_emb.proj.0.weight" in k or f"{p}blocks.0.cross_attn.k_img.weight" in k
        elif (f"{p}scale_shift_table" in k and f"{p}patch_embedding.weight" in k
              and f"{p}condition_embedder.time_embedder.linear_1.weight" in k and f"{p}blocks.0.attn1.to_q.weight" in k):
            layout, head = "diffusers", f"{p}proj_out.weight"
            clip = k.any_with(p + "condition_embedder.image_embedder.")
        else:
            continue
        pe = f"{p}patch_embedding.weight"
        dim, in_dim = k.dim(pe, 0), k.dim(pe, 1)
        out_dim = (k.dim(head, 0) or 0) // 4 or None
        vace = k.any_with(p + "vace_blocks.")
        task = {16: "t2v", 36: "i2v", 48: "ti2v"}.get(in_dim or 0)
        facts = {"layout": layout, "dim": dim, "in_dim": in_dim, "out_dim": out_dim, "_clip": clip, "_vace": vace,
                 "model_size": _WAN_SIZES.get(dim or 0), "task": task,
                 "wan_version": "2.1" if (clip or dim == 1536) else None, "vace": True if vace else None}
        out.append(_from_table("wan", "denoiser", p, WAN_TABLE, facts))
    return out


# Z-Image (S3-DiT, Tongyi-MAI): a noise refiner and a context refiner in front of the main `layers`, captions
# embedded by `cap_embedder` (RMSNorm, Linear cap_feat_dim -> dim). Facts from the published files:
#   original layout (ComfyUI split_files/diffusion_models/z_image_turbo_bf16.safetensors, the layout of
#   Tongyi-MAI's own code; ComfyUI's model_detection reads it as Lumina2/NextDiT with dim 3840):
#     cap_embedder.1.weight [3840, 2560], x_embedder.weight [3840, 64], layers.N.attention.qkv.weight
#     [11520, 3840] (N < 30), noise_refiner.0.attention.k_norm.weight [128], cap_pad_token [1, 3840]
#   Diffusers layout (Tongyi-MAI/Z-Image-Turbo transformer/, ZImageTransformer2DModel; the renames are those of
#   Diffusers' convert_z_image_transformer_checkpoint_to_diffusers): all_x_embedder.2-1.weight [3840, 64],
#     layers.N.attention.to_q.weight [3840, 3840], noise_refiner.0.attention.norm_k.weight [128]
# Lumina-Image 2.0 has the same markers with dim 2304 (not ours).
Z_IMAGE_TABLE: tuple[Row, ...] = (
    ("z_image", E.Z_IMAGE, (), lambda f: f["dim"] == 3840 and f["cap_feat_dim"] == 2560),
)


def rule_z_image(k: Keys) -> list[Found]:
    out = []
    for p in DENOISER_PREFIXES:
        if f"{p}cap_embedder.1.weight" not in k:
            continue
        if f"{p}noise_refiner.0.attention.k_norm.weight" in k and f"{p}x_embedder.weight" in k:
            layout, x_in, qk = "original", f"{p}x_embedder.weight", f"{p}layers.0.attention.q_norm.weight"
        elif f"{p}noise_refiner.0.attention.norm_k.weight" in k and f"{p}all_x_embedder.2-1.weight" in k:
            layout, x_in, qk = "diffusers", f"{p}all_x_embedder.2-1.weight", f"{p}layers.0.attention.norm_q.weight"
        else:
            continue
        facts = {"layout": layout, "dim": k.dim(f"{p}cap_embedder.1.weight", 0),
                 "cap_feat_dim": k.dim(f"{p}cap_embedder.1.weight", 1), "patch_in": k.dim(x_in, 1),
                 "head_dim": k.dim(qk, 0), "layers": k.count_blocks(p + "layers."),
                 "refiner_layers": k.count_blocks(p + "noise_refiner.")}
        out.append(_from_table("z_image", "denoiser", p, Z_IMAGE_TABLE, facts))
    return out


# SD3 / SD3.5 MMDiT. Marker keys from the published files: stabilityai/stable-diffusion-3.5-large
# sd3.5_large.safetensors (model.diffusion_model.joint_blocks.N.{x_block,context_block}.attn.qkv, x_embedder.proj
# [2432, 16, 2, 2], pos_embed [1, 36864, 2432], context_embedder [2432, 4096], y_embedder.mlp.0 [2432, 2048], ln_q/ln_k
# RMS norms [64]; 38 blocks), sd3.5_medium.safetensors (hidden 1536, 24 blocks, x_block.attn2 in blocks 0-12,
# pos_embed [1, 147456, 1536]), sd3_medium.safetensors (hidden 1536, no ln_q, no attn2); the Diffusers layout is the
# transformer/ folder of those repos (pos_embed.proj, transformer_blocks.N.attn.add_q_proj, no single blocks).
SD3_TABLE: tuple[Row, ...] = (
    ("sd35_large", E.SD3, (), lambda f: f["_qk_norm"] and not f["_dual"]),
    ("sd35_medium", E.SD3, (), lambda f: f["_qk_norm"] and f["_dual"]),
    ("sd3_medium", E.SD3, (), lambda f: not f["_qk_norm"]),
)


def rule_sd3(k: Keys) -> list[Found]:
    out = []
    for p in DENOISER_PREFIXES:
        if f"{p}joint_blocks.0.x_block.attn.qkv.weight" in k and f"{p}x_embedder.proj.weight" in k:
            layout, patch, blocks = "original", f"{p}x_embedder.proj.weight", f"{p}joint_blocks."
            qk_norm = f"{p}joint_blocks.0.x_block.attn.ln_q.weight" in k
            dual = k.any_with(blocks, ".x_block.attn2.")
            pos = k.dim(f"{p}pos_embed", 1, ndim=3)
        elif (f"{p}pos_embed.proj.weight" in k and f"{p}transformer_blocks.0.attn.add_q_proj.weight" in k
              and f"{p}time_text_embed.text_embedder.linear_1.weight" in k and not k.any_with(p + "single_transformer_blocks.")):
            layout, patch, blocks = "diffusers", f"{p}pos_embed.proj.weight", f"{p}transformer_blocks."
            qk_norm = f"{p}transformer_blocks.0.attn.norm_q.weight" in k
            dual = k.any_with(blocks, ".attn2.")
            pos = k.dim(f"{p}pos_embed.pos_embed", 1, ndim=3)
        else:
            continue
        facts = {"layout": layout, "hidden": k.dim(patch, 0), "in_channels": k.dim(patch, 1, ndim=4),
                 "depth": k.count_blocks(blocks), "_qk_norm": qk_norm, "_dual": dual,
                 "pos_embed_max_size": math.isqrt(pos) if pos else None}
        out.append(_from_table("sd3", "denoiser", p, SD3_TABLE, facts))
    return out


# Chroma (lodestones): FLUX.1-schnell's double/single-stream blocks without their modulation projections
# (img_mod/txt_mod/modulation), fed by a `distilled_guidance_layer` approximator instead. Facts from the published
# files: BFL layout (lodestones/Chroma1-HD Chroma1-HD.safetensors, ComfyUI diffusion_models/): img_in.weight
# [3072, 64], double_blocks.N.img_attn.qkv.weight [9216, 3072] (N < 19), single_blocks.N.linear1.weight
# [21504, 3072] (N < 38), distilled_guidance_layer.in_proj.weight [5120, 64], .layers.N.in_layer (N < 5),
# .norms.N.scale [5120]; Diffusers layout (ChromaTransformer2DModel, lodestones/Chroma1-HD transformer/):
# x_embedder.weight, transformer_blocks.N.attn.norm_added_k.weight, distilled_guidance_layer.layers.N.linear_1.
# These are the markers of Diffusers' CHECKPOINT_KEY_NAMES["chroma"] and ComfyUI's model_detection (the
# distilled_guidance_layer norms). Chroma Radiance (pixel space, no img_in, `nerf_blocks`) is not claimed.
CHROMA_TABLE: tuple[Row, ...] = (
    ("chroma", E.CHROMA, (), lambda f: f["hidden"] == 3072 and f["in_channels"] == 64),
)


def rule_chroma(k: Keys) -> list[Found]:
    out = []
    for p in DENOISER_PREFIXES:
        if f"{p}distilled_guidance_layer.in_proj.weight" not in k or k.any_with(p + "nerf_blocks."):
            continue
        if f"{p}img_in.weight" in k and f"{p}double_blocks.0.img_attn.qkv.weight" in k:
            layout, img_in = "bfl", f"{p}img_in.weight"
            depth = (k.count_blocks(p + "double_blocks."), k.count_blocks(p + "single_blocks."))
        elif f"{p}x_embedder.weight" in k and k.any_with(p + "single_transformer_blocks.0."):
            layout, img_in = "diffusers", f"{p}x_embedder.weight"
            depth = (k.count_blocks(p + "transformer_blocks."), k.count_blocks(p + "single_transformer_blocks."))
        else:
            continue
        facts = {"layout": layout, "hidden": k.dim(img_in, 0), "in_channels": k.dim(img_in, 1, ndim=2),
                 "double_blocks": depth[0], "single_blocks": depth[1],
                 "approximator_hidden": k.dim(f"{p}distilled_guidance_layer.in_proj.weight", 0),
                 "approximator_layers": k.count_blocks(p + "distilled_guidance_layer.layers.")}
        out.append(_from_table("chroma", "denoiser", p, CHROMA_TABLE, facts))
    return out


# Qwen-Image MMDiT. The Diffusers layout (Qwen/Qwen-Image transformer/, QwenImageTransformer2DModel) and ComfyUI's
# split_files/diffusion_models/qwen_image_bf16.safetensors (the same names, optionally under model.diffusion_model.)
# have img_in [3072, 64], txt_norm [3584], txt_in [3072, 3584], transformer_blocks.N.img_mod.1 [18432, 3072] and
# .txt_mod.1, attn.add_q_proj, img_mlp/txt_mlp; 60 blocks. The Edit models (Qwen-Image-Edit-2509/2511) have the same
# shapes: a Diffusers folder's pipeline class tells them apart.
QWEN_IMAGE_TABLE: tuple[Row, ...] = (
    # the Edit models' transformers (Qwen-Image-Edit, -2509, -2511) have exactly these names and shapes (2511 differs
    # by a config flag, zero_cond_t, that no tensor shows): a file is Qwen-Image, and fits the Edit engine when asked
    ("qwen_image", E.QWEN_IMAGE, (E.QWEN_IMAGE_EDIT,), lambda f: True),
)


def rule_qwen_image(k: Keys) -> list[Found]:
    out = []
    for p in DENOISER_PREFIXES:
        if not (f"{p}txt_norm.weight" in k and f"{p}img_in.weight" in k
                and f"{p}transformer_blocks.0.img_mod.1.weight" in k and f"{p}transformer_blocks.0.txt_mod.1.weight" in k):
            continue
        facts = {"layout": "diffusers", "hidden": k.dim(f"{p}img_in.weight", 0),
                 "in_channels": k.dim(f"{p}img_in.weight", 1), "text_dim": k.dim(f"{p}txt_norm.weight", 0),
                 "depth": k.count_blocks(p + "transformer_blocks.")}
        out.append(_from_table("qwen_image", "denoiser", p, QWEN_IMAGE_TABLE, facts))
    return out


# FLUX.2 (black-forest-labs): FLUX.1's double/single-stream blocks with the modulation shared across blocks
# (`double_stream_modulation_img/txt`, `single_stream_modulation`, Diffusers' CHECKPOINT_KEY_NAMES["flux2"] marker),
# no biases, 128 input channels (32 latent channels x 2x2 patches) and a text input three encoder layers wide.
# Facts from the published files: BFL layout (black-forest-labs/FLUX.2-dev flux2-dev.safetensors, ComfyUI
# split_files/diffusion_models/flux2_dev_*.safetensors, FLUX.2-klein-4B/9B flux-2-klein-*.safetensors): img_in.weight
# [hidden, 128], txt_in.weight [hidden, 3 x text width], time_in.in_layer.weight [hidden, 256], guidance_in.in_layer
# (dev only: Klein runs without a guidance embedding, its Diffusers config has guidance_embeds false),
# double_stream_modulation_img.lin.weight [6 x hidden, hidden], single_stream_modulation.lin.weight [3 x hidden,
# hidden], double_blocks.N.img_attn.qkv.weight [3 x hidden, hidden], img_mlp.0.weight [6 x hidden, hidden] (SwiGLU,
# mlp_ratio 3), single_blocks.N.linear1.weight [9 x hidden, hidden]; the renames are Diffusers'
# convert_flux2_transformer_checkpoint_to_diffusers (img_in -> x_embedder, txt_in -> context_embedder, ...).
# dev: hidden 6144 (48 heads x 128), 8 double + 48 single blocks, txt_in [6144, 15360] (Mistral-Small-3 5120 x 3);
# Klein 4B: hidden 3072, 5 + 20 blocks, txt_in [3072, 7680] (Qwen3-4B 2560 x 3); Klein 9B: hidden 4096, 8 + 24
# blocks, txt_in [4096, 12288] (Qwen3-8B 4096 x 3). The guidance embedding tells dev from Klein.
FLUX2_TABLE: tuple[Row, ...] = (
    ("flux2_dev", E.FLUX2, (), lambda f: f["guidance_embed"]),
    ("flux2_klein", E.FLUX2_KLEIN, (), lambda f: not f["guidance_embed"]),
)
FLUX2_TEXT_WIDTHS = {15360: "mistral3_small", 7680: "qwen3_4b", 12288: "qwen3_8b"}


def rule_flux2(k: Keys) -> list[Found]:
    out = []
    for p in DENOISER_PREFIXES:
        if f"{p}single_stream_modulation.lin.weight" in k and f"{p}img_in.weight" in k:
            layout, img_in, txt_in = "bfl", f"{p}img_in.weight", f"{p}txt_in.weight"
            guidance = k.any_with(p + "guidance_in.")
            depth = (k.count_blocks(p + "double_blocks."), k.count_blocks(p + "single_blocks."))
        elif f"{p}single_stream_modulation.linear.weight" in k and f"{p}x_embedder.weight" in k:
            layout, img_in, txt_in = "diffusers", f"{p}x_embedder.weight", f"{p}context_embedder.weight"
            guidance = k.any_with(p + "time_guidance_embed.guidance_embedder.")
            depth = (k.count_blocks(p + "transformer_blocks."), k.count_blocks(p + "single_transformer_blocks."))
        else:
            continue
        text_width = k.dim(txt_in, 1, ndim=2)
        facts = {"layout": layout, "hidden": k.dim(img_in, 0), "in_channels": k.dim(img_in, 1, ndim=2),
                 "text_width": text_width, "text_encoder": FLUX2_TEXT_WIDTHS.get(text_width or 0),
                 "guidance_embed": guidance, "double_blocks": depth[0], "single_blocks": depth[1]}
        out.append(_from_table("flux2", "denoiser", p, FLUX2_TABLE, facts))
    return out


# LTX-2 (Lightricks): an audio-video transformer — a video stream and an audio stream, each with self- and
# cross-attention, and attention between the two, modulated by four extra AdaLN tables (audio-video cross-attention
# scale/shift and gates). Facts from the published files: Lightricks/LTX-2 ltx-2-19b-dev.safetensors (and -distilled,
# -fp8; ComfyUI loads the same file from checkpoints/) holds everything but the Gemma 3 text encoder under four
# prefixes: model.diffusion_model. (transformer + the text connectors video_embeddings_connector. /
# audio_embeddings_connector.), vae., audio_vae., vocoder. — the prefixes in Diffusers' LTX-2 conversion script and
# its CHECKPOINT_KEY_NAMES["ltx2"] markers (av_ca_a2v_gate_adaln_single.emb.timestep_embedder.linear_1.weight,
# vae./audio_vae.per_channel_statistics.mean-of-means). Original names (Diffusers' names after the renames of
# convert_ltx2_transformer_to_diffusers): patchify_proj [4096, 128] (proj_in), audio_patchify_proj [2048, 128]
# (audio_proj_in), adaln_single (time_embed), av_ca_{video_scale_shift,a2v_gate,audio_scale_shift,v2a_gate}_adaln_single
# (av_cross_attn_*), caption_projection.linear_1 [4096, 3840] (Gemma 3 12B width; LTX-2.3 projects in the connector
# instead), transformer_blocks.N.{attn1,attn2,audio_attn1,audio_attn2,audio_to_video_attn,video_to_audio_attn}
# with q_norm/k_norm (norm_q/norm_k); 48 blocks of 32 x 128 video and 32 x 64 audio heads.
LTX2_TABLE: tuple[Row, ...] = (
    ("ltx2", E.LTX2, (), lambda f: f["audio_hidden"] is not None),
)


def rule_ltx2(k: Keys) -> list[Found]:
    out = []
    for p in DENOISER_PREFIXES:
        if f"{p}av_ca_a2v_gate_adaln_single.emb.timestep_embedder.linear_1.weight" in k:
            layout, proj, audio_proj = "ltx", f"{p}patchify_proj.weight", f"{p}audio_patchify_proj.weight"
        elif f"{p}av_cross_attn_video_a2v_gate.emb.timestep_embedder.linear_1.weight" in k:
            layout, proj, audio_proj = "diffusers", f"{p}proj_in.weight", f"{p}audio_proj_in.weight"
        else:
            continue
        facts = {"layout": layout, "hidden": k.dim(proj, 0), "in_channels": k.dim(proj, 1, ndim=2),
                 "audio_hidden": k.dim(audio_proj, 0), "audio_in_channels": k.dim(audio_proj, 1, ndim=2),
                 "caption_channels": k.dim(f"{p}caption_projection.linear_1.weight", 1, ndim=2),
                 "depth": k.count_blocks(p + "transformer_blocks."),
                 "text_connectors": True if k.any_with(p + "video_embeddings_connector.") else None,
                 "audio_vae": True if "audio_vae.per_channel_statistics.mean-of-means" in k else None,
                 "vocoder": True if k.any_with("vocoder.") else None}
        out.append(_from_table("ltx2", "denoiser", p, LTX2_TABLE, facts))
    return out


def _ltx2_vae(k: Keys, p: str) -> bool:
    """LTX-2's video VAE: per-channel latent statistics beside a causal 3-D decoder (original or Diffusers names)."""
    return f"{p}per_channel_statistics.mean-of-means" in k or (f"{p}latents_mean" in k and k.dim(
        f"{p}decoder.conv_in.conv.weight", 1, ndim=5) is not None)


def rule_vae_ltx2(k: Keys) -> list[Found]:
    """The LTX-2 video VAE (128 latent channels, 32x space / 8x time), alone or in the all-in-one file (vae.)."""
    return [Found("vae_ltx2", "vae", p, None, {"model": "ltx2_video_vae", "latent_channels": k.dim(
        f"{p}decoder.conv_in.conv.weight", 1, ndim=5)}, (E.LTX2,)) for p in VAE_PREFIXES if _ltx2_vae(k, p)]


# ---- VAEs ----------------------------------------------------------------------------------------

# Image VAEs of the LDM/diffusers AutoencoderKL shape: family from latent channels.
KL_VAE_TABLE: tuple[Row, ...] = (
    ("kl4", None, SD_ANY, lambda f: f["latent_channels"] == 4),   # SD1.5 and SDXL VAEs share a shape
    # FLUX.1's ae.safetensors; Z-Image and Chroma ship the same autoencoder, and SD3's has the same shapes (16
    # channels, no quant convs; only the scaling factors differ, which the model's own config supplies)
    ("kl16", E.FLUX, (E.Z_IMAGE, E.CHROMA, E.SD3), lambda f: f["latent_channels"] == 16),
    # FLUX.2's autoencoder (ComfyUI split_files/vae/flux2-vae.safetensors, the FLUX.2 folders' vae/,
    # AutoencoderKLFlux2): 32 latent channels, plus batch-norm statistics (bn.running_mean [128]) over 2x2 patches
    ("kl32_flux2", None, (E.FLUX2, E.FLUX2_KLEIN), lambda f: f["latent_channels"] == 32),
)
WAN_VAE_TABLE: tuple[Row, ...] = (
    # the Wan 2.1 VAE; Qwen-Image's VAE (Qwen/Qwen-Image vae/, AutoencoderKLQwenImage) has the same 16-channel layout
    ("wan21_vae", None, WAN_A14B + (E.QWEN_IMAGE, E.QWEN_IMAGE_EDIT), lambda f: f["latent_channels"] == 16),
    ("wan22_vae", E.WAN22_TI2V_5B, (), lambda f: f["latent_channels"] == 48),
)
CAUSAL3D_VAE_TABLE: tuple[Row, ...] = (
    ("hunyuan_video_vae", E.HUNYUAN_VIDEO, (), lambda f: f["latent_channels"] == 16),
    ("hunyuan_video15_vae", E.HUNYUAN_VIDEO15, (), lambda f: f["latent_channels"] == 32),
)


def rule_vae_kl(k: Keys) -> list[Found]:
    """2-D AutoencoderKL in LDM layout (encoder.down.N.block) or diffusers layout (down_blocks)."""
    out = []
    for p in VAE_PREFIXES:
        ldm = k.dim(f"{p}encoder.down.0.block.0.conv1.weight", 0, ndim=4) is not None
        diffusers = k.dim(f"{p}encoder.down_blocks.0.resnets.0.conv1.weight", 0, ndim=4) is not None
        if not (ldm or diffusers) or f"{p}decoder.mid.block_1.mix_factor" in k:
            continue
        facts = {"layout": "ldm" if ldm else "diffusers", "latent_channels": k.dim(f"{p}decoder.conv_in.weight", 1)}
        out.append(_from_table("vae_kl", "vae", p, KL_VAE_TABLE, facts))
    return out


def rule_vae_svd(k: Keys) -> list[Found]:
    """SVD's VAE: LDM layout with a temporal decoder (mix_factor blends)."""
    return [Found("vae_svd", "vae", p, E.SVD, {"layout": "ldm", "latent_channels": k.dim(f"{p}decoder.conv_in.weight", 1),
                                               "temporal_decoder": True})
            for p in VAE_PREFIXES if f"{p}decoder.mid.block_1.mix_factor" in k]


def rule_vae_wan(k: Keys) -> list[Found]:
    out = []
    for p in VAE_PREFIXES:
        if f"{p}decoder.middle.0.residual.0.gamma" in k:
            facts = {"layout": "original", "latent_channels": k.dim(f"{p}conv2.weight", 0) or k.dim(f"{p}decoder.conv1.weight", 1)}
        elif f"{p}decoder.mid_block.resnets.0.norm1.gamma" in k and k.dim(f"{p}decoder.conv_in.weight", 1, ndim=5):
            facts = {"layout": "diffusers", "latent_channels": k.dim(f"{p}decoder.conv_in.weight", 1)}
        else:
            continue
        out.append(_from_table("vae_wan", "vae", p, WAN_VAE_TABLE, facts))
    return out


def rule_vae_causal3d(k: Keys) -> list[Found]:
    """HunyuanVideo (16 latent channels) and HunyuanVideo 1.5 (32) causal 3-D VAEs."""
    out = []
    for p in VAE_PREFIXES:
        conv = k.dim(f"{p}decoder.conv_in.conv.weight", 1, ndim=5)
        plain = k.dim(f"{p}decoder.conv_in.weight", 1, ndim=5)
        if conv is None and not (plain == 32 and f"{p}decoder.mid_block.resnets.0.norm1.gamma" not in k):
            continue
        if f"{p}decoder.mid_block.resnets.0.norm1.norm_layer.weight" in k:  # CogVideoX: not ours
            continue
        if _ltx2_vae(k, p):  # LTX-2's video VAE: rule_vae_ltx2
            continue
        out.append(_from_table("vae_causal3d", "vae", p, CAUSAL3D_VAE_TABLE, {"latent_channels": conv or plain}))
    return out


# ---- text encoders (any prefix: checkpoints nest them) --------------------------------------------

CLIP_TABLE: tuple[Row, ...] = (
    ("clip_l", None, (E.SD15, E.SDXL, E.FLUX, E.HUNYUAN_VIDEO, E.SD3), lambda f: f["hidden"] == 768),
    ("clip_h", None, (), lambda f: f["hidden"] == 1024),
    ("clip_g", None, (E.SDXL, E.SD3), lambda f: f["hidden"] == 1280),
)
T5_TABLE: tuple[Row, ...] = (
    ("umt5", None, (E.WAN22_TI2V_5B,) + WAN_A14B, lambda f: f["_umt5"]),
    ("byt5", None, (E.HUNYUAN_VIDEO15,), lambda f: not f["_umt5"] and f["d_model"] == 1472),
    ("t5xxl", None, (E.FLUX, E.CHROMA, E.SD3), lambda f: not f["_umt5"] and f["d_model"] == 4096),
)
def _mistral3(f: Mapping[str, Any]) -> bool:
    return f["hidden"] == 5120 and f["vocab"] == 131072


DECODER_LM_TABLE: tuple[Row, ...] = (
    ("llama", None, (E.HUNYUAN_VIDEO,), lambda f: not f["_qkv_bias"] and not f["_qk_norm"] and not _mistral3(f)),
    # Mistral-Small-3.x 24B (hidden 5120, 40 layers, vocab 131072, llama-shaped): FLUX.2 dev's encoder
    # (black-forest-labs/FLUX.2-dev text_encoder/ Mistral3ForConditionalGeneration's language model, ComfyUI
    # split_files/text_encoders/mistral_3_small_flux2_*.safetensors)
    ("mistral3_small", None, (E.FLUX2,), lambda f: not f["_qkv_bias"] and not f["_qk_norm"] and _mistral3(f)),
    # Qwen2.5-VL-7B (hidden 3584): HunyuanVideo 1.5's and Qwen-Image's encoder (ComfyUI qwen_2.5_vl_7b.safetensors)
    ("qwen2_5_vl", None, (E.HUNYUAN_VIDEO15, E.QWEN_IMAGE, E.QWEN_IMAGE_EDIT), lambda f: f["_qkv_bias"]),
    # Qwen3: per-head q/k RMS norms, no qkv bias. Qwen3-4B (hidden 2560, 36 layers, vocab 151936) is Z-Image's
    # encoder: ComfyUI split_files/text_encoders/qwen_3_4b.safetensors (model.layers.N.self_attn.q_norm.weight
    # [128]) and Tongyi-MAI/Z-Image-Turbo text_encoder/ (Qwen3Model)
    # FLUX.2 Klein 4B reads the same Qwen3-4B (black-forest-labs/FLUX.2-klein-4B text_encoder/, Qwen3ForCausalLM)
    ("qwen3_4b", None, (E.Z_IMAGE, E.FLUX2_KLEIN),
     lambda f: f["_qk_norm"] and not f["_qkv_bias"] and f["hidden"] == 2560 and not f["_gemma"]),
    # Qwen3-8B (hidden 4096, 36 layers): FLUX.2 Klein 9B's encoder (ComfyUI split_files/text_encoders/qwen_3_8b*)
    ("qwen3_8b", None, (E.FLUX2_KLEIN,), lambda f: f["_qk_norm"] and not f["_qkv_bias"] and f["hidden"] == 4096
     and not f["_gemma"]),
    # Gemma 3: q/k norms plus the pre/post feed-forward norms only Gemma has. Gemma-3-12B (hidden 3840, 48 layers,
    # vocab 262208) is LTX-2's encoder (Lightricks/LTX-2 text_encoder/, ComfyUI text_encoders/gemma_3_12B_it*)
    ("gemma3_12b", None, (E.LTX2,), lambda f: f["_gemma"] and f["hidden"] == 3840),
)


def _te(found: Found) -> Found:
    """Name the text encoder in variant["text_encoder"] (the table row), or "unknown"."""
    variant = dict(found.variant)
    variant["text_encoder"] = variant.pop("model", "unknown")
    return Found(found.rule, found.role, found.prefix, None, variant, found.compatible)


def rule_clip(k: Keys) -> list[Found]:
    """CLIP text models: transformers layout (text_model.encoder.layers) or OpenCLIP (transformer.resblocks)."""
    out = []
    for p in k.prefixes_of("text_model.encoder.layers.0.self_attn.q_proj.weight"):
        facts = {"layout": "transformers", "hidden": k.dim(f"{p}text_model.encoder.layers.0.self_attn.q_proj.weight", 0),
                 "layers": k.count_blocks(p + "text_model.encoder.layers.")}
        out.append(_te(_from_table("clip", "text_encoder", p, CLIP_TABLE, facts)))
    for p in k.prefixes_of("transformer.resblocks.0.attn.in_proj_weight"):
        if f"{p}token_embedding.weight" not in k:  # OpenCLIP *vision* towers have no token embedding
            continue
        facts = {"layout": "open_clip", "hidden": k.dim(f"{p}token_embedding.weight", 1),
                 "layers": k.count_blocks(p + "transformer.resblocks.")}
        out.append(_te(_from_table("clip", "text_encoder", p, CLIP_TABLE, facts)))
    return out


def rule_t5(k: Keys) -> list[Found]:
    """T5 family encoders; UMT5 has a relative-attention bias in every block and a 256k vocabulary."""
    out = []
    for p in k.prefixes_of("encoder.block.0.layer.0.SelfAttention.q.weight"):
        vocab = k.dim(f"{p}shared.weight", 0) or k.dim(f"{p}encoder.embed_tokens.weight", 0)
        umt5 = vocab == 256384 or f"{p}encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight" in k
        facts = {"d_model": k.dim(f"{p}encoder.block.0.layer.0.SelfAttention.q.weight", 1), "vocab": vocab,
                 "_umt5": umt5, "layers": k.count_blocks(p + "encoder.block.")}
        out.append(_te(_from_table("t5", "text_encoder", p, T5_TABLE, facts)))
    return out


def rule_decoder_lm(k: Keys) -> list[Found]:
    """Llama-style decoder LMs used as text encoders (LLaVA-Llama-3 for HunyuanVideo, Qwen2.5-VL for 1.5)."""
    out = []
    for p in k.prefixes_of("layers.0.mlp.gate_proj.weight"):
        if f"{p}embed_tokens.weight" not in k or f"{p}layers.0.self_attn.q_proj.weight" not in k:
            continue
        facts = {"hidden": k.dim(f"{p}embed_tokens.weight", 1), "vocab": k.dim(f"{p}embed_tokens.weight", 0),
                 "_qkv_bias": f"{p}layers.0.self_attn.q_proj.bias" in k, "layers": k.count_blocks(p + "layers."),
                 "_qk_norm": f"{p}layers.0.self_attn.q_norm.weight" in k,
                 "_gemma": f"{p}layers.0.pre_feedforward_layernorm.weight" in k}
        out.append(_te(_from_table("decoder_lm", "text_encoder", p, DECODER_LM_TABLE, facts)))
    return out


# ---- whole-file kinds: LoRA, embedding, upscaler -------------------------------------------------

# LoRA facts (keys flattened to "_" form so kohya and peft names read alike):
#   unet: targets a UNet (down/up/input/output blocks) or a CLIP text encoder; context: in-width of
#   an attn2.to_k adapter; te_width: in-width of a CLIP text-encoder adapter; te2: has a second (SDXL) text encoder; mmdit: double/single-stream
#   transformer blocks; hunyuan: names only HunyuanVideo has (or more blocks than FLUX's 19/38);
#   hidden: in-width of an mmdit attention adapter; wan: Wan-style "blocks.N.self_attn" targets.
LORA_TABLE: tuple[Row, ...] = (
    ("sd15", E.SD15, (), lambda f: f["unet"] and not f["te2"] and (f["context"] or f["te_width"]) == 768),
    ("sd2", E.SD2, (), lambda f: f["unet"] and not f["te2"] and (f["context"] or f["te_width"]) == 1024),
    ("sdxl", E.SDXL, (), lambda f: f["unet"] and (f["te2"] or f["context"] == 2048)),
    # Chroma keeps FLUX.1's module names (without the modulation ones): a FLUX-named LoRA fits both
    ("flux", E.FLUX, (E.CHROMA,), lambda f: f["mmdit"] and not f["hunyuan"] and f["hidden"] in (3072, None)
     and not f["qwen"] and not f["flux2"]),
    ("hunyuan_video", E.HUNYUAN_VIDEO, (), lambda f: f["hunyuan"] and f["hidden"] != 2048 and not f["qwen"]
     and not f["flux2"]),
    ("hunyuan_video15", E.HUNYUAN_VIDEO15, (), lambda f: (f["mmdit"] or f["hunyuan"]) and f["hidden"] == 2048
     and not f["qwen"] and not f["flux2"]),
    # FLUX.2: BFL names without FLUX.1's per-block modulation and a SwiGLU MLP (single-block linear1 = 9 x hidden,
    # img_mlp.0 = 6 x hidden; FLUX.1: 7 x, 4 x), or Diffusers' Flux2 names (to_qkv_mlp_proj, ff.linear_in). Width 6144
    # is dev (48 heads), 3072 / 4096 Klein 4B / 9B; other widths (test models) fit either
    ("flux2", E.FLUX2, (), lambda f: f["flux2"] and f["hidden"] == 6144),
    ("flux2_klein", E.FLUX2_KLEIN, (), lambda f: f["flux2"] and f["hidden"] in (3072, 4096)),
    ("flux2_any", None, (E.FLUX2, E.FLUX2_KLEIN), lambda f: f["flux2"] and f["hidden"] not in (3072, 4096, 6144)),
    # Qwen-Image (and its Edit models, the same transformer): img_mod / txt_mod / img_mlp / txt_mlp in
    # transformer_blocks, or more than HunyuanVideo's 20 joint blocks at width 3072 and no single-stream blocks (60)
    ("qwen_image", E.QWEN_IMAGE, (E.QWEN_IMAGE_EDIT,), lambda f: f["qwen"]),
    # LTX-2: its audio stream (audio_attn1, audio_to_video_attn, audio_ff ...), or video attn1 at LTX-2's 4096 width
    ("ltx2", E.LTX2, (), lambda f: f["ltx2"]),
    ("wan22_ti2v_5b", E.WAN22_TI2V_5B, (), lambda f: f["wan"] and f["wan_dim"] == 3072),
    ("wan_14b", None, WAN_A14B, lambda f: f["wan"] and f["wan_dim"] == 5120),
    ("wan_1_3b", None, (), lambda f: f["wan"] and f["wan_dim"] == 1536),
    # Z-Image LoRAs: ai-toolkit `diffusion_model.layers.N.attention.to_q.lora_A`, kohya/musubi
    # `lora_unet_layers_N_attention_to_q`, or the original fused `layers.N.attention.qkv`; width 3840
    # (Lumina-Image 2.0 has the same names at 2304)
    ("z_image", E.Z_IMAGE, (), lambda f: f["zimage"] and f["zimage_dim"] in (3840, None) and not f["ltx2"]),
)
_QWEN_RE = re.compile(r"(?:^|_)transformer_blocks_\d+_(?:img_mod_1|txt_mod_1|img_mlp_net|txt_mlp_net)")
_FLUX2_PARTS = ("_attn_to_qkv_mlp_proj", "_ff_linear_in", "_ff_context_linear_in", "stream_modulation_")
_LTX2_PARTS = ("_audio_attn1_", "_audio_attn2_", "_audio_to_video_attn_", "_video_to_audio_attn_", "_audio_ff_",
               "audio_patchify_proj", "audio_proj_in")
_UNET_PARTS = ("down_blocks_", "up_blocks_", "mid_block_", "input_blocks_", "output_blocks_", "middle_block_",
               "lora_te_", "lora_te1_", "lora_te2_", "text_model_encoder_layers_")
_HUNYUAN_PARTS = ("img_mlp_fc1", "txt_mlp_fc1", "img_mod_linear", "txt_mod_linear", "individual_token_refiner",
                  "token_refiner_refiner_blocks")
_DOUBLE_RE = re.compile(r"(?:^|_)(?:double_blocks|(?<!single_)transformer_blocks)_(\d+)_")
_SINGLE_RE = re.compile(r"(?:^|_)(?:single_blocks|single_transformer_blocks)_(\d+)_")
_WAN_RE = re.compile(r"(?:^|_)(?<!transformer_)(?<!single_)(?<!double_)blocks_\d+_(self_attn|cross_attn|attn1|attn2|ffn)_")
_ZIMAGE_RE = re.compile(r"(?:^|_)(?:layers|noise_refiner|context_refiner)_\d+_(?:attention_(?:qkv|out|to_q|to_k|to_v"
                        r"|to_out)|feed_forward_w[123]|adaLN_modulation)")
_ADAPTER_DOWN = re.compile(r"(\.lora_down\.weight|\.lora_A\.weight|\.lora\.down\.weight|_lora\.down\.weight)$")
_LORA_PREFIXES = ("lora_unet_", "lora_te1_", "lora_te2_", "lora_te_", "lora_transformer_", "diffusion_model.",
                  "transformer.", "unet.", "text_encoder.", "base_model.model.")
_BASE_MODEL_METADATA = (("sdxl", E.SDXL), ("sd_v1", E.SD15), ("flux", E.FLUX))


def _lora_in_width(k: Keys, *needles: str) -> int | None:
    for key in k.sorted:
        flat = key.replace(".", "_")
        if _ADAPTER_DOWN.search(key) and all(n in flat for n in needles):
            return k.dim(key, 1)
    return None


def _lora_out_rows(k: Keys, *needles: str) -> int | None:
    """Rows of the up matrix of the first adapter whose name has every needle (the width the layer writes)."""
    for key in k.sorted:
        flat = key.replace(".", "_")
        if _ADAPTER_DOWN.search(key) and all(n in flat for n in needles):
            up = next((key[: m.start()] + u for m in [_ADAPTER_DOWN.search(key)]
                       for u in (".lora_up.weight", ".lora_B.weight", ".lora.up.weight", "_lora.up.weight")
                       if key[: m.start()] + u in k), None)
            return k.dim(up, 0) if up else None
    return None


def rule_lora(k: Keys) -> list[Found]:
    if not any(m in key for key in k.sorted for m in _LORA_MARKERS):
        return []
    flats = [key.replace(".", "_") for key in k.sorted]
    has = lambda *parts: any(p in f for f in flats for p in parts)  # noqa: E731
    mmdit = has("double_blocks_", "single_blocks_", "single_transformer_blocks_", "_attn_add_q_proj", "_ff_context_")
    wan = any(_WAN_RE.search(f) for f in flats)
    hidden = (_lora_in_width(k, "double_blocks_", "img_attn") or _lora_in_width(k, "transformer_blocks_", "attn_to_q")
              or _lora_in_width(k, "single_blocks_", "linear1") or _lora_in_width(k, "single_transformer_blocks_"))
    wan_dim = None
    if wan:
        wan_dim = next((k.dim(key, 1) for key, f in zip(k.sorted, flats)
                        if _ADAPTER_DOWN.search(key) and _WAN_RE.search(f)
                        and re.search(r"(self_attn_q|attn1_to_q|cross_attn_q|attn2_to_q)_", f)), None)
    zimage = any(_ZIMAGE_RE.search(f) for f in flats)
    zimage_dim = next((k.dim(key, 1) for key, f in zip(k.sorted, flats)
                       if _ADAPTER_DOWN.search(key) and re.search(r"attention_(qkv|to_q)_", f)), None) if zimage else None
    # FLUX has 19 double + 38 single blocks; HunyuanVideo 20 + 40: a higher index means HunyuanVideo.
    depth = [max((int(m.group(1)) for f in flats if (m := rx.search(f))), default=-1) for rx in (_DOUBLE_RE, _SINGLE_RE)]
    hunyuan = has(*_HUNYUAN_PARTS) or (mmdit and (depth[0] >= 19 or depth[1] >= 38))
    single = has("single_blocks_", "single_transformer_blocks_")
    # more joint blocks than FLUX (19) / HunyuanVideo (20) at Qwen-Image's width 3072 (SD3's are 1536 / 2432 wide)
    qwen = any(_QWEN_RE.search(f) for f in flats) or (not single and depth[0] >= 20 and has("_attn_to_q")
                                                      and not has("double_blocks_") and hidden == 3072)
    flux2 = has(*_FLUX2_PARTS) or (mmdit and not has("_img_mod_", "_txt_mod_", "_modulation_lin") and bool(
        hidden and ((_lora_out_rows(k, "single_blocks_", "linear1") or 0) == 9 * hidden
                    or (_lora_out_rows(k, "double_blocks_", "img_mlp_0") or 0) == 6 * hidden)))
    ltx2 = has(*_LTX2_PARTS) or (not mmdit and _lora_in_width(k, "transformer_blocks_", "attn1_to_q") == 4096)
    facts: dict[str, Any] = {
        "unet": has(*_UNET_PARTS) and not mmdit and not wan,
        "context": _lora_in_width(k, "transformer_blocks_", "attn2_to_k"),
        "te2": has("lora_te2_", "text_encoder_2_"),
        "te_width": _lora_in_width(k, "text_model_encoder_layers_", "self_attn")
        or _lora_in_width(k, "text_model_encoder_layers_", "mlp_fc1"),
        "mmdit": mmdit, "hunyuan": hunyuan, "hidden": hidden if mmdit else None,
        "wan": wan and not mmdit, "wan_dim": wan_dim,
        "zimage": zimage and not mmdit and not wan, "zimage_dim": zimage_dim,
        "qwen": qwen and not flux2, "flux2": flux2, "ltx2": ltx2 and not mmdit,
    }
    rank = min((k.dim(key, 0) or 0 for key in k.sorted if _ADAPTER_DOWN.search(key)), default=None)
    prefixes = Counter(next((p for p in _LORA_PREFIXES if key.startswith(p)), "") for key in k.sorted)
    model_prefixes = Counter({p: n for p, n in prefixes.items() if not p.startswith(("lora_te", "text_encoder"))})
    prefix = (model_prefixes or prefixes).most_common(1)[0][0]
    found = _from_table("lora", "whole", prefix, LORA_TABLE, facts, kind="lora")
    variant = {"format": "kohya" if any(f.startswith("lora_") for f in flats) else "peft",
               "rank": rank or None, "text_encoder": has(*_UNET_PARTS[6:], "text_encoder") or None}
    if found.variant.get("model"):
        variant["model"] = found.variant["model"]
    family = found.family
    if family is None and not found.compatible and "ambiguous" not in found.variant:
        base = k.metadata.get("ss_base_model_version", "") or k.metadata.get("modelspec.architecture", "")
        family = next((fam for marker, fam in _BASE_MODEL_METADATA if base.lower().startswith(marker)), None)
        if family:
            variant["family_from"] = "metadata"
    if "ambiguous" in found.variant:
        variant["ambiguous"] = found.variant["ambiguous"]
    return [Found("lora", "whole", prefix, family, {k2: v for k2, v in variant.items() if v is not None},
                  found.compatible, "lora")]


_EMBEDDING_KEYS = {"emb_params", "clip_l", "clip_g", "string_to_token", "string_to_param.*", "string_to_param"}


def rule_embedding(k: Keys) -> list[Found]:
    """Textual inversion: A1111 `emb_params` / `string_to_param.*`, SDXL `clip_l` + `clip_g`."""
    if not k.shapes or not set(k.shapes) <= _EMBEDDING_KEYS:
        return []
    if "clip_l" in k and "clip_g" in k:
        return [Found("embedding", "whole", "", E.SDXL, {"vectors": k.dim("clip_l", 0)}, (), "embedding")]
    key = "emb_params" if "emb_params" in k else next((x for x in k.sorted if x.startswith("string_to_param")), None)
    if key is None or len(k.shapes[key]) != 2:
        return []
    width = k.dim(key, 1)
    family = {768: E.SD15, 1024: E.SD2}.get(width or 0)  # CLIP-L's width; SD 2.x's OpenCLIP-H
    return [Found("embedding", "whole", "", family, {"vectors": k.dim(key, 0), "width": width}, (), "embedding")]


def _upscaler(rule: str, arch: str, scale: int | None, k: Keys, **extra: Any) -> list[Found]:
    variant = {"arch": arch, "scale": scale, **extra}
    return [Found(rule, "whole", "", None, {a: b for a, b in variant.items() if b is not None}, (), "upscaler")]


def rule_upscaler_esrgan(k: Keys) -> list[Found]:
    """ESRGAN, original layout: model.0 conv, model.1.sub.N.RDB blocks, one upconv per x2 step."""
    if "model.0.weight" not in k or not k.any_with("model.1.sub.0.", "RDB1"):
        return []
    last = max(int(m.group(1)) for key in k.sorted if (m := re.match(r"model\.(\d+)\.weight$", key)))
    return _upscaler("upscaler_esrgan", "esrgan", 2 ** max(0, (last - 4) // 3), k,
                     blocks=k.count_blocks("model.1.sub.") - 1)


def rule_upscaler_rrdbnet(k: Keys) -> list[Found]:
    """Real-ESRGAN / BasicSR RRDBNet: conv_first, body.N.rdbM, conv_up1/2; x2/x1 models pixel-unshuffle."""
    if "conv_first.weight" not in k or not k.any_with("body.0.rdb1."):
        return []
    ups = sum(f"conv_up{i}.weight" in k for i in (1, 2, 3))
    unshuffle = int(math.isqrt((k.dim("conv_first.weight", 1) or 3) // 3))
    return _upscaler("upscaler_rrdbnet", "realesrgan", max(1, 2 ** ups // max(1, unshuffle)), k,
                     blocks=k.count_blocks("body."))


def rule_upscaler_swinir(k: Keys) -> list[Found]:
    if "conv_first.weight" not in k or not k.any_with("layers.0.residual_group."):
        return []
    nf = k.dim("conv_before_upsample.0.weight", 0) or k.dim("conv_first.weight", 0) or 0
    shuffles = [k.dim(key, 0) for key in k.sorted if re.match(r"upsample\.\d+\.weight$", key)]
    scale = 3 if shuffles == [9 * nf] else 2 ** sum(s == 4 * nf for s in shuffles) if shuffles else None
    if scale is None and "conv_up1.weight" in k:
        scale = 2 ** sum(f"conv_up{i}.weight" in k for i in (1, 2))
    return _upscaler("upscaler_swinir", "swinir", scale, k)


def rule_upscaler_compact(k: Keys) -> list[Found]:
    """SRVGGNetCompact (realesr-general / animevideo): only body.N convs and PReLUs."""
    if not k.shapes or not all(re.match(r"body\.\d+\.(weight|bias)$", x) for x in k.shapes):
        return []
    if k.dim("body.0.weight", 0, ndim=4) is None or len(k.shape("body.1.weight") or []) != 1:
        return []
    last = max(int(x.split(".")[1]) for x in k.shapes)
    out = k.dim(f"body.{last}.weight", 0) or 3
    return _upscaler("upscaler_compact", "compact", int(math.isqrt(out // 3)), k)


#: IP-Adapter cross-attention width (to_k_ip input) -> family; other widths (tiny test models) stay family None
_IP_ADAPTER_WIDTH = {768: E.SD15, 2048: E.SDXL, 4096: E.FLUX}


def rule_ip_adapter(k: Keys) -> list[Found]:
    """IP-Adapter (h94 layout, single file): `image_proj.*` plus `ip_adapter.<n>.to_k_ip/to_v_ip` per
    cross-attention layer; the family from the width the adapter's keys project into."""
    xlabs = "double_blocks.0.processor.ip_adapter_double_stream_k_proj.weight"
    if "ip_adapter_proj_model.proj.weight" in k and xlabs in k:  # XLabs' FLUX IP-Adapter
        variant = {"cross_attention_dim": k.dim(xlabs, 1), "layout": "xlabs",
                   "layers": sum(1 for x in k.sorted if x.endswith("ip_adapter_double_stream_k_proj.weight"))}
        return [Found("ip_adapter", "whole", "", E.FLUX, variant, (E.FLUX,), "ip_adapter")]
    if not k.any_with("image_proj.") or not k.any_with("ip_adapter."):
        return []
    key = next((x for x in k.sorted if x.startswith("ip_adapter.") and x.endswith(".to_k_ip.weight")), None)
    if key is None:
        return []
    width = k.dim(key, 1)
    variant = {"cross_attention_dim": width, "layers": sum(1 for x in k.sorted if x.endswith(".to_k_ip.weight")),
               "plus": "image_proj.latents" in k or None}
    return [Found("ip_adapter", "whole", "", _IP_ADAPTER_WIDTH.get(width or 0),
                  {a: b for a, b in variant.items() if b is not None}, (), "ip_adapter")]


def rule_clip_vision(k: Keys) -> list[Found]:
    """A CLIP vision tower with projection (transformers layout), the image encoder of IP-Adapter."""
    if "vision_model.embeddings.patch_embedding.weight" not in k or "visual_projection.weight" not in k:
        return []
    variant = {"hidden_size": k.dim("vision_model.embeddings.patch_embedding.weight", 0),
               "projection_dim": k.dim("visual_projection.weight", 0),
               "layers": k.count_blocks("vision_model.encoder.layers.")}
    return [Found("clip_vision", "whole", "", None, variant, (), "image_encoder")]


RULES: tuple[Callable[[Keys], list[Found]], ...] = (
    rule_unet, rule_flux, rule_hunyuan, rule_wan, rule_z_image, rule_chroma, rule_sd3, rule_qwen_image, rule_flux2,
    rule_ltx2, rule_vae_kl, rule_vae_svd, rule_vae_wan, rule_vae_causal3d, rule_vae_ltx2,
    rule_clip, rule_t5, rule_decoder_lm,
    rule_lora, rule_embedding, rule_controlnet, rule_t2i_adapter, rule_upscaler_esrgan, rule_upscaler_rrdbnet, rule_upscaler_swinir,
    rule_upscaler_compact, rule_ip_adapter, rule_clip_vision,
)
