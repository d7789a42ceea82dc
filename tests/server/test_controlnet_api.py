"""The A1111 ControlNet extension's preprocessor routes: /controlnet/module_list and /controlnet/detect."""
from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

cv2 = pytest.importorskip("cv2")
skdata = pytest.importorskip("skimage.data")


def _b64(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _decode(value: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(value))))


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    from fastapi.testclient import TestClient

    from sdcodex.server import ServerSettings, create_app

    root = tmp_path_factory.mktemp("cnapi")
    settings = ServerSettings(models_dir=str(root / "models"), outdir=str(root / "out"),
                              db_path=str(root / "jobs.sqlite"), device="cpu", start_worker=False)
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        yield client


def test_module_list_answers_like_the_extension(api):
    plain = api.get("/controlnet/module_list").json()
    alias = api.get("/controlnet/module_list", params={"alias_names": "true"}).json()
    assert plain["module_list"][0] == "none" and "hed" in plain["module_list"]
    assert "softedge_hed" in alias["module_list"] and "hed" not in alias["module_list"]
    assert set(alias["module_detail"]) == set(alias["module_list"])
    assert {"depth_midas", "normal_midas", "depth_anything", "depth_anything_v2", "depth_zoe", "seg_ufade20k",
            "t2ia_color_grid"} <= set(alias["module_list"])
    canny = plain["module_detail"]["canny"]
    assert canny["model_free"] is False
    assert [s["value"] for s in canny["sliders"]] == [512, 100, 200]


def test_detect_runs_the_preprocessor_with_the_extensions_defaults(api):
    arr = skdata.coffee()[:256, :384]  # short side 256
    body = {"controlnet_module": "canny", "controlnet_input_images": [_b64(Image.fromarray(arr))] * 2,
            "controlnet_processor_res": 256, "controlnet_threshold_a": -1, "controlnet_threshold_b": -1,
            "some_future_key": 1}
    res = api.post("/controlnet/detect", json=body)
    assert res.status_code == 200, res.text
    out = res.json()
    assert out["info"] == "Success" and len(out["images"]) == 2
    got = _decode(out["images"][0])
    ref = cv2.Canny(arr, 100, 200)  # -1 thresholds: the slider defaults; 256x384 needs no padding
    assert got.shape == (256, 384, 3) and np.array_equal(got[:, :, 0], ref)
    mask = np.zeros((256, 384), np.uint8)
    mask[:10] = 255
    res = api.post("/controlnet/detect", json={"controlnet_module": "inpaint_only",
                                               "controlnet_input_images": [_b64(Image.fromarray(arr))],
                                               "controlnet_masks": [_b64(Image.fromarray(mask))]})
    assert np.array_equal(_decode(res.json()["images"][0])[:, :, 3], 255 - mask)


def test_detect_errors_name_the_field_and_the_server_keeps_serving(api):
    good = _b64(Image.new("RGB", (64, 64), "white"))
    res = api.post("/controlnet/detect", json={"controlnet_module": "sobel", "controlnet_input_images": [good]})
    assert res.status_code == 422
    assert res.json()["field"] == "controlnet_module" and "canny" in res.json()["detail"]
    res = api.post("/controlnet/detect", json={"controlnet_module": "canny", "controlnet_input_images": []})
    assert res.status_code == 422 and res.json()["field"] == "controlnet_input_images"
    res = api.post("/controlnet/detect", json={"controlnet_module": "canny",
                                               "controlnet_input_images": [good, "not-an-image!"]})
    assert res.status_code == 422 and res.json()["field"] == "controlnet_input_images[1]"
    res = api.post("/controlnet/detect", json={"controlnet_module": "softedge_hed",
                                               "controlnet_input_images": [good]})
    assert res.status_code == 422 and "sdcodex cache-models annotators" in res.json()["detail"]
    res = api.post("/controlnet/detect", json={"controlnet_module": "invert", "controlnet_input_images": [good]})
    assert res.status_code == 200 and _decode(res.json()["images"][0]).max() == 0
