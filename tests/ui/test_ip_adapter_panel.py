"""The IP-Adapter panel without a browser: when enabled it becomes the strict request's `ip_adapter` (base64 image
on submit, a placeholder in the preview); off, nothing; the gen tabs that take it carry the panel."""
from __future__ import annotations

import base64
import io
import json

import gradio as gr
from PIL import Image

from sdcodex.core.enums import Task
from sdcodex.core.request import validate_request
from sdcodex.ui import ip_adapter_panel


def test_enabled_panel_becomes_ip_adapter():
    with gr.Blocks():
        panel = ip_adapter_panel.build(Task.TXT2IMG)
    ref = Image.new("RGB", (32, 24), (200, 10, 10))
    data = {panel.enabled: True, panel.image: ref, panel.model: "ip-adapter_sd15", panel.image_encoder: "",
            panel.scale: 0.6}
    part = ip_adapter_panel.request_part(panel, data, encode=True)
    assert part["model"] == "ip-adapter_sd15" and part["scale"] == 0.6 and "image_encoder" not in part
    decoded = Image.open(io.BytesIO(base64.b64decode(part["images"][0])))
    assert decoded.size == (32, 24) and decoded.getpixel((0, 0)) == (200, 10, 10)
    req = validate_request({"task": "txt2img", "ip_adapter": part})
    assert req.ip_adapter.scale == 0.6
    preview = ip_adapter_panel.request_part(panel, {**data, panel.image_encoder: "clip-h"}, encode=False)
    assert json.loads(json.dumps(preview)) == {"model": "ip-adapter_sd15", "images": ["<ip_adapter.images[0]: 32x24>"],
                                               "scale": 0.6, "image_encoder": "clip-h"}
    assert ip_adapter_panel.request_part(panel, {**data, panel.enabled: False}, encode=True) is None


def test_gen_tabs_carry_the_panel():
    from sdcodex.ui.fields import build_gen_tab

    with gr.Blocks():
        txt = build_gen_tab(Task.TXT2IMG, "txt2img", visible=True)
    assert txt.ip_adapter is not None and txt.ip_adapter.model in txt.ip_adapter.components
