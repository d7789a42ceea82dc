"""The LTX-2 all-in-one file as Lightricks publishes it (ltx-2-19b-dev.safetensors: the transformer and the text
connectors under model.diffusion_model., the VAEs beside them): the tiny demo transformer exported to that layout
loads with the connectors, VAEs, vocoder, Gemma 3 and scheduler of an LTX-2 Diffusers folder in the models folder,
and its frames and sound equal Diffusers' own pipeline; without such a folder the file is refused, saying why."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

import sdcodex.engines  # noqa: F401  (registers engines)
from sdcodex.core.errors import ModelLoadError
from sdcodex.core.orchestrator import Orchestrator
from sdcodex.models.demo import build_demo_model
from sdcodex.models.detect import detect_file
from sdcodex.models.loader import load_model
from sdcodex.runtime import MediaSaver
from tests.engines.test_flow_single_file import Preloaded, _module
from tests.engines.test_ltx2 import BASE, DEMO, assert_same, reference
from tests.helpers import flow_export as fx


@pytest.fixture(scope="module")
def own_transformer(tmp_path_factory):
    """A transformer of the demo's shape with other weights: the file's, so the test sees that they are used."""
    from diffusers import LTX2VideoTransformer3DModel

    demo = build_demo_model("ltx2", tmp_path_factory.mktemp("ltx2-demo"))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1234)
        return LTX2VideoTransformer3DModel.from_config(_module(demo, "transformer").config).eval()


@pytest.fixture(scope="module")
def root(tmp_path_factory, own_transformer) -> Path:
    from diffusers.pipelines.ltx2 import LTX2TextConnectors

    root = tmp_path_factory.mktemp("ltx2-files")
    demo = build_demo_model("ltx2", root / "demo")
    fx.export_ltx2(own_transformer, root / "files" / "ltx-2-tiny-dev.safetensors",
                   connectors=LTX2TextConnectors.from_pretrained(demo / "connectors"), vae_stats=4)
    return root


def test_all_in_one_file_with_a_base_folder_equals_diffusers(root, tmp_path, own_transformer):
    models = tmp_path / "models"
    (models / "checkpoints").mkdir(parents=True)
    path = shutil.copy(root / "files" / "ltx-2-tiny-dev.safetensors", models / "checkpoints")
    shutil.copytree(root / "demo" / DEMO, models / DEMO)
    det = detect_file(path)
    assert (det.kind, det.family.value, det.variant["layout"]) == ("checkpoint", "ltx2", "ltx")
    loaded = load_model(path, models_dir=models)
    assert loaded.family.value == "ltx2" and loaded.variant["layout"] == "ltx2"
    assert loaded.variant["base"] == str(models / DEMO)
    orch = Orchestrator(Preloaded(loaded), MediaSaver(tmp_path / "out"),
                        image_loader=lambda v, f: Image.open(v).convert("RGB"))
    result = orch.run({"engine": "ltx2", "task": "txt2vid", **BASE, "model": "x"})
    assert_same(result, reference(models / DEMO, transformer=own_transformer))
    assert loaded.variant["architecture"]["transformer"].startswith("ltx2")


def test_without_a_base_folder_the_file_is_refused(root, tmp_path):
    with pytest.raises(ModelLoadError) as err:
        load_model(root / "files" / "ltx-2-tiny-dev.safetensors", models_dir=tmp_path)
    assert err.value.field == "model" and "ltx2 Diffusers folder" in str(err.value)
