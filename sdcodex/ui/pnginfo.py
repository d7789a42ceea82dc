"""PNG Info: read the generation parameters back from an image or a video (our request payload, else the
A1111 infotext) and "send to" a tab, which fills that tab's fields (and its image, for a still)."""
from __future__ import annotations

import json
from typing import Any, Callable

import gradio as gr

from sdcodex.core.enums import Task
from sdcodex.core.errors import CodexError

from .progress import error_html
from .request import request_to_fields

TARGETS = ("txt2img", "img2img", "inpaint", "upscale", "txt2vid", "img2vid")
STILLS = ("png", "jpeg", "webp", "gif")


def read(path: str | None) -> dict[str, Any]:
    """{"parameters", "request", "summary", "error", "path", "still"} for an uploaded file."""
    if not path:
        return {}
    from sdcodex.media.infotext import infotext_to_request
    from sdcodex.media.reader import read_info

    try:
        info = read_info(path)
    except CodexError as exc:
        return {"error": exc, "path": path}
    request = info.get("request")
    if not request and info.get("parsed"):
        request = infotext_to_request(info["parsed"])
        request.pop("extra", None)
        request.pop("version", None)
    summary = f"**{info['format'].upper()}**, {info['width']}×{info['height']}"
    if info.get("frames") and info["frames"] > 1:
        summary += f", {info['frames']} frames"
        if info.get("fps"):
            summary += f" at {info['fps']:g} fps ({info['frames'] / info['fps']:.2f} s)"
    if not info.get("parameters") and not info.get("request"):
        summary += " — no generation parameters found in this file"
    still = info["format"] in STILLS and (info.get("frames") or 1) == 1
    return {"parameters": info.get("parameters") or "", "request": request or {}, "summary": summary,
            "path": path, "still": still}


def show(path: str | None) -> tuple[str, str, str, str, dict[str, Any]]:
    """(infotext, request JSON, summary, error html, state) for the PNG Info tab."""
    data = read(path)
    if data.get("error") is not None:
        return "", "{}", "", error_html(data["error"]), {}
    if not data:
        return "", "{}", "", "", {}
    return (data["parameters"], json.dumps(data["request"], indent=2, ensure_ascii=False), data["summary"], "",
            {"request": data["request"], "path": data["path"], "still": data["still"]})


def send_updates(state: dict[str, Any], target: Task, field_keys: list[str], has_image: bool,
                 styles: dict[str, Any] | None = None) -> list[Any]:
    """Updates for the target tab: its image (when it takes one and the file is a still), then its fields. With
    `styles` (name -> Style), the styles the prompts were expanded with are taken back out into the picker."""
    values = request_to_fields((state or {}).get("request") or {}, target)
    if styles and "styles" in field_keys:
        from .styles_view import extract_fields

        values = extract_fields(values, styles)
    out: list[Any] = []
    if has_image:
        out.append(state["path"] if state and state.get("still") else gr.skip())
    out += [gr.update(value=values[k]) if k in values else gr.skip() for k in field_keys]
    return out


def wire_send(buttons: dict[str, Any], state: Any, gen_tabs: dict[str, Any], tabs: Any,
              styles: Callable[[], dict[str, Any]] | None = None) -> None:
    """"Send to <tab>" buttons (PNG Info, the outputs browser): each fills its tab from `state` (a `show` state:
    request, path, still) — the tab's image for a still, its fields — and opens that tab. `styles()` gives the
    prompt styles to take back out of the prompts (see send_updates)."""
    for name, button in buttons.items():
        target = gen_tabs.get(name)
        if target is None:
            continue
        has_image = target.image is not None
        outputs = ([target.image] if has_image else []) + target.field_components + [tabs]

        def send(value: dict[str, Any], _t: Any = target, _img: bool = has_image) -> list[Any]:
            known = styles() if styles is not None else None
            return (send_updates(value, _t.task, _t.field_keys, _img, styles=known)
                    + [gr.Tabs(selected=_t.task.value)])

        button.click(send, inputs=state, outputs=outputs, show_progress="hidden")
