"""Stable Diffusion 3.5 engine (Large, Large Turbo, Medium; SD3 Medium loads the same way): an MMDiT over CLIP-L,
CLIP-G and T5-XXL text encoders, flow matching with a fixed shift (FlowMatch Euler, shift 3.0). txt2img, img2img
and inpaint; the Turbo model runs with cfg off in a few steps (mode `turbo`)."""
from __future__ import annotations

from diffusers import (StableDiffusion3ControlNetPipeline, StableDiffusion3Img2ImgPipeline,
                       StableDiffusion3InpaintPipeline, StableDiffusion3Pipeline)

from sdcodex.core.enums import EngineKey, Mode, Task
from sdcodex.core.registry import ENGINES

from .base import register_pipelines
from .controlnet import seeded_global_rng
from .flux import FlowImageEngine


@ENGINES.register("sd3", "sd35", "sd3.5", "sd3_5", "stable-diffusion-3.5", "sd35_large", "sd35_medium")
class SD3Engine(FlowImageEngine):
    key = EngineKey.SD3
    label = "Stable Diffusion 3.5"
    tasks = frozenset({Task.TXT2IMG, Task.IMG2IMG, Task.INPAINT})
    modes = frozenset({Mode.NORMAL, Mode.TURBO})
    # stabilityai/stable-diffusion-3.5-large model card: 1024x1024, 28 steps, guidance 3.5
    # (3.5 Medium's card: 40 steps, guidance 4.5; 3.5 Large Turbo: 4 steps, guidance 0 — the `turbo` presets)
    defaults = {"width": 1024, "height": 1024, "steps": 28, "cfg_scale": 3.5}
    pipelines = {Task.TXT2IMG: StableDiffusion3Pipeline, Task.IMG2IMG: StableDiffusion3Img2ImgPipeline,
                 Task.INPAINT: StableDiffusion3InpaintPipeline}
    text_encoder_names = ("text_encoder", "text_encoder_2", "text_encoder_3")
    pipeline_passes_sigmas = False  # the SD3 pipelines pass timesteps only
    # SD3 ControlNets (SD3ControlNetModel folders: InstantX, Stability's SD3.5 Diffusers repos), txt2img only:
    # Diffusers' SD3 ControlNet inpaint pipeline is for the Alimama inpaint ControlNet alone
    # (its control image's VAE latents come from torch's global RNG: seeded from the request's seed per call)
    control_pipelines = {Task.TXT2IMG: seeded_global_rng(StableDiffusion3ControlNetPipeline)}
    supports_controls = True


register_pipelines(SD3Engine.key.value, SD3Engine.pipelines)
