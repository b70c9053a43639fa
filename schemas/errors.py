"""Exceptions of the schemas package; everything raised here derives from SchemaError."""

from __future__ import annotations


class SchemaError(Exception):
    """Root of the schemas package's exceptions."""


class SchemaHistoryError(SchemaError):
    """The ``.avsc`` files on disk do not form a valid schema history."""


class EventEncodingError(SchemaError):
    """An event object could not be encoded (a value does not fit its schema)."""


class RegistryUnavailableError(SchemaError):
    """The schema registry could not answer; the message itself may be fine, retry later.

    Distinct from :class:`UndecodableEvent` on purpose: a registry outage must not send
    good messages to the dead-letter topic.
    """


class UndecodableEvent(SchemaError):  # noqa: N818 - the name is part of the contract
    """A message value that is not a valid event: a poison message for the DLQ."""

    def __init__(self, reason: str, raw: bytes) -> None:
        super().__init__(reason)
        self.reason = reason
        self.raw = raw

    def __str__(self) -> str:
        return f"{self.reason} ({len(self.raw)} bytes, starting {self.raw[:16]!r})"
