"""The raw Diffusers side of `sdcodex benchmark --compare-diffusers`: the engine's plain Diffusers pipeline built
from the same loaded components and scheduler policy, and the pixel check that both did the same work.
"""
from __future__ import annotations

from typing import Any

from sdcodex.core.enums import Prediction, Task
from sdcodex.runtime import LocalModels

#: engine -> tasks whose raw Diffusers call is written out below
COMPARE_TASKS: dict[str, tuple[Task, ...]] = {"sd15": (Task.TXT2IMG, Task.INPAINT),
                                              "sdxl": (Task.TXT2IMG, Task.INPAINT), "flux": (Task.TXT2IMG,),
                                              "z_image": (Task.TXT2IMG,), "chroma": (Task.TXT2IMG,),
                                              "sd3": (Task.TXT2IMG,), "qwen_image": (Task.TXT2IMG,),
                                              "flux2": (Task.TXT2IMG,), "flux2_klein": (Task.TXT2IMG,)}


def not_implemented_reason(engine_cls: type, task: Task) -> str | None:
    """None when the raw Diffusers comparison exists for this engine and task, else why not."""
    if task in COMPARE_TASKS.get(engine_cls.key.value, ()):
        return None
    done = ", ".join(f"{e} {'/'.join(t.value for t in ts)}" for e, ts in COMPARE_TASKS.items())
    return f"the raw Diffusers baseline is written for {done} only, not {engine_cls.key.value} {task.value}"


def _flux_kwargs(model: Any, r: dict[str, Any]) -> dict[str, Any]:
    variant = getattr(model, "variant", None) or {}
    embed = variant.get("guidance_embed", model.components["transformer"].config.get("guidance_embeds"))
    distilled = r.get("distilled_cfg_scale")
    kw = {"prompt": r["prompt"], "num_inference_steps": r["steps"], "width": r["width"], "height": r["height"],
          "guidance_scale": (3.5 if distilled is None else distilled) if embed else 0.0}
    if embed and r.get("cfg_scale", 1.0) > 1.0 and r.get("negative_prompt"):
        kw.update(true_cfg_scale=r["cfg_scale"], negative_prompt=r["negative_prompt"])
    return kw


def _cfg_kwargs(guidance: float, r: dict[str, Any]) -> dict[str, Any]:
    """Prompt, size, steps, the pipeline's guidance_scale, and the negative prompt when CFG runs."""
    kw = {"prompt": r["prompt"], "num_inference_steps": r["steps"], "width": r["width"], "height": r["height"],
          "guidance_scale": guidance}
    if r.get("cfg_scale", 1.0) > 1.0 and r.get("negative_prompt"):
        kw["negative_prompt"] = r["negative_prompt"]
    return kw


def _sd_kwargs(model: Any, r: dict[str, Any]) -> dict[str, Any]:
    kw = {"prompt": r["prompt"], "negative_prompt": r.get("negative_prompt") or None,
          "num_inference_steps": r["steps"], "guidance_scale": r["cfg_scale"], "width": r["width"],
          "height": r["height"]}
    if (r.get("clip_skip") or 1) > 1:
        kw["clip_skip"] = r["clip_skip"] - 1
    return kw


def _qwen_image_kwargs(model: Any, r: dict[str, Any]) -> dict[str, Any]:
    """QwenImagePipeline's true CFG needs a negative prompt: " " when none is given, as the model card does."""
    kw = {"prompt": r["prompt"], "num_inference_steps": r["steps"], "width": r["width"], "height": r["height"],
          "true_cfg_scale": r["cfg_scale"]}
    if r["cfg_scale"] > 1.0:
        kw["negative_prompt"] = r.get("negative_prompt") or " "
    return kw


#: engine -> the raw pipeline call's keyword arguments for a (preset-filled) request; SD1.5/SDXL by default
CALL_KWARGS: dict[str, Any] = {
    "flux": _flux_kwargs,
    # ZImagePipeline's guidance g computes pos + g * (pos - neg): A1111's CFG scale minus one
    "z_image": lambda model, r: _cfg_kwargs(max(0.0, r["cfg_scale"] - 1.0), r),
    "chroma": lambda model, r: _cfg_kwargs(r["cfg_scale"], r),
    "sd3": _sd_kwargs,
    "qwen_image": _qwen_image_kwargs,
    # FLUX.2 dev: the guidance embedding (distilled_cfg_scale, 4.0 by default); Klein: real CFG on cfg_scale
    "flux2": lambda model, r: {"prompt": r["prompt"], "num_inference_steps": r["steps"], "width": r["width"],
                               "height": r["height"], "guidance_scale": r.get("distilled_cfg_scale") or 4.0},
    "flux2_klein": lambda model, r: {"prompt": r["prompt"], "num_inference_steps": r["steps"], "width": r["width"],
                                     "height": r["height"], "guidance_scale": r["cfg_scale"]},
}


class _RecordingModels(LocalModels):
    """The runtime's model provider, remembering the last model it handed out (the baseline shares it)."""

    last_loaded: Any = None

    def load(self, entry: Any, **kw: Any) -> Any:
        self.last_loaded = super().load(entry, **kw)
        return self.last_loaded


class DiffusersBaseline:
    """The plain Diffusers pipeline class of the engine's task, built from the same loaded components, with the
    scheduler the sampler policy maps the same request to and a CPU generator seeded like ours. Calling it
    runs one generation and returns its PIL images."""

    def __init__(self, model: Any, engine_cls: type, task: Task, request: dict[str, Any], *, seed: int) -> None:
        import inspect

        from sdcodex.media.imageio import load_image

        self.model, self.engine_cls, self.request, self.seed = model, engine_cls, request, seed
        self.task = task
        pipe_cls = engine_cls.pipelines[task]
        wanted = [n for n in inspect.signature(pipe_cls.__init__).parameters if n != "self"]
        kwargs: dict[str, Any] = {n: model.components[n] for n in wanted if n in model.components}
        for name in ("safety_checker", "feature_extractor", "image_encoder"):
            if name in wanted and name not in kwargs:
                kwargs[name] = None
        if "requires_safety_checker" in wanted:
            kwargs["requires_safety_checker"] = False
        self.pipe = pipe_cls(**kwargs)
        self.pipe.set_progress_bar_config(disable=True)
        r = request
        self.kwargs = CALL_KWARGS.get(engine_cls.key.value, _sd_kwargs)(model, r)
        if task is Task.INPAINT:
            self.kwargs.update(image=load_image(r["init_image"], field="init_image").convert("RGB"),
                               mask_image=load_image(r["mask"], field="mask").convert("L"),
                               strength=r["denoising_strength"])
        self.choice = self.scheduler()

    def scheduler(self) -> Any:
        from sdcodex.core.samplers import create_sampler

        cls, r = self.engine_cls, self.request
        base = dict(self.model.scheduler_config)
        if cls.prediction is Prediction.FLOW:
            from sdcodex.engines.flux import shifted_config

            base, prediction = shifted_config(base, r.get("flow_shift")), Prediction.FLOW
        else:
            prediction = getattr(self.model, "prediction", None) or cls.prediction
        return create_sampler(r.get("sampler"), r.get("scheduler"), cls.family_for_sampler or cls.key.value, base,
                              prediction, mode=r.get("mode"))

    def describe(self) -> dict[str, Any]:
        return {"pipeline": type(self.pipe).__name__, "scheduler_class": self.choice.class_name,
                "sampler": self.choice.sampler_effective, "schedule": self.choice.scheduler_effective}

    def __call__(self) -> list[Any]:
        import torch

        scheduler = self.scheduler().scheduler  # a fresh scheduler per call, as the engine does
        if hasattr(scheduler, "noise_sampler_seed"):
            scheduler.noise_sampler_seed = self.seed
        self.pipe.scheduler = scheduler
        images = list(self.pipe(**self.kwargs, generator=torch.Generator("cpu").manual_seed(self.seed)).images)
        if self.task is Task.INPAINT:  # A1111's overlay, as the engine does: the original outside the mask
            from PIL import Image

            original, mask = self.kwargs["image"], self.kwargs["mask_image"]  # the bench sends mask_blur 0
            images = [Image.composite(im.convert("RGB"), original.resize(im.size), mask.resize(im.size))
                      for im in images]
        return images


def pixel_diff(ours: list[Any], theirs: list[Any]) -> int | None:
    """Largest per-channel difference (0-255) between our first output and the baseline's, or None."""
    import numpy as np

    if not ours or not theirs:
        return None
    a = np.asarray(ours[0].convert("RGB"), dtype=np.int16)
    b = np.asarray(theirs[0].convert("RGB"), dtype=np.int16)
    return int(np.abs(a - b).max()) if a.shape == b.shape else None
