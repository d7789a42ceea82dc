"""Chroma engine (txt2img, img2img) over Diffusers' ChromaPipeline / ChromaImg2ImgPipeline.

Chroma is FLUX.1-schnell re-trained without the per-block modulation (a small "distilled guidance" network makes
it) and with real CFG: `cfg_scale` goes to the pipeline's `guidance_scale` unchanged (CFG runs when it is > 1, as
in A1111), and the negative prompt matters. One T5-XXL text encoder, FLUX.1's VAE.
"""
from __future__ import annotations

from typing import Any

from diffusers import ChromaImg2ImgPipeline, ChromaPipeline

from sdcodex.core.enums import EngineKey, Task
from sdcodex.core.params import Params
from sdcodex.core.registry import ENGINES

from .base import register_pipelines
from .flux import FlowImageEngine


@ENGINES.register("chroma", "chroma1", "chroma1-hd", "chroma-hd")
class ChromaEngine(FlowImageEngine):
    key = EngineKey.CHROMA
    label = "Chroma"
    prompt_family = "chroma"
    tasks = frozenset({Task.TXT2IMG, Task.IMG2IMG})
    # lodestones/Chroma1-HD (Diffusers docs example): 1024x1024, 40 steps, guidance_scale 3.0
    defaults = {"width": 1024, "height": 1024, "steps": 40, "cfg_scale": 3.0}
    pipelines = {Task.TXT2IMG: ChromaPipeline, Task.IMG2IMG: ChromaImg2ImgPipeline}

    def call_kwargs(self, params: Params, pipe: Any, batch_size: int) -> dict[str, Any]:
        return {**self.image_kwargs(params, batch_size, guidance_scale=params.cfg_scale),
                **self.negative_kwargs(params, batch_size, cfg=params.cfg_scale > 1.0)}

    def validate(self, params: Params) -> list[str]:
        return self.warn_negative_without_cfg(params, super().validate(params))


register_pipelines(ChromaEngine.key.value, ChromaEngine.pipelines)
__all__ = ["ChromaEngine"]
