"""Speed options of a run: the attention backend (Diffusers' attention dispatcher, `model.set_attention_backend`) and
regional compilation (`compile_repeated_blocks`), both set per server/worker (`--attention`, `--compile`), the
backend also per request (`attention`), and reported in `info.attention` / `info.compile` with the reason.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

from sdcodex.core.errors import ValidationError
from sdcodex.core.request import ATTENTION_BACKENDS

log = logging.getLogger("sdcodex.engines.speed")
#: the denoisers a backend is set on and compiled (the modules that run every step)
DENOISERS = ("transformer", "transformer_2", "unet")
DEFAULT_ATTENTION = "native"


@dataclass(frozen=True)
class Backend:
    """One user-facing backend name: Diffusers' AttentionBackendName value, the package it needs (None: torch)
    with the check that it is importable, and whether it runs only on CUDA."""

    diffusers: str
    package: str | None = None
    available: Callable[[], bool] | None = None
    cuda_only: bool = False


def _avail(name: str) -> Callable[[], bool]:
    def check() -> bool:
        import diffusers.utils as du

        return bool(getattr(du, name)())
    return check


#: user name -> Diffusers backend. The `*_hub` backends are left out: they download kernels at run time.
BACKENDS: dict[str, Backend] = {
    "native": Backend("native"),
    "sdpa": Backend("native"),
    "math": Backend("_native_math"),
    "flex": Backend("flex"),
    "efficient": Backend("_native_efficient", cuda_only=True),
    "cudnn": Backend("_native_cudnn", cuda_only=True),
    "flash": Backend("flash", "flash-attn>=2.6.3", _avail("is_flash_attn_available"), True),
    "flash_varlen": Backend("flash_varlen", "flash-attn>=2.6.3", _avail("is_flash_attn_available"), True),
    "flash3": Backend("_flash_3", "flash_attn_interface (FlashAttention 3, built from source)",
                      _avail("is_flash_attn_3_available"), True),
    "sage": Backend("sage", "sageattention>=2.1.1", _avail("is_sageattention_available"), True),
    "sage_varlen": Backend("sage_varlen", "sageattention>=2.1.1", _avail("is_sageattention_available"), True),
    "xformers": Backend("xformers", "xformers>=0.0.29", _avail("is_xformers_available"), True),
}
assert set(BACKENDS) == set(ATTENTION_BACKENDS), "core.request.ATTENTION_BACKENDS and BACKENDS must agree"


def missing(name: str, device: str) -> str | None:
    """What backend `name` lacks on `device` ('the package X is not installed', 'needs a CUDA device'), or None."""
    spec = BACKENDS[name]
    needs = []
    if spec.available is not None and not spec.available():
        needs.append(f"the package {spec.package} is not installed")
    if spec.cuda_only and torch.device(device).type != "cuda":
        needs.append(f"it needs a CUDA device (this worker runs on {device})")
    return "; ".join(needs) or None


def available_backends(device: str) -> list[str]:
    return [name for name in BACKENDS if missing(name, device) is None]


def check_attention(name: str | None, device: str, *, field: str = "attention") -> str:
    """The Diffusers backend for `name` on `device`; a ValidationError naming `field` when it cannot run there."""
    if name is None:
        return DEFAULT_ATTENTION
    if name not in BACKENDS:
        raise ValidationError(f"unknown attention backend {name!r}", field=field, allowed=list(BACKENDS))
    lack = missing(name, device)
    if lack:
        raise ValidationError(f"attention backend {name!r} cannot run: {lack}", field=field,
                              allowed=available_backends(device))
    return BACKENDS[name].diffusers


def check_request(params: Any, device: str) -> None:
    """The request's `attention` on this worker's device (an Orchestrator param check: 422 at submission)."""
    if getattr(params, "attention", None):
        check_attention(params.attention, device)


def _processors(module: torch.nn.Module) -> tuple[int, int, set[str]]:
    """(attention modules, those whose processor goes through Diffusers' dispatcher, the class names of the
    processors that do not)."""
    total = switchable = 0
    fixed: set[str] = set()
    for sub in module.modules():
        proc = getattr(sub, "processor", None)
        if proc is None or not hasattr(sub, "set_processor"):
            continue
        total += 1
        if hasattr(proc, "_attention_backend"):
            switchable += 1
        else:
            fixed.add(type(proc).__name__)
    return total, switchable, fixed


def apply_attention(components: dict[str, Any], device: str, asked: str | None, source: str, field: str,
                    state: dict[str, Any], engine: str) -> dict[str, Any]:
    """Set the backend on the model's denoisers (only when it changed since the model's last run) and return
    info['attention']. A backend other than the default on a denoiser whose attention does not go through the
    dispatcher (the UNets' AttnProcessor2_0 calls torch's SDPA itself) is a ValidationError naming `field`."""
    from diffusers.models.attention_dispatch import attention_backend

    name = asked or DEFAULT_ATTENTION
    backend = check_attention(name, device, field=field)
    modules: dict[str, str] = {}
    for slot in DENOISERS:
        module = components.get(slot)
        if not isinstance(module, torch.nn.Module):
            continue
        total, switchable, kinds = _processors(module)
        cls = type(module).__name__
        if switchable == 0 and backend != "native":
            raise ValidationError(
                f"attention backend {name!r} cannot be used with {engine}: its {cls} ({slot}) runs attention "
                f"through {', '.join(sorted(kinds)) or 'its own code'}, which calls torch's SDPA directly and is "
                f"not switchable through Diffusers' attention dispatcher", field=field, allowed=["native", "sdpa"])
        modules[slot] = (f"{switchable}/{total} attention modules" if switchable == total else
                         f"{switchable}/{total} attention modules (the rest use {', '.join(sorted(kinds))}: torch SDPA)")
        if switchable and state.get(slot) != backend:
            # set_attention_backend also makes the backend the process-wide active one; the context manager
            # restores the previous global, so another worker's models are not touched
            with attention_backend(DEFAULT_ATTENTION):
                if backend == DEFAULT_ATTENTION:
                    module.reset_attention_backend()
                else:
                    try:
                        module.set_attention_backend(backend)
                    except (RuntimeError, ValueError) as exc:  # a version check of Diffusers' own
                        raise ValidationError(f"attention backend {name!r}: {exc}", field=field,
                                              allowed=available_backends(device)) from None
            state[slot] = backend
    log.info("attention=%s (%s) %s", name, source, modules)
    return {"backend": name, "diffusers_backend": backend, "source": source, "modules": modules}


# ------------------------------------------------------------------------------------------ compile
#: torch.compile's `dynamic`: None = static shapes first, and on the first new shape one recompile with the
#: changed sizes dynamic (no recompile per later size); dynamo's recompile limit (torch._dynamo.config
#: .recompile_limit) bounds the rest.
COMPILE_DYNAMIC = None


def apply_compile(components: dict[str, Any], enabled: bool, state: dict[str, Any]) -> dict[str, Any]:
    """Compile the denoisers once per loaded model (the compiled model lives in the model cache with it):
    regionally (`compile_repeated_blocks`, the blocks the class declares in `_repeated_blocks`), else the whole
    module. Compiling is lazy: the first run after it (`first_use`) includes the compile time."""
    if not enabled:
        return {"enabled": False}
    first = False
    report: dict[str, str] = {}
    for slot in DENOISERS:
        module = components.get(slot)
        if not isinstance(module, torch.nn.Module):
            continue
        if slot not in state:
            t = time.perf_counter()
            blocks = [n for n in (getattr(module, "_repeated_blocks", None) or [])
                      if any(type(m).__name__ == n for m in module.modules())]
            if blocks and hasattr(module, "compile_repeated_blocks"):
                module.compile_repeated_blocks(dynamic=COMPILE_DYNAMIC)
                count = sum(type(m).__name__ in blocks for m in module.modules())
                state[slot] = f"regional: {count} blocks ({', '.join(blocks)})"
            else:
                module.compile(dynamic=COMPILE_DYNAMIC)
                state[slot] = (f"whole module: {type(module).__name__} declares no repeated blocks "
                               f"(_repeated_blocks)")
            first = True
            log.info("compile %s: %s (%.2fs to wrap; compiled on first use)", slot, state[slot],
                     time.perf_counter() - t)
        report[slot] = state[slot]
    return {"enabled": True, "modules": report, "first_use": first, "dynamic": COMPILE_DYNAMIC}


def apply(components: dict[str, Any], device: str, params: Any, info: dict[str, Any], state: dict[str, Any],
          engine: str, server_attention: str | None = None, server_compile: bool = False) -> None:
    """Attention backend (the request's `attention`, else the server's --attention, else native) and compile
    (--compile), reported in info['attention'] and info['compile']."""
    asked = getattr(params, "attention", None)
    if asked:
        source, field = "request", "attention"
    elif server_attention:
        asked, source, field = server_attention, "server (--attention)", "--attention"
    else:
        source, field = "default", "attention"
    info["attention"] = apply_attention(components, device, asked, source, field,
                                        state.setdefault("attention", {}), engine)
    info["compile"] = apply_compile(components, server_compile, state.setdefault("compile", {}))


__all__ = ["BACKENDS", "DEFAULT_ATTENTION", "apply", "apply_attention", "apply_compile", "available_backends",
           "check_attention", "check_request", "missing"]
