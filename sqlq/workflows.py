"""Workflows: a canvas (chain, chord, a signature with callbacks) compiled into a plan the database
runs.

The plan is built here, at send time, by the sender's app: every step is a ready-to-insert job row
(id pre-assigned, task, queue and priority routed, args/kwargs as JSON, headers, countdown and
expiry, acks_late, group id, root id) plus what the step's own outcome sets off (its ``workflow``:
the rest of its chain, its callbacks and errbacks, its chord). The first jobs are written by the
SQL function ``workflow_start`` (migration 0007), in one statement; every later step is written by
the trigger ``workflow_step`` on ``results``, in the transaction that records the outcome of the
step before it, whichever statement records it (a worker's FINISH, a REVOKE, a RESCUE). No worker
and no client takes part in moving a workflow on, so a worker killed between two steps loses
nothing and no step runs twice for it.

Composition in SQL needs JSON: the value handed to a mutable step is the previous step's stored
result (its ``results.result``), put first in the step's args. So a mutable step after a task whose
results are not JSON (or not kept), or any step whose own arguments are not JSON, is refused here
with an error saying what to do. A task this process does not know (sent by name) cannot be
checked here: the trigger then records the step after it as FAILURE ``WorkflowError`` saying why.

Failure policy (Celery's): a chain stops at a step that does not succeed, and every step after it
is recorded as FAILURE with that step's exception type, message and traceback (REVOKED for a step
whose id was revoked), so ``chain_result.get()`` raises the step's error; the failed step's
errbacks run. A chord's first failed (or revoked, or expired) member fails the chord: the body's
pre-assigned id gets FAILURE ``ChordError`` naming the member and its error, the body's errbacks
run, the body never runs; later members only count down. An empty header runs the body at once
with ``[]``.

Errbacks run as the built-in task ``sqlq.errback`` on the errback's queue: it reads the failed
job's results row and calls the errback with Celery's ``(request, exc, traceback)`` when the
errback takes more than one positional argument, else it sends it with ``(task_id,)`` as Celery
does for its old-style errbacks.
"""

from __future__ import annotations

import datetime as dt
import inspect
import json
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import serialization
from .enqueue import _check_call, new_job_ids
from .errors import ConfigurationError
from .routing import resolution
from .store import JobSpec
from .task import Request, _current_request, task_uuid

if TYPE_CHECKING:
    from .app import App
    from .canvas import Signature
    from .result import AsyncResult
    from .task import Task

#: The built-in tasks every app has (registered at first lookup, as Celery's are at start).
MAP_TASK = "celery.map"
STARMAP_TASK = "celery.starmap"
CHUNKS_TASK = "celery.chunks"
ERRBACK_TASK = "sqlq.errback"
BUILTIN_TASKS = (MAP_TASK, STARMAP_TASK, CHUNKS_TASK, ERRBACK_TASK)

Node = dict[str, Any]


def _when(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass
class _Header:
    """A group's members that are calls of one task with the same options, due now (``_alike``):
    kept as calls, with their ids, until the plan is written (``materialize``, ``_streamed``)."""

    task: Task
    options: dict[str, Any]  # the members' options with the task's defaults (build_jobs')
    first: JobSpec  # the first member's job, which gives every member's shared columns
    pairs: list[tuple[tuple[Any, ...], dict[str, Any]]]  # each member's (args, kwargs)
    ids: list[str]
    members: Sequence[Signature]
    group_id: str
    chord: bool  # the header of a chord: every member counts its chord down
    node: Node | None = None  # the group's plan node, whose "members" materialize fills


class _Compiler:
    """Builds one plan: nodes for the database, result handles for the caller, and every id the
    plan pre-assigned (what ``revoke()`` of the workflow names)."""

    def __init__(self, app: App):
        self.app = app
        parent = _current_request.get()
        self.sent_from_task = parent is not None and parent.id is not None
        self.parent_row = task_uuid(parent.id) if parent is not None and parent.id is not None else None
        self.root_row: str | None = (task_uuid(parent.root_id or parent.id)
                                     if parent is not None and parent.id is not None else None)
        #: The encoded job of every task step, by id (the bulk path writes a group's from these).
        self.specs: dict[str, JobSpec] = {}
        #: The groups whose members are one task's calls due now, by group id: their member nodes
        #: are built only if the plan needs them (``materialize``); a top-level one is streamed.
        self.headers: dict[str, _Header] = {}

    # result serializers ------------------------------------------------------------------------

    def _hands_json(self, sig: Signature) -> str | None:
        """Why ``sig``'s result cannot be handed on as JSON (None: it can, or the task is unknown
        here and the database checks it)."""
        task = sig._local_task()
        if task is None:
            return None
        serializer = sig.options.get("serializer") or task.serializer or self.app.conf.result_serializer
        if serializer != "json":
            return (f"the results of {task.name} are serialized with {serializer}, not JSON, so the database "
                    f"cannot hand them to the next step")
        ignored = sig.options.get("ignore_result")
        if ignored is None:
            ignored = task.ignore_result if task.ignore_result is not None else self.app.conf.task_ignore_result
        if ignored:
            return f"{task.name} does not keep its results (ignore_result), so there is nothing to hand on"
        return None

    def _check_follows(self, step: Signature, follows: Sequence[Signature]) -> None:
        if step.immutable:
            return
        for before in follows:
            why = self._hands_json(before)
            if why is not None:
                raise ConfigurationError(
                    f"{step.name} follows {before.name} in a workflow and takes its result: {why}; make "
                    f"{step.name}'s signature immutable ({step.name.rsplit('.', 1)[-1]}.si(...)) or give "
                    f"{before.name} the json result serializer and keep its results")

    # nodes -------------------------------------------------------------------------------------

    def build(self, item: Any, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None,
              options: Mapping[str, Any] | None = None, *, follows: Sequence[Signature] = (),
              group_id: str | None = None) -> tuple[Node, Any, list[Node], list[Signature]]:
        """(the plan node of ``item``, its result handle, the nodes whose outcome is ``item``'s
        result, the signatures whose results those are)."""
        from .canvas import Signature, chain, chord, group

        if isinstance(item, chord):
            return self._chord(item, args, kwargs, options, follows=follows, group_id=group_id)
        if isinstance(item, chain):
            return self._chain(item, args, kwargs, options, follows=follows, group_id=group_id)
        if isinstance(item, group):
            return self._group(item, args, kwargs, options, follows=follows, body=None)
        if isinstance(item, Signature):
            node, handle = self._task(item, args, kwargs, options, follows=follows, group_id=group_id)
            return node, handle, [node], [item]
        raise ConfigurationError(f"a workflow's steps are signatures (add.s(2, 2)), not {type(item).__name__}")

    def _task(self, sig: Signature, args: Sequence[Any], kwargs: Mapping[str, Any] | None,
              options: Mapping[str, Any] | None, *, follows: Sequence[Signature],
              group_id: str | None, receives: bool | None = None) -> tuple[Node, AsyncResult]:
        from .result import AsyncResult

        self._check_follows(sig, follows)
        if receives is None:
            receives = bool(follows)
        a, k, o = sig._merge(args, kwargs, options)
        links = _as_list(o.pop("link", None))
        errbacks = _as_list(o.pop("link_error", None))
        o.pop("group_id", None)
        o.pop("add_to_parent", None)
        task = sig._local_task()
        if task is not None:
            if o:
                task._check_options(o, "apply_async")
            if task.typing:  # a step that will be given a value is checked with one in its place
                task._check_arguments(((None,) if receives and not sig.immutable else ()) + tuple(a), k)
            spec = self.app.build_job(task.name, a, k, task=task, **task._task_defaults(o))
        else:
            spec = self.app.build_job(sig.name, a, k, **o)
        if spec.unique_key is not None:
            raise ConfigurationError(
                f"{sig.name} has a unique key ({spec.unique_key!r}); a workflow's later steps are written by the "
                f"database, which does not resolve keys: send the keyed call on its own (apply_async) or drop "
                f"unique_key/unique_on for this step")
        if spec.exchange is not None:
            raise ConfigurationError(
                f"{sig.name} is routed through exchange {spec.exchange!r}; a workflow's steps go to one queue "
                f"each (the database enqueues them): give the step a queue (sig.set(queue=...)) or send it "
                f"outside the workflow")
        if spec.content_type != serialization.JSON or spec.args is None:
            raise ConfigurationError(
                f"{sig.name}'s arguments are serialized as {spec.content_type}; a workflow's steps are written "
                f"by the database, which needs JSON: use the json serializer for this step")
        node = self._node(spec, sig, group_id)
        handle = AsyncResult(o.get("task_id") or spec.id, self.app, spec.task)
        workflow: dict[str, Any] = {}
        if links:
            workflow["link"] = [self.build(cb, follows=[sig])[0] for cb in links]
        if errbacks:
            workflow["link_error"] = [self._errback(eb) for eb in errbacks]
        if workflow:
            node["workflow"] = workflow
        return node, handle

    def _node(self, spec: JobSpec, sig: Signature, group_id: str | None) -> Node:
        """A task step's node from its encoded job."""
        if self.root_row is None:
            self.root_row = spec.id
        self.specs[spec.id] = spec
        return {
            "id": spec.id, "task": spec.task, "queue": spec.queue, "priority": spec.priority,
            # (args, kwargs and headers stay JSON text here: _plan_json puts them in as they are)
            "args": spec.args, "kwargs": spec.kwargs or "{}",
            "headers": spec.headers, "countdown": spec.countdown, "eta": _when(spec.eta),
            "expires_in": spec.expires_in, "expires_at": _when(spec.expires_at), "acks_late": spec.acks_late,
            "group_id": group_id, "root_id": self.root_row, "mutable": not sig.immutable, "workflow": None,
        }

    def _alike(self, members: Sequence[Signature], args: Sequence[Any], kwargs: Mapping[str, Any] | None,
               options: Mapping[str, Any], group_id: str, chord: bool) -> tuple[list[Node] | None, list[Any]] | None:
        """The nodes and handles of a group's members when they are calls of one task with the same
        options and no callbacks (``chord(add.s(i) for i in ...)``), their jobs built as
        ``apply_many`` builds them (options and routing resolved once); None otherwise. When those
        jobs are due now, no node is built yet (None instead of the nodes): the ids are assigned,
        the calls kept in ``self.headers``, and ``materialize`` builds the nodes only if the plan
        goes to the database as JSON, so a top-level chord streams its header like a group."""
        from .canvas import Signature, _alike_calls
        from .result import AsyncResult

        if any(type(m) is not Signature or m["options"].get("link") or m["options"].get("link_error")
               for m in members):
            return None
        calls = [(m, *m._merge(args, kwargs, options)) for m in members]
        alike = _alike_calls(calls)
        if alike is None:
            return None
        task, pairs, defaults = alike
        first = self.app.build_job(task.name, *pairs[0], task=task, **defaults)
        # (a key is the task's unique_on or the call's unique_key: the first call has one if any does;
        # then the per-member path refuses it, naming the step)
        if first.exchange is not None or first.content_type != serialization.JSON or first.unique_key is not None:
            return None
        if first.due_now() and resolution.routes_by_name_only(self.app.conf.task_routes):  # (one queue for all)
            if self.root_row is None:
                self.root_row = first.id
            ids = [first.id, *new_job_ids(len(pairs) - 1)]
            self.headers[group_id] = _Header(task, defaults, first, pairs, ids, members, group_id, chord)
            return None, [AsyncResult(job_id, self.app, first.task) for job_id in ids]
        specs = self.app.build_jobs(task.name, pairs, task=task, **defaults)
        nodes = [self._node(spec, m, group_id) for spec, m in zip(specs, members, strict=True)]
        return nodes, [AsyncResult(spec.id, self.app, spec.task) for spec in specs]

    def materialize(self, streamed: _Header | None) -> None:
        """Build the member nodes of every header in ``self.headers`` but ``streamed`` (written by
        COPY from its calls) into its group's node, each job with the id its handle was given:
        what the plan's JSON (WORKFLOW_START) and ``_copied`` need."""
        for header in self.headers.values():
            if header is streamed or header.node is None:
                continue
            specs = self.app.build_jobs(header.task.name, header.pairs, task=header.task, **header.options)
            counts_down: Node | None = {"chord": header.group_id} if header.chord else None
            nodes = []
            for spec, job_id, member in zip(specs, header.ids, header.members, strict=True):
                spec.id = job_id
                node = self._node(spec, member, header.group_id)
                node["workflow"] = counts_down  # (one dict for them all: _copied encodes it once)
                nodes.append(node)
            header.node["members"] = nodes

    def _errback(self, errback: Any) -> Node:
        """The job that runs ``errback`` once a step failed: the built-in ``sqlq.errback`` on the
        errback's queue, given the failed job's id first (by the trigger) and the errback."""
        from .canvas import Signature

        if not isinstance(errback, Signature):
            errback = _signature(errback, self.app)
        routed = errback._local_task()
        where = {k: v for k, v in errback.options.items() if k in ("queue", "priority", "exchange", "routing_key")}
        spec = self.app.build_job(errback.name, errback.args, errback.kwargs, task=routed,  # (only routed here)
                                  **(routed._task_defaults(where) if routed is not None else where))
        wrapper = Signature(ERRBACK_TASK, (dict(errback),), app=self.app, queue=spec.queue, priority=spec.priority)
        node, _ = self._task(wrapper, (), None, None, follows=(), group_id=None, receives=True)
        node["mutable"] = True  # (the failed job's id goes first)
        return node

    def _flatten(self, tasks: Iterable[Any]) -> list[Any]:
        from .canvas import chain

        out: list[Any] = []
        for t in tasks:
            if isinstance(t, chain) and not t.options:
                out.extend(self._flatten(t.tasks))
            else:
                out.append(t)
        return out

    def _chain(self, item: Any, args: Sequence[Any], kwargs: Mapping[str, Any] | None,
               options: Mapping[str, Any] | None, *, follows: Sequence[Signature],
               group_id: str | None) -> tuple[Node, Any, list[Node], list[Signature]]:
        from .canvas import chain, chord, group

        steps = self._flatten(item.tasks)
        if not steps:
            raise ConfigurationError("an empty chain has nothing to run; give chain() at least one signature")
        # a group followed by steps is a chord (Celery's upgrade); a chord followed by steps gets them
        # as the rest of its body
        for i, step in enumerate(steps[:-1]):
            rest = steps[i + 1:]
            tail = rest[0] if len(rest) == 1 else chain(*rest, app=self.app)
            if isinstance(step, chord):
                steps = [*steps[:i], chord(step.tasks, chain(step.body, tail, app=self.app), app=self.app,
                                           **step.options)]
                break
            if isinstance(step, group):
                steps = [*steps[:i], chord(step, tail, app=self.app)]
                break
        chain_options = dict(item.options)
        chain_links = _as_list(chain_options.pop("link", None))
        chain_errbacks = _as_list(chain_options.pop("link_error", None))
        first_options = {**chain_options, **(options or {})}
        nodes: list[Node] = []
        prev_handle: Any = None
        before: Sequence[Signature] = follows
        tails: list[Node] = []
        for i, step in enumerate(steps):
            step_options = dict(first_options) if i == 0 else {}
            if chain_errbacks:
                step = _with_errbacks(step, chain_errbacks)
            if chain_links and i == len(steps) - 1:
                step = _with_links(step, chain_links)
            node, handle, tails, sources = self.build(
                step, args if i == 0 else (), kwargs if i == 0 else None, step_options, follows=before,
                group_id=group_id if i == len(steps) - 1 else None)
            if prev_handle is not None:
                _set_parent(_head(handle), prev_handle)
            nodes.append(node)
            prev_handle, before = handle, sources
        first = nodes[0]
        if len(nodes) > 1:
            first["workflow"] = {**(first.get("workflow") or {}), "chain": nodes[1:]}
        return first, prev_handle, tails, list(before)

    def _group(self, item: Any, args: Sequence[Any], kwargs: Mapping[str, Any] | None,
               options: Mapping[str, Any] | None, *, follows: Sequence[Signature],
               body: Any) -> tuple[Node, Any, list[Node], list[Signature]]:
        from .canvas import group
        from .result import GroupResult

        given = {**item.options, **(options or {})}
        group_id = _group_id(given.get("task_id") or given.get("group_id"))
        merged = {key: v for key, v in given.items() if key not in ("task_id", "group_id")}
        call_args = item.args if item.immutable else tuple(args) + item.args
        members: list[Node] = []
        handles: list[Any] = []
        tails: list[Node] = []
        sources: list[Signature] = []
        alike = None if follows else self._alike(item.tasks, call_args, kwargs, merged, group_id, body is not None)
        if alike is not None:
            nodes, handles = alike
            node: Node = {"group": group_id, "members": nodes, "results": [h.id for h in handles], "body": None}
            if nodes is None:  # kept as calls (self.headers)
                self.headers[group_id].node = node
            return node, GroupResult(group_id, handles, self.app), list(nodes or ()), [item.tasks[0]]
        for member in item.tasks:
            a, k, o = call_args, kwargs, merged
            if isinstance(member, group):
                raise ConfigurationError("a group inside a group is not supported; put the members in one group")
            node, handle, member_tails, member_sources = self.build(
                member, a, k, o, follows=follows, group_id=group_id)
            members.append(node)
            handles.append(handle)
            tails.extend(member_tails)
            sources.extend(member_sources)
        return ({"group": group_id, "members": members, "results": [h.id for h in handles], "body": None},
                GroupResult(group_id, handles, self.app), tails, sources)

    def _chord(self, item: Any, args: Sequence[Any], kwargs: Mapping[str, Any] | None,
               options: Mapping[str, Any] | None, *, follows: Sequence[Signature],
               group_id: str | None) -> tuple[Node, Any, list[Node], list[Signature]]:
        header = item.tasks  # (chord.tasks builds a new group at each read)
        own = dict(item.options)  # a chord's callbacks are its body's; its other options go to the header
        body = item.body
        links, errbacks = _as_list(own.pop("link", None)), _as_list(own.pop("link_error", None))
        if links:
            body = _with_links(body, links)
        if errbacks:
            body = _with_errbacks(body, errbacks)
        node, header_handle, member_tails, sources = self._group(header, args, kwargs, {**own, **(options or {})},
                                                                 follows=follows, body=body)
        counts_down: Node = {"chord": node["group"]}  # (one dict for every member with no other plan:
        for tail in member_tails:                     # _copied encodes it once; plans are never mutated)
            tail["workflow"] = {**tail["workflow"], "chord": node["group"]} if tail.get("workflow") else counts_down
        if node["members"] is not None:  # (a header kept as calls has the ids it was given: UUIDs)
            for h in header_handle.results:
                if h.id != task_uuid(h.id):
                    raise ConfigurationError(f"a chord member's task_id must be a UUID, got {h.id!r}")
        body_node, body_handle, body_tails, body_sources = self.build(  # (an empty header still gives [])
            body, (), None, None, follows=sources or [header], group_id=group_id)
        node["body"] = body_node
        _set_parent(_head(body_handle), header_handle)
        return node, body_handle, body_tails, body_sources


def _group_id(given: Any) -> str:
    """A group's id: the one given (``task_id=``/``group_id=``, a UUID), else a new one."""
    if not given:
        return str(uuid.uuid4())
    try:
        return str(uuid.UUID(str(given)))
    except ValueError:
        raise ConfigurationError(f"a group's id (task_id=) must be a UUID, got {given!r}") from None


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, Mapping):  # one signature (a dict)
        return [value]
    return list(value)


def _signature(value: Any, app: App) -> Signature:
    from .canvas import Signature

    if isinstance(value, Signature):
        return value
    if isinstance(value, Mapping):
        return Signature.from_dict(value, app=app)
    raise ConfigurationError(f"a callback or errback is a signature (add.s()), not {type(value).__name__}")


def _with_links(step: Any, links: list[Any]) -> Any:
    clone = step.clone()
    clone["options"]["link"] = [*_as_list(clone["options"].get("link")), *links]
    return clone


def _with_errbacks(step: Any, errbacks: list[Any]) -> Any:
    """``step`` with ``errbacks`` added: to each member of a group, to a chord's body (which fails
    when a member does), to each step of a chain, as Celery's ``chain.on_error`` reaches them."""
    from .canvas import chain, chord, group

    if isinstance(step, chord):
        return chord(step.tasks, _with_errbacks(step.body, errbacks), app=step._app, **step.options)
    if isinstance(step, group):
        return group([_with_errbacks(m, errbacks) for m in step.tasks], app=step._app, **step.options)
    if isinstance(step, chain):
        return chain(*[_with_errbacks(t, errbacks) for t in step.tasks], app=step._app, **step.options)
    clone = step.clone()
    clone["options"]["link_error"] = [*_as_list(clone["options"].get("link_error")), *errbacks]
    return clone


def _head(handle: Any) -> Any:
    """The first handle of a step's own line (a chord body's header group, a chain's first step):
    where the step before it is hung."""
    from .result import AsyncResult

    while True:
        up = getattr(handle, "_parent", None) if isinstance(handle, AsyncResult) else handle.parent
        if up is None:
            return handle
        handle = up


def _set_parent(handle: Any, parent: Any) -> None:
    from .result import AsyncResult

    if isinstance(handle, AsyncResult):
        handle._parent = parent
    else:  # a GroupResult: Celery's parent of a group in a chain
        handle.parent = parent


def needs_plan(sig: Signature) -> bool:
    """Whether sending ``sig`` needs the workflow path (callbacks or errbacks in its options)."""
    options = sig["options"]
    return bool(options.get("link") or options.get("link_error"))


def send(app: App, item: Any, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None, *,
         connection: Any = None, **options: Any) -> Any:
    """Compile ``item`` (a chain, chord, group with a nested canvas, or signature with callbacks)
    into a plan and write its first jobs in one statement (``workflow_start``), on sqlq's own
    connection or inside the caller's transaction (``connection=``, psycopg or SQLAlchemy).
    Returns the workflow's result handle: a chain's last step's (``.parent`` walks back), a
    chord's body's (``.parent`` is the header's GroupResult), a group's GroupResult."""
    from .result import AsyncResult

    compiler = _Compiler(app)
    node, handle, _, _ = compiler.build(item, tuple(args or ()), kwargs, options)
    streamed = _streamable(compiler, node, connection)
    compiler.materialize(streamed)
    if streamed is not None:
        _streamed(app, compiler, streamed, node, connection)
    elif not _copied(app, compiler, node, connection):
        _write(app, _plan_json(node), compiler.parent_row, connection)
    parent = _current_request.get()
    if parent is not None and parent.id is not None and options.get("add_to_parent", True):
        parent.children.append(handle)
    if isinstance(handle, AsyncResult):
        handle._workflow = _ids(node)  # type: ignore[attr-defined]  # (a slot left unset on plain handles)
    return handle


_TEXT_KEYS = ("args", "kwargs", "headers")


def _plan_json(plan: Any) -> str:
    """A plan (a node, or a node's workflow) as JSON text, the steps' args, kwargs and headers, kept
    as the JSON text their encoding made, spliced in as they are (not decoded and encoded again)."""
    def decoded(value: Any) -> Any:
        if isinstance(value, dict):
            if "task" in value and isinstance(value.get("args"), str):
                return {k: (json.loads(v) if k in _TEXT_KEYS and isinstance(v, str) else decoded(v))
                        for k, v in value.items()}
            return {k: decoded(v) for k, v in value.items()}
        if isinstance(value, list):
            return [decoded(v) for v in value]
        return value

    return json.dumps(decoded(plan), separators=(",", ":"))


def _copied(app: App, compiler: _Compiler, node: Node, connection: Any) -> bool:
    """Write a group's or chord's header's members by COPY (the bulk path), when they all are task
    steps due now and the connection is sqlq's own or the caller's psycopg one; False otherwise
    (then the plan goes to workflow_start)."""
    import psycopg

    members = node.get("members") if "group" in node else None
    if not members or (connection is not None and not isinstance(connection, psycopg.Connection)):
        return False
    specs = [compiler.specs.get(m.get("id", "")) for m in members]
    if any(s is None or not s.due_now() for s in specs) or any("group" in m for m in members):
        return False
    encoded: dict[int, str] = {}  # a plan shared by many members (a chord's counting down) is encoded once

    def plan_json(plan: Node) -> str:
        text = encoded.get(id(plan))
        if text is None:
            text = encoded[id(plan)] = _plan_json(plan)
        return text

    rows = [(m["id"], s.task, s.queue, s.priority, "available", s.args, s.kwargs, None, s.content_type, s.headers,
             s.acks_late, m["group_id"], m["root_id"], compiler.parent_row,
             None if m["workflow"] is None else plan_json(m["workflow"]))
            for m, s in zip(members, specs, strict=True) if s is not None]
    body = node.get("body")
    body_json = None if body is None else _plan_json(body)
    queues = sorted({row[2] for row in rows})
    if connection is None:
        with app.connection() as conn:
            app.store.workflow_copy(conn, node["group"], node["results"], body_json, rows, queues)
    else:
        app.store.workflow_copy(connection, node["group"], node["results"], body_json, rows, queues)
    return True


def _streamable(compiler: _Compiler, node: Node, connection: Any) -> _Header | None:
    """The header kept as calls that is the whole first write of the plan (a top-level group or
    chord of one task's calls), when it can go by COPY (sqlq's own or the caller's psycopg
    connection)."""
    import psycopg

    if "group" not in node or node["members"] is not None:
        return None
    if connection is not None and not isinstance(connection, psycopg.Connection):
        return None
    return compiler.headers[node["group"]]


def _streamed(app: App, compiler: _Compiler, header: _Header, node: Node, connection: Any) -> None:
    """Write a header kept as calls by COPY, each member's arguments encoded as its row goes (as
    ``apply_many``'s bulk path does), every row pointing to the same plan text, encoded once (a
    chord member's is its chord's id). On the caller's connection the rows are encoded first, so
    that an argument that cannot be encoded raises before anything is sent and the caller's
    transaction is left as it was."""
    first = header.first
    plan = _plan_json({"chord": header.group_id}) if header.chord else None
    shared = (first.task, first.queue, first.priority, "available")
    tail = (None, first.content_type, first.headers, first.acks_late, header.group_id, compiler.root_row,
            compiler.parent_row, plan)
    encode = serialization.encode_json_call

    def rows() -> Iterator[tuple[Any, ...]]:
        for job_id, (args, kwargs) in zip(header.ids, header.pairs, strict=True):
            _check_call(args, kwargs)
            yield (job_id, *shared, *encode(args, kwargs), *tail)

    body = node.get("body")
    body_json = None if body is None else _plan_json(body)
    if connection is None:
        with app.connection() as conn:
            app.store.workflow_copy(conn, header.group_id, header.ids, body_json, rows(), [first.queue])
    else:
        app.store.workflow_copy(connection, header.group_id, header.ids, body_json, list(rows()), [first.queue])


def _write(app: App, plan: str, parent_row: str | None, connection: Any) -> None:
    """WORKFLOW_START on sqlq's own connection (committed at once), or on the caller's psycopg or
    SQLAlchemy connection, inside the caller's transaction. Not retried on a broken connection:
    the error says the workflow's fate is unknown, as for a caller's connection."""
    import psycopg

    from .db import raise_clear_error

    store = app.store
    try:
        if connection is None:
            with app.connection() as conn:
                store.workflow_start(conn, plan, parent_row)
        elif isinstance(connection, psycopg.Connection):
            store.workflow_start(connection, plan, parent_row)
        else:
            from .enqueue import _sqlalchemy_connection

            _sqlalchemy_connection(connection).exec_driver_sql(store.sql["WORKFLOW_START"],
                                                               {"plan": plan, "parent": parent_row})
    except psycopg.Error as exc:
        raise_clear_error(exc, app.conf.schema)
        raise


def _ids(node: Node) -> list[str]:
    """Every job id a plan pre-assigned (not its errbacks'): what revoking the workflow names."""
    out: list[str] = []

    def walk(n: Node) -> None:
        if "group" in n:
            if n["members"] is None:  # a header written from its calls: its members' ids, in order
                out.extend(n["results"])
            for m in n["members"] or ():
                walk(m)
            if n.get("body"):
                walk(n["body"])
            return
        out.append(n["id"])
        wf = n.get("workflow") or {}
        for step in wf.get("chain", ()):
            walk(step)
        for step in wf.get("link", ()):
            walk(step)

    walk(node)
    return out


# built-in tasks --------------------------------------------------------------------------------

def _takes_request(task: Task) -> bool:
    """Celery's test of a new-style errback: its function takes more than one positional argument
    (``(request, exc, traceback)``), else it is called the old way, with the task id."""
    try:
        params = inspect.signature(task.run).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) > 1 or any(p.kind is p.VAR_POSITIONAL for p in params)


def chunked(it: Iterable[Any], n: int) -> Iterator[list[Any]]:
    """``it`` in lists of ``n`` (the last may be shorter), as Celery's chunks splits its items."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ConfigurationError(f"chunks needs a chunk size of at least 1, got {n!r}")
    part: list[Any] = []
    for x in it:
        part.append(x)
        if len(part) == n:
            yield part
            part = []
    if part:
        yield part


def builtin(app: App, name: str) -> Task | None:
    """Register and return the built-in task ``name`` in ``app`` (None: not a built-in)."""
    from .task import Task

    if name not in BUILTIN_TASKS:
        return None

    def xmap(task: Mapping[str, Any], it: Iterable[Any]) -> list[Any]:
        run = _signature(task, app).type
        return [run(item) for item in it]

    def xstarmap(task: Mapping[str, Any], it: Iterable[Any]) -> list[Any]:
        run = _signature(task, app).type
        return [run(*item) for item in it]

    def chunks(task: Mapping[str, Any], it: Iterable[Any], n: int) -> list[list[Any]]:
        run = _signature(task, app).type
        return [[run(*item) for item in part] for part in chunked(it, n)]

    def errback(failed_id: str, errback: Mapping[str, Any]) -> Any:
        from .result import AsyncResult

        sig = _signature(errback, app)
        failed = AsyncResult(failed_id, app)
        target = sig._local_task()
        if target is None or not _takes_request(target):
            sig.apply_async((failed_id,))  # Celery's old-style errback: sent, with the task id
            return None
        with app.connection() as conn:
            row = app.store.workflow_failed(conn, task_uuid(failed_id))
        request = Request(id=failed_id, task=row.task if row else None,
                          args=_decoded(row.args if row else None, []),
                          kwargs=_decoded(row.kwargs if row else None, {}),
                          group=row.group_id if row else None, is_eager=False)
        return sig(request, failed.result, failed.traceback)

    bodies: dict[str, Callable[..., Any]] = {MAP_TASK: xmap, STARMAP_TASK: xstarmap, CHUNKS_TASK: chunks,
                                             ERRBACK_TASK: errback}
    fn = bodies[name]
    cls = type(fn.__name__, (Task,), {"name": name, "run": staticmethod(fn), "__wrapped__": fn,
                                      "__doc__": fn.__doc__, "__module__": __name__, "typing": False})
    return app._bind(cls())


def _decoded(text: str | None, default: Any) -> Any:
    if text is None:
        return default
    try:
        return serialization.json_loads(text)
    except ValueError:
        return default
