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


def parse_credentials(text: str | None) -> list[tuple[str, str]]:
    """'user:pass[,user2:pass2]' -> [(user, pass), ...]; a pair without ':' or an empty user is an error."""
    out: list[tuple[str, str]] = []
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        user, sep, password = part.partition(":")
        if not sep or not user:
            raise ValidationError("each credential must be user:password", field="api_auth",
                                  allowed="user:pass[,user:pass]")
        out.append((user, password))
    return out


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
