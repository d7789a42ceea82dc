"""More of the web UI in a real browser (headless Chromium via Playwright) against a real server over the
tiny demo models: the Upscale tab (an uploaded image with Lanczos; a txt2img result sent to it and upscaled
with the packaged R-ESRGAN AnimeVideo), the Img2Vid tab with the WAN 2.2 TI2V-5B demo (a <video> with the
right duration), Skip during the first image of a batch of 3 (the job ends done with 2 images, as in
A1111), and Ctrl+Up / Ctrl+Down in a prompt box changing the attention weight as A1111's edit-attention does.
Screenshots: test-artifacts/ui/."""
from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from .conftest import ARTIFACTS
from .test_browser import choose, latest_job, open_json, open_tab, set_value, tiny, video_duration, wait_state


def picture(path: Path, size: tuple[int, int]) -> Path:
    image = Image.new("RGB", size, (30, 120, 60))
    ImageDraw.Draw(image).rectangle((8, 8, size[0] - 9, size[1] - 9), outline=(250, 250, 250), width=3)
    image.save(path)
    return path


def natural_sizes(page, elem_id: str) -> list[tuple[int, int]]:
    """(naturalWidth, naturalHeight) of every loaded image in a gallery."""
    page.wait_for_function(f"[...document.querySelectorAll('#{elem_id} img')].length > 0 && "
                           f"[...document.querySelectorAll('#{elem_id} img')].every(i => i.complete && "
                           f"i.naturalWidth > 0)", timeout=30_000)
    return [tuple(s) for s in page.evaluate(
        f"[...document.querySelectorAll('#{elem_id} img')].map(i => [i.naturalWidth, i.naturalHeight])")]


def output_files(server, job) -> list[Path]:
    return [Path(server.service.outdir) / rel for rel in job.result["images"]]


def test_upscale_an_uploaded_image_with_lanczos(page, ui_server, tmp_path):
    open_tab(page, "Upscale")
    assert "no checkpoint" in page.inner_text("#codex-upscale-rules")
    assert "Send to upscale" in page.inner_text("#codex-upscale-intro")
    page.set_input_files("#codex-upscale-image input[type=file]", str(picture(tmp_path / "in.png", (64, 48))))
    page.wait_for_selector("#codex-upscale-image img", timeout=30_000)
    choose(page, "codex-upscale-upscaler", "Lanczos")
    set_value(page, "codex-upscale-scale", 2)
    page.click("#codex-upscale-generate")
    assert wait_state(page, "upscale", ("done", "failed")) == "done", page.inner_text("#codex-upscale-error")
    assert natural_sizes(page, "codex-upscale-gallery") == [(128, 96)]
    info = page.input_value("#codex-upscale-infotext textarea")
    assert "Postprocess upscaler: Lanczos" in info and "Postprocess upscale by: 2" in info

    job = latest_job(ui_server, "upscale")
    assert job.state == "done" and job.request["upscaler"] == "Lanczos" and job.request["scale"] == 2.0
    assert "model" not in job.request, "upscaling sends no checkpoint"
    files = output_files(ui_server, job)
    assert len(files) == 1 and Image.open(files[0]).size == (128, 96)


def test_txt2img_result_sent_to_upscale_with_realesrgan(page, ui_server):
    page.fill("#codex-txt2img-prompt textarea", "a lighthouse")
    tiny(page, "txt2img")
    page.click("#codex-txt2img-generate")
    assert wait_state(page, "txt2img", ("done", "failed")) == "done", page.inner_text("#codex-txt2img-error")
    page.wait_for_selector("#codex-txt2img-gallery img")
    page.click("#codex-txt2img-send-upscale")
    page.wait_for_selector("#codex-upscale-image img", timeout=30_000)
    assert page.locator("#codex-upscale-generate").is_visible(), "send to upscale opens the Upscale tab"
    choose(page, "codex-upscale-upscaler", "R-ESRGAN AnimeVideo")
    set_value(page, "codex-upscale-scale", 2)
    page.click("#codex-upscale-generate")
    assert wait_state(page, "upscale", ("done", "failed"), timeout=120_000) == "done", \
        page.inner_text("#codex-upscale-error")
    assert natural_sizes(page, "codex-upscale-gallery") == [(128, 128)]
    info = page.input_value("#codex-upscale-infotext textarea")
    assert "Postprocess upscaler: R-ESRGAN AnimeVideo" in info and "Postprocess upscale by: 2" in info
    assert "Size: 64x64" in info  # the source's parameters are kept (as A1111's extras); the file is 128x128

    job = latest_job(ui_server, "upscale")
    assert job.request["upscaler"] == "R-ESRGAN AnimeVideo"
    assert job.result["info"]["upscaler_scale"] == 4 and job.result["info"]["output_size"] == [128, 128]
    assert Image.open(output_files(ui_server, job)[0]).size == (128, 128)


def test_img2vid_video_has_the_right_duration(page, ui_server, tmp_path):
    choose(page, "codex-engine", "WAN 2.2 TI2V 5B")
    page.wait_for_selector("button[role=tab]:text-is('Img2Vid')", state="visible")
    open_tab(page, "Img2Vid")
    page.set_input_files("#codex-img2vid-image input[type=file]", str(picture(tmp_path / "start.png", (64, 64))))
    page.wait_for_selector("#codex-img2vid-image img", timeout=30_000)
    page.fill("#codex-img2vid-prompt textarea", "the square starts to spin")
    tiny(page, "img2vid", size=32)
    set_value(page, "codex-img2vid-num-frames", 9)
    set_value(page, "codex-img2vid-fps", 6)
    page.click("#codex-img2vid-generate")
    assert wait_state(page, "img2vid", ("done", "failed")) == "done", page.inner_text("#codex-img2vid-error")
    page.wait_for_selector("#codex-img2vid-video video", timeout=30_000)
    assert video_duration(page, "codex-img2vid-video") == pytest.approx(9 / 6, abs=0.13)
    info = page.input_value("#codex-img2vid-infotext textarea")
    assert "the square starts to spin" in info and "Steps: 2" in info

    job = latest_job(ui_server, "img2vid")
    assert job.request["model"] == "wan22-ti2v-5b-demo" and job.request["init_image"]
    assert job.request["num_frames"] == 9 and len(job.result["videos"]) == 1


def test_skip_drops_the_first_image_of_a_batch_of_three(page, ui_server):
    page.fill("#codex-txt2img-prompt textarea", "skip me")
    tiny(page, "txt2img", steps=150)
    set_value(page, "codex-txt2img-batch-count", 3)
    page.click("#codex-txt2img-generate")
    # skip while the first image is still sampling (150 steps: a window wide enough for the click's round trip on a
    # loaded 2-core machine; with 12 the first image was often done before the skip arrived)
    page.wait_for_function("(() => { const el = document.querySelector('#codex-txt2img-progress .codex-progress');"
                           " return el && el.dataset.state === 'running' && +el.dataset.done >= 1; })()",
                           timeout=60_000)
    page.click("#codex-txt2img-skip")
    assert wait_state(page, "txt2img", ("done", "failed", "interrupted")) == "done", \
        page.inner_text("#codex-txt2img-error")
    job = latest_job(ui_server, "txt2img")
    assert job.state == "done" and len(job.result["images"]) == 2
    seeds = job.result["info"]["seeds"]
    assert job.result["info"]["skipped"] == 1 and len(seeds) == 2 and seeds[1] == seeds[0] + 1
    # the gallery shows the two kept images, each with its own seed in the infotext
    assert natural_sizes(page, "codex-txt2img-gallery") == [(64, 64), (64, 64)]
    assert f"Seed: {seeds[0]}," in page.input_value("#codex-txt2img-infotext textarea")
    assert "1 skipped" in page.inner_text("#codex-txt2img-progress")
    assert page.get_attribute("#codex-txt2img-progress .codex-progress", "data-skipped") == "1"


# -- prompt boxes: A1111 edit-attention ------------------------------------------------------------------
def caret(box, start: int, end: int | None = None) -> None:
    box.evaluate("(el, r) => { el.focus(); el.setSelectionRange(r[0], r[1]); }", [start, start if end is None else end])


def test_ctrl_up_down_edit_the_attention_weight(page):
    box = page.locator("#codex-txt2img-prompt textarea")
    box.fill("a red fox, snow")
    caret(box, 7)  # inside "fox"
    box.press("Control+ArrowUp")
    assert box.input_value() == "a red (fox:1.1), snow"
    assert box.evaluate("el => el.value.slice(el.selectionStart, el.selectionEnd)") == "fox"
    box.press("Control+ArrowUp")
    assert box.input_value() == "a red (fox:1.2), snow"
    box.press("Control+ArrowDown")
    box.press("Control+ArrowDown")
    assert box.input_value() == "a red fox, snow"  # back at 1.0: no brackets
    caret(box, 2, 9)  # the selection "red fox"
    box.press("Control+ArrowDown")
    assert box.input_value() == "a (red fox:0.9), snow"
    caret(box, 5)  # the caret inside the (...) block moves the block's weight
    box.press("Control+ArrowDown")
    assert box.input_value() == "a (red fox:0.8), snow"
    for _ in range(12):
        box.press("Control+ArrowUp")
    assert box.input_value() == "a (red fox:2.0), snow"  # whole numbers keep one decimal, as A1111

    negative = page.locator("#codex-txt2img-negative-prompt textarea")
    negative.fill("blurry")
    caret(negative, 6)
    negative.press("Control+ArrowDown")
    assert negative.input_value() == "(blurry:0.9)"
    open_json(page, "txt2img")
    page.wait_for_function("document.querySelector('#codex-txt2img-json').innerText.includes('(blurry:0.9)')")
    assert "a (red fox:2.0), snow" in page.inner_text("#codex-txt2img-json")
    assert not page.codex_errors
