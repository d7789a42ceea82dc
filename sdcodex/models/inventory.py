"""The models folder as a list of entries: scan any layout (A1111, ComfyUI, diffusers folders), detect
each model from its content, hash on demand with a persistent cache, and resolve a user's reference
(name, A1111 title, hash, or path) to exactly one entry.

Folder and file names never decide kind or family; only `detect` does. A folder holding
model_index.json is one diffusers entry and is not descended into. Hidden files and folders are skipped.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from sdcodex.core.enums import EngineKey
from sdcodex.core.errors import AmbiguousModelError, CodexError, ModelLoadError, ModelNotFoundError
from sdcodex.models import detect as _detect
from sdcodex.models.hashing import CACHE_FILENAME, HashCache, short_hash as _short
from sdcodex.models.weights_io import folder_storage

log = logging.getLogger("sdcodex.models")

MODEL_SUFFIXES = (".safetensors", ".sft", ".gguf", ".ckpt", ".pt", ".pth", ".bin")
FORMATS = {".safetensors": "safetensors", ".sft": "safetensors", ".gguf": "gguf"}
# `kind="checkpoint"` asks for "a main model": a full checkpoint or a bare denoiser (ComfyUI diffusion_models/).
KIND_ALIASES = {"checkpoint": ("checkpoint", "diffusion_model")}
_TITLE_RE = re.compile(r"^(?P<name>.+?)\s*\[(?P<hash>[0-9a-fA-F]{8,64})\]$")
_HEX_RE = re.compile(r"^[0-9a-fA-F]{8,64}$")


def default_models_dir() -> Path:
    """$SDCODEX_MODELS_DIR if set, else ./models (absolute)."""
    env = os.environ.get("SDCODEX_MODELS_DIR")
    return Path(env).expanduser().absolute() if env else Path.cwd() / "models"


@dataclass
class ModelEntry:
    """One model on disk. `name` is the file name without extension (or the folder name)."""

    name: str
    path: Path
    kind: str
    family: EngineKey | None
    format: str  # "safetensors" | "diffusers" | "pickle"
    size: int
    variant: dict[str, Any] = field(default_factory=dict)
    prefix: str = ""
    compatible: tuple[EngineKey, ...] = ()
    _hasher: Callable[["ModelEntry"], str] | None = field(default=None, repr=False, compare=False)

    @property
    def filename(self) -> str:
        return self.path.name

    @property
    def sha256(self) -> str:
        """Full sha256 (file) or folder identity (diffusers, see hashing.folder_sha256); cached."""
        if self._hasher is None:
            raise CodexError(f"{self.path}: entry has no hash cache attached")
        return self._hasher(self)

    @property
    def short_hash(self) -> str:
        return _short(self.sha256)

    @property
    def title(self) -> str:
        """A1111-style title: "file.safetensors [shorthash]" (a folder: "folder [shorthash]")."""
        return f"{self.filename} [{self.short_hash}]"

    def declared_defaults(self) -> dict[str, Any]:
        """The request values this model declares for itself (models/declared.py); {} when it declares none."""
        from sdcodex.models.declared import read_declared, sd2_defaults

        found = read_declared(self.path).get("defaults", {})
        if not found and self.family is EngineKey.SD2 and self.kind == "checkpoint":
            return sd2_defaults(self.path, self.variant)
        return found

    def fits(self, kind: str | None = None, family: EngineKey | str | None = None) -> bool:
        if kind is not None and self.kind not in KIND_ALIASES.get(kind, (kind,)):
            return False
        if family is not None:
            fam = EngineKey(family)
            return self.family == fam or fam in self.compatible
        return True

    def to_dict(self, hash: str | None = None) -> dict[str, Any]:  # noqa: A002 - JSON field name
        """JSON-ready description (for `models list --json`); `hash` is the short hash when known."""
        return {"name": self.name, "filename": self.filename, "path": str(self.path), "kind": self.kind,
                "family": self.family.value if self.family else None,
                "compatible": [f.value for f in self.compatible], "format": self.format, "size": self.size,
                "size_on_disk": self.size, "quantization": self.variant.get("quantization", "none"),
                "resident_size": self.variant.get("resident_size"),
                "prefix": self.prefix, "variant": dict(self.variant), "hash": hash, "error": self.variant.get("error"),
                "title": f"{self.filename} [{hash}]" if hash else self.filename}


def entry_for(path: str | Path, hasher: Callable[[ModelEntry], str] | None = None) -> ModelEntry:
    """Detect one file or diffusers folder and describe it. A file that cannot be read or detected (corrupt
    header, broken link, no permission) becomes kind "unknown" with variant["error"] saying why, so one bad
    file never hides the others."""
    p = Path(path).absolute()
    if p.is_dir():
        try:
            det = _detect.detect_folder(p)
        except Exception as exc:  # noqa: BLE001 - any failure is this entry's, not the scan's
            det = _detect.Detection("unknown", variant={"error": _reason(exc)})
        size = _size(p)
        variant = dict(det.variant)
        if "error" not in variant:
            try:
                variant.update(folder_storage(p))  # quantization, resident_size (headers only)
            except Exception:  # noqa: BLE001 - an estimate must never hide the entry
                pass
        return ModelEntry(_folder_name(p), p, det.kind, det.family, "diffusers", size, variant,
                          det.prefix, det.compatible, hasher)
    suffix = p.suffix.lower()
    fmt = FORMATS.get(suffix, "pickle")
    try:
        det = _detect.detect_file(p)
    except Exception as exc:  # noqa: BLE001 - see above
        det = _detect.Detection("unknown", variant={"error": _reason(exc)})
    return ModelEntry(p.name[: -len(p.suffix)] if p.suffix else p.name, p, det.kind, det.family, fmt,
                      _size(p), dict(det.variant), det.prefix, det.compatible, hasher)


def _reason(exc: BaseException) -> str:
    """Why a file is unusable, in one line (our errors already name the file)."""
    if isinstance(exc, CodexError):
        return str(exc)
    if isinstance(exc, RecursionError):
        return "the file's JSON is nested too deeply"
    return f"cannot read: {type(exc).__name__}: {exc}"


def _size(p: Path) -> int:
    """Bytes on disk (a folder: its files); 0 when it cannot be read (a broken link)."""
    try:
        if p.is_dir():
            return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
        return p.stat().st_size
    except (OSError, RuntimeError):
        return 0


def _folder_name(p: Path) -> str:
    """A diffusers folder's name; inside a Hugging Face cache (models--org--repo/snapshots/<commit>)
    the repo, "org--repo", rather than the commit hash."""
    if p.parent.name == "snapshots" and p.parent.parent.name.startswith("models--"):
        return p.parent.parent.name[len("models--"):]
    return p.name


def _skip_unreadable(exc: OSError) -> None:
    log.warning("models folder: skipped %s: %s", exc.filename, exc.strerror or exc)


class Inventory:
    """All models under one folder. `scan()` is explicit and cheap (headers only); hashing is lazy."""

    def __init__(self, models_dir: str | Path | None = None, cache_path: str | Path | None = None) -> None:
        self.models_dir = Path(models_dir).absolute() if models_dir else default_models_dir()
        self.hashes = HashCache(cache_path or self.models_dir / CACHE_FILENAME)
        self._entries: list[ModelEntry] | None = None

    # ---- scanning ----
    def scan(self) -> list[ModelEntry]:
        """Walk the models folder (any layout) and detect every model; returns the entries."""
        found: list[ModelEntry] = []
        # (device, inode) of each folder walked, by its path in the walk: a folder that is one of its own
        # ancestors (a linked loop) ends there; a link to a sibling folder is still listed under its own name
        walked: dict[Path, tuple[int, int]] = {}
        if self.models_dir.is_dir():
            for root, dirs, files in os.walk(self.models_dir, followlinks=True, onerror=_skip_unreadable):
                here = Path(root)
                try:
                    st = here.stat()
                except OSError:
                    dirs[:] = []
                    continue
                key = (st.st_dev, st.st_ino)
                if any(walked.get(parent) == key for parent in here.parents):
                    dirs[:] = []
                    continue
                walked[here] = key
                if here != self.models_dir and ("model_index.json" in files or (
                        "config.json" in files and _detect.is_controlnet_folder(here))):
                    found.append(entry_for(here, self._hash_entry))
                    dirs[:] = []
                    continue
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if name.startswith(".") or not name.lower().endswith(MODEL_SUFFIXES):
                        continue
                    found.append(entry_for(here / name, self._hash_entry))
        found.sort(key=lambda e: (e.kind, e.name.lower(), str(e.path)))
        self._entries = found
        return list(found)

    def entries(self, kind: str | None = None, family: EngineKey | str | None = None) -> list[ModelEntry]:
        """Entries of a kind ("checkpoint" also lists bare diffusion models) usable with a family."""
        if self._entries is None:
            self.scan()
        return [e for e in self._entries or [] if e.fits(kind, family)]

    # ---- hashing ----
    def _hash_entry(self, entry: ModelEntry) -> str:
        return self.hashes.sha256(entry.path)

    def sha256(self, entry: ModelEntry) -> str:
        return self.hashes.sha256(entry.path)

    def short_hash(self, entry: ModelEntry) -> str:
        return _short(self.sha256(entry))

    def cached_short_hash(self, entry: ModelEntry) -> str | None:
        digest = self.hashes.cached(entry.path)
        return _short(digest) if digest else None

    def to_dicts(self, kind: str | None = None, family: EngineKey | str | None = None,
                 compute_hashes: bool = False) -> list[dict[str, Any]]:
        """JSON for `models list --json`; hashes are included when cached (or computed when asked)."""
        return [e.to_dict(self.short_hash(e) if compute_hashes else self.cached_short_hash(e))
                for e in self.entries(kind, family)]

    # ---- resolving ----
    def resolve(self, ref: str | os.PathLike[str], kind: str | None = "checkpoint",
                family: EngineKey | str | None = None) -> ModelEntry:
        """One entry for `ref`: a name, a file name, an A1111 title ("name.safetensors [hash]"),
        a hash (short, full, legacy or any prefix of at least 8 hex), or a path.

        Raises ModelNotFoundError listing the names that exist (`allowed`), or, when a name is
        shared by several files, listing their paths so the caller can pass one.
        """
        text = os.fspath(ref).strip()
        pool = self.entries(kind, family)
        by_path = self._resolve_path(text, kind, family)
        if by_path is not None:
            return by_path
        title = _TITLE_RE.match(text)
        if title:
            hits = self._by_name(title.group("name"), pool)
            if len(hits) > 1:
                hits = [e for e in hits if self._hash_matches(e, title.group("hash").lower())] or hits
            if hits:
                return self._one(text, hits)
            return self._one(text, self._by_hash(title.group("hash").lower(), pool), pool)
        hits = self._by_name(text, pool)
        if not hits and _HEX_RE.match(text):
            hits = self._by_hash(text.lower(), pool)
        return self._one(text, hits, pool)

    def _resolve_path(self, text: str, kind: str | None, family: EngineKey | str | None) -> ModelEntry | None:
        if not text or ("/" not in text and os.sep not in text and not text.lower().endswith(MODEL_SUFFIXES)):
            return None
        candidates = [Path(text).expanduser()]
        if not candidates[0].is_absolute():
            candidates.append(self.models_dir / text)
        for cand in candidates:
            if not cand.exists():
                continue
            target = cand.absolute()
            entry = next((e for e in self.entries() if e.path == target), None) or entry_for(target, self._hash_entry)
            if not entry.fits(kind, family):
                what = entry.kind + (f" ({entry.family.value})" if entry.family else "")
                why = f" ({entry.variant['error']})" if entry.variant.get("error") else ""
                raise ModelNotFoundError(f"{target} is a {what} model, not a {kind or 'model'}"
                                         + (f" for {EngineKey(family).value}" if family else "") + why,
                                         field="model", allowed=self._names(kind, family))
            return entry
        return None

    def _by_name(self, text: str, pool: Iterable[ModelEntry]) -> list[ModelEntry]:
        rel = text.replace("\\", "/")
        out = []
        for e in pool:
            try:
                relpath = e.path.relative_to(self.models_dir).as_posix()
            except ValueError:
                relpath = ""
            stem = relpath[: -len(e.path.suffix)] if e.path.suffix and relpath else relpath
            if text in (e.name, e.filename) or rel in (relpath, stem):
                out.append(e)
        return out

    def _hash_matches(self, e: ModelEntry, hexref: str) -> bool:
        digest = self.hashes.sha256(e.path)
        legacy = self.hashes.legacy(e.path)
        return digest.startswith(hexref) or (legacy is not None and legacy == hexref)

    def _by_hash(self, hexref: str, pool: Iterable[ModelEntry]) -> list[ModelEntry]:
        pool = list(pool)
        # entries already hashed first: no file is read when the cache answers
        cached = [e for e in pool if self.hashes.cached(e.path) is not None]
        hits = [e for e in cached if self._hash_matches(e, hexref)]
        if hits:
            return hits
        return [e for e in pool if e not in cached and self._hash_matches(e, hexref)]

    def _names(self, kind: str | None, family: EngineKey | str | None) -> list[str]:
        return sorted({e.name for e in self.entries(kind, family)}, key=str.lower)

    def _one(self, ref: str, hits: list[ModelEntry], pool: list[ModelEntry] | None = None) -> ModelEntry:
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise AmbiguousModelError(f"model {ref!r} is ambiguous: {len(hits)} files match; pass one by path",
                                     field="model", allowed=sorted(str(e.path) for e in hits))
        allowed = sorted({e.name for e in pool or []}, key=str.lower)
        broken = self._by_name(ref, [e for e in self._entries or [] if e.kind == "unknown" and e.variant.get("error")])
        if broken:  # the file is there but unusable: say why rather than "not found"
            raise ModelLoadError(f"model {ref!r} cannot be used: {broken[0].variant['error']}", field="model",
                                 allowed=allowed)
        raise ModelNotFoundError(f"model {ref!r} not found in the models folder", field="model", allowed=allowed)
