"""The A1111 inpaint overlay, written out for the reference side of the pixel tests: Diffusers' inpaint pipelines
decode the whole image, and A1111 then pastes the original back outside the (blurred) mask. White = generated."""
from __future__ import annotations

import numpy as np
from PIL import Image


def overlay(generated: Image.Image, original: Image.Image, mask: Image.Image) -> Image.Image:
    """generated * m + original * (1 - m) with m = mask / 255, rounded as Pillow's composite rounds."""
    original = original.convert("RGB").resize(generated.size, Image.LANCZOS) if original.size != generated.size \
        else original.convert("RGB")
    m = np.asarray(mask.convert("L").resize(generated.size, Image.NEAREST), dtype=np.int32)[..., None]
    g = np.asarray(generated.convert("RGB"), dtype=np.int32)
    o = np.asarray(original, dtype=np.int32)
    out = (o * 255 + (g - o) * m + 127) // 255
    return Image.fromarray(out.clip(0, 255).astype(np.uint8))
