"""Attention backend (`attention`, --attention) and regional compile (--compile): a tiny FLUX run with a backend
equals Diffusers' FluxPipeline with the same backend set on its transformer (scheduler built here), the default
comes back on the next run, a backend this machine cannot run is an error naming the field, the package and the
device, and a UNet family (SD1.5: AttnProcessor2_0) says that it cannot switch. Compile: see test_compile_*."""
from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline

from sdcodex.core.errors import ValidationError
from sdcodex.core.orchestrator import Orchestrator
from sdcodex.engines.speed import available_backends, check_attention
from sdcodex.models import demo_video  # noqa: F401  (registers the demo builders)
from sdcodex.models.demo import DEMO_BUILDERS, build_demo_model
from tests.engines.test_reference_flow import assert_frames_equal
from tests.engines.test_video import FlowModels

SEED = 4
FLUX = {"task": "txt2img", "model": "flux-dev-demo", "prompt": "a lighthouse", "width": 64, "height": 64,
        "steps": 2, "seed": SEED}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("speed-models")
    build_demo_model("flux", root)
    return root


@pytest.fixture(scope="module")
def provider(root):
    return FlowModels(root)


def reference(root: Path, backend: str | None):
    pipe = FluxPipeline.from_pretrained(root / DEMO_BUILDERS["flux"][0], local_files_only=True)
    pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    if backend:
        pipe.transformer.set_attention_backend(backend)
    return pipe(prompt="a lighthouse", width=64, height=64, num_inference_steps=2, guidance_scale=3.5,
                generator=torch.Generator("cpu").manual_seed(SEED)).images[0]


def _backends(model) -> set:
    return {getattr(m.processor, "_attention_backend", "-") for m in model.components["transformer"].modules()
            if hasattr(m, "set_processor")}


def test_flux_backend_equals_diffusers_and_resets(provider, root):
    orch = Orchestrator(provider, None)
    default = orch.run(FLUX)
    assert default.info["attention"] == {"backend": "native", "diffusers_backend": "native", "source": "default",
                                         "modules": {"transformer": "2/2 attention modules"}}
    assert default.info["compile"] == {"enabled": False}
    math = orch.run({**FLUX, "attention": "math"})          # torch's math SDPA kernel through the dispatcher
    assert math.info["attention"]["diffusers_backend"] == "_native_math"
    assert math.info["attention"]["source"] == "request"
    assert _backends(provider.cache["flux-dev-demo"]) == {"_native_math"}
    assert_frames_equal(math.pil_images, [reference(root, "_native_math")])
    assert_frames_equal(math.pil_images, default.pil_images)     # another kernel, the same attention
    # the next run without `attention` puts the model back on the default (the model stays cached)
    again = orch.run(FLUX)
    assert _backends(provider.cache["flux-dev-demo"]) == {None}
    assert np.array_equal(np.asarray(again.pil_images[0]), np.asarray(default.pil_images[0]))
    assert_frames_equal(again.pil_images, [reference(root, None)])
    # the server's --attention applies when the request names none; the request wins
    server = Orchestrator(provider, None, attention="flex")
    flex = server.run(FLUX)
    assert flex.info["attention"]["source"] == "server (--attention)"
    assert_frames_equal(flex.pil_images, [reference(root, "flex")])
    assert server.run({**FLUX, "attention": "sdpa"}).info["attention"]["diffusers_backend"] == "native"


@pytest.mark.parametrize("name,package", [("sage", "sageattention"), ("flash", "flash-attn"), ("xformers", "xformers"),
                                          ("flash3", "flash_attn_interface"), ("efficient", None)])
def test_unavailable_backend_names_field_package_and_device(provider, name, package):
    if name not in ("efficient",) and name in available_backends("cpu"):
        pytest.skip(f"{name} is installed here")
    with pytest.raises(ValidationError) as err:
        Orchestrator(provider, None).run({**FLUX, "attention": name})
    assert err.value.field == "attention"
    text = str(err.value)
    assert repr(name) in text and "CUDA device" in text and (package is None or package in text)
    assert "native" in err.value.allowed and name not in err.value.allowed
    # the faces' orchestrator refuses it when the request is prepared (a server answers 422 at submission,
    # before any model loads) ...
    from sdcodex.runtime import build_orchestrator

    with pytest.raises(ValidationError) as err:
        build_orchestrator(models=provider, save=False, device="cpu").prepare({**FLUX, "attention": name})
    assert err.value.field == "attention" and repr(name) in str(err.value)
    # ... and a worker at start-up, naming the option
    with pytest.raises(ValidationError) as err:
        build_orchestrator(models=provider, save=False, device="cpu", attention=name)
    assert err.value.field == "--attention"


def test_wan_sets_both_experts(root):
    """WAN 2.2 A14B: the backend goes on both experts; frames equal the default run's."""
    build_demo_model("wan22_t2v_a14b", root)
    orch = Orchestrator(FlowModels(root), None)
    base = {"task": "txt2vid", "model": DEMO_BUILDERS["wan22_t2v_a14b"][0], "prompt": "waves", "width": 32,
            "height": 32, "num_frames": 5, "steps": 2, "seed": SEED}
    plain, math = orch.run(base), orch.run({**base, "attention": "math"})
    assert math.info["attention"]["modules"] == {"transformer": "4/4 attention modules",
                                                 "transformer_2": "4/4 attention modules"}
    assert_frames_equal(math.frames[0], plain.frames[0])


def test_unet_family_cannot_switch(orchestrator):
    """SD1.5's UNet runs AttnProcessor2_0 (torch SDPA called directly): native/sdpa run, others are refused."""
    base = {"task": "txt2img", "model": "sd15-demo", "prompt": "a lighthouse", "width": 64, "height": 64,
            "steps": 2, "seed": SEED}
    plain = orchestrator.run(base)
    sdpa = orchestrator.run({**base, "attention": "sdpa"})
    assert sdpa.info["attention"]["modules"]["unet"].startswith("0/")
    assert "AttnProcessor2_0" in sdpa.info["attention"]["modules"]["unet"]
    assert np.array_equal(np.asarray(sdpa.pil_images[0]), np.asarray(plain.pil_images[0]))
    with pytest.raises(ValidationError) as err:
        orchestrator.run({**base, "attention": "math"})
    assert err.value.field == "attention" and err.value.allowed == ["native", "sdpa"]
    assert "UNet2DConditionModel" in str(err.value) and "AttnProcessor2_0" in str(err.value)


def test_check_attention_table():
    assert check_attention(None, "cpu") == "native"
    assert check_attention("sdpa", "cpu") == "native"
    assert check_attention("math", "cpu") == "_native_math"
    assert set(available_backends("cpu")) >= {"native", "sdpa", "math", "flex"}
    with pytest.raises(ValidationError) as err:
        check_attention("cudnn", "cpu", field="--attention")
    assert err.value.field == "--attention" and "CUDA device" in str(err.value)


# ------------------------------------------------------------------------------------------------ compile
def _compiler() -> str | None:
    return shutil.which("cc") or shutil.which("gcc") or shutil.which("c++")


@pytest.mark.xdist_group("compile")
def test_compile_regional_equals_eager(root, capsys):
    """--compile: FLUX's repeated blocks compiled by inductor (1 step, 64 px) give the eager pixels within 1/255;
    the first run compiles (first_use), later runs of the cached model reuse it."""
    if _compiler() is None:
        pytest.skip("torch.compile (inductor) on the CPU needs a C++ compiler: none of cc, gcc, c++ found")
    import torch._dynamo

    provider = FlowModels(root)          # its own model cache: the compiled model is not shared with other tests
    small = {**FLUX, "steps": 1}
    eager = Orchestrator(provider, None).run(small)
    orch = Orchestrator(provider, None, compile=True)
    t = time.perf_counter()
    first = orch.run(small)
    compile_s = time.perf_counter() - t
    info = first.info["compile"]
    assert info["enabled"] and info["first_use"] and info["dynamic"] is None
    assert info["modules"]["transformer"] == ("regional: 2 blocks (FluxTransformerBlock, "
                                              "FluxSingleTransformerBlock)")
    assert_frames_equal(first.pil_images, eager.pil_images)
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    second = orch.run(small)
    assert second.info["compile"]["first_use"] is False
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs     # no recompile for the same shape
    assert_frames_equal(second.pil_images, eager.pil_images)
    with capsys.disabled():
        print(f"\n[compile] first run (compiling) {compile_s:.1f}s, "
              f"compiled run {second.info['metrics']['denoise']:.3f}s, eager {eager.info['metrics']['denoise']:.3f}s")


def test_compile_falls_back_to_the_whole_module():
    """A denoiser without `_repeated_blocks` is compiled whole (lazily: nothing compiles until it runs)."""
    from sdcodex.engines.speed import apply_compile

    plain = torch.nn.Sequential(torch.nn.Linear(4, 4))
    state: dict = {}
    report = apply_compile({"unet": plain, "vae": torch.nn.Linear(2, 2)}, True, state)
    assert report["modules"] == {"unet": "whole module: Sequential declares no repeated blocks (_repeated_blocks)"}
    assert report["first_use"] and plain._compiled_call_impl is not None
    assert apply_compile({"unet": plain}, True, state)["first_use"] is False
    assert apply_compile({"unet": plain}, False, state) == {"enabled": False}
