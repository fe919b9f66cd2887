"""The REST API under ``/api/v1``: nodes, runs (with their events as SSE), jobs, keys,
audit and the caller's own API tokens.

JSON in and out. A caller authenticates with ``Authorization: Bearer <token>`` or with
the console's session cookie (then state-changing calls need ``X-CSRF-Token``). Every
handler checks the caller's role first (:func:`ecsexec.web.auth.require`); the pages call
these same endpoints, so this is the one enforcement path. Stored secrets are never
returned: keys are write-only, secure job options are never echoed, API tokens are shown
once when created.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import quote

from aiohttp import web

from ecsexec.errors import KeyStoreError, Status
from ecsexec.jobs.model import Job
from ecsexec.nodes.node import Node
from ecsexec.store.history import RunRecord
from ecsexec.store.keys import KEY_TYPES, KeyInfo, KeyStore, normalize_path
from ecsexec.store.team import ApiToken, AuditEntry, User
from ecsexec.web import openapi, sse, validate
from ecsexec.web.acl import Action
from ecsexec.web.auth import (
    check_origin,
    credential,
    current_session,
    record,
    require,
    require_user,
    source,
    watch_credential,
)
from ecsexec.web.keys import HISTORY, JOB_LIBRARY, KEYSTORE, LIVE, POLICY, RUNS, SCHEDULER, STORE
from ecsexec.web.passwords import new_api_token

PREFIX: Final = "/api/v1"
NODE_ANSWERS_KEPT: Final = 16
# The encoded answer of GET /nodes per (inventory generation, filter, role): a thousand
# nodes are ~1.5 MB of JSON, and most calls repeat one of a few filters.
NODE_ANSWERS: Final = web.AppKey("ecsexec.node_answers", dict[tuple[int, str, str], bytes])
# The node names each node-limited role may see, per inventory generation.
SCOPES: Final = web.AppKey("ecsexec.scopes", dict[tuple[int, str], frozenset[str]])
RUN_STATUSES: Final = tuple(
    str(s)
    for s in (
        Status.RUNNING,
        Status.SUCCEEDED,
        Status.FAILED,
        Status.ERROR,
        Status.INTERRUPTED,
        Status.INCOMPLETE,
    )
)
MAX_TOKEN_DAYS: Final = 366
RUN_PAGE: Final = 200  # history rows read at a time when a role sees only some runs
RUN_SCAN: Final = 5000  # at most this many rows are read for one listing
_SAFE_FILENAME: Final = re.compile(r"[^A-Za-z0-9._-]+")


# --- shapes --------------------------------------------------------------------------------


def node_json(node: Node) -> dict[str, Any]:
    return {"name": node.name, "attributes": dict(node.attributes)}


def run_json(record: RunRecord, *, live: bool) -> dict[str, Any]:
    result: dict[str, Any] = {
        "id": record.id,
        "href": f"{PREFIX}/runs/{record.id}",
        "kind": record.kind,
        "user": record.user,
        "command": record.command,
        "job": record.job,
        "filter": record.filter,
        "options": dict(record.options),  # secure values were masked before recording
        "status": record.status,
        "exit_code": record.exit_code,
        "started_at": record.started_at.isoformat(),
        "finished_at": record.finished_at.isoformat() if record.finished_at else None,
        "duration_s": record.duration,
        "node_count": record.node_count,
        "live": live,
    }
    if record.nodes:
        result["nodes"] = [
            {
                "node": n.node,
                "status": n.status,
                "exit_code": n.exit_code,
                "duration_s": n.duration_s,
                "error": n.detail,
                "log_bytes": n.log_bytes,
                "truncated": n.truncated,
                "log_href": f"{PREFIX}/runs/{record.id}/nodes/{quote(n.node, safe='')}/log",
            }
            for n in record.nodes
        ]
    return result


def job_json(job: Job, next_run: datetime | None, *, detail: bool) -> dict[str, Any]:
    result: dict[str, Any] = {
        "name": job.path,
        "group": job.group,
        "description": job.description,
        "href": f"{PREFIX}/jobs/{quote(job.path)}",
        "filter": job.filter,
        "schedule": job.schedule.expression if job.schedule is not None else None,
        "schedule_enabled": job.scheduled,
        "next_run": next_run.isoformat() if next_run else None,
    }
    if detail:
        result["options"] = [
            {
                "name": o.name,
                "description": o.description,
                # A secure option's default is a secret too: never sent.
                "default": None if o.secure else o.value,
                "values": list(o.values),
                "enforced": o.enforced,
                "required": o.required,
                "regex": o.regex,
                "secure": o.secure,
            }
            for o in job.options
        ]
        result["steps"] = [step.label() for step in job.steps]
    return result


def key_json(info: KeyInfo) -> dict[str, Any]:
    return {
        "path": info.path,
        "type": info.type,
        "size": info.size,
        "created": info.created.isoformat(),
        "modified": info.modified.isoformat(),
    }


def token_json(token: ApiToken) -> dict[str, Any]:
    return {
        "id": token.id,
        "name": token.name,
        "created_at": token.created_at,
        "expires_at": token.expires_at,
        "last_used_at": token.last_used_at,
        "revoked": token.revoked,
    }


def audit_json(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": entry.at,
        "user": entry.user,
        "action": entry.action,
        "target": entry.target,
        "outcome": entry.outcome,
        "source": entry.source,
        "detail": dict(entry.detail),
    }


# --- me --------------------------------------------------------------------------------------


async def get_me(request: web.Request) -> web.Response:
    user = require_user(request)
    policy = request.app[POLICY]
    actions = [str(a) for a in Action if policy.allows(user.role, a)]
    me: dict[str, Any] = {"name": user.name, "role": user.role, "actions": actions}
    session = current_session(request)
    if session is not None:  # readable by this origin's pages only (no CORS)
        me["csrf_token"] = session.csrf_token
    return web.json_response(me)


# --- nodes -----------------------------------------------------------------------------------


async def list_nodes(request: web.Request) -> web.Response:
    user = require(request, Action.VIEW_NODES)
    node_filter = validate.query_text(request, "filter", max_length=validate.MAX_FILTER)
    refresh = validate.query_text(request, "refresh", choices=("0", "1", "true", "false"))
    runs = request.app[RUNS]
    selection = await runs.nodes(node_filter, refresh=refresh in ("1", "true"))
    key = (runs.generation, node_filter or "", user.role)
    cache = request.app[NODE_ANSWERS]
    body = cache.get(key)
    if body is None:
        visible = request.app[POLICY].visible_nodes(user.role, selection.nodes)
        body = json.dumps(
            {
                "filter": node_filter or "",
                "count": len(visible),
                "nodes": [node_json(node) for node in visible],
                "warnings": [*selection.discovery_warnings, *selection.warnings],
            }
        ).encode()
        cache[key] = body
        while len(cache) > NODE_ANSWERS_KEPT:
            cache.pop(next(iter(cache)))
    return web.Response(body=body, content_type="application/json")


async def get_node(request: web.Request) -> web.Response:
    user = require(request, Action.VIEW_NODES)
    name = request.match_info["name"]
    selection = await request.app[RUNS].nodes(None)
    found = [node for node in selection.inventory if node.name == name]
    visible = request.app[POLICY].visible_nodes(user.role, found)
    if not visible:  # outside the role's filter is the same as absent
        raise web.HTTPNotFound(text=f"no node named {name[:200]!r}")
    return web.json_response(node_json(visible[0]))


# --- runs ------------------------------------------------------------------------------------


async def start_run(request: web.Request) -> web.Response:
    user = require(request, Action.RUN_COMMAND)
    body = await validate.json_object(
        request, allowed=frozenset({"filter", "command", "threads", "keepgoing"})
    )
    node_filter = validate.text(body, "filter", max_length=validate.MAX_FILTER)
    command = validate.text(body, "command", max_length=validate.MAX_COMMAND)
    threads = validate.integer(body, "threads", minimum=1, maximum=validate.MAX_THREADS)
    keepgoing = validate.boolean(body, "keepgoing", default=True)
    run_id = await request.app[RUNS].start_command(
        user, node_filter, command, threads=threads, keepgoing=keepgoing, source=source(request)
    )
    return _started(run_id)


def _started(run_id: int) -> web.Response:
    href = f"{PREFIX}/runs/{run_id}"
    return web.json_response(
        {"id": run_id, "href": href, "events": f"{href}/events"},
        status=202,
        headers={"Location": href},
    )


async def list_runs(request: web.Request) -> web.Response:
    caller = require(request, Action.VIEW_ACTIVITY)
    limit = validate.query_int(request, "limit", minimum=1, maximum=validate.MAX_LIMIT, default=50)
    before = validate.query_int(request, "before", minimum=1, maximum=validate.MAX_ID, default=None)
    status = validate.query_text(request, "status", choices=RUN_STATUSES)
    user = validate.query_text(request, "user")
    job = validate.query_text(request, "job", max_length=500)
    records = await visible_runs(
        request, caller, limit=limit or 50, before=before, status=status, user=user, job=job
    )
    runs = request.app[RUNS]
    return web.json_response({"runs": [run_json(r, live=runs.is_running(r.id)) for r in records]})


async def visible_runs(
    request: web.Request,
    caller: User,
    *,
    limit: int,
    before: int | None = None,
    status: str | None = None,
    user: str | None = None,
    job: str | None = None,
    keep: Callable[[RunRecord], bool] | None = None,
) -> list[RunRecord]:
    """The newest ``limit`` runs the caller's role may see (and ``keep`` keeps), older than
    ``before``. A limited role's runs are found among up to :data:`RUN_SCAN` rows, read a
    page at a time, so runs it may not see never leave its page short or empty; a
    node-limited role's runs come with their nodes."""
    history = request.app[HISTORY]
    scope = await run_scope(request, caller)
    role = request.app[POLICY].role(caller.role)
    narrowed = scope is not None or bool(role and role.jobs) or keep is not None
    found: list[RunRecord] = []
    scanned = 0
    page = max(limit, RUN_PAGE) if narrowed else limit
    while len(found) < limit:
        records = history.find_runs(limit=page, status=status, user=user, job=job, before=before)
        for row in records:
            if (keep is not None and not keep(row)) or not job_visible(request, caller, row):
                continue
            shown: RunRecord | None = row
            if scope is not None:
                shown = history.run(row.id)
                if shown is None or not in_scope(shown, scope):
                    continue
            found.append(shown or row)
            if len(found) == limit:
                break
        scanned += len(records)
        if not narrowed or len(records) < page or scanned >= RUN_SCAN or not records:
            break
        before = records[-1].id
    return found


def _record(request: web.Request) -> RunRecord:
    run_id = validate.path_int(request, "run_id")
    record = request.app[HISTORY].run(run_id)
    if record is None:
        raise web.HTTPNotFound(text=f"no run {run_id}")
    return record


async def run_scope(request: web.Request, user: User) -> frozenset[str] | None:
    """The node names a role limited to a node filter may see runs of (None: no limit).

    A run is visible to such a role only if every node it ran on is one the role can see
    now, so its output never leaks from nodes outside the role's filter."""
    role = request.app[POLICY].role(user.role)
    if role is None:
        return frozenset()
    if not role.nodes:
        return None
    runs = request.app[RUNS]
    selection = await runs.nodes(None)
    key = (runs.generation, user.role)
    cache = request.app[SCOPES]
    if any(generation != runs.generation for generation, _ in cache):
        cache.clear()  # rediscovered: every role's nodes may have changed
    names = cache.get(key)
    if names is None:
        visible = request.app[POLICY].visible_nodes(user.role, selection.inventory)
        names = cache[key] = frozenset(node.name for node in visible)
    return names


def in_scope(record: RunRecord, scope: frozenset[str] | None) -> bool:
    return scope is None or all(node.node in scope for node in record.nodes)


def job_visible(request: web.Request, user: User, record: RunRecord) -> bool:
    """Whether the caller's role may see ``record`` for its job: a role limited to some
    jobs (its ``jobs`` regex) sees only their runs, with their options and output, as
    Rundeck shows a job's executions only to those who may read the job."""
    return record.kind != "job" or request.app[POLICY].allows_job(user.role, record.job)


async def visible(request: web.Request, user: User, record: RunRecord) -> bool:
    """Whether the caller's role may see ``record``: its job, and every node it ran on."""
    return job_visible(request, user, record) and in_scope(record, await run_scope(request, user))


async def _visible_record(request: web.Request, user: User) -> RunRecord:
    """The run in the URL, if the caller's role may see it (else 404, as if absent)."""
    record = _record(request)
    if not await visible(request, user, record):
        raise web.HTTPNotFound(text=f"no run {record.id}")
    return record


async def get_run(request: web.Request) -> web.Response:
    user = require(request, Action.VIEW_ACTIVITY)
    record = await _visible_record(request, user)
    return web.json_response(run_json(record, live=request.app[RUNS].is_running(record.id)))


async def run_events(request: web.Request) -> web.StreamResponse:
    user = require(request, Action.VIEW_ACTIVITY)
    check_origin(request)
    after = validate.last_event_id(request)
    run_id = validate.path_int(request, "run_id")
    if request.app[HISTORY].run(run_id) is not None:  # a live run is recorded as it starts
        await _visible_record(request, user)
    try:
        events = request.app[RUNS].events(run_id, after)
    except KeyError:
        raise web.HTTPNotFound(text=f"no run {run_id}") from None
    closed = asyncio.Event()

    async def close() -> None:
        closed.set()

    async def end_when_disallowed() -> None:
        await watch_credential(request, Action.VIEW_ACTIVITY)
        closed.set()

    live = request.app[LIVE]
    handle = live.add(user.name, close, ends_with_run=True, credential=credential(request))
    watch = asyncio.ensure_future(end_when_disallowed())
    try:
        return await sse.stream(request, events, closed)
    finally:
        watch.cancel()
        live.discard(user.name, handle)


async def node_log(request: web.Request) -> web.StreamResponse:
    user = require(request, Action.VIEW_ACTIVITY)
    record = await _visible_record(request, user)
    node = request.match_info["node"]
    logs = request.app[HISTORY].logs(record.id, node)
    if not logs:
        raise web.HTTPNotFound(text=f"run {record.id} has no node {node[:200]!r}")
    filename = _SAFE_FILENAME.sub("_", f"run-{record.id}-{node}")[:150] + ".log"
    return web.Response(
        body=logs[0][1],
        content_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


async def stop_run(request: web.Request) -> web.Response:
    user = require_user(request)
    if not request.app[POLICY].allows(user.role, Action.RUN_JOB):
        require(request, Action.RUN_COMMAND)  # may stop neither kind: refused before lookup
    run = await _visible_record(request, user)
    user = require(request, Action.RUN_JOB if run.kind == "job" else Action.RUN_COMMAND)
    if run.user != user.name and not request.app[POLICY].allows(user.role, Action.ADMIN):
        record_denied(request, user, f"run {run.id}", "stop another user's run")
        raise web.HTTPForbidden(
            text=f"run {run.id} is {run.user}'s; only they or an admin may stop it"
        )
    runs = request.app[RUNS]
    if not runs.is_running(run.id):
        raise web.HTTPConflict(text=f"run {run.id} is not running ({run.status})")
    stopped = await runs.stop(run.id)
    record(request, "run-stop", f"run {run.id}", "ok" if stopped else "failed", user=user)
    updated = request.app[HISTORY].run(run.id) or run
    return web.json_response(run_json(updated, live=runs.is_running(run.id)))


def record_denied(request: web.Request, user: User, target: str, why: str) -> None:
    record(request, "acl-deny", target, "denied", {"reason": why}, user=user)


# --- jobs ------------------------------------------------------------------------------------


def _visible_jobs(request: web.Request, user: User) -> list[Job]:
    policy = request.app[POLICY]
    return [job for job in request.app[JOB_LIBRARY]() if policy.allows_job(user.role, job.path)]


def _next_runs(request: web.Request) -> dict[str, datetime]:
    scheduler = request.app[SCHEDULER]
    if scheduler is None:
        return {}
    return {job.path: moment for job, moment in scheduler.upcoming()}


def _job(request: web.Request, user: User) -> Job:
    name = request.match_info["name"]
    for job in _visible_jobs(request, user):
        if job.path == name or (job.uuid and job.uuid == name):
            return job
    raise web.HTTPNotFound(text=f"no job named {name[:200]!r}")


async def list_jobs(request: web.Request) -> web.Response:
    user = require(request, Action.RUN_JOB)
    upcoming = _next_runs(request)
    jobs = _visible_jobs(request, user)
    return web.json_response(
        {"jobs": [job_json(j, upcoming.get(j.path), detail=False) for j in jobs]}
    )


async def get_job(request: web.Request) -> web.Response:
    user = require(request, Action.RUN_JOB)
    job = _job(request, user)
    return web.json_response(job_json(job, _next_runs(request).get(job.path), detail=True))


async def start_job(request: web.Request) -> web.Response:
    user = require(request, Action.RUN_JOB)
    job = _job(request, user)
    body = await validate.json_object(request, allowed=frozenset({"options"}))
    options = validate.string_map(body, "options")
    run_id = await request.app[RUNS].start_job(user, job, options, source=source(request))
    return _started(run_id)


# --- keys ------------------------------------------------------------------------------------


def _keystore(request: web.Request) -> KeyStore:
    keystore = request.app[KEYSTORE]
    if keystore is None:
        raise web.HTTPServiceUnavailable(
            text="key storage is not set up on this server ([keystore] in ecsexec.toml)"
        )
    return keystore


def _key_path(request: web.Request) -> str:
    try:
        return normalize_path(request.match_info["path"])
    except KeyStoreError as exc:
        raise validate.invalid("path", str(exc)) from None


async def list_keys(request: web.Request) -> web.Response:
    require(request, Action.MANAGE_KEYS)
    keystore = _keystore(request)
    infos = await asyncio.to_thread(keystore.list)
    return web.json_response({"keys": [key_json(info) for info in infos]})


async def put_key(request: web.Request) -> web.Response:
    user = require(request, Action.MANAGE_KEYS)
    keystore = _keystore(request)
    path = _key_path(request)
    body = await validate.json_object(request, allowed=frozenset({"type", "value"}))
    key_type = validate.text(body, "type", required=False, default="password")
    if key_type not in KEY_TYPES:
        raise validate.invalid("type", f"must be one of {', '.join(KEY_TYPES)}")
    value = validate.text(body, "value", max_length=64 * 1024, secret=True)
    existed = await asyncio.to_thread(keystore.exists, path)
    info = await asyncio.to_thread(keystore.put, path, value.encode(), key_type)
    record(request, "key-put", path, "ok", {"type": key_type}, user=user)
    return web.json_response(key_json(info), status=200 if existed else 201)


async def delete_key(request: web.Request) -> web.Response:
    user = require(request, Action.MANAGE_KEYS)
    keystore = _keystore(request)
    path = _key_path(request)
    if not await asyncio.to_thread(keystore.exists, path):
        raise web.HTTPNotFound(text=f"no key at {path}")
    await asyncio.to_thread(keystore.remove, path)
    record(request, "key-delete", path, "ok", user=user)
    return web.Response(status=204)


# --- audit -----------------------------------------------------------------------------------


async def list_audit(request: web.Request) -> web.Response:
    require(request, Action.ADMIN)
    limit = validate.query_int(request, "limit", minimum=1, maximum=validate.MAX_LIMIT, default=100)
    before = validate.query_int(request, "before", minimum=1, maximum=validate.MAX_ID, default=None)
    user = validate.query_text(request, "user")
    action = validate.query_text(request, "action")
    entries = request.app[STORE].list_audit(
        limit=limit or 100, before_id=before, user=user, action=action
    )
    return web.json_response({"entries": [audit_json(e) for e in entries]})


# --- tokens ----------------------------------------------------------------------------------


async def list_tokens(request: web.Request) -> web.Response:
    user = require_user(request)
    tokens = request.app[STORE].list_tokens(user.name)
    return web.json_response({"tokens": [token_json(t) for t in tokens]})


async def create_token(request: web.Request) -> web.Response:
    user = require_user(request)
    body = await validate.json_object(request, allowed=frozenset({"name", "expires_in_days"}))
    name = validate.text(body, "name", max_length=validate.MAX_NAME)
    days = validate.integer(body, "expires_in_days", minimum=1, maximum=MAX_TOKEN_DAYS)
    expires = (
        (datetime.now(UTC) + timedelta(days=days)).isoformat(timespec="seconds")
        if days is not None
        else None
    )
    token, digest = new_api_token()
    created = request.app[STORE].add_token(user.name, name, digest, expires)
    record(request, "token-create", f"token {created.id}", "ok", {"name": name}, user=user)
    # The only time the token is ever shown: the store keeps its digest.
    return web.json_response({**token_json(created), "token": token}, status=201)


async def revoke_token(request: web.Request) -> web.Response:
    user = require_user(request)
    token_id = request.match_info["token_id"]
    if not request.app[STORE].revoke_token(user.name, token_id):
        raise web.HTTPNotFound(text=f"you have no token {token_id[:80]!r}")
    record(request, "token-revoke", f"token {token_id}", "ok", user=user)
    return web.Response(status=204)


# --- the document ----------------------------------------------------------------------------


async def get_openapi(request: web.Request) -> web.Response:
    require_user(request)
    return web.json_response(openapi.document())


ROUTES: Final[Sequence[tuple[str, str, Any]]] = (
    ("GET", "/me", get_me),
    ("GET", "/nodes", list_nodes),
    ("GET", "/nodes/{name}", get_node),
    ("POST", "/runs", start_run),
    ("GET", "/runs", list_runs),
    ("GET", "/runs/{run_id}", get_run),
    ("GET", "/runs/{run_id}/events", run_events),
    ("GET", "/runs/{run_id}/nodes/{node}/log", node_log),
    ("POST", "/runs/{run_id}/stop", stop_run),
    ("GET", "/jobs", list_jobs),
    # A job's name may hold slashes (group/name): the runs route must come first.
    ("POST", "/jobs/{name:.+}/runs", start_job),
    ("GET", "/jobs/{name:.+}", get_job),
    ("GET", "/keys", list_keys),
    ("PUT", "/keys/{path:.+}", put_key),
    ("DELETE", "/keys/{path:.+}", delete_key),
    ("GET", "/audit", list_audit),
    ("GET", "/tokens", list_tokens),
    ("POST", "/tokens", create_token),
    ("DELETE", "/tokens/{token_id}", revoke_token),
    ("GET", "/openapi.json", get_openapi),
)


def setup_api(app: web.Application) -> None:
    """Add every API route."""
    app[NODE_ANSWERS] = {}
    app[SCOPES] = {}
    for method, path, handler in ROUTES:
        app.router.add_route(method, PREFIX + path, handler)
