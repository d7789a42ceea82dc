"""HTTP Basic and bearer-token authentication for every route (constant-time compares, 401 with
WWW-Authenticate), and the bind-address rule: a non-loopback host without auth refuses to start."""
from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import json
from typing import Any, Iterable

from sdcodex.core.errors import ValidationError


MIN_PASSWORD_LENGTH = 8
MIN_TOKEN_LENGTH = 8


def parse_credentials(text: str | None) -> list[tuple[str, str]]:
    """'user:pass[,user2:pass2]' (commas or new lines between pairs) -> [(user, pass), ...]. A pair without
    ':', an empty user, or a password shorter than 8 characters is an error: a weak password must not
    count as authentication (it would allow a public bind)."""
    out: list[tuple[str, str]] = []
    for part in (text or "").replace("\n", ",").split(","):
        part = part.strip()
        if not part or part.startswith("#"):
            continue
        user, sep, password = part.partition(":")
        if not sep or not user:
            raise ValidationError("each credential must be user:password", field="api_auth",
                                  allowed="user:pass[,user:pass]")
        if len(password) < MIN_PASSWORD_LENGTH:
            raise ValidationError(f"the password of user {user!r} is {'empty' if not password else 'too short'}",
                                  field="api_auth", allowed=f"passwords of at least {MIN_PASSWORD_LENGTH} characters")
        out.append((user, password))
    return out


def parse_tokens(tokens: Iterable[str]) -> list[str]:
    """Bearer tokens (blank ones dropped); a token shorter than 8 characters is an error."""
    out = [t.strip() for t in tokens if t and t.strip()]
    short = [t for t in out if len(t) < MIN_TOKEN_LENGTH]
    if short:
        raise ValidationError("an API token is too short", field="api_token",
                              allowed=f"tokens of at least {MIN_TOKEN_LENGTH} characters")
    return out


def read_secret_file(path: str, field: str) -> str:
    """The text of a credentials file (so secrets need not appear in `ps` or shell history)."""
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError as exc:
        raise ValidationError(f"cannot read the credentials file: {exc.strerror or exc}", field=field) from None


def is_loopback(host: str) -> bool:
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, *, has_auth: bool, insecure_no_auth: bool) -> None:
    """Refuse to serve a non-loopback address without auth unless explicitly told to."""
    if not is_loopback(host) and not has_auth and not insecure_no_auth:
        raise ValidationError(f"refusing to listen on {host} without authentication; give --api-auth or "
                              f"--api-token, or --insecure-no-auth to accept the risk", field="host",
                              allowed="127.0.0.1, ::1, localhost (or any address with auth)")


class Authenticator:
    """Checks an Authorization header against the configured users and tokens."""

    def __init__(self, users: Iterable[tuple[str, str]] = (), tokens: Iterable[str] = ()) -> None:
        self.users = [(u.encode(), p.encode()) for u, p in users]
        self.tokens = [t.encode() for t in tokens if t]

    @property
    def enabled(self) -> bool:
        return bool(self.users or self.tokens)

    def check(self, header: str | None) -> bool:
        if not self.enabled:
            return True
        if not header:
            return False
        scheme, _, value = header.strip().partition(" ")
        scheme, value = scheme.lower(), value.strip()
        ok = False
        if scheme == "bearer" and self.tokens:
            given = value.encode()
            for token in self.tokens:  # compare against all: no early exit telling which one matched
                ok |= hmac.compare_digest(given, token)
        elif scheme == "basic" and self.users:
            try:
                decoded = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                return False
            user, sep, password = decoded.partition(b":")
            if not sep:
                return False
            for u, p in self.users:
                ok |= hmac.compare_digest(user, u) & hmac.compare_digest(password, p)
        return ok

    def challenge(self) -> str:
        schemes = []
        if self.users:
            schemes.append('Basic realm="sdcodex"')
        if self.tokens:
            schemes.append('Bearer realm="sdcodex"')
        return ", ".join(schemes)


class AuthMiddleware:
    """ASGI middleware: every HTTP request needs valid credentials when auth is configured."""

    def __init__(self, app: Any, authenticator: Authenticator) -> None:
        self.app = app
        self.auth = authenticator

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket") or not self.auth.enabled:
            await self.app(scope, receive, send)
            return
        header = None
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                header = value.decode("latin-1")
        if self.auth.check(header):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        body = json.dumps({"error": "unauthorized", "message": "authentication required: HTTP Basic or "
                           "Bearer token"}).encode()
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"www-authenticate", self.auth.challenge().encode())]})
        await send({"type": "http.response.body", "body": body})


def _host_name(value: str) -> str:
    """'example.com:7860' -> 'example.com'; '[::1]:7860' -> '::1' (lower case)."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value[1:]
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "ip6-localhost")
UNSAFE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


class HostOriginMiddleware:
    """ASGI middleware against DNS rebinding and cross-site requests.

    Host: when the server listens on a loopback or one specific address, the Host header must name a
    loopback name, that address, or a host from `allowed_hosts` (a page on another site that rebinds its
    name to 127.0.0.1 sends its own name and is refused). A wildcard bind (0.0.0.0, ::) accepts any Host
    unless `allowed_hosts` is given. Origin: a state-changing request (POST, PUT, PATCH, DELETE) that a
    browser marks as coming from another site (an Origin or Sec-Fetch-Site header) is refused, unless
    its origin's host is allowed as above; the web UI is served from the same origin, so it passes.
    """

    def __init__(self, app: Any, bind_host: str = "127.0.0.1", allowed_hosts: Iterable[str] = ()) -> None:
        self.app = app
        self.extra = extra = {_host_name(h) for h in allowed_hosts if h}
        wildcard = bind_host in ("0.0.0.0", "::", "")
        self.any_host = (wildcard and not extra) or "*" in extra
        self.hosts = set(LOOPBACK_NAMES) | extra | ({_host_name(bind_host)} if not wildcard else set())

    def host_ok(self, host: str) -> bool:
        return self.any_host or _host_name(host) in self.hosts

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {name: value.decode("latin-1") for name, value in scope.get("headers", [])}
        host = headers.get(b"host", "")
        if host and not self.host_ok(host):
            await self._refuse(scope, send, 400, "invalid_host",
                               "this server does not answer for that Host name; start it with --allowed-host")
            return
        unsafe = scope["type"] == "websocket" or scope.get("method", "GET").upper() in UNSAFE_METHODS
        if unsafe and not self.origin_ok(headers, host):
            await self._refuse(scope, send, 403, "forbidden", "cross-site request refused (Origin does not match "
                               "the server); call the API from a non-browser client or the same origin")
            return
        await self.app(scope, receive, send)

    def origin_ok(self, headers: dict[bytes, str], host: str) -> bool:
        """Same origin (the Origin's host:port is the Host header), a host from `allowed_hosts`, or no sign
        of a browser at all."""
        origin = headers.get(b"origin")
        if origin is not None:
            origin = origin.strip().lower()
            if origin == "null":
                return False
            netloc = origin.split("://", 1)[-1].split("/", 1)[0]
            return netloc == host.strip().lower() or _host_name(netloc) in self.extra
        return headers.get(b"sec-fetch-site", "same-origin").lower() in ("same-origin", "none")

    @staticmethod
    async def _refuse(scope: dict, send: Any, status: int, code: str, message: str) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        body = json.dumps({"error": code, "message": message}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
