"""Prompt conditioning speed: parsing + chunking a 300-token A1111 prompt (target <= 2 ms), and CLIP encoding
time against the number of 75-token chunks (should grow linearly). Prints medians and ratios of one run.

    .venv/bin/python benchmarks/bench_prompt.py [--repeat 50] [--chunks 1 2 4 8] [--layers 12] [--width 768]

The encoder is a CLIP-L-shaped text model with random weights (built from a config, nothing downloaded);
the tokenizer is the real CLIP vocabulary.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WORDS = ("masterpiece best quality portrait woman red hair green eyes freckles soft light forest background "
         "bokeh cinematic detailed skin film grain autumn leaves golden hour").split()


def prompt_of(tokens: int) -> str:
    """An A1111-style prompt of about `tokens` CLIP tokens: weights, nesting, commas, a BREAK, an edit."""
    parts, k = [], 0
    while len(parts) * 3.3 < tokens:
        w = WORDS[k % len(WORDS)], WORDS[(k + 1) % len(WORDS)]
        parts.append([f"({w[0]} {w[1]}:1.2)", f"(({w[0]}))", f"[{w[1]}]", f"{w[0]} {w[1]}"][k % 4])
        k += 1
    parts.insert(len(parts) // 2, "BREAK [red:blue:0.5]")
    return ", ".join(parts)


class _Pipe:
    """Just what ClipConditioner reads from a pipeline."""

    def __init__(self, tokenizer, encoder) -> None:
        self.tokenizer = tokenizer
        self.text_encoder = encoder


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=50)
    ap.add_argument("--chunks", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--width", type=int, default=768)
    args = ap.parse_args()

    import torch
    from transformers import CLIPTextConfig, CLIPTextModel

    from sdcodex.core.prompt_syntax import parse_attention, prompt_schedules
    from sdcodex.engines.prompt_clip import ClipConditioner, ClipTokens
    from sdcodex.models.tokenizers import clip_tokenizer

    tok = clip_tokenizer()
    prompt = prompt_of(345)
    # -- parse + chunk, cold (a new prompt each time: no segment cache) -------------------------
    ClipTokens(tok).chunk(prompt)  # warm imports
    sched_t, chunk_t, attn_t = [], [], []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        texts = [t for _, t in prompt_schedules(prompt, 20)]
        t1 = time.perf_counter()
        tokens = ClipTokens(tok)
        chunked = [tokens.chunk(text) for text in texts]  # attention parse + tokenize + chunk, per text
        t2 = time.perf_counter()
        for text in texts:  # the attention parse alone, for the record (already inside chunk above)
            parse_attention(text)
        t3 = time.perf_counter()
        sched_t.append(t1 - t0)
        chunk_t.append(t2 - t1)
        attn_t.append(t3 - t2)
    n_tokens = max(c.token_count for c in chunked)
    totals = [a + b for a, b in zip(sched_t, chunk_t)]
    total, best = statistics.median(totals), min(totals)
    print(f"prompt: {n_tokens} tokens, {len(chunked[0].chunks)} chunks, {len(texts)} scheduled texts")
    print(f"schedules: {statistics.median(sched_t) * 1e3:.3f} ms  parse attention + tokenize + chunk: "
          f"{statistics.median(chunk_t) * 1e3:.3f} ms (of which attention parse {statistics.median(attn_t) * 1e3:.3f} ms)"
          f"  total: {total * 1e3:.3f} ms  (target 2 ms: ratio {total / 2e-3:.2f}); best of {args.repeat}: "
          f"{best * 1e3:.3f} ms (ratio {best / 2e-3:.2f})")

    # -- encoding vs chunks ---------------------------------------------------------------------
    torch.manual_seed(0)
    config = CLIPTextConfig(vocab_size=49408, hidden_size=args.width, intermediate_size=args.width * 4,
                            num_hidden_layers=args.layers, num_attention_heads=max(1, args.width // 64),
                            max_position_embeddings=77, hidden_act="quick_gelu", eos_token_id=2)
    encoder = CLIPTextModel(config).eval()
    pipe = _Pipe(tok, encoder)
    base = None
    print(f"\nCLIP text model {args.layers} layers x {args.width} (random weights), CPU threads "
          f"{torch.get_num_threads()}")
    print("| chunks | median s | s per chunk | ratio to chunks x 1-chunk time |")
    print("|---|---|---|---|")
    reps = max(3, args.repeat // 10)
    for n in args.chunks:
        text = " ".join(["cat"] * (75 * n - 5))  # one token a word
        times = []
        for _ in range(reps):
            cond = ClipConditioner(pipe, xl=False)  # no cache between repeats
            t0 = time.perf_counter()
            with torch.inference_mode():
                out = cond.encode([text])
            times.append(time.perf_counter() - t0)
        assert out.embeds.shape[1] == 77 * n, out.embeds.shape
        med = statistics.median(times)
        base = base or med
        print(f"| {n} | {med:.4f} | {med / n:.4f} | {med / (n * base):.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
