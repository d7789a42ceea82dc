"""SD 2.x single files (the original LDM layout: OpenCLIP text tower under `cond_stage_model.model.`, UNet with linear
projections and 64-wide heads) load through our single-file path and give the pixels of Diffusers'
StableDiffusionPipeline built from the same Diffusers components, with the scheduler built here: epsilon for the 512
base, v-prediction for 768-v — read from a config beside the file (A1111's NAME.yaml, `parameterization: "v"`) or,
without one, from the file name. Also: detection names the family sd2 and the engine runs it with a 768 default."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from sdcodex.models.loader import bundled_config, load_model
from sdcodex.models.tokenizers import clip_tokenizer
from tests.helpers import ldm_export

TOLERANCE = 1 / 255


def seeded(build):
    torch.manual_seed(0)
    return build().eval()


def tiny_sd2_reference():
    """SD2 narrowed: 2 levels × 1 block, channels 64/128 with heads of width 64 (1 and 2 heads), linear projections,
    context 64; a 2-layer text encoder with SD2's gelu (the file gets a third, unused layer: the penultimate rule)."""
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    unet_cfg = {**bundled_config("sd2", "unet"), "block_out_channels": [64, 128], "layers_per_block": 1,
                "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
                "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"], "cross_attention_dim": 64,
                "attention_head_dim": [1, 2], "sample_size": 32}
    assert unet_cfg["use_linear_projection"]
    vae_cfg = {**bundled_config("sd2", "vae"), "block_out_channels": [32, 32], "layers_per_block": 1,
               "down_block_types": ["DownEncoderBlock2D"] * 2, "up_block_types": ["UpDecoderBlock2D"] * 2}
    te_cfg = {k: v for k, v in bundled_config("sd2", "text_encoder").items() if k not in ("architectures", "model_type")}
    te_cfg.update(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=1)
    return StableDiffusionPipeline(
        vae=seeded(lambda: AutoencoderKL.from_config(vae_cfg)),
        text_encoder=seeded(lambda: CLIPTextModel(CLIPTextConfig(**te_cfg))),
        tokenizer=clip_tokenizer(pad_token="!"), unet=seeded(lambda: UNet2DConditionModel.from_config(unet_cfg)),
        scheduler=scheduler("epsilon"), safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def scheduler(prediction: str):
    from diffusers import DDIMScheduler

    return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                         set_alpha_to_one=False, steps_offset=1, prediction_type=prediction)


def images(pipe) -> np.ndarray:
    pipe.set_progress_bar_config(disable=True)
    return pipe("a red lighthouse", num_inference_steps=2, height=64, width=64, output_type="np",
                generator=torch.Generator("cpu").manual_seed(1)).images


TINY_V_YAML = {"model": {"params": {"parameterization": "v", "unet_config": {"params": {
    "in_channels": 4, "out_channels": 4, "model_channels": 64, "channel_mult": [1, 2], "num_res_blocks": 1,
    "attention_resolutions": [1], "num_head_channels": 64, "use_linear_in_transformer": True,
    "transformer_depth": 1, "context_dim": 64}}}}}


@pytest.fixture(scope="module")
def sd2_files(tmp_path_factory):
    import yaml

    root = tmp_path_factory.mktemp("sd2")
    ref = tiny_sd2_reference()
    ref.save_pretrained(root / "diffusers")
    files = root / "Stable-diffusion"
    files.mkdir()
    base = ldm_export.export_ldm(root / "diffusers", files / "tiny-v2-1_512-base.safetensors", sd2=True)
    named_v = shutil.copy(base, files / "tiny-v2-1_768-ema.safetensors")
    beside = shutil.copy(base, files / "tiny-sd2-custom.safetensors")
    (files / "tiny-sd2-custom.yaml").write_text(yaml.safe_dump(TINY_V_YAML))
    unnamed = shutil.copy(base, root / "tiny-sd2-unnamed.safetensors")
    return {"ref": ref, "base": base, "named_v": Path(named_v), "beside": Path(beside), "unnamed": Path(unnamed),
            "dir": root}


def ours(ref, path: Path, prediction: str):
    loaded = load_model(path)
    parts = {k: v for k, v in loaded.components.items() if k in ref.components}
    return loaded, type(ref)(**{**parts, "scheduler": scheduler(prediction)})


@pytest.mark.parametrize("name,prediction,source", [
    ("base", "epsilon", "file name ('512')"), ("named_v", "v_prediction", "file name ('768')"),
    ("beside", "v_prediction", "config"), ("unnamed", "v_prediction", "default for SD2 (768-v)")])
def test_sd2_single_file_equals_diffusers(sd2_files, name, prediction, source):
    ref = sd2_files["ref"]
    loaded, pipe = ours(ref, sd2_files[name], prediction)
    assert loaded.family.value == "sd2"
    assert loaded.variant["prediction"] == prediction and loaded.variant["prediction_source"] == source
    assert loaded.scheduler_config["prediction_type"] == prediction
    assert loaded.components["scheduler"].config.prediction_type == prediction
    te = loaded.components["text_encoder"]
    assert te.config.num_hidden_layers == 2 and te.config.hidden_act == "gelu"  # 3 in the file: the penultimate rule
    assert loaded.components["unet"].config.use_linear_projection
    assert loaded.variant["architecture"]["text_encoder"].startswith("clip_h variant: width 64, 2 layers, 1 head")
    ref.scheduler = scheduler(prediction)
    got, want = images(pipe), images(ref)
    assert float(np.abs(got.astype(np.float64) - want).max()) <= TOLERANCE


def test_sd2_v_prediction_changes_the_image(sd2_files):
    """The prediction type matters for these weights: eps and v give different pixels (so the test above checks it)."""
    ref = sd2_files["ref"]
    ref.scheduler = scheduler("epsilon")
    eps = images(ref)
    ref.scheduler = scheduler("v_prediction")
    assert float(np.abs(images(ref).astype(np.float64) - eps).max()) > 10 / 255


def test_sd2_detected_listed_and_run_by_the_sd2_engine(sd2_files, tmp_path):
    import sdcodex.engines  # noqa: F401 - registers the engines
    from sdcodex.core.registry import get_engine
    from sdcodex.models.detect import detect_file
    from sdcodex.models.inventory import Inventory
    from sdcodex.runtime import LocalModels, build_orchestrator

    found = detect_file(sd2_files["named_v"])
    assert found.kind == "checkpoint" and found.family is not None and found.family.value == "sd2"
    entries = {e["name"]: e for e in Inventory(sd2_files["dir"]).to_dicts()}
    entry = entries["tiny-v2-1_768-ema"]
    models = Inventory(sd2_files["dir"])
    # the form starts at 768 for 768-v (the engine's default) and at 512 for the 512 base
    assert models.resolve("tiny-v2-1_768-ema").declared_defaults() == {}
    assert models.resolve("tiny-v2-1_512-base").declared_defaults() == {"width": 512, "height": 512}
    assert entry["family"] == "sd2" and entry["variant"]["architecture"]["text_encoder"].startswith("clip_h")
    assert get_engine("sd2").defaults["width"] == 768 and get_engine("sd2.1").key.value == "sd2"
    from sdcodex.ui.caps import start_values

    assert start_values("sd2", "normal", "txt2img")["width"] == 768  # the UI tab starts at 768-v's size
    orch = build_orchestrator(models=LocalModels(sd2_files["dir"]), outdir=tmp_path / "out", device="cpu")
    result = orch.run({"task": "txt2img", "model": "tiny-v2-1_768-ema", "prompt": "a cat", "steps": 1,
                       "width": 64, "height": 64, "seed": 1})
    assert result.info["engine"] == "sd2" and result.pil_images[0].size == (64, 64)


@pytest.mark.parametrize("sampler,schedule", [("DPM++ 2M", "Karras"), ("Euler a", "Automatic"), ("DDIM", "Automatic")])
def test_sd2_engine_v_prediction_equals_diffusers(sd2_files, tmp_path, sampler, schedule):
    """The sd2 engine on the 768-v file (through the orchestrator: our sampler policy, A1111 prompt conditioning) gives
    Diffusers' pipeline pixels with the scheduler the independent table names, built from the model's (v) config."""
    from diffusers import StableDiffusionPipeline

    from sdcodex.runtime import LocalModels, build_orchestrator
    from tests.helpers.sampler_reference import reference_scheduler

    models = LocalModels(sd2_files["dir"])
    req = {"task": "txt2img", "model": "tiny-v2-1_768-ema", "prompt": "a red fox in snow", "negative_prompt": "blurry",
           "width": 64, "height": 64, "steps": 3, "cfg_scale": 6.5, "seed": 1234, "sampler": sampler,
           "scheduler": schedule}
    result = build_orchestrator(models=models, outdir=tmp_path / "out", device="cpu").run(req)
    model = models.load(models.resolve("tiny-v2-1_768-ema"))
    assert model.scheduler_config["prediction_type"] == "v_prediction"
    pipe = StableDiffusionPipeline(**{k: model.components[k] for k in ("vae", "text_encoder", "tokenizer", "unet")},
                                   scheduler=reference_scheduler(sampler, schedule, dict(model.scheduler_config),
                                                                 flow=False),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    ref = pipe(prompt=req["prompt"], negative_prompt=req["negative_prompt"], width=64, height=64, num_inference_steps=3,
               guidance_scale=6.5, generator=torch.Generator("cpu").manual_seed(1234)).images[0]
    diff = np.abs(np.asarray(result.pil_images[0], dtype=int) - np.asarray(ref, dtype=int)).max()
    assert diff <= 1, (sampler, diff)
