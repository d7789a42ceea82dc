"""FLUX.1 engine (txt2img, img2img, inpaint) and the helpers every flow-matching engine shares: the flow
sampler rules (shift override, samplers the pipeline cannot drive) and turning any pipeline output into PIL frames. Dev-type models (guidance embedding) take
`distilled_cfg_scale`; schnell-type models (no guidance embedding) run with cfg off in a few steps.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import numpy as np
import torch
from diffusers import (FluxControlNetImg2ImgPipeline, FluxControlNetInpaintPipeline, FluxControlNetPipeline,
                       FluxImg2ImgPipeline, FluxInpaintPipeline, FluxPipeline)
from PIL import Image

from sdcodex.core.engine import EngineOutput
from sdcodex.core.enums import EngineKey, Mode, Prediction, Task
from sdcodex.core.errors import UnsupportedSamplerError
from sdcodex.core.events import EventSink
from sdcodex.core.params import Params
from sdcodex.core.registry import ENGINES
from sdcodex.core.samplers import create_sampler
from sdcodex.core.sampler_table import SAMPLERS

from .base import DiffusersEngine, build_pipeline, prepare_mask, register_pipelines, resize_image

FLUX_DEV_GUIDANCE = 3.5      # black-forest-labs/FLUX.1-dev model card: guidance_scale=3.5
SCHNELL_MAX_STEPS = 4        # black-forest-labs/FLUX.1-schnell model card: 1-4 steps, guidance 0


# ------------------------------------------------------------------------------------- shared flow helpers
def to_pil_frames(video: Any) -> list[Image.Image]:
    """One video (list of PIL, HWC/FHWC numpy in [0,1], or FCHW tensor in [0,1]) as a list of RGB PIL frames."""
    if isinstance(video, (list, tuple)) and video and isinstance(video[0], Image.Image):
        return [f.convert("RGB") for f in video]
    if isinstance(video, torch.Tensor):
        video = video.detach().float().cpu()
        if video.ndim == 4 and video.shape[1] in (1, 3):
            video = video.permute(0, 2, 3, 1)
        video = video.numpy()
    array = np.asarray(video, dtype=np.float32)
    if array.ndim == 3:
        array = array[None]
    array = (np.clip(array, 0.0, 1.0) * 255).round().astype(np.uint8)
    return [Image.fromarray(frame).convert("RGB") for frame in array]


def shifted_config(config: dict[str, Any], flow_shift: float | None) -> dict[str, Any]:
    """The model's scheduler config with the request's flow shift written where this class keeps it."""
    config = dict(config)
    if flow_shift is None:
        return config
    keys = [k for k in ("shift", "flow_shift") if k in config]
    for key in keys or ["shift"]:
        config[key] = float(flow_shift)
    return config


def pinned_shift_config(config: dict[str, Any], flow_shift: float) -> dict[str, Any]:
    """A dynamic-shifting scheduler config whose shift no longer depends on the image size: mu = ln(shift) at every
    sequence length (base_shift = max_shift = ln(shift), exponential time shift, no terminal stretch), which gives
    sigma' = shift*s / (1 + (shift-1)*s). These are the scheduler settings lightx2v publishes for Qwen-Image-Lightning
    (ModelTC/Qwen-Image-Lightning README: "We use shift=3 in distillation")."""
    config = dict(config)
    config.update(base_shift=math.log(float(flow_shift)), max_shift=math.log(float(flow_shift)), shift=1.0,
                  time_shift_type="exponential", shift_terminal=None)
    return config


def flow_pipeline_samplers() -> list[str]:
    """UI samplers with a flow-matching form (the ones a flow engine may offer)."""
    return ["Automatic"] + [s.name for s in SAMPLERS if s.flow is not None]


class FlowEngineMixin:
    """Sampler, prompt and output handling shared by the flow families (mixed into DiffusersEngine)."""

    #: the pipeline passes custom `sigmas` to set_timesteps (FLUX, HunyuanVideo): samplers must accept them
    pipeline_passes_sigmas: ClassVar[bool] = False
    #: on a model that shifts by image size, `flow_shift` pins the shift at every size (pinned_shift_config) instead
    #: of being ignored (Qwen-Image: its Lightning distillations run that way)
    flow_shift_pins_mu: ClassVar[bool] = False
    #: how A1111 prompt syntax reaches the text encoder (sdcodex.engines.prompt_t5): "flux" (weighted T5 and
    #: CLIP-L pooled), "chroma" (weighted T5 with its mask), "wan" (weighted UMT5) or "llm" (syntax removed,
    #: weights not applied)
    prompt_family: ClassVar[str] = "llm"
    model: Any
    key: Any

    def sampler(self, params: Params) -> Any:
        base = shifted_config(dict(self.model.scheduler_config), params.flow_shift)
        pinned = params.flow_shift is not None and bool(base.get("use_dynamic_shifting")) and self.flow_shift_pins_mu
        if pinned:
            base = pinned_shift_config(base, params.flow_shift)
        choice = create_sampler(params.sampler, params.scheduler, self.family_for_sampler or self.key.value,
                                base, Prediction.FLOW, mode=params.mode)
        if self.pipeline_passes_sigmas and not (choice.accepts_sigmas or choice.config.get("use_flow_sigmas")):
            allowed = [n for n in flow_pipeline_samplers() if n == "Automatic" or self._drives_sigmas(n, base)]
            raise UnsupportedSamplerError(
                f"sampler {choice.sampler_effective} ({choice.class_name}) cannot take the custom sigmas the "
                f"{self.key.value} pipeline sets", field="sampler", allowed=allowed)
        if params.task in (Task.IMG2IMG, Task.INPAINT) and not hasattr(choice.scheduler, "scale_noise"):
            allowed = [n for n in flow_pipeline_samplers() if n == "Automatic" or self._noises_images(n, base)]
            raise UnsupportedSamplerError(
                f"sampler {choice.sampler_effective} ({choice.class_name}) cannot noise an input image the way the "
                f"{self.key.value} {params.task.value} pipeline does (no scale_noise)", field="sampler",
                allowed=allowed)
        if params.flow_shift is not None and base.get("use_dynamic_shifting") and not pinned:
            choice.warnings.append("flow_shift is ignored: this model shifts its schedule by image size "
                                   "(use_dynamic_shifting)")
        return choice

    def _noises_images(self, name: str, base: dict[str, Any]) -> bool:
        try:
            choice = create_sampler(name, None, self.key.value, base, Prediction.FLOW)
        except Exception:  # noqa: BLE001 - a sampler the policy refuses is simply not offered
            return False
        return hasattr(choice.scheduler, "scale_noise")

    def _drives_sigmas(self, name: str, base: dict[str, Any]) -> bool:
        try:
            choice = create_sampler(name, None, self.key.value, base, Prediction.FLOW)
        except Exception:  # noqa: BLE001 - a sampler the policy refuses is simply not offered
            return False
        return bool(choice.accepts_sigmas or choice.config.get("use_flow_sigmas"))

    def apply_extras(self, params: Params, out: EngineOutput, stack: Any) -> Params:
        """For encoders that take no weights ("llm"), the prompts (hires ones too) lose the syntax here."""
        params = super().apply_extras(params, out, stack)  # type: ignore[misc]
        if self.prompt_family != "llm":
            return params
        from .prompt_t5 import syntax_free_prompt

        def clean(text: str | None, name: str, steps: int) -> str:
            return syntax_free_prompt(text or "", params.emphasis.value, steps, name, self.key.value, out.warnings)

        hires = getattr(self, "_hires", None)
        if hires is not None:
            steps = hires.steps or params.steps
            self._hires = dataclasses.replace(hires, prompt=clean(hires.prompt, "hires.prompt", steps),
                                              negative_prompt=clean(hires.negative_prompt, "hires.negative_prompt",
                                                                    steps))
        return dataclasses.replace(params, prompt=clean(params.prompt, "prompt", params.steps),
                                   negative_prompt=clean(params.negative_prompt, "negative_prompt", params.steps))

    def generate(self, pipe: Any, params: Params, kwargs: dict[str, Any], seeds: list[int], on_step: Any,
                 out: EngineOutput) -> Any:
        """One batch with the prompts read as A1111 prompt syntax (see sdcodex.engines.prompt_t5)."""
        from .prompt_t5 import PromptPass, conditioning

        if self.prompt_family == "llm":
            return super().generate(pipe, params, kwargs, seeds, on_step, out)  # type: ignore[misc]
        passes = [(pipe, PromptPass(params.prompt, params.negative_prompt or "", params.steps))]
        hires = getattr(self, "_hires", None)
        if hires is not None:
            from .hires import second_pass_params

            second = second_pass_params(params, hires)
            passes.append((self.pipeline(Task.IMG2IMG),  # type: ignore[attr-defined]
                           PromptPass(second.prompt, second.negative_prompt or "", params.steps, second.steps)))
        with conditioning(self.prompt_family, params.emphasis.value, passes, out.warnings) as cond:
            kwargs = {**kwargs, "callback_on_step_end_tensor_inputs": cond.tensor_inputs}
            return super().generate(pipe, params, kwargs, seeds, cond.wrap(on_step), out)  # type: ignore[misc]

    def run(self, params: Params, events: EventSink) -> EngineOutput:
        out = super().run(params, events)  # type: ignore[misc]
        out.info.pop("warnings", None)  # the sampler's warnings are in out.warnings; info["warnings"] is the job's
        return out


def collect_videos(result: Any, out: EngineOutput, seeds: list[int]) -> None:
    """Pipeline output `.frames` (one entry per video) -> out.videos as PIL frame lists."""
    for video in result.frames:
        out.videos.append(to_pil_frames(video))
    out.seeds.extend(seeds)


def per_image(text: str, batch_size: int) -> Any:
    """A prompt as a pipeline takes it for `batch_size` images of one call."""
    return text if batch_size == 1 else [text] * batch_size


class FlowImageEngine(FlowEngineMixin, DiffusersEngine):
    """What the flow-matching image families declare alike (each engine states only what differs) and the
    pipeline arguments they all build the same way."""

    prediction = Prediction.FLOW
    default_sampler = "Euler"
    default_scheduler = "Automatic"
    size_multiple = 16          # 8x VAE and 2x2 latent packing (or patches)
    min_size = 64
    max_size = 2048
    text_encoder_names = ("text_encoder",)
    pipeline_passes_sigmas = True  # the pipelines set their own sigmas (linspace(1, 1/n, n)), shifted

    def image_kwargs(self, params: Params, batch_size: int, **guidance: Any) -> dict[str, Any]:
        """Prompt, steps, size and the given guidance arguments; for img2img and inpaint the resized input image
        and the strength, for inpaint the mask and the full-resolution crop padding."""
        kw: dict[str, Any] = {"prompt": per_image(params.prompt, batch_size), "num_inference_steps": params.steps,
                              "width": params.width, "height": params.height, "output_type": "pil", **guidance}
        if params.task in (Task.IMG2IMG, Task.INPAINT):
            kw.update(image=resize_image(params.init_image, params.width, params.height, params.resize_mode),
                      strength=params.denoising_strength)
        if params.task is Task.INPAINT:
            kw["mask_image"] = prepare_mask(params.mask, params)
            if params.inpaint_full_res:
                kw["padding_mask_crop"] = params.inpaint_full_res_padding
        return kw

    def negative_kwargs(self, params: Params, batch_size: int, *, cfg: bool, blank: str | None = None
                        ) -> dict[str, Any]:
        """`negative_prompt` when the run uses CFG and there is one (or `blank` stands in for none)."""
        negative = params.negative_prompt or blank
        return {"negative_prompt": per_image(negative, batch_size)} if cfg and negative else {}

    def warn_negative_without_cfg(self, params: Params, warnings: list[str]) -> list[str]:
        if params.cfg_scale <= 1.0 and params.negative_prompt:
            warnings.append(f"negative_prompt is ignored: cfg_scale 1 runs {self.label} without CFG")
        return warnings


# ------------------------------------------------------------------------------------------------ FLUX
@ENGINES.register("flux", "flux1", "flux.1", "flux-dev", "flux-schnell")
class FluxEngine(FlowImageEngine):
    key = EngineKey.FLUX
    label = "FLUX.1"
    tasks = frozenset({Task.TXT2IMG, Task.IMG2IMG, Task.INPAINT})
    modes = frozenset({Mode.NORMAL, Mode.TURBO})
    defaults = {"width": 1024, "height": 1024, "steps": 28, "cfg_scale": 1.0}
    pipelines = {Task.TXT2IMG: FluxPipeline, Task.IMG2IMG: FluxImg2ImgPipeline, Task.INPAINT: FluxInpaintPipeline}
    text_encoder_names = ("text_encoder", "text_encoder_2")
    control_pipelines = {Task.TXT2IMG: FluxControlNetPipeline, Task.IMG2IMG: FluxControlNetImg2ImgPipeline,
                         Task.INPAINT: FluxControlNetInpaintPipeline}
    union_pipelines = control_pipelines  # a FLUX Union model takes the same pipelines with a control_mode
    supports_controls = True
    supports_ip_adapter = True  # XLabs' FLUX IP-Adapter through Diffusers' FluxIPAdapterMixin (engines/ip_adapter.py)
    prompt_family = "flux"

    @property
    def guidance_embed(self) -> bool:
        variant = getattr(self.model, "variant", {}) or {}
        if "guidance_embed" in variant:
            return bool(variant["guidance_embed"])
        return bool(self.model.components["transformer"].config.get("guidance_embeds", False))

    def validate(self, params: Params) -> list[str]:
        warnings = super().validate(params)
        if self.guidance_embed:
            return warnings
        if params.distilled_cfg_scale is not None:
            warnings.append("distilled_cfg_scale is ignored: this is a schnell-type FLUX model (no guidance "
                            "embedding)")
        if params.cfg_scale > 1.0:
            warnings.append(f"cfg_scale {params.cfg_scale} ignored: schnell-type FLUX models run with cfg off")
        if params.steps > SCHNELL_MAX_STEPS:
            warnings.append(f"schnell-type FLUX models are distilled for 1-{SCHNELL_MAX_STEPS} steps; "
                            f"{params.steps} steps were asked (mode 'turbo' uses 4)")
        return warnings

    def call_kwargs(self, params: Params, pipe: Any, batch_size: int) -> dict[str, Any]:
        if not self.guidance_embed:
            return {**self.image_kwargs(params, batch_size, guidance_scale=0.0), **self._extra_call_kwargs}
        kw = self.image_kwargs(params, batch_size, guidance_scale=(
            params.distilled_cfg_scale if params.distilled_cfg_scale is not None else FLUX_DEV_GUIDANCE))
        negative = self.negative_kwargs(params, batch_size, cfg=params.cfg_scale > 1.0)
        if negative:
            kw.update(true_cfg_scale=params.cfg_scale, **negative)
        kw.update(self._extra_call_kwargs)  # IP-Adapter's ip_adapter_image
        return kw

    def run(self, params: Params, events: EventSink) -> EngineOutput:
        out = super().run(params, events)
        out.info["guidance_embed"] = self.guidance_embed
        if self.guidance_embed:
            out.info["distilled_cfg_scale"] = (params.distilled_cfg_scale if params.distilled_cfg_scale is not None
                                               else FLUX_DEV_GUIDANCE)
            out.info.setdefault("infotext_extra", {})["Distilled CFG Scale"] = out.info["distilled_cfg_scale"]
        return out


register_pipelines(FluxEngine.key.value, FluxEngine.pipelines)
__all__ = ["FluxEngine", "FlowEngineMixin", "FlowImageEngine", "per_image", "to_pil_frames", "shifted_config",
           "pinned_shift_config", "collect_videos", "build_pipeline"]
