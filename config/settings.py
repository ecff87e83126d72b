"""The settings model.

Sources, highest priority first: init arguments, ``SOLOOPS_*`` environment variables
(nested with ``__``), files in ``SOLOOPS_SECRETS_DIR``, the user TOML file named by
``SOLOOPS_CONFIG``, and the packaged defaults in ``config/soloops.toml``.

Nothing else in soloops reads environment variables for configuration: everything
goes through :func:`load_settings`.
"""

from __future__ import annotations

import os
import re
import zoneinfo
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import platformdirs
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from config.durations import DurationError, parse_duration

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


class ActionSettings(BaseModel):
    """How actions are retried and how long approvals wait."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_attempts: int = Field(default=6, ge=1, le=100)
    retry_base_s: float = Field(default=2.0, gt=0, le=3600)
    retry_max_s: float = Field(default=600.0, gt=0, le=86400)
    call_timeout_s: float = Field(default=30.0, gt=0, le=600)
    approval_ttl_hours: float = Field(default=24.0, gt=0, le=24 * 30)
    policies_file: Path | None = None

    @field_validator("policies_file", mode="before")
    @classmethod
    def _empty_is_default(cls, value: Any) -> Any:
        return None if value in ("", None) else value


class BreakerSettings(BaseModel):
    """When a connector's circuit breaker opens, and for how long."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold: int = Field(default=5, ge=1, le=1000)
    cooldown_s: float = Field(default=30.0, gt=0, le=86400)


class SupervisorSettings(BaseModel):
    """When an agent that keeps failing is marked degraded."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    degrade_after_failures: int = Field(default=3, ge=1, le=1000)


class BudgetSettings(BaseModel):
    """One agent's daily budget (the ``default`` entry applies to the others)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    actions_per_day: int = Field(default=200, ge=0)
    spend_per_day: float = Field(default=5.0, ge=0)


class ModelPrice(BaseModel):
    """What a model costs per 1000 tokens, in the budget's currency."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_per_1k: float = Field(ge=0)
    output_per_1k: float = Field(ge=0)


HOOK_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
MIN_HOOK_SECRET_CHARS = 16


def _http_url(value: str, what: str) -> str:
    """Check that ``value`` is an absolute http(s) URL; say what is wrong otherwise."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 -- raises ValueError on a malformed port
    except ValueError as exc:
        raise ValueError(f"{what} is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{what} must start with http:// or https://")
    if not parts.hostname:
        raise ValueError(f"{what} has no host name")
    return value


class HookSettings(BaseModel):
    """One outbound webhook: where to POST, and the secret that signs each request."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    secret: SecretStr
    status_url: str | None = None
    timeout_s: float = Field(default=10.0, gt=0, le=300)

    @field_validator("url")
    @classmethod
    def _url_is_http(cls, value: str) -> str:
        return _http_url(value, "url")

    @field_validator("status_url", mode="before")
    @classmethod
    def _empty_status_url_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("status_url")
    @classmethod
    def _status_url_has_key(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if "{key}" not in value:
            raise ValueError(
                "status_url must contain '{key}' where the idempotency key goes, "
                "e.g. 'https://example.com/status/{key}'"
            )
        _http_url(value.replace("{key}", "k"), "status_url")
        return value

    @field_validator("secret")
    @classmethod
    def _secret_is_long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < MIN_HOOK_SECRET_CHARS:
            raise ValueError(
                f"secret must be at least {MIN_HOOK_SECRET_CHARS} characters; generate one with "
                "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        return value


INTENT_KIND = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class InboundHookSettings(BaseModel):
    """One inbound webhook (``POST /hooks/<name>``): how callers prove who they are,
    and the intent its JSON payload becomes.

    Exactly one of ``secret`` (requests signed as soloops signs outbound hooks) or
    ``token`` (``Authorization: Bearer <token>``, for senders that cannot sign).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    secret: SecretStr | None = None
    token: SecretStr | None = None
    intent: str

    @field_validator("secret", "token", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("secret", "token")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_HOOK_SECRET_CHARS:
            raise ValueError(
                f"must be at least {MIN_HOOK_SECRET_CHARS} characters; generate one with "
                "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        return value

    @field_validator("intent")
    @classmethod
    def _intent_is_a_kind(cls, value: str) -> str:
        if not INTENT_KIND.match(value):
            raise ValueError(
                "intent must be an intent kind such as 'lead': a lowercase letter, then "
                "lowercase letters, digits and '_'"
            )
        return value

    @model_validator(mode="after")
    def _one_credential(self) -> InboundHookSettings:
        if (self.secret is None) == (self.token is None):
            raise ValueError(
                "set exactly one of secret (signed requests, like outbound hooks) or "
                "token (Authorization: Bearer, for senders that cannot sign)"
            )
        return self


class TelegramSettings(BaseModel):
    """The Telegram front end. It runs whenever ``token`` is set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    token: SecretStr | None = None
    base_url: str = "https://api.telegram.org/bot"
    base_file_url: str = "https://api.telegram.org/file/bot"
    operators: list[int] = Field(default_factory=list)
    mode: Literal["polling", "webhook"] = "polling"
    poll_timeout_s: int = Field(default=30, ge=0, le=120)
    webhook_url: str = ""
    webhook_listen: str = "127.0.0.1"
    webhook_port: int = Field(default=8443, ge=1, le=65535)
    webhook_path: str = "telegram"
    webhook_secret: SecretStr | None = None

    @field_validator("token", "webhook_secret", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        if value == "":
            return None
        return value

    @field_validator("operators", mode="before")
    @classmethod
    def _one_id_or_a_list(cls, value: Any) -> Any:
        # A JSON list is the documented form; a bare id or "1,2" is what people type.
        if isinstance(value, int):
            return [value]
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("base_url", "base_file_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(
                "must start with http:// or https:// (e.g. https://api.telegram.org/bot)"
            )
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _telegram_secret_alphabet(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            secret = value.get_secret_value()
            if not (1 <= len(secret) <= 256) or not all(
                ch.isascii() and (ch.isalnum() or ch in "_-") for ch in secret
            ):
                raise ValueError(
                    "Telegram accepts 1-256 characters A-Z, a-z, 0-9, _ and - as a webhook "
                    "secret; generate one with: python -c 'import secrets; "
                    "print(secrets.token_urlsafe(32))'"
                )
        return value

    @model_validator(mode="after")
    def _webhook_needs_url_and_secret(self) -> TelegramSettings:
        if self.mode == "webhook" and self.token is not None:
            if self.webhook_secret is None:
                raise ValueError(
                    "webhook mode needs a secret, or anyone who finds the URL can post fake "
                    "updates: set SOLOOPS_TELEGRAM__WEBHOOK_SECRET (1-256 of A-Z a-z 0-9 _ -)"
                )
            if not self.webhook_url.startswith(("https://", "http://")):
                raise ValueError(
                    "webhook mode needs the public HTTPS URL Telegram should post to: set "
                    "SOLOOPS_TELEGRAM__WEBHOOK_URL (e.g. https://bot.example.com/telegram), "
                    "or use SOLOOPS_TELEGRAM__MODE=polling"
                )
        return self

    @property
    def configured(self) -> bool:
        """Whether soloops should run on Telegram."""
        return self.token is not None


class SlackSettings(BaseModel):
    """The Slack front end. It runs when ``bot_token`` is set.

    Socket Mode when ``app_token`` is set (no public URL needed); otherwise HTTP mode,
    served on ``[http]`` at ``/slack/events``, which needs the signing secret.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    bot_token: SecretStr | None = None
    signing_secret: SecretStr | None = None
    app_token: SecretStr | None = None
    api_base_url: str = Field(default="https://slack.com/api/", min_length=1)
    operators: list[str] = Field(default_factory=list)
    # The App Home tab refreshes at most once per this many seconds (0: at every change).
    home_refresh_s: float = Field(default=2.0, ge=0, le=300)

    @field_validator("bot_token", "signing_secret", "app_token", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("api_base_url")
    @classmethod
    def _base_url_ends_with_slash(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL like https://slack.com/api/")
        return value if value.endswith("/") else value + "/"

    @model_validator(mode="after")
    def _mode_is_complete(self) -> SlackSettings:
        if self.bot_token is None:
            return self
        if not self.bot_token.get_secret_value().startswith("xoxb-"):
            raise ValueError(
                f"{ENV_PREFIX}SLACK__BOT_TOKEN must be the bot token (xoxb-...), from "
                "OAuth & Permissions in the Slack app settings"
            )
        if self.app_token is not None:
            if not self.app_token.get_secret_value().startswith("xapp-"):
                raise ValueError(
                    f"{ENV_PREFIX}SLACK__APP_TOKEN must be an app-level token (xapp-...) with "
                    "the connections:write scope, from Basic Information > App-Level Tokens"
                )
        elif self.signing_secret is None:
            raise ValueError(
                f"Slack HTTP mode needs the signing secret: set {ENV_PREFIX}SLACK__SIGNING_SECRET "
                "(Basic Information > App Credentials), or set "
                f"{ENV_PREFIX}SLACK__APP_TOKEN to use Socket Mode"
            )
        return self

    @property
    def socket_mode(self) -> bool:
        """Whether Slack connects over Socket Mode rather than posting to our HTTP server."""
        return self.app_token is not None


class HttpSettings(BaseModel):
    """soloops's one HTTP server: Slack's ``/slack/events``, Telegram's webhook, inbound
    hooks, ``/healthz`` and ``/metrics`` (``enabled`` starts it for the last two alone)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=8080, ge=0, le=65535)  # 0: any free port (tests)
    enabled: bool = False  # serve /healthz and /metrics even when no front end needs HTTP


_HOME_TARGET = re.compile(r"^(console|telegram|slack):[^:\s]{1,128}(:[^:\s]{1,128})?$")
_LOCAL_TIME = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


class DigestSettings(BaseModel):
    """The daily digest: when (local ``HH:MM`` in ``SOLOOPS_TIMEZONE``) and to whom.

    ``to`` lists the operator's home conversations as ``platform:chat_id`` (Telegram
    also ``telegram:<chat>:<topic>``); empty means each running platform's first
    operator's private chat, and the console when it runs. Scheduled reminders and
    inbound-hook reports go to the same homes.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True  # false: no daily digest (/digest and /today still answer)
    at: str = "08:00"
    to: list[str] = Field(default_factory=list)

    @field_validator("at")
    @classmethod
    def _local_time(cls, value: str) -> str:
        match = _LOCAL_TIME.match(value.strip())
        if match is None:
            raise ValueError("must be a local time HH:MM, e.g. 08:00 or 18:30")
        return f"{int(match[1]):02d}:{match[2]}"

    @field_validator("to")
    @classmethod
    def _targets(cls, value: list[str]) -> list[str]:
        for target in value:
            if not _HOME_TARGET.match(target):
                raise ValueError(
                    f"{target!r} is not platform:chat_id (e.g. telegram:12345, slack:D0123,"
                    " telegram:-100123:7 for a topic, console:local)"
                )
        return value


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
    # Under this similarity no intent fits: the router says what it can do instead.
    router_floor: float = Field(default=0.4, ge=0, le=1)
    # Recall lists nothing less similar than this ("nothing relevant" is an answer).
    recall_min_score: float = Field(default=0.25, ge=-1, le=1)


_DURATION = re.compile(r"^(?:\d+[smhdw])+$")


class InvoiceSettings(BaseModel):
    """Who issues invoices, and when overdue ones get payment reminders.

    Only ``seller_name`` is needed to invoice; :meth:`problem` says so in chat.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    seller_name: str = Field(default="", max_length=200)
    seller_address: str = Field(default="", max_length=1000)
    tax_id: str = Field(default="", max_length=100)
    payment_details: str = Field(default="", max_length=1000)
    payment_terms_days: int = Field(default=14, ge=0, le=365)
    reminder_days: list[int] = Field(default_factory=lambda: [3, 10, 20])
    locale: str = Field(default="en", min_length=2, max_length=20)

    @field_validator("reminder_days")
    @classmethod
    def _increasing_days(cls, value: list[int]) -> list[int]:
        if not value or any(day < 1 for day in value) or value != sorted(set(value)):
            raise ValueError(
                "reminder_days must be increasing whole days after the due date, e.g. [3, 10, 20]"
            )
        return value

    def problem(self) -> str | None:
        """What must be set before invoicing, or None when ready."""
        if not self.seller_name.strip():
            return (
                f"Invoices need your business name: set {ENV_PREFIX}INVOICES__SELLER_NAME "
                "(or seller_name under [invoices] in your TOML file), then try again."
            )
        return None


class FollowupSettings(BaseModel):
    """When a new lead gets its follow-up email drafted."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    after: str = "2d"

    @field_validator("after")
    @classmethod
    def _duration(cls, value: str) -> str:
        compact = value.replace(" ", "").lower()
        try:
            if _DURATION.match(compact):  # the compact form only: no "2 days" here
                parse_duration(compact)
                return compact
        except DurationError:
            pass  # zero
        raise ValueError("must be a duration such as 2d, 36h, 1d12h or 20s")

    @property
    def delay(self) -> timedelta:
        """``after`` as a timedelta."""
        return parse_duration(self.after)


EMAIL_DEFAULT_PORTS = {"none": 25, "starttls": 587, "tls": 465}


def _empty_is_none(value: Any) -> Any:
    return None if value == "" else value


class EmailSettings(BaseModel):
    """Email out over SMTP. Configured when ``host`` and ``from_address`` are set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(default="", max_length=253)
    port: int | None = Field(default=None, ge=1, le=65535)  # None: by security
    username: str | None = None
    password: SecretStr | None = None
    from_address: str = Field(default="", max_length=320)
    security: Literal["none", "starttls", "tls"] = "starttls"
    timeout_s: float = Field(default=30.0, gt=0, le=600)

    @field_validator("port", "username", "password", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return _empty_is_none(value)

    @property
    def configured(self) -> bool:
        """Whether email can be sent: a server and a sender address are set."""
        return bool(self.host.strip() and self.from_address.strip())

    @property
    def effective_port(self) -> int:
        """``port``, or the usual one for ``security`` (25, 587 or 465)."""
        return self.port if self.port is not None else EMAIL_DEFAULT_PORTS[self.security]


class _ServerSettings(BaseModel):
    """An OpenAI-compatible server: its API root, model, key and timeout."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = ""
    model: str = Field(default="", max_length=200)
    api_key: SecretStr | None = None  # local servers (Ollama, llama.cpp) need none
    timeout_s: float = Field(default=60.0, gt=0, le=3600)

    @field_validator("api_key", mode="before")
    @classmethod
    def _empty_key_is_unset(cls, value: Any) -> Any:
        return _empty_is_none(value)

    @field_validator("base_url")
    @classmethod
    def _base_url_is_http(cls, value: str) -> str:
        return _http_url(value, "base_url").rstrip("/") if value else value


class LlmSettings(_ServerSettings):
    """A language model on any OpenAI-compatible server. Configured with base_url and model."""

    price_input_per_mtok: Decimal = Field(default=Decimal(0), ge=0)
    price_output_per_mtok: Decimal = Field(default=Decimal(0), ge=0)

    @property
    def configured(self) -> bool:
        """Whether a model is set up: both ``base_url`` and ``model``."""
        return bool(self.base_url and self.model.strip())


class TranscribeSettings(_ServerSettings):
    """Speech to text on any OpenAI-compatible ``/audio/transcriptions`` server."""

    model: str = Field(default="whisper-1", min_length=1, max_length=200)
    timeout_s: float = Field(default=120.0, gt=0, le=3600)

    @property
    def configured(self) -> bool:
        """Whether voice notes can be transcribed: ``base_url`` is set."""
        return bool(self.base_url)


class RetentionSettings(BaseModel):
    """How long delivered reply bodies, inbound message texts and finished task bodies
    are kept.

    After ``days`` days a delivered reply's body, a received message's text and the
    intent of a task that succeeded or was cancelled are cleared; the rows (who, where,
    when, delivery state) and the event log are kept forever. 0 keeps everything. Runs
    at start and then every ``interval_s``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    days: int = Field(default=90, ge=0)
    interval_s: float = Field(default=86_400.0, gt=0)


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
    actions: ActionSettings = ActionSettings()
    breaker: BreakerSettings = BreakerSettings()
    supervisor: SupervisorSettings = SupervisorSettings()
    budgets: dict[str, BudgetSettings] = Field(
        default_factory=lambda: {"default": BudgetSettings()}
    )
    prices: dict[str, ModelPrice] = Field(default_factory=dict)

    hooks: dict[str, HookSettings] = Field(default_factory=dict)
    # Extra feature modules to load at start (each defines FEATURE), e.g. ["acme.invoices"].
    features: list[str] = Field(default_factory=list)
    inbound: dict[str, InboundHookSettings] = Field(default_factory=dict)

    telegram: TelegramSettings = TelegramSettings()

    slack: SlackSettings = SlackSettings()
    http: HttpSettings = HttpSettings()
    memory: MemorySettings = MemorySettings()
    invoices: InvoiceSettings = InvoiceSettings()
    followups: FollowupSettings = FollowupSettings()
    email: EmailSettings = EmailSettings()
    llm: LlmSettings = LlmSettings()
    transcribe: TranscribeSettings = TranscribeSettings()
    digest: DigestSettings = DigestSettings()
    retention: RetentionSettings = RetentionSettings()

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

    def budget_for(self, agent: str) -> BudgetSettings:
        """The agent's own budget, else the default one."""
        return self.budgets.get(agent) or self.budgets.get("default") or BudgetSettings()

    @field_validator("hooks", "inbound")
    @classmethod
    def _hook_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if not HOOK_NAME.match(name):
                raise ValueError(
                    f"hook name {name!r} must start with a lowercase letter and hold only "
                    "lowercase letters, digits, '-' and '_' (32 characters at most)"
                )
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
    def files_dir(self) -> Path:
        """Files replies carry (charts, invoice PDFs), kept until delivered and after."""
        return self.data_dir / "files"

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
            sources.append(NestedSecretsSource(settings_cls, Path(secrets_dir)))
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


class NestedSecretsSource(PydanticBaseSettingsSource):
    """One file per setting in a directory, nested names joined with ``__``.

    ``telegram__token`` holds ``telegram.token``; ``hooks__crm__secret`` holds
    ``hooks.crm.secret``. (pydantic-settings' own secrets source only reads top-level
    names.) Names are matched case-insensitively; an optional ``soloops_`` prefix, as
    the environment variables have, is ignored. Values are stripped of the trailing
    newline editors add.
    """

    def __init__(self, settings_cls: type[BaseSettings], directory: Path) -> None:
        super().__init__(settings_cls)
        self._directory = directory

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # everything is produced by __call__

    def __call__(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for path in sorted(self._directory.iterdir()):
            if not path.is_file() or path.name.startswith("."):
                continue
            name = path.name.lower().removeprefix(ENV_PREFIX.lower())
            parts = [part for part in name.split("__") if part]
            if not parts:
                continue
            node = data
            for part in parts[:-1]:
                child = node.setdefault(part, {})
                if not isinstance(child, dict):
                    break
                node = child
            else:
                node[parts[-1]] = path.read_text(encoding="utf-8").rstrip("\r\n")
        return data


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
    except SettingsError as exc:  # an environment variable that should hold JSON
        raise ConfigError(
            f"Could not read the settings: {exc}. Variables holding a list must be JSON, "
            f"e.g. {ENV_PREFIX}TELEGRAM__OPERATORS='[12345]'."
        ) from None
    except (ValueError, OSError) as exc:  # a malformed TOML file
        raise ConfigError(f"Could not read the settings: {exc}") from None


# A rejected value under one of these names is never echoed: it may be a real secret.
_SECRET_NAME = re.compile(r"secret|token|password|api_?key", re.IGNORECASE)


def _shown_value(path: list[str], given: Any, error_type: str) -> str:
    """The rejected value, quoted, when it is safe to echo; else nothing.

    Never echoed: the value of an unknown setting (a misspelled secret is still a
    secret: ``SOLOOPS_TELEGRAM__TOKN``), of any setting with a secret-looking name on
    its path, and a URL's query, fragment and user info (people put tokens there).
    """
    if error_type == "extra_forbidden" or given is None or isinstance(given, dict | list):
        return ""
    if any(_SECRET_NAME.search(part) for part in path):
        return ""
    text = str(given)
    if "://" in text or "?" in text or "@" in text:
        try:
            parts = urlsplit(text)
            host = parts.hostname or ""
        except ValueError:
            return ""
        if not parts.scheme or not host:
            return ""
        text = f"{parts.scheme}://{host}{parts.path}" + ("?…" if parts.query else "")
    return f" (got {text[:60]!r})"


def _explain(exc: ValidationError) -> str:
    lines = ["Invalid settings:"]
    for error in exc.errors():
        path = [str(part) for part in error["loc"]]
        dotted = ".".join(path)
        env_name = ENV_PREFIX + "__".join(part.upper() for part in path)
        shown = _shown_value(path, error.get("input"), error["type"])
        if error["type"] == "extra_forbidden":
            lines.append(
                f"- '{dotted}' is not a known setting{shown}: remove it from your TOML file "
                f"or unset {env_name}."
            )
        elif error["type"] == "value_error" and ENV_PREFIX in error["msg"]:
            # The validator's message already names the variable to set.
            lines.append(f"- '{dotted}': {error['msg'].removeprefix('Value error, ')}.")
        else:
            lines.append(
                f"- '{dotted}': {error['msg']}{shown}. Fix it in your TOML file "
                f"({ENV_PREFIX}CONFIG) or set {env_name}."
            )
    return "\n".join(lines)
