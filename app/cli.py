"""The ``relay`` command: serve, worker, migrate, keys, discord.

Output meant for people goes to stderr through logging; the one value a script captures (a new
key) is written alone on the last line of stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
from collections.abc import Iterator

import uvicorn
from pydantic import ValidationError

from app.logs import configure_logging
from app.runtime import Runtime
from app.settings import Settings
from schemas.tables import DEFAULT_TENANT
from store.engine import SchemaOutdated, safe_url
from store.errors import StoreUnavailable
from store.keys import check_tenant

log = logging.getLogger("relay.cli")


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    """Bring the store up to date, make sure a producer key exists, and run the API (and workers)."""
    from app.admin import ensure_admin_token
    from app.main import create_app

    runtime = Runtime.build(settings)
    runtime.db.ensure_schema()
    if runtime.keys.count_active() == 0:
        info, clear = runtime.keys.create(name="first-start")
        _out(f"No producer key existed; created {info.id}. Shown once, store it now:")
        _out(f"  {clear}")
    admin_token = ensure_admin_token(runtime)
    if admin_token is not None:
        _out("No admin credential existed; generated one for /admin. Shown once, store it now:")
        _out(f"  {admin_token}")
    base = f"http://{'127.0.0.1' if args.host in ('0.0.0.0', '::') else args.host}:{args.port}"
    _out(f"result-relay listening on {base}  (API docs: {base}/docs, store: {safe_url(settings.database_url)})")
    app = create_app(runtime=runtime)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_config=None, access_log=args.access_log,
                            timeout_graceful_shutdown=int(settings.shutdown_grace),
                            **settings.proxy_options())  # type: ignore[arg-type]
    server = DrainingServer(config)
    server.run()
    runtime.close()
    return 0 if server.started else 1


class DrainingServer(uvicorn.Server):
    """uvicorn's server, minus its habit of re-raising SIGTERM after a clean drain (exit status -15).

    A drained relay exits 0: Kubernetes and systemd read anything else as a crash.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """SIGINT/SIGTERM ask for a graceful exit (a second one forces it); nothing is re-raised."""
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def cmd_migrate(settings: Settings, _: argparse.Namespace) -> int:
    """Apply every pending migration."""
    runtime = Runtime.build(settings)
    runtime.db.migrate()
    log.info("schema is up to date (%s)", safe_url(settings.database_url))
    runtime.close()
    return 0


def cmd_keys(settings: Settings, args: argparse.Namespace) -> int:
    """Create, list or revoke producer keys."""
    runtime = Runtime.build(settings)
    try:
        runtime.db.ensure_schema()
        if args.keys_cmd == "create":
            info, clear = runtime.keys.create(name=args.name, tenant=args.tenant)
            sys.stderr.write(f"created producer key {info.id} ({info.name or 'unnamed'}) of tenant {info.tenant}; "
                             "it is shown once:\n")
            _out(clear)
        elif args.keys_cmd == "list":
            for k in runtime.keys.list():
                state = f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "active"
                _out(f"{k.id}\t{k.tenant}\t{k.name}\t{k.created_at:%Y-%m-%d %H:%M}\t{state}")
        else:
            if not runtime.keys.revoke(args.id):
                log.error("no active key %s", args.id)
                return 1
            _out(f"revoked {args.id}")
        return 0
    finally:
        runtime.close()


def cmd_discord(settings: Settings, args: argparse.Namespace) -> int:
    """``relay discord register`` overwrites the application's commands; ``check`` shows the configuration."""
    from app.interactions.commands import RegistrationFailed, describe_configuration, register

    if args.discord_cmd == "check":
        rows = describe_configuration(settings)
        for name, text, fine in rows:
            verdict = "ok" if fine else "missing" if text.startswith("not set") else "invalid"
            _out(f"{verdict}\t{name}\t{text}")
        ready = all(fine for name, _, fine in rows if name != "RELAY_DISCORD_BOT_TOKEN")
        _out("the interactions endpoint is " + ("on: POST /discord/interactions" if ready else
                                                 "off: set the missing settings above"))
        return 0 if ready else 1
    try:
        registered = register(settings, guild_id=args.guild)
    except RegistrationFailed as exc:
        log.error("registering the commands failed: %s", exc)
        return 1
    where = f"guild {args.guild}" if args.guild else "every guild and DM (global commands take up to an hour to show)"
    for command in registered:
        subs = [o.get("name") for o in command.get("options") or [] if o.get("type") in (1, 2)]
        _out(f"registered /{command.get('name')} ({', '.join(map(str, subs)) or 'no subcommands'}) "
             f"id {command.get('id')} in {where}")
    return 0


def _snowflake(value: str) -> str:
    if not value.isdigit() or len(value) > 20:
        raise argparse.ArgumentTypeError("a guild id is a Discord snowflake: digits only")
    return value


def _tenant(value: str) -> str:
    try:
        return check_tenant(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(prog="relay", description="result-relay: workflow results to Discord")
    sub = parser.add_subparsers(dest="cmd", required=True)
    serve = sub.add_parser("serve", help="run the HTTP API and the delivery workers")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--no-access-log", dest="access_log", action="store_false")
    serve.set_defaults(func=cmd_serve)
    worker = sub.add_parser("worker", help="run delivery workers only (scale out)")
    worker.set_defaults(func=_cmd_worker)
    sub.add_parser("migrate", help="apply database migrations").set_defaults(func=cmd_migrate)
    keys = sub.add_parser("keys", help="manage producer keys")
    keys_sub = keys.add_subparsers(dest="keys_cmd", required=True)
    create = keys_sub.add_parser("create", help="create a key; printed alone on the last line")
    create.add_argument("--name", default="")
    create.add_argument("--tenant", type=_tenant, default=DEFAULT_TENANT,
                        help="the tenant whose results this key reads and writes (default: default)")
    keys_sub.add_parser("list", help="list keys")
    revoke = keys_sub.add_parser("revoke", help="revoke a key")
    revoke.add_argument("id")
    keys.set_defaults(func=cmd_keys)
    discord = sub.add_parser("discord", help="the /results command of the Discord application")
    discord_sub = discord.add_subparsers(dest="discord_cmd", required=True)
    reg = discord_sub.add_parser("register", help="overwrite the application's commands with /results")
    reg.add_argument("--guild", type=_snowflake, default=None,
                     help="register in this guild only (shows at once; global commands take a while)")
    discord_sub.add_parser("check", help="print what is configured and whether the public key parses")
    discord.set_defaults(func=cmd_discord)
    return parser


def _cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    from app.workers import run_worker_process

    return run_worker_process(settings)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``relay`` console script."""
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:  # a bad RELAY_* value: say which, one line each, without a traceback
        for error in exc.errors():
            name = "RELAY_" + str(error["loc"][0]).upper() if error["loc"] else "relay settings"
            where = "".join(f"[{part}]" for part in error["loc"][1:])
            sys.stderr.write(f"relay: {name}{where}: {error['msg'].removeprefix('Value error, ')}\n")
        return 2
    configure_logging(settings.log_level, settings.log_format)
    try:
        return int(args.func(settings, args))
    except SchemaOutdated as exc:  # serve, worker and keys all refuse an old PostgreSQL schema alike
        log.error("%s", exc)
        return 2
    except StoreUnavailable as exc:
        log.error("the store is unreachable: %s", exc)
        return 3


if __name__ == "__main__":
    sys.exit(main())
