"""The newer image families (Z-Image, Chroma) through all three APIs of a live server (native jobs, A1111 /sdapi/v1, OpenAI-style
/v1/images): every face builds the same request, and the pixels equal Diffusers' own pipeline on the demo folder."""
from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from sdcodex.runtime import LocalModels
from tests.engines.test_chroma import reference as chroma_reference
from tests.engines.test_z_image import assert_same, reference

from .live import b64png, live_server, wait_job

Z = "z-image-demo"
C = "chroma-demo"


@pytest.fixture(scope="module")
def families_server(tmp_path_factory):
    from sdcodex.models.demo import build_demo_models

    root = tmp_path_factory.mktemp("families-server")
    build_demo_models(root / "models" / "demo", families=("z_image", "chroma"))
    with live_server(models=LocalModels(root / "models"), outdir=str(root / "outputs"),
                     db_path=str(root / "jobs.sqlite"), device="cpu") as srv:
        srv.demo = root / "models" / "demo"
        yield srv


def _png(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def test_z_image_native_job(families_server):
    with families_server.client() as client:
        r = client.post("/api/v1/jobs", json={"task": "txt2img", "model": Z, "prompt": "a lighthouse", "width": 64,
                                              "height": 64, "steps": 3, "seed": 5, "cfg_scale": 1.0})
        assert r.status_code == 202, r.text
        done = wait_job(client, r.json()["id"])
        assert done["state"] == "done", done["error"]
        assert done["result"]["info"]["engine"] == "z_image"
        image = _png(client.get(done["result"]["images"][0]).content)
    assert_same(image, reference(families_server.demo / Z, "txt2img", guidance_scale=0.0))


def test_z_image_a1111_txt2img_and_img2img(families_server):
    init = Image.new("RGB", (64, 64))
    init.putdata([(4 * x, 4 * y, 128) for y in range(64) for x in range(64)])
    with families_server.client() as client:
        r = client.post("/sdapi/v1/txt2img", json={"prompt": "a lighthouse", "width": 64, "height": 64, "steps": 3,
                                                   "seed": 5, "cfg_scale": 3.0, "sampler_name": "Euler",
                                                   "override_settings": {"sd_model_checkpoint": Z}})
        assert r.status_code == 200, r.text
        txt = _png(base64.b64decode(r.json()["images"][0]))
        r = client.post("/sdapi/v1/img2img", json={"prompt": "a lighthouse", "width": 64, "height": 64, "steps": 3,
                                                   "seed": 5, "cfg_scale": 1.0, "denoising_strength": 0.7,
                                                   "init_images": [b64png(init)],
                                                   "override_settings": {"sd_model_checkpoint": Z}})
        assert r.status_code == 200, r.text
        img = _png(base64.b64decode(r.json()["images"][0]))
        bad = client.post("/sdapi/v1/txt2img", json={"prompt": "x", "width": 64, "height": 64, "steps": 3,
                                                     "sampler_name": "DDIM",
                                                     "override_settings": {"sd_model_checkpoint": Z}})
        assert bad.status_code == 422 and "sampler" in bad.text
    assert_same(txt, reference(families_server.demo / Z, "txt2img", guidance_scale=2.0))
    assert_same(img, reference(families_server.demo / Z, "img2img", image=init, strength=0.7, guidance_scale=0.0))


def test_z_image_openai_images(families_server):
    with families_server.client() as client:
        r = client.post("/v1/images/generations", json={"prompt": "a lighthouse", "model": Z, "size": "64x64",
                                                         "steps": 3, "seed": 5})
        assert r.status_code == 200, r.text
        image = _png(base64.b64decode(r.json()["data"][0]["b64_json"]))
    # the normal preset's cfg_scale 5.0 is the pipeline's guidance 4.0
    assert_same(image, reference(families_server.demo / Z, "txt2img", guidance_scale=4.0))
    assert not np.array_equal(np.asarray(image), np.asarray(reference(families_server.demo / Z, "txt2img",
                                                                       guidance_scale=0.0)))


def test_chroma_native_a1111_and_openai(families_server):
    init = Image.new("RGB", (64, 64), (30, 120, 200))
    with families_server.client() as client:
        r = client.post("/api/v1/jobs", json={"task": "txt2img", "model": C, "prompt": "a lighthouse", "width": 64,
                                              "height": 64, "steps": 3, "seed": 5, "cfg_scale": 2.0,
                                              "negative_prompt": "blurry"})
        assert r.status_code == 202, r.text
        done = wait_job(client, r.json()["id"])
        assert done["state"] == "done", done["error"]
        native = _png(client.get(done["result"]["images"][0]).content)
        r = client.post("/sdapi/v1/img2img", json={"prompt": "a lighthouse", "negative_prompt": "", "width": 64,
                                                   "height": 64, "steps": 3, "seed": 5, "cfg_scale": 1.0,
                                                   "denoising_strength": 0.7, "init_images": [b64png(init)],
                                                   "override_settings": {"sd_model_checkpoint": C}})
        assert r.status_code == 200, r.text
        img = _png(base64.b64decode(r.json()["images"][0]))
        r = client.post("/v1/images/generations", json={"prompt": "a lighthouse", "model": C, "size": "64x64",
                                                         "steps": 3, "seed": 5, "negative_prompt": "blurry"})
        assert r.status_code == 200, r.text
        openai = _png(base64.b64decode(r.json()["data"][0]["b64_json"]))
    folder = families_server.demo / C
    assert_same(native, chroma_reference(folder, "txt2img", guidance_scale=2.0, negative_prompt="blurry"))
    assert_same(img, chroma_reference(folder, "img2img", image=init, strength=0.7, guidance_scale=1.0))
    # the preset's cfg_scale 3.0
    assert_same(openai, chroma_reference(folder, "txt2img", guidance_scale=3.0, negative_prompt="blurry"))


def test_bad_input_is_a_422_naming_the_field(families_server):
    with families_server.client() as client:
        r = client.post("/api/v1/jobs", json={"task": "txt2img", "model": Z, "prompt": "x", "width": 72, "height": 64,
                                              "steps": 2})
        assert r.status_code == 422 and r.json()["field"] == "width" and "16" in r.text
        r = client.post("/api/v1/jobs", json={"task": "inpaint", "model": C, "prompt": "x", "width": 64,
                                              "height": 64, "steps": 2, "init_image": b64png(Image.new("RGB", (64, 64))),
                                              "mask": b64png(Image.new("L", (64, 64)))})
        assert r.status_code == 422 and r.json()["field"] == "task" and "img2img" in r.text
        r = client.post("/sdapi/v1/txt2img", json={"prompt": "x", "width": 64, "height": 64, "steps": 2,
                                                   "override_settings": {"sd_model_checkpoint": Z},
                                                   "sampler_name": "LCM"})
        assert r.status_code == 422 and "sampler" in r.text
        assert client.get("/api/v1/health").status_code == 200  # the server keeps serving
