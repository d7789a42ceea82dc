"""FLUX.2 through the three APIs of a live server: native jobs (with reference images as base64 `images`),
A1111 /sdapi/v1/txt2img and OpenAI-style /v1/images/generations build the same request; pixels equal Diffusers'
own pipeline on the demo folders; bad reference images are a 422 naming the field."""
from __future__ import annotations

import base64
import io
import json

import pytest
from PIL import Image

from sdcodex.runtime import LocalModels
from tests.engines.test_flux2 import DEV, KLEIN, assert_same, reference

from .live import b64png, live_server, wait_job


@pytest.fixture(scope="module")
def flux2_server(tmp_path_factory):
    from sdcodex.models.demo import build_demo_models

    root = tmp_path_factory.mktemp("flux2-server")
    build_demo_models(root / "models" / "demo", families=("flux2", "flux2_klein"))
    with live_server(models=LocalModels(root / "models"), outdir=str(root / "outputs"),
                     db_path=str(root / "jobs.sqlite"), device="cpu") as srv:
        srv.demo = root / "models" / "demo"
        yield srv


def _png(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def _ref(size=(80, 64)) -> Image.Image:
    image = Image.new("RGB", size)
    image.putdata([((3 * x) % 256, (5 * y) % 256, 90) for y in range(size[1]) for x in range(size[0])])
    return image


def test_klein_native_job_with_reference_images(flux2_server):
    refs = [_ref(), _ref((64, 96))]
    with flux2_server.client() as client:
        r = client.post("/api/v1/jobs", json={"task": "txt2img", "model": KLEIN, "prompt": "a lighthouse",
                                              "width": 80, "height": 64, "steps": 3, "seed": 5, "cfg_scale": 2.0,
                                              "images": [b64png(i) for i in refs]})
        assert r.status_code == 202, r.text
        done = wait_job(client, r.json()["id"])
        assert done["state"] == "done", done["error"]
        assert done["result"]["info"]["engine"] == "flux2_klein" and done["result"]["info"]["reference_images"] == 2
        image = _png(client.get(done["result"]["images"][0]).content)
        small = client.post("/api/v1/jobs", json={"task": "txt2img", "model": KLEIN, "prompt": "x", "width": 80,
                                                  "height": 64, "steps": 2, "images": [b64png(_ref((32, 32)))]})
        many = client.post("/api/v1/jobs", json={"task": "txt2img", "model": KLEIN, "prompt": "x", "width": 80,
                                                 "height": 64, "steps": 2, "images": [b64png(_ref())] * 11})
    assert_same(image, reference(flux2_server.demo / KLEIN, guidance_scale=2.0, image=refs))
    assert small.status_code == 422 and "images[0]" in small.text
    assert many.status_code == 422 and "images" in many.text


def test_dev_a1111_and_openai(flux2_server):
    with flux2_server.client() as client:
        r = client.post("/sdapi/v1/txt2img", json={"prompt": "a lighthouse", "width": 80, "height": 64, "steps": 3,
                                                   "seed": 5, "sampler_name": "Euler", "cfg_scale": 1.0,
                                                   "override_settings": {"sd_model_checkpoint": DEV}})
        assert r.status_code == 200, r.text
        a1111 = _png(base64.b64decode(r.json()["images"][0]))
        r = client.post("/v1/images/generations", json={"prompt": "a lighthouse", "model": DEV, "size": "80x64",
                                                         "steps": 3, "seed": 5})
        assert r.status_code == 200, r.text
        openai = _png(base64.b64decode(r.json()["data"][0]["b64_json"]))
    assert_same(a1111, reference(flux2_server.demo / DEV, guidance_scale=4.0))  # the preset's distilled_cfg_scale
    assert_same(openai, reference(flux2_server.demo / DEV, guidance_scale=4.0))  # the preset's distilled_cfg_scale


def test_a1111_img2img_on_an_editing_model_sends_the_pictures_as_references(flux2_server):
    """FLUX.2 has no img2img: A1111's img2img with init_images runs its reference-image editing (as Forge does)."""
    refs = [_ref(), _ref((64, 96))]
    body = {"prompt": "a lighthouse", "width": 80, "height": 64, "steps": 3, "seed": 5, "sampler_name": "Euler",
            "cfg_scale": 1.0, "denoising_strength": 0.6, "init_images": [b64png(i) for i in refs],
            "override_settings": {"sd_model_checkpoint": DEV}}
    with flux2_server.client() as client:
        r = client.post("/sdapi/v1/img2img", json=body)
        assert r.status_code == 200, r.text
        image = _png(base64.b64decode(r.json()["images"][0]))
        info = json.loads(r.json()["info"])
        many = client.post("/sdapi/v1/img2img", json={**body, "init_images": [b64png(_ref())] * 11})
        masked = client.post("/sdapi/v1/img2img", json={**body, "mask": b64png(_ref())})
    assert_same(image, reference(flux2_server.demo / DEV, guidance_scale=4.0, image=refs))
    assert "denoising_strength" in info["ignored_fields"] and "init_images[1:]" not in info["ignored_fields"]
    assert many.status_code == 422 and "init_images" in many.text
    assert masked.status_code == 422 and "mask" in masked.text


def test_openai_image_edits_sends_the_pictures_as_references(flux2_server):
    """OpenAI's multipart /v1/images/edits: on FLUX.2 the `image` files are the reference images."""
    refs = [_ref(), _ref((64, 96))]

    def files(images):
        return [("image[]", (f"r{i}.png", base64.b64decode(b64png(im)), "image/png")) for i, im in enumerate(images)]

    form = {"prompt": "a lighthouse", "model": DEV, "size": "80x64", "steps": "3", "seed": "5"}
    with flux2_server.client() as client:
        r = client.post("/v1/images/edits", data=form, files=files(refs))
        assert r.status_code == 200, r.text
        image = _png(base64.b64decode(r.json()["data"][0]["b64_json"]))
        masked = client.post("/v1/images/edits", data=form,
                             files=files(refs[:1]) + [("mask", ("m.png", base64.b64decode(b64png(_ref())), "image/png"))])
        tiny = client.post("/v1/images/edits", data=form, files=files([_ref((32, 32))]))
        none = client.post("/v1/images/edits", data=form)
    assert_same(image, reference(flux2_server.demo / DEV, guidance_scale=4.0, image=refs))
    assert masked.status_code == 422 and "mask" in masked.text
    assert tiny.status_code == 422 and "image[0]" in tiny.text
    assert none.status_code == 422 and "image" in none.text
