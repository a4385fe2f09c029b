"""The store's exceptions, and the one place that translates driver errors into them.

Exception tree::

    StoreError
     ├── StoreUnavailable      connection refused or lost, server shutting down, lock or pool timeout:
     │                         try again later (the API answers 503, loops back off and go on)
     ├── NotFound              no such record (or it was purged)
     └── IdempotencyConflict   the idempotency key was used before with a different body

Every session of every store class runs inside :func:`translated`, so the API and the workers see
the same exceptions and nobody outside ``store`` catches SQLAlchemy's.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import exc as sa_exc


class StoreError(Exception):
    """Base of the store's errors."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or is locked: the caller should retry later (503)."""


class NotFound(StoreError):
    """No such result (or it was purged)."""


class IdempotencyConflict(StoreError):
    """The idempotency key was used before with a different body."""

    def __init__(self, result_id: str) -> None:
        super().__init__(result_id)
        self.result_id = result_id


def is_unavailable(exc: BaseException) -> bool:
    """Whether a driver error means "the store is not reachable now" rather than a bug in a query.

    Operational and interface errors cover refused and dropped connections (PostgreSQL stopped,
    ``pg_terminate_backend``) and SQLite's "database is locked" past the busy timeout; a pool
    timeout and an invalidated connection are the same condition seen from the pool.
    """
    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.TimeoutError):
        return True
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    # A session whose connection died mid-transaction refuses further use until rolled back.
    return isinstance(exc, sa_exc.PendingRollbackError)


def describe(exc: BaseException) -> str:
    """A one-line reason for logs and 503 bodies (the driver's message, without SQLAlchemy's noise)."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


@contextmanager
def translated() -> Iterator[None]:
    """Run a block of store work; driver errors that mean "unreachable" leave as ``StoreUnavailable``."""
    try:
        yield
    except sa_exc.SQLAlchemyError as exc:
        if is_unavailable(exc):
            raise StoreUnavailable(describe(exc)) from exc
        raise
