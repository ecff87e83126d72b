"""Settings of the email, language-model and transcription connectors."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from config import ConfigError, load_settings

PASSWORD = "smtp-pass-0123456789"
API_KEY = "sk-live-0123456789abcdef"
WHISPER_KEY = "sk-whisper-abcdef0123456789"


def test_none_is_configured_by_default() -> None:
    settings = load_settings()
    assert not settings.email.configured
    assert not settings.llm.configured
    assert not settings.transcribe.configured
    assert settings.email.security == "starttls" and settings.email.effective_port == 587
    assert settings.transcribe.model == "whisper-1"


def test_email_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "HOST": "smtp.example.test",
        "PORT": "2525",
        "USERNAME": "billing",
        "PASSWORD": PASSWORD,
        "FROM_ADDRESS": "Acme <billing@acme.test>",
        "SECURITY": "tls",
        "TIMEOUT_S": "12.5",
    }.items():
        monkeypatch.setenv(f"SOLOOPS_EMAIL__{name}", value)
    settings = load_settings()
    email = settings.email
    assert email.configured
    assert (email.host, email.port, email.username) == ("smtp.example.test", 2525, "billing")
    assert email.password is not None and email.password.get_secret_value() == PASSWORD
    assert (email.from_address, email.security, email.timeout_s) == (
        "Acme <billing@acme.test>",
        "tls",
        12.5,
    )
    assert PASSWORD not in repr(settings) and PASSWORD not in str(email)
    assert PASSWORD in settings.secret_values()


@pytest.mark.parametrize(("security", "port"), [("none", 25), ("starttls", 587), ("tls", 465)])
def test_email_port_follows_security(
    monkeypatch: pytest.MonkeyPatch, security: str, port: int
) -> None:
    monkeypatch.setenv("SOLOOPS_EMAIL__SECURITY", security)
    monkeypatch.setenv("SOLOOPS_EMAIL__PORT", "")
    assert load_settings().email.effective_port == port


def test_email_needs_host_and_sender(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOLOOPS_EMAIL__HOST", "smtp.example.test")
    assert not load_settings().email.configured
    monkeypatch.setenv("SOLOOPS_EMAIL__FROM_ADDRESS", "me@example.test")
    assert load_settings().email.configured


def test_llm_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOLOOPS_LLM__BASE_URL", "https://api.openai.com/v1/")
    monkeypatch.setenv("SOLOOPS_LLM__MODEL", "gpt-4o-mini")
    monkeypatch.setenv("SOLOOPS_LLM__API_KEY", API_KEY)
    monkeypatch.setenv("SOLOOPS_LLM__TIMEOUT_S", "20")
    monkeypatch.setenv("SOLOOPS_LLM__PRICE_INPUT_PER_MTOK", "0.15")
    monkeypatch.setenv("SOLOOPS_LLM__PRICE_OUTPUT_PER_MTOK", "0.60")
    settings = load_settings()
    llm = settings.llm
    assert llm.configured
    assert llm.base_url == "https://api.openai.com/v1"  # trailing slash dropped
    assert llm.price_input_per_mtok == Decimal("0.15")
    assert llm.price_output_per_mtok == Decimal("0.60")
    assert llm.timeout_s == 20
    assert API_KEY not in repr(settings)
    assert API_KEY in settings.secret_values()


def test_llm_without_a_key_for_local_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOLOOPS_LLM__BASE_URL", "http://127.0.0.1:11434/v1")
    monkeypatch.setenv("SOLOOPS_LLM__MODEL", "llama3")
    monkeypatch.setenv("SOLOOPS_LLM__API_KEY", "")
    llm = load_settings().llm
    assert llm.configured and llm.api_key is None


def test_transcribe_from_env_and_secrets_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "transcribe__api_key").write_text(WHISPER_KEY + "\n")
    (secrets / "email__password").write_text(PASSWORD + "\n")
    monkeypatch.setenv("SOLOOPS_SECRETS_DIR", str(secrets))
    monkeypatch.setenv("SOLOOPS_TRANSCRIBE__BASE_URL", "http://127.0.0.1:8000/v1")
    monkeypatch.setenv("SOLOOPS_TRANSCRIBE__MODEL", "large-v3")
    monkeypatch.setenv("SOLOOPS_TRANSCRIBE__TIMEOUT_S", "300")
    settings = load_settings()
    t = settings.transcribe
    assert t.configured and (t.model, t.timeout_s) == ("large-v3", 300)
    assert t.api_key is not None and t.api_key.get_secret_value() == WHISPER_KEY
    assert settings.email.password is not None
    assert settings.email.password.get_secret_value() == PASSWORD
    assert WHISPER_KEY not in repr(settings) and PASSWORD not in repr(settings)


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("EMAIL__SECURITY", "ssl", "'email.security': Input should be 'none', 'starttls' or 'tls'"),
        ("EMAIL__PORT", "99999", "'email.port'"),
        ("EMAIL__TIMEOUT_S", "0", "SOLOOPS_EMAIL__TIMEOUT_S"),
        ("LLM__BASE_URL", "localhost:11434", "'llm.base_url': Value error, base_url must start"),
        ("LLM__PRICE_INPUT_PER_MTOK", "-1", "'llm.price_input_per_mtok'"),
        ("LLM__PRICE_OUTPUT_PER_MTOK", "cheap", "SOLOOPS_LLM__PRICE_OUTPUT_PER_MTOK"),
        ("TRANSCRIBE__BASE_URL", "ftp://x.test", "'transcribe.base_url'"),
        ("LLM__COLOUR", "red", "'llm.colour' is not a known setting"),
    ],
)
def test_bad_values_name_the_setting(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, says: str
) -> None:
    monkeypatch.setenv(f"SOLOOPS_{name}", value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert says in str(err.value)


def test_rejected_secrets_are_never_echoed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    user = tmp_path / "mine.toml"
    user.write_text("[llm]\napi_key = 12345678901234\n[email]\npassword = 98765432109876\n")
    monkeypatch.setenv("SOLOOPS_CONFIG", str(user))
    with pytest.raises(ConfigError) as err:
        load_settings()
    text = str(err.value)
    assert "'llm.api_key'" in text and "'email.password'" in text
    assert "12345678901234" not in text and "98765432109876" not in text
