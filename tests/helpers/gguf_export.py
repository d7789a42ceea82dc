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
               flatten: bool = False, heads: tuple[int, int] | None = None) -> Path:
    """Write `state` to `path` with every large enough tensor in `qtype` ('Q8_0', 'Q4_0', 'F16', ...); `heads`
    (query, key/value) writes `<arch>.attention.head_count(_kv)`, as llama.cpp does for decoder LMs."""
    import gguf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    kind = gguf.GGMLQuantizationType[qtype]
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    if heads is not None:
        writer.add_head_count(heads[0])
        writer.add_head_count_kv(heads[1])
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


def llama_cpp_permute(w: torch.Tensor, heads: int) -> torch.Tensor:
    """What llama.cpp's converter does to Llama q/k projection rows: each head's two rotary halves interleaved."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def llama_to_llama_cpp(state: dict[str, torch.Tensor], heads: int, kv_heads: int) -> dict[str, torch.Tensor]:
    """A LlamaModel state dict (Hugging Face names, no `model.` prefix) under llama.cpp's names, with the q/k rows
    permuted (`llama_cpp_permute`) as its converter writes them."""
    import re

    fixed = {"embed_tokens.weight": "token_embd.weight", "norm.weight": "output_norm.weight"}
    parts = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
             "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    out = {}
    for key, value in state.items():
        if key in fixed:
            out[fixed[key]] = value
            continue
        m = re.fullmatch(r"layers\.(\d+)\.(.+)\.(weight|bias)", key)
        if m is None or m.group(2) not in parts:
            raise KeyError(key)
        name = parts[m.group(2)]
        if name in ("attn_q", "attn_k"):
            value = llama_cpp_permute(value, heads if name == "attn_q" else kv_heads)
        out[f"blk.{m.group(1)}.{name}.{m.group(3)}"] = value
    return out
