from __future__ import annotations

from pathlib import Path

import pytest

from config import ConfigError, Settings, load_settings


def test_defaults_come_from_the_packaged_toml() -> None:
    settings = load_settings()
    assert settings.coordinator.concurrency == 4
    assert settings.gateway.max_message_chars == 16000
    assert settings.log_level == "INFO"


def test_home_decides_where_state_lives(tmp_path: Path) -> None:
    settings = load_settings()  # SOLOOPS_HOME is set by the autouse fixture
    assert settings.data_dir == tmp_path / "home"
    assert settings.database_path == tmp_path / "home" / "soloops.db"


def test_environment_overrides_nested_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOLOOPS_COORDINATOR__CONCURRENCY", "9")
    monkeypatch.setenv("SOLOOPS_LOG_LEVEL", "DEBUG")
    settings = load_settings()
    assert settings.coordinator.concurrency == 9
    assert settings.log_level == "DEBUG"


def test_user_file_overrides_defaults_and_env_overrides_the_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    user = tmp_path / "mine.toml"
    user.write_text('timezone = "Europe/Paris"\n[coordinator]\nconcurrency = 2\n')
    monkeypatch.setenv("SOLOOPS_CONFIG", str(user))
    assert load_settings().coordinator.concurrency == 2
    assert load_settings().timezone == "Europe/Paris"
    monkeypatch.setenv("SOLOOPS_COORDINATOR__CONCURRENCY", "3")
    assert load_settings().coordinator.concurrency == 3


@pytest.mark.parametrize(
    ("env", "value", "says"),
    [
        ("SOLOOPS_COORDINATOR__CONCURRENCY", "0", "'coordinator.concurrency'"),
        ("SOLOOPS_TIMEZONE", "Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
        ("SOLOOPS_LOG_LEVEL", "LOUD", "SOLOOPS_LOG_LEVEL"),
    ],
)
def test_invalid_values_fail_with_the_fix(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, says: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError, match="Invalid settings") as caught:
        load_settings()
    assert says in str(caught.value)
    assert env in str(caught.value)


def test_unknown_keys_in_a_user_file_are_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    user = tmp_path / "mine.toml"
    user.write_text("[coordinater]\nconcurrency = 2\n")
    monkeypatch.setenv("SOLOOPS_CONFIG", str(user))
    with pytest.raises(ConfigError, match="'coordinater' is not a known setting"):
        load_settings()


def test_a_broken_toml_file_is_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    user = tmp_path / "mine.toml"
    user.write_text("concurrency = = 2\n")
    monkeypatch.setenv("SOLOOPS_CONFIG", str(user))
    with pytest.raises(ConfigError, match="Could not read the settings"):
        load_settings()


def test_missing_files_named_by_env_are_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOLOOPS_CONFIG", "/no/such.toml")
    with pytest.raises(ConfigError, match="not a readable file"):
        load_settings()
    monkeypatch.delenv("SOLOOPS_CONFIG")
    monkeypatch.setenv("SOLOOPS_SECRETS_DIR", "/no/such/dir")
    with pytest.raises(ConfigError, match="not a directory"):
        load_settings()


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValueError, match="frozen"):
        settings.log_level = "ERROR"  # type: ignore[misc]


def test_a_secrets_directory_fills_nested_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "telegram__token").write_text("123:from-a-file\n")
    (secrets / "SOLOOPS_HOOKS__CRM__SECRET").write_text("a-hook-secret-of-length\n")
    (secrets / ".hidden").write_text("ignored")
    monkeypatch.setenv("SOLOOPS_SECRETS_DIR", str(secrets))
    monkeypatch.setenv("SOLOOPS_HOOKS__CRM__URL", "https://example.com/hook")
    settings = load_settings()
    assert settings.telegram.token is not None
    assert settings.telegram.token.get_secret_value() == "123:from-a-file"
    assert settings.hooks["crm"].secret.get_secret_value() == "a-hook-secret-of-length"
    assert "123:from-a-file" in settings.secret_values()
    assert "from-a-file" not in repr(settings)
    # The environment still wins over the files.
    monkeypatch.setenv("SOLOOPS_TELEGRAM__TOKEN", "456:from-env")
    assert load_settings().telegram.token.get_secret_value() == "456:from-env"  # type: ignore[union-attr]
