"""LoRA for the Diffusers engines: `<lora:name:weight>` prompt tags and the `loras` request key are resolved
in the models folder, merged into the model's weights for ONE run and restored bit-exactly afterwards.

Formats: A1111/kohya (`lora_unet_*`, `lora_te_*`, `lora_te1_*`, `lora_te2_*`, Diffusers or SGM block names),
Diffusers/PEFT (`unet.*.lora_A/B`, `text_encoder.*`, `transformer.*`, old `*.processor.to_q_lora.down`).
FLUX / FLUX.2 LoRAs with BFL module names, WAN LoRAs with Wan-Video names (kohya flat or ComfyUI dotted) and LTX-2
LoRAs with Lightricks' names are mapped with our single-file converter tables (lora_flow, convert_flow); other
layouts of the flow families (Qwen-Image's ComfyUI/kohya/bare Lightning files, Diffusers names under
`diffusion_model.`) go through Diffusers' own `lora_state_dict` for that family.
The merge is ours: W += weight * alpha/rank * up @ down; the touched weights are copied before and copied back
after the run, so nothing leaks into the next request (A1111 does the same with its weight backups).
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch

from sdcodex.core.errors import CodexError, ValidationError
from sdcodex.core.prompt_syntax import LORA_TAG
from sdcodex.engines.lora_flow import (  # noqa: F401  (FLUX/WAN original-layout mapping)
    _SUFFIXES, _from_original_layout, _other_original_layout,
)
from sdcodex.models import quantized

log = logging.getLogger("sdcodex.lora")

_COMPONENT_PREFIXES = (  # key prefix -> pipeline component (longest first)
    ("lora_te2_", "text_encoder_2"), ("lora_te1_", "text_encoder"), ("lora_te_", "text_encoder"),
    ("lora_unet_", "denoiser"), ("lora_transformer_", "denoiser"),
    ("text_encoder_2.", "text_encoder_2"), ("text_encoder.", "text_encoder"), ("unet.", "denoiser"),
    ("transformer.", "denoiser"), ("diffusion_model.", "denoiser"), ("base_model.model.", "denoiser"),
    ("connectors.", "connectors"),  # LTX-2's text connectors (Lightricks' text_embedding_projection, see lora_flow)
)
_UNSUPPORTED = (".hada_w1_a", ".lokr_w1", ".lora_mid.", "dora_scale", "lora_magnitude_vector")
_FLOW_FAMILIES = ("flux", "wan22_ti2v_5b", "wan22_t2v_a14b", "wan22_i2v_a14b", "hunyuan_video", "z_image", "chroma",
                  "flux2", "flux2_klein", "qwen_image", "qwen_image_edit", "ltx2")
#: Diffusers' LoRA converter of a flow family (other layouts than the original one); WAN's by default
_LORA_MIXINS = {"flux": "FluxLoraLoaderMixin", "chroma": "FluxLoraLoaderMixin",
                "hunyuan_video": "HunyuanVideoLoraLoaderMixin", "z_image": "ZImageLoraLoaderMixin",
                "flux2": "Flux2LoraLoaderMixin", "flux2_klein": "Flux2LoraLoaderMixin",
                "qwen_image": "QwenImageLoraLoaderMixin", "qwen_image_edit": "QwenImageLoraLoaderMixin",
                "ltx2": "LTX2LoraLoaderMixin"}


@dataclass
class LoraUse:
    """One LoRA asked for: by the `loras` key or a prompt tag. `unet_weight` None = same as `weight`."""

    name: str
    weight: float = 1.0
    unet_weight: float | None = None
    field: str = "prompt"
    path: Path | None = None
    entry: Any = None


@dataclass
class LoraReport:
    applied: list[dict[str, Any]] = field(default_factory=list)
    hashes: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------------------ prompt syntax
def _number(text: str | None, default: float | None, tag: str) -> float | None:
    if text is None or text.strip() == "":
        return default
    try:
        return float(text)
    except ValueError:
        raise ValidationError(f"LoRA tag {tag!r}: weight {text!r} is not a number", field="prompt",
                              allowed="<lora:name:weight> or <lora:name:te_weight:unet_weight>") from None


def parse_prompt(prompt: str) -> tuple[str, list[LoraUse]]:
    """Strip `<lora:name[:weight[:unet_weight]]>` tags from a prompt; returns (clean prompt, uses)."""
    uses: list[LoraUse] = []
    for m in LORA_TAG.finditer(prompt or ""):
        name = m.group(1).strip()
        weight = _number(m.group(2), 1.0, m.group(0))
        uses.append(LoraUse(name, float(weight), _number(m.group(3), None, m.group(0)), "prompt"))
    clean = LORA_TAG.sub("", prompt or "")
    clean = re.sub(r"\s*,(\s*,)+", ",", re.sub(r"[ \t]{2,}", " ", clean)).strip().strip(",").strip()
    return clean, uses


def requested(prompt: str, loras: list[dict[str, Any]] | None) -> tuple[str, list[LoraUse]]:
    """All LoRAs a request asks for: the `loras` key first, then the prompt's tags; and the clean prompt."""
    uses = [LoraUse(str(d["name"]), float(d.get("weight", 1.0)), None, f"loras[{i}].name")
            for i, d in enumerate(loras or [])]
    clean, tags = parse_prompt(prompt)
    return clean, uses + tags


# ------------------------------------------------------------------------------------------------ resolving
def inventory_of(provider: Any) -> Any:
    """The models-folder inventory behind a model provider (LocalModels), else the default folder's."""
    inv = getattr(provider, "inventory", None)
    if inv is not None:
        return inv
    from sdcodex.models.inventory import Inventory

    return Inventory()


def resolve_file(provider: Any, name: str, kind: str, field_: str, family: str | None) -> Any:
    """The inventory entry of a LoRA/embedding `name` (name, file name, path); errors list what exists."""
    inv = inventory_of(provider)
    for attempt in range(2):
        try:
            return inv.resolve(name, kind=kind)
        except CodexError as exc:
            if attempt == 0:
                inv.scan()  # a file may have been added since the last scan
                continue
            names = sorted({e.name for e in inv.entries(kind) if family is None or e.family is None
                            or e.fits(kind, family)}, key=str.lower)
            what = {"lora": "LoRA", "embedding": "embedding"}.get(kind, kind)
            raise ValidationError(f"unknown {what} {name!r} in {inv.models_dir}", field=field_,
                                  allowed=names) from exc
    raise AssertionError("unreachable")


def check_family(entry: Any, family: str, field_: str, what: str = "LoRA") -> None:
    """A file detected as another family is refused with a message naming both families."""
    fam = getattr(entry, "family", None)
    if fam is None or entry.fits(None, family):
        return
    raise ValidationError(f"{what} {entry.name!r} is for {fam.value} models; this model is {family}",
                          field=field_, allowed=[family])


def addnet_hash(path: Path) -> str:
    """A1111's LoRA hash for safetensors: sha256 of the data after the header (first 12 hex are shown)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        if path.suffix.lower() == ".safetensors":
            header = int.from_bytes(fh.read(8), "little")
            fh.seek(8 + header)
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


_HASHES: dict[tuple[str, int, int], str] = {}


def short_hash(path: Path) -> str:
    stat = path.stat()
    key = (str(path), stat.st_size, int(stat.st_mtime_ns))
    if key not in _HASHES:
        _HASHES[key] = addnet_hash(path)[:12]
    return _HASHES[key]


def list_loras(provider: Any, family: str | None = None) -> list[dict[str, Any]]:
    """A1111 `/sdapi/v1/loras` entries: name, alias, path and the file's safetensors metadata."""
    from sdcodex.models.networks import a1111_loras

    return a1111_loras(inventory_of(provider), family)


# ------------------------------------------------------------------------------------------------ key mapping
def _flat(name: str) -> str:
    return name.replace(".", "_")


def _module_index(model: Any, component: str, module: torch.nn.Module) -> dict[str, str]:
    """flat name -> module name for every module of a component (cached on the loaded model).

    Text encoders are indexed with and without `text_model.`; a UNet also under its SGM/LDM names
    (input_blocks.4.1...), which kohya SDXL files use."""
    cache = model.__dict__.setdefault("_lora_index", {})
    if component in cache:
        return cache[component]
    names = [n for n, m in module.named_modules() if n and isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    index: dict[str, str] = {}
    for n in names:
        index[_flat(n)] = n
        index[n] = n
        if n.startswith("text_model."):
            index[_flat(n[len("text_model."):])] = n
        elif component.startswith("text_encoder"):
            index["text_model_" + _flat(n)] = n
    if component == "denoiser" and type(module).__name__ == "UNet2DConditionModel":
        from sdcodex.models.convert_ldm import _rename_parts, unet_table

        for ldm_prefix, (diff_prefix, renames) in unet_table(dict(module.config)).items():
            inverse = {new: old for old, new in renames.items()}
            for n in names:
                if n.startswith(diff_prefix + "."):
                    rest = _rename_parts(n[len(diff_prefix) + 1:], inverse)
                    index.setdefault(_flat(f"{ldm_prefix}.{rest}"), n)
    cache[component] = index
    return index


def _split_key(key: str) -> tuple[str, str, str] | None:
    """'lora_unet_x_y.lora_down.weight' -> ('denoiser', 'x_y', 'down'); None for keys that are not adapters."""
    role = next((r for suffix, r in _SUFFIXES.items() if key.endswith(suffix)), None)
    if role is None:
        return None
    stem = key[: -len(next(s for s in _SUFFIXES if key.endswith(s)))]
    component = next(((c, stem[len(p):]) for p, c in _COMPONENT_PREFIXES if stem.startswith(p)), None)
    if component is None:
        return None
    comp, rest = component
    if ".processor." in rest:  # Diffusers' first format: <attn>.processor.to_q_lora / to_out_lora (suffix gone)
        rest = re.sub(r"\.to_out$", ".to_out.0", rest.replace(".processor.", "."))
    return comp, rest, role


def _normalise_flow(state: dict[str, torch.Tensor], family: str, use: LoraUse) -> dict[str, torch.Tensor]:
    """FLUX/WAN files in other layouts (xlabs, ...) -> Diffusers `transformer.*.lora_A/B` via Diffusers' converters."""
    from diffusers import loaders

    mixin = _LORA_MIXINS.get(family, "WanLoraLoaderMixin")
    try:
        out = getattr(loaders, mixin).lora_state_dict(dict(state))
    except Exception as exc:  # noqa: BLE001 - a layout Diffusers cannot read either
        raise ValidationError(f"LoRA {use.name!r} does not fit this {family} model: its layout is not one this app or "
                              f"Diffusers reads for {family} ({str(exc)[:200]}); it may be for another model family",
                              field=use.field, allowed=[family]) from exc
    converted = out[0] if isinstance(out, tuple) else out
    alphas = out[1] if isinstance(out, tuple) and len(out) > 1 and isinstance(out[1], dict) else {}
    converted = dict(converted)
    for key, value in (alphas or {}).items():
        converted[key if key.endswith(".alpha") else key + ".alpha"] = torch.as_tensor(value)
    return converted


def _delta(up: torch.Tensor, down: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    up, down = up.float(), down.float()
    if target.ndim == 4:  # conv: (out, r, 1, 1) @ (r, in, kh, kw)
        out = up.flatten(1) @ down.flatten(1)
        return out.reshape(target.shape)
    return up @ down


# ------------------------------------------------------------------------------------------------ applying
def _components(model: Any) -> dict[str, torch.nn.Module]:
    comps = model.components
    denoiser = comps.get("unet") if comps.get("unet") is not None else comps.get("transformer")
    out = {"denoiser": denoiser, "text_encoder": comps.get("text_encoder"), "text_encoder_2": comps.get("text_encoder_2"),
           "connectors": comps.get("connectors")}
    return {k: v for k, v in out.items() if v is not None}


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    if path.suffix.lower() not in (".safetensors", ".sft"):
        raise ValidationError(f"{path.name}: only .safetensors LoRA files are loaded (pickle files can run code)",
                              field="loras", allowed=[".safetensors"])
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device="cpu") as fh:
        return {k: fh.get_tensor(k) for k in fh.keys()}, dict(fh.metadata() or {})


_METADATA_PREFIXES = {"denoiser": ("unet.", "transformer."), "text_encoder": ("text_encoder.",),
                      "text_encoder_2": ("text_encoder_2.",)}


def _peft_scale(meta: dict[str, str], component: str) -> float | None:
    """alpha / r from `lora_adapter_metadata`: a model's save_lora_adapter writes its LoraConfig as is, a pipeline's
    save_lora_weights packs each component's under its prefix (`unet.lora_alpha`, `text_encoder.r`)."""
    raw = meta.get("lora_adapter_metadata")
    if not raw:
        return None
    try:
        cfg = json.loads(raw)
        for prefix in _METADATA_PREFIXES.get(component, ()):
            if f"{prefix}r" in cfg:
                return float(cfg[f"{prefix}lora_alpha"]) / float(cfg[f"{prefix}r"])
        return float(cfg["lora_alpha"]) / float(cfg["r"])
    except (ValueError, KeyError, TypeError, ZeroDivisionError):
        return None


def plan_merge(model: Any, family: str, use: LoraUse) -> list[tuple[torch.nn.Module, torch.Tensor]]:
    """(module, delta at weight 1 x te/unet weight) for every layer the LoRA touches; refuses what cannot fit."""
    assert use.path is not None
    state, meta = _read(use.path)
    bad = next((k for k in state if any(m in k for m in _UNSUPPORTED)), None)
    if bad is not None:
        raise ValidationError(f"LoRA {use.name!r} is a LyCORIS/DoRA file ({bad}); only plain LoRA is supported",
                              field=use.field)
    if family in _FLOW_FAMILIES:
        original = _from_original_layout(state, family, model)
        if original is not None:
            state = original
        else:
            other = _other_original_layout(state, family)
            if other is not None:
                raise ValidationError(f"LoRA {use.name!r} is for {other} models (its layer names are {other}'s "
                                      f"original ones); this model is {family}", field=use.field, allowed=[family])
            if not any(k.startswith("transformer.") for k in state):
                state = _normalise_flow(state, family, use)
    groups: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        parts = _split_key(key)
        if parts is not None:
            groups.setdefault(parts[:2], {})[parts[2]] = tensor
    if not groups:
        raise ValidationError(f"LoRA {use.name!r}: no LoRA layers found in {use.path.name}", field=use.field)
    comps = _components(model)
    plan: list[tuple[torch.nn.Module, torch.Tensor]] = []
    missing: list[str] = []
    for (comp, rest), parts in groups.items():
        if "up" not in parts or "down" not in parts:
            continue
        module = None
        if comp in comps:
            index = _module_index(model, comp, comps[comp])
            name = index.get(rest) or index.get(_flat(rest))
            module = comps[comp].get_submodule(name) if name else None
        if module is None:
            missing.append(f"{comp}:{rest}")
            continue
        down, up = parts["down"], parts["up"]
        rank = down.shape[0]
        scale = float(parts["alpha"]) / rank if "alpha" in parts else (_peft_scale(meta, comp) or 1.0)
        weight = use.weight if comp.startswith("text_encoder") else (
            use.unet_weight if use.unet_weight is not None else use.weight)
        try:
            delta = _delta(up, down, module.weight)
            if delta.shape != module.weight.shape:
                raise RuntimeError(f"{tuple(delta.shape)} vs {tuple(module.weight.shape)}")
        except RuntimeError as exc:
            raise ValidationError(f"LoRA {use.name!r} does not fit this {family} model: layer {rest} has another "
                                  f"shape ({exc}); it was made for another model family", field=use.field,
                                  allowed=[family]) from None
        plan.append((module, delta * (scale * weight)))
    total = sum(1 for p in groups.values() if "up" in p and "down" in p)
    if not plan:
        raise ValidationError(f"LoRA {use.name!r} does not fit this {family} model: none of its {total} layers "
                              f"exist in it (e.g. {missing[0] if missing else '-'}); it is for another model family",
                              field=use.field, allowed=[family])
    if missing:
        log.warning("LoRA %s: %d of %d layers not found in the model (e.g. %s)", use.name, len(missing), total,
                    missing[0])
    return plan


@contextmanager
def applied(model: Any, family: str, uses: list[LoraUse]) -> Iterator[LoraReport]:
    """Merge every LoRA into the model for the duration of the block; restore the exact weights after."""
    report = LoraReport()
    if not uses:
        yield report
        return
    plans = [(use, plan_merge(model, family, use)) for use in uses]  # all validated before anything changes
    backup: dict[int, tuple[torch.nn.Module, torch.Tensor]] = {}
    try:
        with torch.no_grad():
            for use, plan in plans:
                for module, delta in plan:
                    if quantized.holds_quantized_weight(module):  # GGUF: the delta rides on the dequantization
                        backup.setdefault(id(module), (module, None))
                        quantized.add_weight_delta(module, delta)
                        continue
                    if id(module) not in backup:
                        backup[id(module)] = (module, module.weight.detach().clone())
                    w = module.weight
                    w.copy_((w.float() + delta.to(w.device)).to(w.dtype))
                report.applied.append({"name": use.name, "weight": use.weight, "unet_weight": use.unet_weight,
                                       "layers": len(plan), "path": str(use.path)})
                report.hashes[use.name] = short_hash(use.path)
        yield report
    finally:
        with torch.no_grad():
            for module, original in backup.values():
                if original is None:
                    quantized.add_weight_delta(module, None)
                else:
                    module.weight.copy_(original)


def resolve_uses(provider: Any, family: str, uses: list[LoraUse]) -> list[LoraUse]:
    """Find each LoRA in the models folder and check its detected family against the model's."""
    for use in uses:
        entry = resolve_file(provider, use.name, "lora", use.field, family)
        check_family(entry, family, use.field)
        use.entry, use.path = entry, Path(entry.path)
    return uses
