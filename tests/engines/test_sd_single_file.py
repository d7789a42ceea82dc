"""The whole path from an A1111-style single-file checkpoint: an exported demo model in a
`Stable-diffusion/` folder is found by content, loaded by our converter and gives the same pixels as
the diffusers folder it came from. Also the public registries and precision."""
from __future__ import annotations

import numpy as np
import pytest

from sdcodex.core.registry import PIPELINES, create_pipeline
from sdcodex.runtime import LocalModels, build_orchestrator
from tests.helpers.ldm_export import export_ldm

REQ = {"task": "txt2img", "prompt": "a castle", "width": 64, "height": 64, "steps": 3, "seed": 5,
       "sampler": "DPM++ 2M", "scheduler": "Karras"}


@pytest.fixture(scope="module")
def a1111_tree(demo_models_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("a1111")
    target = root / "Stable-diffusion"
    target.mkdir()
    export_ldm(demo_models_dir / "demo" / "sd15-demo", target / "tiny-sd15.safetensors", prefix="")
    export_ldm(demo_models_dir / "demo" / "sdxl-demo", target / "tiny-sdxl.safetensors", prefix="")
    return root


@pytest.mark.parametrize("folder,single", [("sd15-demo", "tiny-sd15"), ("sdxl-demo", "tiny-sdxl")])
def test_single_file_equals_diffusers_folder(a1111_tree, demo_models_dir, tmp_path, folder, single):
    configs = demo_models_dir / "demo" / folder  # tiny shapes: give the loader the tiny configs

    class TinyModels(LocalModels):
        def load(self, entry, *, vae=None, precision="auto", params=None):
            from sdcodex.models.loader import load_model
            return load_model(str(entry.path), configs=configs, precision=precision)

    single_models = TinyModels(a1111_tree)
    entry = single_models.resolve(single)
    assert entry.kind == "checkpoint"  # tiny shapes: the family tables want real context dims, so name the engine
    engine = folder.split("-")[0]
    ours = build_orchestrator(models=single_models, outdir=tmp_path / "a").run({**REQ, "model": single,
                                                                                 "engine": engine})
    ref = build_orchestrator(models=LocalModels(demo_models_dir), outdir=tmp_path / "b").run({**REQ, "model": folder})
    assert ours.info["engine"] == folder.split("-")[0]
    diff = np.abs(np.asarray(ours.pil_images[0], dtype=int) - np.asarray(ref.pil_images[0], dtype=int))
    assert diff.max() <= 1, diff.max()  # same weights; only memory alignment may change a last bit


def test_a1111_title_and_hash_resolve(a1111_tree):
    models = LocalModels(a1111_tree)
    entry = models.resolve("tiny-sd15")
    short = models.short_hash(entry)
    assert models.resolve(f"tiny-sd15.safetensors [{short}]").path == entry.path
    assert models.resolve(short).path == entry.path


def test_create_pipeline_registry(local_models):
    import sdcodex.engines  # noqa: F401  (engines register their pipelines on import)

    model = local_models.load(local_models.resolve("sd15-demo"))
    pipe = create_pipeline("sd15.img2img", components=model.components)
    assert type(pipe).__name__ == "StableDiffusionImg2ImgPipeline"
    assert "sdxl.inpaint" in PIPELINES


def test_bf16_precision_runs(orchestrator):
    result = orchestrator.run({**REQ, "model": "sd15-demo", "precision": "bf16"})
    assert result.pil_images[0].size == (64, 64)
    assert result.info["request"]["precision"] == "bf16"


def test_fp16_on_cpu_is_a_clear_error(orchestrator):
    from sdcodex.core.errors import ValidationError

    with pytest.raises(ValidationError) as err:
        orchestrator.run({**REQ, "model": "sd15-demo", "precision": "fp16"})
    assert err.value.field == "precision"
