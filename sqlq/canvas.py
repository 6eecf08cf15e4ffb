"""Signatures: a task call written down (task name, arguments, options) to be sent or run later.

A ``Signature`` is what Celery's ``add.s(2, 2)`` is: a ``dict`` with the keys ``task``, ``args``,
``kwargs``, ``options``, ``immutable`` and ``subtask_type``, so it travels as plain JSON (as a task
argument, in a table, to another process) and ``signature(d)`` turns the dict back into one.

Partial application follows Celery: arguments given when the signature is sent are put *before*
its own (``add.s(2).delay(4)`` runs ``add(4, 2)``), keyword arguments and options given then win
over its own, and an immutable signature (``add.si(2, 2)``) ignores new arguments, though not new
options. ``sig | other`` chains them (``chain``; a group followed by a step is a ``chord``); ``|``
with a plain ``dict`` raises Python's usual TypeError (dict's own ``|`` would merge the two).
``chain``, ``chord`` and callbacks (``link``/``link_error``) are run by the database
(``sqlq.workflows``).

``group(sig, ...)`` is a signature too (``subtask_type='group'``, its members under
``kwargs['tasks']``, as Celery writes it), so a group survives a JSON round trip as well; sending
one writes all its members in one statement, sharing one ``group_id``, and returns a
``GroupResult``.
"""

from __future__ import annotations

import builtins
import copy
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from .errors import ConfigurationError
from .names import validate_task_name

if TYPE_CHECKING:
    from .app import App
    from .eager import EagerGroupResult, EagerResult
    from .result import AsyncResult, GroupResult
    from .task import Task

#: The keys of a signature's dict, as Celery writes them.
KEYS = ("task", "args", "kwargs", "options", "immutable", "subtask_type")


def _is_task(value: Any) -> bool:
    from .task import Task

    return isinstance(value, Task)


def _checked_args(args: Any, name: str) -> tuple[Any, ...]:
    if args is None:
        return ()
    if type(args) is tuple:  # (the common case, before the ABC check: a group builds thousands)
        return args
    if isinstance(args, str | bytes) or not isinstance(args, Sequence):
        raise ConfigurationError(
            f"the args of a signature of {name} must be a list or tuple, not {type(args).__name__}; "
            f"write signature({name!r}, args=(x,)) for one argument"
        )
    return tuple(args)


def _checked_mapping(value: Any, what: str, name: str) -> dict[str, Any]:
    if not value:
        if value is None or type(value) is dict:
            return {}
    if type(value) is not dict and not isinstance(value, Mapping):
        raise ConfigurationError(f"the {what} of a signature of {name} must be a dict, not {type(value).__name__}")
    bad = [k for k in value if not isinstance(k, str)]
    if bad:
        raise ConfigurationError(f"the {what} of a signature of {name} must have string keys, got {bad[0]!r}")
    return dict(value)


class Signature(dict[str, Any]):
    """One task call, not sent yet: ``Signature(add, (2, 2), {}, {"countdown": 10})``.

    ``task`` is a ``Task`` or a task name. The app is the task's when a ``Task`` is given, else
    ``app=``, else the current app (``sqlq.current.get_current_app``), looked up when the signature
    is used, so a signature read back from JSON in another process uses that process's app.
    Extra keyword arguments are options, as in Celery (``Signature("proj.add", (1,), countdown=5)``).
    """

    #: subtask_type → the Signature subclass ``from_dict`` rebuilds (chains, groups: issue #13).
    TYPES: ClassVar[dict[str, type[Signature]]] = {}

    def __init__(self, task: Task | str | Mapping[str, Any] | None = None, args: Sequence[Any] | None = None,
                 kwargs: Mapping[str, Any] | None = None, options: Mapping[str, Any] | None = None, *,
                 immutable: bool = False, subtask_type: str | None = None, app: App | None = None,
                 **extra_options: Any):
        if type(task) is not str and isinstance(task, Mapping):  # Celery accepts a signature's dict
            d = dict(task)
            task = d.get("task")
            args = d.get("args") if args is None else args
            kwargs = d.get("kwargs") if kwargs is None else kwargs
            options = d.get("options") if options is None else options
            immutable = bool(d.get("immutable", immutable))
            subtask_type = d.get("subtask_type", subtask_type)
        self._type: Task | None = None
        if _is_task(task):
            self._type = task  # type: ignore[assignment]  # (narrowed by _is_task)
            name = self._type.name  # type: ignore[union-attr]
            app = app or self._type.app  # type: ignore[union-attr]
        elif isinstance(task, str):
            name = validate_task_name(task)
        else:
            raise ConfigurationError(
                f"a signature needs a task or a task name, not {type(task).__name__}; "
                f"write signature('proj.tasks.add', args=(2, 2)) or add.s(2, 2)"
            )
        merged_options = _checked_mapping(options, "options", name)
        merged_options.update(extra_options)
        self._app = app
        super().__init__(task=name, args=_checked_args(args, name),
                         kwargs=_checked_mapping(kwargs, "kwargs", name), options=merged_options,
                         immutable=bool(immutable), subtask_type=subtask_type)

    # reading -----------------------------------------------------------------------------------

    @property
    def task(self) -> str:
        """The task's name (Celery's ``sig.task``)."""
        return str(self["task"])

    @property
    def name(self) -> str:
        return str(self["task"])

    @property
    def args(self) -> tuple[Any, ...]:
        return tuple(self["args"])

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self["kwargs"])

    @property
    def options(self) -> dict[str, Any]:
        """The options the signature is sent with (``apply_async``'s keyword arguments)."""
        return dict(self["options"])

    @property
    def immutable(self) -> bool:
        return bool(self["immutable"])

    @property
    def subtask_type(self) -> str | None:
        value = self["subtask_type"]
        return None if value is None else str(value)

    @property
    def app(self) -> App:
        """The task's app, ``app=``, or the current app at the moment of use."""
        if self._app is not None:
            return self._app
        from .current import get_current_app

        return get_current_app()

    @property
    def type(self) -> Task:
        """The registered ``Task`` (Celery's ``sig.type``); NotRegistered, saying how to fix it, when
        this process does not have it."""
        if self._type is not None:
            return self._type
        return self.app.tasks[self.name]

    def _local_task(self) -> Task | None:
        """The task object when this process has it (given, or registered in the app), else None."""
        if self._type is not None:
            return self._type
        return self.app.tasks.get(self.name)

    def __repr__(self) -> str:
        parts = [repr(a) for a in self["args"]] + [f"{k}={v!r}" for k, v in self["kwargs"].items()]
        return f"{self.name}({', '.join(parts)})"

    # changing ----------------------------------------------------------------------------------

    def set(self, immutable: bool | None = None, **options: Any) -> Signature:
        """Add options (``sig.set(countdown=10, queue='low')``); returns the signature itself."""
        if immutable is not None:
            self["immutable"] = bool(immutable)
        self["options"].update(options)
        return self

    def set_immutable(self, immutable: bool) -> None:
        self["immutable"] = bool(immutable)

    def _merge(self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
               options: Mapping[str, Any] | None = None) -> tuple[tuple[Any, ...], dict[str, Any], dict[str, Any]]:
        """Arguments, keyword arguments and options of a call that adds ``args``/``kwargs``/``options``
        to this signature: new args go first, new kwargs and options win; an immutable signature
        takes new options only."""
        name = self.name
        merged_options = dict(self["options"])
        merged_options.update(_checked_mapping(options, "options", name))
        if self.immutable:
            return self.args, self.kwargs, merged_options
        new_args = _checked_args(args, name)
        merged_kwargs = dict(self["kwargs"])
        merged_kwargs.update(_checked_mapping(kwargs, "kwargs", name))
        return new_args + self.args, merged_kwargs, merged_options

    def clone(self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None, *,
              immutable: bool | None = None, **options: Any) -> Signature:
        """A new signature with ``args`` put first, ``kwargs`` and ``options`` merged (an immutable
        signature keeps its arguments); this one is left as it is. ``immutable=`` sets the clone's
        flag, as in ``set()``."""
        new_args, new_kwargs, new_options = self._merge(args, kwargs, options)
        clone = type(self).from_dict({**self, "args": new_args, "kwargs": new_kwargs,
                                      "options": copy.deepcopy(new_options),
                                      "immutable": self.immutable if immutable is None else bool(immutable)},
                                     app=self._app)
        clone._type = self._type
        return clone

    def __copy__(self) -> Signature:
        return self.clone()

    def __deepcopy__(self, memo: dict[int, Any]) -> Signature:
        # the app and the task object are shared, never copied (copying an App would copy its pools)
        clone = type(self).from_dict(copy.deepcopy(dict(self), memo), app=self._app)
        clone._type = self._type
        return clone

    def __reduce__(self) -> tuple[Callable[..., Signature], tuple[dict[str, Any]]]:
        # pickled as its dict: the receiving process uses its own app (as after a JSON round trip)
        return _rebuild, (dict(self),)

    # chains: Celery's | ---------------------------------------------------------------------------

    def __or__(self, other: Any) -> Any:
        """``a.s() | b.s()`` is ``chain(a.s(), b.s())``; a group followed by a step is a chord, as in
        Celery. Anything but a signature is Python's usual TypeError (a plain ``dict`` would merge)."""
        if isinstance(other, Signature):
            return _chained(self, other)
        return NotImplemented if not isinstance(other, Mapping) else _no_or(self, other)

    def __ror__(self, other: Any) -> Any:
        if isinstance(other, Signature):
            return _chained(other, self)
        return _no_or(other, self)

    def __ior__(self, other: Any) -> Any:
        raise TypeError(f"unsupported operand type(s) for |=: {type(self).__name__!r} and {type(other).__name__!r}")

    def __invert__(self) -> Any:
        """Celery's ``~sig``: send it and wait for its result (``sig.delay().get()``)."""
        return self.apply_async().get()

    # callbacks -----------------------------------------------------------------------------------

    def _append_option(self, key: str, value: Any) -> Any:
        if not isinstance(value, Signature):
            value = Signature.from_dict(value, app=self._app) if isinstance(value, Mapping) else value
        if not isinstance(value, Signature):
            raise ConfigurationError(f"{key} takes a signature (add.s()), not {type(value).__name__}")
        items = self["options"].get(key)
        if items is None:
            items = []
        elif isinstance(items, Mapping):
            items = [items]
        else:
            items = list(items)
        if value not in items:
            items.append(value)
        self["options"][key] = items
        return value

    def link(self, callback: Any) -> Any:
        """Run ``callback`` with this task's result (first, unless immutable) once it succeeds;
        returns the callback (Celery's ``sig.link``). The database enqueues it in the transaction
        that records the success."""
        return self._append_option("link", callback)

    def link_error(self, errback: Any) -> Any:
        """Run ``errback`` if this task fails (``(request, exc, traceback)``, or ``(task_id)`` for an
        errback taking one argument, as Celery decides); returns the errback."""
        return self._append_option("link_error", errback)

    def on_error(self, errback: Any) -> Signature:
        """``link_error(errback)``, returning this signature (Celery's)."""
        self.link_error(errback)
        return self

        # from and to plain data --------------------------------------------------------------------

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], app: App | None = None) -> Signature:
        """The signature a dict describes (as ``json.loads(json.dumps(sig))`` gives it back).

        A dict with a ``subtask_type`` is rebuilt by the subclass registered for that type; an
        unknown type is an error naming it."""
        if not isinstance(d, Mapping):
            raise ConfigurationError(f"a signature is read from a dict, not {type(d).__name__}")
        unknown = set(d) - set(KEYS)
        if unknown:
            raise ConfigurationError(
                f"not a signature: unknown key(s) {', '.join(sorted(map(str, unknown)))}; a signature's dict "
                f"has the keys {', '.join(KEYS)}"
            )
        if "task" not in d:
            raise ConfigurationError("not a signature: the dict has no 'task' key (the task's name)")
        subtask_type = d.get("subtask_type")
        target: builtins.type[Signature] = cls
        if subtask_type is not None:
            found = Signature.TYPES.get(str(subtask_type))
            if found is None:
                raise ConfigurationError(
                    f"unknown subtask_type {subtask_type!r} in a signature of {d.get('task')!r}; this sqlq "
                    f"reads plain signatures (subtask_type None) and {sorted(Signature.TYPES) or 'no other types'}"
                )
            target = found
        return target(d.get("task"), d.get("args"), d.get("kwargs"), d.get("options"),
                      immutable=bool(d.get("immutable", False)), subtask_type=subtask_type, app=app)

    @classmethod
    def register_type(cls, name: str) -> Callable[[builtins.type[Signature]], builtins.type[Signature]]:
        """Class decorator: ``from_dict`` rebuilds dicts whose ``subtask_type`` is ``name`` with it."""
        def register(subclass: builtins.type[Signature]) -> builtins.type[Signature]:
            Signature.TYPES[name] = subclass
            return subclass

        return register

    # running -----------------------------------------------------------------------------------

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the task here and now, as calling the task does (no job, no eager machinery)."""
        call_args, call_kwargs, _ = self._merge(args, kwargs)
        return self.type(*call_args, **call_kwargs)

    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult | GroupResult:
        """``apply_async(args, kwargs)``: send with the signature's own options."""
        return self.apply_async(args, kwargs)

    def apply_async(self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
                    **options: Any) -> AsyncResult | GroupResult:
        """Send the call: ``args`` go before the signature's own, ``kwargs`` and ``options`` win over
        its own. A task this process has is sent through ``Task.apply_async`` (so its defaults,
        routing and ``task_always_eager`` apply); a task known only by name through
        ``app.send_task``."""
        call_args, call_kwargs, call_options = self._merge(args, kwargs, options)
        if call_options.get("link") or call_options.get("link_error"):
            if self.app.conf.task_always_eager:
                from . import eager

                return eager.apply_canvas(self, args, kwargs, **options)
            from . import workflows

            return workflows.send(self.app, self, args, kwargs, **options)  # type: ignore[no-any-return]
        call_options.pop("link", None)
        call_options.pop("link_error", None)
        task = self._local_task()
        if task is not None:
            return task.apply_async(call_args, call_kwargs, **call_options)
        return self.app.send_task(self.name, call_args, call_kwargs, **call_options)

    def apply(self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
              **options: Any) -> EagerResult:
        """Run the call in this process as a worker would (``sqlq.eager.apply``); the task must be
        registered here."""
        from . import eager

        call_args, call_kwargs, call_options = self._merge(args, kwargs, options)
        return eager.apply(self.type, call_args, call_kwargs, **call_options)


#: The task names Celery gives a group's, a chain's and a chord's signature (no task of that name
#: runs: their steps do).
GROUP_TASK = "celery.group"
CHAIN_TASK = "celery.chain"
CHORD_TASK = "celery.chord"


@Signature.register_type("group")
class group(Signature):  # noqa: N801 - Celery's name
    """Celery's ``group``: signatures sent together, whose results are read as one ``GroupResult``.

    ``group(add.s(1, 1), add.s(2, 2))``, ``group([...])`` and ``group(add.s(i) for i in range(n))``
    are the same. Members may be different tasks with different options. ``apply_async()`` (also
    ``delay()`` and calling the group) writes every member in one statement (ENQUEUE_MANY, or COPY
    for a large group due now, the bulk path of ``delay_many``), all sharing one new ``group_id``,
    inside the caller's transaction with ``connection=``. Arguments given when the group is sent go
    before each member's own and options given then win over each member's, as in Celery
    (``group(add.s(1), add.s(2)).delay(10)`` runs ``add(10, 1)`` and ``add(10, 2)``).

    Under ``task_always_eager``, or with ``apply()``, the members run here one after the other
    (``sqlq.eager``) and an ``EagerGroupResult`` comes back. A member may be a chain (the database
    then runs the group, ``sqlq.workflows``); a group or chord inside a group is refused.
    ``group | sig`` is a chord, as in Celery.
    """

    def __init__(self, *tasks: Any, **options: Any):
        app = options.pop("app", None)
        if len(tasks) == 4 and tasks[0] == GROUP_TASK and options.get("subtask_type") == "group":
            # Signature.from_dict's call (a group read back from its dict): name, args, kwargs, options
            _, args, kwargs, own_options = tasks
            members = list((kwargs or {}).get("tasks") or ())
            immutable = bool(options.get("immutable", False))
            own_options = dict(own_options or {})
        else:
            if len(tasks) == 1 and isinstance(tasks[0], Iterable) and not isinstance(tasks[0], Mapping | str):
                tasks = tuple(tasks[0])  # group([...]) or group(generator)
            members, args, immutable, own_options = list(tasks), (), False, options
        sigs = [_group_member(t, app) for t in members]
        super().__init__(GROUP_TASK, args, {"tasks": sigs}, own_options, immutable=immutable,
                         subtask_type="group", app=app)

    @property
    def tasks(self) -> list[Signature]:
        """The members, in order (Celery's ``group.tasks``)."""
        return list(self["kwargs"]["tasks"])

    def __len__(self) -> int:  # Celery's: the number of members (the dict's keys are always the same six)
        return len(self["kwargs"]["tasks"])

    def __repr__(self) -> str:
        return f"group([{', '.join(repr(t) for t in self.tasks)}])"

    @property
    def type(self) -> Task:
        raise ConfigurationError("a group is not one task: send it (group.apply_async()) or read group.tasks")

    def _prepared(self, args: Sequence[Any] | None, kwargs: Mapping[str, Any] | None,
                  options: Mapping[str, Any]) -> tuple[str, list[tuple[Signature, tuple[Any, ...], dict[str, Any],
                                                                      dict[str, Any]]]]:
        """The group's id and each member's call: the group's partial args (and ``args``) first, as
        Celery does; the group's options, then ``options``, over each member's own."""
        merged = dict(self["options"])
        merged.update(_checked_mapping(options, "options", GROUP_TASK))
        group_id = merged.pop("task_id", None) or merged.pop("group_id", None) or str(uuid.uuid4())
        merged.pop("group_id", None)
        try:
            group_id = str(uuid.UUID(str(group_id)))
        except ValueError:
            raise ConfigurationError(f"a group's id (task_id=) must be a UUID, got {group_id!r}") from None
        call_args = self.args if self.immutable else _checked_args(args, GROUP_TASK) + self.args
        calls = []
        for member in self.tasks:
            a, k, o = member._merge(call_args, kwargs, merged)
            calls.append((member, a, k, o))
        return group_id, calls

    def __call__(self, *partial_args: Any, **options: Any) -> GroupResult:
        """Celery's ``group(...)(*args)``: ``apply_async(args, **options)`` (a group is sent, not run
        here, when called)."""
        return self.apply_async(partial_args, **options)

    def delay(self, *args: Any, **kwargs: Any) -> GroupResult:
        return self.apply_async(args, kwargs)

    def apply_async(self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None, *,
                    connection: Any = None, **options: Any) -> GroupResult:
        """Write every member in one statement, all sharing one new ``group_id`` (``task_id=``
        names it instead); returns the ``GroupResult``. A member whose task this process has goes
        through its ``build_job`` (its defaults, typing and routing apply), any other through
        ``app.build_job`` by name. Every member is encoded before anything is written, so a bad
        argument of any member writes none."""
        from .result import AsyncResult
        from .result import GroupResult as _GroupResult
        from .task import _current_request

        app = self.app
        if app.conf.task_always_eager:
            return self.apply(args, kwargs, **options)
        if any(type(m) is not Signature or m["options"].get("link") or m["options"].get("link_error")
               for m in self.tasks):  # a chain among the members, or callbacks: the database runs it
            from . import workflows

            return workflows.send(app, self, args, kwargs, connection=connection,  # type: ignore[no-any-return]
                                  **options)
        group_id, calls = self._prepared(args, kwargs, options)
        alike = _alike_calls(calls)
        if alike is not None:  # one task, the same options: apply_many's path (streamed by COPY)
            task, pairs, defaults = alike
            results = app.enqueue_calls(task.name, pairs, task=task, connection=connection, group_id=group_id,
                                        **defaults)
        else:
            specs = []
            for member, a, k, o in calls:
                local = member._local_task()
                spec = local.build_job(a, k, **o) if local is not None else app.build_job(member.name, a, k, **o)
                spec.group_id = group_id
                specs.append(spec)
            results = app.enqueue(specs, connection=connection) if specs else []
            for spec, (_, _, _, o), result in zip(specs, calls, results, strict=True):
                wanted = o.get("task_id")  # a task id that is not its row's UUID: the handle shows the caller's
                if isinstance(wanted, str) and isinstance(result, AsyncResult) and result.id == spec.id != wanted:
                    result.id = wanted
        made = _GroupResult(group_id, results, app)
        parent = _current_request.get()
        if parent is not None and parent.id is not None and options.get("add_to_parent", True):
            parent.children.append(made)  # Celery's add_to_parent
        return made

    def apply(self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None,  # type: ignore[override]
              **options: Any) -> EagerGroupResult:
        """Run every member here, in order, as ``Signature.apply`` does (``sqlq.eager``); nothing
        is written. Returns an ``EagerGroupResult`` (a GroupResult whose members hold their
        outcomes). Every member's task must be registered in this process."""
        from . import eager

        return eager.apply_canvas(self, args, kwargs, **options)  # type: ignore[return-value]


def _alike_calls(calls: Sequence[tuple[Signature, tuple[Any, ...], dict[str, Any], dict[str, Any]]]
                 ) -> tuple[Task, list[tuple[tuple[Any, ...], dict[str, Any]]], dict[str, Any]] | None:
    """A group whose members are calls of one task with the same options (the common
    ``group(add.s(i) for i in ...)``), checked as ``apply_many`` checks its calls: the task, the
    members' ``(args, kwargs)`` and the options with the task's defaults, for ``enqueue_calls``
    (options and routing resolved once, each member encoded while the rows stream). None when the
    members differ (each is then built on its own)."""
    if len(calls) < 2:
        return None
    first, _, _, options = calls[0]
    task = first._local_task()
    if task is None or "task_id" in options or any(
            m._local_task() is not task or o != options for m, _, _, o in calls[1:]):
        return None
    if options:
        task._check_options(options, "apply_async")
    pairs = [(a, k) for _, a, k, _ in calls]
    if task.typing:
        for a, k in pairs:
            task._check_arguments(a, k)
    return task, pairs, task._task_defaults(options)


def _group_member(value: Any, app: App | None) -> Signature:
    """One member of a group: a signature, or a signature's dict (a group read back from JSON)."""
    if isinstance(value, Mapping) and not isinstance(value, Signature):
        value = Signature.from_dict(value, app=app)
    if not isinstance(value, Signature):
        raise ConfigurationError(
            f"a group's members are signatures (add.s(2, 2)), not {type(value).__name__} {value!r}")
    if isinstance(value, group | chord):
        raise ConfigurationError("a group or chord inside a group is not supported; put the members in one "
                                 "group, or chain the inner group after a step")
    return value


def _no_or(left: Any, right: Any) -> Any:
    raise TypeError(f"unsupported operand type(s) for |: {type(left).__name__!r} and {type(right).__name__!r}")


def _chained(left: Signature, right: Signature) -> Signature:
    """``left | right`` as Celery builds it: chains flattened, a group followed by a task a chord."""
    app = left._app or right._app
    right_steps = right.tasks if isinstance(right, chain) and not right.options else [right]
    if isinstance(left, chain) and not left.options:
        return chain(*left.tasks, *right_steps, app=app)
    if isinstance(left, group) and not isinstance(right, group | chain):
        return chord(left, right, app=app)
    return chain(left, *right_steps, app=app)


def _canvas_item(value: Any, app: App | None) -> Signature:
    """One step of a chain or member of a chord's header: a signature or its dict."""
    if isinstance(value, Mapping) and not isinstance(value, Signature):
        value = Signature.from_dict(value, app=app)
    if not isinstance(value, Signature):
        raise ConfigurationError(f"a workflow's steps are signatures (add.s(2, 2)), not {type(value).__name__} "
                                 f"{value!r}")
    return value


class _Workflow(Signature):
    """What chain and chord share: sent by ``sqlq.workflows`` (run eagerly by ``sqlq.eager``)."""

    @property
    def type(self) -> Task:
        raise ConfigurationError(f"a {self.subtask_type} is not one task: send it (apply_async()) or read its steps")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.apply_async(args, kwargs)

    def delay(self, *args: Any, **kwargs: Any) -> Any:
        return self.apply_async(args, kwargs)

    def apply_async(self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None, *,
                    connection: Any = None, **options: Any) -> Any:
        """Send the workflow: its first jobs are written in one statement (inside the caller's
        transaction with ``connection=``), every later step by the database as the step before it
        finishes. Returns the last step's result (a chain's; ``.parent`` walks back), or a chord
        body's (``.parent`` is the header's GroupResult). ``args`` go to the first step(s),
        ``options`` to the first step(s) too, as in Celery. Under ``task_always_eager`` it runs
        here (``sqlq.eager``)."""
        if self.app.conf.task_always_eager:
            return self.apply(args, kwargs, **options)
        from . import workflows

        return workflows.send(self.app, self, args, kwargs, connection=connection, **options)

    def apply(self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
              **options: Any) -> Any:
        """Run every step here, in order, with the same semantics as the database's (``sqlq.eager``);
        nothing is written."""
        from . import eager

        return eager.apply_canvas(self, args, kwargs, **options)

    def link(self, callback: Any) -> Any:
        return self._append_option("link", callback)


@Signature.register_type("chain")
class chain(_Workflow):  # noqa: N801 - Celery's name
    """Celery's ``chain``: ``chain(a.s(), b.s(), c.s())`` or ``a.s() | b.s() | c.s()``; each step is
    given the previous one's result as its first argument (unless immutable, ``.si()``). The next
    step is enqueued by the database in the transaction that records the previous step's SUCCESS
    (``sqlq.workflows``); a step that does not succeed stops the chain and every later step is
    recorded as FAILURE with its error, so the chain's result raises it. A group followed by a
    step is a chord. ``chain.on_error(sig)`` gives every step that errback; ``chain.link(sig)``
    runs ``sig`` after the last step."""

    def __init__(self, *tasks: Any, **options: Any):
        app = options.pop("app", None)
        if len(tasks) == 4 and options.get("subtask_type") == "chain":
            _, _, kwargs, own_options = tasks  # (Signature.from_dict's call)
            steps = list((kwargs or {}).get("tasks") or ())
            own_options = dict(own_options or {})
        else:
            if len(tasks) == 1 and isinstance(tasks[0], Iterable) and not isinstance(tasks[0], Mapping | str):
                tasks = tuple(tasks[0])
            steps, own_options = list(tasks), options
        super().__init__(CHAIN_TASK, (), {"tasks": [_canvas_item(t, app) for t in steps]}, own_options,
                         subtask_type="chain", app=app)

    @property
    def tasks(self) -> list[Signature]:
        return list(self["kwargs"]["tasks"])

    def __repr__(self) -> str:
        return " | ".join(repr(t) for t in self.tasks)


@Signature.register_type("chord")
class chord(_Workflow):  # noqa: N801 - Celery's name
    """Celery's ``chord``: ``chord(header)(body)``, ``chord(header, body)`` or ``group | body``.
    The header's members run in parallel; the body gets the list of their results, in the header's
    order, once all have succeeded. A counter row (``chords``) is decremented by each member's
    outcome in the transaction that records it; the member that brings it to zero enqueues the body
    in that same transaction, so the body runs exactly once, whichever workers die. A member that
    fails (or is revoked, or expires) fails the chord: the body is recorded as FAILURE ChordError
    naming it and the body's errbacks run (Celery's policy)."""

    def __init__(self, header: Any = None, body: Any = None, *rest: Any, **options: Any):
        app = options.pop("app", None)
        if header == CHORD_TASK and options.get("subtask_type") == "chord":
            # Signature.from_dict's call (name, args, kwargs, options): the header and body are in kwargs
            kwargs = dict(rest[0] or {}) if rest else {}
            options = dict(rest[1] or {}) if len(rest) > 1 else {}
            header, body = kwargs.get("header") or [], kwargs.get("body")
        elif rest:
            raise ConfigurationError("chord(header, body) takes the header and the body; options as keywords")
        if isinstance(header, group):
            members = header.tasks
        elif header is None:
            members = []
        elif isinstance(header, Signature):
            members = [header]
        else:
            members = list(header)
        super().__init__(CHORD_TASK, (), {"header": [_canvas_item(m, app) for m in members],
                                          "body": None if body is None else _canvas_item(body, app)},
                         options, subtask_type="chord", app=app)

    @property
    def tasks(self) -> group:
        """The header, as a group (Celery's ``chord.tasks``)."""
        return group(self["kwargs"]["header"], app=self._app)

    @property
    def body(self) -> Signature | None:
        return self["kwargs"]["body"]  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"chord([{', '.join(repr(t) for t in self['kwargs']['header'])}], {self.body!r})"

    def __call__(self, body: Any = None, **options: Any) -> Any:
        """``chord(header)(body)``: send with ``body`` (Celery's form)."""
        if body is not None:
            self["kwargs"]["body"] = _canvas_item(body, self._app)
        return self.apply_async(**options)

    def apply_async(self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None, *,
                    connection: Any = None, **options: Any) -> Any:
        if self.body is None:
            raise ConfigurationError("a chord needs a body: chord(header)(body) or chord(header, body)")
        return super().apply_async(args, kwargs, connection=connection, **options)


class chunks(Signature):  # noqa: N801 - Celery's name
    """Celery's ``task.chunks(it, n)``: the items of ``it`` (each a tuple of arguments) in tasks of
    ``n`` items each (``celery.starmap``); ``apply_async()`` sends them as a group and returns its
    GroupResult (a list of lists of results), ``group()`` gives that group."""

    def __init__(self, task: Any, it: Iterable[Any], n: int, **options: Any):
        app = options.pop("app", None)
        sig = task if isinstance(task, Signature) else Signature(task, app=app)
        super().__init__("celery.chunks", (), {"task": sig, "it": [list(x) for x in it], "n": n}, options,
                         immutable=True, app=app or sig._app)

    def group(self) -> group:
        from .workflows import STARMAP_TASK, chunked

        k = self["kwargs"]
        return group((Signature(STARMAP_TASK, (dict(k["task"]), part), app=self._app, **self.options)
                      for part in chunked(k["it"], k["n"])), app=self._app)

    def __call__(self, *args: Any, **options: Any) -> Any:
        return self.apply_async(**options)

    def apply_async(self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
                    **options: Any) -> Any:
        return self.group().apply_async(args, kwargs, **options)

    def apply(self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
              **options: Any) -> Any:
        return self.group().apply(args, kwargs, **options)


def xmap(task: Any, it: Iterable[Any], app: App | None = None) -> Signature:
    """Celery's ``task.map(it)``: one task (``celery.map``) calling ``task`` on each item."""
    from .workflows import MAP_TASK

    sig = task if isinstance(task, Signature) else Signature(task, app=app)
    return Signature(MAP_TASK, (dict(sig), list(it)), app=app or sig._app)


def xstarmap(task: Any, it: Iterable[Any], app: App | None = None) -> Signature:
    """Celery's ``task.starmap(it)``: one task (``celery.starmap``) calling ``task(*item)`` on each item."""
    from .workflows import STARMAP_TASK

    sig = task if isinstance(task, Signature) else Signature(task, app=app)
    return Signature(STARMAP_TASK, (dict(sig), [list(x) for x in it]), app=app or sig._app)


def _rebuild(d: dict[str, Any]) -> Signature:
    return Signature.from_dict(d)


def signature(varies: Task | str | Mapping[str, Any], args: Sequence[Any] | None = None,
              kwargs: Mapping[str, Any] | None = None, *, app: App | None = None, **options: Any) -> Signature:
    """Celery's ``signature()``: from a task or a task name and the call's parts, or from a dict
    (a signature read back from JSON); a Signature given is cloned."""
    if isinstance(varies, Signature):
        return varies.clone()
    if isinstance(varies, Mapping):
        if args is not None or kwargs is not None or options:
            raise ConfigurationError("signature(d) reads a signature's dict whole; set args and options on the dict")
        return Signature.from_dict(varies, app=app)
    return Signature(varies, args, kwargs, options or None, app=app)


#: Celery's older name for a signature.
subtask = signature
