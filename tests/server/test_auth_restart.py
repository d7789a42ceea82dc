"""Auth, bind refusal, body limit, and restarts mid-queue (graceful stop, and kill -9 of a real process)."""
from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from sdcodex.core.errors import ValidationError
from sdcodex.server.auth import check_bind, parse_credentials

from .live import TINY, free_port, live_server, wait_job, wait_state


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_basic_and_bearer_auth(local_models, tmp_path):
    with live_server(models=local_models, outdir=str(tmp_path / "o"), start_worker=False,
                     api_auth=parse_credentials("alice:s3cret-pass,bob:pw:with:colons"), api_tokens=["tok-123"]) as srv:
        with srv.client() as c:
            r = c.get("/api/v1/health")
            assert r.status_code == 401 and "Basic" in r.headers["www-authenticate"]
            assert "Bearer" in r.headers["www-authenticate"]
            assert c.get("/sdapi/v1/options").status_code == 401
            assert c.get("/openapi.json").status_code == 401
            assert c.get("/api/v1/health", headers=_basic("alice", "s3cret-pass")).status_code == 200
            assert c.get("/api/v1/health", headers=_basic("bob", "pw:with:colons")).status_code == 200
            assert c.get("/api/v1/health", headers=_basic("alice", "wrong")).status_code == 401
            assert c.get("/api/v1/health", headers=_basic("mallory", "s3cret-pass")).status_code == 401
            assert c.get("/api/v1/health", headers={"Authorization": "Bearer tok-123"}).status_code == 200
            assert c.get("/api/v1/health", headers={"Authorization": "Bearer tok-12"}).status_code == 401
            assert c.get("/api/v1/health", headers={"Authorization": "Basic %%%"}).status_code == 401


def test_non_loopback_without_auth_refuses():
    with pytest.raises(ValidationError, match="without authentication"):
        check_bind("0.0.0.0", has_auth=False, insecure_no_auth=False)
    check_bind("0.0.0.0", has_auth=True, insecure_no_auth=False)
    check_bind("0.0.0.0", has_auth=False, insecure_no_auth=True)
    check_bind("::1", has_auth=False, insecure_no_auth=False)
    from sdcodex.cli.main import main

    assert main(["serve", "--host", "0.0.0.0", "--port", "1"]) == 2


def test_body_limit_is_413_naming_the_limit(local_models, tmp_path):
    with live_server(models=local_models, outdir=str(tmp_path / "o"), start_worker=False,
                     max_body_bytes=1000) as srv, srv.client() as c:
        r = c.post("/api/v1/jobs", json={"task": "txt2img", "prompt": "x" * 2000})
        assert r.status_code == 413 and "1000 bytes" in r.json()["message"]

        def chunks():
            yield b'{"task": "txt2img", "prompt": "'
            yield b"y" * 2000
            yield b'"}'

        r = c.post("/api/v1/jobs", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413
        assert c.post("/api/v1/jobs", json={"task": "nope"}).status_code == 422  # small bodies pass


def test_graceful_restart_requeues_the_running_job(local_models, sd15_name, tmp_path):
    kw = dict(models=local_models, outdir=str(tmp_path / "o"), db_path=str(tmp_path / "jobs.sqlite"))
    with live_server(**kw) as srv, srv.client() as c:
        long = c.post("/api/v1/jobs", json={"task": "txt2img", "model": sd15_name, **TINY, "steps": 30}).json()
        rest = [c.post("/api/v1/jobs", json={"task": "txt2img", "model": sd15_name, **TINY}).json()
                for _ in range(3)]
        wait_state(c, long["id"], ("running",))
    # stopped mid-job: the job went back to the queue, nothing ran after it
    with live_server(**kw) as srv, srv.client() as c:
        for job in [long, *rest]:
            done = wait_job(c, job["id"])
            assert done["state"] == "done", done["error"]
        kinds = [line.split(": ", 1)[1] for line in c.get(f"/api/v1/jobs/{long['id']}/events").text.splitlines()
                 if line.startswith("event: ")]
        assert "requeued" in kinds and kinds[-1] == "result" and kinds.count("started") == 2


def test_kill_9_mid_queue_then_restart_completes_every_job(demo_models_dir, local_models, sd15_name, tmp_path):
    port = free_port()
    db, out = tmp_path / "jobs.sqlite", tmp_path / "o"
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.Popen([sys.executable, "-m", "sdcodex.cli.main", "--models-dir", str(demo_models_dir),
                             "serve", "--port", str(port), "--outdir", str(out), "--db", str(db), "--no-ui"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/api/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline
            time.sleep(0.2)
        with httpx.Client(base_url=url, timeout=60) as c:
            ids = [c.post("/api/v1/jobs", json={"task": "txt2img", "model": sd15_name, **TINY,
                                                "steps": 30 if i == 0 else 1}).json()["id"] for i in range(5)]
            wait_state(c, ids[0], ("running",))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    with live_server(models=local_models, outdir=str(out), db_path=str(db)) as srv, srv.client() as c:
        assert ids[0] in srv.service.recovered[0]
        for job_id in ids:
            done = wait_job(c, job_id)
            assert done["state"] == "done", done["error"]
        assert c.get(f"/api/v1/jobs/{ids[0]}").json()["attempts"] == 2
        assert all(c.get(f"/api/v1/jobs/{j}").json()["attempts"] == 1 for j in ids[1:])
