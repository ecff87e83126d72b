"""A loopback SMTP sink: aiosmtpd on 127.0.0.1, in the test's own event loop.

It speaks plain SMTP, STARTTLS or implicit TLS with a throwaway certificate from
trustme (:meth:`SmtpSink.client_tls_context` trusts it), and AUTH PLAIN/LOGIN
(``mechanisms``) against ``users``. Every accepted message is recorded in ``messages`` (envelope,
raw bytes, parsed with the stdlib ``email`` package); ``logins`` records each
successful login name.

Failures on demand, consumed in order per stage (``"MAIL"``, ``"RCPT"``, ``"DATA"``):
:meth:`SmtpSink.fail_next` answers with a scripted code and text;
:meth:`SmtpSink.drop_after_data_next` records the message and then closes the
connection without answering DATA (the message landed, the reply was lost);
:meth:`SmtpSink.hang_next` never answers (until the sink closes). :meth:`refuse`
refuses one recipient address for good.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import warnings
from collections import deque
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any, Literal

import trustme
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

Security = Literal["none", "starttls", "tls"]
Stage = Literal["MAIL", "RCPT", "DATA"]
SERVER_NAME = "sink.test"


@dataclass(frozen=True)
class Received:
    """One message the sink accepted (or took and then dropped the connection on)."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    login: str | None

    @property
    def message(self) -> EmailMessage:
        """The message parsed by the stdlib email package."""
        parsed = BytesParser(policy=policy.default).parsebytes(self.data)
        assert isinstance(parsed, EmailMessage)
        return parsed

    @property
    def message_id(self) -> str:
        """The Message-ID header."""
        return str(self.message["Message-ID"])


@dataclass
class _Script:
    action: Literal["reply", "drop", "hang"]
    reply: str = ""


@dataclass
class SmtpSink:
    """A running SMTP server on 127.0.0.1. Use ``async with SmtpSink(...) as sink``."""

    security: Security = "none"
    users: dict[str, str] | None = None  # set: AUTH required, these logins accepted
    mechanisms: tuple[str, ...] = ("PLAIN", "LOGIN")  # the AUTH mechanisms offered

    messages: list[Received] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    login_mechanisms: list[str] = field(default_factory=list)
    failed_logins: int = 0
    connections: int = 0

    _scripts: dict[str, deque[_Script]] = field(default_factory=dict)
    _refused: dict[str, str] = field(default_factory=dict)
    _server: asyncio.Server | None = None
    _released: asyncio.Event = field(default_factory=asyncio.Event)
    _ca: trustme.CA | None = None
    _server_tls: ssl.SSLContext | None = None
    port: int = 0

    # --- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on an ephemeral port of 127.0.0.1."""
        self._released = asyncio.Event()
        if self.security != "none":
            self._ca = trustme.CA()
            cert = self._ca.issue_cert("127.0.0.1", "localhost")
            self._server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            cert.configure_cert(self._server_tls)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol,
            sock=sock,
            ssl=self._server_tls if self.security == "tls" else None,
        )

    async def close(self) -> None:
        """Release hung commands and stop listening."""
        self._released.set()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> SmtpSink:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def client_tls_context(self) -> ssl.SSLContext:
        """A client TLS context that trusts this sink's throwaway CA."""
        context = ssl.create_default_context()
        if self._ca is not None:
            self._ca.configure_trust(context)
        return context

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """``EmailSettings`` fields pointing at this sink (pass to model_validate)."""
        values: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": self.port,
            "from_address": "Acme Billing <billing@acme.test>",
            "security": self.security,
            "timeout_s": 5.0,
        }
        values.update(overrides)
        return values

    # --- scripting --------------------------------------------------------------------

    def fail_next(self, stage: Stage, reply: str, count: int = 1) -> None:
        """Answer the next ``count`` ``stage`` commands with ``reply`` (e.g. ``451 later``)."""
        for _ in range(count):
            self._scripts.setdefault(stage, deque()).append(_Script("reply", reply))

    def drop_after_data_next(self) -> None:
        """Take the next message, then close the connection instead of answering DATA."""
        self._scripts.setdefault("DATA", deque()).append(_Script("drop"))

    def hang_next(self, stage: Stage) -> None:
        """Never answer the next ``stage`` command (until the sink closes)."""
        self._scripts.setdefault(stage, deque()).append(_Script("hang"))

    def refuse(self, address: str, reply: str = "550 5.1.1 No such user here") -> None:
        """Refuse ``address`` as a recipient, every time."""
        self._refused[address.lower()] = reply

    # --- aiosmtpd glue ----------------------------------------------------------------

    def _protocol(self) -> SMTP:
        self.connections += 1
        with warnings.catch_warnings():
            # AUTH without TLS is what the plain-text tests ask for on purpose.
            warnings.simplefilter("ignore")
            return SMTP(
                self,
                hostname=SERVER_NAME,
                tls_context=self._server_tls if self.security == "starttls" else None,
                require_starttls=self.security == "starttls",
                auth_required=self.users is not None,
                auth_require_tls=False,
                authenticator=self._authenticate if self.users is not None else None,
                auth_exclude_mechanism=[m for m in ("PLAIN", "LOGIN") if m not in self.mechanisms],
                timeout=30,
            )

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if isinstance(data, LoginPassword) and self.users is not None:
            login = data.login.decode(errors="replace")
            if self.users.get(login) == data.password.decode(errors="replace"):
                self.logins.append(login)
                self.login_mechanisms.append(mechanism)
                return AuthResult(success=True, auth_data=login)
        self.failed_logins += 1
        return AuthResult(success=False, handled=False)

    async def _scripted(self, stage: str) -> _Script | None:
        queue = self._scripts.get(stage)
        if not queue:
            return None
        script = queue.popleft()
        if script.action == "hang":
            await self._released.wait()
            return _Script("reply", "421 4.3.0 sink closing")
        return script

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        script = await self._scripted("MAIL")
        if script is not None:
            return script.reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        script = await self._scripted("RCPT")
        if script is not None:
            return script.reply
        refusal = self._refused.get(address.lower())
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        script = await self._scripted("DATA")
        if script is not None and script.action == "reply":
            return script.reply
        data = envelope.original_content or b""
        login = session.auth_data if isinstance(session.auth_data, str) else None
        self.messages.append(
            Received(str(envelope.mail_from), list(envelope.rcpt_tos), bytes(data), login)
        )
        if script is not None and script.action == "drop":
            assert server.transport is not None
            server.transport.close()
            await self._released.wait()  # connection_lost cancels this first
        return "250 2.0.0 Message accepted for delivery"
