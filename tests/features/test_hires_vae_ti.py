"""Hires fix (output size, infotext as A1111 writes it, latent and pixel upscalers), VAE override and
textual-inversion embeddings through the orchestrator."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sdcodex.core.errors import ValidationError
from sdcodex.core.events import EventSink
from sdcodex.media.infotext import build_infotext, parse_infotext

from .test_lora import BASE, pixels


def test_hires_latent_size_infotext_and_progress(forch):
    events = []
    result = forch.run({**BASE, "hires": {"scale": 2.0, "steps": 4, "denoising_strength": 0.5}},
                       events=EventSink([events.append]))
    assert result.pil_images[0].size == (128, 128)
    parsed = parse_infotext(build_infotext(result.info["infotext_fields"]))
    assert parsed["Size-1"] == "64" and parsed["Size-2"] == "64"  # A1111 writes the first-pass size
    assert parsed["Hires upscale"] == "2" and parsed["Hires steps"] == "4"
    assert parsed["Hires upscaler"] == "Latent" and parsed["Denoising strength"] == "0.5"
    assert result.info["hires"]["steps"] == 4 and result.info["hires"]["width"] == 128
    progress = [e for e in events if e.kind == "progress"]
    assert len(progress) == 2 + 2 and progress[-1].data["total"] == 4  # 2 first-pass + int(4 * 0.5) hires steps
    with Image.open(result.images[0]) as saved:
        assert saved.size == (128, 128) and "Hires upscaler: Latent" in saved.info["parameters"]


def test_hires_pixel_upscaler_resize_and_second_pass_settings(forch):
    req = {**BASE, "model": "sdxl-demo",
           "hires": {"resize_x": 96, "resize_y": 128, "upscaler": "Lanczos", "sampler": "DDIM", "cfg_scale": 3.0,
                     "prompt": "a blue fox", "denoising_strength": 0.6}}
    result = forch.run(req)
    assert result.pil_images[0].size == (96, 128)
    hires = result.info["hires"]
    assert hires["sampler_effective"] == "DDIM" and hires["upscaler"] == "Lanczos" and hires["cfg_scale"] == 3.0
    fields = result.info["infotext_fields"]
    assert fields["hires_upscaler"] == "Lanczos" and fields["denoising_strength"] == 0.6
    assert "hires_scale" not in fields
    # the latent modes differ from each other and from the pixel path
    a = pixels(forch.run({**BASE, "hires": {"scale": 1.5, "upscaler": "Latent (nearest)"}}))
    b = pixels(forch.run({**BASE, "hires": {"scale": 1.5, "upscaler": "Latent (bicubic antialiased)"}}))
    assert a.shape == b.shape == (96, 96, 3) and not np.array_equal(a, b)


def test_hires_bad_paths(forch):
    with pytest.raises(ValidationError) as err:
        forch.run({**BASE, "hires": {"scale": 2.0, "upscaler": "Nope 9x"}})
    assert err.value.field == "hires.upscaler" and "Lanczos" in err.value.allowed
    with pytest.raises(ValidationError) as err:
        forch.run({**BASE, "hires": {"scale": 9.0}})
    assert err.value.field == "hires.scale"


def test_vae_override_changes_decode_only(forch):
    base = forch.run(BASE)
    other = forch.run({**BASE, "vae": "tiny-vae"})
    assert not np.array_equal(pixels(base), pixels(other))
    assert other.info["infotext_fields"]["vae"] == "tiny-vae"
    assert "VAE: tiny-vae" in build_infotext(other.info["infotext_fields"])
    assert np.array_equal(pixels(base), pixels(forch.run(BASE)))
    with pytest.raises(Exception) as err:
        forch.run({**BASE, "vae": "no-such-vae"})
    assert "no-such-vae" in str(err.value)


def test_embedding_by_name_in_prompt_and_negative(forch):
    base = pixels(forch.run(BASE))
    ti = forch.run({**BASE, "prompt": "a red fox, tinyemb"})
    neg = pixels(forch.run({**BASE, "negative_prompt": "blurry, tinyemb"}))
    word = pixels(forch.run({**BASE, "prompt": "a red fox, tinyembx"}))  # not a whole-word match: no embedding
    assert not np.array_equal(pixels(ti), pixels(forch.run({**BASE, "prompt": "a red fox,"})))
    assert not np.array_equal(base, neg)
    assert ti.info["embeddings"] == ["tinyemb"] and "embeddings" not in forch.run({**BASE, "prompt": "a red fox, tinyembx"}).info
    assert set(ti.info["infotext_fields"]["ti_hashes"]) == {"tinyemb"}
    assert 'TI hashes: "tinyemb: ' in build_infotext(ti.info["infotext_fields"])
    assert np.array_equal(base, pixels(forch.run(BASE)))  # tokenizer and text encoder are back as they were
    assert word.shape == base.shape


def test_sdxl_embedding_uses_both_encoders(forch):
    req = {**BASE, "model": "sdxl-demo"}
    base = pixels(forch.run(req))
    ti = forch.run({**req, "prompt": "tinyxlemb fox"})
    assert ti.info["embeddings"] == ["tinyxlemb"]
    assert not np.array_equal(base, pixels(ti))
    assert np.array_equal(base, pixels(forch.run(req)))
