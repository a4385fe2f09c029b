"""The store: the only package that talks to the database (see ``design/STORE.md``).

Today it holds the pieces the API and the delivery engine share: the store's exceptions and the
one place driver errors are translated (``store.errors``), worker presence for fast lease takeover
(``store.presence``) and PostgreSQL ``LISTEN/NOTIFY`` (``store.notify``).
"""
