"""The ``soloops`` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import signal
import sys
from collections.abc import Coroutine, Sequence
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bot.console import ConsoleSender, ConsoleSession
from bot.doctor import run_checks
from bot.frontends import FrontEnd, configured_front_ends
from bot.home import HomeBusyError, HomeLock
from bot.logs import configure_logging
from bot.readers import print_digest, print_events
from bot.runtime import open_runtime
from config import ConfigError, Settings, load_settings
from memory.backup import BackupError, backup_database
from memory.errors import CorruptDatabaseError, HistoryLostError
from memory.redact import Redactor

log = logging.getLogger("soloops")

_DURATION = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, now: datetime) -> datetime:
    """``30m``, ``24h``, ``7d``, ``2w`` ago, or an ISO date/time (UTC if no zone)."""
    match = _DURATION.match(text.strip().lower())
    if match:
        return now - timedelta(**{_UNITS[match[2]]: int(match[1])})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time: use 30m, 24h, 7d or an ISO time like 2026-11-01T09:00"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="soloops", description="An agent OS for one-person companies."
    )
    parser.add_argument("--version", action="version", version=f"soloops {version('soloops')}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("run", help="start every configured front end (the console when none is)")
    sub.add_parser("chat", help="chat with soloops in this terminal")
    events = sub.add_parser("events", help="print the event log")
    events.add_argument("--since", help="only events newer than this: 30m, 24h, 7d or an ISO time")
    events.add_argument("--kind", help="only this kind, or a dotted prefix: task, task.failed")
    events.add_argument("--limit", type=int, default=None, help="only the newest N")
    events.add_argument("--json", action="store_true", help="one JSON object per line")
    events.add_argument("--subject", help="only events about this subject, e.g. task:12")
    events.add_argument(
        "--follow", action="store_true", help="keep printing new events (until Ctrl-C)"
    )
    digest = sub.add_parser("digest", help="print today's digest (read only, beside a running one)")
    digest.add_argument("--print", action="store_true", help="print the text and the chart path")
    sub.add_parser("doctor", help="check settings, data directory, database and model")
    export = sub.add_parser("export", help="write every table as JSON Lines, with a manifest")
    export.add_argument("dir", help="an empty directory to write into")
    export.add_argument("--force", action="store_true", help="write into a non-empty directory")
    sub.add_parser("verify", help="check the event chain and derived state against it")
    backup = sub.add_parser(
        "backup", help="copy the database (safe while soloops runs) and its chain anchor"
    )
    backup.add_argument("file", help="where to write the copy, e.g. ~/backups/soloops-1.db")
    backup.add_argument("--force", action="store_true", help="replace the file if it exists")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command = args.command or "run"
    # Everything soloops creates (database, WAL, logs, index, anchor) is the owner's only.
    os.umask(0o077)
    if command == "doctor":
        return _doctor()
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"soloops: {exc}", file=sys.stderr)
        return 2
    if command == "events":
        now = datetime.now(UTC)
        try:
            since = parse_since(args.since, now) if args.since else None
        except argparse.ArgumentTypeError as exc:
            parser.error(str(exc))
        if args.limit is not None and args.limit < 1:
            parser.error("--limit must be at least 1")
        return _run_reader(
            print_events(
                settings,
                since=since,
                kind=args.kind,
                subject=args.subject,
                limit=args.limit,
                as_json=args.json,
                follow=args.follow,
            )
        )
    if command == "digest":
        if not args.print:
            parser.error("use soloops digest --print (in chat, /digest sends it)")
        return _run_reader(print_digest(settings))
    if command == "export":
        from bot.export import run_export  # imported here: other commands never need it

        return run_export(settings, args.dir, force=args.force)
    if command == "verify":
        from bot.verify import run_verify  # imports faiss when there is an index

        return run_verify(settings)
    if command == "backup":
        return _backup(settings, args.file, force=args.force)
    # One process per home: take the lock before anything is opened, so a second
    # instance changes nothing (no requeue, no outbox drain).
    lock = HomeLock(settings.data_dir)
    try:
        lock.acquire()
    except HomeBusyError as exc:
        print(f"soloops: {exc}", file=sys.stderr)
        return 3
    try:
        return _start(settings, command)
    except (CorruptDatabaseError, HistoryLostError) as exc:
        print(f"soloops: refusing to start: {exc}", file=sys.stderr)
        return 4
    finally:
        lock.release()


def _start(settings: Settings, command: str) -> int:
    configure_logging(
        settings.log_path, settings.log_level, Redactor(settings.secret_values()), to_stderr=False
    )
    if command == "run":
        front_ends = configured_front_ends(settings)
        if front_ends:
            configure_logging(
                settings.log_path,
                settings.log_level,
                Redactor(settings.secret_values()),
                to_stderr=True,
            )
            try:
                return asyncio.run(_serve(settings, front_ends))
            except ConfigError as exc:  # found at start: a refused token, a busy port
                print(f"soloops: {exc}", file=sys.stderr)
                return 2
    try:
        return asyncio.run(_chat(settings, mode=command))
    except ConfigError as exc:  # found at start: features wired wrongly
        print(f"soloops: {exc}", file=sys.stderr)
        return 2


async def _serve(settings: Settings, front_ends: list[FrontEnd]) -> int:
    """Run the platform front ends until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with open_runtime(
        settings,
        [front_end.sender for front_end in front_ends],
        operators={front_end.platform: front_end.operators for front_end in front_ends},
    ) as runtime:
        started: list[FrontEnd] = []
        try:
            for front_end in front_ends:
                await front_end.start(runtime)
                started.append(front_end)
                log.info("%s front end started", front_end.platform)
            await stop.wait()
        finally:
            for front_end in reversed(started):
                await front_end.stop()
    return 0


async def _chat(settings: Settings, *, mode: str) -> int:
    interactive = sys.stdin.isatty()
    session = ConsoleSession(sys.stdin.buffer, sys.stdout, interactive=interactive)
    sender = ConsoleSender(sys.stdout, interactive=interactive)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with open_runtime(settings, [sender], mode=mode) as runtime:
        session.banner(str(settings.data_dir))
        while not stop.is_set():
            reader = asyncio.ensure_future(session.read_line())
            stopper = asyncio.ensure_future(stop.wait())
            done, _ = await asyncio.wait({reader, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if reader not in done:
                reader.cancel()  # the thread blocked in readline ends with the process
                break
            line = reader.result()
            if line is None:
                break
            await runtime.gateway.handle(session.inbound(line))
            await runtime.settle()
        if interactive:
            print()
    return 0


def _run_reader(work: Coroutine[Any, Any, int]) -> int:
    try:
        return asyncio.run(work)
    except KeyboardInterrupt:  # Ctrl-C before the signal handlers were set
        return 0


def _backup(settings: Settings, file: str, *, force: bool) -> int:
    try:
        result = backup_database(settings.database_path, Path(file), datetime.now(UTC), force=force)
    except (BackupError, CorruptDatabaseError) as exc:
        print(f"soloops: {exc}", file=sys.stderr)
        return 1
    print(
        f"Backed up {settings.database_path} to {result.path} ({result.size:,} bytes,"
        f" {result.events} events); its chain anchor is {result.anchor_path}."
    )
    return 0


def _doctor() -> int:
    checks = asyncio.run(run_checks())
    for check in checks:
        print(check.render())
    failed = [c for c in checks if c.level == "fail"]
    print("\nAll good." if not failed else f"\n{len(failed)} problem(s) to fix.")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
