"""HTTP plumbing every httpx-based connector shares.

- :class:`OwnedClient`: a client passed in (the caller keeps it) or opened here and
  closed by ``aclose``.
- :func:`send_capped`: one request under a whole-request deadline, the answer read up
  to a cap; timeouts and network failures become :class:`TransientError`.
- :func:`check_key`: an idempotency key must fit in a header.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Self

from connectors.base import PermanentError, TransientError

if TYPE_CHECKING:  # httpx costs ~70 ms to import: loaded when a request is first made
    import httpx

_KEY_CHARS = re.compile(r"^[\x21-\x7e]{1,200}$")  # visible ASCII: safe in a header


def check_key(key: str) -> None:
    """Raise PermanentError unless ``key`` is 1-200 visible ASCII characters."""
    if not isinstance(key, str) or not _KEY_CHARS.match(key):
        raise PermanentError(
            "the idempotency key must be 1-200 visible ASCII characters (it travels in a "
            f"header); got {str(key)[:40]!r}"
        )


class OwnedClient:
    """Holds an httpx client: the caller's (the caller keeps ownership) or its own.

    Args:
        client: an httpx client to use. When omitted one is opened here (no redirects
            followed) on first use and closed in :meth:`aclose`.

    The own client is opened when a request first needs it: building one loads the
    system's CA certificates (~40 ms), which a start-up that never calls out should
    not pay.
    """

    def __init__(self, client: httpx.AsyncClient | None = None) -> None:
        self._owns_client = client is None
        self._given = client

    @property
    def _client(self) -> httpx.AsyncClient:
        if self._given is None:
            import httpx

            self._given = httpx.AsyncClient(follow_redirects=False)
        return self._given

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client if this object opened it."""
        if self._owns_client and self._given is not None:
            await self._given.aclose()


async def send_capped(
    client: httpx.AsyncClient,
    request: httpx.Request,
    *,
    what: str,
    deadline_s: float,
    timeout_hint: str,
    scrub: Callable[[str], str],
    max_bytes: int,
    truncate: bool,
) -> tuple[int, httpx.Headers, bytes]:
    """Send ``request`` with a whole-request deadline; transport failures become transient.

    Args:
        what: the far side in an error message ("hook 'crm'", "the model server").
        deadline_s: bounds the whole exchange, also a server that drips its answer.
        timeout_hint: appended to the timeout message (what the operator can do).
        scrub: removes secrets from the text of a transport error before it is quoted.
        max_bytes: how much of the answer is read.
        truncate: cut a longer answer at ``max_bytes`` (else PermanentError).
    """
    import httpx

    try:
        # httpx's timeout bounds each read; the outer deadline bounds the whole answer.
        async with asyncio.timeout(deadline_s):
            response = await client.send(request, stream=True)
            try:
                raw = await _read_capped(response, max_bytes, truncate=truncate)
            finally:
                await response.aclose()
    except (TimeoutError, httpx.TimeoutException) as exc:
        raise TransientError(f"{what} did not answer within {deadline_s:g}s{timeout_hint}") from exc
    except httpx.TransportError as exc:
        raise TransientError(
            f"could not reach {what} ({type(exc).__name__}: {scrub(str(exc)) or 'no detail'})"
        ) from exc
    return response.status_code, response.headers, raw


async def _read_capped(response: httpx.Response, max_bytes: int, *, truncate: bool) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if truncate and size >= max_bytes:
            break
        if size > max_bytes:
            raise PermanentError(f"the answer is larger than {max_bytes} bytes")
    return b"".join(chunks)[:max_bytes]
