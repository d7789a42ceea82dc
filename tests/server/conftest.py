"""Fixtures for the server tests: one real uvicorn server per module over the demo models."""
from __future__ import annotations

from typing import Iterator

import httpx
import pytest

from .live import LiveServer, live_server


@pytest.fixture(scope="module")
def server(local_models, tmp_path_factory) -> Iterator[LiveServer]:
    """One server per test module (the tiny models stay loaded in the shared model cache)."""
    root = tmp_path_factory.mktemp("server")
    # max_steps above the default 150: some tests need a job long enough to catch it running
    with live_server(models=local_models, outdir=str(root / "outputs"), db_path=str(root / "jobs.sqlite"),
                     device="cpu", max_steps=500) as srv:
        yield srv


@pytest.fixture()
def client(server) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


@pytest.fixture(scope="session")
def sd15_name(local_models) -> str:
    return next(e.name for e in local_models.checkpoints() if e.family and e.family.value == "sd15"
                and "inpaint" not in e.name)
