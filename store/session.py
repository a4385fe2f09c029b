"""The one session base of the store: every store class's transactions run through ``Database.session``.

A session is one transaction, committed on success. Driver errors that mean "the store is not
reachable" (connection refused or lost, lock or pool timeouts) leave it as ``StoreUnavailable``,
for the API (503) and the workers (back off, go on) alike; nobody outside ``store`` catches
SQLAlchemy's exceptions. Write sessions take SQLite's write lock up front (see ``store.engine``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, TypeVar, cast

from prometheus_client import Counter
from sqlalchemy import Connection, Engine, Select, Table, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlmodel import Session, SQLModel

from schemas.clock import as_utc as as_utc  # re-exported: the store's own spelling
from schemas.clock import utcnow as utcnow
from store.engine import ensure_schema, migrate, schema_revisions
from store.errors import StoreUnavailable

log = logging.getLogger("relay.store")

ROLLED_BACK_BATCHES = Counter("relay_store_batches_rolled_back_total",
                              "Batches of store calls the database rolled back (a deadlock); each call ran again alone")


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


def is_rolled_back(exc: BaseException) -> bool:
    """Whether the database chose this transaction to roll back (SQLSTATE class 40: a deadlock, a
    serialization failure): nothing is wrong with what it ran, and running it again will do."""
    cause = exc.__cause__ if isinstance(exc, StoreUnavailable) else exc
    sqlstate = getattr(getattr(cause, "orig", None), "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate.startswith("40")


def describe(exc: BaseException) -> str:
    """A one-line reason for logs and 503 bodies (the driver's message, without SQLAlchemy's noise)."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


Q = TypeVar("Q", bound=Select[Any])


@contextmanager
def translated() -> Iterator[None]:
    """Run a block of store work; driver errors that mean "unreachable" leave as ``StoreUnavailable``."""
    try:
        yield
    except sa_exc.SQLAlchemyError as exc:
        if is_unavailable(exc):
            raise StoreUnavailable(describe(exc)) from exc
        raise


class _Joined(threading.local):
    """Per thread: the connection of the ``run_together`` transaction this thread is in, if any."""

    conn: Connection | None = None


#: Write transactions one process runs at once on PostgreSQL (``Database.writers``).
POSTGRES_WRITERS = 3


class Database:
    """Owns the engine: sessions, the schema's version, and the dialect the queries adapt to."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._write_engine = engine.execution_options(sqlite_write=True)
        self.postgres = engine.dialect.name == "postgresql"
        #: How many batches of ``run_together`` may be written at once, each on its own thread and
        #: connection. SQLite has one writer: a second would only wait for its lock. PostgreSQL
        #: takes them side by side, and one thread alone spent most of its time waiting for the
        #: answer to each statement (a round trip each, about a dozen per delivered message).
        self.writers = POSTGRES_WRITERS if self.postgres else 1
        self._joined = _Joined()

    @contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        """A session in one transaction, committed on success; write sessions lock early on SQLite.

        Inside ``run_together`` the session joins that transaction: its commit is a flush, the
        batch commits.
        """
        joined = self._joined.conn
        bind = joined if joined is not None else (self._write_engine if write else self.engine)
        with translated(), Session(bind, expire_on_commit=False, join_transaction_mode="rollback_only") as session:
            yield session
            session.commit()

    @contextmanager
    def connection(self, *, write: bool = False) -> Iterator[Connection]:
        """A Core connection in one transaction, committed on success, for statements without ORM objects.

        The hot paths (claims, every delivery step, the channel pacer) run here: no identity map,
        no unit of work, no autoflush, which were most of their CPU through a ``Session``. Inside
        ``run_together`` it is that batch's connection, in its transaction.
        """
        joined = self._joined.conn
        if joined is not None:
            with translated():
                yield joined
            return
        with translated(), (self._write_engine if write else self.engine).begin() as conn:
            yield conn

    def run_together(self, calls: Sequence[Callable[[], object]]) -> list[object]:
        """Run store calls in one write transaction: each returns (or raises) only after its commit.

        Group commit for one writer thread (the delivery worker's): every call of the batch joins
        one transaction, so BEGIN, COMMIT (PostgreSQL's WAL flush) and the pages the calls share
        are paid once per batch instead of once per call, and no call sees its outcome before it
        is durable. On PostgreSQL the row locks a call takes are held until the batch commits; a
        deadlock with another replica's batch fails the batch as ``StoreUnavailable`` (retried).

        Returns one outcome per call, its value or the exception it raised. A call that raises
        rolls the whole batch back, and then each call runs again in a transaction of its own, so
        the others commit and the failing one fails alone, leaving nothing (the calls must be
        store work only, safe to run again after a rollback). A batch the database rolled back
        to break a deadlock with another batch (``writers`` of this process, or another replica)
        runs again the same way: alone, each call holds only its own locks. When the store itself
        is away, every call gets that ``StoreUnavailable`` and none runs again.
        """
        if len(calls) == 1:
            return [self._alone(calls[0])]
        try:
            with self._joined_transaction():
                outcomes = [call() for call in calls]
            return outcomes
        except StoreUnavailable as exc:
            if not is_rolled_back(exc):
                return [exc] * len(calls)
            ROLLED_BACK_BATCHES.inc()
            log.warning("a batch of %d store calls was rolled back by the database (%s); each runs again alone",
                        len(calls), exc)
            return [self._alone(call) for call in calls]
        except Exception:  # noqa: BLE001 - one call's error: the batch is rolled back, each call runs alone
            return [self._alone(call) for call in calls]

    def _alone(self, call: Callable[[], object], *, tries: int = 3) -> object:
        """``call()`` in a transaction of its own: its value, or the exception it raised (nothing of it kept).

        A deadlock victim is run again, up to ``tries`` times in all, before its caller hears of it.
        """
        for attempt in range(1, tries + 1):
            try:
                with self._joined_transaction():
                    return call()
            except StoreUnavailable as exc:
                if attempt == tries or not is_rolled_back(exc):
                    return exc
            except Exception as exc:  # noqa: BLE001 - handed to the caller of this call
                return exc
        raise AssertionError("unreachable")

    @contextmanager
    def _joined_transaction(self) -> Iterator[None]:
        """One write transaction that every ``session``/``connection`` of this thread joins meanwhile."""
        with translated(), self._write_engine.begin() as conn:
            self._joined.conn = conn
            try:
                yield
            finally:
                self._joined.conn = None

    def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless a trivial query succeeds."""
        with self.session() as session:
            session.execute(select(1))

    def ensure_schema(self) -> None:
        """Migrate an embedded SQLite store; ``SchemaOutdated`` for a PostgreSQL one behind the code."""
        with translated():
            ensure_schema(self.engine)

    def migrate(self) -> None:
        """Bring the schema up to the newest migration (``relay migrate``)."""
        with translated():
            migrate(self.engine)

    def schema_revisions(self) -> tuple[str | None, str | None]:
        """``(current, head)``: the database's revision and the code's newest one."""
        with translated():
            return schema_revisions(self.engine)

    def dispose(self) -> None:
        """Close every pooled connection (shutdown, or after a fork)."""
        self.engine.dispose()


def table_of(model: type[SQLModel]) -> Table:
    """The Core table of a model, for multi-row INSERTs and DELETEs without ORM bookkeeping."""
    return cast(Table, model.__dict__["__table__"])


def dialect_insert(bind: Session | Connection, table: Any) -> Any:
    """An INSERT in the dialect of ``bind``'s database, for ``on_conflict_do_nothing``/``do_update``.

    PostgreSQL and SQLite spell an upsert the same way in SQLAlchemy, but through two classes.
    """
    dialect = (bind.get_bind() if isinstance(bind, Session) else bind).dialect
    return (pg_insert if dialect.name == "postgresql" else sqlite_insert)(table)


class Store:
    """Base of every store class: the injected ``Database`` and its sessions."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @property
    def _postgres(self) -> bool:
        return self._db.postgres

    def _claim_lock(self, query: Q) -> Q:
        """The lease claim's lock: candidates ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so replicas
        claiming at once take different rows; on SQLite the write transaction is exclusive already."""
        return query.with_for_update(skip_locked=True) if self._postgres else query

    def _insert(self, table: Any) -> Any:
        """An INSERT of the store's dialect, for ``on_conflict_do_nothing``/``do_update`` (both have them)."""
        return (pg_insert if self._postgres else sqlite_insert)(table)

    def _session(self, *, write: bool = False) -> AbstractContextManager[Session]:
        """One transaction of ``Database.session``."""
        return self._db.session(write=write)

    def run_together(self, calls: Sequence[Callable[[], object]]) -> list[object]:
        """Store calls of this database in one transaction (``Database.run_together``)."""
        return self._db.run_together(calls)

    @property
    def writers(self) -> int:
        """How many ``run_together`` batches may be written at once (``Database.writers``)."""
        return self._db.writers

    def _connection(self, *, write: bool = False) -> AbstractContextManager[Connection]:
        """One transaction of ``Database.connection`` (Core statements only)."""
        return self._db.connection(write=write)


class unindexed(FunctionElement[Any]):  # noqa: N801 - reads as a SQL function in a query
    """``column`` as a filter SQLite's planner must not pick an index for (``+column`` there).

    SQLite chooses an index by the shape of the WHERE clause, not by how many rows each would
    read: given ``status = ? AND next_attempt_at <= ?`` it prefers the index on those two columns
    over one that pins the destination and yields the order wanted. The unary ``+`` (a no-op on
    any value) takes the range off its menu; other databases get the column unchanged.
    """

    inherit_cache = True
    name = "unindexed"

    def __init__(self, column: Any) -> None:
        super().__init__(column)
        self.type = column.type


@compiles(unindexed)
def _unindexed(element: unindexed, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.clauses, **kw))


@compiles(unindexed, "sqlite")
def _unindexed_sqlite(element: unindexed, compiler: Any, **kw: Any) -> str:
    return "+" + str(compiler.process(element.clauses, **kw))
