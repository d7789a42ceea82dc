"""A1111 prompt syntax for the non-CLIP text encoders of the flow engines: FLUX (T5 + CLIP-L pooled), WAN (UMT5)
and HunyuanVideo / 1.5 (LLM encoders, syntax removed). Rules per family are in docs/prompts.md.

For FLUX and WAN the pipeline's own ``encode_prompt`` is replaced, for the duration of one call, by one that
parses the prompt (``sdcodex.core.prompt_syntax``), tokenizes each weighted run, encodes the tokens exactly as
the pipeline would (same padding, same mask) and scales the hidden state of every token by its weight (the
emphasis mode decides the normalisation). Prompt editing and alternation swap ``prompt_embeds`` (and WAN's
``negative_prompt_embeds``) through the step callback. Going through ``encode_prompt`` keeps the hires pass
(which swaps the prompt text) working unchanged. Nothing is truncated silently: ``warnings`` names the count.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import torch

from sdcodex.core.enums import Emphasis
from sdcodex.core.prompt_syntax import BREAK, parse_attention, prompt_schedules, schedule_text_at

__all__ = ["weighted_runs", "plain_text", "WeightedTokens", "weighted_tokens", "apply_emphasis", "PromptPass",
           "conditioning", "syntax_free_prompt"]


def weighted_runs(text: str, emphasis: str) -> list[tuple[str, float]]:
    """``(text, weight)`` runs of one (already scheduled) prompt text; emphasis "None" keeps the text as it is.
    ``BREAK`` items are kept (callers that have no chunks drop them)."""
    if str(emphasis) == Emphasis.NONE.value:
        return [(text, 1.0)]
    return parse_attention(text)


def plain_text(text: str, emphasis: str) -> str:
    """The text without attention syntax (weights dropped, ``BREAK`` becomes a space)."""
    return "".join(" " if (t, w) == BREAK else t for t, w in weighted_runs(text, emphasis))


@dataclass
class WeightedTokens:
    """Token ids padded to the encoder's length, one weight per position, and the unpadded count."""

    ids: list[int]
    weights: list[float]
    length: int          # real tokens (specials included) after truncation: the attention mask's ones
    total: int           # real tokens before truncation

    @property
    def truncated(self) -> int:
        return self.total - self.length

    def mask(self) -> list[int]:
        return [1] * self.length + [0] * (len(self.ids) - self.length)


def weighted_tokens(tokenizer: Any, runs: Sequence[tuple[str, float]], max_length: int, *,
                    pad: bool = True) -> WeightedTokens:
    """Tokenize each run on its own (as A1111/Forge do), add the tokenizer's special tokens, cut to
    ``max_length`` keeping the special tokens, and pad with the pad token (weight 1 for specials and pads)."""
    ids: list[int] = []
    weights: list[float] = []
    for text, weight in runs:
        if (text, weight) == BREAK or not text:
            continue
        piece = tokenizer(text, padding=False, truncation=False, add_special_tokens=False)["input_ids"]
        ids += piece
        weights += [float(weight)] * len(piece)
    head, tail = special_tokens(tokenizer)
    total = len(head) + len(ids) + len(tail)
    if total > max_length:
        keep = max(0, max_length - len(head) - len(tail))
        ids, weights = ids[:keep], weights[:keep]
    full = head + ids + tail
    full_weights = [1.0] * len(head) + weights + [1.0] * len(tail)
    length = len(full)
    if pad and length < max_length:
        full = full + [tokenizer.pad_token_id] * (max_length - length)
        full_weights = full_weights + [1.0] * (max_length - length)
    return WeightedTokens(full, full_weights, length, total)


def special_tokens(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after a text (CLIP: start/end; T5, UMT5: end only)."""
    probe = "a"
    bare = tokenizer(probe, padding=False, add_special_tokens=False)["input_ids"]
    full = tokenizer(probe, padding=False, add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(bare) + 1):
        if full[start:start + len(bare)] == bare:
            return full[:start], full[start + len(bare):]
    return [], []


def apply_emphasis(z: torch.Tensor, weights: Sequence[float], emphasis: str) -> torch.Tensor:
    """Scale each token's hidden state by its weight. "Original": then rescale so the mean of the whole
    sequence equals the unweighted mean (A1111's rule); "No norm": multiply only; all weights 1: unchanged."""
    if all(w == 1.0 for w in weights) or str(emphasis) == Emphasis.NONE.value:
        return z
    w = torch.tensor(list(weights), dtype=z.dtype, device=z.device).reshape(1, -1, 1)
    if str(emphasis) == Emphasis.NO_NORM.value:
        return z * w
    before = z.mean()
    z = z * w
    return z * (before / z.mean())


def _truncation_warning(name: str, encoder: str, tokens: WeightedTokens, limit: int) -> str:
    return (f"{name}: {tokens.total} {encoder} tokens, the encoder takes {limit}; the last {tokens.truncated} "
            f"were dropped")


# --------------------------------------------------------------------------------------------------- FLUX
def flux_t5(pipe: Any, text: str, emphasis: str, max_length: int) -> tuple[torch.Tensor, WeightedTokens]:
    """FLUX's T5 hidden states for one prompt text: Diffusers' layout (padded to max_length, no mask), weighted."""
    tokens = weighted_tokens(pipe.tokenizer_2, weighted_runs(text, emphasis), max_length)
    encoder = pipe.text_encoder_2
    ids = torch.tensor([tokens.ids], device=encoder.device)
    with torch.no_grad():
        z = encoder(ids, output_hidden_states=False)[0]
    return apply_emphasis(z, tokens.weights, emphasis).to(dtype=encoder.dtype), tokens


def flux_pooled(pipe: Any, text: str, emphasis: str) -> torch.Tensor:
    """FLUX's CLIP-L pooled embedding: the first chunk's tokens (up to BREAK, at most 75), unweighted, as A1111
    takes SDXL's pooled output from the first chunk."""
    runs = weighted_runs(text, emphasis)
    if BREAK in runs:
        runs = runs[: runs.index(BREAK)]
    tokens = weighted_tokens(pipe.tokenizer, runs, pipe.tokenizer_max_length)
    encoder = pipe.text_encoder
    with torch.no_grad():
        pooled = encoder(torch.tensor([tokens.ids], device=encoder.device), output_hidden_states=False).pooler_output
    return pooled.to(dtype=encoder.dtype)


# ---------------------------------------------------------------------------------------------------- WAN
def wan_umt5(pipe: Any, text: str, emphasis: str, max_length: int) -> tuple[torch.Tensor, WeightedTokens]:
    """WAN's UMT5 hidden states: Diffusers' cleaning, mask and zero padding past the prompt, weighted."""
    from diffusers.pipelines.wan.pipeline_wan import prompt_clean

    tokens = weighted_tokens(pipe.tokenizer, weighted_runs(prompt_clean(text), emphasis), max_length)
    encoder = pipe.text_encoder
    ids = torch.tensor([tokens.ids], device=encoder.device)
    mask = torch.tensor([tokens.mask()], device=encoder.device)
    with torch.no_grad():
        z = encoder(ids, mask).last_hidden_state
    z = z.clone()
    z[:, tokens.length:] = 0
    return apply_emphasis(z, tokens.weights, emphasis).to(dtype=encoder.dtype), tokens


# ------------------------------------------------------------------------------------------------- Chroma
def chroma_t5(pipe: Any, text: str, emphasis: str, max_length: int) -> tuple[torch.Tensor, torch.Tensor,
                                                                               WeightedTokens]:
    """Chroma's T5 hidden states and mask, as Diffusers lays them out (the mask also opens the first pad), weighted."""
    tokens = weighted_tokens(pipe.tokenizer, weighted_runs(text, emphasis), max_length)
    encoder = pipe.text_encoder
    ids = torch.tensor([tokens.ids], device=encoder.device)
    with torch.no_grad():
        z = encoder(ids, output_hidden_states=False, attention_mask=torch.tensor([tokens.mask()],
                                                                                 device=encoder.device))[0]
    mask = (torch.arange(len(tokens.ids), device=encoder.device) <= tokens.length).unsqueeze(0)
    return apply_emphasis(z, tokens.weights, emphasis), mask, tokens


# --------------------------------------------------------------------------------------- per-call state
@dataclass
class PromptPass:
    """One pipeline call's prompts and how its steps count (A1111's base or hires schedule)."""

    prompt: str
    negative: str
    steps: int
    hires_steps: int | None = None

    def schedule(self, text: str, order: int) -> list[tuple[int, str]]:
        if self.hires_steps is None:
            return prompt_schedules(text, self.steps * order)
        return prompt_schedules(text, self.steps * order, hires_steps=self.hires_steps * order)


@dataclass
class _Swap:
    """A scheduled prompt in a running call: which callback tensor it replaces and how to encode a text."""

    key: str
    schedule: list[tuple[int, str]]
    batch: int
    encode: Callable[[str], torch.Tensor]
    cache: dict[str, torch.Tensor] = field(default_factory=dict)

    def at(self, step: int) -> torch.Tensor:
        text = schedule_text_at(self.schedule, step)
        if text not in self.cache:
            self.cache[text] = self.encode(text)
        return self.cache[text]


class Conditioning:
    """Replaces ``encode_prompt`` of a run's pipelines and swaps scheduled prompts in the step callback."""

    def __init__(self, family: str, emphasis: str, warnings: list[str]) -> None:
        self.family = family
        self.emphasis = str(emphasis)
        self.warnings = warnings
        self.passes: dict[int, PromptPass] = {}
        self.swaps: list[_Swap] = []

    @property
    def tensor_inputs(self) -> list[str]:
        return ["latents", "prompt_embeds"] + (["negative_prompt_embeds"] if self.family == "wan" else [])

    def warn(self, text: str) -> None:
        if text not in self.warnings:
            self.warnings.append(text)

    def _tokens_checked(self, name: str, encoder: str, tokens: WeightedTokens, limit: int) -> None:
        if tokens.truncated > 0:
            self.warn(_truncation_warning(name, encoder, tokens, limit))

    def wrap(self, inner: Callable[..., Any] | None) -> Callable[..., Any]:
        """The step callback: before step i + 1 the scheduled prompts of step i + 1 go in, then ``inner`` runs."""
        def callback(pipe: Any, i: int, t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            for swap in self.swaps:
                if swap.key in kwargs and schedule_text_at(swap.schedule, i + 1) != schedule_text_at(swap.schedule, i):
                    kwargs[swap.key] = _batch(swap.at(i + 1), swap.batch)
            result = inner(pipe, i, t, kwargs) if inner is not None else kwargs
            return kwargs if result is None else result
        return callback

    # -- encode_prompt replacements -----------------------------------------------------------------
    def _start(self, pipe: Any, role: str, text: str, key: str | None, batch: int,
               encode: Callable[[str], torch.Tensor]) -> tuple[torch.Tensor, list[tuple[int, str]]]:
        """Encode the first step's text of ``text``'s schedule; register the swap when the text changes later."""
        order = max(1, int(getattr(pipe.scheduler, "order", 1) or 1))
        schedule = self.passes[id(pipe)].schedule(text, order)
        varies = len({t for _, t in schedule}) > 1
        if varies and key is None:
            self.warn(f"{role}: prompt editing/alternation is not applied per step on {self.family} (its pipeline "
                      f"cannot swap this embedding); the text of the first step is used")
        swap = _Swap(key or role, schedule, batch, encode)
        self.swaps = [s for s in self.swaps if s.key != swap.key]
        if varies and key is not None:
            self.swaps.append(swap)
        return _batch(swap.at(0), batch), schedule

    def flux_encode(self, pipe: Any, original: Callable[..., Any]) -> Callable[..., Any]:
        def encode_prompt(prompt: Any = None, prompt_2: Any = None, device: Any = None, num_images_per_prompt: int = 1,
                          prompt_embeds: Any = None, pooled_prompt_embeds: Any = None, max_sequence_length: int = 512,
                          lora_scale: Any = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            if prompt_embeds is not None or prompt is None:
                return original(prompt=prompt, prompt_2=prompt_2, device=device,
                                num_images_per_prompt=num_images_per_prompt, prompt_embeds=prompt_embeds,
                                pooled_prompt_embeds=pooled_prompt_embeds, max_sequence_length=max_sequence_length,
                                lora_scale=lora_scale)
            texts = [prompt] if isinstance(prompt, str) else list(prompt)
            pass_ = self.passes[id(pipe)]
            positive = texts[0] == pass_.prompt
            role = "prompt" if positive else "negative_prompt"
            batch = len(texts) * num_images_per_prompt
            device = device or pipe.device

            def t5(text: str) -> torch.Tensor:
                z, tokens = flux_t5(pipe, text, self.emphasis, max_sequence_length)
                self._tokens_checked(role, "T5", tokens, max_sequence_length)
                return z.to(device)

            embeds, schedule = self._start(pipe, role, texts[0], "prompt_embeds" if positive else None, batch, t5)
            first = schedule_text_at(schedule, 0)
            pooled = _batch(flux_pooled(pipe, first, self.emphasis).to(device), batch)
            dtype = pipe.text_encoder.dtype if pipe.text_encoder is not None else pipe.transformer.dtype
            text_ids = torch.zeros(embeds.shape[1], 3).to(device=device, dtype=dtype)
            return embeds, pooled, text_ids
        return encode_prompt

    def chroma_encode(self, pipe: Any, original: Callable[..., Any]) -> Callable[..., Any]:
        def encode_prompt(prompt: Any = None, negative_prompt: Any = None, device: Any = None,
                          num_images_per_prompt: int = 1, prompt_embeds: Any = None, negative_prompt_embeds: Any = None,
                          prompt_attention_mask: Any = None, negative_prompt_attention_mask: Any = None,
                          do_classifier_free_guidance: bool = True, max_sequence_length: int = 512,
                          lora_scale: Any = None) -> tuple[Any, ...]:
            if prompt_embeds is not None or prompt is None:
                return original(prompt=prompt, negative_prompt=negative_prompt, device=device,
                                num_images_per_prompt=num_images_per_prompt, prompt_embeds=prompt_embeds,
                                negative_prompt_embeds=negative_prompt_embeds,
                                prompt_attention_mask=prompt_attention_mask,
                                negative_prompt_attention_mask=negative_prompt_attention_mask,
                                do_classifier_free_guidance=do_classifier_free_guidance,
                                max_sequence_length=max_sequence_length, lora_scale=lora_scale)
            texts = [prompt] if isinstance(prompt, str) else list(prompt)
            batch = len(texts) * num_images_per_prompt
            device = device or pipe.device
            dtype = pipe.text_encoder.dtype if pipe.text_encoder is not None else pipe.transformer.dtype
            masks: dict[str, torch.Tensor] = {}

            def t5(role: str) -> Callable[[str], torch.Tensor]:
                def encode(text: str) -> torch.Tensor:
                    z, mask, tokens = chroma_t5(pipe, text, self.emphasis, max_sequence_length)
                    self._tokens_checked(role, "T5", tokens, max_sequence_length)
                    masks[role] = mask.to(device=device, dtype=dtype)
                    return z.to(device=device, dtype=dtype)
                return encode

            # the attention mask follows the text's length and the callback cannot swap it: no per-step editing
            embeds, _ = self._start(pipe, "prompt", texts[0], None, batch, t5("prompt"))
            text_ids = torch.zeros(embeds.shape[1], 3).to(device=device, dtype=dtype)
            negative = negative_mask = negative_ids = None
            if do_classifier_free_guidance:
                text = negative_prompt or ""
                text = text if isinstance(text, str) else text[0]
                negative, _ = self._start(pipe, "negative_prompt", text, None, batch, t5("negative_prompt"))
                negative_mask = _batch(masks["negative_prompt"], batch)
                negative_ids = torch.zeros(negative.shape[1], 3).to(device=device, dtype=dtype)
            return embeds, text_ids, _batch(masks["prompt"], batch), negative, negative_ids, negative_mask
        return encode_prompt

    def wan_encode(self, pipe: Any, original: Callable[..., Any]) -> Callable[..., Any]:
        def encode_prompt(prompt: Any = None, negative_prompt: Any = None, do_classifier_free_guidance: bool = True,
                          num_videos_per_prompt: int = 1, prompt_embeds: Any = None, negative_prompt_embeds: Any = None,
                          max_sequence_length: int = 226, device: Any = None, dtype: Any = None) -> tuple[Any, Any]:
            if prompt_embeds is not None or prompt is None:
                return original(prompt=prompt, negative_prompt=negative_prompt,
                                do_classifier_free_guidance=do_classifier_free_guidance,
                                num_videos_per_prompt=num_videos_per_prompt, prompt_embeds=prompt_embeds,
                                negative_prompt_embeds=negative_prompt_embeds,
                                max_sequence_length=max_sequence_length, device=device, dtype=dtype)
            texts = [prompt] if isinstance(prompt, str) else list(prompt)
            batch = len(texts) * num_videos_per_prompt
            device = device or pipe.device
            dtype = dtype or pipe.text_encoder.dtype

            def umt5(role: str) -> Callable[[str], torch.Tensor]:
                def encode(text: str) -> torch.Tensor:
                    z, tokens = wan_umt5(pipe, text, self.emphasis, max_sequence_length)
                    self._tokens_checked(role, "UMT5", tokens, max_sequence_length)
                    return z.to(device=device, dtype=dtype)
                return encode

            embeds, _ = self._start(pipe, "prompt", texts[0], "prompt_embeds", batch, umt5("prompt"))
            negative_embeds = None
            if do_classifier_free_guidance:
                negative = negative_prompt or ""
                negative = negative if isinstance(negative, str) else negative[0]
                negative_embeds, _ = self._start(pipe, "negative_prompt", negative, "negative_prompt_embeds", batch,
                                              umt5("negative_prompt"))
            return embeds, negative_embeds
        return encode_prompt


def _batch(x: torch.Tensor, batch: int) -> torch.Tensor:
    return x if x.shape[0] == batch else x.repeat(batch, *([1] * (x.dim() - 1)))


@contextmanager
def conditioning(family: str, emphasis: str, passes: Sequence[tuple[Any, PromptPass]],
                 warnings: list[str]) -> Iterator[Conditioning]:
    """Install the A1111-aware ``encode_prompt`` on each ``(pipeline, pass)`` for the duration of the block."""
    cond = Conditioning(family, emphasis, warnings)
    patched: list[Any] = []
    try:
        for pipe, pass_ in passes:
            cond.passes[id(pipe)] = pass_
            if id(pipe) in {id(p) for p in patched}:
                continue
            original = pipe.encode_prompt
            make = {"flux": cond.flux_encode, "wan": cond.wan_encode, "chroma": cond.chroma_encode}[family]
            object.__setattr__(pipe, "encode_prompt", make(pipe, original))
            patched.append(pipe)
        yield cond
    finally:
        for pipe in patched:
            try:
                object.__delattr__(pipe, "encode_prompt")
            except AttributeError:
                pass


# ------------------------------------------------------------------------------- LLM encoders (HunyuanVideo)
def syntax_free_prompt(text: str, emphasis: str, steps: int, name: str, family: str,
                       warnings: list[str]) -> str:
    """The text an encoder that cannot take weights gets: the first step's text without attention syntax.

    Warns when weights or editing were in the prompt (they are not applied on this family)."""
    if not text:
        return text
    schedule = prompt_schedules(text, steps)
    first = schedule_text_at(schedule, 0)
    if len({t for _, t in schedule}) > 1:
        _warn(warnings, f"{name}: prompt editing/alternation is not applied on {family}; the text of the first "
                        f"step is used")
    runs = weighted_runs(first, emphasis)
    if any(w != 1.0 for t, w in runs if (t, w) != BREAK):
        _warn(warnings, f"{name}: attention weights are not applied on {family}; the words are kept, the brackets "
                        f"and weights removed (docs/prompts.md)")
    return plain_text(first, emphasis)


def _warn(warnings: list[str], text: str) -> None:
    if text not in warnings:
        warnings.append(text)
