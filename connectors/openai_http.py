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

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import SecretStr

from connectors.base import PermanentError, TransientError
from connectors.http import send_capped
from connectors.webhook import USER_AGENT, Outcome, classify

if TYPE_CHECKING:  # imported where a request is made: start-up never needs it
    import httpx

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


class ServerSettings(Protocol):
    """The settings an OpenAI-compatible server is reached with."""

    @property
    def base_url(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def api_key(self) -> SecretStr | None: ...
    @property
    def timeout_s(self) -> float: ...


@dataclass(frozen=True, slots=True)
class Server:
    """One OpenAI-compatible server: how to reach it, and how errors name it.

    Args:
        what: the server in an error message ("the model server").
        prefix: the settings' environment prefix, for fixes ("SOLOOPS_LLM").
        settings: where it is, the model, the key and the timeout.
    """

    what: str
    prefix: str
    settings: ServerSettings

    async def send(
        self, client: httpx.AsyncClient, method: str, path: str, key: str, **content: Any
    ) -> tuple[int, httpx.Headers, bytes]:
        """One request to ``{base_url}{path}`` under the timeout; see :func:`send_capped`.

        ``content`` goes to :meth:`httpx.AsyncClient.build_request` (``json=``,
        ``files=``, ``data=``).
        """
        s = self.settings
        request = client.build_request(
            method,
            f"{s.base_url}{path}",
            headers=headers_for(s.api_key, key),
            timeout=s.timeout_s,
            **content,
        )
        return await send_capped(
            client,
            request,
            what=self.what,
            deadline_s=s.timeout_s,
            timeout_hint=" (raise its TIMEOUT_S setting if answers are just slow)",
            scrub=lambda text: shown(text, s.api_key),
            max_bytes=MAX_ANSWER_BYTES,
            truncate=False,
        )

    def check(self, status: int, headers: httpx.Headers, raw: bytes) -> None:
        """Raise the connector error for a non-2xx answer (see the module docstring)."""
        if not 200 <= status < 300:
            s = self.settings
            raise http_error(
                status,
                headers,
                raw,
                what=self.what,
                prefix=self.prefix,
                model=s.model,
                api_key=s.api_key,
            )


_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


def key_problems(settings: ServerSettings, prefix: str) -> list[str]:
    """What is wrong with how the API key would travel (no network)."""
    problems = []
    if settings.base_url.startswith("https://api.openai.com") and settings.api_key is None:
        problems.append(f"{prefix}__API_KEY is not set, and api.openai.com needs one")
    import httpx

    host = httpx.URL(settings.base_url).host if settings.base_url else ""
    plain_http = settings.base_url.startswith("http://")
    if plain_http and settings.api_key is not None and host not in _LOOPBACK:
        problems.append(
            f"{prefix}__BASE_URL is plain http:// to {host}, so the API key would cross "
            "the network unencrypted: use https://"
        )
    return problems
