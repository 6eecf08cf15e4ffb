"""``@app.task(pydantic=True)``: Celery 5.5's argument validation and result dumping with pydantic.

A job's arguments arrive as JSON data, so a parameter annotated with a pydantic model receives a
dict; with ``pydantic=True`` the task's function is wrapped (once, when the task is defined, as
Celery's ``pydantic_wrapper`` does) so that each such argument goes through
``Model.model_validate(value, strict=..., context=...)`` before the body runs, and a returned model
whose class is the return annotation is dumped with ``model_dump(**pydantic_dump_kwargs)`` (default
``mode='json'``) before the result serializer sees it. The wrapper is the task's ``run``, so the
worker, eager calls and a plain call all go through it.

The call side differs from Celery on purpose: Celery's JSON serializer refuses a model given to
``delay()`` (its guide passes a dict), while sqlq dumps a model given as a top-level argument of a
pydantic task (``x.delay(ArgModel(value=1))``), since the worker validates it back anyway.

pydantic is an optional dependency (``pip install sqlq-pg[pydantic]``), imported only by a task
that asks for it.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from .errors import TaskDefinitionError

#: The options ``@app.task`` takes for this feature, with Celery's names.
OPTIONS = ("pydantic", "pydantic_strict", "pydantic_context", "pydantic_dump_kwargs")


def _pydantic(task_name: str) -> Any:
    try:
        return importlib.import_module("pydantic")
    except ModuleNotFoundError:
        raise TaskDefinitionError(
            f"@app.task(pydantic=True) for {task_name!r} needs pydantic, which is not installed; "
            f"pip install 'sqlq-pg[pydantic]' (or pip install pydantic)") from None


def _unoptional(annotation: Any) -> Any:
    """``X`` for ``Optional[X]`` / ``X | None`` (Celery's ``get_optional_arg``), else the annotation."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(members) == 1 and len(typing.get_args(annotation)) == 2:
            return members[0]
    return annotation


def _model_class(annotation: Any, base: type) -> type | None:
    """The pydantic model class an annotation names (directly or as Optional), else None: unions
    of several models and generics (``list[Model]``) are left alone, as in Celery."""
    annotation = _unoptional(annotation)
    if isinstance(annotation, type) and issubclass(annotation, base):
        return annotation
    return None


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    """The function's annotations, string annotations (``from __future__ import annotations``)
    resolved in its module; those that cannot be resolved stay as written (and so are not models)."""
    try:
        return typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001 - a name only a type checker sees: fall back to the raw annotations
        return dict(getattr(fn, "__annotations__", {}))


def wrap(fn: Callable[..., Any], *, app: Any, task_name: str, strict: bool = False,
         context: Mapping[str, Any] | None = None,
         dump_kwargs: Mapping[str, Any] | None = None) -> Callable[..., Any]:
    """``fn`` validating its model-annotated arguments and dumping its returned model (the module's
    docstring says how). Raises ``TaskDefinitionError`` when pydantic is not installed or an option
    has the wrong type."""
    pydantic = _pydantic(task_name)
    base_model: type = pydantic.BaseModel
    if context is not None and not isinstance(context, Mapping):
        raise TaskDefinitionError(f"pydantic_context= of task {task_name!r} must be a dict, got {context!r}")
    if dump_kwargs is not None and not isinstance(dump_kwargs, Mapping):
        raise TaskDefinitionError(
            f"pydantic_dump_kwargs= of task {task_name!r} must be a dict of model_dump() arguments, got {dump_kwargs!r}")
    dump = {"mode": "json", **(dump_kwargs or {})}
    validation_context = {**(context or {}), "celery_app": app, "celery_task_name": task_name}
    signature = inspect.signature(fn)
    hints = _hints(fn)
    # per model-annotated parameter: its position (None: keyword-only), its model, and whether None
    # passes (only an Optional annotation lets it, as in Celery); *args/**kwargs are left alone
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    fields: list[tuple[str, int | None, Any, bool]] = []
    for index, (name, parameter) in enumerate(signature.parameters.items()):
        model = _model_class(hints.get(name), base_model)
        if model is None or parameter.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        fields.append((name, index if parameter.kind in positional else None, model,
                       _unoptional(hints.get(name)) is not hints.get(name)))
    returned: Any = _model_class(hints.get("return"), base_model)

    def validate(model: Any, value: Any, optional: bool) -> Any:
        if value is None and optional:
            return None
        return model.model_validate(value, strict=strict, context=validation_context)

    def convert(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """The arguments with the models validated, where they were given (a default is not, as
        with Celery's bound arguments); a call that does not fit fails in the function itself."""
        listed: list[Any] | None = None
        for name, index, model, optional in fields:
            if index is not None and index < len(args):
                if listed is None:
                    listed = list(args)
                listed[index] = validate(model, args[index], optional)
            elif name in kwargs:
                kwargs = {**kwargs, name: validate(model, kwargs[name], optional)}
        return (args if listed is None else listed), kwargs

    def dumped(value: Any) -> Any:
        if returned is not None and isinstance(value, returned):
            return cast("Any", value).model_dump(**dump)
        return value

    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            call_args, call_kwargs = convert(args, kwargs)
            return dumped(await fn(*call_args, **call_kwargs))

        return async_wrapper

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        call_args, call_kwargs = convert(args, kwargs)
        return dumped(fn(*call_args, **call_kwargs))

    return wrapper


def dump_call(args: Sequence[Any] | None, kwargs: Mapping[str, Any] | None
              ) -> tuple[Sequence[Any] | None, Mapping[str, Any] | None]:
    """A call's top-level pydantic models as JSON data (``model_dump(mode='json')``), what the
    worker's validation turns back into models; other values are left as they are."""
    pydantic = importlib.import_module("pydantic")
    base_model = pydantic.BaseModel

    def plain(value: Any) -> Any:
        return value.model_dump(mode="json") if isinstance(value, base_model) else value

    if args is not None and isinstance(args, list | tuple) and any(isinstance(a, base_model) for a in args):
        args = [plain(a) for a in args]
    if isinstance(kwargs, Mapping) and any(isinstance(v, base_model) for v in kwargs.values()):
        kwargs = {k: plain(v) for k, v in kwargs.items()}
    return args, kwargs
