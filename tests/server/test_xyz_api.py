"""The X/Y/Z plot through the APIs: the native request kind (`xyz` on a txt2img request, one job) and A1111's
`script_name: "x/y/z plot"` with the script's `script_args` order; errors name `xyz.x.values` natively and
`script_args[i] (x_values)` on the A1111 route; the server keeps serving."""
from __future__ import annotations

import base64
import io
import json

from PIL import Image

from .live import wait_job

TINY = {"width": 64, "height": 64, "steps": 1}


def test_native_plot_is_one_job_with_grid_and_cells(client, sd15_name):
    body = {"task": "txt2img", "model": sd15_name, "prompt": "a cat", "seed": 3, **TINY,
            "xyz": {"x": {"type": "seed", "values": [3, 4]}, "y": {"type": "cfg_scale", "values": "2, 6"}}}
    r = client.post("/api/v1/jobs", json=body)
    assert r.status_code == 202, r.text
    job = wait_job(client, r.json()["id"])
    assert job["state"] == "done", job
    result = job["result"]
    assert len(result["images"]) == 5 and result["info"]["xyz"]["shape"] == [2, 2, 1]
    assert "/txt2img-grids/" in result["images"][0]
    for bad, field in ((dict(body, xyz={"x": {"type": "steps", "values": "1, x"}}), "xyz.x.values"),
                       (dict(body, xyz={"x": {"type": "steps", "values": "1, 900"}}), "xyz.x.values"),
                       (dict(body, xyz={"x": {"type": "model", "values": "nope"}}), "xyz.x.values"),
                       (dict(body, xyz={"x": {"type": "stepz", "values": "1"}}), "xyz.x.type")):
        r = client.post("/api/v1/jobs", json=bad)
        assert r.status_code in (404, 422) and r.json()["field"] == field, r.text


def test_a1111_script_args(client, sd15_name):
    args = [4, "1-2", [], 6, "3, 7", [], 0, "", [], True, True, False, False, False, False, False, 0, False]
    body = {"prompt": "a cat", "seed": 9, **TINY, "override_settings": {"sd_model_checkpoint": sd15_name},
            "script_name": "X/Y/Z plot", "script_args": args}
    r = client.post("/sdapi/v1/txt2img", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    info = json.loads(out["info"])
    assert len(out["images"]) == 5 and len(info["infotexts"]) == 5  # grid + include_lone_images
    grid = Image.open(io.BytesIO(base64.b64decode(out["images"][0])))
    assert grid.width == 48 + 2 * 64 and grid.height > 128
    assert "X Type: Steps" in grid.info["parameters"] and "Y Type: CFG Scale" in info["infotexts"][0]
    assert "Steps: 2," in info["infotexts"][2] and "CFG scale: 3," in info["infotexts"][2]
    assert "script_name" not in info["ignored_fields"]
    r = client.post("/sdapi/v1/txt2img", json=dict(body, script_args=args[:9] + [False] + args[10:]))
    assert r.status_code == 200 and len(r.json()["images"]) == 5  # no legend: same files, grid of the cells
    for bad, field in (([77, "1"], "script_args[0] (x_type)"), ([4, "1, zz"], "script_args[1] (x_values)"),
                       ([3, "0.5"], "script_args[0] (x_type)")):
        r = client.post("/sdapi/v1/txt2img", json=dict(body, script_args=bad))
        assert r.status_code == 422 and r.json()["field"] == field, r.text
