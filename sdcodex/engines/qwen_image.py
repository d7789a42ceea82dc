"""Qwen-Image engine (txt2img, img2img, inpaint): a 20B MMDiT over a Qwen2.5-VL text encoder and the Qwen-Image VAE,
flow matching with a resolution-dependent shift. `cfg_scale` is the pipeline's true CFG (`true_cfg_scale`), which
needs a negative prompt: an empty one is sent as " ", as the model card does."""
from __future__ import annotations

from typing import Any

from diffusers import QwenImageImg2ImgPipeline, QwenImageInpaintPipeline, QwenImagePipeline

from sdcodex.core.enums import EngineKey, Prediction, Task
from sdcodex.core.params import Params
from sdcodex.core.registry import ENGINES

from .base import DiffusersEngine, prepare_mask, register_pipelines, resize_image
from .flux import FlowEngineMixin


@ENGINES.register("qwen_image", "qwen-image", "qwenimage", "qwen")
class QwenImageEngine(FlowEngineMixin, DiffusersEngine):
    key = EngineKey.QWEN_IMAGE
    label = "Qwen-Image"
    tasks = frozenset({Task.TXT2IMG, Task.IMG2IMG, Task.INPAINT})
    prediction = Prediction.FLOW
    default_sampler = "Euler"
    default_scheduler = "Automatic"
    size_multiple = 16          # 8x VAE and 2x2 latent packing
    min_size = 64
    max_size = 2048
    # Qwen/Qwen-Image model card: 1328x1328 (1:1), 50 steps, true_cfg_scale 4.0, negative prompt " "
    defaults = {"width": 1328, "height": 1328, "steps": 50, "cfg_scale": 4.0}
    pipelines = {Task.TXT2IMG: QwenImagePipeline, Task.IMG2IMG: QwenImageImg2ImgPipeline,
                 Task.INPAINT: QwenImageInpaintPipeline}
    text_encoder_names = ("text_encoder",)
    pipeline_passes_sigmas = True

    def call_kwargs(self, params: Params, pipe: Any, batch_size: int) -> dict[str, Any]:
        def each(text: str) -> Any:
            return text if batch_size == 1 else [text] * batch_size

        kw: dict[str, Any] = {"prompt": each(params.prompt), "num_inference_steps": params.steps,
                              "true_cfg_scale": params.cfg_scale, "width": params.width, "height": params.height,
                              "output_type": "pil"}
        if params.cfg_scale > 1.0:
            kw["negative_prompt"] = each(params.negative_prompt or " ")
        if params.task in (Task.IMG2IMG, Task.INPAINT):
            kw.update(image=resize_image(params.init_image, params.width, params.height, params.resize_mode),
                      strength=params.denoising_strength)
        if params.task is Task.INPAINT:
            kw["mask_image"] = prepare_mask(params.mask, params)
            if params.inpaint_full_res:
                kw["padding_mask_crop"] = params.inpaint_full_res_padding
        return kw


register_pipelines(QwenImageEngine.key.value, QwenImageEngine.pipelines)
