"""Typed tasks, checked by mypy and pyright in ``make lint`` (never run: it is not collected).

Each line marked ``# type: ignore[...]`` must be an error for both checkers: mypy (strict, with
``warn_unused_ignores``) and pyright (``reportUnnecessaryTypeIgnoreComment``) fail on an ignore
that suppresses nothing, so a negative case that stops being an error fails the lint. Each
``assert_type`` is a positive case."""

from __future__ import annotations

from typing import Any, assert_type

from sqlq import App, AsyncResult, Task
from sqlq.result import GroupResult

app = App("typing_check")


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="typing_check.greet", queue="mail")
def greet(name: str, *, punctuation: str = "!") -> str:
    return f"hello {name}{punctuation}"


@app.task(bind=True, max_retries=5)
def scale(self: Task[Any, Any], value: float, factor: float = 2.0) -> float:
    return value * factor


# a task is its function: a local call is typed as the function is
assert_type(add(1, 2), int)
assert_type(add(1, 2), int)
assert_type(greet("ann", punctuation="?"), str)
assert_type(scale(1.5), float)  # (bind=True: self is not the caller's to give)

# delay() checks the call against the function's parameters
sent = add.delay(1, 2)
assert_type(sent, AsyncResult[int] | GroupResult)
add.delay(1, "x")  # type: ignore[arg-type]
add.delay(1)  # type: ignore[call-arg]
add.delay(1, 2, 3)  # type: ignore[call-arg]
greet.delay("bob", punctuation=1)  # type: ignore[arg-type]
greet.delay("bob", colour="red")  # type: ignore[call-arg]
scale.delay(2.0, factor=3.0)
scale.delay("2")  # type: ignore[arg-type]
add("1", 2)  # type: ignore[arg-type]

# a result of an AsyncResult[R] is an R
result: AsyncResult[int] = app.AsyncResult("0190a0c0-0000-7000-8000-000000000000")
assert_type(result.get(timeout=1), int)
assert_type(AsyncResult[str]("some-id").get(), str)
if isinstance(sent, AsyncResult):
    assert_type(sent.get(), int)
    wrong: str = sent.get()  # type: ignore[assignment]

# apply_async keeps Celery's (args, kwargs) tuples: its arguments are not checked statically
assert_type(add.apply_async((1, 2), countdown=5), AsyncResult[int] | GroupResult)
