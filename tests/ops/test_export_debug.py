"""export-debug: the zip holds the promised files, reads jobs.db, and carries no secret anywhere."""
from __future__ import annotations

import argparse
import json
import re
import sqlite3
import zipfile
from pathlib import Path

import pytest

from sdcodex.cli import export_debug
from sdcodex.core.logs import get_logger, setup_logging

HF_SECRET = "hf_secretABCDEFGH12345678"
AUTH_PASS = "s3cr3t-pass-word"
LOG_TOKEN = "tok-Zx9Qw8Er7Ty6"
FILES = {"README.txt", "environment.json", "settings.json", "logs.txt", "models.json", "jobs.json"}


def cli(*argv: str, models: Path) -> int:
    parser = argparse.ArgumentParser()
    export_debug.add_parser(parser.add_subparsers())
    args = parser.parse_args(["export-debug", *argv])
    args.models_dir = str(models)
    return args.func(args)


@pytest.fixture()
def workspace(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_TOKEN", HF_SECRET)
    monkeypatch.setenv("SDCODEX_API_AUTH", f"admin:{AUTH_PASS}")
    monkeypatch.setenv("SDCODEX_PORT", "7860")
    models = tmp_path / "models"
    (models / "Stable-diffusion").mkdir(parents=True)
    (models / "Stable-diffusion" / "tiny.safetensors").write_bytes(b"\x08" + b"\0" * 7 + b"{}      ")
    data = tmp_path / "data"
    data.mkdir()
    con = sqlite3.connect(data / "jobs.db")
    con.execute("CREATE TABLE jobs (id TEXT, status TEXT, request TEXT, error TEXT)")
    con.execute("INSERT INTO jobs VALUES (?,?,?,?)",
                ("job-1", "done", json.dumps({"prompt": "a cat", "api_key": "sk-live-0000", "steps": 4,
                                           "init_image": "A" * 50000}), None))
    con.execute("INSERT INTO jobs VALUES (?,?,?,?)", ("job-2", "failed", "{}", f"401 with token {HF_SECRET}"))
    con.commit()
    con.close()
    setup_logging(level="INFO", fmt="text", log_dir=tmp_path / "logs")
    log = get_logger("server")
    log.info("server started with --api-auth admin:%s", AUTH_PASS)
    log.info("calling hub", extra={"headers": {"Authorization": f"Bearer {LOG_TOKEN}"}, "job_id": "job-1"})
    log.warning("token=%s rejected", LOG_TOKEN)
    return tmp_path


def test_zip_has_files_and_no_secret(workspace, capsys):
    out = workspace / "debug.zip"
    assert cli("--out", str(out), "--log-lines", "50", models=workspace / "models") == 0
    assert capsys.readouterr().out.strip() == str(out)
    with zipfile.ZipFile(out) as zf:
        assert set(zf.namelist()) == FILES
        texts = {name: zf.read(name).decode() for name in zf.namelist()}
    blob = "\n".join(texts.values())
    for secret in (HF_SECRET, AUTH_PASS, LOG_TOKEN, "sk-live-0000"):
        assert secret not in blob
    for name in FILES - {"README.txt", "logs.txt"}:
        json.loads(texts[name])
    settings = json.loads(texts["settings.json"])
    assert settings["env"]["HF_TOKEN"] == "***REDACTED***"
    assert settings["env"]["SDCODEX_API_AUTH"] == "***REDACTED***"
    assert settings["env"]["SDCODEX_PORT"] == "7860"
    assert settings["cwd"] == str(workspace)             # PWD/OLDPWD are not secrets
    assert "server started" in texts["logs.txt"] and "calling hub" in texts["logs.txt"]
    assert len(texts["logs.txt"].strip().splitlines()) == 3
    jobs = json.loads(texts["jobs.json"])["jobs"]
    assert [j["id"] for j in jobs] == ["job-2", "job-1"]
    assert jobs[1]["request"]["prompt"] == "a cat" and jobs[1]["request"]["api_key"] == "***REDACTED***"
    assert jobs[1]["request"]["init_image"] == "<50000 characters omitted>"
    models = json.loads(texts["models.json"])
    names = [f.get("path") or f.get("name") for f in models.get("files", models.get("models", []))]
    assert any("tiny.safetensors" in str(n) for n in names)
    env = json.loads(texts["environment.json"])
    assert env["packages"]["diffusers"] and "cuda_available" in env["torch"]


def test_default_name_and_log_lines_limit(workspace, capsys):
    assert cli("--log-lines", "1", models=workspace / "models") == 0
    path = Path(capsys.readouterr().out.strip())
    assert path.parent == workspace and re.fullmatch(r"sdcodex-debug-\d{8}-\d{6}\.zip", path.name)
    with zipfile.ZipFile(path) as zf:
        assert len(zf.read("logs.txt").decode().strip().splitlines()) == 1


def test_read_jobs_tolerates_missing_file_and_table(tmp_path):
    assert export_debug.read_jobs(tmp_path / "nope.db")["jobs"] == []
    db = tmp_path / "other.db"
    sqlite3.connect(db).execute("CREATE TABLE x (a)").connection.commit()
    assert export_debug.read_jobs(db)["jobs"] == []


def test_models_fallback_lists_files_when_inventory_is_unavailable(tmp_path, monkeypatch):
    import builtins
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "sdcodex.models.inventory":
            raise ImportError("no inventory")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    (tmp_path / "vae").mkdir()
    (tmp_path / "vae" / "v.safetensors").write_bytes(b"12345")
    info = export_debug.models_info(tmp_path)
    assert info["source"] == "file-list" and "no inventory" in info["inventory_error"]
    assert info["files"] == [{"path": str(Path("vae") / "v.safetensors"), "size": 5}]
