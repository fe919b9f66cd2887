"""The web console's aiohttp application: middlewares, security headers, lifetime.

:func:`create_app` wires the engine, the stores and the policy into an
``aiohttp.web.Application``: sign-in, the REST API, the pages and the terminal. Every
response gets the security headers (a Content-Security-Policy allowing only this origin,
no framing, no sniffing; HSTS under TLS). Every error is a page (``error.html``) or, under
``/api/``, JSON ``{"error": {"status", "code", "message"}}``; an unexpected exception is
logged here and answered with a generic 500, never a stack trace. Shutting down closes
every websocket and event stream and records in-flight runs as incomplete.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from http import HTTPStatus
from pathlib import Path
from typing import Final

import aiohttp_jinja2
import jinja2
from aiohttp import web

from ecsexec.app import Client
from ecsexec.config import Config
from ecsexec.errors import AccessDenied, ConfigurationError, EcsexecError
from ecsexec.jobs.library import JobLibrary
from ecsexec.jobs.model import Job
from ecsexec.store.history import History
from ecsexec.store.keys import KeyStore
from ecsexec.store.team import TeamStore, User, database_path, open_team_store
from ecsexec.web import api, auth
from ecsexec.web.acl import Action, Policy
from ecsexec.web.keys import (
    ENGINE,
    HISTORY,
    JOB_LIBRARY,
    KEYSTORE,
    LIVE,
    POLICY,
    RUNS,
    SCHEDULER,
    SETTINGS,
    STORE,
    LiveConnections,
    ServerSettings,
)
from ecsexec.web.runs import RunManager

log = logging.getLogger(__name__)

CONTENT_SECURITY_POLICY: Final = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), usb=()",
}
HSTS: Final = "max-age=31536000"
SCHEDULER_USER_NAME: Final = "scheduler"

# Default messages for errors raised without one (the router's 404 and 405, say).
_MESSAGES: Final = {
    401: "Sign in to continue.",
    403: "You may not do this.",
    404: "There is nothing at this address.",
    405: "This address does not accept that method.",
    413: "The request is too large.",
}
_CODES: Final = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    429: "too_many_requests",
    500: "internal_error",
    502: "upstream_error",
    503: "unavailable",
}


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: every response, streamed ones and websockets included."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    response.headers["Server"] = "ecsexec"  # not aiohttp's and Python's versions
    if auth.over_tls(request):  # served with TLS, or through a trusted TLS proxy
        response.headers.setdefault("Strict-Transport-Security", HSTS)
    if not request.path.startswith("/static/"):
        response.headers.setdefault("Cache-Control", "no-store")


def error_response(request: web.Request, status: int, message: str) -> web.Response:
    """The error page or JSON for ``status``; ``message`` is all a client learns."""
    title = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    if auth.is_api(request):
        return web.json_response(
            {
                "error": {
                    "status": status,
                    "code": _CODES.get(status, "error"),
                    "message": message,
                }
            },
            status=status,
        )
    try:
        user = auth.current_user(request)
    except Exception:  # the store itself failed: an error page without the nav
        user = None
    context = {
        "status": status,
        "title": title,
        "message": message,
        "user": user,
        "csrf_token": auth.csrf_token(request) if user is not None else "",
        "is_admin": user is not None and request.app[POLICY].allows(user.role, Action.ADMIN),
        # The menu offers only what the role may do, on error pages as on the others.
        "can": {
            action.value: user is not None and request.app[POLICY].allows(user.role, action)
            for action in Action
        },
    }
    try:
        return aiohttp_jinja2.render_template("error.html", request, context, status=status)
    except Exception:  # a broken template must not turn an error into a traceback
        log.exception("could not render error.html")
        return web.Response(text=f"{status} {title}: {message}", status=status)


def _message(exc: web.HTTPException) -> str:
    text = exc.text or ""
    if not text or text == f"{exc.status}: {exc.reason}":
        return _MESSAGES.get(exc.status, exc.reason)
    return text


@web.middleware
async def errors_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every failure becomes a page or JSON with a clear message and no stack trace."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects
        response = error_response(request, exc.status, _message(exc))
        for name in ("WWW-Authenticate", "Allow", "Retry-After"):
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        return response
    except AccessDenied as exc:
        return error_response(request, 403, exc.reason)
    except ConfigurationError as exc:  # bad input: filters, options, fields
        return error_response(request, 400, str(exc))
    except EcsexecError as exc:  # AWS or discovery trouble: its message names it
        return error_response(request, 502, str(exc))
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unexpected error in %s %s", request.method, request.path)
        return error_response(request, 500, "Internal error: the server log has the details.")


@web.middleware
async def auth_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Identify the user once, then enforce CSRF on state-changing session requests."""
    if request.path.startswith("/static/") and request.method in ("GET", "HEAD"):
        return await handler(request)  # public files: no database lookups
    auth.identify(request)
    await auth.check_csrf(request)
    return await handler(request)


def scheduler_user() -> User:
    """Who scheduled runs run as: recorded in history and audit as ``scheduler``."""
    return User(
        name=SCHEDULER_USER_NAME,
        role="admin",
        disabled=False,
        created_at="",
        password_changed_at="",
    )


def create_app(
    *,
    engine: Client,
    store: TeamStore,
    policy: Policy,
    settings: ServerSettings,
    history: History,
    keystore: KeyStore | None = None,
    jobs: Callable[[], Sequence[Job]] | None = None,
    schedules: bool = True,
) -> web.Application:
    """The console's application. It owns what it is given: its cleanup interrupts
    runs, closes the engine, the team store and the history."""
    app = web.Application(
        middlewares=[errors_middleware, auth_middleware],
        client_max_size=2 * 1024 * 1024,
    )
    app[ENGINE] = engine
    app[STORE] = store
    app[POLICY] = policy
    app[SETTINGS] = settings
    app[HISTORY] = history
    app[KEYSTORE] = keystore
    app[JOB_LIBRARY] = jobs or (lambda: ())
    app[LIVE] = LiveConnections()
    app[SCHEDULER] = None
    app[RUNS] = RunManager(
        engine,
        store,
        policy,
        history,
        inventory_ttl_s=settings.inventory_ttl_s,
        max_live_output=settings.max_live_output,
        finished_runs_kept=settings.finished_runs_kept,
    )
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("ecsexec.web", "templates"),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        undefined=jinja2.ChainableUndefined,
    )
    app.on_response_prepare.append(_security_headers)
    auth.setup_auth(app)
    api.setup_api(app)
    _setup_front_end(app)
    if schedules:
        app.on_startup.append(_start_scheduler)
    app.on_shutdown.append(_shutdown)
    app.on_cleanup.append(_cleanup)
    return app


def _setup_front_end(app: web.Application) -> None:
    """W3's pages and terminal, once they exist; the API works without them."""
    with contextlib.suppress(ImportError):
        from ecsexec.web.pages import setup_pages

        setup_pages(app)
    with contextlib.suppress(ImportError):
        from ecsexec.web.terminal import setup_terminal

        setup_terminal(app)


_SCHEDULER_TASK: Final = web.AppKey("ecsexec.scheduler_task", asyncio.Task[None])


async def _start_scheduler(app: web.Application) -> None:
    try:
        from ecsexec.web.scheduler import Scheduler
    except ImportError:  # not built yet: no schedules
        return
    runs = app[RUNS]

    async def fire(job: Job, at: datetime) -> None:
        try:
            await runs.start_job(scheduler_user(), job, {}, source="schedule", check_role=False)
        except EcsexecError as exc:
            app[STORE].audit(
                SCHEDULER_USER_NAME,
                "job-run",
                job.path,
                "failed",
                "schedule",
                {"error": str(exc)[:500], "at": at.isoformat()},
            )

    scheduler = Scheduler(app[STORE], app[JOB_LIBRARY], fire)
    app[SCHEDULER] = scheduler
    app[_SCHEDULER_TASK] = asyncio.ensure_future(scheduler.run())


async def _shutdown(app: web.Application) -> None:
    """Before the server waits for handlers: end streams and terminals, stop the runs."""
    if _SCHEDULER_TASK in app:
        task = app[_SCHEDULER_TASK]
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    await app[RUNS].close()  # first: each run's event streams end after its last event
    await app[LIVE].close_all()  # terminals and other connections


async def _cleanup(app: web.Application) -> None:
    await app[RUNS].close()  # a no-op after _shutdown; not every runner signals shutdown
    await app[ENGINE].aclose()
    app[STORE].close()
    app[HISTORY].close()


def job_loader(directories: Sequence[Path]) -> Callable[[], list[Job]]:
    """The jobs of the job directories, read afresh on each call (files change); a file
    that does not parse is left out and logged."""

    def load() -> list[Job]:
        jobs: list[Job] = []
        for directory in directories:
            try:
                listing = JobLibrary(directory).listing()
            except ConfigurationError as exc:
                log.warning("job directory skipped: %s", exc)
                continue
            for listed in listing:
                if listed.jobfile is None:
                    log.warning("job file skipped: %s", listed.error)
                else:
                    jobs.extend(listed.jobfile.jobs)
        return jobs

    return load


def open_server_app(
    config: Config,
    engine: Client,
    settings: ServerSettings,
    *,
    job_dirs: Sequence[Path] = (),
    keystore: KeyStore | None = None,
    schedules: bool = True,
) -> web.Application:
    """The app of ``ecsexec server``: the team store and history in the state dir's one
    database, the policy from ``[server.roles]``. ``engine`` must record its runs in that
    same database (``Client(history=database_path(state_dir))``)."""
    path = database_path(settings.state_dir)
    store = open_team_store(path)
    history = History(path)
    return create_app(
        engine=engine,
        store=store,
        policy=Policy.from_config(config),
        settings=settings,
        history=history,
        keystore=keystore,
        jobs=job_loader(job_dirs),
        schedules=schedules,
    )
