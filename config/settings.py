"""The settings model.

Sources, highest priority first: init arguments, ``SOLOOPS_*`` environment variables
(nested with ``__``), files in ``SOLOOPS_SECRETS_DIR``, the user TOML file named by
``SOLOOPS_CONFIG``, and the packaged defaults in ``config/soloops.toml``.

Nothing else in soloops reads environment variables for configuration: everything
goes through :func:`load_settings`.
"""

from __future__ import annotations

import os
import zoneinfo
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULTS_FILE = Path(__file__).with_name("soloops.toml")
ENV_PREFIX = "SOLOOPS_"


class ConfigError(Exception):
    """Settings are missing or invalid. The message names the setting and the fix."""


class CoordinatorSettings(BaseModel):
    """How the coordinator schedules tasks."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    concurrency: int = Field(default=4, ge=1, le=256)
    shutdown_grace_s: float = Field(default=10.0, ge=0, le=600)


class GatewaySettings(BaseModel):
    """Limits applied to every inbound message."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_message_chars: int = Field(default=16000, ge=100, le=1_000_000)


class MemorySettings(BaseModel):
    """Semantic memory: the embedding model, the tiers, the index and the router."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(default="", max_length=1000)
    batch_size: int = Field(default=64, ge=1, le=4096)
    working_ttl_s: float = Field(default=7 * 24 * 3600.0, gt=0)
    ephemeral_turns: int = Field(default=20, ge=0, le=1000)
    ephemeral_conversations: int = Field(default=256, ge=1, le=100_000)
    approximate_above: int = Field(default=5_000, ge=1)
    hnsw_m: int = Field(default=32, ge=4, le=128)
    hnsw_ef_search: int = Field(default=128, ge=8, le=4096)
    eviction_interval_s: float = Field(default=300.0, gt=0)
    router_threshold: float = Field(default=0.5, ge=0, le=1)
    router_margin: float = Field(default=0.05, ge=0, le=1)
    load_note_after_s: float = Field(default=2.0, ge=0)


class Settings(BaseSettings):
    """All soloops settings. See ``config/soloops.toml`` for the documented defaults."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        toml_file=DEFAULTS_FILE,
    )

    home: Path | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    timezone: str = "UTC"
    coordinator: CoordinatorSettings = CoordinatorSettings()
    gateway: GatewaySettings = GatewaySettings()
    memory: MemorySettings = MemorySettings()

    @field_validator("home", mode="before")
    @classmethod
    def _empty_home_is_default(cls, value: Any) -> Any:
        if value in ("", None):
            return None
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"unknown time zone {value!r}; use an IANA name like 'Europe/Paris'"
            ) from exc
        return value

    @property
    def data_dir(self) -> Path:
        """The directory that holds all state."""
        if self.home is not None:
            return self.home.expanduser()
        return Path(platformdirs.user_data_dir("soloops", appauthor=False))

    @property
    def database_path(self) -> Path:
        """The SQLite database file."""
        return self.data_dir / "soloops.db"

    @property
    def index_path(self) -> Path:
        """The FAISS index of semantic memory (derived from the database; safe to delete)."""
        return self.data_dir / "memory.faiss"

    @property
    def log_path(self) -> Path:
        """The rotating log file."""
        return self.data_dir / "logs" / "soloops.log"

    def secret_values(self) -> list[str]:
        """Every configured secret's plain value, for redaction in logs and events."""
        found: list[str] = []
        _collect_secrets(self, found)
        return [value for value in found if len(value) >= 4]

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        secrets_dir = os.environ.get(f"{ENV_PREFIX}SECRETS_DIR")
        if secrets_dir:
            sources.append(SecretsSettingsSource(settings_cls, secrets_dir=secrets_dir))
        user_file = os.environ.get(f"{ENV_PREFIX}CONFIG")
        if user_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(user_file)))
        sources.append(TomlConfigSettingsSource(settings_cls, toml_file=DEFAULTS_FILE))
        return tuple(sources)


def _collect_secrets(model: BaseModel, found: list[str]) -> None:
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, SecretStr):
            found.append(value.get_secret_value())
        elif isinstance(value, BaseModel):
            _collect_secrets(value, found)
        elif isinstance(value, dict):
            for item in value.values():
                if isinstance(item, BaseModel):
                    _collect_secrets(item, found)
                elif isinstance(item, SecretStr):
                    found.append(item.get_secret_value())


def load_settings(**overrides: Any) -> Settings:
    """Load settings from every source, or raise :class:`ConfigError` saying what to fix."""
    user_file = os.environ.get(f"{ENV_PREFIX}CONFIG")
    if user_file and not Path(user_file).is_file():
        raise ConfigError(
            f"{ENV_PREFIX}CONFIG names {user_file!r}, which is not a readable file. "
            f"Point it at your TOML settings file, or unset it."
        )
    secrets_dir = os.environ.get(f"{ENV_PREFIX}SECRETS_DIR")
    if secrets_dir and not Path(secrets_dir).is_dir():
        raise ConfigError(
            f"{ENV_PREFIX}SECRETS_DIR names {secrets_dir!r}, which is not a directory. "
            f"Point it at the folder holding one file per secret, or unset it."
        )
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_explain(exc)) from None
    except (ValueError, OSError) as exc:  # a malformed TOML file
        raise ConfigError(f"Could not read the settings: {exc}") from None


def _explain(exc: ValidationError) -> str:
    lines = ["Invalid settings:"]
    for error in exc.errors():
        path = [str(part) for part in error["loc"]]
        dotted = ".".join(path)
        env_name = ENV_PREFIX + "__".join(part.upper() for part in path)
        given = error.get("input")
        shown = "" if isinstance(given, dict) or given is None else f" (got {str(given)[:60]!r})"
        if error["type"] == "extra_forbidden":
            lines.append(
                f"- '{dotted}' is not a known setting{shown}: remove it from your TOML file "
                f"or unset {env_name}."
            )
        else:
            lines.append(
                f"- '{dotted}': {error['msg']}{shown}. Fix it in your TOML file "
                f"({ENV_PREFIX}CONFIG) or set {env_name}."
            )
    return "\n".join(lines)
