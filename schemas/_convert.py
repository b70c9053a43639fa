"""Mapping between event dataclasses and the dicts fastavro reads and writes.

Converters are built once per class from its type hints. Only the fields that need
work get a step: enums are ``StrEnum`` (already ``str`` for the writer), datetimes and
bytes are handled by fastavro, so encoding only converts nested records.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from enum import Enum
from typing import Any

ToDict = Callable[[Any], dict[str, Any]]
FromDict = Callable[[dict[str, Any]], Any]
_Step = Callable[[Any], Any]


def optional_inner(hint: Any) -> tuple[Any, bool]:
    """``(T, True)`` for ``T | None``, ``(hint, False)`` otherwise; TypeError for wider unions."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(args) != 1:
            raise TypeError(f"only T | None unions are supported, got {hint}")
        return args[0], True
    return hint, False


def _nullable(step: _Step) -> _Step:
    return lambda value: None if value is None else step(value)


def _decode_step(hint: Any) -> _Step | None:
    inner, optional = optional_inner(hint)
    step: _Step | None = None
    if isinstance(inner, type) and issubclass(inner, Enum):
        # A dict lookup is ~10x faster than calling the enum class.
        step = {member.value: member for member in inner}.__getitem__
    elif dataclasses.is_dataclass(inner) and isinstance(inner, type):
        step = build_from_dict(inner)
    if step is None or not optional:
        return step
    return _nullable(step)


def _encode_step(hint: Any) -> _Step | None:
    inner, optional = optional_inner(hint)
    if not (dataclasses.is_dataclass(inner) and isinstance(inner, type)):
        return None
    step = build_to_dict(inner)
    return _nullable(step) if optional else step


def build_from_dict(cls: type[Any]) -> FromDict:
    hints = typing.get_type_hints(cls)
    steps = [
        (field.name, step)
        for field in dataclasses.fields(cls)
        if (step := _decode_step(hints[field.name])) is not None
    ]

    def from_dict(record: dict[str, Any]) -> Any:
        for name, step in steps:
            record[name] = step(record[name])
        return cls(**record)

    return from_dict


def build_to_dict(cls: type[Any]) -> ToDict:
    hints = typing.get_type_hints(cls)
    names = tuple(field.name for field in dataclasses.fields(cls))
    steps = [
        (field.name, step)
        for field in dataclasses.fields(cls)
        if (step := _encode_step(hints[field.name])) is not None
    ]

    def to_dict(event: Any) -> dict[str, Any]:
        record = {name: getattr(event, name) for name in names}
        for name, step in steps:
            record[name] = step(record[name])
        return record

    return to_dict
