"""How a weights file stores its weights, from its header: the `quantization` `models list` shows ("gguf Q4_K",
"fp8_e4m3fn", "fp8_scaled", "none") and an estimate of the bytes the weights take once loaded.

(Opening a file of any format for a load is `safetensors_io.open_mapped`; its header, `safetensors_io.read_shapes`.)
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping

from sdcodex.models import fp8_io, gguf_io
from sdcodex.models.safetensors_io import DTYPE_SIZES

GGUF_SUFFIXES = (".gguf",)
SAFETENSORS_SUFFIXES = (".safetensors", ".sft")


def is_gguf(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() in GGUF_SUFFIXES


def storage_facts(path: str | os.PathLike[str], shapes: Mapping[str, list[int]], dtypes: Mapping[str, str],
                  metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """{"quantization": "gguf Q4_K" | "fp8_e4m3fn" | "fp8_scaled" | "none", "resident_size": {"16bit": bytes,
    "32bit": bytes}} for a file's header. The estimate is what the loaded weights hold with 16-bit compute (GPU,
    bf16/fp16) and with 32-bit compute (the CPU default): GGUF quantized blocks and plain fp8 weights stay as stored,
    everything else (and fp8_scaled weights, which are dequantized on load) takes the compute width."""
    p = Path(path)
    if is_gguf(p):
        quant = gguf_io.quantization_summary(list(dtypes.values()))
    else:
        kind = fp8_io.fp8_kind(dtypes)
        quant = kind or "none"
        if kind == "fp8_scaled":
            fp8_io.check_scaled(p, dtypes, shapes)
    resident = {}
    for label, width in (("16bit", 2), ("32bit", 4)):
        total = 0
        for name, dtype in dtypes.items():
            n = math.prod(shapes.get(name, []) or [1])
            if dtype in gguf_io.FLOAT_TYPES or dtype in ("F32", "F16", "BF16", "F64"):
                total += n * width
            elif is_gguf(p):
                total += _gguf_bytes(dtype, n)
            elif dtype in fp8_io.FP8_DTYPES:
                total += n * (width if quant == "fp8_scaled" else 1)
            elif name.endswith(fp8_io.SCALE_SUFFIXES) or fp8_io.is_marker(name):
                continue
            else:
                total += n * DTYPE_SIZES.get(dtype, 1)
        resident[label] = total
    return {"quantization": quant, "resident_size": resident}


def folder_storage(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """storage_facts summed over a Diffusers folder's .safetensors files (one weights set per component: files named
    with a variant, `*.fp16.safetensors`, count only where the component has no plain ones). Unreadable files are
    skipped; {} when the folder holds no .safetensors file."""
    from sdcodex.core.errors import CodexError
    from sdcodex.models.safetensors_io import read_shapes

    root = Path(folder)
    files = sorted(root.rglob("*.safetensors"))
    plain_dirs = {f.parent for f in files if f.name.count(".") == 1}
    chosen = [f for f in files if f.name.count(".") == 1 or f.parent not in plain_dirs]
    quants, total = set(), {"16bit": 0, "32bit": 0}
    for f in chosen:
        try:
            facts = storage_facts(f, *read_shapes(f))
        except (CodexError, OSError):
            continue
        quants.add(facts["quantization"])
        for k in total:
            total[k] += facts["resident_size"][k]
    if not quants:
        return {}
    quant = next(iter(quants)) if len(quants) == 1 else "mixed: " + ", ".join(sorted(quants))
    return {"quantization": quant, "resident_size": total}


def _gguf_bytes(type_name: str, numel: int) -> int:
    import gguf

    block, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[type_name]]
    return numel // block * type_size


__all__ = ["storage_facts", "folder_storage", "is_gguf", "GGUF_SUFFIXES", "SAFETENSORS_SUFFIXES"]
