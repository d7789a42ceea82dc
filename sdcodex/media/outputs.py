"""The outputs folder as the saver writes it (``<outdir>/<task>/<YYYY-MM-DD>/<NNNNN>-<name>.<ext>``, X/Y/Z grids
under ``<task>-grids``): listed by task and date, newest first, in pages; one file's metadata; delete to a trash
folder and restore from it. Every path a caller gives is checked: relative, exactly ``<task>/<date>/<file>``,
a media file, inside the folder — never a way out of it."""
from __future__ import annotations

import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sdcodex.core.enums import Task
from sdcodex.core.errors import CodexError, ValidationError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif")
VIDEO_SUFFIXES = (".mp4", ".webm")
MEDIA_SUFFIXES = IMAGE_SUFFIXES + VIDEO_SUFFIXES
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
FILE = re.compile(r"^[^/\\\x00]+$")
MAX_PER_PAGE = 200


class OutputNotFoundError(CodexError):
    http_status = 404
    code = "not_found"


def task_folders() -> list[str]:
    """The folders the saver writes: one per task, and one for each task's X/Y/Z grids."""
    return [t.value for t in Task] + [f"{t.value}-grids" for t in Task]


@dataclass
class OutputItem:
    path: str          # relative to the outputs (or trash) folder: <task>/<date>/<file>
    task: str
    date: str
    name: str
    kind: str          # image | video
    size: int
    mtime: float


def _kind(name: str) -> str:
    return "video" if name.lower().endswith(VIDEO_SUFFIXES) else "image"


class OutputsFolder:
    """Listing, reading, trashing and restoring the files under `root`; trashed files go to `trash` keeping
    their ``<task>/<date>/<file>`` path."""

    def __init__(self, root: str | Path, trash: str | Path) -> None:
        self.root = Path(root).absolute()
        self.trash = Path(trash).absolute()

    # -- paths ---------------------------------------------------------------------------------------------
    def check(self, rel: Any, *, base: Path | None = None, field: str = "path") -> Path:
        """The file `rel` names under `base` (the outputs folder unless given). Refused (422 naming `field`):
        anything but ``<task>/<YYYY-MM-DD>/<media file>``, an absolute path, ``..``, a link out of the folder.
        404 when it does not exist."""
        base = base or self.root
        allowed = "<task>/<YYYY-MM-DD>/<file> with a task folder (" + ", ".join(task_folders()) + ")"
        if not isinstance(rel, str) or not rel or "\x00" in rel or "\\" in rel or rel.startswith("/"):
            raise ValidationError("must be a relative output path", field=field, allowed=allowed)
        parts = rel.split("/")
        if (len(parts) != 3 or parts[0] not in task_folders() or not DATE.match(parts[1])
                or not FILE.match(parts[2]) or parts[2] in (".", "..") or parts[2].startswith(".")
                or not parts[2].lower().endswith(MEDIA_SUFFIXES)):
            raise ValidationError(f"is not an output file path: {rel!r}", field=field, allowed=allowed)
        path = base / parts[0] / parts[1] / parts[2]
        try:
            path.resolve().relative_to(base.resolve())
        except (ValueError, OSError, RuntimeError):
            raise ValidationError("leads outside the outputs folder", field=field, allowed=allowed) from None
        if not path.is_file():
            raise OutputNotFoundError(f"no such file: {rel}", field=field)
        return path

    # -- listing -------------------------------------------------------------------------------------------
    def _scan(self, base: Path, task: str | None, date: str | None) -> list[OutputItem]:
        items: list[OutputItem] = []
        folders = [task] if task else task_folders()
        for t in folders:
            tdir = base / t
            if not tdir.is_dir() or tdir.is_symlink():
                continue
            for day in ([date] if date else sorted(os.listdir(tdir), reverse=True)):
                ddir = tdir / day
                if not DATE.match(day) or not ddir.is_dir() or ddir.is_symlink():
                    continue
                with os.scandir(ddir) as entries:
                    for e in entries:
                        if (e.name.startswith(".") or not e.name.lower().endswith(MEDIA_SUFFIXES)
                                or not e.is_file(follow_symlinks=False)):
                            continue
                        st = e.stat(follow_symlinks=False)
                        if st.st_size == 0:  # a name reserved by a save still in progress
                            continue
                        items.append(OutputItem(f"{t}/{day}/{e.name}", t, day, e.name, _kind(e.name), st.st_size,
                                                st.st_mtime))
        items.sort(key=lambda i: (i.date, i.mtime, i.name), reverse=True)
        return items

    def _filters(self, task: str | None, date: str | None) -> tuple[str | None, str | None]:
        task = task or None
        date = date or None
        if task is not None and task not in task_folders():
            raise ValidationError(f"unknown task folder {task!r}", field="task", allowed=task_folders())
        if date is not None and not DATE.match(str(date)):
            raise ValidationError(f"is not a date: {date!r}", field="date", allowed="YYYY-MM-DD")
        return task, date

    def list(self, *, task: str | None = None, date: str | None = None, page: int = 1, per_page: int = 24,
             trash: bool = False) -> dict[str, Any]:
        """One page of files, newest first: {"items", "page", "pages", "total", "per_page", "tasks", "dates"}
        (`tasks` and `dates`: what there is to filter by; `dates` within the chosen task)."""
        task, date = self._filters(task, date)
        if not isinstance(page, int) or page < 1:
            raise ValidationError("must be 1 or more", field="page", allowed=">= 1")
        if not isinstance(per_page, int) or not 1 <= per_page <= MAX_PER_PAGE:
            raise ValidationError("is out of range", field="per_page", allowed=f"1 to {MAX_PER_PAGE}")
        base = self.trash if trash else self.root
        items = self._scan(base, task, date)
        pages = max(1, -(-len(items) // per_page))
        chunk = items[(page - 1) * per_page: page * per_page]
        tasks = [t for t in task_folders() if (base / t).is_dir()]
        dates: set[str] = set()
        for t in ([task] if task else tasks):
            if (base / t).is_dir():
                dates.update(d for d in os.listdir(base / t) if DATE.match(d))
        return {"items": [asdict(i) for i in chunk], "page": page, "pages": pages, "total": len(items),
                "per_page": per_page, "tasks": tasks, "dates": sorted(dates, reverse=True)}

    def info(self, rel: str) -> dict[str, Any]:
        """What the file says about itself (media/reader.read_info): infotext, request, size, frames, fps."""
        from .reader import read_info

        path = self.check(rel)
        try:
            info = read_info(path)
        except CodexError:
            info = {"parameters": None, "request": None, "format": path.suffix.lstrip("."), "width": None,
                    "height": None, "frames": None, "fps": None}
        keep = ("parameters", "request", "format", "width", "height", "frames", "fps")
        return {"path": rel, "kind": _kind(path.name), **{k: info.get(k) for k in keep}}

    # -- trash ---------------------------------------------------------------------------------------------
    @staticmethod
    def _free(target: Path) -> Path:
        """`target`, or `<stem>-restored-N<suffix>` beside it when the name is taken."""
        n = 1
        out = target
        while out.exists():
            out = target.with_name(f"{target.stem}-restored-{n}{target.suffix}")
            n += 1
        return out

    def delete(self, rel: str) -> str:
        """Move an output to the trash (same <task>/<date>/<file> path there); returns its path in the trash."""
        src = self.check(rel)
        dest = self._free(self.trash / rel)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dest)
        os.utime(dest, (time.time(), time.time()))  # the trash lists the latest deleted first
        return dest.relative_to(self.trash).as_posix()

    def restore(self, rel: str) -> str:
        """Move a trashed file back to its folder (a free name when the old one was taken); returns its path."""
        src = self.check(rel, base=self.trash)
        dest = self._free(self.root / rel)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dest)
        return dest.relative_to(self.root).as_posix()
