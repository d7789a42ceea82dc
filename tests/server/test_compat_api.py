"""The A1111-compatible (/sdapi/v1) and OpenAI-style (/v1) routes against a real server."""
from __future__ import annotations

import base64
import io
import json
import threading
import time

from PIL import Image

from .live import b64png

A1111_TINY = {"width": 64, "height": 64, "steps": 2}


def test_txt2img_shapes_and_info(client, sd15_name):
    body = {"prompt": "a cat", "negative_prompt": "blurry", "seed": 11, "batch_size": 2, "n_iter": 1,
            "sampler_name": "DPM++ 2M Karras", "cfg_scale": 6, **A1111_TINY,
            "override_settings": {"sd_model_checkpoint": sd15_name, "show_progress_every_n_steps": 3},
            "alwayson_scripts": {"controlnet": {"args": []}}, "script_args": [1], "restore_faces": False,
            "subseed": -1, "made_up_field": True}
    r = client.post("/sdapi/v1/txt2img", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert set(out) == {"images", "parameters", "info"} and isinstance(out["info"], str)
    info = json.loads(out["info"])
    assert info["all_seeds"] == [11, 12] and info["seed"] == 11 and info["prompt"] == "a cat"
    assert info["sampler_name"] == "DPM++ 2M" and info["extra_generation_params"]["Schedule type"] == "Karras"
    assert info["sd_model_name"] == sd15_name and len(info["infotexts"]) == 2
    assert "Seed: 12" in info["infotexts"][1] and "Negative prompt: blurry" in info["infotexts"][0]
    assert "Batch size: 2, Batch pos: 1" in info["infotexts"][1]  # as in the image file (A1111 writes them too)
    assert set(info["ignored_fields"]) == {"made_up_field", "script_args",
                                           "override_settings.show_progress_every_n_steps"}
    assert out["parameters"]["steps"] == 2 and out["parameters"]["n_iter"] == 1
    image = Image.open(io.BytesIO(base64.b64decode(out["images"][0])))
    assert image.size == (64, 64) and "Seed: 11" in image.info["parameters"]


def test_img2img_and_inpaint_via_mask(client, sd15_name, sample_image, sample_mask):
    r = client.post("/sdapi/v1/img2img", json={"init_images": [b64png(sample_image)], "denoising_strength": 0.6,
                                               "prompt": "x", "seed": 3, **A1111_TINY})
    assert r.status_code == 200, r.text
    assert json.loads(r.json()["info"])["denoising_strength"] == 0.6
    assert r.json()["parameters"]["init_images"] is None  # include_init_images is false
    models = client.get("/sdapi/v1/sd-models").json()
    inpaint = next(m for m in models if "inpaint" in m["model_name"])
    r = client.post("/sdapi/v1/img2img", json={
        "init_images": [b64png(sample_image)], "mask": b64png(sample_mask), "mask_blur": 2,
        "inpainting_mask_invert": 1, "inpaint_full_res": False, "inpaint_full_res_padding": 8, "prompt": "y",
        "override_settings": {"sd_model_checkpoint": inpaint["title"]}, **A1111_TINY})
    assert r.status_code == 200, r.text
    info = json.loads(r.json()["info"])
    assert info["is_using_inpainting_conditioning"] and info["sd_model_name"] == inpaint["model_name"]


def test_a1111_errors_name_a1111_fields(client):
    r = client.post("/sdapi/v1/img2img", json={"prompt": "x", "init_images": ["!!notbase64!!"], **A1111_TINY})
    assert r.status_code == 422 and r.json()["field"] == "init_images[0]"
    r = client.post("/sdapi/v1/img2img", json={"prompt": "x", **A1111_TINY})
    assert r.status_code == 422 and r.json()["field"] == "init_images"
    r = client.post("/sdapi/v1/txt2img", json={"prompt": "x", "n_iter": 0, **A1111_TINY})
    assert r.status_code == 422 and r.json()["field"] == "n_iter"
    r = client.post("/sdapi/v1/txt2img", json={"steps": "lots"})
    assert r.status_code == 422 and r.json()["field"] == "steps"
    r = client.post("/sdapi/v1/txt2img", json={"override_settings": {"sd_model_checkpoint": "nope.safetensors"}})
    assert r.status_code == 404 and r.json()["allowed"]


def test_options_switch_default_model_and_round_trip(client, sd15_name):
    opts = client.get("/sdapi/v1/options").json()
    assert opts["sd_model_checkpoint"]
    models = client.get("/sdapi/v1/sd-models").json()
    assert all(m["title"] == f"{m['filename'].rsplit('/', 1)[-1]} [{m['hash']}]" for m in models)
    sdxl = next(m for m in models if "sdxl" in m["model_name"])
    assert client.post("/sdapi/v1/options", json={"sd_model_checkpoint": sdxl["title"]}).status_code == 200
    opts = client.get("/sdapi/v1/options").json()
    assert opts["sd_model_checkpoint"] == sdxl["title"]
    opts["my_client_setting"] = 5
    assert client.post("/sdapi/v1/options", json=opts).status_code == 200  # the whole dict back
    assert "my_client_setting" not in client.get("/sdapi/v1/options").json()  # only known options are stored
    r = client.post("/sdapi/v1/txt2img", json={"prompt": "x", **A1111_TINY})
    assert json.loads(r.json()["info"])["sd_model_name"] == sdxl["model_name"]
    r = client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "missing [0000000000]"})
    assert r.status_code == 404 and sdxl["model_name"] in r.json()["allowed"]
    sd15 = next(m for m in models if m["model_name"] == sd15_name)
    assert client.post("/sdapi/v1/options", json={"sd_model_checkpoint": sd15["title"]}).status_code == 200


def test_progress_interrupt_and_skip(client, server, sd15_name):
    result = {}

    def call() -> None:
        with server.client() as c:
            result["r"] = c.post("/sdapi/v1/txt2img", json={"prompt": "slow", "width": 64, "height": 64,
                                                            "steps": 400, "n_iter": 2})

    t = threading.Thread(target=call)
    t.start()
    deadline = time.monotonic() + 60
    while True:
        p = client.get("/sdapi/v1/progress").json()
        if p["state"]["sampling_step"] > 0 and p["current_image"]:  # live previews every 10 steps (A1111 default)
            break
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert p["state"]["job_count"] >= 1 and 0 < p["progress"] <= 1 and p["state"]["sampling_steps"] == 400
    assert "eta_relative" in p and p["textinfo"].startswith("Step ")
    preview = Image.open(io.BytesIO(base64.b64decode(p["current_image"])))
    assert preview.format == "PNG" and preview.mode == "RGB" and preview.size[0] == preview.size[1] < 64
    assert client.get("/sdapi/v1/progress", params={"skip_current_image": "true"}).json()["current_image"] is None
    assert client.post("/sdapi/v1/skip").json()["skipped"]  # drops the first batch
    time.sleep(0.2)
    assert client.post("/sdapi/v1/interrupt").json()["interrupted"]
    t.join(60)
    info = json.loads(result["r"].json()["info"])
    assert info["interrupted"] and len(result["r"].json()["images"]) == 0
    assert client.get("/sdapi/v1/progress").json()["state"]["job_count"] == 0


def test_catalogue_routes(client, sample_image):
    samplers = client.get("/sdapi/v1/samplers").json()
    assert {"name", "aliases", "options"} <= set(samplers[0]) and any(s["name"] == "Euler a" for s in samplers)
    schedulers = client.get("/sdapi/v1/schedulers").json()
    assert any(s["label"] == "Karras" for s in schedulers)
    ups = client.get("/sdapi/v1/upscalers").json()
    assert {"name", "model_name", "model_path", "model_url", "scale"} <= set(ups[0])
    assert client.get("/sdapi/v1/latent-upscale-modes").json()[0] == {"name": "Latent"}
    for path in ("/sdapi/v1/sd-vae", "/sdapi/v1/sd-modules", "/sdapi/v1/loras"):
        assert isinstance(client.get(path).json(), list)
    assert set(client.get("/sdapi/v1/embeddings").json()) == {"loaded", "skipped"}
    assert client.post("/sdapi/v1/refresh-checkpoints").status_code == 200
    assert client.post("/sdapi/v1/refresh-loras").status_code == 200
    mem = client.get("/sdapi/v1/memory").json()
    assert mem["ram"]["total"] > 0 and "cuda" in mem


def test_png_info_reads_what_we_wrote(client, server):
    done = server.service.store.list(states=["done"], kind="a1111", limit=1)[0]
    path = server.service.output_path(done.result["images"][0])
    r = client.post("/sdapi/v1/png-info", json={"image": base64.b64encode(path.read_bytes()).decode()})
    assert r.status_code == 200
    assert "Steps: 2" in r.json()["info"] and str(r.json()["parameters"]["Steps"]) == "2"
    r = client.post("/sdapi/v1/png-info", json={"image": "AAAA"})
    assert r.status_code == 422 and r.json()["field"] == "image"


def test_openai_images(client, sd15_name):
    r = client.post("/v1/images/generations", json={"prompt": "a fox", "n": 2, "size": "64x64", "model": sd15_name,
                                                    "steps": 1})
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert len(data) == 2 and Image.open(io.BytesIO(base64.b64decode(data[0]["b64_json"]))).size == (64, 64)
    r = client.post("/v1/images/generations", json={"prompt": "a fox", "size": "64x64", "model": "dall-e-3",
                                                    "response_format": "url", "steps": 1})
    url = r.json()["data"][0]["url"]
    assert url.startswith("http://127.0.0.1") and client.get(url).status_code == 200
    r = client.post("/v1/images/generations", json={"prompt": "x", "size": "big"})
    assert r.status_code == 422 and r.json()["error"]["param"] == "size"
    r = client.post("/v1/images/generations", json={"prompt": "x", "model": "nope", "size": "64x64"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


def test_openai_videos_route_shapes(client, sd15_name):
    # the demo models are image models: the job is refused at submit (422), in OpenAI's error shape
    r = client.post("/v1/videos", json={"prompt": "waves", "seconds": "1", "size": "64x64", "model": sd15_name})
    assert r.status_code == 422 and r.json()["error"]["type"] == "invalid_request_error"
    assert client.get("/v1/videos/video_nope").status_code == 404
    assert client.get("/v1/videos/video_nope/content").status_code == 404


def test_openai_video_object_for_a_queued_job(client, server):
    from sdcodex.server.openai import video_object

    job = server.service.store.create({"task": "txt2vid"}, kind="openai_video", meta={"seconds": "2"})
    server.service.store.cancel(job.id)
    r = client.get(f"/v1/videos/video_{job.id}")
    assert r.status_code == 200 and r.json() == video_object(server.service.store.get(job.id))
    assert r.json()["status"] == "failed" and r.json()["seconds"] == "2"
    assert client.get(f"/v1/videos/video_{job.id}/content").status_code == 409



def test_live_preview_options(client, server):
    """A1111's options drive live previews: off, every N steps, and -1 ("at the end only") means none."""
    service = server.service
    assert service.preview_every() == 10  # A1111's defaults: on, every 10 steps
    try:
        client.post("/sdapi/v1/options", json={"show_progress_every_n_steps": 3})
        assert service.preview_every() == 3
        client.post("/sdapi/v1/options", json={"show_progress_every_n_steps": -1})
        assert service.preview_every() == 0
        client.post("/sdapi/v1/options", json={"show_progress_every_n_steps": 3, "live_previews_enable": False})
        assert service.preview_every() == 0
    finally:
        client.post("/sdapi/v1/options", json={"show_progress_every_n_steps": 10, "live_previews_enable": True})


SYNTAX_PROMPT = 'a (red:1.3) fox, [blurry], \\(literal\\) ((deep)) BREAK [cat:dog:0.5] [a|b] 狐 ü "q", x: y'


def test_a1111_emphasis_override_and_prompt_text_byte_for_byte(client):
    r = client.post("/sdapi/v1/txt2img", json={"prompt": SYNTAX_PROMPT, "negative_prompt": "(bad:1.2) AND [x]",
                                               "override_settings": {"emphasis": "No norm"}, **A1111_TINY})
    assert r.status_code == 200, r.text
    info = json.loads(r.json()["info"])
    assert "override_settings.emphasis" not in info["ignored_fields"]
    assert info["extra_generation_params"]["Emphasis"] == "No norm"
    infotext = info["infotexts"][0]
    assert infotext.startswith(SYNTAX_PROMPT + "\nNegative prompt: (bad:1.2) AND [x]\n")
    assert "Emphasis: No norm" in infotext.rsplit("\n", 1)[-1]
    png = client.post("/sdapi/v1/png-info", json={"image": r.json()["images"][0]}).json()
    assert png["parameters"]["Prompt"] == SYNTAX_PROMPT and png["parameters"]["Emphasis"] == "No norm"
    r = client.post("/sdapi/v1/txt2img", json={"prompt": "x", "override_settings": {"emphasis": "Loud"},
                                               **A1111_TINY})
    assert r.status_code == 422 and r.json()["field"] == "override_settings.emphasis"
    assert "No norm" in str(r.json()["allowed"])
    r = client.post("/sdapi/v1/options", json={"emphasis": "Loud"})
    assert r.status_code == 422 and r.json()["field"] == "emphasis"
    assert client.get("/sdapi/v1/options").json()["emphasis"] == "Original"


def test_openai_emphasis_extension(client, server, sd15_name):
    r = client.post("/v1/images/generations", json={"prompt": SYNTAX_PROMPT, "size": "64x64", "model": sd15_name,
                                                    "steps": 1, "emphasis": "None"})
    assert r.status_code == 200, r.text
    job = server.service.store.list(states=["done"], kind="openai_image", limit=1)[0]
    assert job.request["prompt"] == SYNTAX_PROMPT and job.request["emphasis"] == "None"
    r = client.post("/v1/images/generations", json={"prompt": "x", "size": "64x64", "emphasis": "loud"})
    assert r.status_code == 422 and r.json()["error"]["param"] == "emphasis"


def test_openai_image_edits_is_img2img_or_inpaint_on_other_models(client, sd15_name, sample_image, sample_mask):
    def upload(name, image):
        return (name, (f"{name}.png", base64.b64decode(b64png(image)), "image/png"))

    form = {"prompt": "x", "model": sd15_name, "size": "64x64", "steps": "2", "seed": "3"}
    r = client.post("/v1/images/edits", data=form, files=[upload("image", sample_image)])
    assert r.status_code == 200, r.text
    out = Image.open(io.BytesIO(base64.b64decode(r.json()["data"][0]["b64_json"])))
    assert out.size == (64, 64) and "Denoising strength" in out.info["parameters"]  # an img2img job
    masked = client.post("/v1/images/edits", data=form,
                         files=[upload("image", sample_image), upload("mask", sample_mask)])
    assert masked.status_code == 200, masked.text
    out = Image.open(io.BytesIO(base64.b64decode(masked.json()["data"][0]["b64_json"])))
    assert "Mask blur" in out.info["parameters"]  # an inpaint job
    two = client.post("/v1/images/edits", data=form, files=[upload("image", sample_image)] * 2)
    assert two.status_code == 422 and two.json()["error"]["param"] == "image"
    bad = client.post("/v1/images/edits", data=form, files=[("image", ("a.png", b"not a picture", "image/png"))])
    assert bad.status_code == 422 and bad.json()["error"]["param"] == "image"
