"""A producer process for the multi-process tests: ``python -m tests.client.producer MODE ...``.

``flush URL KEY SPOOL``: open a client on the spool, flush everything, print how many went.
``stream URL FILE``: send FILE to URL and print the peak RSS in KiB (``ru_maxrss``).
"""

from __future__ import annotations

import resource
import sys

from relay_client import Backoff, RelayClient, dm


def main(argv: list[str]) -> None:
    """Run one mode and write its answer on stdout."""
    mode = argv[0]
    if mode == "flush":
        url, key, spool = argv[1:4]
        with RelayClient(url, key, spool=spool, flush_interval=3600, backoff=Backoff(base=0.05, cap=0.2)) as relay:
            relay.flush(120)
            stats = relay.stats()
        # flush() and the flusher thread that opening started both send: count what this process handed over
        sys.stdout.write(f"{stats.sent if stats else 0}\n")
    elif mode == "stream":
        url, path = argv[1:3]
        with RelayClient(url, "k", max_retries=0) as relay:
            receipt = relay.send({"title": "big", "route": [dm(1)]}, files=[path])
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        sys.stdout.write(f"{receipt.id} {peak}\n")


if __name__ == "__main__":
    main(sys.argv[1:])
