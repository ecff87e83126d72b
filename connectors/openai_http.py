"""What the OpenAI-compatible connectors (:mod:`connectors.llm`, :mod:`connectors.transcribe`)
share: one request with a deadline, and the mapping of HTTP answers to connector errors.

    2xx                      ok
    408, 425, 429, 5xx       TransientError (``retry_after`` from Retry-After)
    timeout, network error   TransientError
    401, 403                 PermanentError: check ``<PREFIX>__API_KEY``
    404                      PermanentError: check ``<PREFIX>__BASE_URL`` and ``__MODEL``
    other 4xx, 3xx           PermanentError quoting the server's error message

The API key goes out in the ``Authorization`` header and nowhere else: quoted answers
are scrubbed of it, and nothing here logs headers.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from pydantic import SecretStr

from connectors.base import PermanentError, TransientError
from connectors.webhook import USER_AGENT, Outcome, classify

MAX_ANSWER_BYTES = 4 * 1024 * 1024
SHOWN_CHARS = 300


def headers_for(api_key: SecretStr | None, idempotency_key: str) -> dict[str, str]:
    """Request headers: the idempotency key, a user agent, and the bearer key if any."""
    headers = {"Idempotency-Key": idempotency_key, "User-Agent": USER_AGENT}
    if api_key is not None:
        headers["Authorization"] = f"Bearer {api_key.get_secret_value()}"
    return headers


def shown(text: str, api_key: SecretStr | None) -> str:
    """A short, single-line, key-free quote of an answer."""
    if api_key is not None and api_key.get_secret_value():
        text = text.replace(api_key.get_secret_value(), "[redacted]")
    text = " ".join(text.split())
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 1] + "…"


def error_text(raw: bytes, api_key: SecretStr | None) -> str:
    """The server's own error message (``{"error": {"message": ...}}``), else the body."""
    text = raw.decode("utf-8", errors="replace")
    try:
        parsed = json.loads(text)
    except ValueError:
        return shown(text, api_key)
    if isinstance(parsed, dict):
        error = parsed.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return shown(error["message"], api_key)
        if isinstance(error, str):
            return shown(error, api_key)
        if isinstance(parsed.get("detail"), str):  # FastAPI-style servers
            return shown(parsed["detail"], api_key)
    return shown(text, api_key)


def http_error(
    status: int,
    headers: httpx.Headers,
    raw: bytes,
    *,
    what: str,
    prefix: str,
    model: str,
    api_key: SecretStr | None,
) -> TransientError | PermanentError:
    """The connector error for a non-2xx answer (see the module docstring)."""
    message = error_text(raw, api_key)
    reason = f"{what} answered {status}" + (f": {message}" if message else "")
    verdict = classify(status, headers)
    if verdict.outcome is Outcome.TRANSIENT:
        return TransientError(reason, retry_after=verdict.retry_after)
    if status in (401, 403):
        fix = (
            f"check {prefix}__API_KEY"
            if api_key is not None
            else f"the server wants an API key: set {prefix}__API_KEY"
        )
        return PermanentError(f"{reason} ({fix})")
    if status == 404:
        return PermanentError(
            f"{reason} (check {prefix}__BASE_URL, which usually ends in /v1, "
            f"and {prefix}__MODEL, now {model!r})"
        )
    if 300 <= status < 400:
        return PermanentError(f"{reason} (a redirect: set {prefix}__BASE_URL to the final address)")
    return PermanentError(reason)


async def send(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    what: str,
    timeout_s: float,
    headers: dict[str, str],
    api_key: SecretStr | None,
    **content: Any,
) -> tuple[int, httpx.Headers, bytes]:
    """One request with a whole-request deadline; transport failures become transient.

    ``content`` goes to :meth:`httpx.AsyncClient.build_request` (``json=``, ``files=``,
    ``data=``).
    """
    try:
        # httpx's timeout bounds each read; the outer deadline bounds the whole answer.
        async with asyncio.timeout(timeout_s):
            request = client.build_request(
                method, url, headers=headers, timeout=timeout_s, **content
            )
            response = await client.send(request, stream=True)
            try:
                raw = await _read_capped(response)
            finally:
                await response.aclose()
    except (TimeoutError, httpx.TimeoutException) as exc:
        raise TransientError(
            f"{what} did not answer within {timeout_s:g}s (raise its TIMEOUT_S setting "
            "if answers are just slow)"
        ) from exc
    except httpx.TransportError as exc:
        raise TransientError(
            f"could not reach {what} ({type(exc).__name__}: "
            f"{shown(str(exc), api_key) or 'no detail'})"
        ) from exc
    return response.status_code, response.headers, raw


async def _read_capped(response: httpx.Response) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            raise PermanentError(f"the answer is larger than {MAX_ANSWER_BYTES} bytes")
    return b"".join(chunks)


def check_key(key: str) -> None:
    """An idempotency key must fit in a header."""
    if not isinstance(key, str) or not (1 <= len(key) <= 200) or not key.isprintable():
        raise PermanentError(
            "the idempotency key must be 1-200 printable characters (it travels in a header)"
        )
    if not key.isascii() or " " in key:
        raise PermanentError("the idempotency key must be visible ASCII (it travels in a header)")
