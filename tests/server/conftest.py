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


@pytest.fixture(scope="session")
def scale_models_dir(tmp_path_factory):
    """A models folder with three copies of the tiny SD1.5 demo (m1, m2, m3): three models for the dispatch and
    Ray tests that cost one small build."""
    import shutil

    from sdcodex.models.demo import build_demo_model

    root = tmp_path_factory.mktemp("scale-models")
    built = build_demo_model("sd15", root / "build")
    for name in ("m1", "m2", "m3"):
        shutil.copytree(built, root / "scale" / name)
    shutil.rmtree(root / "build")
    return root


@pytest.fixture(scope="session")
def ray_instance():
    """ONE local Ray instance for every Ray test of the session (mark them xdist_group("ray"))."""
    ray = pytest.importorskip("ray", reason="the Ray extra is not installed (pip install '.[ray]')")
    from sdcodex.server.ray_backend import start_ray

    started = start_ray(None, num_cpus=4, log_to_driver=False)
    yield ray
    if started:
        from ray import serve

        serve.shutdown()
        ray.shutdown()
