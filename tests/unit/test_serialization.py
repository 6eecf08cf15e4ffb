"""The codec on its own: tagged types round-trip through JSON and msgpack; decoding refuses a content
type the app does not accept and names a payload it cannot read."""

from __future__ import annotations

import datetime as dt

import pytest

from sqlq import serialization
from sqlq.errors import ContentDisallowed, SerializationError


def test_codec_round_trips_the_other_tagged_types():
    for serializer in ("json", "msgpack"):
        value = {"t": dt.time(23, 59, 1), "s": {1, 2, 3}, "tuple": (1, 2)}
        encoded = serialization.encode(value, serializer)
        decoded = serialization.decode(encoded.content_type, encoded.text, encoded.data, [serializer])
        assert decoded == {"t": dt.time(23, 59, 1), "s": {1, 2, 3}, "tuple": [1, 2]}


def test_decoding_refuses_what_is_not_accepted_and_reports_garbage():
    with pytest.raises(ContentDisallowed, match="add 'pickle' to app.conf.accept_content"):
        serialization.decode(serialization.PICKLE, None, b"\x80\x04K\x01.", ["json"])
    with pytest.raises(SerializationError, match="cannot decode application/x-msgpack payload"):
        serialization.decode(serialization.MSGPACK, None, b"\xc1", ["msgpack"])
    with pytest.raises(SerializationError, match="args must be a JSON array"):
        serialization.decode_call(serialization.JSON, '{"a": 1}', "{}", None, ["json"])
