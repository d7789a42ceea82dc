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


def test_sliders_follow_the_module_and_reach_controls():
    with gr.Blocks():
        panel = controlnet_panel.build(Task.TXT2IMG)
    res, low, high = controlnet_panel.slider_updates("canny")
    assert (res["label"], res["value"], res["minimum"], res["maximum"]) == ("Preprocessor Resolution", 512, 64, 2048)
    assert (low["label"], low["value"], high["label"], high["value"]) == ("Canny Low Threshold", 100,
                                                                          "Canny High Threshold", 200)
    assert [u["visible"] for u in controlnet_panel.slider_updates("none")] == [False] * 3
    tile = controlnet_panel.slider_updates("tile_resample")
    assert tile[0]["visible"] is False and tile[1]["step"] == 0.01 and tile[2]["visible"] is False
    unit = panel.units[0]
    data = {unit["enabled"]: True, unit["image"]: Image.new("RGB", (8, 8)), unit["model"]: "cn",
            unit["module"]: "canny", unit["processor_res"]: 256.0, unit["threshold_a"]: 50.0,
            unit["threshold_b"]: 150.0}
    part = controlnet_panel.request_part(panel, data, encode=False)[0]
    assert (part["processor_res"], part["threshold_a"], part["threshold_b"]) == (256, 50.0, 150.0)
    assert type(part["processor_res"]) is int
    validate_request({"task": "txt2img", "controls": controlnet_panel.request_part(panel, data, encode=True)})
    none = controlnet_panel.request_part(panel, {**data, unit["module"]: "none"}, encode=False)[0]
    assert not {"processor_res", "threshold_a", "threshold_b"} & set(none)
    tiled = controlnet_panel.request_part(panel, {**data, unit["module"]: "tile_resample", unit["threshold_a"]: 2.0},
                                          encode=False)[0]
    assert tiled["threshold_a"] == 2.0 and "processor_res" not in tiled and "threshold_b" not in tiled


def test_preview_runs_what_the_detect_api_runs(tmp_path):
    """💥 in a unit: the same map as POST /controlnet/detect for the same image, module and sliders; errors (no
    image, a module whose weights are not cached) come back as the message shown beside the unit."""
    import base64
    import io

    import numpy as np
    from fastapi.testclient import TestClient
    from PIL import ImageDraw

    from sdcodex.server import ServerSettings, create_app

    picture = Image.new("RGB", (96, 72), (30, 40, 50))
    draw = ImageDraw.Draw(picture)
    draw.rectangle((10, 12, 50, 60), fill=(220, 200, 40))
    draw.ellipse((48, 8, 90, 50), fill=(90, 160, 230))
    draw.rectangle((60, 52, 90, 68), fill=(60, 70, 80))  # a faint edge: found with 60/120, not with 100/200
    buf = io.BytesIO()
    picture.save(buf, format="PNG")
    settings = ServerSettings(models_dir=str(tmp_path / "models"), outdir=str(tmp_path / "out"),
                              db_path=str(tmp_path / "jobs.sqlite"), device="cpu", start_worker=False)
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        service = client.app.state.codex
        body = {"controlnet_module": "canny", "controlnet_input_images": [base64.b64encode(buf.getvalue()).decode()],
                "controlnet_processor_res": 144, "controlnet_threshold_a": 60, "controlnet_threshold_b": 120}
        res = client.post("/controlnet/detect", json=body)
        assert res.status_code == 200, res.text
        api_map = np.asarray(Image.open(io.BytesIO(base64.b64decode(res.json()["images"][0]))))
        shown, message = controlnet_panel.preview_map(service, 0, "canny", picture, 144, 60, 120)
        assert message == "" and np.array_equal(np.asarray(shown), api_map)
        assert api_map.shape == (144, 192, 3) and api_map.any()  # scaled to short side 144: edges found
        default, _ = controlnet_panel.preview_map(service, 0, "canny", picture, 144, 100, 200)
        assert not np.array_equal(np.asarray(default), api_map)  # the unit's thresholds are used
        same, _ = controlnet_panel.preview_map(service, 0, "none", picture)  # an own map: shown as it is
        assert np.array_equal(np.asarray(same), np.asarray(picture))

        missing, message = controlnet_panel.preview_map(service, 1, "softedge_hed", picture, 512)
        assert missing is None and "sdcodex cache-models" in message and "controls[1].module" in message
        api = client.post("/controlnet/detect", json={**body, "controlnet_module": "softedge_hed"})
        assert api.status_code == 422 and "sdcodex cache-models" in api.text
        nothing, message = controlnet_panel.preview_map(service, 2, "canny", None)
        assert nothing is None and "ControlNet Unit 2: no control image" in message
