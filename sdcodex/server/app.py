"""`create_app(settings)`: the one FastAPI app — native API (/api/v1), A1111 API (/sdapi/v1) and
OpenAI-style API (/v1) over one job queue and one orchestrator, with auth, body limits and one error
shape per face. The web UI mounts on the same app (see `mount_ui`)."""
from __future__ import annotations

import json
import logging
import uuid
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from sdcodex import __version__
from sdcodex.core.errors import CodexError, ValidationError
from sdcodex.core.request import json_path

from .auth import Authenticator, AuthMiddleware, HostOriginMiddleware, check_bind
from .limits import BodyLimitMiddleware
from .service import CodexService, ServerSettings

log = logging.getLogger("sdcodex.server")


def error_body(path: str, exc: CodexError, status: int) -> dict[str, Any]:
    """The error shape of the face that owns `path`: OpenAI style under /v1, ours (plus A1111's
    `detail`) elsewhere."""
    if path.startswith("/v1/"):
        kind = "invalid_request_error" if status < 500 else "server_error"
        return {"error": {"message": str(exc), "type": kind, "param": exc.field, "code": exc.code}}
    body = exc.to_dict()
    if path.startswith(("/sdapi/", "/controlnet/")):
        body.setdefault("detail", str(exc))
    return body


def from_request_validation(exc: RequestValidationError) -> ValidationError:
    """FastAPI's error list -> our ValidationError, with JSON paths relative to the body."""
    problems = []
    for err in exc.errors():
        loc = tuple(err.get("loc") or ())
        where = loc[0] if loc else "body"
        rest = loc[1:] if where in ("body", "query", "path", "header") else loc
        if err.get("type") == "json_invalid":
            problems.append({"field": "(request)", "message": f"invalid JSON: {err.get('msg')}"})
            continue
        path = json_path(rest) if rest else "(request)"
        if where in ("query", "path", "header") and rest:
            path = f"{where}.{path}"
        msg = "unknown key" if err.get("type") == "extra_forbidden" else str(err.get("msg"))
        problems.append({"field": path, "message": msg})
    if not problems:
        problems = [{"field": "(request)", "message": "invalid request"}]
    first = problems[0]
    message = first["message"] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
    return ValidationError(message, field=first["field"], errors=problems)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(CodexError)
    async def _codex(request: Request, exc: CodexError) -> JSONResponse:
        status = exc.http_status if 400 <= exc.http_status < 600 else 500
        return JSONResponse(error_body(request.url.path, exc, status), status_code=status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        err = from_request_validation(exc)
        return JSONResponse(error_body(request.url.path, err, 422), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        err = CodexError(str(exc.detail))
        err.code = {404: "not_found", 405: "method_not_allowed", 409: "conflict"}.get(exc.status_code, "http_error")
        return JSONResponse(error_body(request.url.path, err, exc.status_code), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))



class CrashMiddleware:
    """ASGI middleware inside Starlette's own error layer: an exception no handler took becomes a 500 in the
    face's error shape with an error id (the traceback goes to the log under that id), and the connection
    stays open for the next request. The message never carries the exception text (it may hold paths)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:  # noqa: BLE001 - the last line of defence
            if started:
                raise  # a streamed answer already began: nothing sensible can be sent any more
            path = scope.get("path", "")
            if isinstance(exc, UnicodeError):  # text that cannot be encoded got past the field checks
                err: CodexError = ValidationError("the request holds text that is not valid Unicode (a lone "
                                                  "surrogate)", field="(request)")
                status = 422
            else:
                error_id = uuid.uuid4().hex[:12]
                log.error("unhandled error %s on %s %s", error_id, scope.get("method"), path, exc_info=exc)
                err = CodexError(f"internal error {error_id}: the server log has the details")
                err.code = "internal_error"
                status = 500
            body = json.dumps(error_body(path, err, status)).encode()
            await send({"type": "http.response.start", "status": status,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})


def mount_ui(app: FastAPI, service: CodexService) -> bool:
    """Mount the web UI at / when the UI room provides `sdcodex.ui.mount(app, service)`."""
    try:
        from sdcodex import ui
    except ImportError:
        return False
    mount = getattr(ui, "mount", None)
    if mount is None:
        return False
    mount(app, service)
    return True


def create_app(settings: ServerSettings | None = None, *, with_ui: bool = False) -> FastAPI:
    """Build the app. The worker starts (and the queue is recovered) when the app starts."""
    settings = settings or ServerSettings()
    auth = Authenticator(settings.api_auth, settings.api_tokens)
    check_bind(settings.host, has_auth=auth.enabled, insecure_no_auth=settings.insecure_no_auth)
    service = CodexService(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.start()
        try:
            yield
        finally:
            service.stop()

    app = FastAPI(title="Codex (sdcodex) API", version=__version__, lifespan=lifespan,
                  description="Native API (/api/v1, strict requests and jobs), AUTOMATIC1111-compatible API "
                              "(/sdapi/v1) and OpenAI-style API (/v1) over one persistent job queue. "
                              "See docs/api.md.")
    app.state.codex = service
    _install_error_handlers(app)

    from . import a1111, controlnet_api, library, native, openai, outputs_api

    app.include_router(outputs_api.router)  # before native: /outputs (the listing) beside /outputs/{path}
    app.include_router(native.router)
    app.include_router(library.router)
    app.include_router(a1111.router)
    app.include_router(controlnet_api.router)
    app.include_router(openai.router)
    if with_ui:
        mount_ui(app, service)
    app.add_middleware(CrashMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(AuthMiddleware, authenticator=auth)
    # outermost: a request for another host name (DNS rebinding) or a cross-site POST (CSRF) goes no further
    app.add_middleware(HostOriginMiddleware, bind_host=settings.host, allowed_hosts=settings.allowed_hosts)
    return app


def service_of(request: Request) -> CodexService:
    return request.app.state.codex
