"""Settings for soloops: one pydantic-settings model, defaults in ``soloops.toml``."""

from config.settings import (
    ActionSettings,
    BreakerSettings,
    BudgetSettings,
    ConfigError,
    CoordinatorSettings,
    GatewaySettings,
    HookSettings,
    HttpSettings,
    MemorySettings,
    Settings,
    SlackSettings,
    TelegramSettings,
    load_settings,
)

__all__ = [
    "ActionSettings",
    "BreakerSettings",
    "BudgetSettings",
    "ConfigError",
    "CoordinatorSettings",
    "GatewaySettings",
    "HookSettings",
    "HttpSettings",
    "MemorySettings",
    "Settings",
    "SlackSettings",
    "TelegramSettings",
    "load_settings",
]
