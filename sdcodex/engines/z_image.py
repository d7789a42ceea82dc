"""Z-Image engine (txt2img, img2img) over Diffusers' ZImagePipeline / ZImageImg2ImgPipeline; ControlNet units on
txt2img through ZImageControlNetPipeline (sdcodex.engines.controlnet).

Z-Image-Turbo is distilled for about 8 steps with CFG off; the base Z-Image runs ~50 steps with CFG. Turbo is
the `turbo` mode (its presets), and the mode is ignored with a reason on a model that shows no sign of being
the Turbo distillation (see sdcodex.engines.modes).

`cfg_scale` has A1111/ComfyUI meaning (1 = off): the pipeline's own `guidance_scale` g computes
pos + g * (pos - neg), so g = cfg_scale - 1.
"""
from __future__ import annotations

from typing import Any

from diffusers import ZImageControlNetPipeline, ZImageImg2ImgPipeline, ZImagePipeline

from sdcodex.core.engine import EngineOutput
from sdcodex.core.enums import EngineKey, Mode, Task
from sdcodex.core.events import EventSink
from sdcodex.core.params import Params
from sdcodex.core.registry import ENGINES

from .base import register_pipelines
from .flux import FlowImageEngine


def pipeline_guidance(cfg_scale: float) -> float:
    """ZImagePipeline's guidance_scale for an A1111-style CFG scale (1 = no CFG)."""
    return max(0.0, float(cfg_scale) - 1.0)


@ENGINES.register("z_image", "z-image", "zimage", "z_image_turbo", "z-image-turbo")
class ZImageEngine(FlowImageEngine):
    key = EngineKey.Z_IMAGE
    label = "Z-Image"
    tasks = frozenset({Task.TXT2IMG, Task.IMG2IMG})
    modes = frozenset({Mode.NORMAL, Mode.TURBO})
    # Tongyi-MAI/Z-Image model card: 50 steps, guidance_scale 4.0 (= cfg_scale 5.0 here)
    defaults = {"width": 1024, "height": 1024, "steps": 50, "cfg_scale": 5.0}
    pipelines = {Task.TXT2IMG: ZImagePipeline, Task.IMG2IMG: ZImageImg2ImgPipeline}
    extra_keys = frozenset({"flow_shift"})  # the scheduler's shift (3.0) is the knob Z-Image users tune
    # Z-Image ControlNets (ZImageControlNetModel folders: alibaba-pai's Z-Image-Turbo-Fun-Controlnet-Union), txt2img,
    # one unit acting on every step (Diffusers' pipeline takes one control image and no guidance window)
    control_pipelines = {Task.TXT2IMG: ZImageControlNetPipeline}
    supports_controls = True

    def call_kwargs(self, params: Params, pipe: Any, batch_size: int) -> dict[str, Any]:
        guidance = pipeline_guidance(params.cfg_scale)
        return {**self.image_kwargs(params, batch_size, guidance_scale=guidance),
                **self.negative_kwargs(params, batch_size, cfg=guidance > 0)}

    def validate(self, params: Params) -> list[str]:
        return self.warn_negative_without_cfg(params, super().validate(params))

    def run(self, params: Params, events: EventSink) -> EngineOutput:
        out = super().run(params, events)
        out.info["pipeline_guidance_scale"] = pipeline_guidance(params.cfg_scale)
        return out


register_pipelines(ZImageEngine.key.value, ZImageEngine.pipelines)
__all__ = ["ZImageEngine", "pipeline_guidance"]
