"""Architecture from shapes: each rule in models/shapes.py reads a real-layout header (full-size layouts written as
sparse safetensors headers from modules built on the meta device, and the hand-written real key sets of
fake_headers.py) and returns a config that builds a module with exactly the file's shapes — for the published
models and for the distilled ones (BK-SDM / tiny-sd: fewer blocks, no middle block; SSD-1B / Vega: fewer
transformer blocks; FLUX.1-lite / Flex: fewer double blocks; WAN with fewer layers)."""
from __future__ import annotations

import pytest
import torch

from sdcodex.core.errors import ModelLoadError
from sdcodex.models import convert_ldm as cv
from sdcodex.models import shapes as sh
from sdcodex.models.build import empty_model
from sdcodex.models.model_configs import bundled_config
from sdcodex.models.safetensors_io import read_shapes
from tests.helpers import flow_export as fx
from tests.helpers import ldm_export
from tests.models import fake_headers as fh


def header(tmp_path, state: dict, name: str = "model") -> dict[str, list[int]]:
    """Write `state`'s names and shapes as a sparse safetensors header and read them back as a loader does."""
    path = fh.write_fake_safetensors(tmp_path / f"{name}.safetensors", {k: list(v.shape) for k, v in state.items()})
    return read_shapes(path)[0]


def same_shapes(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(sa[k].shape == sb[k].shape for k in sa)


def heads(module: torch.nn.Module) -> list[int]:
    from diffusers.models.attention_processor import Attention

    return [m.heads for m in module.modules() if isinstance(m, Attention)]


# ---------------------------------------------------------------------------------------------------------- UNets
UNETS = {
    "sd15": ("sd15", {}),
    "sd15_inpaint": ("sd15", {"in_channels": 9}),
    "bk_sdm_base": ("sd15", {"layers_per_block": 1}),
    "bk_sdm_small": ("sd15", {"layers_per_block": 1, "mid_block_type": None}),
    "tiny_sd": ("sd15", {"layers_per_block": 1, "mid_block_type": None, "block_out_channels": [320, 640, 1280],
                         "down_block_types": ["CrossAttnDownBlock2D"] * 2 + ["DownBlock2D"],
                         "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 2}),
    "sdxl": ("sdxl", {}),
    # SSD-1B: fewer transformer blocks per block, a middle block of one residual block (no attention)
    "ssd_1b": ("sdxl", {"transformer_layers_per_block": [1, 2, 4], "mid_block_type": "UNetMidBlock2D",
                        "reverse_transformer_layers_per_block": [[4, 4, 10], [2, 2, 1], [1, 1, 1]]}),
    "vega": ("sdxl", {"transformer_layers_per_block": [1, 1, 2], "layers_per_block": [1, 1, 2]}),
}


@pytest.mark.parametrize("name", list(UNETS))
def test_unet_rule_reads_published_and_distilled_layouts(tmp_path, name):
    family, change = UNETS[name]
    base = bundled_config(family, "unet")
    original = empty_model("UNet2DConditionModel", {**base, **change})
    ldm = ldm_export.unet_to_ldm(dict(original.state_dict()), dict(original.config))
    cfg = sh.unet_config(header(tmp_path, ldm), base, pooled_dim=1280 if family == "sdxl" else None)
    built = empty_model("UNet2DConditionModel", cfg)
    assert same_shapes(built, original) and heads(built) == heads(original)
    assert cv.convert_unet(ldm, cfg).keys() == original.state_dict().keys()
    if not change:  # a published model reads back as its bundled config
        assert sh.differences("unet", cfg, base) == {}
        assert sh.summary("unet", family, cfg, base).startswith(f"{family}: ")
    else:
        assert sh.summary("unet", family, cfg, base).startswith(f"{family} variant: ")


def test_unet_summary_names_what_was_read(tmp_path):
    base = bundled_config("sd15", "unet")
    narrow = {**base, "block_out_channels": [32, 64], "layers_per_block": 1,
              "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
              "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"]}
    original = empty_model("UNet2DConditionModel", narrow)
    cfg = sh.unet_config(header(tmp_path, ldm_export.unet_to_ldm(dict(original.state_dict()), narrow)), base)
    text = sh.summary("unet", "sd15", cfg, base)
    assert text.startswith("sd15 variant: 2 levels × 1 block, channels [32, 64]") and "context 768" in text
    assert sh.differences("unet", cfg, base)["block_out_channels"] == [32, 64]


def test_unet_shapes_no_rule_can_build_name_the_tensor(tmp_path):
    base = bundled_config("sdxl", "unet")
    original = empty_model("UNet2DConditionModel", base)
    ldm = {k: list(v.shape) for k, v in ldm_export.unet_to_ldm(dict(original.state_dict()), base).items()}
    ldm["label_emb.0.0.weight"] = [1280, 1281]  # 1 + 1280 pooled: not 6 × a time width
    with pytest.raises(ModelLoadError) as err:
        sh.unet_config(ldm, base, pooled_dim=1280)
    assert "'label_emb.0.0.weight'" in str(err.value) and "[1280, 1281]" in str(err.value)
    del ldm["out.2.weight"]
    with pytest.raises(ModelLoadError, match="'out.2.weight' is missing"):
        sh.unet_config(ldm, base)


# ----------------------------------------------------------------------------------------------------------- VAEs
@pytest.mark.parametrize("family,layout", [("sd15", "ldm"), ("sdxl", "diffusers"), ("flux", "ldm"),
                                           ("flux", "diffusers")])
def test_kl_vae_rule(tmp_path, family, layout):
    base = bundled_config(family, "vae")
    original = empty_model("AutoencoderKL", base)
    state = dict(original.state_dict())
    if layout == "ldm":
        state = ldm_export.vae_to_ldm(state, base)
    narrow = empty_model("AutoencoderKL", {**base, "block_out_channels": [32, 64], "layers_per_block": 1,
                                           "down_block_types": ["DownEncoderBlock2D"] * 2,
                                           "up_block_types": ["UpDecoderBlock2D"] * 2})
    for module, src in ((original, state), (narrow, ldm_export.vae_to_ldm(dict(narrow.state_dict()), base))):
        cfg = sh.kl_vae_config(header(tmp_path, src), base)
        assert same_shapes(empty_model("AutoencoderKL", cfg), module)
    assert sh.differences("vae", sh.kl_vae_config(header(tmp_path, state), base), base) == {}


# -------------------------------------------------------------------------------------------------- text encoders
@pytest.mark.parametrize("family,component,cls", [("sd15", "text_encoder", "CLIPTextModel"),
                                                   ("flux", "text_encoder", "CLIPTextModel"),
                                                   ("sdxl", "text_encoder", "CLIPTextModel")])
def test_clip_rule(tmp_path, family, component, cls):
    base = bundled_config(family, component)
    original = empty_model(cls, base)
    state = {("text_model." + k if not k.startswith("text_model.") else k): v for k, v in original.state_dict().items()}
    cfg = sh.clip_text_config(header(tmp_path, state), base)
    assert same_shapes(empty_model(cls, cfg), original) and sh.differences("clip", cfg, base) == {}
    small = {**base, "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 2}
    small_model = empty_model(cls, small)
    cfg = sh.clip_text_config(header(tmp_path, dict(small_model.state_dict())), base)
    assert same_shapes(empty_model(cls, cfg), small_model) and cfg["num_attention_heads"] == 2  # head width 64
    assert sh.summary("clip", "clip_l", cfg, base) == "clip_l variant: width 128, 2 layers, 2 heads"


def test_open_clip_rule(tmp_path):
    base = bundled_config("sdxl", "text_encoder_2")
    original = empty_model("CLIPTextModelWithProjection", base)
    state = ldm_export.open_clip_to_ldm(dict(original.state_dict()))
    cfg = sh.open_clip_text_config(header(tmp_path, state), base)
    assert same_shapes(empty_model("CLIPTextModelWithProjection", cfg), original)
    assert (cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"], cfg["projection_dim"]) == (
        1280, 32, 20, 1280)
    keys = fh.open_clip_g_keys()
    assert sh.open_clip_text_config(keys, base)["hidden_size"] == 1280


@pytest.mark.parametrize("family,cls", [("flux", "T5EncoderModel"), ("wan22_ti2v_5b", "UMT5EncoderModel")])
def test_t5_rule(tmp_path, family, cls):
    component = "text_encoder_2" if family == "flux" else "text_encoder"
    base = bundled_config(family, component)
    for change in ({}, {"d_model": 64, "d_kv": 16, "num_heads": 4, "d_ff": 96, "num_layers": 2, "vocab_size": 300}):
        original = empty_model(cls, {**base, **change})
        state = {k: v for k, v in original.state_dict().items() if k != "encoder.embed_tokens.weight"}
        cfg = sh.t5_config(header(tmp_path, state), base)
        assert same_shapes(empty_model(cls, cfg), original)
        assert (sh.differences("t5", cfg, base) == {}) is (not change)
    assert sh.t5_config(fh.t5xxl_keys(), base)["d_model"] == 4096


# ----------------------------------------------------------------------------------------------- flow transformers
FLUX = {"dev": ("transformer", {}), "schnell": ("transformer_schnell", {}),
        "flux1_lite_8b": ("transformer", {"num_layers": 8}),
        "flex1_alpha": ("transformer", {"num_layers": 8, "num_single_layers": 38})}


@pytest.mark.parametrize("name", list(FLUX))
def test_flux_rule(tmp_path, name):
    component, change = FLUX[name]
    base = bundled_config("flux", component)
    original = empty_model("FluxTransformer2DModel", {**base, **change})
    cfg = sh.flux_config(header(tmp_path, fx.flux_to_bfl(dict(original.state_dict()))), base)
    assert same_shapes(empty_model("FluxTransformer2DModel", cfg), original)
    assert cfg["guidance_embeds"] is (name != "schnell")
    assert (sh.differences("flux", cfg, base) == {}) is (not change)
    if name == "flux1_lite_8b":
        assert sh.summary("flux", "flux", cfg, base) == ("flux variant: 8 double + 38 single blocks, width 3072, "
                                                         "guidance embedding")


def test_flux_rule_on_the_real_key_names():
    base = bundled_config("flux", "transformer")
    cfg = sh.flux_config(fh.flux_dev_keys(), base)
    assert (cfg["num_layers"], cfg["num_single_layers"], cfg["guidance_embeds"]) == (19, 38, True)
    assert sh.flux_config(fh.flux_fill_keys(), base)["in_channels"] == 384
    keys = fh.flux_dev_keys()
    keys["double_blocks.0.img_attn.norm.query_norm.scale"] = [64]
    with pytest.raises(ModelLoadError) as err:
        sh.flux_config(keys, base)
    assert "'double_blocks.0.img_attn.norm.query_norm.scale'" in str(err.value) and "[64]" in str(err.value)


@pytest.mark.parametrize("family,change", [("wan22_ti2v_5b", {}), ("wan22_t2v_a14b", {}), ("wan22_i2v_a14b", {}),
                                           ("wan22_t2v_a14b", {"num_layers": 20}),
                                           ("wan22_ti2v_5b", {"num_attention_heads": 2, "ffn_dim": 512,
                                                              "num_layers": 2})])
def test_wan_rule(tmp_path, family, change):
    base = bundled_config(family, "transformer")
    original = empty_model("WanTransformer3DModel", {**base, **change})
    cfg = sh.wan_config(header(tmp_path, fx.wan_to_original(dict(original.state_dict()))), base)
    assert same_shapes(empty_model("WanTransformer3DModel", cfg), original)
    assert (sh.differences("wan", cfg, base) == {}) is (not change)
    real = sh.wan_config(fh.wan_t2v_a14b_keys(), base)
    assert (real["num_layers"], real["num_attention_heads"], real["in_channels"]) == (40, 40, 16)


@pytest.mark.parametrize("change", [{}, {"num_layers": 2, "num_single_layers": 3, "num_attention_heads": 2,
                                         "image_condition_type": "latent_concat", "in_channels": 33}])
def test_hunyuan_video_rule(tmp_path, change):
    base = sh.HUNYUAN_VIDEO_TRANSFORMER
    original = empty_model("HunyuanVideoTransformer3DModel", {**base, **change})
    cfg = sh.hunyuan_video_config(header(tmp_path, dict(original.state_dict())), base)
    assert same_shapes(empty_model("HunyuanVideoTransformer3DModel", {**change, **cfg}), original)
    assert cfg["guidance_embeds"] is True and cfg["in_channels"] == change.get("in_channels", 16)
    read = sh.architecture_of(header(tmp_path, dict(original.state_dict())), "diffusion_model", "hunyuan_video", "",
                              {"layout": "diffusers"})
    assert read["transformer"].startswith("hunyuan_video" + (" variant" if change else "") + ": ")


# ------------------------------------------------------------------------------------------- decoder text encoders
LLMS = {  # name: (keys, transformers class, (hidden, layers, heads, kv heads, ff, head width))
    "llama": (fh.llama_keys, "LlamaModel", (4096, 32, 32, 8, 14336, 128)),
    "qwen2_5_vl": (fh.qwen25_vl_7b_keys, "Qwen2Model", (3584, 28, 28, 4, 18944, 128)),
    "qwen3_4b": (fh.qwen3_4b_keys, "Qwen3Model", (2560, 36, 32, 8, 9728, 128)),
    "qwen3_8b": (fh.qwen3_8b_keys, "Qwen3Model", (4096, 36, 32, 8, 12288, 128)),
    "mistral3_small": (fh.mistral3_small_keys, "MistralModel", (5120, 40, 32, 8, 32768, 128)),
}


@pytest.mark.parametrize("name", list(LLMS))
def test_decoder_lm_rule_on_real_layout_headers(name):
    """Llama 3 8B (HunyuanVideo), Qwen2.5-VL 7B's language model, Qwen3-4B/8B, Mistral-Small-3 from their real key sets:
    width, layers, grouped-query heads, feed-forward width; the config builds a module whose every shape is the
    file's (built empty on the meta device)."""
    import transformers

    keys, cls, (hidden, layers, heads, kv, ff, head_dim) = LLMS[name]
    local = {k[len("model."):]: v for k, v in keys().items()}
    cfg = sh.decoder_lm_config(local, {})
    assert (cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"], cfg["num_key_value_heads"],
            cfg["intermediate_size"], cfg.get("head_dim", hidden // heads)) == (hidden, layers, heads, kv, ff, head_dim)
    config_cls = getattr(transformers, cls.replace("Model", "Config"))
    with torch.device("meta"):
        model = getattr(transformers, cls)(config_cls(**cfg))
    built = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert all(built[k] == list(v) for k, v in local.items() if k in built)
    assert set(built) <= set(local) | {k for k in built if "rotary" in k}
    line = sh.summary("llm", name, cfg, cfg)
    assert line.startswith(f"{name}: width {hidden}, {layers} layers, {heads} heads ({kv} KV)")
    # what `models list --json` says for such a file (the listing's text-encoder row)
    listed = sh.architecture_of(keys(), "text_encoder", None, "model.", {"text_encoder": name})
    assert listed == {"text_encoder": line}


def test_decoder_lm_rule_keeps_the_given_head_width_and_names_a_bad_tensor():
    base = {"hidden_size": 64, "num_attention_heads": 4, "head_dim": 16, "num_key_value_heads": 2}
    keys = {k[len("model."):]: v for k, v in fh.llama_keys(hidden=64, layers=2, vocab=100, kv=32, ff=96).items()}
    cfg = sh.decoder_lm_config(keys, base)
    assert (cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]) == (4, 2, 16)
    with pytest.raises(ModelLoadError) as err:  # no starting config: the 128 convention cannot split a 64-wide q
        sh.decoder_lm_config(keys, {})
    assert "'layers.0.self_attn.q_proj.weight' has shape [64, 64]" in err.value.message
