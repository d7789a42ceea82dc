"""The X/Y/Z plot from the page (Script dropdown on txt2img): a 2x2 plot of steps x CFG on the tiny demo model
makes one job whose grid (first in the gallery) has the right size and four cell files with their infotext; the
📒 button fills an axis with its choices."""
from __future__ import annotations

from pathlib import Path

from PIL import Image

from sdcodex.media.reader import read_info

from .test_browser import choose, latest_job, set_value, tiny, wait_state


def test_xyz_plot_from_the_page(page, ui_server):
    page.fill("#codex-txt2img-prompt textarea", "a red fox")
    tiny(page, "txt2img", steps=1)
    set_value(page, "codex-txt2img-seed", 21)
    choose(page, "codex-txt2img-script", "X/Y/Z plot")
    page.wait_for_selector("#codex-txt2img-xyz", state="visible")
    choose(page, "codex-txt2img-xyz-x-type", "Steps")
    set_value(page, "codex-txt2img-xyz-x-values", "1-2")
    choose(page, "codex-txt2img-xyz-y-type", "Sampler")  # 📒 fills every choice of the axis, as A1111's
    page.click("#codex-txt2img-xyz-y-fill")
    page.wait_for_function("document.querySelector('#codex-txt2img-xyz-y-values textarea').value.includes('Euler a')")
    choose(page, "codex-txt2img-xyz-y-type", "CFG Scale")
    set_value(page, "codex-txt2img-xyz-y-values", "3, 7")
    page.click("#codex-txt2img-generate")
    assert wait_state(page, "txt2img", ("done", "failed"), timeout=120_000) == "done", \
        page.inner_text("#codex-txt2img-error")
    page.wait_for_selector("#codex-txt2img-gallery img", timeout=30_000)
    assert "Step 6/6" in page.inner_text("#codex-txt2img-progress")  # 1 + 2 + 1 + 2 steps over the plot
    assert "Script: X/Y/Z plot" in page.input_value("#codex-txt2img-infotext textarea")

    job = latest_job(ui_server, "txt2img")
    assert job.request["xyz"]["x"] == {"type": "steps", "values": "1-2"}
    files = [Path(ui_server.service.outdir) / rel for rel in job.result["images"]]
    assert len(files) == 5
    with Image.open(files[0]) as grid:
        layout = job.result["info"]["xyz"]["layout"]
        assert grid.size == (layout["pad_left"] + 128, layout["pad_top"] + 128) and layout["pad_left"] == 48
    for cell in job.result["info"]["xyz"]["cells"]:
        text = read_info(str(files[cell["images"][0]]))["parameters"]
        assert f"Steps: {cell['x'] + 1}," in text and f"CFG scale: {[3, 7][cell['y']]}," in text
        assert "Seed: 21," in text
