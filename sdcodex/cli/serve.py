"""`sdcodex serve`: run the HTTP server (native, A1111 and OpenAI-style APIs, web UI when present) with
uvicorn. Loopback by default; another address needs --api-auth/--api-token or --insecure-no-auth."""
from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from sdcodex.core.errors import CodexError

if TYPE_CHECKING:
    from sdcodex.server.service import ServerSettings


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from sdcodex.server.limits import (DEFAULT_MAX_FRAMES, DEFAULT_MAX_IMAGES, DEFAULT_MAX_OUTPUT_PIXELS,
                                       DEFAULT_MAX_PROMPT_BYTES, DEFAULT_MAX_STEPS)

    p = subparsers.add_parser("serve", help="run the HTTP API server (A1111, OpenAI-style and native APIs)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--outdir", default=None, help="output folder (default ./outputs)")
    p.add_argument("--data-dir", default=None,
                   help="folder of the job database (default: `data` beside the output folder; env SDCODEX_DATA_DIR)")
    p.add_argument("--db", default=None, help="job database file (default <data-dir>/jobs.sqlite; env SDCODEX_DB)")
    p.add_argument("--styles-file", default=None,
                   help="A1111 styles.csv of the prompt styles (default <data-dir>/styles.csv; env SDCODEX_STYLES_FILE)")
    p.add_argument("--api-auth", default=os.environ.get("SDCODEX_API_AUTH"),
                   help="HTTP Basic credentials user:pass[,user:pass], passwords of 8+ characters "
                        "(env SDCODEX_API_AUTH; prefer --api-auth-file, flags show in `ps`)")
    p.add_argument("--api-auth-file", default=os.environ.get("SDCODEX_API_AUTH_FILE"),
                   help="file with user:pass lines (env SDCODEX_API_AUTH_FILE)")
    p.add_argument("--api-token", action="append", default=None,
                   help="bearer token, 8+ characters (repeatable; env SDCODEX_API_TOKEN)")
    p.add_argument("--api-token-file", default=os.environ.get("SDCODEX_API_TOKEN_FILE"),
                   help="file with one bearer token per line (env SDCODEX_API_TOKEN_FILE)")
    p.add_argument("--insecure-no-auth", action="store_true",
                   help="allow a non-loopback --host without any authentication")
    p.add_argument("--allowed-host", action="append", default=None,
                   help="a Host name this server answers besides loopback names and --host (repeatable; "
                        "also trusted as a browser Origin; env SDCODEX_ALLOWED_HOSTS, comma-separated)")
    p.add_argument("--max-body-mb", type=float, default=64.0, help="largest request body (MiB)")
    p.add_argument("--max-image-pixels", type=int, default=8192 * 8192, help="largest input image (pixels)")
    p.add_argument("--max-output-pixels", type=int,
                   default=_env_int("SDCODEX_MAX_OUTPUT_PIXELS", DEFAULT_MAX_OUTPUT_PIXELS),
                   help="largest job: width x height x frames x images (default %(default)s; 0: no limit)")
    p.add_argument("--max-steps", type=int, default=_env_int("SDCODEX_MAX_STEPS", DEFAULT_MAX_STEPS),
                   help="most sampling steps per pass (default %(default)s; 0: no limit)")
    p.add_argument("--max-frames", type=int, default=_env_int("SDCODEX_MAX_FRAMES", DEFAULT_MAX_FRAMES),
                   help="most video frames per job (default %(default)s; 0: no limit)")
    p.add_argument("--max-images", type=int, default=_env_int("SDCODEX_MAX_IMAGES", DEFAULT_MAX_IMAGES),
                   help="most images per job, batch_size x batch_count (default %(default)s; 0: no limit)")
    p.add_argument("--max-prompt-bytes", type=int,
                   default=_env_int("SDCODEX_MAX_PROMPT_BYTES", DEFAULT_MAX_PROMPT_BYTES),
                   help="longest prompt in UTF-8 bytes (default %(default)s; 0: no limit)")
    p.add_argument("--device", default=None, help="cuda, cuda:1, cpu ... (default: cuda when available)")
    p.add_argument("--devices", default=os.environ.get("SDCODEX_DEVICES"),
                   help="one worker per device over the same queue: cpu,cpu | cuda:0,cuda:1 | auto (every CUDA "
                        "device); env SDCODEX_DEVICES (default: one worker on --device)")
    p.add_argument("--backend", default="local", choices=["local", "ray"],
                   help="local: workers in this process; ray: jobs run on Ray Serve replicas (pip install .[ray]; "
                        "see docs/scale.md)")
    p.add_argument("--ray-address", default=None,
                   help="Ray cluster to join (e.g. ray://head:10001 or auto); default: start a local Ray instance")
    p.add_argument("--replicas", type=int, default=1, help="Ray Serve replicas of the orchestrator (default 1)")
    p.add_argument("--models-per-replica", type=int, default=2,
                   help="models one replica keeps loaded; the least recently used goes first (default 2)")
    p.add_argument("--ray-gpus-per-replica", type=float, default=0.0,
                   help="GPUs each replica reserves (ray_actor_options num_gpus; default 0: CPU replicas)")
    p.add_argument("--ray-cpus-per-replica", type=float, default=1.0,
                   help="CPUs each replica reserves (ray_actor_options num_cpus; default 1)")
    p.add_argument("--ray-models-dir", default=None,
                   help="the models folder as the replicas' nodes see it (default: this server's models folder)")
    p.add_argument("--offload", default=None, choices=["auto", "none", "model", "group", "sequential"],
                   help="where weights live: auto (from model size and free memory; default), none, model, group, "
                        "sequential; a request's `offload` wins (env SDCODEX_OFFLOAD)")
    add_speed_options(p)
    p.add_argument("--no-ui", action="store_true", help="do not mount the web UI at /")
    p.add_argument("--models-dir", dest="models_dir_sub", default=None)
    p.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace) -> "ServerSettings":
    from sdcodex.core.logs import register_secret
    from sdcodex.server.auth import parse_credentials, parse_tokens, read_secret_file
    from sdcodex.server.service import ServerSettings  # noqa: F811

    auth_text = args.api_auth or ""
    if getattr(args, "api_auth_file", None):
        auth_text = ",".join(t for t in (auth_text, read_secret_file(args.api_auth_file, "api_auth_file")) if t)
    users = parse_credentials(auth_text)
    tokens = list(args.api_token or [])
    if not tokens and os.environ.get("SDCODEX_API_TOKEN"):
        tokens = [os.environ["SDCODEX_API_TOKEN"]]
    if getattr(args, "api_token_file", None):
        tokens += read_secret_file(args.api_token_file, "api_token_file").splitlines()
    tokens = parse_tokens(tokens)
    for _user, password in users:
        register_secret(password)
    for token in tokens:
        register_secret(token)
    hosts = list(getattr(args, "allowed_host", None) or [])
    hosts += [h.strip() for h in os.environ.get("SDCODEX_ALLOWED_HOSTS", "").split(",") if h.strip()]
    return ServerSettings(models_dir=getattr(args, "models_dir_sub", None) or args.models_dir, outdir=args.outdir,
                          data_dir=getattr(args, "data_dir", None), db_path=args.db,
                          styles_file=getattr(args, "styles_file", None), host=args.host, port=args.port,
                          api_auth=users, api_tokens=tokens, insecure_no_auth=args.insecure_no_auth,
                          max_body_bytes=int(args.max_body_mb * 2**20), max_image_pixels=args.max_image_pixels,
                          max_output_pixels=args.max_output_pixels, max_steps=args.max_steps,
                          max_frames=args.max_frames, max_images=args.max_images,
                          max_prompt_bytes=args.max_prompt_bytes, allowed_hosts=hosts, device=args.device,
                          offload=getattr(args, "offload", None), attention=getattr(args, "attention", None),
                          compile=getattr(args, "compile", None), **scale_settings(args))


def add_speed_options(p: argparse.ArgumentParser) -> None:
    """--attention and --compile (serve and generate; see docs/memory.md)."""
    from sdcodex.core.request import ATTENTION_BACKENDS

    p.add_argument("--attention", default=None, choices=list(ATTENTION_BACKENDS),
                   help="attention backend of the denoiser (Diffusers' attention dispatcher): native/sdpa (default), "
                        "math, flex, efficient/cudnn (CUDA), flash, flash3, sage, xformers (CUDA + their package); "
                        "a request's `attention` wins (env SDCODEX_ATTENTION)")
    p.add_argument("--compile", action="store_const", const=True, default=None,
                   help="torch.compile the denoiser's repeated blocks (regional compile) on first use; env "
                        "SDCODEX_COMPILE=1")


def scale_settings(args: argparse.Namespace) -> dict:
    """The settings of --devices and the Ray backend (see docs/scale.md)."""
    from sdcodex.core.errors import ValidationError
    from sdcodex.runtime import parse_devices

    out: dict = {"backend": getattr(args, "backend", "local") or "local"}
    if getattr(args, "devices", None):
        out["devices"] = parse_devices(args.devices)
    for flag, name in (("--replicas", "replicas"), ("--models-per-replica", "models_per_replica")):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise ValidationError("must be at least 1", field=flag, allowed=">= 1")
        if value is not None:
            out[name] = value
    for name in ("ray_address", "ray_gpus_per_replica", "ray_cpus_per_replica", "ray_models_dir"):
        if getattr(args, name, None) is not None:
            out[name] = getattr(args, name)
    return out


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from sdcodex.server.app import create_app

    try:
        settings = settings_from_args(args)
        app = create_app(settings, with_ui=not args.no_ui)
    except CodexError as exc:
        print(f"sdcodex: error: {exc}", file=sys.stderr)
        return 2
    print(f"sdcodex serve: http://{args.host}:{args.port}  (docs at /docs; A1111 API at /sdapi/v1)", file=sys.stderr)
    # h11 and asyncio even where uvloop/httptools are installed (the Ray extra brings them): one behaviour
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=30,
                http="h11", loop="asyncio")
    return 0
