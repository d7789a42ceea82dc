"""LoRA and textual-inversion embeddings against Diffusers' own loaders: the same file and weight through Codex's
merge and through `load_lora_weights` + `set_adapters` + `fuse_lora` (or `load_textual_inversion`) on a copy of the
same components give the same pixels (at most 1/255 apart), for SD1.5 kohya and Diffusers/PEFT files, SDXL kohya,
weights 0.5 and 1.5 and two LoRAs at once; A1111's `<lora:name:te:unet>` against Diffusers' per-component scales."""
from __future__ import annotations

import copy
import inspect

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline, EulerDiscreteScheduler

BASE = {"task": "txt2img", "model": "sd15-demo", "prompt": "a red fox", "negative_prompt": "blurry", "width": 64,
        "height": 64, "steps": 2, "cfg_scale": 5.0, "sampler": "Euler", "scheduler": "Automatic", "seed": 7}
PIPES = {"sd15-demo": StableDiffusionPipeline, "sdxl-demo": StableDiffusionXLPipeline}


def fresh_pipe(features_models, name):
    """Diffusers' pipeline on a deep copy of the loaded components (Diffusers' loaders change modules in place)."""
    model = features_models.load(features_models.resolve(name))
    cls = PIPES[name]
    params = inspect.signature(cls.__init__).parameters
    init = {n: copy.deepcopy(model.components[n]) for n in params if n in model.components}
    init.update({n: None for n, p in params.items() if n not in init and n != "self"
                 and p.default is inspect.Parameter.empty})
    if "requires_safety_checker" in params:
        init["requires_safety_checker"] = False
    for name in ("text_encoder", "text_encoder_2"):  # the engine's clip-skip alias would hide the flattened
        if init.get(name) is not None:                # CLIPTextModel from Diffusers' LoRA loader
            init[name].__dict__.pop("text_model", None)
    pipe = cls(**init)
    pipe.scheduler = EulerDiscreteScheduler.from_config(model.scheduler_config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run_reference(pipe, req):
    return pipe(prompt=req["prompt"], negative_prompt=req["negative_prompt"], width=64, height=64,
                num_inference_steps=req["steps"], guidance_scale=req["cfg_scale"],
                generator=torch.Generator("cpu").manual_seed(req["seed"])).images[0]


def assert_close(ours, theirs):
    a, b = np.asarray(ours, dtype=int), np.asarray(theirs, dtype=int)
    assert np.abs(a - b).max() <= 1, f"differs by {np.abs(a - b).max()}"


def with_loras(features_dir, pipe, loras):
    """Diffusers' way: one adapter per file, the weights as adapter weights, fused into the base weights."""
    names = []
    for i, (file, _) in enumerate(loras):
        pipe.load_lora_weights(str(features_dir / "Lora" / f"{file}.safetensors"), adapter_name=f"a{i}")
        names.append(f"a{i}")
    pipe.set_adapters(names, adapter_weights=[w for _, w in loras])
    pipe.fuse_lora(adapter_names=names, lora_scale=1.0)
    return pipe


@pytest.mark.parametrize("model,loras", [
    ("sd15-demo", [("tiny-kohya", 0.5)]), ("sd15-demo", [("tiny-kohya", 1.5)]),
    ("sd15-demo", [("tiny-peft", 0.5)]), ("sd15-demo", [("tiny-peft", 1.5)]),
    ("sd15-demo", [("tiny-kohya", 0.5), ("tiny-peft", 1.5)]),
    ("sdxl-demo", [("tiny-xl", 1.5)]), ("sdxl-demo", [("tiny-xl-sgm", 0.5)])])
def test_lora_equals_diffusers_load_lora_weights(forch, features_models, features_dir, model, loras):
    req = {**BASE, "model": model, "loras": [{"name": n, "weight": w} for n, w in loras]}
    ours = forch.run(req).pil_images[0]
    theirs = run_reference(with_loras(features_dir, fresh_pipe(features_models, model), loras), req)
    assert_close(ours, theirs)


def test_lora_tag_with_separate_text_encoder_and_unet_weights(forch, features_models, features_dir):
    """`<lora:name:te:unet>` (A1111): te weight on the text encoder, unet weight on the UNet — Diffusers'
    per-component adapter weights."""
    ours = forch.run({**BASE, "prompt": "a red fox <lora:tiny-kohya:0.5:1.5>"}).pil_images[0]
    pipe = fresh_pipe(features_models, "sd15-demo")
    pipe.load_lora_weights(str(features_dir / "Lora" / "tiny-kohya.safetensors"), adapter_name="a")
    pipe.fuse_lora(components=["text_encoder"], lora_scale=0.5, adapter_names=["a"])
    pipe.fuse_lora(components=["unet"], lora_scale=1.5, adapter_names=["a"])
    assert_close(ours, run_reference(pipe, BASE))


@pytest.mark.parametrize("model,file", [("sd15-demo", "tinyemb"), ("sdxl-demo", "tinyxlemb")])
def test_embedding_equals_diffusers_load_textual_inversion(forch, features_models, features_dir, model, file):
    from safetensors.torch import load_file

    req = {**BASE, "model": model, "prompt": f"a red fox, {file}"}
    ours = forch.run(req).pil_images[0]
    pipe = fresh_pipe(features_models, model)
    path = features_dir / "embeddings" / f"{file}.safetensors"
    if model == "sd15-demo":
        pipe.load_textual_inversion(str(path), token=file)
    else:
        vectors = load_file(path)
        pipe.load_textual_inversion(vectors["clip_l"], token=file, text_encoder=pipe.text_encoder,
                                    tokenizer=pipe.tokenizer)
        pipe.load_textual_inversion(vectors["clip_g"], token=file, text_encoder=pipe.text_encoder_2,
                                    tokenizer=pipe.tokenizer_2)
    assert_close(ours, run_reference(pipe, req))
