"""What a model file is, from its content: kind (checkpoint, LoRA, VAE...), family and variant.

Detection reads key NAMES and tensor SHAPES only (a safetensors header), never file names or folders.
A file is split into components (denoiser, VAE, text encoders) or recognised whole (LoRA, embedding,
upscaler). Each component is claimed by rules (`RULES`, in detect_rules.py): one function per
architecture that extracts facts from marker keys and shapes, and one table per architecture whose rows
are exclusive predicates naming the family. Every rule runs on every file (nothing is order-dependent);
if two rules claim the same role the answer is "unknown" with the candidates listed, and `explain()` lets
tests prove that every real layout is claimed by exactly one rule per component.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from sdcodex.core.enums import EngineKey
from sdcodex.core.errors import ModelLoadError
from sdcodex.models.detect_rules import (  # noqa: F401  (re-exported: rules and tables live there)
    Keys, Found, Row, pick, DENOISER_PREFIXES, VAE_PREFIXES, E, SD_ANY, WAN_A14B, UNET_TABLE, FLUX_TABLE,
    HUNYUAN_TABLE, WAN_TABLE, KL_VAE_TABLE, WAN_VAE_TABLE, CAUSAL3D_VAE_TABLE, CLIP_TABLE, T5_TABLE,
    DECODER_LM_TABLE, LORA_TABLE, RULES, rule_unet, rule_flux, rule_hunyuan, rule_wan, rule_z_image, Z_IMAGE_TABLE, rule_chroma, CHROMA_TABLE, rule_flux2, FLUX2_TABLE, rule_vae_kl,
    rule_vae_svd, rule_vae_wan, rule_vae_causal3d, rule_clip, rule_t5, rule_decoder_lm, rule_lora,
    rule_embedding, rule_upscaler_esrgan, rule_upscaler_rrdbnet, rule_upscaler_swinir, rule_upscaler_compact,
)
from sdcodex.models.fp8_io import is_marker as is_fp8_marker
from sdcodex.models.gguf_io import read_gguf_shapes
from sdcodex.models.safetensors_io import read_header
from sdcodex.models.shapes import architecture_of
from sdcodex.models.weights_io import GGUF_SUFFIXES, storage_facts

KINDS = ("checkpoint", "diffusion_model", "vae", "lora", "text_encoder", "upscaler", "embedding", "controlnet",
         "ip_adapter", "image_encoder", "unknown")
PICKLE_SUFFIXES = {".ckpt": "checkpoint", ".pt": "embedding", ".pth": "upscaler", ".bin": "unknown"}
SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
#: `general.architecture` of ComfyUI-GGUF diffusion models -> family (WAN's "wan" covers three models: not mapped)
GGUF_ARCHITECTURES = {"flux": EngineKey.FLUX, "sd1": EngineKey.SD15, "sdxl": EngineKey.SDXL,
                      "hyvid": EngineKey.HUNYUAN_VIDEO, "qwen_image": EngineKey.QWEN_IMAGE}


@dataclass(frozen=True)
class Detection:
    """What a model file or folder is.

    kind: one of KINDS. family: the engine that runs it, or None when it cannot be told (or when it
    fits several: see `compatible`). prefix: the key prefix tools added that a loader strips from the
    main component (e.g. "model.diffusion_model." for the UNet of an LDM checkpoint). variant: facts
    such as in_channels, inpaint, prediction, guidance_embed, latent_channels, text_encoder.
    compatible: every family the file can be used with (contains `family` when that is set).
    """

    kind: str
    family: EngineKey | None = None
    prefix: str = ""
    variant: Mapping[str, Any] = field(default_factory=dict, hash=False)
    compatible: tuple[EngineKey, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "family": self.family.value if self.family else None, "prefix": self.prefix,
                "variant": dict(self.variant), "compatible": [f.value for f in self.compatible]}




def explain(shapes: Mapping[str, list[int]], metadata: Mapping[str, str] | None = None) -> list[Found]:
    """Every rule that claims part of this key set (used by tests and `models inspect`)."""
    keys = Keys(shapes, metadata)
    found: list[Found] = []
    for rule in RULES:
        found.extend(rule(keys))
    return found


def detect_keys(shapes: Mapping[str, list[int]], metadata: Mapping[str, str] | None = None) -> Detection:
    """Detect kind/family/variant from tensor names -> shapes (plus safetensors metadata)."""
    found = explain(shapes, metadata)
    whole = [f for f in found if f.role == "whole"]
    den = [f for f in found if f.role == "denoiser"]
    vae = [f for f in found if f.role == "vae"]
    te = [f for f in found if f.role == "text_encoder"]
    te_prefixes = Counter(f.prefix for f in te)
    if (len(whole) > 1 or (whole and (den or vae or te)) or len(den) > 1 or len(vae) > 1
            or any(n > 1 for n in te_prefixes.values())):
        return Detection("unknown", variant={"ambiguous": sorted(f.rule for f in found)})
    if whole:
        w = whole[0]
        return Detection(w.kind or "unknown", w.family, w.prefix, dict(w.variant), _compat(w))

    te_map = {f.variant["text_encoder"]: f.prefix for f in sorted(te, key=lambda f: f.prefix)}
    if den:
        d = den[0]
        variant = dict(d.variant)
        has_parts = bool(vae or te)
        if vae:
            variant["vae_prefix"] = vae[0].prefix
            variant["latent_channels"] = vae[0].variant.get("latent_channels")
        if te:
            variant["text_encoders"] = te_map
        return Detection("checkpoint" if has_parts else "diffusion_model", d.family, d.prefix, variant, _compat(d))

    unclaimed_unet = any(k.startswith("model.diffusion_model.") for k in shapes)
    if unclaimed_unet:  # a denoiser we have no rule for (SD3, FLUX.2, ...): say what we can
        variant = {"architecture": "unknown"}
        if te:
            variant["text_encoders"] = te_map
        return Detection("checkpoint" if (vae or te) else "diffusion_model", None, "model.diffusion_model.", variant)
    if vae and not te:
        v = vae[0]
        return Detection("vae", v.family, v.prefix, dict(v.variant), _compat(v))
    if te and not vae:
        if len(te) == 1:
            t = te[0]
            return Detection("text_encoder", t.family, t.prefix, dict(t.variant), _compat(t))
        compat = tuple(sorted({c for t in te for c in _compat(t)}, key=lambda e: e.value))
        return Detection("text_encoder", None, "", {"text_encoders": te_map}, compat)
    if vae and te:
        return Detection("unknown", variant={"components": sorted(f.rule for f in found)})
    return Detection("unknown")


def _compat(f: Found) -> tuple[EngineKey, ...]:
    fams = set(f.compatible)
    if f.family is not None:
        fams.add(f.family)
    return tuple(sorted(fams, key=lambda e: e.value))


def detect_file(path: str | Path) -> Detection:
    """Detect a single model file. safetensors: from its header. Pickle files are never unpickled:
    kind comes from the extension, family is None and variant says {"pickle": True}."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        kind = PICKLE_SUFFIXES[suffix]
        if suffix == ".pt" and p.name.lower().endswith(".vae.pt"):
            kind = "vae"
        return Detection(kind, None, "", {"pickle": True})
    if suffix not in SAFETENSORS_SUFFIXES + GGUF_SUFFIXES:
        raise ModelLoadError(f"{p}: unsupported model file type {suffix!r}",
                             allowed=list(SAFETENSORS_SUFFIXES + GGUF_SUFFIXES) + sorted(PICKLE_SUFFIXES))
    if suffix in GGUF_SUFFIXES:  # names as loaders see them (llama.cpp text-encoder names become HF ones)
        shapes, types, gguf_meta = read_gguf_shapes(p)
        metadata = {k: v for k, v in gguf_meta.items() if isinstance(v, str)}
    else:
        tensors, metadata = read_header(p)
        shapes = {k: v["shape"] for k, v in tensors.items()}
        types = {k: v["dtype"] for k, v in tensors.items()}
    det = detect_keys({k: v for k, v in shapes.items() if not is_fp8_marker(k)}, metadata)
    dtypes = Counter(types.values())
    variant = dict(det.variant)
    if dtypes:
        variant["dtype"] = dtypes.most_common(1)[0][0]
        variant.update(storage_facts(p, shapes, types, metadata))  # quantization, resident_size
        if metadata.get("general.architecture"):
            variant["gguf_architecture"] = metadata["general.architecture"]
            # ComfyUI-GGUF's architecture tag names the family where the shape rules cannot (a narrow model)
            tagged = GGUF_ARCHITECTURES.get(str(metadata["general.architecture"]))
            if det.family is None and tagged is not None and det.kind in ("diffusion_model", "checkpoint"):
                det = Detection(det.kind, tagged, det.prefix, det.variant, (tagged,))
    architecture = architecture_of(shapes, det.kind, det.family, det.prefix, det.variant)
    if architecture:
        variant["architecture"] = architecture
    return Detection(det.kind, det.family, det.prefix, variant, det.compatible)


# ---- diffusers folders -------------------------------------------------------------------------

# model_index.json `_class_name` -> family. Wan pipelines are resolved by `_wan_folder_family`.
PIPELINE_FAMILIES: dict[str, EngineKey] = {
    "StableDiffusionPipeline": EngineKey.SD15,
    "StableDiffusionImg2ImgPipeline": EngineKey.SD15,
    "StableDiffusionInpaintPipeline": EngineKey.SD15,
    "StableDiffusionXLPipeline": EngineKey.SDXL,
    "StableDiffusionXLImg2ImgPipeline": EngineKey.SDXL,
    "StableDiffusionXLInpaintPipeline": EngineKey.SDXL,
    "FluxPipeline": EngineKey.FLUX,
    "FluxImg2ImgPipeline": EngineKey.FLUX,
    "FluxInpaintPipeline": EngineKey.FLUX,
    "FluxFillPipeline": EngineKey.FLUX,
    "StableVideoDiffusionPipeline": EngineKey.SVD,
    "HunyuanVideoPipeline": EngineKey.HUNYUAN_VIDEO,
    "HunyuanVideoImageToVideoPipeline": EngineKey.HUNYUAN_VIDEO,
    "ZImagePipeline": EngineKey.Z_IMAGE,
    "ZImageImg2ImgPipeline": EngineKey.Z_IMAGE,
    "ChromaPipeline": EngineKey.CHROMA,
    "ChromaImg2ImgPipeline": EngineKey.CHROMA,
    "StableDiffusion3Pipeline": EngineKey.SD3,
    "StableDiffusion3Img2ImgPipeline": EngineKey.SD3,
    "StableDiffusion3InpaintPipeline": EngineKey.SD3,
    "QwenImagePipeline": EngineKey.QWEN_IMAGE,
    "QwenImageImg2ImgPipeline": EngineKey.QWEN_IMAGE,
    "QwenImageInpaintPipeline": EngineKey.QWEN_IMAGE,
    # Qwen/Qwen-Image-Edit (one input image) and Qwen-Image-Edit-2509/2511 (one to three): the folder's class
    "QwenImageEditPipeline": EngineKey.QWEN_IMAGE_EDIT,
    "QwenImageEditPlusPipeline": EngineKey.QWEN_IMAGE_EDIT,
    "Flux2Pipeline": EngineKey.FLUX2,
    "Flux2KleinPipeline": EngineKey.FLUX2_KLEIN,
    "LTX2Pipeline": EngineKey.LTX2,
    "LTX2ImageToVideoPipeline": EngineKey.LTX2,
}
WAN_PIPELINES = ("WanPipeline", "WanImageToVideoPipeline")


def _read_json(p: Path) -> dict[str, Any]:
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{p}: cannot read JSON: {exc}") from exc
    return data if isinstance(data, dict) else {}


def _present(index: Mapping[str, Any], component: str) -> bool:
    v = index.get(component)
    return isinstance(v, list) and len(v) == 2 and v[0] is not None and v[1] is not None


def detect_folder(path: str | Path) -> Detection:
    """Detect a diffusers pipeline folder from model_index.json and its component configs."""
    root = Path(path)
    index = _read_json(root / "model_index.json")
    if not index:
        return _detect_component_folder(root)
    cls = str(index.get("_class_name", ""))
    variant: dict[str, Any] = {"pipeline": cls}
    unet = _read_json(root / "unet" / "config.json")
    transformer = _read_json(root / "transformer" / "config.json")
    sched = _read_json(root / "scheduler" / "scheduler_config.json")
    if sched.get("prediction_type") in ("v_prediction", "epsilon"):
        variant["prediction"] = sched["prediction_type"]
    in_ch = unet.get("in_channels", transformer.get("in_channels"))
    if in_ch is not None:
        variant["in_channels"] = in_ch
    family: EngineKey | None = PIPELINE_FAMILIES.get(cls)
    if cls.startswith("HunyuanVideo15"):
        family = EngineKey.HUNYUAN_VIDEO15
    if family is EngineKey.SD15 and is_sd2_folder(root):
        family = EngineKey.SD2
    if family in (EngineKey.SD15, EngineKey.SD2, EngineKey.SDXL) and in_ch == 9:
        variant["inpaint"] = True
    if family is EngineKey.SDXL and not _present(index, "text_encoder") and index.get("requires_aesthetics_score"):
        variant["refiner"] = True
    if family is EngineKey.FLUX:
        variant["guidance_embed"] = bool(transformer.get("guidance_embeds", False))
        if in_ch == 384 or cls == "FluxFillPipeline":
            variant["inpaint"] = True
    if family is EngineKey.SD3:
        variant["model"] = ("sd3_medium" if not transformer.get("qk_norm") else
                            "sd35_medium" if transformer.get("dual_attention_layers") else "sd35_large")
    if family is EngineKey.QWEN_IMAGE_EDIT:
        variant["plus"] = cls == "QwenImageEditPlusPipeline"  # several input images
    if family is EngineKey.FLUX2_KLEIN:
        variant["step_distilled"] = bool(index.get("is_distilled", False))  # model_index.json of the Klein folders
    if cls in WAN_PIPELINES:
        family = _wan_folder_family(root, index, variant)
    return Detection("checkpoint", family, "", variant, (family,) if family else ())


def is_sd2_folder(root: Path) -> bool:
    """An SD1.5-class Diffusers folder is SD 2.x when its UNet's context is OpenCLIP-H's 1024 or its text encoder is
    OpenCLIP's (gelu; CLIP-L, SD1.5's, uses quick_gelu)."""
    unet = _read_json(Path(root) / "unet" / "config.json")
    te = _read_json(Path(root) / "text_encoder" / "config.json")
    return unet.get("cross_attention_dim") == 1024 or te.get("hidden_act") == "gelu"


def _wan_folder_family(root: Path, index: Mapping[str, Any], variant: dict[str, Any]) -> EngineKey | None:
    vae = _read_json(root / "vae" / "config.json")
    two_experts = _present(index, "transformer_2") or index.get("boundary_ratio") is not None
    if vae.get("z_dim") == 48 or index.get("expand_timesteps"):
        variant.update(model_size="5B", task="ti2v", latent_channels=48)
        return EngineKey.WAN22_TI2V_5B
    if two_experts:
        variant.update(model_size="14B", experts=2, latent_channels=16)
        if index.get("_class_name") == "WanImageToVideoPipeline":
            variant["task"] = "i2v"
            return EngineKey.WAN22_I2V_A14B
        variant["task"] = "t2v"
        return EngineKey.WAN22_T2V_A14B
    variant["wan_version"] = "2.1"
    return None


def _detect_component_folder(root: Path) -> Detection:
    """A single diffusers component folder (config.json + weights): kind from its class name."""
    config = _read_json(root / "config.json")
    cls = str(config.get("_class_name") or (config.get("architectures") or [""])[0])
    if not cls:
        return Detection("unknown", variant={"reason": "no model_index.json or config.json"})
    if "ControlNet" in cls:
        return controlnet_folder(config, cls)
    if cls == "T2IAdapter":
        return adapter_folder(config)
    if cls.startswith("Autoencoder"):
        kind = "vae"
    elif "Transformer" in cls or cls.startswith("UNet"):
        kind = "diffusion_model"
    elif cls.startswith("CLIPVision"):
        kind = "image_encoder"
    elif cls.endswith(("TextModel", "EncoderModel", "TextModelWithProjection", "ForCausalLM",
                       "ForConditionalGeneration")):
        kind = "text_encoder"
    else:
        kind = "unknown"
    return Detection(kind, None, "", {"class_name": cls})


#: Diffusers ControlNet classes (a component folder: config.json + weights) -> family
CONTROLNET_CLASSES = {"ControlNetModel": None, "ControlNetUnionModel": EngineKey.SDXL,
                      "FluxControlNetModel": EngineKey.FLUX, "SD3ControlNetModel": EngineKey.SD3,
                      "QwenImageControlNetModel": EngineKey.QWEN_IMAGE, "ZImageControlNetModel": EngineKey.Z_IMAGE}


def controlnet_folder(config: Mapping[str, Any], cls: str) -> Detection:
    """A Diffusers ControlNet folder: the family from its config (SDXL: the text_time ADM embedding; SD 2.x: a
    context width of 1024 or linear attention projections; SD1.5: any other)."""
    variant: dict[str, Any] = {"class_name": cls, "layout": "diffusers"}
    family = CONTROLNET_CLASSES.get(cls)
    if cls == "ControlNetUnionModel" or config.get("num_mode"):
        variant["union"] = True
    if cls in ("ControlNetModel", "ControlNetUnionModel"):
        if config.get("addition_embed_type") == "text_time":
            family = EngineKey.SDXL
        else:  # SD 2.x: OpenCLIP-H context (1024) or linear attention projections (SD 1.5's are convolutions)
            sd2 = config.get("cross_attention_dim") == 1024 or bool(config.get("use_linear_projection"))
            family = EngineKey.SD2 if sd2 else EngineKey.SD15
    elif family is None:
        return Detection("unknown", variant={"class_name": cls, "reason": "a ControlNet of a family Codex does not run"})
    return Detection("controlnet", family, "", variant, (family,) if family else ())


def adapter_folder(config: Mapping[str, Any]) -> Detection:
    """A Diffusers T2I-Adapter folder, listed with the ControlNets (kind `controlnet`, variant `adapter`):
    `full_adapter_xl` is SDXL, `full_adapter` / `light_adapter` SD1.5."""
    kind = str(config.get("adapter_type") or "full_adapter")
    family = EngineKey.SDXL if kind == "full_adapter_xl" else EngineKey.SD15
    return Detection("controlnet", family, "", {"class_name": "T2IAdapter", "layout": "diffusers", "adapter": True,
                                                "adapter_type": kind}, (family,))


def is_controlnet_folder(path: str | Path) -> bool:
    """A folder whose config.json names a Diffusers ControlNet class or a T2I-Adapter (one inventory entry)."""
    try:
        cls = str(_read_json(Path(path) / "config.json").get("_class_name") or "")
    except ModelLoadError:
        return False
    return "ControlNet" in cls or cls == "T2IAdapter"


def detect_path(path: str | Path) -> Detection:
    """detect_folder for a directory, detect_file otherwise."""
    p = Path(path)
    return detect_folder(p) if p.is_dir() else detect_file(p)


__all__ = ["Detection", "KINDS", "detect_keys", "detect_file", "detect_folder", "detect_path", "explain",
           "RULES", "Found"]
