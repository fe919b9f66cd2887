"""The console's HTML pages: server-rendered nodes, commands, jobs, activity, keys, tokens, audit.

Pages only read (through the engine and stores in the app keys) and render; every action a
page offers (run, stop, run job, put or delete a key, create or revoke a token) is a
``fetch`` to the REST API with the ``X-CSRF-Token`` header (``static/app.js``), so the API
stays the one enforcement path.
Each handler checks its action with :func:`ecsexec.web.auth.require` first (the Tokens
page, open to every role, with :func:`ecsexec.web.auth.require_user`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, urlencode

import aiohttp_jinja2
from aiohttp import web

from ecsexec.errors import EcsexecError, Status
from ecsexec.jobs.model import Job
from ecsexec.nodes.ecs_attributes import (
    CLUSTER_NAME,
    CONTAINER_IMAGE,
    EXEC_AGENT_STATUS,
    REGION,
    SERVICE_NAME,
)
from ecsexec.nodes.node import Node
from ecsexec.store.history import RunRecord
from ecsexec.store.team import ApiToken
from ecsexec.web import validate
from ecsexec.web.acl import Action
from ecsexec.web.api import MAX_TOKEN_DAYS, visible, visible_runs
from ecsexec.web.app import CONTENT_SECURITY_POLICY
from ecsexec.web.auth import csrf_token, require, require_user
from ecsexec.web.keys import HISTORY, JOB_LIBRARY, KEYSTORE, POLICY, RUNS, SCHEDULER, STORE

TERMINAL_CSP: Final = CONTENT_SECURITY_POLICY.replace(
    "style-src 'self'", "style-src 'self' 'unsafe-inline'"
)
STATIC_DIR: Final = Path(__file__).resolve().parent / "static"

# The Nodes table: (heading, attribute). Each value is a link that narrows the filter.
NODE_COLUMNS: Final = (
    ("Cluster", CLUSTER_NAME),
    ("Service", SERVICE_NAME),
    ("Image", CONTAINER_IMAGE),
    ("Region", REGION),
    ("Exec agent", EXEC_AGENT_STATUS),
)
NODE_TABLE_LIMIT: Final = 500  # rows rendered; the count always covers every match
CONFIRM_ABOVE: Final = 20  # a run on more nodes asks for confirmation first
LOG_PREVIEW_BYTES: Final = 32 * 1024  # per node on the run page; the rest is a download
ACTIVITY_LIMIT: Final = 50
RECENT_COMMANDS: Final = 10  # offered under the Command field
RECENT_SCAN: Final = 200  # history rows read to find them
AUDIT_LIMIT: Final = 100
RUN_STATUSES: Final = tuple(
    s.value
    for s in (
        Status.RUNNING,
        Status.SUCCEEDED,
        Status.FAILED,
        Status.ERROR,
        Status.TIMEOUT,
        Status.CANCELLED,
        Status.INTERRUPTED,
        Status.INCOMPLETE,
    )
)
# What makes a filter value need quoting: a delimiter (code point <= U+0020, node-filter.md
# §1), a leading quote, or a comma (which would otherwise split it into alternatives, §2).
_NEEDS_QUOTES: Final = re.compile(r"[\x00-\x20,]|^['\"]|^$")
# Terminal escapes (colours, titles) and other control characters in command output; the
# live view drops the same ones (static/app.js), so a run looks alike live and afterwards.
_TERMINAL_ESCAPES: Final = re.compile(
    r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])"
    r"|\x1b(?:\[[0-?]*[ -/]*|\][^\x07\x1b]*)?$"
    r"|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"
)


def setup_pages(app: web.Application) -> None:
    """Add every HTML page (and ``/static``, unless the app already serves it)."""
    routes = app.router
    if "static" not in routes.named_resources():
        routes.add_static("/static", STATIC_DIR, name="static")
    routes.add_get("/", index_page, name="index")
    routes.add_get("/nodes", nodes_page, name="nodes")
    routes.add_get("/nodes/preview", nodes_preview, name="nodes-preview")
    routes.add_get("/nodes/{name}", node_page, name="node")
    routes.add_get("/nodes/{name}/terminal", terminal_page, name="terminal")
    routes.add_get("/commands", commands_page, name="commands")
    routes.add_get("/jobs", jobs_page, name="jobs")
    routes.add_get("/jobs/{path:.+}", job_page, name="job")
    routes.add_get("/activity", activity_page, name="activity")
    routes.add_get("/activity/{run_id:[0-9]+}", run_page, name="run")
    routes.add_get("/keys", keys_page, name="keys")
    routes.add_get("/tokens", tokens_page, name="tokens")
    routes.add_get("/audit", audit_page, name="audit")


# --- helpers ---------------------------------------------------------------------------------


def add_filter_term(current: str, key: str, value: str) -> str:
    """``current`` narrowed by ``key: value`` (Rundeck's click-to-filter), quoting the value
    when the filter tokenizer would otherwise split or misread it (node-filter.md §1-§2)."""
    if _NEEDS_QUOTES.search(value):
        value = '"' + value.replace('"', '""') + '"'
    term = f"{key}: {value}" if key != "name" else value
    if key == "name" and (":" in value or value.startswith("!")):
        term = f"name: {value}"
    current = current.strip()
    return f"{current} {term}" if current else term


def _render(
    request: web.Request,
    template: str,
    user: Any,
    active: str,
    context: Mapping[str, Any],
    *,
    status: int = 200,
) -> web.Response:
    policy = request.app[POLICY]
    full = {
        "user": user,
        "csrf_token": csrf_token(request),
        "is_admin": policy.allows(user.role, Action.ADMIN),
        "can": {action.value: policy.allows(user.role, action) for action in Action},
        "active": active,
        **context,
    }
    response = aiohttp_jinja2.render_template(template, request, full, status=status)
    return response


def _not_found(message: str) -> web.HTTPNotFound:
    """A 404 whose message names what was missing; the app's error handling renders it
    as the console's error page (once: the text is the message, not a page)."""
    return web.HTTPNotFound(text=message)


def _page_before(request: web.Request, name: str = "before") -> int | None:
    """The ``before`` id a page pages back from; a bad one is a 400 naming it (a number
    too large for the database would otherwise fail inside it)."""
    return validate.query_int(request, name, minimum=1, maximum=validate.MAX_ID, default=None)


def _node_row(node: Node) -> dict[str, Any]:
    return {
        "name": node.name,
        "cells": [(label, key, node.get(key) or "") for label, key in NODE_COLUMNS],
    }


async def _visible_nodes(
    request: web.Request, role: str, node_filter: str
) -> tuple[list[Node], str, list[str]]:
    """The nodes ``node_filter`` selects that ``role`` may see, an error message for a bad
    filter (then no nodes), and the filter's warnings."""
    try:
        selection = await request.app[RUNS].nodes(node_filter or None)
    except EcsexecError as exc:
        return [], str(exc), []
    visible = request.app[POLICY].visible_nodes(role, selection.nodes)
    return visible, "", [*selection.discovery_warnings, *selection.warnings]


def _jobs(request: web.Request, role: str) -> list[Job]:
    policy = request.app[POLICY]
    return [job for job in request.app[JOB_LIBRARY]() if policy.allows_job(role, job.path)]


def _next_runs(request: web.Request) -> dict[str, datetime]:
    scheduler = request.app.get(SCHEDULER)
    if scheduler is None:
        return {}
    return {job.path: moment for job, moment in scheduler.upcoming()}


def schedule_text(job: Job) -> str:
    """The job's schedule as its Quartz crontab (with its time zone unless UTC), "" if none."""
    schedule = job.schedule
    if schedule is None:
        return ""
    text = schedule.expression
    if schedule.timezone != "UTC":
        text += f" ({schedule.timezone})"
    if not job.schedule_enabled:
        text += ", disabled"
    return text


def readable_output(text: str) -> str:
    """Command output as a page shows it: without terminal escapes and control characters
    (tabs and line breaks stay); the template escapes what is left."""
    return _TERMINAL_ESCAPES.sub("", text)


def recent_commands(records: Sequence[RunRecord], user: str) -> list[str]:
    """The user's last distinct ad-hoc commands, newest first (Rundeck PR #1398)."""
    seen: list[str] = []
    for record in records:
        if record.kind == "run" and record.user == user and record.command not in seen:
            seen.append(record.command)
            if len(seen) == RECENT_COMMANDS:
                break
    return seen


def token_state(token: ApiToken, now: datetime) -> str:
    """What the Tokens page says of a token: "revoked", "expired" or "active"."""
    if token.revoked:
        return "revoked"
    if token.expires_at is not None and datetime.fromisoformat(token.expires_at) <= now:
        return "expired"
    return "active"


def retry_failed_href(record: RunRecord) -> str:
    """The Commands form filled in for the nodes of ``record`` that did not succeed."""
    failed = [n.node for n in record.nodes if n.status not in (Status.SUCCEEDED, Status.RECOVERED)]
    if record.kind != "run" or not failed or record.status == Status.RUNNING:
        return ""
    node_filter = "name: " + ",".join(failed)
    return "/commands?" + urlencode({"filter": node_filter, "command": record.command})


def _rerun_href(record: RunRecord, jobs: Sequence[Job]) -> str:
    """Back to the form that started ``record``, filled in (Rundeck #469)."""
    if record.kind == "job" and record.job:
        job = next((j for j in jobs if j.path == record.job), None)
        secure = {o.name for o in job.options if o.secure} if job else set()
        query = {f"option.{k}": v for k, v in record.options.items() if k not in secure}
        suffix = f"?{urlencode(query)}" if query else ""
        return f"/jobs/{quote(record.job)}{suffix}"
    return "/commands?" + urlencode({"filter": record.filter, "command": record.command})


# --- pages -----------------------------------------------------------------------------------


# Where "/" (and so signing in) leads: the first of these the role may open.
FRONT_PAGES: Final = (
    (Action.VIEW_NODES, "/nodes"),
    (Action.RUN_COMMAND, "/commands"),
    (Action.RUN_JOB, "/jobs"),
    (Action.VIEW_ACTIVITY, "/activity"),
    (Action.MANAGE_KEYS, "/keys"),
)


async def index_page(request: web.Request) -> web.StreamResponse:
    user = require_user(request)
    policy = request.app[POLICY]
    for action, page in FRONT_PAGES:
        if policy.allows(user.role, action):
            raise web.HTTPFound(page)
    require(request, Action.VIEW_NODES)  # a role that may open no page: refused, audited
    raise AssertionError("unreachable: require refuses")


async def nodes_page(request: web.Request) -> web.Response:
    user = require(request, Action.VIEW_NODES)
    node_filter = request.query.get("filter", "")
    nodes, error, warnings = await _visible_nodes(request, user.role, node_filter)
    context = {
        "filter": node_filter,
        "count": len(nodes),
        "rows": [_node_row(n) for n in nodes[:NODE_TABLE_LIMIT]],
        "limit": NODE_TABLE_LIMIT,
        "columns": NODE_COLUMNS,
        "error": error,
        "warnings": warnings,
        "add_filter_term": add_filter_term,
    }
    if request.query.get("partial") == "table":
        return _render(request, "nodes_table.html", user, "nodes", context)
    return _render(request, "nodes.html", user, "nodes", context)


async def nodes_preview(request: web.Request) -> web.Response:
    """How many nodes a filter selects (and the first names), for the live counts."""
    user = require(request, Action.VIEW_NODES)
    nodes, error, warnings = await _visible_nodes(
        request, user.role, request.query.get("filter", "")
    )
    return web.json_response(
        {
            "count": len(nodes),
            "names": [n.name for n in nodes[:CONFIRM_ABOVE]],
            "error": error,
            "warnings": warnings,
        }
    )


async def _one_node(request: web.Request, user: Any) -> Node:
    name = request.match_info["name"]
    selection = await request.app[RUNS].nodes(None)
    found = [n for n in selection.inventory if n.name == name]
    visible = request.app[POLICY].visible_nodes(user.role, found)
    if not visible:
        raise _not_found(f"No node is named {name!r}, or your role may not see it.")
    return visible[0]


async def node_page(request: web.Request) -> web.Response:
    user = require(request, Action.VIEW_NODES)
    node = await _one_node(request, user)
    attributes = sorted(node.attributes.items())
    context = {"node": node, "attributes": attributes, "tags": sorted(node.tags)}
    return _render(request, "node.html", user, "nodes", context)


async def terminal_page(request: web.Request) -> web.Response:
    user = require(request, Action.OPEN_TERMINAL)
    node = await _one_node(request, user)
    response = _render(request, "terminal.html", user, "nodes", {"node": node})
    # xterm.js sizes its rows with <style> elements it creates; only this page allows them.
    response.headers["Content-Security-Policy"] = TERMINAL_CSP
    return response


async def commands_page(request: web.Request) -> web.Response:
    user = require(request, Action.RUN_COMMAND)
    run_id = request.query.get("run", "")
    context = {
        "filter": request.query.get("filter", ""),
        "command": request.query.get("command", ""),
        "run_id": run_id if run_id.isdigit() else "",
        "confirm_above": CONFIRM_ABOVE,
        "recent": recent_commands(request.app[HISTORY].runs(limit=RECENT_SCAN), user.name),
    }
    return _render(request, "commands.html", user, "commands", context)


async def jobs_page(request: web.Request) -> web.Response:
    user = require(request, Action.RUN_JOB)
    next_runs = _next_runs(request)
    rows = [
        {
            "job": job,
            "schedule": schedule_text(job),
            "next_run": next_runs.get(job.path),
        }
        for job in sorted(_jobs(request, user.role), key=lambda j: j.path)
    ]
    return _render(request, "jobs.html", user, "jobs", {"rows": rows})


async def job_page(request: web.Request) -> web.Response:
    user = require(request, Action.RUN_JOB)
    path = request.match_info["path"]
    job = next((j for j in _jobs(request, user.role) if j.path == path), None)
    if job is None:
        raise _not_found(f"No job is named {path!r}, or your role may not run it.")
    prefill = {
        key.removeprefix("option."): value
        for key, value in request.query.items()
        if key.startswith("option.")
    }
    options = [
        {
            "option": option,
            # A secure option's value is never put back in a page, not even its default.
            "value": "" if option.secure else prefill.get(option.name, option.value or ""),
            "choices": list(option.values),
        }
        for option in job.options
    ]
    context = {
        "job": job,
        "options": options,
        "schedule": schedule_text(job),
        "next_run": _next_runs(request).get(job.path),
        "steps": [step.label() for step in job.steps],
        "run_id": request.query.get("run", "") if request.query.get("run", "").isdigit() else "",
    }
    return _render(request, "job.html", user, "jobs", context)


async def activity_page(request: web.Request) -> web.Response:
    user = require(request, Action.VIEW_ACTIVITY)
    wanted_user = request.query.get("user", "").strip()
    wanted_status = request.query.get("status", "").strip()
    wanted_job = request.query.get("job", "").strip()
    before = _page_before(request)
    status = wanted_status if wanted_status in RUN_STATUSES else None
    # The job filter matches part of a job's name; like the API, a node- or job-limited
    # role sees only the runs it may (visible_runs reads on past the ones it may not).
    needle = wanted_job.lower()
    records = await visible_runs(
        request,
        user,
        limit=ACTIVITY_LIMIT,
        before=before,
        status=status,
        user=wanted_user or None,
        keep=(lambda r: needle in r.job.lower()) if needle else None,
    )
    shown = records[:ACTIVITY_LIMIT]
    older = ""
    if len(shown) == ACTIVITY_LIMIT:
        query = {"user": wanted_user, "status": wanted_status, "job": wanted_job}
        query = {k: v for k, v in query.items() if v} | {"before": str(shown[-1].id)}
        older = "/activity?" + urlencode(query)
    context = {
        "records": shown,
        "user_filter": wanted_user,
        "status_filter": wanted_status,
        "job_filter": wanted_job,
        "statuses": RUN_STATUSES,
        "bad_status": bool(wanted_status) and status is None,
        "older_href": older,
    }
    return _render(request, "activity.html", user, "activity", context)


async def run_page(request: web.Request) -> web.Response:
    user = require(request, Action.VIEW_ACTIVITY)
    run_id = validate.path_int(request, "run_id")
    history = request.app[HISTORY]
    record = history.run(run_id)
    if record is None or not await visible(request, user, record):
        # Outside a node-limited role's scope is the same as absent (as in the API).
        raise _not_found(f"There is no run #{run_id}.")
    logs = dict(history.logs(run_id))
    nodes = []
    for node in record.nodes:
        log = logs.get(node.node, b"")
        preview = readable_output(log[:LOG_PREVIEW_BYTES].decode("utf-8", errors="replace"))
        nodes.append({"record": node, "text": preview, "cut": len(log) > LOG_PREVIEW_BYTES})
    can = request.app[POLICY]
    may_rerun = can.allows(
        user.role, Action.RUN_JOB if record.kind == "job" else Action.RUN_COMMAND
    )
    jobs = request.app[JOB_LIBRARY]() if record.kind == "job" else []
    context = {
        "record": record,
        "nodes": nodes,
        "rerun_href": _rerun_href(record, jobs) if may_rerun else "",
        "retry_href": retry_failed_href(record) if may_rerun else "",
        "live": record.status == Status.RUNNING,
        "preview_bytes": LOG_PREVIEW_BYTES,
    }
    return _render(request, "run.html", user, "activity", context)


async def keys_page(request: web.Request) -> web.Response:
    user = require(request, Action.MANAGE_KEYS)
    keystore = request.app.get(KEYSTORE)
    keys = keystore.list("keys") if keystore is not None else []
    return _render(request, "keys.html", user, "keys", {"keys": keys})


async def tokens_page(request: web.Request) -> web.Response:
    """The signed-in user's own API tokens (any role): never a token or its digest, which
    the store does not return; creating and revoking go through /api/v1/tokens."""
    user = require_user(request)
    now = datetime.now(UTC)
    rows = [
        {"token": token, "state": token_state(token, now)}
        for token in reversed(request.app[STORE].list_tokens(user.name))
    ]
    context = {"rows": rows, "max_days": MAX_TOKEN_DAYS}
    return _render(request, "tokens.html", user, "tokens", context)


async def audit_page(request: web.Request) -> web.Response:
    user = require(request, Action.ADMIN)
    before = _page_before(request)
    wanted_user = request.query.get("user", "").strip() or None
    wanted_action = request.query.get("action", "").strip() or None
    entries = request.app[STORE].list_audit(
        limit=AUDIT_LIMIT,
        before_id=before,
        user=wanted_user,
        action=wanted_action,
    )
    older = ""
    if len(entries) == AUDIT_LIMIT:
        query = {"before": str(entries[-1].id)}
        query.update({k: v for k, v in (("user", wanted_user), ("action", wanted_action)) if v})
        older = "/audit?" + urlencode(query)
    context = {
        "entries": entries,
        "user_filter": wanted_user or "",
        "action_filter": wanted_action or "",
        "older_href": older,
    }
    return _render(request, "audit.html", user, "audit", context)
