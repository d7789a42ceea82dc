"""fp8 model files and fp8 storage: a FLUX transformer saved with float8_e4m3fn weights keeps them in fp8 and computes
in fp32, within a stated tolerance of the fp32 model; ComfyUI "fp8_scaled" files are dequantized with their
`scale_weight` (equal to a reference computed here); `weights_dtype: "fp8"` stores any model's weights in fp8 and
says so in the job info; a scaled file missing a scale is an error naming the file and the tensor and does not break
the listing."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import sdcodex.engines  # noqa: F401  (registers engines)
from sdcodex.core.errors import CodexError, ModelLoadError, ValidationError
from sdcodex.core.orchestrator import Orchestrator
from sdcodex.models import demo_video  # noqa: F401  (registers the demo builders)
from sdcodex.models.demo import build_demo_model
from sdcodex.models.fp8_io import ScaledFP8
from sdcodex.models.inventory import Inventory
from sdcodex.models.loader import load_model
from sdcodex.models.safetensors_io import open_mapped
from sdcodex.runtime import LocalModels
from tests.helpers import flow_export as fx

F8 = torch.float8_e4m3fn
F8_MAX = 448.0
#: pixel tolerances (0..255) against the fp32 model; measured values in docs/models.md
TOLERANCE = {"fp8": (24, 3.0), "fp8_scaled": (24, 3.0), "weights_dtype_fp8": (24, 3.0)}
FLUX_REQ = {"engine": "flux", "task": "txt2img", "prompt": "a lighthouse", "width": 64, "height": 64, "steps": 2,
            "seed": 3, "distilled_cfg_scale": 4.0}


def fp8_state(bfl: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Matrices in float8_e4m3fn (as fp8 checkpoints store them), the rest as is."""
    return {k: v.to(F8) if v.ndim >= 2 else v for k, v in bfl.items()}


def fp8_scaled_state(bfl: dict[str, torch.Tensor], *, drop: str | None = None) -> dict[str, torch.Tensor]:
    """ComfyUI's fp8_scaled layout: weight / scale in fp8, `<layer>.scale_weight` (a single float), `scale_input` on
    the attention projections, and the `scaled_fp8` marker."""
    out: dict[str, torch.Tensor] = {"scaled_fp8": torch.empty(0, dtype=F8)}
    for key, value in bfl.items():
        if value.ndim >= 2 and key.endswith(".weight"):
            scale = value.abs().max().float() / F8_MAX
            out[key] = (value.float() / scale).to(F8)
            layer = key[: -len("weight")]
            if key != drop:
                out[layer + "scale_weight"] = scale.reshape(())
            if ".qkv." in key:
                out[layer + "scale_input"] = torch.tensor(1.0)
        else:
            out[key] = value
    return out


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    from diffusers import FluxTransformer2DModel

    root = tmp_path_factory.mktemp("fp8-models")
    build_demo_model("flux", root)
    bfl = fx.flux_to_bfl(FluxTransformer2DModel.from_pretrained(root / "flux-dev-demo" / "transformer").state_dict())
    (root / "diffusion_models").mkdir()
    save_file({k: v.contiguous() for k, v in fp8_state(bfl).items()},
              str(root / "diffusion_models" / "flux-tiny-fp8_e4m3fn.safetensors"))
    save_file({k: v.contiguous() for k, v in fp8_scaled_state(bfl).items()},
              str(root / "diffusion_models" / "flux-tiny-fp8_scaled.safetensors"))
    return root


@pytest.fixture(scope="module")
def orch(models) -> Orchestrator:
    return Orchestrator(LocalModels(models, device="cpu"), None)


def _diff(a, b) -> np.ndarray:
    return np.abs(np.asarray(a.pil_images[0]).astype(np.float64) - np.asarray(b.pil_images[0]).astype(np.float64))


def test_scaled_fp8_dequantization_equals_reference(tmp_path):
    rng = torch.Generator().manual_seed(0)
    w = torch.randn(16, 32, generator=rng)
    scale = torch.tensor(0.0123)
    w8 = (w / scale).to(F8)
    path = tmp_path / "scaled.safetensors"
    save_file({"scaled_fp8": torch.empty(0, dtype=F8), "lin.weight": w8, "lin.scale_weight": scale,
               "lin.scale_input": torch.tensor(1.0), "lin.bias": torch.ones(16), "norm.weight": torch.ones(32)},
              str(path))
    handle = open_mapped(path)
    assert isinstance(handle, ScaledFP8)
    assert sorted(handle.keys()) == ["lin.bias", "lin.weight", "norm.weight"]
    reference = w8.to(torch.float32) * 0.0123  # per-layer dequantization: fp8 value times its scale
    got = handle.get_tensor("lin.weight")
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, reference, rtol=0, atol=0)
    assert handle.scale_inputs == ["lin.scale_input"]


def test_fp8_file_keeps_fp8_storage_and_generates_close_to_fp32(models, orch):
    ref = orch.run({**FLUX_REQ, "model": "flux-dev-demo"})
    result = orch.run({**FLUX_REQ, "model": "flux-tiny-fp8_e4m3fn"})
    diff = _diff(result, ref)
    assert diff.max() <= TOLERANCE["fp8"][0] and diff.mean() <= TOLERANCE["fp8"][1], (diff.max(), diff.mean())
    assert result.info["weights"]["file_quantization"] == "fp8_e4m3fn"
    assert result.info["weights"]["quantized"]["transformer"]["fp8_layers"] > 0
    loaded = load_model(models / "diffusion_models" / "flux-tiny-fp8_e4m3fn.safetensors", family="flux",
                        models_dir=models)
    to_q = loaded.components["transformer"].transformer_blocks[0].attn.to_q
    assert to_q.weight.dtype == F8  # stored in fp8; cast to fp32 only around the layer's forward


def test_fp8_scaled_file_generates_close_to_fp32(orch):
    ref = orch.run({**FLUX_REQ, "model": "flux-dev-demo"})
    result = orch.run({**FLUX_REQ, "model": "flux-tiny-fp8_scaled"})
    diff = _diff(result, ref)
    assert diff.max() <= TOLERANCE["fp8_scaled"][0] and diff.mean() <= TOLERANCE["fp8_scaled"][1], \
        (diff.max(), diff.mean())
    assert result.info["weights"]["file_quantization"] == "fp8_scaled"


def test_weights_dtype_fp8_stores_any_model_in_fp8(orch):
    ref = orch.run({**FLUX_REQ, "model": "flux-dev-demo"})
    result = orch.run({**FLUX_REQ, "model": "flux-dev-demo", "weights_dtype": "fp8"})
    diff = _diff(result, ref)
    tol = TOLERANCE["weights_dtype_fp8"]
    assert diff.max() <= tol[0] and diff.mean() <= tol[1], (diff.max(), diff.mean())
    weights = result.info["weights"]
    assert weights["weights_dtype"] == "fp8"
    assert {"transformer", "text_encoder", "text_encoder_2"} <= set(weights["quantized"])
    assert result.info["request"]["weights_dtype"] == "fp8"
    with pytest.raises(ValidationError) as err:
        orch.run({**FLUX_REQ, "model": "flux-dev-demo", "weights_dtype": "int4"})
    assert err.value.errors[0]["field"] == "weights_dtype" and "fp8" in str(err.value)


def test_inventory_lists_fp8_quantization(models):
    entries = {e.name: e.to_dict() for e in Inventory(models).entries()}
    plain, scaled = entries["flux-tiny-fp8_e4m3fn"], entries["flux-tiny-fp8_scaled"]
    assert plain["quantization"] == "fp8_e4m3fn" and scaled["quantization"] == "fp8_scaled"
    # plain fp8 weights stay 1 byte each once loaded; fp8_scaled ones are dequantized to the compute width
    assert plain["resident_size"]["16bit"] < scaled["resident_size"]["16bit"]
    assert plain["size_on_disk"] == (models / "diffusion_models" / "flux-tiny-fp8_e4m3fn.safetensors").stat().st_size


def test_fp8_scaled_missing_scale_names_file_and_tensor(models, tmp_path):
    from diffusers import FluxTransformer2DModel

    root = tmp_path / "models"
    shutil.copytree(models / "flux-dev-demo", root / "flux-dev-demo")
    bfl = fx.flux_to_bfl(FluxTransformer2DModel.from_pretrained(root / "flux-dev-demo" / "transformer").state_dict())
    bad = root / "diffusion_models" / "flux-missing-scale.safetensors"
    bad.parent.mkdir()
    save_file({k: v.contiguous() for k, v in fp8_scaled_state(bfl, drop="double_blocks.0.img_mlp.0.weight").items()},
              str(bad))
    with pytest.raises(ModelLoadError) as err:
        load_model(bad, family="flux", models_dir=root)
    text = str(err.value)
    assert str(bad) in text and "'double_blocks.0.img_mlp.0.weight'" in text and "scale_weight" in text
    models_ = LocalModels(root, device="cpu")
    entry = {e.name: e for e in models_.inventory.entries()}["flux-missing-scale"]
    assert entry.kind == "unknown" and "double_blocks.0.img_mlp.0.weight" in entry.variant["error"]
    orch = Orchestrator(models_, None)
    with pytest.raises(CodexError, match="double_blocks.0.img_mlp.0.weight"):
        orch.run({**FLUX_REQ, "model": str(bad)})
    assert orch.run({**FLUX_REQ, "model": "flux-dev-demo"}).pil_images  # the next job still runs
