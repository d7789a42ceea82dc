"""Single-file FLUX, WAN, Z-Image, Chroma and SD3 transformers (original layouts, one `LAYOUTS` row each, with or without
ComfyUI/A1111 key prefixes) to a LoadedModel: the transformer is built empty from a config and its converted
weights assigned; WAN A14B experts are paired; the rest of the pipeline comes from separate files and/or a base
Diffusers folder.

The rule for the rest of the pipeline (docs/models.md, "Single transformer files"):
  1. `vae` / `text_encoders` files given in the request are used for their slots (checked by content);
  2. every other component (and the scheduler and tokenizers) comes from a *base*: the first Diffusers folder of the
     same model in the models folder (same family; for FLUX the same dev/schnell type), in name order;
  3. without a base, the file needs its VAE and text encoders as separate files; the scheduler and configs are the
     bundled real-model ones, CLIP's tokenizer is built in and T5/UMT5's is read from models/tokenizers/<name>/.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from sdcodex.core.enums import EngineKey, Prediction
from sdcodex.core.errors import CodexError, ModelLoadError
from sdcodex.models import convert_flow as cv
from sdcodex.models.flow_loader import (KL_VAE_FAMILIES, NEEDS_BASE, TEXT_ENCODER_SLOTS, builtin_tokenizer,
                                        component_path, describe, load_flow_folder, load_ltx2_vae_file,
                                        load_text_encoder_file, load_tokenizer, separate_components,
                                        text_encoder_slot, tokenizer_folder)
from sdcodex.models.build import build_module
from sdcodex.models.loader import LoadedModel, cached_short_hash, load_vae_file, resolve_ref, scheduler_from_config
from sdcodex.models.shapes import HUNYUAN_VIDEO15_TRANSFORMER, HUNYUAN_VIDEO_TRANSFORMER
from sdcodex.models.shapes import summary as architecture_summary
from sdcodex.models.model_configs import CONFIG_ROOT, bundled, config_beside, configs_from
from sdcodex.models.safetensors_io import TensorView, open_mapped, read_shapes

E = EngineKey
#: input channels of each WAN 2.2 model's patch embedding (latents, + mask and image latents for i2v)
WAN_IN_CHANNELS = {E.WAN22_TI2V_5B: 48, E.WAN22_T2V_A14B: 16, E.WAN22_I2V_A14B: 36}
TWO_EXPERTS = (E.WAN22_T2V_A14B, E.WAN22_I2V_A14B)
#: the naming rule that pairs A14B experts: "...high_noise..." <-> "...low_noise..." in one folder
NOISE_MARK = re.compile(r"(high|low)(?=[_\-. ]?noise)", re.IGNORECASE)
SAFETENSORS = (".safetensors", ".sft")
WEIGHT_FILES = SAFETENSORS + (".gguf",)
BASE_SEARCH_DEPTH = 3
#: the published transformer config of families with no bundled configs (the base folder's config comes first)
STARTING_CONFIGS = {E.HUNYUAN_VIDEO: HUNYUAN_VIDEO_TRANSFORMER, E.HUNYUAN_VIDEO15: HUNYUAN_VIDEO15_TRANSFORMER}


@dataclass(frozen=True)
class Layout:
    """An original single-file transformer layout: the keys that mark it (prefix stripped; `absent` keys must not
    be there), the family it is for (None: decided from the shapes, WAN), and how it becomes a Diffusers module."""

    name: str
    markers: tuple[str, ...]
    model_class: str
    config: Callable[[Mapping[str, Any], Mapping[str, Any]], dict[str, Any]]
    convert: Callable[[Mapping[str, torch.Tensor], Mapping[str, Any]], dict[str, torch.Tensor]]
    family: E | None = None
    absent: tuple[str, ...] = ()
    rows: Mapping[str, Any] | None = None  # the conversion table, so a shape error can name the file's tensor
    also: tuple[E, ...] = ()  # other families a file of this layout loads as when asked (same tensors)


#: one row per single-file transformer layout; a new family adds its row here
LAYOUTS: tuple[Layout, ...] = (
    Layout("flux", ("double_blocks.0.img_attn.qkv.weight", "img_in.weight"), "FluxTransformer2DModel",
           cv.flux_config, cv.convert_flux, E.FLUX,
           absent=("distilled_guidance_layer.in_proj.weight", "single_stream_modulation.lin.weight"),
           rows=cv.FLUX_ROWS),
    # lodestones' BFL layout with the distilled guidance approximator (Chroma1-HD.safetensors)
    Layout("chroma", ("double_blocks.0.img_attn.qkv.weight", "img_in.weight", "distilled_guidance_layer.in_proj.weight"),
           "ChromaTransformer2DModel", cv.chroma_config, cv.convert_chroma, E.CHROMA, rows=cv.CHROMA_ROWS),
    # FLUX.2 in BFL's layout (flux2-dev.safetensors, flux-2-klein-*.safetensors, ComfyUI diffusion_models/): the
    # guidance embedding tells dev from Klein
    Layout("flux2", ("single_stream_modulation.lin.weight", "img_in.weight", "guidance_in.in_layer.weight"),
           "Flux2Transformer2DModel", cv.flux2_config, cv.convert_flux2, E.FLUX2, rows=cv.FLUX2_ROWS),
    Layout("flux2_klein", ("single_stream_modulation.lin.weight", "img_in.weight"), "Flux2Transformer2DModel",
           cv.flux2_config, cv.convert_flux2, E.FLUX2_KLEIN, absent=("guidance_in.in_layer.weight",),
           rows=cv.FLUX2_ROWS),
    # Tencent's layout: hunyuan_video_t2v_720p_bf16.safetensors / hunyuan_video_image_to_video_720p_bf16.safetensors
    # (ComfyUI diffusion_models/), city96's HunyuanVideo GGUFs; 1.5 adds a condition-type embedding
    Layout("hunyuan_video", ("double_blocks.0.img_attn_qkv.weight", "img_in.proj.weight",
                             "txt_in.individual_token_refiner.blocks.0.norm1.weight"), "HunyuanVideoTransformer3DModel",
           cv.hunyuan_video_original_config, cv.convert_hunyuan_video, E.HUNYUAN_VIDEO,
           absent=("cond_type_embedding.weight",), rows=cv.HUNYUAN_VIDEO_ROWS),
    Layout("hunyuan_video15", ("double_blocks.0.img_attn_q.weight", "img_in.proj.weight", "cond_type_embedding.weight"),
           "HunyuanVideo15Transformer3DModel", cv.hunyuan_video15_original_config, cv.convert_hunyuan_video15,
           E.HUNYUAN_VIDEO15, rows=cv.HUNYUAN_VIDEO15_ROWS),
    Layout("wan", ("head.modulation", "patch_embedding.weight"), "WanTransformer3DModel", cv.wan_config,
           lambda view, config: cv.convert_wan(view), rows=cv.WAN_ROWS),
    # Tongyi-MAI's layout, ComfyUI's split_files/diffusion_models/z_image_turbo_bf16.safetensors
    Layout("z_image", ("cap_embedder.1.weight", "noise_refiner.0.attention.qkv.weight", "x_embedder.weight"),
           "ZImageTransformer2DModel", cv.z_image_config, cv.convert_z_image, E.Z_IMAGE, rows=cv.Z_IMAGE_ROWS),
    # Stability's layout: stabilityai/stable-diffusion-3.5-large sd3.5_large.safetensors (and 3.5 Medium, SD3 Medium)
    Layout("sd3", ("joint_blocks.0.x_block.attn.qkv.weight", "x_embedder.proj.weight"), "SD3Transformer2DModel",
           cv.sd3_config, cv.convert_sd3, E.SD3, rows=cv.SD3_ROWS),
    # Qwen/Qwen-Image transformer/ and ComfyUI's qwen_image_bf16.safetensors: already the Diffusers names
    # Qwen-Image-Edit (-2509, -2511) transformers are the same tensors: asked as qwen_image_edit, the file takes an
    # Edit folder as its base (its pipeline class, processor and transformer config: 2511's zero_cond_t)
    Layout("qwen_image", ("txt_norm.weight", "img_in.weight", "transformer_blocks.0.img_mod.1.weight"),
           "QwenImageTransformer2DModel", cv.qwen_image_config, lambda view, config: dict(view), E.QWEN_IMAGE,
           also=(E.QWEN_IMAGE_EDIT,)),
    # Lightricks' layout: ltx-2-19b-dev.safetensors (and -distilled, -fp8) under model.diffusion_model. — the
    # transformer only; the connectors, VAEs, vocoder, Gemma 3 and scheduler come from an LTX-2 Diffusers folder
    Layout("ltx2", ("av_ca_a2v_gate_adaln_single.emb.timestep_embedder.linear_1.weight", "audio_patchify_proj.weight"),
           "LTX2VideoTransformer3DModel", cv.ltx2_config, cv.convert_ltx2, E.LTX2),
)
LAYOUT_NAMES = tuple(layout.name for layout in LAYOUTS)


def layout_named(name: str) -> Layout:
    return next(layout for layout in LAYOUTS if layout.name == name)


def transformer_layout(path: Path, shapes: Mapping[str, Any]) -> tuple[str, str]:
    """(layout name, key prefix) of a transformer file in an original layout (see LAYOUTS)."""
    for prefix in cv.TRANSFORMER_PREFIXES:
        for layout in LAYOUTS:
            if (all(f"{prefix}{m}" in shapes for m in layout.markers)
                    and not any(f"{prefix}{a}" in shapes for a in layout.absent)):
                return layout.name, prefix
    raise ModelLoadError(f"{path}: not a single-file transformer in a layout this app converts "
                         f"({', '.join(LAYOUT_NAMES)}); other single-file flow models load as Diffusers folders",
                         field="model", allowed=list(LAYOUT_NAMES))


def file_family(path: Path, layout: str, shapes: Mapping[str, Any], prefix: str, wanted: E | None) -> E:
    """The engine a transformer file is for: from its layout (FLUX, Z-Image); WAN from its input channels."""
    fixed = layout_named(layout).family
    if wanted is not None and wanted in layout_named(layout).also:
        return wanted
    if fixed is not None:
        fam = fixed
    else:
        in_ch = shapes[f"{prefix}patch_embedding.weight"][1]
        fits = [f for f, c in WAN_IN_CHANNELS.items() if c == in_ch]
        if wanted is not None and wanted in WAN_IN_CHANNELS:
            if wanted not in fits:
                raise ModelLoadError(f"{path}: a WAN transformer with {in_ch} input channels cannot be loaded as "
                                     f"{wanted.value} (it takes {WAN_IN_CHANNELS[wanted]})", field="family",
                                     allowed=[f.value for f in fits])
            return wanted
        if not fits:
            raise ModelLoadError(f"{path}: a WAN transformer with {in_ch} input channels is not a WAN 2.2 model "
                                 "this app runs", field="family", allowed=[f.value for f in WAN_IN_CHANNELS])
        fam = fits[0]
    if wanted is not None and wanted != fam:
        raise ModelLoadError(f"{path}: this is a {fam.value} transformer, it cannot be loaded as {wanted.value}",
                             field="family", allowed=[fam.value])
    return fam


def expert_pair(path: Path, explicit: Path | None = None) -> tuple[Path, Path]:
    """(high-noise, low-noise) expert files of a WAN A14B model.

    With `explicit`, the two files are the pair; a noise mark in a name says which is which, otherwise `path` is the
    high-noise one. Without it, `path`'s name must carry `high_noise` or `low_noise` and the partner is the same
    name with the other mark in the same folder (e.g. wan2.2_t2v_high_noise_14B_fp16.safetensors).
    """
    m = NOISE_MARK.search(path.name)
    if explicit is not None:
        low_first = bool(m and m.group(1).lower() == "low")
        return (explicit, path) if low_first else (path, explicit)
    if m is None:
        raise ModelLoadError(f"{path}: a WAN A14B model has two experts; name the files *high_noise* and *low_noise* "
                             "in one folder (or pass transformer_2)", field="model")
    mark = m.group(1)
    other = "low" if mark.lower() == "high" else "high"
    other = other.upper() if mark.isupper() else other.title() if mark.istitle() else other
    partner = path.with_name(path.name[:m.start(1)] + other + path.name[m.end(1):])
    if not partner.is_file():
        raise ModelLoadError(f"{path}: its {other.lower()}-noise expert {partner.name} is not in {path.parent}",
                             field="model")
    return (path, partner) if mark.lower() == "high" else (partner, path)


def _model_indexes(root: Path, depth: int = BASE_SEARCH_DEPTH) -> list[Path]:
    found = []
    for folder, dirs, files in os.walk(root):
        rel = Path(folder).relative_to(root)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if len(rel.parts) < depth else []
        if "model_index.json" in files:
            found.append(Path(folder))
            dirs[:] = []
    return sorted(found, key=lambda p: str(p).lower())


def find_base(family: E, models_dir: str | Path | None, guidance: bool | None = None,
              transformer: Mapping[str, Any] | None = None) -> Path | None:
    """The first Diffusers folder of the same model in the models folder (FLUX: same dev/schnell type; with
    `transformer`, one whose transformer config has those values: HunyuanVideo-I2V's input channels, HunyuanVideo
    1.5's t2v/i2v task), or None."""
    from sdcodex.models.detect import detect_folder

    root = Path(models_dir) if models_dir else Path("models")
    if not root.is_dir():
        return None
    for folder in _model_indexes(root):
        try:
            det = detect_folder(folder)
        except CodexError:
            continue
        if det.family is not family:
            continue
        if guidance is not None and bool(det.variant.get("guidance_embed")) != guidance:
            continue
        have = configs_from(folder).get("transformer") or {} if transformer else {}
        if any(have.get(k) != v for k, v in (transformer or {}).items()):
            continue
        return folder
    return None


def build_transformer(path: Path, layout: str, base_config: Mapping[str, Any], dtype: torch.dtype | None,
                      device: str) -> torch.nn.Module:
    """The layout's Diffusers transformer built empty from the config the file implies, its weights converted."""
    handle = open_mapped(path)
    keys = handle.keys()
    shapes = {k: handle.shape(k) for k in keys}
    found, prefix = transformer_layout(path, shapes)
    if found != layout:
        raise ModelLoadError(f"{path}: a {found} transformer, not a {layout} one", field="model")
    row = layout_named(layout)
    keymap = cv.strip_prefix(keys, prefix)
    local_shapes = {k: shapes[v] for k, v in keymap.items()}
    view = TensorView(handle, keymap, dtype)
    try:
        config = row.config(local_shapes, base_config)
        state = row.convert(view, config)
    except ModelLoadError as exc:
        raise ModelLoadError(f"{path}: {exc.message}", field=exc.field) from exc
    names = {dst: keymap[src] for src, dsts, _ in cv.plan(list(keymap), row.rows)[0] for dst in dsts} \
        if row.rows else None
    return build_module(row.model_class, config, state, source=path, component="transformer", device=device,
                        names=names)


def _tokenizers(family: E, models_dir: str | Path | None) -> dict[str, Any]:
    from sdcodex.models.tokenizers import clip_tokenizer

    if family is E.FLUX:  # CLIP's tokenizer is built in; every other tokenizer comes from models/tokenizers/
        return {"tokenizer": clip_tokenizer(),
                "tokenizer_2": load_tokenizer(tokenizer_folder(family, "tokenizer_2", models_dir))}
    if family is E.SD3:  # both CLIP tokenizers built in (CLIP-G pads with "!"), T5's from models/tokenizers/
        return {"tokenizer": builtin_tokenizer(family, "tokenizer"), "tokenizer_2": builtin_tokenizer(family, "tokenizer_2"),
                "tokenizer_3": load_tokenizer(tokenizer_folder(family, "tokenizer_3", models_dir))}
    return {"tokenizer": load_tokenizer(tokenizer_folder(family, "tokenizer", models_dir))}


def load_single_file(path: Path, *, wanted: E | None, text_encoders: list[str], vae: str | Path | None,
                     dtype: torch.dtype | None, device: str, models_dir: str | Path | None,
                     configs: Mapping[str, dict], transformer_2: str | Path | None = None) -> LoadedModel:
    """A FLUX, WAN, Z-Image or Chroma single transformer file (+ its A14B partner) and the rest of its pipeline."""
    if not path.is_file():
        raise ModelLoadError(f"{path}: model file not found", field="model")
    if path.suffix.lower() not in WEIGHT_FILES:
        raise ModelLoadError(f"{path}: single-file transformers load from .safetensors and .gguf files only",
                             field="model", allowed=list(WEIGHT_FILES))
    shapes = read_shapes(path)[0]
    layout, prefix = transformer_layout(path, shapes)
    guidance = f"{prefix}guidance_in.in_layer.weight" in shapes if layout == "flux" else None
    family = file_family(path, layout, shapes, prefix, wanted)
    experts = [path]
    if family in TWO_EXPERTS:
        explicit = resolve_ref(transformer_2, models_dir) if transformer_2 is not None else None
        experts = list(expert_pair(path, explicit))
    base = find_base(family, models_dir, guidance, base_wants(path, family, shapes, prefix))
    beside, beside_source = config_beside(path, family.value)
    cfgs = {**(configs_from(base) if base else {}), **beside, **dict(configs)}
    schnell = layout == "flux" and not guidance
    given = {"vae"} if vae is not None else set()
    inside = embedded_parts(path, family)
    given |= set(inside)
    tokenizers: dict[str, Any] = {}
    if base is None and (family not in TEXT_ENCODER_SLOTS or family in NEEDS_BASE
                         or not (CONFIG_ROOT / family.value).is_dir()):
        why = ("separate `text_encoders` / `vae` files replace that folder's parts" if family in NEEDS_BASE else
               f"separate text-encoder files are not supported for {family.value} yet")
        raise ModelLoadError(f"{path}: a single {family.value} transformer file takes its text encoder, VAE and "
                             f"scheduler from a {family.value} Diffusers folder in the models folder ({why}); put one "
                             "there", field="model")
    if base is None:
        # say what is missing before any weights are read (tokenizers, then components)
        tokenizers = _tokenizers(family, models_dir)
        slots: set[str] = set()
        for i, ref in enumerate(text_encoders):
            slots.add(text_encoder_slot(family, component_path(ref, "text_encoder", models_dir), f"text_encoders[{i}]",
                                        taken=slots)[0])
        missing = [s for s in ["vae", *TEXT_ENCODER_SLOTS[family]] if s not in given | slots]
        if missing:
            takes = " + ".join(n for names, _, _ in TEXT_ENCODER_SLOTS[family].values() for n in names)
            raise ModelLoadError(
                f"{path}: a single {family.value} transformer file needs {', '.join(missing)}: give them as `vae` / "
                f"`text_encoders` files ({takes} for {family.value}), or put a {family.value} Diffusers folder in the "
                "models folder to take them from", field="text_encoders" if any(s.startswith("text") for s in missing)
                else "vae")
    tr_config = (cfgs.get("transformer") or bundled(family, "transformer_schnell" if schnell else "transformer")
                 or STARTING_CONFIGS[family])
    components: dict[str, Any] = {"transformer": build_transformer(experts[0], layout, tr_config, dtype, device)}
    if len(experts) == 2:
        components["transformer_2"] = build_transformer(experts[1], layout, tr_config, dtype, device)
        a, b = (dict(components[n].config) for n in ("transformer", "transformer_2"))
        if a["in_channels"] != b["in_channels"] or a["num_layers"] != b["num_layers"]:
            raise ModelLoadError(f"{experts[1]}: not the partner expert of {experts[0]} (its shapes differ)",
                                 field="model")
    components.update(separate_components(family, text_encoders, vae, cfgs, dtype, device, models_dir))
    for slot, part_prefix in inside.items():  # the file's own VAE / text encoders, unless a request file replaced them
        if slot in components:
            continue
        cfg = dict(cfgs.get(slot) or bundled(family, slot) or {})
        if slot == "vae" and family is E.LTX2:
            components[slot] = load_ltx2_vae_file(path, cfg, dtype, device)
        elif slot == "vae":
            components[slot] = load_vae_file(path, cfg, dtype, device)
        else:
            components[slot] = load_text_encoder_file(path, TEXT_ENCODER_SLOTS[family][slot][2], part_prefix, cfg,
                                                      dtype, device)
    official = bundled(family, "transformer_schnell" if schnell else "transformer") or STARTING_CONFIGS.get(family, {})
    read = {"transformer": architecture_summary(layout, "flux" if layout == "flux" else family.value,
                                                     dict(components["transformer"].config), official)}
    variant: dict[str, Any] = {"format": "single_file", "layout": layout, "prefix": prefix, "architecture": read,
                               "embedded": sorted(inside),
                               "config_source": "configs" if configs else beside_source or (
                                   f"shapes over {base}" if base and "transformer" in cfgs else "shapes"),
                               "files": [str(p) for p in experts], "separate_files": sorted(
                                   k for k in components if not k.startswith("transformer"))}
    if base is not None:
        loaded = load_flow_folder(base, family=family, dtype=dtype, device=device, models_dir=models_dir,
                                  overrides=components)
        loaded.variant.update(variant, base=str(base))
        loaded.name, loaded.path, loaded.short_hash = path.stem, path, cached_short_hash(path, models_dir)
        loaded.variant = describe(family, loaded.components, loaded.variant)
        return loaded
    sched_cfg = dict(cfgs.get("scheduler") or bundled(family, "scheduler_schnell" if schnell else "scheduler"))
    components["scheduler"] = scheduler_from_config(sched_cfg)
    components.update(tokenizers)
    index = bundled_index(family)
    for name in ("boundary_ratio", "expand_timesteps"):
        if index.get(name) is not None:
            components[name] = index[name]
    if index.get("_class_name") == "WanImageToVideoPipeline":
        components.update(image_encoder=None, image_processor=None)
    variant["pipeline"] = index.get("_class_name")
    return LoadedModel(name=path.stem, path=path, family=family, components=components,
                       prediction=Prediction.FLOW, variant=describe(family, components, variant),
                       dtype=components["transformer"].dtype, short_hash=cached_short_hash(path, models_dir),
                       scheduler_config={**sched_cfg, "_class_name": type(components["scheduler"]).__name__})


def base_wants(path: Path, family: E, shapes: Mapping[str, Any], prefix: str) -> dict[str, Any] | None:
    """What a HunyuanVideo file needs of its base's transformer: as many input channels (an I2V file, 2 x out + 1,
    takes the HunyuanVideo-I2V folder); for 1.5, whose t2v and i2v transformers have the same shapes, the task its
    name says (`..._i2v_...` / `..._t2v_...`, as Tencent and ComfyUI name them), if it says one."""
    if family not in STARTING_CONFIGS:
        return None
    wants: dict[str, Any] = {"in_channels": shapes[f"{prefix}img_in.proj.weight"][1]}
    task = re.search(r"(?<![a-z0-9])([it]2v)(?![a-z0-9])", path.name.lower())
    if family is E.HUNYUAN_VIDEO15 and task:
        wants["task_type"] = task.group(1)
    return wants


def embedded_parts(path: Path, family: E) -> dict[str, str]:
    """{slot: key prefix} of the VAE and text encoders a transformer file carries itself (sd3.5_large.safetensors
    holds its VAE under first_stage_model.; ComfyUI's all-in-one files add text_encoders.<name>.transformer.). A text
    encoder of no known size is named by that ComfyUI prefix."""
    from sdcodex.models.detect import explain

    out: dict[str, str] = {}
    slots = TEXT_ENCODER_SLOTS.get(family, {})
    shapes = read_shapes(path)[0]
    for found in explain(shapes):
        if found.role == "vae" and family in KL_VAE_FAMILIES:
            out["vae"] = found.prefix
        elif found.role == "vae" and family is E.LTX2 and f"{found.prefix}decoder.conv_in.conv.weight" in shapes:
            out["vae"] = found.prefix  # ltx-2-19b-*.safetensors carries its video VAE under vae. (not just its stats)
        elif found.role == "text_encoder":
            name = str(found.variant.get("text_encoder"))
            m = re.match(r"text_encoders\.(\w+)\.", found.prefix)
            if name == "unknown" and m:
                name = m.group(1)
            slot = next((s for s, (names, _, _) in slots.items() if name in names), None)
            if slot is not None:
                out[slot] = found.prefix
    return out


def bundled_index(family: E) -> dict[str, Any]:
    """The bundled model_index.json of a family: pipeline class, boundary_ratio, expand_timesteps."""
    return json.loads((CONFIG_ROOT / family.value / "model_index.json").read_text())


__all__ = ["load_single_file", "expert_pair", "find_base", "transformer_layout", "file_family", "build_transformer",
           "Layout", "LAYOUTS", "layout_named",
           "WAN_IN_CHANNELS", "NOISE_MARK", "embedded_parts"]
