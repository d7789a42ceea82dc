"""Server overhead: the same tiny txt2img job run in-process (`Orchestrator.run`) and over HTTP
(POST /api/v1/jobs + SSE until the result, and the synchronous A1111 /sdapi/v1/txt2img) against a real
uvicorn server, interleaved; prints the HTTP/in-process ratio, then jobs/s through the queue with N
concurrent submissions.

    .venv/bin/python benchmarks/bench_server.py [--repeat 10] [--steps 2] [--jobs 20]
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--jobs", type=int, default=20, help="concurrent submissions for the jobs/s run")
    ap.add_argument("--models-dir", default=None, help="folder with models/demo (built if missing)")
    args = ap.parse_args()

    import httpx
    import uvicorn

    from sdcodex.models.demo import build_demo_models
    from sdcodex.runtime import LocalModels
    from sdcodex.server import ServerSettings, create_app

    tmp = Path(tempfile.mkdtemp(prefix="bench-server-"))
    models_dir = Path(args.models_dir) if args.models_dir else tmp / "models"
    build_demo_models(models_dir / "demo", families=("sd15",))
    models = LocalModels(models_dir)
    port = _port()
    app = create_app(ServerSettings(models=models, outdir=str(tmp / "out"), db_path=str(tmp / "jobs.sqlite"),
                                    port=port, device="cpu"))
    service = app.state.codex
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    req = {"task": "txt2img", "prompt": "bench", "model": "sd15-demo", "width": args.size, "height": args.size,
           "steps": args.steps, "seed": 1}
    a1111 = {"prompt": "bench", "width": args.size, "height": args.size, "steps": args.steps, "seed": 1,
             "override_settings": {"sd_model_checkpoint": "sd15-demo"}}

    def in_process() -> float:
        t = time.perf_counter()
        service.orchestrator.run(dict(req))
        return time.perf_counter() - t

    def native(client: httpx.Client) -> float:
        t = time.perf_counter()
        job = client.post("/api/v1/jobs", json=req).json()
        with client.stream("GET", f"/api/v1/jobs/{job['id']}/events") as r:
            for line in r.iter_lines():
                if line.startswith("event: ") and line[7:] in ("result", "error"):
                    break
        return time.perf_counter() - t

    def sync_a1111(client: httpx.Client) -> float:
        t = time.perf_counter()
        r = client.post("/sdapi/v1/txt2img", json=a1111)
        r.raise_for_status()
        return time.perf_counter() - t

    with httpx.Client(base_url=url, timeout=300) as client:
        native(client)  # warm: model load, hashing
        service.worker.pause()  # in-process runs must not race the worker
        times: dict[str, list[float]] = {"in_process": [], "native_http": [], "a1111_http": []}
        for _ in range(args.repeat):
            times["in_process"].append(in_process())
            service.worker.resume()
            times["native_http"].append(native(client))
            times["a1111_http"].append(sync_a1111(client))
            service.worker.pause()
        service.worker.resume()

        t = time.perf_counter()
        with ThreadPoolExecutor(16) as pool:
            ids = list(pool.map(lambda _i: httpx.post(f"{url}/api/v1/jobs", json=req, timeout=60).json()["id"],
                                range(args.jobs)))
        for job_id in ids:
            service.queue.wait(job_id, timeout=600)
        elapsed = time.perf_counter() - t
        states = {service.store.get(j).state for j in ids}

    server.should_exit = True
    thread.join(30)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"tiny sd15 txt2img {args.size}x{args.size}, {args.steps} steps, {args.repeat} interleaved runs (median s)")
    for key, value in med.items():
        print(f"  {key:12s} {value:.4f}s   ratio vs in-process {value / med['in_process']:.3f}")
    print(f"queue: {args.jobs} concurrent submissions -> {args.jobs / elapsed:.2f} jobs/s "
          f"({elapsed / args.jobs:.4f} s/job vs in-process {med['in_process']:.4f}); states {sorted(states)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
