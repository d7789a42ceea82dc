"""HunyuanVideo engines: 1.0 (txt2vid; img2vid with the HunyuanVideo-I2V weights) and 1.5 (txt2vid, img2vid).

HunyuanVideo 1.0 is guidance-distilled: `distilled_cfg_scale` feeds the guidance embedding and `cfg_scale`
above 1 with a negative prompt turns on true CFG. HunyuanVideo 1.5 takes CFG through a Diffusers guider and
its pipelines have no step callback, so progress and interrupt come through the pipeline's progress bar.
"""
from __future__ import annotations

from typing import Any

from diffusers import (HunyuanVideo15ImageToVideoPipeline, HunyuanVideo15Pipeline, HunyuanVideoImageToVideoPipeline,
                       HunyuanVideoPipeline)

from sdcodex.core.engine import EngineOutput
from sdcodex.core.enums import EngineKey, Prediction, Task
from sdcodex.core.errors import ValidationError
from sdcodex.core.events import EventSink
from sdcodex.core.params import Params
from sdcodex.core.registry import ENGINES

from .base import DiffusersEngine, build_pipeline, register_pipelines, resize_image
from .flux import FlowEngineMixin, collect_videos

HUNYUAN_GUIDANCE = 6.0   # hunyuanvideo-community/HunyuanVideo: embedded guidance_scale 6.0 (pipeline default)


class _VideoEngine(FlowEngineMixin, DiffusersEngine):
    prediction = Prediction.FLOW
    tasks = frozenset({Task.TXT2VID, Task.IMG2VID})
    default_sampler = "Euler"
    frame_rule = (4, 1)      # 4x temporal VAE: 4k+1 frames
    size_multiple = 16
    min_size = 32
    max_size = 2048
    pipeline_passes_sigmas = True
    collect = staticmethod(collect_videos)  # type: ignore[assignment]

    def _needs_i2v(self, params: Params) -> None:
        i2v = bool((getattr(self.model, "variant", {}) or {}).get("i2v"))
        if params.task is Task.IMG2VID and not i2v:
            raise ValidationError(f"model {self.model.name!r} is a text-to-video {self.key.value} model; img2vid "
                                  "needs the image-to-video weights", field="task", allowed=["txt2vid"])
        if params.task is Task.TXT2VID and i2v and self.key is EngineKey.HUNYUAN_VIDEO:
            raise ValidationError(f"model {self.model.name!r} is an image-to-video model", field="task",
                                  allowed=["img2vid"])

    def validate(self, params: Params) -> list[str]:
        self._needs_i2v(params)
        return []


@ENGINES.register("hunyuan_video", "hunyuanvideo", "hunyuan-video")
class HunyuanVideoEngine(_VideoEngine):
    key = EngineKey.HUNYUAN_VIDEO
    label = "HunyuanVideo"
    # hunyuanvideo-community/HunyuanVideo model card: 1280x720 (720p), 129 frames, 50 steps, 24 fps
    defaults = {"width": 1280, "height": 720, "num_frames": 129, "steps": 50, "cfg_scale": 1.0, "fps": 24.0}
    pipelines = {Task.TXT2VID: HunyuanVideoPipeline, Task.IMG2VID: HunyuanVideoImageToVideoPipeline}

    def call_kwargs(self, params: Params, pipe: Any, batch_size: int) -> dict[str, Any]:
        prompt: Any = params.prompt if batch_size == 1 else [params.prompt] * batch_size
        kw: dict[str, Any] = {"prompt": prompt, "height": params.height, "width": params.width,
                              "num_frames": params.num_frames, "num_inference_steps": params.steps,
                              "guidance_scale": (params.distilled_cfg_scale if params.distilled_cfg_scale is not None
                                                 else HUNYUAN_GUIDANCE), "output_type": "pil"}
        if params.cfg_scale > 1.0 and params.negative_prompt:
            kw.update(true_cfg_scale=params.cfg_scale, negative_prompt=params.negative_prompt if batch_size == 1
                      else [params.negative_prompt] * batch_size)
        if params.task is Task.IMG2VID:
            kw["image"] = resize_image(params.init_image, params.width, params.height, params.resize_mode)
            if (getattr(self.model, "variant", {}) or {}).get("image_condition_type") == "latent_concat":
                # Diffusers' latent_concat I2V decodes one extra latent frame for the image and drops its 4
                # frames; ask for 4 more so the user gets the num_frames they asked for (still 4k+1).
                kw["num_frames"] = params.num_frames + 4
        return kw


class _ProgressBar:
    """Stands in for a pipeline's tqdm bar: each update is one finished step, reported to the step callback."""

    def __init__(self, pipe: Any, callback: Any, iterable: Any = None) -> None:
        self.pipe, self.callback, self.iterable, self.step = pipe, callback, iterable, 0

    def __enter__(self) -> "_ProgressBar":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update()

    def update(self, n: int = 1) -> None:
        for _ in range(n):
            if self.callback is not None:
                self.callback(self.pipe, self.step, None, {})
            self.step += 1


class StepCallbackAdapter:
    """Wraps a pipeline without `callback_on_step_end` so the shared run loop can still report steps."""

    def __init__(self, pipe: Any) -> None:
        object.__setattr__(self, "_pipe", pipe)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pipe, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._pipe, name, value)

    def __call__(self, *args: Any, callback_on_step_end: Any = None, **kwargs: Any) -> Any:
        pipe = self._pipe
        pipe.progress_bar = lambda iterable=None, total=None: _ProgressBar(pipe, callback_on_step_end, iterable)
        try:
            return pipe(*args, **kwargs)
        finally:
            del pipe.progress_bar


@ENGINES.register("hunyuan_video15", "hunyuanvideo15", "hunyuan-video-1.5", "hunyuanvideo-1.5")
class HunyuanVideo15Engine(_VideoEngine):
    key = EngineKey.HUNYUAN_VIDEO15
    label = "HunyuanVideo 1.5"
    # hunyuanvideo-community/HunyuanVideo-1.5-Diffusers-480p_t2v: 848x480, 121 frames (pipeline default),
    # 50 steps (pipeline default), guidance 6.0, 24 fps
    defaults = {"width": 848, "height": 480, "num_frames": 121, "steps": 50, "cfg_scale": 6.0, "fps": 24.0}
    pipelines = {Task.TXT2VID: HunyuanVideo15Pipeline, Task.IMG2VID: HunyuanVideo15ImageToVideoPipeline}

    def pipeline(self, task: Task) -> Any:
        cache = self.model.__dict__.setdefault("_pipelines", {})
        if task not in cache:
            cache[task] = StepCallbackAdapter(build_pipeline(self.pipelines[task], self.model.components))
        return cache[task]

    def call_kwargs(self, params: Params, pipe: Any, batch_size: int) -> dict[str, Any]:
        from diffusers.guiders import ClassifierFreeGuidance

        pipe.guider = ClassifierFreeGuidance(guidance_scale=params.cfg_scale)
        prompt: Any = params.prompt if batch_size == 1 else [params.prompt] * batch_size
        kw: dict[str, Any] = {"prompt": prompt, "num_frames": params.num_frames, "num_inference_steps": params.steps,
                              "output_type": "pil"}
        if params.negative_prompt:
            kw["negative_prompt"] = params.negative_prompt if batch_size == 1 else [params.negative_prompt] * batch_size
        if params.task is Task.IMG2VID:
            kw["image"] = resize_image(params.init_image, params.width, params.height, params.resize_mode)
        else:
            kw.update(height=params.height, width=params.width)
        return kw

    def run(self, params: Params, events: EventSink) -> EngineOutput:
        out = super().run(params, events)
        if params.task is Task.IMG2VID and out.videos:
            got = out.videos[0][0].size
            if got != (params.width, params.height):
                out.warnings.append(f"HunyuanVideo 1.5 img2vid picks its size from its resolution buckets: "
                                    f"{got[0]}x{got[1]} instead of {params.width}x{params.height}")
            out.info["size_effective"] = list(got)
        return out


for _cls in (HunyuanVideoEngine, HunyuanVideo15Engine):
    register_pipelines(_cls.key.value, _cls.pipelines)
