"""Logging setup: text/json formats, idempotence, rotation settings, redaction, recent lines, log_job."""
from __future__ import annotations

import json
import logging
import logging.handlers

import pytest

from sdcodex.core import logs
from sdcodex.core.logs import REDACTED, ROOT_LOGGER, get_logger, log_job, recent_log_lines, setup_logging


def test_text_format_on_stderr(tmp_path, capsys):
    setup_logging(fmt="text", log_dir=None)
    get_logger("cli").info("hello %s", "world", extra={"job_id": "j1"})
    get_logger("cli").debug("hidden")
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert " INFO  sdcodex.cli: hello world job_id=j1" in err[0]


def test_json_format_has_fields_and_extras(capsys):
    setup_logging(fmt="json", log_dir=None, level="DEBUG")
    get_logger("engine").debug("step", extra={"engine": "sdxl", "timings": {"denoise": 1.5}})
    rec = json.loads(capsys.readouterr().err.strip())
    assert rec["level"] == "DEBUG" and rec["logger"] == "sdcodex.engine" and rec["msg"] == "step"
    assert rec["engine"] == "sdxl" and rec["timings"] == {"denoise": 1.5}
    assert rec["ts"].endswith("Z")


def test_setup_twice_does_not_duplicate(tmp_path, capsys):
    setup_logging(log_dir=tmp_path)
    setup_logging(log_dir=tmp_path)
    ours = [h for h in logging.getLogger(ROOT_LOGGER).handlers if getattr(h, "_sdcodex_handler", False)]
    assert len(ours) == 2
    get_logger("x").warning("once")
    assert capsys.readouterr().err.count("once") == 1
    assert (tmp_path / "sdcodex.log").read_text().count("once") == 1


def test_file_is_json_and_rotation_configured(tmp_path, capsys):
    setup_logging(fmt="text", log_dir=tmp_path / "logs", max_bytes=300, backups=2)
    handler = next(h for h in logging.getLogger(ROOT_LOGGER).handlers
                   if isinstance(h, logging.handlers.RotatingFileHandler))
    assert handler.maxBytes == 300 and handler.backupCount == 2
    for i in range(20):
        get_logger("rot").info("line %03d", i)
    files = sorted(p.name for p in (tmp_path / "logs").iterdir())
    assert files == ["sdcodex.log", "sdcodex.log.1", "sdcodex.log.2"]
    for line in (tmp_path / "logs" / "sdcodex.log").read_text().splitlines():
        assert json.loads(line)["logger"] == "sdcodex.rot"
    recent = recent_log_lines(5, tmp_path / "logs")       # reaches into the rotated backup when needed
    assert [json.loads(r)["msg"] for r in recent] == [f"line {i:03d}" for i in range(15, 20)]


@pytest.mark.parametrize("message, secret", [
    ("start --api-auth admin:hunter2pass", "hunter2pass"),
    ("HF_TOKEN=abcdef123456 set", "abcdef123456"),
    ("Authorization: Bearer eyJhbGciOi.x.y", "eyJhbGciOi"),
    ("calling hub with hf_AbCdEfGh12345678", "hf_AbCdEfGh12345678"),
    ('payload {"password": "pa ss word"}', "pa ss word"),
    ("proxy http://bob:pw1234@proxy:3128", "pw1234"),
])
def test_secrets_in_messages_are_masked(message, secret, tmp_path, capsys):
    setup_logging(fmt="json", log_dir=tmp_path)
    get_logger("sec").info(message)
    err = capsys.readouterr().err
    assert secret not in err and REDACTED in err
    assert secret not in (tmp_path / "sdcodex.log").read_text()


def test_secrets_in_extras_and_args_are_masked(tmp_path, capsys):
    setup_logging(fmt="text", log_dir=tmp_path)
    get_logger("sec").info("request %s", {"api_key": "k-998877"},
                           extra={"headers": {"Authorization": "Basic dXNlcjpwYXNz"}, "hf_token": "zzz-123",
                                  "tokenizer": "t5"})
    err = capsys.readouterr().err
    text = err + (tmp_path / "sdcodex.log").read_text()
    for secret in ("k-998877", "dXNlcjpwYXNz", "zzz-123"):
        assert secret not in text
    assert "tokenizer=t5" in err                              # "tokenizer" is not a secret


def test_registered_secret_masked_everywhere(tmp_path, capsys):
    logs.register_secret("user:plainpassword")
    setup_logging(fmt="text", log_dir=None)
    get_logger("sec").error("login failed for plainpassword")
    assert "plainpassword" not in capsys.readouterr().err


def test_exception_text_is_masked(capsys):
    setup_logging(fmt="json", log_dir=None)
    try:
        raise RuntimeError("bad token=supersecret99")
    except RuntimeError:
        get_logger("exc").exception("failed")
    rec = json.loads(capsys.readouterr().err.strip())
    assert "supersecret99" not in rec["exc"] and "RuntimeError" in rec["exc"]


def test_log_job_is_one_record_with_fields(capsys):
    setup_logging(fmt="json", log_dir=None)
    log_job(get_logger("jobs"), "job-7", {
        "engine": "sdxl", "model": "base.safetensors", "preset_keys": ["steps"], "applied_preset_patch": {"steps": 30},
        "sampler_in": "dpmpp_2m", "sampler_effective": "dpmpp_2m_karras", "timings": {"load": 0.5, "denoise": 3.0},
        "name": "clashes-with-logrecord"})
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    rec = json.loads(lines[0])
    assert rec["job_id"] == "job-7" and rec["engine"] == "sdxl" and rec["applied_preset_patch"] == {"steps": 30}
    assert rec["sampler_in"] == "dpmpp_2m" and rec["sampler_effective"] == "dpmpp_2m_karras"
    assert rec["timings"]["denoise"] == 3.0 and rec["info_name"] == "clashes-with-logrecord"
    assert "sampler=dpmpp_2m->dpmpp_2m_karras" in rec["msg"]


def test_bad_format_rejected():
    with pytest.raises(ValueError, match="allowed: text, json"):
        setup_logging(fmt="xml", log_dir=None)
