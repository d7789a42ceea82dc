"""tools/ wrappers: run inside .venv, pass every argument through, and explain a missing venv."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "tools"
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="the .sh wrappers need bash")


def sh(script: str, *args: str, venv: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "SDCODEX_VENV")}
    if venv is not None:
        env["SDCODEX_VENV"] = str(venv)
    return subprocess.run(["bash", str(TOOLS / script), *args], capture_output=True, text=True, env=env, timeout=60)


@pytest.fixture()
def fake_venv(tmp_path):
    """A venv whose `sdcodex` prints its arguments one per line."""
    bin_ = tmp_path / "venv" / "bin"
    bin_.mkdir(parents=True)
    (bin_ / "activate").write_text(f'export VIRTUAL_ENV="{tmp_path / "venv"}"\nexport PATH="{bin_}:$PATH"\n')
    (bin_ / "python").symlink_to(sys.executable)
    script = bin_ / "sdcodex"
    script.write_text('#!/usr/bin/env bash\nfor a in "$@"; do echo "[$a]"; done\n')
    script.chmod(0o755)
    return tmp_path / "venv"


@pytest.mark.skipif(not (ROOT / ".venv" / "bin" / "activate").is_file(), reason="no .venv at the repo root")
def test_run_cmd_runs_in_repo_venv():
    r = sh("run-cmd.sh", "python", "-c", "import sys; print(sys.prefix)")
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.strip()).resolve() == (ROOT / ".venv").resolve()


def test_run_cmd_passes_exit_code_and_args(fake_venv):
    r = sh("run-cmd.sh", "bash", "-c", 'echo "$VIRTUAL_ENV|$1"; exit 3', "_", "a b", venv=fake_venv)
    assert r.returncode == 3 and r.stdout.strip() == f"{fake_venv}|a b"


@pytest.mark.parametrize("script, command", [("start-ui.sh", "serve"), ("export-debug.sh", "export-debug")])
def test_wrappers_pass_every_argument(fake_venv, script, command):
    r = sh(script, "--port", "7861", "--api-auth", "user:pa ss", venv=fake_venv)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"[{command}]", "[--port]", "[7861]", "[--api-auth]", "[user:pa ss]"]


@pytest.mark.parametrize("script", ["start-ui.sh", "run-cmd.sh", "export-debug.sh"])
def test_missing_venv_says_how_to_install(tmp_path, script):
    r = sh(script, "true", venv=tmp_path / "missing")
    assert r.returncode == 2
    assert "no virtualenv" in r.stderr and "./scripts/install.sh" in r.stderr


@pytest.mark.parametrize("name", ["start-ui.bat", "run-cmd.bat", "export-debug.bat"])
def test_bat_wrappers_use_crlf_and_pass_arguments(name):
    raw = (TOOLS / name).read_bytes()
    assert raw.count(b"\r\n") == raw.count(b"\n")
    text = raw.decode()
    assert "%*" in text and "scripts/install.sh" in text and r"\.venv" in text
