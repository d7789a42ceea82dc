"""IP-Adapter for SD1.5, SDXL (the UNet) and FLUX.1 (the transformer: XLabs' adapter), on for one run: Diffusers'
own `load_ip_adapter` machinery with a state dict read from a local file (never a hub id), the CLIP image encoder
registered on the pipelines for the run, and the denoiser's attention processors and projection put back
afterwards.

The request key is `ip_adapter` ({model, images, scale, image_encoder}); the pipeline call gets
`ip_adapter_image` (several images become one adapter input: Diffusers projects each and concatenates their
tokens). Infotext records
`IP-Adapter: <name> [hash]`, `IP-Adapter scale`, `IP-Adapter encoder`.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

from sdcodex.core.errors import ModelNotFoundError, ValidationError


def _resolve(provider: Any, ref: str, kind: str, family: str | None, field: str) -> Any:
    inventory = getattr(provider, "inventory", None)
    if inventory is None:
        raise ValidationError("no models folder to find it in", field=field)
    try:
        return inventory.resolve(ref, kind=kind)
    except ModelNotFoundError as exc:
        names = [e.name for e in inventory.entries(kind)]
        raise ValidationError(f"no {kind.replace('_', '-')} {ref!r} in {inventory.models_dir}", field=field,
                              allowed=names or f"(none: put {kind.replace('_', '-')} files in the models folder)") \
            from exc


def _pick_encoder(provider: Any, wanted: dict[str, Any], ref: str | None) -> Any:
    """The requested image encoder, else the only one (or the first by name) whose size fits the adapter."""
    if ref:
        return _resolve(provider, ref, "image_encoder", None, "ip_adapter.image_encoder")
    entries = provider.inventory.entries("image_encoder")
    key = "hidden_size" if wanted["plus"] else "projection_dim"
    fits = [e for e in entries if wanted["image_embed_dim"] is None
            or (e.variant or {}).get(key) in (None, wanted["image_embed_dim"])]
    if not fits:
        raise ValidationError(f"no CLIP image encoder in the models folder fits this IP-Adapter (it reads "
                              f"{key} {wanted['image_embed_dim']})", field="ip_adapter.image_encoder",
                              allowed=[e.name for e in entries] or "(none: put the CLIP vision model beside it)")
    return sorted(fits, key=lambda e: e.name.lower())[0]


@contextlib.contextmanager
def applied(engine: Any, pipes: list[Any], spec: dict[str, Any], info: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Load the adapter into the UNet shared by `pipes` and register the image encoder on each; undo on exit.
    Yields the pipeline keyword arguments to add (`ip_adapter_image`)."""
    import torch
    from transformers import CLIPImageProcessor

    from sdcodex.models.ip_adapter import adapter_facts, encoder_facts, load_image_encoder, read_adapter

    if not hasattr(pipes[0], "load_ip_adapter"):  # e.g. Diffusers' SD1.5 T2I-Adapter pipeline
        raise ValidationError(f"{type(pipes[0]).__name__} takes no IP-Adapter (drop ip_adapter or the T2I-Adapter "
                              f"units)", field="ip_adapter")
    provider = engine.provider
    entry = _resolve(provider, spec["model"], "ip_adapter", None, "ip_adapter.model")
    if entry.family is not None and entry.family != engine.key:
        raise ValidationError(f"IP-Adapter {entry.name!r} is for {entry.family.value}, not {engine.key.value}",
                              field="ip_adapter.model")
    state = read_adapter(entry.path, allow_pickle=bool(getattr(provider, "allow_pickle", False)))
    facts = adapter_facts(state)
    pipe = pipes[0]
    flow = getattr(pipe, "unet", None) is None   # FLUX: the transformer takes the adapter (Diffusers' Flux loader)
    unet = pipe.transformer if flow else pipe.unet
    width = unet.config.joint_attention_dim if flow else unet.config.cross_attention_dim
    if facts["cross_attention_dim"] != width:
        raise ValidationError(f"IP-Adapter {entry.name!r} projects into width {facts['cross_attention_dim']}; this "
                              f"model's {'transformer' if flow else 'UNet'} takes {width}", field="ip_adapter.model")
    if flow and len(spec["images"]) != 1:
        raise ValidationError("a FLUX IP-Adapter takes one image", field="ip_adapter.images", allowed="1 image")
    enc_entry = _pick_encoder(provider, facts, spec.get("image_encoder"))
    device, dtype = unet.device, unet.dtype
    encoder = load_image_encoder(enc_entry.path, device=device, dtype=dtype)
    efacts = encoder_facts(encoder)
    need = efacts["hidden_size"] if facts["plus"] else efacts["projection_dim"]
    if facts["image_embed_dim"] is not None and need != facts["image_embed_dim"]:
        raise ValidationError(f"image encoder {enc_entry.name!r} gives width {need}; IP-Adapter {entry.name!r} reads "
                              f"{facts['image_embed_dim']}", field="ip_adapter.image_encoder")
    state = {part: {k: v.to(device=device, dtype=dtype) for k, v in tensors.items()}
             for part, tensors in state.items()}
    saved_procs = dict(unet.attn_processors)
    saved_proj = getattr(unet, "encoder_hid_proj", None)  # a FLUX transformer has none until an adapter loads
    saved_type = getattr(unet.config, "encoder_hid_dim_type", None)
    size = efacts["image_size"]
    processor = CLIPImageProcessor(size=size, crop_size=size)
    try:
        for p in pipes:
            p.register_modules(image_encoder=encoder, feature_extractor=processor)
        with torch.no_grad():
            if flow:
                pipe.load_ip_adapter(state, weight_name="", image_encoder_pretrained_model_name_or_path=None)
            else:
                pipe.load_ip_adapter(state, subfolder="", weight_name="", image_encoder_folder=None)
        pipe.set_ip_adapter_scale(float(spec["scale"]))
        info["ip_adapter"] = {"model": entry.name, "image_encoder": enc_entry.name, "scale": float(spec["scale"]),
                              "images": len(spec["images"])}
        short = provider.short_hash(entry) if hasattr(provider, "short_hash") else None
        info.setdefault("infotext_extra", {}).update({
            "IP-Adapter": f"{entry.name} [{short}]" if short else entry.name,
            "IP-Adapter scale": float(spec["scale"]), "IP-Adapter encoder": enc_entry.name})
        images = spec["images"]
        yield {"ip_adapter_image": [images] if len(images) > 1 else images[0]}
    finally:
        unet.set_attn_processor(saved_procs)
        unet.encoder_hid_proj = saved_proj
        unet.config.encoder_hid_dim_type = saved_type  # as Diffusers' own unload does (an attribute of the config)
        for p in pipes:
            p.register_modules(image_encoder=None, feature_extractor=None)


__all__ = ["applied"]
