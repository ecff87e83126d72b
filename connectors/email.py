"""Email out over SMTP (aiosmtplib): one operation, ``send``.

Errors follow :mod:`connectors.base`:

    ConnectorError
    ├── TransientError    connection refused or dropped, timeouts, TLS handshake cut
    │                     short, any 4xx SMTP reply (451 try later, 454 auth
    │                     temporarily unavailable, 421 closing)
    └── PermanentError    any 5xx SMTP reply (550 bad recipient, 535 auth failed, 554
                          message refused), STARTTLS/AUTH not offered, a certificate
                          that does not verify, bad params; the reason quotes the
                          server's reply (code and text)

**Idempotency.** SMTP has no idempotency keys, so the key is carried where a receiver
(and a human) can see it: the ``Message-ID`` is derived from it
(:func:`message_id`: ``<{sha256(key)[:32]}@{sender domain}>``) and it travels in an
``X-Soloops-Idempotency-Key`` header. A resend after a crash or a lost reply carries
the same Message-ID, which mail clients and many servers use to drop duplicates.

**After a crash** (:meth:`EmailConnector.lookup`): SMTP offers no way to ask whether a
message was accepted, so the answer is always ``UNKNOWN`` and the operator is asked,
as for a webhook without a status URL. (Checking a Sent folder over IMAP would need
another protocol and another set of credentials; not done.)

**Attachments travel inside the params, base64-encoded** (``content_b64``), not as
file paths: an action is stored as JSON in SQLite and may be retried hours later or
after a restart, so it must be self-contained — a path could have changed or vanished
by then, and what the operator approved must be exactly what is sent. The price is
size; attachments are capped at :data:`MAX_ATTACHMENT_BYTES` in total.

The password is handed to aiosmtplib and nowhere else: replies quoted in errors are
scrubbed of it (and of its base64 forms), and nothing here logs it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import ssl
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Any

import aiosmtplib
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from config.settings import EmailSettings
from connectors.base import ActionResult, Known, Lookup, PermanentError, TransientError
from connectors.http import check_key

log = logging.getLogger(__name__)

MAX_ATTACHMENT_BYTES = 15 * 1024 * 1024  # decoded, all attachments together
MAX_RECIPIENTS = 50
SHOWN_REPLY_CHARS = 300
IDEMPOTENCY_HEADER = "X-Soloops-Idempotency-Key"
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


# --- params ---------------------------------------------------------------------------


class Attachment(BaseModel):
    """One attached file, its bytes base64-encoded so the action stays plain JSON."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    filename: str = Field(min_length=1, max_length=255)
    content_type: str = Field(default="application/octet-stream", pattern=r"^[\w.+-]+/[\w.+-]+$")
    content_b64: str

    @field_validator("filename")
    @classmethod
    def _plain_filename(cls, value: str) -> str:
        if any(ch in value for ch in "/\\\r\n\x00"):
            raise ValueError("a filename, not a path (no '/', '\\' or line breaks)")
        return value

    def content(self) -> bytes:
        """The decoded bytes."""
        return base64.b64decode(self.content_b64, validate=True)


class EmailParams(BaseModel):
    """What a ``send`` action carries (``params`` of the action, stored as JSON)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    to: list[str] = Field(min_length=1, max_length=MAX_RECIPIENTS)
    subject: str = Field(max_length=998)
    text: str
    html: str | None = None
    reply_to: str | None = None
    attachments: list[Attachment] = Field(default_factory=list)

    @field_validator("to", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("to")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        return [_address(item) for item in value]

    @field_validator("reply_to")
    @classmethod
    def _reply_to(cls, value: str | None) -> str | None:
        return None if value is None else _address(value)

    @field_validator("subject")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if "\r" in value or "\n" in value:
            raise ValueError("the subject must be one line")
        return value


def _address(value: str) -> str:
    """``value`` if it is one address (``a@b.c`` or ``Name <a@b.c>``); ValueError if not."""
    if "\r" in value or "\n" in value or "," in parseaddr(value)[1]:
        raise ValueError(f"{value[:80]!r} is not one email address")
    _, addr = parseaddr(value)
    local, at, domain = addr.rpartition("@")
    if not at or not local or "." not in domain or " " in addr:
        raise ValueError(f"{value[:80]!r} is not an email address like name@example.com")
    return value


def parse_params(params: dict[str, Any]) -> EmailParams:
    """Validate a ``send`` action's params; PermanentError with a short reason if bad."""
    try:
        parsed = EmailParams.model_validate(params)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'params'}: "
            f"{err['msg'].removeprefix('Value error, ')}"
            for err in exc.errors()[:3]
        )
        raise PermanentError(f"the email cannot be sent as given: {problems}") from None
    total = 0
    for attachment in parsed.attachments:
        try:
            total += len(attachment.content())
        except (binascii.Error, ValueError) as exc:
            raise PermanentError(
                f"attachment {attachment.filename!r} is not valid base64 ({exc})"
            ) from exc
    if total > MAX_ATTACHMENT_BYTES:
        raise PermanentError(
            f"the attachments come to {total // 1024} KiB; at most "
            f"{MAX_ATTACHMENT_BYTES // (1024 * 1024)} MiB can be sent in one email"
        )
    return parsed


# --- pure functions -------------------------------------------------------------------


def message_id(key: str, from_address: str) -> str:
    """The Message-ID for an idempotency key: ``<{sha256(key)[:32]}@{sender domain}>``."""
    domain = parseaddr(from_address)[1].rpartition("@")[2] or "soloops.invalid"
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@{domain}>"


def build_message(
    params: EmailParams, *, idempotency_key: str, from_address: str, now: datetime
) -> EmailMessage:
    """The message to send: text (+ HTML alternative) (+ attachments), headers set."""
    message = EmailMessage()
    message["From"] = from_address
    message["To"] = ", ".join(params.to)
    message["Subject"] = params.subject
    message["Date"] = format_datetime(now)
    message["Message-ID"] = message_id(idempotency_key, from_address)
    message[IDEMPOTENCY_HEADER] = idempotency_key
    if params.reply_to:
        message["Reply-To"] = params.reply_to
    message.set_content(params.text)
    if params.html is not None:
        message.add_alternative(params.html, subtype="html")
    for attachment in params.attachments:
        maintype, _, subtype = attachment.content_type.partition("/")
        message.add_attachment(
            attachment.content(), maintype=maintype, subtype=subtype, filename=attachment.filename
        )
    return message


def smtp_verdict(code: int) -> type[TransientError] | type[PermanentError]:
    """4xx replies may pass (try again later); 5xx ones will not."""
    return TransientError if 400 <= code < 500 else PermanentError


def check_settings(settings: EmailSettings) -> list[str]:
    """Problems with the email settings, in words an operator can act on (no network).

    An empty list when email is not set up at all: that is a choice, not a problem.
    """
    problems: list[str] = []
    host, sender = settings.host.strip(), settings.from_address.strip()
    if not host and not sender and settings.username is None:
        return problems
    if not host:
        problems.append("SOLOOPS_EMAIL__HOST is not set: the SMTP server to send through")
    if not sender:
        problems.append(
            "SOLOOPS_EMAIL__FROM_ADDRESS is not set: the sender, e.g. billing@example.com"
        )
    else:
        try:
            _address(sender)
        except ValueError as exc:
            problems.append(f"SOLOOPS_EMAIL__FROM_ADDRESS: {exc}")
    if settings.username is not None and settings.password is None:
        problems.append("SOLOOPS_EMAIL__USERNAME is set but SOLOOPS_EMAIL__PASSWORD is not")
    if settings.password is not None and settings.username is None:
        problems.append("SOLOOPS_EMAIL__PASSWORD is set but SOLOOPS_EMAIL__USERNAME is not")
    if settings.security == "none" and settings.password is not None and host not in _LOOPBACK:
        problems.append(
            "SOLOOPS_EMAIL__SECURITY is 'none', so the password would cross the network "
            "unencrypted: use 'starttls' (port 587) or 'tls' (port 465)"
        )
    port = settings.effective_port
    if settings.security == "tls" and port in (25, 587):
        problems.append(
            f"port {port} usually speaks STARTTLS, not implicit TLS: set "
            "SOLOOPS_EMAIL__SECURITY=starttls, or SOLOOPS_EMAIL__PORT=465"
        )
    if settings.security == "starttls" and port == 465:
        problems.append(
            "port 465 usually speaks implicit TLS: set SOLOOPS_EMAIL__SECURITY=tls, "
            "or SOLOOPS_EMAIL__PORT=587"
        )
    return problems


class _Scrubber:
    """Removes the password, in the forms it crosses the wire, from quoted text."""

    def __init__(self, settings: EmailSettings) -> None:
        secrets: set[str] = set()
        if settings.password is not None:
            password = settings.password.get_secret_value()
            user = settings.username or ""
            secrets.add(password)
            for raw in (
                password,
                f"\0{user}\0{password}",  # AUTH PLAIN
                f"{user}\0{user}\0{password}",
            ):
                secrets.add(base64.b64encode(raw.encode()).decode())
        self._secrets = sorted((s for s in secrets if s), key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "[redacted]")
        text = " ".join(text.split())
        return text if len(text) <= SHOWN_REPLY_CHARS else text[: SHOWN_REPLY_CHARS - 1] + "…"


# --- the connector --------------------------------------------------------------------


class EmailConnector:
    """Sends email through one SMTP server; one operation, ``send``.

    A fresh SMTP connection per message: sends are rare and a pooled connection
    would mostly be a stale one.

    Args:
        settings: ``Settings.email``; must be :attr:`~EmailSettings.configured`.
        tls_context: the TLS context for STARTTLS and implicit TLS (default: the
            system's trust store with hostname checks; tests pass one trusting
            their throwaway CA).
        local_hostname: the name said in EHLO (default: this machine's FQDN).
        clock: the time for the ``Date`` header.
    """

    name = "email"
    version = "1"
    operations = frozenset({"send"})

    def __init__(
        self,
        settings: EmailSettings,
        *,
        tls_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if not settings.configured:
            raise PermanentError(
                "email is not set up: set SOLOOPS_EMAIL__HOST and SOLOOPS_EMAIL__FROM_ADDRESS"
            )
        self._settings = settings
        self._tls_context = tls_context
        self._local_hostname = local_hostname
        self._clock = clock or (lambda: datetime.now(UTC))
        self._scrub = _Scrubber(settings)

    def __repr__(self) -> str:
        s = self._settings
        return f"EmailConnector(host={s.host!r}, port={s.effective_port}, security={s.security!r})"

    async def __aenter__(self) -> EmailConnector:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Nothing to release: each send opens and closes its own connection."""

    def endpoint(self, operation: str, params: Mapping[str, Any]) -> str:
        """The SMTP host every send goes through (its circuit breaker's key)."""
        return self._settings.host.strip()

    async def execute(
        self, operation: str, params: dict[str, Any], idempotency_key: str
    ) -> ActionResult:
        """Send the email in ``params`` (see :class:`EmailParams`) once per key.

        Returns an ActionResult whose detail holds ``message_id``, ``recipients``, the
        server's final ``reply`` and any ``refused`` recipients (when some, not all,
        were refused: the message went to the others, so it is not an error).

        Raises:
            TransientError: try again later (network, timeout, 4xx reply).
            PermanentError: retrying cannot help (5xx reply, bad params, TLS/AUTH setup).
        """
        self._check_operation(operation)
        check_key(idempotency_key)
        parsed = parse_params(params)
        sender = self._settings.from_address
        try:
            message = build_message(
                parsed, idempotency_key=idempotency_key, from_address=sender, now=self._clock()
            )
        except (ValueError, TypeError) as exc:
            raise PermanentError(f"the email cannot be built: {exc}") from exc
        mid = str(message["Message-ID"])
        recipients = [parseaddr(item)[1] for item in parsed.to]
        envelope_from = parseaddr(sender)[1]
        async with self._errors(f"sending {mid}"):
            smtp = self._smtp()
            async with smtp:
                refused, reply = await smtp.send_message(
                    message, sender=envelope_from, recipients=recipients
                )
        log.info(
            "email %s for key %s accepted for %d of %d recipients",
            mid,
            idempotency_key,
            len(recipients) - len(refused),
            len(recipients),
        )
        refused_shown = {
            rcpt: f"{answer.code} {self._scrub(answer.message)}" for rcpt, answer in refused.items()
        }
        summary = f"email {mid} sent to {', '.join(r for r in recipients if r not in refused)}"
        if refused_shown:
            summary += f"; refused: {', '.join(refused_shown)}"
        return ActionResult(
            summary=summary,
            detail={
                "message_id": mid,
                "recipients": recipients,
                "reply": self._scrub(reply),
                "refused": refused_shown,
            },
        )

    async def lookup(self, operation: str, params: dict[str, Any], idempotency_key: str) -> Lookup:
        """Always UNKNOWN: SMTP cannot be asked whether it took a message.

        The operator is asked instead; if they resend, the same Message-ID lets the
        receiving side drop the duplicate.
        """
        self._check_operation(operation)
        check_key(idempotency_key)
        return Lookup(Known.UNKNOWN)

    async def probe(self) -> list[str]:
        """Connect, EHLO, STARTTLS and log in as configured, QUIT; say what failed."""
        try:
            async with self._errors("the connection test"):
                smtp = self._smtp()
                async with smtp:
                    await smtp.noop()
        except (TransientError, PermanentError) as exc:
            return [str(exc)]
        return []

    def _check_operation(self, operation: str) -> None:
        if operation not in self.operations:
            raise PermanentError(
                f"the email connector has no operation {operation!r}; it has: send"
            )

    def _smtp(self) -> aiosmtplib.SMTP:
        s = self._settings
        return aiosmtplib.SMTP(
            hostname=s.host,
            port=s.effective_port,
            username=s.username,
            password=s.password.get_secret_value() if s.password is not None else None,
            local_hostname=self._local_hostname,
            timeout=s.timeout_s,
            use_tls=s.security == "tls",
            start_tls=s.security == "starttls",
            tls_context=self._tls_context,
        )

    def _errors(self, doing: str) -> _SmtpErrors:
        return _SmtpErrors(self._settings, self._scrub, doing)


class _SmtpErrors:
    """Translates aiosmtplib's and the socket's errors into the two connector kinds."""

    def __init__(self, settings: EmailSettings, scrub: _Scrubber, doing: str) -> None:
        self._where = f"{settings.host}:{settings.effective_port}"
        self._scrub = scrub
        self._doing = doing

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, kind: object, exc: BaseException | None, tb: object) -> bool:
        if exc is None or not isinstance(exc, Exception):
            return False
        error = self._translate(exc)
        if error is None:
            return False
        raise error from exc

    def _translate(self, exc: Exception) -> TransientError | PermanentError | None:
        where, doing = self._where, self._doing
        if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
            return _refused(exc.recipients, self._scrub)
        if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
            reply = f"{exc.code} {self._scrub(exc.message)}"
            if exc.code >= 500:
                return PermanentError(
                    f"the SMTP server {where} refused the login ({reply}): check "
                    "SOLOOPS_EMAIL__USERNAME and SOLOOPS_EMAIL__PASSWORD"
                )
            return TransientError(f"the SMTP server {where} could not log in now ({reply})")
        if isinstance(exc, aiosmtplib.SMTPResponseException):
            reply = f"{exc.code} {self._scrub(exc.message)}"
            what = {
                aiosmtplib.SMTPSenderRefused: "refused the sender",
                aiosmtplib.SMTPDataError: "refused the message",
                aiosmtplib.SMTPHeloError: "refused the greeting",
            }.get(type(exc), "answered")
            return smtp_verdict(exc.code)(f"the SMTP server {where} {what} during {doing}: {reply}")
        if isinstance(exc, aiosmtplib.SMTPTimeoutError | TimeoutError):
            return TransientError(
                f"the SMTP server {where} did not answer in time during {doing}; "
                "the message may or may not have been accepted"
            )
        cause = exc.__cause__ if isinstance(exc, aiosmtplib.SMTPConnectError) else exc
        if isinstance(cause, ssl.SSLCertVerificationError):
            return PermanentError(
                f"the SMTP server {where} presented a certificate that does not verify "
                f"({self._scrub(cause.verify_message or str(cause))}): check SOLOOPS_EMAIL__HOST"
            )
        if isinstance(cause, ssl.SSLError):
            return PermanentError(
                f"TLS with the SMTP server {where} failed ({self._scrub(str(cause))}): "
                "check SOLOOPS_EMAIL__SECURITY (tls for port 465, starttls for 587) and __PORT"
            )
        if isinstance(exc, aiosmtplib.SMTPServerDisconnected | ConnectionError | OSError):
            return TransientError(
                f"could not reach the SMTP server {where} during {doing} "
                f"({type(exc).__name__}: {self._scrub(str(exc)) or 'no detail'}); "
                "the message may or may not have been accepted"
            )
        if isinstance(exc, aiosmtplib.SMTPNotSupported | aiosmtplib.SMTPException):
            return PermanentError(
                f"the SMTP server {where} cannot do what the settings ask "
                f"({self._scrub(str(exc))}): check SOLOOPS_EMAIL__SECURITY"
            )
        return None


def _refused(
    refusals: Sequence[aiosmtplib.SMTPRecipientRefused], scrub: _Scrubber
) -> TransientError | PermanentError:
    shown = "; ".join(f"{r.recipient}: {r.code} {scrub(r.message)}" for r in refusals)
    permanent = all(r.code >= 500 for r in refusals)
    kind: type[TransientError] | type[PermanentError] = (
        PermanentError if permanent else TransientError
    )
    return kind(f"the SMTP server refused every recipient ({shown})")


async def probe(
    settings: EmailSettings,
    *,
    tls_context: ssl.SSLContext | None = None,
    local_hostname: str | None = None,
) -> list[str]:
    """For ``soloops doctor --online``: connect, EHLO, STARTTLS/login, QUIT.

    Returns what failed, in words; an empty list when all went well. Settings
    problems (see :func:`check_settings`) come back without touching the network.
    """
    problems = check_settings(settings)
    if problems or not settings.configured:
        return problems or ["email is not set up (SOLOOPS_EMAIL__HOST, __FROM_ADDRESS)"]
    connector = EmailConnector(settings, tls_context=tls_context, local_hostname=local_hostname)
    return await connector.probe()
