"""X/Y/Z plot parsing and expansion (core/xyz.py), checked against A1111's documented behaviour: the wiki's range
examples (`1-5`, `1-5 (+2)`, `10-5 (-3)`, `1-3 (+0.5)`, `1-10 [5]`, `0.0-1.0 [6]`), the script's CSV list rule,
Prompt S/R, -1 seeds, the costly axis outermost, and the script's axis indices and `script_args` order."""
from __future__ import annotations

import random

import pytest

from sdcodex.core.errors import ValidationError
from sdcodex.core.xyz import (a1111_axis_options, format_label, from_script_args, parse_values, plan_plot,
                              reorder_prompt, split_values)

# (axis value type, text, expected) — A1111 wiki "X/Y/Z plot" examples, then the script's own rules
RANGES = [
    ("int", "1-5", [1, 2, 3, 4, 5]),
    ("int", "1-5 (+2)", [1, 3, 5]),
    ("int", "10-5 (-3)", [10, 7]),
    ("float", "1-3 (+0.5)", [1.0, 1.5, 2.0, 2.5, 3.0]),
    ("int", "1-10 [5]", [1, 3, 5, 7, 10]),
    ("float", "0.0-1.0 [6]", [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]),
    ("int", "1-10 (+2)", [1, 3, 5, 7, 9]),
    ("float", "0.5-1.5 [5]", [0.5, 0.75, 1.0, 1.25, 1.5]),
    # the script counts to end+1 with range(): a falling range stops one short of an inclusive end
    ("int", "10-1 (-3)", [10, 7, 4]),
    # numpy.arange(start, end + step, step): float steps may overshoot by one value, as in A1111
    ("float", "0.1-0.3 (+0.1)", [0.1, 0.2, 0.3, 0.4]),
    ("float", "1-3", [1.0, 2.0, 3.0]),
    ("int", "-5-5 (+5)", [-5, 0, 5]),
    ("int", "1-5, 8, 10-12", [1, 2, 3, 4, 5, 8, 10, 11, 12]),
    ("int", "-1, 7", [-1, 7]),
    ("float", "7, 7.5", [7.0, 7.5]),
    ("str", '"a, b",c, d', ["a, b", "c", "d"]),
    # Python's CSV reader: a quote counts only right after the comma (no space), as in A1111
    ("str", 'x, "a, b"', ["x", '"a', 'b"']),
    ("str", "cat,,dog", ["cat", "", "dog"]),
]


@pytest.mark.parametrize("kind,text,expected", RANGES)
def test_values_expand_as_a1111(kind, text, expected):
    got = parse_values(text, kind)
    assert got == pytest.approx(expected) if kind == "float" else got == expected
    assert all(type(v).__name__ == kind for v in got)


def test_values_errors_name_the_field():
    with pytest.raises(ValidationError) as e:
        parse_values("5-1", "int", where="xyz.x.values")
    assert e.value.field == "xyz.x.values" and "no values" in str(e.value)
    with pytest.raises(ValidationError) as e:
        parse_values("1-10 (2)", "int", where="xyz.y.values")  # the step needs its sign, as A1111's pattern
    assert e.value.field == "xyz.y.values"
    with pytest.raises(ValidationError):
        parse_values("", "str")
    assert parse_values(["a", "b", "c"], "perm")[:2] == [["a", "b", "c"], ["a", "c", "b"]]
    assert len(parse_values("a, b, c", "perm")) == 6
    assert split_values("a,b\nc") == ["a", "b", "c"]


def test_labels_as_a1111_draws_them():
    assert format_label("steps", 20) == "Steps: 20"
    assert format_label("cfg_scale", 7.0) == "CFG Scale: 7.0"
    assert format_label("sampler", "Euler a") == "Euler a"
    assert format_label("prompt_sr", "dog") == "dog"
    assert format_label("model", "sub/dir/v1-5.safetensors") == "v1-5.safetensors"
    assert format_label("nothing", 0) == ""
    assert format_label("prompt_order", ["a", "b"]) == "a, b"
    assert format_label("size", "512x768") == "Size: 512x768"


BASE = {"task": "txt2img", "prompt": "a cat on a mat", "negative_prompt": "blurry cat", "steps": 2, "seed": 7}


def test_plan_cells_prompt_sr_seeds_and_order():
    plan = plan_plot({**BASE, "xyz": {"x": {"type": "prompt_sr", "values": "cat, dog, fox"},
                                      "y": {"type": "seed", "values": "-1, 3"}}}, rng=random.Random(0))
    assert plan.shape == (3, 2, 1)
    prompts = [(c.request["prompt"], c.request["negative_prompt"]) for c in plan.cells[:3]]
    assert prompts == [("a cat on a mat", "blurry cat"), ("a dog on a mat", "blurry dog"),
                       ("a fox on a mat", "blurry fox")]
    seeds = [c.request["seed"] for c in plan.cells]
    assert seeds[3:] == [3, 3, 3] and len(set(seeds[:3])) == 1 and seeds[0] != -1  # -1 -> one random seed
    assert "xyz" not in plan.cells[0].request
    assert plan.order == [0, 1, 2, 3, 4, 5]  # no costly axis: z, then y, then x (x fastest)
    extra = plan.infotext_extra(with_z=True)
    assert extra["Script"] == "X/Y/Z plot" and extra["X Type"] == "Prompt S/R" and extra["Y Values"] == "-1, 3"
    assert extra["Fixed Y Values"] == f"{seeds[0]}, 3"


def test_plan_keeps_random_seeds_and_varies_seeds():
    keep = plan_plot({**BASE, "seed": -1, "xyz": {"x": {"type": "steps", "values": "1-2"},
                                                  "keep_random_seeds": True}})
    assert [c.request["seed"] for c in keep.cells] == [-1, -1]
    fixed = plan_plot({**BASE, "seed": -1, "xyz": {"x": {"type": "steps", "values": "1-2"}}}, rng=random.Random(1))
    assert fixed.cells[0].request["seed"] == fixed.cells[1].request["seed"] != -1  # fix_seed: one for all cells
    vary = plan_plot({**BASE, "xyz": {"x": {"type": "steps", "values": "1-3"}, "y": {"type": "cfg_scale",
                                                                                     "values": "5, 6"},
                                      "vary_seeds_x": True, "vary_seeds_y": True}})
    assert [c.request["seed"] for c in vary.cells] == [7, 8, 9, 10, 11, 12]


def test_checkpoint_axis_runs_outermost_and_size_prompt_order():
    plan = plan_plot({**BASE, "xyz": {"x": {"type": "model", "values": "a, b"},
                                      "y": {"type": "size", "values": "64x64, 64x96"},
                                      "z": {"type": "prompt_order", "values": "cat, mat"}}})
    assert plan.shape == (2, 2, 2)
    runs = [plan.cells[i].position for i in plan.order]
    assert [p[0] for p in runs] == [0, 0, 0, 0, 1, 1, 1, 1]  # the model changes once
    # then z, then y innermost (A1111: second is z when y does not cost more than z)
    assert runs[:3] == [(0, 0, 0), (0, 1, 0), (0, 0, 1)]
    cell = plan.cells[plan.index(1, 1, 1)]
    assert (cell.request["model"], cell.request["width"], cell.request["height"]) == ("b", 64, 96)
    assert cell.request["prompt"] == "a mat on a cat"
    assert reorder_prompt("one, two, three", ["three", "one"]) == "three, two, one"
    again = plan_plot(plan.request)  # the effective request (stored with the grid) re-makes the same cells
    assert [c.request for c in again.cells] == [c.request for c in plan.cells]


@pytest.mark.parametrize("xyz,field", [
    ({"x": {"type": "bogus", "values": "1"}}, "xyz.x.type"),
    ({"x": {"type": "steps", "values": "a, b"}}, "xyz.x.values"),
    ({"x": {"type": "steps", "values": "1"}, "y": {"type": "prompt_sr", "values": "zebra, cow"}}, "xyz.y.values"),
    ({"x": {"type": "hires.steps", "values": "1, 2"}}, "xyz.x.type"),
    ({"x": {"type": "steps", "values": 5}}, "xyz.x.values"),
    ({"x": {"type": "steps", "values": "1"}, "margin_size": 900}, "xyz.margin_size"),
    ({"x": {"type": "steps", "values": "1"}, "colour": 1}, "xyz.colour"),
    ({"x": {"type": "denoising_strength", "values": "0.5"}}, "xyz.x.type"),  # not a txt2img key
    ({"x": {"type": "steps", "values": "1-40"}, "y": {"type": "seed", "values": "1-40"}}, "xyz"),
])
def test_plan_errors_name_the_xyz_field(xyz, field):
    with pytest.raises(ValidationError) as e:
        plan_plot({**BASE, "xyz": xyz})
    assert e.value.field == field, (e.value.field, str(e.value))


def test_xyz_only_for_image_tasks():
    with pytest.raises(ValidationError) as e:
        plan_plot({"task": "txt2vid", "xyz": {"x": {"type": "steps", "values": "1"}}})
    assert e.value.field == "xyz"


def test_a1111_axis_indices():
    txt = [label for label, _ in a1111_axis_options("txt2img")]
    img = [label for label, _ in a1111_axis_options("img2img")]
    assert txt[:12] == ["Nothing", "Seed", "Var. seed", "Var. strength", "Steps", "Hires steps", "CFG Scale",
                        "Prompt S/R", "Prompt order", "Sampler", "Hires sampler", "Checkpoint name"]
    assert img[:11] == ["Nothing", "Seed", "Var. seed", "Var. strength", "Steps", "CFG Scale", "Image CFG Scale",
                        "Prompt S/R", "Prompt order", "Sampler", "Checkpoint name"]
    assert (txt.index("Schedule type"), txt.index("Clip skip"), txt.index("VAE"), txt.index("Size")) == (17, 25, 30, 42)
    assert (img.index("Denoising"), img.index("VAE"), img.index("Size")) == (25, 29, 41)


def test_script_args_map_to_xyz():
    args = [4, "1-2", [], 6, "3, 7", [], 0, "", [], True, False, False, False, False, False, False, 0, False]
    spec = from_script_args(args, tab="txt2img")
    assert spec["x"] == {"type": "steps", "values": "1-2"} and spec["y"] == {"type": "cfg_scale", "values": "3, 7"}
    assert "z" not in spec and spec["draw_legend"] is True and spec["margin_size"] == 0
    # a dropdown axis (checkpoints) sends its values as a list; img2img counts its own options
    spec = from_script_args([10, "", ["a", "b"], 25, "0.3, 0.6", []], tab="img2img")
    assert spec["x"] == {"type": "model", "values": ["a", "b"]} and spec["y"]["type"] == "denoising_strength"
    assert from_script_args([26, "0.3"], tab="txt2img")["x"]["type"] == "hires.denoising_strength"
    # A1111 1.6 order (no vary_seeds_*): margin right after no_fixed_seeds
    old = from_script_args([1, "1, 2", [], 0, "", [], 0, "", [], False, True, False, True, 12, False],
                           tab="txt2img")
    assert old["margin_size"] == 12 and old["keep_random_seeds"] and old["include_sub_images"]
    assert from_script_args(["CFG Scale", "5"], tab="txt2img")["x"]["type"] == "cfg_scale"  # a label works too


@pytest.mark.parametrize("args,field", [
    ([99, "1"], "script_args[0] (x_type)"),
    ([2, "1"], "script_args[0] (x_type)"),          # Var. seed: no such setting here
    ([4, "1", [], 77, "1"], "script_args[3] (y_type)"),
    ([4, "1", [], 0, "", [], 0, "", [], "maybe"], "script_args[9] (draw_legend)"),
    ("4,1", "script_args"),
])
def test_script_args_errors(args, field):
    with pytest.raises(ValidationError) as e:
        from_script_args(args, tab="txt2img")
    assert e.value.field == field


def test_img2img_denoising_and_hires_axes():
    plan = plan_plot({"task": "img2img", "init_image": "x", "prompt": "p",
                      "xyz": {"x": {"type": "denoising_strength", "values": "0.3-0.7 [3]"}}})
    assert [c.request["denoising_strength"] for c in plan.cells] == pytest.approx([0.3, 0.5, 0.7])
    assert all(c.request["init_image"] == "x" for c in plan.cells)
    plan = plan_plot({**BASE, "hires": {"scale": 2.0}, "xyz": {"x": {"type": "hires.steps", "values": "1, 3"},
                                                               "y": {"type": "vae", "values": "Automatic, my-vae"}}})
    assert [c.request["hires"] for c in plan.cells[:2]] == [{"scale": 2.0, "steps": 1}, {"scale": 2.0, "steps": 3}]
    assert "vae" not in plan.cells[0].request and plan.cells[2].request["vae"] == "my-vae"
    assert [plan.cells[i].iy for i in plan.order] == [0, 0, 1, 1]  # the VAE axis (y) outermost: one change


@pytest.mark.parametrize("kind,text", [("int", "1-1000000000"), ("float", "0-1000000 (+0.0001)"),
                                       ("int", "1-10 [99999999]"), ("int", "1-5 (+0)"), ("perm", "a,b,c,d,e,f,g"),
                                       ("perm", "")])
def test_huge_or_empty_ranges_are_refused_before_expanding(kind, text):
    with pytest.raises(ValidationError) as e:
        parse_values(text, kind, where="xyz.x.values")
    assert e.value.field == "xyz.x.values"
