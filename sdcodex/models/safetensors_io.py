"""Read the JSON header of a .safetensors file (names, dtypes, shapes) without touching tensor data.

Layout: 8-byte little-endian header length N, N bytes of JSON, then the data buffer. Every tensor
entry says its dtype, shape and [begin, end) byte offsets into the data buffer; `__metadata__` is an
optional str->str map. A file whose header is cut, not JSON, or points past the end is refused with
a ModelLoadError that names the file and the problem.
"""
from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sdcodex.core.errors import ModelLoadError

# Bytes per element for the dtypes safetensors defines (sub-byte and exotic ones are not size-checked).
DTYPE_SIZES: dict[str, int] = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
}
MAX_HEADER_BYTES = 100 * 1024 * 1024  # the reference implementation refuses larger headers too

TensorInfo = dict[str, Any]  # {"dtype": str, "shape": list[int], "data_offsets": [int, int]}


def read_header(path: str | os.PathLike[str]) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """Return (tensors, metadata) from the header of `path`; tensor data is never read.

    `tensors` maps each tensor name to {"dtype", "shape", "data_offsets"}; `metadata` is the
    `__metadata__` map (empty when absent). Raises ModelLoadError naming the file for a missing,
    truncated or corrupt header.
    """
    tensors, metadata, _ = _read_header(Path(path))
    return tensors, metadata


def _read_header(p: Path) -> tuple[dict[str, TensorInfo], dict[str, str], int]:
    """read_header's work, plus the byte offset where the data section starts."""
    try:
        size = p.stat().st_size
        with p.open("rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise _bad(p, f"file is {size} bytes, too short for the 8-byte header length")
            (n,) = struct.unpack("<Q", head)
            if n == 0 or n > MAX_HEADER_BYTES:
                raise _bad(p, f"header length {n} is out of range (1..{MAX_HEADER_BYTES})")
            if 8 + n > size:
                raise _bad(p, f"header length {n} runs past the end of the file ({size} bytes): truncated")
            raw = f.read(n)
    except FileNotFoundError as exc:
        raise ModelLoadError(f"{p}: file not found") from exc
    except IsADirectoryError as exc:
        raise ModelLoadError(f"{p}: is a directory, not a .safetensors file") from exc
    except OSError as exc:
        raise ModelLoadError(f"{p}: cannot read: {exc}") from exc

    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _bad(p, f"header is not valid JSON ({exc})") from exc
    except RecursionError:  # `[[[[...` : the JSON parser gives up at Python's recursion limit
        raise _bad(p, "header JSON is nested too deeply") from None
    if not isinstance(header, dict):
        raise _bad(p, "header JSON is not an object")

    metadata_raw = header.pop("__metadata__", None) or {}
    if not isinstance(metadata_raw, dict):
        raise _bad(p, "__metadata__ is not an object")
    metadata = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in metadata_raw.items()}

    data_len = size - 8 - n
    tensors: dict[str, TensorInfo] = {}
    for name, info in header.items():
        tensors[name] = _check_entry(p, name, info, data_len)
    return tensors, metadata, 8 + n


def read_shapes(path: str | os.PathLike[str]) -> tuple[dict[str, list[int]], dict[str, str], dict[str, str]]:
    """Return (shapes, dtypes, metadata) of `path`: the parts detection needs. A .gguf file answers through
    gguf_io.read_gguf_shapes (dtypes are then ggml type names: 'Q8_0', 'F16'...)."""
    if Path(path).suffix.lower() == ".gguf":
        from sdcodex.models.gguf_io import read_gguf_shapes

        return read_gguf_shapes(path)
    tensors, metadata = read_header(path)
    shapes = {k: v["shape"] for k, v in tensors.items()}
    dtypes = {k: v["dtype"] for k, v in tensors.items()}
    return shapes, dtypes, metadata


def _check_entry(p: Path, name: str, info: Any, data_len: int) -> TensorInfo:
    if not isinstance(info, dict):
        raise _bad(p, f"entry {name!r} is not an object")
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if not isinstance(dtype, str):
        raise _bad(p, f"tensor {name!r} has no dtype")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise _bad(p, f"tensor {name!r} has an invalid shape {shape!r}")
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(isinstance(o, int) for o in offsets) or not 0 <= offsets[0] <= offsets[1]):
        raise _bad(p, f"tensor {name!r} has invalid data_offsets {offsets!r}")
    if offsets[1] > data_len:
        raise _bad(p, f"tensor {name!r} data ends at byte {offsets[1]} but the data section is only "
                      f"{data_len} bytes: truncated")
    width = DTYPE_SIZES.get(dtype)
    if width is not None and math.prod(shape) * width != offsets[1] - offsets[0]:
        raise _bad(p, f"tensor {name!r} ({dtype} {shape}) needs {math.prod(shape) * width} bytes "
                      f"but its data_offsets span {offsets[1] - offsets[0]}")
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


def _bad(p: Path, what: str) -> ModelLoadError:
    return ModelLoadError(f"{p}: not a valid .safetensors file: {what}")



# ------------------------------------------------------------------------------------------ mapped tensors
def _torch_dtypes() -> dict[str, Any]:
    import torch

    names = {"BOOL": "bool", "U8": "uint8", "I8": "int8", "I16": "int16", "U16": "uint16", "F16": "float16",
             "BF16": "bfloat16", "I32": "int32", "U32": "uint32", "F32": "float32", "I64": "int64",
             "U64": "uint64", "F64": "float64", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
             "F8_E8M0": "float8_e8m0fnu"}
    return {k: getattr(torch, v) for k, v in names.items() if hasattr(torch, v)}


class MappedSafetensors:
    """Tensors of one .safetensors file as zero-copy views of a private memory map of it.

    The header is checked by `read_header` (a bad file is a ModelLoadError naming it). `prefetch()` maps the
    file's pages into memory on a background thread (``madvise(MADV_POPULATE_READ)``, which runs without the
    GIL), so the weights become resident while the caller builds modules instead of faulting in one page at
    a time on first use."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        import torch

        self.path = Path(path)
        self.tensors, self.metadata, self._data_start = _read_header(self.path)
        self._storage = torch.UntypedStorage.from_file(str(self.path), shared=False,
                                                       nbytes=self.path.stat().st_size)
        self._bytes = torch.empty(0, dtype=torch.uint8).set_(self._storage)
        self._dtypes = _torch_dtypes()
        self._prefetcher: Any = None

    def keys(self) -> list[str]:
        return list(self.tensors)

    def shape(self, name: str) -> list[int]:
        return list(self.tensors[name]["shape"])

    def get_tensor(self, name: str):
        info = self.tensors[name]
        dtype = self._dtypes.get(info["dtype"])
        if dtype is None:
            raise ModelLoadError(f"{self.path}: tensor {name!r} has dtype {info['dtype']}, which this torch "
                                 "cannot hold", field="model")
        begin, end = (self._data_start + o for o in info["data_offsets"])
        raw = self._bytes[begin:end]
        if begin % dtype.itemsize:  # an unaligned tensor (allowed by the format) cannot be a view
            raw = raw.clone()
        return raw.view(dtype).reshape(info["shape"])

    def prefetch(self) -> bool:
        """Start making every page of the file resident on a background thread (once; best effort). A file
        larger than half the memory available is left to page in on use: reading it all would only evict
        itself. Returns whether a prefetch runs (or ran)."""
        if self._prefetcher is not None:
            return True
        size = self._storage.nbytes()
        if not size or size > _available_memory() // 2:
            return False
        import threading

        self._prefetcher = threading.Thread(target=_populate, args=(self._storage,), daemon=True,
                                            name="sdcodex-prefetch")
        self._prefetcher.start()
        return True


def _available_memory() -> int:
    """Bytes of memory the kernel says are available (MemAvailable); 0 where that is unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


_MADV_WILLNEED, _MADV_POPULATE_READ = 3, 22
_PREFETCH_CHUNK = 64 << 20


def _populate(storage: Any) -> None:
    """Fault in `storage`'s pages chunk by chunk (Linux >= 5.14; older kernels get a read-ahead hint)."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        madvise = libc.madvise
        madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    except (OSError, AttributeError):
        return
    start, size = storage.data_ptr(), storage.nbytes()
    page = os.sysconf("SC_PAGE_SIZE")
    aligned = start - start % page
    end = start + size
    advice = _MADV_POPULATE_READ
    for chunk in range(aligned, end, _PREFETCH_CHUNK):
        length = min(_PREFETCH_CHUNK, end - chunk)
        if madvise(chunk, length, advice) != 0 and advice == _MADV_POPULATE_READ:
            advice = _MADV_WILLNEED  # EINVAL: the kernel has no MADV_POPULATE_READ
            madvise(chunk, length, advice)


# ------------------------------------------------------------------------------------------ opening for a load
def open_mapped(path: str | os.PathLike[str]) -> Any:
    """A private memory map of a weights file for loading, its pages made resident on a background thread while the
    modules are built: a MappedSafetensors; for a .gguf file a gguf_io.MappedGGUF (quantized tensors stay
    quantized); for a ComfyUI fp8_scaled file an fp8_io.ScaledFP8 view (weights dequantized with their scales).
    An unreadable file is a ModelLoadError naming it."""
    if Path(path).suffix.lower() == ".gguf":
        from sdcodex.models.gguf_io import MappedGGUF

        handle: Any = MappedGGUF(path)
        handle.prefetch()
        return handle
    try:
        handle = MappedSafetensors(path)
    except ModelLoadError:
        raise
    except (OSError, RuntimeError) as exc:
        raise ModelLoadError(f"{path}: not a readable safetensors file ({exc}); the file may be truncated or "
                             "corrupt, download it again") from exc
    handle.prefetch()
    from sdcodex.models import fp8_io

    return fp8_io.ScaledFP8(handle) if fp8_io.is_scaled(handle.tensors) else handle


class TensorView(Mapping):
    """A lazy Mapping of a file's tensors under a key map (local key -> file key), cast to `dtype` on access.

    `source` is anything with `get_tensor(name)` (a MappedSafetensors) or a plain mapping of tensors."""

    def __init__(self, source: Any, keys: Mapping[str, str], dtype: Any = None) -> None:
        self.source, self.names, self.dtype = source, dict(keys), dtype

    def __getitem__(self, key: str):
        full = self.names[key]
        tensor = self.source.get_tensor(full) if hasattr(self.source, "get_tensor") else self.source[full]
        if (self.dtype is not None and tensor.is_floating_point() and tensor.dtype != self.dtype
                and tensor.dtype not in _fp8_dtypes()):  # fp8 stays fp8: quantized.keep_fp8 casts per layer
            tensor = tensor.to(self.dtype)
        return tensor

    def __iter__(self):
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, key: object) -> bool:
        return key in self.names


def _fp8_dtypes() -> tuple[Any, ...]:
    import torch

    return tuple(getattr(torch, n) for n in ("float8_e4m3fn", "float8_e5m2") if hasattr(torch, n))
