"""Inventory: scanning A1111, ComfyUI and diffusers layouts by content, resolving every kind of
reference, not-found and ambiguity errors, and the hash cache."""
from __future__ import annotations

import hashlib
import json
import os

import pytest

from sdcodex.core.enums import EngineKey as E
from sdcodex.core.errors import ModelNotFoundError
from sdcodex.models import hashing
from sdcodex.models.inventory import Inventory, default_models_dir
from tests.models import fake_headers as fh


def _a1111(root):
    fh.write_fake_safetensors(root / "Stable-diffusion" / "dreamy.safetensors", fh.sd15_checkpoint_keys())
    fh.write_fake_safetensors(root / "Stable-diffusion" / "xl" / "juggler.safetensors", fh.sdxl_checkpoint_keys())
    fh.write_fake_safetensors(root / "VAE" / "vae-ft-mse.safetensors", fh.ldm_vae_keys())
    fh.write_fake_safetensors(root / "Lora" / "style.safetensors", fh.sd15_lora_kohya_keys())
    fh.write_fake_safetensors(root / "ESRGAN" / "4x-UltraSharp.safetensors", fh.esrgan_old_keys())
    (root / "ESRGAN" / "old.pth").write_bytes(b"not unpickled")
    fh.write_fake_safetensors(root / "embeddings" / "bad-hands.safetensors", fh.sd15_embedding_keys())
    fh.write_fake_safetensors(root / ".trash" / "deleted.safetensors", fh.sd15_embedding_keys())
    fh.write_fake_safetensors(root / "Lora" / ".hidden.safetensors", fh.sd15_embedding_keys())
    (root / "Stable-diffusion" / "readme.txt").write_text("not a model")
    return root


def _comfy(root):
    fh.write_fake_safetensors(root / "checkpoints" / "flux-aio.safetensors", fh.flux_checkpoint_keys())
    fh.write_fake_safetensors(root / "diffusion_models" / "wan2.2_ti2v_5B.safetensors", fh.wan_ti2v_5b_keys())
    fh.write_fake_safetensors(root / "diffusion_models" / "high_noise.safetensors", fh.wan_t2v_a14b_keys(prefix="model.diffusion_model."))
    fh.write_fake_safetensors(root / "vae" / "wan2.2_vae.safetensors", fh.wan22_vae_keys())
    fh.write_fake_safetensors(root / "loras" / "wan-lora.safetensors", fh.wan_lora_keys(3072, 30))
    fh.write_fake_safetensors(root / "text_encoders" / "umt5_xxl.safetensors", fh.umt5_xxl_keys())
    fh.write_fake_safetensors(root / "upscale_models" / "realesr-general-x4v3.safetensors", fh.compact_keys())
    # a LoRA saved in the wrong folder is still a LoRA: content decides
    fh.write_fake_safetensors(root / "checkpoints" / "misplaced.safetensors", fh.flux_lora_kohya_keys(rank=4))
    return root


def _diffusers(root):
    root.mkdir(parents=True)
    (root / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionXLPipeline",
                                                       "unet": ["diffusers", "UNet2DConditionModel"]}))
    (root / "unet").mkdir()
    (root / "unet" / "config.json").write_text(json.dumps({"in_channels": 4}))
    fh.write_fake_safetensors(root / "unet" / "diffusion_pytorch_model.safetensors", {"conv_in.weight": [320, 4, 3, 3]})
    return root


def _kinds(inv):
    return {e.path.relative_to(inv.models_dir).as_posix(): (e.kind, e.family) for e in inv.scan()}


def test_scan_a1111_layout(tmp_path):
    inv = Inventory(_a1111(tmp_path / "models"))
    assert _kinds(inv) == {
        "Stable-diffusion/dreamy.safetensors": ("checkpoint", E.SD15),
        "Stable-diffusion/xl/juggler.safetensors": ("checkpoint", E.SDXL),
        "VAE/vae-ft-mse.safetensors": ("vae", None),
        "Lora/style.safetensors": ("lora", E.SD15),
        "ESRGAN/4x-UltraSharp.safetensors": ("upscaler", None),
        "ESRGAN/old.pth": ("upscaler", None),
        "embeddings/bad-hands.safetensors": ("embedding", E.SD15),
    }
    old = next(e for e in inv.entries() if e.filename == "old.pth")
    assert old.format == "pickle" and old.variant == {"pickle": True}
    assert [e.name for e in inv.entries("checkpoint", E.SDXL)] == ["juggler"]
    assert [e.name for e in inv.entries("vae", E.SDXL)] == ["vae-ft-mse"]  # a 4-channel VAE fits SD1.5 and SDXL


def test_scan_comfyui_layout_content_decides(tmp_path):
    inv = Inventory(_comfy(tmp_path / "models"))
    assert _kinds(inv) == {
        "checkpoints/flux-aio.safetensors": ("checkpoint", E.FLUX),
        "checkpoints/misplaced.safetensors": ("lora", E.FLUX),
        "diffusion_models/wan2.2_ti2v_5B.safetensors": ("diffusion_model", E.WAN22_TI2V_5B),
        "diffusion_models/high_noise.safetensors": ("diffusion_model", E.WAN22_T2V_A14B),
        "vae/wan2.2_vae.safetensors": ("vae", E.WAN22_TI2V_5B),
        "loras/wan-lora.safetensors": ("lora", E.WAN22_TI2V_5B),
        "text_encoders/umt5_xxl.safetensors": ("text_encoder", None),
        "upscale_models/realesr-general-x4v3.safetensors": ("upscaler", None),
    }
    # "checkpoint" lists full checkpoints and bare diffusion models
    assert {e.name for e in inv.entries("checkpoint")} == {"flux-aio", "wan2.2_ti2v_5B", "high_noise"}
    assert [e.name for e in inv.entries("text_encoder", E.WAN22_T2V_A14B)] == ["umt5_xxl"]
    high = inv.resolve("high_noise")
    assert high.prefix == "model.diffusion_model." and high.variant["model_size"] == "14B"


def test_diffusers_folder_is_one_entry(tmp_path):
    models = tmp_path / "models"
    _diffusers(models / "diffusers" / "my-sdxl")
    fh.write_fake_safetensors(models / "Lora" / "l.safetensors", fh.sdxl_lora_peft_keys())
    inv = Inventory(models)
    entries = inv.scan()
    assert [(e.name, e.kind, e.family, e.format) for e in entries] == [
        ("my-sdxl", "checkpoint", E.SDXL, "diffusers"), ("l", "lora", E.SDXL, "safetensors")]
    folder = entries[0]
    assert folder.title == f"my-sdxl [{folder.sha256[:10]}]"
    assert folder.sha256 == hashing.folder_sha256(folder.path)
    assert inv.resolve("my-sdxl") == folder


def test_hf_cache_snapshot_is_named_by_repo_and_bad_index_is_not_fatal(tmp_path):
    models = tmp_path / "models"
    _diffusers(models / "hub" / "models--acme--fast-xl" / "snapshots" / "0123abcd")
    (models / "broken").mkdir(parents=True)
    (models / "broken" / "model_index.json").write_text("{oops")
    entries = {e.name: e for e in Inventory(models).scan()}
    assert entries["acme--fast-xl"].family == E.SDXL
    assert entries["broken"].kind == "unknown" and "model_index.json" in entries["broken"].variant["error"]


def test_default_models_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("SDCODEX_MODELS_DIR", str(tmp_path / "m"))
    assert default_models_dir() == tmp_path / "m"
    monkeypatch.delenv("SDCODEX_MODELS_DIR")
    monkeypatch.chdir(tmp_path)
    assert default_models_dir() == tmp_path / "models"
    assert Inventory().models_dir == tmp_path / "models" and Inventory().scan() == []


# ---- resolve ---------------------------------------------------------------------------------------

@pytest.fixture()
def small(tmp_path):
    """A tree of small files (cheap to hash)."""
    root = tmp_path / "models"
    # the real SD1.5 layout minus its big tensors: still detected, cheap to hash
    tiny = {k: v for k, v in fh.sd15_checkpoint_keys().items() if fh.numel(v) <= 1_000_000}
    fh.write_fake_safetensors(root / "Stable-diffusion" / "tiny.safetensors", tiny)
    fh.write_fake_safetensors(root / "Lora" / "a.safetensors", fh.sd15_lora_kohya_keys(rank=4))
    fh.write_fake_safetensors(root / "Lora" / "b.safetensors", fh.sdxl_lora_kohya_keys(rank=8))
    fh.write_fake_safetensors(root / "Lora" / "dup" / "a.safetensors", fh.sd15_lora_kohya_keys(rank=2))
    fh.write_fake_safetensors(root / "embeddings" / "e.safetensors", fh.sd15_embedding_keys())
    return Inventory(root)


def test_resolve_by_name_filename_title_and_paths(small, monkeypatch):
    tiny = small.resolve("tiny")
    assert tiny.name == "tiny" and tiny.kind == "checkpoint"
    assert small.resolve("tiny.safetensors") == tiny
    assert small.resolve(tiny.title) == tiny
    assert small.resolve(f"tiny [{tiny.short_hash}]") == tiny
    assert small.resolve(str(tiny.path)) == tiny
    assert small.resolve("Stable-diffusion/tiny.safetensors") == tiny
    assert small.resolve("Stable-diffusion/tiny") == tiny
    monkeypatch.chdir(small.models_dir.parent)
    assert small.resolve("models/Stable-diffusion/tiny.safetensors") == tiny
    assert small.resolve("b", kind="lora").family == E.SDXL


def test_resolve_by_hashes(small):
    b = small.resolve("b", kind="lora")
    digest = hashlib.sha256(b.path.read_bytes()).hexdigest()
    assert small.sha256(b) == digest and small.short_hash(b) == digest[:10]
    for ref in (digest, digest[:10], digest[:8], digest.upper()[:12]):
        assert small.resolve(ref, kind="lora") == b
    legacy = hashing.legacy_model_hash(b.path)
    assert small.resolve(legacy, kind="lora") == b
    tiny = small.resolve("tiny")
    assert small.resolve(tiny.sha256[:8]) == tiny


def test_not_found_lists_names_of_that_kind(small):
    with pytest.raises(ModelNotFoundError) as err:
        small.resolve("nope", kind="lora")
    assert err.value.allowed == ["a", "b"] and "nope" in str(err.value)
    with pytest.raises(ModelNotFoundError) as err:
        small.resolve("deadbeefdeadbeef")
    assert err.value.allowed == ["tiny"]
    with pytest.raises(ModelNotFoundError) as err:
        small.resolve("b", kind="lora", family=E.SD15)
    assert err.value.allowed == ["a"]


def test_wrong_kind_by_path_is_refused(small):
    lora = small.models_dir / "Lora" / "b.safetensors"
    with pytest.raises(ModelNotFoundError, match="is a lora .*not a checkpoint"):
        small.resolve(str(lora))


def test_duplicate_names_require_a_path(small):
    with pytest.raises(ModelNotFoundError, match="ambiguous") as err:
        small.resolve("a", kind="lora")
    assert sorted(err.value.allowed) == sorted([str(small.models_dir / "Lora" / "a.safetensors"),
                                                str(small.models_dir / "Lora" / "dup" / "a.safetensors")])
    assert small.resolve("Lora/dup/a.safetensors", kind="lora").variant["rank"] == 2
    # the A1111 title's hash disambiguates too
    dup = small.resolve("Lora/dup/a", kind="lora")
    assert small.resolve(dup.title, kind="lora") == dup


def test_to_dict_is_json_ready(small):
    rows = small.to_dicts(kind="lora")
    json.dumps(rows)
    assert {r["name"] for r in rows} == {"a", "b"} and all(r["hash"] is None for r in rows)
    rows = small.to_dicts(kind="embedding", compute_hashes=True)
    assert rows[0]["hash"] and rows[0]["title"] == f"e.safetensors [{rows[0]['hash']}]"
    assert rows[0]["family"] == "sd15" and rows[0]["format"] == "safetensors"


# ---- hashing ---------------------------------------------------------------------------------------

def test_hash_cache_reuse_and_invalidation(small):
    e = small.resolve("e", kind="embedding")
    first = small.sha256(e)
    assert small.hashes.computed == 1
    assert small.sha256(e) == first and small.hashes.computed == 1
    cache_file = small.models_dir / hashing.CACHE_FILENAME
    data = json.loads(cache_file.read_text())
    assert data["entries"][str(e.path)]["sha256"] == first

    again = Inventory(small.models_dir)  # a new process reads the cache file
    assert again.sha256(again.resolve("e", kind="embedding")) == first and again.hashes.computed == 0

    st = e.path.stat()
    os.utime(e.path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert again.sha256(e) == first and again.hashes.computed == 1  # re-hashed after the mtime changed
    with e.path.open("ab") as f:
        f.write(b"\0" * 8)  # not a valid file any more, but hashing only needs bytes
    assert again.sha256(e) != first and again.hashes.computed == 2


def test_corrupt_cache_file_is_ignored(tmp_path):
    path = fh.write_fake_safetensors(tmp_path / "x.safetensors", fh.sd15_embedding_keys())
    (tmp_path / hashing.CACHE_FILENAME).write_text("{broken")
    cache = hashing.HashCache(tmp_path / hashing.CACHE_FILENAME)
    assert cache.sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    assert json.loads((tmp_path / hashing.CACHE_FILENAME).read_text())["version"] == 1
    assert not list(tmp_path.glob("*.tmp"))


def test_hash_functions(tmp_path):
    path = tmp_path / "blob.bin"
    data = bytes(range(256)) * 5000  # 1.28 MB: past the legacy window at 1 MiB
    path.write_bytes(data)
    full = hashlib.sha256(data).hexdigest()
    assert hashing.sha256_file(path) == full and hashing.short_hash(full) == full[:10]
    assert hashing.legacy_model_hash(path) == hashlib.sha256(data[0x100000:0x110000]).hexdigest()[:8]


def test_corrupt_file_is_listed_as_unknown_not_fatal(tmp_path):
    models = tmp_path / "models"
    (models / "checkpoints").mkdir(parents=True)
    (models / "checkpoints" / "broken.safetensors").write_bytes(b"\xff" * 16)
    fh.write_fake_safetensors(models / "loras" / "ok.safetensors", fh.sd15_lora_kohya_keys())
    entries = Inventory(models).scan()
    broken = next(e for e in entries if e.name == "broken")
    assert broken.kind == "unknown" and "broken.safetensors" in broken.variant["error"]
    assert any(e.name == "ok" and e.kind == "lora" for e in entries)
