"""File hashes for model identity: full sha256, the A1111 short hash, the legacy A1111 model hash,
and a JSON cache keyed by (absolute path, size, mtime_ns) so each file is hashed once.

The cache lives at `<models_dir>/.sdcodex-hashes.json` and is rewritten atomically (temp file in the
same folder, then os.replace). A diffusers folder is hashed by `folder_sha256` (see its docstring).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

CACHE_FILENAME = ".sdcodex-hashes.json"
CACHE_VERSION = 1
CHUNK = 1 << 20
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".sft")


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a whole file, streamed in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def short_hash(sha256: str) -> str:
    """A1111's short hash: the first 10 hex characters of the sha256."""
    return sha256[:10]


def legacy_model_hash(path: str | os.PathLike[str]) -> str:
    """A1111's old "model hash": sha256 of 0x10000 bytes read at offset 0x100000, first 8 hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(0x100000)
        h.update(f.read(0x10000))
    return h.hexdigest()[:8]


def folder_sha256(folder: str | os.PathLike[str]) -> str:
    """A stable identity for a diffusers folder, without reading its weights.

    sha256 over: the bytes of model_index.json, then one line "relative/posix/path<TAB>size" per
    weight file (.safetensors/.bin/.pt/.pth/.ckpt/.gguf) below the folder, sorted by path. It changes
    when the pipeline layout or any weight file's size or name changes.
    """
    root = Path(folder)
    h = hashlib.sha256()
    index = root / "model_index.json"
    if index.is_file():
        h.update(index.read_bytes())
    lines = []
    for p in root.rglob("*"):
        if p.is_file() and p.suffix in WEIGHT_SUFFIXES and not _hidden(p.relative_to(root)):
            lines.append(f"{p.relative_to(root).as_posix()}\t{p.stat().st_size}\n")
    for line in sorted(lines):
        h.update(line.encode("utf-8"))
    return h.hexdigest()


def _hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def _stamp(path: Path) -> tuple[int, int]:
    """(size, mtime_ns) of a file, or for a folder (total weight size, newest mtime) of what folder_sha256 reads."""
    if path.is_dir():
        size, mtime = 0, path.stat().st_mtime_ns
        for p in path.rglob("*"):
            if p.is_file() and (p.suffix in WEIGHT_SUFFIXES or p.name == "model_index.json"):
                st = p.stat()
                size += st.st_size
                mtime = max(mtime, st.st_mtime_ns)
        return size, mtime
    st = path.stat()
    return st.st_size, st.st_mtime_ns


class HashCache:
    """sha256 per file (or diffusers folder), remembered in a JSON file across runs.

    An entry is reused only while the path's size and mtime_ns are unchanged. `computed` counts the
    hashes actually computed by this object (a cache hit does not count).
    """

    def __init__(self, cache_path: str | os.PathLike[str]) -> None:
        self.cache_path = Path(cache_path)
        self.computed = 0
        self._lock = threading.Lock()
        self._entries: dict[str, dict[str, Any]] = self._load()

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.cache_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
            return {}
        entries = data.get("entries")
        return entries if isinstance(entries, dict) else {}

    def cached(self, path: str | os.PathLike[str]) -> str | None:
        """The cached sha256 for `path` if it is still valid, else None (never hashes)."""
        p = Path(path).absolute()
        try:
            size, mtime = _stamp(p)
        except OSError:
            return None
        with self._lock:
            e = self._entries.get(str(p))
        if e and e.get("size") == size and e.get("mtime_ns") == mtime and isinstance(e.get("sha256"), str):
            return e["sha256"]
        return None

    def sha256(self, path: str | os.PathLike[str]) -> str:
        """sha256 of a file or diffusers folder, from the cache when valid, else computed and saved."""
        hit = self.cached(path)
        if hit is not None:
            return hit
        p = Path(path).absolute()
        size, mtime = _stamp(p)
        digest = folder_sha256(p) if p.is_dir() else sha256_file(p)
        entry: dict[str, Any] = {"size": size, "mtime_ns": mtime, "sha256": digest}
        if p.is_file():
            entry["legacy"] = legacy_model_hash(p)
        with self._lock:
            self.computed += 1
            self._entries[str(p)] = entry
        self.save()
        return digest

    def legacy(self, path: str | os.PathLike[str]) -> str | None:
        """The cached legacy A1111 8-hex hash of a file hashed before, else None."""
        if self.cached(path) is None:
            return None
        with self._lock:
            return self._entries.get(str(Path(path).absolute()), {}).get("legacy")

    def save(self) -> None:
        """Write the cache atomically; a read-only models folder is not an error (the cache stays in memory)."""
        with self._lock:
            payload = json.dumps({"version": CACHE_VERSION, "entries": self._entries}, indent=1, sort_keys=True)
        folder = self.cache_path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=self.cache_path.name + ".", suffix=".tmp", dir=folder)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write(payload)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.cache_path)
            except BaseException:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise
        except OSError:
            pass
