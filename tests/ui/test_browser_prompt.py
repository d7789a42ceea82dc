"""The prompt boxes' token counters in a real browser: `used/75`, growing by chunks as A1111's, counted by the
engine's own CLIP chunker (attention syntax and BREAK included); no counter for an engine without CLIP chunks."""
from __future__ import annotations

from .test_browser import choose, set_value


def counter(page, elem_id: str, expected: str) -> None:
    page.wait_for_function(
        f"(document.querySelector('#{elem_id}') || {{}}).innerText?.trim() === {expected!r}", timeout=30_000)


def test_token_counters_grow_by_chunks(page):
    set_value(page, "codex-txt2img-prompt", "a (red:1.3) fox")
    counter(page, "codex-txt2img-prompt-tokens", "3/75")
    set_value(page, "codex-txt2img-prompt", " ".join(["cat"] * 80))
    counter(page, "codex-txt2img-prompt-tokens", "80/150")
    set_value(page, "codex-txt2img-prompt", "a fox BREAK snow")  # BREAK closes the first chunk: 75 + 1
    counter(page, "codex-txt2img-prompt-tokens", "76/150")
    set_value(page, "codex-txt2img-negative-prompt", "blurry, ugly")
    counter(page, "codex-txt2img-negative-prompt-tokens", "3/75")
    choose(page, "codex-engine", "FLUX.1")  # T5: no 75-token chunks, no counter
    counter(page, "codex-txt2img-prompt-tokens", "")
