"""precision "bf16" on the CPU for every image family: the weights load as bfloat16 and the image stays within a
small distance of the fp32 one (same seed). Threads for a CPU worker come from the cores it may run on."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sdcodex.models import demo_video  # noqa: F401  (registers the demo builders)
from sdcodex.models.demo import DEMO_BUILDERS, build_demo_model
from sdcodex.runtime import build_orchestrator, cpu_threads

FAMILIES = ("sd15", "sdxl", "flux", "chroma", "z_image", "sd3", "qwen_image", "flux2")


@pytest.fixture(scope="module")
def orch(tmp_path_factory):
    root = tmp_path_factory.mktemp("bf16-models")
    for family in FAMILIES:
        build_demo_model(family, root)
    return build_orchestrator(root, None, save=False, device="cpu")


@pytest.mark.parametrize("family", FAMILIES)
def test_bf16_on_cpu_is_close_to_fp32(orch, family):
    name = DEMO_BUILDERS[family][0]
    req = {"task": "txt2img", "model": name, "prompt": "a red fox", "width": 64, "height": 64, "steps": 2,
           "seed": 1}
    full = np.asarray(orch.run({**req, "precision": "fp32"}).pil_images[0], dtype=float)
    half = np.asarray(orch.run({**req, "precision": "bf16"}).pil_images[0], dtype=float)
    model = orch.models.load(orch.models.resolve(name), precision="bf16")
    denoiser = model.components.get("transformer") or model.components.get("unet")
    assert denoiser.dtype == torch.bfloat16
    diff = np.abs(full - half)
    # measured on these tiny models (2 steps): mean 0.7-2.5, max 5-24 of 255; a broken path is tens off on average
    assert diff.mean() <= 4.0 and diff.max() <= 48, (diff.mean(), diff.max())


@pytest.mark.parametrize("env,affinity,expected", [
    ({}, {0, 1, 2, 3}, 4),
    ({"SDCODEX_THREADS": "2"}, {0, 1, 2, 3}, 2),
    ({"OMP_NUM_THREADS": "1"}, {0, 1, 2, 3}, 1),
    ({"SDCODEX_THREADS": "3", "OMP_NUM_THREADS": "1"}, {0, 1}, 3),
    ({"SDCODEX_THREADS": "x"}, {5, 7}, 2),
])
def test_cpu_threads_from_the_cores_the_worker_owns(env, affinity, expected):
    assert cpu_threads(env, affinity) == expected
