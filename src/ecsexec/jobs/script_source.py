"""Fetch the text of a ``scriptfile`` or ``scripturl`` step, with size and time limits.

Rundeck reads a script file, or downloads a script URL, on its own server when the step
runs, then copies the script to each node. ecsexec does the same on the client: once per
job run (every node gets the same bytes), then through the exec channel like any script.
"""

from __future__ import annotations

import asyncio
import base64
import time
import urllib.error
import urllib.parse
import urllib.request
from http.client import HTTPMessage
from pathlib import Path
from typing import IO, Final

from ecsexec.errors import ConfigurationError

MAX_SCRIPT_BYTES: Final = 64 * 1024 * 1024  # a script, not a data set; all nodes get it
URL_TIMEOUT: Final = 30.0  # seconds for the whole download


def read_script_file(path: str, *, limit: int = MAX_SCRIPT_BYTES) -> bytes:
    """The bytes of a scriptfile step; a clear error if it cannot be read or is too big."""
    try:
        with Path(path).open("rb") as stream:
            data = stream.read(limit + 1)
    except OSError as exc:
        raise ConfigurationError(f"scriptfile {path}: {exc.strerror or exc}") from exc
    if len(data) > limit:
        raise ConfigurationError(f"scriptfile {path}: larger than {limit} bytes")
    return data


def redact_url(url: str) -> str:
    """``url`` fit to show: a password in it (``https://user:pass@host/``) becomes ``****``."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = parts.netloc.rpartition("@")[0].partition(":")[0]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:****@{host}"))


async def fetch_script_url(
    url: str, *, limit: int = MAX_SCRIPT_BYTES, timeout: float = URL_TIMEOUT
) -> bytes:
    """Download a scripturl step's script (http or https only, redirects included).

    Credentials in the URL (``https://user:pass@host/path``) log in with HTTP basic auth,
    sent to that host only (not along a redirect), and never appear in a message."""
    try:
        return await asyncio.wait_for(asyncio.to_thread(_fetch, url, limit, timeout), timeout)
    except TimeoutError:
        raise _failed(url, f"no complete answer in {timeout:g} s") from None


def _failed(url: str, why: str) -> ConfigurationError:
    return ConfigurationError(f"scripturl {redact_url(url)}: {why}")


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects to http(s) only (urllib follows one to ftp:// too), checked
    before anything is contacted."""

    def http_error_302(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: HTTPMessage,
    ) -> IO[bytes] | None:
        location = headers.get("location") or headers.get("uri") or ""
        target = urllib.parse.urljoin(req.full_url, location)
        if urllib.parse.urlsplit(target).scheme.lower() not in ("http", "https"):
            fp.close()
            raise _Refused(f"redirected to {redact_url(target)}, not http(s)")
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


class _Refused(Exception):
    """Why a fetch was given up, for :func:`_fetch` to report with the URL."""


def _fetch(url: str, limit: int, timeout: float) -> bytes:
    """The blocking download: it ends by itself within about ``timeout`` seconds (each
    read waits at most that long, and the reading stops once the time is up), so a
    server that answers a byte at a time cannot keep the thread, or the process, alive."""
    deadline = time.monotonic() + timeout
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise _failed(url, "is not an http or https URL")
    request = urllib.request.Request(
        urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2])),
        headers={"User-Agent": "ecsexec"},
    )
    if parts.username is not None:
        login = (
            f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
        )
        request.add_unredirected_header(
            "Authorization", "Basic " + base64.b64encode(login.encode()).decode()
        )
    opener = urllib.request.build_opener(_HttpOnlyRedirects)
    data = bytearray()
    try:
        with opener.open(request, timeout=timeout) as response:
            while len(data) <= limit:
                if time.monotonic() > deadline:
                    raise _Refused(f"no complete answer in {timeout:g} s")
                piece = response.read1(min(65536, limit + 1 - len(data)))
                if not piece:
                    break
                data += piece
    except _Refused as exc:
        raise _failed(url, str(exc)) from None
    except urllib.error.HTTPError as exc:
        exc.close()  # it holds the response's connection
        raise _failed(url, f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise _failed(url, str(exc.reason)) from None
    except TimeoutError:
        raise _failed(url, f"no complete answer in {timeout:g} s") from None
    except (OSError, ValueError) as exc:
        raise _failed(url, str(exc)) from None
    if len(data) > limit:
        raise _failed(url, f"larger than {limit} bytes")
    return bytes(data)
