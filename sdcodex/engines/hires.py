"""Hires fix for txt2img, as AUTOMATIC1111 does it: a first pass at the asked size, an upscale (in latent
space with one of A1111's latent modes, or in pixel space with any upscaler: Lanczos, Nearest, R-ESRGAN,
a model file), then an img2img pass at the larger size with the hires steps, denoise, sampler, CFG and prompts.

Defaults follow A1111 1.10: upscaler "Latent", denoising 0.7, hires steps 0 (= the first pass's steps),
sampler/scheduler/prompt/CFG = the first pass's. The second pass re-seeds each image with its own seed.
FLUX latents are packed 2x2, so on FLUX a latent mode upscales in pixel space (Lanczos) with a warning; FLUX's
img2img pipeline is given the hires size explicitly (it would otherwise resize its input to 1024 px).
"""
from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable

import torch
import torch.nn.functional as F

from sdcodex.core.enums import Prediction, Task
from sdcodex.core.errors import ValidationError
from sdcodex.core.params import Params

#: A1111's latent upscale modes: name -> (torch interpolate mode, antialias)
LATENT_MODES: dict[str, tuple[str, bool]] = {
    "Latent": ("bilinear", False),
    "Latent (antialiased)": ("bilinear", True),
    "Latent (bicubic)": ("bicubic", False),
    "Latent (bicubic antialiased)": ("bicubic", True),
    "Latent (nearest)": ("nearest", False),
    "Latent (nearest-exact)": ("nearest-exact", False),
}
DEFAULT_UPSCALER = "Latent"
DEFAULT_DENOISE = 0.7


@dataclasses.dataclass
class HiresPlan:
    width: int
    height: int
    upscaler: str
    steps: int           # 0 = the first pass's steps
    denoising_strength: float
    sampler: str
    scheduler: str
    cfg_scale: float
    prompt: str
    negative_prompt: str
    scale: float | None

    @property
    def latent(self) -> bool:
        return self.upscaler in LATENT_MODES


def plan(params: Params, multiple: int) -> HiresPlan:
    """The effective hires settings for a txt2img request (errors name `hires.<field>`)."""
    h = dict(params.hires or {})
    scale = h.get("scale")
    rx, ry = h.get("resize_x"), h.get("resize_y")
    if scale is not None and (rx or ry):
        raise ValidationError("give either hires.scale or hires.resize_x/resize_y, not both", field="hires.scale")
    if rx or ry:
        rx = rx or round(params.width * ry / params.height)
        ry = ry or round(params.height * rx / params.width)
        width, height = rx, ry
    else:
        scale = 2.0 if scale is None else float(scale)
        width, height = int(params.width * scale), int(params.height * scale)
    width, height = width - width % multiple, height - height % multiple
    if width < params.width or height < params.height:
        raise ValidationError(f"hires size {width}x{height} is smaller than the first pass "
                              f"{params.width}x{params.height}", field="hires.resize_x" if rx else "hires.scale")
    steps = int(h.get("steps") or 0) or params.steps
    denoise = float(h.get("denoising_strength", DEFAULT_DENOISE))
    if int(steps * denoise) < 1:
        raise ValidationError(f"hires steps x denoising_strength must give at least one step (got {steps} x {denoise})",
                              field="hires.denoising_strength", allowed=f">= {1 / steps:.3f} for {steps} steps")
    return HiresPlan(width=width, height=height, upscaler=str(h.get("upscaler") or DEFAULT_UPSCALER),
                     steps=int(h.get("steps") or 0), denoising_strength=float(h.get("denoising_strength",
                                                                                    DEFAULT_DENOISE)),
                     sampler=h.get("sampler") or params.sampler, scheduler=h.get("scheduler") or params.scheduler,
                     cfg_scale=float(h["cfg_scale"]) if h.get("cfg_scale") is not None else params.cfg_scale,
                     prompt=h.get("prompt") or params.prompt,
                     negative_prompt=h.get("negative_prompt") if h.get("negative_prompt") is not None
                     else params.negative_prompt, scale=scale)


def second_pass_params(params: Params, hp: HiresPlan) -> Params:
    return dataclasses.replace(params, task=Task.IMG2IMG, width=hp.width, height=hp.height,
                               steps=hp.steps or params.steps, denoising_strength=hp.denoising_strength,
                               sampler=hp.sampler, scheduler=hp.scheduler, cfg_scale=hp.cfg_scale,
                               prompt=hp.prompt, negative_prompt=hp.negative_prompt, hires=None)


def planned_steps(params: Params, hp: HiresPlan) -> int:
    steps = hp.steps or params.steps
    return max(1, min(int(steps * hp.denoising_strength), steps))


def upscale_latents(latents: torch.Tensor, hp: HiresPlan, vae_scale: int) -> torch.Tensor:
    mode, antialias = LATENT_MODES[hp.upscaler]
    size = (hp.height // vae_scale, hp.width // vae_scale)
    kw: dict[str, Any] = {"antialias": antialias} if mode in ("bilinear", "bicubic") else {}
    return F.interpolate(latents.float(), size=size, mode=mode, **kw).to(latents.dtype)


def run_two_passes(engine: Any, pipe: Any, params: Params, kwargs: dict[str, Any], seeds: list[int],
                   on_step: Callable[..., Any], generators: Callable[[list[int]], Any],
                   hp: HiresPlan, info: dict[str, Any], warnings: list[str]) -> Any:
    """First pass -> upscale -> img2img pass; returns the img2img pipeline's output."""
    flow = getattr(engine, "prediction", None) == Prediction.FLOW
    upscaler = hp.upscaler
    if hp.latent and flow:
        warnings.append(f"hires upscaler {hp.upscaler!r}: FLUX latents are packed, so the upscale was done in "
                        "pixel space with Lanczos")
        upscaler = "Lanczos"
    latent = hp.latent and not flow
    from .prompt_clip import PLAN_KEY, call_pipeline

    first = call_pipeline(pipe, {**kwargs, "output_type": "latent" if latent else "pil"}, generator=generators(seeds),
                          callback_on_step_end=on_step)
    if latent:
        vae_scale = int(getattr(pipe, "vae_scale_factor", 8))
        image: Any = upscale_latents(first.images, hp, vae_scale)
    else:
        from .upscale import load_named_upscaler
        from .upscale_ops import upscale_image

        model = load_named_upscaler(getattr(engine, "provider", None), upscaler, engine.device, field="hires.upscaler")
        image = [upscale_image(im, model, resize_to=(hp.width, hp.height)) for im in first.images]
    p2 = second_pass_params(params, hp)
    pipe2 = engine.pipeline(Task.IMG2IMG)
    control = getattr(engine, "_control", None)  # ControlNet units steer the hires pass too, maps at its size
    control_kw = control.second_kwargs(hp.width, hp.height) if control is not None and control.second_kwargs else {}
    choice = engine.sampler(p2)
    pipe2.scheduler = choice.scheduler
    warnings.extend(f"hires: {w}" for w in choice.warnings)
    info["hires"] = {"width": hp.width, "height": hp.height, "upscaler": upscaler, "steps": p2.steps,
                     "denoising_strength": hp.denoising_strength, "sampler_effective": choice.sampler_effective,
                     "scheduler_effective": choice.scheduler_effective, "cfg_scale": hp.cfg_scale,
                     "first_pass": [params.width, params.height]}
    from .controlnet import CALL_KEYS

    kw2 = dict(kwargs)
    for key in ("width", "height", "output_type", *CALL_KEYS):
        kw2.pop(key, None)
    batch = len(seeds)
    kw2.update(image=image if not isinstance(image, list) or batch > 1 else image[0],
               strength=hp.denoising_strength, num_inference_steps=p2.steps)
    if _takes_size(pipe2):
        # FLUX img2img resizes its input to `height`/`width` (default: the model's 1024 px), not to the image's size
        kw2.update(width=hp.width, height=hp.height)
    if "guidance_scale" in kw2 and getattr(engine, "key", None) is not None and not flow:
        kw2["guidance_scale"] = hp.cfg_scale
    if PLAN_KEY in kw2:  # A1111 conditioning: the hires prompts, scheduled over the hires pass
        for key in ("prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds",
                    "negative_pooled_prompt_embeds", PLAN_KEY):
            kw2.pop(key, None)
        kw2.update(engine.prompt_kwargs(p2, pipe2, batch, base_steps=params.steps, field_prefix="hires."))
    elif "prompt" in kw2:
        kw2["prompt"] = hp.prompt if batch == 1 else [hp.prompt] * batch
    if PLAN_KEY not in kw2 and (kw2.get("negative_prompt") is not None or hp.negative_prompt):
        neg = hp.negative_prompt or None
        kw2["negative_prompt"] = neg if batch == 1 or neg is None else [neg] * batch
    if control_kw:
        from .controlnet import fit_kwargs

        warnings.extend(w for w in fit_kwargs(pipe2, kw2, control_kw) if w not in warnings)
    if hasattr(pipe2.scheduler, "noise_sampler_seed"):
        pipe2.scheduler.noise_sampler_seed = seeds[0] if batch == 1 else list(seeds)
    return call_pipeline(pipe2, kw2, generator=generators(seeds), callback_on_step_end=on_step)


def _takes_size(pipe: Any) -> bool:
    """Whether a pipeline's __call__ has `height` and `width` (FLUX img2img does; SD/SDXL img2img take the image's)."""
    try:
        params = inspect.signature(type(pipe).__call__).parameters
    except (TypeError, ValueError):
        return False
    return "height" in params and "width" in params


def infotext_fields(hp: HiresPlan, upscaler: str) -> dict[str, Any]:
    """A1111's hires labels in our native infotext keys (+ extras for what A1111 writes only when it differs)."""
    native: dict[str, Any] = {"hires_upscaler": upscaler, "denoising_strength": hp.denoising_strength}
    if hp.scale is not None:
        native["hires_scale"] = hp.scale
    if hp.steps:
        native["hires_steps"] = hp.steps
    return native
