"""Prompt styles over the APIs: edited through /api/v1/styles into styles.csv in the data folder, listed by
/sdapi/v1/prompt-styles, applied by A1111's `styles` field and the native `styles` key (expanded prompt in the
infotext and the effective request, as A1111), unknown names refused naming `styles[i]`."""
from __future__ import annotations

import base64
import io
import json

from PIL import Image

from .live import wait_job

TINY = {"width": 64, "height": 64, "steps": 2, "seed": 5}


def test_styles_crud_list_and_apply(client, server, sd15_name):
    r = client.put("/api/v1/styles/moody", json={"prompt": "dark, moody lighting", "negative_prompt": "bright"})
    assert r.status_code == 200, r.text
    assert client.put("/api/v1/styles/frame", json={"prompt": "a photo of {prompt}, 35mm"}).status_code == 200
    assert client.put("/api/v1/styles/temp", json={"prompt": "x"}).status_code == 200
    assert client.put("/api/v1/styles/temp", json={"prompt": "y", "rename": "gone"}).status_code == 200
    assert client.delete("/api/v1/styles/gone").json() == {"deleted": "gone"}
    r = client.delete("/api/v1/styles/gone")
    assert r.status_code == 422 and r.json()["field"] == "name"
    assert client.put("/api/v1/styles/x", json={"prompt": 3}).status_code == 422

    path = server.service.styles.path
    assert path == server.service.settings.resolved_data_dir() / "styles.csv" and path.is_file()
    assert client.get("/sdapi/v1/prompt-styles").json() == [
        {"name": "moody", "prompt": "dark, moody lighting", "negative_prompt": "bright"},
        {"name": "frame", "prompt": "a photo of {prompt}, 35mm", "negative_prompt": ""}]
    assert [s["name"] for s in client.get("/api/v1/styles").json()["styles"]] == ["moody", "frame"]

    # A1111 txt2img: styles applied in order, the expanded prompts recorded (info and the image's infotext)
    body = {"prompt": "a cat", "negative_prompt": "blurry", "styles": ["moody", "frame"], **TINY,
            "override_settings": {"sd_model_checkpoint": sd15_name}}
    r = client.post("/sdapi/v1/txt2img", json=body)
    assert r.status_code == 200, r.text
    info = json.loads(r.json()["info"])
    expanded = "a photo of a cat, dark, moody lighting, 35mm"
    assert info["prompt"] == expanded and info["negative_prompt"] == "blurry, bright"
    assert info["styles"] == ["moody", "frame"] and "styles" not in info["ignored_fields"]
    image = Image.open(io.BytesIO(base64.b64decode(r.json()["images"][0])))
    assert image.info["parameters"].startswith(expanded + "\nNegative prompt: blurry, bright\n")

    # native: the same expansion; the effective request carries the expanded prompt and no `styles` key
    r = client.post("/api/v1/jobs", json={"task": "txt2img", "model": sd15_name, "prompt": "a cat",
                                          "negative_prompt": "blurry", "styles": ["moody", "frame"], **TINY})
    assert r.status_code == 202, r.text
    done = wait_job(client, r.json()["id"])
    assert done["state"] == "done"
    effective = done["result"]["info"]["request"]
    assert effective["prompt"] == expanded and "styles" not in effective
    assert done["result"]["info"]["styles"] == ["moody", "frame"]
    assert done["result"]["info"]["infotext_fields"]["prompt"] == expanded

    # unknown style: 422 naming the index, listing the styles; the server keeps serving
    r = client.post("/api/v1/jobs", json={"task": "txt2img", "model": sd15_name, "styles": ["moody", "nope"], **TINY})
    assert r.status_code == 422 and r.json()["field"] == "styles[1]"
    assert set(r.json()["allowed"]) == {"moody", "frame"}
    r = client.post("/sdapi/v1/txt2img", json={**body, "styles": ["nope"]})
    assert r.status_code == 422 and r.json()["field"] == "styles[0]"
    r = client.post("/api/v1/jobs", json={"task": "upscale", "styles": ["moody"]})
    assert r.status_code == 422 and r.json()["field"] == "styles"
