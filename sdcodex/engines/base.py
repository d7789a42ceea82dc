"""Shared base for engines over a Diffusers pipeline: builds the task's pipeline from the loaded
components, applies the sampler policy, loops over batches with one CPU generator per image, times
the stages and honours interrupt/skip. Families only declare classes and map params to kwargs."""
from __future__ import annotations

import dataclasses
import inspect
import time
from contextlib import ExitStack
from typing import Any, ClassVar

import torch
from PIL import Image, ImageFilter, ImageOps

from sdcodex.core.engine import EngineInterface, EngineOutput
from sdcodex.core.enums import ResizeMode, Task
from sdcodex.core.errors import ValidationError
from sdcodex.core.events import EventSink, Interrupted, Skipped
from sdcodex.core.params import Params
from sdcodex.core.registry import PIPELINES
from sdcodex.core.samplers import create_sampler

from . import step_cache
from .preview import Previewer
from .prompt_clip import call_pipeline


def _clip_text_model_alias(encoder: Any) -> None:
    """Diffusers 0.42's clip-skip path reads `text_encoder.text_model.final_layer_norm`; since
    transformers 5.6 CLIPTextModel has no `text_model` child. Alias it to the model itself (a plain
    attribute, not a sub-module, so state_dict and parameters are unchanged)."""
    if encoder is not None and type(encoder).__name__ == "CLIPTextModel" and "text_model" not in dir(encoder):
        if hasattr(encoder, "final_layer_norm"):
            object.__setattr__(encoder, "text_model", encoder)


def build_pipeline(pipeline_cls: type, components: dict[str, Any], **extra: Any) -> Any:
    """Instantiate a Diffusers pipeline class from shared components (only the ones it takes)."""
    _clip_text_model_alias(components.get("text_encoder"))
    wanted = [p for p in inspect.signature(pipeline_cls.__init__).parameters if p != "self"]
    kwargs = {name: components.get(name) for name in wanted if name in components or name in extra}
    for name in wanted:
        if name not in kwargs and name in ("safety_checker", "feature_extractor", "image_encoder"):
            kwargs[name] = None
    if "requires_safety_checker" in wanted:
        kwargs["requires_safety_checker"] = False
    kwargs.update({k: v for k, v in extra.items() if k in wanted})
    pipe = pipeline_cls(**kwargs)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def register_pipelines(engine_key: str, pipelines: dict[Task, type]) -> None:
    """Make `create_pipeline('<engine>.<task>', components=...)` work for each task class."""
    for task, cls in pipelines.items():
        PIPELINES.add(f"{engine_key}.{task.value}",
                      lambda components, _cls=cls, **kw: build_pipeline(_cls, components, **kw))


def resize_image(image: Image.Image, width: int, height: int, mode: ResizeMode) -> Image.Image:
    """A1111's resize modes: stretch, crop to fill, or fit and fill the borders with stretched edges."""
    image = image.convert("RGB")
    if image.size == (width, height):
        return image
    if mode is ResizeMode.JUST_RESIZE:
        return image.resize((width, height), Image.LANCZOS)
    ratio_w, ratio_h = width / image.width, height / image.height
    if mode is ResizeMode.CROP_AND_RESIZE:
        scale = max(ratio_w, ratio_h)
        resized = image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
        left, top = (resized.width - width) // 2, (resized.height - height) // 2
        return resized.crop((left, top, left + width, top + height))
    scale = min(ratio_w, ratio_h)
    resized = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.LANCZOS)
    canvas = image.resize((width, height), Image.LANCZOS).filter(ImageFilter.GaussianBlur(8))
    canvas.paste(resized, ((width - resized.width) // 2, (height - resized.height) // 2))
    return canvas


def prepare_mask(mask: Image.Image, params: Params) -> Image.Image:
    """Grey-scale mask at the output size, inverted and blurred as the request says (white = repaint)."""
    mask = mask.convert("L")
    if mask.size != (params.width, params.height):
        mask = mask.resize((params.width, params.height), Image.NEAREST)
    if params.mask_invert:
        mask = ImageOps.invert(mask)
    if params.mask_blur > 0:
        mask = mask.filter(ImageFilter.GaussianBlur(params.mask_blur))
    return mask


def paste_back(images: list[Image.Image], params: Params) -> list[Image.Image]:
    """A1111's inpaint overlay: outside the mask the original pixels come back, blended through the blurred mask
    (white = the generated pixels). The pipeline decodes the whole image, so without this every unmasked pixel
    would carry the VAE's round trip (or, for a model that denoises everything, new content)."""
    original = resize_image(params.init_image, params.width, params.height, params.resize_mode).convert("RGB")
    mask = prepare_mask(params.mask, params)
    return [Image.composite(image.convert("RGB"), original, mask) if image.size == original.size else image
            for image in images]


class _StageClock:
    """Times text encoding through forward hooks on the text encoders (no change to the math)."""

    def __init__(self, modules: list[torch.nn.Module]) -> None:
        self.text_encode = 0.0
        self._start = 0.0
        self._handles = []
        for module in modules:
            self._handles.append(module.register_forward_pre_hook(self._pre))
            self._handles.append(module.register_forward_hook(self._post))

    def _pre(self, *_: Any) -> None:
        self._start = time.perf_counter()

    def _post(self, *_: Any) -> None:
        self.text_encode += time.perf_counter() - self._start

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()


class DiffusersEngine(EngineInterface):
    """Declare `pipelines` (task → Diffusers class) and override `call_kwargs` for family extras."""

    pipelines: ClassVar[dict[Task, type]] = {}
    #: ControlNet pipelines (task -> Diffusers class) and those of ControlNet-Union models; see engines/controlnet.py
    control_pipelines: ClassVar[dict[Task, type]] = {}
    union_pipelines: ClassVar[dict[Task, type]] = {}
    #: T2I-Adapter pipelines (a `controls` unit whose model is a T2I-Adapter); engines/controlnet.py
    adapter_pipelines: ClassVar[dict[Task, type]] = {}
    text_encoder_names: ClassVar[tuple[str, ...]] = ("text_encoder", "text_encoder_2")
    family_for_sampler: ClassVar[str | None] = None
    #: textual-inversion embeddings in prompts (CLIP text encoders: SD1.5, SDXL)
    supports_embeddings: ClassVar[bool] = False
    #: request key `ip_adapter` (sdcodex.engines.ip_adapter: a UNet with Diffusers' IP-Adapter loader)
    supports_ip_adapter: ClassVar[bool] = False
    #: prompts become A1111 CLIP conditioning (sdcodex.engines.prompt_clip): "sd15" (CLIP-L) or "sdxl" (L + G)
    clip_conditioning: ClassVar[str | None] = None
    #: the model provider (sdcodex.runtime.LocalModels), set by the orchestrator: finds LoRAs, embeddings, upscalers
    provider: Any = None

    # -- modes --------------------------------------------------------------------------------
    @classmethod
    def mode_ignored_reason(cls, mode: str, entry: Any, request: dict[str, Any]) -> str | None:
        """Why `mode` cannot apply to this model (None: it applies). See sdcodex.engines.modes."""
        from .modes import mode_ignored_reason

        return mode_ignored_reason(cls, mode, entry, request)

    def validate(self, params: Params) -> list[str]:
        if params.task in (Task.IMG2IMG, Task.INPAINT) and int(params.steps * params.denoising_strength) < 1:
            raise ValidationError(
                f"steps x denoising_strength must give at least one denoising step (got {params.steps} x "
                f"{params.denoising_strength})", field="denoising_strength",
                allowed=f">= {1 / params.steps:.3f} for {params.steps} steps")
        return []

    # -- pipeline and sampler -----------------------------------------------------------------
    _control: Any = None  # the run's ControlNet units (engines/controlnet.py ControlRun), None without

    def pipeline(self, task: Task) -> Any:
        if self._control is not None and task is self._control.task:
            return self._control.pipe
        if self._control is not None and task is Task.IMG2IMG and self._control.second_cls is not None:
            return self._control.second_pipe(self.model.components)  # the hires pass of a txt2img run
        cache = self.model.__dict__.setdefault("_pipelines", {})
        if task not in cache:
            cache[task] = build_pipeline(self.pipelines[task], self.model.components)
        return cache[task]

    def sampler(self, params: Params) -> Any:
        prediction = getattr(self.model, "prediction", None) or self.prediction
        return create_sampler(params.sampler, params.scheduler, self.family_for_sampler or self.key.value,
                              dict(self.model.scheduler_config), prediction, mode=params.mode)

    # -- family hooks -------------------------------------------------------------------------
    def prompt_kwargs(self, params: Params, pipe: Any, batch_size: int, *, base_steps: int | None = None,
                      field_prefix: str = "") -> dict[str, Any]:
        """The prompt part of a pipeline call: A1111 conditioning (embeddings and a per-step plan) for CLIP
        engines, else the texts. `base_steps`: a hires pass after that many first-pass steps."""
        if self.clip_conditioning is not None:
            from .prompt_clip import prompt_kwargs

            return prompt_kwargs(pipe, params, batch_size, xl=self.clip_conditioning == "sdxl",
                                 embeddings=self._embedding_counts, base_steps=base_steps, field_prefix=field_prefix)
        prompt: Any = params.prompt if batch_size == 1 else [params.prompt] * batch_size
        negative: Any = params.negative_prompt or None
        if negative is not None and batch_size > 1:
            negative = [negative] * batch_size
        kw: dict[str, Any] = {"prompt": prompt, "negative_prompt": negative}
        if params.clip_skip > 1:
            kw["clip_skip"] = params.clip_skip - 1  # A1111's 2 is Diffusers' 1 (one layer skipped)
        return kw

    _embedding_counts: dict[str, int] = {}

    @classmethod
    def prompt_tokens(cls, text: str, emphasis: str = "Original", steps: int = 20) -> tuple[int, int] | None:
        if cls.clip_conditioning is None:
            return None
        from .prompt_clip import count_tokens

        return count_tokens(text, emphasis, steps)

    @classmethod
    def check_params(cls, params: Params) -> list[str]:
        """Checks before any model loads: a prompt longer than the chunk limit is refused (CLIP engines), a
        ControlNet unit's preprocessor must exist."""
        if getattr(params, "controls", None):
            from .controlnet import check_units

            check_units(params)
        if cls.clip_conditioning is not None:
            from .prompt_clip import check_prompts

            check_prompts(params)
        return []

    def call_kwargs(self, params: Params, pipe: Any, batch_size: int) -> dict[str, Any]:
        """Keyword arguments for one pipeline call (without generator/callback)."""
        kw: dict[str, Any] = {
            **self.prompt_kwargs(params, pipe, batch_size),
            "num_inference_steps": params.steps,
            "guidance_scale": params.cfg_scale,
        }
        if params.task is Task.TXT2IMG:
            kw.update(width=params.width, height=params.height)
        elif params.task is Task.IMG2IMG:
            kw.update(image=resize_image(params.init_image, params.width, params.height, params.resize_mode),
                      strength=params.denoising_strength)
        elif params.task is Task.INPAINT:
            kw.update(image=resize_image(params.init_image, params.width, params.height, params.resize_mode),
                      mask_image=prepare_mask(params.mask, params), strength=params.denoising_strength,
                      width=params.width, height=params.height)
            if params.inpaint_full_res:
                kw["padding_mask_crop"] = params.inpaint_full_res_padding
        kw.update(self._extra_call_kwargs)
        return kw

    #: pipeline arguments an extra adds for the run (IP-Adapter's `ip_adapter_image`)
    _extra_call_kwargs: dict[str, Any] = {}

    def planned_steps(self, params: Params) -> int:
        steps = params.steps
        if params.task in (Task.IMG2IMG, Task.INPAINT):
            steps = max(1, min(int(steps * params.denoising_strength), steps))
        return steps

    def collect(self, result: Any, out: EngineOutput, seeds: list[int]) -> None:
        out.images.extend(result.images)
        out.seeds.extend(seeds)

    # -- the shared run -----------------------------------------------------------------------
    def planned_total(self, params: Params) -> int:
        steps = self.planned_steps(params)
        if self._hires is not None:
            from .hires import planned_steps as hires_steps

            steps += hires_steps(params, self._hires)
        return steps * params.batch_count

    def generate(self, pipe: Any, params: Params, kwargs: dict[str, Any], seeds: list[int], on_step: Any,
                 out: EngineOutput) -> Any:
        """One pipeline call for one batch (two passes with hires fix)."""
        def generators(batch_seeds: list[int]) -> Any:
            gens = [torch.Generator("cpu").manual_seed(s) for s in batch_seeds]
            return gens[0] if len(gens) == 1 else gens

        if self._hires is not None:
            from .hires import run_two_passes

            return run_two_passes(self, pipe, params, kwargs, seeds, on_step, generators, self._hires, out.info,
                                  out.warnings)
        return call_pipeline(pipe, kwargs, generator=generators(seeds), callback_on_step_end=on_step)

    def apply_extras(self, params: Params, out: EngineOutput, stack: ExitStack) -> Params:
        """LoRAs (merged for this run), embeddings and hires settings; returns params with clean prompts.

        The caller's params keep the prompt as written (tags included), as A1111's infotext does."""
        from . import lora

        family = self.key.value
        native: dict[str, Any] = {}
        prompt, uses = lora.requested(params.prompt, params.loras)
        hires = None
        if params.hires and params.task is Task.TXT2IMG:
            if Task.IMG2IMG not in self.pipelines:
                raise ValidationError(f"hires fix is not available for {family}", field="hires")
            from .hires import plan

            h = dict(params.hires)
            for key in ("prompt", "negative_prompt"):
                if h.get(key):
                    h[key] = lora.parse_prompt(h[key])[0]
            hires = plan(dataclasses.replace(params, prompt=prompt, hires=h), self.size_multiple)
        if uses:
            lora.resolve_uses(self.provider, family, uses)
            report = stack.enter_context(lora.applied(self.model, family, uses))
            out.info["loras"] = report.applied
            native["lora_hashes"] = report.hashes
        texts = [prompt, params.negative_prompt or ""]
        if hires is not None:
            texts += [hires.prompt, hires.negative_prompt or ""]
        if self.supports_embeddings and self.provider is not None:
            from . import embeddings

            found = embeddings.find(self.provider, family, texts)
            if found:
                pipes = [self.pipeline(params.task)] + ([self.pipeline(Task.IMG2IMG)] if hires else [])
                ti = stack.enter_context(embeddings.applied(pipes, found, texts))
                texts = ti.prompts
                self._embedding_counts = ti.counts
                out.info["embeddings"] = ti.used
                native["ti_hashes"] = ti.hashes
        if hires is not None:
            from .hires import infotext_fields

            hires = dataclasses.replace(hires, prompt=texts[2], negative_prompt=texts[3])
            native.update(infotext_fields(hires, hires.upscaler))
        self._hires = hires
        self._extra_call_kwargs = {}
        if params.ip_adapter:
            from . import ip_adapter

            pipes = [self.pipeline(params.task)] + ([self.pipeline(Task.IMG2IMG)] if hires else [])
            self._extra_call_kwargs = stack.enter_context(ip_adapter.applied(self, pipes, params.ip_adapter, out.info))
        if native:
            out.info["infotext_native"] = native
        return dataclasses.replace(params, prompt=texts[0], negative_prompt=texts[1])

    _hires: Any = None
    #: the server's offload policy (--offload), set by the orchestrator; a request's `offload` wins
    server_offload: str | None = None
    #: the server's attention backend (--attention) and --compile, set by the orchestrator
    server_attention: str | None = None
    server_compile: bool = False

    def apply_memory_options(self, pipe: Any, params: Params, out: EngineOutput) -> None:
        """Offload policy and VAE tiling/slicing (sdcodex.engines.memory), reported in info['memory']; attention
        backend and compile (sdcodex.engines.speed), reported in info['attention'] and info['compile']."""
        from . import memory, speed

        speed.apply(self.model.components, self.device, params, out.info, self.model.__dict__.setdefault("_speed", {}),
                    self.key.value, self.server_attention, self.server_compile)
        memory.apply(pipe, self.model.components, self.device, params, out.info, out.warnings,
                     self.model.__dict__.setdefault("_memory", {}), self.server_offload)

    def run(self, params: Params, events: EventSink) -> EngineOutput:
        out = EngineOutput()
        step_cache.check(self, params)
        self._control = None
        if params.controls:
            from . import controlnet

            self._control = controlnet.prepare(self, params)
            if self._control is not None:
                out.warnings.extend(self._control.warnings)
        self.apply_memory_options(self.pipeline(params.task), params, out)
        self._embedding_counts = {}
        try:
            with ExitStack() as stack:
                params = self.apply_extras(params, out, stack)
                if self._control is not None:
                    stack.enter_context(controlnet.soft_injection(self._control.soft))
                    out.info["controls"] = self._control.report
                    out.info.setdefault("infotext_extra", {}).update(controlnet.infotext_fields(self._control.report))
                self._run(params, events, out)
        finally:
            self._control = None
        if params.cache:
            out.info.setdefault("infotext_extra", {})["Step cache"] = step_cache.infotext_value(params.cache)
        if self._hires is not None and "hires" in out.info:
            out.info["infotext_native"]["hires_upscaler"] = out.info["hires"]["upscaler"]
        return out

    def _run(self, params: Params, events: EventSink, out: EngineOutput) -> EngineOutput:
        choice = self.sampler(params)
        out.warnings.extend(choice.warnings)
        out.info.update({k: v for k, v in choice.to_info().items() if k != "warnings"})
        pipe = self.pipeline(params.task)
        pipe.scheduler = choice.scheduler
        encoders = [getattr(pipe, n) for n in self.text_encoder_names if getattr(pipe, n, None) is not None]
        clock = _StageClock(encoders)
        events.plan(self.planned_total(params))
        previewer = Previewer(self.key.value, height=params.height, width=params.width,
                              vae_scale_factor=getattr(pipe, "vae_scale_factor", 8))
        seeds = params.seeds()
        denoise = decode = 0.0
        steps_done = 0
        try:
            for batch in range(params.batch_count):
                batch_seeds = seeds[batch * params.batch_size:(batch + 1) * params.batch_size]
                marks: dict[str, float] = {}

                def on_step(p: Any, i: int, t: Any, kwargs: dict[str, Any], _b: int = batch) -> dict[str, Any]:
                    marks["last"] = time.perf_counter()
                    marks["steps"] = marks.get("steps", 0) + 1
                    total = getattr(p, "num_timesteps", None) or getattr(p, "_num_timesteps", 0) or params.steps
                    events.step(i + 1, total, image_index=_b * params.batch_size, images=params.images_total,
                                preview=lambda: previewer(kwargs.get("latents")))
                    return kwargs

                if hasattr(pipe.scheduler, "noise_sampler_seed"):
                    # Brownian-tree SDE samplers draw their own noise: seed it per image, as A1111 does
                    pipe.scheduler.noise_sampler_seed = batch_seeds[0] if len(batch_seeds) == 1 else list(batch_seeds)
                kwargs = self.call_kwargs(params, pipe, len(batch_seeds))
                if self._control is not None:
                    from .controlnet import fit_kwargs

                    for warning in fit_kwargs(pipe, kwargs, self._control.kwargs):
                        if warning not in out.warnings:
                            out.warnings.append(warning)
                te_before = clock.text_encode
                start = time.perf_counter()
                try:
                    with step_cache.applied(pipe, params.cache, self.key.value, self.planned_steps(params), out.info):
                        result = self.generate(pipe, params, kwargs, batch_seeds, on_step, out)
                except Skipped:
                    out.skipped += len(batch_seeds)
                    events.emit("skipped", seeds=batch_seeds)
                    continue
                end = time.perf_counter()
                last = marks.get("last", end)
                denoise += last - start - (clock.text_encode - te_before)
                decode += end - last
                steps_done += int(marks.get("steps", 0))
                self.collect(result, out, batch_seeds)
                if params.task is Task.INPAINT and params.mask is not None and not params.inpaint_full_res:
                    # (with "only masked" Diffusers pastes the crop back itself, padding_mask_crop)
                    out.images[-len(batch_seeds):] = paste_back(out.images[-len(batch_seeds):], params)
                for k, seed in enumerate(batch_seeds):
                    events.emit("image", index=len(out.seeds) - len(batch_seeds) + k, seed=seed)
        except Interrupted:
            out.interrupted = True
            events.emit("interrupted", kept=len(out.seeds))
        finally:
            clock.close()
        out.timings.update(text_encode=clock.text_encode, denoise=denoise, decode=decode)
        if denoise > 0 and steps_done:
            out.info["it_per_s"] = round(steps_done / denoise, 3)
        return out
