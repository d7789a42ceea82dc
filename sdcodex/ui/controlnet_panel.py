"""The ControlNet panel on txt2img, img2img and inpaint (A1111's extension panel, kept small): a few units in an
accordion, each with its image, model, preprocessor (module), weight, guidance start/end, control mode, resize mode,
pixel perfect and the preprocessor's own sliders (resolution, thresholds: shown for the modules that have them).
💥 runs the unit's preprocessor on its image and shows the map without generating, through the same service call
as `POST /controlnet/detect`; its errors show beside the unit. `request_part()` turns the enabled units into the
request's `controls`."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import gradio as gr

from sdcodex.core.enums import Task
from sdcodex.core.request import CONTROL_MODE_NAMES, CONTROL_RESIZE_NAMES, CONTROL_WEIGHT_MAX

from .units import Field, UnitsPanel, build_unit, enabled_field, image_field, image_value, read_unit, wire_models

TASKS = (Task.TXT2IMG, Task.IMG2IMG, Task.INPAINT)
UNITS = 3  # units shown (a request may carry up to core.request.MAX_CONTROLS)
PLACEHOLDER = "<controls[{i}].image: {w}x{h}>"
SLIDER_KEYS = ("processor_res", "threshold_a", "threshold_b")  # in the order of the extension's `sliders` list

FIELDS = (
    enabled_field(),
    image_field("Control image (module none: the image is the control map)"),
    Field("model", gr.Dropdown, "Model", "model", row=1, missing="", models="controlnet"),
    Field("module", gr.Dropdown, "Preprocessor", "module", row=1, value="none", missing="none"),
    Field("weight", gr.Slider, "Control Weight", "weight", row=2, value=1.0, missing=0.0, cast=float,
          kwargs={"minimum": 0.0, "maximum": CONTROL_WEIGHT_MAX, "step": 0.05}),
    Field("guidance_start", gr.Slider, "Starting Control Step", "start", row=2, value=0.0, missing=0.0, cast=float,
          kwargs={"minimum": 0.0, "maximum": 1.0, "step": 0.01}),
    Field("guidance_end", gr.Slider, "Ending Control Step", "end", row=2, value=1.0, missing=0.0, cast=float,
          kwargs={"minimum": 0.0, "maximum": 1.0, "step": 0.01}),
    Field("control_mode", gr.Radio, "Control Mode", "mode", value="balanced", missing="balanced",
          kwargs={"choices": [(v, k) for k, v in CONTROL_MODE_NAMES.items()]}),
    Field("resize_mode", gr.Radio, "Resize Mode", "resize", row=3, value="crop_and_resize", missing="crop_and_resize",
          kwargs={"choices": [(v, k) for k, v in CONTROL_RESIZE_NAMES.items()]}),
    Field("pixel_perfect", gr.Checkbox, "Pixel Perfect", "pixel-perfect", row=3, value=False, missing=False,
          cast=bool),
    # the module's sliders: range, label and default follow the module (`slider_updates`); hidden when it has none
    Field("processor_res", gr.Slider, "Preprocessor Resolution", "processor-res", row=4, value=512, cast=int,
          kwargs={"minimum": 64, "maximum": 2048, "step": 1, "visible": False}),
    Field("threshold_a", gr.Slider, "Threshold A", "threshold-a", row=4, value=100, cast=float,
          kwargs={"minimum": 0, "maximum": 255, "step": 1, "visible": False}),
    Field("threshold_b", gr.Slider, "Threshold B", "threshold-b", row=4, value=200, cast=float,
          kwargs={"minimum": 0, "maximum": 255, "step": 1, "visible": False}),
)


class ControlPanel(UnitsPanel):
    """The units (field key -> component) plus, per unit, the preview's button, map and message (`previews`)."""

    def __init__(self, refresh: Any, units: list[dict[str, Any]], previews: list[dict[str, Any]]) -> None:
        super().__init__(refresh, FIELDS, units)
        self.previews = previews


def module_names() -> list[str]:
    """The preprocessors (`none` first), through the runtime the faces share."""
    from sdcodex.runtime import preprocessor_modules

    return preprocessor_modules()[0]


def module_sliders(module: str | None) -> list[dict[str, Any] | None]:
    """The module's sliders as `/controlnet/module_list` gives them: [resolution, threshold_a, threshold_b], each a
    dict (name, value, min, max, maybe step) or None; [None] * 3 for an unknown module."""
    from sdcodex.runtime import preprocessor_modules

    details = preprocessor_modules()[1]
    if module not in details:  # a UI alias (softedge_hed for hed)
        details = preprocessor_modules(alias_names=True)[1]
    sliders = list((details.get(module) or {}).get("sliders") or [])
    return (sliders + [None] * 3)[:3]


def _step(slider: dict[str, Any]) -> float:
    if slider.get("step"):
        return float(slider["step"])
    whole = all(float(slider[k]).is_integer() for k in ("value", "min", "max"))
    return 1 if whole else 0.01


def slider_updates(module: str | None) -> list[Any]:
    """gr.update()s for the unit's resolution / threshold sliders when its module changes: the module's label,
    range and default, hidden where the module has no such slider."""
    out = []
    for slider in module_sliders(module):
        if slider is None:
            out.append(gr.update(visible=False))
        else:
            out.append(gr.update(visible=True, label=slider["name"], minimum=slider["min"], maximum=slider["max"],
                                 value=slider["value"], step=_step(slider)))
    return out


def build(task: Task) -> ControlPanel:
    """Lay out the panel (inside a gr.Blocks context); the model lists fill in with `wire`."""
    p = f"codex-{task.value}-controlnet"
    modules = module_names()
    fields = tuple(replace(f, kwargs={**f.kwargs, "choices": modules}) if f.key == "module" else f for f in FIELDS)
    units: list[dict[str, Any]] = []
    previews: list[dict[str, Any]] = []
    with gr.Accordion("ControlNet", open=False, elem_id=p):
        refresh = gr.Button("↻ ControlNet models", size="sm", elem_id=f"{p}-refresh")
        for i in range(UNITS):
            with gr.Accordion(f"ControlNet Unit {i}", open=i == 0, elem_id=f"{p}-unit-{i}"):
                units.append(build_unit(fields, f"{p}-{i}"))
                with gr.Row():
                    run = gr.Button("💥 Run preprocessor", size="sm", elem_id=f"{p}-{i}-run")
                preview = {"run": run,
                           "map": gr.Image(label="Preprocessor preview", type="pil", height=200, interactive=False,
                                           elem_id=f"{p}-{i}-map"),
                           "message": gr.HTML("", elem_id=f"{p}-{i}-message")}
            previews.append(preview)
    return ControlPanel(refresh, units, previews)


def preview_map(service: Any, index: int, module: str | None, image: Any, processor_res: Any = None,
                threshold_a: Any = None, threshold_b: Any = None) -> tuple[Any, str]:
    """Run unit `index`'s preprocessor on its image through `service.detect_control` (what `POST /controlnet/detect`
    runs), with the unit's sliders (those its module lacks are ignored); returns (map or None, error HTML or '')."""
    from sdcodex.core.errors import CodexError
    from sdcodex.media.imageio import encode_image_b64

    from .progress import error_html

    if image is None:
        return None, error_html(f"ControlNet Unit {index}: no control image — upload one first, then press 💥")
    module = module or "none"
    values = [processor_res, threshold_a, threshold_b]
    args = {key: (float(v) if (v is not None and s is not None) else -1)
            for key, v, s in zip(SLIDER_KEYS, values, module_sliders(module))}
    try:
        maps = service.detect_control(module, [encode_image_b64(image, "png")], **args,
                                      module_field=f"controls[{index}].module",
                                      image_field=f"controls[{index}].image")
    except CodexError as exc:
        return None, error_html(exc)
    except Exception as exc:  # noqa: BLE001 - the page keeps working; the message shows beside the unit
        return None, error_html(f"ControlNet Unit {index}: the preprocessor failed: {exc}")
    return maps[0], ""


def wire(tabs: dict[str, Any], models: Any, service: Any = None) -> None:
    """Fill each panel's model lists when its tab opens and on its ↻ button (rescanning the models folder); make
    each unit's sliders follow its module, and (with `service`) its 💥 button show the preprocessor's map."""
    wire_models(tabs, "controlnet", models)
    for tab in tabs.values():
        panel = getattr(tab, "controlnet", None)
        if panel is None:
            continue
        for i, (unit, preview) in enumerate(zip(panel.units, panel.previews)):
            sliders = [unit[key] for key in SLIDER_KEYS]
            unit["module"].change(slider_updates, unit["module"], sliders, show_progress="hidden", queue=False)
            if service is not None:
                preview["run"].click(lambda *values, _i=i: preview_map(service, _i, *values),
                                     [unit["module"], unit["image"], *sliders],
                                     [preview["map"], preview["message"]], show_progress="minimal")


def request_part(panel: ControlPanel | None, data: dict[Any, Any], *, encode: bool) -> list[dict[str, Any]]:
    """The request's `controls` from the enabled units (images as base64 when `encode`, else a placeholder); the
    resolution/threshold keys only for the modules that have those sliders."""
    if panel is None:
        return []
    out = []
    for unit in panel.units:
        if not data.get(unit["enabled"]):
            continue
        image = data.get(unit["image"])
        value = None if image is None else image_value(image, encode=encode,
                                                       placeholder=PLACEHOLDER.replace("{i}", str(len(out))))
        has = dict(zip(SLIDER_KEYS, (s is not None for s in module_sliders(data.get(unit["module"]) or "none"))))
        out.append({"image": value, **read_unit(panel, unit, data, skip=lambda f: f.key in has and not has[f.key])})
    return out


__all__ = ["build", "wire", "request_part", "preview_map", "slider_updates", "ControlPanel", "TASKS"]
