"""The current app: the one ``shared_task``, ``AsyncResult(id)`` without an app and other
app-less entry points use, as Celery's ``current_app`` is.

An app becomes current when it is created (unless made with ``set_as_current=False``) or when
``app.set_current()`` is called, so the app a module defines is current once the module is
imported. With no app made yet, a default ``App()`` is made on first use: it reads its settings
from the environment like any other app.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .app import App

_lock = threading.Lock()
_current: App | None = None


def set_current_app(app: App) -> None:
    global _current
    with _lock:
        _current = app


def get_current_app() -> App:
    """The current app, or a default one made now when no app has been made."""
    global _current
    app = _current
    if app is not None:
        return app
    from .app import App  # (app.py imports this module)

    with _lock:
        if _current is None:
            _current = App(set_as_current=False)
        return _current
