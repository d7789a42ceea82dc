"""Offline SD1.5/SDXL loading: tokenizer, bundled configs, LDM conversion, single files, folders, errors, cache."""
from __future__ import annotations

import shutil
import threading

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from sdcodex.core.enums import EngineKey, Prediction
from sdcodex.core.errors import ModelLoadError, PickleRefusedError, ValidationError
from sdcodex.models import convert_ldm as cv
from sdcodex.models.cache import ModelCache, cache_key
from sdcodex.models.demo import build_demo_models
from sdcodex.models.build import empty_model
from sdcodex.models.loader import bundled_config, load_model
from sdcodex.models.tokenizers import clip_tokenizer, tokenizer_for
from tests.helpers import ldm_export


@pytest.fixture(scope="module")
def demo_models(demo_models_dir):
    return build_demo_models(demo_models_dir / "demo")


@pytest.fixture(scope="module")
def ldm_files(demo_models, tmp_path_factory):
    """The demo models exported to LDM single files: plain, under an extra 'model.' prefix, inpaint, v-pred."""
    root = tmp_path_factory.mktemp("ldm")
    return {
        "sd15": ldm_export.export_ldm(demo_models["sd15"], root / "sd15.safetensors"),
        "sdxl": ldm_export.export_ldm(demo_models["sdxl"], root / "sdxl.safetensors"),
        "sd15_prefixed": ldm_export.export_ldm(demo_models["sd15"], root / "sd15p.safetensors", prefix="model."),
        "sdxl_prefixed": ldm_export.export_ldm(demo_models["sdxl"], root / "sdxlp.safetensors", prefix="model."),
        "inpaint": ldm_export.export_ldm(demo_models["sd15_inpaint"], root / "inp.safetensors"),
        "vpred": ldm_export.export_ldm(demo_models["sd15"], root / "vpred.safetensors", v_pred=True),
    }


def _reference(folder):
    from diffusers import DiffusionPipeline

    return DiffusionPipeline.from_pretrained(folder, local_files_only=True)


def _equal_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ------------------------------------------------------------------------------------------------- tokenizer
def test_clip_tokenizer_known_ids():
    tok = clip_tokenizer()
    assert tok("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert len(tok) == 49408 and tok.model_max_length == 77 and tok.pad_token_id == 49407
    assert clip_tokenizer() is tok  # cached
    padded = tokenizer_for("tokenizer_2")("a cat", padding="max_length", max_length=6).input_ids
    assert padded == [49406, 320, 2368, 49407, 0, 0]  # SDXL's second tokenizer pads with "!" (id 0)


# ------------------------------------------------------------------------------------------- bundled configs
def test_bundled_configs_build_the_published_architectures():
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731 - meta tensors: no memory
    assert count(empty_model("UNet2DConditionModel", bundled_config("sd15", "unet"))) == 859_520_964
    assert count(empty_model("UNet2DConditionModel", bundled_config("sdxl", "unet"))) == 2_567_463_684
    assert count(empty_model("AutoencoderKL", bundled_config("sd15", "vae"))) == 83_653_863
    assert count(empty_model("CLIPTextModel", bundled_config("sd15", "text_encoder"))) == 123_060_480
    assert count(empty_model("CLIPTextModelWithProjection", bundled_config("sdxl", "text_encoder_2"))) == 694_659_840
    assert bundled_config("sd15", "unet_inpaint")["in_channels"] == 9
    assert bundled_config("sd15", "scheduler_v_prediction")["prediction_type"] == "v_prediction"
    assert bundled_config("sdxl", "vae")["scaling_factor"] == 0.13025
    assert bundled_config("sdxl", "tokenizer_2")["pad_token"] == "!"


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_real_size_key_mapping_matches_diffusers(family):
    """Full-size layouts on the meta device: our tables agree with the export and with Diffusers' converter."""
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint

    for name, build, to_ldm, convert, oracle, prefix in (
            ("unet", "UNet2DConditionModel", ldm_export.unet_to_ldm, cv.convert_unet, convert_ldm_unet_checkpoint,
             "model.diffusion_model."),
            ("vae", "AutoencoderKL", ldm_export.vae_to_ldm, cv.convert_vae, convert_ldm_vae_checkpoint,
             "first_stage_model.")):
        config = bundled_config(family, name)
        expected = empty_model(build, config).state_dict()
        ldm = to_ldm(dict(expected), config)
        assert convert(ldm, config).keys() == expected.keys()
        assert oracle({prefix + k: v for k, v in ldm.items()}, dict(config)).keys() == expected.keys()
    if family == "sdxl":
        model = empty_model("CLIPTextModelWithProjection", bundled_config("sdxl", "text_encoder_2"))
        ldm = ldm_export.open_clip_to_ldm(dict(model.state_dict()))
        assert cv.convert_open_clip(ldm).keys() == model.state_dict().keys()


# ------------------------------------------------------------------------------------------- single files
@pytest.mark.parametrize("name,family", [("sd15", "sd15"), ("sdxl", "sdxl"), ("sd15_prefixed", "sd15"),
                                         ("sdxl_prefixed", "sdxl")])
def test_ldm_single_file_round_trips_exactly(demo_models, ldm_files, name, family):
    folder = demo_models[family]
    loaded = load_model(ldm_files[name], configs=folder)
    ref = _reference(folder)
    assert loaded.family is EngineKey(family) and loaded.prediction is Prediction.EPSILON
    assert loaded.variant["inpaint"] is False and loaded.variant["prefix"] == ("model." if "prefixed" in name else "")
    parts = ["unet", "vae", "text_encoder"] + (["text_encoder_2"] if family == "sdxl" else [])
    for part in parts:
        assert _equal_state(loaded.components[part], ref.components[part]), part
    assert not any(p.is_meta for part in parts for p in loaded.components[part].parameters())
    assert loaded.short_hash is None or len(loaded.short_hash) == 10


def _realigned(pipe):
    # Weights mapped from a file can sit at unaligned addresses, which changes BLAS rounding in the last bit;
    # give both pipelines fresh (aligned) copies so only weights, configs, tokenizers and schedulers are compared.
    for part in ("unet", "vae", "text_encoder", "text_encoder_2"):
        module = getattr(pipe, part, None)
        if module is not None:
            for p in module.parameters():
                p.data = p.data.clone()
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_pipeline_from_single_file_is_pixel_identical(demo_models, ldm_files, family):
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    cls = StableDiffusionXLPipeline if family == "sdxl" else StableDiffusionPipeline
    loaded = load_model(ldm_files[family], configs=demo_models[family])
    images = []
    for pipe in (cls(**loaded.components), _reference(demo_models[family])):
        out = _realigned(pipe)("a photo of a cat", num_inference_steps=2, height=64, width=64, output_type="np",
                               generator=torch.Generator("cpu").manual_seed(0)).images
        images.append(out)
    assert images[0].shape == (1, 64, 64, 3)
    assert np.array_equal(images[0], images[1])


def test_variants_inpaint_vpred_and_precision(demo_models, ldm_files):
    inpaint = load_model(ldm_files["inpaint"], configs=demo_models["sd15_inpaint"])
    assert inpaint.variant["inpaint"] is True and inpaint.variant["in_channels"] == 9
    assert inpaint.components["unet"].config.in_channels == 9
    vpred = load_model(ldm_files["vpred"], configs=demo_models["sd15"], precision="bf16")
    assert vpred.prediction is Prediction.V_PREDICTION
    assert vpred.scheduler_config["prediction_type"] == "v_prediction"
    assert vpred.components["scheduler"].config.prediction_type == "v_prediction"
    assert vpred.dtype == torch.bfloat16 and vpred.components["text_encoder"].dtype == torch.bfloat16
    with pytest.raises(ValidationError) as err:
        load_model(ldm_files["sd15"], precision="fp16", device="cpu")
    assert err.value.field == "precision"


def test_separate_vae_file_overrides(demo_models, ldm_files, tmp_path):
    ref_vae = _reference(demo_models["sdxl"]).vae
    with torch.no_grad():
        for p in ref_vae.parameters():
            p.add_(1.0)
    ldm_vae = tmp_path / "other.vae.safetensors"
    save_file({k: v.contiguous() for k, v in ldm_export.vae_to_ldm(ref_vae.state_dict(),
                                                                    dict(ref_vae.config)).items()}, str(ldm_vae))
    diffusers_vae = tmp_path / "diffusers_vae.safetensors"
    save_file({k: v.contiguous() for k, v in ref_vae.state_dict().items()}, str(diffusers_vae))
    for vae in (ldm_vae, diffusers_vae):
        loaded = load_model(ldm_files["sd15"], configs=demo_models["sd15"], vae=vae)
        assert _equal_state(loaded.components["vae"], ref_vae) and loaded.variant["vae"] == str(vae)


# --------------------------------------------------------------------------------------------------- folders
def test_diffusers_folder_without_tokenizer_uses_bundled(demo_models, tmp_path):
    folder = shutil.copytree(demo_models["sdxl"], tmp_path / "xl")
    shutil.rmtree(folder / "tokenizer")
    shutil.rmtree(folder / "tokenizer_2")
    loaded = load_model(folder)
    assert loaded.family is EngineKey.SDXL and loaded.variant["format"] == "diffusers"
    assert loaded.components["tokenizer_2"].pad_token == "!"
    assert loaded.components["tokenizer"]("a photo of a cat").input_ids[:3] == [49406, 320, 1125]
    assert _equal_state(loaded.components["unet"], _reference(demo_models["sdxl"]).unet)
    with pytest.raises(ModelLoadError, match="cannot be loaded as sd15"):
        load_model(folder, family="sd15")


# ---------------------------------------------------------------------------------------------------- errors
def test_pickle_refused_unless_allowed(demo_models, ldm_files, tmp_path):
    ckpt = tmp_path / "model.ckpt"
    torch.save({"state_dict": load_file(str(ldm_files["sd15"]))}, ckpt)
    with pytest.raises(PickleRefusedError) as err:
        load_model(ckpt)
    assert "safetensors" in str(err.value) and "--allow-pickle" in str(err.value) and str(ckpt) in str(err.value)
    loaded = load_model(ckpt, allow_pickle=True, configs=demo_models["sd15"])
    assert _equal_state(loaded.components["unet"], _reference(demo_models["sd15"]).unet)


def test_truncated_file_is_named(ldm_files, tmp_path):
    bad = tmp_path / "broken.safetensors"
    data = ldm_files["sd15"].read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="broken.safetensors"):
        load_model(bad)


def test_wrong_family_and_missing_keys_refused(demo_models, ldm_files, tmp_path):
    with pytest.raises(ModelLoadError) as err:
        load_model(ldm_files["sdxl"], family="sd15")
    assert "sdxl" in str(err.value) and "sd15" in str(err.value) and "sdxl.safetensors" in str(err.value)
    state = load_file(str(ldm_files["sd15"]))
    del state["model.diffusion_model.out.2.weight"]
    partial = tmp_path / "partial.safetensors"
    save_file(state, str(partial))
    with pytest.raises(ModelLoadError) as err:
        load_model(partial, configs=demo_models["sd15"])
    assert "partial.safetensors" in str(err.value) and "'out.2.weight' is missing" in str(err.value)
    tiny = load_model(ldm_files["sd15"])  # no config given: the architecture is read from the shapes
    assert tiny.variant["config_source"] == "shapes"
    assert tiny.variant["architecture"]["unet"].startswith("sd15 variant: 2 levels × 2 blocks, channels [32, 64]")


# ----------------------------------------------------------------------------------------------------- cache
def test_model_cache_is_lru():
    cache, calls = ModelCache(max_loaded=2), []

    def loader(name):
        return lambda: calls.append(name) or f"model-{name}"

    assert cache.get("a", loader("a")) == "model-a"
    cache.get("b", loader("b"))
    assert cache.get("a", loader("a")) == "model-a"  # hit: a becomes most recent
    cache.get("c", loader("c"))  # evicts b, the least recently used
    assert cache.loaded_keys() == ["a", "c"] and calls == ["a", "b", "c"]
    cache.get("b", loader("b"))
    assert cache.loaded_keys() == ["c", "b"] and calls == ["a", "b", "c", "b"]
    cache.clear()
    assert cache.loaded_keys() == []
    assert cache_key("x.safetensors", vae="v", precision="fp32") != cache_key("x.safetensors", precision="fp32")


def test_model_cache_loads_once_under_races():
    cache, calls, gate = ModelCache(max_loaded=1), [], threading.Event()

    def slow():
        gate.wait(5)
        calls.append(1)
        return object()

    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get("k", slow))) for _ in range(4)]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len({id(r) for r in results}) == 1
    with pytest.raises(RuntimeError):
        cache.get("bad", lambda: (_ for _ in ()).throw(RuntimeError("boom")))
    assert "bad" not in cache
