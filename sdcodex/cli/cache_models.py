"""`sdcodex cache-models`: the one explicit command that downloads weights from a Hugging Face hub.

Files go into `<dest>.partial` beside the destination, are verified (every required pattern matched, JSON
parses, safetensors headers parse, sizes and LFS sha256 match the hub's listing) and only then renamed into
place, so nothing half-written ever looks complete. A re-run reuses the staging folder (finished files are kept,
unfinished ones resume). HF_ENDPOINT and HF_TOKEN are read from the environment at call time; the token is
never printed or logged.

Offline switch: the rest of Codex runs with HF_HUB_OFFLINE=1, which huggingface_hub reads once at import into
`huggingface_hub.constants.HF_HUB_OFFLINE` and checks on every request. `hub_network_enabled()` sets that
constant to False for the duration of this command's own calls and restores it afterwards.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import hashlib
import json
import os
import shutil
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from sdcodex.cli import catalogue
from sdcodex.core.logs import get_logger, redact_text

log = get_logger("cli.cache_models")
MARKER = ".sdcodex-download.json"
_MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024


class CacheError(Exception):
    """A cache-models failure, already phrased for one line on stderr."""


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int | None
    sha256: str | None


@contextlib.contextmanager
def hub_network_enabled() -> Iterator[None]:
    """Let huggingface_hub make requests even when HF_HUB_OFFLINE=1 was set at import (restored on exit)."""
    from huggingface_hub import constants
    old = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = False
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = old


def hub_endpoint() -> str:
    """HF_ENDPOINT as it is now (huggingface_hub froze it at import), else the library default."""
    from huggingface_hub import constants
    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


# ------------------------------------------------------------------------------------------- preflight

def check_writable(dest: Path) -> None:
    """Fail before any download when the destination (or its nearest existing parent) cannot be written."""
    if dest.exists() and not dest.is_dir():
        raise CacheError(f"destination {dest} exists and is not a folder")
    probe = dest
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise CacheError(f"destination {dest} is not writable: {probe} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise CacheError(f"destination {dest} is not writable: no write permission on {probe}")


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _is_connection_error(exc: BaseException) -> bool:
    try:
        import httpx2
        net = (httpx2.ConnectError, httpx2.TimeoutException, httpx2.NetworkError)
    except ImportError:  # older huggingface_hub on httpx/requests
        net = ()
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, net) or isinstance(exc, (ConnectionError, TimeoutError)) or \
                type(exc).__name__ in ("ConnectError", "ConnectTimeout", "ReadTimeout", "ConnectionError"):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _hub_error(exc: BaseException, entry: catalogue.CatalogueEntry, endpoint: str, written: bool) -> CacheError:
    """Turn a huggingface_hub / network exception into one clear line (never containing the token)."""
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError
    tail = ("partial files are kept in the .partial folder; re-run to resume" if written
            else "nothing was written")
    if _is_connection_error(exc):
        return CacheError(f"cannot reach {endpoint}: {_describe(exc)}; {tail}")
    status = getattr(getattr(exc, "response", None), "status_code", None)
    has_token = bool(os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN"))
    if isinstance(exc, GatedRepoError) or status in (401, 403):
        if has_token:
            return CacheError(f"{entry.repo_id} is gated or private (HTTP {status}) and the token in HF_TOKEN has no "
                              f"access: accept the licence at {entry.licence_url(endpoint)} with that account; {tail}")
        return CacheError(f"{entry.repo_id} is gated or private (HTTP {status}): set HF_TOKEN to a Hugging Face "
                          f"token that has accepted the licence at {entry.licence_url(endpoint)}; {tail}")
    if isinstance(exc, RevisionNotFoundError):
        return CacheError(f"revision not found in {entry.repo_id}; {tail}")
    if isinstance(exc, RepositoryNotFoundError) or status == 404:
        return CacheError(f"repository {entry.repo_id} not found on {endpoint}; {tail}")
    if isinstance(exc, HfHubHTTPError):
        return CacheError(f"{endpoint} answered HTTP {status} for {entry.repo_id}; {tail}")
    return CacheError(f"download of {entry.repo_id} failed: {_describe(exc)}; {tail}")


def list_remote(entry: catalogue.CatalogueEntry, revision: str | None, endpoint: str) -> tuple[str, list[RemoteFile]]:
    """(commit sha, files the patterns select) from the hub's model info; checks the required groups."""
    from huggingface_hub import HfApi
    from huggingface_hub.utils import filter_repo_objects
    info = HfApi(endpoint=endpoint).model_info(entry.repo_id, revision=revision, files_metadata=True)
    if not info.sha:
        raise CacheError(f"{endpoint} did not report a commit for {entry.repo_id}; nothing was written")
    siblings = {s.rfilename: s for s in (info.siblings or [])}
    chosen = list(filter_repo_objects(siblings, allow_patterns=list(entry.allow_patterns),
                                      ignore_patterns=list(entry.ignore_patterns)))
    missing = [group for group in entry.required
               if not list(filter_repo_objects(chosen, allow_patterns=list(group)))]
    if not chosen or missing:
        what = " | ".join(missing[0]) if missing else ", ".join(entry.allow_patterns)
        raise CacheError(f"{entry.repo_id}@{info.sha[:12]} has no file matching {what}: the repository layout may "
                         "have changed; nothing was written")
    files = []
    for name in sorted(chosen):
        s = siblings[name]
        size = s.lfs.size if s.lfs is not None else s.size
        files.append(RemoteFile(name, size, s.lfs.sha256 if s.lfs is not None else None))
    return info.sha, files


# ---------------------------------------------------------------------------------------------- verify

def check_safetensors(path: Path) -> str | None:
    """None when the safetensors header parses and its tensors exactly fill the file; else what is wrong."""
    size = path.stat().st_size
    if size < 8:
        return "too short for a safetensors file"
    with path.open("rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        if n > min(_MAX_SAFETENSORS_HEADER, size - 8):
            return f"header length {n} does not fit in {size} bytes"
        try:
            header = json.loads(fh.read(n))
        except ValueError as exc:
            return f"header is not JSON ({exc})"
    if not isinstance(header, dict):
        return "header is not a JSON object"
    end = 0
    for key, meta in header.items():
        if key == "__metadata__":
            continue
        try:
            start, stop = meta["data_offsets"]
        except (TypeError, KeyError, ValueError):
            return f"tensor {key!r} has no data_offsets"
        end = max(end, int(stop))
    if end != size - 8 - n:
        return f"tensors need {end} data bytes but the file holds {size - 8 - n}"
    return None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(8 * 1024 * 1024), b""):
            h.update(block)
    return h.hexdigest()


def verify(folder: Path, files: list[RemoteFile], entry: catalogue.CatalogueEntry, *,
           check_hashes: bool = True) -> dict[str, str]:
    """Problems by file path (relative, '/'-separated); an empty dict means the folder is complete and sound."""
    problems: dict[str, str] = {}
    for rf in files:
        path = folder / rf.path
        if not path.is_file():
            problems[rf.path] = "missing"
            continue
        size = path.stat().st_size
        if rf.size is not None and size != rf.size:
            problems[rf.path] = f"size {size} but the hub lists {rf.size}"
        elif rf.path.endswith(".json"):
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError) as exc:
                problems[rf.path] = f"not valid JSON ({exc})"
                continue
            if rf.path.endswith(".safetensors.index.json"):
                shards = set((data.get("weight_map") or {}).values()) if isinstance(data, dict) else set()
                base = Path(rf.path).parent
                for shard in sorted(shards):
                    if not (folder / base / shard).is_file():
                        problems[rf.path] = f"refers to missing shard {shard}"
                        break
        elif rf.path.endswith(".safetensors"):
            bad = check_safetensors(path)
            if bad:
                problems[rf.path] = bad
        if rf.path not in problems and check_hashes and rf.sha256 and _sha256(path) != rf.sha256:
            problems[rf.path] = "sha256 does not match the hub"
    if entry.kind == "diffusers" and "model_index.json" in {f.path for f in files} and "model_index.json" not in problems:
        if not isinstance(json.loads((folder / "model_index.json").read_text(encoding="utf-8")), dict):
            problems["model_index.json"] = "not a JSON object"
    return problems


def _discard(staging: Path, rel: str) -> None:
    """Remove a bad file and its download metadata so the next run fetches it again."""
    for path in (staging / rel, staging / ".cache" / "huggingface" / "download" / f"{rel}.metadata"):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


# ------------------------------------------------------------------------------------------------ main

def cache_model(entry: catalogue.CatalogueEntry, dest: Path, *, revision: str | None = None,
                check_hashes: bool = True, max_workers: int = 4) -> Path:
    """Download `entry` into `dest` atomically (staging + verify + rename). Returns dest. Raises CacheError."""
    dest = Path(dest).expanduser().absolute()
    endpoint = hub_endpoint()
    check_writable(dest)
    if dest.exists():
        marker = dest / MARKER
        if marker.is_file() and json.loads(marker.read_text(encoding="utf-8")).get("repo_id") == entry.repo_id:
            log.info("already cached: %s", dest, extra={"repo_id": entry.repo_id})
            return dest
        if any(dest.iterdir()):
            raise CacheError(f"destination {dest} already exists and was not made by cache-models for "
                             f"{entry.repo_id}; remove it or pass --dest")
    staging = dest.with_name(dest.name + ".partial")

    from huggingface_hub import snapshot_download
    with hub_network_enabled():
        try:
            sha, files = list_remote(entry, revision, endpoint)
        except CacheError:
            raise
        except Exception as exc:  # network / HTTP / hub errors become one line
            raise _hub_error(exc, entry, endpoint, written=staging.exists()) from None
        need = sum(f.size or 0 for f in files)
        _check_space(dest, need)
        log.info("downloading %s@%s: %d files, %d bytes -> %s", entry.repo_id, sha[:12], len(files), need, dest,
                 extra={"repo_id": entry.repo_id, "commit": sha})
        try:
            staging.mkdir(parents=True, exist_ok=True)
            snapshot_download(entry.repo_id, revision=sha, local_dir=staging, endpoint=endpoint,
                              allow_patterns=[f.path for f in files], max_workers=max_workers)
        except OSError as exc:
            if not _is_connection_error(exc) and getattr(exc, "response", None) is None:
                raise CacheError(f"cannot write {staging}: {_describe(exc)}") from None
            raise _hub_error(exc, entry, endpoint, written=True) from None
        except Exception as exc:
            raise _hub_error(exc, entry, endpoint, written=True) from None

    problems = verify(staging, files, entry, check_hashes=check_hashes)
    if problems:
        for rel in problems:
            _discard(staging, rel)
        first = "; ".join(f"{k}: {v}" for k, v in list(problems.items())[:3])
        more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        raise CacheError(f"verification failed for {len(problems)} file(s) of {entry.repo_id}: {first}{more}; "
                         f"bad files were removed from {staging}, re-run to fetch them again")
    _finalize(staging, dest, entry, sha, revision, files)
    log.info("cached %s@%s at %s", entry.repo_id, sha[:12], dest, extra={"repo_id": entry.repo_id, "commit": sha})
    return dest


def _check_space(dest: Path, need: int) -> None:
    probe = dest.parent
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if need > free:
        raise CacheError(f"not enough disk space at {probe}: need {need} bytes, {free} free; nothing was written")


def _finalize(staging: Path, dest: Path, entry: catalogue.CatalogueEntry, sha: str, revision: str | None,
              files: list[RemoteFile]) -> None:
    source = staging / entry.subfolder if entry.subfolder else staging
    prefix = f"{entry.subfolder}/" if entry.subfolder else ""
    record = {
        "repo_id": entry.repo_id, "name": entry.name, "revision": revision or "main", "commit": sha,
        "allow_patterns": list(entry.allow_patterns), "licence": entry.licence,
        "downloaded_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "files": [{"path": f.path[len(prefix):], "size": f.size, "sha256": f.sha256} for f in files],
    }
    shutil.rmtree(staging / ".cache", ignore_errors=True)
    (source / MARKER).write_text(json.dumps(record, indent=2), encoding="utf-8")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():  # an empty folder left by the user
        dest.rmdir()
    os.replace(source, dest)
    if entry.subfolder:
        shutil.rmtree(staging, ignore_errors=True)


# ------------------------------------------------------------------------------------------------- CLI

def add_parser(subparsers) -> None:
    p = subparsers.add_parser("cache-models", help="download a model's diffusers folder from the Hugging Face hub",
                              description="Download only the files a diffusers folder needs, verify them, and move "
                                          "them into place atomically. Reads HF_ENDPOINT and HF_TOKEN.")
    p.add_argument("target", nargs="?", metavar="NAME|REPO_ID", help="catalogue name (see --list) or owner/name")
    p.add_argument("--dest", help="destination folder (default: <models_dir>/diffusers/<name> or tokenizers/<name>)")
    p.add_argument("--revision", help="branch, tag or commit (default: main)")
    p.add_argument("--list", action="store_true", help="print the catalogue and exit")
    p.add_argument("--no-hash", action="store_true", help="skip the sha256 check of large files (sizes still checked)")
    p.set_defaults(func=run)


def format_catalogue(models_dir: Path) -> str:
    rows = []
    for e in catalogue.CATALOGUE.values():
        flags = " [gated: needs HF_TOKEN]" if e.gated else ""
        rows.append(f"{e.name:<24} {e.repo_id:<48} -> {e.dest(models_dir)}{flags}  ({e.licence})")
    return "\n".join(rows)


def run(args: argparse.Namespace) -> int:
    models_dir = catalogue.resolve_models_dir(getattr(args, "models_dir", None))
    if getattr(args, "list", False):
        print(format_catalogue(models_dir))
        return 0
    if not args.target:
        print("cache-models: give a catalogue name or a repo id (owner/name); names: "
              + ", ".join(catalogue.names()), file=sys.stderr)
        return 2
    try:
        entry = catalogue.lookup(args.target)
    except KeyError:
        print(f"cache-models: unknown model {args.target!r} (allowed: {', '.join(catalogue.names())}, "
              "or a repo id owner/name)", file=sys.stderr)
        return 2
    dest = Path(args.dest) if args.dest else entry.dest(models_dir)
    try:
        path = cache_model(entry, dest, revision=args.revision, check_hashes=not getattr(args, "no_hash", False))
    except CacheError as exc:
        log.debug("cache-models failed: %s", exc)
        print(f"cache-models: {redact_text(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("cache-models: interrupted; partial files are kept in the .partial folder, re-run to resume",
              file=sys.stderr)
        return 130
    if entry.gated:
        log.info("%s is gated; its licence: %s", entry.repo_id, entry.licence)
    print(path)
    return 0
