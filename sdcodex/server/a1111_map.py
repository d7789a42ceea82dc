"""AUTOMATIC1111 1.10 request models and their mapping onto our strict request (and back, for errors
and the `info` string). Fields A1111 clients send that we do not use are accepted and reported."""
from __future__ import annotations

import datetime as _dt
import json
import re
from typing import Any, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

from sdcodex import __version__
from sdcodex.core.errors import CodexError, ValidationError
from sdcodex.core.samplers import split_legacy_name
from sdcodex.core.xyz import from_script_args, is_xyz_script

_ALLOW = ConfigDict(extra="allow")


class Txt2ImgRequest(BaseModel):
    """A1111 StableDiffusionTxt2ImgProcessingAPI. Left-out values come from our presets (A1111
    would use steps 50, cfg 7, 512x512, Euler)."""

    model_config = _ALLOW
    prompt: str = ""
    negative_prompt: str = ""
    styles: Optional[list[str]] = None
    seed: int = -1
    subseed: int = -1
    subseed_strength: float = 0.0
    seed_resize_from_h: int = -1
    seed_resize_from_w: int = -1
    sampler_name: Optional[str] = None
    sampler_index: Optional[str] = None
    scheduler: Optional[str] = None
    batch_size: int = 1
    n_iter: int = 1
    steps: Optional[int] = None
    cfg_scale: Optional[float] = None
    width: Optional[int] = None
    height: Optional[int] = None
    restore_faces: Optional[bool] = None
    tiling: Optional[bool] = None
    do_not_save_samples: bool = False
    do_not_save_grid: bool = False
    eta: Optional[float] = None
    denoising_strength: Optional[float] = None
    s_min_uncond: Optional[float] = None
    s_churn: Optional[float] = None
    s_tmax: Optional[float] = None
    s_tmin: Optional[float] = None
    s_noise: Optional[float] = None
    override_settings: Optional[dict[str, Any]] = None
    override_settings_restore_afterwards: bool = True
    refiner_checkpoint: Optional[str] = None
    refiner_switch_at: Optional[float] = None
    disable_extra_networks: bool = False
    firstpass_image: Optional[str] = None
    comments: Optional[dict[str, Any]] = None
    enable_hr: bool = False
    firstphase_width: int = 0
    firstphase_height: int = 0
    hr_scale: float = 2.0
    hr_upscaler: Optional[str] = None
    hr_second_pass_steps: int = 0
    hr_resize_x: int = 0
    hr_resize_y: int = 0
    hr_checkpoint_name: Optional[str] = None
    hr_sampler_name: Optional[str] = None
    hr_scheduler: Optional[str] = None
    hr_prompt: str = ""
    hr_negative_prompt: str = ""
    force_task_id: Optional[str] = None
    script_name: Optional[str] = None
    script_args: list[Any] = Field(default_factory=list)
    send_images: bool = True
    save_images: bool = False
    alwayson_scripts: dict[str, Any] = Field(default_factory=dict)
    infotext: Optional[str] = None


class Img2ImgRequest(Txt2ImgRequest):
    """A1111 StableDiffusionImg2ImgProcessingAPI: a `mask` makes it an inpaint job."""

    init_images: Optional[list[str]] = None
    resize_mode: int = 0
    image_cfg_scale: Optional[float] = None
    mask: Optional[str] = None
    mask_blur_x: int = 4
    mask_blur_y: int = 4
    mask_blur: Optional[int] = None
    mask_round: bool = True
    inpainting_fill: int = 0
    inpaint_full_res: Union[bool, int] = True
    inpaint_full_res_padding: int = 0
    inpainting_mask_invert: Union[bool, int] = 0
    initial_noise_multiplier: Optional[float] = None
    latent_mask: Optional[str] = None
    include_init_images: bool = False


#: A1111 fields that we accept without using; a value in the set means "off", so it is not reported
_NEUTRAL: dict[str, tuple[Any, ...]] = {
    "subseed": (-1, 0), "subseed_strength": (0, 0.0), "seed_resize_from_h": (-1, 0),
    "seed_resize_from_w": (-1, 0), "restore_faces": (None, False), "tiling": (None, False),
    "do_not_save_samples": (True, False), "do_not_save_grid": (True, False), "eta": (None,),
    "s_min_uncond": (None, 0, 0.0), "s_churn": (None, 0, 0.0), "s_tmax": (None,), "s_tmin": (None, 0, 0.0),
    "s_noise": (None, 1, 1.0), "override_settings_restore_afterwards": (True, False),
    "refiner_checkpoint": (None, "", "None"), "refiner_switch_at": (None,), "disable_extra_networks": (False, True),
    "firstpass_image": (None, ""), "comments": (None, {}), "firstphase_width": (0,), "firstphase_height": (0,),
    "hr_checkpoint_name": (None, "", "Use same checkpoint"), "force_task_id": (), "script_name": (None, ""),
    "script_args": ([],), "alwayson_scripts": ({},), "infotext": (None, ""), "save_images": (True, False),
    "image_cfg_scale": (None,), "mask_round": (True, False), "inpainting_fill": (1,),
    "initial_noise_multiplier": (None, 1, 1.0), "latent_mask": (None, ""), "sampler_index": (),
}
_MAPPED = {"prompt", "negative_prompt", "styles", "seed", "sampler_name", "scheduler", "batch_size", "n_iter", "steps",
           "cfg_scale", "width", "height", "denoising_strength", "override_settings", "enable_hr", "hr_scale",
           "hr_upscaler", "hr_second_pass_steps", "hr_resize_x", "hr_resize_y", "hr_sampler_name", "hr_scheduler",
           "hr_prompt", "hr_negative_prompt", "send_images", "init_images", "resize_mode", "mask", "mask_blur",
           "mask_blur_x", "mask_blur_y", "inpaint_full_res", "inpaint_full_res_padding", "inpainting_mask_invert",
           "include_init_images", "sampler_index", "force_task_id", "alwayson_scripts"}
_OVERRIDES = {"sd_model_checkpoint", "sd_vae", "CLIP_stop_at_last_layers", "samples_format", "emphasis"}

#: our field -> the A1111 field a client sent, so an error names what the client knows
NATIVE_TO_A1111 = {"batch_count": "n_iter", "sampler": "sampler_name", "init_image": "init_images[0]",
                   "mask_invert": "inpainting_mask_invert", "model": "override_settings.sd_model_checkpoint",
                   "vae": "override_settings.sd_vae", "clip_skip": "override_settings.CLIP_stop_at_last_layers",
                   "emphasis": "override_settings.emphasis",
                   "output_format": "samples_format", "hires.scale": "hr_scale", "hires.steps": "hr_second_pass_steps",
                   "hires.upscaler": "hr_upscaler", "hires.resize_x": "hr_resize_x", "hires.resize_y": "hr_resize_y",
                   "hires.sampler": "hr_sampler_name", "hires.scheduler": "hr_scheduler", "hires.prompt": "hr_prompt",
                   "hires.negative_prompt": "hr_negative_prompt", "hires.denoising_strength": "denoising_strength",
                   "resize_mode": "resize_mode",
                   **{f"xyz.{a}.{k}": f"script_args[{3 * i + j}] ({a}_{k})" for i, a in enumerate("xyz")
                      for j, k in ((0, "type"), (1, "values"))}}
RESIZE_MODES = {0: "just_resize", 1: "crop_and_resize", 2: "resize_and_fill", 3: "just_resize"}
_FORMATS = {"png": "png", "webp": "webp", "jpg": "jpeg", "jpeg": "jpeg"}


def as_edit(req: dict[str, Any], ignored: list[str], init_images: list[str]) -> None:
    """An A1111 img2img request for an engine that edits pictures instead (Qwen-Image-Edit, FLUX.2: no img2img, but
    reference images): every `init_images` entry becomes one of our `images` and the task is txt2img, as Forge runs
    edit models from its img2img tab. A mask cannot apply (a 422 naming it); denoising_strength and resize_mode have
    no meaning there and are listed as ignored."""
    if req.get("task") == "inpaint":
        raise ValidationError("an editing model takes pictures to edit, not a mask", field="mask")
    req["task"] = "txt2img"
    req["images"] = list(init_images)
    req.pop("init_image", None)
    ignored[:] = [k for k in ignored if k != "init_images[1:]"]
    ignored += [k for k in ("denoising_strength", "resize_mode") if req.pop(k, None) is not None]


def to_a1111_field(exc: CodexError) -> CodexError:
    """Rename the field of an error from our name to the A1111 one the client used."""
    unit = _CONTROL_FIELD.match(exc.field or "")
    theirs = NATIVE_TO_A1111.get(exc.field or "")
    if theirs is None and (exc.field or "").startswith("images"):  # an edit's pictures came as init_images
        theirs = "init_" + str(exc.field)
    if unit:  # controls[i].x -> the ControlNet extension's unit, under the name the client sent
        name = _UNIT_FIELDS_BACK.get(unit["key"], unit["key"]) if unit["key"] else ""
        theirs = f"alwayson_scripts.controlnet.args[{unit['i']}]" + (f".{name}" if name else "")
    if theirs is not None:
        exc.field = theirs
        if isinstance(exc, ValidationError) and exc.errors:
            exc.errors[0]["field"] = exc.field
        exc.args = (str(exc),)
    return exc


# ---- the ControlNet extension's units (alwayson_scripts.controlnet.args) -----------------------------------------
_CONTROL_FIELD = re.compile(r"^controls\[(?P<i>\d+)\](?:\.(?P<key>\w+))?")
_UNIT_FIELDS_BACK = {"union_type": "union_control_type"}
#: the extension's resize/control mode names (and legacy aliases) and indices -> ours
CN_RESIZE = {0: "just_resize", 1: "crop_and_resize", 2: "resize_and_fill", "just resize": "just_resize",
             "crop and resize": "crop_and_resize", "resize and fill": "resize_and_fill",
             "inner fit (scale to fit)": "crop_and_resize", "scale to fit (inner fit)": "crop_and_resize",
             "outer fit (shrink to fit)": "resize_and_fill", "envelope (outer fit)": "resize_and_fill"}
CN_CONTROL = {0: "balanced", 1: "prompt", 2: "controlnet", "balanced": "balanced",
              "my prompt is more important": "prompt", "controlnet is more important": "controlnet"}
#: the extension's Union control type names -> ours (engines/controlnet.py SDXL_UNION_TYPES / FLUX_UNION_TYPES)
CN_UNION = {"openpose": "openpose", "depth": "depth", "softedge": "hed", "soft edge": "hed", "canny": "canny",
            "lineart": "canny", "normal": "normal", "normal map": "normal", "segment": "segment",
            "segmentation": "segment", "tile": "tile", "inpaint": "repaint", "repaint": "repaint", "blur": "blur",
            "pose": "pose", "gray": "gray", "lq": "lq"}


def _cn_choice(value: Any, table: dict[Any, str], where: str) -> str:
    key = value.strip().lower() if isinstance(value, str) else value
    if isinstance(key, bool) or key not in table and key not in table.values():
        allowed = sorted({k for k in table if isinstance(k, int)}) + sorted({k for k in table if isinstance(k, str)})
        raise ValidationError(f"unknown value {value!r}", field=where, allowed=allowed)
    return table.get(key, key)


def controls_from_units(args: Any, *, init_image: str | None) -> tuple[list[dict[str, Any]], list[str]]:
    """`alwayson_scripts.controlnet.args` (the sd-webui-controlnet unit shape, old and new field names) -> our
    `controls` units, and the unit fields we accepted but do not use. Disabled units and units with model "None" are
    skipped; a unit without an image uses the img2img input image, as the extension does."""
    base = "alwayson_scripts.controlnet.args"
    if not isinstance(args, list):
        raise ValidationError("must be a list of ControlNet units", field=base)
    controls: list[dict[str, Any]] = []
    ignored: list[str] = []
    for i, raw in enumerate(args):
        where = f"{base}[{i}]"
        if not isinstance(raw, dict):
            raise ValidationError("a ControlNet unit must be an object", field=where)
        if raw.get("enabled", True) is False or str(raw.get("model") or "none").lower() == "none":
            continue
        image = raw.get("image", raw.get("input_image"))
        mask = None
        if isinstance(image, dict):  # {"image": b64, "mask": b64}
            image, mask = image.get("image"), image.get("mask")
        if mask or raw.get("mask") or raw.get("mask_image"):
            ignored.append(f"{where}.mask")
        image = image or init_image
        if not image:
            raise ValidationError("is required: a base64 control image (or an img2img input image)",
                                  field=f"{where}.image")
        module = str(raw.get("module") or "none")
        module = "none" if module.lower() == "none" else module
        unit: dict[str, Any] = {"image": image, "model": model_name_of(str(raw["model"])), "module": module}
        for key in ("weight", "guidance_start", "guidance_end"):
            if raw.get(key) is not None:
                unit[key] = float(raw[key])
        if raw.get("pixel_perfect") is not None:
            unit["pixel_perfect"] = bool(raw["pixel_perfect"])
        if raw.get("resize_mode") is not None:
            unit["resize_mode"] = _cn_choice(raw["resize_mode"], CN_RESIZE, f"{where}.resize_mode")
        if raw.get("control_mode") is not None:
            unit["control_mode"] = _cn_choice(raw["control_mode"], CN_CONTROL, f"{where}.control_mode")
        elif raw.get("guessmode"):  # the old API's flag
            unit["control_mode"] = "controlnet"
        union = raw.get("union_control_type")
        if union and str(union).lower() not in ("unknown", "none"):
            unit["union_type"] = _cn_choice(union, CN_UNION, f"{where}.union_control_type")
        res, a, b = _lenient(module, raw.get("processor_res"), raw.get("threshold_a"), raw.get("threshold_b"))
        for key, value in (("processor_res", res), ("threshold_a", a), ("threshold_b", b)):
            if value is not None:
                unit[key] = int(value) if key == "processor_res" else float(value)
        for key in sorted(set(raw) - _UNIT_USED):
            if raw[key] not in (None, False, "", [], {}):
                ignored.append(f"{where}.{key}")
        controls.append(unit)
    return controls, ignored


def _is_ip_adapter_unit(raw: Any) -> bool:
    if not isinstance(raw, dict) or raw.get("enabled", True) is False:
        return False
    module = str(raw.get("module") or "").lower()
    model = str(raw.get("model") or "").lower()
    return module.startswith(("ip-adapter", "ip_adapter")) or "ip-adapter" in model or "ip_adapter" in model


def ip_adapter_from_units(args: Any, *, init_image: str | None) -> tuple[Any, dict[str, Any] | None, list[str]]:
    """The extension's IP-Adapter unit (module `ip-adapter_clip_sd15`, `ip-adapter_clip_sdxl_plus_vith`..., or a model
    named ip-adapter...) -> our `ip_adapter` (model, images, scale = the unit's weight); the args with that unit
    disabled, so the ControlNet units keep their indices; and the unit fields we accepted but do not use (a guidance
    start/end other than 0/1: the adapter applies on every step)."""
    if not isinstance(args, list):
        return args, None, []
    base = "alwayson_scripts.controlnet.args"
    found = [i for i, raw in enumerate(args) if _is_ip_adapter_unit(raw)]
    if not found:
        return args, None, []
    if len(found) > 1:
        raise ValidationError("one IP-Adapter unit at a time", field=f"{base}[{found[1]}]")
    i = found[0]
    raw, where = args[i], f"{base}[{i}]"
    module = str(raw.get("module") or "").lower()
    if "face" in module:
        raise ValidationError(f"IP-Adapter FaceID ({raw.get('module')}) is not supported", field=f"{where}.module",
                              allowed="ip-adapter_clip_* modules")
    image = raw.get("image", raw.get("input_image"))
    if isinstance(image, dict):
        image = image.get("image")
    image = image or init_image
    if not image:
        raise ValidationError("is required: a base64 reference image", field=f"{where}.image")
    spec: dict[str, Any] = {"model": model_name_of(str(raw.get("model") or "")), "images": [image]}
    if raw.get("weight") is not None:
        spec["scale"] = float(raw["weight"])
    unused = [f"{where}.{key}" for key, default in (("guidance_start", 0.0), ("guidance_end", 1.0))
              if raw.get(key) is not None and float(raw[key]) != default]
    rest = list(args)
    rest[i] = {"enabled": False}
    return rest, spec, unused


_UNIT_USED = {"enabled", "image", "input_image", "mask", "mask_image", "module", "model", "weight", "guidance_start",
              "guidance_end", "pixel_perfect", "resize_mode", "control_mode", "guessmode", "union_control_type",
              "processor_res", "threshold_a", "threshold_b", "lowvram", "low_vram", "guidance", "save_detected_map"}


def _lenient(module: str, res: Any, a: Any, b: Any) -> tuple[Any, Any, Any]:
    """The extension's slider rule: a value outside the module's slider (its clients send -1) means the default."""
    from sdcodex import runtime

    try:
        return runtime.preprocessor_bounds(module, res, a, b)
    except CodexError:  # an unknown module: the strict request names it
        return (res if res not in (None, -1) else None, a if a not in (None, -1) else None,
                b if b not in (None, -1) else None)


def _sampler(name: Optional[str], schedule: Optional[str]) -> tuple[Optional[str], Optional[str]]:
    """A1111 sampler (possibly a legacy "DPM++ 2M Karras") and schedule type -> ours."""
    if not name:
        return None, schedule or None
    base, legacy = split_legacy_name(name)
    if schedule and schedule.lower() not in ("automatic", ""):
        return base, schedule
    return base, legacy or schedule or None


def to_request(body: Txt2ImgRequest, *, task: str, options: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Our request for an A1111 txt2img/img2img body, and the A1111 fields we accepted but ignored."""
    given = body.model_fields_set - set(body.model_extra or {})
    ignored: list[str] = sorted(f"{k}" for k in (body.model_extra or {}))
    for name in sorted(given - _MAPPED):
        value = getattr(body, name, None)
        if name in _NEUTRAL and value in _NEUTRAL[name]:
            continue
        ignored.append(name)
    req: dict[str, Any] = {"prompt": body.prompt, "seed": int(body.seed)}
    if is_xyz_script(body.script_name):  # A1111's X/Y/Z plot script: our `xyz` from its script_args
        req["xyz"] = from_script_args(body.script_args, tab="txt2img" if task == "txt2img" else "img2img")
        ignored = [k for k in ignored if k not in ("script_name", "script_args")]
    if body.negative_prompt:
        req["negative_prompt"] = body.negative_prompt
    for name, script in sorted((body.alwayson_scripts or {}).items()):
        if name.lower() != "controlnet":
            ignored.append(f"alwayson_scripts.{name}")
            continue
        init = (getattr(body, "init_images", None) or [None])[0]
        args = script.get("args") if isinstance(script, dict) else script
        args, image_prompt, unused = ip_adapter_from_units(args, init_image=init)
        if image_prompt is not None:
            req["ip_adapter"] = image_prompt
        controls, unused_cn = controls_from_units(args if args is not None else [], init_image=init)
        unused += unused_cn
        ignored += unused
        if controls:
            req["controls"] = controls
    if body.styles:
        req["styles"] = list(body.styles)  # expanded into the prompts as A1111 does (core.styles)
    for ours, theirs in (("steps", "steps"), ("width", "width"), ("height", "height")):
        if getattr(body, theirs) is not None:
            req[ours] = int(getattr(body, theirs))
    if body.cfg_scale is not None:
        req["cfg_scale"] = float(body.cfg_scale)
    if body.batch_size != 1:
        req["batch_size"] = int(body.batch_size)
    if body.n_iter != 1:
        req["batch_count"] = int(body.n_iter)
    sampler, schedule = _sampler(body.sampler_name or body.sampler_index, body.scheduler)
    if sampler:
        req["sampler"] = sampler
    if schedule:
        req["scheduler"] = schedule

    overrides = dict(body.override_settings or {})
    for key in sorted(overrides):
        if key not in _OVERRIDES:
            ignored.append(f"override_settings.{key}")
    if overrides.get("sd_model_checkpoint"):
        req["model"] = str(overrides["sd_model_checkpoint"])
    vae = overrides.get("sd_vae", options.get("sd_vae"))
    if vae and str(vae).lower() not in ("automatic", "none", "auto"):
        req["vae"] = str(vae)
    clip = overrides.get("CLIP_stop_at_last_layers", options.get("CLIP_stop_at_last_layers"))
    if clip is not None and int(clip) > 1:
        req["clip_skip"] = int(clip)
    emphasis = overrides.get("emphasis", options.get("emphasis"))
    if emphasis is not None and emphasis != "Original":
        req["emphasis"] = emphasis  # the strict request checks the value and names the field
    fmt = _FORMATS.get(str(overrides.get("samples_format", options.get("samples_format")) or "png").lower())
    if fmt and fmt != "png":
        req["output_format"] = fmt

    if task == "txt2img":
        if body.enable_hr:
            hires: dict[str, Any] = {}
            if body.hr_resize_x and body.hr_resize_y:
                hires["resize_x"], hires["resize_y"] = int(body.hr_resize_x), int(body.hr_resize_y)
            else:
                hires["scale"] = float(body.hr_scale)
            if body.hr_upscaler:
                hires["upscaler"] = body.hr_upscaler
            if body.hr_second_pass_steps:
                hires["steps"] = int(body.hr_second_pass_steps)
            if body.denoising_strength is not None:
                hires["denoising_strength"] = float(body.denoising_strength)
            hs, hsched = _sampler(body.hr_sampler_name, body.hr_scheduler)
            if hs:
                hires["sampler"] = hs
            if hsched:
                hires["scheduler"] = hsched
            if body.hr_prompt:
                hires["prompt"] = body.hr_prompt
            if body.hr_negative_prompt:
                hires["negative_prompt"] = body.hr_negative_prompt
            req["hires"] = hires
        else:
            ignored += [k for k in ("denoising_strength",) if k in given and body.denoising_strength]
        req["task"] = "txt2img"
        return req, ignored

    assert isinstance(body, Img2ImgRequest)
    if not body.init_images:
        raise ValidationError("is required for img2img: a list with one base64 image", field="init_images")
    if len(body.init_images) > 1:
        ignored.append("init_images[1:]")
    req["init_image"] = body.init_images[0]
    if body.denoising_strength is not None:
        req["denoising_strength"] = float(body.denoising_strength)
    if body.resize_mode not in RESIZE_MODES:
        raise ValidationError(f"unknown resize mode {body.resize_mode}", field="resize_mode", allowed=[0, 1, 2, 3])
    if body.resize_mode:
        req["resize_mode"] = RESIZE_MODES[body.resize_mode]
        if body.resize_mode == 3:
            ignored.append("resize_mode=3 (latent upscale; resized in pixel space)")
    if body.mask:
        req["task"] = "inpaint"
        req["mask"] = body.mask
        blur = body.mask_blur if body.mask_blur is not None else max(body.mask_blur_x, body.mask_blur_y)
        req["mask_blur"] = int(blur)
        req["mask_invert"] = bool(body.inpainting_mask_invert)
        req["inpaint_full_res"] = bool(body.inpaint_full_res)
        req["inpaint_full_res_padding"] = int(body.inpaint_full_res_padding)
    else:
        req["task"] = "img2img"
    ignored += [k for k in sorted(given) if k.startswith("hr_")]
    if body.enable_hr:
        ignored.append("enable_hr")
    return req, ignored


def parameters(body: Txt2ImgRequest, effective: dict[str, Any]) -> dict[str, Any]:
    """The `parameters` of an A1111 response: the request with every field, left-out values shown as
    what was really used; input images only with include_init_images."""
    out = body.model_dump()
    for ours, theirs in (("steps", "steps"), ("cfg_scale", "cfg_scale"), ("width", "width"), ("height", "height"),
                         ("sampler", "sampler_name"), ("scheduler", "scheduler")):
        if out.get(theirs) is None and effective.get(ours) is not None:
            out[theirs] = effective[ours]
    if out.get("seed", -1) == -1 and effective.get("seed") is not None:
        out["seed"] = effective["seed"]
    if isinstance(body, Img2ImgRequest) and not body.include_init_images:
        out["init_images"] = None
        out["mask"] = None
    return out


def info_string(job_id: str, info: dict[str, Any], infotexts: list[str], ignored: list[str]) -> str:
    """A1111's `info` JSON string, from our result info."""
    req = info.get("request") or {}
    fields = info.get("infotext_fields") or {}
    seeds = list(info.get("seeds") or [])
    n = max(len(seeds), 1)
    prompt = req.get("prompt") or ""
    negative = req.get("negative_prompt") or ""
    extra = {k: v for k, v in (fields.get("extra") or {}).items()}
    if info.get("scheduler_effective"):
        extra.setdefault("Schedule type", info["scheduler_effective"])
    if req.get("emphasis") not in (None, "Original"):
        extra.setdefault("Emphasis", req["emphasis"])
    data = {
        "prompt": prompt, "all_prompts": [prompt] * n, "negative_prompt": negative,
        "all_negative_prompts": [negative] * n, "seed": seeds[0] if seeds else req.get("seed"),
        "all_seeds": seeds, "subseed": -1, "all_subseeds": [-1] * len(seeds), "subseed_strength": 0,
        "width": req.get("width"), "height": req.get("height"), "sampler_name": info.get("sampler_effective"),
        "cfg_scale": req.get("cfg_scale"), "steps": req.get("steps"), "batch_size": req.get("batch_size", 1),
        "restore_faces": False, "face_restoration_model": None, "sd_model_name": info.get("model"),
        "sd_model_hash": info.get("model_hash"), "sd_vae_name": req.get("vae"), "sd_vae_hash": None,
        "seed_resize_from_w": -1, "seed_resize_from_h": -1, "denoising_strength": req.get("denoising_strength"),
        "extra_generation_params": extra, "index_of_first_image": 0, "infotexts": infotexts,
        "styles": list(info.get("styles") or []),
        "job_timestamp": _dt.datetime.now().strftime("%Y%m%d%H%M%S"), "clip_skip": req.get("clip_skip", 1),
        "is_using_inpainting_conditioning": info.get("task") == "inpaint", "version": f"sdcodex-{__version__}",
        "scheduler": info.get("scheduler_effective"), "ignored_fields": ignored,
        "warnings": list(info.get("warnings") or []), "job_id": job_id, "engine": info.get("engine"),
        "interrupted": bool(info.get("interrupted")),
    }
    return json.dumps(data, ensure_ascii=False, default=str)


_TITLE_HASH = re.compile(r"\s*\[[0-9a-fA-F]{6,}\]\s*$")


def model_name_of(title: str) -> str:
    """'sd15-demo [abc123]' or 'v1-5.safetensors [abc]' -> 'sd15-demo' / 'v1-5'."""
    name = _TITLE_HASH.sub("", title)
    return name[: -len(".safetensors")] if name.endswith(".safetensors") else name
