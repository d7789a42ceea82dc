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


def next_output_path(outdir: str | Path, task: str, seed: int | None, ext: str,
                     date: _dt.date | str | None = None) -> Path:
    """Reserve and return ``<outdir>/<task>/<YYYY-MM-DD>/<NNNNN>-<seed>.<ext>`` (``NNNNN.<ext>`` without seed).

    The returned file exists and is empty; folders are created as needed.
    """
    folder = output_folder(outdir, task, date)
    folder.mkdir(parents=True, exist_ok=True)
    ext = str(ext).lstrip(".").lower()
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
