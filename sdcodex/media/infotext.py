"""AUTOMATIC1111 1.10 "parameters" infotext: build it from our native keys, parse it back, map it to a request.

The text has the prompt (one or more lines), an optional "Negative prompt: ..." block and one last line
of "Label: value" pairs joined by ", ". Values holding ",", ":" or a newline (or starting with a quote)
are JSON-quoted, as A1111's ``quote`` does; the parser unquotes them with ``json.loads`` like A1111.
"""
from __future__ import annotations

import json
import re
from typing import Any

from sdcodex import __version__
from sdcodex.core.enums import Emphasis
from sdcodex.core.request import CONTROL_MODE_NAMES, CONTROL_RESIZE_NAMES

DEFAULT_VERSION = f"sdcodex-v{__version__}"

# A1111's own key/value pattern (modules/infotext_utils.py): a label, a colon, then a JSON-quoted
# value or anything up to the next comma.
_RE_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_RE_SIZE = re.compile(r"^(\d+)x(\d+)$")

_IMG2IMG_TASKS = {"img2img", "inpaint"}

# (A1111 label, native key, kind) in A1111's create_infotext order. Kinds: int, float, str,
# size (width/height pair), hashes (dict name -> hash, written as one quoted "name: hash, ..." value),
# emphasis (one of A1111's emphasis modes; written only when not "Original").
_FIELDS: list[tuple[str, str, str]] = [
    ("Steps", "steps", "int"),
    ("Sampler", "sampler", "str"),
    ("Schedule type", "scheduler", "str"),
    ("CFG scale", "cfg_scale", "float"),
    ("Seed", "seed", "int"),
    ("Size", "size", "size"),
    ("Model hash", "model_hash", "str"),
    ("Model", "model", "str"),
    ("VAE hash", "vae_hash", "str"),
    ("VAE", "vae", "str"),
    ("Denoising strength", "denoising_strength", "float"),
    ("Clip skip", "clip_skip", "int"),
    ("Mask blur", "mask_blur", "int"),
    ("Hires upscale", "hires_scale", "float"),
    ("Hires steps", "hires_steps", "int"),
    ("Hires upscaler", "hires_upscaler", "str"),
    ("Lora hashes", "lora_hashes", "hashes"),
    ("TI hashes", "ti_hashes", "hashes"),
    ("Emphasis", "emphasis", "emphasis"),
]
_LABEL_TO_FIELD = {label: (key, kind) for label, key, kind in _FIELDS}


def quote(value: Any) -> str:
    """A1111's quoting: JSON-quote a value that holds ',', ':' or a newline (or starts with a quote)."""
    text = format_value(value)
    if "," in text or ":" in text or "\n" in text or text.startswith('"'):
        return json.dumps(text, ensure_ascii=False)
    return text


def unquote(text: str) -> str:
    """Undo ``quote``; a value that is not valid JSON is returned unchanged (as A1111 does)."""
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        try:
            out = json.loads(text)
        except ValueError:
            return text
        return out if isinstance(out, str) else text
    return text


def format_value(value: Any) -> str:
    """Render one value the way A1111's UI shows it: integral floats without ".0", floats shortest."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def _format_hashes(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value or None
    items = value.items() if isinstance(value, dict) else value
    text = ", ".join(f"{name}: {h}" for name, h in items)
    return text or None


def _parse_hashes(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in text.split(","):
        name, sep, h = part.strip().rpartition(":")
        if sep and name.strip():
            out[name.strip()] = h.strip()
    return out


def build_infotext(p: dict[str, Any]) -> str:
    """A1111 1.10 "parameters" text from native keys (see module docstring and docs/media.md).

    Keys: prompt, negative_prompt, steps, sampler, scheduler, cfg_scale, seed, width, height, model_hash,
    model, vae_hash, vae, denoising_strength, clip_skip, mask_blur, hires_scale, hires_steps,
    hires_upscaler, lora_hashes, ti_hashes (dict name -> hash), emphasis, version, task,
    extra (dict label -> value). None or missing values are left out. Denoising strength is written for
    img2img/inpaint or with hires fix; Mask blur only for inpaint; Clip skip only when > 1 (when ``task``
    is absent, a given value is written); Emphasis only when not "Original". The prompts are written as
    they are. ``extra`` labels follow the built-in ones (an extra label equal to a built-in one replaces
    its value in place, as A1111's dict does), and "Version" comes last, as in A1111.
    """
    task = str(p["task"]) if p.get("task") is not None else None
    has_hires = any(p.get(k) is not None for k in ("hires_scale", "hires_steps", "hires_upscaler"))
    params: dict[str, Any] = {}
    for label, key, kind in _FIELDS:
        if kind == "size":
            w, h = p.get("width"), p.get("height")
            value = f"{int(w)}x{int(h)}" if w is not None and h is not None else None
        elif kind == "hashes":
            value = _format_hashes(p.get(key))
        else:
            value = p.get(key)
        if value is None:
            continue
        if key == "denoising_strength" and task is not None and task not in _IMG2IMG_TASKS and not has_hires:
            continue
        if key == "mask_blur" and task is not None and task != "inpaint":
            continue
        if key == "clip_skip" and int(value) <= 1:
            continue
        if key == "emphasis" and str(value) == Emphasis.ORIGINAL.value:
            continue
        params[label] = value
    for label, value in (p.get("extra") or {}).items():
        params[str(label)] = value
    version = params.pop("Version", p["version"] if "version" in p else DEFAULT_VERSION)
    if version is not None:
        params["Version"] = version
    line = ", ".join(f"{label}: {quote(value)}" for label, value in params.items() if value is not None)

    prompt = str(p.get("prompt") or "")
    negative = str(p.get("negative_prompt") or "")
    negative_text = f"\nNegative prompt: {negative}" if negative else ""
    return f"{prompt}{negative_text}\n{line}".strip()


def parse_infotext(text: str) -> dict[str, Any]:
    """Parse A1111 infotext into {label: str} like A1111's parse_generation_parameters.

    Adds "Prompt" and "Negative prompt"; "Size: 512x768" (and any "AxB" value) becomes "Size-1"/"Size-2"
    strings as in A1111, plus ``width``/``height`` ints for Size. Unlike A1111 no UI defaults
    (Clip skip "1", Hires sampler ...) are filled in: only what the text says is returned.
    """
    res: dict[str, Any] = {}
    prompt, negative = "", ""
    done_with_prompt = False
    *lines, last = text.strip().replace("\r\n", "\n").split("\n")
    if len(_RE_PARAM.findall(last)) < 3:
        lines.append(last)
        last = ""
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            done_with_prompt = True
            line = line[len("Negative prompt:"):].strip()
        if done_with_prompt:
            negative += ("" if negative == "" else "\n") + line
        else:
            prompt += ("" if prompt == "" else "\n") + line
    res["Prompt"] = prompt
    res["Negative prompt"] = negative
    for label, value in _RE_PARAM.findall(last):
        value = unquote(value) if value[:1] == '"' and value[-1:] == '"' else value
        m = _RE_SIZE.match(value)
        if m is not None:
            res[f"{label}-1"], res[f"{label}-2"] = m.group(1), m.group(2)
        else:
            res[label] = value
    if "Size-1" in res and "Size-2" in res:
        res["width"], res["height"] = int(res["Size-1"]), int(res["Size-2"])
    return res


def _convert(value: str, kind: str) -> Any:
    if kind == "int":
        return int(float(value))
    if kind == "float":
        return float(value)
    if kind == "hashes":
        return _parse_hashes(value)
    if kind == "emphasis":
        return Emphasis(value).value  # an unknown mode raises ValueError and stays in ``extra``
    return value


_META_LABELS = {"Prompt", "Negative prompt", "Size-1", "Size-2", "width", "height", "Version"}

# the ControlNet extension's unit text: `ControlNet 0: "Module: canny, Model: name [hash], Weight: 1, ..."`
_RE_CONTROLNET = re.compile(r"^ControlNet (\d+)$")
_RE_UNIT_PART = re.compile(r"\s*([A-Z][\w ]*?):\s*([^,]*)(?:,|$)")
_UNIT_LABELS: dict[str, tuple[str, Any]] = {
    "Module": ("module", str), "Model": ("model", str), "Weight": ("weight", float),
    "Resize Mode": ("resize_mode", {v: k for k, v in CONTROL_RESIZE_NAMES.items()}.__getitem__),
    "Processor Res": ("processor_res", lambda v: int(float(v))), "Threshold A": ("threshold_a", float),
    "Threshold B": ("threshold_b", float), "Guidance Start": ("guidance_start", float),
    "Guidance End": ("guidance_end", float), "Pixel Perfect": ("pixel_perfect", lambda v: v == "True"),
    "Control Mode": ("control_mode", {v: k for k, v in CONTROL_MODE_NAMES.items()}.__getitem__),
    "Union Control Type": ("union_type", str),
}


def parse_controlnet_unit(text: str) -> dict[str, Any]:
    """One `ControlNet N` value -> a unit's native keys (no image: the infotext does not hold it). Labels or values
    we do not know are left out."""
    unit: dict[str, Any] = {}
    for label, value in _RE_UNIT_PART.findall(text):
        key, convert = _UNIT_LABELS.get(label.strip(), (None, None))
        if key is None:
            continue
        try:
            unit[key] = convert(value.strip())
        except (KeyError, ValueError):
            continue
    return unit


def infotext_to_request(parsed: dict[str, Any]) -> dict[str, Any]:
    """Map a ``parse_infotext`` result to native keys (the inverse of ``build_infotext``'s inputs).

    Sampler and Schedule type stay raw A1111 names (``sampler``/``scheduler``); splitting legacy names
    like "DPM++ 2M Karras" belongs to the sampler policy. Labels we do not know go to ``extra`` as
    strings; a value that does not convert (e.g. "Steps: abc") is kept in ``extra`` too.
    """
    out: dict[str, Any] = {"prompt": parsed.get("Prompt", "")}
    if parsed.get("Negative prompt"):
        out["negative_prompt"] = parsed["Negative prompt"]
    if "width" in parsed and "height" in parsed:
        out["width"], out["height"] = int(parsed["width"]), int(parsed["height"])
    extra: dict[str, Any] = {}
    for label, value in parsed.items():
        if label in _META_LABELS:
            continue
        if label.endswith(("-1", "-2")) and f"{label[:-2]}-1" in parsed and f"{label[:-2]}-2" in parsed:
            if label.endswith("-1"):  # an "AxB" value A1111 split in two: join it back
                extra[label[:-2]] = f"{parsed[label]}x{parsed[label[:-2] + '-2']}"
            continue
        unit = _RE_CONTROLNET.match(label)
        if unit is not None and isinstance(value, str):
            out.setdefault("controls", []).append((int(unit.group(1)), parse_controlnet_unit(value)))
            continue
        field = _LABEL_TO_FIELD.get(label)
        if field is None or field[1] == "size":
            extra[label] = value
            continue
        try:
            out[field[0]] = _convert(value, field[1]) if isinstance(value, str) else value
        except ValueError:
            extra[label] = value
    if "controls" in out:  # ControlNet units in their index order (the image is not in the infotext)
        out["controls"] = [u for _, u in sorted(out["controls"], key=lambda pair: pair[0])]
    if "Version" in parsed:
        out["version"] = parsed["Version"]
    if extra:
        out["extra"] = extra
    return out
