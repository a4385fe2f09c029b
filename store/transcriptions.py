"""The ``transcriptions`` table: accept, claim, heartbeat, finish (the service is ``app.transcriptions``).

The only code that touches the table: one method per operation, each one transaction, the claim
(``FOR UPDATE SKIP LOCKED`` on PostgreSQL, an IMMEDIATE write transaction on SQLite) in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path, PurePath
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlmodel import col

from schemas.tables import Result, Transcription
from schemas.targets import Target
from store.errors import NotFound, StoreError
from store.ids import new_id
from store.session import Store, as_utc, table_of, utcnow

AUDIO_CHUNK = 4 * 1024 * 1024  # the audio leaves the database in pieces, never as one huge read
_CLAIMABLE_COLUMNS = (col(Transcription.id), col(Transcription.key_id), col(Transcription.tenant),
                      col(Transcription.filename),
                      col(Transcription.attempts), col(Transcription.options_json), col(Transcription.request_json),
                      col(Transcription.duration))


class AudioMissing(StoreError):
    """A job's stored audio is gone (already deleted): the job cannot run, retrying cannot help."""


@dataclass(frozen=True)
class NewTranscription:
    """An accepted upload, validated and probed, about to be stored."""

    key_id: str
    tenant: str
    filename: str
    content_type: str
    audio: bytes
    duration: float
    options: dict[str, Any]
    request: dict[str, Any]


@dataclass(frozen=True)
class Job:
    """A claimed job: what the service needs to run it (the audio is read separately, in pieces)."""

    id: str
    key_id: str
    tenant: str
    filename: str
    attempts: int
    options: dict[str, Any]
    request: dict[str, Any]
    duration: float | None

    @property
    def idempotency_key(self) -> str:
        """The key of the one Result this job may ever create."""
        return f"transcription:{self.id}"

    def targets(self) -> list[Target]:
        """The route as validated at upload time (tokens already encrypted when a secret key is set)."""
        return [Target(key=t["key"], kind=t["kind"], label=t["label"], stored=t["stored"], tenant=self.tenant)
                for t in self.request["targets"]]

    def audio_suffix(self) -> str:
        """The upload's extension, if it is a plain one: some demuxers use it as a hint."""
        suffix = PurePath(self.filename).suffix
        return suffix if 1 < len(suffix) <= 8 and suffix[1:].isalnum() else ""


@dataclass(frozen=True)
class TranscriptionView:
    """A job as ``GET /v1/transcriptions/{id}`` shows it (no audio, no route secrets)."""

    id: str
    status: str
    filename: str
    size: int
    duration: float | None
    processed: float
    language: str | None
    result_id: str | None
    error: str | None
    attempts: int
    workflow_id: str | None
    created_at: datetime
    updated_at: datetime

    @property
    def progress(self) -> float:
        """Seconds processed over seconds of audio, 0..1."""
        if self.status == "done":
            return 1.0
        if not self.duration:
            return 0.0
        return max(0.0, min(1.0, self.processed / self.duration))

    @classmethod
    def from_row(cls, row: Any) -> TranscriptionView:
        """From a row of the table's columns."""
        return cls(id=row.id, status=row.status, filename=row.filename, size=row.size, duration=row.duration,
                   processed=row.processed, language=row.language, result_id=row.result_id, error=row.error,
                   attempts=row.attempts, workflow_id=(row.request_json or {}).get("workflow_id"),
                   created_at=as_utc(row.created_at), updated_at=as_utc(row.updated_at))


class TranscriptionStore(Store):
    """The ``transcriptions`` table: accept, claim, heartbeat, finish. The database is injected."""

    def create(self, new: NewTranscription) -> str:
        """Store a job with its audio; returns its id once the transaction has committed."""
        now = utcnow()
        row = Transcription(
            id=new_id("tr"), key_id=new.key_id, tenant=new.tenant, status="queued", filename=new.filename,
            content_type=new.content_type, size=len(new.audio), audio=new.audio, duration=new.duration,
            options_json=new.options, request_json=new.request, created_at=now, updated_at=now)
        with self._db.session(write=True) as session:
            session.add(row)
        return row.id

    def get(self, tr_id: str, *, tenant: str | None = None) -> TranscriptionView:
        """A job's state without its audio; ``NotFound`` for an unknown id or one of another tenant."""
        columns = [c for c in table_of(Transcription).columns if c.name != "audio"]
        query = select(*columns).where(col(Transcription.id) == tr_id)
        if tenant is not None:
            query = query.where(col(Transcription.tenant) == tenant)
        with self._db.session() as session:
            row = session.execute(query).first()
        if row is None:
            raise NotFound(tr_id)
        return TranscriptionView.from_row(row)

    @staticmethod
    def _claimable(now: Any) -> Any:
        """Queued jobs, and running ones whose worker stopped renewing its lease (crashed)."""
        expired = or_(col(Transcription.lease_expires_at).is_(None), col(Transcription.lease_expires_at) < now)
        return and_(col(Transcription.result_id).is_(None),
                    or_(col(Transcription.status) == "queued", and_(col(Transcription.status) == "running", expired)))

    def claim(self, owner: str, *, lease_s: float) -> Job | None:
        """Lease the oldest claimable job to ``owner`` and count the attempt; None when there is none.

        A read-only look comes first so an idle poll never takes SQLite's write lock, which the
        delivery workers need far more often than this loop does.
        """
        now = utcnow()
        with self._db.session() as session:
            if session.scalar(select(col(Transcription.id)).where(self._claimable(now)).limit(1)) is None:
                return None
        query = select(*_CLAIMABLE_COLUMNS).where(self._claimable(now)) \
            .order_by(col(Transcription.created_at), col(Transcription.id)).limit(1)
        query = self._claim_lock(query)
        with self._db.session(write=True) as session:
            row = session.execute(query).first()
            if row is None:
                return None
            session.execute(update(Transcription).where(col(Transcription.id) == row.id).values(
                status="running", attempts=row.attempts + 1, lease_owner=owner,
                lease_expires_at=now + _seconds(lease_s), processed=0.0, updated_at=now))
        return Job(id=row.id, key_id=row.key_id, tenant=row.tenant, filename=row.filename, attempts=row.attempts + 1,
                   options=dict(row.options_json), request=dict(row.request_json), duration=row.duration)

    def write_audio(self, tr_id: str, path: Path) -> int:
        """Copy a job's audio into ``path`` piece by piece; returns the bytes written."""
        written = 0
        with path.open("wb") as out:
            while True:
                with self._db.session() as session:
                    piece = session.scalar(select(func.substr(col(Transcription.audio), written + 1, AUDIO_CHUNK))
                                           .where(col(Transcription.id) == tr_id))
                if not piece:
                    break
                out.write(piece)
                written += len(piece)
                if len(piece) < AUDIO_CHUNK:
                    break
        if written == 0:
            raise AudioMissing("the stored audio is missing (it was already deleted)")
        return written

    def heartbeat(self, tr_id: str, owner: str, *, processed: float, duration: float | None,
                  lease_s: float) -> bool:
        """Record progress and extend the lease; False when ``owner`` no longer holds the job."""
        now = utcnow()
        values: dict[str, Any] = {"processed": processed, "lease_expires_at": now + _seconds(lease_s),
                                  "updated_at": now}
        if duration:
            values["duration"] = duration
        with self._db.session(write=True) as session:
            done = session.execute(update(Transcription).where(
                col(Transcription.id) == tr_id,
                col(Transcription.lease_owner) == owner, col(Transcription.status) == "running",
            ).values(**values))
            return bool(done.rowcount)  # type: ignore[attr-defined]

    def existing_result(self, key_id: str, idempotency_key: str) -> str | None:
        """The Result an earlier attempt already stored (it crashed before marking the job done)."""
        with self._db.session() as session:
            return session.scalar(select(col(Result.id)).where(col(Result.key_id) == key_id,
                                                          col(Result.idempotency_key) == idempotency_key))

    def finish(self, tr_id: str, *, status: str, result_id: str | None, error: str | None = None,
               language: str | None = None, duration: float | None = None, keep_audio: bool = False) -> None:
        """Mark a job ``done`` or ``failed``; the audio goes unless ``RELAY_KEEP_AUDIO`` keeps it."""
        values: dict[str, Any] = {"status": status, "result_id": result_id, "error": error,
                                  "lease_owner": None, "lease_expires_at": None, "updated_at": utcnow()}
        if language is not None:
            values["language"] = language[:16]
        if duration is not None:
            values["duration"] = values["processed"] = duration
        if not keep_audio:
            values["audio"] = None
        with self._db.session(write=True) as session:
            session.execute(update(Transcription).where(col(Transcription.id) == tr_id).values(**values))

    def requeue(self, tr_id: str, owner: str, *, count_attempt: bool, error: str | None = None) -> None:
        """Put a job back in the queue; an attempt cut short by our own shutdown does not count."""
        values: dict[str, Any] = {"status": "queued", "lease_owner": None, "lease_expires_at": None,
                                  "processed": 0.0, "updated_at": utcnow(), "error": error}
        if not count_attempt:
            values["attempts"] = col(Transcription.attempts) - 1
        with self._db.session(write=True) as session:
            session.execute(update(Transcription).where(
                col(Transcription.id) == tr_id, col(Transcription.lease_owner) == owner).values(**values))

    def release_owned(self, owner: str) -> int:
        """Shutdown sweep: every job ``owner`` still holds goes back to the queue, the attempt uncounted."""
        with self._db.session(write=True) as session:
            done = session.execute(update(Transcription).where(
                col(Transcription.lease_owner) == owner, col(Transcription.status) == "running").values(
                status="queued", lease_owner=None, lease_expires_at=None, processed=0.0,
                attempts=col(Transcription.attempts) - 1, updated_at=utcnow()))
            return int(done.rowcount)  # type: ignore[attr-defined]


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=value)
