"""TEST-ONLY: write a Diffusers ControlNetModel as an original-layout ControlNet file (A1111's
`control_model.input_hint_block` / `zero_convs` / `middle_block_out` keys), the inverse of
sdcodex.models.convert_ldm.convert_controlnet written independently (regex rules, Diffusers -> original)."""
from __future__ import annotations

import re
from pathlib import Path

import torch
from safetensors.torch import save_file

from tests.helpers.ldm_export import unet_to_ldm


def controlnet_to_original(sd: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    hint = {"conv_in": 0, "conv_out": None}
    blocks = 1 + max(int(m[1]) for k in sd if (m := re.match(r"controlnet_cond_embedding\.blocks\.(\d+)\.", k)))
    hint["conv_out"] = 2 * (blocks + 1)
    unet_like = {**config, "up_block_types": list(reversed(config["down_block_types"]))}
    rest = {k: v for k, v in sd.items() if not k.startswith(("controlnet_", ))}
    out = {f"control_model.{k}": v for k, v in unet_to_ldm(rest, unet_like).items()}
    for key, value in sd.items():
        if m := re.fullmatch(r"controlnet_cond_embedding\.(conv_in|conv_out)\.(weight|bias)", key):
            out[f"control_model.input_hint_block.{hint[m[1]]}.{m[2]}"] = value
        elif m := re.fullmatch(r"controlnet_cond_embedding\.blocks\.(\d+)\.(weight|bias)", key):
            out[f"control_model.input_hint_block.{2 * (int(m[1]) + 1)}.{m[2]}"] = value
        elif m := re.fullmatch(r"controlnet_down_blocks\.(\d+)\.(weight|bias)", key):
            out[f"control_model.zero_convs.{m[1]}.0.{m[2]}"] = value
        elif m := re.fullmatch(r"controlnet_mid_block\.(weight|bias)", key):
            out[f"control_model.middle_block_out.0.{m[1]}"] = value
    return out


def export_controlnet(net, out: Path) -> Path:
    sd = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    save_file(controlnet_to_original(sd, dict(net.config)), str(out))
    return out
