"""Z-Image engine (txt2img, img2img) over Diffusers' ZImagePipeline / ZImageImg2ImgPipeline.

Z-Image-Turbo is distilled for about 8 steps with CFG off; the base Z-Image runs ~50 steps with CFG. Turbo is
the `turbo` mode (its presets), and the mode is ignored with a reason on a model that shows no sign of being
the Turbo distillation (see sdcodex.engines.modes).

`cfg_scale` has A1111/ComfyUI meaning (1 = off): the pipeline's own `guidance_scale` g computes
pos + g * (pos - neg), so g = cfg_scale - 1.
"""
from __future__ import annotations

from typing import Any

from diffusers import ZImageImg2ImgPipeline, ZImagePipeline

from sdcodex.core.engine import EngineOutput
from sdcodex.core.enums import EngineKey, Mode, Prediction, Task
from sdcodex.core.events import EventSink
from sdcodex.core.params import Params
from sdcodex.core.registry import ENGINES

from .base import DiffusersEngine, register_pipelines, resize_image
from .flux import FlowEngineMixin


def pipeline_guidance(cfg_scale: float) -> float:
    """ZImagePipeline's guidance_scale for an A1111-style CFG scale (1 = no CFG)."""
    return max(0.0, float(cfg_scale) - 1.0)


@ENGINES.register("z_image", "z-image", "zimage", "z_image_turbo", "z-image-turbo")
class ZImageEngine(FlowEngineMixin, DiffusersEngine):
    key = EngineKey.Z_IMAGE
    label = "Z-Image"
    tasks = frozenset({Task.TXT2IMG, Task.IMG2IMG})
    modes = frozenset({Mode.NORMAL, Mode.TURBO})
    prediction = Prediction.FLOW
    default_sampler = "Euler"
    default_scheduler = "Automatic"
    size_multiple = 16          # 8x VAE and 2x2 transformer patches
    min_size = 64
    max_size = 2048
    # Tongyi-MAI/Z-Image model card: 50 steps, guidance_scale 4.0 (= cfg_scale 5.0 here)
    defaults = {"width": 1024, "height": 1024, "steps": 50, "cfg_scale": 5.0}
    pipelines = {Task.TXT2IMG: ZImagePipeline, Task.IMG2IMG: ZImageImg2ImgPipeline}
    extra_keys = frozenset({"flow_shift"})  # the scheduler's shift (3.0) is the knob Z-Image users tune
    text_encoder_names = ("text_encoder",)
    pipeline_passes_sigmas = True  # the pipeline sets its own sigmas (linspace(1, 1/n, n)), shifted by the scheduler

    def call_kwargs(self, params: Params, pipe: Any, batch_size: int) -> dict[str, Any]:
        prompt: Any = params.prompt if batch_size == 1 else [params.prompt] * batch_size
        guidance = pipeline_guidance(params.cfg_scale)
        kw: dict[str, Any] = {"prompt": prompt, "num_inference_steps": params.steps, "width": params.width,
                              "height": params.height, "guidance_scale": guidance, "output_type": "pil"}
        if guidance > 0 and params.negative_prompt:
            kw["negative_prompt"] = params.negative_prompt if batch_size == 1 else [params.negative_prompt] * batch_size
        if params.task is Task.IMG2IMG:
            kw.update(image=resize_image(params.init_image, params.width, params.height, params.resize_mode),
                      strength=params.denoising_strength)
        return kw

    def validate(self, params: Params) -> list[str]:
        warnings = super().validate(params)
        if params.cfg_scale <= 1.0 and params.negative_prompt:
            warnings.append("negative_prompt is ignored: cfg_scale 1 runs Z-Image without CFG")
        return warnings

    def run(self, params: Params, events: EventSink) -> EngineOutput:
        out = super().run(params, events)
        out.info["pipeline_guidance_scale"] = pipeline_guidance(params.cfg_scale)
        return out


register_pipelines(ZImageEngine.key.value, ZImageEngine.pipelines)
__all__ = ["ZImageEngine", "pipeline_guidance"]
