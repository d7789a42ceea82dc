"""A1111 prompt conditioning through the product path equals Diffusers fed embeddings that THIS file builds.

The reference below is written from A1111's documented algorithm, apart from the product code: its own chunker
(75 tokens, start/end, end-token padding, OpenCLIP pad after the first end, BREAK, comma backtrack of 20,
textual-inversion vectors placed at their offsets and never split), its own encoder calls (emphasis "Original":
multiply, then rescale to the unweighted mean, over all texts of one schedule at each chunk index), the prompts'
weights and schedules written out by hand, and its own denoising: Diffusers' pipeline where cond and uncond have
the same length, else a loop that runs the UNet for cond and uncond separately (A1111's default). The scheduler
is built here from Diffusers' class (Euler), never through our sampler mapping.
"""
from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline
from safetensors.torch import load_file

from sdcodex.core.errors import ValidationError
from sdcodex.models.tokenizers import clip_tokenizer

SEED, STEPS, CFG, SIZE = 11, 3, 6.5, 64
BASE = {"task": "txt2img", "width": SIZE, "height": SIZE, "steps": STEPS, "cfg_scale": CFG, "sampler": "Euler",
        "scheduler": "Automatic", "seed": SEED}
MODEL = {"sd15": "sd15-prompt", "sdxl": "sdxl-demo"}

TOK = clip_tokenizer()
BOS, EOS = TOK.bos_token_id, TOK.eos_token_id
COMMA = TOK.get_vocab()[",</w>"]
B = ("BREAK", -1.0)


# -- the reference: A1111's tokenize_line, written for this test -----------------------------------------------
def ref_chunks(parsed, embeddings=None):
    """parsed: [(text, weight)] with B items. embeddings: {name: n_vectors}. -> [(ids, weights, fixes)] of 77."""
    names = {name: TOK([name], add_special_tokens=False)["input_ids"][0] for name in (embeddings or {})}
    done, ids, mults, fixes = [], [], [], []
    state = {"comma": -1}

    def push():
        nonlocal ids, mults, fixes
        fill = 75 - len(ids)
        done.append(([BOS] + ids + [EOS] * fill + [EOS], [1.0] + mults + [1.0] * fill + [1.0], fixes))
        ids, mults, fixes = [], [], []
        state["comma"] = -1

    for text, weight in parsed:
        if (text, weight) == B:
            push()
            continue
        toks = TOK([text], add_special_tokens=False)["input_ids"][0] if text else []
        i = 0
        while i < len(toks):
            if toks[i] == COMMA:
                state["comma"] = len(ids)
            elif len(ids) == 75 and state["comma"] >= 0 and 75 - state["comma"] <= 20:
                keep = state["comma"] + 1
                rest_ids, rest_mults = ids[keep:], mults[keep:]
                ids, mults = ids[:keep], mults[:keep]
                push()
                ids, mults = rest_ids, rest_mults
            if len(ids) == 75:
                push()
            hit = next((n for n, seq in names.items() if toks[i:i + len(seq)] == seq), None)
            if hit is None:
                ids.append(toks[i])
                mults.append(weight)
                i += 1
                continue
            count = embeddings[hit]
            if len(ids) + count > 75:
                push()
            fixes.append((len(ids) + 1, hit))  # +1: offset in the 77-token row (after the start token)
            ids += [0] * count
            mults += [weight] * count
            i += len(names[hit])
    if ids or not done:
        push()
    return done


def _encoders(model, xl):
    comps = model.components
    if not xl:
        return [(comps["text_encoder"], EOS, "emb_params", False)]
    pad = comps["tokenizer_2"].pad_token_id
    return [(comps["text_encoder"], EOS, "clip_l", False), (comps["text_encoder_2"], pad, "clip_g", True)]


def ref_encode(model, xl, texts, vectors=None, clip_skip=1, emphasis="Original"):
    """texts: chunk lists of one schedule (encoded together). -> embeds (V, 77n, D), pooled (V, P) or None."""
    count = max(len(c) for c in texts)
    empty = ([BOS] + [EOS] * 76, [1.0] * 77, [])
    columns, pooled = [], None
    for i in range(count):
        col = [c[i] if i < len(c) else empty for c in texts]
        parts = []
        for te, pad, key, projects in _encoders(model, xl):
            rows = []
            for row_ids, _, _ in col:
                first = row_ids.index(EOS)
                rows.append(row_ids[:first + 1] + [pad] * (76 - first))

            def place(module, args, out, col=col, key=key):
                out = out.clone()
                for b, (_, _, fixes) in enumerate(col):
                    for offset, name in fixes:
                        vec = vectors[name][key]
                        out[b, offset:offset + vec.shape[0]] = vec
                return out

            hook = te.get_input_embeddings().register_forward_hook(place)
            try:
                with torch.no_grad():
                    o = te(torch.tensor(rows), output_hidden_states=True)
            finally:
                hook.remove()
            if xl:
                z = o.hidden_states[-2]
            elif clip_skip > 1:
                z = te.final_layer_norm(o.hidden_states[-clip_skip])
            else:
                z = o.last_hidden_state
            mult = torch.tensor([w for _, w, _ in col]).unsqueeze(-1)
            with torch.no_grad():
                before = z.mean()
                z = z * mult
                if emphasis == "Original":
                    z = z * (before / z.mean())
                if projects and i == 0:
                    ends = torch.tensor([r.index(EOS) for r in rows])
                    pooled = te.text_projection(o.last_hidden_state[torch.arange(len(rows)), ends])
            parts.append(z)
        columns.append(torch.cat(parts, dim=-1))
    return torch.cat(columns, dim=1), pooled


def _pipe(model, xl):
    cls = StableDiffusionXLPipeline if xl else StableDiffusionPipeline
    names = [n for n in inspect.signature(cls.__init__).parameters if n not in ("self", "requires_safety_checker")]
    extra = {} if xl else {"requires_safety_checker": False}
    pipe = cls(**{n: model.components.get(n) for n in names}, **extra)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = EulerDiscreteScheduler.from_config(model.scheduler_config)
    return pipe


def ref_pipeline(model, xl, pos, neg):
    """Same lengths: Diffusers' own pipeline fed the embeddings."""
    pipe = _pipe(model, xl)
    kw = dict(prompt_embeds=pos[0], negative_prompt_embeds=neg[0], width=SIZE, height=SIZE,
              num_inference_steps=STEPS, guidance_scale=CFG)
    if xl:
        kw.update(pooled_prompt_embeds=pos[1], negative_pooled_prompt_embeds=neg[1])
    return np.asarray(pipe(generator=torch.Generator("cpu").manual_seed(SEED), **kw).images[0])


def ref_loop(model, xl, cond_at, uncond_at):
    """Cond and uncond denoised separately at every step (A1111's default when their lengths differ).

    cond_at(i) -> [((embeds, pooled), weight)] (A1111's composable parts), uncond_at(i) -> (embeds, pooled)."""
    pipe = _pipe(model, xl)
    sched = pipe.scheduler
    sched.set_timesteps(STEPS)
    gen = torch.Generator("cpu").manual_seed(SEED)
    latents = pipe.prepare_latents(1, pipe.unet.config.in_channels, SIZE, SIZE, torch.float32, "cpu", gen)
    time_ids = torch.tensor([[SIZE, SIZE, 0, 0, SIZE, SIZE]], dtype=torch.float32)

    def eps(x, t, embeds, pooled):
        extra = {"added_cond_kwargs": {"text_embeds": pooled, "time_ids": time_ids}} if xl else {}
        return pipe.unet(x, t, encoder_hidden_states=embeds, **extra).sample

    with torch.no_grad():
        for i, t in enumerate(sched.timesteps):
            x = sched.scale_model_input(latents, t)
            u = eps(x, t, *uncond_at(i))
            guided = u.clone()
            for (embeds, pooled), weight in cond_at(i):
                guided = guided + CFG * weight * (eps(x, t, embeds, pooled) - u)
            latents = sched.step(guided, t, latents, generator=gen).prev_sample
        image = pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample
    return np.asarray(pipe.image_processor.postprocess(image, output_type="pil")[0])


def at_step(schedule, i):
    """A1111's rule: step i (from 0) uses the first entry whose end >= i."""
    return next((k for k, (end, _) in enumerate(schedule) if i <= end), 0)


def product(forch, family, **req):
    return np.asarray(forch.run({**BASE, "model": MODEL[family], **req}).pil_images[0])


def assert_close(a, b):
    diff = np.abs(a.astype(int) - b.astype(int)).max()
    assert diff <= 1, f"max pixel difference {diff}/255"


@pytest.fixture(scope="module")
def prompt_models(features_dir, tmp_path_factory):
    """The demo models plus "sd15-prompt": sd15-demo whose final layer norm has a bias. (The demo's is zero, so
    every token's mean is 0 and emphasis' rescale by the mean divides 0 by 0; a trained CLIP is not like that.)"""
    import os
    import shutil

    from transformers import CLIPTextModel

    from sdcodex.runtime import LocalModels

    root = tmp_path_factory.mktemp("prompt-models")
    for item in features_dir.iterdir():
        os.symlink(item, root / item.name)
    shutil.copytree(features_dir / "sd15-demo", root / "sd15-prompt", symlinks=False)
    te = CLIPTextModel.from_pretrained(root / "sd15-prompt" / "text_encoder")
    with torch.no_grad():
        te.final_layer_norm.bias.copy_(torch.randn(te.config.hidden_size, generator=torch.Generator().manual_seed(3)))
    te.save_pretrained(root / "sd15-prompt" / "text_encoder", safe_serialization=True)
    return LocalModels(root, cache_size=3)


@pytest.fixture()
def forch(prompt_models, tmp_path):
    from sdcodex.runtime import build_orchestrator

    return build_orchestrator(models=prompt_models, outdir=tmp_path / "outputs", device="cpu")


@pytest.fixture(scope="module")
def models(prompt_models):
    return {f: prompt_models.load(prompt_models.resolve(name)) for f, name in MODEL.items()}


@pytest.fixture(scope="module")
def ti_vectors(features_dir):
    out = {}
    for name in ("tinyemb", "tinyxlemb"):
        data = load_file(str(features_dir / "embeddings" / f"{name}.safetensors"))
        out[name] = data
    return out


# -- cases ---------------------------------------------------------------------------------------------------
WORDS = "cat dog sun sky red sea car hat cup pen".split()  # each one CLIP token


def words(n, start=0):
    return " ".join(WORDS[(start + k) % len(WORDS)] for k in range(n))


NESTED = r"a ((red:1.3) fox) [in] \(snow\), (((sky))) BREAK (red fox:1.2) in the snow"
NESTED_PARSED = [("a ", 1.0), ("red", 1.3 * 1.1), (" fox", 1.1), (" ", 1.0), ("in", 1 / 1.1), (" (snow), ", 1.0),
                 ("sky", 1.1 * 1.1 * 1.1), B, ("red fox", 1.2), (" in the snow", 1.0)]
# 70 words, a comma, 10 words (the comma is 5 tokens before the edge: those 4 words move on), 90 words without a
# comma (a hard cut), a comma 50 tokens before the next edge (too far back: no move), and a weighted tail.
_LONG_A, _LONG_B, _LONG_C = words(70) + ", " + words(10, 3), words(90, 5) + ", " + words(24, 1), words(40, 2)
LONG = f"{_LONG_A} {_LONG_B} (hello world:1.2) {_LONG_C}"
LONG_PARSED = [(f"{_LONG_A} {_LONG_B} ", 1.0), ("hello world", 1.2), (f" {_LONG_C}", 1.0)]
NEG = "blurry, (ugly:1.4)"
NEG_PARSED = [("blurry, ", 1.0), ("ugly", 1.4)]
NEG_LONG = words(80) + ", (bad hands:0.8)"
NEG_LONG_PARSED = [(words(80) + ", ", 1.0), ("bad hands", 0.8)]


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_nested_weights_escapes_and_break_equal_reference(forch, models, family):
    xl = family == "sdxl"
    chunks = ref_chunks(NESTED_PARSED)
    assert len(chunks) == 2
    pos = ref_encode(models[family], xl, [chunks])
    negative = ref_encode(models[family], xl, [ref_chunks(NEG_PARSED + [B, ("x", 1.0)])])
    ref = ref_pipeline(models[family], xl, pos, negative)  # both 2 chunks: Diffusers' own pipeline
    assert_close(product(forch, family, prompt=NESTED, negative_prompt=NEG + " BREAK x"), ref)


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_long_prompt_with_commas_at_the_edges_and_a_shorter_negative(forch, models, family):
    """4 chunks against a 1-chunk negative: denoised separately (A1111's default). SD1.5 with clip skip 2."""
    xl = family == "sdxl"
    skip = 1 if xl else 2
    chunks = ref_chunks(LONG_PARSED)
    assert len(chunks) == 4 and chunks[0][0][71] == COMMA and chunks[0][0][72] == EOS  # 4 words moved on
    assert COMMA not in chunks[1][0] and chunks[1][0][75] != EOS  # a hard cut
    assert chunks[2][0][26] == COMMA and chunks[2][0][75] != EOS  # the comma is too far back to move
    pos = ref_encode(models[family], xl, [chunks], clip_skip=skip)
    negative = ref_encode(models[family], xl, [ref_chunks(NEG_PARSED)], clip_skip=skip)
    ref = ref_loop(models[family], xl, lambda i: [(pos, 1.0)], lambda i: negative)
    out = product(forch, family, prompt=LONG, negative_prompt=NEG, clip_skip=skip)
    assert_close(out, ref)
    if not xl:  # the explicit option pads the shorter side with empty chunks (A1111's pad_cond_uncond): other pixels
        filler = ref_encode(models[family], xl, [ref_chunks([("", 1.0)])], clip_skip=skip)[0]
        padded = (torch.cat([negative[0]] + [filler] * 3, dim=1), negative[1])
        padded_out = product(forch, family, prompt=LONG, negative_prompt=NEG, clip_skip=skip, pad_cond_uncond=True)
        assert_close(padded_out, ref_pipeline(models[family], xl, pos, padded))
        assert np.abs(padded_out.astype(int) - out.astype(int)).max() > 1


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_embedding_inside_weighted_text_and_at_a_chunk_edge(forch, models, ti_vectors, family):
    xl = family == "sdxl"
    name = "tinyxlemb" if xl else "tinyemb"
    # 73 words and "a": the 2-vector embedding would straddle the 75-token edge, so it starts the next chunk
    prompt = f"{words(73)} (a {name} fox:1.3) [{name}]"
    parsed = [(words(73) + " ", 1.0), (f"a {name} fox", 1.3), (" ", 1.0), (name, 1 / 1.1)]
    chunks = ref_chunks(parsed, {name: 2})
    assert len(chunks) == 2 and chunks[0][0][75] == EOS and chunks[1][2] == [(1, name), (4, name)]
    pos = ref_encode(models[family], xl, [chunks], ti_vectors)
    negative = ref_encode(models[family], xl, [ref_chunks(NEG_LONG_PARSED)])
    ref = ref_pipeline(models[family], xl, pos, negative)
    assert_close(product(forch, family, prompt=prompt, negative_prompt=NEG_LONG), ref)


# "a [(cat:1.3):dog:1] in [red|blue] snow" with 3 steps: ends 1, 2, 3 (A1111's schedule, written out by hand)
EDIT = "a [(cat:1.3):dog:1] in [red|blue] snow"
EDIT_SCHEDULE = [(1, [("a ", 1.0), ("cat", 1.3), (" in red snow", 1.0)]), (2, [("a dog in blue snow", 1.0)]),
                 (3, [("a dog in red snow", 1.0)])]


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_prompt_editing_and_alternation_per_step(forch, models, family):
    """Against a 2-chunk negative (a longer negative: separate UNet calls), the UNet sees each step's text."""
    xl = family == "sdxl"
    # all texts of one schedule are encoded together (emphasis' mean spans them), as A1111 does
    pos_all = ref_encode(models[family], xl, [ref_chunks(p) for _, p in EDIT_SCHEDULE])
    negative = ref_encode(models[family], xl, [ref_chunks(NEG_LONG_PARSED)])

    def cond_at(i):
        k = at_step(EDIT_SCHEDULE, i)
        return [((pos_all[0][k:k + 1], pos_all[1][k:k + 1] if xl else None), 1.0)]

    seen = []
    unet = models[family].components["unet"]
    hook = unet.register_forward_pre_hook(
        lambda m, args, kw: seen.append(kw["encoder_hidden_states"].detach().clone()), with_kwargs=True)
    try:
        out = product(forch, family, prompt=EDIT, negative_prompt=NEG_LONG)
    finally:
        hook.remove()
    assert_close(out, ref_loop(models[family], xl, cond_at, lambda i: negative))
    # the pipeline's batch is [uncond, cond], both at the negative's 154 tokens; the cond is its first 77
    assert len(seen) == STEPS and all(e.shape[:2] == (2, 154) for e in seen)
    conds = [e[1:, :77] for e in seen]
    for i, embeds in enumerate(conds):
        assert torch.allclose(embeds, cond_at(i)[0][0][0], atol=1e-5), f"step {i}"
    # A1111's rule: steps 0 and 1 use the first text (end 1), step 2 the second (end 2)
    assert torch.equal(conds[0], conds[1]) and not torch.allclose(conds[1], conds[2])


def test_emphasis_no_norm_and_none(forch, models):
    neg = ref_encode(models["sd15"], False, [ref_chunks(NEG_PARSED + [B, ("x", 1.0)])], emphasis="No norm")
    pos = ref_encode(models["sd15"], False, [ref_chunks(NESTED_PARSED)], emphasis="No norm")
    out = product(forch, "sd15", prompt=NESTED, negative_prompt=NEG + " BREAK x", emphasis="No norm")
    assert_close(out, ref_pipeline(models["sd15"], False, pos, neg))
    # None: the syntax is plain text (brackets, numbers and BREAK are words; one chunk each here)
    neg = ref_encode(models["sd15"], False, [ref_chunks([(NEG + " BREAK x", 1.0)])])
    pos = ref_encode(models["sd15"], False, [ref_chunks([(NESTED, 1.0)])])
    out = product(forch, "sd15", prompt=NESTED, negative_prompt=NEG + " BREAK x", emphasis="None")
    assert_close(out, ref_pipeline(models["sd15"], False, pos, neg))


def test_composable_and_prompts(forch, models):
    parts = [([("a red fox", 1.0)], 1.0), ([("blue sky", 1.0)], 0.5)]
    conds = [(ref_encode(models["sd15"], False, [ref_chunks(p)]), w) for p, w in parts]
    negative = ref_encode(models["sd15"], False, [ref_chunks(NEG_PARSED)])
    ref = ref_loop(models["sd15"], False, lambda i: conds, lambda i: negative)
    assert_close(product(forch, "sd15", prompt="a red fox AND blue sky :0.5", negative_prompt=NEG), ref)


def test_reference_loop_equals_diffusers_pipeline(models):
    """The separate-UNet reference is itself Diffusers' math: on equal lengths it gives the pipeline's pixels."""
    pos = ref_encode(models["sd15"], False, [ref_chunks(NESTED_PARSED)])
    negative = ref_encode(models["sd15"], False, [ref_chunks(NEG_LONG_PARSED)])
    assert_close(ref_loop(models["sd15"], False, lambda i: [(pos, 1.0)], lambda i: negative),
                 ref_pipeline(models["sd15"], False, pos, negative))


def test_prompt_over_the_chunk_limit_is_refused(forch, monkeypatch):
    long = ", ".join(words(70) for _ in range(23))
    with pytest.raises(ValidationError) as err:
        forch.prepare({**BASE, "model": "sd15-prompt", "prompt": long})
    assert err.value.field == "prompt" and "20 chunks" in str(err.value) and err.value.http_status == 422
    monkeypatch.setenv("SDCODEX_MAX_PROMPT_CHUNKS", "2")
    with pytest.raises(ValidationError) as err:
        forch.prepare({**BASE, "model": "sd15-prompt", "prompt": "x", "negative_prompt": words(160)})
    assert err.value.field == "negative_prompt" and "2 chunks" in str(err.value)
    forch.prepare({**BASE, "model": "sd15-prompt", "prompt": words(150)})  # exactly 2 chunks: fine
