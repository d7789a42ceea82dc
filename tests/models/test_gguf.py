"""GGUF model files: the tiny FLUX transformer and SD1.5 UNet written as GGUF (with the `gguf` package's own writer
and quantizers, in ComfyUI-GGUF's layout) load with their weights still quantized and generate within a stated
tolerance of the unquantized model; dequantized weights equal gguf's own `dequantize`; the inventory lists them with
their quantization and sizes; bad files (unknown quantization type, truncated) are errors naming the file and the
tensor, and never break the listing."""
from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

import sdcodex.engines  # noqa: F401  (registers engines)
from sdcodex.core.errors import CodexError, ModelLoadError
from sdcodex.core.orchestrator import Orchestrator
from sdcodex.models import demo_video  # noqa: F401  (registers the demo builders)
from sdcodex.models import quantized
from sdcodex.models.demo import build_demo_model
from sdcodex.models.gguf_io import MappedGGUF, read_gguf_header
from sdcodex.models.inventory import Inventory
from sdcodex.models.loader import load_model
from sdcodex.runtime import LocalModels
from tests.helpers import flow_export as fx
from tests.helpers.gguf_export import llama_cpp_permute, t5_to_llama_cpp, write_gguf
from tests.helpers.ldm_export import unet_to_ldm

gguf = pytest.importorskip("gguf")

#: pixel tolerances (0..255) against the unquantized model, measured values in docs/models.md
TOLERANCE = {"Q8_0": (8, 1.0), "Q4_0": (48, 6.0)}
FLUX_REQ = {"engine": "flux", "task": "txt2img", "prompt": "a lighthouse", "width": 64, "height": 64, "steps": 2,
            "seed": 3, "distilled_cfg_scale": 4.0}
SD_REQ = {"engine": "sd15", "task": "txt2img", "prompt": "a castle", "width": 64, "height": 64, "steps": 3, "seed": 5}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    """A models folder: the FLUX and SD1.5 demo folders (the bases) and their denoisers as GGUF files."""
    from diffusers import FluxTransformer2DModel, UNet2DConditionModel

    root = tmp_path_factory.mktemp("gguf-models")
    build_demo_model("flux", root)
    build_demo_model("sd15", root)
    build_demo_model("sdxl", root)
    build_demo_model("sd2", root)
    flux = FluxTransformer2DModel.from_pretrained(root / "flux-dev-demo" / "transformer")
    bfl = fx.flux_to_bfl(flux.state_dict())
    unets = {}
    for name in ("sd15", "sdxl", "sd2"):
        unet = UNet2DConditionModel.from_pretrained(root / f"{name}-demo" / "unet")
        unets[name] = unet_to_ldm(unet.state_dict(), json.loads((root / f"{name}-demo" / "unet" / "config.json")
                                                                .read_text()))
    from transformers import CLIPTextModel, T5EncoderModel

    t5 = T5EncoderModel.from_pretrained(root / "flux-dev-demo" / "text_encoder_2")
    write_gguf(t5_to_llama_cpp(t5.state_dict()), root / "text_encoders" / "t5-tiny-Q8_0.gguf", "t5encoder", "Q8_0")
    fx.export_clip(CLIPTextModel.from_pretrained(root / "flux-dev-demo" / "text_encoder"),
                   root / "text_encoders" / "clip-l-tiny.safetensors")
    for q in TOLERANCE:
        write_gguf(bfl, root / "diffusion_models" / f"flux-tiny-{q}.gguf", "flux", q)
        # SD UNets: convolutions flattened to rows with comfy.gguf.orig_shape, as ComfyUI's converter writes them
        write_gguf(unets["sd15"], root / "unet" / f"sd15-unet-{q}.gguf", "sd1", q, flatten=True)
        write_gguf(unets["sdxl"], root / "unet" / f"sdxl-unet-{q}.gguf", "sdxl", q, flatten=True)
        # an SD 2.x UNet tagged "sd1" (the family comes from the shapes: linear projections); sd2-demo is its base
        write_gguf(unets["sd2"], root / "unet" / f"sd2-unet-{q}.gguf", "sd1", q, flatten=True)
    return root


@pytest.fixture(scope="module")
def orch(models) -> Orchestrator:
    return Orchestrator(LocalModels(models, device="cpu"), None)


def _pixels(result) -> np.ndarray:
    return np.asarray(result.pil_images[0]).astype(np.float64)


@pytest.mark.parametrize("qtype", list(TOLERANCE))
@pytest.mark.parametrize("family,req,base,name", [("flux", FLUX_REQ, "flux-dev-demo", "flux-tiny-{q}"),
                                                   ("sd15", SD_REQ, "sd15-demo", "sd15-unet-{q}"),
                                                   ("sdxl", {**SD_REQ, "engine": "sdxl"}, "sdxl-demo",
                                                    "sdxl-unet-{q}"),
                                                   ("sd2", {**SD_REQ, "engine": "sd2"}, "sd2-demo", "sd2-unet-{q}")])
def test_gguf_generates_close_to_the_unquantized_model(orch, family, req, base, name, qtype):
    ref = _pixels(orch.run({**req, "model": base}))
    result = orch.run({**req, "model": name.format(q=qtype)})
    diff = np.abs(_pixels(result) - ref)
    max_tol, mean_tol = TOLERANCE[qtype]
    print(f"{family} {qtype}: max {diff.max():.0f} mean {diff.mean():.3f}")  # the figures in docs/models.md
    assert diff.max() <= max_tol and diff.mean() <= mean_tol, (family, qtype, diff.max(), diff.mean())
    weights = result.info["weights"]
    slot = "transformer" if family == "flux" else "unet"
    assert weights["file_quantization"] == f"gguf {qtype}"
    assert weights["quantized"][slot]["gguf"][qtype] > 0


WAN_REQ = {"engine": "wan22_t2v_a14b", "task": "txt2vid", "prompt": "a red fox", "steps": 2, "seed": 7, "num_frames": 5,
           "fps": 8.0, "width": 32, "height": 32, "cfg_scale": 4.0, "guidance_scale_2": 3.0}
WAN_TOLERANCE = (16, 0.5)  # Q8_0, over all frames (measured 11 / 0.042, docs/models.md)


def test_wan_a14b_expert_gguf_files_pair_and_generate(tmp_path_factory):
    """Both WAN 2.2 A14B experts as GGUF (5-D patch embedding stored flat with comfy.gguf.orig_shape), paired by
    the high_noise/low_noise naming rule like safetensors experts."""
    from diffusers import WanTransformer3DModel

    root = tmp_path_factory.mktemp("gguf-wan")
    build_demo_model("wan22_t2v_a14b", root)
    for sub, mark in (("transformer", "high"), ("transformer_2", "low")):
        module = WanTransformer3DModel.from_pretrained(root / "wan22-t2v-a14b-demo" / sub)
        write_gguf(fx.wan_to_original(module.state_dict()),
                   root / "diffusion_models" / f"wan2.2_t2v_{mark}_noise_tiny-Q8_0.gguf", "wan", "Q8_0")
    orch = Orchestrator(LocalModels(root, device="cpu"), None)
    ref = orch.run({**WAN_REQ, "model": "wan22-t2v-a14b-demo"})
    result = orch.run({**WAN_REQ, "model": "wan2.2_t2v_low_noise_tiny-Q8_0"})
    frames = lambda r: np.stack([np.asarray(f) for f in r.frames[0]]).astype(np.float64)  # noqa: E731
    diff = np.abs(frames(result) - frames(ref))
    assert diff.max() <= WAN_TOLERANCE[0] and diff.mean() <= WAN_TOLERANCE[1], (diff.max(), diff.mean())
    assert result.info["experts"] == 2
    assert set(result.info["weights"]["quantized"]) == {"transformer", "transformer_2"}


def test_lora_on_gguf_layers(models, orch):
    """A LoRA merges into GGUF layers as a delta added after dequantization (the blocks stay as stored): the result
    is within the Q8_0 tolerance of the same LoRA on the unquantized model, and nothing leaks into the next job."""
    from safetensors.torch import save_file

    from tests.features.test_lora_flow import flux_loras

    flux = load_model(models / "flux-dev-demo", models_dir=models).components["transformer"]
    (models / "Lora").mkdir(exist_ok=True)
    save_file({k: v.clone().contiguous() for k, v in flux_loras(flux, 1)["peft"].items()},
              models / "Lora" / "flux-peft.safetensors")
    lora = {"loras": [{"name": "flux-peft", "weight": 1.0}]}
    before = _pixels(orch.run({**FLUX_REQ, "model": "flux-tiny-Q8_0"}))
    ours = orch.run({**FLUX_REQ, "model": "flux-tiny-Q8_0", **lora})
    ref = _pixels(orch.run({**FLUX_REQ, "model": "flux-dev-demo", **lora}))
    diff = np.abs(_pixels(ours) - ref)
    assert ours.info["loras"][0]["layers"] == 10
    print(f"flux Q8_0 + LoRA: max {diff.max():.0f} mean {diff.mean():.3f}")  # the figures in docs/models.md
    assert diff.max() <= TOLERANCE["Q8_0"][0] and diff.mean() <= TOLERANCE["Q8_0"][1], (diff.max(), diff.mean())
    assert np.abs(_pixels(ours) - before).max() > 10  # the LoRA did change the image
    assert np.array_equal(_pixels(orch.run({**FLUX_REQ, "model": "flux-tiny-Q8_0"})), before)  # nothing leaked


def test_wan_ti2v_transformer_and_umt5_gguf_without_base(tmp_path_factory):
    """WAN 2.2 TI2V-5B from GGUF files alone (no Diffusers folder): the transformer and the UMT5 encoder (llama.cpp
    names) as GGUF, the VAE as safetensors; the UMT5 GGUF gives the frames of its safetensors twin within the Q8_0
    tolerance."""
    import shutil
    from types import SimpleNamespace

    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import UMT5EncoderModel

    demos, root = tmp_path_factory.mktemp("wan-demo"), tmp_path_factory.mktemp("gguf-wan-nobase")
    wan = build_demo_model("wan22_ti2v_5b", demos)
    umt5 = UMT5EncoderModel.from_pretrained(wan / "text_encoder")
    write_gguf(t5_to_llama_cpp(umt5.state_dict()), root / "text_encoders" / "umt5-tiny-Q8_0.gguf", "t5encoder", "Q8_0")
    fx.export_t5(umt5, root / "text_encoders" / "umt5-tiny.safetensors")
    write_gguf(fx.wan_to_original(WanTransformer3DModel.from_pretrained(wan / "transformer").state_dict()),
               root / "diffusion_models" / "wan-ti2v-tiny-Q8_0.gguf", "wan", "Q8_0")
    fx.export_plain(AutoencoderKLWan.from_pretrained(wan / "vae"), root / "vae" / "wan22-vae-tiny.safetensors")
    shutil.copytree(wan / "tokenizer", root / "tokenizers" / "tokenizer-umt5-xxl")

    class Preloaded:
        def __init__(self, loaded):
            self.loaded = loaded

        def resolve(self, ref, *, engine=None):
            return SimpleNamespace(name=ref, path=self.loaded.path, family=self.loaded.family.value)

        def load(self, entry, **kw):
            return self.loaded

        def short_hash(self, entry):
            return None

    req = {"engine": "wan22_ti2v_5b", "task": "txt2vid", "prompt": "a red fox", "steps": 2, "seed": 7, "num_frames": 5,
           "fps": 8.0, "width": 32, "height": 32, "cfg_scale": 4.0}
    common = dict(family="wan22_ti2v_5b", models_dir=root, configs=wan, vae="wan22-vae-tiny")
    frames = {}
    for name in ("umt5-tiny-Q8_0", "umt5-tiny"):
        loaded = load_model(root / "diffusion_models" / "wan-ti2v-tiny-Q8_0.gguf", text_encoders=[name], **common)
        result = Orchestrator(Preloaded(loaded), None).run(req)
        frames[name] = np.stack([np.asarray(f) for f in result.frames[0]]).astype(np.float64)
        assert "base" not in loaded.variant and result.info["weights"]["quantized"]["transformer"]["gguf"]["Q8_0"]
    assert result.info["weights"]["quantized"].get("text_encoder") is None  # the safetensors twin is plain
    diff = np.abs(frames["umt5-tiny-Q8_0"] - frames["umt5-tiny"])
    assert diff.max() <= TOLERANCE["Q8_0"][0] and diff.mean() <= TOLERANCE["Q8_0"][1], (diff.max(), diff.mean())


def test_weights_stay_quantized_in_memory(models):
    path = models / "diffusion_models" / "flux-tiny-Q4_0.gguf"
    loaded = load_model(path, family="flux", models_dir=models)
    module = loaded.components["transformer"]
    raw = [p for n, p in module.named_parameters() if n.endswith("original")]
    assert raw and all(p.dtype == torch.uint8 and hasattr(p, "quant_type") for p in raw)
    quantized_bytes = sum(p.numel() for p in raw)
    file_quantized = sum(t["nbytes"] for t in read_gguf_header(path)[0].values() if t["type"] == "Q4_0")
    assert quantized_bytes == file_quantized  # the blocks as stored: nothing expanded ahead of the forward
    # reading a weight dequantizes that layer only, into the compute dtype
    layer = module.transformer_blocks[0].attn.to_q
    assert layer.weight.dtype == torch.float32 and layer.weight.shape == (32, 32)


def test_t5_text_encoder_gguf_with_llama_cpp_names(orch, models):
    """A T5 encoder GGUF (llama.cpp names `enc.blk.N.attn_q`, `token_embd`) as a FLUX `text_encoders` file."""
    ref = _pixels(orch.run({**FLUX_REQ, "model": "flux-dev-demo"}))
    result = orch.run({**FLUX_REQ, "model": "flux-tiny-Q8_0", "text_encoders": ["t5-tiny-Q8_0", "clip-l-tiny"]})
    diff = np.abs(_pixels(result) - ref)
    assert diff.max() <= TOLERANCE["Q8_0"][0] and diff.mean() <= TOLERANCE["Q8_0"][1], (diff.max(), diff.mean())
    assert result.info["weights"]["quantized"]["text_encoder_2"]["gguf"]["Q8_0"] > 0
    entry = {e.name: e for e in Inventory(models).entries()}["t5-tiny-Q8_0"]
    assert entry.kind == "text_encoder" and entry.variant["gguf_architecture"] == "t5encoder"
    # the token table stays quantized: a lookup dequantizes only the rows asked for, equal to the whole table's rows
    loaded = load_model(models / "diffusion_models" / "flux-tiny-Q8_0.gguf", family="flux", models_dir=models,
                        text_encoders=[str(models / "text_encoders" / "t5-tiny-Q8_0.gguf"),
                                       str(models / "text_encoders" / "clip-l-tiny.safetensors")])
    shared = loaded.components["text_encoder_2"].shared
    assert shared.parametrizations.weight.original.dtype == torch.uint8
    ids = torch.tensor([[3, 7, 7, 150]])
    torch.testing.assert_close(shared(ids), shared.weight[ids], rtol=0, atol=0)


def _raw(reader_tensor) -> np.ndarray:
    return np.asarray(reader_tensor.data)


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"])
def test_dequantized_weights_equal_gguf_dequantize(tmp_path, qtype):
    rng = np.random.default_rng(0)
    weights = {"a.weight": rng.standard_normal((8, 64)).astype(np.float32),
               "b.weight": rng.standard_normal((4, 2, 96)).astype(np.float32)}
    path = write_gguf({k: torch.from_numpy(v) for k, v in weights.items()}, tmp_path / f"w-{qtype}.gguf", "flux",
                      qtype)
    ours = MappedGGUF(path)
    reader = gguf.GGUFReader(str(path))
    for t in reader.tensors:
        expected = gguf.quants.dequantize(_raw(t), t.tensor_type)
        got = quantized.dequantize(ours.get_tensor(t.name), torch.float32)
        assert tuple(got.shape) == weights[t.name].shape
        np.testing.assert_array_equal(got.numpy(), expected.reshape(weights[t.name].shape))


def _k_blocks(qtype, n_blocks: int, rng) -> np.ndarray:
    """Valid K-quant blocks (the gguf package cannot quantize these types): random bits with finite fp16 scales."""
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, (n_blocks, size), dtype=np.uint8)
    scales = {gguf.GGMLQuantizationType.Q4_K: [0, 2], gguf.GGMLQuantizationType.Q5_K: [0, 2],
              gguf.GGMLQuantizationType.Q6_K: [size - 2], gguf.GGMLQuantizationType.Q3_K: [size - 2],
              gguf.GGMLQuantizationType.Q2_K: [size - 4, size - 2]}[qtype]
    for at in scales:
        raw[:, at:at + 2] = np.frombuffer(rng.uniform(0.001, 0.1, n_blocks).astype(np.float16).tobytes(),
                                          dtype=np.uint8).reshape(n_blocks, 2)
    return raw


@pytest.mark.parametrize("name", ["Q4_K", "Q5_K", "Q6_K", "Q3_K", "Q2_K"])
def test_k_quants_equal_gguf_dequantize(tmp_path, name):
    qtype = gguf.GGMLQuantizationType[name]
    rng = np.random.default_rng(1)
    blocks = _k_blocks(qtype, 4, rng).reshape(2, -1)  # 2 rows of 2 blocks = a (2, 512) weight
    writer = gguf.GGUFWriter(str(tmp_path / "k.gguf"), "flux")
    writer.add_tensor("w.weight", blocks, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    got = quantized.dequantize(MappedGGUF(tmp_path / "k.gguf").get_tensor("w.weight"), torch.float32)
    expected = gguf.quants.dequantize(blocks, qtype)
    assert got.shape == (2, 512)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6, atol=1e-6)


def test_inventory_lists_quantization_and_sizes(models):
    inv = Inventory(models)
    by_name = {e.name: e.to_dict() for e in inv.entries()}
    q8, q4 = by_name["flux-tiny-Q8_0"], by_name["flux-tiny-Q4_0"]
    assert q8["format"] == "gguf" and q8["kind"] == "diffusion_model"
    # too narrow for the shape rules to name a family: the GGUF's general.architecture does
    assert q8["family"] == "flux" and q8["variant"]["gguf_architecture"] == "flux"
    assert by_name["sd15-unet-Q8_0"]["family"] == "sd15" and by_name["sdxl-unet-Q8_0"]["family"] == "sdxl"
    assert q8["quantization"] == "gguf Q8_0" and q4["quantization"] == "gguf Q4_0"
    assert q8["size_on_disk"] == (models / "diffusion_models" / "flux-tiny-Q8_0.gguf").stat().st_size
    # Q4_0 blocks take about half the bytes of Q8_0 ones; F32 1-D tensors take the compute width
    assert q4["resident_size"]["16bit"] < q8["resident_size"]["16bit"] < q8["resident_size"]["32bit"]
    assert by_name["sd15-unet-Q8_0"]["quantization"] == "gguf Q8_0"
    folder = by_name["flux-dev-demo"]  # a Diffusers folder: summed over its components' safetensors headers
    assert folder["quantization"] == "none" and folder["resident_size"]["32bit"] == 2 * folder["resident_size"]["16bit"]
    assert len(inv.hashes.sha256(Path(q8["path"]))) == 64  # hashed like any file


def _tensor_type_offset(path: Path, name: str) -> int:
    """Byte offset of the uint32 type field of tensor `name` in a GGUF header."""
    data = path.read_bytes()
    at = data.index(struct.pack("<Q", len(name)) + name.encode())
    at += 8 + len(name)
    (n_dims,) = struct.unpack_from("<I", data, at)
    return at + 4 + 8 * n_dims


@pytest.fixture()
def bad_models(models, tmp_path) -> Path:
    root = tmp_path / "bad-models"
    shutil.copytree(models / "flux-dev-demo", root / "flux-dev-demo")
    good = models / "diffusion_models" / "flux-tiny-Q8_0.gguf"
    (root / "diffusion_models").mkdir()
    shutil.copy(good, root / "diffusion_models" / "flux-good.gguf")
    unknown = root / "diffusion_models" / "flux-unknown-type.gguf"
    data = bytearray(good.read_bytes())
    struct.pack_into("<I", data, _tensor_type_offset(good, "double_blocks.0.img_attn.qkv.weight"), 99)
    unknown.write_bytes(bytes(data))
    truncated = root / "diffusion_models" / "flux-truncated.gguf"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    cut_header = root / "diffusion_models" / "flux-cut-header.gguf"
    cut_header.write_bytes(good.read_bytes()[:200])
    return root


def test_bad_gguf_files_name_the_file_and_tensor(bad_models):
    unknown = bad_models / "diffusion_models" / "flux-unknown-type.gguf"
    with pytest.raises(ModelLoadError) as err:
        read_gguf_header(unknown)
    assert str(unknown) in str(err.value) and "'double_blocks.0.img_attn.qkv.weight'" in str(err.value)
    assert "unknown quantization type 99" in str(err.value) and "Q8_0" in err.value.allowed
    truncated = bad_models / "diffusion_models" / "flux-truncated.gguf"
    with pytest.raises(ModelLoadError, match=r"flux-truncated\.gguf: .*tensor '.+' data ends at byte \d+ but the "
                                             r"file has \d+ bytes: truncated"):
        load_model(truncated, family="flux", models_dir=bad_models)
    with pytest.raises(ModelLoadError, match=r"flux-cut-header\.gguf: .*header is truncated"):
        read_gguf_header(bad_models / "diffusion_models" / "flux-cut-header.gguf")


def test_bad_gguf_files_do_not_break_listing_or_serving(bad_models):
    models = LocalModels(bad_models, device="cpu")
    entries = {e.name: e for e in models.inventory.entries()}
    assert entries["flux-good"].kind == "diffusion_model"
    for name, needle in (("flux-unknown-type", "unknown quantization type 99"), ("flux-truncated", "truncated"),
                         ("flux-cut-header", "truncated")):
        assert entries[name].kind == "unknown" and needle in entries[name].variant["error"]
    orch = Orchestrator(models, None)
    truncated = bad_models / "diffusion_models" / "flux-truncated.gguf"
    with pytest.raises(CodexError) as err:
        orch.run({**FLUX_REQ, "model": str(truncated)})
    assert str(truncated) in str(err.value) and "truncated" in str(err.value).split(str(truncated), 1)[1]
    assert orch.run({**FLUX_REQ, "model": "flux-good"}).pil_images  # the next job still runs


def test_llama_gguf_q_k_rows_come_back_in_hugging_face_order(tmp_path):
    """llama.cpp writes Llama q/k projection rows permuted for its rotary layout; reading undoes it (quantized or
    not), so the tensors equal the Hugging Face ones."""
    heads, kv_heads, head_dim, width = 4, 2, 8, 32
    rng = torch.Generator().manual_seed(0)
    hf = {"model.layers.0.self_attn.q_proj.weight": torch.randn(heads * head_dim, width, generator=rng),
          "model.layers.0.self_attn.k_proj.weight": torch.randn(kv_heads * head_dim, width, generator=rng),
          "model.layers.0.self_attn.v_proj.weight": torch.randn(kv_heads * head_dim, width, generator=rng)}
    lcpp = {"blk.0.attn_q.weight": llama_cpp_permute(hf["model.layers.0.self_attn.q_proj.weight"], heads),
            "blk.0.attn_k.weight": llama_cpp_permute(hf["model.layers.0.self_attn.k_proj.weight"], kv_heads),
            "blk.0.attn_v.weight": hf["model.layers.0.self_attn.v_proj.weight"]}
    for qtype in ("Q8_0", "F32"):
        path = tmp_path / f"llama-{qtype}.gguf"
        writer = gguf.GGUFWriter(str(path), "llama")
        writer.add_head_count(heads)
        writer.add_head_count_kv(kv_heads)
        for name, value in lcpp.items():
            if qtype == "F32":
                writer.add_tensor(name, value.numpy())
            else:
                writer.add_tensor(name, gguf.quants.quantize(value.numpy(), gguf.GGMLQuantizationType.Q8_0),
                                  raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        handle = MappedGGUF(path)
        assert sorted(handle.keys()) == sorted(hf)
        for name, expected in hf.items():
            got = quantized.dequantize(handle.get_tensor(name), torch.float32)
            tol = 0 if qtype == "F32" else expected.abs().max().item() / 100
            torch.testing.assert_close(got, expected, rtol=0, atol=tol)
