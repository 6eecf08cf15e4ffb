"""Encoding of task arguments and results.

JSON is the default because it is safe to decode from anyone and readable with plain SQL
(``args->>0``). Types JSON lacks travel as tagged objects, ``{"__type__": "datetime", "__value__": ...}``,
so a ``datetime``, ``date``, ``time``, ``UUID``, ``Decimal``, ``bytes`` or ``set`` comes back as
itself (a ``tuple`` comes back as a list, as in Celery). msgpack is optional; pickle is refused unless the app lists it in ``accept_content``, because
unpickling runs arbitrary code.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import functools
import json
import math
import pickle
import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, overload

from .errors import ContentDisallowed, SerializationError

JSON = "application/json"
MSGPACK = "application/x-msgpack"
PICKLE = "application/x-python-serialize"

_NAMES = {"json": JSON, "msgpack": MSGPACK, "pickle": PICKLE}
_BY_TYPE = {v: k for k, v in _NAMES.items()}


def _encode_default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return {"__type__": "datetime", "__value__": value.isoformat()}
    if isinstance(value, dt.date):
        return {"__type__": "date", "__value__": value.isoformat()}
    if isinstance(value, dt.time):
        return {"__type__": "time", "__value__": value.isoformat()}
    if isinstance(value, uuid.UUID):
        return {"__type__": "uuid", "__value__": str(value)}
    if isinstance(value, decimal.Decimal):
        return {"__type__": "decimal", "__value__": str(value)}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"__type__": "bytes", "__value__": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, set | frozenset):
        return {"__type__": "set", "__value__": list(value)}
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


_DECODERS: dict[str, Callable[[Any], Any]] = {
    "datetime": dt.datetime.fromisoformat,
    "date": dt.date.fromisoformat,
    "time": dt.time.fromisoformat,
    "uuid": uuid.UUID,
    "decimal": decimal.Decimal,
    "bytes": lambda v: base64.b64decode(v),
    "set": set,
}


def _decode_hook(obj: dict[str, Any]) -> Any:
    kind = obj.get("__type__")
    if kind is not None and len(obj) == 2 and "__value__" in obj:
        decoder = _DECODERS.get(kind)
        if decoder is not None:
            return decoder(obj["__value__"])
    return obj


# allow_nan=False: Python would write NaN and Infinity, which are not JSON and which jsonb refuses;
# refused here, the error names the value (see json_dumps) instead of failing the statement later.
_encoder = json.JSONEncoder(default=_encode_default, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_decoder = json.JSONDecoder(object_hook=_decode_hook)


# The C encoder behind ``_encoder``, made once: ``JSONEncoder.encode`` builds it anew on every call,
# which is three quarters of the cost of encoding a small argument list (on every delay() and every
# result). Without the circular-reference check; a circular value overflows the stack and is then
# encoded again by ``_encoder`` for its proper error.
# (c_make_encoder is CPython's _json.make_encoder, None without the C module; typeshed does not declare it)
_c_make_encoder: Callable[..., Callable[[Any, int], Iterable[str]]] | None = json.encoder.c_make_encoder  # type: ignore[attr-defined]
_c_encode = (_c_make_encoder(None, _encode_default, json.encoder.encode_basestring, None, ":", ",",
                             False, False, False)
             if _c_make_encoder is not None else None)


def json_dumps(value: Any) -> str:
    """JSON text that PostgreSQL's jsonb accepts, or ValueError naming what it could not take.

    Refused: NaN and ±Infinity (not JSON), NUL characters (jsonb cannot store ``\\u0000``) and lone
    surrogates (UTF-8 cannot encode them), each
    named by where it is (``[1]['x'] is NaN``), so that the caller's error points at the value
    instead of the database failing the whole statement (or, for a result, the worker's batch)."""
    try:
        if _c_encode is None:
            text = _encoder.encode(value)
        else:
            try:
                text = "".join(_c_encode(value, 0))
            except RecursionError:
                text = _encoder.encode(value)
    except ValueError as exc:
        found = unstorable_json_value(value)
        if found is None:
            raise
        raise ValueError(found) from exc
    # C-speed scans; the walk below runs only when there may be a NUL or a lone surrogate (which
    # UTF-8, and so the connection, cannot encode: the statement would fail)
    if "\\u0000" in text or (not text.isascii() and _LONE_SURROGATE.search(text) is not None):
        found = unstorable_json_value(value)
        if found is not None:
            raise ValueError(found)
    return text


def _describe_path(path: list[Any]) -> str:
    return "the value" if not path else "".join(f"[{p!r}]" for p in path)


def unstorable_json_value(value: Any, max_depth: int = 10_000) -> str | None:
    """Where ``value`` holds something JSON or jsonb cannot carry, as a sentence
    (``[0]['x'] is NaN, which JSON cannot carry``); None when nothing is found.

    Walks dicts (keys and values), lists, tuples and sets without recursion, so a deeply nested value
    cannot overflow the stack here; floats that are NaN or infinite and strings holding NUL are
    reported, the first one found. A container met twice (shared, or circular) is walked once."""
    stack: list[tuple[Any, list[Any]]] = [(value, [])]
    seen: set[int] = set()
    while stack:
        item, path = stack.pop()
        if isinstance(item, dict | list | tuple | set | frozenset):
            if id(item) in seen:
                continue
            seen.add(id(item))
        if isinstance(item, float):
            if math.isnan(item):
                return f"{_describe_path(path)} is NaN, which JSON cannot carry (use None or a string)"
            if math.isinf(item):
                sign = "-" if item < 0 else ""
                return (f"{_describe_path(path)} is {sign}Infinity, which JSON cannot carry "
                        f"(use None, a string or a large finite number)")
        elif isinstance(item, str):
            if "\x00" in item:
                return (f"{_describe_path(path)} contains a NUL character (\\x00), which PostgreSQL "
                        f"cannot store in JSON; remove it or send the data as bytes")
            surrogate = _LONE_SURROGATE.search(item)
            if surrogate is not None:
                return (f"{_describe_path(path)} contains a lone surrogate (\\u{ord(surrogate.group()):04x}), "
                        f"which UTF-8 cannot encode; decode the text it came from with errors='replace', "
                        f"or send the data as bytes")
        elif len(path) >= max_depth:
            continue
        elif isinstance(item, dict):
            for key, val in reversed(list(item.items())):
                if isinstance(key, str) and "\x00" in key:
                    return (f"{_describe_path(path)} has a key containing a NUL character (\\x00), which "
                            f"PostgreSQL cannot store in JSON")
                stack.append((val, [*path, key]))
        elif isinstance(item, list | tuple):
            stack.extend((v, [*path, i]) for i, v in reversed(list(enumerate(item))))
        elif isinstance(item, set | frozenset):
            stack.extend((v, [*path, "<set item>"]) for v in item)
    return None


# NUL (PostgreSQL's text cannot hold it) and lone surrogates (UTF-8 cannot encode them).
_UNSTORABLE_CHAR = re.compile("[\x00\ud800-\udfff]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    return "\\x00" if code == 0 else f"\\u{code:04x}"


def unstorable_text_char(value: str) -> str | None:
    """The first character of ``value`` PostgreSQL cannot store as text, described (``a NUL
    character (\\x00)``, ``a lone surrogate (\\udc80)``); None when there is none."""
    match = _UNSTORABLE_CHAR.search(value)
    if match is None:
        return None
    kind = "a NUL character" if match.group() == "\x00" else "a lone surrogate"
    return f"{kind} ({_escape_char(match)})"


@overload
def db_text(value: None) -> None: ...
@overload
def db_text(value: str) -> str: ...
@overload
def db_text(value: object) -> str | None: ...
def db_text(value: object) -> str | None:
    """``value`` as text PostgreSQL can store: NUL becomes the four characters ``\\x00`` and each lone
    surrogate ``\\udcxx`` (its code point, visible), so an exception's message, type, traceback or a
    retry's error is recorded instead of failing its statement. None stays None; anything that is
    not an exact ``str`` (a subclass, an object) is converted without calling its own ``__str__``."""
    if value is None:
        return None
    if type(value) is not str:
        value = str.__str__(value) if isinstance(value, str) else safe_str(value)
    if _UNSTORABLE_CHAR.search(value) is None:
        return value
    return _UNSTORABLE_CHAR.sub(_escape_char, value)


def safe_str(value: Any) -> str:
    """``str(value)`` that never raises and always returns an exact ``str``: a ``__str__`` that raises
    (or returns something odd) gives a description of that instead, so reporting a failure can
    never fail in turn."""
    try:
        text = str(value)
        return text if type(text) is str else str.__str__(text)
    except BaseException as exc:  # noqa: BLE001 - whatever __str__ does, the caller gets text
        try:
            name = type(value).__name__
        except BaseException:  # noqa: BLE001
            name = "object"
        return f"<{name} object: str() raised {type(exc).__qualname__}>"


_EMPTY = {"{}": dict, "[]": list}
# (set by JSONDecoder.__init__; typeshed does not declare it)
_scan: Callable[[str, int], tuple[Any, int]] = _decoder.scan_once  # type: ignore[attr-defined]


def json_loads(text: str | bytes | None) -> Any:
    if text is None:
        return None
    if not isinstance(text, str):  # bytes, bytearray, memoryview (str first: the common case)
        text = bytes(text).decode("utf-8")
    empty = _EMPTY.get(text)
    if empty is not None:  # the common "no kwargs" / "no headers" case, on the worker's hot path
        return empty()
    try:
        # PostgreSQL's jsonb text has no surrounding whitespace: skip JSONDecoder.decode's regexes
        value, end = _scan(text, 0)
    except StopIteration:
        return _decoder.decode(text)  # raises a proper JSONDecodeError
    return value if end == len(text) else _decoder.decode(text)


def _msgpack() -> Any:  # the msgpack module, which has no types
    try:
        import msgpack
    except ImportError:
        raise SerializationError(
            "the msgpack serializer needs the msgpack package: pip install 'sqlq[msgpack]'"
        ) from None
    return msgpack


def _msgpack_default(value: Any) -> Any:
    return _encode_default(value)


def _msgpack_hook(obj: dict[str, Any]) -> Any:
    return _decode_hook(obj)


@dataclass(frozen=True)
class Encoded:
    """One encoded value: JSON text (stored as jsonb) or bytes (stored as bytea)."""

    content_type: str
    text: str | None = None
    data: bytes | None = None


def content_type_for(name: str) -> str:
    try:
        return _NAMES[name]
    except KeyError:
        raise SerializationError(
            f"unknown serializer {name!r}; choose one of: {', '.join(sorted(_NAMES))}"
        ) from None


def check_accepted(content_type: str, accept_content: Iterable[str]) -> None:
    """Refuse to decode what the app did not opt into (pickle above all)."""
    if content_type not in _accepted_types(tuple(accept_content)):
        name = _BY_TYPE.get(content_type, content_type)
        raise ContentDisallowed(
            f"refusing to decode a {name!r} message: it is not in accept_content {sorted(accept_content)}; "
            f"add {name!r} to app.conf.accept_content if you trust every producer"
        )


@functools.lru_cache(maxsize=32)
def _accepted_types(accept_content: tuple[str, ...]) -> frozenset[str]:
    """Content types named by ``accept_content`` (serializer names or content types); cached because
    the worker checks every job it decodes."""
    return frozenset(_NAMES.get(a, a) for a in accept_content)


def encode(value: Any, serializer: str = "json") -> Encoded:
    ctype = content_type_for(serializer)
    try:
        if ctype == JSON:
            return Encoded(ctype, text=json_dumps(value))
        if ctype == MSGPACK:
            return Encoded(ctype, data=_msgpack().packb(value, default=_msgpack_default, use_bin_type=True))
        return Encoded(ctype, data=pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
    except SerializationError:
        raise
    except (TypeError, ValueError, OverflowError, pickle.PicklingError, AttributeError) as exc:
        raise SerializationError(f"cannot serialize with {serializer}: {exc}") from exc


def decode(content_type: str, text: str | None, data: bytes | None, accept_content: Iterable[str]) -> Any:
    check_accepted(content_type, accept_content)
    try:
        if content_type == JSON:
            return json_loads(text)
        if data is None:
            return None
        if content_type == MSGPACK:
            return _msgpack().unpackb(bytes(data), object_hook=_msgpack_hook, raw=False, strict_map_key=False)
        return pickle.loads(bytes(data))  # noqa: S301 - only reachable when the app accepts pickle
    except SerializationError:
        raise
    except Exception as exc:  # any decoder error means the payload is unusable
        raise SerializationError(f"cannot decode {content_type} payload: {type(exc).__name__}: {exc}") from exc


def encode_json_call(args: Sequence[Any] | None, kwargs: dict[str, Any] | None) -> tuple[str, str]:
    """``encode_call`` for the JSON serializer, as ``(args_json, kwargs_json)``: the bulk path."""
    try:
        return json_dumps(args or ()), json_dumps(kwargs) if kwargs else "{}"
    except (SerializationError, TypeError, ValueError, OverflowError):
        _raise_for_bad_argument(list(args or ()), dict(kwargs or {}), "json")
        raise


def encode_call(args: Sequence[Any], kwargs: dict[str, Any], serializer: str = "json") -> tuple[str, str | None, str | None, bytes | None]:
    """Encode a call's arguments, naming the argument that cannot be encoded.

    Returns ``(content_type, args_json, kwargs_json, payload)``: JSON arguments go to jsonb columns
    so SQL can read them; other serializers put ``[args, kwargs]`` in one bytea payload.
    """
    ctype = content_type_for(serializer)
    try:
        if ctype == JSON:
            return (ctype, *encode_json_call(args, kwargs), None)
        return ctype, None, None, encode([list(args or ()), dict(kwargs or {})], serializer).data
    except (SerializationError, TypeError, ValueError, OverflowError):
        _raise_for_bad_argument(list(args or ()), dict(kwargs or {}), serializer)
        raise


def _raise_for_bad_argument(args: list[Any], kwargs: dict[str, Any], serializer: str) -> None:
    for index, value in enumerate(args):
        try:
            encode(value, serializer)
        except SerializationError as exc:
            raise SerializationError(
                f"positional argument {index} ({type(value).__name__}) cannot be serialized with "
                f"{serializer}: {_reason(exc)}. Pass plain data (ids, strings, numbers) instead"
            ) from None
    for key, value in kwargs.items():
        try:
            encode(value, serializer)
        except SerializationError as exc:
            raise SerializationError(
                f"keyword argument {key!r} ({type(value).__name__}) cannot be serialized with "
                f"{serializer}: {_reason(exc)}. Pass plain data (ids, strings, numbers) instead"
            ) from None


def _reason(exc: SerializationError) -> str:
    """The encoder's own words (``encode`` wraps them in a SerializationError of its own)."""
    return str(exc.__cause__ or exc)


def decode_call(content_type: str, args_text: str | None, kwargs_text: str | None, payload: bytes | None,
                accept_content: Iterable[str]) -> tuple[list[Any], dict[str, Any]]:
    check_accepted(content_type, accept_content)
    if content_type == JSON:
        try:
            args = json_loads(args_text) if args_text is not None else []
            kwargs = json_loads(kwargs_text) if kwargs_text is not None else {}
        except Exception as exc:  # a bad tagged value (decimal, uuid…), nesting too deep: all unusable
            raise SerializationError(f"cannot decode JSON arguments: {type(exc).__name__}: "
                                     f"{safe_str(exc)}") from exc
    else:
        decoded = decode(content_type, None, payload, accept_content)
        if not (isinstance(decoded, list | tuple) and len(decoded) == 2):
            raise SerializationError(f"undecodable {content_type} payload: expected [args, kwargs]")
        args, kwargs = decoded
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise SerializationError(
            f"bad payload: args must be a JSON array and kwargs a JSON object, got "
            f"{type(args).__name__} and {type(kwargs).__name__}"
        )
    return args, kwargs
