"""The holes of issue #18, each against a real uvicorn server: a bad model file or a symlink loop, server
paths in png-info, the job database behind the outputs route, job-size limits and names checked at submit,
lone surrogates, unhandled errors, weak credentials, Host/Origin checks, and a graceful stop mid-batch."""
from __future__ import annotations

import base64
import http.client
import io
import json
import os
import struct
import time
from pathlib import Path

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from sdcodex.core.errors import ValidationError

from .live import TINY, live_server, wait_job


def _txt(model: str, **kw):
    return {"task": "txt2img", "prompt": "a lighthouse", "model": model, **TINY, **kw}


def _raw_post(client, path: str, text: str):
    """POST a JSON text as is (a lone surrogate cannot go through httpx's `json=`)."""
    return client.post(path, content=text.encode("ascii"), headers={"content-type": "application/json"})


# ------------------------------------------------------------------------------------------- model files
@pytest.fixture(scope="module")
def bad_models_dir(tmp_path_factory, local_models) -> Path:
    """A models folder with one good model (linked), a header of 200000 '[', two links to each other and a
    folder that links back to its parent."""
    root = tmp_path_factory.mktemp("bad_models")
    sd15 = next(e for e in local_models.checkpoints() if e.family and e.family.value == "sd15"
                and "inpaint" not in e.name)
    (root / "good").symlink_to(sd15.path, target_is_directory=True)
    from safetensors.torch import save_file

    from tests.features.conftest import kohya_lora

    save_file(kohya_lora(local_models.load(sd15), 1), root / "tiny-kohya.safetensors")
    raw = b"[" * 200_000
    (root / "deep.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw)
    (root / "a.safetensors").symlink_to(root / "b.safetensors")
    (root / "b.safetensors").symlink_to(root / "a.safetensors")
    (root / "loop").mkdir()
    (root / "loop" / "up").symlink_to(root, target_is_directory=True)
    (root / "loop" / "again").symlink_to(root / "loop", target_is_directory=True)
    return root


def test_one_bad_model_file_does_not_take_the_model_routes_down(bad_models_dir, tmp_path):
    from sdcodex.runtime import LocalModels

    models = LocalModels(bad_models_dir)
    with live_server(models=models, outdir=str(tmp_path / "o"), start_worker=False) as srv, srv.client() as c:
        rows = {m["name"]: m for m in c.get("/api/v1/models").json()["models"]}
        assert "nested too deeply" in rows["deep"]["error"] and rows["deep"]["kind"] == "unknown"
        assert "symbolic links" in rows["a"]["error"]
        assert rows["good"]["kind"] == "checkpoint" and rows["good"]["error"] is None
        for path in ("/sdapi/v1/sd-models", "/sdapi/v1/options", "/sdapi/v1/sd-vae", "/sdapi/v1/loras"):
            assert c.get(path).status_code == 200, path
        assert c.post("/api/v1/models/refresh").status_code == 200
        assert c.post("/sdapi/v1/refresh-checkpoints").status_code == 200
        assert c.post("/api/v1/jobs", json=_txt("good")).status_code == 202
        ok = c.post("/api/v1/jobs", json=_txt("good", prompt="a <lora:tiny-kohya:0.5>", loras=[{"name": "tiny-kohya"}]))
        assert ok.status_code == 202, ok.text  # names that exist pass the submit-time check
        r = c.post("/api/v1/jobs", json=_txt("deep"))  # the corrupt model: its reason, not "unknown model"
        assert r.status_code == 422 and r.json()["field"] == "model" and "nested too deeply" in r.json()["message"]
        r = c.post("/sdapi/v1/txt2img", json={"prompt": "x", "override_settings": {"sd_model_checkpoint": "deep"}})
        assert r.status_code < 500
        assert c.get("/api/v1/health").json()["status"] == "ok"


def test_models_list_survives_a_bad_file_and_link_loops(bad_models_dir, capsys):
    from sdcodex.cli.main import main

    assert main(["--models-dir", str(bad_models_dir), "models", "list"]) == 0
    out = capsys.readouterr().out
    assert "good" in out and "unusable:" in out and "nested too deeply" in out


# ---------------------------------------------------------------------------------------------- png-info
def test_png_info_never_reads_a_server_path(client, tmp_path):
    info = PngInfo()
    info.add_text("parameters", "secret prompt of another job\nSteps: 3, Seed: 1")
    path = tmp_path / "other.png"
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    for value in (str(path), "~nosuchuser", "~/x.png", "~nosuchuser/x.png", "/etc/passwd", "../" * 8 + "etc/hosts"):
        r = client.post("/sdapi/v1/png-info", json={"image": value})
        assert r.status_code == 422, (value, r.text)
        assert r.json()["field"] == "image" and "secret prompt" not in r.text
    r = client.post("/sdapi/v1/png-info", json={"image": base64.b64encode(path.read_bytes()).decode()})
    assert r.status_code == 200 and r.json()["info"].startswith("secret prompt")


# ----------------------------------------------------------------------------------------- job database
def test_job_database_lives_beside_outputs_and_is_never_served(local_models, tmp_path, monkeypatch):
    from sdcodex.jobs import JobStore

    monkeypatch.delenv("SDCODEX_DB", raising=False)
    monkeypatch.delenv("SDCODEX_DATA_DIR", raising=False)
    outdir = tmp_path / "outputs"
    old = JobStore(outdir / "jobs.sqlite")  # what an older version left inside the outputs folder
    old_job = old.create({"task": "txt2img", "prompt": "kept across the move"}, kind="native")
    old.close()
    with live_server(models=local_models, outdir=str(outdir), start_worker=False) as srv, srv.client() as c:
        assert srv.service.store.path == tmp_path / "data" / "jobs.sqlite"
        assert not (outdir / "jobs.sqlite").exists()
        assert c.get(f"/api/v1/jobs/{old_job.id}").json()["request"]["prompt"] == "kept across the move"
        for name in ("jobs.sqlite", "jobs.sqlite-wal", "../data/jobs.sqlite", "%2e%2e/data/jobs.sqlite"):
            assert c.get(f"/api/v1/outputs/{name}").status_code == 404, name
    # a database put inside the outputs folder on purpose is still never served (route and web UI)
    db = outdir / "mine.sqlite"
    from tests.server.live import LiveServer
    from sdcodex.server import ServerSettings

    srv = LiveServer(ServerSettings(models=local_models, outdir=str(outdir), db_path=str(db), start_worker=False),
                     with_ui=True).start()
    try:
        with srv.client() as c:
            assert db.is_file()
            assert c.get("/api/v1/outputs/mine.sqlite").status_code == 404
            png = outdir / "txt2img" / "2026-01-01" / "00001-1.png"
            png.parent.mkdir(parents=True)
            Image.new("RGB", (4, 4)).save(png)
            stray = outdir / "notes.png"
            Image.new("RGB", (4, 4)).save(stray)
            assert c.get(f"/gradio_api/file={png}").status_code == 200  # the UI's file route serves outputs...
            assert c.get(f"/gradio_api/file={db}").status_code in (403, 404)  # ...but not the database
            assert c.get(f"/gradio_api/file={stray}").status_code in (403, 404)  # nor what jobs did not write
    finally:
        srv.stop()


# --------------------------------------------------------------------------------- limits and names
@pytest.fixture(scope="module")
def plain(local_models, tmp_path_factory):
    """A server with every default setting (no worker: nothing here may be queued anyway)."""
    root = tmp_path_factory.mktemp("plain")
    with live_server(models=local_models, outdir=str(root / "outputs"), db_path=str(root / "jobs.sqlite"),
                     start_worker=False) as srv, srv.client() as c:
        yield srv, c


def test_job_size_limits_are_on_by_default(plain, sd15_name):
    server, client = plain
    before = server.service.store.counts()
    cases = [({"prompt": "x" * 20_000}, "prompt"), ({"steps": 151}, "steps"),
             ({"batch_size": 16, "batch_count": 20}, "batch_count")]
    for extra, field in cases:
        r = client.post("/api/v1/jobs", json=_txt(sd15_name, **extra))
        assert r.status_code == 413 and r.json()["field"] == field, (extra, r.text)
    r = client.post("/sdapi/v1/txt2img", json={"prompt": "x" * 20_000, "steps": 1, "width": 64, "height": 64})
    assert r.status_code == 413 and "prompt" in r.json()["message"]
    r = client.post("/api/v1/jobs", json=_txt(sd15_name, width=2048, height=2048, batch_size=64))
    assert r.status_code == 413 and "output pixels" in r.json()["message"]
    assert server.service.store.counts() == before  # nothing was queued


def test_names_are_resolved_at_submit(client, server, sd15_name):
    before = server.service.store.counts()
    cwd = os.getcwd()
    cases = [({"sampler": "Bogus Sampler"}, "sampler"), ({"scheduler": "wobbly"}, "scheduler"),
             ({"vae": "no-such-vae"}, "vae"), ({"loras": [{"name": "no-such-lora"}]}, "loras[0].name"),
             ({"prompt": "a cat <lora:no-such-lora:0.5>"}, "prompt"),
             ({"prompt": "a cat <lora:../../etc/passwd:1>"}, "prompt"),
             ({"text_encoders": ["/etc/passwd"]}, "text_encoders[0]"),
             ({"text_encoders": ["no-such-encoder"]}, "text_encoders[0]"),
             ({"hires": {"scale": 1.5, "upscaler": "no-such-upscaler"}}, "hires.upscaler"),
             ({"hires": {"scale": 1.5, "sampler": "Bogus"}}, "hires.sampler"),
             ({"model": "/etc/passwd"}, "model"), ({"model": "../../../etc/passwd"}, "model"),
             ({"model": "tests/conftest.py"}, "model"), ({"model": "~root/x.safetensors"}, "model")]
    for extra, field in cases:
        t = time.monotonic()
        r = client.post("/api/v1/jobs", json={**_txt(sd15_name), **extra})
        assert r.status_code in (404, 422) and r.json()["field"] == field, (extra, r.text)
        assert cwd not in r.text and time.monotonic() - t < 10
    r = client.post("/api/v1/jobs", json={"task": "upscale", "init_image": _png_b64(), "upscaler": "nope"})
    assert r.status_code == 422 and r.json()["field"] == "upscaler"
    r = client.post("/sdapi/v1/txt2img", json={"prompt": "x", "sampler_name": "Bogus", "steps": 1, "width": 64,
                                               "height": 64})
    assert r.status_code == 422 and r.json()["field"] == "sampler_name"
    assert server.service.store.counts() == before
    ok = client.post("/api/v1/jobs", json=_txt(sd15_name, steps=2, sampler="DPM++ 2M Karras", scheduler="karras",
                                               hires={"scale": 1.5, "upscaler": "Latent (nearest)"}))
    assert ok.status_code == 202, ok.text
    assert wait_job(client, ok.json()["id"])["state"] == "done"


def _png_b64() -> str:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


# ------------------------------------------------------------------------------ Unicode and crashes
def test_lone_surrogates_are_422_naming_the_field(client, sd15_name):
    body = json.dumps(_txt(sd15_name)).replace('"a lighthouse"', '"\\ud800"')
    r = _raw_post(client, "/api/v1/jobs", body)
    assert r.status_code == 422 and r.json()["field"] == "prompt"
    r = _raw_post(client, "/sdapi/v1/txt2img", '{"prompt": "x", "negative_prompt": "\\udfff", "steps": 1}')
    assert r.status_code == 422 and r.json()["field"] == "negative_prompt"
    r = _raw_post(client, "/sdapi/v1/options", '{"sd_vae": "\\ud800"}')
    assert r.status_code == 422 and r.json()["field"] == "sd_vae"
    r = _raw_post(client, "/sdapi/v1/png-info", '{"image": "\\ud800"}')
    assert r.status_code == 422 and r.json()["field"] == "image"
    r = _raw_post(client, "/api/v1/jobs", body.replace('"prompt"', '"\\ud800"'))
    assert r.status_code == 422
    assert client.get("/sdapi/v1/options").status_code == 200


def test_unhandled_error_is_500_with_an_id_and_the_connection_stays_open(server, monkeypatch):
    def broken() -> None:
        raise RuntimeError(f"secret detail {os.getcwd()}")

    monkeypatch.setattr(server.service.worker, "interrupt", broken)
    conn = http.client.HTTPConnection("127.0.0.1", server.settings.port, timeout=30)
    try:
        conn.request("POST", "/sdapi/v1/interrupt")
        resp = conn.getresponse()
        body = json.loads(resp.read())
        assert resp.status == 500 and body["error"] == "internal_error" and "internal error" in body["message"]
        assert "secret detail" not in json.dumps(body) and resp.getheader("connection") != "close"
        conn.request("GET", "/api/v1/health")  # the same connection
        again = conn.getresponse()
        assert again.status == 200 and json.loads(again.read())["version"]
    finally:
        conn.close()


def test_options_keep_only_known_keys_with_their_types(client):
    assert client.post("/sdapi/v1/options", json={"not_an_option": 1, "samples_save": True}).status_code == 200
    assert "not_an_option" not in client.get("/sdapi/v1/options").json()
    r = client.post("/sdapi/v1/options", json={"jpeg_quality": "high"})
    assert r.status_code == 422 and r.json()["field"] == "jpeg_quality"
    for path in ("/etc/passwd", "/no/such/file.safetensors"):  # no oracle for which server files exist
        r = client.post("/sdapi/v1/options", json={"sd_model_checkpoint": path})
        assert r.status_code == 422 and r.json()["field"] == "sd_model_checkpoint"
        assert "passwd" not in r.json()["message"].replace(repr(path), "")


# ------------------------------------------------------------------------------------ credentials
def test_empty_and_short_passwords_do_not_count_as_auth(tmp_path, monkeypatch):
    from sdcodex.cli.main import main
    from sdcodex.server.auth import parse_credentials, parse_tokens

    for text in ("user:", "user:abc", "a:longenough,b:"):
        with pytest.raises(ValidationError, match="password"):
            parse_credentials(text)
    with pytest.raises(ValidationError, match="token"):
        parse_tokens(["short"])
    assert main(["serve", "--host", "0.0.0.0", "--port", "1", "--api-auth", "user:"]) == 2
    monkeypatch.setenv("SDCODEX_API_AUTH", "user:")
    assert main(["serve", "--host", "0.0.0.0", "--port", "1"]) == 2


def test_credentials_from_a_file(tmp_path, local_models):
    import argparse

    from sdcodex.cli import serve

    secrets = tmp_path / "auth.txt"
    secrets.write_text("# users\nalice:correct-horse\nbob:battery-staple\n")
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("tok-0123456789\n\n")
    parser = argparse.ArgumentParser()
    parser.add_argument("--models-dir", default=None)
    serve.add_parser(parser.add_subparsers())
    args = parser.parse_args(["serve", "--api-auth-file", str(secrets), "--api-token-file", str(tokens)])
    settings = serve.settings_from_args(args)
    assert settings.api_auth == [("alice", "correct-horse"), ("bob", "battery-staple")]
    assert settings.api_tokens == ["tok-0123456789"]
    from sdcodex.core.logs import redact_text

    assert "battery-staple" not in redact_text("login bob battery-staple")
    settings.models, settings.outdir, settings.start_worker = local_models, str(tmp_path / "o"), False
    from tests.server.live import LiveServer

    srv = LiveServer(settings).start()
    try:
        with srv.client() as c:
            assert c.get("/api/v1/health").status_code == 401
            assert c.get("/api/v1/health", auth=("bob", "battery-staple")).status_code == 200
            assert c.get("/api/v1/health", headers={"Authorization": "Bearer tok-0123456789"}).status_code == 200
    finally:
        srv.stop()


# ------------------------------------------------------------------------------ Host and Origin
def test_host_and_origin_checks(client, server):
    port = server.settings.port
    assert client.get("/api/v1/health", headers={"Host": "attacker.example"}).status_code == 400
    assert client.get("/api/v1/health", headers={"Host": f"localhost:{port}"}).status_code == 200
    assert client.get("/api/v1/health", headers={"Host": f"[::1]:{port}"}).status_code == 200
    for path in ("/sdapi/v1/interrupt", "/sdapi/v1/skip", "/api/v1/models/refresh"):
        r = client.post(path, headers={"Origin": "http://attacker.example"})
        assert r.status_code == 403, path
        assert client.post(path, headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
        assert client.post(path, headers={"Origin": "null"}).status_code == 403
        assert client.post(path, headers={"Origin": f"http://127.0.0.1:{port}"}).status_code == 200  # same origin
        assert client.post(path).status_code == 200  # not a browser
    # a cross-site GET is harmless (no state change) and still answered
    assert client.get("/api/v1/health", headers={"Origin": "http://attacker.example"}).status_code == 200


def test_allowed_hosts_extend_the_list(local_models, tmp_path):
    with live_server(models=local_models, outdir=str(tmp_path / "o"), start_worker=False,
                     allowed_hosts=["codex.lan"]) as srv, srv.client() as c:
        assert c.get("/api/v1/health", headers={"Host": "codex.lan:7860"}).status_code == 200
        assert c.post("/sdapi/v1/skip", headers={"Origin": "http://codex.lan:7860"}).status_code == 200
        assert c.get("/api/v1/health", headers={"Host": "other.lan"}).status_code == 400


# ------------------------------------------------------------------------------------- graceful stop
def test_graceful_stop_mid_batch_leaves_no_unlisted_output(local_models, sd15_name, tmp_path):
    outdir = tmp_path / "o"
    kw = dict(models=local_models, outdir=str(outdir), db_path=str(tmp_path / "jobs.sqlite"))
    with live_server(**kw) as srv, srv.client() as c:
        job = c.post("/api/v1/jobs", json=_txt(sd15_name, steps=40, batch_count=6)).json()
        deadline = time.monotonic() + 120
        while not any(kind == "image" for _n, kind, _d in srv.service.store.events(job["id"])):
            assert time.monotonic() < deadline
            time.sleep(0.01)
    # the job went back to the queue: no file may be left that it does not list
    files = [p for p in outdir.rglob("*") if p.is_file() and not p.name.startswith(".")]
    with live_server(**kw, start_worker=False) as srv, srv.client() as c:
        state = c.get(f"/api/v1/jobs/{job['id']}").json()
    assert state["state"] == "queued"
    assert files == [], files


# ------------------------------------------------------------------------------------------------- fuzz
def test_fuzzed_jobs_are_accepted_or_refused_never_5xx(client, server, sd15_name):
    """Requests close to valid ones (so many are accepted and really run): any prompt text, known and
    unknown samplers/schedules/upscalers, odd seeds and sizes. No answer and no job may end in a 5xx."""
    from hypothesis import HealthCheck, given, settings, strategies as st

    samplers = st.sampled_from(["Euler a", "DPM++ 2M Karras", "UniPC", "Automatic", "LCM", "Euler", "Bogus"])
    text = st.text(max_size=80)
    request = st.fixed_dictionaries(
        {"prompt": text, "seed": st.integers(-1, 2**32 - 1), "sampler": samplers},
        optional={"negative_prompt": text, "scheduler": st.sampled_from(["karras", "Automatic", "wobbly"]),
                  "cfg_scale": st.floats(0, 50), "batch_size": st.integers(1, 2), "clip_skip": st.integers(1, 3),
                  "width": st.sampled_from([64, 72, 65]), "output_format": st.sampled_from(["png", "webp", "jpeg"]),
                  "hires": st.fixed_dictionaries({"scale": st.sampled_from([1.25, 1.5]),
                                                  "upscaler": st.sampled_from(["Latent", "Lanczos", "nope"]),
                                                  "denoising_strength": st.floats(0.5, 1.0)})})
    accepted: list[str] = []
    failures: list[str] = []

    @given(extra=request)
    @settings(max_examples=40, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    def run(extra) -> None:
        body = json.dumps({"task": "txt2img", "model": sd15_name, "width": 64, "height": 64, "steps": 2, **extra})
        r = client.post("/api/v1/jobs", content=body.encode(), headers={"content-type": "application/json"})
        if r.status_code >= 500:
            failures.append(f"{r.status_code} {body[:200]} -> {r.text[:200]}")
        elif r.status_code == 202:
            accepted.append(r.json()["id"])

    run()
    for job_id in accepted:
        job = wait_job(client, job_id)
        if job["state"] != "done" and (job["error"] or {}).get("status", 0) >= 500:
            failures.append(f"job {job_id} {job['request']} -> {job['error']}")
    assert not failures, "\n".join(failures)
    assert len(accepted) >= 10  # the generation path itself was fuzzed
