"""Extra networks as cards: for each checkpoint, LoRA, embedding and VAE of the inventory, its preview image
(the file beside the model: `NAME.preview.png` or `NAME.png`, the A1111/Civitai convention), the metadata of
its safetensors header (kohya `ss_*` values, `modelspec.*`), and the user notes A1111 and Civitai helpers leave
beside it (`NAME.json`: activation text, preferred weight; `NAME.civitai.info`: trained words).

Headers only: no tensor is read. Preview files are found from the entry's own path, never from a name
given by a client."""
from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

from sdcodex.core.errors import CodexError

log = logging.getLogger("sdcodex.models")

#: the kinds shown as extra networks, with their card-tab labels
KINDS = {"checkpoint": "Checkpoints", "lora": "LoRA", "embedding": "Textual Inversion", "vae": "VAE"}
PREVIEW_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif")
PREVIEW_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
                 ".gif": "image/gif"}
MAX_SIDECAR_BYTES = 1 << 20
TOP_TAGS = 12


def _stem(path: Path) -> Path:
    """The path without the model's extension (a diffusers folder: the folder itself)."""
    return path.with_suffix("") if path.suffix and not path.is_dir() else path


def preview_path(model_path: str | Path) -> Path | None:
    """The preview image beside a model, or None: NAME.preview.<ext> first, then NAME.<ext>."""
    stem = _stem(Path(model_path))
    for middle in (".preview", ""):
        for suffix in PREVIEW_SUFFIXES:
            candidate = stem.with_name(stem.name + middle + suffix)
            if candidate.is_file():
                return candidate
    return None


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The safetensors `__metadata__` of a file, values that hold JSON objects decoded (as A1111's
    /sdapi/v1/loras gives them, e.g. ss_tag_frequency); {} for other formats or an unreadable header."""
    from .safetensors_io import read_header

    p = Path(path)
    if p.is_dir() or p.suffix.lower() not in (".safetensors", ".sft"):
        return {}
    try:
        raw = read_header(p)[1]
    except (CodexError, OSError):
        return {}
    out: dict[str, Any] = {}
    for key, value in raw.items():
        out[key] = value
        if isinstance(value, str) and value[:1] == "{":
            try:
                out[key] = json.loads(value)
            except ValueError:
                pass
    return out


def _sidecar(stem: Path, suffix: str) -> dict[str, Any]:
    path = stem.with_name(stem.name + suffix)
    try:
        if not path.is_file() or path.stat().st_size > MAX_SIDECAR_BYTES:
            return {}
        data = json.loads(path.read_text(encoding="utf-8", errors="replace"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def top_tags(meta: dict[str, Any], limit: int = TOP_TAGS) -> list[tuple[str, int]]:
    """kohya's `ss_tag_frequency` ({dataset: {tag: count}}) summed over datasets, most frequent first."""
    freq = meta.get("ss_tag_frequency")
    counts: Counter[str] = Counter()
    if isinstance(freq, dict):
        for tags in freq.values():
            if isinstance(tags, dict):
                for tag, n in tags.items():
                    if isinstance(n, (int, float)):
                        counts[str(tag).strip()] += int(n)
    return counts.most_common(limit)


def _words(value: Any) -> list[str]:
    if isinstance(value, str):
        return [w.strip() for w in value.split(",") if w.strip()]
    if isinstance(value, list):
        return [str(w).strip() for w in value if str(w).strip()]
    return []


def describe(meta: dict[str, Any], user: dict[str, Any] | None = None,
             civitai: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a card shows from a header and its sidecars: base model, trigger words, activation text,
    preferred weight, the most frequent training tags, title and description."""
    user, civitai = user or {}, civitai or {}
    base = (meta.get("ss_base_model_version") or meta.get("modelspec.architecture") or user.get("sd version")
            or (civitai.get("baseModel") if isinstance(civitai.get("baseModel"), str) else None))
    triggers = (_words(meta.get("modelspec.trigger_phrase")) or _words(meta.get("ss_trigger_words"))
                or _words(civitai.get("trainedWords")))
    weight = user.get("preferred weight")
    try:
        weight = float(weight) if weight not in (None, "", 0, "0") else None
    except (TypeError, ValueError):
        weight = None
    return {"base_model": base or None, "trigger_words": triggers,
            "activation_text": str(user.get("activation text") or "").strip(),
            "preferred_weight": weight,
            "tags": [{"tag": t, "count": n} for t, n in top_tags(meta)],
            "title": meta.get("modelspec.title") or meta.get("ss_output_name") or None,
            "description": str(user.get("description") or meta.get("modelspec.description") or "").strip(),
            "training_model": meta.get("ss_sd_model_name") or None}


def insert_text(kind: str, name: str, info: dict[str, Any]) -> str:
    """What a click on the card adds to the prompt: `<lora:NAME:W>` (and its activation text), an embedding's
    name; nothing for checkpoints and VAEs (a click selects them)."""
    if kind == "lora":
        weight = info.get("preferred_weight") or 1
        text = f"<lora:{name}:{weight:g}>"
        extra = info.get("activation_text") or ""
        return f"{text} {extra}".strip() if extra else text
    if kind == "embedding":
        return name
    return ""


def card(entry: Any, kind: str, *, with_metadata: bool = True) -> dict[str, Any]:
    """One card: the entry's name, kind, family, file, whether it has a preview, what a click inserts, the summary
    of its header metadata and (with_metadata) the whole metadata."""
    path = Path(entry.path)
    stem = _stem(path)
    meta = read_metadata(path)
    info = describe(meta, _sidecar(stem, ".json"), _sidecar(stem, ".civitai.info"))
    family = getattr(entry.family, "value", entry.family)
    out = {"name": entry.name, "kind": kind, "family": family, "filename": entry.filename, "path": str(path),
           "size": entry.size, "preview": preview_path(path) is not None, **info,
           "insert": insert_text(kind, entry.name, info)}
    if with_metadata:
        out["metadata"] = meta
    return out


def cards(inventory: Any, kind: str, *, with_metadata: bool = True) -> list[dict[str, Any]]:
    """The cards of one kind, in the inventory's order."""
    if kind not in KINDS:
        raise CodexError(f"unknown extra-network kind {kind!r}", field="kind", allowed=list(KINDS))
    return [card(e, kind, with_metadata=with_metadata) for e in inventory.entries(kind=kind)]


def find_preview(inventory: Any, kind: str, name: str) -> Path | None:
    """The preview of the entry of `kind` named exactly `name` (an entry the inventory lists), or None."""
    if kind not in KINDS:
        return None
    for entry in inventory.entries(kind=kind):
        if entry.name == name:
            return preview_path(entry.path)
    return None


def a1111_loras(inventory: Any, family: str | None = None) -> list[dict[str, Any]]:
    """A1111 `/sdapi/v1/loras` rows (name, alias, path, metadata with JSON values decoded), plus our family and
    the card summary (base model, trigger words, top training tags)."""
    out = []
    for e in inventory.entries(kind="lora", family=family):
        c = card(e, "lora")
        meta = c["metadata"]
        out.append({"name": e.name, "alias": meta.get("ss_output_name", e.name), "path": str(e.path),
                    "metadata": meta, "family": c["family"], "base_model": c["base_model"],
                    "trigger_words": c["trigger_words"], "tags": c["tags"]})
    return out
