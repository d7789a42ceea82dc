"""The IP-Adapter panel on txt2img, img2img and inpaint: an image prompt (reference image), the adapter, its CLIP
image encoder (empty = the one that fits) and the scale. `request_part()` turns it into the request's
`ip_adapter`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from sdcodex.core.enums import Task

TASKS = (Task.TXT2IMG, Task.IMG2IMG, Task.INPAINT)
PLACEHOLDER = "<ip_adapter.images[0]: {w}x{h}>"


@dataclass
class IpAdapterPanel:
    enabled: Any
    image: Any
    model: Any
    image_encoder: Any
    scale: Any
    refresh: Any

    @property
    def components(self) -> list[Any]:
        return [self.enabled, self.image, self.model, self.image_encoder, self.scale]


def build(task: Task) -> IpAdapterPanel:
    """Lay out the panel (inside a gr.Blocks context); the model lists fill in with `wire`."""
    p = f"codex-{task.value}-ip-adapter"
    with gr.Accordion("IP-Adapter (image prompt)", open=False, elem_id=p):
        enabled = gr.Checkbox(label="Enable", value=False, elem_id=f"{p}-enabled")
        image = gr.Image(label="Reference image", type="pil", height=200, elem_id=f"{p}-image",
                         sources=["upload", "clipboard"])
        with gr.Row():
            model = gr.Dropdown([], label="IP-Adapter", allow_custom_value=True, elem_id=f"{p}-model")
            encoder = gr.Dropdown([], label="Image encoder (empty: the one that fits)", allow_custom_value=True,
                                  elem_id=f"{p}-encoder")
            refresh = gr.Button("↻", size="sm", elem_id=f"{p}-refresh")
        scale = gr.Slider(0.0, 2.0, value=1.0, step=0.05, label="Scale", elem_id=f"{p}-scale")
    return IpAdapterPanel(enabled, image, model, encoder, scale, refresh)


def names(models: Any, kind: str) -> list[str]:
    try:
        return [e.name for e in models.entries(kind=kind)]
    except Exception:  # noqa: BLE001 - a panel without choices still takes a typed name
        return []


def wire(tabs: dict[str, Any], models: Any) -> None:
    """Fill each panel's lists when its tab opens and on its ↻ button (rescanning the models folder)."""
    for tab in tabs.values():
        panel = getattr(tab, "ip_adapter", None)
        if panel is None:
            continue

        def fill(rescan: bool = False) -> list[Any]:
            if rescan and hasattr(models, "refresh"):
                models.refresh()
            return [gr.update(choices=names(models, "ip_adapter")),
                    gr.update(choices=[""] + names(models, "image_encoder"))]

        outputs = [panel.model, panel.image_encoder]
        panel.refresh.click(lambda: fill(True), None, outputs, show_progress="hidden")
        tab.tab.select(lambda: fill(False), None, outputs, show_progress="hidden", queue=False)


def request_part(panel: IpAdapterPanel | None, data: dict[Any, Any], *, encode: bool) -> dict[str, Any] | None:
    """The request's `ip_adapter` when enabled (the image as base64 when `encode`, else a placeholder); None when
    off. A missing image or model is left for the strict request to name."""
    if panel is None or not data.get(panel.enabled):
        return None
    image = data.get(panel.image)
    if image is None:
        images: list[Any] = []
    elif encode:
        from .request import encode_png

        images = [encode_png(image.convert("RGB"))]
    else:
        images = [PLACEHOLDER.format(w=image.size[0], h=image.size[1])]
    part: dict[str, Any] = {"model": data.get(panel.model) or "", "images": images,
                            "scale": float(data.get(panel.scale) if data.get(panel.scale) is not None else 1.0)}
    if data.get(panel.image_encoder):
        part["image_encoder"] = data.get(panel.image_encoder)
    return part


__all__ = ["build", "wire", "request_part", "IpAdapterPanel", "TASKS"]
