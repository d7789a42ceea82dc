"""ControlNet units for the engines over Diffusers (SD1.5, SD2, SDXL, SD3, FLUX, Qwen-Image, Z-Image): find and load each unit's ControlNet, make
its control image (preprocessor, pixel-perfect resolution, resize mode), and run the family's ControlNet pipeline
built from the loaded base components (no reload of the base) with the units' weights, guidance start/end and
control modes. Several units run as Diffusers' MultiControlNetModel / FluxMultiControlNetModel.

An engine opts in by declaring `control_pipelines` (task -> Diffusers class) and, for ControlNet-Union models,
`union_pipelines`; the shared base calls `prepare` before a run and `pipeline()` then returns the ControlNet one.

Control modes (A1111's names in brackets):
  * balanced ("Balanced"): the control steers both CFG halves at its weight.
  * prompt ("My prompt is more important"): soft injection — residual i of n is scaled by 0.825^(n-1-i), so the
    shallow layers that fix details are weakest and the deepest (the middle block) is at full weight.
  * controlnet ("ControlNet is more important"): Diffusers' guess mode — the control applies to the conditional
    half only, its residuals scaled from 0.1 (shallowest) to 1.0 (middle block).
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch
from PIL import Image

from sdcodex.core.enums import ResizeMode, Task
from sdcodex.core.errors import ValidationError
from sdcodex.core.request import CONTROL_MODE_NAMES, CONTROL_RESIZE_NAMES

from .base import build_pipeline, resize_image
from .lora import check_family, resolve_file

#: the pipeline call keys a ControlNet run adds (a hires second pass replaces them with its own)
CALL_KEYS = ("controlnet_conditioning_scale", "control_guidance_start", "control_guidance_end", "guess_mode",
             "control_image", "control_mode")
SOFT_INJECTION_BASE = 0.825   # sd-webui-controlnet's "My prompt is more important" layer decay
MAX_CACHED = 4                # ControlNets kept loaded beside one base model

#: Diffusers' class running several ControlNets of a family (default MultiControlNetModel; None: one unit only)
MULTI_CONTROLNETS: dict[str, str | None] = {"flux": "FluxMultiControlNetModel", "sd3": "SD3MultiControlNetModel",
                                            "qwen_image": "QwenImageMultiControlNetModel", "z_image": None}
#: families whose multi class runs one net over several images (QwenImageMultiControlNetModel)
ONE_NET_MULTI = frozenset({"qwen_image"})

#: ControlNet-Union control types, in the order of the model's control_mode index (xinsir's SDXL Union / ProMax)
SDXL_UNION_TYPES = ("openpose", "depth", "hed", "canny", "normal", "segment", "tile", "repaint")
#: InstantX / Shakker-Labs FLUX.1-dev ControlNet-Union
FLUX_UNION_TYPES = ("canny", "tile", "depth", "blur", "pose", "gray", "lq")


def check_units(params: Any) -> None:
    """Checks that need no model: each unit's module is a preprocessor that exists (extension key or UI alias)."""
    from .preprocessors import get_module

    for i, unit in enumerate(getattr(params, "controls", None) or []):
        get_module(unit["module"], field=f"controls[{i}].module")


def pixel_perfect_resolution(image_size: tuple[int, int], width: int, height: int, resize_mode: str) -> int:
    """A1111's "Pixel Perfect": the preprocessor resolution at which the control map lands on the output size — the
    short side scaled by the larger (crop) or smaller (fill) of the two output/input ratios."""
    raw_w, raw_h = image_size
    k_h, k_w = height / raw_h, width / raw_w
    k = min(k_h, k_w) if resize_mode == ResizeMode.RESIZE_AND_FILL.value else max(k_h, k_w)
    return int(round(k * min(raw_w, raw_h)))


def control_image(unit: dict[str, Any], width: int, height: int, *, index: int = 0, seed: int = 0,
                  models_dir: Any = None, device: str = "cpu") -> Any:
    """The unit's control map at the output size: its preprocessor (module) first, then its resize mode. An inpaint
    module's RGBA result becomes the float control tensor inpaint ControlNets take (-1 on masked pixels)."""
    from .preprocessors import get_module, inpaint_condition, run_preprocessor

    image = unit["image"]
    if get_module(unit["module"]).name != "none":
        res = (pixel_perfect_resolution(image.size, width, height, unit["resize_mode"]) if unit["pixel_perfect"]
               else unit["processor_res"])
        image = run_preprocessor(unit["module"], image, resolution=res, threshold_a=unit.get("threshold_a"),
                                 threshold_b=unit.get("threshold_b"), seed=seed, models_dir=models_dir,
                                 device=device, field=f"controls[{index}].module")
    if image.mode == "RGBA" and unit["module"] != "none":
        if image.size != (width, height):
            image = image.resize((width, height), Image.NEAREST)
        return torch.from_numpy(inpaint_condition(image)).permute(2, 0, 1)[None]
    return resize_image(image.convert("RGB"), width, height, ResizeMode(unit["resize_mode"]))


@dataclass
class ControlRun:
    """What a run with controls uses: the ControlNet pipeline for `task`, the kwargs every call adds, the nets
    soft injection scales, and the report (info and infotext)."""

    task: Task
    pipe: Any
    kwargs: dict[str, Any]
    soft: list[Any] = field(default_factory=list)
    report: list[dict[str, Any]] = field(default_factory=list)
    #: hires fix: the ControlNet img2img pipeline (built on first use) and the control kwargs at a size
    second_cls: Any = None
    second_kwargs: Any = None
    _second_pipe: Any = None
    #: said in the result's warnings (e.g. T2I-Adapter units with hires fix)
    warnings: list[str] = field(default_factory=list)

    def second_pipe(self, components: dict[str, Any]) -> Any:
        """The hires pass's ControlNet img2img pipeline over the same ControlNet(s) (A1111's extension controls
        both passes)."""
        if self._second_pipe is None:
            self._second_pipe = build_pipeline(self.second_cls, components, controlnet=self.pipe.controlnet,
                                               add_watermarker=False)
        return self._second_pipe


def _load(engine: Any, entry: Any) -> Any:
    """The unit's ControlNet, loaded once per base model (on its device and dtype) and kept for the next run."""
    from sdcodex.models.controlnet import load_controlnet

    cache: dict[str, Any] = engine.model.__dict__.setdefault("_controlnets", {})
    key = str(entry.path)
    if key not in cache:
        base = engine.model.components.get("unet") or engine.model.components.get("transformer")
        ref = next(base.parameters())
        dtype = ref.dtype if ref.is_floating_point() and ref.dtype.itemsize >= 2 else torch.float32
        while len(cache) >= MAX_CACHED:
            cache.pop(next(iter(cache)))
        cache[key] = load_controlnet(entry.path, dtype=dtype, device=engine.device)
    else:
        cache[key] = cache.pop(key)  # most recently used last
    return cache[key]


def _union_index(engine: Any, net: Any, unit: dict[str, Any], field_: str) -> int:
    """The control type's index in the Union model (an SDXL Union has 6 types, ProMax 8; FLUX Union its num_mode)."""
    types = FLUX_UNION_TYPES if engine.key.value == "flux" else SDXL_UNION_TYPES
    count = getattr(net.config, "num_mode", None) or getattr(net.config, "num_control_type", None) or len(types)
    types = types[:count]
    kind = (unit.get("union_type") or "").lower()
    if kind not in types:
        raise ValidationError("a ControlNet-Union model needs the control type of its image", field=f"{field_}.union_type",
                              allowed=list(types))
    return types.index(kind)


def _title(engine: Any, entry: Any) -> str:
    provider = engine.provider
    digest = provider.short_hash(entry) if provider is not None and hasattr(provider, "short_hash") else None
    return f"{entry.name} [{digest[:8]}]" if digest else entry.name


def step_callback_bridge(pipeline_cls: type) -> type:
    """A subclass of a pipeline that only has the legacy `callback(step, t, latents)` (Diffusers' T2I-Adapter
    pipelines) taking `callback_on_step_end` as the others do, for progress and previews. Per-step conditioning
    (prompt editing / alternation swap `prompt_embeds` in that callback) cannot reach such a pipeline: refused."""
    import functools

    base_call = pipeline_cls.__call__

    @functools.wraps(base_call)
    def __call__(self: Any, *args: Any, callback_on_step_end: Any = None,
                 callback_on_step_end_tensor_inputs: Any = None, **kwargs: Any) -> Any:
        if set(callback_on_step_end_tensor_inputs or ()) - {"latents"}:
            raise ValidationError("prompt editing and alternation ([a:b:n], [a|b]) change the conditioning per step, "
                                  "which Diffusers' T2I-Adapter pipelines cannot take", field="prompt")
        if callback_on_step_end is not None:
            def callback(step: int, t: Any, latents: Any) -> None:
                callback_on_step_end(self, step, t, {"latents": latents})
            kwargs["callback"] = callback
        return base_call(self, *args, **kwargs)

    return type(pipeline_cls.__name__, (pipeline_cls,), {"__call__": __call__, "__module__": __name__})


def seeded_global_rng(pipeline_cls: type) -> type:
    """A subclass of a pipeline that draws from torch's global RNG (Diffusers' SD3 ControlNet pipeline samples the
    control image's VAE latents without a generator): each call runs with the global RNG seeded from the call's
    generator seed and restored afterwards, so a request's seed decides the image, as everywhere else."""
    import functools

    base_call = pipeline_cls.__call__

    @functools.wraps(base_call)
    def __call__(self: Any, *args: Any, **kwargs: Any) -> Any:
        gen = kwargs.get("generator")
        gen = gen[0] if isinstance(gen, (list, tuple)) else gen
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):
            if gen is not None:
                torch.manual_seed(gen.initial_seed())
            return base_call(self, *args, **kwargs)

    return type(pipeline_cls.__name__, (pipeline_cls,), {"__call__": __call__, "__module__": __name__})


def _prepare_adapters(engine: Any, params: Any, units: list[dict[str, Any]], nets: list[Any],
                      images: list[Any], report: list[dict[str, Any]]) -> ControlRun:
    """T2I-Adapter units: Diffusers' adapter pipeline (txt2img), weight = adapter_conditioning_scale, the guidance
    window [0, end] = adapter_conditioning_factor (SDXL; SD1.5's pipeline applies the adapter at every step)."""
    from diffusers import MultiAdapter

    table = engine.adapter_pipelines
    if params.task not in table:
        raise ValidationError(f"T2I-Adapters run on {', '.join(t.value for t in table) or 'no task'} here (Diffusers "
                              f"has no T2I-Adapter {params.task.value} pipeline)", field="controls",
                              allowed=[t.value for t in table])
    import inspect

    takes_factor = "adapter_conditioning_factor" in inspect.signature(table[params.task].__call__).parameters
    for i, unit in enumerate(units):
        where = f"controls[{i}]"
        if unit["control_mode"] != "balanced":
            raise ValidationError("T2I-Adapters have no prompt/controlnet modes", field=f"{where}.control_mode",
                                  allowed=["balanced"])
        if unit["guidance_start"] != 0:
            raise ValidationError("a T2I-Adapter acts from the first step", field=f"{where}.guidance_start",
                                  allowed=[0])
        if unit["guidance_end"] != units[0]["guidance_end"]:
            raise ValidationError("T2I-Adapter units share one guidance end (Diffusers' adapter_conditioning_factor)",
                                  field=f"{where}.guidance_end", allowed=[units[0]["guidance_end"]])
        if not takes_factor and unit["guidance_end"] != 1:
            raise ValidationError(f"{engine.key.value} T2I-Adapters act on every step (Diffusers' pipeline has no "
                                  f"adapter_conditioning_factor)", field=f"{where}.guidance_end", allowed=[1])
    maps = [img.convert("L") if isinstance(img, Image.Image) and net.config.in_channels == 1 else img
            for img, net in zip(images, nets)]
    one = len(units) == 1
    adapter = nets[0] if one else MultiAdapter(nets)
    pipe = build_pipeline(table[params.task], engine.model.components, adapter=adapter)
    kw: dict[str, Any] = {"image": maps[0] if one else maps,
                          "adapter_conditioning_scale": units[0]["weight"] if one else [u["weight"] for u in units]}
    if takes_factor:
        kw["adapter_conditioning_factor"] = units[0]["guidance_end"]
    run = ControlRun(params.task, pipe, kw, [], report)
    if getattr(params, "hires", None):
        run.warnings.append("T2I-Adapter units steer the first pass only: the hires pass is plain img2img (Diffusers "
                            "has no T2I-Adapter img2img pipeline)")
    return run


def prepare(engine: Any, params: Any) -> ControlRun | None:
    """Resolve, check and load every unit; build the ControlNet pipeline for the run's task. None without units."""
    units = params.controls or []
    if not units:
        return None
    family = engine.key.value
    flux = family == "flux"
    transformer = engine.model.components.get("unet") is None   # FLUX, SD3: ControlNets of a transformer
    nets, images, report, union_modes, adapters = [], [], [], [], []
    for i, unit in enumerate(units):
        where = f"controls[{i}]"
        entry = resolve_file(engine.provider, unit["model"], "controlnet", f"{where}.model", family)
        check_family(entry, family, f"{where}.model", "ControlNet")
        if entry.family is None:
            raise ValidationError(f"ControlNet {entry.name!r} is for a model family Codex cannot tell; this model is "
                                  f"{family}", field=f"{where}.model", allowed=[family])
        adapters.append(bool(entry.variant.get("adapter")))
        if adapters[-1] != adapters[0]:
            raise ValidationError("T2I-Adapter and ControlNet units cannot be mixed in one request (Diffusers runs "
                                  "one or the other)", field=f"{where}.model")
        if transformer and unit["control_mode"] != "balanced":
            raise ValidationError(f"{engine.label} ControlNets have no prompt/controlnet modes",
                                  field=f"{where}.control_mode", allowed=["balanced"])
        net = _load(engine, entry)
        union = bool(entry.variant.get("union"))
        if union:
            union_modes.append(_union_index(engine, net, unit, where))
        elif unit.get("union_type"):
            raise ValidationError(f"ControlNet {entry.name!r} is not a ControlNet-Union model",
                                  field=f"{where}.union_type")
        nets.append(net)
        images.append(control_image(unit, params.width, params.height, index=i, seed=params.seed,
                                    models_dir=getattr(engine.provider, "models_dir", None), device=engine.device))
        report.append({"module": unit["module"], "model": _title(engine, entry), "weight": unit["weight"],
                       "resize_mode": unit["resize_mode"], "processor_res": unit["processor_res"],
                       "threshold_a": unit.get("threshold_a"), "threshold_b": unit.get("threshold_b"),
                       "guidance_start": unit["guidance_start"], "guidance_end": unit["guidance_end"],
                       "pixel_perfect": unit["pixel_perfect"], "control_mode": unit["control_mode"],
                       **({"union_type": unit["union_type"]} if union else {})})
    if adapters[0]:
        return _prepare_adapters(engine, params, units, nets, images, report)
    if union_modes and len(union_modes) != len(units):
        raise ValidationError("ControlNet-Union units cannot be mixed with plain ControlNets in one request",
                              field="controls")
    guess = [u["control_mode"] == "controlnet" for u in units]
    if any(guess) and not all(guess):
        first = guess.index(not guess[0])
        raise ValidationError("control_mode 'controlnet' (guess mode) applies to every unit of a request: give all "
                              "units 'controlnet' or none", field=f"controls[{first}].control_mode",
                              allowed=[units[0]["control_mode"]])
    one = len(units) == 1
    table = engine.union_pipelines if union_modes else engine.control_pipelines
    if params.task not in table:
        raise ValidationError(f"{family} has no ControlNet pipeline for {params.task.value}", field="controls")
    if union_modes and not flux:
        if len({id(n) for n in nets}) != 1:
            raise ValidationError("SDXL ControlNet-Union units must all name the same Union model (it reads every "
                                  "image itself)", field="controls")
        controlnet: Any = nets[0]   # one Union model reads every image (SDXL Union pipelines take image lists)
        one = True
    elif one:
        controlnet = nets[0]
    else:
        import diffusers

        multi = MULTI_CONTROLNETS.get(family, "MultiControlNetModel")
        if multi is None:
            raise ValidationError(f"{engine.label} runs one ControlNet unit (Diffusers' pipeline takes one control "
                                  f"image)", field="controls", allowed="1 unit")
        if family in ONE_NET_MULTI:
            other = next((i for i, n in enumerate(nets) if n is not nets[0]), None)
            if other is not None:
                raise ValidationError(f"{engine.label} ControlNet units must all name the same model (Diffusers' "
                                      f"{multi} runs one net, e.g. a Union model, over every image)",
                                      field=f"controls[{other}].model", allowed=[units[0]["model"]])
            nets = nets[:1]
        controlnet = getattr(diffusers, multi)(nets)
    pipe = build_pipeline(table[params.task], engine.model.components, controlnet=controlnet, add_watermarker=False)

    def each(key: str) -> Any:
        values = [u[key] for u in units]
        return values[0] if one and not union_modes else values

    kw: dict[str, Any] = {"controlnet_conditioning_scale": each("weight")}
    import inspect

    if "control_guidance_start" in inspect.signature(table[params.task].__call__).parameters:
        kw.update(control_guidance_start=each("guidance_start"), control_guidance_end=each("guidance_end"))
    else:  # Z-Image: the control acts on every step
        for i, unit in enumerate(units):
            for key, full in (("guidance_start", 0.0), ("guidance_end", 1.0)):
                if unit[key] != full:
                    raise ValidationError(f"{engine.label} ControlNets act on every step (Diffusers' pipeline has no "
                                          f"control guidance window)", field=f"controls[{i}].{key}", allowed=[full])
    if union_modes and not flux and one:
        kw["controlnet_conditioning_scale"] = units[0]["weight"]
    image = images[0] if one and not union_modes else images
    image_key = "image" if params.task is Task.TXT2IMG and not transformer and not union_modes else "control_image"
    kw[image_key] = image
    if union_modes:
        kw["control_mode"] = union_modes if not (flux and one) else union_modes[0]
    if not transformer:
        kw["guess_mode"] = all(guess)
    soft = [n for n, u in zip(nets, units) if u["control_mode"] == "prompt"]

    def second(width: int, height: int) -> dict[str, Any]:
        maps = [control_image(u, width, height, index=i, seed=params.seed,
                              models_dir=getattr(engine.provider, "models_dir", None), device=engine.device)
                for i, u in enumerate(units)]
        kw2 = {k: v for k, v in kw.items() if k != image_key}
        kw2["control_image"] = maps[0] if one and not union_modes else maps
        return kw2

    hires = params.task is Task.TXT2IMG and Task.IMG2IMG in table
    return ControlRun(params.task, pipe, kw, soft, report, table[Task.IMG2IMG] if hires else None,
                      second if hires else None)


def fit_kwargs(pipe: Any, kwargs: dict[str, Any], control: dict[str, Any]) -> list[str]:
    """Add the control kwargs to a call's kwargs; drop (and say so) what the ControlNet pipeline does not take
    (e.g. FLUX's true CFG in its ControlNet img2img/inpaint pipelines)."""
    import inspect

    kwargs.update(control)
    takes = set(inspect.signature(type(pipe).__call__).parameters)
    dropped = [k for k in kwargs if not k.startswith("_") and k not in takes]
    for key in dropped:
        kwargs.pop(key)
    return [f"{key} is not applied with ControlNet units ({type(pipe).__name__} does not take it)" for key in dropped]


@contextmanager
def soft_injection(nets: list[Any]) -> Iterator[None]:
    """While active, each net's residuals are scaled by 0.825^(n-1-i) (A1111's "My prompt is more important")."""
    patched = []
    for net in {id(n): n for n in nets}.values():
        original = net.forward

        def forward(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            kwargs["return_dict"] = False
            down, mid = _original(*args, **kwargs)
            n = len(down) + 1
            down = [d * SOFT_INJECTION_BASE ** (n - 1 - i) for i, d in enumerate(down)]
            return down, mid

        net.forward = forward
        patched.append(net)
    try:
        yield
    finally:
        for net in patched:
            del net.forward


def infotext_fields(report: list[dict[str, Any]]) -> dict[str, str]:
    """A1111's `ControlNet N: "Module: ..., Model: ..., ..."` infotext fields (the extension's labels)."""
    out = {}
    for i, unit in enumerate(report):
        parts = [("Module", unit["module"]), ("Model", unit["model"]), ("Weight", unit["weight"]),
                 ("Resize Mode", CONTROL_RESIZE_NAMES[unit["resize_mode"]]),
                 ("Processor Res", unit["processor_res"]), ("Threshold A", unit.get("threshold_a")),
                 ("Threshold B", unit.get("threshold_b")), ("Guidance Start", unit["guidance_start"]),
                 ("Guidance End", unit["guidance_end"]), ("Pixel Perfect", unit["pixel_perfect"]),
                 ("Control Mode", CONTROL_MODE_NAMES[unit["control_mode"]])]
        if unit.get("union_type"):
            parts.append(("Union Control Type", unit["union_type"]))
        out[f"ControlNet {i}"] = ", ".join(f"{k}: {v}" for k, v in parts if v is not None)
    return out


__all__ = ["prepare", "step_callback_bridge", "seeded_global_rng", "soft_injection", "check_units", "control_image", "pixel_perfect_resolution",
           "infotext_fields", "fit_kwargs", "ControlRun", "CALL_KEYS"]
