"""Avro binary writers and readers specialised to one schema and its dataclass.

fastavro interprets the parsed schema for every value and goes through a dict per record;
the projector, which decodes every event of every topic, spends about 12 % more CPU on a
replay that way (docs/BENCHMARKS.md, issue 12). This module walks an event schema
together with the event's type hints once and generates straight-line Python for it:
field reads and writes in schema order, nested records inlined, enums and small varints
from lookup tables. It follows the Avro 1.11 binary encoding (zig-zag varints,
length-prefixed strings and bytes, little-endian IEEE floats, blocked arrays and maps,
unions as a branch index).

The generated code is only used where writer and reader schema are the same (the
current version); schema resolution of older writers stays with fastavro. Types this
module does not handle (general unions, fixed, decimals and other logical types,
recursive records) raise :class:`UnsupportedSchemaError`, and the caller keeps fastavro.
"""

from __future__ import annotations

import dataclasses
import struct
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from itertools import count
from typing import Any

from schemas._convert import optional_inner

Write = Callable[[Any, bytearray], None]
Read = Callable[[bytes, int], tuple[Any, int]]

_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1
_MAX_VARINT_BYTES = 10
_MAX_INLINED_DEPTH = 16
_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_KINDS = _PRIMITIVES | {"record", "enum", "array", "map", "fixed"}


class UnsupportedSchemaError(Exception):
    """The schema uses a construct this module does not generate code for."""


@dataclass(frozen=True, slots=True)
class CompiledRecord:
    write: Write
    """Appends the Avro binary encoding of a dataclass instance to a bytearray."""
    read: Read
    """Decodes one record from ``buf`` at ``pos``; returns it and the position after it."""
    source: str
    """The generated Python, for debugging."""


def compile_record(schema: Mapping[str, Any], cls: type[Any]) -> CompiledRecord:
    """Generate a writer and a reader for ``schema`` whose values are ``cls`` instances."""
    if schema.get("type") != "record":
        raise UnsupportedSchemaError("only records can be compiled")
    generator = _Generator()
    write_source = generator.writer(schema, cls)
    read_source = generator.reader(schema, cls)
    source = f"{write_source}\n\n{read_source}\n"
    namespace: dict[str, Any] = dict(generator.env)
    # The source is generated here from a schema file of this package, never from input.
    exec(compile(source, f"<compiled {schema['name']}>", "exec"), namespace)  # noqa: S102
    return CompiledRecord(namespace["write"], namespace["read"], source)


# -- runtime helpers the generated code calls ---------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
_ONE_US = timedelta(microseconds=1)


def _varint(unsigned: int) -> bytes:
    """Base-128 little-endian varint of a non-negative number (already zig-zagged)."""
    out = bytearray()
    while unsigned > 0x7F:
        out.append((unsigned & 0x7F) | 0x80)
        unsigned >>= 7
    out.append(unsigned)
    return bytes(out)


def _varint_tail(buf: bytes, pos: int, first: int) -> tuple[int, int]:
    """Finish reading a varint whose first byte ``first`` had the continuation bit."""
    value = first & 0x7F
    shift = 7
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift >= 7 * _MAX_VARINT_BYTES:
            raise ValueError("varint longer than 10 bytes")


def _out_of_range(kind: str, value: object) -> OverflowError:
    return OverflowError(f"{value!r} does not fit an Avro {kind}")


def _bad_branch(zigzag: int) -> ValueError:
    index = (zigzag >> 1) ^ -(zigzag & 1)
    return ValueError(f"union branch {index} out of range")


def _bad_length(zigzag: int) -> ValueError:
    length = (zigzag >> 1) ^ -(zigzag & 1)
    return ValueError(f"length {length} is negative or runs past the end")


def _require_bytes(value: object) -> None:
    if not isinstance(value, bytes | bytearray):
        raise TypeError(f"bytes field holds {type(value).__name__}")


def _bad_boolean(byte: int) -> ValueError:
    return ValueError(f"boolean byte {byte} is neither 0 nor 1")


_HELPERS: dict[str, Any] = {
    "_varint": _varint,
    "_varint_tail": _varint_tail,
    "_out_of_range": _out_of_range,
    "_bad_branch": _bad_branch,
    "_bad_length": _bad_length,
    "_bad_boolean": _bad_boolean,
    "_require_bytes": _require_bytes,
    "_EPOCH": _EPOCH,
    "_ONE_MS": _ONE_MS,
    "_ONE_US": _ONE_US,
    "_timedelta": timedelta,
    "_pack_double": struct.Struct("<d").pack,
    "_pack_float": struct.Struct("<f").pack,
    "_unpack_double": struct.Struct("<d").unpack_from,
    "_unpack_float": struct.Struct("<f").unpack_from,
    "_BOOLEAN_BYTE": {False: b"\x00", True: b"\x01"},
}


# -- code generation ------------------------------------------------------------------------


def _optional_inner(hint: Any) -> tuple[Any, bool]:
    try:
        return optional_inner(hint)
    except TypeError as exc:
        raise UnsupportedSchemaError(str(exc)) from exc


def _record_fields(schema: Mapping[str, Any], hint: Any) -> tuple[list[Any], dict[str, Any]]:
    """The record's fields and the dataclass's type hints, checked to match in order."""
    if not (isinstance(hint, type) and dataclasses.is_dataclass(hint)):
        raise UnsupportedSchemaError(f"record {schema['name']} has no dataclass")
    fields = list(schema["fields"])
    names = [field.name for field in dataclasses.fields(hint)]
    if names != [field["name"] for field in fields]:
        raise UnsupportedSchemaError(f"{hint.__name__} fields differ from record {schema['name']}")
    return fields, typing.get_type_hints(hint)


class _Generator:
    def __init__(self) -> None:
        self.env: dict[str, Any] = dict(_HELPERS)
        self._lines: list[str] = []
        self._indent = 1
        self._ids = count()
        self._named: dict[str, Mapping[str, Any]] = {}

    # ---- shared -------------------------------------------------------------------------

    def _fresh(self, stem: str) -> str:
        return f"{stem}{next(self._ids)}"

    def _emit(self, line: str) -> None:
        self._lines.append("    " * self._indent + line)

    def _constant(self, stem: str, value: Any) -> str:
        name = self._fresh(f"_{stem}")
        self.env[name] = value
        return name

    def _resolve(self, schema: Any, namespace: str) -> Any:
        """Inline named-type references; remember named types as they are defined."""
        if isinstance(schema, str):
            if schema in _PRIMITIVES:
                return {"type": schema}
            full = schema if "." in schema else f"{namespace}.{schema}" if namespace else schema
            found = self._named.get(full) or self._named.get(schema)
            if found is None:
                raise UnsupportedSchemaError(f"unknown type name {schema}")
            return found
        if isinstance(schema, list):
            return schema
        kind = schema["type"]
        if isinstance(kind, dict | list) or kind not in _KINDS:
            # {"type": {...}}, {"type": [...]} or {"type": "SomeName"}: the wrapper adds nothing.
            return self._resolve(schema["type"], namespace)
        if schema.get("type") in ("record", "enum", "fixed"):
            space = schema.get("namespace", namespace)
            name = schema["name"]
            full = name if "." in name else f"{space}.{name}" if space else name
            self._named[full] = schema
        return schema

    @staticmethod
    def _namespace(schema: Mapping[str, Any], outer: str) -> str:
        name = str(schema["name"])
        if "." in name:
            return name.rsplit(".", 1)[0]
        return str(schema.get("namespace", outer))

    def _finish(self, header: str) -> str:
        body = self._lines
        self._lines = []
        return "\n".join([header, *body])

    # ---- writer -------------------------------------------------------------------------

    def writer(self, schema: Mapping[str, Any], cls: type[Any]) -> str:
        self._named = {}
        self._indent = 1
        self._write(schema, cls, "value", "", 0)
        return self._finish("def write(value, out):")

    def _write(self, schema: Any, hint: Any, expr: str, namespace: str, depth: int) -> None:
        if depth > _MAX_INLINED_DEPTH:
            raise UnsupportedSchemaError("records nested too deeply (recursive type?)")
        schema = self._resolve(schema, namespace)
        if isinstance(schema, list):
            self._write_union(schema, hint, expr, namespace, depth)
            return
        kind = schema["type"]
        logical = schema.get("logicalType")
        if logical is not None:
            self._write_logical(kind, logical, expr)
        elif kind == "record":
            self._write_record(schema, hint, expr, namespace, depth)
        elif kind == "enum":
            self._write_enum(schema, expr)
        elif kind in ("array", "map"):
            self._write_blocks(schema, hint, expr, namespace=namespace, depth=depth)
        else:
            self._write_primitive(kind, expr)

    def _write_primitive(self, kind: str, expr: str) -> None:
        if kind == "null":
            self._emit(
                f"if {expr} is not None: raise TypeError('null field holds ' + repr({expr}))"
            )
        elif kind == "boolean":
            self._emit(f"out += _BOOLEAN_BYTE[{expr}]")
        elif kind in ("int", "long"):
            self._write_integer(kind, expr)
        elif kind == "double":
            self._emit(f"out += _pack_double({expr})")
        elif kind == "float":
            self._emit(f"out += _pack_float({expr})")
        elif kind in ("string", "bytes"):
            data = self._fresh("data")
            encode = ".encode()" if kind == "string" else ""
            if kind == "bytes":
                self._emit(f"_require_bytes({expr})")
            self._emit(f"{data} = {expr}{encode}")
            self._write_length(f"len({data})")
            self._emit(f"out += {data}")
        else:
            raise UnsupportedSchemaError(f"type {kind}")

    def _write_integer(self, kind: str, expr: str) -> None:
        number = self._fresh("n")
        low, high, bits = (_INT_MIN, _INT_MAX, 31) if kind == "int" else (_LONG_MIN, _LONG_MAX, 63)
        self._emit(f"{number} = {expr}")
        self._emit(f"if not {low} <= {number} <= {high}: raise _out_of_range({kind!r}, {number})")
        self._emit(f"{number} = ({number} << 1) ^ ({number} >> {bits})")
        self._write_unsigned(number)

    def _write_length(self, expr: str) -> None:
        # Lengths and counts are non-negative, so their zig-zag form is simply doubled.
        number = self._fresh("n")
        self._emit(f"{number} = {expr} << 1")
        self._write_unsigned(number)

    def _write_unsigned(self, number: str) -> None:
        self._emit(f"if {number} < 0x80: out.append({number})")
        self._emit(f"else: out += _varint({number})")

    def _write_logical(self, kind: Any, logical: str, expr: str) -> None:
        if kind == "long" and logical in ("timestamp-millis", "timestamp-micros"):
            unit = "_ONE_MS" if logical == "timestamp-millis" else "_ONE_US"
            self._write_integer("long", f"({expr} - _EPOCH) // {unit}")
        else:
            raise UnsupportedSchemaError(f"logical type {logical} on {kind}")

    def _write_record(
        self, schema: Mapping[str, Any], hint: Any, expr: str, namespace: str, depth: int
    ) -> None:
        fields, hints = _record_fields(schema, hint)
        space = self._namespace(schema, namespace)
        record = self._fresh("r")
        self._emit(f"{record} = {expr}")
        for field in fields:
            self._write(
                field["type"], hints[field["name"]], f"{record}.{field['name']}", space, depth + 1
            )

    def _write_enum(self, schema: Mapping[str, Any], expr: str) -> None:
        symbols = schema["symbols"]
        table = {symbol: _varint(index << 1) for index, symbol in enumerate(symbols)}
        self._emit(f"out += {self._constant('symbol', table)}[{expr}]")

    def _write_union(
        self, branches: list[Any], hint: Any, expr: str, namespace: str, depth: int
    ) -> None:
        null_index, other_index, other = _nullable_union(branches)
        inner, _ = _optional_inner(hint)
        value = self._fresh("u")
        self._emit(f"{value} = {expr}")
        self._emit(f"if {value} is None:")
        self._indent += 1
        self._emit(f"out.append({null_index << 1})")
        self._indent -= 1
        self._emit("else:")
        self._indent += 1
        self._emit(f"out.append({other_index << 1})")
        self._write(other, inner, value, namespace, depth + 1)
        self._indent -= 1

    def _write_blocks(
        self, schema: Mapping[str, Any], hint: Any, expr: str, *, namespace: str, depth: int
    ) -> None:
        # One block holding every item, then the zero-count terminator.
        keyed = schema["type"] == "map"
        items, item, key = self._fresh("items"), self._fresh("item"), self._fresh("key")
        self._emit(f"{items} = {expr}")
        self._emit(f"if {items}:")
        self._indent += 1
        self._write_length(f"len({items})")
        self._emit(f"for {key}, {item} in {items}.items():" if keyed else f"for {item} in {items}:")
        self._indent += 1
        if keyed:
            self._write_primitive("string", key)
        item_schema = schema["values"] if keyed else schema["items"]
        self._write(item_schema, _item_hint(hint, keyed=keyed), item, namespace, depth + 1)
        self._indent -= 2
        self._emit("out.append(0)")

    # ---- reader -------------------------------------------------------------------------

    def reader(self, schema: Mapping[str, Any], cls: type[Any]) -> str:
        self._named = {}
        self._indent = 1
        self._emit("size = len(buf)")
        result = self._read(schema, cls, "", 0)
        self._emit(f"return {result}, pos")
        return self._finish("def read(buf, pos):")

    def _read(self, schema: Any, hint: Any, namespace: str, depth: int) -> str:
        """Emit code that reads one value; return the name of the variable holding it."""
        if depth > _MAX_INLINED_DEPTH:
            raise UnsupportedSchemaError("records nested too deeply (recursive type?)")
        schema = self._resolve(schema, namespace)
        if isinstance(schema, list):
            return self._read_union(schema, hint, namespace, depth)
        kind = schema["type"]
        logical = schema.get("logicalType")
        if logical is not None:
            return self._read_logical(kind, logical)
        if kind == "record":
            return self._read_record(schema, hint, namespace, depth)
        if kind == "enum":
            return self._read_enum(schema, hint)
        if kind in ("array", "map"):
            return self._read_blocks(schema, hint, namespace=namespace, depth=depth)
        return self._read_primitive(kind)

    def _read_primitive(self, kind: str) -> str:
        value = self._fresh("v")
        if kind == "null":
            self._emit(f"{value} = None")
        elif kind == "boolean":
            self._emit(f"{value} = buf[pos]")
            self._emit("pos += 1")
            self._emit(f"if {value} > 1: raise _bad_boolean({value})")
            self._emit(f"{value} = {value} == 1")
        elif kind in ("int", "long"):
            self._read_integer(value, kind)
        elif kind in ("double", "float"):
            self._emit(f"({value},) = _unpack_{kind}(buf, pos)")
            self._emit(f"pos += {8 if kind == 'double' else 4}")
        elif kind in ("string", "bytes"):
            # Read the zig-zagged length raw: an odd value is a negative length.
            length = self._fresh("n")
            self._read_unsigned(length)
            self._emit(f"end = pos + ({length} >> 1)")
            self._emit(f"if {length} & 1 or end > size: raise _bad_length({length})")
            decode = ".decode()" if kind == "string" else ""
            self._emit(f"{value} = buf[pos:end]{decode}")
            self._emit("pos = end")
        else:
            raise UnsupportedSchemaError(f"type {kind}")
        return value

    def _read_unsigned(self, target: str) -> None:
        """Read a varint without undoing the zig-zag (compare it to zig-zagged constants)."""
        self._emit(f"{target} = buf[pos]")
        self._emit("pos += 1")
        self._emit(f"if {target} & 0x80: {target}, pos = _varint_tail(buf, pos, {target})")

    def _read_integer(self, target: str, kind: str) -> None:
        self._read_unsigned(target)
        self._emit(f"{target} = ({target} >> 1) ^ -({target} & 1)")
        if kind == "int":
            self._emit(
                f"if not {_INT_MIN} <= {target} <= {_INT_MAX}: raise _out_of_range('int', {target})"
            )

    def _read_logical(self, kind: Any, logical: str) -> str:
        if kind == "long" and logical in ("timestamp-millis", "timestamp-micros"):
            value = self._fresh("v")
            self._read_integer(value, "long")
            # Positional timedelta(days, seconds, microseconds, milliseconds): keywords cost more.
            args = f"0, 0, 0, {value}" if logical == "timestamp-millis" else f"0, 0, {value}"
            self._emit(f"{value} = _EPOCH + _timedelta({args})")
            return value
        raise UnsupportedSchemaError(f"logical type {logical} on {kind}")

    def _read_record(self, schema: Mapping[str, Any], hint: Any, namespace: str, depth: int) -> str:
        fields, hints = _record_fields(schema, hint)
        space = self._namespace(schema, namespace)
        values = [
            self._read(field["type"], hints[field["name"]], space, depth + 1) for field in fields
        ]
        record = self._fresh("r")
        cls_name = self._constant(hint.__name__, hint)
        self._emit(f"{record} = {cls_name}({', '.join(values)})")
        return record

    def _read_enum(self, schema: Mapping[str, Any], hint: Any) -> str:
        symbols = schema["symbols"]
        members: Mapping[str, Any]
        if isinstance(hint, type) and issubclass(hint, Enum):
            members = {member.value: member for member in hint}
            if set(members) != set(symbols):
                raise UnsupportedSchemaError(
                    f"{hint.__name__} members differ from enum {schema['name']}"
                )
        else:
            members = {symbol: symbol for symbol in symbols}
        table = {index << 1: members[symbol] for index, symbol in enumerate(symbols)}
        index = self._fresh("i")
        self._read_unsigned(index)
        value = self._fresh("v")
        # A dict, not a tuple: a negative index must fail rather than count from the end.
        self._emit(f"{value} = {self._constant('member', table)}[{index}]")
        return value

    def _read_union(self, branches: list[Any], hint: Any, namespace: str, depth: int) -> str:
        null_index, other_index, other = _nullable_union(branches)
        inner, _ = _optional_inner(hint)
        index, value = self._fresh("i"), self._fresh("v")
        self._read_unsigned(index)
        self._emit(f"if {index} == {null_index << 1}:")
        self._indent += 1
        self._emit(f"{value} = None")
        self._indent -= 1
        self._emit(f"elif {index} == {other_index << 1}:")
        self._indent += 1
        result = self._read(other, inner, namespace, depth + 1)
        self._emit(f"{value} = {result}")
        self._indent -= 1
        self._emit(f"else: raise _bad_branch({index})")
        return value

    def _read_blocks(
        self, schema: Mapping[str, Any], hint: Any, *, namespace: str, depth: int
    ) -> str:
        keyed = schema["type"] == "map"
        item_schema = schema["values"] if keyed else schema["items"]
        item_hint = _item_hint(hint, keyed=keyed)
        collection, block = self._fresh("c"), self._fresh("n")
        self._emit(f"{collection} = {{}}" if keyed else f"{collection} = []")
        self._emit("while True:")
        self._indent += 1
        self._read_integer(block, "long")
        self._emit(f"if {block} == 0: break")
        self._emit(f"if {block} < 0:")
        self._indent += 1
        # A negative count is followed by the block's size in bytes, which we do not need.
        skipped = self._fresh("n")
        self._read_integer(skipped, "long")
        self._emit(f"{block} = -{block}")
        self._indent -= 1
        self._emit(f"for _ in range({block}):")
        self._indent += 1
        key = self._read_primitive("string") if keyed else None
        item = self._read(item_schema, item_hint, namespace, depth + 1)
        if keyed:
            self._emit(f"{collection}[{key}] = {item}")
        else:
            self._emit(f"{collection}.append({item})")
        self._indent -= 2
        return collection


def _item_hint(hint: Any, *, keyed: bool) -> Any:
    """The element type of ``list[T]`` or value type of ``dict[str, T]``; Any if unknown."""
    args = typing.get_args(hint)
    wanted = 2 if keyed else 1
    return args[-1] if len(args) == wanted else Any


def _nullable_union(branches: list[Any]) -> tuple[int, int, Any]:
    """(index of null, index of the other branch, the other branch) of a [null, T] union."""
    nulls = [index for index, branch in enumerate(branches) if branch == "null"]
    if len(branches) != 2 or len(nulls) != 1:
        raise UnsupportedSchemaError(f"only [null, T] unions are supported, got {branches}")
    null_index = nulls[0]
    other_index = 1 - null_index
    return null_index, other_index, branches[other_index]
