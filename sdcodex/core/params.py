"""Typed, resolved parameters for one run and `parse_params`, which applies the family's rules
(size multiples, ranges, frame rules) to a preset-filled request."""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional

from .enums import Emphasis, EngineKey, Mode, OutputFormat, Precision, ResizeMode, Task, WeightsDtype
from .errors import UnsupportedTaskError, ValidationError
from .registry import get_engine
from .request import GenerationRequest, validate_request

ImageLoader = Callable[[str, str], Any]  # (value, field) -> PIL.Image

MAX_SEED = 2**32 - 1


def batch_extras(seed: int, first_seed: int, batch_size: int) -> dict[str, int]:
    """"Batch size"/"Batch pos" of the image made with `seed` in a job whose first image used `first_seed` (image i
    uses first_seed + i); empty for a batch of one, as A1111 leaves them out."""
    if batch_size <= 1:
        return {}
    return {"Batch size": batch_size, "Batch pos": (seed - first_seed) % (MAX_SEED + 1) % batch_size}


@dataclass
class Params:
    engine: EngineKey
    task: Task
    mode: Mode = Mode.NORMAL
    prompt: str = ""
    negative_prompt: str = ""
    width: int = 512
    height: int = 512
    steps: int = 20
    cfg_scale: float = 7.0
    sampler: str = "Automatic"
    scheduler: str = "Automatic"
    seed: int = 0
    batch_size: int = 1
    batch_count: int = 1
    batch_index: Optional[int] = None
    clip_skip: int = 1
    emphasis: Emphasis = Emphasis.ORIGINAL
    #: pad the shorter of prompt/negative with empty chunks (A1111's option; changes pixels) instead of
    #: denoising cond and uncond separately
    pad_cond_uncond: bool = False
    vae: Optional[str] = None
    precision: Precision = Precision.AUTO
    weights_dtype: WeightsDtype = WeightsDtype.AUTO
    output_format: OutputFormat = OutputFormat.PNG
    loras: list[dict[str, Any]] = field(default_factory=list)
    hires: Optional[dict[str, Any]] = None
    init_image: Any = None
    #: decoded reference images (request key `images`), in order
    images: list[Any] = field(default_factory=list)
    mask: Any = None
    denoising_strength: float = 0.75
    mask_blur: int = 4
    mask_invert: bool = False
    inpaint_full_res: bool = False
    inpaint_full_res_padding: int = 32
    resize_mode: ResizeMode = ResizeMode.JUST_RESIZE
    upscaler: Optional[str] = None
    scale: Optional[float] = None
    resize_x: Optional[int] = None
    resize_y: Optional[int] = None
    tile_size: int = 192
    tile_overlap: int = 16
    num_frames: Optional[int] = None
    fps: Optional[float] = None
    motion_bucket_id: Optional[int] = None
    noise_aug_strength: Optional[float] = None
    decode_chunk_size: Optional[int] = None
    distilled_cfg_scale: Optional[float] = None
    guidance_scale_2: Optional[float] = None
    #: keep the sound track of an engine that makes one (LTX-2)
    audio: bool = True
    flow_shift: Optional[float] = None
    text_encoders: list[str] = field(default_factory=list)
    offload: str = "auto"
    #: attention backend (request key `attention`); None: the server's --attention, else native
    attention: Optional[str] = None
    vae_tiling: str = "auto"
    #: step caching spec ({"kind": ..., "threshold"/"interval"/"warmup": ...}); None: off
    cache: Optional[dict[str, Any]] = None
    #: ControlNet units (request key `controls`), each a dict of its keys with `image` decoded
    controls: list[dict[str, Any]] = field(default_factory=list)
    #: IP-Adapter: {"model", "scale", "image_encoder", "images": [decoded PIL images]}; None: off
    ip_adapter: Optional[dict[str, Any]] = None

    @property
    def images_total(self) -> int:
        return self.batch_size * self.batch_count

    def batch_extras(self, seed: int) -> dict[str, int]:
        """A1111's infotext labels for the image of `seed`: "Batch size" and "Batch pos" (none for a batch of 1)."""
        return batch_extras(seed, self.seed - (self.batch_index or 0), self.batch_size)

    def seeds(self) -> list[int]:
        """Image i of the job uses seed + i (wrapping at 2**32). With `batch_index` the seed is that member's own:
        the batch starts `batch_index` seeds earlier."""
        first = self.seed - (self.batch_index or 0)
        return [(first + i) % (MAX_SEED + 1) for i in range(self.images_total)]

    def effective(self) -> dict[str, Any]:
        """JSON-able effective values (images left out)."""
        out = {}
        for key, value in asdict(self).items():
            if key in ("init_image", "mask", "images"):
                continue
            if key == "controls":
                value = [{k: v for k, v in unit.items() if k != "image"} for unit in value]
            if key == "ip_adapter" and value is not None:
                value = {k: v for k, v in value.items() if k != "images"}
            out[key] = value.value if hasattr(value, "value") else value
        return out


def _check_multiple(name: str, value: int, multiple: int, lo: int, hi: int) -> None:
    if value % multiple:
        lower = value - value % multiple
        raise ValidationError(f"must be a multiple of {multiple} (got {value}; nearest: {lower} or {lower + multiple})",
                              field=name, allowed=f"multiples of {multiple} from {lo} to {hi}")
    if not lo <= value <= hi:
        raise ValidationError(f"must be between {lo} and {hi} (got {value})", field=name,
                              allowed=f"multiples of {multiple} from {lo} to {hi}")


def _check_references(cls: Any, images: list[Any]) -> None:
    """The engine's declared rules for reference images (shortest side, aspect ratio): a 422 naming images[i]."""
    side, ratio = cls.reference_min_side, cls.reference_max_ratio
    allowed = f"sides >= {side} px" + (f", aspect ratio <= {ratio:g}:1" if ratio else "")
    for i, image in enumerate(images):
        w, h = image.size
        if min(w, h) < side or (ratio and max(w, h) > ratio * min(w, h)):
            raise ValidationError(f"a reference image for {cls.key.value} needs {allowed} (got {w}x{h})",
                                  field=f"images[{i}]", allowed=allowed)


def check_model_limits(params: Params, limits: dict[str, tuple[int, str]], model: str | None = None) -> None:
    """A value over a limit the model declares (engine.model_limits: e.g. WAN's rope table length) is a
    ValidationError naming the field, before anything loads."""
    for key, (largest, why) in limits.items():
        value = getattr(params, key, None)
        if isinstance(value, (int, float)) and value > largest:
            who = f"model {model!r}" if model else "this model"
            raise ValidationError(f"must be at most {largest} for {who} (got {value}; {why})", field=key,
                                  allowed=f"at most {largest}")


def resolve_seed(seed: int | None) -> int:
    """-1 (or missing) is random; 0 is a valid seed."""
    if seed is None or seed == -1:
        return random.SystemRandom().randint(0, MAX_SEED)
    return int(seed)


def parse_params(engine: EngineKey | str, task: Task | str, request: dict[str, Any] | GenerationRequest, *,
                 image_loader: ImageLoader | None = None) -> Params:
    """Validate a (preset-filled) request against an engine's declared rules and return typed params."""
    cls = get_engine(str(engine.value if isinstance(engine, EngineKey) else engine))
    task = Task(task)
    if task not in cls.tasks:
        raise UnsupportedTaskError(f"engine {cls.key.value!r} does not do {task.value!r}", field="task",
                                   allowed=sorted(t.value for t in cls.tasks))
    req = request if isinstance(request, GenerationRequest) else validate_request(request)
    data = req.model_dump(exclude_unset=True, exclude_none=True)
    values: dict[str, Any] = {**cls.defaults, **data}
    known = set(Params.__dataclass_fields__)
    kwargs = {k: v for k, v in values.items() if k in known}
    for key in ("init_image", "mask", "images", "controls"):
        kwargs.pop(key, None)
    if kwargs.get("loras") is not None:
        kwargs["loras"] = [dict(l) for l in kwargs["loras"]]
    if kwargs.get("hires") is not None:
        kwargs["hires"] = {k: v for k, v in dict(kwargs["hires"]).items() if v is not None}
    if kwargs.get("cache") is not None:
        kwargs["cache"] = {k: v for k, v in dict(kwargs["cache"]).items() if v is not None}
    kwargs.pop("ip_adapter", None)
    if isinstance(kwargs.get("vae_tiling"), bool):
        kwargs["vae_tiling"] = "on" if kwargs["vae_tiling"] else "off"
    kwargs["mode"] = Mode(kwargs.get("mode", Mode.NORMAL))
    kwargs["seed"] = resolve_seed(values.get("seed"))
    params = Params(engine=cls.key, task=task, **{k: v for k, v in kwargs.items() if k not in ("engine", "task")})

    if params.batch_index is not None:
        if params.batch_index >= params.batch_size:
            raise ValidationError(f"must be below batch_size {params.batch_size}", field="batch_index",
                                  allowed=f"0..{params.batch_size - 1}")
        if params.batch_count != 1:
            raise ValidationError("must be 1 with batch_index (one batch is re-made, one image kept)",
                                  field="batch_count", allowed=[1])
    if task is not Task.UPSCALE:
        _check_multiple("width", params.width, cls.size_multiple, cls.min_size, cls.max_size)
        _check_multiple("height", params.height, cls.size_multiple, cls.min_size, cls.max_size)
    if task.is_video:
        if params.num_frames is None:
            raise ValidationError("is required for video tasks", field="num_frames")
        if cls.frame_rule:
            k, r = cls.frame_rule
            if params.num_frames % k != r:
                lower = params.num_frames - ((params.num_frames - r) % k)
                raise ValidationError(f"must be {k}k+{r} (got {params.num_frames}; nearest: {lower} or {lower + k})",
                                      field="num_frames", allowed=f"{k}k+{r}")
        if cls.max_frames and params.num_frames > cls.max_frames:
            raise ValidationError(f"must be at most {cls.max_frames} for {cls.key.value}", field="num_frames")
    needs_image = task in (Task.IMG2IMG, Task.INPAINT, Task.UPSCALE, Task.IMG2VID)
    if needs_image:
        if not req.init_image:
            raise ValidationError(f"is required for task {task.value!r}", field="init_image")
        if image_loader is None:
            raise ValidationError("images cannot be decoded here (no image loader)", field="init_image")
        params.init_image = image_loader(req.init_image, "init_image")
    if req.images:
        if not cls.max_images:
            raise ValidationError(f"engine {cls.key.value!r} takes no reference images", field="images")
        if len(req.images) > cls.max_images:
            raise ValidationError(f"at most {cls.max_images} reference images for {cls.key.value} "
                                  f"(got {len(req.images)})", field="images", allowed=f"1..{cls.max_images} images")
        if image_loader is None:
            raise ValidationError("images cannot be decoded here (no image loader)", field="images")
        params.images = [image_loader(value, f"images[{i}]") for i, value in enumerate(req.images)]
        _check_references(cls, params.images)
    if req.controls:
        if not cls.supports_controls:
            raise ValidationError(f"engine {cls.key.value!r} takes no ControlNet units", field="controls")
        if image_loader is None:
            raise ValidationError("images cannot be decoded here (no image loader)", field="controls")
        params.controls = [{**unit.model_dump(), "image": image_loader(unit.image, f"controls[{i}].image")}
                           for i, unit in enumerate(req.controls)]
    if req.ip_adapter is not None:
        if not getattr(cls, "supports_ip_adapter", False):
            raise ValidationError(f"engine {cls.key.value!r} takes no IP-Adapter", field="ip_adapter")
        if image_loader is None:
            raise ValidationError("images cannot be decoded here (no image loader)", field="ip_adapter.images")
        spec = req.ip_adapter
        params.ip_adapter = {"model": spec.model, "scale": spec.scale, "image_encoder": spec.image_encoder,
                             "images": [image_loader(v, f"ip_adapter.images[{i}]") for i, v in enumerate(spec.images)]}
    if task is Task.INPAINT:
        if not req.mask:
            raise ValidationError("is required for task 'inpaint'", field="mask")
        params.mask = image_loader(req.mask, "mask") if image_loader else None
    if task is Task.UPSCALE and params.scale is None and not (params.resize_x and params.resize_y):
        params.scale = 2.0
    if (params.resize_x is None) != (params.resize_y is None):
        missing = "resize_y" if params.resize_y is None else "resize_x"
        raise ValidationError("resize_x and resize_y go together", field=missing)
    return params
