"""The ``sqlq`` command: workers, migrations, sending, results, inspection, the embedded database.

Shaped like Celery's (``sqlq -A proj worker -l info -c 4 -Q a,b``). Data goes to stdout and
messages to stderr; a sqlq error prints one line (what is wrong, what to do), never a traceback.
Logging is configured only by commands that run long (``worker``), and only on the ``sqlq``
logger, so importing sqlq never touches the application's root logger.
"""

from __future__ import annotations

import atexit
import collections
import datetime as dt
import functools
import gc
import json
import logging
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

import click
import psycopg

from . import __version__
from .app import App
from .db import explain_connection_error
from .errors import SqlqError
from .loading import load_app
from .names import validate_queue
from .serialization import json_dumps, json_loads

if TYPE_CHECKING:
    from .store import ScheduleRow

log = logging.getLogger("sqlq")


class _Context:
    def __init__(self, app_path: str | None, database_url: str | None, app: App | None = None):
        self.app_path = app_path
        self.database_url = database_url
        self._app: App | None = None
        # app.start() / app.worker_main() (Celery's) run this command line for an app they pass in
        # as click's obj: it is the -A app, unless -A names another.
        self.given_app = app if app_path is None else None

    def app(self, database_url: str | None = None) -> App:
        """The ``-A`` app, or a bare one when no module is given (enough to send by name)."""
        if self._app is None:
            if self.given_app is not None:
                self.given_app.finalize(auto=True)  # (load_app finalizes the -A app)
            self._app = load_app(self.app_path) if self.app_path else (self.given_app or App())
            url = database_url or self.database_url
            if url:
                self._app.set_database_url(url)
        return self._app


def _fail(message: str) -> None:
    click.echo(f"sqlq: error: {message}", err=True)
    sys.exit(1)


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """One clear line for the errors a user can cause, instead of a traceback."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SqlqError as exc:
            _fail(str(exc))
        except psycopg.OperationalError as exc:
            ctx = click.get_current_context().find_object(_Context)
            url = ctx.app().database_url if ctx and ctx._app else "the database"
            _fail(str(explain_connection_error(url, exc)))
    return wrapper


def _json_arg(value: str | None, what: str, kind: type) -> Any:
    if value is None:
        return kind()
    try:
        parsed = json_loads(value)
    except ValueError as exc:
        raise click.BadParameter(f"{what} must be JSON ({exc})") from None
    if not isinstance(parsed, kind):
        raise click.BadParameter(f"{what} must be a JSON {'array' if kind is list else 'object'}")
    return parsed


pass_ctx = click.make_pass_decorator(_Context)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": None})
@click.option("-A", "--app", "app_path", envvar="SQLQ_APP", metavar="MODULE[:ATTR]",
              help="The module holding your sqlq App (env SQLQ_APP).")
@click.option("--database-url", metavar="URL",
              help="PostgreSQL URL; beats SQLQ_DATABASE_URL, DATABASE_URL and the app's setting.")
@click.version_option(__version__, prog_name="sqlq")
@click.pass_context
def main(ctx: click.Context, app_path: str | None, database_url: str | None) -> None:
    """sqlq: a task queue in which PostgreSQL is the only moving part."""
    ctx.obj = _Context(app_path, database_url, ctx.obj if isinstance(ctx.obj, App) else None)


# --- worker -------------------------------------------------------------------------------------

class _TaskContextFilter(logging.Filter):
    """Adds ``task_name[task_id]`` to every log line emitted while a task runs."""

    def filter(self, record: logging.LogRecord) -> bool:
        from .task import _current_request

        request = _current_request.get()
        record.task = f" {request.task}[{request.id}]" if request is not None and request.id else ""
        return True


LOG_FORMAT = "[%(asctime)s: %(levelname)s/%(processName)s%(task)s] %(message)s"


def setup_logging(level: str, log_format: str = "text", logfile: str | None = None) -> None:
    """The ``sqlq`` logger of a long-running command (its ``sqlq.task`` child is the task logger).

    Celery's rule: when ``signals.setup_logging`` has receivers, they configure logging and sqlq
    does not; otherwise ``after_setup_logger`` and ``after_setup_task_logger`` follow sqlq's set-up.
    Called once the app is imported, so that receivers connected in the app module count."""
    from . import signals
    from .log import make_formatter

    details: dict[str, Any] = {"loglevel": logging.getLevelName(level.upper()), "logfile": logfile,
                               "format": LOG_FORMAT, "colorize": False}
    if signals.setup_logging.has_receivers:
        signals.setup_logging.send(sender=None, **details)
        return
    logger = logging.getLogger("sqlq")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(make_formatter(log_format, LOG_FORMAT))  # (--logfile: stderr is the file)
    handler.addFilter(_TaskContextFilter())
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False
    signals.after_setup_logger.send(sender=None, logger=logger, **details)
    signals.after_setup_task_logger.send(sender=None, logger=logging.getLogger("sqlq.task"), **details)


def _daemon_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Celery's daemon options, shared by ``worker`` and ``beat`` (sqlq.daemon does the work)."""
    for option in reversed([
        click.option("-f", "--logfile", metavar="PATH", envvar="SQLQ_LOGFILE",
                     help="Log to this file (and its stderr); %n, %h, %p, %d, %i, %I expand as in Celery."),
        click.option("--log-format", type=click.Choice(["text", "json"]),
                     help="text, or json: one JSON object per line (setting log_format, env SQLQ_LOG_FORMAT)."),
        click.option("--pidfile", metavar="PATH", envvar="SQLQ_PIDFILE",
                     help="Write the pid here; refuse to start while a live process holds it."),
        click.option("-D", "--detach", "detached", is_flag=True, help="Run in the background as a daemon."),
        click.option("--workdir", metavar="DIR", help="With --detach: the directory to move to (default /)."),
    ]):
        fn = option(fn)
    return fn


def _setup_command_logging(app: App, loglevel: str, log_format: str | None, logfile: str | None) -> None:
    """Logging of a worker or beat: on stderr, which ``--logfile`` and ``--detach`` point at the file
    later (``sqlq.daemon.start``), so what is said before that still reaches the terminal."""
    from .worker.options import set_log_format

    set_log_format(app, log_format)
    setup_logging(loglevel, app.conf.log_format, logfile)


@main.command()
@click.option("-l", "--loglevel", default="info", envvar="SQLQ_LOGLEVEL", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error", "critical"], case_sensitive=False))
@click.option("-c", "--concurrency", type=click.IntRange(min=1), envvar="SQLQ_CONCURRENCY",
              help="Pool size (default: number of CPUs).")
@click.option("-P", "--pool", type=click.Choice(["prefork", "threads", "solo"]), envvar="SQLQ_POOL",
              help="Where tasks run (default: prefork).")
@click.option("-Q", "--queues", envvar="SQLQ_QUEUES", help="Comma-separated queues (default: default).")
@click.option("-n", "--hostname", envvar="SQLQ_HOSTNAME", help="Worker name (default: sqlq@HOST).")
@click.option("--prefetch-multiplier", type=click.IntRange(min=1), envvar="SQLQ_PREFETCH_MULTIPLIER",
              help="Jobs claimed ahead per pool slot, fixed (default: adaptive, from 4 per slot up to "
                   "1000 jobs on a backlog).")
@click.option("--max-tasks-per-child", type=click.IntRange(min=1), envvar="SQLQ_MAX_TASKS_PER_CHILD",
              help="Replace a prefork child after this many jobs.")
@click.option("--burst", is_flag=True, envvar="SQLQ_BURST", help="Run what is due, then exit 0.")
@click.option("--database-url", "worker_url", metavar="URL", help="PostgreSQL URL (see sqlq --help).")
@click.option("-B", "--beat", "with_beat", is_flag=True, envvar="SQLQ_WORKER_BEAT",
              help="Also run beat (periodic tasks) in this process; any number of beats may run.")
@click.option("-E", "--task-events", is_flag=True, default=None,
              help="Write task and worker events (sqlq events); default: the worker_send_task_events setting.")
@click.option("--autoscale", metavar="MAX,MIN", envvar="SQLQ_AUTOSCALE",
              help="Grow the pool toward MAX while jobs wait, shrink toward MIN when idle (threads, prefork).")
@click.option("-X", "--exclude-queues", metavar="QUEUES", help="Comma-separated queues of -Q not to consume.")
@click.option("-I", "--include", metavar="MODULES", multiple=True, help="Comma-separated modules to import.")
@click.option("--time-limit", type=float, metavar="SECONDS", help="Hard time limit of tasks without their own.")
@click.option("--soft-time-limit", type=float, metavar="SECONDS", help="Soft time limit of tasks without their own.")
@click.option("--max-memory-per-child", type=click.IntRange(min=1), metavar="KIB", envvar="SQLQ_MAX_MEMORY_PER_CHILD",
              help="Replace a prefork child after the job that left it above this resident memory (KiB).")
@click.option("--purge", "--discard", "purge_first", is_flag=True,
              help="Delete the waiting jobs of this worker's queues before starting.")
@click.option("--without-heartbeat", is_flag=True, help="Accepted from Celery; no effect (says why).")
@click.option("--without-gossip", is_flag=True, help="Accepted from Celery; no effect (says why).")
@click.option("--without-mingle", is_flag=True, help="Accepted from Celery; no effect (says why).")
@click.option("-O", "optimization", type=click.Choice(["default", "fair"]), help="Accepted from Celery (says what it means here).")
@_daemon_options
@pass_ctx
@handle_errors
def worker(ctx: _Context, loglevel: str, concurrency: int | None, pool: str | None, queues: str | None,
           hostname: str | None, prefetch_multiplier: int | None, max_tasks_per_child: int | None,
           burst: bool, worker_url: str | None, with_beat: bool, autoscale: str | None,
           exclude_queues: str | None, include: tuple[str, ...], time_limit: float | None,
           soft_time_limit: float | None, max_memory_per_child: int | None, purge_first: bool,
           without_heartbeat: bool, without_gossip: bool, without_mingle: bool, optimization: str | None,
           logfile: str | None, log_format: str | None, pidfile: str | None, detached: bool,
           workdir: str | None, task_events: bool | None) -> None:
    """Run a worker: claim jobs in batches, run them, record their outcomes."""
    from .daemon import start as start_daemon
    from .worker import options
    from .worker.worker import Worker

    # without the app no task is registered: every job would fail NotRegistered
    if not ctx.app_path and ctx.given_app is None:
        _fail("sqlq worker runs your tasks, so it needs your app: sqlq -A module[:attr] worker "
              "(or set SQLQ_APP=module)")
    app = ctx.app(worker_url)
    options.import_modules(options.comma_list(include))
    options.set_time_limits(app, time_limit, soft_time_limit)
    _setup_command_logging(app, loglevel, log_format, logfile)
    options.say_celery_only(optimization, without_heartbeat=without_heartbeat, without_gossip=without_gossip,
                            without_mingle=without_mingle)
    queue_list = options.comma_list(queues) or None
    w = Worker(app, queues=queue_list, concurrency=concurrency, pool=pool, hostname=hostname,
               prefetch_multiplier=prefetch_multiplier, max_tasks_per_child=max_tasks_per_child,
               burst=burst, app_path=ctx.app_path, install_signal_handlers=True,
               exclude_queues=options.comma_list(exclude_queues), autoscale=autoscale,
               max_memory_per_child=max_memory_per_child, task_events=task_events or None)
    # (after the worker is made: a bad option is said on the terminal, not in a daemon's logfile)
    start_daemon(detached=detached, logfile=logfile, pidfile=pidfile, workdir=workdir, hostname=w.hostname)
    if purge_first:
        count = options.purge_queues(app, w.queues)
        log.warning("purged %d waiting job(s) from queue(s) %s", count, ", ".join(w.queues))
    try:
        code = _with_beat(app, w.run) if with_beat else w.run()
    finally:
        app.close()  # say goodbye to the server now rather than from the interpreter's teardown
    # A stopped worker has recorded every outcome, removed its row and closed its connections; what
    # is left for the interpreter's final garbage collections is every object of psycopg, the app and
    # the rest of what was imported: 100-150 ms of a burst worker's exit. gc.freeze at exit skips
    # them (atexit handlers still run, objects freed by reference counting are still finalized).
    atexit.register(gc.freeze)
    sys.exit(code)


# --- migrations ---------------------------------------------------------------------------------

@main.group(invoke_without_command=True)
@click.option("--sql", "as_sql", is_flag=True, help="Print the SQL instead of running it.")
@click.pass_context
@handle_errors
def migrate(click_ctx: click.Context, as_sql: bool) -> None:
    """Create or upgrade sqlq's tables (in their own schema, with their own version table)."""
    if click_ctx.invoked_subcommand is not None:
        return
    ctx = click_ctx.find_object(_Context)
    assert ctx is not None  # main() made it
    app = ctx.app()
    if as_sql:
        from .migrate import upgrade_sql

        click.echo(upgrade_sql(app.database_url, app.conf.schema))
        return
    before, head = app.migration_status()
    app.migrate()
    if before == head:
        click.echo(f"schema {app.conf.schema!r} is up to date (revision {head})", err=True)
    else:
        click.echo(f"schema {app.conf.schema!r} migrated from {before or 'nothing'} to {head}", err=True)


@migrate.command("check")
@pass_ctx
@handle_errors
def migrate_check(ctx: _Context) -> None:
    """Exit non-zero when the database is behind this version of sqlq."""
    app = ctx.app()
    current, head = app.migration_status()
    if current != head:
        _fail(f"schema {app.conf.schema!r} is at revision {current or 'none'}, sqlq needs {head}: run `sqlq migrate`")
    click.echo(f"schema {app.conf.schema!r} is up to date (revision {head})", err=True)


# --- sending and results ------------------------------------------------------------------------

@main.command()
@click.argument("task_name", metavar="TASK")
@click.option("--args", "args_json", metavar="JSON", help='Positional arguments, e.g. \'[1, 2]\'.')
@click.option("--kwargs", "kwargs_json", metavar="JSON", help='Keyword arguments, e.g. \'{"x": 1}\'.')
@click.option("--countdown", type=float, help="Run no earlier than this many seconds from now.")
@click.option("--eta", type=click.DateTime(formats=["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"]),
              help="Run no earlier than this UTC time.")
@click.option("--expires", type=float, help="Discard as EXPIRED if not started within this many seconds.")
@click.option("--queue", "-Q", help="Queue to send to.")
@click.option("--priority", type=int, help="Higher runs first.")
@click.option("--exchange", "-X", help="Publish through this exchange (see sqlq routes).")
@click.option("--routing-key", "-K", help="Routing key for --exchange (default: the task name).")
@pass_ctx
@handle_errors
def call(ctx: _Context, task_name: str, args_json: str | None, kwargs_json: str | None,
         countdown: float | None, eta: dt.datetime | None, expires: float | None, queue: str | None,
         priority: int | None, exchange: str | None, routing_key: str | None) -> None:
    """Send a task by name (the code need not be importable here); prints the job id
    (one per queue reached when an exchange routes it to several)."""
    app = ctx.app()
    options = {k: v for k, v in {"countdown": countdown, "eta": eta, "expires": expires, "queue": queue,
                                 "priority": priority, "exchange": exchange,
                                 "routing_key": routing_key}.items() if v is not None}
    result = app.send_task(task_name, _json_arg(args_json, "--args", list),
                           _json_arg(kwargs_json, "--kwargs", dict), **options)
    for job in getattr(result, "results", [result]):
        click.echo(job.id)


@main.command()
@click.argument("task_id")
@click.option("--wait", is_flag=True, help="Wait until the job has finished.")
@click.option("--timeout", type=float, help="With --wait: give up after this many seconds.")
@pass_ctx
@handle_errors
def result(ctx: _Context, task_id: str, wait: bool, timeout: float | None) -> None:
    """Show a job's state and result (JSON on stdout)."""
    app = ctx.app()
    handle = app.AsyncResult(task_id)
    if wait:
        handle.get(timeout=timeout, propagate=False)
    state = handle.state
    out: dict[str, Any] = {"id": task_id, "state": state}
    if state == "SUCCESS":
        out["result"] = handle.result
    elif handle.ready():
        exc = handle.result
        out["error"] = f"{getattr(exc, 'exc_type', type(exc).__name__)}: {exc}"
        out["traceback"] = handle.traceback
    if handle.date_done:
        out["date_done"] = handle.date_done
    click.echo(json_dumps(out) if state != "SUCCESS" else _plain_json(out))
    if wait and state != "SUCCESS":
        sys.exit(1)


def _plain_json(value: Any) -> str:
    """JSON for people and jq: datetimes as ISO strings rather than sqlq's tagged objects."""
    return json.dumps(value, default=str)


# --- inspection ---------------------------------------------------------------------------------

@main.group(invoke_without_command=True)
@click.pass_context
@handle_errors
def queues(click_ctx: click.Context) -> None:
    """Depth of each queue: waiting, scheduled, running, and whether it is paused (pause, resume)."""
    if click_ctx.invoked_subcommand is not None:
        return
    ctx = click_ctx.find_object(_Context)
    assert ctx is not None  # main() made it
    app = ctx.app()
    with app.connection() as conn:
        rows = app.store.queue_depths(conn)
        paused = {p.queue for p in app.store.paused_queues(conn)}
    click.echo(f"{'queue':<30} {'waiting':>9} {'scheduled':>9} {'running':>9}  state")
    listed = set()
    for depth in rows:
        listed.add(depth.queue)
        state = "paused" if depth.queue in paused else "active"
        click.echo(f"{depth.queue:<30} {depth.waiting:>9} {depth.scheduled:>9} {depth.running:>9}  {state}")
    for name in sorted(paused - listed):  # a paused queue without jobs is still paused
        click.echo(f"{name:<30} {0:>9} {0:>9} {0:>9}  paused")


@queues.command("pause")
@click.argument("names", metavar="QUEUE...", nargs=-1, required=True)
@pass_ctx
@handle_errors
def queues_pause(ctx: _Context, names: tuple[str, ...]) -> None:
    """Stop every worker, running now or started later, from claiming QUEUE's jobs (they wait)."""
    _pause_or_resume(ctx, names, pause=True)


@queues.command("resume")
@click.argument("names", metavar="QUEUE...", nargs=-1, required=True)
@pass_ctx
@handle_errors
def queues_resume(ctx: _Context, names: tuple[str, ...]) -> None:
    """Let the workers claim QUEUE's jobs again."""
    _pause_or_resume(ctx, names, pause=False)


def _pause_or_resume(ctx: _Context, names: tuple[str, ...], *, pause: bool) -> None:
    """Every name checked before any queue changes, then one line each saying what changed."""
    for name in names:
        validate_queue(name)
    app = ctx.app()
    change = app.pause_queue if pause else app.resume_queue
    done, same = ("paused", "was already paused") if pause else ("resumed", "was not paused")
    for name in names:
        click.echo(f"queue {name!r} {done if change(name) else same}", err=True)


@queues.command("paused")
@pass_ctx
@handle_errors
def queues_paused(ctx: _Context) -> None:
    """The paused queues, one a line, with when each was paused (UTC)."""
    app = ctx.app()
    with app.connection() as conn:
        rows = app.store.paused_queues(conn)
    for row in rows:
        click.echo(f"{row.queue}\t{_when(row.paused_at)}")
    if not rows:
        click.echo("no paused queues", err=True)


@main.command()
@pass_ctx
@handle_errors
def status(ctx: _Context) -> None:
    """Live workers, one line each (Celery's `celery status`); exit 1 when none is online."""
    app = ctx.app()
    with app.connection() as conn:
        rows = app.store.workers(conn, float(app.conf.worker_lost_timeout))
    online = [w for w in rows if w.state == "online"]
    for w in online:
        click.echo(f"->  {w.hostname}: OK")
    names = collections.Counter(w.hostname for w in online)
    for name, count in sorted(names.items()):
        if count > 1:
            click.echo(f"sqlq: warning: {count} live workers are named {name}; give each its own name "
                       f"(sqlq worker -n NAME)", err=True)
    if not online:
        _fail("no workers online" + (f" ({len(rows)} lost or dead: sqlq inspect workers)" if rows else ""))
    click.echo(f"\n{len(online)} {'node' if len(online) == 1 else 'nodes'} online.")


@main.command()
@click.option("--dump", is_flag=True, help="One line per event (Celery's `celery events --dump`).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event and line.")
@click.option("--since", metavar="WHEN",
              help="Start from this far back (90s, 10m, 2h, 1d) or this time (ISO 8601); default: now.")
@click.option("--task", "tasks", multiple=True, metavar="NAME", help="Only this task's events (repeatable).")
@click.option("--type", "types", multiple=True, metavar="TYPE",
              help="Only events of this type, e.g. task-failed (repeatable).")
@click.option("--limit", type=click.IntRange(min=1), help="Exit after this many events (--dump, --json).")
@click.option("--timeout", type=click.FloatRange(min=0), help="Exit after this many seconds without an event.")
@pass_ctx
@handle_errors
def events(ctx: _Context, dump: bool, as_json: bool, since: str | None, tasks: tuple[str, ...],
           types: tuple[str, ...], limit: int | None, timeout: float | None) -> None:
    """The events stream (workers run with -E): a live table of workers and task states, or with
    --dump/--json every event as it comes. Ctrl-C exits; a database outage is waited out."""
    from .events import monitor

    if dump and as_json:
        _fail("--dump and --json are two formats of the same lines: give one")
    app = ctx.app()
    code = monitor.run(app, mode="json" if as_json else "dump" if dump else "table", since=since,
                       tasks=tasks, types=types, limit=limit, timeout=timeout)
    sys.exit(code)


@main.command("rate-limits")
@pass_ctx
@handle_errors
def rate_limits_list(ctx: _Context) -> None:
    """The rate limits every worker enforces (sqlq.rate_limits), with the tokens each bucket holds now."""
    app = ctx.app()
    with app.connection() as conn:
        rows = app.store.rate_limits(conn)
    click.echo(f"{'task':<40} {'per second':>12} {'per minute':>12} {'capacity':>9} {'tokens now':>10}")
    for r in rows:
        click.echo(f"{r.task:<40} {r.rate:>12.4g} {r.rate * 60:>12.4g} {r.capacity:>9.4g} {r.tokens:>10.2f}")
    if not rows:
        click.echo("no rate limits", err=True)


@main.command("concurrency-limits")
@pass_ctx
@handle_errors
def concurrency_limits_list(ctx: _Context) -> None:
    """The concurrency limits every claim enforces (sqlq.concurrency_limits), with the jobs running under each."""
    app = ctx.app()
    with app.connection() as conn:
        rows = app.store.concurrency_limits(conn)
    click.echo(f"{'task':<40} {'key':<20} {'limit':>8} {'running':>8}")
    for r in rows:
        key = "(the task)" if r.key is None else r.key
        click.echo(f"{r.task:<40} {key:<20} {r.limit:>8} {r.running:>8}")
    if not rows:
        click.echo("no concurrency limits", err=True)


@main.group()
def inspect() -> None:
    """Look at workers and jobs."""


@inspect.command("workers")
@pass_ctx
@handle_errors
def inspect_workers(ctx: _Context) -> None:
    """Workers, each with its state (online, lost: about to be rescued, dead: listed for
    worker_dead_retention) and how long since its heartbeat."""
    app = ctx.app()
    with app.connection() as conn:
        rows = app.store.workers(conn, float(app.conf.worker_lost_timeout))
    for w in rows:
        since = f" dead since {_when(w.died_at)} UTC" if w.died_at is not None else ""
        click.echo(f"{w.hostname} {w.state} pid={w.pid} id={w.id} queues={','.join(w.queues)} "
                   f"pool={w.pool}x{w.concurrency} up since {w.started_at:%Y-%m-%d %H:%M:%S} "
                   f"heartbeat {w.silent_for:.1f}s ago{since}")
    if not rows:
        click.echo("no workers registered", err=True)


# --- remote control (sqlq/control/): Celery's `inspect` and `control` commands ------------------

def _control_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Celery's options of every inspect/control command."""
    fn = click.option("-j", "--json", "as_json", is_flag=True, help="Print the replies as JSON.")(fn)
    fn = click.option("-t", "--timeout", type=click.FloatRange(min=0), default=1.0, show_default=True,
                      help="Seconds to wait for the replies (it ends sooner once every live worker answered).")(fn)
    return click.option("-d", "--destination", metavar="NAMES",
                        help="Comma-separated worker hostnames (or ids); default: every worker.")(fn)


def _print_replies(replies: list[dict[str, Any]], as_json: bool) -> None:
    """Celery's output (`->  host: OK` and the reply, then `N nodes online.`), or JSON; exit 1 and
    say so when no worker replied."""
    if not replies:
        click.echo("Error: No nodes replied within time constraint", err=True)
        sys.exit(1)
    merged: dict[str, Any] = {}
    for answer in replies:
        merged.update(answer)
    if as_json:
        click.echo(json.dumps(merged, default=str))
        return
    for host, reply in merged.items():
        if isinstance(reply, dict) and set(reply) == {"error"}:
            click.echo(f"->  {host}: ERROR\n        {reply['error']}")
        elif isinstance(reply, dict) and set(reply) == {"ok"}:
            click.echo(f"->  {host}: OK\n        {reply['ok']}")
        elif isinstance(reply, list):
            click.echo(f"->  {host}: OK")
            for item in reply:
                click.echo(f"    * {item if isinstance(item, str) else json.dumps(item, default=str)}")
            if not reply:
                click.echo("    - empty -")
        else:
            click.echo(f"->  {host}: OK")
            click.echo("\n".join("    " + line for line in json.dumps(reply, indent=4, default=str).splitlines()))
    count = len(merged)
    click.echo(f"\n{count} node{'s' if count != 1 else ''} online.")


def _inspect_command(name: str, help_text: str, arguments: Callable[..., dict[str, Any]] | None = None,
                     params: Sequence[Callable[..., Any]] = ()) -> None:
    def run(ctx: _Context, destination: str | None, timeout: float, as_json: bool, **given: Any) -> None:
        from .control.channel import broadcast

        replies = broadcast(ctx.app(), name, arguments(**given) if arguments else {}, destination=destination,
                            reply=True, timeout=timeout)
        _print_replies(replies or [], as_json)

    run.__doc__ = help_text
    command: Callable[..., Any] = handle_errors(run)
    command = pass_ctx(command)
    for param in params:
        command = param(command)
    inspect.command(name)(_control_options(command))


_inspect_command("ping", "Ask each worker for a pong.")
_inspect_command("active", "The jobs each worker runs now.")
_inspect_command("reserved", "The jobs each worker has claimed and not started.")
_inspect_command("scheduled", "Jobs waiting for their eta or countdown in each worker's queues.")
_inspect_command("registered", "The tasks each worker's app registers (ATTRS: e.g. rate_limit).",
                 lambda attrs: {"taskinfoitems": list(attrs) or None}, [click.argument("attrs", nargs=-1)])
_inspect_command("revoked", "The revoked task ids each worker honours.")
_inspect_command("stats", "Each worker's statistics.")
_inspect_command("active_queues", "The queues each worker consumes.")
_inspect_command("query_task", "What each worker holds of these task ids (active or reserved).",
                 lambda ids: {"ids": list(ids)}, [click.argument("ids", nargs=-1, required=True)])
_inspect_command("conf", "Each worker's settings (passwords masked).",
                 lambda with_defaults: {"with_defaults": with_defaults},
                 [click.option("--with-defaults", is_flag=True, help="Include settings left at their default.")])


@main.group()
def control() -> None:
    """Change running workers (Celery's `celery control`): shutdown, rate and time limits, pool
    size, queues, revoke."""


def _control_command(name: str, help_text: str, send: Callable[..., list[dict[str, Any]] | None],
                     params: Sequence[Callable[..., Any]] = ()) -> None:
    def run(ctx: _Context, destination: str | None, timeout: float, as_json: bool, **given: Any) -> None:
        replies = send(ctx.app().control, destination=destination, reply=True, timeout=timeout, **given)
        _print_replies(replies or [], as_json)

    run.__doc__ = help_text
    command: Callable[..., Any] = handle_errors(run)
    command = pass_ctx(command)
    for param in reversed(params):
        command = param(command)
    control.command(name)(_control_options(command))


_control_command("shutdown", "Warm shutdown: the workers finish their running jobs and exit.",
                 lambda c, **kw: c.shutdown(**kw))
_control_command("rate_limit", "Set TASK's rate limit for every worker (RATE: 10/s, 100/m; 0: none).",
                 lambda c, task, rate, **kw: c.rate_limit(task, rate, **kw),
                 [click.argument("task"), click.argument("rate")])
_control_command("concurrency_limit",
                 "Set TASK's concurrency limit: at most N running at once, cluster-wide (0: none; --key: for one "
                 "key value of a task with a concurrency_key).",
                 lambda c, task, n, key, **kw: c.concurrency_limit(task, n, key=key, **kw),
                 [click.argument("task"), click.argument("n", type=int),
                  click.option("--key", default=None, help="The key value the limit is for.")])
_control_command("time_limit", "Set TASK's soft and hard time limits (seconds) in the workers.",
                 lambda c, task, soft, hard, **kw: c.time_limit(task, soft, hard, **kw),
                 [click.argument("task"), click.argument("soft", type=float),
                  click.argument("hard", type=float, required=False)])
_control_command("pool_grow", "Add N processes or threads to each worker's pool.",
                 lambda c, n, **kw: c.pool_grow(n, **kw), [click.argument("n", type=int, default=1)])
_control_command("pool_shrink", "Remove N processes or threads from each worker's pool.",
                 lambda c, n, **kw: c.pool_shrink(n, **kw), [click.argument("n", type=int, default=1)])
_control_command("add_consumer", "Start consuming QUEUE.",
                 lambda c, queue, **kw: c.add_consumer(validate_queue(queue), **kw), [click.argument("queue")])
_control_command("cancel_consumer", "Stop consuming QUEUE.",
                 lambda c, queue, **kw: c.cancel_consumer(validate_queue(queue), **kw), [click.argument("queue")])
_control_command("revoke", "Revoke task IDS (with --terminate, stop the running ones too).",
                 lambda c, ids, terminate, signal, **kw: c.revoke(list(ids), terminate=terminate, signal=signal, **kw),
                 [click.argument("ids", nargs=-1, required=True),
                  click.option("--terminate", is_flag=True, help="Stop the jobs that are running."),
                  click.option("-s", "--signal", default="SIGTERM", show_default=True,
                               help="The signal a prefork child is stopped with.")])
_control_command("terminate", "Stop the running task IDS with SIGNAL (revoke --terminate).",
                 lambda c, signal, ids, **kw: c.terminate(list(ids), signal=signal, **kw),
                 [click.argument("signal"), click.argument("ids", nargs=-1, required=True)])


@main.command()
@click.option("--queue", "-Q", help="Only this queue (default: all).")
@click.option("--force", "-f", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
@handle_errors
def purge(ctx: _Context, queue: str | None, force: bool) -> None:
    """Delete waiting and scheduled jobs (running jobs are left alone)."""
    if queue is not None:
        validate_queue(queue)  # like every other command: a typo is an error, not "purged 0 job(s)"
    app = ctx.app()
    what = f"queue {queue!r}" if queue else "every queue"
    if not force and not click.confirm(f"Delete all waiting jobs of {what}?", err=True):
        _fail("aborted")
    with app.connection() as conn:
        count = app.store.purge(conn, queue)
    click.echo(f"purged {count} job(s) from {what}", err=True)


# --- routing (exchanges and bindings; sqlq/routing/declarations.py) ------------------------------

@main.group()
def routes() -> None:
    """Exchanges and bindings: which queues a routing key reaches."""


@routes.command("list")
@pass_ctx
@handle_errors
def routes_list(ctx: _Context) -> None:
    """Every exchange (type, alternate queue) with its bindings."""
    from .routing.declarations import list_routes

    rows = list_routes(ctx.app())
    click.echo(f"{'exchange':<24} {'type':<7} {'binding key':<30} {'queue':<24} alternate")
    for r in rows:
        key = "(none)" if r.queue is None else (r.binding_key or "-")
        click.echo(f"{r.exchange:<24} {r.type:<7} {key:<30} {r.queue or '-':<24} {r.alternate_queue or '-'}")
    if not rows:
        click.echo("no exchanges declared (sqlq routes add, or task_queues and sqlq routes apply)", err=True)


@routes.command("apply")
@pass_ctx
@handle_errors
def routes_apply(ctx: _Context) -> None:
    """Declare the app's task_queues (idempotent: adds what is missing, removes nothing)."""
    app = ctx.app()
    if not app.conf.task_queues:
        _fail("the app has no task_queues to apply; set app.conf.task_queues = [Queue(...), ...] and pass -A")
    exchanges, bindings = app.apply_routes()
    click.echo(f"applied task_queues: {exchanges} exchange(s) declared, {bindings} new binding(s)", err=True)


@routes.command("add")
@click.argument("exchange")
@click.argument("queue", required=False)
@click.option("--type", "-t", "exchange_type", type=click.Choice(["direct", "fanout", "topic"]),
              help="Exchange type (default: the existing one, or direct for a new exchange).")
@click.option("--key", "-k", "routing_key", help="Binding key (default: the queue's name; fanout ignores it).")
@click.option("--alternate", metavar="QUEUE", help="Queue that collects messages no binding matches.")
@pass_ctx
@handle_errors
def routes_add(ctx: _Context, exchange: str, queue: str | None, exchange_type: str | None,
               routing_key: str | None, alternate: str | None) -> None:
    """Declare EXCHANGE if missing and bind QUEUE to it."""
    from .routing.declarations import add_route

    _, added = add_route(ctx.app(), exchange, queue, routing_key=routing_key, type=exchange_type,
                         alternate_queue=alternate)
    what = f"bound {queue!r} to {exchange!r}" if queue else f"declared {exchange!r}"
    click.echo(what if added or not queue else f"{queue!r} was already bound to {exchange!r} that way", err=True)


@routes.command("remove")
@click.argument("exchange")
@click.argument("queue", required=False)
@click.option("--key", "-k", "routing_key", help="Only the binding with this key.")
@pass_ctx
@handle_errors
def routes_remove(ctx: _Context, exchange: str, queue: str | None, routing_key: str | None) -> None:
    """Unbind QUEUE from EXCHANGE; without QUEUE, delete EXCHANGE and all its bindings."""
    from .routing.declarations import remove_route

    count = remove_route(ctx.app(), exchange, queue, routing_key)
    click.echo(f"removed {count} binding(s)" if queue else f"removed exchange {exchange!r}", err=True)


@routes.command("match")
@click.argument("exchange")
@click.argument("routing_key")
@pass_ctx
@handle_errors
def routes_match(ctx: _Context, exchange: str, routing_key: str) -> None:
    """Print the queues a message with ROUTING_KEY published to EXCHANGE would reach."""
    from .routing.declarations import route_queues

    for name in route_queues(ctx.app(), exchange, routing_key):
        click.echo(name)


# --- periodic tasks (sqlq/periodic/beat.py, sqlq/periodic/definitions.py) -------------------------

def _with_beat(app: App, run: Callable[[], int]) -> int:
    """``worker -B``: beat in a thread of this process, stopped when the worker stops."""
    from .periodic.beat import Beat

    beat_loop = Beat(app)
    thread = beat_loop.start_thread()
    try:
        return run()
    finally:
        beat_loop.stop()
        thread.join(10)


@main.command()
@click.option("-l", "--loglevel", default="info", envvar="SQLQ_LOGLEVEL", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error", "critical"], case_sensitive=False))
@click.option("--database-url", "beat_url", metavar="URL", help="PostgreSQL URL (see sqlq --help).")
@_daemon_options
@pass_ctx
@handle_errors
def beat(ctx: _Context, loglevel: str, beat_url: str | None, logfile: str | None, log_format: str | None,
         pidfile: str | None, detached: bool, workdir: str | None) -> None:
    """Send periodic tasks when due. Run as many beats as you like: each tick is sent exactly once."""
    from .daemon import start as start_daemon
    from .periodic.beat import Beat

    app = ctx.app(beat_url)
    _setup_command_logging(app, loglevel, log_format, logfile)
    start_daemon(detached=detached, logfile=logfile, pidfile=pidfile, workdir=workdir, hostname=None)
    sys.exit(Beat(app, install_signal_handlers=True).run())


@main.group()
def schedule() -> None:
    """Periodic tasks stored in the database (beat_schedule and these commands write them)."""


def _when(value: dt.datetime | None) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S") if value is not None else "-"


@schedule.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per line.")
@pass_ctx
@handle_errors
def schedule_list(ctx: _Context, as_json: bool) -> None:
    """Every schedule: its timing, state, next and last tick (UTC) and last error."""
    from .periodic.definitions import describe, list_schedules

    rows = list_schedules(ctx.app())
    row: ScheduleRow | None  # a schedule, or None for the heading line below
    if as_json:
        for row in rows:
            record = {k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in row._asdict().items()}
            click.echo(json.dumps(record))
        return
    if not rows:
        click.echo("no schedules", err=True)
        return
    table = [("name", "schedule", "timezone", "task", "state", "next (UTC)", "last (UTC)", "runs")]
    for row in rows:
        state = "error" if row.next_fire_at is None and row.last_error else ("on" if row.enabled else "paused")
        table.append((row.name, describe(row), row.timezone, row.task, state, _when(row.next_fire_at),
                      _when(row.last_fire_at), str(row.total_run_count)))
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    for line, row in zip(table, [None, *rows], strict=True):
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
        if row is not None and row.last_error:
            click.echo(f"  ! {row.last_error}")


@schedule.command("add")
@click.argument("name")
@click.argument("task_name", metavar="TASK")
@click.option("--cron", metavar="EXPR", help="5-field cron line or alias, e.g. '*/15 * * * *' or '@daily'.")
@click.option("--every", "every_seconds", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="A fixed interval in seconds (real time).")
@click.option("--anchor", type=click.DateTime(formats=["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"]),
              help="With --every: the first tick, UTC (default: aligned to the Unix epoch).")
@click.option("--tz", "--timezone", "timezone", metavar="ZONE",
              help="IANA time zone the cron line is read in (default: the app's timezone setting).")
@click.option("--args", "args_json", metavar="JSON", help='Positional arguments, e.g. \'[1, 2]\'.')
@click.option("--kwargs", "kwargs_json", metavar="JSON", help='Keyword arguments, e.g. \'{"x": 1}\'.')
@click.option("--queue", "-Q", help="Queue to send to.")
@click.option("--priority", type=int, help="Higher runs first.")
@click.option("--expires", type=float, help="Discard a run as EXPIRED if not started within this many seconds.")
@click.option("--paused", is_flag=True, help="Add it paused (resume it later).")
@click.option("--replace", is_flag=True, help="Overwrite a schedule of the same name added by hand.")
@pass_ctx
@handle_errors
def schedule_add(ctx: _Context, name: str, task_name: str, cron: str | None, every_seconds: float | None,
                 anchor: dt.datetime | None, timezone: str | None, args_json: str | None,
                 kwargs_json: str | None, queue: str | None, priority: int | None, expires: float | None,
                 paused: bool, replace: bool) -> None:
    """Add a periodic task by hand; it stays when beats sync their beat_schedule."""
    from .periodic.definitions import add_schedule, describe
    from .periodic.timing import every

    if (cron is None) == (every_seconds is None):
        raise click.UsageError("give exactly one of --cron EXPR or --every SECONDS")
    if anchor is not None and every_seconds is None:
        raise click.UsageError("--anchor goes with --every")
    timing = cron if cron is not None else every(cast(float, every_seconds), anchor=anchor and anchor.replace(tzinfo=dt.UTC))
    options = {k: v for k, v in {"queue": queue, "priority": priority, "expires": expires}.items() if v is not None}
    row = add_schedule(ctx.app(), name, task_name, timing, args=_json_arg(args_json, "--args", list),
                       kwargs=_json_arg(kwargs_json, "--kwargs", dict), options=options, timezone=timezone,
                       enabled=not paused, replace=replace)
    state = "paused" if not row.enabled else f"next tick {_when(row.next_fire_at)} UTC"
    click.echo(f"schedule {row.name!r}: {describe(row)} in {row.timezone}, {state}", err=True)


@schedule.command("remove")
@click.argument("name")
@pass_ctx
@handle_errors
def schedule_remove(ctx: _Context, name: str) -> None:
    """Delete a schedule and its tick history."""
    from .periodic.definitions import remove_schedule

    row = remove_schedule(ctx.app(), name)
    note = (" (it is in beat_schedule: a beat with that config adds it back when it starts; "
            "`sqlq schedule pause` stops it for good)") if row.source == "config" else ""
    click.echo(f"removed schedule {name!r}{note}", err=True)


@schedule.command("pause")
@click.argument("name")
@pass_ctx
@handle_errors
def schedule_pause(ctx: _Context, name: str) -> None:
    """Stop sending a schedule's ticks until it is resumed."""
    from .periodic.definitions import pause_schedule

    changed = pause_schedule(ctx.app(), name)
    click.echo(f"schedule {name!r} {'paused' if changed else 'was already paused'}", err=True)


@schedule.command("resume")
@click.argument("name")
@pass_ctx
@handle_errors
def schedule_resume(ctx: _Context, name: str) -> None:
    """Send a paused schedule's ticks again, from the next one (ticks missed while paused are not sent)."""
    from .periodic.definitions import get_schedule, resume_schedule

    app = ctx.app()
    if not resume_schedule(app, name):
        click.echo(f"schedule {name!r} was not paused", err=True)
        return
    row = get_schedule(app, name)
    if row.last_error and row.next_fire_at is None:
        _fail(f"schedule {name!r} resumed, but it cannot run: {row.last_error}")
    click.echo(f"schedule {name!r} resumed; next tick {_when(row.next_fire_at)} UTC", err=True)


@schedule.command("run-now")
@click.argument("name")
@pass_ctx
@handle_errors
def schedule_run_now(ctx: _Context, name: str) -> None:
    """Send one run of a schedule's task now (its ticks are unaffected); prints the job id."""
    from .periodic.definitions import run_now

    click.echo(run_now(ctx.app(), name).id)


# --- embedded database --------------------------------------------------------------------------

@main.group()
def db() -> None:
    """The embedded development database (used when no URL is configured)."""


@db.command("url")
@handle_errors
def db_url() -> None:
    """Start (or attach to) the embedded database and print its URL."""
    from .embedded import ensure_embedded

    click.echo(ensure_embedded(quiet=True))


@db.command("status")
@handle_errors
def db_status() -> None:
    """Say whether the embedded database is running, and where."""
    from .embedded import embedded_status

    status = embedded_status()
    if status.get("running"):
        click.echo(f"running: {status.get('url')} (pid {status.get('pid')}, data in {status.get('data_dir')})")
    else:
        click.echo(f"not running (data dir {status.get('data_dir')})")


@db.command("stop")
@handle_errors
def db_stop() -> None:
    """Stop the embedded database."""
    from .embedded import stop_embedded

    click.echo("stopped" if stop_embedded() else "was not running", err=True)


if __name__ == "__main__":  # pragma: no cover
    main()
