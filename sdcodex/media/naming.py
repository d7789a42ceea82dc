"""Output file names the A1111 way: ``<outdir>/<task>/<YYYY-MM-DD>/<NNNNN>-<seed>.<ext>``.

NNNNN is 1 + the highest number already in the folder (00000 in an empty one), counting every file whose
name starts with digits, whatever its seed or extension. The name is reserved by creating the file
(O_EXCL) while holding a short folder lock, so concurrent savers (threads or processes) never share a
number. The caller then replaces the empty reserved file atomically (``images.atomic_write``) or deletes it.
"""
from __future__ import annotations

import datetime as _dt
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

from sdcodex.core.errors import CodexError

_NUMBERED = re.compile(r"^(\d+)(?=[-.]|$)")
LOCK_NAME = ".sdcodex-naming.lock"
_STALE_LOCK_S = 30.0
_LOCK_TIMEOUT_S = 60.0
_thread_lock = threading.Lock()


def next_number(folder: Path) -> int:
    """1 + the highest leading number of a file name in ``folder`` (0 when there is none)."""
    highest = -1
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return 0
    for name in names:
        m = _NUMBERED.match(name)
        if m is not None:
            highest = max(highest, int(m.group(1)))
    return highest + 1


class _FolderLock:
    """A cross-process lock: ``mkdir`` of a hidden folder is atomic everywhere; a crashed holder's
    lock is broken after ``_STALE_LOCK_S`` seconds."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / LOCK_NAME

    def __enter__(self) -> "_FolderLock":
        deadline = time.monotonic() + _LOCK_TIMEOUT_S
        delay = 0.001
        while True:
            try:
                os.mkdir(self.path)
                return self
            except FileExistsError:
                try:
                    if time.time() - os.stat(self.path).st_mtime > _STALE_LOCK_S:
                        os.rmdir(self.path)
                        continue
                except FileNotFoundError:
                    continue
                except OSError:
                    pass
            if time.monotonic() > deadline:
                raise CodexError(f"could not lock output folder {self.path.parent} (remove {self.path} "
                                 "if no Codex process is saving there)")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def __exit__(self, *exc: object) -> None:
        try:
            os.rmdir(self.path)
        except FileNotFoundError:
            pass


def output_folder(outdir: str | Path, task: str, date: _dt.date | str | None = None) -> Path:
    """``<outdir>/<task>/<YYYY-MM-DD>`` (today, local time, when ``date`` is None)."""
    if date is None:
        date = _dt.date.today()
    day = date if isinstance(date, str) else date.strftime("%Y-%m-%d")
    return Path(outdir) / str(task) / day


_UNSAFE = re.compile(r'[\x00-\x1f<>:"/\\|?*]')
_TOKEN = re.compile(r"\[([a-z_]+)\]", re.IGNORECASE)
MAX_STEM = 120


def sanitize(text: str, limit: int = MAX_STEM) -> str:
    """Text made safe as part of a file name on every OS: no separators, reserved or control characters, no
    leading/trailing dots or spaces, at most `limit` characters."""
    text = _UNSAFE.sub("_", str(text)).replace("..", "_")
    text = " ".join(text.split())[:limit]
    return text.strip(" .")


def expand_pattern(pattern: str, fields: dict[str, Any], *, seed: int | None, task: str,
                   now: _dt.datetime | None = None) -> str:
    """A1111's file name pattern (``[seed]``, ``[prompt_words]``, ``[model_name]``, ``[steps]``, ...; the names in
    ``core.settings.FILENAME_TOKENS``) filled from one image's infotext fields; an unknown token stays as typed."""
    now = now or _dt.datetime.now()
    prompt = str(fields.get("prompt") or "")
    extra = fields.get("extra") or {}
    values = {
        "seed": "" if seed is None else str(int(seed)),
        "prompt": prompt, "prompt_no_styles": prompt,
        "prompt_words": " ".join(re.findall(r"[\w']+", prompt)[:8]),
        "model_name": fields.get("model") or "", "model_hash": fields.get("model_hash") or "",
        "steps": fields.get("steps"), "cfg": fields.get("cfg_scale"), "sampler": fields.get("sampler"),
        "scheduler": fields.get("scheduler"), "width": fields.get("width"), "height": fields.get("height"),
        "engine": extra.get("Engine") or "", "task": task, "date": now.strftime("%Y-%m-%d"),
        "datetime": now.strftime("%Y%m%d%H%M%S"), "job_timestamp": now.strftime("%Y%m%d%H%M%S"),
        "batch_number": extra.get("Batch pos", 0),
    }

    def one(m: re.Match) -> str:
        key = m.group(1).lower()
        if key not in values:
            return m.group(0)
        value = values[key]
        return "" if value is None else sanitize(f"{value:g}" if isinstance(value, float) else str(value), 60)

    return sanitize(_TOKEN.sub(one, pattern or "[seed]"))


def next_output_path(outdir: str | Path, task: str, seed: int | None, ext: str,
                     date: _dt.date | str | None = None, *, name: str | None = None) -> Path:
    """Reserve and return ``<outdir>/<task>/<YYYY-MM-DD>/<NNNNN>-<seed>.<ext>`` (``NNNNN.<ext>`` without seed;
    ``<NNNNN>-<name>.<ext>`` when ``name`` — an expanded file name pattern — is given).

    The returned file exists and is empty; folders are created as needed.
    """
    folder = output_folder(outdir, task, date)
    folder.mkdir(parents=True, exist_ok=True)
    ext = str(ext).lstrip(".").lower()
    if name is not None:
        name = sanitize(name)
        suffix = f"-{name}" if name else ""
    else:
        suffix = f"-{int(seed)}" if seed is not None else ""
    with _thread_lock, _FolderLock(folder):
        number = next_number(folder)
        while True:
            path = folder / f"{number:05d}{suffix}.{ext}"
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                number += 1
                continue
            os.close(fd)
            return path
