"""Strict requests: unknown keys, wrong types, ranges and task-inapplicable keys are errors naming the field."""
import pytest

from sdcodex.core.enums import Task
from sdcodex.core.errors import ValidationError
from sdcodex.core.request import TASK_KEYS, validate_request


def test_minimal_request_is_valid():
    req = validate_request({"task": "txt2img", "prompt": "a cat"})
    assert req.task is Task.TXT2IMG and req.prompt == "a cat" and req.width is None


def test_missing_task_names_field_and_allowed():
    with pytest.raises(ValidationError) as err:
        validate_request({"prompt": "x"})
    assert err.value.field == "task" and "txt2img" in str(err.value)


def test_unknown_key_is_rejected_with_its_path():
    with pytest.raises(ValidationError) as err:
        validate_request({"task": "txt2img", "promt": "typo"})
    assert err.value.field == "promt" and "unknown key" in str(err.value)


def test_unknown_nested_key_has_json_path():
    with pytest.raises(ValidationError) as err:
        validate_request({"task": "txt2img", "hires": {"scale": 2.0, "stepz": 3}})
    assert err.value.field == "hires.stepz"


def test_list_item_path():
    with pytest.raises(ValidationError) as err:
        validate_request({"task": "txt2img", "loras": [{"name": "a"}, {"name": 5}]})
    assert err.value.field == "loras[1].name"


@pytest.mark.parametrize("key,value", [("width", "512"), ("steps", 20.5), ("seed", "1"), ("cfg_scale", "7"),
                                       ("mask_invert", "yes"), ("prompt", 3)])
def test_wrong_types_are_rejected_not_coerced(key, value):
    task = "inpaint" if key == "mask_invert" else "txt2img"
    with pytest.raises(ValidationError) as err:
        validate_request({"task": task, key: value})
    assert err.value.field == key


def test_out_of_range_names_bounds():
    with pytest.raises(ValidationError) as err:
        validate_request({"task": "txt2img", "steps": 0})
    assert err.value.field == "steps" and "ge 1" in str(err.value)


def test_key_that_does_not_apply_to_task():
    with pytest.raises(ValidationError) as err:
        validate_request({"task": "txt2img", "mask": "abc"})
    assert err.value.field == "mask" and "inpaint" in str(err.value)


def test_unknown_enum_value_lists_allowed():
    with pytest.raises(ValidationError) as err:
        validate_request({"task": "txt2img", "mode": "fast"})
    assert err.value.field == "mode" and "lcm" in str(err.value)


def test_zero_seed_and_minus_one_are_valid():
    assert validate_request({"task": "txt2img", "seed": 0}).seed == 0
    assert validate_request({"task": "txt2img", "seed": -1}).seed == -1


def test_every_task_has_a_key_table():
    assert set(TASK_KEYS) == set(Task)
    assert "mask" in TASK_KEYS[Task.INPAINT] and "mask" not in TASK_KEYS[Task.IMG2IMG]


def test_not_an_object():
    with pytest.raises(ValidationError):
        validate_request(["txt2img"])


def test_emphasis_is_strict_and_reaches_params():
    from sdcodex.core.enums import Emphasis
    from sdcodex.core.params import parse_params
    import sdcodex.engines  # noqa: F401 - registers the engines

    req = validate_request({"task": "txt2img", "prompt": "(a:1.2)", "emphasis": "No norm"})
    assert req.emphasis is Emphasis.NO_NORM
    assert parse_params("sd15", "txt2img", req).emphasis is Emphasis.NO_NORM
    assert parse_params("sd15", "txt2img", {"task": "txt2img"}).emphasis is Emphasis.ORIGINAL
    for bad in ("no norm", "Loud", 1):
        with pytest.raises(ValidationError) as err:
            validate_request({"task": "txt2img", "emphasis": bad})
        assert err.value.field == "emphasis" and all(v in str(err.value.allowed) for v in Emphasis.values())
    with pytest.raises(ValidationError) as err:
        validate_request({"task": "upscale", "emphasis": "None"})
    assert err.value.field == "emphasis"
