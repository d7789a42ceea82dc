"""The loader's own safetensors reader (zero-copy views of a private map, background prefetch), the fast meta
build of modules, and the CLIP vocabulary read from the head of the BPE file."""
from __future__ import annotations

import gzip
import json
import struct
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from sdcodex.core.errors import ModelLoadError, TokenizerMissingError
from sdcodex.models import tokenizers
from sdcodex.models.build import empty_model, empty_module
from sdcodex.models.model_configs import bundled_config
from sdcodex.models.safetensors_io import MappedSafetensors


def _tensors() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {
        "f16": torch.randn(3, 5, generator=gen).half(),
        "bf16": torch.randn(7, generator=gen).bfloat16(),
        "f32": torch.randn(2, 2, 2, generator=gen),
        "i64": torch.arange(9).reshape(3, 3),
        "u8": torch.arange(5, dtype=torch.uint8),
        "flag": torch.tensor([True, False, True]),
        "empty": torch.zeros(0, 4),
        "scalar": torch.tensor(2.5),
    }


def test_tensors_equal_safetensors_own_reader(tmp_path):
    path = tmp_path / "t.safetensors"
    save_file(_tensors(), str(path))
    mapped = MappedSafetensors(path)
    reference = load_file(str(path))
    assert sorted(mapped.keys()) == sorted(reference)
    for name, want in reference.items():
        got = mapped.get_tensor(name)
        assert got.dtype == want.dtype and got.shape == want.shape and torch.equal(got, want), name
        assert mapped.shape(name) == list(want.shape)


def test_views_share_one_private_map(tmp_path):
    """Tensors are views of the map (no copy); writing to one never changes the file (MAP_PRIVATE)."""
    path = tmp_path / "t.safetensors"
    save_file({"a": torch.zeros(1024), "b": torch.ones(16)}, str(path))
    before = path.read_bytes()
    mapped = MappedSafetensors(path)
    a, b = mapped.get_tensor("a"), mapped.get_tensor("b")
    assert a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()  # one storage: the file's map
    a.add_(1)  # as an in-place LoRA merge does
    assert torch.equal(mapped.get_tensor("a"), torch.ones(1024))  # the process sees its write ...
    assert path.read_bytes() == before  # ... the file does not
    assert torch.equal(load_file(str(path))["a"], torch.zeros(1024))


def _write_raw(path, entries: dict[str, tuple[str, list[int], bytes]]) -> None:
    """A safetensors file laid out by hand (no alignment padding between tensors)."""
    header, data = {}, b""
    for name, (dtype, shape, raw) in entries.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + data)


def test_unaligned_tensor_is_copied_not_misread(tmp_path):
    """The format allows a tensor to start at any byte; such a tensor cannot be a view, so it is copied."""
    path = tmp_path / "odd.safetensors"
    odd = torch.tensor([1.5, -2.25, 3.0], dtype=torch.float32)
    _write_raw(path, {"byte": ("U8", [1], b"\x07"), "odd": ("F32", [3], odd.numpy().tobytes())})
    mapped = MappedSafetensors(path)
    assert torch.equal(mapped.get_tensor("odd"), odd)
    assert mapped.get_tensor("byte").tolist() == [7]


def test_bad_files_are_named(tmp_path):
    good = tmp_path / "good.safetensors"
    save_file({"w": torch.ones(64)}, str(good))
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(good.read_bytes()[:-40])
    with pytest.raises(ModelLoadError, match="cut.safetensors.*truncated"):
        MappedSafetensors(cut)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(struct.pack("<Q", 4) + b"{{{{")
    with pytest.raises(ModelLoadError, match="junk.safetensors.*JSON"):
        MappedSafetensors(junk)
    odd = tmp_path / "odd-dtype.safetensors"
    _write_raw(odd, {"x": ("F4", [2], b"\x00")})
    with pytest.raises(ModelLoadError, match="odd-dtype.safetensors.*'x'.*F4"):
        MappedSafetensors(odd).get_tensor("x")


def _resident_kib(path) -> int:
    """Resident KiB of this process's mappings of `path` (from /proc/self/smaps)."""
    total, inside = 0, False
    for line in open("/proc/self/smaps"):
        if "-" in line.split(" ", 1)[0]:
            inside = line.rstrip().endswith(str(path))
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prefetch uses Linux madvise")
def test_prefetch_makes_every_page_resident(tmp_path):
    path = tmp_path / "big.safetensors"
    save_file({"w": torch.ones(6 << 20, dtype=torch.float16)}, str(path))  # 12 MiB, in the page cache now
    size_kib = path.stat().st_size // 1024
    mapped = MappedSafetensors(path)
    assert _resident_kib(path) < size_kib // 2  # mapped lazily: nothing touched yet
    mapped.prefetch()
    mapped._prefetcher.join(timeout=30)
    assert _resident_kib(path) >= size_kib - 8
    assert torch.equal(mapped.get_tensor("w"), torch.ones(6 << 20, dtype=torch.float16))
    thread = mapped._prefetcher
    assert mapped.prefetch() and mapped._prefetcher is thread  # once only: a second call starts nothing


def test_no_prefetch_of_a_file_larger_than_half_the_free_memory(tmp_path, monkeypatch):
    from sdcodex.models import safetensors_io

    path = tmp_path / "t.safetensors"
    save_file({"w": torch.ones(4096)}, str(path))
    monkeypatch.setattr(safetensors_io, "_available_memory", lambda: 2 * path.stat().st_size - 2)
    mapped = MappedSafetensors(path)
    assert mapped.prefetch() is False and mapped._prefetcher is None
    assert torch.equal(mapped.get_tensor("w"), torch.ones(4096))  # pages come in on use


# ----------------------------------------------------------------------------------------------- meta build
def test_clip_text_model_built_on_meta_has_real_position_ids():
    from transformers import CLIPTextConfig, CLIPTextModel

    config = bundled_config("sd15", "text_encoder")
    module = empty_model("CLIPTextModel", config)
    assert all(p.is_meta for p in module.parameters())
    built = dict(module.named_buffers())
    reference = dict(CLIPTextModel(CLIPTextConfig(**{k: v for k, v in config.items()
                                                     if k not in ("architectures", "model_type")})).named_buffers())
    assert built.keys() == reference.keys()
    for name, value in reference.items():
        assert not built[name].is_meta and torch.equal(built[name], value), name
    assert module.state_dict(keep_vars=True).keys() == CLIPTextModel(CLIPTextConfig(
        **{k: v for k, v in config.items() if k not in ("architectures", "model_type")})).state_dict().keys()


class _WithBuffer(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)
        self.register_buffer("table", torch.linspace(0, 1, 5))
        self.freqs = torch.arange(3.0)  # a plain tensor attribute, as some rotary embeddings keep


def test_modules_with_unknown_buffers_fall_back_to_real_buffers():
    module = empty_module(_WithBuffer)
    assert module.lin.weight.is_meta
    assert torch.equal(module.table, torch.linspace(0, 1, 5)) and torch.equal(module.freqs, torch.arange(3.0))


# ------------------------------------------------------------------------------------------ CLIP vocabulary
def test_vocabulary_reads_only_the_merges_it_needs(monkeypatch, tmp_path):
    """The merges come from the head of the file; a cut or garbled file is a TokenizerMissingError."""
    vocab, merges = tokenizers.clip_vocab_and_merges()
    assert merges[0] == ("i", "n") and vocab["in"] == 512 and vocab[tokenizers.EOS] == 49407
    full = gzip.decompress(tokenizers.bpe_path().read_bytes()).decode().split("\n")
    head = "\n".join(full[:tokenizers._N_MERGES + 1]).encode()
    for name, payload in {"cut": gzip.compress(head)[:-5000], "short": gzip.compress(head[: len(head) // 2]),
                          "three": gzip.compress(head.replace(b"\ni n\n", b"\ni n x\n", 1))}.items():
        fake = tmp_path / name / tokenizers.BPE_FILE
        fake.parent.mkdir()
        fake.write_bytes(payload)
        monkeypatch.setattr(tokenizers, "bpe_path", lambda fake=fake: fake)
        tokenizers.clip_vocab_and_merges.cache_clear()
        with pytest.raises(TokenizerMissingError, match=name):
            tokenizers.clip_vocab_and_merges()
    tokenizers.clip_vocab_and_merges.cache_clear()
