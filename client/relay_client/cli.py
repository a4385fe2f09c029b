"""``relay-send``: hand one result to the relay from a shell, a pipeline or a cron job.

    make report | relay-send --webhook "$HOOK" --title "Nightly" --body -

``RELAY_URL`` and ``RELAY_KEY`` come from the environment (or ``--url`` / ``--key``).

Exit codes:
    0  accepted by the relay (with ``--wait``: delivered)
    1  ``--wait``: the relay could not deliver it (undelivered) or the wait timed out
    2  bad input: wrong arguments, a missing file, or the relay refused the result (4xx)
    3  spooled: the relay was unreachable; the result is in ``--spool`` and goes on a later run
    4  unreachable: the relay could not be reached and there is no ``--spool``
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from relay_client._client import RelayClient
from relay_client._exceptions import RelayAPIError, RelayUnavailable, SpoolError, WaitTimeout
from relay_client._files import file_specs
from relay_client._models import Destination, Field, Result
from relay_client._routes import dm, webhook

ACCEPTED, UNDELIVERED, BAD_INPUT, SPOOLED, UNREACHABLE = 0, 1, 2, 3, 4


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="relay-send", description="Send one result to result-relay.",
                                epilog="exit codes: 0 accepted (delivered with --wait), 1 undelivered / wait timed "
                                       "out, 2 bad input, 3 spooled, 4 unreachable",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default=os.environ.get("RELAY_URL"), help="relay base URL (default: $RELAY_URL)")
    p.add_argument("--key", default=os.environ.get("RELAY_KEY"), help="producer API key (default: $RELAY_KEY)")
    p.add_argument("--webhook", action="append", default=[], metavar="URL", help="a channel webhook (repeatable)")
    p.add_argument("--thread", metavar="ID", help="post into this thread of the webhook's channel")
    p.add_argument("--dm", action="append", default=[], metavar="USER", help="DM this user id (repeatable)")
    p.add_argument("--title", required=True)
    p.add_argument("--summary")
    body = p.add_mutually_exclusive_group()
    body.add_argument("--body", metavar="TEXT", help="the body; '-' reads standard input")
    body.add_argument("--body-file", metavar="F", help="read the body from a file")
    p.add_argument("--field", action="append", default=[], metavar="NAME=VALUE", help="an embed field (repeatable)")
    p.add_argument("--file", action="append", default=[], metavar="F", help="attach a file (repeatable)")
    p.add_argument("--level", choices=["info", "success", "warning", "error"])
    p.add_argument("--workflow-id")
    p.add_argument("--all", action="store_true", help="deliver to every destination, not just the first that works")
    p.add_argument("--spool", metavar="PATH", help="keep the result here if the relay is unreachable")
    p.add_argument("--wait", action="store_true", help="wait until the result is delivered (or undelivered)")
    p.add_argument("--wait-timeout", type=float, default=300.0, metavar="S")
    p.add_argument("--timeout", type=float, default=30.0, metavar="S", help="per-request timeout")
    p.add_argument("--retries", type=int, default=3, help="quick retries before spooling or giving up")
    p.add_argument("--progress", choices=["auto", "on", "off"], default="auto",
                   help="upload progress bar (tqdm, installed with the [cli] extra); auto: when stderr is a terminal")
    p.add_argument("-q", "--quiet", action="store_true")
    return p


def _result(args: argparse.Namespace, stdin: Any) -> Result:
    route: list[Destination] = [webhook(url, args.thread) for url in args.webhook]
    route += [dm(user) for user in args.dm]
    if not route:
        raise ValueError("give at least one destination: --webhook URL or --dm USER")
    result = Result(title=args.title, route=route)
    if args.body == "-":
        result["body"] = stdin.read()
    elif args.body is not None:
        result["body"] = args.body
    elif args.body_file:
        with open(args.body_file, encoding="utf-8") as fh:
            result["body"] = fh.read()
    fields: list[Field] = []
    for item in args.field:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--field {item!r}: expected name=value")
        fields.append(Field(name=name, value=value))
    if fields:
        result["fields"] = fields
    for key in ("summary", "level", "workflow_id"):
        if getattr(args, key):
            result[key] = getattr(args, key)  # type: ignore[literal-required,unused-ignore]
    if args.all:
        result["mode"] = "all"
    return result


def _progress_bar(args: argparse.Namespace, total: int) -> tuple[Callable[[int], None] | None, Callable[[], None]]:
    want = args.progress == "on" or (args.progress == "auto" and sys.stderr.isatty() and not args.quiet)
    if not want or total == 0:
        return None, lambda: None
    try:
        from tqdm import tqdm
    except ImportError:
        return None, lambda: None
    bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="upload", file=sys.stderr)
    return bar.update, bar.close


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``relay-send``; returns the exit code (see the module docstring)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.ERROR if args.quiet else logging.WARNING, format="relay-send: %(message)s")

    def say(message: str) -> None:
        if not args.quiet:
            sys.stderr.write(message + "\n")

    if not args.url or not args.key:
        say("relay-send: set RELAY_URL and RELAY_KEY (or --url and --key)")
        return BAD_INPUT
    try:
        result = _result(args, sys.stdin)
        specs = file_specs(args.file)
    except (ValueError, OSError) as exc:
        say(f"relay-send: {exc}")
        return BAD_INPUT
    update, close_bar = _progress_bar(args, sum(s.size() for s in specs))
    try:
        with RelayClient(args.url, args.key, spool=args.spool, timeout=args.timeout, max_retries=args.retries,
                         flush_interval=3600) as relay:
            try:
                receipt = relay.send(result, files=args.file, progress=update)
            finally:
                close_bar()
            if receipt.spooled:
                say(f"relay unreachable: spooled in {args.spool} (key {receipt.idempotency_key})")
                return SPOOLED
            sys.stdout.write(f"{receipt.id}\n")
            if args.wait and receipt.id:
                info = relay.wait(receipt.id, args.wait_timeout)
                say(f"{receipt.id}: {info.status}")
                return ACCEPTED if info.status == "delivered" else UNDELIVERED
    except RelayAPIError as exc:
        say(f"relay-send: refused: {exc}" + (f" (field {exc.field})" if exc.field else ""))
        return BAD_INPUT
    except RelayUnavailable as exc:
        say(f"relay-send: {exc}")
        return UNREACHABLE
    except SpoolError as exc:
        say(f"relay-send: {exc}")
        return UNREACHABLE
    except WaitTimeout as exc:
        say(f"relay-send: {exc}")
        return UNDELIVERED
    return ACCEPTED


def run() -> None:
    """Console-script wrapper."""
    sys.exit(main())


if __name__ == "__main__":
    run()
