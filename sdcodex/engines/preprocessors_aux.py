"""The preprocessors with weights, through `controlnet-aux`, loaded only from `<models>/annotators` (offline).

controlnet-aux's package `__init__` imports every annotator it has, and some of them (MiDaS, ZoeDepth, LeReS,
NormalBAE, SAM) need torchvision and timm, which have no CPU build here. So the annotators we use (HED, PiDiNet,
lineart, lineart_anime, openpose, MLSD) are imported as sub-packages without running that `__init__`, and
openpose's face module gets torchvision's two transform names from `models/torchvision_shim.py` while it is
imported. Weight files are the `.pth` state dicts of `lllyasviel/Annotators`; they are read with
`torch.load(weights_only=True, map_location="cpu")` (tensors only, no code). Loaded detectors are kept per
(annotator, folder) until `unload()`.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
import threading
import types
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from sdcodex.core.errors import ValidationError

_LOCK = threading.RLock()
_CACHE: dict[tuple[str, str, str], Any] = {}

# annotator kind -> (controlnet-aux sub-package, detector class)
ANNOTATORS: dict[str, tuple[str, str]] = {
    "hed": ("hed", "HEDdetector"),
    "pidi": ("pidi", "PidiNetDetector"),
    "lineart": ("lineart", "LineartDetector"),
    "lineart_anime": ("lineart_anime", "LineartAnimeDetector"),
    "openpose": ("open_pose", "OpenposeDetector"),
    "mlsd": ("mlsd", "MLSDdetector"),
}


def _package() -> types.ModuleType:
    """`controlnet_aux` as a bare package (its `__init__` not run), so sub-packages import one by one."""
    existing = sys.modules.get("controlnet_aux")
    if existing is not None:
        return existing
    spec = importlib.util.find_spec("controlnet_aux")
    if spec is None or not spec.submodule_search_locations:
        raise ValidationError("the preprocessors with weights need the controlnet-aux package: "
                              "pip install --no-deps controlnet-aux==0.0.10 opencv-python-headless", field="module")
    package = types.ModuleType("controlnet_aux", "controlnet-aux, imported one annotator at a time by Codex")
    package.__path__ = list(spec.submodule_search_locations)
    package.__spec__ = spec
    package.__file__ = spec.origin
    sys.modules["controlnet_aux"] = package
    return package


def import_submodule(name: str) -> types.ModuleType:
    """`controlnet_aux.<name>` alone (the package's `__init__` not run)."""
    from sdcodex.models.torchvision_shim import torchvision_stand_in
    with _LOCK:
        _package()
        with torchvision_stand_in():
            return importlib.import_module(f"controlnet_aux.{name}")


def detector_class(kind: str) -> type:
    """The controlnet-aux detector class for an annotator kind (imports its sub-package only)."""
    sub, cls = ANNOTATORS[kind]
    return getattr(import_submodule(sub), cls)


@contextlib.contextmanager
def _cpu_tensor_loads() -> Iterator[None]:
    """controlnet-aux calls `torch.load(path)` without `map_location`; make every such call tensors-only on CPU."""
    import torch
    original = torch.load

    def load(f: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs["map_location"] = "cpu"
        kwargs["weights_only"] = True
        return original(f, *args, **kwargs)

    torch.load = load
    try:
        yield
    finally:
        torch.load = original


def load_detector(kind: str, folder: Path, device: str = "cpu") -> Any:
    """A detector built from the files in `folder` (never a hub id: controlnet-aux reads a folder when it is one)."""
    folder = Path(folder).absolute()
    key = (kind, str(folder), device)
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
        if not folder.is_dir():
            raise ValidationError(f"annotator folder {folder} does not exist", field="module")
        cls = detector_class(kind)
        with _cpu_tensor_loads():
            detector = cls.from_pretrained(str(folder))
        if device != "cpu":
            detector = detector.to(device)
        _CACHE[key] = detector
        return detector


def unload() -> None:
    """Forget every loaded detector."""
    with _LOCK:
        _CACHE.clear()


def run_annotator(kind: str, arr: np.ndarray, options: Any, **kwargs: Any) -> np.ndarray:
    """Run annotator `kind` on `arr` (uint8 RGB, sides already multiples of 64) at its own size; uint8 RGB out."""
    from sdcodex.engines.preprocessors import annotators_dir, resize_array
    import torch
    detector = load_detector(kind, annotators_dir(options.models_dir), options.device)
    h, w = arr.shape[:2]
    size = min(h, w)
    if kind == "mlsd":
        kwargs = {"thr_v": options.threshold_a, "thr_d": options.threshold_b, **kwargs}
    with torch.inference_mode():
        out = detector(arr, detect_resolution=size, image_resolution=size, output_type="np", **kwargs)
    out = np.asarray(out, dtype=np.uint8)
    if out.ndim == 2:
        out = np.repeat(out[:, :, None], 3, axis=2)
    if out.shape[:2] != (h, w):
        out = resize_array(out, w, h)
    return out
