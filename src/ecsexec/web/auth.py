"""Who is asking and may they: sessions, API tokens, CSRF, origin checks, sign-in and audit.

A browser signs in with a password and gets a session cookie (HttpOnly, SameSite=Strict,
Secure under TLS) naming a server-side session row that holds the session's CSRF token;
a script sends ``Authorization: Bearer <token>``. Both are stored only as SHA-256
digests. :func:`identify` runs once per request (the app's middleware) and
:func:`current_user`, :func:`require_user` and :func:`require` read its answer.

Every state-changing request made with a session cookie must carry the session's CSRF
token (header ``X-CSRF-Token`` or form field ``csrf_token``); bearer-token requests carry
no ambient credential and are exempt. The sign-in form, made before any session exists,
is protected by a double-submitted token (a cookie and a form field that must agree).
Websocket and event-stream requests must come from this server's own origin.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Final
from urllib.parse import quote, urlsplit

import aiohttp_jinja2
from aiohttp import web

from ecsexec.store.team import User, WebSession
from ecsexec.web.acl import Action
from ecsexec.web.keys import LIVE, POLICY, SETTINGS, STORE
from ecsexec.web.passwords import (
    hash_password,
    needs_rehash,
    new_secret,
    same_secret,
    token_digest,
    verify_password,
)

SESSION_COOKIE: Final = "ecsexec_session"
LOGIN_COOKIE: Final = "ecsexec_login"  # the sign-in form's double-submitted CSRF token
CSRF_HEADER: Final = "X-CSRF-Token"
CSRF_FIELD: Final = "csrf_token"
UNSAFE_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MAX_NAME: Final = 64

_USER: Final[web.RequestKey[User | None]] = web.RequestKey("ecsexec.user")
_SESSION: Final[web.RequestKey[WebSession | None]] = web.RequestKey("ecsexec.session")
_VIA: Final = web.RequestKey("ecsexec.via", str)  # "session", "token" or "" (anonymous)
# The digest of the token or session id the request came with ("" when anonymous).
_CREDENTIAL: Final = web.RequestKey("ecsexec.credential", str)

log = logging.getLogger(__name__)


def is_api(request: web.BaseRequest) -> bool:
    """Whether a request is for the JSON API (errors in JSON, 401 instead of a redirect)."""
    return request.path == "/api" or request.path.startswith("/api/")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def source(request: web.Request) -> str:
    """Where a request came from (the audit log, sign-in throttling): the peer, or the
    client a trusted reverse proxy names in X-Forwarded-For."""
    return client_address(
        request.remote,
        request.headers.getall("X-Forwarded-For", []),
        request.app[SETTINGS].trusted_proxies,
    )


def over_tls(request: web.Request) -> bool:
    """Whether the browser reached the console over HTTPS: served with TLS, or through a
    trusted proxy that says so (X-Forwarded-Proto). Cookies are then Secure and
    responses carry HSTS."""
    settings = request.app[SETTINGS]
    if settings.tls:
        return True
    if request.remote is None or not _is_proxy(request.remote, settings.trusted_proxies):
        return False
    proto = request.headers.get("X-Forwarded-Proto", "")
    return proto.rsplit(",", 1)[-1].strip().lower() == "https"


def _is_proxy(address: str, trusted: Sequence[str]) -> bool:
    """Whether ``address`` is in one of the ``trusted`` proxy networks."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(parsed in ipaddress.ip_network(network) for network in trusted)


def client_address(remote: str | None, forwarded_for: Sequence[str], trusted: Sequence[str]) -> str:
    """The client's address: ``remote`` unless it is a trusted proxy; then the rightmost
    X-Forwarded-For entry that is not one (entries left of it could be forged by the
    client). A malformed entry stops the walk at the last address known good."""
    if remote is None:
        return "-"

    def is_proxy(address: str) -> bool:
        return _is_proxy(address, trusted)

    if not is_proxy(remote):
        return remote
    hops = [hop.strip() for header in forwarded_for for hop in header.split(",")]
    client = remote
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            break
        client = hop
        if not is_proxy(hop):
            break
    return client


# --- identity ------------------------------------------------------------------------------


def identify(request: web.Request) -> None:
    """Resolve the request's user from its bearer token or session cookie, once.

    A disabled user, an unknown, revoked or expired token, and an expired session all
    leave the request anonymous.
    """
    store = request.app[STORE]
    user: User | None = None
    session: WebSession | None = None
    via = digest = ""
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, credential = header.partition(" ")
        if scheme.lower() == "bearer" and credential.strip():
            digest = token_digest(credential.strip())
            token = store.token_by_hash(digest)
            if token is not None:
                user = store.get_user(token.user)
                if user is not None and not user.disabled:
                    store.touch_token(token.id)
                    via = "token"
    else:
        sid = request.cookies.get(SESSION_COOKIE, "")
        if sid:
            digest = token_digest(sid)
            session = store.get_session(digest)
            if session is not None:
                user = store.get_user(session.user)
                via = "session"
    if user is None or user.disabled:
        user, session, via, digest = None, None, "", ""
    request[_USER] = user
    request[_SESSION] = session
    request[_VIA] = via
    request[_CREDENTIAL] = digest


def current_user(request: web.Request) -> User | None:
    """The signed-in user, or None."""
    if _VIA not in request:
        identify(request)
    return request[_USER]


def current_session(request: web.Request) -> WebSession | None:
    if _VIA not in request:
        identify(request)
    return request[_SESSION]


def via_token(request: web.Request) -> bool:
    return current_user(request) is not None and request[_VIA] == "token"


def require_user(request: web.Request) -> User:
    """The signed-in user; else a page goes to sign-in and the API answers 401."""
    user = current_user(request)
    if user is not None:
        return user
    if is_api(request):
        raise web.HTTPUnauthorized(
            text="sign in or send an API token (Authorization: Bearer ...)",
            headers={"WWW-Authenticate": 'Bearer realm="ecsexec"'},
        )
    target = request.path_qs if request.method == "GET" else "/"
    raise web.HTTPFound(f"/login?next={quote(target, safe='')}")


def require(request: web.Request, action: Action) -> User:
    """The signed-in user if their role allows ``action``; else 403, audited as acl-deny."""
    user = require_user(request)
    if not request.app[POLICY].allows(user.role, action):
        record(request, "acl-deny", request.path, "denied", {"action": str(action)}, user=user)
        raise web.HTTPForbidden(text=f"role {user.role!r} may not {_describe(action)}")
    return user


def _describe(action: Action) -> str:
    return {
        Action.VIEW_NODES: "view nodes",
        Action.RUN_COMMAND: "run commands",
        Action.RUN_JOB: "run jobs",
        Action.OPEN_TERMINAL: "open a terminal",
        Action.MANAGE_KEYS: "manage keys",
        Action.VIEW_ACTIVITY: "view activity",
        Action.ADMIN: "administer the server",
    }.get(action, str(action))


def credential(request: web.Request) -> str:
    """The digest of the session id or token the request came with ("" if anonymous):
    what a long-lived connection is registered under, so sign-out closes its own."""
    if _VIA not in request:
        identify(request)
    return request[_CREDENTIAL]


def still_allowed(request: web.Request, action: Action) -> bool:
    """Whether the token or session this request came with still signs in a user whose
    role allows ``action`` (asked again by connections that outlive their request)."""
    if current_user(request) is None:
        return False
    store = request.app[STORE]
    digest = request[_CREDENTIAL]
    if request[_VIA] == "token":
        token = store.token_by_hash(digest)  # None once revoked, expired or disabled
        name = token.user if token is not None else None
    else:
        session = store.get_session(digest)  # None once ended, expired or disabled
        name = session.user if session is not None else None
    user = store.get_user(name) if name is not None else None
    return user is not None and not user.disabled and request.app[POLICY].allows(user.role, action)


async def watch_credential(request: web.Request, action: Action) -> None:
    """Return once the request's credential no longer allows ``action``; checked every
    ``live_check_s`` seconds, since a user may be disabled by another process (the CLI)."""
    interval = request.app[SETTINGS].live_check_s
    while True:
        await asyncio.sleep(interval)
        if not still_allowed(request, action):
            record(request, "connection-closed", request.path, "ok", {"reason": "credential"})
            return


def csrf_token(request: web.Request) -> str:
    """The CSRF token of the request's session ('' without one), for templates' meta tag."""
    session = current_session(request)
    return session.csrf_token if session is not None else ""


# --- audit ---------------------------------------------------------------------------------


def record(
    request: web.Request,
    action: str,
    target: str,
    outcome: str = "ok",
    detail: Mapping[str, str] | None = None,
    *,
    user: User | None = None,
    name: str | None = None,
) -> None:
    """Write one audit entry now (the store is local and quick); never fails the request."""
    who = name or (user.name if user is not None else None)
    if who is None:
        signed_in = current_user(request)
        who = signed_in.name if signed_in is not None else "-"
    try:
        request.app[STORE].audit(who, action, target, outcome, source(request), detail)
    except Exception:  # an audit write failing must not hide what happened; log it
        log.exception("could not write the audit entry %s %s", action, target)


async def audit(
    request: web.Request,
    action: str,
    target: str,
    outcome: str = "ok",
    detail: Mapping[str, str] | None = None,
) -> None:
    """Record ``action`` on ``target`` by the request's user, with its source address."""
    record(request, action, target, outcome, detail)


# --- CSRF and origins ----------------------------------------------------------------------


def same_origin(request: web.Request, origin: str) -> bool:
    own = f"{request.scheme}://{request.host}".lower()
    return origin.lower() in {own, *request.app[SETTINGS].extra_origins}


def check_origin(request: web.Request) -> None:
    """Refuse a request whose ``Origin`` is another site's (cross-site websocket hijacking,
    event streams read from another page). Browsers always send Origin on websockets;
    clients without one (curl, scripts) authenticate with a token, not a cookie."""
    origin = request.headers.get("Origin")
    if origin is not None and not same_origin(request, origin):
        record(request, "origin-refused", request.path, "denied", {"origin": origin[:200]})
        raise web.HTTPForbidden(text="this request must come from the console's own pages")


async def check_csrf(request: web.Request) -> None:
    """For a state-changing request made with a session cookie: the session's CSRF token
    must come with it, and a browser's Origin must be this server's."""
    if request.method not in UNSAFE_METHODS or request.path == "/login":
        return  # the sign-in form has its own double-submitted token
    session = current_session(request)
    if session is None or via_token(request):
        return  # anonymous (the handler refuses it) or a bearer token (no ambient credential)
    origin = request.headers.get("Origin")
    if origin is not None and not same_origin(request, origin):
        raise web.HTTPForbidden(text="cross-site request refused (Origin does not match)")
    sent = request.headers.get(CSRF_HEADER, "")
    if not sent and request.content_type in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        form = await request.post()
        value = form.get(CSRF_FIELD, "")
        sent = value if isinstance(value, str) else ""
    if not sent or not same_secret(sent, session.csrf_token):
        raise web.HTTPForbidden(
            text=f"missing or wrong CSRF token: send the {CSRF_HEADER} header "
            "(the page's csrf-token meta tag)"
        )


# --- sign-in throttling --------------------------------------------------------------------


class SignInThrottle:
    """Refuses sign-in for a key with too many failures in the window: one user name from
    one address, or one address for any name. Failures are counted in the team store, so
    a restart forgets none; a correct password is refused too while a key is locked.

    Each attempt is counted as a failure *before* its password is checked (a check takes
    an argon2 hash's time, so concurrent guesses would otherwise all be checked before
    the first failure was counted), and taken back if it was refused as locked or
    succeeded."""

    def __init__(self, per_user: int, per_address: int, window_s: float) -> None:
        self.per_user = per_user
        self.per_address = per_address
        self.window_s = window_s

    @staticmethod
    def keys(name: str, address: str) -> tuple[str, str]:
        return f"user:{name.lower()}@{address}", f"address:{address}"

    def _limits(self, name: str, address: str) -> list[tuple[str, int]]:
        user_key, address_key = self.keys(name, address)
        return [(user_key, self.per_user), (address_key, self.per_address)]

    def attempt(self, request: web.Request, name: str, address: str) -> float | None:
        """Count an attempt; its time if it may go on to the password check, None (and
        not counted) if a key is locked."""
        store = request.app[STORE]
        now = time.time()
        counts = [
            (store.record_sign_in_failure(key, now), limit)
            for key, limit in self._limits(name, address)
        ]
        if all(count <= limit for count, limit in counts):
            return now
        for key, _ in self._limits(name, address):
            store.forget_sign_in_failure(key, now)
        return None

    def succeeded(self, request: web.Request, name: str, address: str, at: float) -> None:
        """The attempt at ``at`` signed in: the user's failures from there are forgiven,
        and the address's count loses this attempt."""
        user_key, address_key = self.keys(name, address)
        store = request.app[STORE]
        store.clear_sign_in_failures(user_key)
        store.forget_sign_in_failure(address_key, at)


THROTTLE: Final = web.AppKey("ecsexec.throttle", SignInThrottle)


# --- handlers ------------------------------------------------------------------------------


def _safe_next(value: object) -> str:
    """A local path to go to after sign-in; anything else (another site) becomes '/'."""
    text = value if isinstance(value, str) else ""
    parts = urlsplit(text)
    if not text.startswith("/") or text.startswith("//") or parts.scheme or parts.netloc:
        return "/"
    if "\\" in text or any(ord(c) < 32 for c in text):
        return "/"
    return text


def _login_page(
    request: web.Request,
    *,
    error: str | None,
    next_path: str,
    username: str,
    status: int,
    fresh: bool = False,
) -> web.Response:
    token = (None if fresh else request.cookies.get(LOGIN_COOKIE)) or new_secret()
    response = aiohttp_jinja2.render_template(
        "login.html",
        request,
        {"error": error, "next": next_path, "csrf_token": token, "username": username},
        status=status,
    )
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        httponly=True,
        samesite="Strict",
        secure=over_tls(request),
        path="/login",
    )
    return response


async def login_page(request: web.Request) -> web.StreamResponse:
    """GET /login: the sign-in form (or straight on, when already signed in)."""
    next_path = _safe_next(request.query.get("next", "/"))
    if current_user(request) is not None:
        raise web.HTTPFound(next_path)
    return _login_page(request, error=None, next_path=next_path, username="", status=200)


async def login(request: web.Request) -> web.StreamResponse:
    """POST /login: check the password (throttled), open a session, set its cookie."""
    form = await request.post()
    name = form.get("username", "")
    password = form.get("password", "")
    sent = form.get(CSRF_FIELD, "")
    next_path = _safe_next(form.get("next", "/"))
    if not isinstance(name, str) or not isinstance(password, str) or not isinstance(sent, str):
        raise web.HTTPBadRequest(text="username, password and csrf_token must be text fields")
    name = name.strip()
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if not expected or not sent or not same_secret(sent, expected):
        return _login_page(  # a fresh form (and token): the old one expired or was forged
            request,
            error="The sign-in form expired or came from another site. Sign in again.",
            next_path=next_path,
            username="",
            status=403,
            fresh=True,
        )
    if not name or not password or len(name) > MAX_NAME:
        return _login_page(
            request,
            error="Enter your username and password.",
            next_path=next_path,
            username=name[:MAX_NAME],
            status=400,
        )
    address = source(request)
    throttle = request.app[THROTTLE]
    attempt = throttle.attempt(request, name, address)
    if attempt is None:
        record(request, "sign-in", name, "denied", {"reason": "throttled"}, name=name)
        minutes = max(1, round(throttle.window_s / 60))
        return _login_page(
            request,
            error=f"Too many failed sign-ins. Try again in {minutes} minutes.",
            next_path=next_path,
            username=name,
            status=429,
        )
    store = request.app[STORE]
    stored = store.password_hash(name)
    matched = await asyncio.to_thread(verify_password, stored, password)
    user = store.get_user(name) if matched else None
    if user is None or user.disabled:  # the attempt stays counted as a failure
        reason = "disabled" if user is not None else "bad credentials"
        record(request, "sign-in", name, "failed", {"reason": reason}, name=name)
        return _login_page(
            request,
            error="Wrong username or password, or the account is disabled.",
            next_path=next_path,
            username=name,
            status=401,
        )
    throttle.succeeded(request, name, address, attempt)
    if stored is not None and needs_rehash(stored):
        store.set_password(name, await asyncio.to_thread(hash_password, password))
    settings = request.app[SETTINGS]
    sid = new_secret()
    expires = datetime.now(UTC) + timedelta(hours=settings.session_hours)
    store.create_session(
        user.name,
        token_digest(sid),
        new_secret(),
        expires.isoformat(timespec="seconds"),
        address,
    )
    record(request, "sign-in", user.name, "ok", user=user)
    response = web.HTTPFound(next_path)
    response.set_cookie(
        SESSION_COOKIE,
        sid,
        httponly=True,
        samesite="Strict",
        secure=over_tls(request),
        path="/",
        max_age=int(settings.session_hours * 3600),
    )
    response.del_cookie(LOGIN_COOKIE, path="/login")
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    """POST /logout: end the session and close the terminals and event streams it opened."""
    user = current_user(request)
    session = current_session(request)
    if session is not None:
        request.app[STORE].delete_session(session.id_hash)
    if user is not None:
        closed = await request.app[LIVE].close_user(
            user.name, credential=session.id_hash if session is not None else ""
        )
        record(request, "sign-out", user.name, "ok", {"closed": str(closed)}, user=user)
    response = web.HTTPFound("/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response


def setup_auth(app: web.Application) -> None:
    """The sign-in and sign-out routes, and the throttle they share."""
    settings = app[SETTINGS]
    app[THROTTLE] = SignInThrottle(
        settings.sign_in_failures,
        settings.sign_in_failures_per_address,
        settings.sign_in_window_s,
    )
    app.router.add_get("/login", login_page, name="login")
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout, name="logout")
