"""``soloops doctor``: each configured connector's settings without network, and
``--online`` against the loopback SMTP sink, model server and transcription server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from bot.cli import build_parser
from bot.doctor import Check, run_checks
from tests.emulators.llm import LlmServer
from tests.emulators.smtp import SmtpSink
from tests.emulators.transcribe import TranscribeServer


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {check.name: check for check in checks}


async def test_offline_names_what_is_misconfigured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOLOOPS_EMAIL__HOST", "smtp.example.com")
    monkeypatch.setenv("SOLOOPS_LLM__BASE_URL", "https://api.openai.com/v1")
    monkeypatch.setenv("SOLOOPS_LLM__MODEL", "gpt-4o-mini")
    monkeypatch.setenv("SOLOOPS_TRANSCRIBE__BASE_URL", "http://speech.example.com/v1")
    monkeypatch.setenv("SOLOOPS_TRANSCRIBE__API_KEY", "sk-speech-0123456789")
    monkeypatch.setenv(
        "SOLOOPS_INBOUND",
        json.dumps(
            {
                "site": {"secret": "s" * 24, "intent": "remember"},
                "shop": {"token": "t" * 24, "intent": "nosuch"},
            }
        ),
    )
    checks = by_name(await run_checks())
    assert checks["email"].level == "fail"
    assert "SOLOOPS_EMAIL__FROM_ADDRESS is not set" in checks["email"].detail
    assert checks["language model"].level == "fail"
    assert "SOLOOPS_LLM__API_KEY is not set" in checks["language model"].detail
    assert checks["transcription"].level == "fail"
    assert "unencrypted" in checks["transcription"].detail
    assert "sk-speech" not in checks["transcription"].detail
    assert checks["inbound site"].level == "ok"
    assert checks["inbound site"].detail.endswith("/hooks/site (signed) -> remember")
    assert checks["inbound shop"].level == "fail"
    assert "remember" in checks["inbound shop"].fix
    assert not any(name.endswith("(online)") for name in checks)


async def test_offline_with_nothing_configured_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    checks = by_name(await run_checks())
    assert checks["email"].level == "ok"
    assert checks["email"].detail.startswith("not configured")
    assert checks["language model"].detail.startswith("not configured")


@pytest.fixture
async def servers() -> AsyncIterator[tuple[SmtpSink, LlmServer, TranscribeServer]]:
    async with (
        SmtpSink(users={"billing": "mail-password-1"}) as sink,
        LlmServer() as llm,
        TranscribeServer() as speech,
    ):
        yield sink, llm, speech


def _point_at(
    monkeypatch: pytest.MonkeyPatch,
    servers: tuple[SmtpSink, LlmServer, TranscribeServer],
    *,
    password: str = "mail-password-1",
    model: str = "test-model",
) -> None:
    sink, llm, speech = servers
    monkeypatch.setenv("SOLOOPS_EMAIL__HOST", "127.0.0.1")
    monkeypatch.setenv("SOLOOPS_EMAIL__PORT", str(sink.port))
    monkeypatch.setenv("SOLOOPS_EMAIL__SECURITY", "none")
    monkeypatch.setenv("SOLOOPS_EMAIL__FROM_ADDRESS", "billing@acme.test")
    monkeypatch.setenv("SOLOOPS_EMAIL__USERNAME", "billing")
    monkeypatch.setenv("SOLOOPS_EMAIL__PASSWORD", password)
    monkeypatch.setenv("SOLOOPS_EMAIL__TIMEOUT_S", "5")
    monkeypatch.setenv("SOLOOPS_LLM__BASE_URL", llm.url)
    monkeypatch.setenv("SOLOOPS_LLM__MODEL", model)
    monkeypatch.setenv("SOLOOPS_TRANSCRIBE__BASE_URL", speech.url)


async def test_online_connects_to_each_connector(
    monkeypatch: pytest.MonkeyPatch, servers: tuple[SmtpSink, LlmServer, TranscribeServer]
) -> None:
    _point_at(monkeypatch, servers)
    checks = by_name(await run_checks(online=True))
    assert checks["email"].level == "ok"
    for name in ("email (online)", "language model (online)", "transcription (online)"):
        assert checks[name].level == "ok", checks[name]
    sink, llm, speech = servers
    assert sink.logins == ["billing"]
    assert llm.requests[-1].path == "/v1/models"
    assert len(speech.uploads) == 1


async def test_online_says_what_failed(
    monkeypatch: pytest.MonkeyPatch, servers: tuple[SmtpSink, LlmServer, TranscribeServer]
) -> None:
    _point_at(monkeypatch, servers, password="wrong-password", model="other-model")
    servers[2].fail(503, "warming up")
    checks = by_name(await run_checks(online=True))
    email = checks["email (online)"]
    assert email.level == "fail" and "wrong-password" not in email.detail
    assert "auth" in email.detail.lower() or "login" in email.detail.lower(), email.detail
    model = checks["language model (online)"]
    assert (model.level, "SOLOOPS_LLM__MODEL='other-model'" in model.detail) == ("fail", True)
    speech = checks["transcription (online)"]
    assert speech.level == "fail" and "503" in speech.detail, speech.detail


def test_the_command_takes_online() -> None:
    assert build_parser().parse_args(["doctor", "--online"]).online is True
    assert build_parser().parse_args(["doctor"]).online is False
