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


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("serve", help="run the HTTP API server (A1111, OpenAI-style and native APIs)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--outdir", default=None, help="output folder (default ./outputs)")
    p.add_argument("--db", default=None, help="job database (default <outdir>/jobs.sqlite)")
    p.add_argument("--api-auth", default=os.environ.get("SDCODEX_API_AUTH"),
                   help="HTTP Basic credentials user:pass[,user:pass] (env SDCODEX_API_AUTH)")
    p.add_argument("--api-token", action="append", default=None,
                   help="bearer token (repeatable; env SDCODEX_API_TOKEN)")
    p.add_argument("--insecure-no-auth", action="store_true",
                   help="allow a non-loopback --host without any authentication")
    p.add_argument("--max-body-mb", type=float, default=64.0, help="largest request body (MiB)")
    p.add_argument("--max-image-pixels", type=int, default=8192 * 8192, help="largest input image (pixels)")
    p.add_argument("--max-output-pixels", type=int, default=None,
                   help="largest job: width x height x frames x images (default: no limit)")
    p.add_argument("--device", default=None, help="cuda, cuda:1, cpu ... (default: cuda when available)")
    p.add_argument("--no-ui", action="store_true", help="do not mount the web UI at /")
    p.add_argument("--models-dir", dest="models_dir_sub", default=None)
    p.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace) -> "ServerSettings":
    from sdcodex.core.logs import register_secret
    from sdcodex.server.auth import parse_credentials
    from sdcodex.server.service import ServerSettings  # noqa: F811

    users = parse_credentials(args.api_auth)
    tokens = list(args.api_token or [])
    if not tokens and os.environ.get("SDCODEX_API_TOKEN"):
        tokens = [os.environ["SDCODEX_API_TOKEN"]]
    for _user, password in users:
        register_secret(password)
    for token in tokens:
        register_secret(token)
    return ServerSettings(models_dir=getattr(args, "models_dir_sub", None) or args.models_dir, outdir=args.outdir,
                          db_path=args.db, host=args.host, port=args.port, api_auth=users, api_tokens=tokens,
                          insecure_no_auth=args.insecure_no_auth, max_body_bytes=int(args.max_body_mb * 2**20),
                          max_image_pixels=args.max_image_pixels, max_output_pixels=args.max_output_pixels,
                          device=args.device)


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
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=30)
    return 0
