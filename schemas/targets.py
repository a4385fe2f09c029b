"""A destination as the store keeps it, and the secret-free ways it is shown.

``app.destinations`` validates a producer's route entry into a :class:`Target`; the store keeps
its ``key`` and ``stored`` dict; the API, the admin page and Discord pickup show it through
:func:`public_destination` and :func:`destination_label`, which never reveal a token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.tables import DEFAULT_TENANT

MASK = "••••"
"""What every secret looks like when it leaves the relay."""


@dataclass(frozen=True)
class Target:
    """A validated destination ready to store: key, kind, masked label and the stored target dict."""

    key: str
    kind: str
    label: str
    stored: dict[str, Any]
    tenant: str = DEFAULT_TENANT

    def of_tenant(self, tenant: str) -> Target:
        """This destination as ``tenant``'s (a route typed on the admin page belongs to its result's tenant)."""
        if tenant == self.tenant:
            return self
        return Target(key=tenant_key(tenant, public_key(self.key)), kind=self.kind, label=self.label,
                      stored=self.stored, tenant=tenant)


def tenant_key(tenant: str, key: str) -> str:
    """The stored key of destination ``key`` (``webhook:<id>`` …) as seen by ``tenant``.

    Destinations are per tenant, so one tenant re-enabling or filtering by a webhook never touches
    another tenant's record of it. The default tenant keeps the bare key (rows from before tenants).
    """
    return key if tenant == DEFAULT_TENANT else f"{tenant}/{key}"


def public_key(key: str) -> str:
    """The key a tenant sees and sends back: the stored key without its tenant prefix."""
    return key.rpartition("/")[2]


def mask_webhook(webhook_id: str) -> str:
    """The only form of a webhook URL that leaves the relay."""
    return f"https://discord.com/api/webhooks/{webhook_id}/{MASK}"


def public_destination(kind: str, stored: dict[str, Any]) -> dict[str, Any]:
    """A stored target as API responses show it: every secret masked."""
    if kind == "webhook":
        out: dict[str, Any] = {"type": "webhook", "url": mask_webhook(stored["webhook_id"])}
        for name in ("thread_id", "thread_name", "applied_tags"):
            if stored.get(name):
                out[name] = stored[name]
    elif kind == "interaction":
        out = {"type": "interaction", "application_id": stored["application_id"], "token": MASK,
               "created_at": stored["created_at"]}
        if stored.get("user_id"):
            out["user_id"] = stored["user_id"]
    else:
        out = {"type": "dm", "user_id": stored["user_id"]}
    if stored.get("silent"):
        out["silent"] = True
    return out


def destination_label(kind: str, stored: dict[str, Any]) -> str:
    """A one-line, secret-free description of a stored target (stored with the destination, shown by
    the admin page)."""
    public = public_destination(kind, stored)
    if kind == "webhook":
        thread = f" (thread {public['thread_id']})" if public.get("thread_id") else ""
        if public.get("thread_name"):
            thread = f" (forum post “{public['thread_name']}”)"
        return f"{public['url']}{thread}"
    if kind == "interaction":
        return f"interaction follow-up (application {public['application_id']})"
    return f"DM to user {public['user_id']}"
