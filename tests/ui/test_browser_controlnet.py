"""The ControlNet panel's preprocessor preview in a real browser: 💥 without an image says so beside the unit;
with an uploaded image and canny it shows the map (at the unit's preprocessor resolution) without generating; a
module whose weights are not cached names `sdcodex cache-models` beside the unit — never a toast."""
from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from .test_browser import choose, set_value
from .test_browser_more import natural_sizes

P = "codex-txt2img-controlnet"


def picture(path: Path) -> Path:
    image = Image.new("RGB", (64, 48), (30, 40, 50))
    ImageDraw.Draw(image).rectangle((10, 8, 40, 36), fill=(220, 200, 40))
    image.save(path)
    return path


def message(page, unit: int, text: str) -> str:
    page.wait_for_function(f"document.querySelector('#{P}-{unit}-message').innerText.includes({text!r})",
                           timeout=30_000)
    return page.inner_text(f"#{P}-{unit}-message")


def test_run_preprocessor_shows_the_map(page, ui_server, tmp_path):
    jobs_before = len(ui_server.service.store.list(limit=100))
    page.locator(f"#{P} .label-wrap").first.click()
    page.click(f"#{P}-0-run")
    assert "no control image" in message(page, 0, "no control image")

    page.set_input_files(f"#{P}-0-image input[type=file]", str(picture(tmp_path / "in.png")))
    page.wait_for_selector(f"#{P}-0-image img", timeout=30_000)
    choose(page, f"{P}-0-module", "canny")
    page.wait_for_selector(f"#{P}-0-threshold-a", state="visible")
    assert "Canny Low Threshold" in page.inner_text(f"#{P}-0-threshold-a")
    set_value(page, f"{P}-0-processor-res", 96)
    page.click(f"#{P}-0-run")
    assert natural_sizes(page, f"{P}-0-map") == [(128, 96)]  # short side 48 scaled to 96
    page.wait_for_function(f"document.querySelector('#{P}-0-message').innerText.trim() === ''", timeout=10_000)

    choose(page, f"{P}-0-module", "hed")
    page.click(f"#{P}-0-run")
    assert "controls[0].module" in message(page, 0, "sdcodex cache-models")
    assert not page.locator(".toast-body").count(), "no framework toast"
    assert len(ui_server.service.store.list(limit=100)) == jobs_before, "the preview generates nothing"
    assert not page.codex_errors
