"""Styles taken back out of an image's prompts when it is sent to a tab (A1111's "apply if any"), without a browser."""
from __future__ import annotations

from sdcodex.core.enums import Task
from sdcodex.core.styles import Style, apply_styles
from sdcodex.ui.pnginfo import send_updates
from sdcodex.ui.styles_view import extract_fields

STYLES = {"oil": Style("oil", "oil painting of {prompt}", "blurry"), "hq": Style("hq", "best quality", "")}


def test_send_to_takes_styles_back_out():
    prompt, negative = apply_styles("a fox", "ugly", [STYLES["oil"], STYLES["hq"]])
    values = extract_fields({"prompt": prompt, "negative_prompt": negative, "steps": 3}, STYLES)
    assert values["prompt"] == "a fox" and values["negative_prompt"] == "ugly" and values["steps"] == 3
    # here both orders give the same text; A1111's search returns the one it peels first, re-applied it is identical
    assert sorted(values["styles"]) == ["hq", "oil"]
    assert apply_styles("a fox", "ugly", [STYLES[n] for n in values["styles"]]) == (prompt, negative)
    assert extract_fields({"prompt": "a fox"}, STYLES) == {"prompt": "a fox"}  # nothing to take out
    state = {"request": {"task": "txt2img", "prompt": prompt, "negative_prompt": negative, "steps": 3}}
    keys = ["prompt", "negative_prompt", "styles", "steps"]
    updates = send_updates(state, Task.TXT2IMG, keys, False, styles=STYLES)
    assert [u.get("value") for u in updates] == ["a fox", "ugly", values["styles"], 3]
    plain = send_updates(state, Task.TXT2IMG, keys, False)  # no styles known: the prompts as stored
    assert plain[0]["value"] == prompt
