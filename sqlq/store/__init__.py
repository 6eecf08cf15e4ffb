"""The only place that runs SQL on sqlq's queue tables.

Each statement is named, described and written out whole in a ``.sql`` file of this package, one
file per group of tables (the registry: store/statements.py). ``Store`` renders them for one schema
(identifiers quoted by psycopg, never formatted raw) and runs them on whatever connection it is
handed: a pooled autocommit connection, or the caller's own connection inside the caller's
transaction. Its methods come from one module per group, each running its own file's statements:

* ``jobs``: writing jobs, promoting scheduled ones, the queue listings (jobs.py, jobs.sql);
* ``claims``: a worker's claiming session, claims and the outcomes it records (claims.py);
* ``workers``: worker rows, heartbeats, liveness locks, and the jobs of lost workers (workers.py);
* ``results``: result handles, forget, revoke, expiry (results.py);
* ``schedules``: periodic schedules for ``sqlq beat`` (schedules.py);
* ``routes``: exchanges, bindings and routed publishing (routes.py);
* ``rate_limits``: the token buckets of rate-limited tasks (rate_limits.py; tokens are taken by the
  claims' CLAIM_RATE_LIMITED);
* ``concurrency_limits``: the limits of concurrency-limited tasks (concurrency_limits.py; enforced
  by the claims' CLAIM_CONCURRENCY_LIMITED and _KEYED);
* ``groups``: a GroupResult's members' states in one statement, saved groups (groups.py);
* ``workflows``: a workflow's first jobs from its plan, parents, children, the whole tree
  (workflows.py; the later steps are written by the trigger of migration 0007);
* ``control``: remote-control commands and replies, revoked ids (control.py; sqlq/control/);
* ``queues``: paused queues (queues.py);
* ``events``: the events stream's writes, tails and expiry (events.py; sqlq/events/);
* ``unique``: jobs written with a unique key, and the keys' windows (unique.py);
* ``base``: rendering for a schema, the schema's revision and advisory locks (base.py).

The rows and records the store takes and gives are in records.py; the libpq fast path of one-job
writes in fast.py, the binary array encoders of FINISH_OK in binary.py.
"""

from __future__ import annotations

from .claims import Claims
from .concurrency_limits import ConcurrencyLimits
from .control import Control
from .events import Events
from .groups import Groups
from .jobs import Jobs
from .queues import Queues
from .rate_limits import RateLimits
from .records import (
    ClaimedJob,
    ConcurrencyLimitedClaim,
    ConcurrencyLimitRow,
    DeclaredLimits,
    DeclaredRoutes,
    EagerResultRow,
    EventRow,
    ForeignSchedule,
    HandedBack,
    Interrupted,
    JobSpec,
    JobState,
    LostJobs,
    NextDue,
    Outcome,
    PausedQueue,
    PublishRow,
    QueueConsumers,
    QueueDepth,
    RateLimitedClaim,
    RateLimitRow,
    RetryRequest,
    RouteRow,
    ScheduleRow,
    UniqueWrite,
    Unregistered,
    WorkerRow,
)
from .results import Results
from .routes import Routes
from .schedules import Schedules
from .unique import Unique
from .workers import Workers
from .workflows import Workflows

__all__ = ["ClaimedJob", "ConcurrencyLimitRow", "ConcurrencyLimitedClaim", "DeclaredLimits", "DeclaredRoutes",
           "EagerResultRow", "EventRow", "ForeignSchedule", "HandedBack", "Interrupted", "JobSpec", "JobState",
           "LostJobs", "NextDue", "Outcome", "PausedQueue", "PublishRow", "QueueConsumers", "QueueDepth",
           "RateLimitRow", "RateLimitedClaim", "RetryRequest", "RouteRow", "ScheduleRow", "Store", "UniqueWrite",
           "Unregistered", "WorkerRow"]


class Store(Jobs, Claims, Workers, Results, Schedules, Routes, RateLimits, ConcurrencyLimits, Groups, Workflows,
            Control, Queues, Unique, Events):
    """Every statement of the queue tables, rendered for one schema (``Store(schema)``)."""
