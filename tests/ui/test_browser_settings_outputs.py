"""The Settings and Outputs tabs in a real browser (one page load): a bad setting refused naming it; the image
format and file name pattern changed in the page, read back through `/sdapi/v1/options` and used by the next
generation; that file found in the Outputs tab with its infotext, sent to img2img (the image appears in its
input), deleted to the trash and restored. Screenshots: test-artifacts/ui/settings.png, outputs.png."""
from __future__ import annotations

from pathlib import Path

import httpx

from .conftest import ARTIFACTS
from .test_browser import choose, latest_job, open_tab, set_value, tiny, wait_state


def test_settings_and_outputs_browser(page, ui_server):
    service = ui_server.service
    try:
        _run(page, ui_server, service)
    finally:
        service.options_store.reset()


def _run(page, ui_server, service):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    open_tab(page, "Settings")
    page.wait_for_selector("#codex-setting-jpeg-quality", state="visible")
    set_value(page, "codex-setting-jpeg-quality", 500)
    page.click("#codex-settings-apply")
    page.wait_for_selector("#codex-settings-status .codex-error", timeout=30_000)
    text = page.inner_text("#codex-settings-status")
    assert "jpeg_quality" in text and "from 1 to 100" in text
    assert service.options()["jpeg_quality"] == 95, "a refused value is not saved"

    set_value(page, "codex-setting-jpeg-quality", 90)
    choose(page, "codex-setting-samples-format", "webp")
    set_value(page, "codex-setting-samples-filename-pattern", "[seed]-[prompt_words]")
    page.click("#codex-settings-apply")
    page.wait_for_selector("#codex-settings-status .codex-ok", timeout=30_000)
    assert "samples_format" in page.inner_text("#codex-settings-status")
    page.screenshot(path=str(ARTIFACTS / "settings.png"), full_page=True)
    with httpx.Client(base_url=ui_server.url.rstrip("/"), timeout=30) as c:
        opts = c.get("/sdapi/v1/options").json()
    assert (opts["samples_format"], opts["jpeg_quality"], opts["samples_filename_pattern"]) == \
        ("webp", 90, "[seed]-[prompt_words]")

    # the next job (its Output format left at "From Settings") is saved as the settings say
    open_tab(page, "Txt2img")
    page.fill("#codex-txt2img-prompt textarea", "a blue heron")
    tiny(page, "txt2img")
    page.click("#codex-txt2img-generate")
    assert wait_state(page, "txt2img", ("done", "failed")) == "done", page.inner_text("#codex-txt2img-error")
    job = latest_job(ui_server, "txt2img")
    assert "output_format" not in job.request or job.request["output_format"] == "webp"
    rel = job.result["images"][0]
    assert rel.endswith(f"-{job.result['info']['seeds'][0]}-a blue heron.webp"), rel
    file = Path(service.outdir) / rel

    # the Outputs tab lists it first; a click shows its infotext; send to img2img fills that tab's image
    open_tab(page, "Outputs")
    page.wait_for_selector("#codex-outputs-gallery img", timeout=30_000)
    assert "1 file" in page.inner_text("#codex-outputs-pages")
    page.locator("#codex-outputs-gallery img").first.click()
    page.wait_for_function("document.querySelector('#codex-outputs-infotext textarea').value.includes('blue heron')",
                           timeout=30_000)
    assert page.input_value("#codex-outputs-path input, #codex-outputs-path textarea") == rel
    page.screenshot(path=str(ARTIFACTS / "outputs.png"), full_page=True)
    page.click("#codex-outputs-send-img2img")
    page.wait_for_selector("#codex-img2img-image img", timeout=30_000)
    assert page.input_value("#codex-img2img-prompt textarea") == "a blue heron"

    # delete to the trash, then restore
    open_tab(page, "Outputs")
    page.click("#codex-outputs-delete")
    page.wait_for_selector("#codex-outputs-message .codex-ok", timeout=30_000)
    assert "Moved to the trash" in page.inner_text("#codex-outputs-message") and not file.exists()
    page.wait_for_function("document.querySelector('#codex-outputs-pages').innerText.includes('No outputs')")
    page.locator("#codex-outputs-trash").get_by_text("Trash").first.click()
    page.click("#codex-outputs-restore")
    page.wait_for_function("document.querySelector('#codex-outputs-message').innerText.includes('Restored')",
                           timeout=30_000)
    assert file.is_file()
    page.wait_for_selector("#codex-outputs-gallery img", timeout=30_000)
    assert not page.codex_errors, page.codex_errors
