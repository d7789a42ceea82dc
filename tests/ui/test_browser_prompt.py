"""The prompt boxes in a real browser: Ctrl+Up / Ctrl+Down change the weight of the selected words, of the
(...) block or of the word under the caret, as A1111's edit-attention does (steps of 0.1, `(text:w)`, the
brackets removed at 1.0), and the request the page builds carries the edited text."""
from __future__ import annotations

from .test_browser import open_json


def caret(box, start: int, end: int | None = None) -> None:
    box.evaluate("(el, r) => { el.focus(); el.setSelectionRange(r[0], r[1]); }", [start, start if end is None else end])


def test_ctrl_up_down_edit_the_attention_weight(page):
    box = page.locator("#codex-txt2img-prompt textarea")
    box.fill("a red fox, snow")
    caret(box, 7)  # inside "fox"
    box.press("Control+ArrowUp")
    assert box.input_value() == "a red (fox:1.1), snow"
    assert box.evaluate("el => el.value.slice(el.selectionStart, el.selectionEnd)") == "fox"
    box.press("Control+ArrowUp")
    assert box.input_value() == "a red (fox:1.2), snow"
    box.press("Control+ArrowDown")
    box.press("Control+ArrowDown")
    assert box.input_value() == "a red fox, snow"  # back at 1.0: no brackets
    caret(box, 2, 9)  # the selection "red fox"
    box.press("Control+ArrowDown")
    assert box.input_value() == "a (red fox:0.9), snow"
    caret(box, 5)  # the caret inside the (...) block moves the block's weight
    box.press("Control+ArrowDown")
    assert box.input_value() == "a (red fox:0.8), snow"
    for _ in range(12):
        box.press("Control+ArrowUp")
    assert box.input_value() == "a (red fox:2.0), snow"  # whole numbers keep one decimal, as A1111

    negative = page.locator("#codex-txt2img-negative-prompt textarea")
    negative.fill("blurry")
    caret(negative, 6)
    negative.press("Control+ArrowDown")
    assert negative.input_value() == "(blurry:0.9)"
    open_json(page, "txt2img")
    page.wait_for_function("document.querySelector('#codex-txt2img-json').innerText.includes('(blurry:0.9)')")
    assert "a (red fox:2.0), snow" in page.inner_text("#codex-txt2img-json")
    assert not page.codex_errors
