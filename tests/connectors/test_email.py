"""The email connector over real SMTP to an aiosmtpd sink on 127.0.0.1, and its pure parts."""

from __future__ import annotations

import base64
import hashlib
import logging
import socket
from datetime import UTC, datetime
from typing import Any

import pytest

from config import EmailSettings
from connectors.base import Connector, Known, PermanentError, TransientError
from connectors.email import (
    IDEMPOTENCY_HEADER,
    EmailConnector,
    check_settings,
    message_id,
    parse_params,
    probe,
)
from tests.emulators.smtp import SmtpSink

PASSWORD = "hunter2-correct-horse-battery"
USERS = {"billing": PASSWORD}
NOW = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)


def connector_for(sink: SmtpSink, **overrides: Any) -> EmailConnector:
    settings = EmailSettings.model_validate(sink.settings(**overrides))
    return EmailConnector(
        settings,
        tls_context=sink.client_tls_context(),
        local_hostname="client.test",
        clock=lambda: NOW,
    )


def email(**overrides: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "to": "Ada <ada@example.test>",
        "subject": "Invoice 2025-001",
        "text": "Hello Ada,\nyour invoice is attached.\n",
    }
    params.update(overrides)
    return params


def lines(text: str) -> str:
    """Text as sent (CRLF line ends on the wire) with Python's line ends."""
    return text.replace("\r\n", "\n")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- pure parts -----------------------------------------------------------------------


def test_message_id_is_derived_from_the_key_and_the_sender_domain() -> None:
    digest = hashlib.sha256(b"act-1").hexdigest()[:32]
    assert message_id("act-1", "Acme <billing@acme.test>") == f"<{digest}@acme.test>"
    assert message_id("act-1", "billing@acme.test") == message_id("act-1", "x@acme.test")
    assert message_id("act-2", "billing@acme.test") != message_id("act-1", "billing@acme.test")


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"subject": "s", "text": "t"}, "to: Field required"),
        (email(to="not-an-address"), "is not an email address"),
        (email(to=[]), "to: List should have at least 1 item"),
        (email(subject="two\nlines"), "subject must be one line"),
        (email(reply_to="nobody"), "reply_to"),
        (email(bcc="x@y.test"), "bcc: Extra inputs are not permitted"),
        (
            email(attachments=[{"filename": "../etc/passwd", "content_b64": "AA=="}]),
            "a filename, not a path",
        ),
        (
            email(attachments=[{"filename": "a.pdf", "content_b64": "not base64!"}]),
            "'a.pdf' is not valid base64",
        ),
    ],
)
def test_bad_params_are_permanent_with_a_short_reason(params: dict[str, Any], says: str) -> None:
    with pytest.raises(PermanentError, match=r"the email cannot be sent as given|base64") as err:
        parse_params(params)
    assert says in str(err.value)
    assert "pydantic" not in str(err.value)


def test_one_recipient_or_many() -> None:
    assert parse_params(email(to="a@x.test")).to == ["a@x.test"]
    assert parse_params(email(to=["a@x.test", "B <b@x.test>"])).to == ["a@x.test", "B <b@x.test>"]


def test_check_settings() -> None:
    assert check_settings(EmailSettings()) == []
    ok = EmailSettings(host="smtp.example.test", from_address="me@example.test")
    assert check_settings(ok) == []
    assert check_settings(EmailSettings(host="smtp.example.test")) == [
        "SOLOOPS_EMAIL__FROM_ADDRESS is not set: the sender, e.g. billing@example.com"
    ]
    assert (
        "SOLOOPS_EMAIL__HOST is not set"
        in check_settings(EmailSettings(from_address="me@example.test"))[0]
    )
    half = EmailSettings(host="h.test", from_address="me@h.test", username="me")
    assert check_settings(half) == [
        "SOLOOPS_EMAIL__USERNAME is set but SOLOOPS_EMAIL__PASSWORD is not"
    ]
    clear = EmailSettings(
        host="h.test", from_address="me@h.test", username="me", password=PASSWORD, security="none"
    )
    assert "unencrypted" in " ".join(check_settings(clear))
    assert PASSWORD not in " ".join(check_settings(clear))
    wrong_port = EmailSettings(host="h.test", from_address="me@h.test", security="tls", port=587)
    assert "SOLOOPS_EMAIL__SECURITY=starttls" in check_settings(wrong_port)[0]
    bad_sender = EmailSettings(host="h.test", from_address="nobody")
    assert "SOLOOPS_EMAIL__FROM_ADDRESS" in check_settings(bad_sender)[0]


def test_an_unconfigured_connector_says_what_to_set() -> None:
    with pytest.raises(PermanentError, match="SOLOOPS_EMAIL__HOST and SOLOOPS_EMAIL__FROM_ADDRESS"):
        EmailConnector(EmailSettings(host="smtp.example.test"))


async def test_it_fulfils_the_connector_contract() -> None:
    settings = EmailSettings(host="h.test", from_address="me@h.test")
    connector: Connector = EmailConnector(settings)
    assert (connector.name, connector.version, connector.operations) == (
        "email",
        "1",
        frozenset({"send"}),
    )
    with pytest.raises(PermanentError, match="no operation 'post'"):
        await connector.execute("post", email(), "k")
    with pytest.raises(PermanentError, match="idempotency key"):
        await connector.execute("send", email(), "bad key\n")
    await connector.aclose()


# --- over SMTP ------------------------------------------------------------------------


async def test_plain_send_delivers_with_the_key_and_a_derived_message_id() -> None:
    async with SmtpSink() as sink:
        connector = connector_for(sink)
        result = await connector.execute("send", email(reply_to="desk@acme.test"), "act-1")
        assert len(sink.messages) == 1
        got = sink.messages[0]
        assert got.mail_from == "billing@acme.test"
        assert got.rcpt_tos == ["ada@example.test"]
        msg = got.message
        assert msg["Message-ID"] == message_id("act-1", "billing@acme.test")
        assert msg[IDEMPOTENCY_HEADER] == "act-1"
        assert msg["From"] == "Acme Billing <billing@acme.test>"
        assert msg["To"] == "Ada <ada@example.test>"
        assert msg["Reply-To"] == "desk@acme.test"
        assert msg["Subject"] == "Invoice 2025-001"
        assert msg["Date"] == "Tue, 04 Mar 2025 05:06:07 +0000"
        body = msg.get_body(("plain",))
        assert (
            body is not None
            and lines(body.get_content()) == "Hello Ada,\nyour invoice is attached.\n"
        )
        assert result.detail["message_id"] == msg["Message-ID"]
        assert result.detail["recipients"] == ["ada@example.test"]
        assert result.detail["refused"] == {}
        assert "ada@example.test" in result.summary


async def test_html_alternative_and_attachment_arrive_intact() -> None:
    pdf = b"%PDF-1.4\n" + bytes(range(256)) * 40 + b"\n%%EOF\n"
    params = email(
        html="<p>Hello <b>Ada</b></p>",
        attachments=[
            {
                "filename": "invoice-2025-001.pdf",
                "content_type": "application/pdf",
                "content_b64": base64.b64encode(pdf).decode(),
            }
        ],
    )
    async with SmtpSink() as sink:
        await connector_for(sink).execute("send", params, "act-html")
        msg = sink.messages[0].message
        plain = msg.get_body(("plain",))
        html = msg.get_body(("html",))
        assert plain is not None and plain.get_content().startswith("Hello Ada,")
        assert html is not None and html.get_content().strip() == "<p>Hello <b>Ada</b></p>"
        attachments = list(msg.iter_attachments())
        assert len(attachments) == 1
        assert attachments[0].get_filename() == "invoice-2025-001.pdf"
        assert attachments[0].get_content_type() == "application/pdf"
        assert attachments[0].get_content() == pdf


async def test_several_recipients_and_a_partial_refusal_is_a_success_that_says_so() -> None:
    async with SmtpSink() as sink:
        sink.refuse("gone@example.test")
        result = await connector_for(sink).execute(
            "send", email(to=["ada@example.test", "gone@example.test"]), "act-2"
        )
        assert sink.messages[0].rcpt_tos == ["ada@example.test"]
        assert result.detail["refused"] == {"gone@example.test": "550 5.1.1 No such user here"}
        assert "refused: gone@example.test" in result.summary


async def test_starttls_with_a_throwaway_certificate_and_auth() -> None:
    async with SmtpSink(security="starttls", users=USERS) as sink:
        connector = connector_for(sink, username="billing", password=PASSWORD)
        await connector.execute("send", email(), "act-tls")
        assert sink.logins == ["billing"]
        assert sink.messages[0].login == "billing"
        assert await connector.probe() == []


async def test_implicit_tls() -> None:
    async with SmtpSink(security="tls") as sink:
        await connector_for(sink).execute("send", email(), "act-implicit")
        assert len(sink.messages) == 1


async def test_starttls_against_an_untrusted_certificate_is_permanent() -> None:
    async with SmtpSink(security="starttls") as sink:
        settings = EmailSettings.model_validate(sink.settings())
        connector = EmailConnector(settings, local_hostname="client.test")  # system trust
        with pytest.raises(PermanentError, match="certificate that does not verify"):
            await connector.execute("send", email(), "act-x")
        assert sink.messages == []


async def test_starttls_asked_of_a_server_without_it_is_permanent() -> None:
    async with SmtpSink() as sink:
        connector = connector_for(sink, security="starttls")
        with pytest.raises(PermanentError, match="SOLOOPS_EMAIL__SECURITY"):
            await connector.execute("send", email(), "act-x")


@pytest.mark.parametrize(
    ("security", "mechanism"), [("none", "PLAIN"), ("none", "LOGIN"), ("starttls", "LOGIN")]
)
async def test_auth_plain_and_login_succeed(security: str, mechanism: str) -> None:
    sink = SmtpSink(security=security, users=USERS, mechanisms=(mechanism,))  # type: ignore[arg-type]  # parametrized literal
    async with sink:
        await connector_for(sink, username="billing", password=PASSWORD).execute(
            "send", email(), "act-auth"
        )
        assert sink.logins == ["billing"]
        assert sink.login_mechanisms == [mechanism]
        assert sink.messages[0].login == "billing"


async def test_auth_failure_is_permanent_names_the_settings_and_hides_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with SmtpSink(security="starttls", users=USERS) as sink:
        connector = connector_for(sink, username="billing", password=PASSWORD + "-wrong")
        with pytest.raises(PermanentError) as err:
            await connector.execute("send", email(), "act-auth")
        text = str(err.value)
        assert "535" in text
        assert "SOLOOPS_EMAIL__USERNAME and SOLOOPS_EMAIL__PASSWORD" in text
        assert sink.failed_logins >= 1 and sink.messages == []
        problems = await connector.probe()
        assert len(problems) == 1 and "535" in problems[0]
    _assert_password_absent(PASSWORD, text, repr(connector), *problems, caplog=caplog)
    assert PASSWORD not in repr(connector._settings)


def _assert_password_absent(password: str, *texts: str, caplog: pytest.LogCaptureFixture) -> None:
    encoded = base64.b64encode(password.encode()).decode()
    for text in [*texts, *(record.getMessage() for record in caplog.records)]:
        assert password not in text
        assert encoded not in text


async def test_bad_recipient_550_is_permanent_and_quotes_the_reply() -> None:
    async with SmtpSink() as sink:
        sink.refuse("ada@example.test", "550 5.1.1 <ada@example.test>: Recipient unknown")
        with pytest.raises(PermanentError) as err:
            await connector_for(sink).execute("send", email(), "act-550")
        assert "550 5.1.1 <ada@example.test>: Recipient unknown" in str(err.value)
        assert sink.messages == []


@pytest.mark.parametrize(
    ("stage", "reply"),
    [
        ("RCPT", "451 4.7.1 Greylisted, try again later"),
        ("MAIL", "452 4.3.1 Insufficient system storage"),
        ("DATA", "451 4.3.0 Local error in processing"),
    ],
)
async def test_4xx_replies_are_transient(stage: str, reply: str) -> None:
    async with SmtpSink() as sink:
        sink.fail_next(stage, reply)  # type: ignore[arg-type]  # parametrized literal
        connector = connector_for(sink)
        with pytest.raises(TransientError) as err:
            await connector.execute("send", email(), "act-451")
        assert reply in str(err.value)
        await connector.execute("send", email(), "act-451")  # the retry goes through
        assert len(sink.messages) == 1


@pytest.mark.parametrize(
    ("stage", "reply"),
    [
        ("DATA", "554 5.7.1 Message refused: looks like spam"),
        ("MAIL", "553 5.7.1 Sender address rejected"),
    ],
)
async def test_5xx_replies_are_permanent_and_quoted(stage: str, reply: str) -> None:
    async with SmtpSink() as sink:
        sink.fail_next(stage, reply)  # type: ignore[arg-type]  # parametrized literal
        with pytest.raises(PermanentError) as err:
            await connector_for(sink).execute("send", email(), "act-554")
        assert reply in str(err.value)


async def test_connection_refused_is_transient() -> None:
    settings = EmailSettings(
        host="127.0.0.1", port=closed_port(), from_address="me@acme.test", security="none"
    )
    connector = EmailConnector(settings, local_hostname="client.test")
    with pytest.raises(TransientError, match=r"could not reach the SMTP server 127\.0\.0\.1"):
        await connector.execute("send", email(), "act-refused")
    problems = await probe(settings, local_hostname="client.test")
    assert len(problems) == 1 and "could not reach" in problems[0]


async def test_a_server_that_never_answers_times_out_as_transient() -> None:
    async with SmtpSink() as sink:
        sink.hang_next("DATA")
        connector = connector_for(sink, timeout_s=0.3)
        with pytest.raises(TransientError, match="did not answer in time"):
            await connector.execute("send", email(), "act-slow")


async def test_a_drop_after_data_is_transient_and_the_retry_carries_the_same_message_id() -> None:
    async with SmtpSink() as sink:
        sink.drop_after_data_next()
        connector = connector_for(sink)
        with pytest.raises(TransientError, match="may or may not have been accepted"):
            await connector.execute("send", email(), "act-drop")
        await connector.execute("send", email(), "act-drop")
        assert len(sink.messages) == 2  # it landed twice: SMTP cannot dedupe...
        first, second = (m.message for m in sink.messages)
        assert first["Message-ID"] == second["Message-ID"]  # ...but the receiver can
        assert first[IDEMPOTENCY_HEADER] == second[IDEMPOTENCY_HEADER] == "act-drop"


async def test_lookup_cannot_tell_so_the_operator_is_asked() -> None:
    async with SmtpSink() as sink:
        connector = connector_for(sink)
        await connector.execute("send", email(), "act-1")
        assert (await connector.lookup("send", email(), "act-1")).known is Known.UNKNOWN
        assert (await connector.lookup("send", email(), "never")).known is Known.UNKNOWN


async def test_probe_over_implicit_tls_with_auth() -> None:
    async with SmtpSink(security="tls", users=USERS) as sink:
        settings = EmailSettings.model_validate(
            sink.settings(username="billing", password=PASSWORD)
        )
        assert await probe(settings, tls_context=sink.client_tls_context()) == []
        assert sink.logins == ["billing"]
        assert sink.messages == []


async def test_probe_reports_settings_problems_without_the_network() -> None:
    assert await probe(EmailSettings(host="h.test")) == [
        "SOLOOPS_EMAIL__FROM_ADDRESS is not set: the sender, e.g. billing@example.com"
    ]
