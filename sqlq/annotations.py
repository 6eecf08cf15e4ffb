"""``task_annotations``: attributes set on registered tasks from the configuration, as Celery's are.

Celery lets the configuration change any task's attributes without touching its code
(``task_annotations = {'tasks.add': {'rate_limit': '10/s'}}``). The setting is one annotation or a
list of them, each one of:

* a dict mapping a task name, or ``'*'`` for every task, to the attributes to set;
* an object with ``annotate(task)`` returning a dict of attributes, or None when it has none for
  that task (Celery's form); such an object may also have ``annotate_any()`` for every task;
* a callable ``f(task)`` returning the same;
* a dotted path (``'proj.annotations.Limits'``) to a class or object of one of those kinds.

For each task, as in Celery, the first annotation that matches its name is applied, then the first
``'*'`` one (so ``'*'`` wins where both set an attribute). A name a task does not have is an error:
a misspelt attribute would otherwise be set and never read.
"""

from __future__ import annotations

import importlib
import inspect
import types
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from .errors import ConfigurationError

if TYPE_CHECKING:
    from .task import Task

#: A prepared annotation: task → attributes for that task (or None).
Annotation = tuple[Callable[["Task"], "Mapping[str, Any] | None"], Callable[[], "Mapping[str, Any] | None"]]


def prepare(setting: Any) -> list[Annotation]:
    """The ``task_annotations`` setting as a list of (for-this-task, for-any-task) lookups, checked
    once so that applying it to each task only looks things up."""
    if setting is None:
        return []
    items = list(setting) if isinstance(setting, list | tuple) else [setting]
    return [_prepare_one(item) for item in items]


def _prepare_one(item: Any) -> Annotation:
    if isinstance(item, str):
        item = _import(item)
        if isinstance(item, type):
            item = item()
    if isinstance(item, Mapping):
        mapping = item
        for key, attrs in mapping.items():
            if not isinstance(key, str) or not isinstance(attrs, Mapping):
                raise ConfigurationError(
                    f"task_annotations maps a task name (or '*') to a dict of attributes, "
                    f"e.g. {{'tasks.add': {{'rate_limit': '10/s'}}}}; got {key!r}: {attrs!r}"
                )
        return (lambda task: mapping.get(task.name)), (lambda: mapping.get("*"))
    annotate = getattr(item, "annotate", None)
    if callable(annotate):
        annotate_any = getattr(item, "annotate_any", None)
        return annotate, (annotate_any if callable(annotate_any) else _nothing)
    if callable(item):
        return item, _nothing
    raise ConfigurationError(
        f"task_annotations entry {item!r} is not a dict, an object with annotate(task), a callable or "
        f"a dotted path to one; e.g. task_annotations={{'tasks.add': {{'rate_limit': '10/s'}}}}"
    )


def _nothing() -> None:
    return None


def _import(path: str) -> Any:
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigurationError(f"task_annotations: cannot import {path!r} ({exc}); give module.attr") from None


def matching(annotations: list[Annotation], task: Task) -> Iterator[Mapping[str, Any]]:
    """The attribute dicts that apply to ``task``: the first match for its name, then the first
    match for any task (Celery's order)."""
    for for_task, _ in annotations:
        found = _checked(for_task(task), task)
        if found:
            yield found
            break
    for _, for_any in annotations:
        found = _checked(for_any(), task)
        if found:
            yield found
            break


def _checked(value: Any, task: Task) -> Mapping[str, Any] | None:
    if value is None or isinstance(value, Mapping):
        return value
    raise ConfigurationError(
        f"a task_annotations entry returned {value!r} for task {task.name!r}; it must return a dict "
        f"of attributes or None"
    )


def apply(annotations: list[Annotation], task: Task) -> None:
    """Set the attributes ``annotations`` give ``task``. A function given for a method (Celery's
    ``{'*': {'on_failure': my_on_failure}}``) is bound to the task, as Celery's class attribute would be."""
    for attrs in matching(annotations, task):
        for attr, value in attrs.items():
            if attr.startswith("@"):
                raise ConfigurationError(
                    f"task_annotations for {task.name!r}: Celery's '@{attr[1:]}' (wrap a method) is not "
                    f"supported; give the method itself, {{'{attr[1:]}': function}}, or subclass the task"
                )
            current = getattr(task, attr, _MISSING)
            if current is _MISSING or attr.startswith("_"):
                raise ConfigurationError(
                    f"task_annotations sets {attr!r} on task {task.name!r}, which sqlq tasks do not have; "
                    f"check the spelling (e.g. rate_limit, time_limit, soft_time_limit, max_retries, queue, "
                    f"acks_late, ignore_result)"
                )
            if inspect.ismethod(current) and inspect.isfunction(value):
                value = types.MethodType(value, task)
            setattr(task, attr, value)


_MISSING = object()
