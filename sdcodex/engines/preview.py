"""Live previews: the current latents of a sampling step turned into a small RGB image.

A linear map from latent channels to RGB (plus a bias) approximates what the VAE decoder would show, as
A1111's "Approx cheap" and ComfyUI's latent2rgb previews do: no decoder call, well under a millisecond per
step. The image has the latent's size (1/8 of the output per side); the first image of the batch is shown,
and for video the first frame. The factors are published calibration values per VAE family (fitted by
regressing decoded pixels on latents); a family without them gets no preview.
"""
from __future__ import annotations

import logging
from typing import Any

import torch

log = logging.getLogger("sdcodex.engines.preview")

# latent channel -> (R, G, B), one row per channel; then the RGB bias. Values are in the [-1, 1] pixel range.
_SD15 = ([[0.3512, 0.2297, 0.3227], [0.3250, 0.4974, 0.2350], [-0.2829, 0.1762, 0.2721],
          [-0.2120, -0.2616, -0.7177]], [0.0, 0.0, 0.0])
_SDXL = ([[0.3651, 0.4232, 0.4341], [-0.2533, -0.0042, 0.1068], [0.1076, 0.1111, -0.0362],
          [-0.3165, -0.2492, -0.2188]], [0.1084, -0.0175, -0.0011])
_FLUX = ([[-0.0346, 0.0244, 0.0681], [0.0034, 0.0210, 0.0687], [0.0275, -0.0668, -0.0433],
          [-0.0174, 0.0160, 0.0617], [0.0859, 0.0721, 0.0329], [0.0004, 0.0383, 0.0115],
          [0.0405, 0.0861, 0.0915], [-0.0236, -0.0185, -0.0259], [-0.0245, 0.0250, 0.1180],
          [0.1008, 0.0755, -0.0421], [-0.0515, 0.0201, 0.0011], [0.0428, -0.0012, -0.0036],
          [0.0817, 0.0765, 0.0749], [-0.1264, -0.0522, -0.1103], [-0.0280, -0.0881, -0.0499],
          [-0.1262, -0.0982, -0.0778]], [-0.0329, -0.0718, -0.0851])
_HUNYUAN = ([[-0.0395, -0.0331, 0.0445], [0.0696, 0.0795, 0.0518], [0.0135, -0.0945, -0.0282],
             [0.0108, -0.0250, -0.0765], [-0.0209, 0.0032, 0.0224], [-0.0804, -0.0254, -0.0639],
             [-0.0991, 0.0271, -0.0669], [-0.0646, -0.0422, -0.0400], [-0.0696, -0.0595, -0.0894],
             [-0.0799, -0.0208, -0.0375], [0.1166, 0.1627, 0.0962], [0.1165, 0.0432, 0.0407],
             [-0.2315, -0.1920, -0.1355], [-0.0270, 0.0401, -0.0821], [-0.0616, -0.0997, -0.0727],
             [0.0249, -0.0469, -0.1703]], [0.0259, -0.0192, -0.0761])
# WAN 2.1 VAE (the A14B models): the factors apply to normalised latents, which is what the pipeline samples
_WAN21 = ([[-0.1299, -0.1692, 0.2932], [0.0671, 0.0406, 0.0442], [0.3568, 0.2548, 0.1747],
           [0.0372, 0.2344, 0.1420], [0.0313, 0.0189, -0.0328], [0.0296, -0.0956, -0.0665],
           [-0.3477, -0.4059, -0.2925], [0.0166, 0.1902, 0.1975], [-0.0412, 0.0267, -0.1364],
           [-0.1293, 0.0740, 0.1636], [0.0680, 0.3019, 0.1128], [0.0032, 0.0581, 0.0639],
           [-0.1251, 0.0927, 0.1699], [0.0060, -0.0633, 0.0005], [0.3477, 0.2275, 0.2950],
           [0.1984, 0.0913, 0.1861]], [-0.1835, -0.0868, -0.3360])

FACTORS: dict[str, tuple[list[list[float]], list[float]]] = {
    "sd15": _SD15, "sd2": _SD15, "sdxl": _SDXL, "flux": _FLUX, "hunyuan_video": _HUNYUAN,
    "wan22_t2v_a14b": _WAN21, "wan22_i2v_a14b": _WAN21,
    # Z-Image and Chroma sample in FLUX.1's latent space (the same VAE, scaling and shift)
    "z_image": _FLUX, "chroma": _FLUX,
}


def supported(family: str) -> bool:
    return str(family) in FACTORS


def latents_to_rgb(latents: torch.Tensor, family: str) -> "Any | None":
    """A PIL image of the first sample's (first frame's) latents; None when the family has no factors or the
    latents do not have its channel count. Accepts (B, C, H, W) and (B, C, F, H, W)."""
    from PIL import Image

    table = FACTORS.get(str(family))
    if table is None or latents.ndim not in (4, 5):
        return None
    rows, bias = table
    sample = latents[0, :, 0] if latents.ndim == 5 else latents[0]
    if sample.shape[0] != len(rows):
        return None
    weight = torch.tensor(rows, dtype=torch.float32)
    rgb = torch.einsum("chw,cr->hwr", sample.detach().float().cpu(), weight) + torch.tensor(bias)
    pixels = ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    return Image.fromarray(pixels, "RGB")


def unpack_flux(latents: torch.Tensor, height: int, width: int, vae_scale_factor: int = 8) -> torch.Tensor | None:
    """FLUX samples packed 2x2 patches, (B, H/16 * W/16, 64); back to (B, 16, H/8, W/8). None when the
    sequence is not that size (a hires pass samples at another size)."""
    batch, length, packed = latents.shape
    h, w = 2 * (int(height) // (vae_scale_factor * 2)), 2 * (int(width) // (vae_scale_factor * 2))
    if length != (h // 2) * (w // 2) or packed % 4:
        return None
    grid = latents.view(batch, h // 2, w // 2, packed // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return grid.reshape(batch, packed // 4, h, w)


class Previewer:
    """Makes the preview of one step for one engine run; never raises (a preview is a nicety)."""

    def __init__(self, family: str, *, height: int, width: int, vae_scale_factor: int = 8) -> None:
        self.family, self.height, self.width = str(family), int(height), int(width)
        self.vae_scale_factor = int(vae_scale_factor or 8)
        self._failed = False

    def __call__(self, latents: Any) -> Any:
        if self._failed or not isinstance(latents, torch.Tensor):
            return None
        try:
            if latents.ndim == 3:  # FLUX-type packed 2x2 patches (FLUX, Chroma)
                latents = unpack_flux(latents, self.height, self.width, self.vae_scale_factor)
            return None if latents is None else latents_to_rgb(latents, self.family)
        except Exception:  # noqa: BLE001 - a preview must never fail the job
            self._failed = True
            log.exception("live preview failed for %s; no more previews this run", self.family)
            return None
