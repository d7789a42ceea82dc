"""The IP-Adapter panel on txt2img, img2img and inpaint: an image prompt (reference image), the adapter, its CLIP
image encoder (empty = the one that fits) and the scale — one unit of the shared units panel (`units.py`).
`request_part()` turns it into the request's `ip_adapter`."""
from __future__ import annotations

from typing import Any

import gradio as gr

from sdcodex.core.enums import Task

from .units import Field, UnitsPanel, build_unit, enabled_field, image_field, image_value, read_unit, wire_models

TASKS = (Task.TXT2IMG, Task.IMG2IMG, Task.INPAINT)
PLACEHOLDER = "<ip_adapter.images[0]: {w}x{h}>"

FIELDS = (
    enabled_field(),
    image_field("Reference image"),
    Field("model", gr.Dropdown, "IP-Adapter", "model", row=1, missing="", models="ip_adapter"),
    Field("image_encoder", gr.Dropdown, "Image encoder (empty: the one that fits)", "encoder", row=1,
          models="image_encoder", blank=True),
    Field("scale", gr.Slider, "Scale", "scale", value=1.0, missing=1.0, cast=float,
          kwargs={"minimum": 0.0, "maximum": 2.0, "step": 0.05}),
)


class IpAdapterPanel(UnitsPanel):
    """One unit; its components are also attributes (`enabled`, `image`, `model`, `image_encoder`, `scale`)."""

    def __getattr__(self, name: str) -> Any:
        units = self.__dict__.get("units") or []
        if units and name in units[0]:
            return units[0][name]
        raise AttributeError(name)


def build(task: Task) -> IpAdapterPanel:
    """Lay out the panel (inside a gr.Blocks context); the model lists fill in with `wire`."""
    p = f"codex-{task.value}-ip-adapter"
    with gr.Accordion("IP-Adapter (image prompt)", open=False, elem_id=p):
        refresh = gr.Button("↻ IP-Adapter models", size="sm", elem_id=f"{p}-refresh")
        unit = build_unit(FIELDS, p)
    return IpAdapterPanel(refresh, FIELDS, [unit])


def wire(tabs: dict[str, Any], models: Any) -> None:
    """Fill each panel's lists when its tab opens and on its ↻ button (rescanning the models folder)."""
    wire_models(tabs, "ip_adapter", models)


def request_part(panel: IpAdapterPanel | None, data: dict[Any, Any], *, encode: bool) -> dict[str, Any] | None:
    """The request's `ip_adapter` when enabled (the image as base64 when `encode`, else a placeholder); None when
    off. A missing image or model is left for the strict request to name."""
    if panel is None or not data.get(panel.enabled):
        return None
    image = data.get(panel.image)
    images = [] if image is None else [image_value(image, encode=encode, placeholder=PLACEHOLDER)]
    part = read_unit(panel, panel.units[0], data)
    return {"model": part.pop("model"), "images": images, **part}


__all__ = ["build", "wire", "request_part", "IpAdapterPanel", "TASKS"]
