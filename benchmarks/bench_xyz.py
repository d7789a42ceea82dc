"""Cost of an X/Y/Z plot over the same cells run as single jobs: a 2x2 plot (steps x CFG) on the tiny SD 1.5 demo
model against its four cells submitted one by one through the same orchestrator (warm model, interleaved
rounds, medians). The plot adds the grid and one more file; prints the ratio.

    .venv/bin/python benchmarks/bench_xyz.py [--repeat 5] [--steps 4] [--size 64]
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
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--models-dir", default=None, help="folder with models/demo (built if missing)")
    args = ap.parse_args()

    from sdcodex.models.demo import build_demo_models
    from sdcodex.runtime import LocalModels, build_orchestrator

    work = Path(args.models_dir or tempfile.mkdtemp(prefix="sdcodex-bench-"))
    build_demo_models(work / "demo", families=("sd15",))
    orch = build_orchestrator(models=LocalModels(work), outdir=Path(tempfile.mkdtemp(prefix="sdcodex-bench-out-")))
    base = {"task": "txt2img", "model": "sd15-demo", "prompt": "a lighthouse", "width": args.size,
            "height": args.size, "steps": args.steps, "seed": 1}
    steps, cfgs = (args.steps, args.steps + 1), (3.0, 7.0)
    plot = {**base, "xyz": {"x": {"type": "steps", "values": list(steps)}, "y": {"type": "cfg_scale",
                                                                                 "values": list(cfgs)}}}
    orch.run(base)  # load the model once
    plots, singles = [], []
    for _ in range(args.repeat):
        t = time.perf_counter()
        orch.run(plot)
        plots.append(time.perf_counter() - t)
        t = time.perf_counter()
        for cfg in cfgs:
            for s in steps:
                orch.run({**base, "steps": s, "cfg_scale": cfg})
        singles.append(time.perf_counter() - t)
    p, s = statistics.median(plots), statistics.median(singles)
    print(f"2x2 plot: {p:.2f} s   four single jobs: {s:.2f} s   ratio plot/singles: {p / s:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
