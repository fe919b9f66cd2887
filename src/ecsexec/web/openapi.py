"""The OpenAPI 3.1 document of the REST API, served at ``/api/v1/openapi.json``.

Written by hand next to the handlers; a test walks the router and fails when a route is
missing here or documented without existing.
"""

from __future__ import annotations

from typing import Any, Final

from ecsexec import __version__

JSON: Final = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): {"$ref": f"#/components/responses/E{s}"} for s in statuses}


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


def _path(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": schema or {"type": "string"},
    }


RUN_ID: Final = _path("run_id", "The run's id (its history record)", {"type": "integer"})
STRING: Final = {"type": "string"}
INTEGER: Final = {"type": "integer"}


def _operation(
    summary: str,
    responses: dict[str, Any],
    *,
    parameters: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    errors: tuple[int, ...] = (401, 403),
) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": summary, "responses": {**responses, **_errors(*errors)}}
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {JSON: {"schema": body}}}
    return operation


def _schemas() -> dict[str, Any]:
    nullable_int = {"type": ["integer", "null"]}
    nullable_str = {"type": ["string", "null"]}
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["status", "code", "message"],
                    "properties": {"status": INTEGER, "code": STRING, "message": STRING},
                }
            },
        },
        "Node": {
            "type": "object",
            "properties": {
                "name": STRING,
                "attributes": {"type": "object", "additionalProperties": STRING},
            },
        },
        "Started": {
            "type": "object",
            "properties": {"id": INTEGER, "href": STRING, "events": STRING},
        },
        "Run": {
            "type": "object",
            "properties": {
                "id": INTEGER,
                "href": STRING,
                "kind": {"enum": ["run", "job"]},
                "user": STRING,
                "command": STRING,
                "job": STRING,
                "filter": STRING,
                "options": {"type": "object", "additionalProperties": STRING},
                "status": STRING,
                "exit_code": nullable_int,
                "started_at": STRING,
                "finished_at": nullable_str,
                "duration_s": {"type": ["number", "null"]},
                "node_count": INTEGER,
                "live": {"type": "boolean"},
                "nodes": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "node": STRING,
                            "status": STRING,
                            "exit_code": nullable_int,
                            "duration_s": {"type": ["number", "null"]},
                            "error": STRING,
                            "log_bytes": INTEGER,
                            "truncated": {"type": "boolean"},
                            "log_href": STRING,
                        },
                    },
                },
            },
        },
        "Job": {
            "type": "object",
            "properties": {
                "name": STRING,
                "group": STRING,
                "description": STRING,
                "href": STRING,
                "filter": nullable_str,
                "schedule": nullable_str,
                "schedule_enabled": {"type": "boolean"},
                "next_run": nullable_str,
                "options": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "name": STRING,
                            "description": STRING,
                            "default": nullable_str,
                            "values": {"type": "array", "items": STRING},
                            "enforced": {"type": "boolean"},
                            "required": {"type": "boolean"},
                            "regex": nullable_str,
                            "secure": {"type": "boolean"},
                        },
                    },
                },
                "steps": {"type": "array", "items": STRING},
            },
        },
        "Key": {
            "type": "object",
            "properties": {
                "path": STRING,
                "type": {"enum": ["password", "private", "public"]},
                "size": INTEGER,
                "created": STRING,
                "modified": STRING,
            },
        },
        "Token": {
            "type": "object",
            "properties": {
                "id": STRING,
                "name": STRING,
                "created_at": STRING,
                "expires_at": nullable_str,
                "last_used_at": nullable_str,
                "revoked": {"type": "boolean"},
                "token": {"type": "string", "description": "Only in the answer to its creation"},
            },
        },
        "AuditEntry": {
            "type": "object",
            "properties": {
                "id": INTEGER,
                "at": STRING,
                "user": STRING,
                "action": STRING,
                "target": STRING,
                "outcome": {"enum": ["ok", "denied", "failed"]},
                "source": STRING,
                "detail": {"type": "object", "additionalProperties": STRING},
            },
        },
    }


def _list_of(key: str, schema: str) -> dict[str, Any]:
    return {"type": "object", "properties": {key: {"type": "array", "items": _ref(schema)}}}


def document() -> dict[str, Any]:
    """The whole document (a fresh dict each call)."""
    events_doc = (
        "Server-sent events (text/event-stream): `id:` is the event's number, `event:` its "
        "type (run_started, node_started, output, notice, step_started, step_finished, "
        "node_finished, run_finished), `data:` its JSON. Send `Last-Event-ID` (or `?after=`) "
        "to resume after a number. The stream ends after run_finished."
    )
    paths: dict[str, Any] = {
        "/me": {
            "get": _operation(
                "Who the caller is: name, role and allowed actions",
                {"200": _json({"type": "object"}, "The caller")},
                errors=(401,),
            )
        },
        "/nodes": {
            "get": _operation(
                "List the nodes a filter selects (those the caller's role may see)",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "filter": STRING,
                                "count": INTEGER,
                                "nodes": {"type": "array", "items": _ref("Node")},
                                "warnings": {"type": "array", "items": STRING},
                            },
                        },
                        "The matching nodes",
                    )
                },
                parameters=[
                    _query("filter", "A node filter (docs/node-filter.md)", STRING),
                    _query(
                        "refresh",
                        "1: rediscover now, unless the inventory is under 10 s old",
                        {"enum": ["0", "1", "true", "false"]},
                    ),
                ],
                errors=(400, 401, 403, 502),
            )
        },
        "/nodes/{name}": {
            "get": _operation(
                "One node with all its attributes",
                {"200": _json(_ref("Node"), "The node")},
                parameters=[_path("name", "The node's name")],
                errors=(401, 403, 404),
            )
        },
        "/runs": {
            "post": _operation(
                "Run a command on the nodes a filter selects (refused whole, and audited, if "
                "any is outside the caller's role)",
                {"202": _json(_ref("Started"), "Started; follow its events")},
                body={
                    "type": "object",
                    "required": ["filter", "command"],
                    "additionalProperties": False,
                    "properties": {
                        "filter": STRING,
                        "command": STRING,
                        "threads": {"type": "integer", "minimum": 1},
                        "keepgoing": {"type": "boolean"},
                    },
                },
                errors=(400, 401, 403, 502),
            ),
            "get": _operation(
                "List runs, newest first",
                {"200": _json(_list_of("runs", "Run"), "The runs")},
                parameters=[
                    _query("user", "Only this user's runs", STRING),
                    _query("status", "Only runs with this status", STRING),
                    _query("job", "Only runs of this job", STRING),
                    _query("limit", "At most this many (1-1000, default 50)", INTEGER),
                    _query("before", "Only runs with a smaller id (paging)", INTEGER),
                ],
                errors=(400, 401, 403),
            ),
        },
        "/runs/{run_id}": {
            "get": _operation(
                "One run with its nodes' outcomes",
                {"200": _json(_ref("Run"), "The run")},
                parameters=[RUN_ID],
                errors=(401, 403, 404),
            )
        },
        "/runs/{run_id}/events": {
            "get": _operation(
                "The run's events as they happen",
                {
                    "200": {
                        "description": events_doc,
                        "content": {"text/event-stream": {"schema": STRING}},
                    }
                },
                parameters=[
                    RUN_ID,
                    _query("after", "Resume after this event number", INTEGER),
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "required": False,
                        "description": "Resume after this event number",
                        "schema": STRING,
                    },
                ],
                errors=(400, 401, 403, 404),
            )
        },
        "/runs/{run_id}/nodes/{node}/log": {
            "get": _operation(
                "One node's output, byte for byte",
                {
                    "200": {
                        "description": "The log",
                        "content": {
                            "application/octet-stream": {
                                "schema": {"type": "string", "format": "binary"}
                            }
                        },
                    }
                },
                parameters=[RUN_ID, _path("node", "The node's name")],
                errors=(401, 403, 404),
            )
        },
        "/runs/{run_id}/stop": {
            "post": _operation(
                "Stop a running run: every session is terminated (own runs, or any as admin)",
                {"200": _json(_ref("Run"), "The run as it stopped")},
                parameters=[RUN_ID],
                errors=(401, 403, 404, 409),
            )
        },
        "/jobs": {
            "get": _operation(
                "List the jobs the caller may run, with schedules and next runs",
                {"200": _json(_list_of("jobs", "Job"), "The jobs")},
            )
        },
        "/jobs/{name}": {
            "get": _operation(
                "One job with its options (secure options' defaults are never sent)",
                {"200": _json(_ref("Job"), "The job")},
                parameters=[_path("name", "The job's group/name")],
                errors=(401, 403, 404),
            )
        },
        "/jobs/{name}/runs": {
            "post": _operation(
                "Run a job with option values (checked as the job file declares)",
                {"202": _json(_ref("Started"), "Started; follow its events")},
                parameters=[_path("name", "The job's group/name")],
                body={
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"options": {"type": "object", "additionalProperties": STRING}},
                },
                errors=(400, 401, 403, 404, 502),
            )
        },
        "/keys": {
            "get": _operation(
                "List stored keys: paths, types and sizes (never values)",
                {"200": _json(_list_of("keys", "Key"), "The keys")},
                errors=(401, 403, 503),
            )
        },
        "/keys/{path}": {
            "put": _operation(
                "Store a key (write-only: no call ever returns its value)",
                {"200": _json(_ref("Key"), "Replaced"), "201": _json(_ref("Key"), "Created")},
                parameters=[_path("path", "keys/project/<name>/<key>")],
                body={
                    "type": "object",
                    "required": ["value"],
                    "additionalProperties": False,
                    "properties": {
                        "type": {"enum": ["password", "private", "public"]},
                        "value": {"type": "string", "writeOnly": True},
                    },
                },
                errors=(400, 401, 403, 503),
            ),
            "delete": _operation(
                "Delete a key",
                {"204": {"description": "Deleted"}},
                parameters=[_path("path", "keys/project/<name>/<key>")],
                errors=(400, 401, 403, 404, 503),
            ),
        },
        "/audit": {
            "get": _operation(
                "The audit log, newest first (admins)",
                {"200": _json(_list_of("entries", "AuditEntry"), "The entries")},
                parameters=[
                    _query("user", "Only this user's entries", STRING),
                    _query("action", "Only this action (sign-in, run, acl-deny, ...)", STRING),
                    _query("limit", "At most this many (1-1000, default 100)", INTEGER),
                    _query("before", "Only entries with a smaller id (paging)", INTEGER),
                ],
                errors=(400, 401, 403),
            )
        },
        "/tokens": {
            "get": _operation(
                "The caller's API tokens (never the tokens themselves)",
                {"200": _json(_list_of("tokens", "Token"), "The tokens")},
                errors=(401,),
            ),
            "post": _operation(
                "Create an API token for the caller: the answer is the only time it is shown",
                {"201": _json(_ref("Token"), "The new token, with `token`")},
                body={
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {
                        "name": STRING,
                        "expires_in_days": {"type": "integer", "minimum": 1, "maximum": 366},
                    },
                },
                errors=(400, 401),
            ),
        },
        "/tokens/{token_id}": {
            "delete": _operation(
                "Revoke one of the caller's tokens",
                {"204": {"description": "Revoked"}},
                parameters=[_path("token_id", "The token's id")],
                errors=(401, 404),
            )
        },
        "/openapi.json": {
            "get": _operation(
                "This document", {"200": _json({"type": "object"}, "OpenAPI 3.1")}, errors=(401,)
            )
        },
    }
    statuses = (400, 401, 403, 404, 409, 502, 503)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ecsexec server API",
            "version": __version__,
            "description": (
                "Run commands and jobs in ECS containers through a team's ecsexec server. "
                "Authenticate with `Authorization: Bearer <token>` (create one on the "
                "console or with POST /tokens). With the console's session cookie, "
                "state-changing calls also need the `X-CSRF-Token` header."
            ),
        },
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}, {"session": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "ecsexec_session"},
            },
            "schemas": _schemas(),
            "responses": {
                f"E{s}": {"description": f"Error {s}", "content": {JSON: {"schema": _ref("Error")}}}
                for s in statuses
            },
        },
    }
