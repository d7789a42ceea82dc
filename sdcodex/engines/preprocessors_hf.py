"""Depth, normal and segmentation preprocessors on transformers' own models (no timm, no torchvision).

controlnet-aux builds MiDaS, ZoeDepth and its segmenters on timm, which imports torchvision (no CPU build here), so
these modules run transformers' classes instead, from folders that `sdcodex cache-models annotator-…` puts under
`<models>/annotators/<folder>` (config.json + model.safetensors, as the hub repos ship them). Nothing is downloaded
here. Preprocessing (resize, normalise) and post-processing follow the A1111 ControlNet extension's annotators:

- `depth` (`depth_midas`): DPT-Hybrid MiDaS (`DPTForDepthEstimation`), input scaled to [-1, 1] as the extension
  does. transformers' DPT reads its tokens as a square grid, so the working image (sides multiples of 64) is
  resized (bicubic) to a square of its short side and the depth resized back (bilinear), where the extension
  runs MiDaS on the non-square image; the relative inverse depth is min-max normalised to 0..255.
- `normal_map` (`normal_midas`): the same depth; x/y are 3x3 Sobel gradients of the raw depth (OpenCV's
  reflect-101 border), zeroed where the normalised depth is below the background threshold, z = 2π; the normal
  is unit length, mapped to 0..255 and written in the extension's BGR channel order.
- `depth_anything`, `depth_anything_v2`: `DepthAnythingForDepthEstimation`; the image is scaled so its short side
  is at least 518 with both sides multiples of 14 (bicubic), normalised with the ImageNet mean/std, the depth
  resized back to the working size (bilinear) and min-max normalised to 0..255.
- `depth_zoe`: ZoeDepth (`ZoeDepthForDepthEstimation`, ZoeD_N: Intel/zoedepth-nyu) run as ZoeDepth's `infer` does:
  pixels in [0, 1] reflect-padded by sqrt(side / 2) x 3, resized (bilinear, corners aligned) toward 384 x 512 by the
  scale nearest 1 (sides multiples of 32), scaled to [-1, 1]; the metric depth resized back (bicubic), unpadded and
  averaged with the mirrored run; the map stretches the 2nd..85th percentile, near = white, as the extension.
- `segmentation` (`seg_ufade20k`): an ADE20K semantic segmenter (`UperNetForSemanticSegmentation`; any
  `AutoModelForSemanticSegmentation` folder works) at the working size with the ImageNet mean/std; the arg-max
  class of each pixel is painted with the ADE20K palette the ControlNet seg models were trained on.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sdcodex.core.errors import ValidationError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEPTH_ANYTHING_SIZE = 518      # the short side Depth Anything runs at (both sides multiples of its 14 px patch)
DEPTH_ANYTHING_MULTIPLE = 14
ZOE_SIZE = (384, 512)          # ZoeD_N's network size (h, w): scaled as little as possible to it, multiples of 32
ZOE_PAD = 3.0                  # ZoeDepth's reflect padding: sqrt(side / 2) x 3 pixels on each side
ZOE_PERCENTILES = (2, 85)      # the extension's depth_zoe map: 2nd percentile white .. 85th black
NORMAL_Z = np.pi * 2.0         # the extension's `a`: the z component before normalising

_LOCK = threading.RLock()
_CACHE: dict[tuple[str, str], Any] = {}


@dataclass(frozen=True)
class HFAnnotator:
    """One transformers model folder under `<models>/annotators` and what it computes."""

    folder: str
    task: str                  # "depth" or "segmentation"
    catalogue: str             # the `sdcodex cache-models` name that fetches it (cli/catalogue.py: repo, files)

    @property
    def files(self) -> tuple[str, ...]:
        return (f"{self.folder}/config.json", f"{self.folder}/model.safetensors")


ANNOTATORS: dict[str, HFAnnotator] = {
    "midas": HFAnnotator("dpt_hybrid_midas", "depth", "annotator-depth-midas"),
    "depth_anything": HFAnnotator("depth_anything", "depth", "annotator-depth-anything"),
    "depth_anything_v2": HFAnnotator("depth_anything_v2", "depth", "annotator-depth-anything-v2"),
    "zoe": HFAnnotator("zoedepth_nyu", "depth", "annotator-depth-zoe"),
    "upernet": HFAnnotator("upernet_ade20k", "segmentation", "annotator-seg-ade20k"),
}


def load_model(kind: str, folder: Path, device: str = "cpu") -> Any:
    """The transformers model in `folder` (offline, safetensors only), kept loaded per (folder, device)."""
    folder = Path(folder).absolute()
    key = (str(folder), device)
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
        import torch
        from transformers import AutoModelForDepthEstimation, AutoModelForSemanticSegmentation

        auto = AutoModelForDepthEstimation if ANNOTATORS[kind].task == "depth" else AutoModelForSemanticSegmentation
        try:
            model = auto.from_pretrained(str(folder), local_files_only=True, use_safetensors=True)
        except Exception as exc:  # noqa: BLE001 - an unreadable folder is the same user error
            raise ValidationError(f"cannot load the annotator model in {folder} ({str(exc)[:300]}); run "
                                  f"`sdcodex cache-models {ANNOTATORS[kind].catalogue}` again", field="module") from exc
        model = model.to(device=device, dtype=torch.float32).eval()
        _CACHE[key] = model
        return model


def unload() -> None:
    """Forget every loaded model."""
    with _LOCK:
        _CACHE.clear()


def _mean_std(folder: Path) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The folder's preprocessor_config.json image_mean/image_std, else ImageNet's."""
    path = folder / "preprocessor_config.json"
    if path.is_file():
        try:
            data = json.loads(path.read_text())
            return tuple(data.get("image_mean", IMAGENET_MEAN)), tuple(data.get("image_std", IMAGENET_STD))
        except (OSError, ValueError):
            pass
    return IMAGENET_MEAN, IMAGENET_STD


def depth_anything_size(width: int, height: int, target: int = DEPTH_ANYTHING_SIZE,
                        multiple: int = DEPTH_ANYTHING_MULTIPLE) -> tuple[int, int]:
    """(w, h) Depth Anything runs at: scaled so both sides are at least `target` (the larger of the two factors),
    each side rounded to a multiple of `multiple`, rounded up where rounding would drop below `target`."""
    scale = max(target / height, target / width)

    def fit(x: float) -> int:
        y = int(round(x / multiple) * multiple)
        return y if y >= target else int(np.ceil(x / multiple) * multiple)

    return fit(width * scale), fit(height * scale)


def midas_side(width: int, height: int) -> int:
    """The square side DPT runs at: transformers' DPT (and DPT-Hybrid) reads its tokens as a square grid, so the
    working image is resized to its short side rounded to a multiple of 32 on both axes (and the depth back)."""
    return max(32, int(round(min(width, height) / 32)) * 32)


def zoe_size(width: int, height: int) -> tuple[int, int]:
    """(w, h) ZoeDepth runs at: the one scale (toward 384 x 512) closest to 1 on both axes, sides rounded to 32."""
    net_h, net_w = ZOE_SIZE
    sh, sw = net_h / height, net_w / width
    scale = sw if abs(1 - sw) < abs(1 - sh) else sh
    return max(32, int(round(width * scale / 32) * 32)), max(32, int(round(height * scale / 32) * 32))


def _zoe_depth(model: Any, x: Any) -> Any:
    """ZoeDepth's `infer`: reflect padding, resize (bilinear, corners aligned) and [-1, 1] input, metric depth
    resized back (bicubic) and unpadded, averaged with the run on the mirrored image."""
    import torch
    F = torch.nn.functional
    h, w = x.shape[-2:]
    pad_h, pad_w = int(np.sqrt(h / 2) * ZOE_PAD), int(np.sqrt(w / 2) * ZOE_PAD)

    def once(t: Any) -> Any:
        t = F.pad(t, [pad_w, pad_w, pad_h, pad_h], mode="reflect")
        tw, th = zoe_size(t.shape[-1], t.shape[-2])
        net = F.interpolate(t, (th, tw), mode="bilinear", align_corners=True) * 2.0 - 1.0
        depth = model(pixel_values=net).predicted_depth[:, None].float()
        depth = F.interpolate(depth, size=t.shape[-2:], mode="bicubic", align_corners=False)
        return depth[:, :, pad_h:pad_h + h, pad_w:pad_w + w]

    return (once(x) + torch.flip(once(torch.flip(x, dims=[3])), dims=[3])) / 2


def zoe_map(depth: np.ndarray) -> np.ndarray:
    """The extension's depth_zoe image from metric depth: 2nd..85th percentile stretched, near = white."""
    low, high = (float(np.percentile(depth, q)) for q in ZOE_PERCENTILES)
    rel = 1.0 - (depth - low) / max(high - low, 1e-12)
    return (rel * 255.0).clip(0, 255).astype(np.uint8)


def _tensor(arr: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> Any:
    import torch
    x = torch.from_numpy(arr.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (x - m) / s


def predict_depth(kind: str, arr: np.ndarray, folder: Path, device: str = "cpu") -> np.ndarray:
    """Raw relative depth (float32, (H, W) of `arr`) from the depth model `kind`."""
    import torch
    from PIL import Image

    model = load_model(kind, folder, device)
    h, w = arr.shape[:2]
    if kind == "zoe":
        x = torch.from_numpy(arr.astype(np.float32) / 255.0).permute(2, 0, 1)[None].to(device)
        with torch.inference_mode():
            return _zoe_depth(model, x)[0, 0].cpu().numpy().astype(np.float32)
    if kind == "midas":
        side = midas_side(w, h)
        square = np.asarray(Image.fromarray(arr).resize((side, side), Image.BICUBIC)) if (w, h) != (side, side) \
            else arr
        x = torch.from_numpy(square.astype(np.float32)).permute(2, 0, 1)[None] / 127.5 - 1.0
    else:
        tw, th = depth_anything_size(w, h)
        resized = np.asarray(Image.fromarray(arr).resize((tw, th), Image.BICUBIC))
        x = _tensor(resized, *_mean_std(folder))
    with torch.inference_mode():
        depth = model(pixel_values=x.to(device)).predicted_depth.float()
        if depth.shape[-2:] != (h, w):
            depth = torch.nn.functional.interpolate(depth[:, None], size=(h, w), mode="bilinear",
                                                    align_corners=False)[:, 0]
    return depth[0].cpu().numpy().astype(np.float32)


def normalise_depth(depth: np.ndarray) -> np.ndarray:
    """float depth in [0, 1]: minus its minimum, over its (new) maximum."""
    d = depth.astype(np.float32) - depth.min()
    peak = float(d.max())
    return d / peak if peak > 0 else d


def sobel(arr: np.ndarray, axis: int) -> np.ndarray:
    """3x3 Sobel derivative along x (axis=1) or y (axis=0), float32, reflect-101 borders (cv2.Sobel's default)."""
    p = np.pad(arr.astype(np.float32), 1, mode="reflect")
    if axis == 1:
        return ((p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[1:-1, :-2] + p[2:, :-2]))
    return ((p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[:-2, 1:-1] + p[:-2, 2:]))


def normal_from_depth(depth: np.ndarray, background: float) -> np.ndarray:
    """The extension's normal map (uint8 (H, W, 3), BGR order as it writes it) from a raw depth."""
    rel = normalise_depth(depth)
    x, y = sobel(depth, 1), sobel(depth, 0)
    x[rel < background] = 0
    y[rel < background] = 0
    normal = np.stack([x, y, np.full_like(x, NORMAL_Z)], axis=2)
    normal /= np.sum(normal ** 2.0, axis=2, keepdims=True) ** 0.5
    return (normal * 127.5 + 127.5).clip(0, 255).astype(np.uint8)[:, :, ::-1]


def ade20k_palette() -> np.ndarray:
    """The ADE20K class colours (150, 3) uint8, from controlnet-aux (the palette the seg ControlNets learnt)."""
    from sdcodex.engines.preprocessors_aux import import_submodule
    return np.asarray(import_submodule("util").ade_palette(), dtype=np.uint8)


def segment(arr: np.ndarray, folder: Path, device: str = "cpu") -> np.ndarray:
    """Per-pixel ADE20K class of `arr` painted with the palette (uint8 (H, W, 3))."""
    import torch
    model = load_model("upernet", folder, device)
    h, w = arr.shape[:2]
    with torch.inference_mode():
        logits = model(pixel_values=_tensor(arr, *_mean_std(folder)).to(device)).logits.float()
        if logits.shape[-2:] != (h, w):
            logits = torch.nn.functional.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
    classes = logits[0].argmax(dim=0).cpu().numpy()
    palette = ade20k_palette()
    return palette[np.clip(classes, 0, len(palette) - 1)]


def run_hf(kind: str, arr: np.ndarray, options: Any, *, normal: bool = False) -> np.ndarray:
    """Run annotator `kind` on `arr` (uint8 RGB at the working size); uint8 RGB out at the same size."""
    from sdcodex.engines.preprocessors import annotators_dir
    folder = annotators_dir(options.models_dir) / ANNOTATORS[kind].folder
    if ANNOTATORS[kind].task == "segmentation":
        return segment(arr, folder, options.device)
    depth = predict_depth(kind, arr, folder, options.device)
    if normal:
        return normal_from_depth(depth, float(options.threshold_a))
    gray = zoe_map(depth) if kind == "zoe" else (normalise_depth(depth) * 255.0).clip(0, 255).astype(np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2)


__all__ = ["zoe_size", "zoe_map", "ANNOTATORS", "HFAnnotator", "run_hf", "predict_depth", "normal_from_depth", "normalise_depth", "sobel",
           "segment", "ade20k_palette", "depth_anything_size", "load_model", "unload"]
