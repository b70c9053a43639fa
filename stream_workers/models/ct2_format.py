"""A reader for CTranslate2's `model.bin`: named, typed arrays plus aliases.

Layout (little-endian): u32 format version, string spec name, u32 spec revision,
u32 variable count, then per variable: string name, u8 rank, rank x u32 dimensions,
u8 data type, u32 byte count, the bytes; then u32 alias count and (alias, target)
string pairs. A string is a u16 length counting a trailing NUL, then the bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from stream_workers.errors import ConversionError

_DTYPES: dict[int, np.dtype[np.generic]] = {
    0: np.dtype(np.float32),
    1: np.dtype(np.int8),
    2: np.dtype(np.int16),
    3: np.dtype(np.int32),
    4: np.dtype(np.float16),
}
_MIN_VERSION = 5


@dataclass(frozen=True)
class CT2Model:
    spec: str
    variables: dict[str, npt.NDArray[np.generic]]

    def get(self, name: str) -> npt.NDArray[np.generic]:
        try:
            return self.variables[name]
        except KeyError:
            raise ConversionError(f"the CTranslate2 model has no variable {name!r}") from None


class _Cursor:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def unpack(self, fmt: str) -> tuple[int, ...]:
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values

    def string(self) -> str:
        (length,) = self.unpack("H")
        text = self.data[self.pos : self.pos + length - 1].decode("utf-8")
        self.pos += length
        return text

    def take(self, count: int) -> bytes:
        chunk = self.data[self.pos : self.pos + count]
        if len(chunk) != count:
            raise ConversionError("model.bin is truncated")
        self.pos += count
        return chunk


def read_ct2_model(path: Path) -> CT2Model:
    try:
        cursor = _Cursor(path.read_bytes())
        (version,) = cursor.unpack("I")
        if version < _MIN_VERSION:
            raise ConversionError(f"model.bin format version {version} is too old")
        spec = cursor.string()
        cursor.unpack("I")  # spec revision
        (count,) = cursor.unpack("I")
        variables: dict[str, npt.NDArray[np.generic]] = {}
        for _ in range(count):
            name = cursor.string()
            (rank,) = cursor.unpack("B")
            shape = cursor.unpack(f"{rank}I") if rank else ()
            (type_id,) = cursor.unpack("B")
            (size,) = cursor.unpack("I")
            dtype = _DTYPES.get(type_id)
            raw = cursor.take(size)
            if dtype is None:
                raise ConversionError(f"variable {name!r} has unsupported data type {type_id}")
            variables[name] = np.frombuffer(raw, dtype=dtype).reshape(shape)
        (aliases,) = cursor.unpack("I")
        for _ in range(aliases):
            alias, target = cursor.string(), cursor.string()
            variables[alias] = variables[target]
    except (struct.error, UnicodeDecodeError, ValueError) as exc:
        raise ConversionError(f"{path} is not a CTranslate2 model: {exc}") from exc
    return CT2Model(spec, variables)
