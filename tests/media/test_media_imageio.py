"""Input image decoding: base64 / data URL / CLI path, and errors that name the field."""
from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from sdcodex.core.errors import ValidationError
from sdcodex.media.imageio import encode_image_b64, load_image


def _png_b64() -> str:
    arr = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    return encode_image_b64(Image.fromarray(arr))


def test_plain_and_data_url_and_wrapped_base64_decode_same_pixels():
    b64 = _png_b64()
    ref = np.asarray(load_image(b64, field="init_images[0]"))
    assert ref.shape == (4, 6, 3)
    for variant in (f"data:image/png;base64,{b64}", "\n".join(b64[i:i + 20] for i in range(0, len(b64), 20)),
                    b64.rstrip("=")):
        assert np.array_equal(np.asarray(load_image(variant, field="init_images[0]")), ref)


def test_bad_base64_names_the_field():
    with pytest.raises(ValidationError) as e:
        load_image("not base64!!", field="init_images[1]")
    assert e.value.field == "init_images[1]"
    assert str(e.value).startswith("init_images[1]: is not a valid base64 image (")
    junk = base64.b64encode(b"hello, I am not a picture").decode()
    with pytest.raises(ValidationError, match=r"mask: is not a valid base64 image \(not an image"):
        load_image(junk, field="mask")
    with pytest.raises(ValidationError, match="mask: is not a valid base64 image"):
        load_image("", field="mask")


def test_too_large_is_rejected_before_decoding():
    big = encode_image_b64(Image.new("RGB", (300, 200)))
    with pytest.raises(ValidationError, match=r"image: image is too large: 300x200"):
        load_image(big, field="image", max_pixels=10_000)


def test_paths_only_when_allowed(tmp_path):
    p = tmp_path / "in.png"
    Image.new("RGBA", (5, 3), (1, 2, 3, 4)).save(p)
    img = load_image(str(p), field="init_image", allow_path=True)
    assert img.size == (5, 3) and img.mode == "RGBA"
    with pytest.raises(ValidationError, match="init_image: is not a valid base64 image"):
        load_image(str(p), field="init_image", allow_path=False)
    with pytest.raises(ValidationError, match="init_image: is neither an existing file nor a valid base64"):
        load_image(str(tmp_path / "missing.png"), field="init_image", allow_path=True)


def test_palette_and_16bit_are_normalised_and_encode_round_trip():
    pal = Image.new("P", (4, 4), 3)
    buf = io.BytesIO()
    pal.save(buf, format="PNG")
    assert load_image(base64.b64encode(buf.getvalue()).decode(), field="x").mode == "RGB"
    for fmt in ("png", "webp", "jpeg"):
        back = load_image(encode_image_b64(Image.new("RGB", (8, 8), "red"), fmt), field="x")
        assert back.size == (8, 8) and back.getpixel((4, 4))[0] > 240
