"""Settings for soloops: one pydantic-settings model, defaults in ``soloops.toml``."""

from config.settings import (
    ConfigError,
    CoordinatorSettings,
    GatewaySettings,
    MemorySettings,
    Settings,
    load_settings,
)

__all__ = [
    "ConfigError",
    "CoordinatorSettings",
    "GatewaySettings",
    "MemorySettings",
    "Settings",
    "load_settings",
]
