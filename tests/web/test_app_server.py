"""``ecsexec server --sandbox`` end to end: a one-command trial over TLS, signed in as the
demo admin, and a graceful stop on SIGTERM."""

from __future__ import annotations

import asyncio
import datetime
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ecsexec.store.team import database_path, open_team_store
from ecsexec.web.auth import SESSION_COOKIE
from ecsexec.web.passwords import hash_password, verify_password

pytestmark = pytest.mark.e2e


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_server_sandbox_over_tls_signs_in_the_demo_admin_and_stops_cleanly(
    tmp_path: Path,
) -> None:
    cert, key = self_signed(tmp_path)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ECSEXEC_"))}
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ecsexec",
            "server",
            "--sandbox",
            "--listen",
            f"127.0.0.1:{port}",
            "--tls-cert",
            str(cert),
            "--tls-key",
            str(key),
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        lines: list[str] = []
        while not any("password" in line for line in lines):
            line = server.stdout.readline()
            assert line, (
                f"the server stopped: {lines} {server.stderr.read() if server.stderr else ''}"
            )
            lines.append(line)
        url = next(re.search(r"https://\S+", line) for line in lines if "https://" in line)
        assert url is not None and url.group(0) == f"https://localhost:{port}/"
        password = lines[-1].rsplit(": ", 1)[1].strip()
        asyncio.run(_sign_in_and_list(port, password))
    finally:
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=60)
    assert server.returncode == 0, err
    assert "stopping" in out and "Traceback" not in err
    assert password not in err


async def _sign_in_and_list(port: int, password: str) -> None:
    base = f"https://127.0.0.1:{port}"
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(
        cookie_jar=jar, connector=aiohttp.TCPConnector(ssl=False)
    ) as session:
        async with session.get(f"{base}/login") as page:
            assert page.headers["Strict-Transport-Security"].startswith("max-age=")
            token = re.search(r'name="csrf_token" value="([^"]*)"', await page.text())
        assert token is not None
        async with session.post(
            f"{base}/login",
            data={"username": "admin", "password": password, "csrf_token": token.group(1)},
            allow_redirects=False,
        ) as signed_in:
            assert signed_in.status == 302
            cookie = signed_in.cookies[SESSION_COOKIE]
            assert cookie["secure"] and cookie["httponly"] and cookie["samesite"] == "Strict"
        async with session.get(f"{base}/api/v1/nodes?filter=ECS:Service-Name:%20web") as nodes:
            answer = await nodes.json()
            assert nodes.status == 200 and answer["count"] >= 3


def test_server_sandbox_never_touches_the_configured_state_dir(tmp_path: Path) -> None:
    """A trial run next to a real ecsexec.toml keeps its own temporary state: the real
    database's admin keeps their password and sessions, and no sandbox run lands there."""
    real_state = tmp_path / "real-state"
    (tmp_path / "ecsexec.toml").write_text(f'[server]\nstate_dir = "{real_state}"\n')
    store = open_team_store(database_path(real_state))
    store.add_user("admin", "admin", hash_password("the-real-admins-password"))
    store.close()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ECSEXEC_"))}
    server = subprocess.Popen(
        [sys.executable, "-m", "ecsexec", "server", "--sandbox", "--listen", f"127.0.0.1:{port}"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        lines: list[str] = []
        while not any("password" in line for line in lines):
            line = server.stdout.readline()
            assert line, f"the server stopped: {lines}"
            lines.append(line)
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=60)
    state_line = next(line for line in lines if "state in" in line)
    assert str(real_state) not in state_line, state_line
    store = open_team_store(database_path(real_state))
    try:
        stored = store.password_hash("admin")
    finally:
        store.close()
    assert verify_password(stored, "the-real-admins-password")
