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
PIPES = {"sd15-demo": StableDiffusionPipeline, "sd2-demo": StableDiffusionPipeline, "sdxl-demo": StableDiffusionXLPipeline}


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
    """SDXL's pooled vector is taken at the first end token, as A1111 does (an embedding's positions carry id 0
    there). A CLIP whose config says eos_token_id=2 (the legacy value the tiny demo shares with many real
    checkpoints) pools at the highest token id instead — the added embedding token in Diffusers' path — so the
    reference is told the real end-token id and pools where A1111 does."""
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
        pipe.text_encoder_2.text_model.eos_token_id = pipe.tokenizer_2.eos_token_id
    assert_close(ours, run_reference(pipe, req))


# ------------------------------------------------------------------------------------ documented layouts
@pytest.fixture(scope="module")
def layouts(demo_models_dir, tmp_path_factory):
    """A models folder of its own (the shared one's inventory is left alone) with LoRAs in the older or rarer
    layouts: PEFT with `lora_adapter_metadata` (alpha/r), the old attention-processor keys, LyCORIS and DoRA."""
    import json
    import os

    from safetensors.torch import save_file

    from sdcodex.runtime import LocalModels, build_orchestrator
    from tests.features.conftest import peft_lora

    root = tmp_path_factory.mktemp("lora-layouts")
    os.symlink(demo_models_dir / "demo" / "sd15-demo", root / "sd15-demo")
    models = LocalModels(root)
    model = models.load(models.resolve("sd15-demo"))
    (root / "Lora").mkdir()
    peft = peft_lora(model, 11)
    config = {"r": 4, "lora_alpha": 2, "target_modules": ["to_q", "to_k", "to_v", "to_out.0"]}
    # a pipeline's save_lora_weights packs each component's LoraConfig under its prefix ("unet.lora_alpha")
    packed = {f"unet.{k}": v for k, v in config.items()}
    save_file(peft, root / "Lora" / "peft-alpha.safetensors", metadata={"lora_adapter_metadata": json.dumps(packed)})
    # a model's save_lora_adapter writes the LoraConfig as it is
    save_file(peft, root / "Lora" / "peft-alpha-model.safetensors",
              metadata={"lora_adapter_metadata": json.dumps(config)})
    save_file(peft, root / "Lora" / "peft-plain.safetensors")
    old = {}  # Diffusers' first LoRA format: unet.<block>.attn2.processor.to_q_lora.down.weight
    for key, tensor in peft.items():
        stem, _, role = key.rpartition(".lora_")
        module, _, proj = stem.rpartition(".")
        proj = {"to_out.0": "to_out"}.get(proj, proj) if not module.endswith("to_out") else "to_out"
        module = module[:-len(".to_out")] if module.endswith(".to_out") else module
        old[f"{module}.processor.{proj}_lora.{'down' if role.startswith('A') else 'up'}.weight"] = tensor
    save_file(old, root / "Lora" / "old-processor.safetensors")
    key = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    save_file({f"{key}.hada_w1_a": torch.zeros(4, 4), f"{key}.hada_w1_b": torch.zeros(4, 32)},
              root / "Lora" / "loha.safetensors")
    save_file({f"{key}.lora_down.weight": torch.zeros(4, 32), f"{key}.lora_up.weight": torch.zeros(32, 4),
               f"{key}.dora_scale": torch.ones(1, 32)}, root / "Lora" / "dora.safetensors")
    orch = build_orchestrator(models=models, outdir=root / "out", device="cpu")
    return root, models, orch


def layout_pipe(models):
    model = models.load(models.resolve("sd15-demo"))
    init = {n: copy.deepcopy(model.components[n]) for n in ("vae", "text_encoder", "tokenizer", "unet")}
    init["text_encoder"].__dict__.pop("text_model", None)
    pipe = StableDiffusionPipeline(**init, scheduler=EulerDiscreteScheduler.from_config(model.scheduler_config),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("name", ["peft-alpha", "old-processor"])
def test_metadata_alpha_and_old_processor_keys_equal_diffusers(layouts, name):
    """`lora_adapter_metadata` lora_alpha/r scales the PEFT file by 2/4; the old `to_q_lora.down/up` keys are the
    same LoRA (both read by Diffusers' loader too)."""
    from safetensors import safe_open

    root, models, orch = layouts
    ours = orch.run({**BASE, "loras": [{"name": name, "weight": 1.5}]})
    pipe = with_loras(root, layout_pipe(models), [(name, 1.5)])
    assert_close(ours.pil_images[0], run_reference(pipe, BASE))
    with safe_open(str(root / "Lora" / f"{name}.safetensors"), "pt") as fh:
        assert ours.info["loras"][0]["layers"] == len(list(fh.keys())) // 2  # every layer, to_out included


@pytest.mark.parametrize("name", ["peft-alpha", "peft-alpha-model"])
def test_metadata_alpha_halves_the_peft_weight(layouts, name):
    """Same tensors, alpha/r = 0.5 from the metadata (either layout): weight 1.5 with it is weight 0.75 without."""
    root, models, orch = layouts
    with_meta = orch.run({**BASE, "loras": [{"name": name, "weight": 1.5}]}).pil_images[0]
    plain = orch.run({**BASE, "loras": [{"name": "peft-plain", "weight": 0.75}]}).pil_images[0]
    assert np.array_equal(np.asarray(with_meta), np.asarray(plain))


@pytest.mark.parametrize("name,key", [("loha", "hada_w1_a"), ("dora", "dora_scale")])
def test_lycoris_and_dora_are_refused_naming_the_key(layouts, name, key):
    from sdcodex.core.errors import ValidationError

    _, _, orch = layouts
    with pytest.raises(ValidationError) as err:
        orch.run({**BASE, "loras": [{"name": name, "weight": 1.0}]})
    assert err.value.field == "loras[0].name" and "LyCORIS/DoRA" in str(err.value) and key in str(err.value)
    assert "only plain LoRA is supported" in str(err.value)
    with pytest.raises(ValidationError) as err:
        orch.run({**BASE, "prompt": f"a red fox <lora:{name}:1>"})
    assert err.value.field == "prompt"
