"""FLUX and WAN LoRAs against Diffusers' own loader: the same PEFT file and weight through Codex's merge and through
`load_lora_weights` + `set_adapters` + `fuse_lora` on Diffusers' pipeline loaded from the same demo folder give the
same pixels (at most 1/255 apart). The kohya and ComfyUI/BFL layouts are shown equal to the PEFT file in
test_lora_flow.py, so they are anchored through it. WAN T2V-A14B: the LoRA goes into the high-noise expert only,
as Diffusers' loader does by default (`load_into_transformer_2=False`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, UniPCMultistepScheduler, WanPipeline
from safetensors.torch import save_file

from tests.features.test_lora_flow import flux_loras, wan_loras

FLUX = {"task": "txt2img", "model": "flux-dev-demo", "prompt": "a lighthouse", "width": 64, "height": 64, "steps": 2,
        "seed": 3}
WAN = {"task": "txt2vid", "model": "wan22-t2v-a14b-demo", "prompt": "a red fox", "steps": 2, "seed": 7,
       "num_frames": 5, "fps": 8.0, "width": 32, "height": 32, "cfg_scale": 4.0, "guidance_scale_2": 3.0}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    from sdcodex.models import demo_video  # noqa: F401  (registers the demo builders)
    from sdcodex.models.demo import build_demo_model
    from sdcodex.runtime import LocalModels

    root = tmp_path_factory.mktemp("flow-lora-reference")
    for family in ("flux", "wan22_t2v_a14b"):
        build_demo_model(family, root)
    plain = LocalModels(root)
    (root / "Lora").mkdir()
    flux = plain.load(plain.resolve("flux-dev-demo")).components["transformer"]
    wan = plain.load(plain.resolve("wan22-t2v-a14b-demo")).components["transformer"]
    for name, sd in (("flux-peft", flux_loras(flux, 1)["peft"]), ("wan-a14b-peft", wan_loras(wan, 2)["peft"])):
        save_file({k: v.clone().contiguous() for k, v in sd.items()}, root / "Lora" / f"{name}.safetensors")
    return root


@pytest.fixture(scope="module")
def orch(root, tmp_path_factory):
    from sdcodex.runtime import LocalModels, build_orchestrator

    return build_orchestrator(models=LocalModels(root), outdir=tmp_path_factory.mktemp("out"), device="cpu")


def reference(root, cls, folder, scheduler_cls, lora, weight, **load_kw):
    pipe = cls.from_pretrained(root / folder, local_files_only=True)
    pipe.scheduler = scheduler_cls.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    pipe.load_lora_weights(str(root / "Lora" / f"{lora}.safetensors"), adapter_name="a", **load_kw)
    pipe.set_adapters(["a"], adapter_weights=[weight])
    pipe.fuse_lora(adapter_names=["a"], lora_scale=1.0, **({"components": ["transformer", "transformer_2"]}
                                                           if load_kw.get("load_into_transformer_2") else {}))
    return pipe


def assert_close(ours, theirs):
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        a, b = np.asarray(a.convert("RGB"), dtype=int), np.asarray(b.convert("RGB"), dtype=int)
        assert np.abs(a - b).max() <= 1, f"differs by {np.abs(a - b).max()}"


@pytest.mark.parametrize("weight", [0.5, 1.5])
def test_flux_lora_equals_diffusers(orch, root, weight):
    ours = orch.run({**FLUX, "loras": [{"name": "flux-peft", "weight": weight}]}).pil_images
    pipe = reference(root, FluxPipeline, "flux-dev-demo", FlowMatchEulerDiscreteScheduler, "flux-peft", weight)
    theirs = pipe(prompt="a lighthouse", width=64, height=64, num_inference_steps=2, guidance_scale=3.5,
                  generator=torch.Generator("cpu").manual_seed(3)).images
    assert_close(ours, theirs)


def test_wan_a14b_lora_goes_into_the_high_noise_expert_as_diffusers_does(orch, root):
    ours = orch.run({**WAN, "loras": [{"name": "wan-a14b-peft", "weight": 1.5}]}).frames[0]
    kw = dict(prompt="a red fox", height=32, width=32, num_frames=5, num_inference_steps=2, guidance_scale=4.0,
              guidance_scale_2=3.0, output_type="pil")
    default = reference(root, WanPipeline, "wan22-t2v-a14b-demo", UniPCMultistepScheduler, "wan-a14b-peft", 1.5)
    assert_close(ours, default(**kw, generator=torch.Generator("cpu").manual_seed(7)).frames[0])
    both = reference(root, WanPipeline, "wan22-t2v-a14b-demo", UniPCMultistepScheduler, "wan-a14b-peft", 1.5,
                     load_into_transformer_2=True)
    frames = both(**kw, generator=torch.Generator("cpu").manual_seed(7)).frames[0]
    assert any(not np.array_equal(np.asarray(a), np.asarray(b.convert("RGB"))) for a, b in zip(ours, frames))
