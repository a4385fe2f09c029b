"""The store's exceptions: what the API and the engine catch instead of the driver's.

Exception tree::

    StoreError
     ├── StoreUnavailable      connection refused or lost, server shutting down, lock or pool timeout:
     │                         try again later (the API answers 503, loops back off and go on)
     ├── NotFound              no such record (or it was purged)
     └── IdempotencyConflict   the idempotency key was used before with a different body

Every session of every store class runs inside ``store.session.translated``, so the API and the
workers see the same exceptions and nobody outside ``store`` catches SQLAlchemy's. This module
imports no driver: the engine and the API can catch these without depending on the database.
"""

from __future__ import annotations


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


class AttachmentMissing(LookupError):
    """A planned file part has no stored bytes: bad data in one result, never worth a retry storm."""
