"""ExecuteCommand signed by us (blocking and over aiohttp) against the sandbox, checked
against botocore's own call."""

from __future__ import annotations

import asyncio
import gc
import http.client
import http.server
import subprocess
import sys
import threading
import urllib.parse
import warnings
from datetime import UTC, datetime
from typing import Any, ClassVar

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials
from hypothesis import given, settings
from hypothesis import strategies as st

from ecsexec.aws.clients import session_from_env
from ecsexec.aws.ecs import EcsApi, ExecSession, explain_execute_command_error
from ecsexec.aws.errors import translate
from ecsexec.aws.execute_command import SigV4Signer, _client_error, _proxy_for
from ecsexec.aws.ssm import SsmSessionControl
from ecsexec.errors import AwsError
from ecsexec.sandbox import Sandbox
from tests.exec.sandbox_nodes import discover


def _target(sb: Sandbox) -> dict[str, str]:
    node = next(n for n in discover(sb) if n.attributes.get("ECS:Exec-Enabled") == "true")
    return {
        "cluster": node.attributes["ECS:Cluster-ARN"],
        "task": node.attributes["ECS:Task-ARN"],
        "container": node.attributes["ECS:Container-Name"],
        "runtime_id": node.attributes["ECS:Runtime-ID"],
    }


def _call(api: EcsApi, **params: str) -> ExecSession:
    """One ExecuteCommand on a fresh event loop, its HTTP connections closed after."""

    async def main() -> ExecSession:
        try:
            return await api.execute_command_async(**params)
        finally:
            await api.aclose()

    return asyncio.run(main())


def _via_botocore(session: Any, endpoint_url: str | None = None, **params: str) -> Any:
    """botocore's own ExecuteCommand (no retries), its failures translated as ours are."""
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    client = session.client(
        "ecs",
        region_name="us-east-1",
        endpoint_url=endpoint_url,
        config=Config(connect_timeout=5, retries={"mode": "standard", "max_attempts": 1}),
    )
    params.pop("runtime_id", None)
    try:
        return client.execute_command(interactive=True, **params)
    except (ClientError, BotoCoreError) as exc:
        raise explain_execute_command_error(translate(exc, "ExecuteCommand")) from None


def _start_both_ways(
    api: EcsApi, control: SsmSessionControl, target: dict[str, str]
) -> list[ExecSession]:
    """ExecuteCommand blocking and on a loop; each session terminated at once."""
    started = [api.execute_command(command="true", **target), _call(api, command="true", **target)]
    for one in started:
        control.terminate_session(one.session_id)
    return started


def _error(call: Any) -> AwsError:
    with pytest.raises(AwsError) as caught:
        call()
    return caught.value


def test_signed_calls_start_the_same_kind_of_session_as_botocore(sandbox: Sandbox) -> None:
    session = session_from_env(sandbox.env)
    api = EcsApi(session, region="us-east-1")
    control = SsmSessionControl(session)
    target = _target(sandbox)
    via_botocore = _via_botocore(session, command="true", **target)
    control.terminate_session(via_botocore["session"]["sessionId"])
    blocking = api.execute_command(command="true", **target)
    control.terminate_session(blocking.session_id)
    via_aiohttp = _call(api, command="true", **target)
    control.terminate_session(via_aiohttp.session_id)
    assert blocking.target == via_aiohttp.target
    for ours in (blocking, via_aiohttp):
        assert ours.session_id != via_botocore["session"]["sessionId"]
        assert ours.session_id in ours.stream_url
        assert ours.cluster_arn == via_botocore["clusterArn"]
        assert ours.task_arn == via_botocore["taskArn"]
        assert ours.container_name == via_botocore["containerName"]
        assert ours.token_value and ours.token_value != via_botocore["session"]["tokenValue"]


def test_service_errors_match_botocore_code_message_and_hint(sandbox: Sandbox) -> None:
    session = session_from_env(sandbox.env)
    api = EcsApi(session, region="us-east-1")
    params = {"cluster": "no-such-cluster", "task": "t", "container": "c", "command": "true"}
    botocore = _error(lambda: _via_botocore(session, **params))
    assert botocore.code == "ClusterNotFoundException"
    for ours in (
        _error(lambda: api.execute_command(**params)),
        _error(lambda: _call(api, **params)),
    ):
        assert (ours.code, ours.message, ours.hint) == (
            botocore.code,
            botocore.message,
            botocore.hint,
        )
        assert ours.operation == "ExecuteCommand"
        assert not ours.retryable


def test_a_wrong_secret_is_refused_like_botocore_and_not_shown(sandbox: Sandbox) -> None:
    session = session_from_env(sandbox.env)
    access_key = session.get_credentials().access_key
    session._session.set_credentials(access_key, "wrong-secret-0123456789")
    api = EcsApi(session, region="us-east-1")
    target = _target(sandbox)
    botocore = _error(lambda: _via_botocore(session, command="true", **target))
    for ours in (
        _error(lambda: api.execute_command(command="true", **target)),
        _error(lambda: _call(api, command="true", **target)),
    ):
        assert (ours.code, ours.hint) == (botocore.code, botocore.hint)
        assert "wrong-secret" not in str(ours)


def test_an_unreachable_endpoint_names_it() -> None:
    session = session_from_env({"AWS_DEFAULT_REGION": "us-east-1"})
    session._session.set_credentials("AKIDEXAMPLE", "secret")
    api = EcsApi(session, region="us-east-1", endpoint_url="http://127.0.0.1:9")
    params = {"cluster": "c", "task": "t", "container": "n", "command": "true"}
    botocore = _error(lambda: _via_botocore(session, "http://127.0.0.1:9", **params))
    for error in (
        _error(lambda: api.execute_command(**params)),
        _error(lambda: _call(api, **params)),
    ):
        assert error.code == botocore.code == "EndpointConnectionError"
        assert error.hint == botocore.hint and error.operation == "ExecuteCommand"
        assert "127.0.0.1:9" in error.message
        assert "refused" in error.message.lower() or "failed" in error.message.lower()


def test_aclose_closes_the_http_pool_and_leaves_nothing_for_the_loop_to_finalize(
    sandbox: Sandbox,
) -> None:
    session = session_from_env(sandbox.env)
    api = EcsApi(session, region="us-east-1")
    control = SsmSessionControl(session)
    target = _target(sandbox)
    started_generators: list[str] = []

    async def main() -> ExecSession:
        # Record every async generator started on this loop: one left suspended would be
        # closed only by the loop's shutdown (a finalizer), after the caller is gone.
        hooks = sys.get_asyncgen_hooks()

        def firstiter(agen: Any) -> None:
            started_generators.append(agen.ag_code.co_filename)
            if hooks.firstiter is not None:
                hooks.firstiter(agen)

        sys.set_asyncgen_hooks(firstiter=firstiter, finalizer=hooks.finalizer)
        try:
            return await api.execute_command_async(command="true", **target)
        finally:
            await api.aclose()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):  # a fresh loop each time gets a fresh pool, closed by aclose
            started = asyncio.run(main())
            control.terminate_session(started.session_id)
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
    assert not [name for name in started_generators if name.endswith("execute_command.py")]


@pytest.mark.parametrize(
    ("status", "body", "header", "code", "message"),
    [
        (
            400,
            b'{"__type":"com.amazonaws.ecs#InvalidParameterException","message":"bad"}',
            "",
            "InvalidParameterException",
            "bad",
        ),
        (
            400,
            b'{"Message":"slow down"}',
            "ThrottlingException:http://x",
            "ThrottlingException",
            "slow down",
        ),
        (503, b"<html>busy</html>", "", "ServiceUnavailable", ""),
        (418, b"", "", "HTTP418", ""),
    ],
)
def test_error_responses_become_botocore_client_errors(
    status: int, body: bytes, header: str, code: str, message: str
) -> None:
    error = _client_error(status, body, header, "req-1").response
    assert error["Error"] == {"Code": code, "Message": message}
    assert error["ResponseMetadata"]["HTTPStatusCode"] == status


_secret = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/",
    min_size=1,
    max_size=40,
)


@settings(max_examples=60)
@given(
    body=st.binary(max_size=300),
    secret=_secret,
    token=st.one_of(st.none(), _secret),
    endpoint=st.sampled_from(
        ["https://ecs.us-east-1.amazonaws.com", "http://127.0.0.1:8443", "https://h.example:443/"]
    ),
)
def test_sigv4_signer_matches_botocore_header_for_header(
    body: bytes, secret: str, token: str | None, endpoint: str
) -> None:
    credentials = ReadOnlyCredentials("AKIDEXAMPLE", secret, token)
    base = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "Svc.Op"}
    request = AWSRequest(method="POST", url=endpoint, data=body, headers=dict(base))
    SigV4Auth(credentials, "ecs", "eu-west-3").add_auth(request)
    when = datetime.strptime(request.headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    ours = SigV4Signer(endpoint, "eu-west-3", "ecs").sign(credentials, dict(base), body, when)
    assert ours["Authorization"] == request.headers["Authorization"]
    assert ours.get("X-Amz-Security-Token") == request.headers.get("X-Amz-Security-Token")


@pytest.mark.e2e
def test_aiohttp_is_imported_only_when_needed() -> None:
    # Its import costs ~0.1 s of CPU: the engine imports it for the first ExecuteCommand
    # (or preload() in a thread), never just by being imported.
    code = (
        "import sys\nimport ecsexec.app, ecsexec.exec.connect\n"
        "print('BEFORE', 'aiohttp' in sys.modules)\n"
        "import ecsexec.aws.execute_command as e\n"
        "e.preload()\ne._preloading.join(60)\n"
        "print('AFTER', 'aiohttp' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "BEFORE False" in done.stdout and "AFTER True" in done.stdout, done.stdout


class _ForwardProxy(http.server.BaseHTTPRequestHandler):
    """An HTTP forward proxy for plain http: absolute-form requests, passed on as they are."""

    seen: ClassVar[list[str]] = []  # the ExecuteCommand requests it passed on

    def do_POST(self) -> None:
        target = urllib.parse.urlsplit(self.path)
        if self.headers.get("X-Amz-Target", "").endswith(".ExecuteCommand"):
            type(self).seen.append(self.path)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        upstream = http.client.HTTPConnection(target.netloc, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "proxy-connection"}
        upstream.request("POST", target.path or "/", body=body, headers=headers)
        answer = upstream.getresponse()
        payload = answer.read()
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        upstream.close()

    def log_message(self, *args: Any) -> None:
        pass


def test_both_transports_honour_http_proxy_and_no_proxy(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # botocore sends through HTTP(S)_PROXY unless NO_PROXY names the host; the signed
    # request that replaced its call must do the same (a corporate proxy, say).
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ForwardProxy)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    _ForwardProxy.seen.clear()
    session = session_from_env(sandbox.env)
    control = SsmSessionControl(session)
    target = _target(sandbox)
    try:
        for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "http_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.server_address[1]}")
        _proxy_for.cache_clear()
        _start_both_ways(EcsApi(session, region="us-east-1"), control, target)
        assert len(_ForwardProxy.seen) == 2
        assert all(seen.startswith(sandbox.env["AWS_ENDPOINT_URL"]) for seen in _ForwardProxy.seen)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        _proxy_for.cache_clear()
        _start_both_ways(EcsApi(session, region="us-east-1"), control, target)
        assert len(_ForwardProxy.seen) == 2  # NO_PROXY: straight to the endpoint
    finally:
        _proxy_for.cache_clear()
        proxy.shutdown()
        proxy.server_close()


@pytest.mark.e2e
def test_https_endpoints_trust_exactly_the_ca_bundle_botocore_trusts() -> None:
    # The TLS sandbox's CA comes through AWS_CA_BUNDLE; without it, a certificate error
    # must read as botocore's (code SSLError, the CA-bundle hint), not as an unreachable
    # endpoint.
    with Sandbox(tls=True, initial_wait=0.05) as sb:
        assert sb.endpoint_url.startswith("https://")
        session = session_from_env(sb.env)
        target = _target(sb)
        control = SsmSessionControl(session)
        started = _start_both_ways(EcsApi(session, region="us-east-1"), control, target)
        assert all(one.stream_url.startswith("wss://") for one in started)
        bare_env = {k: v for k, v in sb.env.items() if k != "AWS_CA_BUNDLE"}
        bare = session_from_env(bare_env)
        botocore = _error(lambda: _via_botocore(bare, **target, command="true"))
        assert botocore.code == "SSLError"
        untrusting = EcsApi(bare, region="us-east-1")
        for error in (
            _error(lambda: untrusting.execute_command(command="true", **target)),
            _error(lambda: _call(untrusting, command="true", **target)),
        ):
            assert (error.code, error.hint) == (botocore.code, botocore.hint)
            assert sb.endpoint_url.removeprefix("https://") in error.message
            assert "certificate" in error.message.lower()
