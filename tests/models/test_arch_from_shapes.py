"""Loads whose architecture is read from the file's shapes give the pixels of Diffusers' own pipeline built from the
same modules with an explicit config: a narrow SD1.5, an SDXL with fewer transformer blocks (as SSD-1B), a FLUX
with fewer blocks and a WAN with fewer layers — each written as the single files users download (A1111 / ComfyUI
layouts, by the tests' own exporters) and loaded with no config at all. The scheduler is built here from Diffusers'
classes and given to both pipelines. Also: a config beside the file (NAME.yaml, NAME.json, NAME/) is used for it, and
a file no rule can build names the tensor, the shape found and the shape expected."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from sdcodex.core.errors import ModelLoadError
from sdcodex.models.demo_video import t5_tokenizer
from sdcodex.models.loader import bundled_config, load_model
from sdcodex.models.tokenizers import clip_tokenizer
from tests.helpers import flow_export as fx
from tests.helpers import ldm_export

TOLERANCE = 1 / 255


def close(a, b) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).max())


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def seeded(build):
    torch.manual_seed(0)
    return build().eval()


# ---------------------------------------------------------------------------------------------------- SD1.5 / SDXL
def clip(family: str, component: str, projection: int | None = None):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cfg = {k: v for k, v in bundled_config(family, component).items() if k not in ("architectures", "model_type")}
    cfg.update(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=1)
    if projection:
        cfg["projection_dim"] = projection
        return seeded(lambda: CLIPTextModelWithProjection(CLIPTextConfig(**cfg)))
    return seeded(lambda: CLIPTextModel(CLIPTextConfig(**cfg)))


def kl_vae(family: str):
    from diffusers import AutoencoderKL

    cfg = {**bundled_config(family, "vae"), "block_out_channels": [32, 32], "layers_per_block": 1,
           "down_block_types": ["DownEncoderBlock2D"] * 2, "up_block_types": ["UpDecoderBlock2D"] * 2}
    return seeded(lambda: AutoencoderKL.from_config(cfg))


def narrow_sd15_unet(heads: int = 8):
    """SD1.5 narrowed: 2 levels × 1 block, channels 32/64, context 64 — 8 heads, as SD1.5 (or `heads`)."""
    from diffusers import UNet2DConditionModel

    cfg = {**bundled_config("sd15", "unet"), "block_out_channels": [32, 64], "layers_per_block": 1,
           "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
           "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"], "cross_attention_dim": 64,
           "attention_head_dim": heads, "sample_size": 32}
    return seeded(lambda: UNet2DConditionModel.from_config(cfg))


def ssd_like_unet():
    """SDXL with fewer transformer blocks where SSD-1B has them (depths [1, 2] down, [[2, 1], [1, 1]] up) and, as
    SSD-1B, a middle block of a single residual block."""
    from diffusers import UNet2DConditionModel

    cfg = {**bundled_config("sdxl", "unet"), "block_out_channels": [64, 128], "layers_per_block": 1,
           "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
           "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"], "transformer_layers_per_block": [1, 2],
           "reverse_transformer_layers_per_block": [[2, 1], [1, 1]], "attention_head_dim": [1, 2],
           "cross_attention_dim": 128, "addition_time_embed_dim": 8, "projection_class_embeddings_input_dim": 80,
           "mid_block_type": "UNetMidBlock2D", "sample_size": 32}
    return seeded(lambda: UNet2DConditionModel.from_config(cfg))


def sd_scheduler():
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                  timestep_spacing="leading", steps_offset=1)


def sd_reference(family: str, unet) -> "object":
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    if family == "sd15":
        return StableDiffusionPipeline(vae=kl_vae("sd15"), text_encoder=clip("sd15", "text_encoder"),
                                       tokenizer=clip_tokenizer(), unet=unet, scheduler=sd_scheduler(),
                                       safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    return StableDiffusionXLPipeline(vae=kl_vae("sdxl"), text_encoder=clip("sdxl", "text_encoder"),
                                     text_encoder_2=clip("sdxl", "text_encoder_2", projection=32),
                                     tokenizer=clip_tokenizer(), tokenizer_2=clip_tokenizer(pad_token="!"), unet=unet,
                                     scheduler=sd_scheduler())


def sd_images(pipe) -> np.ndarray:
    pipe.set_progress_bar_config(disable=True)
    return pipe("a red lighthouse", num_inference_steps=2, height=64, width=64, output_type="np",
                generator=torch.Generator("cpu").manual_seed(1)).images


def loaded_sd_pipe(reference, path: Path):
    loaded = load_model(path)
    parts = {k: v for k, v in loaded.components.items() if k in reference.components}
    return loaded, type(reference)(**{**parts, "scheduler": sd_scheduler()})


@pytest.fixture(scope="module")
def sd_files(tmp_path_factory):
    """Reference pipelines (explicit configs) and their A1111-layout single files."""
    root = tmp_path_factory.mktemp("arch-sd")
    (root / "files").mkdir()
    out = {}
    for name, family, unet in (("narrow_sd15", "sd15", narrow_sd15_unet()), ("ssd_like", "sdxl", ssd_like_unet()),
                               ("two_heads", "sd15", narrow_sd15_unet(heads=2))):
        ref = sd_reference(family, unet)
        ref.save_pretrained(root / name)
        out[name] = (ref, ldm_export.export_ldm(root / name, root / "files" / f"{name}.safetensors"))
    return out


@pytest.mark.parametrize("name", ["narrow_sd15", "ssd_like"])
def test_sd_single_files_built_from_shapes_equal_diffusers(sd_files, name):
    ref, path = sd_files[name]
    loaded, ours = loaded_sd_pipe(ref, path)
    assert loaded.variant["config_source"] == "shapes"
    assert close(sd_images(ours), sd_images(ref)) <= TOLERANCE
    unet = loaded.variant["architecture"]["unet"]
    if name == "narrow_sd15":
        assert unet.startswith("sd15 variant: 2 levels × 1 block, channels [32, 64]") and "context 64" in unet
        assert loaded.variant["architecture"]["text_encoder"] == "clip_l variant: width 64, 2 layers, 1 head"
    else:
        assert unet.startswith("sdxl variant: 2 levels × 1 block, channels [64, 128]") and "adm 80" in unet
        assert "middle block without attention" in unet
        up = loaded.components["unet"].up_blocks[0].attentions
        assert [len(a.transformer_blocks) for a in up] == [2, 1]


def test_models_list_and_job_info_say_what_was_read(sd_files, tmp_path):
    from PIL import Image

    from sdcodex.models.inventory import Inventory
    from sdcodex.runtime import build_orchestrator, LocalModels

    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(sd_files["narrow_sd15"][1], folder / "narrow.safetensors")
    entry = Inventory(folder).to_dicts()[0]
    assert entry["variant"]["architecture"]["unet"].startswith("sd15 variant: 2 levels × 1 block")
    orch = build_orchestrator(models=LocalModels(folder), outdir=tmp_path / "out", device="cpu")
    result = orch.run({"engine": "sd15", "task": "txt2img", "model": "narrow", "prompt": "a cat", "steps": 1,
                       "width": 64, "height": 64, "seed": 1})
    assert isinstance(result.pil_images[0], Image.Image)
    assert result.info["model_architecture"]["unet"] == entry["variant"]["architecture"]["unet"]


# --------------------------------------------------------------------------------------------- config beside a file
def test_config_beside_the_file_is_used(sd_files, tmp_path):
    """Heads are not in the shapes: a 2-head SD1.5 loads with SD1.5's 8 heads unless a config beside it says 2."""
    ref, original = sd_files["two_heads"]
    expected = sd_images(ref)
    path = shutil.copy(original, tmp_path / "model.safetensors")
    assert close(sd_images(loaded_sd_pipe(ref, path)[1]), expected) > TOLERANCE  # the convention is not this model

    ldm = {"model": {"params": {"parameterization": "eps", "unet_config": {"params": {
        "in_channels": 4, "out_channels": 4, "model_channels": 32, "channel_mult": [1, 2], "num_res_blocks": 1,
        "attention_resolutions": [1], "num_heads": 2, "transformer_depth": 1, "context_dim": 64}}}}}
    import yaml

    beside = tmp_path / "model.yaml"
    beside.write_text(yaml.safe_dump(ldm))
    loaded, ours = loaded_sd_pipe(ref, path)
    assert loaded.variant["config_source"] == str(beside)
    assert close(sd_images(ours), expected) <= TOLERANCE
    beside.unlink()

    unet_cfg = dict(ref.unet.config)
    (tmp_path / "model.json").write_text(json.dumps({**unet_cfg, "_class_name": "UNet2DConditionModel"}))
    loaded, ours = loaded_sd_pipe(ref, path)
    assert loaded.variant["config_source"] == str(tmp_path / "model.json")
    assert close(sd_images(ours), expected) <= TOLERANCE
    (tmp_path / "model.json").unlink()

    folder = tmp_path / "model" / "unet"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(unet_cfg))
    loaded, ours = loaded_sd_pipe(ref, path)
    assert loaded.variant["config_source"] == str(tmp_path / "model")
    assert close(sd_images(ours), expected) <= TOLERANCE
    shutil.rmtree(tmp_path / "model")

    (tmp_path / "model.json").write_text(json.dumps({"_class_name": "ControlNetModel"}))
    with pytest.raises(ModelLoadError) as err:
        load_model(path)
    assert "model.json" in str(err.value) and "ControlNetModel" in str(err.value)


def test_a_file_no_rule_can_build_names_the_tensor(sd_files, tmp_path):
    state = load_file(str(sd_files["narrow_sd15"][1]))
    key = "model.diffusion_model.input_blocks.1.1.proj_out.weight"
    assert list(state[key].shape) == [32, 32, 1, 1]
    state[key] = torch.zeros(32, 16, 1, 1)
    bad = tmp_path / "bad.safetensors"
    save_file(state, str(bad))
    with pytest.raises(ModelLoadError) as err:
        load_model(bad)
    text = str(err.value)
    assert "bad.safetensors" in text and key in text and "[32, 16, 1, 1]" in text and "[32, 32, 1, 1]" in text


# ------------------------------------------------------------------------------------------------------ FLUX / WAN
def t5(umt5: bool = False):
    from transformers import T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel

    kw = dict(vocab_size=160, d_model=32, d_kv=8, d_ff=40, num_layers=2, num_heads=4, relative_attention_num_buckets=8,
              feed_forward_proj="gated-gelu", pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    return seeded(lambda: UMT5EncoderModel(UMT5Config(**kw)) if umt5 else T5EncoderModel(T5Config(**kw)))


def flow_scheduler():
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                           base_image_seq_len=256, max_image_seq_len=4096)


@pytest.fixture(scope="module")
def flux_models(tmp_path_factory):
    """A FLUX.1-dev with fewer blocks (1 double + 2 single; FLUX.1-lite and Flex drop double blocks), 1 head of
    FLUX's width 128, as ComfyUI files: diffusion_models/, vae/, text_encoders/ (no Diffusers folder)."""
    from diffusers import FluxPipeline, FluxTransformer2DModel

    root = tmp_path_factory.mktemp("arch-flux")
    cfg = {**bundled_config("flux", "transformer"), "num_layers": 1, "num_single_layers": 2,
           "num_attention_heads": 1, "joint_attention_dim": 32, "pooled_projection_dim": 64}
    transformer = seeded(lambda: FluxTransformer2DModel.from_config(cfg))
    ref = FluxPipeline(scheduler=flow_scheduler(), vae=kl_vae("flux"), text_encoder=clip("flux", "text_encoder"),
                       tokenizer=clip_tokenizer(), text_encoder_2=t5(), tokenizer_2=t5_tokenizer(),
                       transformer=transformer)
    fx.export_flux(transformer, root / "diffusion_models" / "flux-lite-tiny.safetensors", "model.diffusion_model.")
    fx.export_plain(ref.vae, root / "vae" / "ae.safetensors")
    fx.export_clip(ref.text_encoder, root / "text_encoders" / "clip_l.safetensors")
    fx.export_t5(ref.text_encoder_2, root / "text_encoders" / "t5.safetensors")
    t5_tokenizer().save_pretrained(root / "tokenizers" / "tokenizer-t5-xxl")
    return ref, root


def test_flux_with_fewer_blocks_from_shapes_equals_diffusers(flux_models):
    from diffusers import FluxPipeline

    ref, root = flux_models
    loaded = load_model(root / "diffusion_models" / "flux-lite-tiny.safetensors", models_dir=root,
                        vae=root / "vae" / "ae.safetensors",
                        text_encoders=[str(root / "text_encoders" / n) for n in ("clip_l.safetensors", "t5.safetensors")])
    assert loaded.variant["architecture"]["transformer"] == ("flux variant: 1 double + 2 single blocks, width 128, "
                                                             "guidance embedding")
    ours = FluxPipeline(**{k: loaded.components.get(k) for k in ref.components if k != "scheduler"},
                        scheduler=flow_scheduler())
    images = []
    for pipe in (ours, ref):
        pipe.set_progress_bar_config(disable=True)
        images.append(pipe("a red lighthouse", num_inference_steps=2, height=32, width=32, guidance_scale=3.5,
                           max_sequence_length=16, output_type="np",
                           generator=torch.Generator("cpu").manual_seed(2)).images)
    assert close(*images) <= TOLERANCE


@pytest.fixture(scope="module")
def wan_models(tmp_path_factory):
    """A WAN 2.2 TI2V-5B with fewer layers (2), 1 head of WAN's width 128, as ComfyUI files."""
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel

    root = tmp_path_factory.mktemp("arch-wan")
    cfg = {**bundled_config("wan22_ti2v_5b", "transformer"), "num_layers": 2, "num_attention_heads": 1,
           "ffn_dim": 64, "text_dim": 32}
    transformer = seeded(lambda: WanTransformer3DModel.from_config(cfg))
    vae_cfg = {**bundled_config("wan22_ti2v_5b", "vae"), "base_dim": 8, "decoder_base_dim": 16, "dim_mult": [1, 1, 1, 1],
               "num_res_blocks": 1}
    vae = seeded(lambda: AutoencoderKLWan.from_config(vae_cfg))
    sched = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=5.0)
    ref = WanPipeline(tokenizer=t5_tokenizer(), text_encoder=t5(umt5=True), vae=vae, scheduler=sched,
                      transformer=transformer, transformer_2=None, boundary_ratio=None, expand_timesteps=True)
    fx.export_wan(transformer, root / "diffusion_models" / "wan-ti2v-tiny.safetensors")
    fx.export_wan_vae(vae, root / "vae" / "wan2.2_vae.safetensors")
    fx.export_t5(ref.text_encoder, root / "text_encoders" / "umt5.safetensors")
    t5_tokenizer().save_pretrained(root / "tokenizers" / "tokenizer-umt5-xxl")
    return ref, root


def test_wan_with_fewer_layers_from_shapes_equals_diffusers(wan_models):
    from diffusers import UniPCMultistepScheduler, WanPipeline

    ref, root = wan_models
    loaded = load_model(root / "diffusion_models" / "wan-ti2v-tiny.safetensors", models_dir=root,
                        vae=root / "vae" / "wan2.2_vae.safetensors",
                        text_encoders=[str(root / "text_encoders" / "umt5.safetensors")])
    assert loaded.family.value == "wan22_ti2v_5b"
    assert loaded.variant["architecture"]["transformer"] == "wan22_ti2v_5b variant: 2 layers, width 128, 48 in channels"
    sched = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=5.0)
    ours = WanPipeline(**{k: loaded.components[k] for k in ("tokenizer", "text_encoder", "vae", "transformer")},
                       scheduler=sched, transformer_2=None, boundary_ratio=None, expand_timesteps=True)
    frames = []
    for pipe in (ours, ref):
        pipe.set_progress_bar_config(disable=True)
        frames.append(pipe("a red fox", num_inference_steps=2, height=32, width=32, num_frames=5, guidance_scale=4.0,
                           max_sequence_length=16, output_type="np",
                           generator=torch.Generator("cpu").manual_seed(3)).frames)
    assert close(*frames) <= TOLERANCE


def test_a_flux_file_no_rule_can_build_names_the_tensor(flux_models, tmp_path):
    ref, root = flux_models
    state = load_file(str(root / "diffusion_models" / "flux-lite-tiny.safetensors"))
    key = "model.diffusion_model.double_blocks.0.img_mlp.2.weight"
    found = list(state[key].shape)
    state[key] = torch.zeros(found[0], found[1] // 2)
    bad = tmp_path / "diffusion_models" / "bad-flux.safetensors"
    bad.parent.mkdir()
    save_file(state, str(bad))
    with pytest.raises(ModelLoadError) as err:
        load_model(bad, models_dir=root, vae=root / "vae" / "ae.safetensors",
                   text_encoders=[str(root / "text_encoders" / n) for n in ("clip_l.safetensors", "t5.safetensors")])
    text = str(err.value)
    assert "bad-flux.safetensors" in text and key in text
    assert str([found[0], found[1] // 2]) in text and str(found) in text


def test_a_flux_config_beside_the_file_gives_what_shapes_cannot(flux_models, tmp_path):
    """Rope axes are not in the shapes: a FLUX with a head width of 16 is refused naming the q-norm tensor until a
    NAME.json beside it gives its transformer config; then it equals Diffusers."""
    from diffusers import FluxPipeline, FluxTransformer2DModel

    ref, root = flux_models
    cfg = {**bundled_config("flux", "transformer"), "num_layers": 1, "num_single_layers": 1, "num_attention_heads": 2,
           "attention_head_dim": 16, "axes_dims_rope": [4, 4, 8], "joint_attention_dim": 32,
           "pooled_projection_dim": 64}
    transformer = seeded(lambda: FluxTransformer2DModel.from_config(cfg))
    path = fx.export_flux(transformer, tmp_path / "diffusion_models" / "flux16.safetensors")
    common = dict(models_dir=root, vae=root / "vae" / "ae.safetensors",
                  text_encoders=[str(root / "text_encoders" / n) for n in ("clip_l.safetensors", "t5.safetensors")])
    with pytest.raises(ModelLoadError) as err:
        load_model(path, **common)
    assert "'double_blocks.0.img_attn.norm.query_norm.scale'" in str(err.value) and "[16]" in str(err.value)
    beside = path.with_suffix(".json")
    beside.write_text(json.dumps(dict(transformer.config)))
    loaded = load_model(path, **common)
    assert loaded.variant["config_source"] == str(beside)
    images = []
    for parts in (loaded.components, {**ref.components, "transformer": transformer}):
        pipe = FluxPipeline(**{k: parts.get(k) for k in ref.components if k != "scheduler"}, scheduler=flow_scheduler())
        pipe.set_progress_bar_config(disable=True)
        images.append(pipe("a red lighthouse", num_inference_steps=2, height=32, width=32, guidance_scale=3.5,
                           max_sequence_length=16, output_type="np",
                           generator=torch.Generator("cpu").manual_seed(2)).images)
    assert close(*images) <= TOLERANCE
