"""Settings for soloops: one pydantic-settings model, defaults in ``soloops.toml``."""

from config.settings import (
    ConfigError,
    CoordinatorSettings,
    GatewaySettings,
    HttpSettings,
    Settings,
    SlackSettings,
    load_settings,
)

__all__ = [
    "ConfigError",
    "CoordinatorSettings",
    "GatewaySettings",
    "HttpSettings",
    "Settings",
    "SlackSettings",
    "load_settings",
]
