"""jobs/script_source.py: scriptfile and scripturl texts, against a real loopback HTTP server."""

from __future__ import annotations

import asyncio
import base64
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ecsexec.errors import ConfigurationError
from ecsexec.jobs.model import Step
from ecsexec.jobs.script_source import fetch_script_url, redact_url

pytestmark = pytest.mark.e2e

Answer = Callable[[BaseHTTPRequestHandler], None]


@pytest.fixture
def serve() -> Iterator[Callable[[Answer], str]]:
    """Start a loopback HTTP server answering every GET with ``answer``; its base URL."""
    servers: list[ThreadingHTTPServer] = []

    def start(answer: Answer) -> str:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                answer(self)

            def log_message(self, format: str, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def fetch(url: str, **limits: float) -> bytes:
    return asyncio.run(fetch_script_url(url, **limits))  # type: ignore[arg-type]


def test_credentials_in_the_url_log_in_and_are_never_shown(
    serve: Callable[[Answer], str],
) -> None:
    seen: list[str | None] = []

    def answer(handler: BaseHTTPRequestHandler) -> None:
        seen.append(handler.headers.get("Authorization"))
        good = "Basic " + base64.b64encode(b"deploy:s3cr3t p@ss").decode()
        if handler.path == "/s.sh" and handler.headers.get("Authorization") == good:
            handler.send_response(200)
            handler.end_headers()
            handler.wfile.write(b"echo hi\n")
        else:
            handler.send_response(401 if handler.path == "/s.sh" else 404)
            handler.end_headers()

    base = serve(answer)
    secret_url = base.replace("http://", "http://deploy:s3cr3t%20p%40ss@")
    assert fetch(secret_url + "/s.sh") == b"echo hi\n"
    with pytest.raises(ConfigurationError) as failed:
        fetch(secret_url + "/gone.sh")
    assert "s3cr3t" not in str(failed.value)
    assert (
        str(failed.value)
        == f"scripturl {base.replace('//', '//deploy:****@')}/gone.sh: HTTP 404 Not Found"
    )
    assert redact_url(secret_url) == base.replace("//", "//deploy:****@")
    step = Step(kind="script", script_url=secret_url + "/s.sh")
    assert "s3cr3t" not in step.label()
    assert len(seen) == 2


def test_a_redirect_leaves_http_never(serve: Callable[[Answer], str]) -> None:
    """A redirect to ftp:// (which urllib would follow) or file:// is refused before
    anything is contacted or opened."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    ftp = f"ftp://127.0.0.1:{listener.getsockname()[1]}/s.sh"

    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(302)
        handler.send_header("Location", ftp if handler.path == "/ftp" else "file:///etc/hostname")
        handler.end_headers()

    base = serve(answer)
    try:
        for path, where in (("/ftp", ftp), ("/file", "file:///etc/hostname")):
            with pytest.raises(ConfigurationError) as failed:
                fetch(base + path)
            assert (
                str(failed.value) == f"scripturl {base}{path}: redirected to {where}, not http(s)"
            )
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody came
    finally:
        listener.close()
    with pytest.raises(ConfigurationError, match="is not an http or https URL"):
        fetch("file:///etc/hostname")


def test_a_slow_drip_answer_is_cut_at_the_time_limit_and_the_fetch_stops(
    serve: Callable[[Answer], str],
) -> None:
    """A server sending a byte now and then must not hold the run (or the interpreter's
    exit, which waits for the fetching thread) past the time limit."""
    dripped: list[int] = []

    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", "40")
        handler.end_headers()
        for _ in range(40):
            try:
                handler.wfile.write(b"#")
                handler.wfile.flush()
            except OSError:
                return  # the client hung up: what we want
            dripped.append(1)
            time.sleep(0.1)

    base = serve(answer)
    with pytest.raises(ConfigurationError, match=r"no complete answer in 0\.3 s"):
        _fetch_in_this_thread(base + "/slow.sh", timeout=0.3)
    assert len(dripped) < 40


def _fetch_in_this_thread(url: str, *, timeout: float) -> bytes:
    """The blocking fetch itself: it must end by itself, not only be abandoned."""
    from ecsexec.jobs.script_source import MAX_SCRIPT_BYTES, _fetch

    return _fetch(url, MAX_SCRIPT_BYTES, timeout)


def test_a_huge_answer_is_refused_past_the_limit(serve: Callable[[Answer], str]) -> None:
    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.end_headers()
        try:
            for _ in range(1000):
                handler.wfile.write(b"x" * 1000)
        except OSError:
            return

    base = serve(answer)
    with pytest.raises(ConfigurationError, match="larger than 10000 bytes"):
        fetch(base + "/big.sh", limit=10_000)
