"""ControlNet files at their real sizes, headers only: an SD 1.5 ControlNet in the original layout (lllyasviel's
control_v11 files: `control_model.` keys) and an SDXL one with Diffusers keys (diffusers_xl_*_full) are detected as
kind controlnet of their family, and the config read from their shapes is the published architecture (the Diffusers
ControlNetModel made from the bundled SD 1.5 / SDXL UNet configs); the UNet rule does not claim them."""
from __future__ import annotations

import inspect

import torch
from diffusers import ControlNetModel

from sdcodex.models.convert_ldm import convert_controlnet
from sdcodex.models.detect import detect_file, explain
from sdcodex.models.model_configs import bundled_config
from sdcodex.models.shapes import controlnet_config
from tests.helpers.controlnet_export import controlnet_to_original
from tests.models.fake_headers import write_fake_safetensors

KEYS = ("in_channels", "conditioning_channels", "block_out_channels", "layers_per_block", "down_block_types",
        "mid_block_type", "transformer_layers_per_block", "conditioning_embedding_out_channels",
        "cross_attention_dim", "use_linear_projection", "attention_head_dim", "addition_embed_type",
        "addition_time_embed_dim", "projection_class_embeddings_input_dim")


def _published(family: str) -> ControlNetModel:
    unet = {k: v for k, v in bundled_config(family, "unet").items() if not k.startswith("_")}
    allowed = set(inspect.signature(ControlNetModel.__init__).parameters)
    with torch.device("meta"):
        return ControlNetModel.from_config({k: v for k, v in unet.items() if k in allowed})


def _norm(cfg: dict) -> dict:
    """The architecture keys, tuples as lists and a uniform per-level value as one list (either spelling)."""
    out = {k: list(cfg[k]) if isinstance(cfg.get(k), tuple) else cfg.get(k) for k in KEYS}
    for key in ("transformer_layers_per_block", "attention_head_dim"):
        if not isinstance(out[key], list):
            out[key] = [out[key]] * len(out["block_out_channels"])
    return out


def test_real_size_controlnet_headers(tmp_path):
    sd15 = _published("sd15")
    shapes = {k: list(v.shape) for k, v in sd15.state_dict().items()}
    original = controlnet_to_original({k: torch.empty(s, device="meta") for k, s in shapes.items()},
                                      dict(sd15.config))
    path = write_fake_safetensors(tmp_path / "control_v11p_sd15_canny.safetensors",
                                  {k: (list(v.shape), "F16") for k, v in original.items()})
    det = detect_file(path)
    assert (det.kind, det.family.value, det.variant["layout"]) == ("controlnet", "sd15", "original")
    assert [f.rule for f in explain({k: list(v.shape) for k, v in original.items()})] == ["controlnet"]
    converted = convert_controlnet({k: list(v.shape) for k, v in original.items()})
    assert set(converted) == set(shapes)
    assert _norm(controlnet_config(converted)) == _norm(dict(sd15.config))

    xl = _published("sdxl")
    xl_shapes = {k: list(v.shape) for k, v in xl.state_dict().items()}
    path = write_fake_safetensors(tmp_path / "diffusers_xl_canny_full.safetensors",
                                  {k: (s, "F16") for k, s in xl_shapes.items()})
    det = detect_file(path)
    assert (det.kind, det.family.value, det.variant["layout"]) == ("controlnet", "sdxl", "diffusers")
    assert _norm(controlnet_config(xl_shapes)) == _norm(dict(xl.config))


def test_union_single_file_config_from_shapes(tmp_path):
    """A ControlNet-Union file with Diffusers keys (xinsir's ProMax: 8 control types) builds from its shapes."""
    from diffusers import ControlNetUnionModel

    from sdcodex.models.controlnet import load_controlnet

    unet = {k: v for k, v in bundled_config("sdxl", "unet").items() if not k.startswith("_")}
    allowed = set(inspect.signature(ControlNetUnionModel.__init__).parameters)
    with torch.device("meta"):
        promax = ControlNetUnionModel.from_config({**{k: v for k, v in unet.items() if k in allowed},
                                                   "num_control_type": 8})
    path = write_fake_safetensors(tmp_path / "diffusion_pytorch_model_promax.safetensors",
                                  {k: (list(v.shape), "F16") for k, v in promax.state_dict().items()})
    det = detect_file(path)
    assert (det.kind, det.family.value, det.variant.get("union")) == ("controlnet", "sdxl", True)
    loaded = load_controlnet(path, device="meta")
    assert type(loaded).__name__ == "ControlNetUnionModel"
    assert _norm(dict(loaded.config)) == _norm(dict(promax.config))
    assert {k: loaded.config[k] for k in ("num_control_type", "num_trans_channel", "num_trans_head",
                                          "num_trans_layer", "num_proj_channel")} == {
        k: promax.config[k] for k in ("num_control_type", "num_trans_channel", "num_trans_head", "num_trans_layer",
                                      "num_proj_channel")}
