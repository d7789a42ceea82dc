"""The one place that handles `torchvision` imports of spandrel and controlnet-aux.

spandrel (the upscaler architecture library) imports three names from
`torchvision.transforms.functional` while its architecture registry is imported:
`normalize` (RestoreFormer, a face model) and `InterpolationMode` + `rotate` (LaMa, an
inpainting model). Nothing in the upscalers we support (ESRGAN/RRDBNet, Real-ESRGAN
Compact, SwinIR, ...) calls them, but without torchvision `import spandrel` fails. There is
no CPU torchvision build to install here, so when the real one is not importable we put a
minimal stand-in module tree (`torchvision`, `torchvision.transforms`,
`torchvision.transforms.functional`) into `sys.modules` that provides exactly those names:
`normalize` is implemented with torch ops, `InterpolationMode` is the same string enum,
`rotate` raises NotImplementedError naming itself. controlnet-aux's openpose face module binds
`torchvision.transforms.ToTensor`/`ToPILImage` at import; both are provided (small torch versions).

`load_spandrel()` installs the stand-in only for the duration of `import spandrel` and then
removes it again: spandrel binds the names at import time, and a fake `torchvision` left in
`sys.modules` would make Diffusers/transformers believe torchvision is installed (their
availability checks call `importlib.util.find_spec("torchvision")`).
"""
from __future__ import annotations

import contextlib
import enum
import importlib
import importlib.machinery
import importlib.util
import sys
import types
from typing import Any, Iterator, Sequence

import torch

STAND_IN_MARK = "__sdcodex_stand_in__"
_MODULE_NAMES = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional")


class InterpolationMode(enum.Enum):
    """Same members and values as torchvision's InterpolationMode."""

    NEAREST = "nearest"
    NEAREST_EXACT = "nearest-exact"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    BOX = "box"
    HAMMING = "hamming"
    LANCZOS = "lanczos"


def normalize(tensor: torch.Tensor, mean: Sequence[float], std: Sequence[float],
              inplace: bool = False) -> torch.Tensor:
    """(tensor - mean) / std per channel, on a (..., C, H, W) float tensor, like torchvision's."""
    if not torch.is_floating_point(tensor):
        raise TypeError(f"normalize: expected a floating point tensor, got {tensor.dtype}")
    if tensor.ndim < 3:
        raise ValueError(f"normalize: expected a tensor of shape (..., C, H, W), got {tuple(tensor.shape)}")
    mean_t = torch.as_tensor(mean, dtype=tensor.dtype, device=tensor.device)
    std_t = torch.as_tensor(std, dtype=tensor.dtype, device=tensor.device)
    if (std_t == 0).any():
        raise ValueError("normalize: std evaluated to zero, leading to division by zero")
    mean_t = mean_t.view(-1, 1, 1) if mean_t.ndim == 1 else mean_t
    std_t = std_t.view(-1, 1, 1) if std_t.ndim == 1 else std_t
    if not inplace:
        tensor = tensor.clone()
    return tensor.sub_(mean_t).div_(std_t)


def rotate(*args: Any, **kwargs: Any) -> torch.Tensor:
    """Used only by spandrel's LaMa (inpainting), which Codex does not support as an upscaler."""
    raise NotImplementedError(
        "torchvision.transforms.functional.rotate is not available: torchvision is not installed and "
        "Codex's stand-in only implements normalize (LaMa inpainting models are not supported)")


class ToTensor:
    """PIL image or uint8 (H, W, C) array -> float (C, H, W) in [0, 1], like torchvision's (openpose's face module
    binds this name at import)."""

    def __call__(self, pic: Any) -> torch.Tensor:
        import numpy as np
        arr = np.asarray(pic)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        tensor = torch.from_numpy(np.array(arr, copy=True)).permute(2, 0, 1)
        return tensor.float().div(255) if tensor.dtype == torch.uint8 else tensor.float()


class ToPILImage:
    """float (C, H, W) in [0, 1] -> PIL image (scaled by 255 and truncated, like torchvision's)."""

    def __call__(self, pic: torch.Tensor) -> Any:
        from PIL import Image
        arr = pic.detach().cpu()
        if arr.is_floating_point():
            arr = arr.mul(255).byte()
        arr = arr.permute(1, 2, 0).numpy()
        return Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)


def real_torchvision_available() -> bool:
    """True when a real torchvision can be imported (our stand-in does not count)."""
    module = sys.modules.get("torchvision")
    if module is not None:
        return not getattr(module, STAND_IN_MARK, False)
    try:
        return importlib.util.find_spec("torchvision") is not None
    except (ImportError, ValueError):
        return False


def _new_module(name: str, is_package: bool) -> types.ModuleType:
    module = types.ModuleType(name, f"Codex stand-in for {name} (torchvision is not installed).")
    module.__spec__ = importlib.machinery.ModuleSpec(name, loader=None, is_package=is_package)
    if is_package:
        module.__path__ = []
    setattr(module, STAND_IN_MARK, True)
    return module


def ensure_torchvision() -> bool:
    """Install the stand-in module tree if real torchvision is not importable.

    Returns True when the stand-in is (now) in `sys.modules`, False when real torchvision is used.
    Prefer `torchvision_stand_in()` / `load_spandrel()`, which remove it again afterwards.
    """
    if real_torchvision_available():
        return False
    if getattr(sys.modules.get("torchvision"), STAND_IN_MARK, False):
        return True
    root = _new_module("torchvision", True)
    transforms = _new_module("torchvision.transforms", True)
    functional = _new_module("torchvision.transforms.functional", False)
    functional.InterpolationMode = InterpolationMode
    functional.normalize = normalize
    functional.rotate = rotate
    transforms.functional = functional
    transforms.InterpolationMode = InterpolationMode
    transforms.ToTensor = ToTensor
    transforms.ToPILImage = ToPILImage
    root.transforms = transforms
    root.__version__ = "0.0.0+sdcodex-stand-in"
    for module in (root, transforms, functional):
        sys.modules[module.__name__] = module
    return True


def remove_torchvision_stand_in() -> None:
    """Take our stand-in modules (and only them) out of `sys.modules`."""
    for name in _MODULE_NAMES:
        if getattr(sys.modules.get(name), STAND_IN_MARK, False):
            del sys.modules[name]


@contextlib.contextmanager
def torchvision_stand_in() -> Iterator[bool]:
    """Stand-in present inside the block (if needed), gone after it. Yields whether it was installed."""
    already = getattr(sys.modules.get("torchvision"), STAND_IN_MARK, False)
    installed = ensure_torchvision()
    try:
        yield installed
    finally:
        if installed and not already:
            remove_torchvision_stand_in()


def load_spandrel() -> types.ModuleType:
    """Import and return the `spandrel` module, with the torchvision stand-in only during the import."""
    module = sys.modules.get("spandrel")
    if module is not None:
        return module
    with torchvision_stand_in():
        return importlib.import_module("spandrel")
