"""Upscale one PIL image with a loaded upscaler: tiled model passes, then an exact Lanczos resize.

Pure functions, no file I/O. Sizing: the target is `resize_to` (w, h) or `round(size * scale)`
(default: the model's native scale; 4 for the resize-only "None"/"Lanczos"/"Nearest").
If the target is larger than the image in either side, the model runs (at most MAX_PASSES times,
each pass multiplies by the model's scale) until the image covers the target; then one Lanczos
resize lands on the exact size. So 2.5x with a 4x model = one 4x pass + Lanczos down to 2.5x, and
8x with a 4x model = two passes (16x) + Lanczos down, as AUTOMATIC1111 does. "None" resizes with
Lanczos like "Lanczos" (A1111 does the same when a size is asked of it).

Tiling: the image is cut into `tile_size` x `tile_size` tiles (input pixels) overlapping by
`tile_overlap`; each tile's output is weighted by a cosine ramp over the overlap on the sides that
have a neighbour, summed, and divided by the summed weights, so the tile edges (where padding
distorts a convolution's output) fade out and no seams remain. `tile_size=0` runs the whole image.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from PIL import Image

from sdcodex.core.errors import InterruptedError_, ValidationError
from sdcodex.models.upscalers import RESIZE_ONLY, UpscalerModel

MAX_SCALE = 16.0
MAX_PASSES = 3
DEFAULT_RESIZE_SCALE = 4.0
Progress = Callable[[int, int], None]


def target_size(size: tuple[int, int], scale: float | None, resize_to: tuple[int, int] | None,
                native_scale: float) -> tuple[int, int]:
    """The exact output (w, h); validates `scale` and `resize_to` (errors name the field)."""
    w, h = size
    if scale is not None and resize_to is not None:
        raise ValidationError("give either scale or resize_to, not both", field="resize_to")
    if resize_to is not None:
        if (not isinstance(resize_to, (tuple, list)) or len(resize_to) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in resize_to)):
            raise ValidationError(f"must be two integers (width, height), got {resize_to!r}", field="resize_to")
        tw, th = resize_to
        if tw < 1 or th < 1 or tw > w * MAX_SCALE or th > h * MAX_SCALE:
            raise ValidationError(f"{tw}x{th} is out of range for a {w}x{h} image",
                                  field="resize_to", allowed=f"1 .. {MAX_SCALE:g}x the image size per side")
        return tw, th
    if scale is None:
        scale = native_scale
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
        raise ValidationError(f"must be a number, got {scale!r}", field="scale")
    if scale <= 0 or scale > MAX_SCALE:
        raise ValidationError(f"{scale:g} is out of range", field="scale", allowed=f"> 0 and <= {MAX_SCALE:g}")
    return max(1, round(w * scale)), max(1, round(h * scale))


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of `tile`-px tiles covering `length`, evenly spread so every overlap is >= `overlap`."""
    if tile <= 0 or length <= tile:
        return [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def _ramp(length: int, ramp: int, fade_in: bool, fade_out: bool) -> torch.Tensor:
    """1-D weights: 1 inside, cosine ramp from ~0 to 1 over `ramp` px on faded sides (never exactly 0)."""
    weight = torch.ones(length, dtype=torch.float32)
    ramp = min(ramp, length // 2)
    if ramp > 0:
        x = (torch.arange(ramp, dtype=torch.float32) + 0.5) / ramp
        rise = 0.5 - 0.5 * torch.cos(math.pi * x)
        if fade_in:
            weight[:ramp] = rise
        if fade_out:
            weight[length - ramp:] = rise.flip(0)
    return weight


def count_tiles(size: tuple[int, int], tile_size: int, tile_overlap: int) -> int:
    w, h = size
    return len(tile_starts(w, tile_size, tile_overlap)) * len(tile_starts(h, tile_size, tile_overlap))


def model_pass(image: torch.Tensor, model: UpscalerModel, tile_size: int, tile_overlap: int,
               on_tile: Callable[[], None]) -> torch.Tensor:
    """One tiled pass: (3, H, W) float32 [0, 1] on CPU -> (3, H*s, W*s)."""
    _, h, w = image.shape
    s = int(model.scale)
    xs, ys = tile_starts(w, tile_size, tile_overlap), tile_starts(h, tile_size, tile_overlap)
    if len(xs) * len(ys) == 1:
        on_tile()
        out = model(image.unsqueeze(0).to(model.device, model.dtype))
        return out[0].float().cpu()
    th, tw = min(tile_size, h), min(tile_size, w)
    acc = torch.zeros(3, h * s, w * s)
    norm = torch.zeros(1, h * s, w * s)
    for y in ys:
        wy = _ramp(th * s, tile_overlap * s, y > 0, y + th < h)
        for x in xs:
            on_tile()
            tile = image[:, y:y + th, x:x + tw].unsqueeze(0).to(model.device, model.dtype)
            out = model(tile)[0].float().cpu()
            wx = _ramp(tw * s, tile_overlap * s, x > 0, x + tw < w)
            weight = wy[:, None] * wx[None, :]
            acc[:, y * s:(y + th) * s, x * s:(x + tw) * s] += out * weight
            norm[:, y * s:(y + th) * s, x * s:(x + tw) * s] += weight
    return acc / norm


def _to_tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)


def _to_image(tensor: torch.Tensor) -> Image.Image:
    array = (tensor.clamp(0, 1).permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)
    return Image.fromarray(array, "RGB")


def upscale_image(image: Image.Image, model: UpscalerModel | str, *, scale: float | None = None,
                  resize_to: tuple[int, int] | None = None, tile_size: int = 192, tile_overlap: int = 16,
                  progress: Progress | None = None, should_stop: Callable[[], bool] | None = None
                  ) -> Image.Image:
    """Upscale `image` to the exact target size (see module docstring). Returns a new image.

    `progress(0, total)` is called once before the first tile, then `progress(done, total)` after each tile; `should_stop()` is polled before each tile
    and stops with InterruptedError_. Alpha is resized with Lanczos; "L" images come back as "L".
    """
    if not isinstance(image, Image.Image):
        raise ValidationError(f"expected a PIL image, got {type(image).__name__}", field="image")
    if isinstance(model, str):
        if model not in RESIZE_ONLY:
            raise ValidationError(f"{model!r} is not a resize-only upscaler; load it with load_upscaler first",
                                  field="upscaler", allowed=RESIZE_ONLY)
        model = UpscalerModel(model, None, "resize")
    for field, value in (("tile_size", tile_size), ("tile_overlap", tile_overlap)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValidationError(f"must be an integer >= 0, got {value!r}", field=field)
    if tile_size and not 16 <= tile_size:
        raise ValidationError(f"{tile_size} is too small", field="tile_size", allowed="0 (no tiling) or >= 16")
    if tile_size and tile_overlap * 2 >= tile_size:
        raise ValidationError(f"{tile_overlap} must be less than half of tile_size {tile_size}",
                              field="tile_overlap")

    native = DEFAULT_RESIZE_SCALE if model.is_resize_only else float(model.scale)
    tw, th = target_size(image.size, scale, resize_to, native)
    alpha = image.getchannel("A") if image.mode in ("RGBA", "LA", "PA") else None
    gray = image.mode in ("L", "LA", "I", "I;16", "F")

    sizes = [image.size]
    if not model.is_resize_only:
        while len(sizes) <= MAX_PASSES and (sizes[-1][0] < tw or sizes[-1][1] < th):
            sizes.append((sizes[-1][0] * model.scale, sizes[-1][1] * model.scale))
    result = image.convert("RGB")
    if len(sizes) > 1:
        total = sum(count_tiles(size, tile_size, tile_overlap) for size in sizes[:-1])
        done = 0

        def on_tile() -> None:
            nonlocal done
            if should_stop is not None and should_stop():
                raise InterruptedError_(f"upscale interrupted after {done} of {total} tiles")
            done += 1
            if progress is not None:
                progress(done, total)

        if progress is not None:
            progress(0, total)  # the plan, before the first tile's work is timed
        tensor = _to_tensor(result)
        for _ in sizes[1:]:
            tensor = model_pass(tensor, model, tile_size, tile_overlap, on_tile)
        result = _to_image(tensor)

    if result.size != (tw, th):
        method = Image.Resampling.NEAREST if model.name == "Nearest" else Image.Resampling.LANCZOS
        result = result.resize((tw, th), method)
    if gray:
        result = result.convert("L")
    if alpha is not None:
        result = result.convert("LA" if gray else "RGB")
        result.putalpha(alpha.resize((tw, th), Image.Resampling.LANCZOS))
    return result
