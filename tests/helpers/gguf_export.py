"""TEST-ONLY: write state dicts as .gguf files the way ComfyUI-GGUF's converter lays them out, with the `gguf`
package's own GGUFWriter and quantizers: original single-file key names, `general.architecture`, 1-D and small
tensors in F32, large ones quantized -- row-wise where the last dimension fits the block, otherwise (`flatten`, as
the converter does for SD UNets) flattened to rows with the real shape in `comfy.gguf.orig_shape.<name>`."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

SMALL = 256  # tensors with fewer values stay F32 (the converter's threshold is larger; tiny models need this)


def to_gguf_array(value: torch.Tensor, qtype, *, flatten: bool, name: str, writer) -> tuple[np.ndarray, object]:
    import gguf

    data = value.detach().to(torch.float32).numpy()
    block = gguf.GGML_QUANT_SIZES[qtype][0]
    if data.ndim > 4:  # GGUF holds up to 4 dims: WAN's 5-D patch embedding goes flat, with its real shape
        writer.add_array(f"comfy.gguf.orig_shape.{name}", [int(d) for d in data.shape])
        return data.reshape(-1, data.shape[-1]), gguf.GGMLQuantizationType.F32
    if data.ndim < 2 or data.size < SMALL or qtype == gguf.GGMLQuantizationType.F32:
        return data, gguf.GGMLQuantizationType.F32
    if data.shape[-1] % block:
        if not flatten or data.size % block:
            return data, gguf.GGMLQuantizationType.F32
        writer.add_array(f"comfy.gguf.orig_shape.{name}", [int(d) for d in data.shape])
        data = data.reshape(-1, block)
    return gguf.quants.quantize(data, qtype), qtype


def write_gguf(state: dict[str, torch.Tensor], path: Path, arch: str, qtype: str = "Q8_0", *,
               flatten: bool = False) -> Path:
    """Write `state` to `path` with every large enough tensor in `qtype` ('Q8_0', 'Q4_0', 'F16', ...)."""
    import gguf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    kind = gguf.GGMLQuantizationType[qtype]
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    for name, value in state.items():
        if kind == gguf.GGMLQuantizationType.F16 and value.ndim >= 2:
            writer.add_tensor(name, value.detach().to(torch.float16).numpy())
            continue
        data, used = to_gguf_array(value, kind, flatten=flatten, name=name, writer=writer)
        writer.add_tensor(name, data, raw_dtype=used if used != gguf.GGMLQuantizationType.F32 else None)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def t5_to_llama_cpp(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A T5/UMT5 encoder state dict (Hugging Face names) under llama.cpp's names, as T5 GGUF files carry them."""
    import re

    fixed = {"shared.weight": "token_embd.weight", "encoder.final_layer_norm.weight": "enc.output_norm.weight"}
    parts = {"layer.0.SelfAttention.q": "attn_q", "layer.0.SelfAttention.k": "attn_k", "layer.0.SelfAttention.v": "attn_v",
             "layer.0.SelfAttention.o": "attn_o", "layer.0.layer_norm": "attn_norm",
             "layer.0.SelfAttention.relative_attention_bias": "attn_rel_b", "layer.1.DenseReluDense.wi_0": "ffn_gate",
             "layer.1.DenseReluDense.wi_1": "ffn_up", "layer.1.DenseReluDense.wo": "ffn_down",
             "layer.1.layer_norm": "ffn_norm"}
    out = {}
    for key, value in state.items():
        if key == "encoder.embed_tokens.weight":
            continue  # tied to shared
        if key in fixed:
            out[fixed[key]] = value
            continue
        m = re.fullmatch(r"encoder\.block\.(\d+)\.(.+)\.(weight|bias)", key)
        if m is None or m.group(2) not in parts:
            raise KeyError(key)
        out[f"enc.blk.{m.group(1)}.{parts[m.group(2)]}.{m.group(3)}"] = value
    return out
