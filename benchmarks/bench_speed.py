"""Attention backends and regional compile side by side: one model (the tiny FLUX demo unless --models-dir/--model
name a real one), each backend this machine can run (and, with --compile, a compiled orchestrator on the same model
files), interleaved rounds in one process; prints the median denoise of each, its ratio to `native`, and the largest
pixel difference to the `native` image.

    .venv/bin/python benchmarks/bench_speed.py --steps 8 --repeat 3 --size 128 [--compile]
    .venv/bin/python benchmarks/bench_speed.py --models-dir models --model flux1-dev.safetensors --size 1024 \\
        --steps 28 --device cuda --attention native sage flash --compile

Tiny random models are overhead-bound; on a GPU with a real model the attention share of a step decides the ratio.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from sdcodex.engines.speed import available_backends
from sdcodex.models import demo_video  # noqa: F401
from sdcodex.models.demo import DEMO_BUILDERS, build_demo_model
from sdcodex.runtime import LocalModels, build_orchestrator


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models-dir", default=None, help="a models folder (default: a temporary one with the FLUX demo)")
    ap.add_argument("--model", default=None, help="model name in the folder (default: the FLUX demo)")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--attention", nargs="+", default=None, help="backends (default: every one this device runs)")
    ap.add_argument("--compile", action="store_true", help="also a compiled (regional) run with native attention")
    args = ap.parse_args()
    root = Path(args.models_dir) if args.models_dir else Path(tempfile.mkdtemp())
    model = args.model
    if model is None:
        build_demo_model("flux", root)
        model = DEMO_BUILDERS["flux"][0]
    backends = args.attention or [b for b in available_backends(args.device) if b != "sdpa"]
    orch = build_orchestrator(models=LocalModels(root, device=args.device), save=False, device=args.device)
    arms = {b: (orch, b) for b in backends}
    if args.compile:  # its own model cache: the compiled model is not the one the eager arms run
        arms["native + compile"] = (build_orchestrator(models=LocalModels(root, device=args.device), save=False,
                                                       device=args.device, compile=True), "native")
    request = {"task": "txt2img", "model": model, "prompt": "a lighthouse", "seed": 1, "width": args.size,
               "height": args.size, "steps": args.steps}
    times: dict[str, list[float]] = {k: [] for k in arms}
    images: dict[str, np.ndarray] = {}
    first: dict[str, float] = {}
    for round_ in range(args.repeat + 1):  # the first round warms up (and compiles) and is dropped
        for name, (o, backend) in arms.items():
            start = time.perf_counter()
            result = o.run({**request, "attention": backend})
            wall = time.perf_counter() - start
            if round_ == 0:
                first[name] = wall
            else:
                times[name].append(result.info["metrics"]["denoise"])
            images[name] = np.asarray(result.pil_images[0], dtype=int)
    base = statistics.median(times[backends[0]])
    print(f"| {args.device} | first run | denoise median | ratio to {backends[0]} | max pixel diff |\n"
          f"|---|---|---|---|---|")
    for name in arms:
        med = statistics.median(times[name])
        diff = int(np.abs(images[name] - images[backends[0]]).max())
        print(f"| {name} | {first[name]:.2f} s | {med:.4f} s | {med / base:.2f} | {diff} |")


if __name__ == "__main__":
    main()
