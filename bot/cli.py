"""The ``soloops`` command.

Output piped into a reader that stops early (``soloops events --json | head``) ends
the command quietly with exit status 141, as a program killed by SIGPIPE reports in
a shell: the output was cut, and ``set -o pipefail`` scripts can tell. Everything the
command prints to stdout or stderr outside logging goes through the redactor.
"""

from __future__ import annotations

# First: the collector is paused while the command's modules load (see bot/startup.py).
from bot import startup

# isort: split
import argparse
import asyncio
import logging
import os
import re
import signal
import sys
import traceback
import types
from collections.abc import AsyncIterator, Coroutine, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.console import ConsoleSender, ConsoleSession
from bot.frontends import FrontEnd, configured_front_ends
from bot.home import HomeBusyError, HomeLock
from bot.logs import configure_logging
from bot.runtime import Runtime, open_runtime
from config import ConfigError, Settings, load_settings
from config.version import VERSION
from memory.embedder import wait_for_loads
from memory.errors import CorruptDatabaseError, HistoryLostError
from memory.redact import Redactor

if TYPE_CHECKING:  # aiohttp (~0.15 s to import) only when this process serves HTTP
    from bot.http import HttpServer

startup.imported()

log = logging.getLogger("soloops")

# Exit status of a command whose reader went away: 128 + SIGPIPE, as shells report.
# (bot.readers.EXIT_PIPE_CLOSED; repeated so the help text does not import the readers.)
_EXIT_PIPE_CLOSED = 128 + signal.SIGPIPE
_SECRET_ENV = re.compile(r"secret|token|passw|api_?key|secert|secrt|tokn|sign", re.IGNORECASE)

ENVIRONMENT_HELP = """\
environment:
  SOLOOPS_HOME         the data directory (database, log, index); default: the
                       platform's user data directory
  SOLOOPS_CONFIG       a TOML settings file read over the packaged defaults
  SOLOOPS_SECRETS_DIR  a directory with one file per secret (telegram__token ...)
  SOLOOPS_<SECTION>__<NAME>  any single setting, e.g. SOLOOPS_TELEGRAM__TOKEN
"""


# Named like a secret, but only where secrets are kept: its path is no secret.
_NOT_SECRET_ENV = frozenset({"SOLOOPS_SECRETS_DIR"})


def _env_secrets() -> list[str]:
    """Values of secret-looking ``SOLOOPS_*`` variables, misspelled names included.

    Used to redact what the command prints when the settings cannot be loaded (and so
    cannot say which values are secrets).
    """
    return [
        value
        for name, value in os.environ.items()
        if name.startswith("SOLOOPS_")
        and name not in _NOT_SECRET_ENV
        and _SECRET_ENV.search(name)
        and len(value) >= 4
    ]


def _redactor(settings: Settings | None = None) -> Redactor:
    secrets = _env_secrets()
    if settings is not None:
        secrets += settings.secret_values()
    return Redactor(secrets)


def _error(message: str, settings: Settings | None = None) -> None:
    """Print ``soloops: message`` to stderr, secrets redacted."""
    print(f"soloops: {_redactor(settings).text(message)}", file=sys.stderr)


def _redacted_traceback(
    kind: type[BaseException], exc: BaseException, tb: types.TracebackType | None
) -> None:
    """The last resort: a crash's traceback on stderr, secrets redacted."""
    try:
        settings: Settings | None = load_settings()
    except ConfigError:
        settings = None
    text = "".join(traceback.format_exception(kind, exc, tb))
    sys.stderr.write(_redactor(settings).text(text))


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


class _Version(argparse.Action):
    """``--version``: the one the event log and the connectors name (config/version.py)."""

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        print(f"soloops {VERSION}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="soloops", description="An agent OS for one-person companies."
    )
    parser.add_argument("--version", action=_Version, nargs=0, help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    described = argparse.RawDescriptionHelpFormatter  # keeps the epilog's layout
    sub.add_parser(
        "run",
        help="start every configured front end (the console when none is)",
        epilog=ENVIRONMENT_HELP,
        formatter_class=described,
    )
    sub.add_parser(
        "chat",
        help="chat with soloops in this terminal",
        epilog=ENVIRONMENT_HELP,
        formatter_class=described,
    )
    events = sub.add_parser(
        "events",
        help="print the event log",
        epilog=ENVIRONMENT_HELP
        + "\nexit status: 0 printed, 1 no database, 2 bad option or unknown kind,\n"
        f"  {_EXIT_PIPE_CLOSED} the reader closed the pipe (| head)\n",
        formatter_class=described,
    )
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
    doctor = sub.add_parser(
        "doctor",
        help="check settings, data directory, database, model and connectors",
        epilog=ENVIRONMENT_HELP,
        formatter_class=described,
    )
    doctor.add_argument(
        "--online", action="store_true", help="also connect to each configured connector"
    )
    export = sub.add_parser("export", help="write every table as JSON Lines, with a manifest")
    export.add_argument("dir", help="an empty directory to write into")
    export.add_argument("--force", action="store_true", help="write into a non-empty directory")
    sub.add_parser("verify", help="check the event chain and derived state against it")
    backup = sub.add_parser(
        "backup", help="copy the database (safe while soloops runs) and its chain anchor"
    )
    backup.add_argument("file", help="where to write the copy, e.g. ~/backups/soloops-1.db")
    backup.add_argument("--force", action="store_true", help="replace the file if it exists")
    manifest = sub.add_parser(
        "manifest", help="write the Slack app manifest from the feature registry"
    )
    manifest.add_argument(
        "file", nargs="?", default="slack-app-manifest.yml", help="default: %(default)s"
    )
    manifest.add_argument("--check", action="store_true", help="only say whether it is current")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    finally:
        wait_for_loads()  # a model half-loaded at exit can abort the process


# The everyday starts: they take no options, so no parser is built for them (building
# one makes ten argparse parsers and their gettext lookups, ~2-3 ms of a start).
_PLAIN_STARTS = {(): "run", ("run",): "run", ("chat",): "chat"}


def _main(argv: Sequence[str] | None) -> int:
    sys.excepthook = _redacted_traceback
    plain = _PLAIN_STARTS.get(tuple(sys.argv[1:] if argv is None else argv))
    if plain is None:
        parser = build_parser()
        args = parser.parse_args(argv)
    else:
        args = argparse.Namespace(command=plain)
    command = args.command or "run"
    # Everything soloops creates (database, WAL, logs, index, anchor) is the owner's only.
    os.umask(0o077)
    if command == "doctor":
        return _doctor(online=args.online)
    if command == "manifest":  # needs no settings: the registry alone
        from bot.manifest import run_manifest

        return run_manifest(Path(args.file), check=args.check)
    try:
        settings = load_settings()
    except ConfigError as exc:
        _error(str(exc))
        return 2
    if command in ("events", "digest"):
        from bot.readers import print_digest, print_events  # only the readers need them
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
                redact=_redactor(settings).text,
                error=lambda message: _error(message, settings),
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
    return _in_home(settings, command)


def _in_home(settings: Settings, command: str) -> int:
    """``run`` or ``chat``: hold the home's lock while the runtime runs."""
    # One process per home: take the lock before anything is opened, so a second
    # instance changes nothing (no requeue, no outbox drain).
    lock = HomeLock(settings.data_dir)
    try:
        lock.acquire()
    except HomeBusyError as exc:
        _error(str(exc), settings)
        return 3
    try:
        return _start(settings, command)
    except (CorruptDatabaseError, HistoryLostError) as exc:
        _error(f"refusing to start: {exc}", settings)
        return 4
    finally:
        lock.release()


def _start(settings: Settings, command: str) -> int:
    configure_logging(
        settings.log_path, settings.log_level, Redactor(settings.secret_values()), to_stderr=False
    )
    # One HTTP server per process, shared by everything that comes in over HTTP.
    server = _http_server(settings) if command == "run" else None
    if command == "run":
        front_ends = configured_front_ends(settings, server)
        if front_ends:
            configure_logging(
                settings.log_path,
                settings.log_level,
                Redactor(settings.secret_values()),
                to_stderr=True,
            )
            try:
                return asyncio.run(_serve(settings, front_ends, server))
            except ConfigError as exc:  # found at start: a refused token, a busy port
                _error(str(exc), settings)
                return 2
    try:
        return asyncio.run(_chat(settings, mode=command, server=server))
    except ConfigError as exc:  # found at start: features wired wrongly
        _error(str(exc), settings)
        return 2


async def _serve(
    settings: Settings, front_ends: list[FrontEnd], server: HttpServer | None = None
) -> int:
    """Run the platform front ends (and the HTTP server) until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with (
        open_runtime(
            settings,
            [front_end.sender for front_end in front_ends],
            operators={front_end.platform: front_end.operators for front_end in front_ends},
        ) as runtime,
        _http(server, runtime, front_ends),
    ):
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


def _http_server(settings: Settings) -> HttpServer | None:
    """The process's HTTP server, if anything configured wants one."""
    from bot.serve import http_wanted  # imports aiohttp: only ``soloops run`` gets here

    if not http_wanted(settings):
        return None
    from bot.http import HttpServer

    return HttpServer(settings.http)


@asynccontextmanager
async def _http(
    server: HttpServer | None, runtime: Runtime, parts: Sequence[object]
) -> AsyncIterator[None]:
    """Serve HTTP (if this process does) while the runtime is open."""
    if server is None:
        yield
        return
    from bot.serve import serve_http

    async with serve_http(server, runtime, parts):
        yield


async def _chat(settings: Settings, *, mode: str, server: HttpServer | None = None) -> int:
    interactive = sys.stdin.isatty()
    history = settings.data_dir / "console_history"  # terminal only; see bot.console
    session = ConsoleSession(sys.stdin.buffer, sys.stdout, interactive=interactive, history=history)
    sender = ConsoleSender(sys.stdout, interactive=interactive)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with (
        open_runtime(settings, [sender], mode=mode) as runtime,
        _http(server, runtime, [sender]),
    ):
        session.open()
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
        session.close()
        if interactive:
            print()
    return 0


def _run_reader(work: Coroutine[Any, Any, int]) -> int:
    try:
        return asyncio.run(work)
    except KeyboardInterrupt:  # Ctrl-C before the signal handlers were set
        return 0


def _backup(settings: Settings, file: str, *, force: bool) -> int:
    from memory.backup import BackupError, backup_database

    try:
        result = backup_database(settings.database_path, Path(file), datetime.now(UTC), force=force)
    except (BackupError, CorruptDatabaseError) as exc:
        _error(str(exc), settings)
        return 1
    print(
        f"Backed up {settings.database_path} to {result.path} ({result.size:,} bytes,"
        f" {result.events} events); its chain anchor is {result.anchor_path}."
    )
    return 0


def _doctor(*, online: bool = False) -> int:
    from bot.doctor import run_checks  # lazily: it imports faiss and numpy

    checks = asyncio.run(run_checks(online=online))
    redactor = _redactor()
    for check in checks:
        print(redactor.text(check.render()))
    failed = [c for c in checks if c.level == "fail"]
    print("\nAll good." if not failed else f"\n{len(failed)} problem(s) to fix.")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
