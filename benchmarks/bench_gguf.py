"""GGUF loading memory: peak RSS while loading a GGUF FLUX-layout transformer, as a ratio of the file's size.

The script writes a synthetic FLUX transformer (BFL key names, random Q8_0 blocks for the matrices, F32 for the rest;
a few hundred MB; never committed) and loads it with our loader in a fresh subprocess, which reports its RSS after
the imports (baseline), its peak RSS once the weights are loaded and every page of them touched, and its peak after
one denoising forward pass (weights dequantized layer by layer). The ratios are (peak - baseline) / file size: the
quantized weights stay as stored, so they sit near 1.0; expanding the model to fp32 first would need the last column.

    .venv/bin/python benchmarks/bench_gguf.py [--layers 4 --single-layers 8 --heads 8] [--workdir /tmp/sdcodex-bench-gguf]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HEAD_DIM = 128


def config(heads: int, layers: int, single: int) -> dict:
    return {"patch_size": 1, "in_channels": 64, "num_layers": layers, "num_single_layers": single,
            "attention_head_dim": HEAD_DIM, "num_attention_heads": heads, "joint_attention_dim": 1024,
            "pooled_projection_dim": 768, "guidance_embeds": True, "axes_dims_rope": [16, 56, 56]}


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def make_file(path: Path, cfg: dict) -> int:
    """Write the synthetic GGUF; return the number of weights."""
    import gguf
    import numpy as np
    import torch
    from diffusers import FluxTransformer2DModel

    from tests.helpers.flow_export import flux_to_bfl

    with torch.device("meta"):
        model = FluxTransformer2DModel(**cfg)
    bfl = flux_to_bfl(model.state_dict())  # BFL names and shapes (meta tensors)
    rng = np.random.default_rng(0)
    q8 = gguf.GGMLQuantizationType.Q8_0
    block, size = gguf.GGML_QUANT_SIZES[q8]
    writer = gguf.GGUFWriter(str(path), "flux")
    count = 0
    for name, meta in bfl.items():
        shape = tuple(meta.shape)
        count += meta.numel()
        if len(shape) >= 2 and shape[-1] % block == 0:
            rows = int(np.prod(shape[:-1]))
            blocks = rng.integers(-127, 128, (rows, shape[-1] // block, size), dtype=np.int8).view(np.uint8)
            scale = np.full((rows, shape[-1] // block, 1), 0.0002, dtype=np.float16).view(np.uint8)
            blocks[:, :, :2] = scale.reshape(rows, -1, 2)
            writer.add_tensor(name, blocks.reshape(*shape[:-1], -1), raw_dtype=q8)
        else:
            writer.add_tensor(name, (rng.standard_normal(shape) * 0.02).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return count


def child(path: Path, cfg_path: Path) -> dict:
    """Runs in the subprocess: load, touch, one forward; report RSS figures."""
    import torch
    # every import the load needs happens before the baseline, so the figures are the load's alone
    import diffusers.quantizers.gguf.utils  # noqa: F401
    import gguf  # noqa: F401
    from diffusers import FluxTransformer2DModel  # noqa: F401
    from diffusers.hooks import apply_layerwise_casting_hook  # noqa: F401

    from sdcodex.models import convert_flow, flow_single, gguf_io, quantized  # noqa: F401

    base = json.loads(cfg_path.read_text())
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    baseline = rss_mb()
    t0 = time.perf_counter()
    module = flow_single.build_transformer(path, "flux", base, torch.float32, "cpu")
    load_s = time.perf_counter() - t0
    with torch.no_grad():  # every page of every stored tensor made resident
        for p in list(module.parameters()) + list(module.buffers()):
            plain = p.as_tensor() if hasattr(p, "as_tensor") else p  # GGUF blocks: read the raw bytes
            flat = plain.detach().reshape(-1)
            flat[:: max(1, 4096 // flat.element_size())].float().sum().item()
    peak_load = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cfg = module.config
    with torch.no_grad():
        module(hidden_states=torch.randn(1, 16, cfg.in_channels), encoder_hidden_states=torch.randn(
            1, 8, cfg.joint_attention_dim), pooled_projections=torch.randn(1, cfg.pooled_projection_dim),
               timestep=torch.tensor([0.5]), img_ids=torch.zeros(16, 3), txt_ids=torch.zeros(8, 3),
               guidance=torch.tensor([3.5]))
    peak_forward = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"baseline_mb": baseline, "peak_load_mb": peak_load, "peak_forward_mb": peak_forward, "load_s": load_s}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--single-layers", type=int, default=8)
    ap.add_argument("--workdir", default="/tmp/sdcodex-bench-gguf")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(Path(args.child[0]), Path(args.child[1]))))
        return 0
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    cfg = config(args.heads, args.layers, args.single_layers)
    path = work / f"flux-synthetic-h{args.heads}-{args.layers}x{args.single_layers}-Q8_0.gguf"
    cfg_path = work / "config.json"
    cfg_path.write_text(json.dumps({"_class_name": "FluxTransformer2DModel", **cfg}))
    t0 = time.perf_counter()
    if not path.is_file():
        weights = make_file(path, cfg)
        (work / (path.name + ".count")).write_text(str(weights))
    weights = int((work / (path.name + ".count")).read_text())
    size_mb = path.stat().st_size / 2**20
    print(f"file {path.name}: {size_mb:.0f} MB, {weights / 1e6:.0f} M weights (made in {time.perf_counter() - t0:.0f} s)")
    out = subprocess.run([sys.executable, __file__, "--child", str(path), str(cfg_path)], capture_output=True,
                         text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": os.environ.get(
                             "OMP_NUM_THREADS", "4")})
    r = json.loads(out.stdout.strip().splitlines()[-1])
    load_ratio = (r["peak_load_mb"] - r["baseline_mb"]) / size_mb
    fwd_ratio = (r["peak_forward_mb"] - r["baseline_mb"]) / size_mb
    fp32_mb = weights * 4 / 2**20
    print(f"baseline RSS after imports {r['baseline_mb']:.0f} MB; load {r['load_s']:.2f} s")
    print(f"peak RSS while loading (all pages touched): +{r['peak_load_mb'] - r['baseline_mb']:.0f} MB = "
          f"{load_ratio:.3f} x file size")
    print(f"peak RSS after one forward pass:            +{r['peak_forward_mb'] - r['baseline_mb']:.0f} MB = "
          f"{fwd_ratio:.3f} x file size")
    print(f"(the same weights expanded to fp32 would take {fp32_mb:.0f} MB = {fp32_mb / size_mb:.2f} x file size)")
    print(f"target <= 1.2 x: {'met' if load_ratio <= 1.2 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
