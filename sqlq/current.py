"""The current app: the one ``shared_task``, ``AsyncResult(id)`` without an app and other
app-less entry points use, as Celery's ``current_app`` is; and ``shared_task`` itself.

An app becomes current when it is created (unless made with ``set_as_current=False``) or when
``app.set_current()`` is called, so the app a module defines is current once the module is
imported. With no app made yet, a default ``App()`` is made on first use: it reads its settings
from the environment like any other app.

``shared_task`` is for libraries (a Django app's ``tasks.py``) that must not import the project's
app: as in Celery, its task is registered in every app, those that exist and those made later,
and what it returns stands for the current app's task.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import App
    from .task import Task

_lock = threading.Lock()
_current: App | None = None
#: While true (``trapped()``, the pytest plugin's ``use_sqlq_app_trap``), using the current app
#: raises: a test checks that its code passes its app rather than falling back on the current one.
_trapped = False
#: Every App alive in this process (shared tasks are registered in each).
_apps: weakref.WeakSet[App] = weakref.WeakSet()
#: Every shared_task definition, in the order they were made.
_shared: list[SharedTask] = []


def set_current_app(app: App) -> None:
    """Make ``app`` current (this also lifts a trap: the app set is what the test depends on, as
    Celery's ``app.set_current()`` replaces its trap)."""
    global _current, _trapped
    with _lock:
        _current = app
        _trapped = False


@contextlib.contextmanager
def trapped() -> Iterator[None]:
    """Celery's app trap: inside the block, using the current app (``current_app``, ``AsyncResult(id)``
    without an app, a ``shared_task``, ...) raises ``RuntimeError`` until an app is made current; the
    current app and the trap are as before afterwards."""
    global _current, _trapped
    with _lock:
        before = _current, _trapped
        _trapped = True
    try:
        yield
    finally:
        with _lock:
            _current, _trapped = before


def get_current_app() -> App:
    """The current app, or a default one made now when no app has been made."""
    global _current
    if _trapped:
        raise RuntimeError("Test depends on current_app: this test traps the current app "
                           "(use_sqlq_app_trap); pass the app explicitly, or use depends_on_current_app")
    app = _current
    if app is not None:
        return app
    from .app import App  # (app.py imports this module)

    # made outside the lock: a new App takes it too (app_created). Two threads racing here may
    # each make one; the first to store its own is the current app, the other is dropped.
    made = App(set_as_current=False)
    with _lock:
        if _current is None:
            _current = made
        return _current


def app_created(app: App) -> None:
    """Called by each new App: it gets every shared task defined so far."""
    with _lock:
        _apps.add(app)
        shared = list(_shared)
    for definition in shared:
        definition.register(app, deferred=True)


class SharedTask:
    """What ``@shared_task`` returns: the current app's task for the function. Attribute reads,
    calls, ``delay``/``apply_async`` and ``isinstance(..., Task)`` go to that task, looked up at each
    use, so the same module works with whichever app the process makes current."""

    _fn: Callable[..., Any]
    _options: dict[str, Any]
    _tasks: weakref.WeakKeyDictionary[App, Task]
    _errors: weakref.WeakKeyDictionary[App, Exception]

    def __init__(self, fn: Callable[..., Any], options: dict[str, Any]):
        object.__setattr__(self, "_fn", fn)
        object.__setattr__(self, "_options", options)
        object.__setattr__(self, "_tasks", weakref.WeakKeyDictionary())
        object.__setattr__(self, "_errors", weakref.WeakKeyDictionary())

    def register(self, app: App, *, deferred: bool = False) -> Task | None:
        """Register the function in ``app``. ``deferred`` (an app being made): a definition error
        (e.g. a __main__ function and an app with no name) is kept and raised when this app's
        task is used, so that making an app never fails for a task it may never use."""
        from .errors import TaskDefinitionError

        try:
            task: Task = app._register(self._fn, dict(self._options))  # (@app.task(**options)(fn), untyped)
        except TaskDefinitionError as exc:
            if not deferred:
                raise
            self._errors[app] = exc
            return None
        self._tasks[app] = task
        return task

    def _resolve(self) -> Task:
        app = get_current_app()
        task = self._tasks.get(app)
        if task is not None:
            return task
        error = self._errors.get(app)
        if error is not None:
            raise error
        registered = self.register(app)  # an app made before this definition and not seen since
        assert registered is not None
        return registered

    @property  # type: ignore[misc]  # isinstance(shared, Task) holds, as for Celery's proxy
    def __class__(self) -> type:
        return type(self._resolve())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._resolve(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._resolve(), name, value)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._resolve()(*args, **kwargs)

    def __repr__(self) -> str:
        try:
            return repr(self._resolve())
        except Exception:  # noqa: BLE001 - a repr must not raise
            return f"<shared task {getattr(self._fn, '__qualname__', self._fn)!r}>"


def shared_task(*args: Any, **options: Any) -> Any:
    """Celery's ``@shared_task`` / ``@shared_task(**options)``: a task registered in every app
    (those alive and those made later), standing for the current app's task. The options are
    ``@app.task``'s."""
    from .errors import TaskDefinitionError

    def decorate(fn: Callable[..., Any]) -> SharedTask:
        definition = SharedTask(fn, options)
        with _lock:
            _shared.append(definition)
            apps = list(_apps)
        for app in apps:
            definition.register(app, deferred=app is not _current)
        return definition

    if len(args) == 1 and callable(args[0]) and not options:
        return decorate(args[0])
    if args:
        raise TaskDefinitionError("use @shared_task or @shared_task(**options); positional options are not accepted")
    return decorate


class _CurrentApp:
    """``sqlq.current_app``: stands for ``get_current_app()`` at each use, as Celery's does."""

    def __getattr__(self, name: str) -> Any:
        return getattr(get_current_app(), name)

    def __repr__(self) -> str:
        return f"<current app: {get_current_app()!r}>"


current_app: Any = _CurrentApp()
