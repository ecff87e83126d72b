"""Named outbound hooks in the settings: sources, validation, redaction."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from config import ConfigError, load_settings

SECRET = "whsec-0123456789abcdef"


def test_no_hooks_by_default() -> None:
    assert load_settings().hooks == {}


def test_hooks_from_env_json(monkeypatch: pytest.MonkeyPatch) -> None:
    hooks = {
        "crm": {"url": "https://crm.example.com/in", "secret": SECRET},
        "ops-alerts": {
            "url": "http://10.0.0.5:8080/hook",
            "secret": SECRET + "2",
            "status_url": "http://10.0.0.5:8080/status/{key}",
            "timeout_s": 3,
        },
    }
    monkeypatch.setenv("SOLOOPS_HOOKS", json.dumps(hooks))
    settings = load_settings()
    assert sorted(settings.hooks) == ["crm", "ops-alerts"]
    crm = settings.hooks["crm"]
    assert crm.url == "https://crm.example.com/in"
    assert crm.secret.get_secret_value() == SECRET
    assert crm.status_url is None
    assert crm.timeout_s == 10
    assert settings.hooks["ops-alerts"].timeout_s == 3
    assert SECRET not in repr(settings)


def test_hooks_from_the_user_toml_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    user = tmp_path / "mine.toml"
    user.write_text(
        "[hooks.crm]\n"
        'url = "https://crm.example.com/in"\n'
        f'secret = "{SECRET}"\n'
        'status_url = "https://crm.example.com/status/{key}"\n'
    )
    monkeypatch.setenv("SOLOOPS_CONFIG", str(user))
    crm = load_settings().hooks["crm"]
    assert crm.status_url == "https://crm.example.com/status/{key}"
    # the secret can stay out of the file: env values merge into the file's table
    user.write_text('[hooks.crm]\nurl = "https://crm.example.com/in"\n')
    monkeypatch.setenv("SOLOOPS_HOOKS__CRM__SECRET", SECRET + "-env")
    crm = load_settings().hooks["crm"]
    assert crm.url == "https://crm.example.com/in"
    assert crm.secret.get_secret_value() == SECRET + "-env"


def test_hook_secrets_are_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    hooks = {"a": {"url": "https://a.example", "secret": SECRET}}
    monkeypatch.setenv("SOLOOPS_HOOKS", json.dumps(hooks))
    assert SECRET in load_settings().secret_values()


@pytest.mark.parametrize(
    ("hook", "says"),
    [
        ({"url": "ftp://x.example/in"}, "'hooks.crm.url': Value error, url must start with http"),
        ({"url": "crm.example.com/in"}, "'hooks.crm.url': Value error, url must start with http"),
        ({"url": "https:///in"}, "'hooks.crm.url': Value error, url has no host name"),
        ({"url": "https://x.example:99999/"}, "'hooks.crm.url': Value error, url is not a valid"),
        ({"status_url": "https://x.example/status"}, "'hooks.crm.status_url'"),
        ({"status_url": "file:///{key}"}, "status_url must start with http"),
        ({"secret": "short"}, "'hooks.crm.secret': Value error, secret must be at least 16"),
        ({"timeout_s": 0}, "'hooks.crm.timeout_s'"),
        ({"secret": None}, "'hooks.crm.secret'"),
        ({"colour": "red"}, "'hooks.crm.colour' is not a known setting"),
    ],
)
def test_bad_hooks_are_named(
    monkeypatch: pytest.MonkeyPatch, hook: dict[str, object], says: str
) -> None:
    good: dict[str, object] = {"url": "https://crm.example.com/in", "secret": SECRET}
    monkeypatch.setenv("SOLOOPS_HOOKS", json.dumps({"crm": {**good, **hook}}))
    with pytest.raises(ConfigError, match="Invalid settings") as caught:
        load_settings()
    assert says in str(caught.value)
    assert "(got 'short')" not in str(caught.value)  # a rejected secret is never echoed


@pytest.mark.parametrize("name", ["CRM", "1crm", "crm hook", "c" * 33, ""])
def test_bad_hook_names_are_named(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    hooks = {name: {"url": "https://crm.example.com/in", "secret": SECRET}}
    monkeypatch.setenv("SOLOOPS_HOOKS", json.dumps(hooks))
    with pytest.raises(ConfigError, match=f"'hooks': Value error, hook name {name!r} must start"):
        load_settings()


@pytest.mark.parametrize("name", ["crm", "ops-alerts", "a_1", "c" * 32])
def test_good_hook_names(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    hooks = {name: {"url": "https://crm.example.com/in", "secret": SECRET}}
    monkeypatch.setenv("SOLOOPS_HOOKS", json.dumps(hooks))
    assert list(load_settings().hooks) == [name]
