"""CLIP conditioning as AUTOMATIC1111 builds it, for every engine with CLIP text encoders (SD1.5, SDXL).

A prompt is parsed into weighted text (`sdcodex.core.prompt_syntax`), tokenized, and cut into chunks of 75
tokens, each wrapped in start/end tokens and padded with the end token (SDXL's OpenCLIP encoder: every id after
the first end becomes its pad id). `BREAK` ends a chunk; when a chunk fills and the last comma is at most 20
tokens back, the tokens after that comma move to the next chunk; a textual-inversion embedding is never split.
Each chunk is encoded alone (clip skip applies to each), weighted by emphasis and the chunks are concatenated on
the token axis; SDXL's pooled embedding comes from the first chunk.

Prompt editing and alternation give a schedule of texts; all texts of one prompt are encoded together as A1111
does (shorter ones filled with empty chunks) and the pipeline's step callback swaps the conditioning in at the
step A1111 would (text `k` serves the 0-based steps `i <= end_k`). When the prompt and the negative prompt have a
different number of chunks, the UNet runs cond and uncond separately, which equals A1111's default; padding the
shorter one with empty chunks (A1111's "pad_cond_uncond") is an explicit option and changes pixels.
"""
from __future__ import annotations

import bisect
import math
import os
import threading
import weakref
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import torch

from sdcodex.core.errors import ValidationError

CHUNK_TOKENS = 75           # prompt tokens per chunk (77 with start and end)
COMMA_BACKTRACK = 20        # A1111's comma_padding_backtrack
DEFAULT_MAX_CHUNKS = 20     # a longer prompt is refused (SDCODEX_MAX_PROMPT_CHUNKS changes it)
EMPHASIS_MODES = ("Original", "No norm", "None")
PLAN_KEY = "_prompt_plan"   # where a call's ConditioningPlan travels among the pipeline kwargs


def max_chunks() -> int:
    """The most chunks a prompt may have (env SDCODEX_MAX_PROMPT_CHUNKS, default 20)."""
    try:
        return max(1, int(os.environ.get("SDCODEX_MAX_PROMPT_CHUNKS", DEFAULT_MAX_CHUNKS)))
    except ValueError:
        return DEFAULT_MAX_CHUNKS


# -- chunking (pure: token ids in, token ids out) -------------------------------------------------
@dataclass
class Chunk:
    ids: list[int]       # 77: start, 75 tokens (padded with the end id), end
    weights: list[float]  # 77, 1.0 on start/end/padding


@dataclass
class ChunkedPrompt:
    chunks: list[Chunk]
    token_count: int      # A1111's count: 75 per full chunk + the tokens of the last one

    @property
    def target(self) -> int:
        """The counter's denominator: 75, 150, ... (A1111's get_target_prompt_token_count)."""
        return math.ceil(max(self.token_count, 1) / CHUNK_TOKENS) * CHUNK_TOKENS


def weighted_text(text: str, emphasis: str) -> list[tuple[str, float]]:
    """The prompt as (text, weight) runs; `BREAK` is ("BREAK", -1.0). Emphasis "None": the syntax is plain text."""
    if emphasis == "None":
        return [(text, 1.0)]
    from sdcodex.core.prompt_syntax import parse_attention

    return [(t, float(w)) for t, w in parse_attention(text)]


def chunk_tokens(segments: Sequence[tuple[Sequence[int], float]], *, start: int, end: int, comma: int | None,
                 groups: dict[int, int] | None = None) -> ChunkedPrompt:
    """Cut tokenized weighted segments into chunks. A segment whose ids are None is a BREAK.

    `groups` maps the first id of a textual-inversion embedding to its number of ids (kept in one chunk)."""
    groups = groups or {}
    chunks: list[Chunk] = []
    ids: list[int] = []
    weights: list[float] = []
    count = 0
    last_comma = -1

    def close(last: bool = False) -> None:
        nonlocal ids, weights, count, last_comma
        count += len(ids) if last else CHUNK_TOKENS
        pad = CHUNK_TOKENS - len(ids)
        chunks.append(Chunk([start] + ids + [end] * pad + [end], [1.0] + weights + [1.0] * pad + [1.0]))
        ids, weights, last_comma = [], [], -1

    for tokens, weight in segments:
        if tokens is None:
            close()
            continue
        pos = 0
        while pos < len(tokens):
            token = tokens[pos]
            if token == comma:
                last_comma = len(ids)
            elif len(ids) == CHUNK_TOKENS and last_comma != -1 and len(ids) - last_comma <= COMMA_BACKTRACK:
                cut = last_comma + 1
                moved_ids, moved_weights = ids[cut:], weights[cut:]
                ids, weights = ids[:cut], weights[:cut]
                close()
                ids, weights = moved_ids, moved_weights
            if len(ids) == CHUNK_TOKENS:
                close()
            size = groups.get(token, 1)
            if size > 1 and len(ids) + size > CHUNK_TOKENS:
                close()
            ids.extend(tokens[pos:pos + size])
            weights.extend([weight] * len(tokens[pos:pos + size]))
            pos += size
    if ids or not chunks:
        close(last=True)
    return ChunkedPrompt(chunks, count)


def _unpadded(backend: Any) -> Any:
    """A private copy of a Rust tokenizer without padding or truncation: transformers leaves the padding of a
    `padding="max_length"` call (as Diffusers' encode_prompt makes) set on the shared backend, and a later
    plain `encode` would then come back padded to 77 with end tokens."""
    if backend is None:
        return None
    backend = type(backend).from_str(backend.to_str())
    backend.no_padding()
    backend.no_truncation()
    return backend


_UNPADDED: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
_UNPADDED_LOCK = threading.Lock()


def unpadded_backend(tokenizer: Any) -> Any:
    """The private unpadded copy of a tokenizer's Rust backend, made once per tokenizer object (a copy takes
    ~0.4 s: made per prompt it cost every job and every keystroke of the token counter that much). A
    textual-inversion run tokenizes with its own deep copy of the tokenizer, so added tokens get their own."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    with _UNPADDED_LOCK:
        try:
            found = _UNPADDED.get(tokenizer)
        except TypeError:  # not weak-referenceable: no cache
            return _unpadded(backend)
        if found is None:
            found = _UNPADDED[tokenizer] = _unpadded(backend)
        return found


class ClipTokens:
    """Tokenizes weighted text with a CLIP tokenizer (segments cached) and chunks it the A1111 way."""

    def __init__(self, tokenizer: Any, groups: dict[int, int] | None = None) -> None:
        self.tokenizer = tokenizer
        self.start = int(tokenizer.bos_token_id)
        self.end = int(tokenizer.eos_token_id)
        comma = tokenizer.convert_tokens_to_ids(",</w>")
        self.comma = comma if comma != tokenizer.unk_token_id else None
        self._backend = unpadded_backend(tokenizer)  # Rust: no per-call overhead
        self.groups = groups or {}
        self._cache: dict[str, list[int]] = {}

    def ids(self, texts: list[str]) -> list[list[int]]:
        todo = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if todo:
            if self._backend is not None:
                found = self._backend_ids(todo)
            else:
                found = self.tokenizer(todo, padding=False, truncation=False, add_special_tokens=False, verbose=False)["input_ids"]
            for text, ids in zip(todo, found):
                self._cache[text] = list(ids)
        return [self._cache[t] for t in texts]

    def _backend_ids(self, texts: list[str]) -> list[list[int]]:
        """Each text tokenized alone, in one call of the Rust tokenizer: the texts joined by spaces (CLIP never
        merges across whitespace), each token given back to the text its offset falls in."""
        starts, pos = [], 0
        for text in texts:
            starts.append(pos)
            pos += len(text) + 1
        encoding = self._backend.encode(" ".join(texts), add_special_tokens=False)
        out: list[list[int]] = [[] for _ in texts]
        for token, (begin, _) in zip(encoding.ids, encoding.offsets):
            out[bisect.bisect_right(starts, begin) - 1].append(token)
        return out

    def chunk(self, text: str, emphasis: str = "Original") -> ChunkedPrompt:
        parsed = weighted_text(text, emphasis)
        plain = [t for t, w in parsed if not (t == "BREAK" and w == -1)]
        tokenized = iter(self.ids(plain))
        segments = [(None if (t == "BREAK" and w == -1) else next(tokenized), w) for t, w in parsed]
        return chunk_tokens(segments, start=self.start, end=self.end, comma=self.comma, groups=self.groups)


def count_tokens(text: str, emphasis: str = "Original", steps: int = 20) -> tuple[int, int]:
    """(used, target) for a prompt box, as A1111's counter: the longest text of the prompt's schedule, and
    75, 150, ... as the chunks grow. Never raises (the counter runs on every keystroke)."""
    from sdcodex.core.prompt_syntax import prompt_schedules, split_and
    from sdcodex.models.tokenizers import clip_tokenizer

    tokens = _counter_tokens(clip_tokenizer())
    emphasis = emphasis if emphasis in EMPHASIS_MODES else "Original"
    used = 0
    for part, _ in split_and(text or ""):
        for _, variant in prompt_schedules(part, max(1, int(steps or 1))):
            used = max(used, tokens.chunk(variant, emphasis).token_count)
    return used, ChunkedPrompt([], used).target


_COUNTERS: dict[int, ClipTokens] = {}


def _counter_tokens(tokenizer: Any) -> ClipTokens:
    found = _COUNTERS.get(id(tokenizer))
    if found is None or found.tokenizer is not tokenizer or len(found._cache) > 4096:
        found = _COUNTERS[id(tokenizer)] = ClipTokens(tokenizer)  # segments cached per keystroke: bounded
    return found


# -- encoding -------------------------------------------------------------------------------------
def _final_norm(encoder: Any) -> Any:
    norm = getattr(encoder, "final_layer_norm", None)
    return norm if norm is not None else encoder.text_model.final_layer_norm


@dataclass
class ClipSlot:
    """One text encoder with what it needs: its end and pad ids and how its hidden states are taken."""

    encoder: Any
    end: int
    pad: int
    penultimate: bool     # SDXL: hidden_states[-(skip + 2)] without the final norm; SD1.5: last layer (+ norm)
    pooled: bool = False  # SDXL's OpenCLIP-G: also the projected pooled embedding at the first end token


def encode_rows(slot: ClipSlot, rows: list[list[int]], clip_skip: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Hidden states (N, 77, D) of N chunks (each encoded alone; batched), and the pooled embeddings (N, P)."""
    firsts = [row.index(slot.end) for row in rows]
    if slot.pad != slot.end:  # OpenCLIP: every id after the first end is the pad id (A1111)
        rows = [row[:k + 1] + [slot.pad] * (len(row) - k - 1) for row, k in zip(rows, firsts)]
    enc = slot.encoder
    ids = torch.tensor(rows, dtype=torch.long, device=enc.device)
    out = enc(ids, output_hidden_states=True)
    skip = max(1, clip_skip)
    if slot.penultimate:  # Diffusers' SDXL rule: A1111's clip skip 1 -> hidden_states[-2], 2 -> [-3]
        z = out.hidden_states[-(skip + 1)]
    elif skip > 1:
        z = _final_norm(enc)(out.hidden_states[-skip])
    else:
        z = out.last_hidden_state
    pooled = None
    if slot.pooled:  # at the first end token, whatever ids a textual-inversion embedding adds (A1111)
        last = out.last_hidden_state
        pooled = enc.text_projection(last[torch.arange(len(rows), device=last.device),
                                          torch.tensor(firsts, device=last.device)])
    return z, pooled


def apply_emphasis(z: torch.Tensor, weights: torch.Tensor, emphasis: str) -> torch.Tensor:
    """A1111's emphasis on one chunk index (z: (V, 77, D) for V texts, weights: (V, 77))."""
    if emphasis == "None" or bool((weights == 1.0).all()):
        return z
    weights = weights.to(z.device, z.dtype).unsqueeze(-1)
    if emphasis == "No norm":
        return z * weights
    mean = z.mean()
    z = z * weights
    return z * (mean / z.mean())


def empty_chunk(tokens: ClipTokens) -> Chunk:
    return Chunk([tokens.start] + [tokens.end] * (CHUNK_TOKENS + 1), [1.0] * (CHUNK_TOKENS + 2))


@dataclass
class Encoded:
    """The texts of one prompt's schedule, encoded together: embeds (V, 77 * chunks, D), pooled (V, P) or None."""

    embeds: torch.Tensor
    pooled: torch.Tensor | None


class ClipConditioner:
    """Encodes prompts for one pipeline (its tokenizer and CLIP text encoders) with one run's settings."""

    def __init__(self, pipe: Any, *, xl: bool, clip_skip: int = 1, emphasis: str = "Original",
                 embeddings: dict[str, int] | None = None, limit: int | None = None) -> None:
        if emphasis not in EMPHASIS_MODES:
            raise ValidationError(f"unknown emphasis {emphasis!r}", field="emphasis", allowed=list(EMPHASIS_MODES))
        tok = pipe.tokenizer
        groups = {}
        for name, count in (embeddings or {}).items():
            first = tok.convert_tokens_to_ids(name)
            if isinstance(first, int) and count > 1:
                groups[first] = count
        self.tokens = ClipTokens(tok, groups)
        self.emphasis = emphasis
        self.clip_skip = clip_skip
        self.limit = limit or max_chunks()
        end = self.tokens.end
        if xl:
            tok2 = getattr(pipe, "tokenizer_2", None) or tok
            slots = []
            if getattr(pipe, "text_encoder", None) is not None:
                slots.append(ClipSlot(pipe.text_encoder, end, end, penultimate=True))
            slots.append(ClipSlot(pipe.text_encoder_2, end, int(tok2.pad_token_id), penultimate=True, pooled=True))
        else:
            # SD1.5 pads with the end token; SD2 (OpenCLIP) with its pad id "!" (0), as A1111's id_pad and Diffusers
            pad = tok.pad_token_id
            slots = [ClipSlot(pipe.text_encoder, end, end if pad is None else int(pad), penultimate=False)]
        self.slots = slots
        self._cache: dict[tuple[str, ...], Encoded] = {}

    def chunked(self, text: str, field: str = "prompt") -> ChunkedPrompt:
        result = self.tokens.chunk(text, self.emphasis)
        if len(result.chunks) > self.limit:
            raise ValidationError(f"is {len(result.chunks)} chunks of 75 tokens long ({result.token_count} tokens); "
                                  f"the limit is {self.limit} chunks", field=field,
                                  allowed=f"at most {self.limit * CHUNK_TOKENS} tokens ({self.limit} chunks)")
        return result

    def encode(self, texts: Sequence[str], field: str = "prompt") -> Encoded:
        """Encode the texts of one schedule together, as A1111 does (so emphasis' mean spans them all)."""
        key = tuple(texts)
        if key in self._cache:
            return self._cache[key]
        chunked = [self.chunked(t, field).chunks for t in texts]
        count = max(len(c) for c in chunked)
        blank = empty_chunk(self.tokens)
        grid = [[c[i] if i < len(c) else blank for c in chunked] for i in range(count)]  # [chunk][text]
        rows = [chunk.ids for column in grid for chunk in column]
        weights = torch.tensor([chunk.weights for column in grid for chunk in column])
        parts, pooled = [], None
        with torch.no_grad():
            for slot in self.slots:
                z, p = encode_rows(slot, rows, self.clip_skip)
                z = z.reshape(count, len(texts), *z.shape[1:])
                w = weights.reshape(count, len(texts), -1)
                z = torch.cat([apply_emphasis(z[i], w[i], self.emphasis) for i in range(count)], dim=1)
                parts.append(z)
                if p is not None:
                    pooled = p[:len(texts)]  # the first chunk's
        encoded = Encoded(torch.cat(parts, dim=-1), pooled)
        self._cache[key] = encoded
        return encoded


# -- schedules and the per-call plan --------------------------------------------------------------
@dataclass
class Schedule:
    """One prompt's texts over the steps: text k serves the 0-based steps i <= ends[k] (A1111's rule)."""

    ends: list[int]
    encoded: Encoded

    def index(self, step: int) -> int:
        for k, end in enumerate(self.ends):
            if step <= end:
                return k
        return 0  # past every end: the first text, as A1111 (and schedule_text_at)

    def at(self, step: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        k = self.index(step)
        pooled = self.encoded.pooled
        return self.encoded.embeds[k:k + 1], (pooled[k:k + 1] if pooled is not None else None)

    @property
    def length(self) -> int:
        return int(self.encoded.embeds.shape[1])


def build_schedule(conditioner: ClipConditioner, prompt: str, steps: int, field: str,
                   hires_steps: int | None = None) -> Schedule:
    from sdcodex.core.prompt_syntax import prompt_schedules

    pairs = prompt_schedules(prompt, steps, hires_steps=hires_steps)
    return Schedule([int(e) for e, _ in pairs], conditioner.encode([t for _, t in pairs], field))


def _rows(x: torch.Tensor | None, batch: int) -> torch.Tensor | None:
    return None if x is None else x.repeat(batch, *([1] * (x.ndim - 1)))


def _pad_to(x: torch.Tensor, length: int, filler: torch.Tensor | None) -> torch.Tensor:
    """Pad (1, L, D) to (1, length, D): with repeats of `filler` (an empty chunk), else zeros (never seen)."""
    missing = length - x.shape[1]
    if missing <= 0:
        return x
    if filler is not None:
        return torch.cat([x, filler.repeat(1, missing // filler.shape[1], 1).to(x)], dim=1)
    return torch.cat([x, x.new_zeros(x.shape[0], missing, x.shape[2])], dim=1)


@dataclass
class ConditioningPlan:
    """The conditioning of one pipeline call: AND parts (schedule, weight), the negative schedule (None: zeros,
    SDXL's empty negative prompt), and how uneven lengths are handled (split UNet calls, or padding)."""

    conds: list[tuple[Schedule, float]]
    uncond: Schedule | None
    batch: int
    xl: bool
    filler: torch.Tensor | None = None  # the empty prompt's encoding when padding (pad_cond_uncond)
    step: int = 0
    warnings: list[str] = field(default_factory=list)

    # what the pipeline gets --------------------------------------------------------------------
    def _uncond_at(self, step: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.uncond is not None:
            return self.uncond.at(step)
        embeds, pooled = self.conds[0][0].at(step)
        return torch.zeros_like(embeds), (torch.zeros_like(pooled) if pooled is not None else None)

    def _pair(self, step: int) -> tuple[torch.Tensor, torch.Tensor, Any, Any]:
        pos, pos_pooled = self.conds[0][0].at(step)
        neg, neg_pooled = self._uncond_at(step)
        length = max(pos.shape[1], neg.shape[1])
        return _pad_to(pos, length, self.filler), _pad_to(neg, length, self.filler), pos_pooled, neg_pooled

    def pipeline_kwargs(self) -> dict[str, Any]:
        pos, neg, pos_pooled, neg_pooled = self._pair(0)
        kw: dict[str, Any] = {"prompt_embeds": _rows(pos, self.batch), "negative_prompt_embeds": _rows(neg, self.batch)}
        if self.xl:
            kw["pooled_prompt_embeds"] = _rows(pos_pooled, self.batch)
            kw["negative_pooled_prompt_embeds"] = _rows(neg_pooled, self.batch)
        return kw

    @property
    def varies(self) -> bool:
        return any(len(s.ends) > 1 for s, _ in self.conds) or (self.uncond is not None and len(self.uncond.ends) > 1)

    @property
    def splits(self) -> bool:
        """Whether the UNet must run the parts separately (uneven lengths without padding, or AND / a weight)."""
        if len(self.conds) > 1 or self.conds[0][1] != 1.0:
            return True
        return self.filler is None and self.uncond is not None and self.uncond.length != self.conds[0][0].length

    # the step callback ---------------------------------------------------------------------------
    def tensor_inputs(self) -> list[str]:
        return ["latents", "prompt_embeds", "add_text_embeds"] if self.xl else ["latents", "prompt_embeds"]

    def advance(self, pipe: Any, step: int, kwargs: dict[str, Any]) -> None:
        """After step `step - 1`: put the conditioning of `step` into the callback's kwargs when it changes."""
        before, self.step = self.step, step
        if not self.varies or self._key(before) == self._key(step):
            return
        pos, neg, pos_pooled, neg_pooled = self._pair(step)
        cfg = bool(getattr(pipe, "do_classifier_free_guidance", True))
        embeds = torch.cat([_rows(neg, self.batch), _rows(pos, self.batch)]) if cfg else _rows(pos, self.batch)
        old = kwargs.get("prompt_embeds")
        kwargs["prompt_embeds"] = embeds.to(old.device, old.dtype) if old is not None else embeds
        if self.xl and pos_pooled is not None:
            pooled = torch.cat([_rows(neg_pooled, self.batch), _rows(pos_pooled, self.batch)]) if cfg \
                else _rows(pos_pooled, self.batch)
            old = kwargs.get("add_text_embeds")
            kwargs["add_text_embeds"] = pooled.to(old.device, old.dtype) if old is not None else pooled

    def _key(self, step: int) -> tuple[int, ...]:
        keys = [s.index(step) for s, _ in self.conds]
        return tuple(keys + ([self.uncond.index(step)] if self.uncond is not None else []))

    def callback(self, pipe: Any, inner: Callable[..., Any] | None) -> Callable[..., Any]:
        def on_step(p: Any, i: int, t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            if inner is not None:
                kwargs = inner(p, i, t, kwargs) or kwargs
            self.advance(p, i + 1, kwargs)
            return kwargs
        return on_step

    # separate UNet calls -------------------------------------------------------------------------
    @contextmanager
    def split_unet(self, unet: Any) -> Iterator[None]:
        """While active, a batch [uncond x B, cond x B] runs as separate UNet calls at each part's own length."""
        if not self.splits:
            yield
            return
        had = "forward" in unet.__dict__
        saved = unet.__dict__.get("forward")
        original = unet.forward

        def forward(sample: torch.Tensor, timestep: Any, encoder_hidden_states: torch.Tensor, *args: Any,
                    return_dict: bool = True, **kw: Any) -> Any:
            out = self._split_call(original, sample, timestep, encoder_hidden_states, args, kw)
            if return_dict:
                from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

                return UNet2DConditionOutput(sample=out)
            return (out,)

        unet.forward = forward
        try:
            yield
        finally:
            if had:
                unet.forward = saved
            else:
                del unet.forward

    def _split_call(self, original: Callable[..., Any], sample: torch.Tensor, timestep: Any, ehs: torch.Tensor,
                    args: tuple, kw: dict[str, Any]) -> torch.Tensor:
        n, b = sample.shape[0], self.batch
        cfg = n == 2 * b
        added = kw.get("added_cond_kwargs") or {}
        pooled = added.get("text_embeds")

        def run(part: slice, embeds: torch.Tensor, text_embeds: Any) -> torch.Tensor:
            sub = {k: _take(v, part, n) for k, v in kw.items()}
            if text_embeds is not None:
                sub["added_cond_kwargs"] = {**sub.get("added_cond_kwargs", {}), "text_embeds": text_embeds}
            return original(sample[part], _take(timestep, part, n), embeds, *args, return_dict=False, **sub)[0]

        cond_part = slice(b, n) if cfg else slice(0, n)
        first, _ = self.conds[0]
        out_conds = [run(cond_part, ehs[cond_part, :first.length],
                         pooled[cond_part] if pooled is not None else None)]
        for schedule, _ in self.conds[1:]:
            embeds, extra_pooled = schedule.at(self.step)
            out_conds.append(run(cond_part, _rows(embeds, b).to(ehs), _rows(extra_pooled, b).to(pooled)
                                 if extra_pooled is not None else None))
        if not cfg:
            return out_conds[0]
        length = self.uncond.length if self.uncond is not None else first.length
        out_u = run(slice(0, b), ehs[:b, :length], pooled[:b] if pooled is not None else None)
        if len(out_conds) == 1 and self.conds[0][1] == 1.0:
            return torch.cat([out_u, out_conds[0]])
        # A1111's composable prompts: uncond + sum w_k (cond_k - uncond); the pipeline then applies CFG to it
        combined = out_u.clone()
        for out_c, (_, weight) in zip(out_conds, self.conds):
            combined = combined + weight * (out_c - out_u)
        return torch.cat([out_u, combined])


def _take(value: Any, part: slice, n: int) -> Any:
    if isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape[0] == n:
        return value[part]
    if isinstance(value, dict):
        return {k: _take(v, part, n) for k, v in value.items()}
    if isinstance(value, (list, tuple)):  # ControlNet residuals (down_block_additional_residuals)
        return type(value)(_take(v, part, n) for v in value)
    return value


def call_pipeline(pipe: Any, kwargs: dict[str, Any], *, callback_on_step_end: Any = None, **extra: Any) -> Any:
    """Call a pipeline with kwargs that may carry a ConditioningPlan (swaps per step, split UNet calls)."""
    kwargs = dict(kwargs)
    plan: ConditioningPlan | None = kwargs.pop(PLAN_KEY, None)
    if plan is None:
        return pipe(**kwargs, callback_on_step_end=callback_on_step_end, **extra)
    plan.step = 0
    if plan.varies:
        kwargs["callback_on_step_end_tensor_inputs"] = plan.tensor_inputs()
        callback_on_step_end = plan.callback(pipe, callback_on_step_end)
    with plan.split_unet(pipe.unet):
        return pipe(**kwargs, callback_on_step_end=callback_on_step_end, **extra)


def emphasis_of(params: Any) -> str:
    """The request's emphasis mode as its A1111 name ("Original" when absent)."""
    value = getattr(params, "emphasis", None)
    return str(getattr(value, "value", value) or "Original")


# -- what an engine calls -----------------------------------------------------------------------
def prompt_kwargs(pipe: Any, params: Any, batch: int, *, xl: bool, embeddings: dict[str, int] | None = None,
                  base_steps: int | None = None, field_prefix: str = "") -> dict[str, Any]:
    """The pipeline kwargs that carry `params.prompt` / `params.negative_prompt` as A1111 conditioning.

    `base_steps`: this call is a hires pass after that many base steps (A1111's hires schedule rule).
    Second-order samplers (scheduler order 2: Heun, DPM2) count two model calls a step, as A1111 does."""
    from sdcodex.core.prompt_syntax import split_and

    cond = ClipConditioner(pipe, xl=xl, clip_skip=params.clip_skip, emphasis=emphasis_of(params),
                           embeddings=embeddings)
    order = int(getattr(pipe.scheduler, "order", 1) or 1)
    steps = int(params.steps) * order
    when = dict(steps=steps) if base_steps is None else dict(steps=base_steps * order, hires_steps=steps)
    parts = split_and(params.prompt or "")
    conds = [(build_schedule(cond, text, field=f"{field_prefix}prompt", **when), float(w)) for text, w in parts]
    negative = params.negative_prompt or ""
    zero = xl and not negative and bool(getattr(pipe.config, "force_zeros_for_empty_prompt", False))
    uncond = None if zero else build_schedule(cond, negative, field=f"{field_prefix}negative_prompt", **when)
    filler = None
    if getattr(params, "pad_cond_uncond", False):
        filler = cond.encode([""]).embeds
    plan = ConditioningPlan(conds, uncond, batch, xl, filler=filler)
    return {**plan.pipeline_kwargs(), PLAN_KEY: plan}


def check_prompts(params: Any) -> None:
    """Refuse a prompt (or negative prompt, or hires prompt) longer than the chunk limit, before any model loads.

    Counted with the plain CLIP vocabulary (embedding names count as their words)."""
    from sdcodex.core.prompt_syntax import prompt_schedules, split_and
    from sdcodex.models.tokenizers import clip_tokenizer

    tokens = _counter_tokens(clip_tokenizer())
    emphasis = emphasis_of(params)
    limit = max_chunks()
    texts = [("prompt", params.prompt), ("negative_prompt", params.negative_prompt)]
    hires = getattr(params, "hires", None) or {}
    texts += [(f"hires.{k}", hires.get(k)) for k in ("prompt", "negative_prompt")]
    for name, text in texts:
        if not text:
            continue
        parts = split_and(text) if name.endswith("prompt") and "negative" not in name else [(text, 1.0)]
        for part, _ in parts:
            for _, variant in prompt_schedules(part, max(1, int(params.steps))):
                chunks = tokens.chunk(variant, emphasis)
                if len(chunks.chunks) > limit:
                    raise ValidationError(
                        f"is {len(chunks.chunks)} chunks of 75 tokens long ({chunks.token_count} tokens); the limit "
                        f"is {limit} chunks", field=name, allowed=f"at most {limit * CHUNK_TOKENS} tokens")
