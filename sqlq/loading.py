"""Finding the app a command names (``sqlq -A proj``), and the name a prefork child imports it by.

Kept apart from ``App`` because it is about modules and ``sys.path``, not about an app: the
command line and the prefork children are its only users.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from types import ModuleType
from typing import TYPE_CHECKING

from .errors import ConfigurationError

if TYPE_CHECKING:
    from .app import App


def import_object(path: str) -> object:
    """The object a ``'module:attr'`` or ``'module.attr'`` path names (a base class, a request class
    given as a string); ImportError, AttributeError or ValueError when there is none, for the caller
    to word."""
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    return getattr(importlib.import_module(module_name), attr)


def load_app(path: str) -> App:
    """Find the app for ``-A`` the way Celery's ``-A`` does, and finalize it.

    ``module:attr`` names it exactly (``attr`` may be dotted). A bare ``proj`` is tried as: the
    module's ``app``, then its ``celery``; for a package, its submodule ``proj.celery`` (with the
    same rules), then ``proj.app``; then the one App instance the module holds. ``proj.attr``, when
    ``proj.attr`` is not a module, is the attribute ``attr`` of module ``proj``."""
    from .app import App  # (not at the top: app.py imports this module)

    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`: -A may name a module in the current directory
    app = _find_app(path, App)
    app.finalize(auto=True)
    return app


def _import(module_name: str, path: str) -> ModuleType | None:
    """The module, or None when ``module_name`` itself does not exist (a missing module it
    imports is an error that surfaces as it is)."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            return None
        raise


def _not_found(path: str, module_name: str) -> ConfigurationError:
    missing = module_name.split(".")[0] if importlib.util.find_spec(module_name.split(".")[0]) is None \
        else module_name
    return ConfigurationError(
        f"cannot import app module {module_name!r} (-A {path}): no module named {missing!r}; "
        f"run from the directory that contains it or fix the name"
    )


def _find_app(path: str, app_type: type[App]) -> App:
    module_name, colon, attr = path.partition(":")
    if colon:
        module = _import(module_name, path)
        if module is None:
            raise _not_found(path, module_name)
        obj: object = module
        for part in attr.split("."):
            obj = getattr(obj, part, None)
        if not isinstance(obj, app_type):
            raise ConfigurationError(f"{path!r} is not a sqlq App (found {type(obj).__name__})")
        return obj
    module = _import(module_name, path)
    if module is None:
        parent, _, attr = module_name.rpartition(".")
        parent_module = _import(parent, path) if parent else None
        if parent_module is None:
            raise _not_found(path, module_name)
        obj = getattr(parent_module, attr, None)
        if isinstance(obj, app_type):
            return obj
        raise ConfigurationError(
            f"-A {path}: module {parent!r} has no submodule or App attribute {attr!r} "
            f"(found {type(obj).__name__}); say which with -A module:name"
        )
    found = _app_in(module, path, app_type)
    if found is not None:
        return found
    apps = [v for v in vars(module).values() if isinstance(v, app_type)]
    raise ConfigurationError(
        f"module {module_name!r} has {'no' if not apps else 'several'} sqlq App instances"
        f"{'' if apps else ' (looked for its app and celery attributes, and the celery and app submodules)'}; "
        f"say which one with -A {module_name}:name"
    )


def _app_in(module: ModuleType, path: str, app_type: type[App]) -> App | None:
    """Celery's search in one module: ``app``, ``celery``, the submodules ``celery`` then ``app``
    of a package, then its one App instance."""
    for attr in ("app", "celery"):
        candidate = getattr(module, attr, None)
        if isinstance(candidate, app_type):
            return candidate
    if hasattr(module, "__path__"):  # a package
        for sub in ("celery", "app"):
            submodule = _import(f"{module.__name__}.{sub}", path)
            if submodule is not None:
                found = _app_in(submodule, path, app_type)
                if found is not None:
                    return found
    apps = {id(v): v for v in vars(module).values() if isinstance(v, app_type)}
    if len(apps) == 1:
        return next(iter(apps.values()))
    return None


def app_path(app: App) -> str | None:
    """An importable ``module:attr`` for ``app`` (prefork children import it), if there is one; for
    an app of a module run as ``__main__``, its twin's (``main_twin``)."""
    for name, module in list(sys.modules.items()):
        if name == "__main__" or module is None or name == "sqlq" or name.startswith("sqlq."):
            continue  # (sqlq's own modules hold apps too: sqlq.current's current app)
        try:
            for attr, value in vars(module).items():
                if value is app:
                    return f"{name}:{attr}"
        except TypeError:
            continue
    twin = main_twin(app)
    return twin[0] if twin is not None else None


def main_twin(app: App) -> tuple[str, App] | None:
    """The other copy of ``app`` when ``app`` was made by a module run as ``__main__`` (``python -m
    proj.celery worker``, whose ``app.start()`` runs the command): a module of the app's that imports
    it by name (``from .celery import app`` in ``proj.tasks``) imports that module a second time,
    which makes a second App of the same name, and those modules' tasks register on it. Returns
    the twin's ``module:attr`` and the twin, or None when ``app`` has none."""
    from .app import App

    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if main is None or spec is None or not any(value is app for value in vars(main).values()):
        return None
    module = sys.modules.get(spec.name)
    if module is None or module is main:
        return None
    for attr, value in vars(module).items():
        if isinstance(value, App) and value is not app and value.main == app.main:
            return f"{spec.name}:{attr}", value
    return None


def adopt_main_twin(app: App) -> tuple[str, list[str]] | None:
    """Register in ``app`` the tasks its ``main_twin`` has and it lacks, as Celery's ``@app.task``
    (``shared=True``) registers a task in every app: a worker started by ``python -m proj.celery
    worker`` then runs the tasks of ``proj.tasks``. Returns the twin's ``module:attr`` and the
    names adopted, or None when ``app`` has no twin."""
    twin = main_twin(app)
    if twin is None:
        return None
    path, other = twin
    other.finalize(auto=True)  # (its task_annotations; its include is what app just imported)
    adopted = [name for name in other.tasks if name not in app.tasks]
    for name in adopted:
        app.tasks[name] = other.tasks[name]
    return path, adopted
