"""SD 2.x LoRAs and textual-inversion embeddings on the sd2 engine against Diffusers' own loaders on the same tiny SD2
pipeline (OpenCLIP-style text encoder as converted to CLIP, linear projections, v-prediction): a kohya file
(`lora_unet_` + `lora_te_text_model_encoder_layers_N_...`, the names kohya's sd-scripts give SD2's text encoder) through
Codex's merge vs `load_lora_weights` + `fuse_lora`; an A1111 embedding as safetensors `emb_params` and as a
`string_to_param` .pt (read only where pickles are allowed) vs `load_textual_inversion`. At most 1/255 apart."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from tests.features.conftest import kohya_lora
from tests.features.test_lora_reference import BASE, assert_close, fresh_pipe, run_reference, with_loras

SD2 = {**BASE, "model": "sd2-demo"}
WIDTH = 32  # the demo text encoder's width


@pytest.fixture(scope="module")
def sd2_dir(tmp_path_factory):
    from sdcodex.models.demo import build_demo_model
    from sdcodex.runtime import LocalModels

    root = tmp_path_factory.mktemp("sd2-networks")
    build_demo_model("sd2", root)
    plain = LocalModels(root)
    model = plain.load(plain.resolve("sd2-demo"))
    (root / "Lora").mkdir()
    save_file(kohya_lora(model, 11), root / "Lora" / "tiny-sd2-kohya.safetensors",
              metadata={"ss_base_model_version": "sd_v2_768_v"})
    (root / "embeddings").mkdir()
    gen = torch.Generator().manual_seed(12)
    save_file({"emb_params": torch.randn(2, WIDTH, generator=gen)}, root / "embeddings" / "tinysd2emb.safetensors")
    torch.save({"string_to_token": {"*": 265}, "string_to_param": {"*": torch.randn(3, WIDTH, generator=gen)},
                "name": "tinysd2pt", "step": 100, "sd_checkpoint_name": "v2-1_768-ema-pruned"},
               root / "embeddings" / "tinysd2pt.pt")
    return root


@pytest.fixture(scope="module")
def sd2_models(sd2_dir):
    from sdcodex.runtime import LocalModels

    return LocalModels(sd2_dir, cache_size=2, allow_pickle=True)


@pytest.fixture()
def sd2_orch(sd2_models, tmp_path):
    from sdcodex.runtime import build_orchestrator

    return build_orchestrator(models=sd2_models, outdir=tmp_path / "outputs", device="cpu")


@pytest.mark.parametrize("weight", [0.5, 1.5])
def test_sd2_kohya_lora_equals_diffusers(sd2_orch, sd2_models, sd2_dir, weight):
    req = {**SD2, "loras": [{"name": "tiny-sd2-kohya", "weight": weight}]}
    result = sd2_orch.run(req)
    assert result.info["engine"] == "sd2" and sd2_models.load(sd2_models.resolve("sd2-demo")).family.value == "sd2"
    pipe = fresh_pipe(sd2_models, "sd2-demo")
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    theirs = run_reference(with_loras(sd2_dir, pipe, [("tiny-sd2-kohya", weight)]), req)
    assert_close(result.pil_images[0], theirs)
    plain = np.asarray(sd2_orch.run(SD2).pil_images[0], dtype=int)  # the LoRA changes the picture
    assert np.abs(plain - np.asarray(result.pil_images[0], dtype=int)).max() > 10


@pytest.mark.parametrize("name,count", [("tinysd2emb", 2), ("tinysd2pt", 3)])
def test_sd2_embedding_equals_diffusers(sd2_orch, sd2_models, sd2_dir, name, count):
    req = {**SD2, "prompt": f"a red fox, {name}"}
    result = sd2_orch.run(req)
    pipe = fresh_pipe(sd2_models, "sd2-demo")
    file = next((sd2_dir / "embeddings").glob(f"{name}.*"))
    if file.suffix == ".pt":
        vectors = torch.load(file, weights_only=True)["string_to_param"]["*"]
    else:
        from safetensors.torch import load_file

        vectors = load_file(file)["emb_params"]
    assert vectors.shape == (count, WIDTH)
    pipe.load_textual_inversion(vectors, token=name)
    assert_close(result.pil_images[0], run_reference(pipe, req))
    assert result.info["embeddings"] == [name]


def test_sd2_pickle_embedding_needs_the_opt_in(sd2_dir, tmp_path):
    from sdcodex.core.errors import ValidationError
    from sdcodex.runtime import LocalModels, build_orchestrator

    orch = build_orchestrator(models=LocalModels(sd2_dir), outdir=tmp_path / "o", device="cpu")
    with pytest.raises(ValidationError, match="pickle"):
        orch.run({**SD2, "prompt": "a red fox, tinysd2pt"})
