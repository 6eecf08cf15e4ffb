"""``manage.py sqlq worker|beat|migrate|...``: the ``sqlq`` command line for the project's app."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from ...project import get_app


class Command(BaseCommand):
    help = ("Run the sqlq command line for this project's app (the current app: the one proj/celery.py "
            "makes; -A or SQLQ_APP name another): manage.py sqlq worker -l INFO, manage.py sqlq beat, "
            "manage.py sqlq migrate ...")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("args", nargs="*", help="the sqlq command and its options")

    def run_from_argv(self, argv: list[str]) -> None:
        """Every argument after ``sqlq`` goes to the sqlq command line as it is (Django's own
        option parsing would take ``-v`` and ``--settings`` for itself)."""
        sys.exit(get_app().start(argv[2:]))

    def handle(self, *args: Any, **options: Any) -> None:
        """``call_command('sqlq', 'migrate')``: the same, without leaving the process."""
        code = get_app().start(list(args))
        if code:
            raise SystemExit(code)
