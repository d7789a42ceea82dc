"""Loading a ControlNet: a Diffusers folder (ControlNetModel, ControlNetUnionModel, FluxControlNetModel with its
config.json) or a single safetensors file — the original layout (`control_model.input_hint_block`, `zero_convs`:
A1111's SD1.5/SDXL files, converted by `convert_ldm.convert_controlnet`) or Diffusers keys — whose architecture
is read from its shapes (`shapes.controlnet_config`, `flux_controlnet_config`). T2I-Adapters (a `T2IAdapter`
folder, a Diffusers-key file or TencentARC's v2 layout) load here too: they are listed and requested as ControlNets. Every module is made by
`build.build_module`: meta device, weights assigned from the memory-mapped file."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from sdcodex.core.errors import ModelLoadError
from sdcodex.models import convert_ldm
from sdcodex.models.build import build_module
from sdcodex.models.detect_rules import CONTROLNET_PREFIXES, Keys, controlnet_layout, t2i_adapter_layout
from sdcodex.models.safetensors_io import TensorView, open_mapped
from sdcodex.models.shapes import controlnet_config, depth, need

UNION_HEADS = 8  # Diffusers' ControlNetUnionModel default (xinsir controlnet-union-sdxl-1.0 config.json)
#: FLUX ControlNet conventions the shapes cannot show (Diffusers' FluxControlNetModel defaults)
FLUX_CONTROLNET_BASE = {"patch_size": 1, "axes_dims_rope": [16, 56, 56]}


def flux_controlnet_config(shapes: Mapping[str, Sequence[int]]) -> dict[str, Any]:
    """FluxControlNetModel config from a Diffusers-layout file: widths, depths, head width (q norm), the union mode
    embedding and the hint encoder."""
    what = "FLUX ControlNet"
    x_in = need(shapes, "x_embedder.weight", what)
    head = need(shapes, "transformer_blocks.0.attn.norm_q.weight", what)[0] if depth(shapes, "transformer_blocks.") \
        else need(shapes, "single_transformer_blocks.0.attn.norm_q.weight", what)[0]
    cfg: dict[str, Any] = dict(FLUX_CONTROLNET_BASE)
    cfg.update(in_channels=x_in[1], num_layers=depth(shapes, "transformer_blocks."),
               num_single_layers=depth(shapes, "single_transformer_blocks."), attention_head_dim=head,
               num_attention_heads=x_in[0] // head,
               joint_attention_dim=need(shapes, "context_embedder.weight", what)[1],
               pooled_projection_dim=need(shapes, "time_text_embed.text_embedder.linear_1.weight", what)[1],
               guidance_embeds=any(k.startswith("time_text_embed.guidance_embedder.") for k in shapes),
               num_mode=shapes["controlnet_mode_embedder.weight"][0] if "controlnet_mode_embedder.weight" in shapes
               else None,
               conditioning_embedding_channels=shapes["input_hint_block.0.weight"][1]
               if "input_hint_block.0.weight" in shapes else None)
    return cfg


WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"


def _weights_files(path: Path) -> list[Path]:
    """The folder's weights: the shards its index names, else diffusion_pytorch_model.safetensors, else its one
    .safetensors file (a folder holding several variants, e.g. a Union repo with its ProMax file, loads the main one)."""
    index = path / f"{WEIGHTS_NAME}.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text(encoding="utf-8")).get("weight_map", {}).values()))
        return [path / name for name in shards]
    if (path / WEIGHTS_NAME).is_file():
        return [path / WEIGHTS_NAME]
    files = sorted(path.glob("*.safetensors"))
    if len(files) != 1:
        raise ModelLoadError(f"{path}: a ControlNet folder needs {WEIGHTS_NAME} (found "
                             f"{', '.join(f.name for f in files) or 'no .safetensors file'})", field="model")
    return files


def union_config(shapes: Mapping[str, Sequence[int]]) -> dict[str, Any]:
    """The ControlNet-Union part of a ControlNetUnionModel config: control types (task embedding rows; 6, ProMax 8),
    the fusion transformer's width and depth and the projection width. Its heads are Diffusers' default (8), as in
    every published Union model."""
    what = "ControlNet-Union"
    task = need(shapes, "task_embedding", what)
    return {"num_control_type": task[0], "num_trans_channel": task[1],
            "num_trans_layer": depth(shapes, "transformer_layes."),
            "num_proj_channel": need(shapes, "spatial_ch_projs.weight", what)[0], "num_trans_head": UNION_HEADS}


#: TencentARC's SD1.5 T2I-Adapters have four levels (320, 640, 1280, 1280)
T2I_ADAPTER_LEVELS = 4


def t2i_adapter_config(shapes: Mapping[str, Sequence[int]]) -> dict[str, Any]:
    """T2IAdapter config of a Diffusers-key file: the unshuffle factor from the input width (SDXL's full adapter
    unshuffles by 16, SD1.5's adapters by 8), widths per level, resnets per level; light adapters (`out_conv` per
    level, the last level repeating the one before, as Diffusers' LightAdapter builds it) likewise."""
    what = "T2I-Adapter"
    levels = depth(shapes, "adapter.body.")
    blocks = depth(shapes, "adapter.body.0.resnets.")
    if "adapter.conv_in.weight" not in shapes:  # light adapter
        width = need(shapes, "adapter.body.0.in_conv.weight", what)[1]
        return {"in_channels": width // 64, "downscale_factor": 8, "num_res_blocks": blocks,
                "channels": [need(shapes, f"adapter.body.{i}.out_conv.weight", what)[0] for i in range(levels - 1)],
                "adapter_type": "light_adapter"}
    width = need(shapes, "adapter.conv_in.weight", what)[1]
    factor = 16 if width % 256 == 0 and width // 256 in (1, 3) else 8
    return {"in_channels": width // factor ** 2, "downscale_factor": factor, "num_res_blocks": blocks,
            "channels": [need(shapes, f"adapter.body.{i}.resnets.0.block2.weight", what)[0] for i in range(levels)],
            "adapter_type": "full_adapter_xl" if factor == 16 else "full_adapter"}


def convert_t2i_adapter(names: Sequence[str], path: Path, light: bool = False) -> dict[str, str]:
    """Diffusers key -> original key of a TencentARC adapter. Full: `body.<level * n + j>.block1/block2`, the
    level's first block also `in_conv` where the width changes, and `conv_in`; light: `body.<i>.in_conv/out_conv`
    around `body.<i>.body.<j>`. The v1 full adapters with convolution skips (`skep`, `down_opt`) have no Diffusers
    class and are refused."""
    if light:
        return {"adapter." + n.replace(".body.", ".resnets.", 1): n for n in names}
    if any(".skep." in n or ".down_opt." in n for n in names):
        raise ModelLoadError(f"{path}: a T2I-Adapter v1 file (skip convolutions); Diffusers' T2IAdapter loads the "
                             f"v2 / XL adapters only", field="model")
    blocks = 1 + max(int(n.split(".")[1]) for n in names if n.startswith("body."))
    per_level = max(1, blocks // T2I_ADAPTER_LEVELS)
    out = {}
    for name in names:
        if name.startswith("conv_in."):
            out[f"adapter.{name}"] = name
            continue
        _, index, rest = name.split(".", 2)
        level, j = divmod(int(index), per_level)
        out[f"adapter.body.{level}.{rest}" if rest.startswith("in_conv.") else
            f"adapter.body.{level}.resnets.{j}.{rest}"] = name
    return out


def _folder_state(path: Path) -> dict[str, Any]:
    files = _weights_files(path)
    state: dict[str, Any] = {}
    for file in files:
        source = open_mapped(file)
        state.update(TensorView(source, {k: k for k in source.keys()}))
    return state


def load_controlnet(path: str | Path, *, dtype: torch.dtype | None = None, device: str | torch.device = "cpu"
                    ) -> torch.nn.Module:
    """The ControlNet at `path` (a Diffusers folder or a single file) as a Diffusers module on `device`."""
    p = Path(path)
    if p.is_dir():
        config = json.loads((p / "config.json").read_text(encoding="utf-8"))
        cls = str(config.get("_class_name") or "ControlNetModel")
        return build_module(cls, config, _folder_state(p), source=p, component="controlnet", device=device,
                            dtype=dtype)
    source = open_mapped(p)
    names = list(source.keys())
    shapes = {k: list(source.shape(k)) for k in names}
    keys = Keys(shapes)
    adapter = t2i_adapter_layout(keys)
    if adapter is not None:
        local = (convert_t2i_adapter(names, p, light=adapter == "original_light") if adapter.startswith("original")
                 else {k: k for k in names})
        config = t2i_adapter_config({k: shapes[f] for k, f in local.items()})
        return build_module("T2IAdapter", config, TensorView(source, local), source=p, component="adapter",
                            device=device, dtype=dtype)
    found = next(((q, lay) for q in CONTROLNET_PREFIXES if (lay := controlnet_layout(keys, q))), None)
    if found is None:
        raise ModelLoadError(f"{p}: not a ControlNet file (no input_hint_block / controlnet_cond_embedding / "
                             f"controlnet_x_embedder tensors)", field="model")
    prefix, layout = found
    local = {k[len(prefix):]: k for k in names if k.startswith(prefix)}
    view = TensorView(source, local)
    if layout == "original":
        state = convert_ldm.convert_controlnet(view)
        config = controlnet_config(convert_ldm.convert_controlnet({k: shapes[f] for k, f in local.items()}))
        cls = "ControlNetModel"
    elif layout == "diffusers":
        state = dict(view)
        local_shapes = {k: shapes[f] for k, f in local.items()}
        config = controlnet_config(local_shapes)
        cls = "ControlNetModel"
        if "task_embedding" in local_shapes:  # ControlNet-Union (xinsir's file and its ProMax weights)
            config.update(union_config(local_shapes))
            config.pop("mid_block_type", None)  # a Union model always has the cross-attention middle block
            cls = "ControlNetUnionModel"
    else:
        state = dict(view)
        config = flux_controlnet_config({k: shapes[f] for k, f in local.items()})
        cls = "FluxControlNetModel"
    return build_module(cls, config, state, source=p, component="controlnet", device=device, dtype=dtype)


__all__ = ["load_controlnet", "flux_controlnet_config", "union_config", "t2i_adapter_config", "convert_t2i_adapter"]
