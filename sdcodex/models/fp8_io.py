"""fp8 safetensors: tell plain fp8 files (`float8_e4m3fn` / `float8_e5m2` weights) from ComfyUI's "fp8_scaled" files
(an empty `scaled_fp8` marker tensor and a `<layer>.scale_weight` scale per fp8 weight, sometimes `scale_input`), and
read the latter dequantized: weight = fp8 weight (as float32) * scale_weight.

Plain fp8 tensors are handed out as they are (fp8); `sdcodex.models.quantized` keeps them in fp8 storage and computes
in bf16/fp32. `scale_input` scales activations for fp8 matrix multiplication; this app computes in bf16/fp32, where
the dequantized weight alone gives the layer's output, so it is read (checked, listed) and not applied.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from sdcodex.core.errors import ModelLoadError

FP8_DTYPES = {"F8_E4M3": "fp8_e4m3fn", "F8_E5M2": "fp8_e5m2"}
MARKER = "scaled_fp8"
SCALE_SUFFIXES = (".scale_weight", ".scale_input")


def is_marker(name: str) -> bool:
    """The `scaled_fp8` marker, bare or under the model's prefix (ComfyUI writes `model.diffusion_model.scaled_fp8`
    in checkpoints whose diffusion model sits under that prefix)."""
    return name == MARKER or name.endswith("." + MARKER)


def is_scaled(names: Mapping[str, Any] | list[str]) -> bool:
    return any(is_marker(k) or k.endswith(".scale_weight") for k in names)


def fp8_kind(dtypes: Mapping[str, str]) -> str | None:
    """'fp8_scaled', 'fp8_e4m3fn', 'fp8_e5m2' or None from a header's name -> dtype map."""
    if is_scaled(dtypes):
        return "fp8_scaled"
    found = [FP8_DTYPES[d] for k, d in dtypes.items() if d in FP8_DTYPES and not is_marker(k)]
    return max(set(found), key=found.count) if found else None


def check_scaled(path: Path, dtypes: Mapping[str, str], shapes: Mapping[str, list[int]]) -> None:
    """Every fp8 weight of an fp8_scaled file needs its scale_weight (a single value); a missing or malformed one is a
    ModelLoadError naming the file and the tensor."""
    for name, dtype in dtypes.items():
        if dtype not in FP8_DTYPES or is_marker(name) or not name.endswith(".weight"):
            continue
        scale = name[: -len("weight")] + "scale_weight"
        if scale not in dtypes:
            raise ModelLoadError(f"{path}: fp8_scaled file: tensor {name!r} is fp8 but {scale!r} is missing; the file "
                                 "is incomplete or not a ComfyUI fp8_scaled file", field="model")
        if len(shapes.get(scale, [])) > 1 or (shapes.get(scale) and shapes[scale][0] != 1):
            raise ModelLoadError(f"{path}: fp8_scaled file: {scale!r} has shape {shapes[scale]}, expected a single "
                                 "value", field="model")
    for name in dtypes:
        if name.endswith(SCALE_SUFFIXES) and name.rsplit(".", 1)[0] + ".weight" not in dtypes:
            raise ModelLoadError(f"{path}: fp8_scaled file: {name!r} scales no weight (no "
                                 f"{name.rsplit('.', 1)[0] + '.weight'!r})", field="model")


class ScaledFP8:
    """A view of an fp8_scaled file's handle without the marker and scale tensors, whose fp8 weights come back
    dequantized (float32 = fp8 * scale_weight). Same interface as the handle (keys, shape, get_tensor, prefetch)."""

    def __init__(self, handle: Any) -> None:
        self.handle, self.path = handle, handle.path
        dtypes = {k: v["dtype"] for k, v in handle.tensors.items()}
        shapes = {k: v["shape"] for k, v in handle.tensors.items()}
        check_scaled(handle.path, dtypes, shapes)
        self.tensors = {k: v for k, v in handle.tensors.items() if not is_marker(k) and not k.endswith(SCALE_SUFFIXES)}
        self.metadata = handle.metadata
        self.scale_inputs = sorted(k for k in handle.tensors if k.endswith(".scale_input"))

    def keys(self) -> list[str]:
        return list(self.tensors)

    def shape(self, name: str) -> list[int]:
        return self.handle.shape(name)

    def get_tensor(self, name: str):
        import torch

        tensor = self.handle.get_tensor(name)
        scale_key = name[: -len("weight")] + "scale_weight" if name.endswith(".weight") else None
        if scale_key is None or scale_key not in self.handle.tensors:
            return tensor
        scale = self.handle.get_tensor(scale_key).to(torch.float32).reshape(())
        return tensor.to(torch.float32) * scale

    def prefetch(self) -> bool:
        return self.handle.prefetch()


__all__ = ["ScaledFP8", "fp8_kind", "check_scaled", "is_scaled", "is_marker", "FP8_DTYPES", "MARKER"]
