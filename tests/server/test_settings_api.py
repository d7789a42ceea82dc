"""The settings through `/sdapi/v1/options`: a round trip of the typed store, and each setting taking effect on the
next job (file format, file name pattern, default emphasis, per-family defaults, job-size limits, the model cache
size), while a job already submitted keeps what it was submitted with; values survive a restart, and options an
older version kept in the job database move into the settings file."""
from __future__ import annotations

from pathlib import Path

from sdcodex.media.reader import read_info
from sdcodex.server import ServerSettings
from sdcodex.server.service import OPTIONS_KEY, CodexService

from .live import wait_job


def test_options_take_effect_on_the_next_job(client, server, sd15_name):
    service = server.service
    before = client.get("/sdapi/v1/options").json()
    assert before["samples_format"] == "png" and before["max_steps"] == 500  # the server's flag is the default
    posted = {"samples_format": "webp", "samples_filename_pattern": "[seed]-[steps]-[model_name]",
              "emphasis": "No norm", "codex_family_defaults": {"sd15": {"steps": 2, "width": 64, "height": 64}}}
    try:
        assert client.post("/sdapi/v1/options", json=posted).status_code == 200
        opts = client.get("/sdapi/v1/options").json()
        assert {k: opts[k] for k in posted} == posted
        r = client.post("/sdapi/v1/options", json={"jpeg_quality": 101, "samples_format": "png"})
        assert r.status_code == 422 and r.json()["field"] == "jpeg_quality" and "1 to 100" in r.json()["allowed"]
        assert client.get("/sdapi/v1/options").json()["samples_format"] == "webp", "a refused post saves nothing"

        job = client.post("/api/v1/jobs", json={"task": "txt2img", "prompt": "a (fox:1.2)", "model": sd15_name, "seed": 7}).json()
        stored = service.store.get(job["id"]).request
        assert {k: stored[k] for k in ("output_format", "emphasis", "steps", "width")} == \
            {"output_format": "webp", "emphasis": "No norm", "steps": 2, "width": 64}
        # changed while the job waits or runs: the job keeps what it was submitted with
        client.post("/sdapi/v1/options", json={"samples_format": "png", "emphasis": "Original"})
        done = wait_job(client, job["id"])
        assert done["state"] == "done", done["error"]
        assert service.store.get(job["id"]).meta["applied_settings"] == {
            "output_format": "webp", "emphasis": "No norm", "steps": 2, "width": 64, "height": 64}
        path = Path(service.outdir) / done["result"]["files"][0]
        assert path.suffix == ".webp" and path.name.endswith(f"-7-2-{sd15_name}.webp")
        assert read_info(path.read_bytes())["parsed"]["Emphasis"] == "No norm"

        # limits are settings too: the next submission is measured against them
        client.post("/sdapi/v1/options", json={"max_steps": 3})
        r = client.post("/api/v1/jobs", json={"task": "txt2img", "prompt": "x", "model": sd15_name, "steps": 4})
        assert r.status_code == 413 and r.json()["field"] == "steps" and "at most 3" in r.json()["allowed"]

        cache = service.models.cache
        limit = cache.max_loaded
        client.post("/sdapi/v1/options", json={"sd_checkpoints_limit": 1})
        assert cache.max_loaded == 1 and len(cache) <= 1
        client.post("/sdapi/v1/options", json={"sd_checkpoints_limit": limit})
    finally:
        service.options_store.reset([k for k in service.options_store.saved() if k != "sd_model_checkpoint"])


def test_settings_survive_a_restart_and_old_options_move_over(tmp_path, local_models):
    db = tmp_path / "data" / "jobs.sqlite"
    settings = ServerSettings(models=local_models, outdir=str(tmp_path / "out"), db_path=str(db), start_worker=False)
    first = CodexService(settings)
    first.store.set_value(OPTIONS_KEY, {"jpeg_quality": 60})  # as an older version kept them
    first.set_options({"samples_format": "jpg", "show_progress_every_n_steps": 4})
    first.stop()
    again = CodexService(settings)
    try:
        opts = again.options()
        assert opts["samples_format"] == "jpg" and again.preview_every() == 4
        assert opts["jpeg_quality"] == 95, "the job database is read only when there is no settings file yet"
    finally:
        again.stop()

    (db.parent / "settings.json").unlink()
    moved = CodexService(settings)
    try:
        assert moved.options()["jpeg_quality"] == 60 and (db.parent / "settings.json").is_file()
    finally:
        moved.stop()
