"""The Ray Serve backend on a local Ray instance: 2 CPU replicas, one model each (`--models-per-replica 1`),
three tiny models. Jobs stay with the replica that holds their model, pixels equal the in-process path, a replica
killed mid-job hands its job to the other one, and the A1111 path (progress, previews, interrupt) works."""
from __future__ import annotations

import base64
import io
import os
import shutil
import signal

import numpy as np
import pytest
from PIL import Image

from .live import TINY, live_server, wait_job, wait_until

pytestmark = pytest.mark.xdist_group("ray")
REQUEST = {"task": "txt2img", "prompt": "a lighthouse", "seed": 7, **TINY, "steps": 2}


@pytest.fixture(scope="module")
def ray_server(ray_instance, scale_models_dir, tmp_path_factory):
    from sdcodex.runtime import LocalModels

    root = tmp_path_factory.mktemp("ray-server")
    with live_server(models=LocalModels(scale_models_dir), outdir=str(root / "outputs"),
                     db_path=str(root / "jobs.sqlite"), backend="ray", replicas=2, models_per_replica=1,
                     ray_cpus_per_replica=1.0, max_steps=500) as server:
        with server.client() as client:
            wait_until(lambda: len(client.get("/api/v1/workers").json()["workers"]) == 2, 300, "2 replicas")
        yield server


def _submit(client, model: str, **kw) -> str:
    r = client.post("/api/v1/jobs", json={**REQUEST, "model": model, **kw})
    assert r.status_code == 202, r.text
    return r.json()["id"]


def _done(client, job_id: str) -> dict:
    job = wait_job(client, job_id, timeout=240)
    assert job["state"] == "done", job
    return job


def test_jobs_stay_on_the_replica_holding_their_model_and_pixels_equal_in_process(ray_server, scale_models_dir,
                                                                                 tmp_path):
    with ray_server.client() as client:
        # two models at once: one replica each (a replica runs one job at a time)
        first = [_submit(client, "m1"), _submit(client, "m2")]
        jobs = [_done(client, j) for j in first]
        r1, r2 = (j["result"]["info"]["worker"] for j in jobs)
        assert r1 != r2
        holder = {"m1": r1, "m2": r2}
        # each model's jobs go to the replica that holds it
        for model in ("m1", "m2"):
            assert _done(client, _submit(client, model))["result"]["info"]["worker"] == holder[model]
        listing = {w["id"]: w for w in client.get("/api/v1/workers").json()["workers"]}
        assert set(listing) == {r1, r2}
        assert all(w["pid"] and w["node"] and w["device"] == "cpu" and w["job"] is None for w in listing.values())
        assert [m.split("/")[-1] for m in listing[r1]["models"]] == ["m1"]
        # a third model evicts the model of one replica (one model each); then stays there too
        r3 = _done(client, _submit(client, "m3"))["result"]["info"]["worker"]
        assert _done(client, _submit(client, "m3"))["result"]["info"]["worker"] == r3
        kept = "m2" if r3 == r1 else "m1"
        assert _done(client, _submit(client, kept))["result"]["info"]["worker"] == holder[kept]

        # the same pixels as the in-process path
        from sdcodex.runtime import LocalModels, build_orchestrator

        local = build_orchestrator(models=LocalModels(scale_models_dir), outdir=tmp_path, device="cpu")
        expected = np.asarray(Image.open(local.run({**REQUEST, "model": "m1"}).images[0]).convert("RGB"), np.int16)
        got = client.get(jobs[0]["result"]["images"][0])
        image = Image.open(io.BytesIO(got.content))
        assert "parameters" in image.info  # the ingress wrote the file with its infotext
        assert np.abs(np.asarray(image.convert("RGB"), np.int16) - expected).max() <= 1


def test_a1111_path_progress_previews_interrupt_and_an_unloadable_model(ray_server, scale_models_dir):
    service = ray_server.service
    with ray_server.client() as client:
        r = client.post("/sdapi/v1/txt2img", json={"prompt": "a lighthouse", "seed": 7, "steps": 2, "width": 64,
                                                   "height": 64, "override_settings": {"sd_model_checkpoint": "m2"}})
        assert r.status_code == 200, r.text
        image = Image.open(io.BytesIO(base64.b64decode(r.json()["images"][0])))
        assert image.size == (64, 64) and "Steps: 2" in r.json()["info"]
        # progress and live previews stream back from the replica; /interrupt reaches it
        client.post("/sdapi/v1/options", json={"show_progress_every_n_steps": 1})
        try:
            job_id = _submit(client, "m1", steps=400)
            wait_until(lambda: (client.get("/sdapi/v1/progress").json()["current_image"] or None), what="a preview")
            progress = client.get("/sdapi/v1/progress").json()
            assert progress["state"]["job"] == f"task({job_id})" and progress["state"]["sampling_step"] >= 1
            assert client.post("/sdapi/v1/interrupt").json()["interrupted"] == job_id
            job = wait_job(client, job_id, timeout=120)
            assert job["state"] == "interrupted" and job["progress"]["done"] < 400
        finally:
            client.post("/sdapi/v1/options", json={"show_progress_every_n_steps": 10})
        # a model that no replica can load: failed, with the reason
        gone = scale_models_dir / "scale" / "gone"
        shutil.copytree(scale_models_dir / "scale" / "m1", gone)
        service.worker.pause()
        try:
            job_id = _submit(client, "gone")
            shutil.rmtree(gone)
        finally:
            service.worker.resume()
        job = wait_job(client, job_id, timeout=120)
        assert job["state"] == "failed" and job["error"]["error"] == "model_not_found", job
        assert "gone" in job["error"]["message"]


def test_a_replica_killed_mid_job_hands_the_job_to_the_other(ray_server):
    # last in the file: Serve starts a replacement replica, which costs the machine a few seconds of imports
    with ray_server.client() as client:
        job_id = _submit(client, "m1", steps=30)
        wait_until(lambda: client.get(f"/api/v1/jobs/{job_id}").json()["progress"], what="progress")
        victim = next(w for w in client.get("/api/v1/workers").json()["workers"] if w["job"] == job_id)
        os.kill(victim["pid"], signal.SIGKILL)
        job = _done(client, job_id)
        assert job["attempts"] == 2 and job["result"]["info"]["worker"] != victim["id"]
        events = _events(client, job_id)
        kinds = [k for k, _ in events]
        assert kinds.count("result") == 1 and kinds.count("requeued") == 1
        requeued = next(d for k, d in events if k == "requeued")
        assert victim["id"] in requeued["reason"] and "died" in requeued["reason"]


def _events(client, job_id: str) -> list[tuple[str, dict]]:
    import json

    text = client.get(f"/api/v1/jobs/{job_id}/events").text
    out = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        if "event" in fields:
            out.append((fields["event"], json.loads(fields["data"])))
    return out


def test_styles_expand_on_a_replica_from_the_ingress_styles_file(ray_server):
    with ray_server.client() as client:
        assert client.put("/api/v1/styles/lit", json={"prompt": "{prompt} at dusk", "negative_prompt": "fog"}
                          ).status_code == 200
        job = _done(client, _submit(client, "m1", styles=["lit"]))
        info = job["result"]["info"]
        assert info["request"]["prompt"] == "a lighthouse at dusk" and info["request"]["negative_prompt"] == "fog"
        assert info["styles"] == ["lit"] and info["worker"]
