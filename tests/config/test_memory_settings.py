from __future__ import annotations

import pytest

from config import ConfigError, load_settings


def test_memory_defaults_come_from_the_toml_file() -> None:
    memory = load_settings().memory
    assert memory.model == "" and memory.approximate_above == 5_000
    assert memory.working_ttl_s == 7 * 24 * 3600


def test_memory_settings_follow_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOLOOPS_MEMORY__ROUTER_THRESHOLD", "0.7")
    monkeypatch.setenv("SOLOOPS_MEMORY__MODEL", "/models/e5-small")
    memory = load_settings().memory
    assert memory.router_threshold == 0.7 and memory.model == "/models/e5-small"


def test_a_bad_memory_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOLOOPS_MEMORY__BATCH_SIZE", "0")
    with pytest.raises(ConfigError, match="SOLOOPS_MEMORY__BATCH_SIZE"):
        load_settings()
