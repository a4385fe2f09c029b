"""The store: the only package that talks to the database.

Every query of the relay is here, next to the table it touches. ``store.session.Database`` owns
the engine and is the one session base: each session is one transaction, and driver errors that
mean "unreachable" leave it as ``store.errors.StoreUnavailable`` for the API and the workers alike.
Every store class (``store.session.Store``) is built once in ``app.runtime.Runtime`` and injected;
the delivery engine sees them only through the Protocols of ``delivery.ports``.

Imports: ``schemas`` only (the tables, the value types, the state machine); never ``app`` or
``delivery`` (checked by import-linter in ``make test``).
"""
