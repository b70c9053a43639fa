"""Events as plain JSON-ready data, for people and tools (not the wire format)."""

from __future__ import annotations

import base64
import dataclasses
from datetime import datetime
from enum import Enum
from typing import Any


def to_plain(value: Any) -> Any:
    """Dataclasses as dicts, enums by value, datetimes in ISO 8601, bytes in base64."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, list | tuple):
        return [to_plain(item) for item in value]
    return value
