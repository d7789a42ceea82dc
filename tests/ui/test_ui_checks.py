"""The web UI's checks without a browser: field labels in errors, blank numbers refused, a non-image or oversized
upload turned into a field error (no server path), huge jobs held for confirmation, s/it below 1 it/s, the
"image n/N" count when done, presets that load only into a matching tab, model-declared defaults and which user
values survive an Engine/Mode switch, and a model's own limits (WAN's rope table) refused before loading."""
from __future__ import annotations

import json

import pytest
from PIL import Image

from sdcodex.core.errors import ValidationError


def test_errors_name_the_field_by_its_label_with_the_api_message():
    from sdcodex.ui.fields import field_label
    from sdcodex.ui.progress import error_html

    assert field_label("steps") == "Sampling steps" and field_label("init_image") == "Image"
    assert field_label("hires.steps").startswith("Hires. fix") and field_label("images[1]").startswith("Input images")
    text = error_html(ValidationError("Input should be less than or equal to 500", field="steps",
                                      allowed="le 500"), field_label)
    assert "Sampling steps" in text and "(steps)" in text and "Input should be less than or equal to 500" in text
    assert "init_image" in error_html({"field": "init_image", "message": "is required"}, field_label)
    assert ">Image<" in error_html({"field": "init_image", "message": "is required"}, field_label)


def test_blank_numbers_are_refused_not_defaulted():
    from sdcodex.ui.request import check_blank

    with pytest.raises(ValidationError) as err:
        check_blank({"width": None, "height": 512}, {"width", "height"})
    assert err.value.field == "width" and "blank" in err.value.message
    check_blank({"width": None}, {"height"})          # a hidden field is not sent at all
    check_blank({"flow_shift": None}, {"flow_shift"})  # blank means automatic there


def test_bad_uploads_become_reasons_without_paths(tmp_path):
    from sdcodex.ui.request import reference_images
    from sdcodex.ui.uploads import check_upload

    fake = tmp_path / "notes.png"
    fake.write_text("this is text, not a PNG")
    bad = check_upload(str(fake))
    assert bad is not None and "not an image" in bad.reason and str(tmp_path) not in bad.reason
    big = tmp_path / "big.png"
    Image.new("L", (300, 200)).save(big)
    assert "too large: 300x200" in check_upload(str(big), max_pixels=50_000).reason
    assert check_upload(str(big)) is None
    with pytest.raises(ValidationError) as err:
        reference_images([str(big), str(fake)])
    assert err.value.field == "images[1]" and str(tmp_path) not in err.value.message


def test_huge_jobs_ask_once():
    from sdcodex.ui.guard import CONFIRM_IMAGES, fingerprint, job_size, needs_confirmation

    small = {"task": "txt2img", "width": 512, "height": 512, "batch_size": 8, "batch_count": 4}
    assert needs_confirmation(small, None) is None
    huge = {**small, "batch_count": 100}
    assert job_size(huge) == (800, 512 * 512 * 800)
    notice = needs_confirmation(huge, None)
    assert notice and "800 images" in notice and f"more than {CONFIRM_IMAGES}" in notice
    assert needs_confirmation(huge, fingerprint(huge)) is None       # the second press runs it
    assert needs_confirmation({**huge, "seed": 1}, fingerprint(huge))  # another request asks again
    wide = {"task": "txt2img", "width": 2048, "height": 2048, "batch_size": 2, "batch_count": 1,
            "hires": {"scale": 4.0}}
    assert "megapixels" in needs_confirmation(wide, None)


def test_progress_rate_and_final_image_count():
    from sdcodex.ui.progress import Status, progress_html, rate_text

    assert rate_text(2.5) == "2.50 it/s" and rate_text(0.25) == "4.00 s/it"
    status = Status("j", state="done", done=4, total=4, images=2, image_index=0)
    assert "image 2/2" in progress_html(status)
    status = Status("j", state="running", done=1, total=4, images=2, image_index=0, it_per_s=0.5)
    text = progress_html(status)
    assert "image 1/2" in text and "2.00 s/it" in text


def test_model_defaults_fill_and_user_values_survive_a_switch(tmp_path):
    from sdcodex.models.declared import read_declared, write_declared
    from sdcodex.models.demo import DEMO_DEFAULTS
    from sdcodex.ui.defaults import start_values

    folder = tmp_path / "m"
    folder.mkdir()
    write_declared(folder, {**DEMO_DEFAULTS, "bogus": 1})
    assert read_declared(folder)["defaults"] == DEMO_DEFAULTS
    (tmp_path / "x.safetensors").write_bytes(b"")
    (tmp_path / "x.codex.json").write_text("{not json")
    assert read_declared(tmp_path / "x.safetensors") == {}

    fresh = start_values("sd15", "normal", "txt2img", DEMO_DEFAULTS)
    assert (fresh["width"], fresh["height"], fresh["steps"]) == (64, 64, 4) and "num_frames" not in fresh
    # an engine switch keeps the user's size/steps when they fit the new engine, resets them when not
    kept = start_values("wan22_ti2v_5b", "normal", "txt2vid", None, {"width": 640, "height": 352, "steps": 12})
    assert "width" not in kept and "height" not in kept and "steps" not in kept and kept["num_frames"] == 121
    reset = start_values("wan22_ti2v_5b", "normal", "txt2vid", None, {"width": 520, "height": 352, "steps": 12})
    assert reset["width"] == 1280 and "height" not in reset
    # the model's declared values win over the user's
    demo = start_values("wan22_ti2v_5b", "normal", "txt2vid", DEMO_DEFAULTS, {"width": 640, "height": 352})
    assert (demo["width"], demo["num_frames"]) == (64, 9)


def test_wan_rope_table_limits_are_field_errors(tmp_path):
    import sdcodex.engines  # noqa: F401
    from sdcodex.core.params import Params, check_model_limits
    from sdcodex.core.registry import get_engine

    folder = tmp_path / "wan"
    (folder / "transformer").mkdir(parents=True)
    (folder / "vae").mkdir()
    (folder / "transformer" / "config.json").write_text(json.dumps({"rope_max_seq_len": 32,
                                                                     "patch_size": [1, 2, 2]}))
    (folder / "vae" / "config.json").write_text(json.dumps({"scale_factor_spatial": 16,
                                                             "scale_factor_temporal": 4}))

    class Entry:
        path = folder

    limits = get_engine("wan22_ti2v_5b").model_limits(Entry)
    assert limits["width"][0] == limits["height"][0] == 1024 and limits["num_frames"][0] == 125
    from sdcodex.core.enums import EngineKey, Task

    ok = Params(engine=EngineKey("wan22_ti2v_5b"), task=Task.TXT2VID, width=1024, height=704, num_frames=121)
    check_model_limits(ok, limits, "wan-demo")
    with pytest.raises(ValidationError) as err:
        check_model_limits(Params(engine=EngineKey("wan22_ti2v_5b"), task=Task.TXT2VID, width=1280, height=704,
                                  num_frames=121), limits, "wan-demo")
    assert err.value.field == "width" and "at most 1024" in err.value.message and "rotary" in err.value.message
    assert get_engine("wan22_ti2v_5b").model_limits(type("E", (), {"path": tmp_path / "none"})) == {}


def test_presets_load_only_into_a_matching_tab():
    from sdcodex.core.presets import all_presets
    from sdcodex.ui.presets_view import loadable

    preset = next(p for p in all_presets().values() if p.task == "txt2img")
    ok, error = loadable(preset.id, {"txt2img": {"engine": preset.engine, "mode": preset.mode}})
    assert ok is preset and error == ""
    other = "sd15" if preset.engine != "sd15" else "sdxl"
    refused, error = loadable(preset.id, {"txt2img": {"engine": other, "mode": preset.mode}})
    assert refused is None and "Choose that engine" in error


def test_size_tools_and_reading_parameters_from_the_prompt():
    from sdcodex.ui.tools import aspect_size, params_from_text, swap

    assert swap(512, 768) == (768, 512)
    assert aspect_size("sd15", "1:1", 512, 512) == (512, 512)
    w, h = aspect_size("sd15", "16:9", 512, 512)
    assert w % 8 == 0 and h % 8 == 0 and w > h and abs(w * h - 512 * 512) < 0.05 * 512 * 512
    w, h = aspect_size("wan22_ti2v_5b", "9:16", 1280, 704)
    assert w % 32 == 0 and h % 32 == 0 and h > w
    assert aspect_size("sd15", "21:9", 64, 64)[1] >= 64  # never under the engine's minimum
    text = ("a red fox\nNegative prompt: blurry\nSteps: 12, Sampler: Euler a, CFG scale: 5.5, Seed: 42, "
            "Size: 640x384, Model: x")
    values = params_from_text(text, "txt2img")
    assert values["prompt"] == "a red fox" and values["negative_prompt"] == "blurry"
    assert (values["steps"], values["cfg_scale"], values["seed"], values["width"], values["height"]) == \
        (12, 5.5, 42, 640, 384)
    assert params_from_text("just a prompt", "txt2img") == {}


def test_a_missing_model_names_the_checkpoint_field_without_a_server_path(tmp_path):
    from sdcodex.core.errors import ModelNotFoundError
    from sdcodex.models.inventory import Inventory
    from sdcodex.ui.fields import field_label
    from sdcodex.ui.progress import error_html

    with pytest.raises(ModelNotFoundError) as err:
        Inventory(tmp_path).resolve("gone")
    text = error_html(err.value, field_label)
    assert "Checkpoint" in text and "(model)" in text and "gone" in text and str(tmp_path) not in text
