"""soloops's one HTTP server: everything that comes in over HTTP shares it.

    Slack  --POST /slack/events-->  +------------+
    Telegram --POST /telegram/...-> | HttpServer | --> the route's handler
    a website --POST /hooks/<name>> | (aiohttp)  |     (errors -> 500, one log line)
    a monitor --GET /healthz,     ->+------------+
               /metrics

Components register their routes (or mount a sub-application under a prefix) before
the server starts; two components claiming the same method and path is a start-up
error, not a silent shadowing. The server listens on ``SOLOOPS_HTTP__HOST`` and
``SOLOOPS_HTTP__PORT`` (port 0: any free port; :attr:`HttpServer.address` says which)
and is opened as an async context manager. A port that is taken fails the start with a
:class:`~config.ConfigError` naming ``SOLOOPS_HTTP__PORT``.

Handlers that raise answer a bare 500 (the client never sees a traceback) and leave
one log line naming the route and the exception type. aiohttp's access log is off:
front ends log what matters to them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from types import TracebackType

from aiohttp import web

from config import ConfigError, HttpSettings

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

MAX_BODY_BYTES = 1024 * 1024  # the largest body any route takes (Slack sends up to ~1 MB)
_ANY = "*"


class HttpServer:
    """One aiohttp application on the configured host and port.

    Args:
        settings: where to listen (``Settings.http``).
        label: how start-up errors name the server ("Slack HTTP mode", ...).
        max_body_bytes: the largest request body any route accepts (413 beyond it);
            a route may read less with :func:`read_body`.
    """

    def __init__(
        self,
        settings: HttpSettings,
        *,
        label: str = "The soloops HTTP server",
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self._settings = settings
        self._label = label
        self._app = web.Application(
            client_max_size=max_body_bytes, middlewares=[_errors_become_500]
        )
        self._routes: set[tuple[str, str]] = set()
        self._prefixes: list[str] = []
        self._runner: web.AppRunner | None = None
        self.address: tuple[str, int] | None = None  # (host, port) once started

    @property
    def started(self) -> bool:
        """Whether the server is listening."""
        return self._runner is not None

    @property
    def url(self) -> str:
        """``http://host:port`` of the running server."""
        if self.address is None:
            raise RuntimeError("the HTTP server is not started")
        host, port = self.address
        return f"http://{host}:{port}"

    def paths(self) -> list[str]:
        """Every registered ``METHOD path`` and mounted ``prefix/*``, sorted (for logs)."""
        found = [f"{method} {path}" for method, path in self._routes]
        found += [f"* {prefix}/*" for prefix in self._prefixes]
        return sorted(found)

    def add_route(self, method: str, path: str, handler: Handler) -> None:
        """Serve ``method path`` (aiohttp path syntax, e.g. ``/hooks/{name}``) with ``handler``.

        ``method`` ``"*"`` takes every method. Raises ValueError if the route collides
        with one already registered or lies under a mounted prefix, RuntimeError after
        the server started.
        """
        self._check_open()
        method = method.upper()
        if not path.startswith("/"):
            raise ValueError(f"route path {path!r} must start with '/'")
        for prefix in self._prefixes:
            if _under(path, prefix):
                raise ValueError(f"route {method} {path} collides with the app mounted at {prefix}")
        clash = {(method, path), (_ANY, path)} | (
            {(m, p) for m, p in self._routes if p == path} if method == _ANY else set()
        )
        taken = clash & self._routes
        if taken:
            raise ValueError(
                f"route {method} {path} is already registered "
                f"({', '.join(sorted(f'{m} {p}' for m, p in taken))})"
            )
        self._app.router.add_route(method, path, handler)
        self._routes.add((method, path))

    def add_subapp(self, prefix: str, app: web.Application) -> None:
        """Mount ``app`` under ``prefix`` (e.g. ``/telegram``); it owns every path below.

        Raises ValueError if any registered route or mounted prefix overlaps.
        """
        self._check_open()
        prefix = prefix.rstrip("/")
        if not prefix.startswith("/"):
            raise ValueError(f"prefix {prefix!r} must start with '/' and not be '/' alone")
        for other in self._prefixes:
            if _under(prefix, other) or _under(other, prefix):
                raise ValueError(f"prefix {prefix} collides with the app mounted at {other}")
        for method, path in self._routes:
            if _under(path, prefix):
                raise ValueError(f"prefix {prefix} collides with route {method} {path}")
        self._app.add_subapp(prefix, app)
        self._prefixes.append(prefix)

    async def start(self) -> None:
        """Listen; raise ConfigError naming ``SOLOOPS_HTTP__PORT`` if the port is taken."""
        if self._runner is not None:
            return
        runner = web.AppRunner(self._app, access_log=None)
        await runner.setup()
        host, port = self._settings.host, self._settings.port
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            await runner.cleanup()
            raise ConfigError(
                f"{self._label} could not listen on {host}:{port} "
                f"({exc.strerror or type(exc).__name__}); set SOLOOPS_HTTP__PORT to a free port "
                "(or SOLOOPS_HTTP__HOST to an address of this machine)"
            ) from exc
        self._runner = runner
        bound_host, bound_port = runner.addresses[0][:2]
        self.address = (str(bound_host), int(bound_port))
        log.info(
            "HTTP server listening on %s (%s)", self.url, ", ".join(self.paths()) or "no routes"
        )

    async def stop(self) -> None:
        """Stop listening; requests in flight finish first (aiohttp's shutdown)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        self.address = None

    async def __aenter__(self) -> HttpServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def _check_open(self) -> None:
        if self._runner is not None or self._app.frozen:
            raise RuntimeError("routes must be added before the HTTP server starts")


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


@web.middleware
async def _errors_become_500(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException:
        raise  # a deliberate answer (404, 413, ...)
    except Exception as exc:  # any handler bug must become a plain 500
        # One line, no traceback (the log redacts configured secrets).
        said = " ".join(str(exc).split())[:200]
        log.error("%s %s failed: %s: %s", request.method, request.path, type(exc).__name__, said)
        return web.Response(status=500, text="internal error; see the soloops log")


async def read_body(request: web.Request, limit: int) -> bytes:
    """The request body, at most ``limit`` bytes.

    Raises:
        web.HTTPRequestEntityTooLarge: the body (declared or sent) is longer.
    """
    declared = request.content_length
    if declared is not None and declared > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=declared)
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(64 * 1024)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=size)
        chunks.append(chunk)
