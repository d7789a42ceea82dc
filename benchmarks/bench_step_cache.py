"""Step caching speed: the tiny FLUX demo at N steps, without a cache and with each cache kind, interleaved rounds
in one process; prints the median wall time of a whole run of each and its ratio to no cache, and the full computes from info.

    .venv/bin/python benchmarks/bench_step_cache.py --steps 28 --repeat 3 [--size 128]

Tiny random models are overhead-bound: the ratio shows what the hooks cost and save per skipped step here; on real
FLUX the transformer dominates and the saving follows `computed / steps` (see docs/memory.md)."""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from sdcodex.models import demo_video  # noqa: F401
from sdcodex.models.demo import DEMO_BUILDERS, build_demo_model
from sdcodex.runtime import build_orchestrator

SPECS = {"none": None, "first_block 0.2": {"kind": "first_block", "threshold": 0.2},
         "taylorseer 5/3": {"kind": "taylorseer"}, "mag 0.1": {"kind": "mag", "threshold": 0.1}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=28)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--size", type=int, default=128)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp())
    build_demo_model("flux", root)
    orch = build_orchestrator(root, None, save=False, device="cpu")
    times: dict[str, list[float]] = {k: [] for k in SPECS}
    computed: dict[str, int] = {}
    for _ in range(args.repeat + 1):  # the first round warms up and is dropped
        for name, spec in SPECS.items():
            req = {"task": "txt2img", "model": DEMO_BUILDERS["flux"][0], "prompt": "a lighthouse", "seed": 1,
                   "width": args.size, "height": args.size, "steps": args.steps}
            if spec:
                req["cache"] = spec
            start = time.perf_counter()
            info = orch.run(req).info
            times[name].append(time.perf_counter() - start)
            computed[name] = info.get("cache", {}).get("computed", args.steps)
    base = statistics.median(times["none"][1:])
    print(f"| cache | computed / steps | run median | ratio to none |\n|---|---|---|---|")
    for name in SPECS:
        med = statistics.median(times[name][1:])
        print(f"| {name} | {computed[name]} / {args.steps} | {med:.3f} s | {med / base:.2f} |")


if __name__ == "__main__":
    main()
