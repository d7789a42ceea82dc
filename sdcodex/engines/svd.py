"""Stable Video Diffusion engine (img2vid): one conditioning image in, `num_frames` frames out, with SVD's
own knobs (fps and motion bucket micro-conditioning, noise augmentation, VAE decode chunking)."""
from __future__ import annotations

from typing import Any

from diffusers import StableVideoDiffusionPipeline

from sdcodex.core.engine import EngineOutput
from sdcodex.core.enums import EngineKey, Prediction, Task
from sdcodex.core.events import EventSink
from sdcodex.core.params import Params
from sdcodex.core.registry import ENGINES

from .base import DiffusersEngine, register_pipelines, resize_image
from .flux import collect_videos

# stabilityai/stable-video-diffusion-img2vid-xt model card and the pipeline's own call defaults
SVD_DEFAULTS = {"fps": 7.0, "motion_bucket_id": 127, "noise_aug_strength": 0.02}


@ENGINES.register("svd", "stable-video-diffusion", "svd-xt")
class SVDEngine(DiffusersEngine):
    key = EngineKey.SVD
    label = "Stable Video Diffusion"
    tasks = frozenset({Task.IMG2VID})
    prediction = Prediction.V_PREDICTION
    default_sampler = "Euler"
    default_scheduler = "Karras"
    size_multiple = 64      # 8x VAE and three 2x UNet downsamplings
    min_size = 64
    max_size = 2048
    max_frames = 128
    defaults = {"width": 1024, "height": 576, "steps": 25, "cfg_scale": 3.0, "num_frames": 25}
    pipelines = {Task.IMG2VID: StableVideoDiffusionPipeline}
    text_encoder_names = ("image_encoder",)

    def validate(self, params: Params) -> list[str]:
        warnings = []
        if params.prompt or params.negative_prompt:
            warnings.append("SVD is conditioned on the image only; prompt and negative_prompt are ignored")
        return warnings

    @staticmethod
    def conditioning(params: Params) -> dict[str, Any]:
        """SVD's micro-conditioning and guidance values for this request (defaults where it left them out)."""
        return {
            "min_guidance_scale": 1.0, "max_guidance_scale": params.cfg_scale,
            "fps": int(round(params.fps if params.fps is not None else SVD_DEFAULTS["fps"])),
            "motion_bucket_id": (params.motion_bucket_id if params.motion_bucket_id is not None
                                 else SVD_DEFAULTS["motion_bucket_id"]),
            "noise_aug_strength": (params.noise_aug_strength if params.noise_aug_strength is not None
                                   else SVD_DEFAULTS["noise_aug_strength"]),
            "decode_chunk_size": params.decode_chunk_size or params.num_frames,
        }

    def call_kwargs(self, params: Params, pipe: Any, batch_size: int) -> dict[str, Any]:
        image = resize_image(params.init_image, params.width, params.height, params.resize_mode)
        return {"image": image if batch_size == 1 else [image] * batch_size, "height": params.height,
                "width": params.width, "num_frames": params.num_frames, "num_inference_steps": params.steps,
                "output_type": "pil", **self.conditioning(params)}

    collect = staticmethod(collect_videos)  # type: ignore[assignment]

    def run(self, params: Params, events: EventSink) -> EngineOutput:
        out = super().run(params, events)
        out.info.pop("warnings", None)  # the sampler's warnings are in out.warnings; info["warnings"] is the job's
        kw = self.conditioning(params)
        out.info["svd"] = kw
        out.info.setdefault("infotext_extra", {}).update({"Frames": params.num_frames,
                                                          "Motion bucket": kw["motion_bucket_id"],
                                                          "Noise aug": kw["noise_aug_strength"]})
        return out


register_pipelines(SVDEngine.key.value, SVDEngine.pipelines)
