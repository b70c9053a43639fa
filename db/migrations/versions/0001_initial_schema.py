"""Initial schema: jobs, results, error log (DLQ mirror), API keys, projector offsets.

Revision ID: 0001
Revises:
Create Date: 2026-11-26 00:39:25.029563
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "api_keys",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("key_hash", sa.Text(), nullable=False),
        sa.Column("key_prefix", sa.Text(), nullable=False),
        sa.Column("is_admin", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    op.create_table(
        "error_logs",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("job_id", sa.UUID(), nullable=True),
        sa.Column("error_type", sa.Text(), nullable=False),
        sa.Column("error_message", sa.Text(), nullable=False),
        sa.Column("stack_trace", sa.Text(), nullable=True),
        sa.Column("retry_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("resolved", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("source_topic", sa.Text(), nullable=False),
        sa.Column("source_partition", sa.Integer(), nullable=False),
        sa.Column("source_offset", sa.BigInteger(), nullable=False),
        sa.Column("raw_payload", sa.LargeBinary(), nullable=True),
        sa.Column("request", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_error_logs")),
        sa.UniqueConstraint(
            "source_topic",
            "source_partition",
            "source_offset",
            name=op.f("uq_error_logs_source_topic_source_partition_source_offset"),
        ),
    )
    op.create_index("ix_error_logs_job_id", "error_logs", ["job_id"], unique=False)
    op.create_index(
        "ix_error_logs_resolved_created_at", "error_logs", ["resolved", "created_at"], unique=False
    )
    op.create_table(
        "projector_offsets",
        sa.Column("consumer_group", sa.Text(), nullable=False),
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("next_offset", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "consumer_group", "topic", "partition", name=op.f("pk_projector_offsets")
        ),
    )
    op.create_table(
        "transcription_jobs",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("progress", sa.Double(), server_default=sa.text("0"), nullable=False),
        sa.Column("priority", sa.Text(), nullable=True),
        sa.Column("model_size", sa.Text(), nullable=True),
        sa.Column("engine", sa.Text(), nullable=True),
        sa.Column("language", sa.Text(), nullable=True),
        sa.Column("task", sa.Text(), nullable=True),
        sa.Column("audio_uri", sa.Text(), nullable=True),
        sa.Column("original_filename", sa.Text(), nullable=True),
        sa.Column("content_type", sa.Text(), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("sha256", sa.Text(), nullable=True),
        sa.Column("owner", sa.Text(), nullable=True),
        sa.Column("idempotency_key", sa.Text(), nullable=True),
        sa.Column("callback_url", sa.Text(), nullable=True),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("correlation_id", sa.Text(), nullable=True),
        sa.Column(
            "options",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("model_used", sa.Text(), nullable=True),
        sa.Column("worker_id", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("error_type", sa.Text(), nullable=True),
        sa.Column("cancel_requested_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_attempt", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), server_default=sa.text("-1"), nullable=False),
        sa.Column("has_request", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("request_attempt", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transcription_jobs")),
    )
    op.create_index(
        "ix_transcription_jobs_created_at", "transcription_jobs", ["created_at"], unique=False
    )
    op.create_index(
        "ix_transcription_jobs_model_size", "transcription_jobs", ["model_size"], unique=False
    )
    op.create_index(
        "ix_transcription_jobs_owner_created_at",
        "transcription_jobs",
        ["owner", sa.literal_column("created_at DESC")],
        unique=False,
    )
    op.create_index(
        "ix_transcription_jobs_priority", "transcription_jobs", ["priority"], unique=False
    )
    op.create_index("ix_transcription_jobs_status", "transcription_jobs", ["status"], unique=False)
    op.create_index(
        "uq_transcription_jobs_owner_idempotency_key",
        "transcription_jobs",
        ["owner", "idempotency_key"],
        unique=True,
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    )
    op.create_table(
        "transcription_results",
        sa.Column("job_id", sa.UUID(), nullable=False),
        sa.Column("transcription_text", sa.Text(), nullable=True),
        sa.Column("language", sa.Text(), nullable=True),
        sa.Column("duration", sa.Double(), nullable=True),
        sa.Column("word_count", sa.Integer(), nullable=True),
        sa.Column("confidence", sa.Double(), nullable=True),
        sa.Column("segment_count", sa.Integer(), nullable=True),
        sa.Column("result_uri", sa.Text(), nullable=True),
        sa.Column("engine", sa.Text(), nullable=True),
        sa.Column("model_used", sa.Text(), nullable=True),
        sa.Column("processing_ms", sa.BigInteger(), nullable=True),
        sa.Column("real_time_factor", sa.Double(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["transcription_jobs.id"],
            name=op.f("fk_transcription_results_job_id_transcription_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_transcription_results")),
    )


def downgrade() -> None:

    op.drop_table("transcription_results")
    op.drop_index(
        "uq_transcription_jobs_owner_idempotency_key",
        table_name="transcription_jobs",
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    )
    op.drop_index("ix_transcription_jobs_status", table_name="transcription_jobs")
    op.drop_index("ix_transcription_jobs_priority", table_name="transcription_jobs")
    op.drop_index("ix_transcription_jobs_owner_created_at", table_name="transcription_jobs")
    op.drop_index("ix_transcription_jobs_model_size", table_name="transcription_jobs")
    op.drop_index("ix_transcription_jobs_created_at", table_name="transcription_jobs")
    op.drop_table("transcription_jobs")
    op.drop_table("projector_offsets")
    op.drop_index("ix_error_logs_resolved_created_at", table_name="error_logs")
    op.drop_index("ix_error_logs_job_id", table_name="error_logs")
    op.drop_table("error_logs")
    op.drop_table("api_keys")
