"""What a schema, queue, exchange, task name or routing key may look like; a refused name says what
would be accepted."""

from __future__ import annotations

import pytest

from sqlq.errors import InvalidNameError
from sqlq.names import (
    MAX_ROUTING_KEY,
    validate_exchange,
    validate_identifier,
    validate_queue,
    validate_routing_key,
    validate_task_name,
)


@pytest.mark.parametrize("name", ["sqlq", "_private", "t_0123456789ab", "A" * 63])
def test_schema_names_accepted(name):
    assert validate_identifier(name) == name


@pytest.mark.parametrize("name", ["", "1st", "my-schema", "a.b", 'x"; DROP', "A" * 64, None, 3])
def test_schema_names_refused_say_what_is_allowed(name):
    with pytest.raises(InvalidNameError, match="use letters, digits and underscores"):
        validate_identifier(name)


@pytest.mark.parametrize("name", ["default", "video.high", "celery:events", "a-b", "0", "q" * 200])
def test_queue_and_exchange_names_accepted(name):
    assert validate_queue(name) == name and validate_exchange(name) == name


@pytest.mark.parametrize("name", ["", ".hidden", ":x", "-x", "has space", "q" * 201, "é", None])
def test_queue_and_exchange_names_refused(name):
    with pytest.raises(InvalidNameError, match="invalid queue name"):
        validate_queue(name)
    with pytest.raises(InvalidNameError, match="invalid exchange name"):
        validate_exchange(name)


@pytest.mark.parametrize("name", ["proj.tasks.add", "_t", "a:b-c", "t" * 255])
def test_task_names_accepted(name):
    assert validate_task_name(name) == name


@pytest.mark.parametrize("name", ["", "1abc", ".x", "has space", "t" * 256, None])
def test_task_names_refused(name):
    with pytest.raises(InvalidNameError, match="such as 'proj.tasks.add'"):
        validate_task_name(name)


@pytest.mark.parametrize("key", ["", "a.b.c", "*.orange.#", "(regex)+[chars]", "é" * 127, "k" * MAX_ROUTING_KEY])
def test_routing_keys_accept_any_text_up_to_255_bytes(key):
    assert validate_routing_key(key) == key


@pytest.mark.parametrize("key", ["a\x00b", "é" * 128, "k" * (MAX_ROUTING_KEY + 1), "\ud800"])
def test_routing_keys_refused(key):
    with pytest.raises(InvalidNameError, match="at most 255 UTF-8 bytes"):
        validate_routing_key(key)
    with pytest.raises(InvalidNameError, match="must be a string"):
        validate_routing_key(3)
