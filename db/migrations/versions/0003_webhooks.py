"""Webhooks: per-key signing secrets and the webhook_deliveries table.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 00:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# keys made before this migration get a secret: 32 bytes (244 of them random, from
# Postgres' strong random source) in base64, as db.webhook_secrets draws for new keys
_RANDOM_WHSEC_SQL = (
    "'whsec_' || encode(decode(replace(gen_random_uuid()::text || "
    "gen_random_uuid()::text, '-', ''), 'hex'), 'base64')"
)


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("webhook_secret", sa.Text(), nullable=True))
    keys = sa.table("api_keys", sa.column("webhook_secret", sa.Text()))
    op.execute(
        sa.update(keys)
        .where(keys.c.webhook_secret.is_(None))
        .values(webhook_secret=sa.text(_RANDOM_WHSEC_SQL))
    )
    op.add_column("api_keys", sa.Column("previous_webhook_secret", sa.Text(), nullable=True))
    op.add_column(
        "api_keys",
        sa.Column("previous_webhook_secret_until", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("job_id", sa.UUID(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("host", sa.Text(), nullable=False),
        sa.Column("owner", sa.Text(), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("latency_ms", sa.Double(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
        sa.UniqueConstraint(
            "event_id", "url", "attempt", name=op.f("uq_webhook_deliveries_event_id_url_attempt")
        ),
    )
    op.create_index(
        "uq_webhook_deliveries_succeeded",
        "webhook_deliveries",
        ["event_id", "url"],
        unique=True,
        postgresql_where=sa.text("status = 'succeeded'"),
    )
    op.create_index(
        "ix_webhook_deliveries_due",
        "webhook_deliveries",
        ["next_attempt_at"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index("ix_webhook_deliveries_job_id", "webhook_deliveries", ["job_id"])
    op.create_index(
        "ix_webhook_deliveries_status_created_at", "webhook_deliveries", ["status", "created_at"]
    )


def downgrade() -> None:
    op.drop_table("webhook_deliveries")
    op.drop_column("api_keys", "previous_webhook_secret_until")
    op.drop_column("api_keys", "previous_webhook_secret")
    op.drop_column("api_keys", "webhook_secret")
