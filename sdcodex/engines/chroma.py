"""Chroma engine (txt2img, img2img) over Diffusers' ChromaPipeline / ChromaImg2ImgPipeline.

Chroma is FLUX.1-schnell re-trained without the per-block modulation (a small "distilled guidance" network makes
it) and with real CFG: `cfg_scale` goes to the pipeline's `guidance_scale` unchanged (CFG runs when it is > 1, as
in A1111), and the negative prompt matters. One T5-XXL text encoder, FLUX.1's VAE.
"""
from __future__ import annotations

from typing import Any

from diffusers import ChromaImg2ImgPipeline, ChromaPipeline

from sdcodex.core.enums import EngineKey, Prediction, Task
from sdcodex.core.params import Params
from sdcodex.core.registry import ENGINES

from .base import DiffusersEngine, register_pipelines, resize_image
from .flux import FlowEngineMixin


@ENGINES.register("chroma", "chroma1", "chroma1-hd", "chroma-hd")
class ChromaEngine(FlowEngineMixin, DiffusersEngine):
    key = EngineKey.CHROMA
    label = "Chroma"
    prompt_family = "chroma"
    tasks = frozenset({Task.TXT2IMG, Task.IMG2IMG})
    prediction = Prediction.FLOW
    default_sampler = "Euler"
    default_scheduler = "Automatic"
    size_multiple = 16          # 8x VAE and 2x2 latent packing
    min_size = 64
    max_size = 2048
    # lodestones/Chroma1-HD (Diffusers docs example): 1024x1024, 40 steps, guidance_scale 3.0
    defaults = {"width": 1024, "height": 1024, "steps": 40, "cfg_scale": 3.0}
    pipelines = {Task.TXT2IMG: ChromaPipeline, Task.IMG2IMG: ChromaImg2ImgPipeline}
    text_encoder_names = ("text_encoder",)
    pipeline_passes_sigmas = True  # linspace(1, 1/n, n), shifted by the image size (mu)

    def call_kwargs(self, params: Params, pipe: Any, batch_size: int) -> dict[str, Any]:
        prompt: Any = params.prompt if batch_size == 1 else [params.prompt] * batch_size
        kw: dict[str, Any] = {"prompt": prompt, "num_inference_steps": params.steps, "width": params.width,
                              "height": params.height, "guidance_scale": params.cfg_scale, "output_type": "pil"}
        if params.negative_prompt and params.cfg_scale > 1.0:
            kw["negative_prompt"] = params.negative_prompt if batch_size == 1 else [params.negative_prompt] * batch_size
        if params.task is Task.IMG2IMG:
            kw.update(image=resize_image(params.init_image, params.width, params.height, params.resize_mode),
                      strength=params.denoising_strength)
        return kw

    def validate(self, params: Params) -> list[str]:
        warnings = super().validate(params)
        if params.cfg_scale <= 1.0 and params.negative_prompt:
            warnings.append("negative_prompt is ignored: cfg_scale 1 runs Chroma without CFG")
        return warnings


register_pipelines(ChromaEngine.key.value, ChromaEngine.pipelines)
__all__ = ["ChromaEngine"]
