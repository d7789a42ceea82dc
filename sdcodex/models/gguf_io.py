"""Read a .gguf file (llama.cpp's format, as ComfyUI-GGUF publishes FLUX, WAN, HunyuanVideo, SD UNets and T5/Llama
text encoders): header facts (architecture, tensor names, logical shapes, quantization types) without touching tensor
data, and tensors as zero-copy views of a private memory map, quantized ones kept quantized.

Layout (little-endian): magic "GGUF", uint32 version (2 or 3), uint64 tensor count, uint64 key/value count, the
key/value pairs (typed), then one info record per tensor (name, dims in ggml order -- fastest first --, type, offset
into the data section), padding to `general.alignment` (32), the data section. A tensor's torch shape is its ggml
dims reversed; ComfyUI's converter stores tensors it flattened to rows of 256 (SD UNets' convolutions) with their
real shape in `comfy.gguf.orig_shape.<name>`. Quantized tensors come back as Diffusers' `GGUFParameter` (raw blocks
as uint8 rows, `quant_type`) with their logical shape in `logical_shape`; `sdcodex.models.quantized` installs them
into modules so they are dequantized layer by layer while computing.

A header that is cut, a tensor whose data runs past the end of the file, or a quantization type this app cannot
dequantize is a ModelLoadError naming the file (and the tensor).
"""
from __future__ import annotations

import math
import mmap
import os
import struct
from collections import Counter
from pathlib import Path
from typing import Any

from sdcodex.core.errors import ModelLoadError

MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
ORIG_SHAPE_KEY = "comfy.gguf.orig_shape."
#: gguf value type -> struct format of one scalar (8 = string and 9 = array are handled apart)
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
#: arrays longer than this (tokenizer vocabularies) are skipped, only their length is kept
_KEEP_ARRAY = 64
FLOAT_TYPES = {"F32": 4, "F16": 2, "BF16": 2}
#: llama.cpp tensor names of T5/UMT5 encoders -> Hugging Face names (ComfyUI's T5 GGUFs use them)
T5_NAMES = (("enc.", "encoder."), (".blk.", ".block."), ("token_embd", "shared"), ("output_norm", "final_layer_norm"),
            ("attn_q", "layer.0.SelfAttention.q"), ("attn_k", "layer.0.SelfAttention.k"),
            ("attn_v", "layer.0.SelfAttention.v"), ("attn_o", "layer.0.SelfAttention.o"),
            ("attn_norm", "layer.0.layer_norm"), ("attn_rel_b", "layer.0.SelfAttention.relative_attention_bias"),
            ("ffn_up", "layer.1.DenseReluDense.wi_1"), ("ffn_down", "layer.1.DenseReluDense.wo"),
            ("ffn_gate", "layer.1.DenseReluDense.wi_0"), ("ffn_norm", "layer.1.layer_norm"))
#: llama.cpp names of Llama decoders (HunyuanVideo's llava-llama-3 text encoder) -> Hugging Face names
LLAMA_NAMES = (("blk.", "model.layers."), ("attn_norm", "input_layernorm"), ("attn_q", "self_attn.q_proj"),
               ("attn_k", "self_attn.k_proj"), ("attn_v", "self_attn.v_proj"), ("attn_output", "self_attn.o_proj"),
               ("ffn_up", "mlp.up_proj"), ("ffn_down", "mlp.down_proj"), ("ffn_gate", "mlp.gate_proj"),
               ("ffn_norm", "post_attention_layernorm"), ("token_embd", "model.embed_tokens"),
               ("output_norm", "model.norm"), ("output.weight", "lm_head.weight"))


def _gguf():
    import gguf

    return gguf


def type_name(code: int) -> str | None:
    """'Q8_0' for 8 ... ; None for a code the gguf package does not know."""
    try:
        return _gguf().GGMLQuantizationType(code).name
    except ValueError:
        return None


def supported_types() -> list[str]:
    """Quantization types that load: plain floats plus every type Diffusers can dequantize."""
    from diffusers.quantizers.gguf.utils import dequantize_functions

    return sorted(set(FLOAT_TYPES) | {t.name for t in dequantize_functions})


class _Cursor:
    """Sequential little-endian reads from a memory map; running off the end is a 'truncated' error."""

    def __init__(self, path: Path, buf: mmap.mmap) -> None:
        self.path, self.buf, self.pos = path, buf, 0

    def take(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.buf):
            raise _bad(self.path, f"header is truncated at byte {self.pos} (file is {len(self.buf)} bytes)")
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return value

    def string(self) -> str:
        n = self.take("<Q")
        if self.pos + n > len(self.buf):
            raise _bad(self.path, f"header is truncated at byte {self.pos} (a {n}-byte string runs past the end)")
        raw = self.buf[self.pos:self.pos + n]
        self.pos += n
        return raw.decode("utf-8", errors="replace")

    def value(self, vtype: int) -> Any:
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            etype, count = self.take("<I"), self.take("<Q")
            if etype in _SCALARS and count > _KEEP_ARRAY:  # skip a long scalar array without reading it
                step = struct.calcsize(_SCALARS[etype]) * count
                if self.pos + step > len(self.buf):
                    raise _bad(self.path, f"header is truncated at byte {self.pos}")
                self.pos += step
                return {"array_length": count}
            items = [self.value(etype) for _ in range(count)]
            return items if count <= _KEEP_ARRAY else {"array_length": count}
        fmt = _SCALARS.get(vtype)
        if fmt is None:
            raise _bad(self.path, f"metadata value type {vtype} at byte {self.pos} is not a GGUF type")
        return self.take(fmt)


def read_gguf_header(path: str | os.PathLike[str]) -> tuple[dict[str, dict[str, Any]], dict[str, Any], int]:
    """(tensors, metadata, data_start) of a .gguf file; no tensor data is read.

    tensors: name -> {"type": "Q8_0", "code": 8, "shape": logical torch shape, "ggml_shape": torch-order shape as
    stored, "offset": absolute byte offset, "nbytes"}. Raises ModelLoadError naming the file, and the tensor where one
    is at fault (unknown or unsupported quantization type, data past the end of the file)."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < 24:
                raise _bad(p, f"file is {size} bytes, too short for a GGUF header")
            buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except FileNotFoundError as exc:
        raise ModelLoadError(f"{p}: file not found") from exc
    except IsADirectoryError as exc:
        raise ModelLoadError(f"{p}: is a directory, not a .gguf file") from exc
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{p}: cannot read: {exc}") from exc
    try:
        return _parse(p, buf, size)
    finally:
        buf.close()


def _parse(p: Path, buf: mmap.mmap, size: int) -> tuple[dict[str, dict[str, Any]], dict[str, Any], int]:
    gguf = _gguf()
    cur = _Cursor(p, buf)
    if buf[:4] != MAGIC:
        raise _bad(p, f"does not start with the GGUF magic (found {bytes(buf[:4])!r})")
    cur.pos = 4
    version = cur.take("<I")
    if version not in (2, 3):
        raise _bad(p, f"GGUF version {version} is not supported (2 or 3; a big-endian file reads as a huge number)")
    n_tensors, n_kv = cur.take("<Q"), cur.take("<Q")
    if n_tensors > size // 8 or n_kv > size // 8:
        raise _bad(p, f"header is truncated or corrupt: it claims {n_tensors} tensors and {n_kv} metadata keys in "
                      f"{size} bytes")
    metadata: dict[str, Any] = {}
    for _ in range(n_kv):
        key = cur.string()
        metadata[key] = cur.value(cur.take("<I"))
    raw: list[tuple[str, list[int], int, int]] = []
    for _ in range(n_tensors):
        name = cur.string()
        n_dims = cur.take("<I")
        if n_dims > 8:
            raise _bad(p, f"tensor {name!r} claims {n_dims} dimensions: corrupt header")
        dims = [cur.take("<Q") for _ in range(n_dims)]
        raw.append((name, dims, cur.take("<I"), cur.take("<Q")))
    align = int(metadata.get("general.alignment", DEFAULT_ALIGNMENT) or DEFAULT_ALIGNMENT)
    data_start = cur.pos + (-cur.pos % align)
    supported = set(supported_types())
    tensors: dict[str, dict[str, Any]] = {}
    for name, dims, code, offset in raw:
        qname = type_name(code)
        if qname is None:
            raise _bad(p, f"tensor {name!r} has unknown quantization type {code}", allowed=sorted(supported))
        if qname not in supported:
            raise _bad(p, f"tensor {name!r} has quantization type {qname}, which this app cannot dequantize",
                       allowed=sorted(supported))
        block, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(code)]
        stored = [int(d) for d in reversed(dims)] or [1]
        if stored[-1] % block:
            raise _bad(p, f"tensor {name!r} ({qname}) has a row of {stored[-1]} values, not a multiple of its "
                          f"{block}-value blocks")
        nbytes = math.prod(stored) // block * type_size
        begin = data_start + int(offset)
        if begin + nbytes > size:
            raise _bad(p, f"tensor {name!r} data ends at byte {begin + nbytes} but the file has {size} bytes: "
                          "truncated")
        orig = metadata.get(ORIG_SHAPE_KEY + name)
        logical = [int(d) for d in orig] if isinstance(orig, list) and orig else stored
        if math.prod(logical) != math.prod(stored):
            raise _bad(p, f"tensor {name!r}: its original shape {logical} does not hold its {math.prod(stored)} "
                          "values")
        tensors[name] = {"type": qname, "code": int(code), "shape": logical, "ggml_shape": stored,
                         "offset": begin, "nbytes": nbytes}
    return tensors, metadata, data_start


def rename_keys(names: list[str], architecture: str | None) -> dict[str, str]:
    """Our name -> file name: llama.cpp names of T5/UMT5 and Llama text encoders become Hugging Face ones; the
    diffusion models' GGUFs keep their original single-file names (FLUX `double_blocks.0.img_attn.qkv.weight`)."""
    table = T5_NAMES if architecture in ("t5", "t5encoder") else LLAMA_NAMES if architecture == "llama" else ()
    out = {}
    for name in names:
        new = name
        for old, repl in table:
            new = new.replace(old, repl)
        out[new] = name
    return out


def read_gguf_shapes(path: str | os.PathLike[str]) -> tuple[dict[str, list[int]], dict[str, str], dict[str, Any]]:
    """(shapes, types, metadata) under the names loaders and detection use (see `rename_keys`)."""
    tensors, metadata, _ = read_gguf_header(path)
    names = rename_keys(list(tensors), metadata.get("general.architecture"))
    return ({ours: tensors[f]["shape"] for ours, f in names.items()},
            {ours: tensors[f]["type"] for ours, f in names.items()}, metadata)


def quantization_summary(types: list[str]) -> str:
    """'gguf Q4_K' -- the most common quantized type of the file's tensors ('gguf F16' when none is quantized)."""
    quantized = Counter(t for t in types if t not in FLOAT_TYPES)
    main = quantized.most_common(1)[0][0] if quantized else (Counter(types).most_common(1)[0][0] if types else "F16")
    return f"gguf {main}"


class MappedGGUF:
    """Tensors of one .gguf file as zero-copy views of a private memory map (the `MappedSafetensors` interface:
    keys, shape, get_tensor, prefetch). Names are the ones `rename_keys` gives. F32/F16/BF16 tensors come back as
    plain tensors; quantized ones as `GGUFParameter` rows of raw blocks with `logical_shape` set."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        import torch

        self.path = Path(path)
        self.tensors, self.metadata, _ = read_gguf_header(self.path)
        self.architecture = self.metadata.get("general.architecture")
        self._names = rename_keys(list(self.tensors), self.architecture)
        self._storage = torch.UntypedStorage.from_file(str(self.path), shared=False,
                                                       nbytes=self.path.stat().st_size)
        self._bytes = torch.empty(0, dtype=torch.uint8).set_(self._storage)
        self._prefetcher: Any = None

    def keys(self) -> list[str]:
        return list(self._names)

    def shape(self, name: str) -> list[int]:
        return list(self.tensors[self._names[name]]["shape"])

    def type(self, name: str) -> str:
        return self.tensors[self._names[name]]["type"]

    def quantization(self) -> str:
        return quantization_summary([t["type"] for t in self.tensors.values()])

    def get_tensor(self, name: str):
        import torch

        info = self.tensors[self._names[name]]
        raw = self._bytes[info["offset"]:info["offset"] + info["nbytes"]]
        if info["type"] in FLOAT_TYPES:
            dtype = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}[info["type"]]
            if info["offset"] % dtype.itemsize:
                raw = raw.clone()
            return self._unpermute(name, raw.view(dtype).reshape(info["shape"]))
        from diffusers.quantizers.gguf.utils import GGUFParameter

        gguf = _gguf()
        qtype = gguf.GGMLQuantizationType(info["code"])
        block, type_size = gguf.GGML_QUANT_SIZES[qtype]
        stored = info["ggml_shape"]
        rows = self._unpermute(name, raw.reshape(*stored[:-1], stored[-1] // block * type_size))
        param = GGUFParameter(rows, quant_type=qtype)
        param.logical_shape = torch.Size(info["shape"])
        return param

    def _unpermute(self, name: str, rows):
        """llama.cpp's converter reorders the rows of Llama q/k projections (each head's two rotary halves
        interleaved); Hugging Face's Llama wants them back in order. Rows are whole blocks, so this works on
        quantized data (a copy of that one tensor)."""
        if self.architecture != "llama" or not name.endswith(("self_attn.q_proj.weight", "self_attn.k_proj.weight",
                                                              "self_attn.q_proj.bias", "self_attn.k_proj.bias")):
            return rows
        key = "llama.attention.head_count" if ".q_proj." in name else "llama.attention.head_count_kv"
        heads = int(self.metadata.get(key) or self.metadata.get("llama.attention.head_count") or 0)
        n = rows.shape[0]
        if heads <= 0 or n % (2 * heads):
            raise ModelLoadError(f"{self.path}: tensor {name!r}: {n} rows do not split into {heads} heads "
                                 f"({key})", field="model")
        rest = tuple(rows.shape[1:])
        return rows.reshape(heads, n // heads // 2, 2, *rest).transpose(1, 2).reshape(n, *rest).contiguous()

    def prefetch(self) -> bool:
        """Make the file's pages resident on a background thread (see MappedSafetensors.prefetch)."""
        from sdcodex.models.safetensors_io import MappedSafetensors

        return MappedSafetensors.prefetch(self)  # type: ignore[arg-type]


def _bad(p: Path, what: str, allowed: list[str] | None = None) -> ModelLoadError:
    return ModelLoadError(f"{p}: not a usable .gguf file: {what}", field="model", allowed=allowed)


__all__ = ["MappedGGUF", "read_gguf_header", "read_gguf_shapes", "rename_keys", "quantization_summary",
           "supported_types", "type_name", "FLOAT_TYPES", "ORIG_SHAPE_KEY"]
