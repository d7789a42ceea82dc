"""GGUF transformers of FLUX.2, Qwen-Image and LTX-2, written with the `gguf` package's own writer in the layouts
ComfyUI-GGUF publishes them (FLUX.2: BFL names, architecture tag `flux`; Qwen-Image: Diffusers names, `qwen_image`;
LTX-2: Lightricks' names under `model.diffusion_model.`, `ltxv`), load through the same `LAYOUTS` rows as their
safetensors files with the rest of the pipeline from the Diffusers folder: an F32 file gives the folder's pixels,
a Q8_0 file stays quantized and generates within the Q8_0 tolerance; detection names the family from the shapes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import sdcodex.engines  # noqa: F401  (registers engines)
from sdcodex.core.orchestrator import Orchestrator
from sdcodex.models.demo import build_demo_model
from sdcodex.runtime import LocalModels
from tests.engines.test_flow_single_file import _module
from tests.helpers import flow_export as fx
from tests.helpers.gguf_export import write_gguf

gguf = pytest.importorskip("gguf")

Q8_TOLERANCE = (8, 1.0)  # max and mean pixel difference (0..255), the FLUX Q8_0 figures of tests/models/test_gguf.py
IMAGE = {"task": "txt2img", "prompt": "a lighthouse", "width": 64, "height": 64, "steps": 2, "seed": 3}
CASES = {  # family -> (demo builder, folder name, ComfyUI-GGUF architecture tag, request)
    "flux2": ("flux2", "flux2-dev-demo", "flux", IMAGE),
    "qwen_image": ("qwen_image", "qwen-image-demo", "qwen_image", {**IMAGE, "cfg_scale": 1.0}),
    "ltx2": ("ltx2", "ltx2-demo", "ltxv", {"task": "txt2vid", "prompt": "a robot dancing", "width": 64, "height": 32,
                                           "num_frames": 9, "steps": 2, "seed": 3, "cfg_scale": 1.0}),
}


def original_layout(family: str, folder: Path) -> dict:
    transformer = _module(folder, "transformer")
    if family == "flux2":
        return fx.flux2_to_bfl(transformer.state_dict())
    if family == "ltx2":
        return fx.ltx2_to_original(transformer)
    return dict(transformer.state_dict())  # ComfyUI's qwen_image files keep the Diffusers names


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("gguf-flux2-qwen-ltx2")
    for family, (builder, folder, arch, _) in CASES.items():
        state = original_layout(family, build_demo_model(builder, root))
        for qtype in ("F32", "Q8_0"):
            write_gguf(state, root / "diffusion_models" / f"{family}-tiny-{qtype}.gguf", arch, qtype)
    return root


def pixels(result) -> np.ndarray:
    frames = result.frames[0] if result.frames else result.pil_images
    return np.stack([np.asarray(f, dtype=np.float64) for f in frames])


@pytest.mark.parametrize("family", sorted(CASES))
def test_gguf_generates_the_folder_pixels(models, family):
    from sdcodex.models.detect import detect_path

    _, folder, arch, req = CASES[family]
    orch = Orchestrator(LocalModels(models, device="cpu"), None)
    ref = pixels(orch.run({**req, "model": folder}))
    exact = orch.run({**req, "model": f"{family}-tiny-F32"})
    assert np.abs(pixels(exact) - ref).max() <= 1
    assert exact.info["weights"]["file_quantization"] == "gguf F32"
    quantized = orch.run({**req, "model": f"{family}-tiny-Q8_0"})
    diff = np.abs(pixels(quantized) - ref)
    print(f"{family} Q8_0: max {diff.max():.0f} mean {diff.mean():.3f}")
    assert diff.max() <= Q8_TOLERANCE[0] and diff.mean() <= Q8_TOLERANCE[1], (diff.max(), diff.mean())
    weights = quantized.info["weights"]
    assert weights["file_quantization"] == "gguf Q8_0" and weights["quantized"]["transformer"]["gguf"]["Q8_0"] > 0
    found = detect_path(models / "diffusion_models" / f"{family}-tiny-Q8_0.gguf")
    assert found.kind == "diffusion_model" and found.family.value == family
    assert found.variant["gguf_architecture"] == arch and found.variant["quantization"] == "gguf Q8_0"
