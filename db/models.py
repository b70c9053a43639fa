"""SQLAlchemy models of the Postgres projection.

Postgres is a projection of the Kafka topics (see docs/architecture.md): every table here can
be rebuilt by replaying the topics into empty tables.  Enumerated values (status,
priority, task, source) are stored as text, not as Postgres enum types, so that a new
value in a newer event schema never needs a blocking ``ALTER TYPE`` before replay.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Double,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Deterministic constraint names, so that migrations can refer to them by name.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

TZ_TIMESTAMP = DateTime(timezone=True)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class TranscriptionJob(Base):
    __tablename__ = "transcription_jobs"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    status: Mapped[str] = mapped_column(Text)
    progress: Mapped[float] = mapped_column(Double, server_default=text("0"))

    # Request fields: NULL until the TranscriptionRequested event has been folded in
    # (a status event may arrive first; see db/fold.py).
    priority: Mapped[str | None] = mapped_column(Text)
    model_size: Mapped[str | None] = mapped_column(Text)
    engine: Mapped[str | None] = mapped_column(Text)
    language: Mapped[str | None] = mapped_column(Text)
    task: Mapped[str | None] = mapped_column(Text)
    audio_uri: Mapped[str | None] = mapped_column(Text)
    original_filename: Mapped[str | None] = mapped_column(Text)
    content_type: Mapped[str | None] = mapped_column(Text)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(Text)
    owner: Mapped[str | None] = mapped_column(Text)
    idempotency_key: Mapped[str | None] = mapped_column(Text)
    callback_url: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str | None] = mapped_column(Text)
    correlation_id: Mapped[str | None] = mapped_column(Text)
    options: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))

    # Execution fields, driven by status events.
    model_used: Mapped[str | None] = mapped_column(Text)
    worker_id: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    error_message: Mapped[str | None] = mapped_column(Text)
    error_type: Mapped[str | None] = mapped_column(Text)
    cancel_requested_at: Mapped[datetime | None] = mapped_column(TZ_TIMESTAMP)
    created_at: Mapped[datetime] = mapped_column(TZ_TIMESTAMP)
    started_at: Mapped[datetime | None] = mapped_column(TZ_TIMESTAMP)
    completed_at: Mapped[datetime | None] = mapped_column(TZ_TIMESTAMP)
    # The newest event time folded in, not the wall clock: replay must give equal rows.
    updated_at: Mapped[datetime] = mapped_column(TZ_TIMESTAMP)

    # Fold bookkeeping: (last_attempt, last_seq) of the newest status event applied.
    last_attempt: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    last_seq: Mapped[int] = mapped_column(BigInteger, server_default=text("-1"))
    has_request: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    # attempt of the request whose data fills the request fields (the lowest seen)
    request_attempt: Mapped[int | None] = mapped_column(Integer)

    result: Mapped[TranscriptionResult | None] = relationship(
        back_populates="job", lazy="raise", passive_deletes=True
    )

    __table_args__ = (
        Index("ix_transcription_jobs_owner_created_at", "owner", text("created_at DESC")),
        Index("ix_transcription_jobs_status", "status"),
        Index("ix_transcription_jobs_priority", "priority"),
        Index("ix_transcription_jobs_model_size", "model_size"),
        Index("ix_transcription_jobs_created_at", "created_at"),
        Index(
            "uq_transcription_jobs_owner_idempotency_key",
            "owner",
            "idempotency_key",
            unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
        ),
    )


class TranscriptionResult(Base):
    __tablename__ = "transcription_results"

    job_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True),
        ForeignKey("transcription_jobs.id", ondelete="CASCADE"),
        primary_key=True,
    )
    transcription_text: Mapped[str | None] = mapped_column(Text)
    language: Mapped[str | None] = mapped_column(Text)
    duration: Mapped[float | None] = mapped_column(Double)
    word_count: Mapped[int | None] = mapped_column(Integer)
    confidence: Mapped[float | None] = mapped_column(Double)
    segment_count: Mapped[int | None] = mapped_column(Integer)
    result_uri: Mapped[str | None] = mapped_column(Text)
    engine: Mapped[str | None] = mapped_column(Text)
    model_used: Mapped[str | None] = mapped_column(Text)
    processing_ms: Mapped[int | None] = mapped_column(BigInteger)
    real_time_factor: Mapped[float | None] = mapped_column(Double)
    created_at: Mapped[datetime] = mapped_column(TZ_TIMESTAMP)

    job: Mapped[TranscriptionJob] = relationship(back_populates="result", lazy="raise")


class ErrorLog(Base):
    """One row per dead letter (the DLQ mirror).

    ``job_id`` deliberately has no foreign key: topics have no order between them, so a
    dead letter may be projected before its job's first event, and the dead letter of an
    undecodable record may name no job (or one that never existed).  Writing a dead
    letter must never fail, and a stub job row would show up in the API as a job nobody
    submitted.
    """

    __tablename__ = "error_logs"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    job_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    error_type: Mapped[str] = mapped_column(Text)
    error_message: Mapped[str] = mapped_column(Text)
    stack_trace: Mapped[str | None] = mapped_column(Text)
    retry_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    resolved: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    resolved_at: Mapped[datetime | None] = mapped_column(TZ_TIMESTAMP)
    source_topic: Mapped[str] = mapped_column(Text)
    source_partition: Mapped[int] = mapped_column(Integer)
    source_offset: Mapped[int] = mapped_column(BigInteger)
    raw_payload: Mapped[bytes | None] = mapped_column(LargeBinary)
    request: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(TZ_TIMESTAMP)

    __table_args__ = (
        UniqueConstraint("source_topic", "source_partition", "source_offset"),
        Index("ix_error_logs_job_id", "job_id"),
        Index("ix_error_logs_resolved_created_at", "resolved", "created_at"),
    )


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    key_hash: Mapped[str] = mapped_column(Text, unique=True)
    key_prefix: Mapped[str] = mapped_column(Text)
    is_admin: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    created_at: Mapped[datetime] = mapped_column(TZ_TIMESTAMP)
    revoked_at: Mapped[datetime | None] = mapped_column(TZ_TIMESTAMP)
    # Webhook signing secrets (whsec_...), kept in clear: signing needs them.  A rotation
    # keeps the previous one valid until previous_webhook_secret_until; both sign meanwhile.
    webhook_secret: Mapped[str | None] = mapped_column(Text)
    previous_webhook_secret: Mapped[str | None] = mapped_column(Text)
    previous_webhook_secret_until: Mapped[datetime | None] = mapped_column(TZ_TIMESTAMP)


class WebhookDelivery(Base):
    """One attempt to deliver one terminal status event to one callback URL.

    Not a projection: the notifier writes it (and ``replay --rebuild`` leaves it alone).
    A ``pending`` row is an attempt not yet made, due at ``next_attempt_at``; the
    outcome of an attempt is written into its row, and a retryable failure adds the next
    attempt's ``pending`` row in the same transaction.  At most one ``succeeded`` row per
    (event id, URL) can exist: the partial unique index is the never-twice guarantee's
    last line, after the check made before each send.
    """

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    job_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    event_id: Mapped[str] = mapped_column(Text)
    event_type: Mapped[str] = mapped_column(Text)
    url: Mapped[str] = mapped_column(Text)
    host: Mapped[str] = mapped_column(Text)
    owner: Mapped[str | None] = mapped_column(Text)
    attempt: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(Text)
    status_code: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[float | None] = mapped_column(Double)
    error: Mapped[str | None] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None] = mapped_column(TZ_TIMESTAMP)
    locked_until: Mapped[datetime | None] = mapped_column(TZ_TIMESTAMP)
    created_at: Mapped[datetime] = mapped_column(TZ_TIMESTAMP)
    attempted_at: Mapped[datetime | None] = mapped_column(TZ_TIMESTAMP)

    __table_args__ = (
        UniqueConstraint("event_id", "url", "attempt"),
        Index(
            "uq_webhook_deliveries_succeeded",
            "event_id",
            "url",
            unique=True,
            postgresql_where=text("status = 'succeeded'"),
        ),
        Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
        ),
        Index("ix_webhook_deliveries_job_id", "job_id"),
        Index("ix_webhook_deliveries_status_created_at", "status", "created_at"),
    )


class ProjectorOffset(Base):
    """The projector's tracking table, written in the same transaction as the rows."""

    __tablename__ = "projector_offsets"

    consumer_group: Mapped[str] = mapped_column(Text, primary_key=True)
    topic: Mapped[str] = mapped_column(Text, primary_key=True)
    partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    next_offset: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(TZ_TIMESTAMP)


class ProjectorLag(Base):
    """How far the projector is behind, per partition, as of its latest batch.

    Measured from the high watermark of the fetch responses (not a ListOffsets query,
    which Tansu answers wrongly), and written with each batch, so any reader of Postgres
    (the API's ``/admin/health``) sees it without talking to Kafka.
    """

    __tablename__ = "projector_lag"

    consumer_group: Mapped[str] = mapped_column(Text, primary_key=True)
    topic: Mapped[str] = mapped_column(Text, primary_key=True)
    partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    next_offset: Mapped[int] = mapped_column(BigInteger)
    high_watermark: Mapped[int] = mapped_column(BigInteger)
    lag: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(TZ_TIMESTAMP)


# Typed handles on the Core tables: ``Model.__table__`` is typed as a plain FromClause.
jobs_table = cast(Table, TranscriptionJob.__table__)
results_table = cast(Table, TranscriptionResult.__table__)
error_logs_table = cast(Table, ErrorLog.__table__)
api_keys_table = cast(Table, ApiKey.__table__)
projector_offsets_table = cast(Table, ProjectorOffset.__table__)
projector_lag_table = cast(Table, ProjectorLag.__table__)
webhook_deliveries_table = cast(Table, WebhookDelivery.__table__)
