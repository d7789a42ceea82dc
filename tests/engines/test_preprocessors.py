"""ControlNet preprocessors: built-in ones against OpenCV on real photos (scikit-image data), the table the
A1111 extension's /controlnet/module_list answers, strict errors, and the controlnet-aux path loading only
from <models>/annotators (random-weight HED stand-in; the real annotator weights are not exercised here)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

cv2 = pytest.importorskip("cv2")
skdata = pytest.importorskip("skimage.data")

from sdcodex.core.errors import ValidationError  # noqa: E402
from sdcodex.engines import preprocessors as P  # noqa: E402


@pytest.fixture(scope="session")
def photos() -> dict[str, np.ndarray]:
    return {name: getattr(skdata, name)() for name in ("astronaut", "coffee", "chelsea", "camera")}


def test_canny_equals_opencv_on_photos(photos):
    for name, arr in photos.items():
        for low, high in {"astronaut": ((100, 200), (99.7, 150.2)), "coffee": ((50, 120), (200, 100)),
                          "chelsea": ((1, 255),), "camera": ((100, 200),)}[name]:
            ours = P.canny(arr, low, high)
            ref = cv2.Canny(arr, int(np.floor(low)), int(np.floor(high)))
            assert np.array_equal(ours, ref), (name, low, high, int((ours != ref).sum()))


def test_run_canny_resizes_pads_and_crops_like_the_extension(photos):
    arr = photos["coffee"]  # 400 x 600
    out = P.run_preprocessor("canny", Image.fromarray(arr), resolution=400)  # short side already 400
    padded = np.pad(arr, [(0, 48), (0, 40), (0, 0)], mode="edge")
    ref = cv2.Canny(padded, 100, 200)[:400, :600]
    got = np.asarray(out)
    assert out.size == (600, 400) and out.mode == "RGB"
    assert np.array_equal(got[:, :, 0], ref) and np.array_equal(got[:, :, 1], ref)
    small = P.run_preprocessor("canny", Image.fromarray(arr), resolution=200, threshold_a=50, threshold_b=90)
    assert small.size == (300, 200)


def test_builtin_modules_against_opencv(photos):
    arr = photos["astronaut"]
    image = Image.fromarray(arr)
    assert np.array_equal(np.asarray(P.run_preprocessor("invert", image, resolution=512)), 255 - arr)
    thr = np.asarray(P.run_preprocessor("threshold", image, resolution=512, threshold_a=90))
    assert np.array_equal(thr[:, :, 0], np.where(arr.min(axis=2) > 90, 255, 0))
    blur = np.asarray(P.run_preprocessor("blur_gaussian", image, resolution=512, threshold_a=3.0)).astype(int)
    assert np.abs(blur - cv2.GaussianBlur(arr, (0, 0), 3.0).astype(int)).max() <= 1
    tile = np.asarray(P.run_preprocessor("tile_resample", image, resolution=512, threshold_a=2.0)).astype(int)
    assert np.abs(tile - cv2.resize(arr, (256, 256), interpolation=cv2.INTER_AREA).astype(int)).max() <= 1
    # XDoG: the extension's recipe computed with OpenCV on the test side
    x = arr.astype(np.float32)
    dog = (255 - np.min(cv2.GaussianBlur(x, (0, 0), 5.0) - cv2.GaussianBlur(x, (0, 0), 0.5), axis=2))
    dog = dog.clip(0, 255).astype(np.uint8)
    ref = np.where(2 * (255 - dog) > 32, 255, 0)  # uint8 arithmetic, as the extension
    ours = np.asarray(P.run_preprocessor("scribble_xdog", image, resolution=512))[:, :, 0]
    assert (ours != ref).mean() < 0.002
    # colour grid (T2I colour adapter): coffee is 600 x 400 -> 384 x 256 (area), 6 x 4 (cubic), 64 px blocks
    coffee = photos["coffee"]
    grid = np.asarray(P.run_preprocessor("t2ia_color_grid", Image.fromarray(coffee), resolution=256))
    small = cv2.resize(cv2.resize(coffee, (384, 256), interpolation=cv2.INTER_AREA), (6, 4),
                       interpolation=cv2.INTER_CUBIC)
    assert grid.shape == (256, 384, 3) and np.array_equal(grid[::64, ::64], small)
    assert np.array_equal(grid, np.repeat(np.repeat(small, 64, axis=0), 64, axis=1))


def test_shuffle_is_seeded_and_keeps_the_colours(photos):
    image = Image.fromarray(photos["chelsea"])
    a = np.asarray(P.run_preprocessor("shuffle", image, resolution=128, seed=3))
    b = np.asarray(P.run_preprocessor("shuffle", image, resolution=128, seed=3))
    c = np.asarray(P.run_preprocessor("shuffle", image, resolution=128, seed=4))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    src = P.resize_array(photos["chelsea"], *P.scaled_size(451, 300, 128)).astype(float)
    assert a.shape == src.shape
    assert a.min() >= src.min() and a.max() <= src.max()  # bilinear samples stay inside the value range
    flat = np.full((64, 64, 3), 77, np.uint8)
    assert np.array_equal(np.asarray(P.run_preprocessor("shuffle", Image.fromarray(flat), resolution=64)), flat)


def test_inpaint_marks_masked_pixels():
    rgb = np.zeros((8, 8, 3), np.uint8) + 100
    mask = np.zeros((8, 8), np.uint8)
    mask[2:4, 2:6] = 255
    out = P.run_preprocessor("inpaint_only", Image.fromarray(rgb), resolution=512, mask=Image.fromarray(mask))
    assert out.mode == "RGBA"
    assert np.array_equal(np.asarray(out)[:, :, 3], 255 - mask)
    cond = P.inpaint_condition(out)
    assert (cond[2:4, 2:6] == -1).all() and np.allclose(cond[0, 0], 100 / 255)
    rgba = np.concatenate([rgb, (255 - mask)[:, :, None]], axis=2)  # transparent = masked without a mask
    out2 = P.run_preprocessor("inpaint_global_harmonious", Image.fromarray(rgba, "RGBA"), resolution=512)
    assert np.array_equal(np.asarray(out2), np.asarray(out))


def test_module_table_matches_the_extension_and_errors_name_fields():
    names = P.list_modules()
    aliases = P.list_modules(alias_names=True)
    assert names[0] == "none" and {"canny", "hed", "depth_midas"} & set(names) == {"canny", "hed"}
    assert "softedge_hed" in aliases and "invert (from white bg & black line)" in aliases
    detail = P.module_details()
    assert detail["canny"]["sliders"] == [
        {"name": "Preprocessor Resolution", "value": 512, "min": 64, "max": 2048},
        {"name": "Canny Low Threshold", "value": 100, "min": 1, "max": 255},
        {"name": "Canny High Threshold", "value": 200, "min": 1, "max": 255}]
    assert detail["tile_resample"]["sliders"][0] is None
    assert detail["hed"]["weights"] == ["ControlNetHED.pth"] and detail["canny"]["weights"] == []
    assert P.get_module("softedge_hed") is P.get_module("hed")
    with pytest.raises(ValidationError) as e:
        P.run_preprocessor("sobel", Image.new("RGB", (8, 8)), resolution=64, field="controls[1].module")
    assert e.value.field == "controls[1].module" and "canny" in str(e.value)
    with pytest.raises(ValidationError) as e:
        P.run_preprocessor("canny", Image.new("RGB", (8, 8)), resolution=64, threshold_a=300,
                           field="controls[1].module")
    assert e.value.field == "controls[1].threshold_a" and "1..255" in str(e.value)
    with pytest.raises(ValidationError) as e:
        P.run_preprocessor("canny", Image.new("RGB", (8, 8)), resolution=8)
    assert e.value.field == "processor_res"
    with pytest.raises(ValidationError) as e:  # a 1-pixel-high strip scaled to 2048 would be 2048 x 262144
        P.run_preprocessor("canny", Image.new("RGB", (128, 1)), resolution=2048)
    assert e.value.field == "processor_res" and "pixels" in str(e.value)
    # the A1111 API's lenient rule: out of range (-1) means "the default"
    assert P.bound_check("canny", -1, -1, 150) == (None, None, 150)


def test_weighted_module_loads_only_from_the_models_folder(tmp_path, monkeypatch):
    """Missing weights: a 422-style error naming the module and the cache command, no download. Present
    (random-weight stand-in): our output equals controlnet-aux's HEDdetector run directly on the same pixels."""
    import importlib.util
    if importlib.util.find_spec("controlnet_aux") is None:
        pytest.skip("controlnet-aux is not installed")
    import huggingface_hub
    import torch
    from sdcodex.engines import preprocessors_aux as A

    def no_download(*a, **k):  # pragma: no cover - must not be reached
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_download)
    image = Image.fromarray(skdata.astronaut()).resize((80, 64))
    with pytest.raises(ValidationError) as e:
        P.run_preprocessor("softedge_hed", image, resolution=64, models_dir=tmp_path, field="controls[0].module")
    assert e.value.field == "controls[0].module"
    assert "ControlNetHED.pth" in str(e.value) and P.CACHE_COMMAND in str(e.value)

    hed_cls = A.detector_class("hed")
    import controlnet_aux.hed as hed_module
    monkeypatch.setattr(hed_module, "hf_hub_download", no_download)
    torch.manual_seed(0)
    (tmp_path / "annotators").mkdir()
    torch.save(hed_module.ControlNetHED_Apache2().state_dict(), tmp_path / "annotators" / "ControlNetHED.pth")
    try:
        ours = np.asarray(P.run_preprocessor("softedge_hed", image, resolution=64, models_dir=tmp_path))
        ref_detector = hed_cls.from_pretrained(str(tmp_path / "annotators"))
        with torch.inference_mode():
            padded = np.pad(np.asarray(image), [(0, 0), (0, 48), (0, 0)], mode="edge")  # 80 -> 128 wide
            ref = ref_detector(padded, detect_resolution=64, image_resolution=64, output_type="np")
        assert ours.shape == (64, 80, 3)
        assert np.array_equal(ours, np.asarray(ref)[:64, :80])
    finally:
        A.unload()


def test_openpose_imports_with_the_torchvision_stand_in_and_leaves_none_behind():
    import importlib.util
    import sys
    if importlib.util.find_spec("controlnet_aux") is None:
        pytest.skip("controlnet-aux is not installed")
    from sdcodex.engines import preprocessors_aux as A
    from sdcodex.models.torchvision_shim import ToPILImage, ToTensor
    assert A.detector_class("openpose").__name__ == "OpenposeDetector"
    assert not any(name == "torchvision" or name.startswith("torchvision.") for name in sys.modules)
    arr = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 10
    tensor = ToTensor()(Image.fromarray(arr))
    assert tensor.shape == (3, 2, 3) and float(tensor[0, 1, 2]) == pytest.approx(arr[1, 2, 0] / 255)
    assert np.array_equal(np.asarray(ToPILImage()(tensor)), arr)
