"""Prompt styles, compatible with A1111's `styles.csv` (columns name, prompt, negative_prompt): the
expansion rule (a `{prompt}` placeholder takes the prompt; without one the style text is appended with
", "), its inverse (find the styles a prompt was expanded with, as A1111 does when it reads infotext) and
a small store over one CSV file. Pure text work: no torch, no Gradio."""
from __future__ import annotations

import csv
import io
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from .errors import ValidationError

PLACEHOLDER = "{prompt}"
COLUMNS = ("name", "prompt", "negative_prompt")
STYLES_FILE = "styles.csv"


@dataclass(frozen=True)
class Style:
    name: str
    prompt: str = ""
    negative_prompt: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "prompt": self.prompt, "negative_prompt": self.negative_prompt}


# -- expansion ----------------------------------------------------------------------------------------
def merge(style_text: str, prompt: str) -> str:
    """One style's text applied to a prompt: `{prompt}` replaced by it, else both joined with ", "
    (blank parts dropped, each stripped)."""
    if PLACEHOLDER in style_text:
        return style_text.replace(PLACEHOLDER, prompt)
    return ", ".join(part for part in (prompt.strip(), style_text.strip()) if part)


def apply_styles(prompt: str, negative_prompt: str, styles: Iterable[Style]) -> tuple[str, str]:
    """Both prompts with the styles applied in order (each on the result of the previous one)."""
    for style in styles:
        prompt = merge(style.prompt, prompt)
        negative_prompt = merge(style.negative_prompt, negative_prompt)
    return prompt, negative_prompt


def _unmerge(style_text: str, prompt: str) -> str | None:
    """The prompt before `merge(style_text, ·)`, or None when `prompt` cannot be its result."""
    text, style_text = prompt.strip(), style_text.strip()
    if PLACEHOLDER in style_text:
        left, _, right = style_text.partition(PLACEHOLDER)
        if text.startswith(left) and text.endswith(right) and len(text) >= len(left) + len(right):
            return text[len(left):len(text) - len(right)]
        return None
    if not text.endswith(style_text):
        return None
    text = text[:len(text) - len(style_text)]
    return text[:-2] if text.endswith(", ") else text


def extract_styles(prompt: str, negative_prompt: str,
                   styles: Sequence[Style]) -> tuple[list[str], str, str]:
    """The styles a prompt pair was expanded with (in the order to apply them) and the prompts before them,
    as A1111 reads infotext: the last applied style is peeled first; a style with no text never matches."""
    found: list[str] = []
    pool = list(styles)
    while True:
        for style in pool:
            if not style.prompt and not style.negative_prompt:
                continue
            positive = _unmerge(style.prompt, prompt)
            negative = _unmerge(style.negative_prompt, negative_prompt) if positive is not None else None
            if positive is not None and negative is not None:
                prompt, negative_prompt = positive, negative
                found.append(style.name)
                pool.remove(style)
                break
        else:
            return list(reversed(found)), prompt, negative_prompt


def pick(names: Sequence[str], known: dict[str, Style], field: str = "styles") -> list[Style]:
    """The styles named by a request, in order; an unknown name is an error naming `styles[i]`."""
    out = []
    for i, name in enumerate(names):
        if name not in known:
            raise ValidationError(f"unknown style {name!r}", field=f"{field}[{i}]", allowed=sorted(known) or None)
        out.append(known[name])
    return out


# -- styles.csv ------------------------------------------------------------------------------------------
def read_csv(text: str) -> list[Style]:
    """Styles from A1111's CSV: a header row, then name, prompt, negative_prompt (the older `text` column is
    read as prompt); rows without a name or whose name starts with "#" are skipped; a later row of the same
    name replaces an earlier one."""
    rows = csv.DictReader(io.StringIO(text.lstrip("\ufeff")), skipinitialspace=True)
    found: dict[str, Style] = {}
    for row in rows:
        name = (row.get("name") or "").strip()
        if not name or name.startswith("#"):
            continue
        prompt = row.get("prompt") if row.get("prompt") is not None else row.get("text")
        found[name] = Style(name, prompt or "", row.get("negative_prompt") or "")
    return list(found.values())


def write_csv(styles: Iterable[Style]) -> str:
    """A1111's CSV text (header name,prompt,negative_prompt; quoted only where needed, CRLF rows as the
    csv module writes them)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(style.to_dict() for style in styles)
    return out.getvalue()


class StyleSet:
    """A fixed set of styles (what a Ray replica gets from the ingress with each job): the read side of StyleStore."""

    def __init__(self, styles: Iterable[Style | dict[str, str]]) -> None:
        self._styles = {s.name: s for s in (x if isinstance(x, Style) else Style(**x) for x in styles)}

    def all(self) -> dict[str, Style]:
        return dict(self._styles)

    def names(self) -> list[str]:
        return list(self._styles)

    def pick(self, names: Sequence[str], field: str = "styles") -> list[Style]:
        return pick(names, self._styles, field)


class StyleStore:
    """The styles of one CSV file, re-read when the file changes on disk; edits are written atomically
    (UTF-8 with a BOM, as A1111 writes it)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._styles: dict[str, Style] = {}

    def _load(self) -> dict[str, Style]:
        try:
            st = self.path.stat()
        except OSError:
            self._stamp, self._styles = None, {}
            return self._styles
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            text = self.path.read_text(encoding="utf-8-sig", errors="replace")
            self._styles = {s.name: s for s in read_csv(text)}
            self._stamp = stamp
        return self._styles

    def all(self) -> dict[str, Style]:
        with self._lock:
            return dict(self._load())

    def names(self) -> list[str]:
        return list(self.all())

    def pick(self, names: Sequence[str], field: str = "styles") -> list[Style]:
        return pick(names, self.all(), field)

    def save(self, style: Style, *, old_name: str | None = None) -> Style:
        """Add or replace a style (renamed from `old_name` when given); it keeps its place in the file."""
        name = style.name.strip()
        if not name:
            raise ValidationError("must not be empty", field="name")
        style = Style(name, style.prompt or "", style.negative_prompt or "")
        with self._lock:
            current = dict(self._load())
            order = list(current)
            replaced = old_name if old_name in current else name
            out = {}
            for key in order:
                if key == replaced:
                    out[name] = style
                elif key != name:
                    out[key] = current[key]
            out.setdefault(name, style)
            self._write(out)
        return style

    def delete(self, name: str) -> None:
        with self._lock:
            current = dict(self._load())
            if name not in current:
                raise ValidationError(f"unknown style {name!r}", field="name", allowed=sorted(current) or None)
            del current[name]
            self._write(current)

    def _write(self, styles: dict[str, Style]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8-sig", newline="") as f:
            f.write(write_csv(styles.values()))
        os.replace(tmp, self.path)
        self._stamp = None
        self._styles = {}
        self._load()
