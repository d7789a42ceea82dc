"""Fixtures for the browser tests: a real uvicorn server (random port on 127.0.0.1) serving the APIs and the
web UI over a temp models folder holding the tiny demo models, and Debian's headless Chromium driven by
Playwright (never Playwright's own downloaded browsers). Screenshots go to test-artifacts/ui/."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.server.live import LiveServer

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"]
UI_FAMILIES = ("sd15", "sd15_inpaint", "wan22_ti2v_5b")


def chromium_path() -> str | None:
    env = os.environ.get("SDCODEX_CHROMIUM")
    if env:
        return env if Path(env).exists() else None
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


class UIServer(LiveServer):
    """The server tests' live server with the web UI mounted (create_app(settings, with_ui=True))."""

    def __init__(self, models_dir: Path, root: Path) -> None:
        from sdcodex.server import ServerSettings

        super().__init__(ServerSettings(models_dir=str(models_dir), outdir=str(root / "outputs"),
                                        db_path=str(root / "jobs.sqlite"), device="cpu"), with_ui=True)
        self.url += "/"

    def __enter__(self) -> "UIServer":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        # a generation still followed by a page must not hold the shutdown: interrupt what runs
        self.service.worker.interrupt()
        self.stop()


@pytest.fixture(scope="session")
def chromium() -> str:
    path = chromium_path()
    if path is None:
        message = "no Chromium here (scripts/test.sh installs Debian's chromium)"
        if os.environ.get("CI"):  # in CI a missing browser must not pass as skipped browser tests
            pytest.fail(message)
        pytest.skip(message + "; browser tests skipped")
    return path


@pytest.fixture(scope="session")
def ui_models_dir(tmp_path_factory) -> Path:
    from sdcodex.models import demo_video  # noqa: F401 - registers the video demo builders
    from sdcodex.models.demo import build_demo_model

    root = tmp_path_factory.mktemp("ui-models")
    for family in UI_FAMILIES:
        build_demo_model(family, root / "demo")
    return root


@pytest.fixture(scope="module")
def ui_server(chromium, ui_models_dir, tmp_path_factory) -> Iterator[UIServer]:
    with UIServer(ui_models_dir, tmp_path_factory.mktemp("ui-server")) as server:
        yield server


@pytest.fixture(scope="module")
def browser(chromium) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture()
def page(browser, ui_server, request) -> Iterator[Any]:
    """A fresh page on the UI; a screenshot named after the test is saved when it ends."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.goto(ui_server.url)
    pg.wait_for_selector("#codex-txt2img-generate", timeout=60_000)
    # the page's load event fills the checkpoint list and the engine's rules line
    pg.wait_for_function("document.querySelector('#codex-txt2img-rules') && "
                         "document.querySelector('#codex-txt2img-rules').innerText.includes('size:')", timeout=30_000)
    pg.codex_errors = errors
    try:
        yield pg
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        try:
            pg.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
        except Exception:  # noqa: BLE001 - a screenshot must not hide the test's own result
            pass
        context.close()
