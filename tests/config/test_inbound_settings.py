"""Named inbound hooks in the settings: sources, exactly one credential, redaction."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from config import ConfigError, load_settings

SECRET = "whsec-0123456789abcdef"
TOKEN = "tok-0123456789abcdef"


def test_no_inbound_hooks_by_default() -> None:
    assert load_settings().inbound == {}


def test_inbound_hooks_from_env_json(monkeypatch: pytest.MonkeyPatch) -> None:
    hooks = {
        "site": {"secret": SECRET, "intent": "lead"},
        "form-2": {"token": TOKEN, "intent": "lead"},
    }
    monkeypatch.setenv("SOLOOPS_INBOUND", json.dumps(hooks))
    settings = load_settings()
    site, form = settings.inbound["site"], settings.inbound["form-2"]
    assert site.secret is not None and site.secret.get_secret_value() == SECRET
    assert site.token is None and site.intent == "lead"
    assert form.token is not None and form.token.get_secret_value() == TOKEN
    assert form.secret is None
    assert SECRET not in repr(settings) and TOKEN not in repr(settings)
    assert {SECRET, TOKEN} <= set(settings.secret_values())


def test_inbound_hooks_from_toml_with_the_secret_from_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    user = tmp_path / "mine.toml"
    user.write_text('[inbound.site]\nintent = "lead"\n')
    monkeypatch.setenv("SOLOOPS_CONFIG", str(user))
    monkeypatch.setenv("SOLOOPS_INBOUND__SITE__SECRET", SECRET)
    site = load_settings().inbound["site"]
    assert site.intent == "lead"
    assert site.secret is not None and site.secret.get_secret_value() == SECRET


@pytest.mark.parametrize(
    ("hook", "says"),
    [
        ({"intent": "lead"}, "set exactly one of secret"),
        ({"intent": "lead", "secret": SECRET, "token": TOKEN}, "set exactly one of secret"),
        ({"intent": "lead", "secret": ""}, "set exactly one of secret"),
        ({"intent": "lead", "secret": "short"}, "'inbound.site.secret': Value error, must be"),
        ({"intent": "lead", "token": "short"}, "'inbound.site.token': Value error, must be"),
        ({"secret": SECRET}, "'inbound.site.intent': Field required"),
        ({"secret": SECRET, "intent": "New Lead"}, "intent must be an intent kind"),
        ({"secret": SECRET, "intent": "lead", "url": "x"}, "'inbound.site.url' is not a known"),
    ],
)
def test_bad_inbound_hooks_are_named(
    monkeypatch: pytest.MonkeyPatch, hook: dict[str, object], says: str
) -> None:
    monkeypatch.setenv("SOLOOPS_INBOUND", json.dumps({"site": hook}))
    with pytest.raises(ConfigError, match="Invalid settings") as caught:
        load_settings()
    assert says in str(caught.value)
    assert "short" not in str(caught.value).replace("'inbound.site", "")  # never echoed


@pytest.mark.parametrize("name", ["Site", "1site", "web site", "s" * 33])
def test_bad_inbound_hook_names_are_named(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv("SOLOOPS_INBOUND", json.dumps({name: {"secret": SECRET, "intent": "lead"}}))
    with pytest.raises(ConfigError, match=f"'inbound': Value error, hook name {name!r} must"):
        load_settings()
