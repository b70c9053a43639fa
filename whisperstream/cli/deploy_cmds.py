"""`whisperstream migrate` and `whisperstream buckets apply`: the one-shot set-up steps of a
deployment (deploy/), next to `topics apply`. Each is idempotent."""

from __future__ import annotations

import typer

from whisperstream.cli.common import console, settings_for
from whisperstream.errors import SettingsError

buckets_app = typer.Typer(help="S3 buckets as code.", no_args_is_help=True)


def migrate() -> None:
    """Bring the database at DATABASE_URL to the newest schema revision."""
    from db.migrate import upgrade_to_head  # noqa: PLC0415 - alembic loads only here

    settings = settings_for()
    if settings.database_url is None:
        raise SettingsError("DATABASE_URL is not set: migrate needs the database to upgrade")
    upgrade_to_head(settings.database_url)
    console.print("database schema at head")


@buckets_app.command("apply")
def apply_buckets() -> None:
    """Create the audio and results buckets where missing."""
    from storage.s3 import ObjectStore  # noqa: PLC0415

    settings = settings_for()
    with ObjectStore.from_settings(settings) as store:
        for bucket in (settings.audio_bucket, settings.results_bucket):
            existed = store.bucket_exists(bucket)
            store.ensure_bucket(bucket)
            console.print(f"{'unchanged' if existed else 'created  '} {bucket}")
