"""The ControlNet panel on txt2img, img2img and inpaint (A1111's extension panel, kept small): a few units in an
accordion, each with its image, model, preprocessor (module), weight, guidance start/end, control mode, resize mode
and pixel perfect. `request_part()` turns the enabled units into the request's `controls`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from sdcodex.core.enums import Task
from sdcodex.core.request import CONTROL_MODE_NAMES, CONTROL_RESIZE_NAMES, CONTROL_WEIGHT_MAX

TASKS = (Task.TXT2IMG, Task.IMG2IMG, Task.INPAINT)
UNITS = 3  # units shown (a request may carry up to core.request.MAX_CONTROLS)
PLACEHOLDER = "<controls[{i}].image: {w}x{h}>"


@dataclass
class ControlPanel:
    refresh: Any
    units: list[dict[str, Any]] = field(default_factory=list)  # key -> component, per unit

    @property
    def components(self) -> list[Any]:
        return [c for unit in self.units for c in unit.values()]


def module_names() -> list[str]:
    """The preprocessors (`none` first), through the runtime the faces share."""
    from sdcodex.runtime import preprocessor_modules

    return preprocessor_modules()[0]


def build(task: Task) -> ControlPanel:
    """Lay out the panel (inside a gr.Blocks context); the model lists fill in with `wire`."""
    p = f"codex-{task.value}-controlnet"
    modules = module_names()
    units: list[dict[str, Any]] = []
    with gr.Accordion("ControlNet", open=False, elem_id=p):
        refresh = gr.Button("↻ ControlNet models", size="sm", elem_id=f"{p}-refresh")
        for i in range(UNITS):
            with gr.Accordion(f"ControlNet Unit {i}", open=i == 0, elem_id=f"{p}-unit-{i}"):
                unit = {"enabled": gr.Checkbox(label="Enable", value=False, elem_id=f"{p}-{i}-enabled"),
                        "image": gr.Image(label="Control image", type="pil", height=200, elem_id=f"{p}-{i}-image",
                                          sources=["upload", "clipboard"])}
                with gr.Row():
                    unit["model"] = gr.Dropdown([], label="Model", allow_custom_value=True, elem_id=f"{p}-{i}-model")
                    unit["module"] = gr.Dropdown(modules, value="none", label="Preprocessor",
                                                 elem_id=f"{p}-{i}-module")
                with gr.Row():
                    unit["weight"] = gr.Slider(0.0, CONTROL_WEIGHT_MAX, value=1.0, step=0.05, label="Control Weight",
                                               elem_id=f"{p}-{i}-weight")
                    unit["guidance_start"] = gr.Slider(0.0, 1.0, value=0.0, step=0.01, label="Starting Control Step",
                                                       elem_id=f"{p}-{i}-start")
                    unit["guidance_end"] = gr.Slider(0.0, 1.0, value=1.0, step=0.01, label="Ending Control Step",
                                                     elem_id=f"{p}-{i}-end")
                unit["control_mode"] = gr.Radio([(v, k) for k, v in CONTROL_MODE_NAMES.items()], value="balanced",
                                                label="Control Mode", elem_id=f"{p}-{i}-mode")
                with gr.Row():
                    unit["resize_mode"] = gr.Radio([(v, k) for k, v in CONTROL_RESIZE_NAMES.items()],
                                                   value="crop_and_resize", label="Resize Mode",
                                                   elem_id=f"{p}-{i}-resize")
                    unit["pixel_perfect"] = gr.Checkbox(label="Pixel Perfect", value=False,
                                                        elem_id=f"{p}-{i}-pixel-perfect")
            units.append(unit)
    return ControlPanel(refresh, units)


def model_names(models: Any) -> list[str]:
    try:
        return [e.name for e in models.entries(kind="controlnet")]
    except Exception:  # noqa: BLE001 - a panel without choices still takes a typed name
        return []


def wire(tabs: dict[str, Any], models: Any) -> None:
    """Fill each panel's model lists when its tab opens and on its ↻ button (rescanning the models folder)."""
    for tab in tabs.values():
        panel = getattr(tab, "controlnet", None)
        if panel is None:
            continue
        outputs = [unit["model"] for unit in panel.units]

        def fill(rescan: bool = False, _n: int = len(outputs)) -> list[Any]:
            if rescan and hasattr(models, "refresh"):
                models.refresh()
            names = model_names(models)
            return [gr.update(choices=names)] * _n

        panel.refresh.click(lambda: fill(True), None, outputs, show_progress="hidden")
        tab.tab.select(lambda: fill(False), None, outputs, show_progress="hidden", queue=False)


def request_part(panel: ControlPanel | None, data: dict[Any, Any], *, encode: bool) -> list[dict[str, Any]]:
    """The request's `controls` from the enabled units (images as base64 when `encode`, else a placeholder)."""
    if panel is None:
        return []
    out = []
    for i, unit in enumerate(panel.units):
        if not data.get(unit["enabled"]):
            continue
        image = data.get(unit["image"])
        if image is None:
            value: Any = None
        elif encode:
            from .request import encode_png

            value = encode_png(image.convert("RGB"))
        else:
            value = PLACEHOLDER.format(i=len(out), w=image.size[0], h=image.size[1])
        entry = {"image": value, "model": data.get(unit["model"]) or "",
                 "module": data.get(unit["module"]) or "none"}
        for key in ("weight", "guidance_start", "guidance_end"):
            entry[key] = float(data.get(unit[key]) if data.get(unit[key]) is not None else 0.0)
        entry["control_mode"] = data.get(unit["control_mode"]) or "balanced"
        entry["resize_mode"] = data.get(unit["resize_mode"]) or "crop_and_resize"
        entry["pixel_perfect"] = bool(data.get(unit["pixel_perfect"]))
        out.append(entry)
    return out


__all__ = ["build", "wire", "request_part", "ControlPanel", "TASKS"]
