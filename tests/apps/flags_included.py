"""A task module that only ``sqlq worker -I tests.apps.flags_included`` imports."""

from __future__ import annotations

from tests.apps.flags import app


@app.task(name="flags.included")
def included():
    return "included"
