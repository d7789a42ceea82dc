"""The ControlNet panel without a browser: enabled units become the strict request's `controls` (base64 images on
submit, placeholders in the preview); disabled units are left out."""
from __future__ import annotations

import json

import gradio as gr
from PIL import Image

from sdcodex.core.enums import Task
from sdcodex.core.request import validate_request
from sdcodex.ui import controlnet_panel


def test_enabled_units_become_controls():
    with gr.Blocks():
        panel = controlnet_panel.build(Task.IMG2IMG)
    first, second, third = panel.units
    data = {first["enabled"]: True, first["image"]: Image.new("RGB", (32, 24), (200, 10, 10)),
            first["model"]: "cn-sd15-a", first["module"]: "canny", first["weight"]: 0.8,
            first["guidance_start"]: 0.1, first["guidance_end"]: 0.9, first["control_mode"]: "prompt",
            first["resize_mode"]: "just_resize", first["pixel_perfect"]: True,
            second["enabled"]: False, second["model"]: "ignored",
            third["enabled"]: True, third["image"]: Image.new("RGB", (8, 8)), third["model"]: "cn-sd15-b"}
    units = controlnet_panel.request_part(panel, data, encode=True)
    assert [u["model"] for u in units] == ["cn-sd15-a", "cn-sd15-b"]
    assert units[0] | {"image": None} == {"image": None, "model": "cn-sd15-a", "module": "canny", "weight": 0.8,
                                          "guidance_start": 0.1, "guidance_end": 0.9, "control_mode": "prompt",
                                          "resize_mode": "just_resize", "pixel_perfect": True}
    assert units[1]["module"] == "none" and units[1]["control_mode"] == "balanced"
    req = validate_request({"task": "img2img", "init_image": "x", "controls": units})
    assert len(req.controls) == 2
    preview = controlnet_panel.request_part(panel, data, encode=False)
    assert json.loads(json.dumps(preview))[0]["image"] == "<controls[0].image: 32x24>"
