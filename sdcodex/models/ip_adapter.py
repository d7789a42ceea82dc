"""IP-Adapter files and their CLIP image encoders: read an adapter into the nested state dict Diffusers'
`load_ip_adapter` takes (`{"image_proj": {...}, "ip_adapter": {...}}`), and build the image encoder
(`CLIPVisionModelWithProjection`) from a local file, offline.

Adapter files are the single files of h94/IP-Adapter (`image_proj.*` + `ip_adapter.<n>.to_k_ip/to_v_ip`), as A1111,
Forge (models/ControlNet) and ComfyUI (models/ipadapter) keep them, and XLabs' FLUX IP-Adapter
(`ip_adapter_proj_model.*` + `double_blocks.<i>.processor.ip_adapter_double_stream_{k,v}_proj`); a `.bin` is read only with `allow_pickle`, and
then tensors only (`torch.load(weights_only=True)`). The image encoder is a transformers-layout CLIP vision model: a
folder with config.json, or a single safetensors file whose config is `<name>.json` or config.json beside it or,
without one,
the one its tensor shapes give for the known towers (ViT-L/14, ViT-H/14, ViT-bigG/14).
"""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import torch

from sdcodex.core.errors import ModelLoadError, PickleRefusedError

_LOCK = threading.Lock()
_ENCODERS: dict[tuple[str, str, str], Any] = {}

#: hidden size -> (heads, intermediate size, activation) of the CLIP vision towers IP-Adapters use
KNOWN_TOWERS = {1024: (16, 4096, "quick_gelu"), 1280: (16, 5120, "gelu"), 1664: (16, 8192, "gelu")}


def read_adapter(path: str | Path, *, allow_pickle: bool = False) -> dict[str, dict[str, torch.Tensor]]:
    """`{"image_proj": ..., "ip_adapter": ...}` from an adapter file (keys without their prefix)."""
    path = Path(path)
    if path.suffix.lower() in (".safetensors", ".sft"):
        from safetensors.torch import load_file
        flat = load_file(str(path))
        out: dict[str, dict[str, torch.Tensor]] = {"image_proj": {}, "ip_adapter": {}}
        for key, value in flat.items():
            head, _, rest = key.partition(".")
            if head in out:
                out[head][rest] = value
            elif head == XLABS_PROJ:
                out["image_proj"][rest] = value
            elif head == "double_blocks":
                name = xlabs_attention_key(rest)
                if name is not None:
                    out["ip_adapter"][name] = value
    else:
        if not allow_pickle:
            raise PickleRefusedError(f"{path.name} is a pickle file; IP-Adapters load from .safetensors (or start "
                                     f"with --allow-pickle)", field="ip_adapter.model")
        loaded = torch.load(str(path), map_location="cpu", weights_only=True)
        out = {"image_proj": dict(loaded.get("image_proj", {})), "ip_adapter": dict(loaded.get("ip_adapter", {}))}
    if not out["image_proj"] or not out["ip_adapter"]:
        raise ModelLoadError(f"{path.name} is not an IP-Adapter (no image_proj / ip_adapter tensors)",
                             field="ip_adapter.model")
    return out


#: XLabs' FLUX IP-Adapter layout (XLabs-AI/flux-ip-adapter): the image projection under `ip_adapter_proj_model.`,
#: per double-stream block `double_blocks.<i>.processor.ip_adapter_double_stream_{k,v}_proj.{weight,bias}`
XLABS_PROJ = "ip_adapter_proj_model"
_XLABS_ATTN = {"ip_adapter_double_stream_k_proj": "to_k_ip", "ip_adapter_double_stream_v_proj": "to_v_ip"}


def xlabs_attention_key(rest: str) -> str | None:
    """`<i>.processor.ip_adapter_double_stream_k_proj.weight` -> `<i>.to_k_ip.weight` (Diffusers' per-block key)."""
    parts = rest.split(".")
    if len(parts) != 4 or parts[1] != "processor" or parts[2] not in _XLABS_ATTN:
        return None
    return f"{parts[0]}.{_XLABS_ATTN[parts[2]]}.{parts[3]}"


def adapter_facts(state: dict[str, dict[str, torch.Tensor]]) -> dict[str, Any]:
    """cross_attention_dim (what it projects into), image_embed_dim (what it reads from the encoder) and whether it
    reads the encoder's hidden states (`plus`, a resampler) rather than its projected image embedding."""
    proj, ip = state["image_proj"], state["ip_adapter"]
    to_k = next(v for k, v in ip.items() if k.endswith("to_k_ip.weight"))
    if "proj.weight" in proj:
        embed = proj["proj.weight"].shape[-1]
        plus = False
    elif "proj_in.weight" in proj:
        embed = proj["proj_in.weight"].shape[-1]
        plus = True
    else:
        embed, plus = None, "latents" in proj
    return {"cross_attention_dim": int(to_k.shape[1]), "image_embed_dim": embed, "plus": plus}


def _encoder_config(path: Path, state_keys: Any, shape: Any) -> dict[str, Any]:
    candidates = [path.with_suffix(".json"), path.parent / "config.json"] if path.is_file() else [path / "config.json"]
    beside = next((c for c in candidates if c.is_file()), None)
    if beside is not None:
        config = json.loads(beside.read_text(encoding="utf-8"))
        if str((config.get("architectures") or [""])[0]).startswith("CLIPVision") or "image_size" in config:
            return {k: v for k, v in config.items() if k not in ("architectures", "_name_or_path",
                                                                  "transformers_version", "model_type")}
    return encoder_config_from_shapes({k: shape(k) for k in state_keys}, name=path.name)


def encoder_config_from_shapes(shapes: dict[str, list[int]], *, name: str = "image encoder") -> dict[str, Any]:
    """The CLIPVisionConfig of a known tower (ViT-L/14, ViT-H/14, ViT-bigG/14) from its tensor shapes: width, depth,
    patch and image size, projection; heads, MLP size and activation from the width."""
    patch_w = shapes["vision_model.embeddings.patch_embedding.weight"]
    hidden, patch = patch_w[0], patch_w[-1]
    positions = shapes["vision_model.embeddings.position_embedding.weight"][0]
    layers = 1 + max(int(k.split(".")[3]) for k in shapes if k.startswith("vision_model.encoder.layers."))
    if hidden not in KNOWN_TOWERS:
        raise ModelLoadError(f"{name}: a CLIP vision tower of width {hidden} needs a config.json beside it "
                             f"(known widths: {sorted(KNOWN_TOWERS)})", field="ip_adapter.image_encoder")
    heads, intermediate, act = KNOWN_TOWERS[hidden]
    side = int(round((positions - 1) ** 0.5)) * patch
    return {"hidden_size": hidden, "intermediate_size": intermediate, "num_attention_heads": heads,
            "num_hidden_layers": layers, "patch_size": patch, "image_size": side, "hidden_act": act,
            "projection_dim": shapes["visual_projection.weight"][0], "layer_norm_eps": 1e-5}


def load_image_encoder(path: str | Path, *, device: str | torch.device = "cpu",
                       dtype: torch.dtype = torch.float32) -> Any:
    """The CLIPVisionModelWithProjection in `path` (a folder with config.json + model.safetensors, or one
    safetensors file), kept loaded per (path, device, dtype)."""
    from sdcodex.models.build import build_module
    from sdcodex.models.safetensors_io import open_mapped

    path = Path(path)
    key = (str(path.resolve()), str(device), str(dtype))
    with _LOCK:
        if key in _ENCODERS:
            return _ENCODERS[key]
        weights = path
        if path.is_dir():
            found = sorted(path.glob("*.safetensors"))
            if not found:
                raise ModelLoadError(f"no .safetensors file in {path}", field="ip_adapter.image_encoder")
            weights = found[0]
        handle = open_mapped(weights)
        keys = list(handle.keys())
        config = _encoder_config(path, keys, handle.shape)
        state = {k: handle.get_tensor(k) for k in keys}
        module = build_module("CLIPVisionModelWithProjection", config, state, source=weights,
                              component="image_encoder", device=device, dtype=dtype)
        from sdcodex.models.build import fill_position_ids
        fill_position_ids(module)
        module.eval()
        _ENCODERS.clear()  # one encoder resident at a time
        _ENCODERS[key] = module
        return module


def encoder_facts(module: Any) -> dict[str, int]:
    cfg = module.config
    return {"hidden_size": int(cfg.hidden_size), "projection_dim": int(cfg.projection_dim),
            "image_size": int(cfg.image_size)}


__all__ = ["read_adapter", "adapter_facts", "load_image_encoder", "encoder_facts", "encoder_config_from_shapes",
           "KNOWN_TOWERS"]
