"""Routes that need engines beyond SD: OpenAI-style async video with a real (tiny) WAN model, the A1111
upscale route with the packaged Real-ESRGAN, and LoRA/upscaler listings from the models folder."""
from __future__ import annotations

import base64
import io
import time

import pytest
from PIL import Image

from sdcodex.runtime import LocalModels

from .live import b64png, live_server


@pytest.fixture(scope="module")
def media_server(tmp_path_factory, demo_models_dir):
    import sdcodex.models.demo_video  # noqa: F401  (registers the video demo builders)
    from sdcodex.models.demo import build_demo_models

    root = tmp_path_factory.mktemp("media-server")
    models = root / "models"
    build_demo_models(models / "demo", families=("wan22_ti2v_5b",))
    with live_server(models=LocalModels(models), outdir=str(root / "outputs"), db_path=str(root / "jobs.sqlite"),
                     device="cpu") as srv:
        yield srv


def test_openai_video_job_produces_playable_mp4(media_server):
    import av

    with media_server.client() as client:
        r = client.post("/v1/videos", json={"prompt": "waves on a shore", "model": "wan22-ti2v-5b-demo",
                                            "size": "32x32", "seconds": "0.5", "fps": 8, "steps": 2})
        assert r.status_code in (200, 202), r.text
        video_id = r.json()["id"]
        deadline = time.time() + 180
        while time.time() < deadline:
            obj = client.get(f"/v1/videos/{video_id}").json()
            if obj["status"] in ("completed", "failed"):
                break
            time.sleep(0.3)
        assert obj["status"] == "completed", obj
        content = client.get(f"/v1/videos/{video_id}/content")
        assert content.status_code == 200
    with av.open(io.BytesIO(content.content)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        assert (stream.codec_context.width, stream.codec_context.height) == (32, 32)
    assert frames == 5  # 0.5 s x 8 fps = 4, rounded up to the 4k+1 rule


def test_a1111_extra_single_image_upscales(media_server):
    image = Image.new("RGB", (24, 16), (200, 40, 40))
    with media_server.client() as client:
        r = client.post("/sdapi/v1/extra-single-image", json={"image": b64png(image), "upscaler_1": "Lanczos",
                                                               "upscaling_resize": 2.5})
        assert r.status_code == 200, r.text
        out = Image.open(io.BytesIO(base64.b64decode(r.json()["image"])))
        assert out.size == (60, 40)
        r = client.post("/sdapi/v1/extra-single-image", json={"image": b64png(image), "upscaler_1": "nope",
                                                               "upscaling_resize": 2})
        assert r.status_code == 422 and "Lanczos" in r.text
        ups = client.get("/sdapi/v1/upscalers").json()
        assert {"R-ESRGAN 4x+", "Lanczos", "Nearest"} <= {u["name"] for u in ups}
