"""HunyuanVideo 1.0 / 1.5 transformers as published for ComfyUI (Tencent's original layout, `double_blocks.N.img_attn_qkv`
... / 1.5's `img_attn_q`, `byt5_in`, `vision_in`) and as GGUF Q8_0 files: a tiny Diffusers transformer (width 32, so
Q8_0 blocks fit) is written to those layouts by the test's own exporter, loaded through load_model over the Diffusers
folder (the base) and run through the engine -- the same frames as the folder (safetensors) or within the Q8_0
tolerance (GGUF). The shape rules read layers, width, heads, in channels and the I2V image condition."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import sdcodex.engines  # noqa: F401  (registers engines)
from sdcodex.core.errors import ModelLoadError
from sdcodex.core.orchestrator import Orchestrator
from sdcodex.models import demo_video  # noqa: F401  (registers the demo builders)
from sdcodex.models.demo import build_demo_model
from sdcodex.models.detect import detect_path
from sdcodex.models.loader import load_model
from sdcodex.models.shapes import HUNYUAN_VIDEO_TRANSFORMER, hunyuan_video_original_config
from sdcodex.runtime import LocalModels
from tests.helpers import flow_export as fx
from tests.models.test_fp8 import TOLERANCE as FP8_TOLERANCE
from tests.models.test_fp8 import fp8_scaled_state, fp8_state
from tests.helpers.gguf_export import llama_to_llama_cpp, write_gguf

gguf = pytest.importorskip("gguf")

Q8_TOLERANCE = (8, 1.0)  # max and mean pixel difference (0..255), as tests/models/test_gguf_new_families.py
PREFIX = "model.diffusion_model."  # ComfyUI's prefix; the bare layout is the GGUF's


def _hv10(in_channels: int = 4, condition: str | None = None):
    from diffusers import HunyuanVideoTransformer3DModel

    torch.manual_seed(0)
    return HunyuanVideoTransformer3DModel(
        in_channels=in_channels, out_channels=4, num_attention_heads=2, attention_head_dim=16, num_layers=2,
        num_single_layers=1, num_refiner_layers=1, patch_size=2, patch_size_t=1, guidance_embeds=True,
        text_embed_dim=16, pooled_projection_dim=32, rope_axes_dim=(4, 6, 6), image_condition_type=condition).eval()


def _hv15(task: str = "t2v"):
    from diffusers import HunyuanVideo15Transformer3DModel

    torch.manual_seed(0)
    return HunyuanVideo15Transformer3DModel(
        in_channels=9, out_channels=4, num_attention_heads=2, attention_head_dim=16, num_layers=2,
        num_refiner_layers=1, mlp_ratio=2.0, patch_size=1, patch_size_t=1, text_embed_dim=16, text_embed_2_dim=32,
        image_embed_dim=12, rope_axes_dim=(4, 4, 8), target_size=32, task_type=task).eval()


CASES = {"hunyuan_video": (_hv10, fx.hunyuan_video_to_original, "hyvid", {"cfg_scale": 1.0}),
         "hunyuan_video15": (_hv15, fx.hunyuan_video15_to_original, "hyvid15",
                             {"cfg_scale": 3.0, "negative_prompt": "blurry"})}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hunyuan-single")
    for family, (build, export, arch, _) in CASES.items():
        folder = build_demo_model(family, root)
        transformer = build()
        shutil.rmtree(folder / "transformer")
        transformer.save_pretrained(folder / "transformer")
        original = export(transformer.state_dict())
        fx._save(original, root / "diffusion_models" / f"{family}_tiny.safetensors", PREFIX)
        write_gguf(original, root / "diffusion_models" / f"{family}_tiny-Q8_0.gguf", arch, "Q8_0")
        # ComfyUI's fp8 files: plain float8_e4m3fn matrices, and fp8_scaled (a scale_weight per matrix)
        fx._save(fp8_state(original), root / "diffusion_models" / f"{family}_tiny-fp8_e4m3fn.safetensors", PREFIX)
        fx._save(fp8_scaled_state(original), root / "diffusion_models" / f"{family}_tiny-fp8_scaled.safetensors",
                 PREFIX)
    # the I2V models beside the text-to-video folders: HunyuanVideo-I2V (latent_concat: 2 x 4 + 1 inputs) and 1.5 i2v
    # (the same shapes as its t2v: the file name says i2v); each file must find its own folder
    for family, transformer, export in (("hunyuan_video", _hv10(9, "latent_concat"), fx.hunyuan_video_to_original),
                                        ("hunyuan_video15", _hv15("i2v"), fx.hunyuan_video15_to_original)):
        folder = build_demo_model(f"{family}_i2v", root)
        shutil.rmtree(folder / "transformer")
        transformer.save_pretrained(folder / "transformer")
        fx._save(export(transformer.state_dict()), root / "diffusion_models" / f"{family}_i2v_tiny.safetensors",
                 PREFIX)
    # HunyuanVideo 1.0's llava-llama-3 text encoder as a llama.cpp GGUF (city96's llava-llama-3-8B-*.gguf layout)
    from transformers import LlamaModel

    llama = LlamaModel.from_pretrained(root / "hunyuan-video-demo" / "text_encoder")
    cfg = llama.config
    write_gguf(llama_to_llama_cpp(llama.state_dict(), cfg.num_attention_heads, cfg.num_key_value_heads),
               root / "text_encoders" / "llava-llama3-tiny.gguf", "llama", "F32",
               heads=(cfg.num_attention_heads, cfg.num_key_value_heads))
    return root


def _frames(result) -> np.ndarray:
    return np.stack([np.asarray(f).astype(np.float64) for f in result.frames[0]])


@pytest.mark.parametrize("family", sorted(CASES))
def test_single_file_and_gguf_generate_as_the_folder(models, family):
    orch = Orchestrator(LocalModels(models, device="cpu"), None)
    req = {"engine": family, "task": "txt2vid", "prompt": "a red fox", "steps": 2, "seed": 7, "num_frames": 5,
           "fps": 8.0, "width": 32, "height": 32, **CASES[family][3]}
    folder = orch.run({**req, "model": build_model_name(family)})
    ref = _frames(folder)
    single = orch.run({**req, "model": f"{family}_tiny"})
    assert np.abs(_frames(single) - ref).max() <= 1, "the single file differs from its Diffusers folder"
    assert single.info["model"] == f"{family}_tiny"
    quant = orch.run({**req, "model": f"{family}_tiny-Q8_0"})
    diff = np.abs(_frames(quant) - ref)
    print(f"{family} Q8_0: max {diff.max():.0f} mean {diff.mean():.3f}")
    assert 0 < diff.max() <= Q8_TOLERANCE[0] and diff.mean() <= Q8_TOLERANCE[1], (diff.max(), diff.mean())
    weights = quant.info["weights"]
    assert weights["file_quantization"] == "gguf Q8_0" and weights["quantized"]["transformer"]["gguf"]["Q8_0"] > 0
    if family == "hunyuan_video":  # + the Llama text encoder as a llama.cpp GGUF: the same frames as the folder's
        with_te = orch.run({**req, "model": f"{family}_tiny-Q8_0", "text_encoders": ["llava-llama3-tiny"]})
        assert np.array_equal(_frames(with_te), _frames(quant))


@pytest.mark.parametrize("family", sorted(CASES))
def test_fp8_files_generate_close_to_the_folder(models, family):
    orch = Orchestrator(LocalModels(models, device="cpu"), None)
    req = {"engine": family, "task": "txt2vid", "prompt": "a red fox", "steps": 2, "seed": 7, "num_frames": 5,
           "fps": 8.0, "width": 32, "height": 32, **CASES[family][3]}
    ref = _frames(orch.run({**req, "model": build_model_name(family)}))
    for kind, tol in (("fp8_e4m3fn", FP8_TOLERANCE["fp8"]), ("fp8_scaled", FP8_TOLERANCE["fp8_scaled"])):
        result = orch.run({**req, "model": f"{family}_tiny-{kind}"})
        diff = np.abs(_frames(result) - ref)
        print(f"{family} {kind}: max {diff.max():.0f} mean {diff.mean():.3f}")
        assert diff.max() <= tol[0] and diff.mean() <= tol[1], (kind, diff.max(), diff.mean())
        assert result.info["weights"]["file_quantization"] == kind


def build_model_name(family: str) -> str:
    from sdcodex.models.demo import DEMO_BUILDERS

    return DEMO_BUILDERS[family][0]


def test_variant_says_what_the_shapes_show(models):
    loaded = load_model(models / "diffusion_models" / "hunyuan_video_tiny.safetensors", models_dir=models)
    assert loaded.variant["format"] == "single_file" and loaded.variant["layout"] == "hunyuan_video"
    assert loaded.variant["prefix"] == PREFIX and loaded.variant["base"] == str(models / "hunyuan-video-demo")
    assert loaded.variant["architecture"]["transformer"] == (
        "hunyuan_video variant: 2 double + 1 single blocks, width 32, 2 heads, 4 in channels, guidance embedding")
    loaded = load_model(models / "diffusion_models" / "hunyuan_video15_tiny-Q8_0.gguf", models_dir=models)
    assert loaded.family.value == "hunyuan_video15" and loaded.variant["layout"] == "hunyuan_video15"
    assert loaded.variant["architecture"]["transformer"] == (
        "hunyuan_video15 variant: 2 double blocks, width 32, 2 heads, 9 in channels, image embedding 12")
    # the Llama GGUF (llama.cpp names, q/k rows permuted) replaces the base's text encoder with the same tensors
    loaded = load_model(models / "diffusion_models" / "hunyuan_video_tiny-Q8_0.gguf", models_dir=models,
                        text_encoders=[str(models / "text_encoders" / "llava-llama3-tiny.gguf")])
    assert "text_encoder" in loaded.variant["separate_files"]
    from transformers import LlamaModel

    folder = LlamaModel.from_pretrained(models / "hunyuan-video-demo" / "text_encoder").state_dict()
    ours = loaded.components["text_encoder"].state_dict()
    assert all(torch.equal(ours[k].float(), v) for k, v in folder.items() if k in ours)
    assert {"layers.0.self_attn.q_proj.weight", "layers.0.self_attn.k_proj.weight"} <= set(ours)
    # listed without a base, the published rope axes (16+56+56 = 128) cannot split a 16-wide head: said, not guessed
    listed = detect_path(models / "diffusion_models" / "hunyuan_video15_tiny-Q8_0.gguf").variant
    assert listed["quantization"] == "gguf Q8_0" and "img_attn_q_norm" in listed["architecture"]["error"]


@pytest.mark.parametrize("family", sorted(CASES))
def test_i2v_file_takes_the_i2v_base_and_generates_as_its_folder(models, tmp_path, family):
    """An I2V file takes the I2V folder as its base, not the text-to-video one beside it (1.0: its 2 x 4 + 1 inputs,
    latent_concat; 1.5: `i2v` in its name), and its img2vid frames are the folder's."""
    from PIL import Image

    still = tmp_path / "still.png"
    Image.new("RGB", (32, 32), (200, 90, 40)).save(still)
    orch = Orchestrator(LocalModels(models, device="cpu"), None,
                        image_loader=lambda value, field: Image.open(value).convert("RGB"))
    req = {"engine": family, "task": "img2vid", "prompt": "a red fox", "steps": 2, "seed": 7,
           "num_frames": 5, "fps": 8.0, "width": 32, "height": 32, "init_image": str(still)}
    base = build_model_name(f"{family}_i2v")
    folder = orch.run({**req, "model": base})
    single = orch.run({**req, "model": f"{family}_i2v_tiny"})
    assert np.abs(_frames(single) - _frames(folder)).max() <= 1
    loaded = load_model(models / "diffusion_models" / f"{family}_i2v_tiny.safetensors", models_dir=models)
    assert loaded.variant["base"] == str(models / base) and loaded.variant["i2v"] is True
    if family == "hunyuan_video":
        assert loaded.variant["architecture"]["transformer"].endswith("image condition latent_concat")


def test_i2v_image_condition_and_errors(models, tmp_path):
    """An I2V file reads as latent_concat from its shapes and wants an I2V base: with only the text-to-video folder
    there, the error says so; a file missing a tensor the rules need names it."""
    model = _hv10(9, "latent_concat")
    state = fx.hunyuan_video_to_original(model.state_dict())
    start = {**HUNYUAN_VIDEO_TRANSFORMER, "rope_axes_dim": [4, 6, 6]}
    read = hunyuan_video_original_config({k: list(v.shape) for k, v in state.items()}, start)
    assert {k: read[k] for k in model.config if k in read} == {k: v if not isinstance(v, tuple) else list(v)
                                                              for k, v in model.config.items() if k in read}
    only_t2v = tmp_path / "models"
    only_t2v.mkdir()
    (only_t2v / "hunyuan-video-demo").symlink_to(models / "hunyuan-video-demo")
    path = fx._save(state, only_t2v / "hunyuan_video_i2v_tiny.safetensors")
    with pytest.raises(ModelLoadError, match="Diffusers folder"):
        load_model(path, models_dir=only_t2v)
    del state["double_blocks.0.img_attn_q_norm.weight"]
    with pytest.raises(ModelLoadError, match="img_attn_q_norm"):
        hunyuan_video_original_config({k: list(v.shape) for k, v in state.items()}, start)
