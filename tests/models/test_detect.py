"""Detection from real-layout safetensors headers: every family and kind, prefixes, exclusivity of
the rules, diffusers folders, pickle files, and corrupt headers."""
from __future__ import annotations

import json
import struct
from collections import Counter

import pytest

from sdcodex.core.enums import EngineKey as E
from sdcodex.core.errors import ModelLoadError
from sdcodex.models import detect as d
from sdcodex.models.safetensors_io import read_header
from tests.models import fake_headers as fh

CM = "model.diffusion_model."

# (id, key builder, kind, family, prefix, variant subset, compatible-contains)
CASES = [
    ("sd15", fh.sd15_checkpoint_keys, "checkpoint", E.SD15, CM,
     {"in_channels": 4, "layout": "ldm", "latent_channels": 4, "text_encoders": {"clip_l": "cond_stage_model.transformer."}}, ()),
    ("sd15_inpaint_vpred", lambda: fh.sd15_checkpoint_keys(9, v_pred=True), "checkpoint", E.SD15, CM,
     {"in_channels": 9, "inpaint": True, "prediction": "v_prediction"}, ()),
    ("sd15_unet_only", lambda: fh.prefixed(CM, fh.sd15_unet_keys()), "diffusion_model", E.SD15, CM, {}, ()),
    ("sdxl", fh.sdxl_checkpoint_keys, "checkpoint", E.SDXL, CM,
     {"adm": 2816, "text_encoders": {"clip_l": "conditioner.embedders.0.transformer.",
                                     "clip_g": "conditioner.embedders.1.model."}}, ()),
    ("sdxl_inpaint_vpred", lambda: fh.sdxl_checkpoint_keys(9, v_pred=True), "checkpoint", E.SDXL, CM,
     {"inpaint": True, "prediction": "v_prediction"}, ()),
    ("sdxl_unet_bare", fh.sdxl_unet_keys, "diffusion_model", E.SDXL, "", {}, ()),
    ("svd", fh.svd_checkpoint_keys, "checkpoint", E.SVD, CM, {"in_channels": 8, "temporal": True}, ()),
    ("flux_dev", fh.flux_dev_keys, "diffusion_model", E.FLUX, "", {"guidance_embed": True, "in_channels": 64}, ()),
    ("flux_dev_comfy", lambda: fh.flux_dev_keys(CM), "diffusion_model", E.FLUX, CM, {"guidance_embed": True}, ()),
    ("flux_schnell_prefixed", lambda: fh.flux_schnell_keys("diffusion_model."), "diffusion_model", E.FLUX,
     "diffusion_model.", {"guidance_embed": False}, ()),
    ("flux_schnell_model_prefix", lambda: fh.flux_schnell_keys("model."), "diffusion_model", E.FLUX, "model.",
     {"guidance_embed": False}, ()),
    ("flux_fill", fh.flux_fill_keys, "diffusion_model", E.FLUX, "", {"in_channels": 384, "inpaint": True}, ()),
    ("flux_diffusers", fh.flux_diffusers_keys, "diffusion_model", E.FLUX, "", {"layout": "diffusers", "guidance_embed": True}, ()),
    ("flux_aio", fh.flux_checkpoint_keys, "checkpoint", E.FLUX, CM,
     {"vae_prefix": "vae.", "latent_channels": 16,
      "text_encoders": {"clip_l": "text_encoders.clip_l.transformer.", "t5xxl": "text_encoders.t5xxl.transformer."}}, ()),
    ("hunyuan_video", fh.hunyuan_video_keys, "diffusion_model", E.HUNYUAN_VIDEO, "",
     {"in_channels": 16, "guidance_embed": True}, ()),
    ("hunyuan_video_comfy", lambda: fh.hunyuan_video_keys(CM), "diffusion_model", E.HUNYUAN_VIDEO, CM, {}, ()),
    ("hunyuan_video15", fh.hunyuan_video15_keys, "diffusion_model", E.HUNYUAN_VIDEO15, "", {"in_channels": 65}, ()),
    ("wan_ti2v_5b", fh.wan_ti2v_5b_keys, "diffusion_model", E.WAN22_TI2V_5B, "",
     {"model_size": "5B", "task": "ti2v", "in_dim": 48, "out_dim": 48}, ()),
    ("wan_t2v_a14b", lambda: fh.wan_t2v_a14b_keys(CM), "diffusion_model", E.WAN22_T2V_A14B, CM,
     {"model_size": "14B", "task": "t2v"}, ()),
    ("wan_i2v_a14b", lambda: fh.wan_i2v_a14b_keys("diffusion_model."), "diffusion_model", E.WAN22_I2V_A14B,
     "diffusion_model.", {"model_size": "14B", "task": "i2v", "in_dim": 36}, ()),
    ("wan21_i2v", fh.wan21_i2v_14b_keys, "diffusion_model", None, "", {"wan_version": "2.1", "task": "i2v"}, ()),
    ("wan_diffusers_5b", fh.wan_diffusers_5b_keys, "diffusion_model", E.WAN22_TI2V_5B, "", {"layout": "diffusers"}, ()),
    ("vae_sd", fh.ldm_vae_keys, "vae", None, "", {"latent_channels": 4}, (E.SD15, E.SDXL)),
    ("vae_sd_prefixed", lambda: fh.prefixed("first_stage_model.", fh.ldm_vae_keys()), "vae", None,
     "first_stage_model.", {"latent_channels": 4}, (E.SD15,)),
    ("vae_diffusers", fh.diffusers_vae_keys, "vae", None, "", {"latent_channels": 4, "layout": "diffusers"}, (E.SDXL,)),
    ("vae_flux", lambda: fh.ldm_vae_keys(16, quant_conv=False), "vae", E.FLUX, "", {"latent_channels": 16},
     (E.SD3,)),
    ("sd35_large", fh.sd35_large_keys, "diffusion_model", E.SD3, "",
     {"model": "sd35_large", "hidden": 2432, "depth": 38, "pos_embed_max_size": 192, "in_channels": 16}, ()),
    ("sd35_large_comfy", lambda: fh.sd35_large_keys(CM), "diffusion_model", E.SD3, CM, {"model": "sd35_large"}, ()),
    ("sd35_medium", fh.sd35_medium_keys, "diffusion_model", E.SD3, "",
     {"model": "sd35_medium", "hidden": 1536, "depth": 24, "pos_embed_max_size": 384}, ()),
    ("sd3_medium", lambda: fh.sd3_medium_keys(CM), "diffusion_model", E.SD3, CM, {"model": "sd3_medium"}, ()),
    ("sd35_large_diffusers", fh.sd35_large_diffusers_keys, "diffusion_model", E.SD3, "",
     {"model": "sd35_large", "layout": "diffusers", "depth": 38}, ()),
    ("sd35_checkpoint", fh.sd35_checkpoint_keys, "checkpoint", E.SD3, CM,
     {"vae_prefix": "first_stage_model.", "latent_channels": 16,
      "text_encoders": {"clip_l": "text_encoders.clip_l.transformer.", "clip_g": "text_encoders.clip_g.transformer.",
                        "t5xxl": "text_encoders.t5xxl.transformer."}}, ()),
    ("qwen_image", fh.qwen_image_keys, "diffusion_model", E.QWEN_IMAGE, "",
     {"model": "qwen_image", "hidden": 3072, "text_dim": 3584, "depth": 60, "in_channels": 64}, ()),
    ("qwen_image_comfy", lambda: fh.qwen_image_keys(CM), "diffusion_model", E.QWEN_IMAGE, CM, {}, ()),
    ("vae_qwen_image", fh.qwen_image_vae_keys, "vae", None, "", {"latent_channels": 16}, (E.QWEN_IMAGE,)),
    ("te_qwen25vl_for_qwen_image", fh.qwen25_vl_7b_keys, "text_encoder", None, "model.", {"text_encoder": "qwen2_5_vl"},
     (E.QWEN_IMAGE,)),
    ("te_clip_l_sd3", lambda: fh.clip_keys(768, 12, projection=True), "text_encoder", None, "",
     {"text_encoder": "clip_l"}, (E.SD3, E.FLUX)),
    ("vae_svd", fh.svd_vae_keys, "vae", E.SVD, "", {"temporal_decoder": True}, ()),
    ("vae_wan21", fh.wan21_vae_keys, "vae", None, "", {"latent_channels": 16}, (E.WAN22_T2V_A14B, E.WAN22_I2V_A14B)),
    ("vae_wan22", fh.wan22_vae_keys, "vae", E.WAN22_TI2V_5B, "", {"latent_channels": 48}, ()),
    ("vae_hunyuan", fh.hunyuan_video_vae_keys, "vae", E.HUNYUAN_VIDEO, "", {"latent_channels": 16}, ()),
    ("vae_hunyuan15", lambda: fh.hunyuan_video_vae_keys(32), "vae", E.HUNYUAN_VIDEO15, "", {"latent_channels": 32}, ()),
    ("te_clip_l", fh.clip_l_keys, "text_encoder", None, "", {"text_encoder": "clip_l"}, (E.SD15, E.FLUX)),
    ("te_clip_l_comfy", lambda: fh.prefixed("text_encoders.clip_l.transformer.", fh.clip_l_keys()), "text_encoder",
     None, "text_encoders.clip_l.transformer.", {"text_encoder": "clip_l"}, ()),
    ("te_clip_g", fh.clip_g_keys, "text_encoder", None, "", {"text_encoder": "clip_g"}, (E.SDXL, E.SD3)),
    ("te_open_clip_g", fh.open_clip_g_keys, "text_encoder", None, "", {"text_encoder": "clip_g", "layout": "open_clip"}, ()),
    ("te_t5xxl", fh.t5xxl_keys, "text_encoder", None, "", {"text_encoder": "t5xxl"}, (E.FLUX, E.SD3)),
    ("te_umt5", fh.umt5_xxl_keys, "text_encoder", None, "", {"text_encoder": "umt5"}, (E.WAN22_TI2V_5B,)),
    ("te_byt5", fh.byt5_small_keys, "text_encoder", None, "", {"text_encoder": "byt5"}, (E.HUNYUAN_VIDEO15,)),
    ("te_llama", fh.llama_keys, "text_encoder", None, "model.", {"text_encoder": "llama"}, (E.HUNYUAN_VIDEO,)),
    ("te_qwen25vl", fh.qwen25_vl_7b_keys, "text_encoder", None, "model.", {"text_encoder": "qwen2_5_vl"}, ()),
    ("lora_sd15_kohya", fh.sd15_lora_kohya_keys, "lora", E.SD15, "lora_unet_", {"format": "kohya", "rank": 16}, ()),
    ("lora_sdxl_kohya", fh.sdxl_lora_kohya_keys, "lora", E.SDXL, "lora_unet_", {"text_encoder": True}, ()),
    ("lora_sdxl_peft", fh.sdxl_lora_peft_keys, "lora", E.SDXL, "unet.", {"format": "peft", "rank": 8}, ()),
    ("lora_flux_kohya", fh.flux_lora_kohya_keys, "lora", E.FLUX, "lora_unet_", {}, ()),
    ("lora_flux_peft", fh.flux_lora_peft_keys, "lora", E.FLUX, "transformer.", {}, ()),
    ("lora_hunyuan", fh.hunyuan_video_lora_keys, "lora", E.HUNYUAN_VIDEO, "diffusion_model.", {}, ()),
    ("lora_wan14b", fh.wan_lora_keys, "lora", None, "diffusion_model.", {"model": "wan_14b"},
     (E.WAN22_T2V_A14B, E.WAN22_I2V_A14B)),
    ("lora_wan14b_kohya", lambda: fh.wan_lora_keys(style="kohya"), "lora", None, "lora_unet_", {}, (E.WAN22_I2V_A14B,)),
    ("lora_wan5b", lambda: fh.wan_lora_keys(3072, 30), "lora", E.WAN22_TI2V_5B, "diffusion_model.", {}, ()),
    ("emb_sd15", fh.sd15_embedding_keys, "embedding", E.SD15, "", {"vectors": 4}, ()),
    ("emb_sdxl", fh.sdxl_embedding_keys, "embedding", E.SDXL, "", {}, ()),
    ("up_esrgan", fh.esrgan_old_keys, "upscaler", None, "", {"arch": "esrgan", "scale": 4}, ()),
    ("up_esrgan_x2", lambda: fh.esrgan_old_keys(2), "upscaler", None, "", {"arch": "esrgan", "scale": 2}, ()),
    ("up_realesrgan", fh.realesrgan_keys, "upscaler", None, "", {"arch": "realesrgan", "scale": 4}, ()),
    ("up_realesrgan_x2", lambda: fh.realesrgan_keys(2), "upscaler", None, "", {"scale": 2}, ()),
    ("up_swinir", fh.swinir_keys, "upscaler", None, "", {"arch": "swinir", "scale": 4}, ()),
    ("up_compact", fh.compact_keys, "upscaler", None, "", {"arch": "compact", "scale": 4}, ()),
    ("up_compact_x2", lambda: fh.compact_keys(2, 16), "upscaler", None, "", {"scale": 2}, ()),
    # Z-Image
    ("z_image", fh.z_image_keys, "diffusion_model", E.Z_IMAGE, "",
     {"layout": "original", "dim": 3840, "cap_feat_dim": 2560, "layers": 30, "refiner_layers": 2}, ()),
    ("z_image_comfy", lambda: fh.z_image_keys(CM), "diffusion_model", E.Z_IMAGE, CM, {"head_dim": 128}, ()),
    ("z_image_diffusers", lambda: fh.z_image_keys(layout="diffusers"), "diffusion_model", E.Z_IMAGE, "",
     {"layout": "diffusers", "patch_in": 64}, ()),
    ("te_qwen3_4b", fh.qwen3_4b_keys, "text_encoder", None, "model.", {"text_encoder": "qwen3_4b"}, (E.Z_IMAGE,)),
    ("vae_flux_for_z_image", lambda: fh.ldm_vae_keys(16, quant_conv=False), "vae", E.FLUX, "", {}, (E.Z_IMAGE,)),
    # Chroma: FLUX-like blocks, never claimed as FLUX
    ("chroma", fh.chroma_keys, "diffusion_model", E.CHROMA, "",
     {"layout": "bfl", "double_blocks": 19, "single_blocks": 38, "approximator_layers": 5}, ()),
    ("chroma_comfy", lambda: fh.chroma_keys(CM), "diffusion_model", E.CHROMA, CM, {"approximator_hidden": 5120}, ()),
    ("chroma_diffusers", fh.chroma_diffusers_keys, "diffusion_model", E.CHROMA, "", {"layout": "diffusers"}, ()),
    ("te_t5xxl_for_chroma", fh.t5xxl_keys, "text_encoder", None, "", {"text_encoder": "t5xxl"}, (E.CHROMA,)),
    ("vae_flux_for_chroma", lambda: fh.ldm_vae_keys(16, quant_conv=False), "vae", E.FLUX, "", {}, (E.CHROMA,)),
    ("lora_z_image_toolkit", fh.z_image_lora_keys, "lora", E.Z_IMAGE, "diffusion_model.",
     {"format": "peft", "rank": 16, "model": "z_image"}, ()),
    ("lora_z_image_kohya", lambda: fh.z_image_lora_keys(style="kohya"), "lora", E.Z_IMAGE, "lora_unet_",
     {"format": "kohya"}, ()),
    ("lora_flux_fits_chroma", fh.flux_lora_kohya_keys, "lora", E.FLUX, "lora_unet_", {}, (E.CHROMA,)),
    # FLUX.2: shared modulations; the guidance embedding tells dev from Klein; never claimed as FLUX.1
    ("flux2_dev", fh.flux2_keys, "diffusion_model", E.FLUX2, "",
     {"layout": "bfl", "double_blocks": 8, "single_blocks": 48, "hidden": 6144, "in_channels": 128,
      "text_encoder": "mistral3_small"}, ()),
    ("flux2_dev_comfy", lambda: fh.flux2_keys("dev", CM), "diffusion_model", E.FLUX2, CM, {"text_width": 15360}, ()),
    ("flux2_klein_4b", lambda: fh.flux2_keys("klein4b"), "diffusion_model", E.FLUX2_KLEIN, "",
     {"double_blocks": 5, "single_blocks": 20, "hidden": 3072, "text_encoder": "qwen3_4b"}, ()),
    ("flux2_klein_9b", lambda: fh.flux2_keys("klein9b"), "diffusion_model", E.FLUX2_KLEIN, "",
     {"double_blocks": 8, "single_blocks": 24, "hidden": 4096, "text_encoder": "qwen3_8b"}, ()),
    ("flux2_diffusers_dev", lambda: fh.flux2_diffusers_keys("dev"), "diffusion_model", E.FLUX2, "",
     {"layout": "diffusers", "double_blocks": 8, "single_blocks": 48}, ()),
    ("flux2_diffusers_klein", fh.flux2_diffusers_keys, "diffusion_model", E.FLUX2_KLEIN, "",
     {"layout": "diffusers", "in_channels": 128}, ()),
    ("te_qwen3_4b_for_klein", fh.qwen3_4b_keys, "text_encoder", None, "model.", {"text_encoder": "qwen3_4b"},
     (E.FLUX2_KLEIN, E.Z_IMAGE)),
    ("te_qwen3_8b", fh.qwen3_8b_keys, "text_encoder", None, "model.", {"text_encoder": "qwen3_8b"}, (E.FLUX2_KLEIN,)),
    ("te_mistral3_small", fh.mistral3_small_keys, "text_encoder", None, "model.",
     {"text_encoder": "mistral3_small"}, (E.FLUX2,)),
    ("vae_flux2", lambda: fh.ldm_vae_keys(32, quant_conv=True), "vae", None, "", {}, (E.FLUX2, E.FLUX2_KLEIN)),
    # LTX-2: the all-in-one file (transformer + connectors, video VAE, audio VAE, vocoder); its VAE is not HunyuanVideo's
    ("ltx2_all_in_one", fh.ltx2_keys, "checkpoint", E.LTX2, "model.diffusion_model.",
     {"layout": "ltx", "hidden": 4096, "audio_hidden": 2048, "in_channels": 128, "caption_channels": 3840,
      "depth": 48, "text_connectors": True, "audio_vae": True, "vocoder": True, "vae_prefix": "vae.",
      "latent_channels": 128}, ()),
    ("ltx2_transformer_only", lambda: fh.ltx2_keys(bundled=False), "diffusion_model", E.LTX2,
     "model.diffusion_model.", {"layout": "ltx", "depth": 48}, ()),
    ("ltx2_diffusers_transformer", lambda: fh.ltx2_keys("diffusers"), "diffusion_model", E.LTX2, "",
     {"layout": "diffusers", "audio_in_channels": 128, "depth": 48}, ()),
]


def _shapes(keys):
    return {k: list(v[0]) if isinstance(v, tuple) and len(v) == 2 and isinstance(v[1], str) else list(v)
            for k, v in keys.items()}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_real_layout_file_is_detected_exactly(case, tmp_path):
    name, build, kind, family, prefix, variant, compat = case
    path = fh.write_fake_safetensors(tmp_path / f"{name}.safetensors", build())
    det = d.detect_file(path)
    assert (det.kind, det.family, det.prefix) == (kind, family, prefix), det
    for key, value in variant.items():
        assert det.variant.get(key) == value, (key, det.variant)
    for fam in compat:
        assert fam in det.compatible
    if family is not None:
        assert family in det.compatible
    assert "ambiguous" not in det.variant
    assert det.variant.get("dtype") in ("F16", "F32")


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_each_component_is_claimed_by_exactly_one_rule(case):
    shapes = _shapes(case[1]())
    found = d.explain(shapes)
    roles = Counter(f.role for f in found)
    assert roles["denoiser"] <= 1 and roles["vae"] <= 1 and roles["whole"] <= 1
    assert not (roles["whole"] and (roles["denoiser"] or roles["vae"] or roles["text_encoder"]))
    te_prefixes = Counter(f.prefix for f in found if f.role == "text_encoder")
    assert all(n == 1 for n in te_prefixes.values())
    for f in found:  # every family table had exactly one matching row
        assert "ambiguous" not in f.variant, f


def test_detection_does_not_depend_on_rule_order(monkeypatch):
    shapes = [_shapes(case[1]()) for case in CASES]
    forward = [d.detect_keys(s) for s in shapes]
    monkeypatch.setattr(d, "RULES", tuple(reversed(d.RULES)))
    assert [d.detect_keys(s) for s in shapes] == forward


def test_dit_marker_without_prefix_match_is_not_a_denoiser():
    """ControlNet-like prefixes are not whitelisted denoiser prefixes."""
    shapes = _shapes(fh.prefixed("control_model.", fh.sd15_unet_keys()))
    assert d.detect_keys(shapes).kind == "unknown"


def test_two_denoisers_in_one_file_are_reported_ambiguous_not_guessed():
    shapes = _shapes(fh.merge(fh.flux_dev_keys(), fh.wan_ti2v_5b_keys()))
    det = d.detect_keys(shapes)
    assert det.kind == "unknown" and sorted(det.variant["ambiguous"]) == ["flux", "wan"]


def test_unknown_denoiser_checkpoint_keeps_kind():
    shapes = {"model.diffusion_model.joint_blocks.0.context_block.attn.qkv.weight": [4608, 1536]}
    shapes.update(_shapes(fh.prefixed("first_stage_model.", fh.ldm_vae_keys(16))))
    det = d.detect_keys(shapes)
    assert (det.kind, det.family) == ("checkpoint", None)


def test_lora_family_falls_back_to_kohya_metadata():
    keys = {"lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": [8, 1280],
            "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_up.weight": [5120, 8]}
    det = d.detect_keys(keys, {"ss_base_model_version": "sdxl_base_v1-0"})
    assert (det.kind, det.family, det.variant["family_from"]) == ("lora", E.SDXL, "metadata")


def test_empty_and_unrelated_files_are_unknown(tmp_path):
    assert d.detect_keys({}).kind == "unknown"
    path = fh.write_fake_safetensors(tmp_path / "x.safetensors", {"foo.weight": [3, 3]})
    assert d.detect_file(path).kind == "unknown"


# ---- pickle and diffusers folders ----------------------------------------------------------------

@pytest.mark.parametrize("suffix,kind", [(".ckpt", "checkpoint"), (".pt", "embedding"), (".pth", "upscaler"),
                                          (".bin", "unknown")])
def test_pickle_files_are_never_unpickled(tmp_path, suffix, kind):
    path = tmp_path / f"model{suffix}"
    path.write_bytes(b"\x80\x04cos\nsystem\n(S'exit 1'\ntR.")  # would run a command if unpickled
    det = d.detect_file(path)
    assert (det.kind, det.family, dict(det.variant)) == (kind, None, {"pickle": True})


def _folder(root, cls, index_extra=None, configs=None):
    root.mkdir(parents=True)
    index = {"_class_name": cls, "_diffusers_version": "0.35.0", **(index_extra or {})}
    (root / "model_index.json").write_text(json.dumps(index))
    for sub, cfg in (configs or {}).items():
        (root / sub).mkdir(parents=True, exist_ok=True)
        name = "scheduler_config.json" if sub == "scheduler" else "config.json"
        (root / sub / name).write_text(json.dumps(cfg))
    return root


FOLDERS = [
    ("StableDiffusionPipeline", {}, {"unet": {"in_channels": 4, "cross_attention_dim": 768},
                                     "scheduler": {"prediction_type": "epsilon"}}, E.SD15, {"prediction": "epsilon"}),
    ("StableDiffusionInpaintPipeline", {}, {"unet": {"in_channels": 9, "cross_attention_dim": 768}}, E.SD15,
     {"inpaint": True}),
    ("StableDiffusionPipeline", {}, {"unet": {"in_channels": 4, "cross_attention_dim": 1024}}, E.SD2, {"in_channels": 4}),
    ("StableDiffusionXLPipeline", {"text_encoder": ["transformers", "CLIPTextModel"]}, {"unet": {"in_channels": 4}},
     E.SDXL, {}),
    ("StableDiffusionXLImg2ImgPipeline", {"text_encoder": [None, None], "requires_aesthetics_score": True}, {},
     E.SDXL, {"refiner": True}),
    ("FluxPipeline", {}, {"transformer": {"in_channels": 64, "guidance_embeds": False}}, E.FLUX, {"guidance_embed": False}),
    ("StableVideoDiffusionPipeline", {}, {}, E.SVD, {}),
    ("HunyuanVideoPipeline", {}, {}, E.HUNYUAN_VIDEO, {}),
    ("HunyuanVideo15ImageToVideoPipeline", {}, {}, E.HUNYUAN_VIDEO15, {}),
    ("WanPipeline", {"transformer_2": ["diffusers", "WanTransformer3DModel"], "boundary_ratio": 0.875},
     {"vae": {"z_dim": 16}}, E.WAN22_T2V_A14B, {"task": "t2v"}),
    ("WanImageToVideoPipeline", {"transformer_2": ["diffusers", "WanTransformer3DModel"], "boundary_ratio": 0.9},
     {"vae": {"z_dim": 16}}, E.WAN22_I2V_A14B, {"task": "i2v"}),
    ("WanPipeline", {"transformer_2": [None, None], "expand_timesteps": True}, {"vae": {"z_dim": 48}},
     E.WAN22_TI2V_5B, {"model_size": "5B"}),
    ("WanPipeline", {"transformer_2": [None, None]}, {"vae": {"z_dim": 16}}, None, {"wan_version": "2.1"}),
    ("ZImagePipeline", {}, {"transformer": {"in_channels": 16, "dim": 3840}}, E.Z_IMAGE, {"in_channels": 16}),
    ("ChromaPipeline", {}, {"transformer": {"in_channels": 64}}, E.CHROMA, {"in_channels": 64}),
    ("Flux2Pipeline", {}, {"transformer": {"in_channels": 128}}, E.FLUX2, {"in_channels": 128}),
    ("Flux2KleinPipeline", {"is_distilled": True}, {"transformer": {"in_channels": 128}}, E.FLUX2_KLEIN,
     {"step_distilled": True}),
]


@pytest.mark.parametrize("cls,index,configs,family,variant", FOLDERS, ids=[f"{f[0]}-{i}" for i, f in enumerate(FOLDERS)])
def test_diffusers_folder_family(tmp_path, cls, index, configs, family, variant):
    root = _folder(tmp_path / "pipe", cls, index, configs)
    det = d.detect_folder(root)
    assert (det.kind, det.family) == ("checkpoint", family)
    for key, value in variant.items():
        assert det.variant[key] == value


def test_component_folder_kind(tmp_path):
    (tmp_path / "vae").mkdir()
    (tmp_path / "vae" / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKLWan"}))
    assert d.detect_folder(tmp_path / "vae").kind == "vae"


# ---- corrupt headers -------------------------------------------------------------------------------

def _raw(path, header_bytes, length=None, extra=b""):
    path.write_bytes(struct.pack("<Q", len(header_bytes) if length is None else length) + header_bytes + extra)
    return path


@pytest.mark.parametrize("make,needle", [
    (lambda p: p.write_bytes(b"\x01\x02"), "too short"),
    (lambda p: _raw(p, b"{}", length=10_000), "truncated"),
    (lambda p: _raw(p, b"{not json!}"), "not valid JSON"),
    (lambda p: _raw(p, b"[1, 2]"), "not an object"),
    (lambda p: _raw(p, json.dumps({"w": {"dtype": "F16", "shape": [4, 4], "data_offsets": [0, 32]}}).encode(), extra=b"\0" * 8),
     "truncated"),
    (lambda p: _raw(p, json.dumps({"w": {"dtype": "F16", "shape": [4, 4], "data_offsets": [0, 30]}}).encode(), extra=b"\0" * 30),
     "needs 32 bytes"),
    (lambda p: _raw(p, json.dumps({"w": {"dtype": "F16", "shape": [-1], "data_offsets": [0, 0]}}).encode()), "invalid shape"),
    (lambda p: _raw(p, b"", length=0), "out of range"),
], ids=["short", "length-past-end", "bad-json", "not-object", "data-past-end", "size-mismatch", "bad-shape", "zero"])
def test_corrupt_header_names_file_and_problem(tmp_path, make, needle):
    path = tmp_path / "broken_model.safetensors"
    make(path)
    with pytest.raises(ModelLoadError) as err:
        read_header(path)
    assert "broken_model.safetensors" in str(err.value) and needle in str(err.value)
    with pytest.raises(ModelLoadError):
        d.detect_file(path)


def test_truncated_real_file_is_refused(tmp_path):
    path = fh.write_fake_safetensors(tmp_path / "cut.safetensors", fh.sd15_embedding_keys())
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.truncate(size - 4)
    with pytest.raises(ModelLoadError, match="cut.safetensors.*truncated"):
        d.detect_file(path)


def test_header_round_trip_with_metadata(tmp_path):
    path = fh.write_fake_safetensors(tmp_path / "m.safetensors", {"a": [2, 3], "b": ([4], "F32")},
                                     metadata={"ss_network_dim": "16"})
    tensors, metadata = read_header(path)
    assert tensors["a"] == {"dtype": "F16", "shape": [2, 3], "data_offsets": [0, 12]}
    assert tensors["b"]["dtype"] == "F32" and metadata == {"ss_network_dim": "16"}


def test_header_readable_by_safetensors_library(tmp_path):
    from safetensors import safe_open

    path = fh.write_fake_safetensors(tmp_path / "lib.safetensors", fh.sd15_embedding_keys(3))
    with safe_open(str(path), framework="pt") as f:
        assert list(f.keys()) == ["emb_params"] and f.get_slice("emb_params").get_shape() == [3, 768]
