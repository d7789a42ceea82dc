"""LTX-2 engine (txt2vid, img2vid) over Diffusers' LTX2Pipeline / LTX2ImageToVideoPipeline.

LTX-2 makes a video and its sound together: one transformer denoises video latents and audio latents side by
side, the video VAE decodes the frames and the audio VAE + vocoder decode a waveform. The waveform travels with
the frames (EngineOutput.audio) and the MP4/WebM writer muxes it as an audio track; the request key `audio: false`
keeps the file silent (the model still denoises both streams: they are one network).

`cfg_scale` maps to the pipeline's `guidance_scale` (video CFG, 1 = off). The other guidance terms (audio CFG 7,
spatio-temporal guidance, modality isolation, guidance rescale 0.7) stay at the pipeline's defaults. Frames follow
the VAE's 8x temporal compression (8k+1) and sizes its 32x spatial compression.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from diffusers import LTX2ImageToVideoPipeline, LTX2Pipeline

from sdcodex.core.engine import EngineOutput
from sdcodex.core.enums import EngineKey, Prediction, Task
from sdcodex.core.events import EventSink
from sdcodex.core.params import Params
from sdcodex.core.registry import ENGINES

from .base import DiffusersEngine, register_pipelines, resize_image
from .flux import FlowEngineMixin, to_pil_frames


def sample_rate(pipe: Any) -> int:
    """The vocoder's output sample rate (24 kHz on Lightricks/LTX-2), else the audio VAE's."""
    vocoder = getattr(pipe, "vocoder", None)
    rate = getattr(getattr(vocoder, "config", None), "output_sampling_rate", None)
    return int(rate or pipe.audio_sampling_rate)


@ENGINES.register("ltx2", "ltx-2", "ltx_2", "ltxv2")
class LTX2Engine(FlowEngineMixin, DiffusersEngine):
    key = EngineKey.LTX2
    label = "LTX-2"
    tasks = frozenset({Task.TXT2VID, Task.IMG2VID})
    prediction = Prediction.FLOW
    default_sampler = "Euler"
    default_scheduler = "Automatic"
    frame_rule = (8, 1)      # the video VAE compresses time 8x (causal first frame): 8k+1 frames
    size_multiple = 32       # the video VAE compresses space 32x (patch size 1)
    min_size = 32
    max_size = 2048
    # Diffusers LTX2Pipeline example for Lightricks/LTX-2: 768x512, 121 frames at 24 fps, 30 steps, guidance 3.0
    defaults = {"width": 768, "height": 512, "num_frames": 121, "steps": 30, "cfg_scale": 3.0, "fps": 24.0}
    pipelines = {Task.TXT2VID: LTX2Pipeline, Task.IMG2VID: LTX2ImageToVideoPipeline}
    extra_keys = frozenset({"audio"})
    text_encoder_names = ("text_encoder",)
    pipeline_passes_sigmas = True  # linspace(1, 1/n, n), shifted by mu from the video token count

    def call_kwargs(self, params: Params, pipe: Any, batch_size: int) -> dict[str, Any]:
        prompt: Any = params.prompt if batch_size == 1 else [params.prompt] * batch_size
        kw: dict[str, Any] = {"prompt": prompt, "height": params.height, "width": params.width,
                              "num_frames": params.num_frames, "frame_rate": float(params.fps or 24.0),
                              "num_inference_steps": params.steps, "guidance_scale": params.cfg_scale,
                              "output_type": "pil"}
        if params.negative_prompt:
            kw["negative_prompt"] = params.negative_prompt if batch_size == 1 else [params.negative_prompt] * batch_size
        if params.task is Task.IMG2VID:
            kw["image"] = resize_image(params.init_image, params.width, params.height, params.resize_mode)
        return kw

    def collect(self, result: Any, out: EngineOutput, seeds: list[int]) -> None:
        for i, video in enumerate(result.frames):
            out.videos.append(to_pil_frames(video))
            wave = result.audio[i].detach().float().cpu().numpy().astype(np.float32)
            out.audio.append((wave, self._rate) if self._rate else None)
        out.seeds.extend(seeds)

    #: the sample rate of this run's waveforms; 0 while the request turned the audio track off
    _rate = 0

    def run(self, params: Params, events: EventSink) -> EngineOutput:
        self._rate = sample_rate(self.pipeline(params.task)) if params.audio else 0
        out = super().run(params, events)
        track = next((a for a in out.audio if a is not None), None)
        if track is not None:
            wave, rate = track
            out.info["audio"] = {"sample_rate": rate, "channels": int(wave.shape[0]),
                                 "seconds": round(wave.shape[-1] / rate, 3)}
        else:
            out.info["audio"] = None
        return out


register_pipelines(LTX2Engine.key.value, LTX2Engine.pipelines)
__all__ = ["LTX2Engine", "sample_rate"]
