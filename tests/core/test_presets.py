"""Presets: validated at load, fill-only, report what they filled."""
import textwrap

import pytest

from sdcodex.core.errors import PresetError, ValidationError
from sdcodex.core.presets import all_presets, fill, find_preset, load_preset_file


def write(root, rel, text):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_shipped_presets_are_valid_and_cover_sd_tasks():
    presets = all_presets()
    for engine in ("sd15", "sdxl"):
        for task in ("txt2img", "img2img", "inpaint"):
            assert f"{engine}/normal/{task}" in presets


def test_fill_only_never_overrides_and_reports_patch():
    preset, _ = find_preset("sd15", "normal", "txt2img")
    request = {"task": "txt2img", "steps": 7, "seed": 0, "negative_prompt": "", "clip_skip": 1}
    result = fill(request, preset)
    assert result.data["steps"] == 7 and result.data["seed"] == 0 and result.data["negative_prompt"] == ""
    assert "steps" not in result.patch and "seed" not in result.patch and "negative_prompt" not in result.patch
    assert result.patch["width"] == 512 and result.data["width"] == 512
    assert result.preset_id == "sd15/normal/txt2img"


def test_false_is_a_value_not_a_gap():
    preset, _ = find_preset("sd15", "normal", "inpaint")
    result = fill({"task": "inpaint", "mask_invert": False, "inpaint_full_res": True}, preset)
    assert result.data["inpaint_full_res"] is True and "inpaint_full_res" not in result.patch


def test_unknown_key_in_preset_is_error_at_load(tmp_path):
    path = write(tmp_path, "sd15/normal/txt2img.yaml", """
        schema_version: 1
        values:
          stepz: 20
    """)
    with pytest.raises(PresetError) as err:
        load_preset_file(path, tmp_path)
    assert "stepz" in str(err.value) and str(path) in str(err.value)


def test_wrong_type_in_preset(tmp_path):
    path = write(tmp_path, "sd15/normal/txt2img.yaml", "schema_version: 1\nvalues:\n  width: wide\n")
    with pytest.raises(PresetError) as err:
        load_preset_file(path, tmp_path)
    assert err.value.field == "values.width"


def test_schema_version_required(tmp_path):
    path = write(tmp_path, "sd15/normal/txt2img.yaml", "values: {steps: 3}\n")
    with pytest.raises(PresetError, match="schema_version"):
        load_preset_file(path, tmp_path)


def test_key_for_other_task_in_preset(tmp_path):
    path = write(tmp_path, "sd15/normal/txt2img.yaml", "schema_version: 1\nvalues:\n  mask_blur: 4\n")
    with pytest.raises(PresetError, match="does not apply"):
        load_preset_file(path, tmp_path)


def test_bad_folder_name(tmp_path):
    path = write(tmp_path, "sd99/normal/txt2img.yaml", "schema_version: 1\nvalues: {}\n")
    with pytest.raises(PresetError, match="engine"):
        load_preset_file(path, tmp_path)


def test_named_preset_and_unknown_name():
    preset, _ = find_preset("sd15", "normal", "txt2img", name="sdxl/normal/txt2img")
    assert preset.id == "sdxl/normal/txt2img"
    with pytest.raises(ValidationError) as err:
        find_preset("sd15", "normal", "txt2img", name="nope")
    assert err.value.field == "preset"


def test_nested_fill_keeps_given_subkeys():
    from sdcodex.core.presets import Preset

    preset = Preset(id="x/normal/txt2img", engine="sd15", mode="normal", task="txt2img", path=None,
                    values={"hires": {"scale": 2.0, "steps": 10}})
    result = fill({"hires": {"steps": 3}}, preset)
    assert result.data["hires"] == {"steps": 3, "scale": 2.0}
    assert result.patch == {"hires": {"scale": 2.0}}
