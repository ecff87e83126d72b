"""Settings for soloops: one pydantic-settings model, defaults in ``soloops.toml``."""

from config.settings import (
    ActionSettings,
    BreakerSettings,
    BudgetSettings,
    ConfigError,
    CoordinatorSettings,
    EmailSettings,
    GatewaySettings,
    HookSettings,
    HttpSettings,
    LlmSettings,
    MemorySettings,
    Settings,
    SlackSettings,
    TelegramSettings,
    TranscribeSettings,
    load_settings,
)

__all__ = [
    "ActionSettings",
    "BreakerSettings",
    "BudgetSettings",
    "ConfigError",
    "CoordinatorSettings",
    "EmailSettings",
    "GatewaySettings",
    "HookSettings",
    "HttpSettings",
    "LlmSettings",
    "MemorySettings",
    "Settings",
    "SlackSettings",
    "TelegramSettings",
    "TranscribeSettings",
    "load_settings",
]
