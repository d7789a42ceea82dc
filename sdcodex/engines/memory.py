"""Where the weights live and how the VAE decodes: the offloading policy (none → model → group → sequential) and
VAE tiling/slicing, each chosen by a pure function from sizes and free memory, overridable per server and per
request, applied with Diffusers' own hooks and reported in `info.memory` with the reason.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import torch

from sdcodex.core.params import Params

log = logging.getLogger("sdcodex.engines.memory")
GIB = 2**30
OFFLOAD_POLICIES = ("none", "model", "group", "sequential")
#: kept free beside the weights for activations, the text encoders' outputs and the allocator's slack
HEADROOM_BYTES = 2 * GIB
#: group offloading keeps about this many blocks on the device at once (the one running and the prefetched one)
GROUP_RESIDENT_BLOCKS = 2
#: VAE decoder peak per output pixel (per image/frame) at 2 bytes per value; measured on SD/FLUX-type decoders
#: as roughly 3 GiB for one 1024x1024 image in fp16 (activations of the 128-channel full-resolution stages)
DECODE_BYTES_PER_PIXEL_FP16 = 3 * 1024
#: tiling is chosen when the estimated decode would take more than this share of the free memory
DECODE_SHARE = 0.5


@dataclass(frozen=True)
class Choice:
    value: str
    reason: str


def choose_offload(device_kind: str, budget_bytes: int | None, components: dict[str, int], *,
                   largest_block_bytes: int | None = None, headroom_bytes: int = HEADROOM_BYTES) -> Choice:
    """The offloading policy for a model: `components` are resident bytes per component (text encoders,
    transformer/unet, vae …), `budget_bytes` is the device memory free plus what the model holds there now.

    none: everything fits with headroom; model: the largest component fits (components move in and out whole,
    e.g. only the active WAN expert on the device); group: a couple of blocks of it fit (block-level groups moved
    ahead of use); sequential: otherwise (leaf modules moved one at a time)."""
    if device_kind != "cuda":
        return Choice("none", f"device is {device_kind}: weights stay where they are (offloading moves them "
                              f"between an accelerator and host memory)")
    if budget_bytes is None:
        return Choice("none", "free device memory unknown")
    total = sum(components.values())
    name, largest = max(components.items(), key=lambda kv: kv[1]) if components else ("model", 0)
    budget = budget_bytes - headroom_bytes
    if total <= budget:
        return Choice("none", f"model {_gib(total)} fits in {_gib(budget_bytes)} with {_gib(headroom_bytes)} headroom")
    if largest <= budget:
        return Choice("model", f"model {_gib(total)} does not fit in {_gib(budget_bytes)}; its largest component "
                               f"({name}, {_gib(largest)}) does: components move to the device one at a time")
    block = largest_block_bytes if largest_block_bytes is not None else largest // 20
    if GROUP_RESIDENT_BLOCKS * block <= budget:
        return Choice("group", f"the largest component ({name}, {_gib(largest)}) does not fit in "
                               f"{_gib(budget_bytes)}; {GROUP_RESIDENT_BLOCKS} of its blocks ({_gib(block)} each) do: "
                               f"block groups move ahead of use")
    return Choice("sequential", f"not even {GROUP_RESIDENT_BLOCKS} blocks of {name} ({_gib(block)} each) fit in "
                                f"{_gib(budget_bytes)}: leaf modules move one at a time")


def choose_vae_tiling(*, video: bool, width: int, height: int, images: int, dtype_bytes: int,
                      free_bytes: int | None) -> Choice:
    """'on' or 'off' for VAE tiling: always for video; for images when the estimated decode peak is more than
    DECODE_SHARE of the free memory (device memory on an accelerator, available RAM on the CPU)."""
    if video:
        return Choice("on", "video: decoded in tiles (frames x size would otherwise peak at once)")
    need = width * height * images * DECODE_BYTES_PER_PIXEL_FP16 * dtype_bytes // 2
    if free_bytes is None:
        return Choice("off", "free memory unknown")
    if need > DECODE_SHARE * free_bytes:
        return Choice("on", f"estimated decode {_gib(need)} for {images}x{width}x{height} is over "
                            f"{int(DECODE_SHARE * 100)}% of {_gib(free_bytes)} free")
    return Choice("off", f"estimated decode {_gib(need)} for {images}x{width}x{height} fits in "
                         f"{_gib(free_bytes)} free")


#: SDCODEX_OFFLOAD_ON_CPU=1: a CPU worker runs the `model` and `group` hooks too, with CPU as both the onload and the
#: offload device — no memory is saved; it makes the hook paths (install, switch between policies, removal) run
#: where there is no accelerator (the tests, debugging). Diffusers' sequential offload cannot run that way.
OFFLOAD_ON_CPU_ENV = "SDCODEX_OFFLOAD_ON_CPU"


def offload_unavailable(policy: str, device_kind: str) -> str | None:
    """Why `policy` cannot run on a device of this kind (None: it can): offloading moves weights between a CUDA
    device and host memory."""
    if policy in ("none", "auto") or device_kind == "cuda":
        return None
    if device_kind == "cpu" and policy in ("model", "group") and os.environ.get(OFFLOAD_ON_CPU_ENV) == "1":
        return None
    return f"offload={policy!r} needs a CUDA device (offloading moves weights between an accelerator and host memory)"


def _gib(n: int) -> str:
    return f"{n / GIB:.1f} GiB"


# ------------------------------------------------------------------------------------------ facts of a run
def module_bytes(module: Any) -> int:
    if not isinstance(module, torch.nn.Module):
        return 0
    return sum(t.numel() * t.element_size() for t in list(module.parameters()) + list(module.buffers()))


def component_bytes(components: dict[str, Any]) -> dict[str, int]:
    return {name: n for name, module in components.items() if (n := module_bytes(module))}


def largest_block_bytes(module: Any) -> int | None:
    """Bytes of the largest block in the module's block lists (what group offloading moves at a time)."""
    sizes = [module_bytes(block) for child in getattr(module, "children", lambda: [])()
             if isinstance(child, torch.nn.ModuleList) for block in child]
    return max(sizes) if sizes else None


def free_memory(device: str) -> int | None:
    """Free bytes on the device (available RAM for the CPU); None when it cannot be told."""
    dev = torch.device(device)
    if dev.type == "cuda" and torch.cuda.is_available():
        free, _total = torch.cuda.mem_get_info(dev)
        return int(free)
    if dev.type == "cpu":
        try:
            import psutil

            return int(psutil.virtual_memory().available)
        except ImportError:
            return None
    return None


def _on_device(components: dict[str, Any], device: str) -> int:
    dev = torch.device(device)
    total = 0
    for module in components.values():
        if isinstance(module, torch.nn.Module):
            total += sum(p.numel() * p.element_size() for p in module.parameters() if p.device.type == dev.type)
    return total


# ------------------------------------------------------------------------------------------ applying
def _offload_asked(params: Params, server_default: str | None) -> str:
    asked = params.offload if params.offload not in (None, "auto") else (server_default or "auto")
    return asked


def apply(pipe: Any, components: dict[str, Any], device: str, params: Params, info: dict[str, Any],
          warnings: list[str], state: dict[str, Any], server_offload: str | None = None) -> None:
    """Choose and apply the offload policy and VAE tiling/slicing for this call; report them in info['memory']."""
    kind = torch.device(device).type
    asked = _offload_asked(params, server_offload)
    sizes = component_bytes(components)
    if asked == "auto":
        budget = free_memory(device)
        if budget is not None:
            budget += _on_device(components, device)
        denoiser = components.get("transformer") or components.get("unet")
        choice = choose_offload(kind, budget, sizes, largest_block_bytes=largest_block_bytes(denoiser))
    elif offload_unavailable(asked, kind):
        warnings.append(f"offload={asked!r} needs a CUDA device; ignored on {device}")
        choice = Choice("none", f"{asked!r} was asked but the device is {kind}")
    else:
        source = "request" if params.offload not in (None, "auto") else "server (--offload)"
        choice = Choice(asked, f"set by the {source}")
    _set_offload(pipe, device, choice.value, state)
    log.info("offload=%s (%s)", choice.value, choice.reason)

    tiling = _vae_tiling(pipe, params, kind, device, warnings)
    info["memory"] = {"offload": choice.value, "offload_reason": choice.reason,
                      "resident_mb": round(sum(sizes.values()) / 2**20, 1), **tiling}


def _set_offload(pipe: Any, device: str, policy: str, state: dict[str, Any]) -> None:
    """Put `policy` on the model's modules through `pipe`. The state is the model's (its pipelines per task share
    the modules, and the hooks sit on the modules): a policy installed through another pipeline, or another
    policy, comes off first."""
    current = state.get("offload", "none")
    if current == policy and (policy == "none" or state.get("offload_pipe") == id(pipe)):
        return
    if current != "none":
        _remove_group_offload(pipe)
        pipe.remove_all_hooks()
        pipe.to(device)
    if policy == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif policy == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    elif policy == "group":
        dev = torch.device(device)
        pipe.enable_group_offload(onload_device=dev, offload_device=torch.device("cpu"), offload_type="block_level",
                                  num_blocks_per_group=1, use_stream=dev.type == "cuda")
    state["offload"], state["offload_pipe"] = policy, id(pipe)


#: the names Diffusers' group offloading registers its hooks under (diffusers.hooks.group_offloading); Diffusers
#: has no call that takes them off again, and `remove_all_hooks` takes off accelerate's hooks only
GROUP_OFFLOAD_HOOKS = ("lazy_prefetch_group_offloading", "layer_execution_tracker", "group_offloading")


def _remove_group_offload(pipe: Any) -> None:
    """Take group offloading off every component (before another policy goes on: Diffusers refuses model offload
    over group offload), leaving the other hooks (step caches) in place."""
    for module in pipe.components.values():
        if not isinstance(module, torch.nn.Module):
            continue
        for sub in module.modules():
            registry = getattr(sub, "_diffusers_hook", None)
            if registry is None:
                continue
            for name in GROUP_OFFLOAD_HOOKS:
                registry.remove_hook(name, recurse=False)


def _vae_tiling(pipe: Any, params: Params, kind: str, device: str, warnings: list[str]) -> dict[str, Any]:
    vae = getattr(pipe, "vae", None)
    asked = params.vae_tiling
    if asked is True or asked is False:
        asked = "on" if asked else "off"
    asked = asked or "auto"
    if asked == "auto":
        dtype_bytes = getattr(vae, "dtype", torch.float32).itemsize if vae is not None else 4
        choice = choose_vae_tiling(video=params.task.is_video, width=params.width, height=params.height,
                                   images=params.batch_size, dtype_bytes=dtype_bytes, free_bytes=free_memory(device))
    else:
        choice = Choice(asked, "set by the request")
    tiling = choice.value == "on"
    can_tile = vae is not None and hasattr(vae, "enable_tiling")
    if tiling and can_tile:
        try:
            vae.enable_tiling()
        except NotImplementedError:
            can_tile = False
    elif can_tile:
        try:
            vae.disable_tiling()
        except NotImplementedError:
            can_tile = False
    if tiling and not can_tile:
        if asked == "on":
            warnings.append(f"vae_tiling: {type(vae).__name__} has no tiled decoding; ignored")
        tiling = False
        choice = Choice("off", f"{type(vae).__name__} has no tiled decoding")
    slicing = tiling and params.batch_size > 1 and hasattr(vae, "enable_slicing")
    if vae is not None and hasattr(vae, "enable_slicing"):
        try:
            vae.enable_slicing() if slicing else vae.disable_slicing()
        except NotImplementedError:
            slicing = False
    return {"vae_tiling": tiling, "vae_slicing": slicing, "vae_reason": choice.reason}


__all__ = ["OFFLOAD_POLICIES", "Choice", "choose_offload", "choose_vae_tiling", "component_bytes", "free_memory",
           "largest_block_bytes", "offload_unavailable", "apply"]
