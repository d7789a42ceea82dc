"""Qwen-Image engine (txt2img, img2img, inpaint): a 20B MMDiT over a Qwen2.5-VL text encoder and the Qwen-Image VAE,
flow matching with a resolution-dependent shift. `cfg_scale` is the pipeline's true CFG (`true_cfg_scale`), which
needs a negative prompt: an empty one is sent as " ", as the model card does.

The `lightning` mode is lightx2v's Qwen-Image-Lightning: a LoRA (loaded like any other) distilled for 4 or 8 steps
without CFG and with a fixed shift of 3 at every size; `flow_shift` pins the shift that way (pinned_shift_config),
so the mode's presets give the published scheduler settings. The mode applies when the model or a requested LoRA is
named for it (sdcodex.engines.modes)."""
from __future__ import annotations

from typing import Any

from types import SimpleNamespace

from diffusers import (QwenImageControlNetPipeline, QwenImageEditPipeline, QwenImageEditPlusPipeline,
                       QwenImageImg2ImgPipeline, QwenImageInpaintPipeline, QwenImagePipeline)

from sdcodex.core.engine import EngineOutput
from sdcodex.core.enums import EngineKey, Mode, Task
from sdcodex.core.errors import ValidationError
from sdcodex.core.events import EventSink
from sdcodex.core.params import Params
from sdcodex.core.registry import ENGINES

from .base import build_pipeline, register_pipelines
from .flux import FlowImageEngine


@ENGINES.register("qwen_image", "qwen-image", "qwenimage", "qwen")
class QwenImageEngine(FlowImageEngine):
    key = EngineKey.QWEN_IMAGE
    label = "Qwen-Image"
    tasks = frozenset({Task.TXT2IMG, Task.IMG2IMG, Task.INPAINT})
    modes = frozenset({Mode.NORMAL, Mode.LIGHTNING})
    flow_shift_pins_mu = True
    extra_keys = frozenset({"flow_shift"})
    # Qwen/Qwen-Image model card: 1328x1328 (1:1), 50 steps, true_cfg_scale 4.0, negative prompt " "
    defaults = {"width": 1328, "height": 1328, "steps": 50, "cfg_scale": 4.0}
    pipelines = {Task.TXT2IMG: QwenImagePipeline, Task.IMG2IMG: QwenImageImg2ImgPipeline,
                 Task.INPAINT: QwenImageInpaintPipeline}
    # Qwen-Image ControlNets (QwenImageControlNetModel folders: InstantX's Union and single-type nets), txt2img; several
    # units must name one model (Diffusers' QwenImageMultiControlNetModel runs one net over several images)
    control_pipelines = {Task.TXT2IMG: QwenImageControlNetPipeline}
    supports_controls = True

    def call_kwargs(self, params: Params, pipe: Any, batch_size: int) -> dict[str, Any]:
        return {**self.image_kwargs(params, batch_size, true_cfg_scale=params.cfg_scale),
                **self.negative_kwargs(params, batch_size, cfg=params.cfg_scale > 1.0, blank=" ")}


#: Qwen/Qwen-Image-Edit-2509 model card: "multi-image editing ... optimal performance with 1 to 3 input images"
MAX_EDIT_IMAGES = 3


@ENGINES.register("qwen_image_edit", "qwen-image-edit", "qwenimageedit", "qwen-edit")
class QwenImageEditEngine(FlowImageEngine):
    """Qwen-Image-Edit: `txt2img` with the request key `images` (the pictures to edit) and the prompt as the
    instruction. Each image goes twice into the model: through the Qwen2.5-VL vision tower (the pipeline resizes it
    to about 384x384 px) into the prompt embedding, and through the VAE (about 1024x1024 px) as extra latent tokens
    the transformer attends to. The output size is the request's `width` x `height`.

    Which Diffusers pipeline runs follows the model folder's class: QwenImageEditPlusPipeline (Qwen-Image-Edit-2509
    and -2511: one to three images, each named "Picture N" in the prompt template) or QwenImageEditPipeline (the
    first Qwen-Image-Edit: exactly one image). `cfg_scale` is the true CFG, as for Qwen-Image."""

    key = EngineKey.QWEN_IMAGE_EDIT
    label = "Qwen-Image-Edit"
    tasks = frozenset({Task.TXT2IMG})
    modes = frozenset({Mode.NORMAL, Mode.LIGHTNING})  # lightx2v publishes Lightning LoRAs for Edit-2509 / -2511
    flow_shift_pins_mu = True
    max_images = MAX_EDIT_IMAGES
    extra_keys = frozenset({"images", "flow_shift"})  # the pictures to edit: the UI shows their field on this engine
    # Qwen/Qwen-Image-Edit-2509 model card: 40 steps, true_cfg_scale 4.0, negative prompt " " (output ~1024x1024)
    defaults = {"width": 1024, "height": 1024, "steps": 40, "cfg_scale": 4.0}
    pipelines = {Task.TXT2IMG: QwenImageEditPlusPipeline}

    @property
    def plus(self) -> bool:
        """True for QwenImageEditPlusPipeline models (several images); from the folder's pipeline class."""
        variant = getattr(self.model, "variant", {}) or {}
        return variant.get("pipeline") != "QwenImageEditPipeline" and variant.get("plus", True)

    def pipeline(self, task: Task) -> Any:
        cache = self.model.__dict__.setdefault("_pipelines", {})
        if task not in cache:
            cls = QwenImageEditPlusPipeline if self.plus else QwenImageEditPipeline
            cache[task] = build_pipeline(cls, self.model.components)
        return cache[task]

    def validate(self, params: Params) -> list[str]:
        warnings = super().validate(params)
        count = len(params.images or [])
        limit = MAX_EDIT_IMAGES if self.plus else 1
        if not 1 <= count <= limit:
            raise ValidationError(f"Qwen-Image-Edit needs the image(s) to edit in `images` (got {count})",
                                  field="images", allowed=f"1..{limit} images" + ("" if self.plus else
                                  " (this model is the first Qwen-Image-Edit: one image)"))
        return warnings

    def call_kwargs(self, params: Params, pipe: Any, batch_size: int) -> dict[str, Any]:
        images = [image.convert("RGB") for image in params.images]  # one prompt per call (see generate)
        return {**self.image_kwargs(params, 1, true_cfg_scale=params.cfg_scale),
                **self.negative_kwargs(params, 1, cfg=params.cfg_scale > 1.0, blank=" "),
                "image": images if self.plus else images[0]}

    def generate(self, pipe: Any, params: Params, kwargs: dict[str, Any], seeds: list[int], on_step: Any,
                 out: EngineOutput) -> Any:
        """The Edit pipelines take one prompt per call: a batch is one call per seed."""
        import torch

        images = []
        for seed in seeds:
            result = pipe(**kwargs, generator=torch.Generator("cpu").manual_seed(seed), callback_on_step_end=on_step)
            images.extend(result.images)
        return SimpleNamespace(images=images)

    def run(self, params: Params, events: EventSink) -> EngineOutput:
        out = super().run(params, events)
        out.info["input_images"] = len(params.images or [])
        return out


register_pipelines(QwenImageEngine.key.value, QwenImageEngine.pipelines)
register_pipelines(QwenImageEditEngine.key.value, QwenImageEditEngine.pipelines)
