"""The X/Y/Z plot as data (A1111's "X/Y/Z plot" script): axis kinds, A1111's value syntax (comma separated
lists with its CSV quoting, ranges `1-5`, `1-10 (+2)`, `0.5-1.5 [5]`), the cells of a plot with their
requests, the order the cells run in (the costly axis outermost, so a checkpoint loads once), and A1111's
`script_args` for `script_name: "x/y/z plot"`. Pure: no torch, no images.
"""
from __future__ import annotations

import csv
import itertools
import math
import random
import re
from dataclasses import dataclass, field
from io import StringIO
from typing import Any, get_args

from .errors import ValidationError
from .request import TASK_KEYS, GenerationRequest, HiresSpec

SCRIPT_TITLE = "X/Y/Z plot"
AXES = ("x", "y", "z")
#: the biggest plot a request may ask for (cells), before the server's own job-size limits
MAX_CELLS = 1000
#: A1111's random seed range for a -1 on a seed axis
_SEED_RANGE = 4294967294

#: special axis kinds (not a plain request key) and their value type
SPECIAL = {"nothing": "str", "prompt_sr": "str", "prompt_order": "perm", "size": "str"}
#: keys that never make an axis (what the job is, images, batch bookkeeping)
EXCLUDED = frozenset({"task", "engine", "init_image", "mask", "images", "batch_index", "batch_count", "loras", "hires",
                      "text_encoders", "cache", "xyz", "output_format", "offload", "vae_tiling", "attention", "precision",
                      "weights_dtype"})
#: the labels A1111 draws for an axis (its AxisOption labels); others show the request key
LABELS = {"nothing": "Nothing", "seed": "Seed", "steps": "Steps", "cfg_scale": "CFG Scale", "prompt_sr": "Prompt S/R",
          "prompt_order": "Prompt order", "sampler": "Sampler", "scheduler": "Schedule type",
          "model": "Checkpoint name", "clip_skip": "Clip skip", "denoising_strength": "Denoising", "vae": "VAE",
          "size": "Size", "hires.steps": "Hires steps", "hires.sampler": "Hires sampler",
          "hires.upscaler": "Hires upscaler", "hires.scheduler": "Hires schedule type", "width": "Width",
          "height": "Height", "hires.scale": "Hires upscale", "hires.denoising_strength": "Hires denoising",
          "distilled_cfg_scale": "Distilled CFG Scale", "flow_shift": "Shift", "batch_size": "Batch size"}
#: A1111 shows these values bare (format_value), others as "Label: value"
BARE = frozenset({"prompt_sr", "sampler", "hires.sampler"})
#: A1111's axis costs: the costliest axis runs outermost (a checkpoint or VAE change reloads weights)
COSTS = {"model": 1.0, "vae": 0.7}

# A1111 1.10 scripts/xyz_grid.py `axis_options`, in order: (label, tab, our axis kind or None when we have no
# such setting). tab "both"/"txt2img"/"img2img": the script's type index counts only the options of its tab.
A1111_AXES: tuple[tuple[str, str, str | None], ...] = (
    ("Nothing", "both", "nothing"), ("Seed", "both", "seed"), ("Var. seed", "both", None),
    ("Var. strength", "both", None), ("Steps", "both", "steps"), ("Hires steps", "txt2img", "hires.steps"),
    ("CFG Scale", "both", "cfg_scale"), ("Image CFG Scale", "img2img", None), ("Prompt S/R", "both", "prompt_sr"),
    ("Prompt order", "both", "prompt_order"), ("Sampler", "txt2img", "sampler"),
    ("Hires sampler", "txt2img", "hires.sampler"), ("Sampler", "img2img", "sampler"),
    ("Checkpoint name", "both", "model"), ("Negative Guidance minimum sigma", "both", None),
    ("Sigma Churn", "both", None), ("Sigma min", "both", None), ("Sigma max", "both", None),
    ("Sigma noise", "both", None), ("Schedule type", "both", "scheduler"), ("Schedule min sigma", "both", None),
    ("Schedule max sigma", "both", None), ("Schedule rho", "both", None), ("Skip Early CFG", "both", None),
    ("Beta schedule alpha", "both", None), ("Beta schedule beta", "both", None), ("Eta", "both", None),
    ("Clip skip", "both", "clip_skip"), ("Denoising", "both", "denoising_strength"),
    ("Initial noise multiplier", "both", None), ("Extra noise", "both", None),
    ("Hires upscaler", "txt2img", "hires.upscaler"), ("Cond. Image Mask Weight", "img2img", None),
    ("VAE", "both", "vae"), ("Styles", "both", None), ("UniPC Order", "both", None), ("Face restore", "both", None),
    ("Token merging ratio", "both", None), ("Token merging ratio high-res", "both", None),
    ("Always discard next-to-last sigma", "both", None), ("SGM noise multiplier", "both", None),
    ("Refiner checkpoint", "both", None), ("Refiner switch at", "both", None), ("RNG source", "both", None),
    ("FP8 mode", "both", None), ("Size", "both", "size"),
)


def a1111_axis_options(tab: str) -> list[tuple[str, str | None]]:
    """The script's axis list for a tab ("txt2img" or "img2img"): (label, our kind), index = A1111's type index."""
    return [(label, kind) for label, where, kind in A1111_AXES if where in ("both", tab)]


# -- value types ------------------------------------------------------------------------------------
def _annotation_kind(annotation: Any) -> str | None:
    """int/float/str/bool for a scalar request field (Optional[StrictInt] -> int, an enum or Literal -> str)."""
    import enum
    import typing

    args = [a for a in get_args(annotation) if a is not type(None)] or [annotation]
    base = args[0]
    if typing.get_origin(base) is typing.Annotated:
        base = get_args(base)[0]
    if typing.get_origin(base) is typing.Literal:
        return "str"
    for kind in (bool, int, float, str):
        if isinstance(base, type) and issubclass(base, kind):
            return kind.__name__
    if isinstance(base, type) and issubclass(base, enum.Enum):
        return "str"
    return None


def axis_kinds(task: str) -> dict[str, str]:
    """Every axis kind a task takes -> its value type (int, float, str, bool, perm)."""
    keys = TASK_KEYS[_task(task)]
    out = {k: v for k, v in SPECIAL.items() if k != "size" or {"width", "height"} <= keys}
    for name, info in GenerationRequest.model_fields.items():
        if name in keys and name not in EXCLUDED:
            kind = _annotation_kind(info.annotation)
            if kind:
                out[name] = kind
    if "hires" in keys:
        for name, info in HiresSpec.model_fields.items():
            kind = _annotation_kind(info.annotation)
            if kind:
                out[f"hires.{name}"] = kind
    return out


def _task(task: Any) -> Any:
    from .enums import Task

    return Task(getattr(task, "value", task))


def label_of(kind: str) -> str:
    return LABELS.get(kind, kind)


# -- value syntax -----------------------------------------------------------------------------------
_INT = r"[+-]?\s*\d+"
_FLOAT = r"[+-]?\s*\d+(?:\.\d*)?"
RANGE_INT = re.compile(rf"\s*({_INT})\s*-\s*({_INT})(?:\s*\(([+-]\d+)\s*\))?\s*")
RANGE_INT_COUNT = re.compile(rf"\s*({_INT})\s*-\s*({_INT})(?:\s*\[(\d+)\s*\])?\s*")
RANGE_FLOAT = re.compile(rf"\s*({_FLOAT})\s*-\s*({_FLOAT})(?:\s*\(([+-]\d+(?:\.\d*)?)\s*\))?\s*")
RANGE_FLOAT_COUNT = re.compile(rf"\s*({_FLOAT})\s*-\s*({_FLOAT})(?:\s*\[(\d+)\s*\])?\s*")


def split_values(text: str) -> list[str]:
    """A1111's list rule: Python's CSV reader over the text (every line), each value stripped. A value holding a
    comma is quoted, the quote right after the comma: `"a, b",c`."""
    return [v.strip() for v in itertools.chain.from_iterable(csv.reader(StringIO(text)))]


def _num(text: str) -> str:
    return text.replace(" ", "")


def _capped(count: Any, text: str) -> Any:
    """A range may give at most MAX_CELLS values (checked before it is expanded)."""
    if (len(count) if isinstance(count, range) else count) > MAX_CELLS:
        raise ValidationError(f"range {text!r} gives more than {MAX_CELLS} values", allowed=f"at most {MAX_CELLS}")
    return count


def _linspace(start: float, stop: float, num: int) -> list[float]:
    if num <= 0:
        return []
    if num == 1:
        return [start]
    step = (stop - start) / (num - 1)
    return [start + i * step for i in range(num - 1)] + [stop]


def _arange(start: float, stop: float, step: float) -> list[float]:
    """numpy.arange's float rule: ceil((stop - start) / step) values start + i*step."""
    if step == 0:
        return []
    count = max(0, math.ceil((stop - start) / step))
    return [start + i * step for i in range(count)]


def expand_int(value: str) -> list[Any]:
    """`1-5` -> 1..5; `1-10 (+3)` -> 1,4,7,10; `10-1 (-3)` -> 10,7,4 (A1111 stops before end+1, so a falling
    range ends one short); `1-10 [4]` -> 1,4,7,10 (count, truncated to int); anything else as it is."""
    m = RANGE_INT.fullmatch(value)
    if m:
        start, end = int(_num(m.group(1))), int(_num(m.group(2))) + 1
        step = int(m.group(3)) if m.group(3) is not None else 1
        if step == 0:
            return []
        return list(_capped(range(start, end, step), value))
    m = RANGE_INT_COUNT.fullmatch(value)
    if m:
        start, end = int(_num(m.group(1))), int(_num(m.group(2)))
        num = int(m.group(3)) if m.group(3) is not None else 1
        return [int(v) for v in _linspace(start, end, _capped(num, value))]
    return [value]


def expand_float(value: str) -> list[Any]:
    """`0-1 (+0.25)` -> 0,0.25,..,1 (numpy.arange up to end+step, as A1111); `0.5-1.5 [5]` -> 5 evenly spaced;
    `1-3` -> 1,2,3; anything else as it is."""
    m = RANGE_FLOAT.fullmatch(value)
    if m:
        start, end = float(_num(m.group(1))), float(_num(m.group(2)))
        step = float(m.group(3)) if m.group(3) is not None else 1.0
        if step != 0:
            _capped(max(0, math.ceil((end + step - start) / step)), value)
        return _arange(start, end + step, step)
    m = RANGE_FLOAT_COUNT.fullmatch(value)
    if m:
        start, end = float(_num(m.group(1))), float(_num(m.group(2)))
        num = int(m.group(3)) if m.group(3) is not None else 1
        return _linspace(start, end, _capped(num, value))
    return [value]


def _convert(value: Any, kind: str, where: str) -> Any:
    try:
        if kind == "int":
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if isinstance(value, bool) or isinstance(value, float):
                raise ValueError
            return int(value)
        if kind == "float":
            if isinstance(value, bool):
                raise ValueError
            return round(float(value), 8)
        if kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("true", "yes", "on", "1"):
                return True
            if text in ("false", "no", "off", "0"):
                return False
            raise ValueError
    except (TypeError, ValueError):
        allowed = {"int": "whole numbers or ranges like 1-5, 1-10 (+2), 1-10 [5]",
                   "float": "numbers or ranges like 0.5-1.5 [5], 1-3 (+0.5)",
                   "bool": "true or false"}[kind]
        raise ValidationError(f"{value!r} is not a{'n' if kind == 'int' else ''} {kind} value", field=where,
                              allowed=allowed) from None
    return value if isinstance(value, str) else str(value)


def parse_values(values: Any, kind: str, *, where: str = "values") -> list[Any]:
    """An axis' values: a string in A1111's syntax or a JSON list; ranges expand for int and float axes,
    `perm` (Prompt order) gives every permutation. An empty result is an error naming `where`."""
    if isinstance(values, str):
        items: list[Any] = split_values(values)
    elif isinstance(values, (list, tuple)):
        items = list(values)
    else:
        raise ValidationError("must be a string or a list", field=where)
    out: list[Any] = []
    for item in items:
        if isinstance(item, str) and kind in ("int", "float"):
            try:
                expanded = (expand_int if kind == "int" else expand_float)(item)
            except ValidationError as exc:
                exc.field = where
                raise
            if not expanded:
                raise ValidationError(f"range {item!r} gives no values (a falling range needs a negative step, "
                                      f"e.g. '10-1 (-1)')", field=where)
            out += expanded
        else:
            out.append(item)
    if kind == "perm":
        tokens = [str(v) for v in out]
        if not tokens or math.factorial(len(tokens)) > MAX_CELLS:
            raise ValidationError(f"needs 1 to 6 prompt fragments (got {len(tokens)})", field=where)
        return [list(p) for p in itertools.permutations(tokens)]
    if len(out) > MAX_CELLS:
        raise ValidationError(f"gives {len(out)} values", field=where, allowed=f"at most {MAX_CELLS}")
    out = [_convert(v, kind, where) for v in out]
    if not out:
        raise ValidationError("gives no values", field=where)
    return out


def format_label(kind: str, value: Any) -> str:
    """What A1111 writes above a column / left of a row: "Steps: 20", a sampler or S/R value bare, a checkpoint
    by its file name, nothing for Nothing, permutations joined with ", "."""
    if kind == "nothing":
        return ""
    if isinstance(value, float):
        value = round(value, 8)
    if kind == "prompt_order":
        return ", ".join(value)
    if kind in BARE:
        return str(value)
    if kind == "model":
        return str(value).replace("\\", "/").rsplit("/", 1)[-1]
    return f"{label_of(kind)}: {value}"


# -- the plot -----------------------------------------------------------------------------------------
@dataclass
class Axis:
    name: str                  # "x", "y" or "z"
    kind: str                  # axis kind: a request key, "hires.<key>" or a special kind
    values: list[Any]
    text: str = ""             # the values as the user wrote them (A1111's "X Values")
    fixed_seeds: bool = False  # a seed axis whose -1 were replaced by random seeds

    @property
    def labels(self) -> list[str]:
        return [format_label(self.kind, v) for v in self.values]

    @property
    def label(self) -> str:
        return label_of(self.kind)

    @property
    def cost(self) -> float:
        return COSTS.get(self.kind, 0.0)


@dataclass
class Cell:
    ix: int
    iy: int
    iz: int
    request: dict[str, Any]

    @property
    def position(self) -> tuple[int, int, int]:
        return self.ix, self.iy, self.iz


@dataclass
class Plan:
    """A validated plot: the three axes, the cells in grid order (x fastest, then y, then z), the order they run
    in, the options, and the base request (without `xyz`, its seed fixed unless `keep_random_seeds`)."""

    axes: list[Axis]
    cells: list[Cell]
    order: list[int]
    options: dict[str, Any]
    base: dict[str, Any]
    request: dict[str, Any] = field(default_factory=dict)  # the whole effective plot request

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(len(a.values) for a in self.axes)  # type: ignore[return-value]

    def index(self, ix: int, iy: int, iz: int) -> int:
        nx, ny, _ = self.shape
        return ix + iy * nx + iz * nx * ny

    def infotext_extra(self, *, with_z: bool) -> dict[str, str]:
        """The grid's extra infotext fields, as A1111 writes them (Script, X Type, X Values, Fixed X Values...)."""
        extra = {"Script": SCRIPT_TITLE}
        for axis in self.axes:
            if axis.kind == "nothing" or (axis.name == "z" and not with_z):
                continue
            key = axis.name.upper()
            extra[f"{key} Type"] = axis.label
            extra[f"{key} Values"] = axis.text
            if axis.fixed_seeds:
                extra[f"Fixed {key} Values"] = ", ".join(str(v) for v in axis.values)
        return extra


def run_order(axes: list[Axis]) -> list[tuple[int, int, int]]:
    """A1111's loop order: the axis with the strictly highest cost outermost, then the next; z, y, x otherwise."""
    cx, cy, cz = (a.cost for a in axes)
    first, second = "z", "y"
    if cx > cy and cx > cz:
        first, second = "x", ("y" if cy > cz else "z")
    elif cy > cx and cy > cz:
        first, second = "y", ("x" if cx > cz else "z")
    elif cz > cx and cz > cy:
        first, second = "z", ("x" if cx > cy else "y")
    third = next(a for a in "xyz" if a not in (first, second))
    sizes = {a.name: len(a.values) for a in axes}
    out = []
    for i in range(sizes[first]):
        for j in range(sizes[second]):
            for k in range(sizes[third]):
                pos = {first: i, second: j, third: k}
                out.append((pos["x"], pos["y"], pos["z"]))
    return out


def reorder_prompt(prompt: str, tokens: list[str]) -> str:
    """Prompt order: put `tokens` (found in the prompt) into the prompt in the given order, in the places the
    tokens held (the earliest place gets the first token)."""
    places = sorted((prompt.find(t), t) for t in tokens)
    parts, rest = [], prompt
    for _, token in places:
        n = rest.find(token)
        parts.append(rest[:n])
        rest = rest[n + len(token):]
    return "".join(part + tokens[i] for i, part in enumerate(parts)) + rest


def apply_value(request: dict[str, Any], axis: Axis, value: Any, where: str) -> None:
    """Set one axis value on a cell's request (in place)."""
    kind = axis.kind
    if kind == "nothing":
        return
    if kind == "prompt_sr":
        search = str(axis.values[0])
        prompt, negative = request.get("prompt") or "", request.get("negative_prompt") or ""
        if search not in prompt and search not in negative:
            raise ValidationError(f"Prompt S/R did not find {search!r} in prompt or negative prompt", field=where,
                                  allowed="the first value is the text to search for")
        request["prompt"] = prompt.replace(search, str(value))
        if negative:
            request["negative_prompt"] = negative.replace(search, str(value))
        return
    if kind == "prompt_order":
        prompt = request.get("prompt") or ""
        missing = [t for t in value if t not in prompt]
        if missing:
            raise ValidationError(f"Prompt order did not find {missing[0]!r} in the prompt", field=where)
        request["prompt"] = reorder_prompt(prompt, list(value))
        return
    if kind == "size":
        width, _, height = str(value).partition("x")
        try:
            request["width"], request["height"] = int(width.strip()), int(height.strip())
        except ValueError:
            raise ValidationError(f"{value!r} is not a size", field=where, allowed="WIDTHxHEIGHT, e.g. 512x768") \
                from None
        return
    if kind == "vae" and str(value).lower() in ("automatic", "auto", "none"):
        request.pop("vae", None)
        return
    if kind.startswith("hires."):
        if not isinstance(request.get("hires"), dict):
            raise ValidationError(f"a {axis.label} axis needs hires fix in the request ('hires')",
                                  field=f"xyz.{axis.name}.type")
        request["hires"] = {**request["hires"], kind.split(".", 1)[1]: value}
        return
    request[kind] = value


def _axis_text(values: Any) -> str:
    if isinstance(values, str):
        return values
    out = StringIO()
    csv.writer(out).writerow([str(v) for v in values])
    return out.getvalue().strip()


def plan_plot(raw: dict[str, Any], *, rng: random.Random | None = None) -> Plan:
    """Expand a request with `xyz` into its cells. Errors name `xyz.x.type`, `xyz.x.values`, ...; the cells'
    own requests are validated when they are prepared (see Orchestrator.prepare_plot)."""
    from .request import validate_request

    req = validate_request(raw)
    spec = req.xyz
    if spec is None:
        raise ValidationError("is required for a plot", field="xyz")
    task = req.task
    kinds = axis_kinds(task.value)
    rng = rng or random.Random()
    base = {k: v for k, v in raw.items() if k != "xyz"}
    options = spec.model_dump(exclude={"x", "y", "z"})
    if not options["keep_random_seeds"] and base.get("seed") in (None, -1):
        base["seed"] = rng.randrange(_SEED_RANGE)  # A1111's fix_seed: every cell gets the same seed
    axes: list[Axis] = []
    for name in AXES:
        given = getattr(spec, name)
        if given is None:
            axes.append(Axis(name, "nothing", [0]))
            continue
        where = f"xyz.{name}"
        kind = given.type
        if kind not in kinds:
            raise ValidationError(f"unknown axis type {kind!r} for task {task.value!r}", field=f"{where}.type",
                                  allowed=sorted(kinds))
        if kind == "nothing":
            axes.append(Axis(name, "nothing", [0]))
            continue
        values = parse_values(given.values, kinds[kind], where=f"{where}.values")
        axis = Axis(name, kind, values, text=_axis_text(given.values))
        if kind == "seed" and not options["keep_random_seeds"]:
            axis.fixed_seeds = True
            axis.values = [rng.randrange(_SEED_RANGE) if v == -1 else v for v in values]
        axes.append(axis)
    used = [a.kind for a in axes if a.kind != "nothing"]
    if not used:
        raise ValidationError("a plot needs at least one axis", field="xyz.x")
    nx, ny, nz = (len(a.values) for a in axes)
    if nx * ny * nz > MAX_CELLS:
        raise ValidationError(f"the plot would have {nx * ny * nz} cells ({nx}x{ny}x{nz})", field="xyz",
                              allowed=f"at most {MAX_CELLS} cells")
    cells = []
    for iz in range(nz):
        for iy in range(ny):
            for ix in range(nx):
                cell_req = dict(base)
                if isinstance(cell_req.get("hires"), dict):
                    cell_req["hires"] = dict(cell_req["hires"])
                for axis, i in zip(axes, (ix, iy, iz)):
                    apply_value(cell_req, axis, axis.values[i], f"xyz.{axis.name}.values")
                offsets = {"x": ix, "y": iy * (nx if options["vary_seeds_x"] else 1),
                           "z": iz * (nx if options["vary_seeds_x"] else 1) * (ny if options["vary_seeds_y"] else 1)}
                bump = sum(offsets[a] for a in AXES if options[f"vary_seeds_{a}"])
                if bump and isinstance(cell_req.get("seed"), int) and cell_req["seed"] >= 0:
                    cell_req["seed"] += bump
                cells.append(Cell(ix, iy, iz, cell_req))
    plan = Plan(axes, cells, [], options, base)
    plan.order = [plan.index(*pos) for pos in run_order(axes)]
    effective = dict(base)
    # expanded values (fixed seeds included) re-make the same plot; Prompt order keeps its fragments
    effective["xyz"] = {**options, **{a.name: {"type": a.kind, "values": a.values if a.kind != "prompt_order"
                                                else list(a.values[0])} for a in axes if a.kind != "nothing"}}
    plan.request = effective
    return plan


# -- A1111 script_args ----------------------------------------------------------------------------------
#: A1111 1.7-1.10 `run()` argument names after `p`, in order
SCRIPT_ARGS = ("x_type", "x_values", "x_values_dropdown", "y_type", "y_values", "y_values_dropdown", "z_type",
               "z_values", "z_values_dropdown", "draw_legend", "include_lone_images", "include_sub_grids",
               "no_fixed_seeds", "vary_seeds_x", "vary_seeds_y", "vary_seeds_z", "margin_size", "csv_mode")
#: before 1.7 there were no vary_seeds_* (margin_size came right after no_fixed_seeds)
SCRIPT_ARGS_1_6 = SCRIPT_ARGS[:13] + ("margin_size", "csv_mode")


def is_xyz_script(name: Any) -> bool:
    return isinstance(name, str) and name.strip().lower() == SCRIPT_TITLE.lower()


def _arg_bool(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValidationError(f"must be true or false, not {value!r}", field=where)


def _axis_kind(value: Any, tab: str, where: str) -> str:
    """An A1111 axis type (its index in the tab's list, or its label) -> our axis kind."""
    options = a1111_axis_options(tab)
    labels = [label for label, _ in options]
    if isinstance(value, bool) or value is None:
        raise ValidationError(f"must be an axis index, not {value!r}", field=where, allowed=f"0-{len(options) - 1}")
    if isinstance(value, str) and not value.strip().lstrip("-").isdigit():
        matches = [i for i, label in enumerate(labels) if label.lower() == value.strip().lower()]
        if not matches:
            raise ValidationError(f"unknown axis {value!r}", field=where, allowed=labels)
        index = matches[0]
    else:
        try:
            index = int(value)
        except (TypeError, ValueError):
            raise ValidationError(f"must be an axis index, not {value!r}", field=where,
                                  allowed=f"0-{len(options) - 1}") from None
    if not 0 <= index < len(options):
        raise ValidationError(f"unknown axis index {index} ({tab} has {len(options)} axis types)", field=where,
                              allowed=f"0-{len(options) - 1}")
    label, kind = options[index]
    if kind == "denoising_strength" and tab == "txt2img":
        kind = "hires.denoising_strength"  # A1111's txt2img denoising is the hires pass'
    if kind is None:
        supported = [f"{i}: {lab}" for i, (lab, k) in enumerate(options) if k is not None]
        raise ValidationError(f"axis {index} ({label!r}) is not supported here", field=where, allowed=supported)
    return kind


def from_script_args(args: Any, *, tab: str) -> dict[str, Any]:
    """Our `xyz` spec from A1111's `script_args` (1.7-1.10 order; the shorter 1.6 order is read when its 14th
    value is a number, the margin). Errors name `script_args[i]` (`x_type`, ...)."""
    if not isinstance(args, list):
        raise ValidationError("must be a list in the X/Y/Z plot script's argument order", field="script_args",
                              allowed=list(SCRIPT_ARGS))
    names = SCRIPT_ARGS
    if len(args) > 13 and isinstance(args[13], (int, float)) and not isinstance(args[13], bool) and len(args) <= 15:
        names = SCRIPT_ARGS_1_6
    if len(args) > len(names):
        raise ValidationError(f"has {len(args)} values; the X/Y/Z plot script takes {len(names)}",
                              field="script_args", allowed=list(names))
    given = dict(zip(names, args))
    where = {name: f"script_args[{i}] ({name})" for i, name in enumerate(names)}
    spec: dict[str, Any] = {}
    for axis in AXES:
        kind = _axis_kind(given.get(f"{axis}_type", 1 if axis == "x" else 0), tab, where.get(f"{axis}_type",
                                                                                             f"{axis}_type"))
        if kind == "nothing":
            continue
        values = given.get(f"{axis}_values") or ""
        dropdown = given.get(f"{axis}_values_dropdown") or []
        if not isinstance(values, str):
            raise ValidationError("must be a string", field=where[f"{axis}_values"])
        if not isinstance(dropdown, list):
            raise ValidationError("must be a list", field=where[f"{axis}_values_dropdown"])
        # A1111 reads the dropdown for axes with choices unless csv_mode; the text otherwise. Take what was given.
        spec[axis] = {"type": kind, "values": [str(v) for v in dropdown] if dropdown and not values.strip()
                      else values}
    flags = {"draw_legend": ("draw_legend", True), "include_sub_images": ("include_lone_images", False),
             "include_sub_grids": ("include_sub_grids", False), "keep_random_seeds": ("no_fixed_seeds", False),
             "vary_seeds_x": ("vary_seeds_x", False), "vary_seeds_y": ("vary_seeds_y", False),
             "vary_seeds_z": ("vary_seeds_z", False)}
    for ours, (theirs, default) in flags.items():
        spec[ours] = _arg_bool(given[theirs], where[theirs]) if theirs in given else default
    margin = given.get("margin_size", 0)
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 <= margin <= 500:
        raise ValidationError(f"must be a number of pixels from 0 to 500, not {margin!r}",
                              field=where.get("margin_size", "margin_size"))
    spec["margin_size"] = int(margin)
    if "csv_mode" in given:
        _arg_bool(given["csv_mode"], where["csv_mode"])
    return spec
