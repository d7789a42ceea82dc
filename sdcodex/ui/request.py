"""Turn a tab's field values into the SAME strict JSON request the API and CLI take, show it with images
as short placeholders, and merge an edited request (advanced view) back. No Gradio here: plain values
in, plain dicts out, so it is tested without a browser."""
from __future__ import annotations

import json
from typing import Any

from sdcodex.core.enums import Task
from sdcodex.core.errors import ValidationError
from sdcodex.core.request import TASK_KEYS

from .caps import MODEL_FREE

INT_KEYS = frozenset({"width", "height", "steps", "seed", "batch_size", "batch_count", "clip_skip", "mask_blur",
                      "inpaint_full_res_padding", "resize_x", "resize_y", "tile_size", "tile_overlap",
                      "num_frames", "motion_bucket_id", "decode_chunk_size"})
FLOAT_KEYS = frozenset({"cfg_scale", "denoising_strength", "scale", "fps", "noise_aug_strength",
                        "distilled_cfg_scale", "guidance_scale_2", "flow_shift"})
IMAGE_KEYS = ("init_image", "mask")
HIRES_FIELDS = ("scale", "steps", "denoising_strength", "upscaler")
PLACEHOLDER = "<{key}: {w}x{h} PNG from the image field>"


def _number(key: str, value: Any) -> Any:
    """Numbers from the page arrive as floats; whole numbers become ints where the key is an int."""
    if isinstance(value, bool) or value is None:
        return value
    if key in INT_KEYS and isinstance(value, float) and value.is_integer():
        return int(value)
    if key in FLOAT_KEYS and isinstance(value, int):
        return float(value)
    return value


def _empty(value: Any) -> bool:
    """A field left blank (a cleared number box, a dropdown with no choice, a multi-choice with none)."""
    return value is None or (isinstance(value, list) and not value)


def build_request(task: Task | str, quick: dict[str, Any], values: dict[str, Any], visible: set[str] | None = None,
                  images: dict[str, Any] | None = None, *, encode: bool = True) -> dict[str, Any]:
    """The request a tab sends. `quick`: engine, model, mode, vae from the quicksettings row; `values`:
    field key -> value (hires fields as "hires.<key>" plus "hires.enabled"); `visible`: the keys shown for
    this engine (others are left out); `images`: PIL images for init_image/mask (base64 PNG when
    `encode`, else kept as the PIL object for a preview)."""
    task = Task(task)
    allowed = set(TASK_KEYS[task]) if visible is None else set(visible) & set(TASK_KEYS[task])
    req: dict[str, Any] = {"task": task.value}
    if task not in MODEL_FREE:
        for key in ("model", "engine", "mode"):
            if quick.get(key):
                req[key] = quick[key]
        vae = quick.get("vae")
        if vae and str(vae).lower() not in ("automatic", "none", "auto"):
            req["vae"] = vae
    for key, value in values.items():
        if "." in key or key not in allowed or _empty(value) or key == "images":
            continue
        if key == "output_format" and value == "":  # "From Settings": the server's setting applies
            continue
        req[key] = _number(key, value)
    if "hires" in allowed and values.get("hires.enabled"):
        hires = {k: _number(k, values.get(f"hires.{k}")) for k in HIRES_FIELDS}
        hires = {k: v for k, v in hires.items() if not _empty(v) and v != ""}
        if hires.get("upscaler") in (None, "None"):
            hires.pop("upscaler", None)
        req["hires"] = hires
    for key in IMAGE_KEYS:
        image = (images or {}).get(key)
        if key in allowed and image is not None:
            req[key] = encode_png(image) if encode else image
    references = reference_images(values.get("images"))
    if "images" in allowed and references:
        req["images"] = [encode_png(image) if encode else image for image in references]
    return req


def reference_images(paths: Any) -> list[Any]:
    """The reference images of the `images` file field (a list of file paths) as RGB PIL images."""
    from PIL import Image

    from .uploads import check_upload

    out = []
    for i, path in enumerate(paths or []):
        path = getattr(path, "name", path)  # a file object from older Gradio versions
        bad = check_upload(path)
        if bad is not None:
            raise ValidationError(bad.reason, field=f"images[{i}]")
        with Image.open(path) as image:
            out.append(image.convert("RGB"))
    return out


#: number fields whose blank value means "automatic" (every other blank number field is an error, never a default)
BLANK_MEANS_AUTO = frozenset({"flow_shift", "decode_chunk_size"})


def check_blank(values: dict[str, Any], visible: set[str] | None) -> None:
    """A visible number field left blank is an error naming it (a blank width is not silently 512)."""
    for key, value in values.items():
        if "." in key or (visible is not None and key not in visible):
            continue
        if (key in INT_KEYS or key in FLOAT_KEYS) and key not in BLANK_MEANS_AUTO and (value is None or value == ""):
            raise ValidationError("is blank: enter a number", field=key)


def encode_png(image: Any) -> str:
    """Base64 PNG of a field's image; an uploaded image's A1111 "parameters" text goes with it (so an upscaled
    result keeps its source's infotext, as A1111's Extras tab does)."""
    import base64
    import io

    from sdcodex.media.imageio import encode_image_b64

    parameters = (getattr(image, "info", None) or {}).get("parameters")
    if not isinstance(parameters, str) or not parameters:
        return encode_image_b64(image, "png")
    from PIL.PngImagePlugin import PngInfo

    chunk = PngInfo()
    chunk.add_itxt("parameters", parameters)
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=chunk)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def preview_json(request: dict[str, Any]) -> str:
    """The request as pretty JSON, each image shown as a short placeholder instead of its base64."""
    shown = {}
    for key, value in request.items():
        if key in IMAGE_KEYS and value is not None:
            w, h = getattr(value, "size", (0, 0))
            shown[key] = PLACEHOLDER.format(key=key, w=w, h=h) if not isinstance(value, str) or len(value) > 200 \
                else value
        elif key == "images" and isinstance(value, list):
            shown[key] = [PLACEHOLDER.format(key=f"images[{i}]", w=getattr(v, "size", (0, 0))[0],
                                             h=getattr(v, "size", (0, 0))[1])
                          if not isinstance(v, str) or len(v) > 200 else v for i, v in enumerate(value)]
        else:
            shown[key] = value
    return json.dumps(shown, indent=2, ensure_ascii=False)


def parse_edited(text: str, images: dict[str, Any] | None = None) -> dict[str, Any]:
    """An edited request: JSON errors name line and column; image placeholders are replaced by the
    images from the fields. The strict validation happens at submit, like for any other face."""
    try:
        data = json.loads(text or "")
    except json.JSONDecodeError as exc:
        raise ValidationError(f"the edited request is not valid JSON: {exc.msg} (line {exc.lineno}, column "
                              f"{exc.colno})", field="(request)") from None
    if not isinstance(data, dict):
        raise ValidationError("the edited request must be a JSON object", field="(request)")
    for key in IMAGE_KEYS:
        value = data.get(key)
        if isinstance(value, str) and value.startswith(f"<{key}:"):
            image = (images or {}).get(key)
            if image is None:
                raise ValidationError("the placeholder refers to an image field that is empty", field=key)
            data[key] = encode_png(image)
    references = data.get("images")
    if isinstance(references, list):
        given = (images or {}).get("images") or []
        for i, value in enumerate(references):
            if isinstance(value, str) and value.startswith(f"<images[{i}]:"):
                if i >= len(given):
                    raise ValidationError("the placeholder refers to a reference image that is not in the field",
                                          field=f"images[{i}]")
                references[i] = encode_png(given[i])
    return data


def mask_from_layers(layers: list[Any], size: tuple[int, int]) -> Any:
    """A white-on-black "L" mask: every pixel painted (alpha > 0) on any editor layer; None when empty."""
    from PIL import Image, ImageChops

    mask = Image.new("L", size, 0)
    for layer in layers or []:
        if layer is None:
            continue
        layer = layer if hasattr(layer, "getchannel") else Image.fromarray(layer)
        if layer.size != size:
            layer = layer.resize(size, Image.NEAREST)
        alpha = layer.getchannel("A") if "A" in layer.getbands() else layer.convert("L")
        mask = ImageChops.lighter(mask, alpha.point(lambda v: 255 if v > 0 else 0))
    return mask if mask.getbbox() else None


def editor_images(value: Any) -> dict[str, Any]:
    """init_image and mask from an ImageEditor value ({"background", "layers", "composite"})."""
    if not value:
        return {"init_image": None, "mask": None}
    background = value.get("background") if isinstance(value, dict) else value
    if background is None and isinstance(value, dict):
        background = value.get("composite")
    if background is None:
        return {"init_image": None, "mask": None}
    image = background.convert("RGB")
    layers = value.get("layers") if isinstance(value, dict) else []
    return {"init_image": image, "mask": mask_from_layers(layers, image.size)}


def request_to_fields(request: dict[str, Any], task: Task | str) -> dict[str, Any]:
    """Field values (flat keys, hires as "hires.<key>") from a request or infotext-derived dict, keeping
    only what the target task takes. Used by PNG Info and "send to"."""
    task = Task(task)
    keys = TASK_KEYS[task]
    out: dict[str, Any] = {}
    for key, value in (request or {}).items():
        if key in IMAGE_KEYS or key == "images" or key not in keys or key in ("task", "model", "engine", "mode",
                                                                              "vae", "preset"):
            continue
        if key == "hires":
            if isinstance(value, dict):
                out["hires.enabled"] = True
                out.update({f"hires.{k}": v for k, v in value.items() if k in HIRES_FIELDS})
            continue
        out[key] = value
    return out
