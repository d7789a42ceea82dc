"""The settings store (core/settings.py): every bad value refused naming the setting and what is allowed, nothing
saved when one value of a post is wrong, values kept across a restart (a new store over the same file), an
unreadable file kept aside, and what the settings fill into a request (fill-only; family defaults only in normal
mode without a named preset)."""
from __future__ import annotations

import json

import pytest

import sdcodex.engines  # noqa: F401 - registers the engines (their size rules check the family defaults)
from sdcodex.core.errors import ValidationError
from sdcodex.core.settings import SettingsStore, check_value
from sdcodex.media.naming import expand_pattern, next_output_path


@pytest.mark.parametrize("key, value, allowed_part", [
    ("jpeg_quality", 500, "from 1 to 100"),
    ("jpeg_quality", "high", "from 1 to 100"),
    ("samples_format", "bmp", "webp"),
    ("emphasis", "Loud", "No norm"),
    ("live_previews_enable", 1, "true or false"),
    ("samples_filename_pattern", "[bogus]", "[seed]"),
    ("samples_filename_pattern", "../up/[seed]", "[seed]"),
    ("sd_checkpoints_limit", 0, "from 1 to 16"),
    ("max_steps", -1, "from 0"),
    ("codex_family_defaults", {"nope": {"steps": 2}}, "sd15"),
])
def test_bad_values_name_the_setting_and_what_is_allowed(key, value, allowed_part):
    with pytest.raises(ValidationError) as err:
        check_value(key, value)
    assert err.value.field.split(".")[0] == key
    assert allowed_part in str(err.value.allowed)


def test_family_defaults_are_checked_like_a_request():
    with pytest.raises(ValidationError) as err:
        check_value("codex_family_defaults", {"sd15": {"steps": 0}})
    assert err.value.field == "codex_family_defaults.sd15.steps"
    with pytest.raises(ValidationError) as err:  # the engine's size rule (multiple of 8)
        check_value("codex_family_defaults", {"sd15": {"width": 65}})
    assert err.value.field == "codex_family_defaults.sd15.width" and "multiple of 8" in str(err.value)
    with pytest.raises(ValidationError) as err:
        check_value("codex_family_defaults", {"sd15": {"eta": 1}})
    assert err.value.field == "codex_family_defaults.sd15.eta" and "steps" in err.value.allowed
    assert check_value("codex_family_defaults", {"sd15": {"steps": 12, "width": 384, "cfg_scale": 5}}) == \
        {"sd15": {"steps": 12, "width": 384, "cfg_scale": 5.0}}


def test_store_persists_all_or_nothing_and_survives_a_restart(tmp_path):
    path = tmp_path / "data" / "settings.json"
    store = SettingsStore(path, defaults={"max_steps": 80})
    assert store.get("max_steps") == 80 and store.get("samples_format") == "png"
    seen: list[set[str]] = []
    store.listeners.append(seen.append)
    assert store.update({"samples_format": "WEBP", "jpeg_quality": 70, "a_client_key": 1}) == \
        {"samples_format", "jpeg_quality"}
    assert seen == [{"samples_format", "jpeg_quality"}]
    with pytest.raises(ValidationError) as err:  # one bad value: nothing of this post is saved
        store.update({"jpeg_quality": 50, "emphasis": "Loud"})
    assert err.value.field == "emphasis"
    assert store.get("jpeg_quality") == 70
    assert json.loads(path.read_text()) == {"jpeg_quality": 70, "samples_format": "webp"}

    again = SettingsStore(path, defaults={"max_steps": 80})  # a restart
    assert again.values() == store.values()
    assert again.reset(["jpeg_quality"]) == {"jpeg_quality"} and again.get("jpeg_quality") == 95

    path.write_text("{not json")
    broken = SettingsStore(path)
    assert broken.get("samples_format") == "png"
    assert list(tmp_path.glob("data/settings.json.bad-*")), "the unreadable file is kept aside"


def test_request_defaults_fill_only():
    store = SettingsStore(None)
    store.update({"samples_format": "jpg", "codex_video_format": "webm", "emphasis": "No norm",
                  "CLIP_stop_at_last_layers": 2, "codex_family_defaults": {"sd15": {"steps": 9, "width": 256}}})
    assert store.request_defaults("sd15", "txt2img", {"width": 128}) == \
        {"output_format": "jpeg", "emphasis": "No norm", "clip_skip": 2, "steps": 9}
    # a named preset or a fast mode brings its own steps and size: only the other settings fill
    assert store.request_defaults("sd15", "txt2img", {"mode": "lcm"}) == \
        {"output_format": "jpeg", "emphasis": "No norm", "clip_skip": 2}
    assert store.request_defaults("sd15", "txt2img", {"preset": "x", "output_format": "png"}) == \
        {"emphasis": "No norm", "clip_skip": 2}
    # a video task takes the video format; an engine without CLIP layers gets no clip skip
    assert store.request_defaults("wan22_ti2v_5b", "txt2vid", {}) == {"output_format": "webm", "emphasis": "No norm"}
    assert store.request_defaults("sd15", "upscale", {}) == {"output_format": "jpeg"}


def test_filename_pattern_expands_safely(tmp_path):
    fields = {"prompt": 'a red/fox: "hello" <world> in the snow at dusk, very detailed', "steps": 4,
              "cfg_scale": 7.0, "model": "sd15-demo", "extra": {"Engine": "sd15"}}
    name = expand_pattern("[seed]-[prompt_words]-[steps]-[cfg]-[model_name]-[engine]", fields, seed=42, task="txt2img")
    assert name == "42-a red fox hello world in the snow-4-7-sd15-demo-sd15"
    path = next_output_path(tmp_path, "txt2img", 42, "png", name=expand_pattern("[prompt]", fields, seed=42,
                                                                                task="txt2img"))
    assert path.parent == tmp_path / "txt2img" / path.parent.name and "/" not in path.name[6:]
    assert path.name.startswith("00000-a red_fox_ _hello_ _world_")
