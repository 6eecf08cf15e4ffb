#!/usr/bin/env bash
# Django's own django.tasks tests (tests/tasks/test_tasks.py of the Django release installed in
# .venv-django, from its sdist on PyPI) run with their default backend switched to sqlq's
# SqlqBackend, on a schema of their own. Not part of make test: it downloads the sdist (~11 MB).
# The tests that check Django's DummyBackend itself (isinstance, its .results list) fail by design.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${DJANGO_VENV:-.venv-django}
VERSION=$("$VENV/bin/python" -c 'import django; print(django.__version__)')
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
"$VENV/bin/pip" download --quiet --no-deps --no-binary :all: "django==$VERSION" -d "$WORK/sdist"
tar -xzf "$WORK"/sdist/*.tar.gz -C "$WORK"
mkdir -p "$WORK/run/tasks"
cp "$WORK/django-$VERSION/tests/tasks/"{__init__.py,tasks.py,test_tasks.py} "$WORK/run/tasks/"
sed -i 's/"django.tasks.backends.dummy.DummyBackend"/"sqlq.contrib.django.tasks.SqlqBackend"/; s/        default_task_backend.clear()/        pass/' \
  "$WORK/run/tasks/test_tasks.py"
cat > "$WORK/run/settings.py" <<'SETTINGS'
SECRET_KEY = "upstream-tests"
USE_TZ = True
INSTALLED_APPS = ["tasks"]
TASKS = {"default": {"BACKEND": "sqlq.contrib.django.tasks.SqlqBackend"}}
SETTINGS
export SQLQ_DATABASE_URL=${SQLQ_TEST_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/test}
export SQLQ_SCHEMA="django_upstream_$$"
"$VENV/bin/sqlq" migrate >/dev/null
status=0
(cd "$WORK/run" && "$OLDPWD/$VENV/bin/python" -m django test tasks.test_tasks --settings=settings -v 2) || status=$?
"$VENV/bin/python" -c "import os, psycopg; psycopg.connect(os.environ['SQLQ_DATABASE_URL'], autocommit=True).execute('DROP SCHEMA \"' + os.environ['SQLQ_SCHEMA'] + '\" CASCADE')"
exit $status
