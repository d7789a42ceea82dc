"""Helpers: a real uvicorn server on 127.0.0.1 (random free port, in a thread) over the tiny demo models."""
from __future__ import annotations

import base64
import io
import socket
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator

import httpx

TINY = {"width": 64, "height": 64, "steps": 1}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """uvicorn serving create_app(settings) in a thread; `stop()` shuts it down like Ctrl-C."""

    def __init__(self, settings: Any, *, with_ui: bool = False) -> None:
        import uvicorn

        from sdcodex.server import create_app

        settings.host = "127.0.0.1"
        settings.port = settings.port if settings.port not in (None, 7860) else free_port()
        self.settings = settings
        self.app = create_app(settings, with_ui=with_ui)
        self.service = self.app.state.codex
        self.url = f"http://127.0.0.1:{settings.port}"
        config = uvicorn.Config(self.app, host="127.0.0.1", port=settings.port, log_level="warning",
                                lifespan="on", timeout_graceful_shutdown=5, http="h11", loop="asyncio")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> "LiveServer":
        self.thread.start()
        deadline = time.monotonic() + 90
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)

    def client(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=120, **kw)


@contextmanager
def live_server(**kw: Any) -> Iterator[LiveServer]:
    from sdcodex.server import ServerSettings

    server = LiveServer(ServerSettings(**kw)).start()
    try:
        yield server
    finally:
        server.stop()


def wait_job(client: httpx.Client, job_id: str, timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/api/v1/jobs/{job_id}").json()
        if job["state"] in ("done", "failed", "cancelled", "interrupted"):
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job['state']}")
        time.sleep(0.05)


def wait_state(client: httpx.Client, job_id: str, states: tuple[str, ...], timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/api/v1/jobs/{job_id}").json()
        if job["state"] in states:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} is {job['state']}, not {states}")
        time.sleep(0.02)


def wait_until(predicate: Any, timeout: float = 120.0, what: str = "condition") -> Any:
    """Poll `predicate` until it gives a true value (returned); AssertionError naming `what` past `timeout`."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return value


def b64png(image: Any) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()
