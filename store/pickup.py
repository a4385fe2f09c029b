"""What a Discord user may fetch with ``/results``: the store's queries, ownership enforced in SQL.

A result belongs to the Discord users it was meant for (``result_viewers``: its DM users, the
users of its interactions, its ``discord_user_ids``). A member with the Manage Server permission
in a guild also sees the results routed to that guild's channels (the ``guild_id`` the relay
learnt for a webhook destination). And an application sees only the tenants mapped to it. Every
query here takes the ``Viewer`` and applies all three, so no caller can forget one: a result the
viewer may not see answers exactly like one that does not exist.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, exists, or_, select
from sqlmodel import col

from schemas.messages import RenderInput
from schemas.tables import Attachment, Delivery, Destination, Result, ResultViewer
from store.deliveries import render_input
from store.errors import NotFound
from store.results import result_views
from store.session import Database, Store
from store.views import ResultView


@dataclass(frozen=True)
class Viewer:
    """Who is asking: the Discord user, the guild they manage (if they do), the tenants served."""

    user_id: str
    tenants: tuple[str, ...] = ()  # empty: every tenant
    managed_guild: str | None = None


@dataclass(frozen=True)
class Suggestion:
    """One autocomplete candidate."""

    result_id: str
    title: str | None
    workflow_id: str | None
    status: str


def _visible(viewer: Viewer) -> list[ColumnElement[bool]]:
    """The WHERE conditions that keep a query to what ``viewer`` may see."""
    owned: list[ColumnElement[bool]] = [exists().where(col(ResultViewer.result_id) == col(Result.id),
                                                       col(ResultViewer.user_id) == viewer.user_id)]
    if viewer.managed_guild is not None:
        owned.append(exists().where(col(Delivery.result_id) == col(Result.id),
                                    col(Destination.key) == col(Delivery.destination_key),
                                    col(Destination.guild_id) == viewer.managed_guild))
    conditions = [or_(*owned)]
    if viewer.tenants:
        conditions.append(col(Result.tenant).in_(list(viewer.tenants)))
    return conditions


def _like_prefix(prefix: str) -> str:
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


class PickupStore(Store):
    """The ``/results`` command's reads; the engine is injected through ``Database``."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)

    def page(self, viewer: Viewer, *, statuses: Sequence[str] = (), workflow_id: str | None = None,
             page: int = 0, per_page: int = 10) -> tuple[list[ResultView], bool]:
        """One page of the viewer's results, newest first, and whether another page follows."""
        query = select(Result).where(*_visible(viewer))
        if statuses:
            query = query.where(col(Result.status).in_(list(statuses)))
        if workflow_id:
            query = query.where(col(Result.workflow_id) == workflow_id)
        query = query.order_by(col(Result.created_at).desc(), col(Result.id).desc()).offset(max(0, page) * per_page)
        with self._db.session() as session:
            rows = list(session.scalars(query.limit(per_page + 1)).all())
            return result_views(session, rows[:per_page]), len(rows) > per_page

    def get(self, result_id: str, viewer: Viewer) -> ResultView:
        """One result the viewer may see; ``NotFound`` otherwise (also for another user's result)."""
        with self._db.session() as session:
            row = session.scalars(select(Result).where(col(Result.id) == result_id, *_visible(viewer))).first()
            if row is None:
                raise NotFound(result_id)
            return result_views(session, [row])[0]

    def preview(self, result_id: str, viewer: Viewer) -> tuple[ResultView, RenderInput]:
        """The result (its files listed) and what the renderer needs of it — for ``/results show``."""
        with self._db.session() as session:
            row = session.scalars(select(Result).where(col(Result.id) == result_id, *_visible(viewer))).first()
            if row is None:
                raise NotFound(result_id)
            atts = session.execute(select(col(Attachment.idx), col(Attachment.filename), col(Attachment.content_type),
                                          col(Attachment.size), col(Attachment.sha256))
                                   .where(col(Attachment.result_id) == result_id).order_by(col(Attachment.idx))).all()
            return result_views(session, [row])[0], render_input(row, atts)

    def suggest(self, viewer: Viewer, prefix: str, *, limit: int = 25) -> list[Suggestion]:
        """The viewer's results whose id or workflow id starts with ``prefix``, newest first."""
        query = select(col(Result.id), col(Result.title), col(Result.workflow_id),
                       col(Result.status)).where(*_visible(viewer))
        if prefix:
            pattern = _like_prefix(prefix)
            query = query.where(or_(col(Result.id).like(pattern, escape="\\"),
                                    col(Result.workflow_id).like(pattern, escape="\\")))
        query = query.order_by(col(Result.created_at).desc(), col(Result.id).desc()).limit(limit)
        with self._db.session() as session:
            rows = session.execute(query).all()
        return [Suggestion(result_id=r.id, title=r.title, workflow_id=r.workflow_id, status=r.status) for r in rows]

    def suggest_workflows(self, viewer: Viewer, prefix: str, *, limit: int = 25) -> list[str]:
        """Workflow ids of the viewer's results starting with ``prefix``, most recent first, each once."""
        query = select(col(Result.workflow_id), col(Result.created_at)).where(*_visible(viewer),
                                                                              col(Result.workflow_id).is_not(None))
        if prefix:
            query = query.where(col(Result.workflow_id).like(_like_prefix(prefix), escape="\\"))
        query = query.order_by(col(Result.created_at).desc()).limit(limit * 8)
        with self._db.session() as session:
            rows = session.execute(query).all()
        return list(dict.fromkeys(r.workflow_id for r in rows))[:limit]
