"""Errors raised on purpose by the database package."""

from whisperstream.errors import WhisperstreamError


class DbError(WhisperstreamError):
    """Base of every error the db package raises on purpose."""


class InvalidJobIdError(DbError, ValueError):
    """An event names a job id that is not a UUID; it cannot become a job row."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job id is not a UUID: {job_id!r}")
        self.job_id = job_id


class InvalidCursorError(DbError, ValueError):
    """A page cursor that this package did not issue (or that was altered)."""


class ProjectorGroupActiveError(DbError):
    """The projector's consumer group has members; replay needs it stopped."""


class RebuildRunningError(DbError):
    """Another ``replay --rebuild`` holds the rebuild's lock (they would share the shadow)."""


class InvalidOffsetsError(DbError, ValueError):
    """A ``--from-offsets`` value that names no partition of the projected topics."""
