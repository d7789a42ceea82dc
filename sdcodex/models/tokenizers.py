"""CLIP BPE tokenizer rebuilt offline from the vocabulary file that the open-clip-torch wheel carries.

The vocabulary is the one OpenAI's CLIP and every Stable Diffusion text encoder use: 256 byte characters,
the same 256 with an end-of-word marker, 48 894 merges, then ``<|startoftext|>`` and ``<|endoftext|>``
(49 408 ids). open_clip itself is never imported (it needs torchvision); only its data file is read.
"""
from __future__ import annotations

import functools
import zlib
import importlib.util
from pathlib import Path

from sdcodex.core.errors import TokenizerMissingError

BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
VOCAB_SIZE = 49408
MAX_LENGTH = 77
BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
_N_MERGES = VOCAB_SIZE - 2 * 256 - 2  # 48894 merge lines follow the header line


def bpe_path() -> Path:
    """Where the BPE file lives inside the installed open_clip package (TokenizerMissingError if absent)."""
    spec = importlib.util.find_spec("open_clip")
    for root in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(root) / BPE_FILE
        if candidate.is_file():
            return candidate
    raise TokenizerMissingError(
        f"CLIP vocabulary file {BPE_FILE} not found: install the open-clip-torch wheel "
        "(pip install --no-deps open-clip-torch); it only provides data files here")


def byte_characters() -> list[str]:
    """The 256 printable characters that stand for bytes 0..255, in vocabulary order (GPT-2 byte-level scheme)."""
    direct = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
              + list(range(ord("®"), ord("ÿ") + 1)))
    order = list(direct)
    chars = [chr(b) for b in direct]
    shift = 0
    for b in range(256):
        if b not in direct:
            order.append(b)
            chars.append(chr(256 + shift))
            shift += 1
    return chars


def _head_lines(path: Path, count: int) -> list[str]:
    """The first `count` lines of a gzip text file, inflating no further than needed (the merges CLIP uses
    are the first fifth of the file)."""
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out, newlines = [], 0
    with path.open("rb") as f:
        while newlines < count and (block := f.read(1 << 16)):
            chunk = inflate.decompress(block)
            out.append(chunk)
            newlines += chunk.count(b"\n")
    if newlines < count and not inflate.eof:
        raise EOFError("compressed stream ends early")
    head = b"".join(out).split(b"\n", count)[:count]
    return b"\n".join(head).decode("utf-8").split("\n")


@functools.lru_cache(maxsize=1)
def clip_vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """(vocab token -> id, merges in rank order), exactly as CLIP's vocab.json / merges.txt hold them."""
    path = bpe_path()
    try:
        lines = _head_lines(path, _N_MERGES + 1)[1:]  # a header line, then one "a b" pair a line
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
        raise TokenizerMissingError(f"{path}: cannot read CLIP vocabulary ({exc})") from exc
    words = " ".join(lines).split(" ")
    if len(lines) != _N_MERGES or len(words) != 2 * _N_MERGES or any(line.count(" ") != 1 for line in lines):
        raise TokenizerMissingError(f"{path}: unexpected BPE merge list (expected {_N_MERGES} pairs)")
    merges = list(zip(words[0::2], words[1::2]))
    chars = byte_characters()
    tokens = chars + [c + "</w>" for c in chars] + [a + b for a, b in merges] + [BOS, EOS]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    if len(vocab) != VOCAB_SIZE:
        raise TokenizerMissingError(f"{path}: built {len(vocab)} tokens, expected {VOCAB_SIZE}")
    return vocab, merges  # type: ignore[return-value]


@functools.lru_cache(maxsize=4)
def _build(pad_token: str, model_max_length: int):
    from transformers import CLIPTokenizer

    vocab, merges = clip_vocab_and_merges()
    return CLIPTokenizer(vocab=dict(vocab), merges=list(merges), pad_token=pad_token,
                         model_max_length=model_max_length)


def clip_tokenizer(pad_token: str = EOS, model_max_length: int = MAX_LENGTH):
    """A transformers CLIPTokenizer with the real CLIP vocabulary (cached; treat it as read-only).

    SD1.5 and SDXL's first tokenizer pad with ``<|endoftext|>``; SDXL's second (OpenCLIP bigG) pads with ``"!"``.
    """
    return _build(pad_token, model_max_length)


def tokenizer_for(component: str):
    """The tokenizer a pipeline component slot needs: ``tokenizer`` or ``tokenizer_2`` (SDXL)."""
    return clip_tokenizer(pad_token="!" if component == "tokenizer_2" else EOS)
