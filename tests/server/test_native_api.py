"""The native API against a real uvicorn server with the tiny demo models."""
from __future__ import annotations

import io
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from PIL import Image

from .live import TINY, b64png, wait_job, wait_state


def _txt(model: str, **kw):
    return {"task": "txt2img", "prompt": "a lighthouse", "model": model, **TINY, **kw}


def _sse(text: str) -> list[tuple[int, str, dict]]:
    out = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        if "id" in fields:
            out.append((int(fields["id"]), fields["event"], json.loads(fields["data"])))
    return out


def test_submit_persists_runs_and_serves_outputs(client, server, sd15_name):
    r = client.post("/api/v1/jobs", json=_txt(sd15_name, seed=7, batch_size=2))
    assert r.status_code == 202
    job = r.json()
    assert job["state"] in ("queued", "running") and r.headers["location"] == f"/api/v1/jobs/{job['id']}"
    assert server.service.store.get(job["id"]) is not None  # committed before the answer
    done = wait_job(client, job["id"])
    assert done["state"] == "done", done["error"]
    info = done["result"]["info"]
    assert info["seeds"] == [7, 8] and info["model"] == sd15_name
    assert len(done["result"]["images"]) == 2
    png = client.get(done["result"]["images"][0])
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    from sdcodex.media.reader import read_info

    meta = read_info(png.content)
    assert meta["request"]["seed"] == 7 and "Seed: 7" in meta["parameters"]
    # the file existed on disk before the job was marked done (the worker writes, then finishes)
    assert (server.service.outdir / done["result"]["files"][0]).is_file()


def test_bad_input_names_the_field(client, sd15_name):
    r = client.post("/api/v1/jobs", json=_txt(sd15_name, steps="many"))
    assert r.status_code == 422 and r.json()["field"] == "steps"
    r = client.post("/api/v1/jobs", json=_txt(sd15_name, bogus=1))
    assert r.status_code == 422 and r.json()["field"] == "bogus" and "unknown key" in r.json()["message"]
    r = client.post("/api/v1/jobs", json=_txt(sd15_name, denoising_strength=0.5))
    assert r.status_code == 422 and r.json()["field"] == "denoising_strength"
    r = client.post("/api/v1/jobs", json=_txt(sd15_name, width=65))
    assert r.status_code == 422 and r.json()["field"] == "width"
    r = client.post("/api/v1/jobs", json=_txt(sd15_name, attention="sage"))    # no sageattention, no CUDA here
    assert r.status_code == 422 and r.json()["field"] == "attention" and "'sage'" in r.json()["message"]
    r = client.post("/api/v1/jobs", json={"task": "img2img", "model": sd15_name, "init_image": "@@not base64@@",
                                          **TINY})
    assert r.status_code == 422 and r.json()["field"] == "init_image" and "base64" in r.json()["message"]
    r = client.post("/api/v1/jobs", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422


def test_unknown_model_is_404_listing_models(client, sd15_name):
    r = client.post("/api/v1/jobs", json=_txt("no-such-model"))
    assert r.status_code == 404
    body = r.json()
    assert body["error"] == "model_not_found" and sd15_name in body["allowed"]


def test_img2img_and_inpaint_jobs(client, sd15_name, sample_image, sample_mask):
    img = b64png(sample_image)
    a = client.post("/api/v1/jobs", json={"task": "img2img", "model": sd15_name, "init_image": img,
                                          "denoising_strength": 0.5, **TINY, "steps": 2}).json()
    inpaint = next(e for e in client.get("/api/v1/models").json()["models"] if "inpaint" in e["name"])
    b = client.post("/api/v1/jobs", json={"task": "inpaint", "model": inpaint["name"], "init_image": img,
                                          "mask": b64png(sample_mask), **TINY, "steps": 2}).json()
    for job in (a, b):
        done = wait_job(client, job["id"])
        assert done["state"] == "done", done["error"]
        assert done["result"]["info"]["task"] == job["request"]["task"]


def test_sse_order_and_resume(client, sd15_name):
    job = client.post("/api/v1/jobs", json=_txt(sd15_name, steps=3, batch_size=2)).json()
    with client.stream("GET", f"/api/v1/jobs/{job['id']}/events") as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = _sse(r.read().decode())
    ids = [n for n, _, _ in events]
    kinds = [k for _, k, _ in events]
    assert ids == list(range(1, len(ids) + 1))
    assert kinds[0] == "queued" and kinds[-1] == "result" and kinds.index("started") < kinds.index("progress")
    steps = [d["done"] for _, k, d in events if k == "progress"]
    assert steps == sorted(steps) and steps[-1] == 3 and all("eta" in d for _, k, d in events if k == "progress")
    # resume: only what came after the given id, by header or by query
    r = client.get(f"/api/v1/jobs/{job['id']}/events", headers={"Last-Event-ID": str(ids[2])})
    assert [n for n, _, _ in _sse(r.text)] == ids[3:]
    r = client.get(f"/api/v1/jobs/{job['id']}/events", params={"after": ids[-2]})
    assert [k for _, k, _ in _sse(r.text)] == ["result"]


def test_sse_live_stream_follows_a_queued_job(client, server, sd15_name):
    server.service.worker.pause()
    try:
        job = client.post("/api/v1/jobs", json=_txt(sd15_name)).json()
        got: list = []

        def listen() -> None:
            with httpx.Client(base_url=server.url, timeout=60) as c:
                got.extend(_sse(c.get(f"/api/v1/jobs/{job['id']}/events").text))

        t = threading.Thread(target=listen)
        t.start()
        time.sleep(0.3)
        assert t.is_alive()  # waiting: the job has not run yet
    finally:
        server.service.worker.resume()
    t.join(60)
    assert [k for _, k, _ in got][0] == "queued" and got[-1][1] == "result"


def test_cancel_queued_and_running(client, server, sd15_name):
    long = client.post("/api/v1/jobs", json=_txt(sd15_name, steps=400)).json()
    queued = client.post("/api/v1/jobs", json=_txt(sd15_name)).json()
    wait_state(client, long["id"], ("running",))
    r = client.post(f"/api/v1/jobs/{queued['id']}/cancel")
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    deadline = time.monotonic() + 60
    while (client.get(f"/api/v1/jobs/{long['id']}").json()["progress"] or {}).get("done", 0) < 10:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    preview = client.get(f"/api/v1/jobs/{long['id']}/preview")  # made every 10 steps by default
    assert preview.status_code == 200 and preview.headers["content-type"] == "image/png"
    assert int(preview.headers["x-step"]) % 10 == 0 and Image.open(io.BytesIO(preview.content)).mode == "RGB"
    assert client.get(f"/api/v1/jobs/{queued['id']}/preview").status_code == 404  # not running
    r = client.post(f"/api/v1/jobs/{long['id']}/cancel")
    assert r.status_code == 200 and r.json()["cancel_requested"]
    done = wait_job(client, long["id"])
    assert done["state"] == "cancelled" and done["progress"]["done"] < 400
    assert client.post(f"/api/v1/jobs/{long['id']}/cancel").status_code == 409
    assert client.post("/api/v1/jobs/nope/cancel").status_code == 404
    assert client.get(f"/api/v1/jobs/{long['id']}/preview").status_code == 404  # ended: no preview
    assert client.get("/api/v1/jobs/nope/preview").status_code == 404
    assert wait_job(client, queued["id"])["state"] == "cancelled"  # it never ran
    assert server.service.store.get(queued["id"]).started is None


def test_engine_error_fails_job_and_server_keeps_serving(client, server, sd15_name, monkeypatch):
    from sdcodex.core.registry import get_engine

    engine = get_engine("sd15")
    real_run = engine.run

    def broken(self, params, events):
        if params.prompt == "boom":
            raise RuntimeError("synthetic engine failure")
        return real_run(self, params, events)

    monkeypatch.setattr(engine, "run", broken)
    bad = client.post("/api/v1/jobs", json=_txt(sd15_name, prompt="boom")).json()
    good = client.post("/api/v1/jobs", json=_txt(sd15_name)).json()
    failed = wait_job(client, bad["id"])
    assert failed["state"] == "failed" and failed["error"]["error"] == "engine_error"
    assert "synthetic engine failure" in failed["error"]["message"]
    assert wait_job(client, good["id"])["state"] == "done"
    kinds = [k for _, k, _ in _sse(client.get(f"/api/v1/jobs/{bad['id']}/events").text)]
    assert kinds[-1] == "error"


def test_fifty_concurrent_submissions_all_complete_once(client, server, sd15_name):
    before = server.service.store.counts()["done"]

    def submit(i: int) -> str:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            r = c.post("/api/v1/jobs", json=_txt(sd15_name, seed=1000 + i))
            assert r.status_code == 202, r.text
            return r.json()["id"]

    with ThreadPoolExecutor(16) as pool:
        ids = list(pool.map(submit, range(50)))
    assert len(set(ids)) == 50
    seeds = {}
    for job_id in ids:
        done = wait_job(client, job_id, timeout=300)
        assert done["state"] == "done", done["error"]
        assert done["attempts"] == 1
        seeds[job_id] = done["result"]["info"]["seeds"][0]
    assert sorted(seeds.values()) == list(range(1000, 1050))
    files = [client.get(f"/api/v1/jobs/{j}").json()["result"]["files"][0] for j in ids]
    assert len(set(files)) == 50
    assert server.service.store.counts()["done"] - before == 50
    listed = client.get("/api/v1/jobs", params={"state": "done", "limit": 500}).json()
    assert set(ids) <= {j["id"] for j in listed["jobs"]}


def test_catalogue_routes(client, sd15_name):
    models = client.get("/api/v1/models").json()["models"]
    assert sd15_name in {m["name"] for m in models}
    assert client.post("/api/v1/models/refresh").status_code == 200
    engines = client.get("/api/v1/engines").json()["engines"]
    sd15 = next(e for e in engines if e["engine"] == "sd15")
    assert "txt2img" in sd15["tasks"] and "DPM++ 2M" in sd15["samplers"]
    assert "hires" in sd15["params_schema"]["txt2img"]["properties"]
    assert "mask" not in sd15["params_schema"]["img2img"]["properties"]
    samplers = client.get("/api/v1/samplers").json()
    assert any(s["name"] == "Euler a" for s in samplers["samplers"]) and samplers["schedulers"]
    presets = client.get("/api/v1/presets").json()["presets"]
    assert any(p["id"] == "sd15/normal/txt2img" for p in presets)
    health = client.get("/api/v1/health").json()
    assert health["status"] == "ok" and health["worker"]["alive"]
    assert client.get("/api/v1/jobs", params={"state": "bogus"}).status_code == 422
    assert client.get("/api/v1/jobs/unknown").status_code == 404
    assert client.get("/api/v1/outputs/../jobs.sqlite").status_code == 404
    assert client.get("/api/v1/outputs/nothing.png").status_code == 404
    doc = client.get("/openapi.json").json()
    for path in ("/api/v1/jobs", "/api/v1/jobs/{job_id}/events", "/sdapi/v1/txt2img", "/v1/images/generations",
                 "/v1/videos/{video_id}/content"):
        assert path in doc["paths"]


def test_image_pixel_limit_is_413(server, client, sd15_name):
    big = Image.new("RGB", (200, 200))
    old = server.service.orchestrator.image_loader
    from sdcodex.server.limits import image_loader

    server.service.orchestrator.image_loader = image_loader(100 * 100)
    try:
        r = client.post("/api/v1/jobs", json={"task": "img2img", "model": sd15_name, "init_image": b64png(big),
                                              **TINY})
    finally:
        server.service.orchestrator.image_loader = old
    assert r.status_code == 413
    assert r.json()["field"] == "init_image" and "10000" in r.json()["message"] + str(r.json()["allowed"])
