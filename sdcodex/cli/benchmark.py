"""`sdcodex benchmark`: times the real generation path (the same orchestrator as every face) over a matrix of
the available models x sizes, and optionally the raw Diffusers pipeline on the same loaded components,
interleaved with ours. Reports per-stage medians, it/s, peak RSS/VRAM as a table, JSON and a PNG chart.

The table and the chart are drawn by sdcodex.cli.bench_chart; the raw Diffusers baseline lives in
sdcodex.cli.bench_baseline.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdcodex.cli.bench_baseline import (  # noqa: F401  (re-exported: the baseline lives there)
    COMPARE_TASKS, DiffusersBaseline, _RecordingModels, not_implemented_reason, pixel_diff,
)
from sdcodex.core.enums import Task
from sdcodex.core.errors import CodexError, ValidationError

PROMPT = "a lighthouse on a cliff at sunset"
STAGES = ("load", "text_encode", "denoise", "decode", "save", "total")
SCHEMA = "sdcodex.benchmark/1"
DEMO_SIZE = 64          # demo models have random weights: the smallest useful size
DEMO_STEPS = 4
DEFAULT_FRAMES = 5      # video engines: a 4k+1 count small enough for a quick run
DEFAULT_REPEAT = 3
OFFLOAD_DEFAULT_ENGINE = "sd15"   # --offload without --engine/--model: the sd15 models (the demo when none)
_SIZE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


# --------------------------------------------------------------------------------------------- arguments
def parse_size(text: str) -> tuple[int, int]:
    """'512x768' -> (512, 768); anything else is a ValidationError naming --size."""
    match = _SIZE.match(text)
    if not match:
        raise ValidationError(f"{text!r} is not WIDTHxHEIGHT", field="--size", allowed="e.g. 512x512, 64x64")
    width, height = int(match.group(1)), int(match.group(2))
    if width <= 0 or height <= 0:
        raise ValidationError(f"{text!r}: width and height must be positive", field="--size")
    return width, height


def generation_engines() -> list[str]:
    """Registered engines that generate from a checkpoint (the checkpoint-less upscaler is left out)."""
    import sdcodex.engines  # noqa: F401  (registers the engines)
    from sdcodex.core.registry import ENGINES

    return [key for key, cls in ENGINES.items() if set(cls.tasks) - {Task.UPSCALE}]


def resolve_engines(names: list[str] | None) -> list[str] | None:
    """Canonical engine keys for --engine (aliases accepted); an unknown name lists the engines."""
    if not names:
        return None
    from sdcodex.core.registry import ENGINES

    known = generation_engines()
    out: list[str] = []
    for name in names:
        key = ENGINES.canonical(name) if name in ENGINES else None
        if key not in known:
            raise ValidationError(f"unknown engine {name!r}", field="--engine", allowed=known)
        if key not in out:
            out.append(key)
    return out


def check_size(engine_cls: type, width: int, height: int) -> None:
    """The engine's size rule (multiple, min, max) for --size, naming the engine."""
    m, lo, hi = engine_cls.size_multiple, engine_cls.min_size, engine_cls.max_size
    for value in (width, height):
        if value % m or not lo <= value <= hi:
            raise ValidationError(f"size {width}x{height} does not fit engine {engine_cls.key.value}: width and "
                                  f"height must be multiples of {m} from {lo} to {hi}", field="--size")


def check_frames(engine_cls: type, frames: int) -> None:
    """The engine's frame rule (k*n + r, maximum) for --frames, naming the engine."""
    rule = engine_cls.frame_rule
    if rule and frames % rule[0] != rule[1]:
        k, r = rule
        raise ValidationError(f"{frames} frames do not fit engine {engine_cls.key.value}: num_frames must be "
                              f"{k}k+{r} (e.g. {k + r} or {2 * k + r})", field="--frames")
    if frames < 1 or (engine_cls.max_frames and frames > engine_cls.max_frames):
        raise ValidationError(f"{frames} frames do not fit engine {engine_cls.key.value}", field="--frames",
                              allowed=f"1 to {engine_cls.max_frames or 'any'}")


def demo_size(engine_cls: type) -> int:
    """The smallest size >= DEMO_SIZE that the engine's size rule accepts."""
    m = engine_cls.size_multiple
    return max(engine_cls.min_size, -(-DEMO_SIZE // m) * m)


# --------------------------------------------------------------------------------------------- the matrix
@dataclass
class Case:
    """One cell of the matrix: a model of an engine at one size."""

    engine: str
    engine_cls: type
    entry: Any
    task: Task
    width: int
    height: int
    steps: int
    num_frames: int | None
    demo: bool

    @property
    def label(self) -> str:
        return f"{self.engine} {self.entry.name} {self.width}x{self.height}"

    def request(self, seed: int) -> dict[str, Any]:
        req: dict[str, Any] = {"task": self.task.value, "model": str(self.entry.path), "engine": self.engine,
                               "prompt": PROMPT, "negative_prompt": "", "width": self.width, "height": self.height,
                               "steps": self.steps, "seed": seed, "batch_size": 1, "batch_count": 1}
        if self.task in (Task.IMG2IMG, Task.INPAINT, Task.IMG2VID):
            req["init_image"] = synthetic_image(self.width, self.height)
        if self.task is Task.INPAINT:
            # no blur and the exact size: the raw pipeline gets the very same image and mask
            req.update(mask=synthetic_mask(self.width, self.height), mask_blur=0, denoising_strength=1.0)
        if self.task.is_video:
            req.update(num_frames=self.num_frames, fps=8.0)
        return req


def synthetic_image(width: int, height: int) -> str:
    """A gradient with a disc (base64 PNG): the input image of image-conditioned tasks."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height))
    image.putdata([(255 * x // width, 255 * y // height, 128) for y in range(height) for x in range(width)])
    ImageDraw.Draw(image).ellipse((width // 3, height // 3, 2 * width // 3, 2 * height // 3), fill=(240, 200, 40))
    return _b64(image)


def synthetic_mask(width: int, height: int) -> str:
    from PIL import Image, ImageDraw

    mask = Image.new("L", (width, height), 0)
    ImageDraw.Draw(mask).rectangle((width // 4, height // 4, 3 * width // 4, 3 * height // 4), fill=255)
    return _b64(mask)


def _b64(image: Any) -> str:
    import base64
    import io

    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def task_for(engine_cls: type, entry: Any) -> Task:
    """The task a model is benchmarked on: txt2img (inpaint for inpainting models), txt2vid, else img2vid."""
    variant = getattr(entry, "variant", None) or {}
    if Task.TXT2IMG in engine_cls.tasks:
        return Task.INPAINT if variant.get("inpaint") else Task.TXT2IMG
    i2v = bool(variant.get("i2v")) or variant.get("task") == "i2v" or "ImageToVideo" in str(variant.get("pipeline"))
    if Task.TXT2VID in engine_cls.tasks and not i2v:
        return Task.TXT2VID
    return Task.IMG2VID


def find_models(models: Any, engines: list[str] | None, notes: list[str]) -> list[tuple[str, Any, bool]]:
    """(engine, inventory entry, is_demo) for every model of the chosen engines; an engine without a model gets
    the random-weight demo models built under <models_dir>/demo."""
    known = generation_engines()
    demo_dir = (models.models_dir / "demo").resolve()
    if engines is None:
        present = [str(getattr(e.family, "value", e.family)) for e in models.checkpoints()]
        engines = [k for k in known if k in present] or known
    found: list[tuple[str, Any, bool]] = []
    for engine in engines:
        entries = models.checkpoints(engine)
        if not entries:
            built = build_demos(models, engine)
            if built:
                notes.append(f"no {engine} model in {models.models_dir}: built the random-weight demo model(s) "
                             f"{', '.join(p.name for p in built)} in {models.models_dir / 'demo'}")
            entries = models.checkpoints(engine)
        if not entries:
            raise CodexError(f"no model of engine {engine!r} in {models.models_dir}, and no demo model for it")
        for entry in entries:
            found.append((engine, entry, Path(entry.path).resolve().is_relative_to(demo_dir)))
    return found


def build_demos(models: Any, engine: str) -> list[Path]:
    from sdcodex.cli.main import demo_engine
    from sdcodex.models.demo import build_demo_models, load_demo_builders

    families = [f for f in load_demo_builders() if demo_engine(f) == engine]
    if not families:
        return []
    built = build_demo_models(models.models_dir / "demo", families)
    models.refresh()
    return list(built.values())


def plan(models: Any, engines: list[str] | None, sizes: list[tuple[int, int]], steps: int | None,
         frames: int, notes: list[str]) -> list[Case]:
    """Check every size/frame rule first (nothing runs when one does not fit), then list the cases."""
    from sdcodex.core.registry import get_engine

    for engine in engines or []:
        cls = get_engine(engine)
        for width, height in sizes:
            check_size(cls, width, height)
        if Task.TXT2VID in cls.tasks or Task.IMG2VID in cls.tasks:
            check_frames(cls, frames)
    cases: list[Case] = []
    for engine, entry, demo in find_models(models, engines, notes):
        cls = get_engine(engine)
        task = task_for(cls, entry)
        if sizes:
            cell_sizes = sizes
        elif demo:
            cell_sizes = [(demo_size(cls), demo_size(cls))]
        else:
            cell_sizes = [(int(cls.defaults.get("width", 512)), int(cls.defaults.get("height", 512)))]
        for width, height in cell_sizes:
            check_size(cls, width, height)
            if task.is_video:
                check_frames(cls, frames)
            cell_steps = steps or (DEMO_STEPS if demo else int(cls.defaults.get("steps", 20)))
            cases.append(Case(engine, cls, entry, task, width, height, cell_steps,
                              frames if task.is_video else None, demo))
    return cases


# ------------------------------------------------------------------------------------------------ running
def _median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 4) if values else None


def _reset_vram_peak() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def run_case(orch: Any, models: Any, case: Case, *, repeat: int, seed: int, compare: bool,
             log: Any = None) -> dict[str, Any]:
    """Warm-up once (its load is the cold load), then `repeat` timed runs; with `compare`, the raw Diffusers
    pipeline runs between ours (ours, theirs, ours, theirs ...)."""
    row: dict[str, Any] = {"engine": case.engine, "model": case.entry.name, "task": case.task.value,
                           "width": case.width, "height": case.height, "steps": case.steps,
                           "num_frames": case.num_frames, "demo": case.demo, "repeat": repeat}
    request = case.request(seed)
    runs: list[dict[str, Any]] = []
    theirs: list[float] = []
    baseline = None
    try:
        _reset_vram_peak()
        warm = orch.run(request)
        info = warm.info
        row.update(cold_load_s=info["metrics"].get("load"), sampler=info.get("sampler_effective"),
                   scheduler=info.get("scheduler_effective"), warnings=list(info.get("warnings") or []))
        if compare:
            reason = not_implemented_reason(case.engine_cls, case.task)
            if reason:
                row["compare_diffusers"] = {"status": "not_implemented", "reason": reason}
            else:
                try:
                    baseline = DiffusersBaseline(models.last_loaded, case.engine_cls, case.task, info["request"],
                                                 seed=seed)
                    frames = baseline()  # warm-up, and the same-work check against our warm-up output
                    row["compare_diffusers"] = {"status": "ok", **baseline.describe(),
                                                "max_pixel_diff": pixel_diff(warm.pil_images, frames)}
                except Exception as exc:  # noqa: BLE001 - a baseline failure is reported, ours still counts
                    row["compare_diffusers"] = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"}
                    baseline = None
        for k in range(repeat):
            _reset_vram_peak()
            t = time.perf_counter()
            result = orch.run(request)
            wall = time.perf_counter() - t
            runs.append({**result.info["metrics"], "wall": round(wall, 4)})
            if log:
                log(f"  {case.label}: run {k + 1}/{repeat} {wall:.3f}s")
            if baseline is not None:
                t = time.perf_counter()
                try:
                    baseline()
                except Exception as exc:  # noqa: BLE001 - reported in the row; our runs go on
                    row["compare_diffusers"] = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"}
                    baseline = None
                    continue
                theirs.append(round(time.perf_counter() - t, 4))
    except CodexError as exc:
        row["error"] = str(exc)
        return row
    row["stages_s"] = {stage: _median([r.get(stage) for r in runs]) for stage in STAGES}
    row["it_per_s"] = _median([r.get("it_per_s") for r in runs])
    rss = [r["peak_rss_mb"] for r in runs if r.get("peak_rss_mb") is not None]
    vram = [r["peak_vram_mb"] for r in runs if r.get("peak_vram_mb") is not None]
    row["peak_rss_mb"] = max(rss) if rss else None
    row["peak_vram_mb"] = max(vram) if vram else None
    row["runs"] = runs
    if baseline is not None:
        ours = _median([r["wall"] for r in runs])
        ours_no_save = _median([r["wall"] - (r.get("save") or 0.0) for r in runs])
        med = _median(theirs)
        row["compare_diffusers"].update(
            ours_median_s=ours, diffusers_median_s=med, diffusers_runs_s=theirs,
            ratio=round(ours / med, 3) if med else None,
            ratio_without_save=round(ours_no_save / med, 3) if med else None)
    return row


def benchmark(models_dir: str | Path | None = None, *, engines: list[str] | None = None,
              sizes: list[tuple[int, int]] | None = None, steps: int | None = None, repeat: int = DEFAULT_REPEAT,
              frames: int = DEFAULT_FRAMES, seed: int = 1, compare: bool = False, outdir: str | Path | None = None,
              device: str | None = None, log: Any = None, offload: list[str] | None = None,
              model: str | None = None) -> dict[str, Any]:
    """Run the matrix and return the report (the JSON document). Raises ValidationError for bad arguments.
    `offload` (a list of policies; [] = all): run each model under each policy instead (bench_offload.py);
    `model`: only this model (a name or path the models folder resolves)."""
    from sdcodex.runtime import build_orchestrator, quiet_libraries

    if repeat < 1:
        raise ValidationError(f"must be at least 1 (got {repeat})", field="--repeat")
    if steps is not None and steps < 1:
        raise ValidationError(f"must be at least 1 (got {steps})", field="--steps")
    quiet_libraries()
    engines = resolve_engines(engines)
    notes: list[str] = []
    work = Path(outdir) if outdir else Path(tempfile.mkdtemp(prefix="sdcodex-bench-"))
    try:
        device = device or os.environ.get("SDCODEX_DEVICE") or _default_device()
        models = _RecordingModels(models_dir, device=device)
        orch = build_orchestrator(models=models, outdir=work, device=device)
        if model:
            entry = models.resolve(model)
            engines = [str(getattr(entry.family, "value", entry.family))]
        elif offload is not None and not engines:
            engines = [OFFLOAD_DEFAULT_ENGINE]
        cases = plan(models, engines, list(sizes or []), steps, frames, notes)
        if model:
            cases = [c for c in cases if Path(c.entry.path).resolve() == Path(entry.path).resolve()]
        for note in notes:
            if log:
                log(note)
        rows = []
        if offload is not None:
            from sdcodex.cli.bench_offload import SCHEMA as OFFLOAD_SCHEMA, run_policies
            from sdcodex.engines.memory import OFFLOAD_POLICIES

            policies = list(dict.fromkeys(offload)) or list(OFFLOAD_POLICIES)
            for case in cases:
                if log:
                    log(f"{case.label} {case.task.value}: offload {', '.join(policies)}, warm-up + {repeat} run(s) each")
                rows += run_policies(orch, case, policies, repeat=repeat, seed=seed, log=log)
            return {"schema": OFFLOAD_SCHEMA, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                    "environment": environment(orch.device), "models_dir": str(models.models_dir),
                    "repeat": repeat, "seed": seed, "policies": policies, "notes": notes, "rows": rows}
        for case in cases:
            if log:
                log(f"{case.label} {case.task.value}: warm-up + {repeat} run(s)"
                    + (" interleaved with raw Diffusers" if compare else ""))
            rows.append(run_case(orch, models, case, repeat=repeat, seed=seed, compare=compare, log=log))
    finally:
        if not outdir:
            shutil.rmtree(work, ignore_errors=True)
    return {"schema": SCHEMA, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "environment": environment(orch.device), "models_dir": str(models.models_dir), "repeat": repeat,
            "seed": seed, "compare_diffusers": compare, "notes": notes, "rows": rows}


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def environment(device: str) -> dict[str, Any]:
    import platform

    import diffusers
    import torch

    env: dict[str, Any] = {"device": device, "python": platform.python_version(), "torch": torch.__version__,
                           "diffusers": diffusers.__version__, "cpu_threads": torch.get_num_threads()}
    if torch.cuda.is_available() and str(device).startswith("cuda"):
        env["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return env


# ------------------------------------------------------------------------------------------------ the CLI
def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("benchmark", help="time generation per stage over the available models and sizes",
                              description="Times the real generation path over models x sizes. Without models, "
                                          "the random-weight demo models are built under <models_dir>/demo.")
    p.add_argument("--engine", action="extend", nargs="+", default=None, metavar="E",
                   help="engines to run (default: every engine with a model)")
    p.add_argument("--size", action="extend", nargs="+", default=None, metavar="WxH",
                   help="sizes (default: the engine's default size; 64x64 for demo models)")
    p.add_argument("--steps", type=int, default=None, help="steps (default: the engine's default; 4 for demo models)")
    p.add_argument("--frames", type=int, default=DEFAULT_FRAMES, help="num_frames for video engines (default 5)")
    p.add_argument("--repeat", type=int, default=DEFAULT_REPEAT, help="timed runs per cell, after one warm-up")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--compare-diffusers", action="store_true",
                   help="also run the raw Diffusers pipeline, interleaved, and print overhead ratios")
    p.add_argument("--offload", nargs="*", default=None, metavar="POLICY",
                   choices=["none", "model", "group", "sequential"],
                   help="compare offloading policies instead (all four when none is named): time and peak device "
                        "memory per policy; policies the device cannot run are listed with the reason")
    p.add_argument("--model", default=None, help="only this model (name or path in the models folder)")
    p.add_argument("--json", default=None, metavar="FILE", help="write the report as JSON ('-': standard output)")
    p.add_argument("--chart", default=None, metavar="FILE.png", help="write a PNG bar chart of per-stage seconds")
    p.add_argument("--outdir", default=None, help="keep the generated outputs here (default: a temporary folder)")
    p.add_argument("--device", default=None, help="cuda, cuda:1, cpu ... (default: cuda when available)")
    p.add_argument("--models-dir", dest="models_dir_sub", default=None)
    p.set_defaults(func=run)


def _fail(message: str, code: int = 2) -> int:
    print(f"sdcodex: error: {message}", file=sys.stderr)
    return code


def run(args: argparse.Namespace) -> int:
    from sdcodex.cli.bench_chart import format_table, write_chart

    try:
        sizes = [parse_size(s) for s in (args.size or [])]
        if args.chart and not str(args.chart).lower().endswith(".png"):
            raise ValidationError(f"{args.chart!r} must end in .png", field="--chart")
        report = benchmark(getattr(args, "models_dir_sub", None) or args.models_dir, engines=args.engine,
                           sizes=sizes, steps=args.steps, repeat=args.repeat, frames=args.frames, seed=args.seed,
                           compare=args.compare_diffusers, outdir=args.outdir, device=args.device,
                           log=lambda line: print(line, file=sys.stderr, flush=True), offload=args.offload,
                           model=args.model)
    except CodexError as exc:
        return _fail(str(exc))
    to_stdout = args.json == "-"
    if args.offload is not None:
        from sdcodex.cli.bench_offload import format_offload_table

        print(format_offload_table(report), file=sys.stderr if to_stdout else sys.stdout)
    else:
        print(format_table(report), file=sys.stderr if to_stdout else sys.stdout)
    try:
        if args.json:
            text = json.dumps(report, indent=2, default=str)
            if to_stdout:
                print(text)
            else:
                Path(args.json).parent.mkdir(parents=True, exist_ok=True)
                Path(args.json).write_text(text + "\n", encoding="utf-8")
        if args.chart and args.offload is None:
            write_chart(report, args.chart)
    except OSError as exc:
        return _fail(f"cannot write {exc.filename}: {exc.strerror}")
    failed = [r for r in report["rows"] if r.get("error") or r.get("status") == "error"]
    for row in failed:
        print(f"sdcodex: error: {row['engine']} {row['model']} {row['width']}x{row['height']}: "
              f"{row.get('error') or row.get('reason')}", file=sys.stderr)
    return 1 if failed else 0
