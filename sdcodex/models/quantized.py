"""Quantized weights inside built modules: GGUF blocks stay quantized in memory and are dequantized layer by layer
while computing; fp8 weights stay fp8 and are cast to the compute dtype around each layer's forward (Diffusers'
layerwise casting); the request key `weights_dtype: "fp8"` stores any model's weights that way.

A GGUF weight is installed as a parametrization: the module keeps the raw blocks (Diffusers' `GGUFParameter`, uint8)
as `parametrizations.<name>.original`, and reading `module.weight` dequantizes them with Diffusers' GGUF dequantize
functions into the compute dtype -- so Linear, Conv and Embedding layers all work unchanged, and the whole model is
never expanded at once.
"""
from __future__ import annotations

import re
import types
from collections import Counter
from pathlib import Path
from typing import Any, Mapping

import torch

from sdcodex.core.errors import ModelLoadError

FP8 = (torch.float8_e4m3fn, torch.float8_e5m2)
#: components `weights_dtype: "fp8"` stores in fp8 (VAEs keep their precision)
FP8_COMPONENTS = ("unet", "transformer", "transformer_2", "text_encoder", "text_encoder_2", "text_encoder_3")
WEIGHTS_DTYPES = ("auto", "fp8")


def is_gguf_tensor(value: Any) -> bool:
    return hasattr(value, "quant_type") and isinstance(value, torch.Tensor)


def _dequant_table():
    from diffusers.quantizers.gguf.utils import GGML_QUANT_SIZES, dequantize_functions

    return dequantize_functions, GGML_QUANT_SIZES


def dequantize(tensor: Any, dtype: torch.dtype = torch.float32, shape: Any = None) -> torch.Tensor:
    """The values of a GGUF tensor (raw blocks + `quant_type`) in `dtype`, shaped `shape` (default: its
    `logical_shape`, else the shape its rows imply). A plain tensor is returned cast."""
    if not is_gguf_tensor(tensor):
        return tensor.to(dtype)
    functions, sizes = _dequant_table()
    block, type_size = sizes[tensor.quant_type]
    raw = tensor.as_tensor() if hasattr(tensor, "as_tensor") else tensor
    blocks = raw.reshape(-1, type_size)
    work = torch.float32 if raw.device.type == "cpu" or dtype == torch.float32 else torch.float16
    values = functions[tensor.quant_type](blocks, block, type_size, dtype=work)
    if shape is None:
        shape = getattr(tensor, "logical_shape", None) or (*raw.shape[:-1], raw.shape[-1] // type_size * block)
    return values.reshape(shape).to(dtype)


class GGUFDequantize(torch.nn.Module):
    """Parametrization: raw GGUF blocks -> the weight in the compute dtype, on every read (per layer, per call)."""

    def __init__(self, quant_type: Any, shape: torch.Size, dtype: torch.dtype) -> None:
        super().__init__()
        self.quant_type, self.shape, self.dtype = quant_type, torch.Size(shape), dtype
        self.delta: torch.Tensor | None = None  # a merged LoRA, added after dequantizing (add_weight_delta)

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        if not hasattr(raw, "quant_type"):  # moved by code that dropped the subclass: the type is ours
            from diffusers.quantizers.gguf.utils import GGUFParameter

            raw = GGUFParameter(raw, quant_type=self.quant_type)
        weight = dequantize(raw, self.dtype, self.shape)
        return weight if self.delta is None else weight + self.delta.to(weight)

    def extra_repr(self) -> str:
        return f"{getattr(self.quant_type, 'name', self.quant_type)}, shape={list(self.shape)}, dtype={self.dtype}"


def holds_quantized_weight(module: torch.nn.Module) -> bool:
    """Whether `module.weight` is computed from GGUF blocks (so writing into it changes nothing)."""
    from torch.nn.utils import parametrize

    return parametrize.is_parametrized(module, "weight") and isinstance(module.parametrizations.weight[0],
                                                                         GGUFDequantize)


def add_weight_delta(module: torch.nn.Module, delta: torch.Tensor | None) -> None:
    """Add `delta` to a GGUF layer's weight (a LoRA merge: the blocks stay as stored, the delta is added after each
    dequantization); None removes every delta."""
    spec = module.parametrizations.weight[0]
    if delta is None:
        spec.delta = None
    else:
        delta = delta.to(spec.dtype)
        spec.delta = delta if spec.delta is None else spec.delta + delta


def compute_dtype(state: Mapping[str, Any]) -> torch.dtype:
    """The dtype a state dict's plain floating tensors were loaded in (the loader casts them to the compute dtype);
    float32 when it holds none."""
    found = Counter(v.dtype for v in state.values() if isinstance(v, torch.Tensor) and not is_gguf_tensor(v)
                    and v.is_floating_point() and v.dtype not in FP8)
    return found.most_common(1)[0][0] if found else torch.float32


def install_gguf(module: torch.nn.Module, state: dict[str, Any], path: Path, component: str,
                 dtype: torch.dtype) -> dict[str, Any]:
    """Put every GGUF tensor of `state` into `module` as a dequantizing parametrization; return the rest of the
    state. A tensor whose shape is not the parameter's is a ModelLoadError naming the file, tensor and shapes."""
    from torch.nn.utils import parametrize

    plain: dict[str, Any] = {}
    for key, value in state.items():
        if not is_gguf_tensor(value):
            plain[key] = value
            continue
        owner_name, _, name = key.rpartition(".")
        owner = module.get_submodule(owner_name) if owner_name else module
        if parametrize.is_parametrized(owner, name):  # a tied weight (T5's shared / embed_tokens): installed once
            continue
        current = owner._parameters.get(name)
        shape = torch.Size(getattr(value, "logical_shape", None) or value.quant_shape)
        if current is None:
            raise ModelLoadError(f"{path}: {component} tensor {key!r} is quantized but is not a weight of the model",
                                 field="model")
        if tuple(current.shape) != tuple(shape):
            raise ModelLoadError(f"{path}: {component} tensor {key!r} has shape {list(shape)}, the model expects "
                                 f"{list(current.shape)}", field="model")
        value.requires_grad_(False)
        owner._parameters[name] = value
        parametrize.register_parametrization(owner, name, GGUFDequantize(value.quant_type, shape, dtype), unsafe=True)
        if isinstance(owner, torch.nn.Embedding) and tuple(value.quant_shape) == tuple(shape):
            owner.forward = types.MethodType(_embedding_lookup, owner)  # dequantize the looked-up rows only
    return plain


def _embedding_lookup(self: torch.nn.Embedding, ids: torch.Tensor) -> torch.Tensor:
    """nn.Embedding.forward for a GGUF table stored row by row: gather the raw rows of `ids`, dequantize those (a
    256k-token vocabulary is never expanded whole)."""
    from diffusers.quantizers.gguf.utils import GGUFParameter

    raw = self.parametrizations.weight.original
    spec = self.parametrizations.weight[0]
    rows = (raw.as_tensor() if hasattr(raw, "as_tensor") else raw)[ids.reshape(-1)]
    values = dequantize(GGUFParameter(rows, quant_type=spec.quant_type), spec.dtype, (rows.shape[0], spec.shape[1]))
    return values.reshape(*ids.shape, spec.shape[1])


def _layer_types() -> tuple[type, ...]:
    """The layer types Diffusers' layerwise casting handles."""
    nn = torch.nn
    return (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear)


def _hooked(sub: torch.nn.Module) -> bool:
    registry = getattr(sub, "_diffusers_hook", None)
    return registry is not None and registry.get_hook("layerwise_casting") is not None


def keep_fp8(module: torch.nn.Module, dtype: torch.dtype) -> int:
    """Layers that hold fp8 weights (from an fp8 file) keep them in fp8 and compute in `dtype` (layerwise casting
    hooks); fp8 parameters of other modules (norms) are cast to `dtype`. Returns the number of fp8 layers."""
    from diffusers.hooks import apply_layerwise_casting_hook

    layers, count = _layer_types(), 0
    for sub in module.modules():
        own = [p for p in sub._parameters.values() if p is not None and p.dtype in FP8]
        if not own:
            continue
        if isinstance(sub, layers) and not _hooked(sub):
            apply_layerwise_casting_hook(sub, own[0].dtype, dtype, False)
            count += 1
        else:
            for name, p in list(sub._parameters.items()):
                if p is not None and p.dtype in FP8:
                    sub._parameters[name] = torch.nn.Parameter(p.to(dtype), requires_grad=False)
    return count


def store_fp8(module: torch.nn.Module, skip: tuple[str, ...] | None = None) -> int:
    """`weights_dtype: "fp8"`: store the Linear/Conv/Embedding weights of `module` in float8_e4m3fn and compute in
    their current dtype, skipping Diffusers' precision-sensitive layers (embeddings of positions and patches, norms,
    proj_in/proj_out) and layers already quantized. Returns the number of layers stored in fp8."""
    from diffusers.hooks import apply_layerwise_casting_hook
    from diffusers.hooks.layerwise_casting import DEFAULT_SKIP_MODULES_PATTERN
    from torch.nn.utils import parametrize

    patterns = tuple(DEFAULT_SKIP_MODULES_PATTERN if skip is None else skip)
    # layers a model keeps in fp32 (T5's `wo`: its caller casts activations to that weight's dtype)
    patterns += tuple(rf"(^|\.){re.escape(n)}$" for n in getattr(module, "_keep_in_fp32_modules", None) or ())
    layers, count = _layer_types(), 0
    for name, sub in module.named_modules():
        if not isinstance(sub, layers) or parametrize.is_parametrized(sub) or _hooked(sub):
            continue
        if any(re.search(p, name) for p in patterns):
            continue
        weight = sub._parameters.get("weight")
        if weight is None or not weight.is_floating_point():
            continue
        apply_layerwise_casting_hook(sub, torch.float8_e4m3fn, weight.dtype, False)
        count += 1
    return count


def describe(components: Mapping[str, Any]) -> dict[str, Any]:
    """What the loaded weights are stored as, per component: {"transformer": {"gguf": {"Q8_0": 120}, "fp8_layers": 0,
    "compute_dtype": "float32"}} (components without quantized or fp8 layers are left out)."""
    from torch.nn.utils import parametrize

    out: dict[str, Any] = {}
    for slot, module in components.items():
        if not isinstance(module, torch.nn.Module):
            continue
        gguf, fp8, dtypes = Counter(), 0, Counter()
        for sub in module.modules():
            if parametrize.is_parametrized(sub):
                for plist in sub.parametrizations.values():
                    for p in plist:
                        if isinstance(p, GGUFDequantize):
                            gguf[getattr(p.quant_type, "name", str(p.quant_type))] += 1
                            dtypes[str(p.dtype).replace("torch.", "")] += 1
            if _hooked(sub):
                fp8 += 1
                hook = sub._diffusers_hook.get_hook("layerwise_casting")
                dtypes[str(hook.compute_dtype).replace("torch.", "")] += 1
        if gguf or fp8:
            out[slot] = {"gguf": dict(gguf), "fp8_layers": fp8,
                         "compute_dtype": dtypes.most_common(1)[0][0] if dtypes else None}
    return out


__all__ = ["dequantize", "install_gguf", "holds_quantized_weight", "add_weight_delta", "keep_fp8", "store_fp8", "describe", "compute_dtype", "GGUFDequantize",
           "WEIGHTS_DTYPES", "is_gguf_tensor"]
