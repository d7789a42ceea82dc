"""Shared fixtures: offline environment, tiny demo models built once per session through the real
builder, and an orchestrator over them (the same wiring the faces use)."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import base64
import io
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def demo_models_dir(tmp_path_factory) -> Path:
    """A models folder holding the tiny random-weight demo models (built once per test session)."""
    from sdcodex.models.demo import build_demo_models

    root = tmp_path_factory.mktemp("models")
    build_demo_models(root / "demo")
    return root


@pytest.fixture(scope="session")
def local_models(demo_models_dir):
    from sdcodex.runtime import LocalModels

    return LocalModels(demo_models_dir)


@pytest.fixture()
def orchestrator(local_models, tmp_path):
    from sdcodex.runtime import build_orchestrator

    return build_orchestrator(models=local_models, outdir=tmp_path / "outputs", device="cpu")


def png_b64(image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


@pytest.fixture(scope="session")
def sample_image():
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (64, 64))
    image.putdata([(4 * x, 4 * y, 128) for y in range(64) for x in range(64)])
    ImageDraw.Draw(image).ellipse((20, 20, 44, 44), fill=(240, 200, 40))
    return image


@pytest.fixture(scope="session")
def sample_mask():
    from PIL import Image, ImageDraw

    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((16, 16, 48, 48), fill=255)
    return mask
