"""Topic matching in SQL (``<schema>.topic_matches`` / ``route_queues``) against a Python reference.

The reference below is the AMQP rule written the obvious way: a key is its dot-separated words (the
empty key has none); ``*`` is exactly one word, ``#`` zero or more, anything else matches itself.
Hypothesis generates keys and patterns full of regex metacharacters, quotes, newlines, empty words
and non-ASCII text; each example is checked in ONE query (unnest arrays) against real PostgreSQL.
"""

from __future__ import annotations

import functools

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sqlq import Exchange, Queue
from sqlq.routing import apply_routes


def words(text: str) -> list[str]:
    return [] if text == "" else text.split(".")


def topic_match(pattern: str, key: str) -> bool:
    """Reference matcher: dynamic programming over (pattern word, key word)."""
    p, k = words(pattern), words(key)

    @functools.cache
    def match(i: int, j: int) -> bool:
        if i == len(p):
            return j == len(k)
        if p[i] == "#":
            return match(i + 1, j) or (j < len(k) and match(i, j + 1))
        return j < len(k) and (p[i] == "*" or p[i] == k[j]) and match(i + 1, j + 1)

    return match(0, 0)


# Characters that break naive regex translations, plus quotes, whitespace and non-ASCII.
ALPHABET = list("ab") + list("*#") + list(".^$()[]{}|+?\\-") + ["'", '"', "%", " ", "\n", "é", "✓", "_"]
WORD = st.text(alphabet=st.sampled_from([c for c in ALPHABET if c != "."]), max_size=3)
PLAIN_WORD = st.sampled_from(["a", "b", "ab", "", "a*", "#b", "$", "a+", "(a)", "[b]", "\\", "é"])
PATTERN_WORD = st.one_of(st.just("*"), st.just("#"), PLAIN_WORD, WORD)
KEY_WORD = st.one_of(PLAIN_WORD, WORD, st.just("*"), st.just("#"))
PATTERN = st.lists(PATTERN_WORD, max_size=6).map(".".join)
KEY = st.lists(KEY_WORD, max_size=6).map(".".join)


SAMPLE_WORDS = ["a", "b", "", "*", "#", "a*", "$", "(a)", "é", "\n"]


def derive_keys(pattern: str, rnd, count: int = 2) -> list[str]:
    """Keys built from a pattern (wildcards filled in), so matches are common; half of them get one
    word replaced, so near misses are common too."""
    keys = []
    for _ in range(count):
        out: list[str] = []
        for w in words(pattern):
            if w == "*":
                out.append(rnd.choice(SAMPLE_WORDS))
            elif w == "#":
                out.extend(rnd.choice(SAMPLE_WORDS) for _ in range(rnd.randint(0, 2)))
            else:
                out.append(w)
        if out and rnd.random() < 0.5:
            out[rnd.randrange(len(out))] = rnd.choice(SAMPLE_WORDS)
        keys.append(".".join(out))
    return keys


# Hypothesis draws a few patterns and keys; every pattern is checked against every key (the drawn
# ones and keys derived from the patterns), so one example is a few hundred checks in one query.
PATTERNS = st.lists(PATTERN, min_size=3, max_size=8)
KEYS = st.lists(KEY, min_size=3, max_size=8)
RANDOM = st.randoms(use_true_random=False)

PROPERTY = settings(max_examples=150, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def test_reference_matcher_follows_the_amqp_examples():
    """The oracle itself, on the examples of the AMQP/RabbitMQ tutorials and the edge cases."""
    assert topic_match("*.orange.*", "quick.orange.rabbit")
    assert not topic_match("*.orange.*", "quick.orange.male.rabbit")
    assert topic_match("lazy.#", "lazy.orange.male.rabbit")
    assert topic_match("lazy.#", "lazy")
    assert topic_match("#", "") and not topic_match("*", "")
    assert topic_match("a.#.b", "a.b") and topic_match("a.#.b", "a.x.y.b")
    assert topic_match("*", "") is False and topic_match("", "")


KNOWN = [
    ("*.orange.*", "quick.orange.rabbit", True),
    ("*.*.rabbit", "quick.orange.rabbit", True),
    ("lazy.#", "lazy", True),
    ("lazy.#", "lazyx.y", False),
    ("*.orange.*", "quick.orange.male.rabbit", False),
    ("#", "", True),
    ("#", "a..b", True),
    ("*", "", False),
    ("a.*.c", "a..c", True),
    ("a.b", "a.b.", False),
    ("a.b.", "a.b.", True),
    ("a.b", "a+b", False),        # '.' is a separator, never a regex wildcard
    ("a+", "aa", False),          # '+' is literal
    ("(a|b)", "a", False),        # so are groups and alternations
    ("[ab]", "[ab]", True),
    ("x\\", "x\\", True),
    ("^.$", "^.$", True),
    ("a*", "ab", False),          # '*' is a wildcard only as a whole word
    ("a*", "a*", True),
    ("a.#.#.b", "a.b", True),
]


def test_topic_matches_known_cases(app, raw_conn):
    got = _sql_matches(app, raw_conn, [(p, k) for p, k, _ in KNOWN])
    assert got == [expected for _, _, expected in KNOWN]
    assert [topic_match(p, k) for p, k, _ in KNOWN] == got


def _sql_matches(app, conn, pairs: list[tuple[str, str]]) -> list[bool]:
    rows = conn.execute(
        f'SELECT "{app.conf.schema}".topic_matches(p, k) '
        f"FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS t(p, k, n) ORDER BY n",
        [[p for p, _ in pairs], [k for _, k in pairs]],
    ).fetchall()
    return [r[0] for r in rows]


@PROPERTY
@given(patterns=PATTERNS, keys=KEYS, rnd=RANDOM)
def test_topic_matches_agrees_with_reference(app, raw_conn, patterns, keys, rnd):
    keys = keys + [k for p in patterns for k in derive_keys(p, rnd)]
    pairs = [(p, k) for p in patterns for k in keys]
    got = _sql_matches(app, raw_conn, pairs)
    mismatches = [(p, k, g) for (p, k), g in zip(pairs, got, strict=True) if g != topic_match(p, k)]
    assert not mismatches


@pytest.fixture
def tx_conn(database_url):
    """A connection whose transactions the test rolls back (one per Hypothesis example)."""
    with psycopg.connect(database_url) as conn:
        yield conn


@PROPERTY
@given(bindings=st.lists(st.tuples(PATTERN, st.sampled_from(["q0", "q1", "q2", "q3"])), min_size=1, max_size=8),
       keys=KEYS, rnd=RANDOM)
def test_route_queues_on_a_topic_exchange_agrees_with_reference(app, tx_conn, bindings, keys, rnd):
    """The whole router: bindings in the table, every key routed in one query, then rolled back."""
    keys = keys + [k for pattern, _ in bindings for k in derive_keys(pattern, rnd)]
    try:
        app.store.declare_routes(tx_conn, [("t", "topic", None)], [("t", k, q) for k, q in bindings])
        rows = tx_conn.execute(f'SELECT "{app.conf.schema}".route_queues(\'t\', k) '
                               f"FROM unnest(%s::text[]) WITH ORDINALITY AS u(k, n) ORDER BY n", [keys]).fetchall()
    finally:
        tx_conn.rollback()
    for key, (got,) in zip(keys, rows, strict=True):
        expected = sorted({q for pattern, q in bindings if topic_match(pattern, key)})
        assert got == expected, (key, bindings)


def test_publish_routes_by_topic_like_the_reference(app):
    """End to end through Python's delay(): the jobs land exactly in the queues the reference picks."""
    media = Exchange("media", type="topic")
    patterns = {"video": "media.video.#", "hd": "*.*.hd", "all": "#", "audio": "media.audio.*",
                "exact": "media.video"}
    apply_routes(app, [Queue(q, media, routing_key=p) for q, p in patterns.items()])
    task = app.task(name="tests.topic.noop")(lambda: None)
    keys = ["media.video", "media.video.hd", "media.audio.mp3", "x.y.hd", "media.audio", "", "media"]
    for key in keys:
        result = task.apply_async(exchange="media", routing_key=key)
        expected = sorted(q for q, p in patterns.items() if topic_match(p, key))
        got = sorted(getattr(result, "queues", None) or _queue_of(app, result.id))
        assert got == expected, key


def _queue_of(app, job_id: str) -> list[str]:
    with app.connection() as conn:
        return [r[0] for r in conn.execute(f'SELECT queue FROM "{app.conf.schema}".jobs WHERE id = %s',
                                           [job_id]).fetchall()]
