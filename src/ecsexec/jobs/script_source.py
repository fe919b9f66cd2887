"""Fetch the text of a ``scriptfile`` or ``scripturl`` step, with size and time limits.

Rundeck reads a script file, or downloads a script URL, on its own server when the step
runs, then copies the script to each node. ecsexec does the same on the client: once per
job run (every node gets the same bytes), then through the exec channel like any script.
"""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from pathlib import Path
from typing import Final

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


async def fetch_script_url(
    url: str, *, limit: int = MAX_SCRIPT_BYTES, timeout: float = URL_TIMEOUT
) -> bytes:
    """Download a scripturl step's script (http or https only, redirects included)."""
    try:
        return await asyncio.wait_for(asyncio.to_thread(_fetch, url, limit, timeout), timeout)
    except TimeoutError:
        raise ConfigurationError(f"scripturl {url}: no complete answer in {timeout:g} s") from None


def _fetch(url: str, limit: int, timeout: float) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "ecsexec"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            final = response.geturl()
            if not final.lower().startswith(("http://", "https://")):
                raise ConfigurationError(f"scripturl {url}: redirected to {final}, not http(s)")
            data: bytes = response.read(limit + 1)
    except urllib.error.HTTPError as exc:
        exc.close()  # it holds the response's connection
        raise ConfigurationError(f"scripturl {url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise ConfigurationError(f"scripturl {url}: {exc.reason}") from None
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"scripturl {url}: {exc}") from None
    if len(data) > limit:
        raise ConfigurationError(f"scripturl {url}: larger than {limit} bytes")
    return data
