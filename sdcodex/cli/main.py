"""`sdcodex` command line: generate, demo, models, presets, png-info, and the operator commands.
Every generating command goes through the same orchestrator as the server and the UI."""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from sdcodex import __version__
from sdcodex.core.errors import CodexError

log = logging.getLogger("sdcodex.cli")

#: modules under sdcodex.cli that add their own sub-commands (`add_parser(subparsers)`)
PLUGIN_MODULES = ("serve", "cache_models", "export_debug", "benchmark")


def _fail(message: str, code: int = 2) -> int:
    print(f"sdcodex: error: {message}", file=sys.stderr)
    return code


class _ProgressBar:
    """A one-line terminal progress bar fed by the orchestrator's progress events (stderr only)."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() or os.environ.get("SDCODEX_PROGRESS") == "1"

    def __call__(self, event: Any) -> None:
        if not self.enabled:
            return
        if event.kind == "progress":
            d = event.data
            width = 30
            filled = int(width * d["progress"])
            eta = f" ETA {d['eta']:.1f}s" if d.get("eta") is not None else ""
            rate = f" {d['it_per_s']:.2f} it/s" if d.get("it_per_s") else ""
            self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {d['done']}/{d['total']}{rate}{eta} ")
            self.stream.flush()
        elif event.kind in ("done", "interrupted"):
            self.stream.write("\n")
            self.stream.flush()


def _read_request(args: argparse.Namespace) -> dict[str, Any]:
    if args.from_image:
        from sdcodex.media.reader import read_info

        info = read_info(args.from_image)
        request = info.get("request")
        if not request:
            raise CodexError(f"{args.from_image} carries no Codex request metadata "
                             f"(only images and videos written by Codex can be reproduced exactly)")
        request = {k: v for k, v in request.items() if k != "info"}
        return request
    source = args.request
    if source is None:
        raise CodexError("give a request file, '-' for standard input, or --from IMAGE")
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        raise CodexError(f"cannot read request {source!r}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CodexError(f"request is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    return data


def cmd_generate(args: argparse.Namespace) -> int:
    from sdcodex.core.events import EventSink
    from sdcodex.runtime import build_orchestrator

    try:
        request = _read_request(args)
        orch = build_orchestrator(args.models_dir, args.outdir, allow_paths=True, allow_pickle=args.allow_pickle,
                                  offload=args.offload, attention=args.attention, compile=args.compile)
        result = orch.run(request, events=EventSink([_ProgressBar()]))
    except CodexError as exc:
        return _fail(str(exc))
    json.dump(result.to_json(), sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
    return 0


def _demo_image_b64(kind: str) -> str:
    """A synthetic picture (gradient with a disc) or mask, as base64 PNG, for the demo's image tasks."""
    import base64
    import io

    from PIL import Image, ImageDraw

    size = 64
    if kind == "mask":
        image = Image.new("L", (size, size), 0)
        ImageDraw.Draw(image).ellipse((16, 16, 48, 48), fill=255)
    else:
        image = Image.new("RGB", (size, size))
        image.putdata([(4 * x, 4 * y, 128) for y in range(size) for x in range(size)])
        ImageDraw.Draw(image).ellipse((20, 20, 44, 44), fill=(240, 200, 40))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def demo_engine(name: str) -> str | None:
    """The engine a demo model runs on ("sd15_inpaint" -> "sd15", "flux_schnell" -> "flux"), if registered."""
    from sdcodex.core.enums import EngineKey
    from sdcodex.core.registry import ENGINES

    matches = [k.value for k in EngineKey if name == k.value or name.startswith(k.value + "_")]
    key = max(matches, key=len) if matches else None
    return key if key and key in ENGINES else None


def demo_requests(name: str) -> list[dict[str, Any]]:
    """What `sdcodex demo` runs on each demo model (tiny sizes: the weights are random)."""
    from sdcodex.core.registry import ENGINES

    engine = demo_engine(name)
    if engine is None:
        return []
    tasks = ENGINES.get(engine).tasks
    base = {"prompt": "a lighthouse on a cliff at sunset", "width": 64, "height": 64, "steps": 4, "seed": 0}
    image = {"init_image": _demo_image_b64("image")}
    if "inpaint" in name:
        return [{**base, **image, "task": "inpaint", "denoising_strength": 0.6, "mask": _demo_image_b64("mask")}]
    if any(t.value == "txt2img" for t in tasks):
        runs = [{**base, "task": "txt2img", "batch_size": 2}]
        if any(t.value == "img2img" for t in tasks):
            runs.append({**base, **image, "task": "img2img", "denoising_strength": 0.6})
        elif ENGINES.get(engine).max_images:  # reference-image editing (FLUX.2)
            runs.append({**base, "task": "txt2img", "images": [image["init_image"]]})
        return runs
    video = {**base, "steps": 2, "num_frames": 5, "fps": 8.0}
    if "i2v" in name or not any(t.value == "txt2vid" for t in tasks):
        return [{**video, **image, "task": "img2vid"}]
    return [{**video, "task": "txt2vid"}]


def cmd_demo(args: argparse.Namespace) -> int:
    from sdcodex.core.events import EventSink
    import sdcodex.engines  # noqa: F401  (registers the engines)
    from sdcodex.models.demo import build_demo_models, load_demo_builders
    from sdcodex.runtime import LocalModels, build_orchestrator

    DEMO_BUILDERS = load_demo_builders()
    models = LocalModels(args.models_dir)
    dest = models.models_dir / "demo"
    families = [f for f in DEMO_BUILDERS if demo_engine(f) and (not args.only or f in args.only)]
    print("Building tiny RANDOM-WEIGHT demo models (they show the machinery, not pictures) in", dest)
    built = build_demo_models(dest, families)
    models.refresh()
    orch = build_orchestrator(models=models, outdir=args.outdir)
    outputs: dict[str, Any] = {}
    try:
        for name, path in built.items():
            for request in demo_requests(name):
                req = {**request, "model": str(path)}
                result = orch.run(req, events=EventSink([_ProgressBar()]))
                files = result.images + result.videos
                outputs.setdefault(name, []).extend(files)
                print(f"  {name:22s} {req['task']:8s} -> {', '.join(files)}  "
                      f"({result.info['metrics']['total']:.2f}s, sampler {result.info['sampler_effective']}"
                      f" / {result.info['scheduler_effective']})")
    except CodexError as exc:
        return _fail(str(exc))
    print("Done. These outputs come from random weights: noise-like images are expected.")
    print("Put real checkpoints in", models.models_dir, "and run `sdcodex generate request.json`.")
    if args.json:
        json.dump(outputs, sys.stdout, indent=2)
        sys.stdout.write("\n")
    return 0


def cmd_models_list(args: argparse.Namespace) -> int:
    from sdcodex.runtime import LocalModels

    try:
        models = LocalModels(args.models_dir)
        entries = models.refresh()
        if args.kind:
            entries = [e for e in entries if e.kind == args.kind]
        rows = [dict(e.to_dict(), hash=None if e.variant.get("error") else models.short_hash(e)) for e in entries]
    except CodexError as exc:
        return _fail(str(exc))
    if args.json:
        json.dump(rows, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
        return 0
    if not rows:
        print(f"no models in {models.models_dir} (run `sdcodex demo` for random-weight demo models)")
        return 0
    for row in rows:
        print(f"{row['name']:32s} {str(row.get('family') or '-'):16s} {row['kind']:16s} {row.get('hash') or '':10s} "
              f"{row['path']}")
        if row.get("error"):
            print(f"    unusable: {row['error']}")
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    from sdcodex.core.presets import all_presets, presets_dir

    try:
        presets = all_presets(Path(args.dir) if args.dir else None)
    except CodexError as exc:
        return _fail(str(exc))
    if args.action == "validate":
        print(f"{len(presets)} presets valid in {Path(args.dir) if args.dir else presets_dir()}")
        return 0
    if args.json:
        json.dump([p.to_dict() for p in presets.values()], sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for pid, preset in presets.items():
            print(f"{pid:36s} {preset.description}")
    return 0


def cmd_png_info(args: argparse.Namespace) -> int:
    from sdcodex.media.reader import read_info

    try:
        info = read_info(args.file)
    except (CodexError, OSError) as exc:
        return _fail(str(exc))
    if args.json:
        json.dump(info, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        print(info.get("parameters") or "(no generation parameters found)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sdcodex", description="Codex diffusion inference")
    parser.add_argument("--version", action="version", version=f"sdcodex {__version__}")
    parser.add_argument("--models-dir", default=None, help="models folder (env SDCODEX_MODELS_DIR, default ./models)")
    parser.add_argument("--log-format", choices=["text", "json"], default="text")
    parser.add_argument("--log-level", default=os.environ.get("SDCODEX_LOG_LEVEL", "WARNING"))
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    from sdcodex.cli.serve import add_speed_options

    gen = sub.add_parser("generate", help="run one request (JSON file or - for stdin)")
    gen.add_argument("request", nargs="?", help="request JSON file, or - for standard input")
    gen.add_argument("--from", dest="from_image", help="reproduce the image/video written by Codex")
    gen.add_argument("--outdir", default=None, help="output folder (default ./outputs)")
    gen.add_argument("--models-dir", dest="models_dir_sub", default=None)
    gen.add_argument("--allow-pickle", action="store_true", help="allow loading pickle .ckpt/.pt files (unsafe)")
    gen.add_argument("--offload", default=None, choices=["auto", "none", "model", "group", "sequential"],
                     help="offload policy (a request's `offload` wins; env SDCODEX_OFFLOAD)")
    add_speed_options(gen)
    gen.set_defaults(func=cmd_generate)

    demo = sub.add_parser("demo", help="build tiny random-weight demo models and generate with each")
    demo.add_argument("--outdir", default=None)
    demo.add_argument("--json", action="store_true")
    demo.add_argument("--only", nargs="+", default=None, metavar="FAMILY", help="build/run only these demo models")
    demo.set_defaults(func=cmd_demo)

    models = sub.add_parser("models", help="model inventory")
    msub = models.add_subparsers(dest="action", metavar="ACTION", required=True)
    mlist = msub.add_parser("list", help="list models found in the models folder")
    mlist.add_argument("--json", action="store_true")
    mlist.add_argument("--kind", default=None, help="checkpoint, vae, lora, upscaler, text_encoder, ...")
    mlist.set_defaults(func=cmd_models_list)

    presets = sub.add_parser("presets", help="list or validate presets")
    presets.add_argument("action", choices=["list", "validate"])
    presets.add_argument("--dir", default=None)
    presets.add_argument("--json", action="store_true")
    presets.set_defaults(func=cmd_presets)

    info = sub.add_parser("png-info", help="read generation parameters from an image or video")
    info.add_argument("file")
    info.add_argument("--json", action="store_true")
    info.set_defaults(func=cmd_png_info)

    for name in PLUGIN_MODULES:
        try:
            module = importlib.import_module(f"sdcodex.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"sdcodex.cli.{name}":
                continue
            raise
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "models_dir_sub", None):
        args.models_dir = args.models_dir_sub
    try:
        from sdcodex.core.logs import setup_logging

        setup_logging(level=args.log_level.upper(), fmt=args.log_format)
    except ImportError:  # logging module not there yet: keep Python's defaults
        logging.basicConfig(level=args.log_level.upper())
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
