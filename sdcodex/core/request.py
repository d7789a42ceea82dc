"""The strict generation request every face builds: unknown keys, wrong types and keys that do not
apply to the task are errors that name the JSON path of the field and what is allowed."""
from __future__ import annotations

from typing import Annotated, Any, Literal, Optional

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr
from pydantic import ValidationError as PydanticValidationError

from .enums import Emphasis, EngineKey, Mode, OutputFormat, Precision, ResizeMode, Task, WeightsDtype
from .errors import ValidationError

#: attention backends a request's `attention` (and --attention) may name; what each needs: engines/speed.py
ATTENTION_BACKENDS = ("native", "sdpa", "math", "flex", "efficient", "cudnn", "flash", "flash_varlen", "flash3",
                      "sage", "sage_varlen", "xformers")
AttentionName = Literal[ATTENTION_BACKENDS]  # type: ignore[valid-type]

_STRICT = ConfigDict(extra="forbid", validate_assignment=True, use_enum_values=False)

Int = Optional[StrictInt]
Float = Optional[StrictFloat]
Str = Optional[StrictStr]
Bool = Optional[StrictBool]


class LoraSpec(BaseModel):
    model_config = _STRICT
    name: StrictStr
    weight: StrictFloat = 1.0


class HiresSpec(BaseModel):
    """Hires fix for txt2img: a second img2img pass at a larger size."""

    model_config = _STRICT
    scale: Float = Field(None, gt=1.0, le=8.0)
    resize_x: Int = Field(None, ge=64, le=8192)
    resize_y: Int = Field(None, ge=64, le=8192)
    upscaler: Str = None
    steps: Int = Field(None, ge=0, le=150)
    denoising_strength: Float = Field(None, ge=0.0, le=1.0)
    sampler: Str = None
    scheduler: Str = None
    prompt: Str = None
    negative_prompt: Str = None
    cfg_scale: Float = Field(None, ge=0.0, le=30.0)


def _on_off(value: Any) -> Any:
    """true/false (the earlier boolean form) read as "on"/"off"."""
    return ("on" if value else "off") if isinstance(value, bool) else value


#: step-caching kinds (Diffusers' cache hooks) and the spec keys each one takes
CACHE_KINDS = ("first_block", "taylorseer", "mag")
CACHE_KEYS = {"first_block": ("threshold",), "mag": ("threshold",), "taylorseer": ("interval", "warmup")}


class CacheSpec(BaseModel):
    """Step caching for DiT families: reuse transformer work between steps (see docs/memory.md)."""

    model_config = _STRICT
    kind: Literal["first_block", "taylorseer", "mag"]
    #: first_block: relative change of the first block's residual below which the other blocks are skipped;
    #: mag: accumulated magnitude error allowed before a full compute
    threshold: Float = Field(None, gt=0.0, le=1.0)
    #: taylorseer: a full compute every `interval` steps, predicted in between
    interval: Int = Field(None, ge=1, le=100)
    #: taylorseer: steps computed fully at the start
    warmup: Int = Field(None, ge=0, le=500)


def _axis_values(value: Any) -> Any:
    """A string, or a list of strings and numbers."""
    if isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, (str, int, float)) for v in value)):
        return value
    raise ValueError("must be a string (A1111 syntax: 1-5, 1-10 (+2), 0.5-1.5 [5], a, b) or a list of values")


class XyzAxis(BaseModel):
    """One axis of an X/Y/Z plot: a request key (or prompt_sr, prompt_order, size) and its values, as A1111's
    text (`1-5`, `1-10 (+2)`, `0.5-1.5 [5]`, comma separated with CSV quotes) or a JSON list (docs/xyz.md)."""

    model_config = _STRICT
    type: StrictStr
    values: Annotated[Any, BeforeValidator(_axis_values)]


class XyzSpec(BaseModel):
    """An X/Y/Z plot over the request (A1111's script): one job, a labelled grid plus every cell's image."""

    model_config = _STRICT
    x: Optional[XyzAxis] = None
    y: Optional[XyzAxis] = None
    z: Optional[XyzAxis] = None
    draw_legend: StrictBool = True
    #: list every cell's image in the result after the grid (A1111 "Include Sub Images"); cells are saved anyway
    include_sub_images: StrictBool = False
    #: save each Z value's X/Y grid too (A1111 "Include Sub Grids")
    include_sub_grids: StrictBool = False
    #: leave seed -1 random per cell (A1111 "Keep -1 for seeds")
    keep_random_seeds: StrictBool = False
    vary_seeds_x: StrictBool = False
    vary_seeds_y: StrictBool = False
    vary_seeds_z: StrictBool = False
    margin_size: StrictInt = Field(0, ge=0, le=500)


#: a control unit's resize modes (sd-webui-controlnet's "Just Resize", "Crop and Resize", "Resize and Fill")
CONTROL_RESIZE_MODES = ("just_resize", "crop_and_resize", "resize_and_fill")
#: balanced: the control applies to both CFG halves at its weight; prompt: A1111's "My prompt is more important"
#: (soft injection: deeper residuals weaker); controlnet: "ControlNet is more important" (guess mode: the control
#: applies to the conditional half only)
CONTROL_MODES = ("balanced", "prompt", "controlnet")
#: sd-webui-controlnet's names (UI, API strings, infotext) of the resize and control modes, in its index order
CONTROL_RESIZE_NAMES = {"just_resize": "Just Resize", "crop_and_resize": "Crop and Resize",
                        "resize_and_fill": "Resize and Fill"}
CONTROL_MODE_NAMES = {"balanced": "Balanced", "prompt": "My prompt is more important",
                      "controlnet": "ControlNet is more important"}
CONTROL_WEIGHT_MAX = 2.0
MAX_CONTROLS = 8


class ControlSpec(BaseModel):
    """One ControlNet unit: a control image, the ControlNet that reads it, and how strongly and when it steers."""

    model_config = _STRICT
    image: StrictStr
    model: StrictStr
    #: preprocessor run on `image` first ("none": the image already is the control map)
    module: StrictStr = "none"
    weight: StrictFloat = Field(1.0, ge=0.0, le=CONTROL_WEIGHT_MAX)
    guidance_start: StrictFloat = Field(0.0, ge=0.0, le=1.0)
    guidance_end: StrictFloat = Field(1.0, ge=0.0, le=1.0)
    control_mode: Literal["balanced", "prompt", "controlnet"] = "balanced"
    resize_mode: Literal["just_resize", "crop_and_resize", "resize_and_fill"] = "crop_and_resize"
    #: the preprocessor resolution follows the output size (A1111's "Pixel Perfect")
    pixel_perfect: StrictBool = False
    processor_res: StrictInt = Field(512, ge=64, le=4096)
    threshold_a: Float = None
    threshold_b: Float = None
    #: ControlNet-Union models: which control type the image is (e.g. "canny", "depth", "openpose")
    union_type: Str = None


class IpAdapterSpec(BaseModel):
    """IP-Adapter (image prompt): reference image(s) condition the denoiser through the adapter `model` (an
    IP-Adapter file in the models folder), with the CLIP `image_encoder` it was trained on (default: the one in
    the models folder whose size fits)."""

    model_config = _STRICT
    model: StrictStr
    #: base64 reference images, 1 to 4 (each adds the adapter's image tokens)
    images: list[StrictStr] = Field(min_length=1, max_length=4)
    scale: StrictFloat = Field(1.0, ge=0.0, le=2.0)
    image_encoder: Str = None


class GenerationRequest(BaseModel):
    """Every native key. All are optional except `task`; a preset fills what the request leaves out."""

    model_config = _STRICT

    task: Task
    model: Str = None
    engine: Optional[EngineKey] = None
    mode: Optional[Mode] = None
    preset: Str = None

    prompt: Str = None
    negative_prompt: Str = None
    #: names of prompt styles (styles.csv) applied to prompt and negative_prompt, in order
    styles: Optional[list[StrictStr]] = Field(None, max_length=64)
    width: Int = Field(None, ge=8, le=8192)
    height: Int = Field(None, ge=8, le=8192)
    steps: Int = Field(None, ge=1, le=500)
    cfg_scale: Float = Field(None, ge=0.0, le=50.0)
    sampler: Str = None
    scheduler: Str = None
    seed: Int = Field(None, ge=-1, le=2**32 - 1)
    batch_size: Int = Field(None, ge=1, le=64)
    batch_count: Int = Field(None, ge=1, le=1000)
    #: re-make image `batch_index` of a batch of `batch_size` exactly (seed is that image's own seed)
    batch_index: Int = Field(None, ge=0, le=63)
    clip_skip: Int = Field(None, ge=1, le=12)
    emphasis: Optional[Emphasis] = None
    pad_cond_uncond: Bool = None
    vae: Str = None
    precision: Optional[Precision] = None
    weights_dtype: Optional[WeightsDtype] = None
    output_format: Optional[OutputFormat] = None
    loras: Optional[list[LoraSpec]] = None
    hires: Optional[HiresSpec] = None

    init_image: Str = None
    #: reference images (FLUX.2 editing, Qwen-Image-Edit): each decoded like init_image, at most the engine's
    #: `max_images`
    images: Optional[list[StrictStr]] = Field(None, min_length=1, max_length=16)
    mask: Str = None
    denoising_strength: Float = Field(None, ge=0.0, le=1.0)
    mask_blur: Int = Field(None, ge=0, le=256)
    mask_invert: Bool = None
    inpaint_full_res: Bool = None
    inpaint_full_res_padding: Int = Field(None, ge=0, le=1024)
    resize_mode: Optional[ResizeMode] = None

    upscaler: Str = None
    scale: Float = Field(None, gt=0.0, le=16.0)
    resize_x: Int = Field(None, ge=1, le=16384)
    resize_y: Int = Field(None, ge=1, le=16384)
    tile_size: Int = Field(None, ge=0, le=4096)
    tile_overlap: Int = Field(None, ge=0, le=512)

    num_frames: Int = Field(None, ge=1, le=1024)
    fps: Float = Field(None, gt=0.0, le=240.0)
    motion_bucket_id: Int = Field(None, ge=0, le=1023)
    noise_aug_strength: Float = Field(None, ge=0.0, le=10.0)
    decode_chunk_size: Int = Field(None, ge=1, le=1024)
    distilled_cfg_scale: Float = Field(None, ge=0.0, le=50.0)
    guidance_scale_2: Float = Field(None, ge=0.0, le=50.0)
    #: keep the sound track a video engine makes (LTX-2); false writes the video silent
    audio: Bool = None
    flow_shift: Float = Field(None, gt=0.0, le=100.0)
    text_encoders: Optional[list[StrictStr]] = None
    offload: Optional[Literal["auto", "none", "model", "group", "sequential"]] = None
    #: attention backend of the denoiser (Diffusers' attention dispatcher); see docs/memory.md
    attention: Optional[AttentionName] = None
    #: "auto" (video, or an image whose decode would not fit), "on", "off"; true/false are "on"/"off"
    vae_tiling: Optional[Annotated[Literal["auto", "on", "off"], BeforeValidator(_on_off)]] = None
    cache: Optional[CacheSpec] = None
    #: an X/Y/Z plot over this request (txt2img, img2img, inpaint); see docs/xyz.md
    xyz: Optional[XyzSpec] = None
    #: ControlNet units (txt2img, img2img, inpaint); see docs/controlnet.md
    controls: Optional[list[ControlSpec]] = Field(None, max_length=MAX_CONTROLS)
    #: IP-Adapter image prompt (SD1.5, SDXL); see docs/controlnet.md
    ip_adapter: Optional[IpAdapterSpec] = None


_COMMON = {"task", "model", "engine", "mode", "preset", "precision", "weights_dtype", "output_format", "vae", "seed",
           "batch_size", "batch_count", "batch_index"}
_DIFFUSION = {"prompt", "negative_prompt", "styles", "width", "height", "steps", "cfg_scale", "sampler", "scheduler",
              "clip_skip", "emphasis", "pad_cond_uncond", "loras", "distilled_cfg_scale", "flow_shift", "text_encoders", "offload", "vae_tiling",
              "cache", "attention"}
_IMG_IN = {"init_image", "denoising_strength", "resize_mode"}
_INPAINT = {"mask", "mask_blur", "mask_invert", "inpaint_full_res", "inpaint_full_res_padding"}
_VIDEO = {"num_frames", "fps", "decode_chunk_size", "guidance_scale_2", "audio"}

#: Which request keys apply to which task. A key given for a task outside its set is an error.
TASK_KEYS: dict[Task, frozenset[str]] = {
    Task.TXT2IMG: frozenset(_COMMON | _DIFFUSION | {"hires", "images", "xyz", "controls", "ip_adapter"}),
    Task.IMG2IMG: frozenset(_COMMON | _DIFFUSION | _IMG_IN | {"xyz", "controls", "ip_adapter"}),
    Task.INPAINT: frozenset(_COMMON | _DIFFUSION | _IMG_IN | _INPAINT | {"xyz", "controls", "ip_adapter"}),
    Task.UPSCALE: frozenset({"task", "model", "engine", "preset", "output_format", "init_image", "upscaler",
                             "scale", "resize_x", "resize_y", "tile_size", "tile_overlap", "seed"}),
    Task.TXT2VID: frozenset(_COMMON | _DIFFUSION | _VIDEO),
    Task.IMG2VID: frozenset(_COMMON | _DIFFUSION | _VIDEO | {"init_image", "resize_mode", "motion_bucket_id",
                                                              "noise_aug_strength"}),
}

REQUEST_KEYS: frozenset[str] = frozenset(GenerationRequest.model_fields)


def json_path(loc: tuple[Any, ...]) -> str:
    """('hires', 'steps') -> 'hires.steps'; ('loras', 0, 'name') -> 'loras[0].name'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(request)"


def _allowed_for(error: dict[str, Any]) -> Any:
    ctx = error.get("ctx") or {}
    if "expected" in ctx:
        return ctx["expected"]
    bounds = {k: ctx[k] for k in ("ge", "gt", "le", "lt", "pattern") if k in ctx}
    return ", ".join(f"{k} {v}" for k, v in bounds.items()) or None


def from_pydantic(exc: PydanticValidationError, *, prefix: str = "") -> ValidationError:
    """Turn pydantic's error list into our ValidationError; the first problem is the headline."""
    problems = []
    for err in exc.errors():
        path = json_path(tuple(err["loc"]))
        if prefix:
            path = f"{prefix}.{path}" if path != "(request)" else prefix
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        problems.append({"field": path, "message": msg, "allowed": _allowed_for(err)})
    first = problems[0]
    allowed = first["allowed"]
    if first["message"] == "unknown key":
        allowed = None
    message = first["message"]
    if len(problems) > 1:
        message += f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})"
    return ValidationError(message, field=first["field"], allowed=allowed, errors=problems)


def check_task_keys(data: dict[str, Any], task: Task) -> None:
    """A key that does not apply to the task is an error naming the field and where it applies."""
    allowed = TASK_KEYS[task]
    for key in data:
        if key in REQUEST_KEYS and key not in allowed:
            where = sorted(t.value for t, keys in TASK_KEYS.items() if key in keys)
            raise ValidationError(f"does not apply to task {task.value!r} (it applies to: {', '.join(where)})",
                                  field=key)


def validate_request(data: Any, *, prefix: str = "") -> GenerationRequest:
    """Validate a raw JSON object into a GenerationRequest. Raises ValidationError."""
    if not isinstance(data, dict):
        raise ValidationError(f"a request must be a JSON object, not {type(data).__name__}", field=prefix or None)
    if "task" not in data:
        raise ValidationError("is required", field="task", allowed=Task.values())
    try:
        req = GenerationRequest.model_validate(data)
    except PydanticValidationError as exc:
        raise from_pydantic(exc, prefix=prefix) from None
    check_task_keys(data, req.task)
    if req.cache is not None:
        check_cache_keys(req.cache, prefix)
    for i, unit in enumerate(req.controls or []):
        if unit.guidance_start > unit.guidance_end:
            raise ValidationError(f"must not be below guidance_start ({unit.guidance_start:g})",
                                  field=f"{prefix + '.' if prefix else ''}controls[{i}].guidance_end",
                                  allowed=f"{unit.guidance_start:g}..1")
    return req


def check_cache_keys(spec: CacheSpec, prefix: str = "") -> None:
    """A cache key the chosen kind does not take is an error naming it and the kinds that take it."""
    for key in ("threshold", "interval", "warmup"):
        if getattr(spec, key) is not None and key not in CACHE_KEYS[spec.kind]:
            where = [k for k, keys in CACHE_KEYS.items() if key in keys]
            raise ValidationError(f"does not apply to cache kind {spec.kind!r} (it applies to: {', '.join(where)})",
                                  field=f"{prefix + '.' if prefix else ''}cache.{key}",
                                  allowed=list(CACHE_KEYS[spec.kind]))

