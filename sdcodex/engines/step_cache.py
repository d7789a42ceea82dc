"""Step caching (the request's `cache` key) through Diffusers' own cache hooks: First Block Cache, TaylorSeer and
MagCache on the transformer(s) of a DiT pipeline, enabled for one pipeline call and removed after it, with a count
of how many transformer calls ran in full.

A pipeline can take a cache when its denoising loop opens `transformer.cache_context(...)` (Diffusers' hooks keep
their state per context); `supports()` reads that from the pipeline class, so a new family is covered the day its
Diffusers pipeline is. MagCache also needs per-model magnitude ratios; Diffusers ships them for FLUX only.
"""
from __future__ import annotations

import functools
import inspect
import re
from contextlib import contextmanager
from typing import Any, Iterator

import torch

from sdcodex.core.enums import Task
from sdcodex.core.errors import ValidationError
from sdcodex.core.params import Params

#: Diffusers' defaults (FirstBlockCacheConfig.threshold, MagCacheConfig.threshold, TaylorSeerCacheConfig
#: cache_interval / disable_cache_before_step)
DEFAULTS = {"first_block": {"threshold": 0.05}, "mag": {"threshold": 0.06},
            "taylorseer": {"interval": 5, "warmup": 3}}
#: engine key -> name of the magnitude-ratio table in diffusers.hooks.mag_cache (FLUX.1 only: FLUX.2 differs)
MAG_RATIOS = {"flux": "FLUX_MAG_RATIOS"}
_BLOCK = re.compile(r"^[^.]*blocks\.\d+$")


@functools.lru_cache(maxsize=None)
def supports(pipeline_cls: type) -> bool:
    """True when the pipeline's denoising loop sets a cache context (what Diffusers' cache hooks need)."""
    try:
        return "cache_context(" in inspect.getsource(pipeline_cls.__call__)
    except (OSError, TypeError):
        return False


def supported_tasks(engine_classes: list[type]) -> list[str]:
    """'engine.task' for every registered engine task whose pipeline takes a cache."""
    return sorted({f"{cls.key.value}.{task.value}" for cls in engine_classes
                  for task, pipe_cls in getattr(cls, "pipelines", {}).items() if supports(pipe_cls)})


def resolved(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec with Diffusers' defaults for what it leaves out (what runs and what info reports)."""
    return {"kind": spec["kind"], **DEFAULTS[spec["kind"]], **{k: v for k, v in spec.items() if k != "kind"}}


def check(engine: Any, params: Params) -> None:
    """Raise a ValidationError naming `cache` when this engine/task cannot take the asked cache."""
    if not params.cache:
        return
    from sdcodex.core.registry import ENGINES

    family, kind = engine.key.value, params.cache["kind"]
    pipelines = getattr(engine, "pipelines", {})
    passes = [params.task] + ([Task.IMG2IMG] if params.hires and params.task is Task.TXT2IMG else [])
    for task in passes:
        if task not in pipelines or not supports(pipelines[task]):
            what = f"{family} {task.value}" + (" (the hires pass)" if task is not params.task else "")
            raise ValidationError(
                f"step caching is not available for {what}: its Diffusers pipeline "
                f"({pipelines[task].__name__ if task in pipelines else 'none'}) sets no cache context",
                field="cache", allowed=supported_tasks([cls for _, cls in ENGINES.items()]))
    if kind == "mag" and family not in MAG_RATIOS:
        raise ValidationError(f"cache kind 'mag' needs per-model magnitude ratios; Diffusers ships them for "
                              f"{', '.join(MAG_RATIOS)} only, not {family}", field="cache.kind",
                              allowed=["first_block", "taylorseer"])


def hook_config(spec: dict[str, Any], family: str, steps: int, dtype: torch.dtype) -> Any:
    """The Diffusers cache config for a resolved spec (one per transformer and call: MagCache keeps state in it)."""
    from diffusers.hooks import FirstBlockCacheConfig, MagCacheConfig, TaylorSeerCacheConfig

    kind = spec["kind"]
    if kind == "first_block":
        return FirstBlockCacheConfig(threshold=spec["threshold"])
    if kind == "taylorseer":
        return TaylorSeerCacheConfig(cache_interval=spec["interval"], disable_cache_before_step=spec["warmup"],
                                     taylor_factors_dtype=dtype)
    from diffusers.hooks import mag_cache

    table = MAG_RATIOS[family]
    return MagCacheConfig(threshold=spec["threshold"], num_inference_steps=steps,
                          mag_ratios=getattr(mag_cache, table).clone())


def transformers(pipe: Any) -> list[torch.nn.Module]:
    """The pipeline's denoisers that take a cache (WAN 2.2 A14B has two experts)."""
    found = [getattr(pipe, name, None) for name in ("transformer", "transformer_2")]
    return [m for m in found if m is not None and hasattr(m, "enable_cache")]


def _probe(model: torch.nn.Module) -> torch.nn.Module | None:
    """The first Linear of the last transformer block's attention: it runs only when the step is computed in full
    (every kind skips or predicts that block's attention)."""
    blocks = [m for name, m in model.named_modules() if _BLOCK.match(name)]
    if not blocks:
        return None
    tail = blocks[-1]
    for name, module in tail.named_modules():
        if isinstance(module, torch.nn.Linear) and "attn" in name:
            return module
    return next((m for m in tail.modules() if isinstance(m, torch.nn.Linear)), None)


@contextmanager
def applied(pipe: Any, spec: dict[str, Any] | None, family: str, steps: int,
            report: dict[str, Any]) -> Iterator[None]:
    """Enable the cache on the pipeline's transformer(s) for one call; add the call counts to `report`
    (calls: transformer forwards, computed: of those, how many ran the last block)."""
    if not spec:
        yield
        return
    spec = resolved(spec)
    models = transformers(pipe)
    counts = {"calls": 0, "computed": 0}
    handles = []

    def counter(key: str) -> Any:
        def hook(*_: Any) -> None:
            counts[key] += 1
        return hook

    try:
        for model in models:
            if model.is_cache_enabled:
                model.disable_cache()
            model.enable_cache(hook_config(spec, family, steps, model.dtype))
            handles.append(model.register_forward_pre_hook(counter("calls")))
            probe = _probe(model)
            if probe is not None:
                handles.append(probe.register_forward_pre_hook(counter("computed")))
        yield
    finally:
        for handle in handles:
            handle.remove()
        for model in models:
            if model.is_cache_enabled:
                model.disable_cache()
        info = report.setdefault("cache", {**spec, "steps": 0, "transformer_calls": 0, "computed": 0})
        info["steps"] += steps
        info["transformer_calls"] += counts["calls"]
        info["computed"] += counts["computed"]
        info["skipped"] = info["transformer_calls"] - info["computed"]


def infotext_value(spec: dict[str, Any]) -> str:
    """'first_block threshold=0.05' — the infotext's "Step cache" value."""
    spec = resolved(spec)
    return " ".join([spec["kind"]] + [f"{k}={v}" for k, v in spec.items() if k != "kind"])


__all__ = ["DEFAULTS", "supports", "supported_tasks", "resolved", "check", "hook_config", "transformers", "applied",
           "infotext_value"]
