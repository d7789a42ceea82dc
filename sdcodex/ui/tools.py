"""Small A1111 conveniences of a generation tab: ⇅ swaps width and height, an aspect-ratio choice re-shapes the
size (same area, the engine's size multiple), 🎲 sets a random seed (-1), ↙ reads generation parameters from the
prompt box (pasted infotext) or, when it is empty, from the last result; and img2img's batch from several uploads
(one job per image, through the same queue)."""
from __future__ import annotations

import logging
import math
from typing import Any

import gradio as gr

from sdcodex.core.enums import Task
from sdcodex.core.errors import CodexError

from . import caps

log = logging.getLogger("sdcodex.ui")

ASPECTS = ("1:1", "4:3", "3:2", "16:9", "21:9", "3:4", "2:3", "9:16")


def swap(width: Any, height: Any) -> tuple[Any, Any]:
    return height, width


def aspect_size(engine: str | None, ratio: str, width: Any, height: Any) -> tuple[int, int]:
    """(width, height) with the given ratio and about the area of the current size, on the engine's size multiple
    and inside its range (a blank size uses the engine's minimum area of 512x512)."""
    c = caps.caps(engine)
    multiple, lo, hi = c["size_multiple"], c["min_size"], c["max_size"]
    a, b = (float(x) for x in ratio.split(":"))
    area = float(width) * float(height) if width and height else 512.0 * 512.0
    w = math.sqrt(area * a / b)
    h = w * b / a

    def snap(v: float) -> int:
        return int(min(max(round(v / multiple) * multiple, lo), hi))

    return snap(w), snap(h)


def params_from_text(text: str, task: Task) -> dict[str, Any]:
    """Field values from A1111 infotext (what ↙ fills); {} when the text holds no parameters line."""
    from sdcodex.media.infotext import infotext_to_request, parse_infotext

    from .request import request_to_fields

    if not text or not text.strip():
        return {}
    parsed = parse_infotext(text)
    if len(parsed) <= 2:  # only Prompt / Negative prompt: plain text, not infotext
        return {}
    request = infotext_to_request(parsed)
    request.pop("extra", None)
    request.pop("version", None)
    return request_to_fields(request, task)


def add_buttons(task: Task, keys: list[str], prefix: str) -> dict[str, Any]:
    """The tool buttons a tab shows (inside the Blocks context, right after its size row)."""
    tools: dict[str, Any] = {}
    if task in caps.MODEL_FREE:
        return tools
    with gr.Row(elem_classes=["codex-tools"]):
        if "width" in keys and "height" in keys:
            tools["swap"] = gr.Button("⇅", size="sm", elem_id=f"{prefix}-swap", scale=0, min_width=40)
            tools["aspect"] = gr.Dropdown(list(ASPECTS), value=None, label="Aspect ratio (keeps the area)",
                                          elem_id=f"{prefix}-aspect", scale=1)
        if "seed" in keys:
            tools["random_seed"] = gr.Button("🎲", size="sm", elem_id=f"{prefix}-random-seed", scale=0,
                                             min_width=40)
        if "prompt" in keys:
            tools["read_params"] = gr.Button("↙", size="sm", elem_id=f"{prefix}-read-params", scale=0, min_width=40)
    return tools


def wire_tools(tab: Any, quick: Any) -> None:
    """Attach the tool buttons of one tab (see add_buttons)."""
    tools, fields = tab.tools, tab.fields
    if "swap" in tools:
        tools["swap"].click(swap, inputs=[fields["width"], fields["height"]],
                            outputs=[fields["width"], fields["height"]], show_progress="hidden", queue=False)
        tools["aspect"].input(lambda e, r, w, h: aspect_size(e, r, w, h) if r else (gr.skip(), gr.skip()),
                              inputs=[quick.engine, tools["aspect"], fields["width"], fields["height"]],
                              outputs=[fields["width"], fields["height"]], show_progress="hidden", queue=False)
    if "random_seed" in tools:
        tools["random_seed"].click(lambda: -1, None, fields["seed"], show_progress="hidden", queue=False)
    if "read_params" in tools:
        keys = tab.field_keys

        def read_params(prompt: str, result: dict[str, Any]) -> list[Any]:
            text = prompt or ""
            if not text.strip():  # an empty prompt box: the last generation's parameters, as A1111
                from .tabs import media_info

                images = (result or {}).get("images") or (result or {}).get("videos") or []
                text = media_info(images[(result or {}).get("selected", 0) % len(images)])[0] if images else ""
            values = params_from_text(text, tab.task)
            if not values:
                return [gr.skip()] * len(keys)
            return [gr.update(value=values[k]) if k in values else gr.skip() for k in keys]

        tools["read_params"].click(read_params, inputs=[fields["prompt"], tab.result], outputs=tab.field_components,
                                   show_progress="hidden")


def add_batch(task: Task, prefix: str) -> dict[str, Any]:
    """img2img's batch from several uploads: a file field and its own Generate button."""
    if task is not Task.IMG2IMG:
        return {}
    with gr.Accordion("Batch: several images, one job each", open=False, elem_id=f"{prefix}-batch-box"):
        files = gr.File(label="Images for the batch", file_count="multiple", file_types=["image"],
                        type="filepath", elem_id=f"{prefix}-batch-files")
        button = gr.Button("Generate batch", elem_id=f"{prefix}-batch-generate")
    return {"batch_files": files, "batch_generate": button}


def wire_batch(tab: Any, quick: Any, jobs: Any) -> None:
    """Each uploaded image runs as its own img2img job with the tab's other values; the gallery collects all."""
    if "batch_generate" not in tab.tools:
        return
    from .fields import field_label
    from .progress import Status, error_html, progress_html
    from .tabs import media_info, tab_request
    from .uploads import check_upload

    comps = set(quick.components) | set(tab.field_components) | {tab.tools["batch_files"]}

    def run_batch(data: dict[Any, Any], request: gr.Request):
        from PIL import Image

        paths = [getattr(p, "name", p) for p in (data.get(tab.tools["batch_files"]) or [])]
        if not paths:
            yield {tab.error: error_html({"field": "Images for the batch", "message": "add one or more images"})}
            return
        images, infos = [], []
        for i, path in enumerate(paths):
            bad = check_upload(path)
            if bad is not None:
                yield {tab.error: error_html({"field": f"Images for the batch, file {i + 1}",
                                              "message": bad.reason})}
                return
            try:
                data_i = dict(data)
                with Image.open(path) as opened:
                    data_i[tab.image] = opened.convert("RGB")
                req = tab_request(tab, quick, data_i, encode=True)
                job = jobs.submit(req, session=getattr(request, "session_hash", None), tab=tab.task.value)
            except CodexError as exc:
                yield {tab.error: error_html(exc, field_label)}
                return
            status = Status(job.id)
            yield {tab.error: "", tab.progress: progress_html(status)}
            for status in jobs.follow(job.id):
                yield {tab.progress: progress_html(status)}
            job = jobs.job(job.id)
            done, _videos = jobs.outputs(job) if job is not None else ([], [])
            images += done
            infos += [media_info(p)[0] for p in done]
            if status.state != "done":
                break
        yield {tab.progress: progress_html(status), tab.gallery: images, tab.infotext: infos[0] if infos else "",
               tab.result: {"images": images, "videos": [], "infotexts": infos, "seeds": [], "selected": 0}}

    tab.tools["batch_generate"].click(run_batch, inputs=comps,
                                      outputs=[tab.error, tab.progress, tab.gallery, tab.infotext, tab.result],
                                      show_progress="hidden", concurrency_limit=None)
