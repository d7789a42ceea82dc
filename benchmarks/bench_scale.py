"""Scaling past one worker: the per-job overhead of the Ray Serve path against the in-process worker (the same tiny
job through the same queue, interleaved), then jobs/s through 1 and 2 Ray replicas and through 1 and 2 in-process
CPU workers (`--devices cpu,cpu`), each fed a burst of jobs at once.

    .venv/bin/python benchmarks/bench_scale.py [--repeat 10] [--jobs 12] [--steps 2] [--size 64]

Needs the Ray extra (pip install '.[ray]'); starts one local Ray instance. On CPU the replicas share the machine's
cores, so 2 replicas help only as far as the cores are free (the figures say how far on this machine).
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
    ap.add_argument("--repeat", type=int, default=10, help="interleaved single jobs for the overhead")
    ap.add_argument("--jobs", type=int, default=12, help="jobs per burst for jobs/s")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--size", type=int, default=64)
    args = ap.parse_args()

    from sdcodex.models.demo import build_demo_models
    from sdcodex.runtime import LocalModels
    from sdcodex.server import CodexService, ServerSettings
    from sdcodex.server.ray_backend import start_ray

    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    models_dir = tmp / "models"
    build_demo_models(models_dir / "demo", families=("sd15",))
    request = {"task": "txt2img", "prompt": "bench", "model": "sd15-demo", "width": args.size,
               "height": args.size, "steps": args.steps, "seed": 1}
    t = time.perf_counter()
    start_ray(None, log_to_driver=False)
    print(f"local Ray instance started in {time.perf_counter() - t:.1f}s")

    def service(name: str, **kw) -> CodexService:
        svc = CodexService(ServerSettings(models=LocalModels(models_dir), outdir=str(tmp / name / "out"),
                                          db_path=str(tmp / name / "jobs.sqlite"), **kw))
        t = time.perf_counter()
        svc.start()
        if svc.backend is not None:
            svc.backend.wait_ready()
            print(f"{name}: {kw.get('replicas')} replica(s) ready in {time.perf_counter() - t:.1f}s")
        return svc

    def one(svc: CodexService) -> float:
        t = time.perf_counter()
        job = svc.queue.wait(svc.submit(dict(request)).id, timeout=600)
        assert job is not None and job.state == "done", job and (job.state, job.error)
        return time.perf_counter() - t

    def burst(svc: CodexService) -> float:
        t = time.perf_counter()
        ids = [svc.submit(dict(request)).id for _ in range(args.jobs)]
        states = {svc.queue.wait(j, timeout=900).state for j in ids}
        assert states == {"done"}, states
        return args.jobs / (time.perf_counter() - t)

    local, ray1 = service("local"), service("ray1", backend="ray", replicas=1, models_per_replica=1)
    one(local), one(ray1)  # warm: model load, hashing
    times: dict[str, list[float]] = {"in_process": [], "ray": []}
    for _ in range(args.repeat):
        times["in_process"].append(one(local))
        times["ray"].append(one(ray1))
    rates = {"ray 1 replica": burst(ray1), "in-process 1 worker": burst(local)}
    ray1.stop()
    local.stop()
    ray2 = service("ray2", backend="ray", replicas=2, models_per_replica=1)
    local2 = service("local2", devices=["cpu", "cpu"])
    burst(ray2), burst(local2)  # warm both replicas / workers
    rates["ray 2 replicas"] = burst(ray2)
    rates["in-process 2 workers"] = burst(local2)
    ray2.stop()
    local2.stop()

    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"tiny sd15 txt2img {args.size}x{args.size}, {args.steps} steps; {args.repeat} interleaved jobs "
          f"(submit -> done, median)")
    print(f"  in-process worker {med['in_process']:.4f}s   ray replica {med['ray']:.4f}s   "
          f"overhead {med['ray'] - med['in_process']:+.4f}s/job   ratio {med['ray'] / med['in_process']:.2f}")
    print(f"jobs/s, bursts of {args.jobs} jobs:")
    for key, value in rates.items():
        print(f"  {key:22s} {value:.2f} jobs/s")
    print(f"  2 vs 1 replica: x{rates['ray 2 replicas'] / rates['ray 1 replica']:.2f}   "
          f"2 vs 1 in-process worker: x{rates['in-process 2 workers'] / rates['in-process 1 worker']:.2f}   "
          f"(cores this process may use: {len(os.sched_getaffinity(0))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
