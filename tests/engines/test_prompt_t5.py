"""A1111 prompt syntax on the non-CLIP encoders (FLUX T5, WAN UMT5, HunyuanVideo's LLM), tiny models.

The references are built here, apart from the product code, from the rule in docs/prompts.md: each weighted
run tokenized on its own, the end token, the pipeline's own padding; the hidden state of each token times its
weight, then ("Original") the whole sequence rescaled to its unweighted mean. Diffusers' own pipelines are fed
those `prompt_embeds` and must give the same pixels as `sdcodex generate`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import sdcodex.engines  # noqa: F401  (registers engines)
from sdcodex.core.orchestrator import Orchestrator
from sdcodex.models import demo_video  # noqa: F401  (registers the demo builders)
from sdcodex.models.demo import DEMO_BUILDERS, build_demo_model
from sdcodex.runtime import MediaSaver
from tests.engines.test_video import FlowModels

UP = 1.1

# "a (light:1.3)house, [sea] BREAK ((sky))" written out by hand as runs
WEIGHTED = "a (light:1.3)house, [sea] BREAK ((sky))"
RUNS = [("a ", 1.0), ("light", 1.3), ("house, ", 1.0), ("sea", 1 / UP), ("sky", UP * UP)]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("prompt-t5-models")
    for family in ("flux", "wan22_ti2v_5b", "hunyuan_video"):
        build_demo_model(family, root)
    return root


@pytest.fixture()
def orch(root, tmp_path) -> Orchestrator:
    return Orchestrator(FlowModels(root), MediaSaver(tmp_path / "out"),
                        image_loader=lambda value, field: Image.open(value).convert("RGB"))


@pytest.fixture(scope="module")
def flux_pipe(root):
    from diffusers import FluxPipeline

    pipe = FluxPipeline.from_pretrained(root / "flux-dev-demo", local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def flux_req(prompt: str, **extra) -> dict:
    return {"task": "txt2img", "model": "flux-dev-demo", "prompt": prompt, "width": 64, "height": 64, "steps": 3,
            "seed": 3, **extra}


def ids_of(tokenizer, runs) -> list[int]:
    out: list[int] = []
    for text, _ in runs:
        out += tokenizer(text, add_special_tokens=False).input_ids
    return out


def weights_of(tokenizer, runs) -> list[float]:
    out: list[float] = []
    for text, weight in runs:
        out += [weight] * len(tokenizer(text, add_special_tokens=False).input_ids)
    return out


def reference_flux_embeds(pipe, runs, mode: str = "Original", length: int = 512):
    tok = pipe.tokenizer_2
    ids = ids_of(tok, runs) + [tok.eos_token_id]
    weights = weights_of(tok, runs) + [1.0]
    ids += [tok.pad_token_id] * (length - len(ids))
    weights += [1.0] * (length - len(weights))
    with torch.no_grad():
        z = pipe.text_encoder_2(torch.tensor([ids]))[0]
    w = torch.tensor(weights).reshape(1, -1, 1)
    weighted = z * w
    if mode == "Original":
        weighted = weighted * (z.mean() / weighted.mean())
    clip = pipe.tokenizer
    first_chunk = [r for r in runs if r[0] != "sky"]  # the pooled output reads the first chunk (before BREAK)
    cids = [clip.bos_token_id] + ids_of(clip, first_chunk) + [clip.eos_token_id]
    cids += [clip.pad_token_id] * (77 - len(cids))
    with torch.no_grad():
        pooled = pipe.text_encoder(torch.tensor([cids])).pooler_output
    return weighted, pooled


def same(a: Image.Image, b: Image.Image) -> bool:
    return int(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b.convert("RGB"), dtype=np.int16)).max()) <= 1


def run_flux(pipe, embeds, pooled, **extra):
    return pipe(prompt_embeds=embeds, pooled_prompt_embeds=pooled, width=64, height=64, num_inference_steps=3,
                guidance_scale=3.5, generator=torch.Generator("cpu").manual_seed(3), **extra).images[0]


@pytest.mark.parametrize("mode", ["Original", "No norm"])
def test_flux_weighted_prompt_equals_pipeline_fed_reference_embeds(orch, flux_pipe, mode):
    result = orch.run(flux_req(WEIGHTED, emphasis=mode))
    embeds, pooled = reference_flux_embeds(flux_pipe, RUNS, mode)
    assert same(result.pil_images[0], run_flux(flux_pipe, embeds, pooled))
    plain = orch.run(flux_req("a lighthouse, sea sky")).pil_images[0]
    assert not np.array_equal(np.asarray(result.pil_images[0]), np.asarray(plain))
    assert not any("T5 tokens" in w for w in result.info["warnings"])


def test_flux_plain_prompt_is_unchanged_and_emphasis_none_is_literal(orch, flux_pipe):
    ref = flux_pipe(prompt="a lighthouse", width=64, height=64, num_inference_steps=3, guidance_scale=3.5,
                    generator=torch.Generator("cpu").manual_seed(3)).images[0]
    assert np.array_equal(np.asarray(orch.run(flux_req("a lighthouse")).pil_images[0]), np.asarray(ref))
    literal = "a (light:1.3)house"
    ref = flux_pipe(prompt=literal, width=64, height=64, num_inference_steps=3, guidance_scale=3.5,
                    generator=torch.Generator("cpu").manual_seed(3)).images[0]
    assert np.array_equal(np.asarray(orch.run(flux_req(literal, emphasis="None")).pil_images[0]), np.asarray(ref))


def test_flux_long_prompt_is_kept_to_512_and_truncation_is_reported(orch, flux_pipe):
    tok = flux_pipe.tokenizer_2
    words = "a red fox in the snow, "
    fits = (words * 40)[:500]
    assert len(tok(fits).input_ids) <= 512
    result = orch.run(flux_req(fits))
    assert not any("T5 tokens" in w for w in result.info["warnings"])
    too_long = words * 40 + "the end"
    count = len(tok(too_long).input_ids)
    assert count > 512
    result = orch.run(flux_req(too_long))
    message = next(w for w in result.info["warnings"] if "T5 tokens" in w)
    assert f"{count} T5 tokens" in message and f"last {count - 512} were dropped" in message
    ref = flux_pipe(prompt=too_long, width=64, height=64, num_inference_steps=3, guidance_scale=3.5,
                    generator=torch.Generator("cpu").manual_seed(3)).images[0]
    assert np.array_equal(np.asarray(result.pil_images[0]), np.asarray(ref))  # same 512 tokens as Diffusers


def test_flux_prompt_editing_swaps_at_a1111s_step(orch, flux_pipe):
    # [a lighthouse:a castle:1] with 3 steps: A1111 uses "a lighthouse" for steps 0 and 1, "a castle" for step 2
    result = orch.run(flux_req("[a lighthouse:a castle:1] at night"))
    first, pooled = reference_flux_embeds(flux_pipe, [("a lighthouse at night", 1.0)])
    second, _ = reference_flux_embeds(flux_pipe, [("a castle at night", 1.0)])
    seen = []

    def swap(pipe, i, t, kwargs):
        seen.append(i)
        if i + 1 == 2:
            kwargs["prompt_embeds"] = second
        return kwargs

    ref = run_flux(flux_pipe, first, pooled, callback_on_step_end=swap,
                   callback_on_step_end_tensor_inputs=["latents", "prompt_embeds"])
    assert seen == [0, 1, 2] and same(result.pil_images[0], ref)
    never = run_flux(flux_pipe, first, pooled)
    assert not np.array_equal(np.asarray(result.pil_images[0]), np.asarray(never))


def wan_req(prompt: str, **extra) -> dict:
    return {"task": "txt2vid", "model": DEMO_BUILDERS["wan22_ti2v_5b"][0], "prompt": prompt, "steps": 2, "seed": 7,
            "num_frames": 5, "width": 32, "height": 32, "cfg_scale": 4.0, "negative_prompt": "(blurry:1.5)",
            **extra}


def reference_wan_embeds(pipe, runs, length: int = 512):
    tok = pipe.tokenizer
    ids = ids_of(tok, runs) + [tok.eos_token_id]
    weights = torch.tensor(weights_of(tok, runs) + [1.0]).reshape(1, -1, 1)
    n = len(ids)
    mask = [1] * n + [0] * (length - n)
    ids += [tok.pad_token_id] * (length - n)
    with torch.no_grad():
        z = pipe.text_encoder(torch.tensor([ids]), torch.tensor([mask])).last_hidden_state[:, :n]
    weighted = z * weights
    weighted = weighted * (z.mean() / weighted.mean())
    return torch.cat([weighted, weighted.new_zeros(1, length - n, weighted.shape[2])], dim=1)


def test_wan_weighted_prompts_equal_pipeline_fed_reference_embeds(orch, root):
    from diffusers import UniPCMultistepScheduler, WanPipeline

    result = orch.run(wan_req(WEIGHTED))
    pipe = WanPipeline.from_pretrained(root / DEMO_BUILDERS["wan22_ti2v_5b"][0], local_files_only=True)
    pipe.scheduler = UniPCMultistepScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    embeds = reference_wan_embeds(pipe, RUNS)
    negative = reference_wan_embeds(pipe, [("blurry", 1.5)])
    ref = pipe(prompt_embeds=embeds, negative_prompt_embeds=negative, height=32, width=32, num_frames=5,
               num_inference_steps=2, guidance_scale=4.0, generator=torch.Generator("cpu").manual_seed(7),
               output_type="pil").frames[0]
    assert len(result.frames[0]) == len(ref) == 5
    assert all(same(a, b) for a, b in zip(result.frames[0], ref))


def test_hunyuan_gets_the_words_without_syntax_and_a_warning(orch):
    model = DEMO_BUILDERS["hunyuan_video"][0]
    base = {"task": "txt2vid", "model": model, "steps": 2, "seed": 7, "num_frames": 5, "width": 32, "height": 32}
    weighted = orch.run({**base, "prompt": "a (red:1.4) fox [in snow|in rain]"})
    plain = orch.run({**base, "prompt": "a red fox in snow"})
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(weighted.frames[0], plain.frames[0]))
    warnings = " ".join(weighted.info["warnings"])
    assert "attention weights are not applied on hunyuan_video" in warnings
    assert "prompt editing/alternation is not applied on hunyuan_video" in warnings
    assert not any("not applied" in w for w in plain.info["warnings"])


def test_flux_hires_pass_reads_its_own_weighted_prompt(orch):
    hires = {"scale": 1.5, "upscaler": "Lanczos", "steps": 2, "denoising_strength": 0.5}
    base = flux_req("a (lighthouse:1.2)", steps=2)
    same_prompt = orch.run({**base, "hires": hires}).pil_images[0]
    restated = orch.run({**base, "hires": {**hires, "prompt": "a (lighthouse:1.2)"}}).pil_images[0]
    other = orch.run({**base, "hires": {**hires, "prompt": "a (castle:1.2)"}})
    assert same_prompt.size == (96, 96)
    assert np.array_equal(np.asarray(same_prompt), np.asarray(restated))
    assert not np.array_equal(np.asarray(same_prompt), np.asarray(other.pil_images[0]))
    assert not any("not applied" in w for w in other.info["warnings"])


def reference_chroma_embeds(pipe, runs, length: int = 512):
    tok = pipe.tokenizer
    ids = ids_of(tok, runs) + [tok.eos_token_id]
    weights = weights_of(tok, runs) + [1.0]
    n = len(ids)
    ids += [tok.pad_token_id] * (length - n)
    weights += [1.0] * (length - n)
    with torch.no_grad():
        z = pipe.text_encoder(torch.tensor([ids]), attention_mask=torch.tensor([[1] * n + [0] * (length - n)]))[0]
    weighted = z * torch.tensor(weights).reshape(1, -1, 1)
    weighted = weighted * (z.mean() / weighted.mean())
    mask = (torch.arange(length) <= n).float().unsqueeze(0)  # Diffusers' Chroma mask opens the first pad too
    return weighted, mask


def test_chroma_weighted_prompts_equal_pipeline_fed_reference_embeds(tmp_path_factory, tmp_path):
    from diffusers import ChromaPipeline, FlowMatchEulerDiscreteScheduler

    root = tmp_path_factory.mktemp("chroma-prompt-models")
    build_demo_model("chroma", root)
    orch = Orchestrator(FlowModels(root), MediaSaver(tmp_path / "out"))
    result = orch.run({"task": "txt2img", "model": "chroma-demo", "prompt": WEIGHTED, "negative_prompt": "(blurry:1.5)",
                       "cfg_scale": 3.0, "width": 64, "height": 64, "steps": 3, "seed": 5})
    pipe = ChromaPipeline.from_pretrained(root / "chroma-demo", local_files_only=True)
    pipe.scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True,
                                                     base_shift=0.5, max_shift=1.15, base_image_seq_len=256,
                                                     max_image_seq_len=4096)
    pipe.set_progress_bar_config(disable=True)
    embeds, mask = reference_chroma_embeds(pipe, RUNS)
    negative, negative_mask = reference_chroma_embeds(pipe, [("blurry", 1.5)])
    ref = pipe(prompt_embeds=embeds, prompt_attention_mask=mask, negative_prompt_embeds=negative,
               negative_prompt_attention_mask=negative_mask, guidance_scale=3.0, width=64, height=64,
               num_inference_steps=3, generator=torch.Generator("cpu").manual_seed(5)).images[0]
    assert same(result.pil_images[0], ref)
    edited = orch.run({"task": "txt2img", "model": "chroma-demo", "prompt": "[a:b:1] c", "cfg_scale": 1.0,
                       "width": 64, "height": 64, "steps": 3, "seed": 5})
    assert any("not applied per step on chroma" in w for w in edited.info["warnings"])


def test_z_image_prompts_and_hires_prompts_lose_the_syntax(tmp_path_factory, tmp_path):
    root = tmp_path_factory.mktemp("z-image-prompt-models")
    build_demo_model("z_image", root)
    orch = Orchestrator(FlowModels(root), MediaSaver(tmp_path / "out"))
    base = {"task": "txt2img", "model": "z-image-demo", "width": 64, "height": 64, "steps": 2, "seed": 5,
            "hires": {"scale": 1.5, "upscaler": "Lanczos", "steps": 2, "denoising_strength": 0.5}}
    weighted = orch.run({**base, "prompt": "a (lighthouse:1.3)", "hires": {**base["hires"], "prompt": "a [castle]"}})
    plain = orch.run({**base, "prompt": "a lighthouse", "hires": {**base["hires"], "prompt": "a castle"}})
    assert weighted.pil_images[0].size == (96, 96)
    assert np.array_equal(np.asarray(weighted.pil_images[0]), np.asarray(plain.pil_images[0]))
    warnings = " ".join(weighted.info["warnings"])
    assert "prompt: attention weights are not applied on z_image" in warnings
    assert "hires.prompt: attention weights are not applied on z_image" in warnings
    assert weighted.info["request"]["prompt"] == "a (lighthouse:1.3)"  # the request keeps the text as written


def test_flux_batch_with_weights_and_editing(orch):
    prompt = "[a (lighthouse:1.2):a castle:1] at night"
    single = orch.run(flux_req(prompt)).pil_images[0]
    batch = orch.run(flux_req(prompt, batch_size=2))
    assert len(batch.pil_images) == 2 and batch.info["seeds"] == [3, 4]
    assert same(batch.pil_images[0], single)


def test_wan_alternation_swaps_both_prompts_per_step(orch, root):
    from diffusers import UniPCMultistepScheduler, WanPipeline

    result = orch.run(wan_req("a [fox|cat]", negative_prompt="[blurry|dark]"))
    pipe = WanPipeline.from_pretrained(root / DEMO_BUILDERS["wan22_ti2v_5b"][0], local_files_only=True)
    pipe.scheduler = UniPCMultistepScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    # 2 steps: A1111's alternation schedule is [(1, first), (2, second)]; steps 0 and 1 both use the first item
    fox, blurry = reference_wan_embeds(pipe, [("a fox", 1.0)]), reference_wan_embeds(pipe, [("blurry", 1.0)])
    ref = pipe(prompt_embeds=fox, negative_prompt_embeds=blurry, height=32, width=32, num_frames=5,
               num_inference_steps=2, guidance_scale=4.0, generator=torch.Generator("cpu").manual_seed(7),
               output_type="pil").frames[0]
    assert all(same(a, b) for a, b in zip(result.frames[0], ref))
    three = orch.run(wan_req("a [fox|cat]", negative_prompt="[blurry|dark]", steps=3))
    cat, dark = reference_wan_embeds(pipe, [("a cat", 1.0)]), reference_wan_embeds(pipe, [("dark", 1.0)])

    def swap(p, i, t, kwargs):
        if i + 1 == 2:  # step 2 uses the second item of both
            kwargs["prompt_embeds"], kwargs["negative_prompt_embeds"] = cat, dark
        return kwargs

    ref = pipe(prompt_embeds=fox, negative_prompt_embeds=blurry, height=32, width=32, num_frames=5,
               num_inference_steps=3, guidance_scale=4.0, generator=torch.Generator("cpu").manual_seed(7),
               output_type="pil", callback_on_step_end=swap,
               callback_on_step_end_tensor_inputs=["latents", "prompt_embeds", "negative_prompt_embeds"]).frames[0]
    assert all(same(a, b) for a, b in zip(three.frames[0], ref))
