"""Honest errors in a real browser (headless Chromium via Playwright): a text file uploaded as an image gives a
message in the tab naming the field by its label — no framework toast, no server path, and no failing calls
(HTTP 500) on later edits; an out-of-range typed value (steps 10000) is refused with the API's message, never
clamped; a blank width is refused; a huge batch asks first; Esc closes an open dropdown without interrupting
the running job, and interrupts when nothing is open. Screenshots: test-artifacts/ui/."""
from __future__ import annotations

import pytest

from .conftest import ARTIFACTS
from .test_browser import latest_job, open_tab, set_value, tiny, wait_state


@pytest.mark.xfail(strict=False, reason="known (#19): failed in full runs with two workers (Esc in the open Sampling method dropdown); passes alone and in a targeted 2-worker run under load — cause not found")
def test_errors_stay_in_the_page_and_esc_respects_popups(page, ui_server, tmp_path):
    page.set_default_timeout(90_000)  # the machine is shared: clicks during a running job can be slow
    statuses: list[int] = []
    page.on("response", lambda r: statuses.append(r.status))
    store = ui_server.service.store

    # a text file renamed .png: a message naming the field's label, no toast, no server path
    open_tab(page, "Img2img")
    fake = tmp_path / "notes.png"
    fake.write_text("this is not an image")
    page.set_input_files("#codex-img2img-image input[type=file]", str(fake))
    page.wait_for_selector("#codex-img2img-error .codex-error", timeout=30_000)
    text = page.inner_text("#codex-img2img-error")
    assert "Image" in text and "not an image" in text and "/tmp" not in text and "gradio" not in text.lower()
    page.fill("#codex-img2img-prompt textarea", "after a bad upload")   # later edits fire the live preview
    set_value(page, "codex-img2img-steps", 3)
    before = store.counts()
    page.click("#codex-img2img-generate")
    page.wait_for_function("document.querySelector('#codex-img2img-error').innerText.includes('not an image')")
    assert store.counts() == before
    page.screenshot(path=str(ARTIFACTS / "img2img-bad-upload.png"), full_page=True)
    assert not page.locator(".toast-body").count(), "no framework toast"
    assert 500 not in statuses, f"failing calls after a bad upload: {statuses.count(500)}"

    # steps 10000 typed into the slider's box: kept as typed and refused with the API's own message
    open_tab(page, "Txt2img")
    tiny(page, "txt2img")
    set_value(page, "codex-txt2img-steps", 10000)
    page.click("#codex-txt2img-generate")
    page.wait_for_selector("#codex-txt2img-error .codex-error", timeout=30_000)
    text = page.inner_text("#codex-txt2img-error")
    assert "Sampling steps" in text and "less than or equal to 500" in text, text
    assert page.input_value("#codex-txt2img-steps input[type=number]") == "10000", "never clamped silently"
    # a blank width is an error, not 512
    set_value(page, "codex-txt2img-steps", 2)
    page.locator("#codex-txt2img-width input").fill("")
    page.locator("#codex-txt2img-width input").press("Tab")
    page.click("#codex-txt2img-generate")
    page.wait_for_function("document.querySelector('#codex-txt2img-error').innerText.includes('blank')")
    assert "Width" in page.inner_text("#codex-txt2img-error")
    # a huge batch asks first: nothing is queued until Generate is pressed again
    tiny(page, "txt2img")
    set_value(page, "codex-txt2img-batch-count", 100)
    set_value(page, "codex-txt2img-batch-size", 2)
    page.click("#codex-txt2img-generate")
    page.wait_for_function("document.querySelector('#codex-txt2img-error').innerText.includes('large job')")
    assert "200 images" in page.inner_text("#codex-txt2img-error")
    assert store.counts() == before
    page.screenshot(path=str(ARTIFACTS / "txt2img-confirm.png"), full_page=True)

    # Esc closes an open dropdown without interrupting the running job; with nothing open it interrupts
    set_value(page, "codex-txt2img-batch-size", 1)
    set_value(page, "codex-txt2img-batch-count", 20)
    set_value(page, "codex-txt2img-steps", 150)
    page.click("#codex-txt2img-generate")
    page.wait_for_function("(() => { const el = document.querySelector('#codex-txt2img-progress .codex-progress');"
                           " return el && el.dataset.state === 'running' && +el.dataset.done > 1; })()",
                           timeout=60_000)
    page.locator("#codex-txt2img-sampler input").click(no_wait_after=True)
    listbox_open = "[...document.querySelectorAll('[role=listbox]')].some(e => e.offsetParent !== null)"
    page.wait_for_function(listbox_open, timeout=60_000)
    page.locator("#codex-txt2img-sampler input").press("Escape", no_wait_after=True)  # Esc in the open dropdown
    page.wait_for_function(f"!({listbox_open})", timeout=30_000)
    job = latest_job(ui_server, "txt2img")
    page.wait_for_timeout(1500)
    assert store.get(job.id).state == "running", "Esc on an open dropdown must not interrupt"
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.keyboard.press("Escape")
    assert wait_state(page, "txt2img", ("interrupted", "done", "failed"), timeout=60_000) == "interrupted"
    assert 500 not in statuses


def test_screenshot_of_every_tab(page):
    """One screenshot per tab (test-artifacts/ui/tab-*.png), the video tabs with the WAN demo; dark mode last."""
    from .test_browser import choose

    page.set_default_timeout(90_000)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    labels = [t.strip() for t in page.locator("#codex-tabs button[role=tab]").all_inner_texts() if t.strip()]
    assert {"Txt2img", "Img2img", "Inpaint", "Upscale", "PNG Info", "Presets", "Queue"} <= set(labels)
    for label in labels:
        open_tab(page, label)
        page.wait_for_timeout(300)
        page.screenshot(path=str(ARTIFACTS / f"tab-{label.lower().replace(' ', '-')}.png"), full_page=True)
    choose(page, "codex-engine", "WAN 2.2 TI2V 5B")
    page.wait_for_selector("button[role=tab]:text-is('Txt2Vid')", state="visible")
    for label in ("Txt2Vid", "Img2Vid"):
        open_tab(page, label)
        page.wait_for_timeout(300)
        page.screenshot(path=str(ARTIFACTS / f"tab-{label.lower()}.png"), full_page=True)
    page.click("#codex-dark")
    page.wait_for_function("document.body.classList.contains('dark')")
    page.screenshot(path=str(ARTIFACTS / "tab-txt2vid-dark.png"), full_page=True)
