"""Array parameters in PostgreSQL's binary format, encoded by sqlq itself.

FINISH_OK sends its three arrays this way: psycopg adapting three lists of a few hundred items each
cost more per job than running a noop task, and the server parsing the text forms of a ``uuid[]``
and a ``jsonb[]`` cost it more than the binary encoding costs the worker. Each array is a ``bytes``
subclass that psycopg passes through untouched, with the array type's oid.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import psycopg
from psycopg.adapt import Dumper


class BinaryArray(bytes):
    """An array parameter already in PostgreSQL's binary format."""

    oid = 0


class UuidArray(BinaryArray):
    oid = 2951  # uuid[]


class Int4Array(BinaryArray):
    oid = 1007  # int4[]


class TextArray(BinaryArray):
    oid = 1009  # text[]


def _register_dumpers() -> None:
    for cls in (UuidArray, Int4Array, TextArray):
        dumper = type(f"{cls.__name__}Dumper", (Dumper,), {
            "format": psycopg.pq.Format.BINARY, "oid": cls.oid, "dump": lambda self, obj: obj})
        psycopg.adapters.register_dumper(cls, dumper)


_register_dumpers()
_ARRAY_HEADER = struct.Struct(">iiiii")  # ndim, has-nulls flag, element type oid, length, lower bound
_NULL_ELEMENT = b"\xff\xff\xff\xff"
_JSON_NULL_ELEMENT = b"\x00\x00\x00\x04null"


def uuid_array(ids: Sequence[str]) -> UuidArray:
    """uuid[] in binary: each element is its length (16) and 16 bytes. The hex of all ids is decoded
    at once and interleaved with the lengths by strided slice assignments, so the work in Python
    does not grow with the batch. Raises ValueError for a malformed id."""
    n = len(ids)
    raw = bytes.fromhex("".join(ids).replace("-", ""))
    if len(raw) != 16 * n or not n:
        raise ValueError("not a batch of uuids")
    body = bytearray(20 * n)
    body[3::20] = b"\x10" * n
    for k in range(16):
        body[4 + k::20] = raw[k::16]
    return UuidArray(_ARRAY_HEADER.pack(1, 0, 2950, n, 1) + body)


def int4_array(values: Sequence[int]) -> Int4Array:
    """int4[] in binary: each element is its length (4) and the big-endian value."""
    n = len(values)
    raw = struct.pack(f">{n}i", *values)
    body = bytearray(8 * n)
    body[3::8] = b"\x04" * n
    for k in range(4):
        body[4 + k::8] = raw[k::4]
    return Int4Array(_ARRAY_HEADER.pack(1, 0, 23, n, 1) + body)


def text_array(values: Sequence[str | None]) -> TextArray:
    """text[] in binary (UTF-8): each element is its length (-1: NULL) and its bytes."""
    parts = [_ARRAY_HEADER.pack(1, 1 if None in values else 0, 25, len(values), 1)]
    append = parts.append
    for value in values:
        if value is None:
            append(_NULL_ELEMENT)
        elif value == "null":  # what most tasks return
            append(_JSON_NULL_ELEMENT)
        else:
            data = value.encode()
            append(len(data).to_bytes(4, "big"))
            append(data)
    return TextArray(b"".join(parts))
