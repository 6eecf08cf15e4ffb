"""Every code block in README.md runs as written, or says why it cannot.

Each fenced block is one test, ``README.md:LINE`` (the line of its opening fence), classified by
its info string:

* ``python``: run as a script (``python block.py``, so as ``__main__``) in a fresh database that
  is already migrated (default ``sqlq`` schema, SQLQ_DATABASE_URL pointing at it), while a worker
  of ``tests/readme_proj/proj`` -- the ``proj`` module the README's commands name -- consumes
  its queues, so a block that waits for a result gets one.
* ``console`` / ``bash`` / ``sh``: every ``$ `` line (``\\``-continued lines joined) is a command:
  - ``sqlq ...`` and ``python -m sqlq ...`` run, one after the other, in a fresh migrated database
    with ``tests/readme_proj`` on PYTHONPATH (so ``-A proj`` imports); each must exit 0. A
    ``worker`` gets ``--burst`` appended (it starts, runs what is due, exits 0); a ``beat`` must log
    that it is ready, and then exit 0 on SIGTERM.
  - ``pip install`` is not run: its requirement must name this distribution and existing extras.
  - ``make TARGET`` is not run (it builds virtualenvs or runs whole suites; the demo is run by
    tests/test_examples.py): TARGET must exist in the Makefile.
  - ``export NAME=...`` is not applied (the test's database replaces it): NAME must be a variable
    sqlq reads.
  Any other command fails, naming its line.
* ``sql``: run (autocommit, as one script) against a fresh migrated database.
* ``text``: output or a listing; not run.

A block with any other info string (or none) fails unless it is marked. Markers are HTML comments
(invisible on GitHub) on the line right before the fence; several directives are separated by ``;``:

* ``<!-- readme-test: fragment (why) -->``: not run; the reason is required and shown as the skip.
* ``<!-- readme-test: continues -->``: a python block that builds on the previous python block;
  the script run is that block's chain followed by this one. ``continues NAME`` builds on the block
  marked ``as NAME`` instead.
* ``<!-- readme-test: as NAME -->``: names a python block's chain for ``continues NAME``.
* ``<!-- readme-test: prelude NAME [NAME...] -->``: before the block (python or sql) the test
  runs ``PRELUDES[NAME]`` below: what the README leaves to the reader (their engine, their model and
  table). A prelude is never a place for imports or names the README block should show itself.
* ``<!-- readme-test: synopsis -->``: a console block of usage lines (``a|b`` alternatives,
  ``...`` placeholders): each line, once per alternative and without the placeholders, is parsed
  by sqlq's CLI with ``--help`` appended (in-process), which checks that its commands and options
  exist without running them.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import signal
import subprocess
import sys
import textwrap
import threading
import time
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from sqlalchemy.engine import make_url

from sqlq import App, cli, signals
from tests.apps.harness import wait_for
from tests.conftest import WorkerThread

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PROJ_DIR = Path(__file__).resolve().parent / "readme_proj"
BIN = Path(sys.executable).parent

MARKER = re.compile(r"^<!--\s*readme-test:\s*(?P<body>.*?)\s*-->\s*$")
FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
RUN_LANGS = {"python", "console", "bash", "sh", "sql"}
TEXT_LANGS = {"text"}

# What the README leaves to the reader: "your" engine, model and table. Run before a block marked
# `prelude NAME` (python: prepended to the script; sql: run as a script first).
PRELUDES = {
    "shop": textwrap.dedent('''
        import os

        from sqlalchemy import Numeric, create_engine
        from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

        from sqlq import App, cli, signals

        url = os.environ["SQLQ_DATABASE_URL"]                  # your database
        engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))


        class Base(DeclarativeBase):
            pass


        class Order(Base):                                      # your model and its table
            __tablename__ = "orders"
            id: Mapped[int] = mapped_column(primary_key=True)
            item: Mapped[str | None]
            status: Mapped[str] = mapped_column(server_default="new")
            total = mapped_column(Numeric, nullable=True)


        Base.metadata.create_all(engine)
        app = App("proj")


        @app.task(bind=True, transactional=True)
        def ship_order(self, order_id):
            from sqlalchemy import text
            self.connection.execute(text("UPDATE orders SET status = 'shipped' WHERE id = :id"), {"id": order_id})
        '''),
    # the `events` exchange of the routing section, declared as the proj worker would
    "routes": textwrap.dedent('''
        import sys
        sys.path.insert(0, {proj_dir!r})
        from proj import app
        app.apply_routes()
        ''').format(proj_dir=str(PROJ_DIR)),
}


@dataclasses.dataclass
class Block:
    line: int  # of the opening fence, 1-based
    lang: str
    body: str
    directives: dict[str, str]  # directive -> argument ("" when none)
    marker_line: int | None = None

    @property
    def id(self) -> str:
        return f"README.md:{self.line}"


def parse_marker(body: str, line: int) -> dict[str, str]:
    directives: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in re.split(r";(?![^(]*\))", body))):  # not inside (why)
        word, _, arg = part.partition(" ")
        arg = arg.strip()
        if word not in {"fragment", "continues", "as", "prelude", "synopsis"}:
            raise ValueError(f"README.md:{line}: unknown readme-test directive {word!r}")
        if word == "fragment":
            if not (arg.startswith("(") and arg.endswith(")") and arg[1:-1].strip()):
                raise ValueError(f"README.md:{line}: a fragment needs its reason: fragment (why)")
            arg = arg[1:-1].strip()
        if word == "prelude" and (not arg or set(arg.split()) - set(PRELUDES)):
            raise ValueError(f"README.md:{line}: unknown prelude {arg!r} (known: {', '.join(PRELUDES)})")
        if word == "as" and not arg:
            raise ValueError(f"README.md:{line}: `as` needs a name")
        directives[word] = arg
    return directives


def parse_readme(text: str) -> tuple[list[Block], list[str]]:
    """The fenced blocks of README.md, and the problems found on the way (stray markers...)."""
    blocks: list[Block] = []
    problems: list[str] = []
    lines = text.splitlines()
    pending: tuple[int, dict[str, str]] | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        m = MARKER.match(line)
        if m:
            if pending:
                problems.append(f"README.md:{pending[0]}: readme-test marker not followed by a fence")
            try:
                pending = (i + 1, parse_marker(m.group("body"), i + 1))
            except ValueError as exc:
                problems.append(str(exc))
                pending = None
            i += 1
            continue
        f = FENCE.match(line)
        if f:
            fence, info = f.group("fence"), f.group("info").strip()
            start = i
            body: list[str] = []
            i += 1
            while i < len(lines) and not lines[i].startswith(fence):
                body.append(lines[i])
                i += 1
            directives, marker_line = {}, None
            if pending and pending[0] == start:  # the marker is the line right before the fence
                marker_line, directives = pending
                pending = None
            blocks.append(Block(start + 1, info.split()[0] if info else "", "\n".join(body) + "\n",
                                directives, marker_line))
        elif pending and line.strip():
            problems.append(f"README.md:{pending[0]}: readme-test marker not right before a fence")
            pending = None
        i += 1
    if pending:
        problems.append(f"README.md:{pending[0]}: readme-test marker at the end of the file")
    return blocks, problems


BLOCKS, PROBLEMS = parse_readme(README.read_text())
BY_LINE = {b.line: b for b in BLOCKS}


def python_chain(block: Block) -> list[Block]:
    """The blocks a python block builds on (`continues`), oldest first, ending with itself."""
    if "continues" not in block.directives:
        return [block]
    name = block.directives["continues"]
    earlier = [b for b in BLOCKS if b.line < block.line and b.lang == "python" and "fragment" not in b.directives]
    if name:
        named = [b for b in earlier if b.directives.get("as") == name]
        assert named, f"{block.id}: `continues {name}` but no earlier python block is marked `as {name}`"
        base = named[-1]
    else:
        assert earlier, f"{block.id}: `continues` but there is no earlier python block"
        base = earlier[-1]
    return [*python_chain(base), block]


# --- databases -------------------------------------------------------------------------------------

def _db_url(database_url: str, name: str) -> str:
    return make_url(database_url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="module")
def template_database(database_url: str) -> Iterator[str]:
    """A database migrated once (default `sqlq` schema); each block gets a copy of it."""
    name = f"sqlq_readme_tmpl_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.delenv("SQLQ_SCHEMA", raising=False)
            app = App("readme-template")
            app.set_database_url(_db_url(database_url, name))
            app.migrate()
            app.close()
        yield name
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def fresh_database(database_url: str, template_database: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A migrated database of the block's own, exported as SQLQ_DATABASE_URL (default schema)."""
    name = f"sqlq_readme_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
    url = _db_url(database_url, name)
    for var in ("SQLQ_SCHEMA", "DATABASE_URL", "SQLQ_APP"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SQLQ_DATABASE_URL", url)
    yield url
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def block_env(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"SQLQ_SCHEMA", "DATABASE_URL", "SQLQ_APP"}}
    env["SQLQ_DATABASE_URL"] = url
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(PROJ_DIR)
    return env


# --- runners ---------------------------------------------------------------------------------------

def run_python(block: Block, url: str, tmp_path: Path) -> None:
    chain = python_chain(block)
    parts = []
    for prelude in chain[0].directives.get("prelude", "").split():
        parts.append(f"# --- prelude {prelude} (tests/test_readme.py) ---\n{PRELUDES[prelude]}")
    parts += [f"# --- README.md:{b.line} ---\n{b.body}" for b in chain]
    script = tmp_path / f"readme_{block.line}.py"
    script.write_text("\n".join(parts))
    env = block_env(url)
    env.pop("PYTHONPATH")  # the block imports only what it shows; the worker below has the proj tasks
    sys.path.insert(0, str(PROJ_DIR))
    try:
        import proj
    finally:
        sys.path.remove(str(PROJ_DIR))
    proj.app.close()  # drop connections to a previous block's database; the URL is read anew
    ready = threading.Event()

    def on_ready(sender=None, **kwargs):
        ready.set()

    signals.worker_ready.connect(on_ready)
    try:
        with WorkerThread(proj.app, queues=proj.QUEUES, pool="threads", concurrency=4):
            # ready: it has declared proj's task_queues, as `sqlq -A proj worker` does when it starts
            assert ready.wait(30), "the proj worker did not start"
            proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True,
                                  text=True, timeout=60, stdin=subprocess.DEVNULL)
    finally:
        signals.worker_ready.disconnect(on_ready)
        proj.app.close()
    assert proc.returncode == 0, (
        f"{block.id}: the python block failed (exit {proc.returncode}); script run:\n{script.read_text()}\n"
        f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}")


def console_commands(block: Block) -> list[tuple[int, str]]:
    """(README line, command) for every `$ ` line; `\\`-continued lines joined."""
    commands: list[tuple[int, str]] = []
    lines = block.body.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("$ "):
            number, command = block.line + 1 + i, line[2:]
            while command.rstrip().endswith("\\") and i + 1 < len(lines):
                i += 1
                command = command.rstrip()[:-1] + " " + lines[i].strip()
            commands.append((number, command))
        i += 1
    return commands


def _sqlq_argv(tokens: list[str]) -> list[str] | None:
    if tokens[:1] == ["sqlq"]:
        return tokens[1:]
    if tokens[:3] == ["python", "-m", "sqlq"]:
        return tokens[3:]
    return None


def check_pip(where: str, tokens: list[str]) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [t for t in tokens[2:] if not t.startswith("-")]
    assert requirements, f"{where}: pip install without a requirement"
    for req in requirements:
        m = re.fullmatch(r"(?P<name>[^\[]+)(\[(?P<extras>[^\]]*)\])?", req)
        assert m, f"{where}: cannot read the requirement {req!r}"
        name = m.group("name")
        assert name == "." or name.lower() == project["name"], (
            f"{where}: `pip install {req}` does not install {project['name']!r}")
        extras = [e.strip() for e in (m.group("extras") or "").split(",") if e.strip()]
        unknown = set(extras) - set(project.get("optional-dependencies", {}))
        assert not unknown, f"{where}: pyproject.toml has no extra(s) {sorted(unknown)}"


def check_make(where: str, tokens: list[str]) -> None:
    makefile = (ROOT / "Makefile").read_text()
    for target in tokens[1:]:
        assert re.search(rf"^{re.escape(target)}:", makefile, re.M), f"{where}: the Makefile has no target {target!r}"


def check_export(where: str, tokens: list[str]) -> None:
    sources = "\n".join(p.read_text() for p in (ROOT / "sqlq").rglob("*.py"))
    for assignment in tokens[1:]:
        name = assignment.partition("=")[0]
        assert name.startswith("SQLQ_") and name in sources, f"{where}: sqlq does not read ${name}"


def run_sqlq(where: str, argv: list[str], env: dict[str, str], cwd: Path) -> None:
    command = [sys.executable, "-m", "sqlq", *argv]
    shown = "sqlq " + shlex.join(argv)
    if "beat" in argv and "worker" not in argv:  # runs until stopped: once ready, it must stop cleanly
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True, stdin=subprocess.DEVNULL)
        err: list[str] = []
        ready = threading.Event()

        def read_stderr() -> None:
            for line in proc.stderr:
                err.append(line)
                if " ready: " in line:  # its signal handlers are installed and it has synced its schedules
                    ready.set()

        reader = threading.Thread(target=read_stderr, daemon=True)
        reader.start()
        try:
            wait_for(lambda: ready.is_set() or proc.poll() is not None, 30, 0.1, message="beat to get ready")
        except AssertionError:
            pass  # the assertion below says so, with beat's stderr, once beat is stopped
        time.sleep(0.5 if ready.is_set() else 0)  # a pass or two
        alive = proc.poll() is None
        if alive:
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        reader.join(5)
        assert ready.is_set() and alive and proc.returncode == 0, (
            f"{where}: `{shown}` {'did not stop cleanly' if ready.is_set() and alive else 'never got ready'} "
            f"(exit {proc.returncode})\n{''.join(err)}")
        return
    if "worker" in argv and "--burst" not in argv:
        command.append("--burst")
    proc = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"{where}: `{shown}` exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"


def run_console(block: Block, url: str, tmp_path: Path) -> None:
    env = block_env(url)
    commands = console_commands(block)
    assert commands, f"{block.id}: a console block without a `$ ` command; use ```text for output"
    for number, command in commands:
        where = f"README.md:{number}"
        tokens = shlex.split(command, comments=True)
        assert tokens, f"{where}: empty command"
        if "synopsis" in block.directives:
            argv = _sqlq_argv(tokens)
            assert argv is not None, f"{where}: a synopsis line must be a sqlq command: {command!r}"
            alternatives = [[]]
            for token in argv:
                if token == "..." or token.endswith("..."):
                    continue
                options = token.split("|") if "|" in token else [token]
                alternatives = [[*a, o] for a in alternatives for o in options]
            for alt in alternatives:  # in-process: only click's parsing is checked, nothing runs
                result = CliRunner().invoke(cli.main, [*alt, "--help"], env={"SQLQ_APP": None})
                assert result.exit_code == 0, (f"{where}: `sqlq {shlex.join(alt)} --help` exited "
                                               f"{result.exit_code}: {result.output.strip()}")
            continue
        if tokens[:2] == ["pip", "install"]:
            check_pip(where, tokens)
        elif tokens[0] == "make":
            check_make(where, tokens)
        elif tokens[0] == "export":
            check_export(where, tokens)
        elif (argv := _sqlq_argv(tokens)) is not None:
            run_sqlq(where, argv, env, tmp_path)
        else:
            pytest.fail(f"{where}: no rule to run or check `{command.strip()}`; "
                        f"mark the block <!-- readme-test: fragment (why) -->")


def run_sql(block: Block, url: str, tmp_path: Path) -> None:
    preludes = block.directives.get("prelude", "").split()
    if preludes:
        script = tmp_path / "prelude.py"
        script.write_text("\n".join(PRELUDES[name] for name in preludes))
        proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=block_env(url),
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, f"{block.id}: prelude {' '.join(preludes)} failed\n{proc.stderr}"
    with psycopg.connect(url, autocommit=True) as conn:
        try:
            conn.execute(block.body)
        except psycopg.Error as exc:
            pytest.fail(f"{block.id}: the sql block failed: {type(exc).__name__}: {exc}")


RUNNERS = {"python": run_python, "console": run_console, "bash": run_console, "sh": run_console,
           "sql": run_sql}


# --- tests -----------------------------------------------------------------------------------------

def test_readme_markers_are_well_formed():
    assert not PROBLEMS, "\n".join(PROBLEMS)


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_readme_block(block: Block, request: pytest.FixtureRequest, tmp_path: Path):
    if "fragment" in block.directives:
        pytest.skip(f"fragment: {block.directives['fragment']}")
    if block.lang in TEXT_LANGS:
        pytest.skip("text: output or a listing, not run")
    if block.lang not in RUN_LANGS:
        pytest.fail(f"{block.id}: a ```{block.lang or '(no info string)'} block is neither run nor marked: "
                    f"give it one of {sorted(RUN_LANGS | TEXT_LANGS)}, or mark it "
                    f"<!-- readme-test: fragment (why) --> on the line before the fence")
    if "synopsis" in block.directives and block.lang not in {"console", "bash", "sh"}:
        pytest.fail(f"{block.id}: `synopsis` is for console blocks")
    url = request.getfixturevalue("fresh_database")
    RUNNERS[block.lang](block, url, tmp_path)


_TYPE_ALIASES = {"int": "integer", "float8": "double precision", "timestamptz": "timestamp with time zone"}


def _signature(arguments: str) -> list[tuple[str, ...]]:
    """`name type [DEFAULT value]` per argument, casts dropped and type aliases spelled out."""
    out = []
    for arg in (a.strip() for a in arguments.split(",")):
        decl, _, default = arg.partition(" DEFAULT ")
        name, _, type_ = decl.partition(" ")
        out.append((name, _TYPE_ALIASES.get(type_, type_), default.partition("::")[0]))
    return out


def test_readme_sql_function_listing_matches_the_database(database_url: str, template_database: str):
    """The ```text listing of sqlq.enqueue/publish (SQL API) is what migrations install."""
    listing = [b for b in BLOCKS if b.lang == "text" and b.body.lstrip().startswith("enqueue(")]
    assert len(listing) == 1, "the SQL API's signature listing (enqueue(...), publish(...)) is gone"
    documented = {m["fn"]: (_signature(m["args"]), _TYPE_ALIASES.get(m["ret"], m["ret"]))
                  for m in re.finditer(r"(?P<fn>\w+)\((?P<args>[^)]*)\)\s+RETURNS\s+(?P<ret>\S+)",
                                       " ".join(listing[0].body.split()))}
    assert set(documented) == {"enqueue", "publish"}, listing[0].body
    with psycopg.connect(_db_url(database_url, template_database)) as conn:
        rows = conn.execute(
            "SELECT p.proname, pg_get_function_arguments(p.oid), pg_get_function_result(p.oid) FROM pg_proc p "
            "JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'sqlq' AND p.proname = ANY(%s)",
            (list(documented),)).fetchall()
    installed = {name: (_signature(args), result) for name, args, result in rows}
    for name, doc in documented.items():
        assert doc == installed.get(name), (f"README.md:{listing[0].line}: {name}(...) differs from the database:\n"
                                            f"  README:   {doc}\n  database: {installed.get(name)}")


def test_every_pip_install_in_the_docs_names_this_distribution():
    """`sqlq` on PyPI is somebody else's project: every install line of the README and docs, in
    blocks, comments or prose, must name this distribution (pyproject's name) with existing extras."""
    found = 0
    for path in [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]:
        if not path.exists():
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for match in re.finditer(r"pip install((?:\s+(?:-[\w-]+|'[^']+'|\"[^\"]+\"|[\w.\[\],-]+))+)", line):
                tokens = ["pip", "install", *(t.strip("'\"") for t in match.group(1).split())]
                check_pip(f"{path.name}:{number}", tokens)
                found += 1
    assert found >= 2
