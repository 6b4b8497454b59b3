"""Which web pages may call odlite's HTTP services (serve, browse).

Any page a user has open can make the browser send requests to a service on their
machine or network: a form or ``fetch`` POSTs an upload to ``/tag`` without asking, and
the server decodes it even though the page may never read the answer. Browsers name the
page in an ``Origin`` header on every such cross-site request (and on every POST), so
the rule is simple: a request that carries an ``Origin`` not on the allow-list is refused
with 403 before its body is read; clients that are not browsers (curl, httpx, an app)
send no ``Origin`` and are served as before.

A page can also reach a service on 127.0.0.1 through a name it controls, pointed at the
loopback address once the page is loaded (DNS rebinding): its requests are then
same-origin and carry its own name in ``Host``. A service bound to a loopback address
therefore also refuses a ``Host`` that is not a loopback name.
"""

from __future__ import annotations

from collections.abc import Collection
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from pipelines.errors import OdliteError

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})


def normalised_origin(text: str) -> str:
    """``scheme://host[:port]`` as browsers send it in ``Origin``; raises OdliteError for anything else."""
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path.strip("/") or parts.query:
        raise OdliteError(f"--allow-origin {text!r}: give an origin, scheme://host[:port], e.g. https://app.example")
    return f"{parts.scheme}://{parts.netloc.lower()}"


def is_loopback(host: str) -> bool:
    return host.strip("[]") in LOOPBACK_NAMES or host.startswith("127.")


class OriginGate:
    """ASGI middleware: 403 for a request whose ``Origin`` is neither allowed nor (``same_origin``) the
    service's own, and, with ``loopback_only``, for a ``Host`` that is not a loopback name."""

    def __init__(
        self,
        app: ASGIApp,
        allowed: Collection[str] = (),
        same_origin: bool = False,
        loopback_only: bool = False,
        hint: str = "",
    ):
        self.app, self.allowed, self.same_origin = app, frozenset(allowed), same_origin
        self.loopback_only, self.hint = loopback_only, hint

    def _refusal(self, scope: Scope) -> str | None:
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        if self.loopback_only and not is_loopback(urlsplit(f"//{host}").hostname or ""):
            return f"Host {host!r} is not a loopback name: this service answers on 127.0.0.1 / localhost only"
        origin = headers.get("origin")
        if origin is None or origin in self.allowed:
            return None
        if self.same_origin and origin == f"{scope.get('scheme', 'http')}://{host}":
            return None
        return f"requests from web pages are refused: Origin {origin} is not allowed{self.hint}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        reason = self._refusal(scope) if scope["type"] == "http" else None
        if reason is None:
            await self.app(scope, receive, send)
        else:
            await JSONResponse({"detail": reason}, status_code=403)(scope, receive, send)
