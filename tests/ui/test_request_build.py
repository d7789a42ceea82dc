"""The UI's request building without a browser: fields -> the strict request (ints stay ints, keys the
engine does not take are left out, upscale sends no checkpoint), image placeholders in the preview and
back, the painted-layer mask, and what each engine's capabilities make visible."""
from __future__ import annotations

import base64
import io
import json

import pytest
from PIL import Image

from sdcodex.core.errors import ValidationError
from sdcodex.core.request import validate_request
from sdcodex.ui import caps
from sdcodex.ui.request import (build_request, editor_images, mask_from_layers, parse_edited, preview_json,
                                request_to_fields)

QUICK = {"engine": "sd15", "model": "sd15-demo", "mode": "normal", "vae": "Automatic"}


def test_fields_become_a_strict_request():
    values = {"prompt": "a fox", "negative_prompt": "", "width": 64.0, "height": 64.0, "steps": 2, "seed": 0.0,
              "cfg_scale": 7, "sampler": "Euler", "hires.enabled": False, "hires.scale": 2}
    req = build_request("txt2img", QUICK, values, caps.visible_keys("sd15", "txt2img"))
    assert req == {"task": "txt2img", "model": "sd15-demo", "engine": "sd15", "mode": "normal", "prompt": "a fox",
                   "negative_prompt": "", "width": 64, "height": 64, "steps": 2, "seed": 0, "cfg_scale": 7.0,
                   "sampler": "Euler"}
    assert isinstance(req["width"], int) and isinstance(req["cfg_scale"], float)
    validate_request(req)  # the same strict check the API runs


def test_hires_and_hidden_keys():
    values = {"prompt": "x", "hires.enabled": True, "hires.scale": 1.5, "hires.steps": 0.0,
              "hires.denoising_strength": 0.6, "hires.upscaler": "Latent", "distilled_cfg_scale": 3.5,
              "num_frames": 9}
    req = build_request("txt2img", QUICK, values, caps.visible_keys("sd15", "txt2img"))
    assert req["hires"] == {"scale": 1.5, "steps": 0, "denoising_strength": 0.6, "upscaler": "Latent"}
    assert "distilled_cfg_scale" not in req and "num_frames" not in req  # not SD 1.5 / not txt2img keys
    validate_request(req)


def test_upscale_sends_no_checkpoint_and_a_png():
    image = Image.new("RGB", (8, 8), (10, 20, 30))
    req = build_request("upscale", QUICK, {"upscaler": "Lanczos", "scale": 2, "prompt": "ignored"},
                        caps.visible_keys("sd15", "upscale"), {"init_image": image})
    assert set(req) == {"task", "upscaler", "scale", "init_image"}
    decoded = Image.open(io.BytesIO(base64.b64decode(req["init_image"])))
    assert decoded.size == (8, 8) and decoded.getpixel((0, 0)) == (10, 20, 30)


def test_preview_shows_placeholders_and_edits_put_the_images_back():
    image = Image.new("RGB", (16, 8), (200, 0, 0))
    req = build_request("img2img", QUICK, {"prompt": "p"}, None, {"init_image": image}, encode=False)
    text = preview_json(req)
    assert json.loads(text)["init_image"] == "<init_image: 16x8 PNG from the image field>"
    edited = parse_edited(text.replace('"p"', '"q"'), {"init_image": image})
    assert edited["prompt"] == "q"
    assert Image.open(io.BytesIO(base64.b64decode(edited["init_image"]))).size == (16, 8)
    with pytest.raises(ValidationError, match="line 1, column"):
        parse_edited("{oops", {})
    with pytest.raises(ValidationError) as err:
        parse_edited(text, {})
    assert err.value.field == "init_image"


def test_mask_is_every_painted_pixel():
    layer = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    for x in range(10, 20):
        layer.putpixel((x, 5), (255, 255, 255, 255))
    mask = mask_from_layers([layer], (32, 32))
    assert mask.mode == "L" and mask.getpixel((15, 5)) == 255 and mask.getpixel((15, 6)) == 0
    assert mask_from_layers([Image.new("RGBA", (32, 32))], (32, 32)) is None  # nothing painted
    images = editor_images({"background": Image.new("RGBA", (32, 32), (1, 2, 3, 255)), "layers": [layer]})
    assert images["init_image"].mode == "RGB" and images["mask"].getpixel((12, 5)) == 255


def test_request_to_fields_keeps_what_the_target_takes():
    fields = request_to_fields({"task": "txt2img", "model": "m", "prompt": "p", "seed": 5, "hires": {"scale": 2.0},
                                "width": 64}, "img2img")
    assert fields == {"prompt": "p", "seed": 5, "width": 64}
    assert request_to_fields({"hires": {"scale": 2.0}}, "txt2img") == {"hires.enabled": True, "hires.scale": 2.0}


def test_capabilities_drive_tabs_and_fields():
    assert {"txt2img", "img2img", "inpaint", "upscale"} <= caps.tasks_for("sd15")
    assert "txt2vid" not in caps.tasks_for("sd15")
    assert "txt2img" not in caps.tasks_for("wan22_ti2v_5b") and "txt2vid" in caps.tasks_for("wan22_ti2v_5b")
    assert "clip_skip" in caps.visible_keys("sd15", "txt2img")
    assert "distilled_cfg_scale" not in caps.visible_keys("sd15", "txt2img")
    assert "distilled_cfg_scale" in caps.visible_keys("flux", "txt2img")
    assert "guidance_scale_2" in caps.visible_keys("wan22_t2v_a14b", "txt2vid")
    start = caps.start_values("wan22_ti2v_5b", "normal", "txt2vid")
    assert start["num_frames"] == 121 and start["fps"] == 24.0  # the engine's declared defaults / preset
    assert "upscale" not in caps.engine_keys()  # a checkpoint-free tool engine is not in the Engine dropdown
    assert caps.samplers_for("flux")[0] == "Automatic" and "Euler a" not in caps.samplers_for("flux")


def test_progress_counts_skipped_images():
    from sdcodex.ui.progress import Status, progress_html

    status = Status("job1")
    status.apply("progress", {"step": 3, "steps": 12, "done": 3, "total": 36, "image_index": 0, "images": 3})
    status.apply("skipped", {"seeds": [7]})
    status.apply("result", {})
    html = progress_html(status)
    assert 'data-skipped="1"' in html and "1 skipped" in html and 'data-state="done"' in html


def test_z_image_tabs_modes_and_fields_come_from_the_registry():
    assert "z_image" in caps.engine_keys() and ("Z-Image", "z_image") in caps.engine_choices()
    assert caps.tasks_for("z_image") == {"txt2img", "img2img", "upscale"}
    assert [m for _, m in caps.modes_for("z_image")] == ["normal", "turbo"]
    keys = caps.visible_keys("z_image", "txt2img")
    assert "flow_shift" in keys and "distilled_cfg_scale" not in keys and "clip_skip" not in keys
    assert caps.start_values("z_image", "turbo", "txt2img")["steps"] == 9
    assert "DDIM" not in caps.samplers_for("z_image") and "Euler" in caps.samplers_for("z_image")


def test_chroma_tabs_and_fields_come_from_the_registry():
    assert ("Chroma", "chroma") in caps.engine_choices()
    assert caps.tasks_for("chroma") == {"txt2img", "img2img", "upscale"}
    assert [m for _, m in caps.modes_for("chroma")] == ["normal"]
    start = caps.start_values("chroma", "normal", "txt2img")
    assert start["cfg_scale"] == 3.0 and start["negative_prompt"].startswith("low quality")
    assert "distilled_cfg_scale" not in caps.visible_keys("chroma", "txt2img")


def test_qwen_image_edit_tab_fields_and_presets_come_from_the_registry():
    assert ("Qwen-Image-Edit", "qwen_image_edit") in caps.engine_choices()
    assert caps.tasks_for("qwen_image_edit") == {"txt2img", "upscale"}
    assert "images" in caps.visible_keys("qwen_image_edit", "txt2img")
    start = caps.start_values("qwen_image_edit", "normal", "txt2img")
    assert start["steps"] == 40 and start["cfg_scale"] == 4.0 and start["width"] == 1024


def test_flux2_tabs_fields_and_reference_images(tmp_path):
    assert ("FLUX.2 dev", "flux2") in caps.engine_choices() and ("FLUX.2 Klein", "flux2_klein") in caps.engine_choices()
    assert caps.tasks_for("flux2") == {"txt2img", "upscale"}
    assert [m for _, m in caps.modes_for("flux2_klein")] == ["normal", "turbo"]
    assert caps.start_values("flux2", "normal", "txt2img")["distilled_cfg_scale"] == 4.0
    assert caps.start_values("flux2_klein", "turbo", "txt2img")["steps"] == 4
    assert "images" in caps.visible_keys("flux2", "txt2img") and "images" in caps.visible_keys("flux2_klein", "txt2img")
    assert "images" not in caps.visible_keys("sd15", "txt2img") and "images" not in caps.visible_keys("z_image",
                                                                                                     "txt2img")
    paths = []
    for i, size in enumerate([(80, 64), (64, 96)]):
        path = tmp_path / f"ref{i}.png"
        Image.new("RGB", size, (10 * i, 20, 30)).save(path)
        paths.append(str(path))
    quick = {"engine": "flux2", "model": "flux2-dev-demo", "mode": "normal"}
    visible = caps.visible_keys("flux2", "txt2img")
    req = build_request("txt2img", quick, {"prompt": "p", "images": paths}, visible)
    assert [Image.open(io.BytesIO(base64.b64decode(b))).size for b in req["images"]] == [(80, 64), (64, 96)]
    validate_request(req)
    assert "images" not in build_request("txt2img", QUICK, {"prompt": "p", "images": paths},
                                         caps.visible_keys("sd15", "txt2img"))
    shown = build_request("txt2img", quick, {"prompt": "p", "images": paths}, visible, encode=False)
    text = preview_json(shown)
    assert json.loads(text)["images"] == ["<images[0]: 80x64 PNG from the image field>",
                                          "<images[1]: 64x96 PNG from the image field>"]
    edited = parse_edited(text, {"images": [Image.open(p).convert("RGB") for p in paths]})
    assert Image.open(io.BytesIO(base64.b64decode(edited["images"][1]))).size == (64, 96)
    with pytest.raises(ValidationError) as err:
        parse_edited(text, {"images": []})
    assert err.value.field == "images[0]"
    assert "images" not in request_to_fields(req, "txt2img")


def test_ltx2_tabs_sound_field_and_presets_come_from_the_registry():
    assert ("LTX-2", "ltx2") in caps.engine_choices()
    assert caps.tasks_for("ltx2") == {"txt2vid", "img2vid", "upscale"}
    assert "audio" in caps.visible_keys("ltx2", "txt2vid") and "audio" in caps.visible_keys("ltx2", "img2vid")
    assert "audio" not in caps.visible_keys("wan22_ti2v_5b", "txt2vid")
    start = caps.start_values("ltx2", "normal", "txt2vid")
    assert (start["num_frames"], start["width"], start["height"], start["audio"]) == (121, 768, 512, True)
    req = build_request("txt2vid", {"engine": "ltx2"}, {"prompt": "a drum", "audio": False},
                        visible=caps.visible_keys("ltx2", "txt2vid"))
    assert validate_request(req).audio is False


def test_xyz_panel_request_and_fill_choices():
    from types import SimpleNamespace

    from sdcodex.core.enums import Task
    from sdcodex.ui import xyz_panel

    class Models:  # what the 📒 button reads: the engine's checkpoints and the VAEs
        def checkpoints(self, engine=None):
            return [SimpleNamespace(name=f"{engine}-a"), SimpleNamespace(name=f"{engine}-b")]

        def entries(self, kind=None):
            return [SimpleNamespace(name="vae-x")] if kind == "vae" else []

    class Comp:  # stands for a Gradio component: a key of the event's data dict
        pass

    script, kx, vx, ky, vy, kz, vz = (Comp() for _ in range(7))
    options = {k: Comp() for k in ("draw_legend", "keep_random_seeds", "include_sub_images", "include_sub_grids",
                                   "margin_size")}
    panel = xyz_panel.XyzPanel(script, None, {"x": (kx, vx), "y": (ky, vy), "z": (kz, vz)}, options, {})
    data = {script: "X/Y/Z plot", kx: "steps", vx: "1-3", ky: "nothing", vy: "ignored", kz: "model", vz: "a, b",
            options["draw_legend"]: True, options["margin_size"]: 4.0}
    part = xyz_panel.request_part(panel, data)
    assert part["x"] == {"type": "steps", "values": "1-3"} and "y" not in part and part["z"]["type"] == "model"
    assert part["draw_legend"] is True and part["margin_size"] == 4 and part["keep_random_seeds"] is False
    assert xyz_panel.request_part(panel, {**data, script: "None"}) is None
    kinds = [k for _label, k in xyz_panel.axis_choices(Task.TXT2IMG)]
    assert kinds[:4] == ["nothing", "seed", "steps", "hires.steps"] and "denoising_strength" not in kinds
    assert "denoising_strength" in [k for _label, k in xyz_panel.axis_choices(Task.IMG2IMG)]
    assert xyz_panel.choices_for("model", "sd15", Models()) == ["sd15-a", "sd15-b"]
    assert xyz_panel.choices_for("vae", "sd15", Models()) == ["Automatic", "vae-x"]
    assert "Euler a" in xyz_panel.choices_for("sampler", "sd15", Models())
    assert xyz_panel.choices_for("steps", "sd15", Models()) is None
    assert xyz_panel.as_text(["a", "b, c"]) == 'a,"b, c"'


def test_start_values_take_the_settings_family_defaults_in_normal_mode():
    ours = {"sd15": {"steps": 9, "width": 256}, "sdxl": {"steps": 40}}
    start = caps.start_values("sd15", "normal", "txt2img", ours)
    assert (start["steps"], start["width"], start["height"]) == (9, 256, 512)
    assert "output_format" not in start, "the format starts at From Settings"
    assert caps.start_values("sd15", "lcm", "txt2img", ours)["steps"] != 9, "a fast mode keeps its preset"
