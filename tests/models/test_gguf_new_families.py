"""GGUF transformers of Z-Image and Chroma (original single-file layouts written with the `gguf` package's own
writer and Q8_0 quantizer, as ComfyUI-GGUF lays them out) load through the same layout rows as their safetensors
files, stay quantized, and generate within the Q8_0 tolerance of the unquantized demo folder."""
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
CASES = {"z_image": ("z-image-demo", "z-image-tiny-Q8_0", {"cfg_scale": 1.0}),
         "chroma": ("chroma-demo", "chroma-tiny-Q8_0", {"cfg_scale": 2.0, "negative_prompt": "blurry"})}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("gguf-new-families")
    z = build_demo_model("z_image", root)
    c = build_demo_model("chroma", root)
    write_gguf(fx.z_image_to_original(_module(z, "transformer").state_dict()),
               root / "diffusion_models" / "z-image-tiny-Q8_0.gguf", "lumina2", "Q8_0")
    write_gguf(fx.chroma_to_bfl(_module(c, "transformer").state_dict()),
               root / "diffusion_models" / "chroma-tiny-Q8_0.gguf", "chroma", "Q8_0")
    return root


@pytest.mark.parametrize("engine", sorted(CASES))
def test_gguf_generates_close_to_the_unquantized_model(models, engine):
    base, name, extra = CASES[engine]
    orch = Orchestrator(LocalModels(models, device="cpu"), None)
    req = {"engine": engine, "task": "txt2img", "prompt": "a lighthouse", "width": 64, "height": 64, "steps": 2,
           "seed": 3, **extra}
    ref = np.asarray(orch.run({**req, "model": base}).pil_images[0]).astype(np.float64)
    result = orch.run({**req, "model": name})
    diff = np.abs(np.asarray(result.pil_images[0]).astype(np.float64) - ref)
    print(f"{engine} Q8_0: max {diff.max():.0f} mean {diff.mean():.3f}")
    assert diff.max() <= Q8_TOLERANCE[0] and diff.mean() <= Q8_TOLERANCE[1], (diff.max(), diff.mean())
    weights = result.info["weights"]
    assert weights["file_quantization"] == "gguf Q8_0" and weights["quantized"]["transformer"]["gguf"]["Q8_0"] > 0
