"""Overhead of the `sdcodex generate` path (validate, preset, params, engine, save) over a raw Diffusers
pipeline call with the same tiny model, scheduler and seed. Runs are interleaved; prints the ratio.

    .venv/bin/python benchmarks/bench_overhead.py [--repeat 10] [--steps 8] [--size 64]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--models-dir", default=None, help="folder with models/demo (built if missing)")
    args = ap.parse_args()

    import torch
    from diffusers import StableDiffusionPipeline

    from sdcodex.core.samplers import create_sampler
    from sdcodex.models.demo import build_demo_models
    from sdcodex.runtime import LocalModels, build_orchestrator

    work = Path(args.models_dir or tempfile.mkdtemp(prefix="sdcodex-bench-"))
    build_demo_models(work / "demo", families=("sd15",))
    models = LocalModels(work)
    orch = build_orchestrator(models=models, outdir=Path(tempfile.mkdtemp(prefix="sdcodex-bench-out-")))
    request = {"task": "txt2img", "model": "sd15-demo", "prompt": "a lighthouse", "negative_prompt": "",
               "width": args.size, "height": args.size, "steps": args.steps, "cfg_scale": 7.0,
               "sampler": "Euler", "scheduler": "Automatic", "seed": 1}
    model = models.load(models.resolve("sd15-demo"))
    raw = StableDiffusionPipeline(**{k: model.components.get(k) for k in
                                     ("vae", "text_encoder", "tokenizer", "unet", "scheduler")},
                                  safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    raw.set_progress_bar_config(disable=True)

    def ours() -> None:
        orch.run(request)

    def theirs() -> None:
        raw.scheduler = create_sampler("Euler", "Automatic", "sd15", dict(model.scheduler_config)).scheduler
        raw(prompt=request["prompt"], width=args.size, height=args.size, num_inference_steps=args.steps,
            guidance_scale=7.0, generator=torch.Generator("cpu").manual_seed(1))

    for fn in (ours, theirs):  # warm-up
        fn()
    times: dict[str, list[float]] = {"codex": [], "diffusers": []}
    for _ in range(args.repeat):
        for name, fn in (("codex", ours), ("diffusers", theirs)):
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"tiny sd15 {args.size}x{args.size}, {args.steps} steps, {args.repeat} interleaved runs each")
    print(f"  diffusers pipeline call   median {med['diffusers'] * 1000:8.1f} ms")
    print(f"  sdcodex generate path     median {med['codex'] * 1000:8.1f} ms (includes writing the PNG)")
    print(f"  overhead ratio            {med['codex'] / med['diffusers']:.3f}  (target <= 1.05)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
