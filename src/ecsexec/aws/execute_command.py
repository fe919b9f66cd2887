"""ExecuteCommand as one SigV4-signed request: on the event loop (aiohttp) or blocking (urllib).

botocore still provides the credentials and their refresh, and the CA bundle; the endpoint
URL is the one botocore resolved (from a built client, or remembered from an earlier
process by :mod:`ecsexec.aws.endpoints`). The request is signed here with SigV4 for this
one request shape (:class:`SigV4Signer`, checked header for header against botocore's
``SigV4Auth`` in the tests): botocore's generic signer cost 15% of the client's CPU in a
300-node fan-out, mostly in header canonicalisation through ``email.message``.

Why not botocore's client: its call cost 0.83 ms of client CPU per ExecuteCommand on the
sandbox, run in worker threads whose GIL hand-offs stalled the event loop's socket calls
(cProfile of a 300-node fan-out showed ``socket.send`` and ``connect`` taking 0.2-0.7 ms
each while the threads ran); and building the client (service model, endpoint rules)
costs ~50 ms of CPU, most of what a run served from the node cache spends before its
first call. Errors are rebuilt as botocore's ``ClientError`` and go through the same
:func:`ecsexec.aws.errors.translate`, so users see the same codes and hints.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import http.client
import json
import ssl
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import boto3
import botocore
from botocore.credentials import ReadOnlyCredentials
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    SSLError,
)

from ecsexec.aws.errors import translate
from ecsexec.errors import AwsError, EcsexecError

if TYPE_CHECKING:
    import aiohttp

__all__ = ["SignedExecuteCommand"]

TARGET: Final = "AmazonEC2ContainerServiceV20141113.ExecuteCommand"
CONTENT_TYPE: Final = "application/x-amz-json-1.1"
CREDENTIALS_TTL: Final = 30.0  # reuse a frozen copy this long; botocore refreshes far earlier
CONNECT_TIMEOUT: Final = 5.0  # as ecsexec's botocore clients (aws.clients.CONNECT_TIMEOUT)
READ_TIMEOUT: Final = 60.0  # botocore's
TIMEOUTS: Final = {"total": None, "sock_connect": CONNECT_TIMEOUT, "sock_read": READ_TIMEOUT}
USER_AGENT: Final = (
    f"Boto3/{boto3.__version__} Python/{sys.version_info[0]}.{sys.version_info[1]} "
    f"Botocore/{botocore.__version__} ecsexec"
)


class SignedExecuteCommand:
    """``call(cluster=..., task=..., container=..., command=...)`` -> the response dict,
    and ``await acall(...)`` the same on the running event loop.

    ``call`` blocks (``urllib``, honouring HTTP(S)_PROXY and NO_PROXY, one connection
    per call): for the few calls of a small run, which then never import an HTTP library
    of its own. ``acall`` uses aiohttp, for fan-outs: no worker thread per call.
    Failures raise what botocore's client would, translated
    (:class:`~ecsexec.errors.AwsError` with its code and hint).
    """

    def __init__(
        self,
        session: boto3.session.Session,
        endpoint_url: str,
        region: str,
        ssl_context: Callable[[], ssl.SSLContext],
    ) -> None:
        self._session = session
        self.endpoint_url = endpoint_url
        self._signer = SigV4Signer(endpoint_url, region, "ecs")
        self._ssl = ssl_context
        self._frozen: ReadOnlyCredentials | None = None
        self._frozen_at = 0.0
        self._opener: urllib.request.OpenerDirector | None = None
        # Not weak: a pool refers to its loop, so a weak key would never be released.
        self._http: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}

    def prepare(self) -> None:
        """Resolve the credentials and, for https, load the TLS trust store now (blocking:
        for a worker thread while the caller does other work)."""
        self._fresh_credentials()
        if self.endpoint_url.startswith("https:"):
            self._ssl()

    def call(self, **params: Any) -> dict[str, Any]:
        body, headers = self._request(self._fresh_credentials(), params)
        request = urllib.request.Request(
            self.endpoint_url, data=body, headers=headers, method="POST"
        )
        try:
            with self._blocking_opener().open(request) as response:
                return self._answer(response.status, response.read(), response.headers)
        except urllib.error.HTTPError as error:
            with error:
                return self._answer(error.code, error.read(), error.headers)
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            raise self._unreachable(getattr(exc, "reason", exc)) from None

    def _request(
        self, credentials: ReadOnlyCredentials, params: dict[str, Any]
    ) -> tuple[bytes, dict[str, str]]:
        body = json.dumps(params, separators=(",", ":")).encode()
        headers = self._signer.sign(
            credentials,
            {"Content-Type": CONTENT_TYPE, "X-Amz-Target": TARGET},
            body,
            datetime.now(UTC),
        )
        headers["User-Agent"] = USER_AGENT  # not signed, as botocore leaves it out
        return body, headers

    def _answer(self, status: int, payload: bytes, headers: Any) -> dict[str, Any]:
        if status == 200:
            result: dict[str, Any] = json.loads(payload)
            return result
        error = _client_error(
            status,
            payload,
            headers.get("x-amzn-ErrorType", "") or "",
            headers.get("x-amzn-RequestId", "") or "",
        )
        raise translate(error, "ExecuteCommand")

    def _unreachable(self, cause: BaseException) -> EcsexecError:
        """What botocore raises for ``cause``: SSLError for a certificate the CA bundle
        does not vouch for (with its hint), else EndpointConnectionError."""
        if isinstance(cause, ssl.SSLError):  # aiohttp's certificate errors are ones too
            return translate(
                SSLError(endpoint_url=self.endpoint_url, error=cause), "ExecuteCommand"
            )
        error = translate(EndpointConnectionError(endpoint_url=self.endpoint_url), "ExecuteCommand")
        return _with_cause(error, cause)

    def _fresh_credentials(self) -> ReadOnlyCredentials:
        """Frozen credentials, refreshed (which may call STS, IMDS or a credential
        process: blocking) when older than :data:`CREDENTIALS_TTL`."""
        now = time.monotonic()
        if self._frozen is None or now - self._frozen_at > CREDENTIALS_TTL:
            self._frozen, self._frozen_at = self._freeze(), now
        return self._frozen

    def _freeze(self) -> ReadOnlyCredentials:
        credentials = self._session.get_credentials()
        if credentials is None:
            raise translate(NoCredentialsError(), "ExecuteCommand")
        frozen: ReadOnlyCredentials = credentials.get_frozen_credentials()
        return frozen

    def _blocking_opener(self) -> urllib.request.OpenerDirector:
        if self._opener is None:
            # The TLS context only for https: building one costs 20-45 ms of CPU.
            https = self.endpoint_url.startswith("https:")
            self._opener = urllib.request.build_opener(
                _HttpHandler(), _HttpsHandler(context=self._ssl() if https else None)
            )
        return self._opener

    # --- on an event loop ------------------------------------------------------------
    #
    # One HTTP connection pool per event loop, opened by the first call on that loop and
    # closed by aclose(), which the owner calls on that loop before it ends (through
    # EcsApi.aclose, ConnectorPool.aclose or ``async with ConnectorPool(...)``). Nothing
    # closes it behind the owner's back: a pool left open is reported by aiohttp as an
    # unclosed client session (a ResourceWarning) once it is dropped, which happens at
    # the next call from another loop after its own loop closed, or with this object.

    async def acall(self, **params: Any) -> dict[str, Any]:
        credentials = self._frozen
        if credentials is None or time.monotonic() - self._frozen_at > CREDENTIALS_TTL:
            # A refresh may call STS, IMDS or a credential process: keep it off the loop.
            credentials = await asyncio.to_thread(self._fresh_credentials)
        body, headers = self._request(credentials, params)
        http = await self._client()
        try:
            async with http.post(
                self.endpoint_url,
                data=body,
                headers=headers,
                proxy=_proxy_for(self.endpoint_url),
            ) as response:
                payload = await response.read()
                status = response.status
                answer_headers = response.headers
        except (_aiohttp().ClientError, OSError, TimeoutError) as exc:
            raise self._unreachable(exc) from None
        return self._answer(status, payload, answer_headers)

    async def aclose(self) -> None:
        """Close the running loop's HTTP connection pool (a later call opens a new one)."""
        http = self._http.pop(asyncio.get_running_loop(), None)
        if http is not None:
            await http.close()

    async def _client(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        http = self._http.get(loop)
        if http is None:
            # A closed loop's pool was never closed and can no longer be: let it go, so it
            # is reported as unclosed and its loop is freed.
            for dead in [other for other in self._http if other.is_closed()]:
                del self._http[dead]
            # The TLS context only for https: building one costs 20-45 ms of CPU.
            tls = self._ssl() if self.endpoint_url.startswith("https:") else True
            aiohttp = _aiohttp()
            http = self._http[loop] = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=tls, limit=100),
                timeout=aiohttp.ClientTimeout(**TIMEOUTS),
                auto_decompress=False,
                # trust_env would read ~/.netrc in a worker thread for every request; the
                # proxy is looked up once instead (_proxy_for).
            )
        return http


class _TwoTimeouts:
    """Connect within :data:`CONNECT_TIMEOUT`, then wait up to :data:`READ_TIMEOUT` for
    data, as botocore's two timeouts do (urllib has only one). Mixed into http.client's
    connections, before them."""

    timeout: float | None
    sock: Any

    def connect(self) -> None:
        self.timeout = CONNECT_TIMEOUT
        super().connect()  # type: ignore[misc]  # the http.client connection's
        self.sock.settimeout(READ_TIMEOUT)


class _TimedConnection(_TwoTimeouts, http.client.HTTPConnection):
    pass


class _TimedTlsConnection(_TwoTimeouts, http.client.HTTPSConnection):
    pass


class _HttpHandler(urllib.request.HTTPHandler):
    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_TimedConnection, req)


class _HttpsHandler(urllib.request.HTTPSHandler):
    def __init__(self, context: ssl.SSLContext | None) -> None:
        super().__init__(context=context)
        self._tls = context

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_TimedTlsConnection, req, context=self._tls)


def _aiohttp() -> Any:
    """aiohttp, imported on first use: its import costs ~0.1 s of CPU (a TLS context
    among it), which ``ecsexec --help`` or a run served by its caches should not wait
    for before it needs to. :func:`preload` starts it in the background."""
    import aiohttp

    return aiohttp


_preloading: threading.Thread | None = None


def requested() -> bool:
    """Whether aiohttp is imported or on its way (:func:`preload`): then ExecuteCommand
    goes through :meth:`SignedExecuteCommand.acall`; until then a small run's few calls go
    through botocore's own client in a worker thread, and never pay for the import."""
    return _preloading is not None or "aiohttp" in sys.modules


def preload() -> None:
    """Import aiohttp in a background thread, once, so the first ExecuteCommand finds it
    imported. Its TLS trust store loads without holding the GIL, so part of the import
    runs beside whatever the caller does meanwhile."""
    global _preloading
    if _preloading is None and "aiohttp" not in sys.modules:
        _preloading = threading.Thread(target=_aiohttp, name="ecsexec-preload", daemon=True)
        _preloading.start()


class SigV4Signer:
    """AWS Signature Version 4 for POST requests with a body to one endpoint's root path.

    The signed headers are what botocore's ``SigV4Auth`` signs for such a request
    (everything but User-Agent), so the two produce the same Authorization header.
    """

    def __init__(self, endpoint_url: str, region: str, service: str) -> None:
        parts = urllib.parse.urlsplit(endpoint_url)
        default_port = {"https": 443, "http": 80}.get(parts.scheme)
        host = parts.hostname or ""
        # botocore signs the host without a default port.
        self.host = host if parts.port in (None, default_port) else f"{host}:{parts.port}"
        self.path = parts.path or "/"
        self.region = region
        self.service = service
        self._keys: dict[tuple[str, str], bytes] = {}

    def sign(
        self,
        credentials: ReadOnlyCredentials,
        headers: dict[str, str],
        body: bytes,
        now: datetime,
    ) -> dict[str, str]:
        """Return ``headers`` plus Host, X-Amz-Date, the session token and Authorization."""
        amz_date = now.strftime("%Y%m%dT%H%M%SZ")
        day = amz_date[:8]
        signed = {**headers, "Host": self.host, "X-Amz-Date": amz_date}
        if credentials.token:
            signed["X-Amz-Security-Token"] = credentials.token
        canonical = sorted(
            (name.lower(), " ".join(value.split())) for name, value in signed.items()
        )
        names = ";".join(name for name, _ in canonical)
        request = "\n".join(
            [
                "POST",
                self.path,
                "",  # no query string
                *(f"{name}:{value}" for name, value in canonical),
                "",
                names,
                hashlib.sha256(body).hexdigest(),
            ]
        )
        scope = f"{day}/{self.region}/{self.service}/aws4_request"
        to_sign = "\n".join(
            ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(request.encode()).hexdigest()]
        )
        signature = hmac.new(
            self._key(credentials.secret_key, day), to_sign.encode(), hashlib.sha256
        ).hexdigest()
        signed["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, "
            f"SignedHeaders={names}, Signature={signature}"
        )
        return signed

    def _key(self, secret: str, day: str) -> bytes:
        """The day's signing key; kept per (secret, day) so rotated secrets get their own."""
        cache_key = (secret, day)
        key = self._keys.get(cache_key)
        if key is None:
            key = f"AWS4{secret}".encode()
            for part in (day, self.region, self.service, "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            if len(self._keys) > 8:
                self._keys.clear()
            self._keys[cache_key] = key
        return key


@functools.lru_cache(maxsize=64)
def _proxy_for(url: str) -> str | None:
    """HTTPS_PROXY / HTTP_PROXY for ``url`` unless NO_PROXY exempts it, as botocore does."""
    parts = urllib.parse.urlsplit(url)
    if urllib.request.proxy_bypass(parts.netloc):
        return None
    return urllib.request.getproxies().get(parts.scheme)


def _with_cause(error: EcsexecError, cause: BaseException) -> EcsexecError:
    """``error`` (what botocore's call would raise) with what the socket said, for the user."""
    if not isinstance(error, AwsError):
        return error
    detail = str(cause) or type(cause).__name__
    return AwsError(
        f"{error.message} ({detail})",
        code=error.code,
        operation=error.operation,
        hint=error.hint,
        retryable=error.retryable,
    )


def _client_error(status: int, payload: bytes, error_type: str, request_id: str) -> ClientError:
    """The ClientError botocore would raise for this JSON-protocol error response."""
    code, message = "", ""
    try:
        body = json.loads(payload)
    except ValueError:
        body = None
    if isinstance(body, dict):
        code = str(body.get("__type") or "")
        message = str(body.get("message") or body.get("Message") or "")
    code = (code or error_type.split(":", 1)[0]).rsplit("#", 1)[-1]
    if not code:
        code = "ServiceUnavailable" if status >= 500 else f"HTTP{status}"
    error = {"Code": code, "Message": message}
    metadata = {"HTTPStatusCode": status, "RequestId": request_id}
    return ClientError({"Error": error, "ResponseMetadata": metadata}, "ExecuteCommand")
