"""Building a module from a config plus a state dict: the one builder every loader uses (SD, flow families, new ones).

A module is made on the meta device (no random init, no memory), its known buffers recreated, and the weights
assigned straight from the state dict (`load_state_dict(..., assign=True)`): the tensors of a memory-mapped file
become the parameters, nothing is copied. A state dict that does not fit is a ModelLoadError naming the source,
the component and the first tensor that differs (missing, unexpected, or its expected and found shapes).

    module = build_module("UNet2DConditionModel", config, state, source=path, component="unet")
    module = build_module("CLIPTextModel", config, lambda m: convert(view, m), source=path, component="text_encoder")
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from sdcodex.core.errors import ModelLoadError

#: keys of a transformers config dict that are not constructor arguments of its config class
TRANSFORMERS_META_KEYS = ("architectures", "model_type", "_name_or_path", "transformers_version", "_class_name")
StateSource = Mapping[str, torch.Tensor] | Callable[[torch.nn.Module], Mapping[str, torch.Tensor]]


def model_class(name: str) -> type:
    """The Diffusers or transformers model class called `name` (e.g. 'UNet2DConditionModel', 'T5EncoderModel')."""
    import diffusers

    cls = getattr(diffusers, name, None)
    if cls is None:
        import transformers

        cls = getattr(transformers, name, None)
    if not isinstance(cls, type) or not issubclass(cls, torch.nn.Module):
        raise ModelLoadError(f"no model class {name!r} in this Diffusers/transformers", field="model")
    return cls


def empty_module(factory: Callable[[], torch.nn.Module],
                 fill_buffers: Callable[[torch.nn.Module], None] | None = None) -> torch.nn.Module:
    """`factory()` with meta parameters and real buffers: no random init, no memory.

    Fast path: build on the meta device, then `fill_buffers(module)` recreates the buffers we know (CLIP's position
    ids). If any buffer or tensor attribute is still on the meta device, the module is built again with accelerate's
    init_empty_weights, which keeps every buffer real (slower: it allocates, then drops)."""
    with torch.device("meta"):
        module = factory()
    fill_position_ids(module)
    if fill_buffers is not None:
        fill_buffers(module)
    if not meta_leftovers(module):
        return module
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=False):
        return factory()


def empty_model(class_name: str, config: Mapping[str, Any]) -> torch.nn.Module:
    """An empty (meta) Diffusers or transformers model of `class_name` built from a plain config dict."""
    cls = model_class(class_name)
    if hasattr(cls, "from_config") and hasattr(cls, "register_to_config"):  # Diffusers ModelMixin
        cfg = {k: v for k, v in config.items() if k != "_class_name"}
        return empty_module(lambda: cls.from_config(cfg))
    config_cls = getattr(cls, "config_class", None)
    if config_cls is None:
        raise ModelLoadError(f"{class_name} has no config class to build it from", field="model")
    cfg = config_cls(**{k: v for k, v in config.items() if k not in TRANSFORMERS_META_KEYS})
    return empty_module(lambda: cls(cfg))


def meta_leftovers(module: torch.nn.Module) -> bool:
    """Whether a buffer or a plain tensor attribute of `module` is on the meta device (values unknown)."""
    for sub in module.modules():
        if any(b is not None and b.is_meta for b in sub._buffers.values()):
            return True
        if any(isinstance(v, torch.Tensor) and v.is_meta for v in vars(sub).values()):
            return True
    return False


def fill_position_ids(module: torch.nn.Module) -> None:
    """Text models hold `position_ids` = 0..n-1 as a buffer (CLIP); recreate it after a meta build."""
    for sub in module.modules():
        ids = sub._buffers.get("position_ids")
        if ids is not None and ids.is_meta:
            sub.register_buffer("position_ids", torch.arange(ids.shape[-1], dtype=ids.dtype).expand(1, -1),
                                persistent="position_ids" not in sub._non_persistent_buffers_set)


def _shape(tensor: Any) -> tuple[int, ...] | None:
    """The logical shape of a tensor; None for a quantized one whose storage shape is not its shape."""
    if getattr(tensor, "quant_type", None) is not None:
        return None
    return tuple(tensor.shape)


def assign_weights(module: torch.nn.Module, state: Mapping[str, torch.Tensor], *, source: str | Path,
                   component: str, names: Mapping[str, str] | None = None) -> torch.nn.Module:
    """Strictly assign `state` into `module` (no copy) and return it in eval mode. Any mismatch is a ModelLoadError
    naming `source`, `component` and the first tensor that differs: missing, unexpected, or expected vs found shape.
    `names` (module key -> the tensor's name in the file) lets the error name the file's tensor."""
    expected = module.state_dict(keep_vars=True)
    missing = [k for k in expected if k not in state]
    unexpected = sorted(k for k in state if k not in expected)
    if missing or unexpected:
        detail = []
        if missing:
            detail.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            detail.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        raise ModelLoadError(f"{source}: {component} weights do not match the expected layout: " + "; ".join(detail),
                             field="model")
    for key, want in expected.items():
        got = _shape(state[key])
        if got is not None and got != tuple(want.shape):
            name = (names or {}).get(key)
            what = f"{name!r} ({component} {key!r})" if name and name != key else repr(key)
            raise ModelLoadError(
                f"{source}: {component} cannot be built from this file: tensor {what} has shape {list(got)}, "
                f"the architecture read from the file expects {list(want.shape)}", field="model")
    from sdcodex.models import quantized

    dtype = quantized.compute_dtype(state)
    plain = quantized.install_gguf(module, dict(state), Path(source), component, dtype)  # GGUF blocks stay quantized
    try:
        result = module.load_state_dict(plain, strict=len(plain) == len(state), assign=True)
    except RuntimeError as exc:
        raise ModelLoadError(f"{source}: {component} weights do not fit its config: {str(exc)[:400]}",
                             field="model") from exc
    if len(plain) != len(state) and (result.unexpected_keys or any(
            ".parametrizations." not in f".{k}" for k in result.missing_keys)):
        raise ModelLoadError(f"{source}: {component} weights do not fit its config: missing "
                             f"{result.missing_keys[:3]}, unexpected {result.unexpected_keys[:3]}", field="model")
    quantized.keep_fp8(module, dtype)  # fp8 weights of an fp8 file stay fp8, computed in `dtype`
    return module.eval()


def build_module(model: str | Callable[[], torch.nn.Module], config: Mapping[str, Any] | None, state: StateSource,
                 *, source: str | Path, component: str, device: str | torch.device | None = None,
                 dtype: torch.dtype | None = None, names: Mapping[str, str] | None = None) -> torch.nn.Module:
    """The one public builder: an empty module (a class name + `config`, or a factory) with `state` assigned.

    `state` is a state dict, or a function of the empty module that returns one (for converters that need to
    know the module's own key names). `device` / `dtype` move the result (None leaves the tensors as given);
    `names` (module key -> file tensor name) makes a shape error name the file's tensor."""
    if isinstance(model, str):
        module = empty_model(model, config or {})
    else:
        module = empty_module(model)
    weights = state(module) if callable(state) else state
    module = assign_weights(module, weights, source=source, component=component, names=names)
    if device is not None or dtype is not None:
        module = module.to(device=device, dtype=dtype) if dtype is not None else module.to(device)
    return module


__all__ = ["build_module", "empty_model", "empty_module", "assign_weights", "model_class", "fill_position_ids",
           "meta_leftovers", "TRANSFORMERS_META_KEYS"]
