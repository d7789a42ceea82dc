"""ControlNet preprocessors ("modules" in the A1111 ControlNet extension): turn an input image into a control image.

One table (`MODULES`) names every preprocessor with the extension's internal key, its UI alias and its sliders
(resolution, threshold_a, threshold_b: name, default, range), which is what `/controlnet/module_list` answers.
The ones without weights are written here with numpy/scipy/PIL (canny equals OpenCV's `cv2.Canny` pixel for
pixel); the ones with weights (HED, PiDiNet, lineart, openpose, MLSD) run through `controlnet-aux`
(`preprocessors_aux.py`) from files that `sdcodex cache-models annotators` put under `<models>/annotators`:
nothing is downloaded here, a missing file is a 422 naming the module and that command.

Sizing follows the extension: a module with a resolution slider scales the image so its short side equals the
resolution (bicubic up, box/area down), pads it to a multiple of 64 by repeating the edge, runs, and crops the
padding off again; the others work at the input size.
"""
from __future__ import annotations

from dataclasses import dataclass, field as dc_field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from sdcodex.core.errors import ValidationError

RESOLUTION_NAME = "Preprocessor Resolution"
MAX_WORK_PIXELS = 4096 * 4096  # a thin image scaled to a large resolution must not exhaust memory
CACHE_COMMAND = "sdcodex cache-models annotators"


@dataclass(frozen=True)
class Slider:
    """One slider of the extension's UI: label, default and range (`step` only where the extension gives one)."""

    name: str
    value: float
    min: float
    max: float
    step: float | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "value": self.value, "min": self.min, "max": self.max}
        if self.step is not None:
            out["step"] = self.step
        return out


_RES = Slider(RESOLUTION_NAME, 512, 64, 2048)


@dataclass(frozen=True)
class Options:
    """What a module function receives besides the (already resized) RGB array."""

    threshold_a: float | None
    threshold_b: float | None
    resolution: int
    seed: int
    mask: np.ndarray | None          # bool (H, W), True = masked (to repaint); inpaint modules only
    models_dir: Path | None
    device: str


@dataclass(frozen=True)
class Module:
    """A preprocessor: extension key, UI alias, sliders, and the function that runs it.

    `resize` says whether the image is scaled to `resolution` (short side) before `run`; `weights` lists the
    files under `<models>/annotators` it loads (empty for the built-in ones)."""

    name: str
    run: Callable[[np.ndarray, Options], np.ndarray]
    alias: str | None = None
    resolution: Slider | None = None
    threshold_a: Slider | None = None
    threshold_b: Slider | None = None
    resize: bool = False
    weights: tuple[str, ...] = ()
    accepts_mask: bool = False
    rgba: bool = False              # the result keeps an alpha channel (inpaint: alpha 0 = masked)
    extra: dict[str, Any] = dc_field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.alias or self.name

    def sliders(self) -> list[dict[str, Any] | None]:
        """The extension's `sliders` list: [resolution or null, threshold_a, threshold_b], trailing nulls dropped."""
        items: list[Slider | None] = [self.resolution, self.threshold_a, self.threshold_b]
        while items and items[-1] is None:
            items.pop()
        return [s.as_dict() if s is not None else None for s in items]


# ------------------------------------------------------------------------------------------- array helpers

def to_rgb_array(image: Image.Image) -> np.ndarray:
    """uint8 (H, W, 3) from any PIL mode (alpha dropped, grey repeated)."""
    return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def _gray3(single: np.ndarray) -> np.ndarray:
    return np.repeat(single[:, :, None], 3, axis=2)


def scaled_size(width: int, height: int, resolution: int) -> tuple[int, int]:
    """(w, h) with the short side scaled to `resolution`, rounded like the extension."""
    k = float(resolution) / float(min(width, height))
    return max(1, int(round(width * k))), max(1, int(round(height * k)))


def resize_array(arr: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bicubic when enlarging, box (area average) when shrinking, as the extension's cv2 INTER_CUBIC/INTER_AREA."""
    h, w = arr.shape[:2]
    if (w, h) == (width, height):
        return arr
    method = Image.BICUBIC if width * height > w * h else Image.BOX
    return np.asarray(Image.fromarray(arr).resize((width, height), method), dtype=np.uint8).copy()


def _pad64(arr: np.ndarray) -> np.ndarray:
    h, w = arr.shape[:2]
    ph, pw = (-h) % 64, (-w) % 64
    if not ph and not pw:
        return arr
    pads = [(0, ph), (0, pw)] + [(0, 0)] * (arr.ndim - 2)
    return np.pad(arr, pads, mode="edge")


def _gaussian(arr: np.ndarray, sigma: float, truncate: float) -> np.ndarray:
    """Per-channel Gaussian blur in float32 with mirrored borders (OpenCV's default BORDER_REFLECT_101)."""
    from scipy import ndimage
    x = arr.astype(np.float32)
    sig = (sigma, sigma, 0) if x.ndim == 3 else sigma
    return ndimage.gaussian_filter(x, sigma=sig, mode="mirror", truncate=truncate)


# ------------------------------------------------------------------------------------------- canny

_TG22 = 13573  # round(tan(22.5 deg) * 2**15): the fixed-point sector test OpenCV's Canny uses


def _sobel3(channel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.pad(channel.astype(np.int32), 1, mode="edge")
    dx = (p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[1:-1, :-2] + p[2:, :-2])
    dy = (p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[:-2, 1:-1] + p[:-2, 2:])
    return dx, dy


def canny(arr: np.ndarray, low: float, high: float) -> np.ndarray:
    """Canny edges (uint8 0/255, (H, W)) of a uint8 grey or RGB array, equal to `cv2.Canny(arr, low, high)`.

    3x3 Sobel with replicated borders; L1 magnitude; on colour images each pixel takes the gradient of the channel
    with the largest magnitude (the first on ties); non-maximum suppression in four sectors; hysteresis with
    8-connectivity (a weak pixel survives when it is connected to a strong one)."""
    from scipy import ndimage
    if arr.ndim == 2:
        arr = arr[:, :, None]
    dx, dy = _sobel3(arr[:, :, 0])
    mag = np.abs(dx) + np.abs(dy)
    for c in range(1, arr.shape[2]):
        cdx, cdy = _sobel3(arr[:, :, c])
        cmag = np.abs(cdx) + np.abs(cdy)
        take = cmag > mag
        dx, dy, mag = np.where(take, cdx, dx), np.where(take, cdy, dy), np.where(take, cmag, mag)
    lo, hi = int(np.floor(low)), int(np.floor(high))
    if lo > hi:
        lo, hi = hi, lo
    h, w = mag.shape
    padded = np.zeros((h + 2, w + 2), np.int64)
    padded[1:-1, 1:-1] = mag

    def neighbour(oy: int, ox: int) -> np.ndarray:
        return padded[1 + oy:1 + oy + h, 1 + ox:1 + ox + w]

    ax = np.abs(dx).astype(np.int64)
    ay = np.abs(dy).astype(np.int64) << 15
    tg22x = ax * _TG22
    horizontal = ay < tg22x
    vertical = ~horizontal & (ay > tg22x + (ax << 16))
    diagonal = ~horizontal & ~vertical
    opposite = (dx ^ dy) < 0
    keep = horizontal & (mag > neighbour(0, -1)) & (mag >= neighbour(0, 1))
    keep |= vertical & (mag > neighbour(-1, 0)) & (mag >= neighbour(1, 0))
    before = np.where(opposite, neighbour(-1, 1), neighbour(-1, -1))
    after = np.where(opposite, neighbour(1, -1), neighbour(1, 1))
    keep |= diagonal & (mag > before) & (mag > after)
    weak = keep & (mag > lo)
    strong = weak & (mag > hi)
    labels, count = ndimage.label(weak, structure=np.ones((3, 3), bool))
    good = np.zeros(count + 1, bool)
    good[np.unique(labels[strong])] = True
    good[0] = False
    return np.where(good[labels], 255, 0).astype(np.uint8)


# ------------------------------------------------------------------------------------------- built-in modules

def _none(arr: np.ndarray, o: Options) -> np.ndarray:
    return arr


def _invert(arr: np.ndarray, o: Options) -> np.ndarray:
    return 255 - arr


def _canny(arr: np.ndarray, o: Options) -> np.ndarray:
    return _gray3(canny(arr, o.threshold_a, o.threshold_b))


def _threshold(arr: np.ndarray, o: Options) -> np.ndarray:
    return _gray3(np.where(arr.min(axis=2) > o.threshold_a, 255, 0).astype(np.uint8))


def _scribble_xdog(arr: np.ndarray, o: Options) -> np.ndarray:
    """Difference of Gaussians (sigma 5 minus sigma 0.5), darkest channel, thresholded: white strokes on black.
    Kept exactly as the extension computes it, including its uint8 arithmetic (`2 * strength` wraps at 256)."""
    dog = (_gaussian(arr, 5.0, 4.0) - _gaussian(arr, 0.5, 4.0)).min(axis=2)
    strength = (255 - np.clip(255 - dog, 0, 255).astype(np.uint8)).astype(np.int32)
    return _gray3(np.where((2 * strength) % 256 > o.threshold_a, 255, 0).astype(np.uint8))


def _lineart_standard(arr: np.ndarray, o: Options) -> np.ndarray:
    """How much darker each pixel is than its blurred surroundings (sigma 6), normalised by the median line."""
    x = arr.astype(np.float32)
    intensity = np.clip((_gaussian(x, 6.0, 4.0) - x).min(axis=2), 0, 255)
    lines = intensity[intensity > 8]
    intensity = intensity / max(16.0, float(np.median(lines)) if lines.size else 16.0) * 127
    return _gray3(np.clip(intensity, 0, 255).astype(np.uint8))


def _blur_gaussian(arr: np.ndarray, o: Options) -> np.ndarray:
    return np.clip(np.round(_gaussian(arr, float(o.threshold_a), 3.0)), 0, 255).astype(np.uint8)


def _tile_resample(arr: np.ndarray, o: Options) -> np.ndarray:
    rate = float(o.threshold_a)
    if rate < 1.1:
        return arr
    h, w = arr.shape[:2]
    return resize_array(arr, max(1, int(w / rate)), max(1, int(h / rate)))


def _shuffle(arr: np.ndarray, o: Options) -> np.ndarray:
    """Content shuffle: every pixel is fetched from a smoothly random place (two seeded noise fields, one per
    axis: a coarse uniform grid every 256 px, bicubic-enlarged, stretched to the full image), bilinear."""
    from scipy import ndimage
    h, w = arr.shape[:2]
    rng = np.random.default_rng(o.seed)
    step = 256

    def field() -> np.ndarray:
        coarse = rng.uniform(0.0, 1.0, size=(h // step + 2, w // step + 2)).astype(np.float32)
        big = np.asarray(Image.fromarray(coarse, mode="F").resize((w + 2 * step, h + 2 * step), Image.BICUBIC))
        part = big[step:step + h, step:step + w].astype(np.float64)
        part = part - part.min()
        return part / max(float(part.max()), 1e-12)

    xs, ys = field() * (w - 1), field() * (h - 1)
    out = np.stack([ndimage.map_coordinates(arr[:, :, c].astype(np.float32), [ys, xs], order=1, mode="nearest")
                    for c in range(3)], axis=2)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _color_grid(arr: np.ndarray, o: Options) -> np.ndarray:
    """The colour T2I-Adapter's map (`t2ia_color_grid`), as the extension makes it with OpenCV: short side to the
    resolution (area), down to one pixel per 64 (cubic, no antialiasing), back up as 64 px blocks (nearest)."""
    import cv2
    h, w = arr.shape[:2]
    tw, th = (o.resolution, int(round(h / w * o.resolution))) if h >= w else (int(round(w / h * o.resolution)),
                                                                               o.resolution)
    work = cv2.resize(arr, (tw, th), interpolation=cv2.INTER_AREA)
    small = cv2.resize(work, (max(1, tw // 64), max(1, th // 64)), interpolation=cv2.INTER_CUBIC)
    return cv2.resize(small, (tw, th), interpolation=cv2.INTER_NEAREST)


def _inpaint(arr: np.ndarray, o: Options) -> np.ndarray:
    """RGBA: the image, alpha 0 on masked pixels (to repaint), 255 elsewhere. See `inpaint_condition`."""
    mask = o.mask if o.mask is not None else np.zeros(arr.shape[:2], bool)
    alpha = np.where(mask, 0, 255).astype(np.uint8)
    return np.concatenate([arr, alpha[:, :, None]], axis=2)


def inpaint_condition(image: Image.Image) -> np.ndarray:
    """float32 (H, W, 3) in [0, 1] with -1 on masked pixels (alpha < 128): the control tensor inpaint ControlNets
    expect (Diffusers' `make_inpaint_condition` convention), from an `inpaint`/`inpaint_only` result."""
    rgba = np.asarray(image.convert("RGBA"))
    out = rgba[:, :, :3].astype(np.float32) / 255.0
    out[rgba[:, :, 3] < 128] = -1.0
    return out


def _aux(kind: str, **kwargs: Any) -> Callable[[np.ndarray, Options], np.ndarray]:
    def run(arr: np.ndarray, o: Options) -> np.ndarray:
        from sdcodex.engines import preprocessors_aux
        return preprocessors_aux.run_annotator(kind, arr, o, **kwargs)
    return run


def _hf(kind: str, **kwargs: Any) -> Callable[[np.ndarray, Options], np.ndarray]:
    def run(arr: np.ndarray, o: Options) -> np.ndarray:
        from sdcodex.engines import preprocessors_hf
        return preprocessors_hf.run_hf(kind, arr, o, **kwargs)
    return run


def _hf_files(kind: str) -> tuple[str, ...]:
    from sdcodex.engines.preprocessors_hf import ANNOTATORS
    return ANNOTATORS[kind].files


_HED = ("ControlNetHED.pth",)
_PIDI = ("table5_pidinet.pth",)
_LINEART = ("sk_model.pth", "sk_model2.pth")
_POSE = ("body_pose_model.pth", "hand_pose_model.pth", "facenet.pth")
_MLSD = ("mlsd_large_512_fp32.pth",)

_TABLE: list[Module] = [
    Module("none", _none),
    Module("invert", _invert, alias="invert (from white bg & black line)"),
    Module("canny", _canny, resolution=_RES, resize=True,
           threshold_a=Slider("Canny Low Threshold", 100, 1, 255), threshold_b=Slider("Canny High Threshold", 200, 1, 255)),
    Module("threshold", _threshold, resolution=_RES, resize=True,
           threshold_a=Slider("Binarization Threshold", 127, 0, 255)),
    Module("scribble_xdog", _scribble_xdog, resolution=_RES, resize=True,
           threshold_a=Slider("XDoG Threshold", 32, 1, 64)),
    Module("lineart_standard", _lineart_standard, alias="lineart_standard (from white bg & black line)",
           resolution=_RES, resize=True),
    Module("blur_gaussian", _blur_gaussian, resolution=_RES, resize=True,
           threshold_a=Slider("Sigma", 9.0, 0.01, 64.0)),
    Module("tile_resample", _tile_resample, threshold_a=Slider("Down Sampling Rate", 1.0, 1.0, 8.0, 0.01)),
    Module("shuffle", _shuffle, resolution=_RES, resize=True),
    Module("color", _color_grid, alias="t2ia_color_grid", resolution=_RES),
    Module("inpaint", _inpaint, alias="inpaint_global_harmonious", accepts_mask=True, rgba=True),
    Module("inpaint_only", _inpaint, accepts_mask=True, rgba=True),
    Module("hed", _aux("hed"), alias="softedge_hed", resolution=_RES, resize=True, weights=_HED),
    Module("hed_safe", _aux("hed", safe=True), alias="softedge_hedsafe", resolution=_RES, resize=True, weights=_HED),
    Module("scribble_hed", _aux("hed", scribble=True), resolution=_RES, resize=True, weights=_HED),
    Module("pidinet", _aux("pidi"), alias="softedge_pidinet", resolution=_RES, resize=True, weights=_PIDI),
    Module("pidinet_safe", _aux("pidi", safe=True), alias="softedge_pidisafe", resolution=_RES, resize=True,
           weights=_PIDI),
    Module("pidinet_scribble", _aux("pidi", scribble=True), alias="scribble_pidinet", resolution=_RES, resize=True,
           weights=_PIDI),
    Module("lineart", _aux("lineart"), alias="lineart_realistic", resolution=_RES, resize=True, weights=_LINEART),
    Module("lineart_coarse", _aux("lineart", coarse=True), resolution=_RES, resize=True, weights=_LINEART),
    Module("lineart_anime", _aux("lineart_anime"), resolution=_RES, resize=True, weights=("netG.pth",)),
    Module("openpose", _aux("openpose"), resolution=_RES, resize=True, weights=_POSE),
    Module("openpose_hand", _aux("openpose", include_hand=True), resolution=_RES, resize=True, weights=_POSE),
    Module("openpose_face", _aux("openpose", include_face=True), resolution=_RES, resize=True, weights=_POSE),
    Module("openpose_full", _aux("openpose", include_hand=True, include_face=True), resolution=_RES, resize=True,
           weights=_POSE),
    Module("mlsd", _aux("mlsd"), resolution=_RES, resize=True, weights=_MLSD,
           threshold_a=Slider("MLSD Value Threshold", 0.1, 0.01, 2.0, 0.01),
           threshold_b=Slider("MLSD Distance Threshold", 0.1, 0.01, 20.0, 0.01)),
    Module("depth", _hf("midas"), alias="depth_midas", resolution=_RES, resize=True, weights=_hf_files("midas")),
    Module("normal_map", _hf("midas", normal=True), alias="normal_midas", resolution=_RES, resize=True,
           weights=_hf_files("midas"), threshold_a=Slider("Normal Background Threshold", 0.4, 0.0, 1.0, 0.01)),
    Module("depth_anything", _hf("depth_anything"), resolution=_RES, resize=True,
           weights=_hf_files("depth_anything")),
    Module("depth_anything_v2", _hf("depth_anything_v2"), resolution=_RES, resize=True,
           weights=_hf_files("depth_anything_v2")),
    Module("depth_zoe", _hf("zoe"), resolution=_RES, resize=True, weights=_hf_files("zoe")),
    Module("segmentation", _hf("upernet"), alias="seg_ufade20k", resolution=_RES, resize=True,
           weights=_hf_files("upernet")),
]

MODULES: dict[str, Module] = {m.name: m for m in _TABLE}
_BY_LABEL: dict[str, Module] = {**{m.label: m for m in _TABLE}, **MODULES}


def list_modules(alias_names: bool = False) -> list[str]:
    """Every module, `none` first: the extension's keys, or the UI names with `alias_names`."""
    return [m.label if alias_names else m.name for m in _TABLE]


def module_details(alias_names: bool = False) -> dict[str, dict[str, Any]]:
    """`module_detail` of `/controlnet/module_list`: per module `model_free` (no ControlNet model needed: false
    for all of these) and `sliders`; plus `weights` (the files it loads, empty when built in)."""
    return {(m.label if alias_names else m.name): {"model_free": False, "sliders": m.sliders(),
                                                   "weights": list(m.weights)}
            for m in _TABLE}


def get_module(name: str, *, field: str = "module") -> Module:
    """The module by extension key or UI alias; a ValidationError naming `field` otherwise."""
    module = _BY_LABEL.get(name)
    if module is None:
        raise ValidationError(f"unknown preprocessor {name!r}", field=field, allowed=list_modules())
    return module


def bound_check(name: str, resolution: float | None, threshold_a: float | None,
                threshold_b: float | None) -> tuple[int | None, float | None, float | None]:
    """The A1111 extension's lenient rule (for its API only): a value outside its slider's range, e.g. the -1 its
    clients send for "default", becomes the slider's default. Native requests are strict instead."""
    module = get_module(name)

    def fix(slider: Slider | None, value: float | None) -> float | None:
        if slider is None or value is None:
            return value if slider is None else None
        return value if slider.min <= value <= slider.max else None

    res = fix(module.resolution or _RES, resolution)
    return (int(res) if res is not None else None), fix(module.threshold_a, threshold_a), \
        fix(module.threshold_b, threshold_b)


def _check(slider: Slider | None, value: float | None, field: str, module: Module) -> float | None:
    if slider is None:
        return value
    if value is None:
        return slider.value
    if not (slider.min <= value <= slider.max):
        raise ValidationError(f"{value} is out of range for {module.label} ({slider.name})", field=field,
                              allowed=f"{slider.min}..{slider.max}")
    return value


def missing_weights(name: str, models_dir: str | Path | None = None) -> list[Path]:
    """The weight files a module needs that are not on disk (empty for built-in modules)."""
    module = get_module(name)
    folder = annotators_dir(models_dir)
    return [folder / f for f in module.weights if not (folder / f).is_file()]


def cache_command(module: Module) -> str:
    """The `sdcodex cache-models` command that fetches a module's weights."""
    from sdcodex.engines.preprocessors_hf import ANNOTATORS
    for annotator in ANNOTATORS.values():
        if set(module.weights) == set(annotator.files):
            return f"sdcodex cache-models {annotator.catalogue}"
    return CACHE_COMMAND


def annotators_dir(models_dir: str | Path | None = None) -> Path:
    """`<models>/annotators`: where `sdcodex cache-models annotators` puts the preprocessor weights."""
    if models_dir is None:
        from sdcodex.models.inventory import default_models_dir
        models_dir = default_models_dir()
    return Path(models_dir) / "annotators"


def run_preprocessor(module: str, image: Image.Image, *, resolution: int, threshold_a: float | None = None,
                     threshold_b: float | None = None, seed: int = 0, mask: Image.Image | None = None,
                     models_dir: str | Path | None = None, device: str = "cpu",
                     field: str = "module") -> Image.Image:
    """Run preprocessor `module` (extension key or UI alias) on `image`; returns the control image (RGB, or RGBA
    for the inpaint modules: alpha 0 = masked).

    `threshold_a`/`threshold_b` default to the module's slider defaults (ignored by modules without that slider;
    out of range is a ValidationError). `seed` drives `shuffle`. `mask` (white = repaint) is for the inpaint
    modules; without it an RGBA image's transparent pixels are the mask. `field` is the JSON path of the module
    in the caller's request, used in errors (`controls[1].module`)."""
    spec = get_module(module, field=field)
    prefix = field.rsplit(".", 1)[0] + "." if "." in field else ""
    if spec.resolution is not None or spec.resize:
        res = _check(spec.resolution or _RES, resolution, f"{prefix}processor_res", spec)
    else:
        res = resolution
    a = _check(spec.threshold_a, threshold_a, f"{prefix}threshold_a", spec)
    b = _check(spec.threshold_b, threshold_b, f"{prefix}threshold_b", spec)
    if spec.weights:
        missing = missing_weights(spec.name, models_dir)
        if missing:
            folder = annotators_dir(models_dir)
            raise ValidationError(
                f"preprocessor {spec.label} needs {', '.join(str(p.relative_to(folder)) for p in missing)} in "
                f"{folder}; run `{cache_command(spec)}` once (nothing is downloaded while generating)", field=field)
    arr = to_rgb_array(image)
    mask_arr = None
    if spec.accepts_mask:
        if mask is not None:
            m = mask.convert("L")
            if m.size != image.size:
                m = m.resize(image.size, Image.NEAREST)
            mask_arr = np.asarray(m) > 127
        elif image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
            mask_arr = np.asarray(image.convert("RGBA"))[:, :, 3] < 128
    opts = Options(threshold_a=a, threshold_b=b, resolution=int(res or 512), seed=int(seed), mask=mask_arr,
                   models_dir=Path(models_dir) if models_dir is not None else None, device=device)
    if spec.resize:
        h, w = arr.shape[:2]
        tw, th = scaled_size(w, h, opts.resolution)
        if tw * th > MAX_WORK_PIXELS:
            raise ValidationError(f"a {w}x{h} image scaled to resolution {opts.resolution} would be {tw}x{th} "
                                  f"pixels", field=f"{prefix}processor_res", allowed=f"at most {MAX_WORK_PIXELS} pixels")
        out = spec.run(_pad64(resize_array(arr, tw, th)), opts)[:th, :tw]
    else:
        out = spec.run(arr, opts)
    out = np.ascontiguousarray(out, dtype=np.uint8)
    return Image.fromarray(out, "RGBA" if spec.rgba else "RGB")
