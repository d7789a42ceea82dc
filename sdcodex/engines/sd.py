"""Stable Diffusion 1.5, 2.x and SDXL engines: declarations over the shared Diffusers base."""
from __future__ import annotations

from diffusers import (
    StableDiffusionAdapterPipeline,
    StableDiffusionControlNetImg2ImgPipeline,
    StableDiffusionControlNetInpaintPipeline,
    StableDiffusionControlNetPipeline,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionInpaintPipeline,
    StableDiffusionPipeline,
    StableDiffusionXLControlNetImg2ImgPipeline,
    StableDiffusionXLControlNetInpaintPipeline,
    StableDiffusionXLControlNetPipeline,
    StableDiffusionXLControlNetUnionImg2ImgPipeline,
    StableDiffusionXLControlNetUnionInpaintPipeline,
    StableDiffusionXLControlNetUnionPipeline,
    StableDiffusionXLImg2ImgPipeline,
    StableDiffusionXLInpaintPipeline,
    StableDiffusionXLAdapterPipeline,
    StableDiffusionXLPipeline,
)

from sdcodex.core.enums import EngineKey, Mode, Task
from sdcodex.core.errors import ValidationError
from sdcodex.core.params import Params
from sdcodex.core.registry import ENGINES

from .base import DiffusersEngine, register_pipelines
from .controlnet import step_callback_bridge

_IMAGE_TASKS = frozenset({Task.TXT2IMG, Task.IMG2IMG, Task.INPAINT})


class _StableDiffusion(DiffusersEngine):
    tasks = _IMAGE_TASKS
    modes = frozenset(Mode)
    default_sampler = "DPM++ 2M"
    default_scheduler = "Karras"
    size_multiple = 8
    supports_embeddings = True
    supports_controls = True
    supports_ip_adapter = True

    def validate(self, params: Params) -> list[str]:
        warnings = super().validate(params)
        variant = getattr(self.model, "variant", {}) or {}
        if variant.get("inpaint") and params.task is not Task.INPAINT:
            raise ValidationError(f"model {self.model.name!r} is an inpainting model (9-channel UNet); "
                                  f"use it for task 'inpaint'", field="task", allowed=["inpaint"])
        if params.clip_skip > self.max_clip_skip:
            raise ValidationError(f"must be at most {self.max_clip_skip} for {self.key.value}", field="clip_skip")
        return warnings

    max_clip_skip = 12


@ENGINES.register("sd15", "sd1.5", "sd1", "stable-diffusion-1.5")
class SD15Engine(_StableDiffusion):
    key = EngineKey.SD15
    clip_conditioning = "sd15"
    label = "Stable Diffusion 1.5"
    defaults = {"width": 512, "height": 512, "steps": 20, "cfg_scale": 7.0}
    pipelines = {
        Task.TXT2IMG: StableDiffusionPipeline,
        Task.IMG2IMG: StableDiffusionImg2ImgPipeline,
        Task.INPAINT: StableDiffusionInpaintPipeline,
    }
    control_pipelines = {
        Task.TXT2IMG: StableDiffusionControlNetPipeline,
        Task.IMG2IMG: StableDiffusionControlNetImg2ImgPipeline,
        Task.INPAINT: StableDiffusionControlNetInpaintPipeline,
    }
    adapter_pipelines = {Task.TXT2IMG: step_callback_bridge(StableDiffusionAdapterPipeline)}


@ENGINES.register("sd2", "sd2.1", "sd21", "sd2.0", "stable-diffusion-2")
class SD2Engine(SD15Engine):
    """SD 2.0/2.1: SD1.5's pipelines with an OpenCLIP-H text encoder (its penultimate layer) and linear attention
    projections. 768-v (v-prediction) is the flagship, hence 768 px; the 512 base (epsilon) runs here too — the
    model's own prediction type picks the sampler variant."""

    key = EngineKey.SD2
    label = "Stable Diffusion 2.x"
    modes = frozenset({Mode.NORMAL})  # the LCM / Lightning / Turbo presets and LoRAs are SD1.5's and SDXL's
    defaults = {"width": 768, "height": 768, "steps": 20, "cfg_scale": 7.0}
    supports_controls = True  # SD 2.x ControlNets (models/detect_rules.py: controlnet_sd2) on SD1.5's pipelines
    adapter_pipelines: dict[Task, type] = {}  # no T2I-Adapter exists for SD 2.x
    supports_ip_adapter = False  # no IP-Adapter exists for SD2
    max_clip_skip = 23  # the text encoder keeps 23 of OpenCLIP-H's 24 layers


@ENGINES.register("sdxl", "sd_xl", "stable-diffusion-xl")
class SDXLEngine(_StableDiffusion):
    key = EngineKey.SDXL
    clip_conditioning = "sdxl"
    label = "Stable Diffusion XL"
    defaults = {"width": 1024, "height": 1024, "steps": 25, "cfg_scale": 6.0}
    pipelines = {
        Task.TXT2IMG: StableDiffusionXLPipeline,
        Task.IMG2IMG: StableDiffusionXLImg2ImgPipeline,
        Task.INPAINT: StableDiffusionXLInpaintPipeline,
    }
    control_pipelines = {
        Task.TXT2IMG: StableDiffusionXLControlNetPipeline,
        Task.IMG2IMG: StableDiffusionXLControlNetImg2ImgPipeline,
        Task.INPAINT: StableDiffusionXLControlNetInpaintPipeline,
    }
    adapter_pipelines = {Task.TXT2IMG: step_callback_bridge(StableDiffusionXLAdapterPipeline)}
    union_pipelines = {
        Task.TXT2IMG: StableDiffusionXLControlNetUnionPipeline,
        Task.IMG2IMG: StableDiffusionXLControlNetUnionImg2ImgPipeline,
        Task.INPAINT: StableDiffusionXLControlNetUnionInpaintPipeline,
    }


for _cls in (SD15Engine, SD2Engine, SDXLEngine):
    register_pipelines(_cls.key.value, _cls.pipelines)
