"""Finding the app a command names (``sqlq -A proj``), and the name a prefork child imports it by.

Kept apart from ``App`` because it is about modules and ``sys.path``, not about an app: the
command line and the prefork children are its only users.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING

from .errors import ConfigurationError

if TYPE_CHECKING:
    from .app import App


def load_app(path: str) -> App:
    """Find the app for ``-A``: ``module:attr``, or a module holding ``app`` (or exactly one App)."""
    from .app import App  # (not at the top: app.py imports this module)

    module_name, _, attr = path.partition(":")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`: -A may name a module in the current directory
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise ConfigurationError(
                f"cannot import app module {module_name!r} (-A {path}): no module named {exc.name!r}; "
                f"run from the directory that contains it or fix the name"
            ) from None
        raise
    if attr:
        obj: object = module
        for part in attr.split("."):
            obj = getattr(obj, part, None)
        if not isinstance(obj, App):
            raise ConfigurationError(f"{path!r} is not a sqlq App (found {type(obj).__name__})")
        return obj
    candidate = getattr(module, "app", None)
    if isinstance(candidate, App):
        return candidate
    apps = [v for v in vars(module).values() if isinstance(v, App)]
    if len(apps) == 1:
        return apps[0]
    raise ConfigurationError(
        f"module {module_name!r} has {'no' if not apps else 'several'} sqlq App instances; "
        f"say which one with -A {module_name}:name"
    )


def app_path(app: App) -> str | None:
    """An importable ``module:attr`` for ``app`` (prefork children import it), if there is one."""
    for name, module in list(sys.modules.items()):
        if name == "__main__" or module is None:
            continue
        try:
            for attr, value in vars(module).items():
                if value is app:
                    return f"{name}:{attr}"
        except TypeError:
            continue
    return None
