"""Textual-inversion embeddings for SD1.5/SD 2.x/SDXL: a word in the prompt (or negative prompt) that names an
embedding file in the models folder is replaced by that embedding's vectors, as A1111 does.

Nothing shared is changed: for the run, each pipeline gets a copy of its tokenizer with the new tokens and
each text encoder's token embedding is wrapped by a module that looks the new ids up in the embedding's
vectors; both are put back afterwards. Formats: A1111 `emb_params` / `string_to_param.*` (SD1.5, SD 2.x) and
`clip_l` + `clip_g` (SDXL) safetensors; A1111 `.pt` files only where pickles are allowed. `TI hashes` (sha256 of the file, 12 hex) go into the infotext.
"""
from __future__ import annotations

import copy
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch

from sdcodex.core.errors import ValidationError

from .lora import check_family, inventory_of

_SLOTS = (("tokenizer", "text_encoder", ("clip_l", "emb_params", "string_to_param.*")),
          ("tokenizer_2", "text_encoder_2", ("clip_g",)))


@dataclass
class Embedding:
    name: str
    path: Path
    vectors: dict[str, torch.Tensor]  # key in file -> (n, width)
    hash: str


@dataclass
class EmbeddingReport:
    used: list[str] = field(default_factory=list)
    hashes: dict[str, str] = field(default_factory=dict)
    prompts: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # name -> number of vectors (tokens) it takes


class _ExtendedEmbedding(torch.nn.Module):
    """Token embedding + extra rows for ids >= the original vocabulary size (the original is not copied)."""

    def __init__(self, base: torch.nn.Embedding, extra: torch.Tensor) -> None:
        super().__init__()
        self.base = base
        self.extra = extra.to(base.weight.device, base.weight.dtype)
        self.num_base = base.num_embeddings

    @property
    def weight(self) -> torch.Tensor:  # for code that reads dtype/device from the embedding
        return self.base.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out = self.base(ids.clamp(max=self.num_base - 1))
        mask = ids >= self.num_base
        if mask.any():
            out = out.clone()
            out[mask] = self.extra[ids[mask] - self.num_base]
        return out


def _load(path: Path, name: str, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """An embedding's vectors by key. A1111's .pt files (`string_to_param: {"*": vectors}`) are pickles: read only
    where the user allows pickles, and then with torch's weights-only unpickler (tensors, numbers and strings)."""
    suffix = path.suffix.lower()
    if suffix in (".pt", ".bin") and allow_pickle:
        try:
            data = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - torch raises many types for a file it cannot read
            raise ValidationError(f"embedding {name!r}: cannot read {path.name} as a weights-only pickle ({exc})",
                                  field="prompt") from exc
        params = data.get("string_to_param") if isinstance(data, dict) else None
        if isinstance(params, dict) and params:
            return {f"string_to_param.{k}": v if v.ndim == 2 else v.reshape(-1, v.shape[-1])
                    for k, v in params.items() if isinstance(v, torch.Tensor)}
        if isinstance(data, dict) and isinstance(data.get("emb_params"), torch.Tensor):
            return {"emb_params": data["emb_params"].reshape(-1, data["emb_params"].shape[-1])}
        raise ValidationError(f"embedding {name!r}: {path.name} holds no string_to_param or emb_params vectors",
                              field="prompt")
    if suffix not in (".safetensors", ".sft"):
        raise ValidationError(f"embedding {name!r}: only .safetensors embeddings are loaded (pickle can run code; "
                              "allow pickles to read A1111 .pt embeddings)", field="prompt",
                              allowed=[".safetensors"])
    from safetensors.torch import load_file

    return {k: (v if v.ndim == 2 else v.reshape(-1, v.shape[-1])) for k, v in load_file(str(path)).items()}


def _hash(path: Path) -> str:
    from sdcodex.models.hashing import sha256_file

    return sha256_file(path)[:12]


def _pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![\w\-.]){re.escape(name)}(?![\w\-])")


def find(provider: Any, family: str, texts: list[str]) -> list[Embedding]:
    """Embeddings of the models folder whose name appears as a word in any of `texts` (longest names first)."""
    entries = sorted(inventory_of(provider).entries("embedding"), key=lambda e: -len(e.name))
    found: list[Embedding] = []
    for entry in entries:
        if any(_pattern(entry.name).search(t or "") for t in texts):
            if entry.family is not None and not entry.fits(None, family):
                continue  # an SDXL embedding named in an SD1.5 prompt is just a word, as in A1111
            check_family(entry, family, "prompt", "embedding")
            vectors = _load(Path(entry.path), entry.name, bool(getattr(provider, "allow_pickle", False)))
            found.append(Embedding(entry.name, Path(entry.path), vectors, _hash(Path(entry.path))))
    return found


def _vectors(emb: Embedding, keys: tuple[str, ...], width: int, slot: str) -> torch.Tensor | None:
    for key, tensor in emb.vectors.items():
        if key in keys or (key.startswith("string_to_param") and "string_to_param.*" in keys):
            if tensor.shape[-1] != width:
                raise ValidationError(f"embedding {emb.name!r} has {tensor.shape[-1]}-wide vectors; this model's "
                                      f"{slot} takes {width}", field="prompt")
            return tensor
    return None


def _token_names(name: str, count: int) -> list[str]:
    """One added token per vector: `name`, `name#1`, ... Not `name_1`: Diffusers' pipelines expand a token that has
    `_1` siblings once more (TextualInversionLoaderMixin.maybe_convert_prompt), which would repeat the vectors."""
    return [name] + [f"{name}#{i}" for i in range(1, count)]


@contextmanager
def applied(pipes: list[Any], embeddings: list[Embedding], texts: list[str]) -> Iterator[EmbeddingReport]:
    """Make `embeddings` usable in `pipes` for the block; the report's `prompts` are `texts` rewritten."""
    report = EmbeddingReport(prompts=list(texts))
    if not embeddings:
        yield report
        return
    restore: list[tuple[Any, str, Any]] = []
    encoders: dict[int, tuple[Any, Any]] = {}
    counts: dict[str, int] = {}
    try:
        base = pipes[0]
        for tok_name, te_name, keys in _SLOTS:
            tok, te = getattr(base, tok_name, None), getattr(base, te_name, None)
            if tok is None or te is None:
                continue
            old = te.get_input_embeddings()
            rows, names = [], []
            for emb in embeddings:
                vec = _vectors(emb, keys, old.embedding_dim, te_name)
                if vec is None:
                    raise ValidationError(f"embedding {emb.name!r} has no vectors for {te_name} "
                                          f"(keys: {sorted(emb.vectors)})", field="prompt")
                counts[emb.name] = vec.shape[0]
                names += _token_names(emb.name, vec.shape[0])
                rows.append(vec)
            new_tok = copy.deepcopy(tok)
            new_tok.add_tokens(names)
            ids = new_tok.convert_tokens_to_ids(names)
            if ids != list(range(old.num_embeddings, old.num_embeddings + len(names))):
                raise ValidationError(f"embedding names {names} clash with the tokenizer's vocabulary",
                                      field="prompt")
            encoders[id(te)] = (te, old)
            te.set_input_embeddings(_ExtendedEmbedding(old, torch.cat(rows)))
            for pipe in pipes:
                if getattr(pipe, tok_name, None) is tok:
                    restore.append((pipe, tok_name, tok))
                    setattr(pipe, tok_name, new_tok)
        rewritten = []
        for text in texts:
            for emb in embeddings:
                words = " ".join(_token_names(emb.name, counts.get(emb.name, 1)))
                text = _pattern(emb.name).sub(words, text or "")
            rewritten.append(text)
        report.prompts = rewritten
        report.used = [e.name for e in embeddings]
        report.hashes = {e.name: e.hash for e in embeddings}
        report.counts = dict(counts)
        yield report
    finally:
        for pipe, tok_name, tok in restore:
            setattr(pipe, tok_name, tok)
        for te, old in encoders.values():
            te.set_input_embeddings(old)
