"""The Script dropdown and its X/Y/Z plot panel on txt2img and img2img (A1111's script UI): three axes (type and
values in A1111's syntax), Draw legend, Keep -1 for seeds, Include Sub Images, Include Sub Grids, grid margins.
`request_part()` turns the panel's values into the request's `xyz` (plain values in, a dict out)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from sdcodex.core.enums import Task
from sdcodex.core.xyz import SCRIPT_TITLE, axis_kinds, label_of

TASKS = (Task.TXT2IMG, Task.IMG2IMG)
NONE = "None"
#: the axes A1111 lists first; every other request key that makes an axis follows, by name
FIRST = ("nothing", "seed", "steps", "hires.steps", "cfg_scale", "prompt_sr", "prompt_order", "sampler",
         "hires.sampler", "scheduler", "model", "clip_skip", "denoising_strength", "hires.denoising_strength",
         "hires.upscaler", "vae", "size", "width", "height", "distilled_cfg_scale", "flow_shift")


def axis_choices(task: Task) -> list[tuple[str, str]]:
    """(label, axis kind) of every axis the task takes, A1111's common ones first."""
    kinds = axis_kinds(task.value)
    ordered = [k for k in FIRST if k in kinds] + sorted(k for k in kinds if k not in FIRST)
    return [(label_of(k) if k in FIRST else k, k) for k in ordered]


@dataclass
class XyzPanel:
    script: Any
    group: Any
    axes: dict[str, tuple[Any, Any]]  # "x" -> (type dropdown, values textbox)
    options: dict[str, Any]           # xyz option key -> component
    fills: dict[str, Any]             # "x" -> the 📒 button that fills the values with every choice

    @property
    def components(self) -> list[Any]:
        return [self.script] + [c for pair in self.axes.values() for c in pair] + list(self.options.values())


def build(task: Task) -> XyzPanel:
    """Lay out the panel (inside a gr.Blocks context); hidden until the Script dropdown picks the plot."""
    p = f"codex-{task.value}-xyz"
    choices = axis_choices(task)
    script = gr.Dropdown([NONE, SCRIPT_TITLE], value=NONE, label="Script", elem_id=f"codex-{task.value}-script")
    axes: dict[str, tuple[Any, Any]] = {}
    fills: dict[str, Any] = {}
    with gr.Group(visible=False, elem_id=p) as group:
        for axis, default in (("x", "seed"), ("y", "nothing"), ("z", "nothing")):
            with gr.Row():
                kind = gr.Dropdown(choices, value=default, label=f"{axis.upper()} type", elem_id=f"{p}-{axis}-type",
                                   scale=1)
                values = gr.Textbox(label=f"{axis.upper()} values", elem_id=f"{p}-{axis}-values", scale=3,
                                    placeholder="1-5, 1-10 (+2), 0.5-1.5 [5], or a, \"b, c\", d")
                fills[axis] = gr.Button("📒", elem_id=f"{p}-{axis}-fill", scale=0, min_width=40)
            axes[axis] = (kind, values)
        with gr.Row():
            options = {
                "draw_legend": gr.Checkbox(label="Draw legend", value=True, elem_id=f"{p}-draw-legend"),
                "keep_random_seeds": gr.Checkbox(label="Keep -1 for seeds", value=False, elem_id=f"{p}-keep-seeds"),
                "include_sub_images": gr.Checkbox(label="Include Sub Images", value=False,
                                                  elem_id=f"{p}-sub-images"),
                "include_sub_grids": gr.Checkbox(label="Include Sub Grids", value=False, elem_id=f"{p}-sub-grids"),
            }
        options["margin_size"] = gr.Slider(0, 500, value=0, step=2, label="Grid margins (px)",
                                           elem_id=f"{p}-margin")
    script.change(lambda name: gr.update(visible=name == SCRIPT_TITLE), inputs=script, outputs=group,
                  show_progress="hidden", queue=False)
    return XyzPanel(script, group, axes, options, fills)


def choices_for(kind: str, engine: str | None, models: Any) -> list[str] | None:
    """Every value an axis can take, for the 📒 button (A1111's "fill"): checkpoints of the engine, samplers,
    schedule types, VAEs, hires upscalers; None for an axis without a fixed list."""
    from . import caps, layout

    if kind == "model":
        return layout.checkpoint_names(models, engine)
    if kind in ("sampler", "hires.sampler"):
        return caps.samplers_for(engine)
    if kind in ("scheduler", "hires.scheduler"):
        return caps.schedulers()
    if kind == "vae":
        return layout.vae_names(models)
    if kind == "hires.upscaler":
        return layout.hires_upscaler_names(models)
    return None


def as_text(values: list[str]) -> str:
    """Values as one A1111 list (CSV: a value holding a comma is quoted)."""
    import csv
    import io

    out = io.StringIO()
    csv.writer(out).writerow(values)
    return out.getvalue().strip()


def wire(panel: XyzPanel | None, engine: Any, models: Any) -> None:
    """The 📒 buttons: fill an axis' values with every choice of its type (the current text when it has none)."""
    if panel is None:
        return
    for axis, button in panel.fills.items():
        kind, values = panel.axes[axis]

        def fill(kind_value: str, current: str, engine_key: str) -> str:
            found = choices_for(kind_value, engine_key, models)
            return as_text(found) if found else current

        button.click(fill, inputs=[kind, values, engine], outputs=values, show_progress="hidden", queue=False)


def request_part(panel: XyzPanel | None, data: dict[Any, Any]) -> dict[str, Any] | None:
    """The request's `xyz` from the panel's values (None when no script is chosen). Axis values go as typed;
    the strict request names a bad one (`xyz.x.values`)."""
    if panel is None or data.get(panel.script) != SCRIPT_TITLE:
        return None
    out: dict[str, Any] = {}
    for axis, (kind, values) in panel.axes.items():
        chosen = data.get(kind) or "nothing"
        if chosen != "nothing":
            out[axis] = {"type": chosen, "values": str(data.get(values) or "")}
    for key, comp in panel.options.items():
        value = data.get(comp)
        out[key] = int(value or 0) if key == "margin_size" else bool(value)
    return out
