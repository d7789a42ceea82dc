"""LoRA through the one path: prompt tags and the `loras` key change the pixels, several at once, kohya,
PEFT and SGM layouts; nothing leaks into the next request; bad names and other families are refused."""
from __future__ import annotations

import numpy as np
import pytest

from sdcodex.core.errors import ValidationError
from sdcodex.media.infotext import build_infotext

BASE = {"task": "txt2img", "model": "sd15-demo", "prompt": "a red fox", "negative_prompt": "blurry", "width": 64,
        "height": 64, "steps": 2, "cfg_scale": 5.0, "sampler": "Euler", "scheduler": "Automatic", "seed": 7}


def pixels(result) -> np.ndarray:
    return np.asarray(result.pil_images[0])


def test_prompt_tag_changes_pixels_and_nothing_leaks(forch):
    before = pixels(forch.run(BASE))
    with_lora = forch.run({**BASE, "prompt": "a red fox <lora:tiny-kohya:0.8>"})
    after = pixels(forch.run(BASE))
    assert not np.array_equal(before, pixels(with_lora))
    assert np.array_equal(before, after)  # the same request before and after: identical pixels
    fields = with_lora.info["infotext_fields"]
    assert set(fields["lora_hashes"]) == {"tiny-kohya"} and len(fields["lora_hashes"]["tiny-kohya"]) == 12
    assert fields["prompt"] == "a red fox <lora:tiny-kohya:0.8>"  # infotext keeps the tag, as A1111 does
    text = build_infotext(fields)
    assert 'Lora hashes: "tiny-kohya: ' in text
    assert with_lora.info["loras"][0]["name"] == "tiny-kohya" and with_lora.info["loras"][0]["layers"] > 10


def test_tag_is_stripped_from_the_text_encoder_prompt(forch):
    # weight 0 adds nothing: pixels equal the plain prompt's, so the tag text never reached the tokenizer
    plain = pixels(forch.run(BASE))
    zero = pixels(forch.run({**BASE, "prompt": "a red fox <lora:tiny-kohya:0>"}))
    assert np.array_equal(plain, zero)


def test_loras_key_peft_format_and_several_at_once(forch):
    base = pixels(forch.run(BASE))
    peft = pixels(forch.run({**BASE, "loras": [{"name": "tiny-peft", "weight": 1.0}]}))
    kohya = pixels(forch.run({**BASE, "prompt": "a red fox <lora:tiny-kohya:1>"}))
    both = forch.run({**BASE, "prompt": "a red fox <lora:tiny-kohya:1>", "loras": [{"name": "tiny-peft", "weight": 1.0}]})
    assert len({a.tobytes() for a in (base, peft, kohya, pixels(both))}) == 4
    assert set(both.info["infotext_fields"]["lora_hashes"]) == {"tiny-peft", "tiny-kohya"}
    assert np.array_equal(base, pixels(forch.run(BASE)))


def test_sdxl_kohya_lora_diffusers_and_sgm_names(forch):
    req = {**BASE, "model": "sdxl-demo"}
    base = pixels(forch.run(req))
    diff_names = pixels(forch.run({**req, "loras": [{"name": "tiny-xl", "weight": 1.0}]}))
    sgm_names = pixels(forch.run({**req, "loras": [{"name": "tiny-xl-sgm", "weight": 1.0}]}))
    assert not np.array_equal(base, diff_names)
    assert np.array_equal(diff_names, sgm_names)  # same weights under SGM block names land on the same layers
    assert np.array_equal(base, pixels(forch.run(req)))


def test_unknown_lora_lists_what_exists(forch):
    with pytest.raises(ValidationError) as err:
        forch.run({**BASE, "loras": [{"name": "nope"}]})
    assert err.value.field == "loras[0].name"
    assert "tiny-kohya" in err.value.allowed and "tiny-peft" in err.value.allowed
    with pytest.raises(ValidationError) as err:
        forch.run({**BASE, "prompt": "x <lora:missing:1>"})
    assert err.value.field == "prompt" and "tiny-kohya" in err.value.allowed


def test_lora_of_another_family_is_refused_and_nothing_changes(forch):
    base = pixels(forch.run(BASE))
    with pytest.raises(ValidationError) as err:
        forch.run({**BASE, "loras": [{"name": "tiny-peft"}, {"name": "tiny-xl", "weight": 1.0}]})
    assert err.value.field == "loras[1].name"
    assert "sdxl" in str(err.value) and "sd15" in str(err.value)
    assert np.array_equal(base, pixels(forch.run(BASE)))


def test_undetected_lora_that_does_not_fit_is_refused(forch):
    # tiny-peft has no family in its header; on SDXL its layers have other shapes
    with pytest.raises(ValidationError) as err:
        forch.run({**BASE, "model": "sdxl-demo", "loras": [{"name": "tiny-peft"}]})
    assert err.value.field == "loras[0].name" and "does not fit" in str(err.value)


def test_bad_weight_in_tag():
    from sdcodex.engines.lora import parse_prompt

    assert parse_prompt("a, <lora:x:0.5>, b <lora:y>")[0] == "a, b"
    assert [(u.name, u.weight) for u in parse_prompt("<lora:x:0.5> <LORA:y>")[1]] == [("x", 0.5), ("y", 1.0)]
    with pytest.raises(ValidationError) as err:
        parse_prompt("<lora:x:heavy>")
    assert err.value.field == "prompt"
