"""FLUX.2 engines over Diffusers' Flux2Pipeline (dev: Mistral-3 text encoder, embedded guidance) and
Flux2KleinPipeline (Klein 4B / 9B: Qwen3 text encoder, real CFG unless the model is step-distilled).

Both take reference images: the pipeline encodes each one with the VAE and appends its tokens to the sequence the
transformer attends to, so `txt2img` with the request key `images` (one or several pictures) is FLUX.2's editing.
The references keep their own size (the pipeline caps each at 1024x1024 pixels and crops it to a multiple of 16);
the output size is the request's `width` x `height`.

`cfg_scale` has A1111 meaning (1 = off). FLUX.2 dev is guidance-distilled: its `guidance_scale` is an embedding,
set here by `distilled_cfg_scale` (default 4.0, the model card's), and it has no negative prompt. Klein's base
models run real CFG (`cfg_scale` > 1, with the negative prompt); the step-distilled Klein models (4 steps) run
without it — that is the `turbo` mode, applied only where the model says `is_distilled`.
"""
from __future__ import annotations

from typing import Any

from diffusers import Flux2KleinPipeline, Flux2Pipeline

from sdcodex.core.engine import EngineOutput
from sdcodex.core.enums import EngineKey, Mode, Task
from sdcodex.core.events import EventSink
from sdcodex.core.params import Params
from sdcodex.core.registry import ENGINES

from .base import register_pipelines
from .flux import FlowImageEngine

FLUX2_DEV_GUIDANCE = 4.0   # black-forest-labs/FLUX.2-dev model card / Diffusers example: guidance_scale=4
MAX_REFERENCES = 10        # black-forest-labs/FLUX.2-dev model card: up to 10 reference images
# Flux2ImageProcessor.check_image_input: each reference at least 64 px a side, aspect ratio at most 8:1
REFERENCE_MIN_SIDE, REFERENCE_MAX_RATIO = 64, 8


class Flux2Base(FlowImageEngine):
    """What dev and Klein share: reference images."""

    tasks = frozenset({Task.TXT2IMG})
    max_images = MAX_REFERENCES
    reference_min_side, reference_max_ratio = REFERENCE_MIN_SIDE, REFERENCE_MAX_RATIO
    extra_keys = frozenset({"images"})  # reference images: the UI shows their field only on engines that take them

    def base_kwargs(self, params: Params, batch_size: int, guidance: float) -> dict[str, Any]:
        kw = self.image_kwargs(params, batch_size, guidance_scale=guidance)
        if params.images:
            kw["image"] = [image.convert("RGB") for image in params.images]
        return kw

    def run(self, params: Params, events: EventSink) -> EngineOutput:
        out = super().run(params, events)
        out.info["reference_images"] = len(params.images or [])
        return out


@ENGINES.register("flux2", "flux.2", "flux2-dev", "flux.2-dev")
class Flux2Engine(Flux2Base):
    key = EngineKey.FLUX2
    label = "FLUX.2 dev"
    # black-forest-labs/FLUX.2-dev model card: 1024x1024, 50 steps, guidance_scale 4 (embedded)
    defaults = {"width": 1024, "height": 1024, "steps": 50, "cfg_scale": 1.0}
    pipelines = {Task.TXT2IMG: Flux2Pipeline}

    def distilled_guidance(self, params: Params) -> float:
        return params.distilled_cfg_scale if params.distilled_cfg_scale is not None else FLUX2_DEV_GUIDANCE

    def validate(self, params: Params) -> list[str]:
        warnings = super().validate(params)
        if params.cfg_scale > 1.0:
            warnings.append(f"cfg_scale {params.cfg_scale} is ignored: FLUX.2 dev is guidance-distilled "
                            "(set distilled_cfg_scale)")
        if params.negative_prompt:
            warnings.append("negative_prompt is ignored: FLUX.2 dev takes no negative prompt")
        return warnings

    def call_kwargs(self, params: Params, pipe: Any, batch_size: int) -> dict[str, Any]:
        return self.base_kwargs(params, batch_size, self.distilled_guidance(params))

    def run(self, params: Params, events: EventSink) -> EngineOutput:
        out = super().run(params, events)
        out.info["distilled_cfg_scale"] = self.distilled_guidance(params)
        out.info.setdefault("infotext_extra", {})["Distilled CFG Scale"] = out.info["distilled_cfg_scale"]
        return out


@ENGINES.register("flux2_klein", "flux2-klein", "flux.2-klein", "klein")
class Flux2KleinEngine(Flux2Base):
    key = EngineKey.FLUX2_KLEIN
    label = "FLUX.2 Klein"
    modes = frozenset({Mode.NORMAL, Mode.TURBO})
    # black-forest-labs/FLUX.2-klein-base-4B/9B (Diffusers example): 50 steps, guidance_scale 4.0
    defaults = {"width": 1024, "height": 1024, "steps": 50, "cfg_scale": 4.0}
    pipelines = {Task.TXT2IMG: Flux2KleinPipeline}

    @property
    def step_distilled(self) -> bool:
        variant = getattr(self.model, "variant", {}) or {}
        return bool(variant.get("step_distilled", self.model.components.get("is_distilled", False)))

    def cfg_on(self, params: Params) -> bool:
        return params.cfg_scale > 1.0 and not self.step_distilled

    def validate(self, params: Params) -> list[str]:
        warnings = super().validate(params)
        if self.step_distilled and params.cfg_scale > 1.0:
            warnings.append(f"cfg_scale {params.cfg_scale} is ignored: this Klein model is step-distilled "
                            "(runs without CFG)")
        elif params.negative_prompt and not self.cfg_on(params):
            warnings.append("negative_prompt is ignored: cfg_scale 1 runs FLUX.2 Klein without CFG")
        return warnings

    def call_kwargs(self, params: Params, pipe: Any, batch_size: int) -> dict[str, Any]:
        kw = self.base_kwargs(params, batch_size, params.cfg_scale)
        if self.cfg_on(params) and params.negative_prompt:
            # the pipeline encodes "" as the negative; a written negative prompt goes in as its embeddings
            embeds, _ = pipe.encode_prompt(prompt=[params.negative_prompt] * batch_size,
                                           device=pipe._execution_device)
            kw["negative_prompt_embeds"] = embeds
        return kw

    def run(self, params: Params, events: EventSink) -> EngineOutput:
        out = super().run(params, events)
        out.info["step_distilled"] = self.step_distilled
        return out


register_pipelines(Flux2Engine.key.value, Flux2Engine.pipelines)
register_pipelines(Flux2KleinEngine.key.value, Flux2KleinEngine.pipelines)
__all__ = ["Flux2Engine", "Flux2KleinEngine", "FLUX2_DEV_GUIDANCE", "MAX_REFERENCES"]
