"""FLUX, FLUX.2, WAN, Z-Image, Chroma and LTX-2 LoRAs in their original layouts (kohya/musubi flat names, ComfyUI/BFL
dotted names) mapped to Diffusers `transformer.*.lora_A/B` keys with the single-file converter tables (convert_flow):
one converter-table row set per family (`_rows_of`), or a per-name renamer where the layout only renames (LTX-2,
`RENAMERS`). It also holds the adapter-suffix table that lora.py shares, so the two modules import one way only.
"""
from __future__ import annotations

import re
from typing import Any

import torch

_SUFFIXES = {  # adapter tensor name ending -> role
    ".lora_down.weight": "down", ".lora_up.weight": "up", ".lora_A.weight": "down", ".lora_B.weight": "up",
    ".lora.down.weight": "down", ".lora.up.weight": "up", "_lora.down.weight": "down", "_lora.up.weight": "up",
    ".alpha": "alpha",
}


def _rows_of(family: str) -> dict[str, Any] | None:
    """The converter table of a family's original layout (None: the family has none)."""
    from sdcodex.models import convert_flow as cv

    if family.startswith("wan"):
        return cv.WAN_ROWS
    return {"flux": cv.FLUX_ROWS, "chroma": cv.CHROMA_ROWS, "z_image": cv.Z_IMAGE_ROWS, "flux2": cv.FLUX2_ROWS,
            "flux2_klein": cv.FLUX2_ROWS}.get(family)


def _split_sizes(family: str, config: dict[str, Any]) -> Any:
    """How a fused tensor of the family's original layout splits (None: equal thirds are not used anywhere)."""
    from sdcodex.models import convert_flow as cv

    if family in ("flux", "chroma"):
        return cv.flux_split_sizes(config)
    if family == "z_image":
        head = int(config["dim"]) // int(config["n_heads"])
        parts = [int(config["n_heads"]) * head, int(config["n_kv_heads"]) * head, int(config["n_kv_heads"]) * head]
        return lambda key, rows: parts
    if family in ("flux2", "flux2_klein"):  # only the double blocks' q/k/v are split (the single blocks stay fused)
        return lambda key, rows: [rows // 3] * 3
    return None


def _renamer(family: str) -> Any:
    """A family whose original layout differs from Diffusers' by names only (LTX-2): its name function, else None."""
    from sdcodex.models import convert_flow as cv

    return {"ltx2": cv.ltx2_name}.get(family)


#: the prefixes ComfyUI / ai-toolkit put in front of original names in a LoRA (LTX-2: `diffusion_model.`)
_RENAMED_PREFIXES = ("model.diffusion_model.", "diffusion_model.")
#: LTX-2 LoRAs may also train the text projection in front of the connectors (Lightricks' `text_embedding_projection.
#: aggregate_embed`, Diffusers' `connectors.text_proj_in`)
_CONNECTOR_PREFIX, _CONNECTOR_PARTS = "text_embedding_projection.", {"aggregate_embed": "text_proj_in"}


def _renamed(state: dict[str, torch.Tensor], family: str) -> dict[str, torch.Tensor] | None:
    """LTX-2 LoRAs with Lightricks' module names (`diffusion_model.transformer_blocks.0.attn1.to_q.lora_A.weight`,
    `diffusion_model.patchify_proj...`) -> `transformer.<Diffusers module>...`, renamed part by part as the single-file
    converter does; None when no key has such a prefix."""
    rename = _renamer(family)
    if rename is None:
        return None
    out: dict[str, torch.Tensor] = {}
    hit = False
    for key, tensor in state.items():
        prefix = next((p for p in _RENAMED_PREFIXES if key.startswith(p)), None)
        suffix = next((sfx for sfx in _SUFFIXES if key.endswith(sfx)), None)
        if family == "ltx2" and key.startswith(_CONNECTOR_PREFIX) and suffix is not None:
            hit = True
            stem = key[len(_CONNECTOR_PREFIX):-len(suffix)]
            out["connectors." + ".".join(_CONNECTOR_PARTS.get(p, p) for p in stem.split(".")) + suffix] = tensor
            continue
        if prefix is None or suffix is None:
            out[key] = tensor
            continue
        hit = True
        out[f"transformer.{rename(key[len(prefix):-len(suffix)])}{suffix}"] = tensor
    return out if hit else None


#: families whose LoRAs are named after another family's original layout, for the "it is for X" message
ORIGINAL_LAYOUT_NAMES = {"flux": "FLUX", "wan": "WAN", "z_image": "Z-Image"}
#: families whose original layout is another's: no "it is for X" check between them (Chroma has FLUX.1's names;
#: FLUX.2 shares FLUX.1's block names, its LoRAs are told apart by detection from their shapes)
_SAME_NAMES = {"chroma": "flux", "flux2": "flux", "flux2_klein": "flux"}

#: prefixes of FLUX/WAN LoRAs in the original layouts: kohya/musubi flat names, ComfyUI/BFL dotted names
_ORIGINAL_PREFIXES = ("lora_unet_", "lora_transformer_", "model.diffusion_model.", "diffusion_model.", "transformer.",
                      "")


def _flat_rows(rows: dict[str, Any]) -> list[tuple[re.Pattern[str], str]]:
    """'double_blocks.{i}.img_attn.qkv' -> (^double_blocks_(\\d+)_img_attn_qkv$, row) for kohya's flat names."""
    out = []
    for stem in rows:
        pattern = re.escape(stem.replace(".", "_")).replace(re.escape("{i}"), r"(\d+)")
        out.append((re.compile(f"^{pattern}$"), stem))
    return out


def _original_name(stem: str, rows: dict[str, Any], flat: list[tuple[re.Pattern[str], str]]) -> str | None:
    """A LoRA module name in the original FLUX/WAN layout ('double_blocks.0.img_attn.qkv', or kohya's flat
    'double_blocks_0_img_attn_qkv'), prefix stripped, when a converter row claims it."""
    for prefix in _ORIGINAL_PREFIXES:
        if not stem.startswith(prefix):
            continue
        rest = stem[len(prefix):]
        if _table_targets(rest, rows):
            return rest
        if prefix.endswith("_"):
            for pattern, row in flat:
                m = pattern.match(rest)
                if m:
                    return row.replace("{i}", m.group(1)) if m.groups() else row
    return None


def _table_targets(name: str, rows: dict[str, Any]) -> tuple[tuple[str, ...], str] | None:
    """(Diffusers targets, op) of one original-layout module name by the converter tables, None if unclaimed."""
    from sdcodex.models import convert_flow as cv

    steps, _ = cv.plan([name + ".weight"], rows)
    if not steps:
        return None
    _, targets, op = steps[0]
    return tuple(t[: -len(".weight")] for t in targets), op


def _from_original_layout(state: dict[str, torch.Tensor], family: str, model: Any) -> dict[str, torch.Tensor] | None:
    """FLUX LoRAs with BFL module names (kohya `lora_unet_double_blocks_0_img_attn_qkv`, ComfyUI
    `diffusion_model.double_blocks.0.img_attn.qkv`) and WAN LoRAs with Wan-Video names (`diffusion_model.blocks.0.
    self_attn.q`, musubi `lora_unet_blocks_0_self_attn_q`) -> `transformer.<Diffusers module>.lora_A/B`, with the
    same tables as the single-file converter (convert_flow): a fused qkv / linear1 keeps its down matrix for every
    part and its up matrix is split by the model's own widths; FLUX's final adaLN swaps the halves of up.
    Keys no row claims (text encoders, Diffusers names) are kept; None when no key is in an original layout."""
    rows = _rows_of(family)
    if rows is None:
        return _renamed(state, family)
    flat = _flat_rows(rows)
    groups: dict[str, dict[str, torch.Tensor]] = {}
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        suffix = next((sfx for sfx in _SUFFIXES if key.endswith(sfx)), None)
        name = _original_name(key[: -len(suffix)], rows, flat) if suffix else None
        if name is None:
            out[key] = tensor
            continue
        groups.setdefault(name, {})[_SUFFIXES[suffix]] = tensor
    if not groups:
        return None
    transformer = model.components.get("transformer")
    sizes = _split_sizes(family, dict(transformer.config)) if transformer is not None else None
    for name, parts in groups.items():
        targets, op = _table_targets(name, rows) or ((), "copy")
        if op == "drop":
            continue
        down, up = parts.get("down"), parts.get("up")
        if down is None or up is None:
            continue
        if op == "split" and sizes is not None:
            ups = torch.split(up, sizes(name + ".weight", up.shape[0]), dim=0)
        elif op == "swap":
            first, second = up.chunk(2, dim=0)
            ups = (torch.cat([second, first], dim=0),)
        else:
            ups = (up,)
        for target, part in zip(targets, ups):
            out[f"transformer.{target}.lora_A.weight"] = down
            out[f"transformer.{target}.lora_B.weight"] = part.contiguous()
            if "alpha" in parts:
                out[f"transformer.{target}.alpha"] = parts["alpha"]
    return out


def _other_original_layout(state: dict[str, torch.Tensor], family: str) -> str | None:
    """'FLUX' / 'WAN' / 'Z-Image' when a LoRA has another family's original module names, else None (Chroma's
    layout is FLUX's: a FLUX-named LoRA is not "another family's" on Chroma, nor the other way round)."""
    if _rows_of(family) is None:  # a family without an original layout of its own (HunyuanVideo): no check
        return None
    own = "wan" if family.startswith("wan") else _SAME_NAMES.get(family, family)
    for key_family, name in ORIGINAL_LAYOUT_NAMES.items():
        if key_family == own:
            continue
        rows = _rows_of("wan22_ti2v_5b" if key_family == "wan" else key_family)
        flat = _flat_rows(rows)
        for key in state:
            suffix = next((sfx for sfx in _SUFFIXES if key.endswith(sfx)), None)
            found = _original_name(key[: -len(suffix)], rows, flat) if suffix else None
            # block names only: a top-level name can be another layout's Diffusers name (Z-Image's `x_embedder`)
            if found is not None and re.search(r"\.\d+\.", found):
                return name
    return None
