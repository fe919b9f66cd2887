"""Name the endpoint an AWS client would call without building one, and remember the URL.

Building a botocore client to read its ``endpoint_url`` costs ~50 ms of CPU (service
model, endpoint rules) and resolves credentials first; the node cache is consulted before
any of that is needed. Once a client has been built, its URL is remembered on disk by that
identity, so a later run served from the node cache signs its ExecuteCommand for the same
URL without building one (:mod:`ecsexec.aws.execute_command`). The cache directory and its
atomic, owner-only file writes live here too, shared with the node cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Final

__all__ = [
    "cache_home",
    "endpoint_identity",
    "recall_endpoint",
    "remember_endpoint",
    "write_cache_file",
]

# What botocore reads, besides the region and an explicit endpoint_url argument, to pick
# an endpoint: the per-service and global endpoint overrides, FIPS and dual-stack, and
# the profile (whose config section, or its services section, may set endpoint_url).
_ENVIRONMENT: Final = (
    "AWS_ENDPOINT_URL",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    "AWS_USE_FIPS_ENDPOINT",
    "AWS_USE_DUALSTACK_ENDPOINT",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_CONFIG_FILE",
)


def endpoint_identity(service_id: str, region: str, endpoint_url: str = "") -> str:
    """Text that changes whenever botocore could resolve another endpoint for
    ``service_id`` (``ECS``) in ``region``.

    It holds the region, the explicit endpoint, the environment variables above (and
    ``AWS_ENDPOINT_URL_<SERVICE>``), and the AWS config file's modification time and size:
    an edited file is a new identity, so a changed ``endpoint_url`` in it is never
    answered from a cache made against the old one. No secret is read or returned.
    """
    variables = (f"AWS_ENDPOINT_URL_{service_id.upper().replace(' ', '_')}", *_ENVIRONMENT)
    parts = [region, endpoint_url, *(f"{name}={os.environ.get(name, '')}" for name in variables)]
    config_file = os.path.expanduser(os.environ.get("AWS_CONFIG_FILE") or "~/.aws/config")
    try:
        stat = os.stat(config_file)
    except OSError:
        parts.append("config=none")
    else:
        parts.append(f"config={stat.st_mtime_ns}:{stat.st_size}")
    return "\n".join(parts)


# --- remembering what botocore resolved --------------------------------------------------

MEMORY_LIMIT: Final = 64  # identities kept; a rewrite keeps the newest


def cache_home() -> Path:
    """``$XDG_CACHE_HOME/ecsexec`` (else ``~/.cache/ecsexec``): ecsexec's cache directory."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ecsexec"


def write_cache_file(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` at once, readable by its owner only (0600, in a 0700
    directory made if missing): a reader sees the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "w") as handle:  # mkstemp made it 0600
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _memory_file() -> Path:
    return cache_home() / "endpoints.json"


def _identity_key(identity: str) -> str:
    return hashlib.sha256(identity.encode()).hexdigest()[:32]


def _load_memory() -> dict[str, str]:
    try:
        data = json.loads(_memory_file().read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(key): value for key, value in data.items() if isinstance(value, str)}


def recall_endpoint(identity: str) -> str | None:
    """The endpoint URL botocore resolved for ``identity`` (:func:`endpoint_identity`) in
    an earlier process, or None. Building a client to learn it again costs ~50 ms of CPU,
    which is most of what a run served from the node cache spends before its first call."""
    return _load_memory().get(_identity_key(identity))


def remember_endpoint(identity: str, url: str) -> None:
    """Record that botocore resolved ``url`` for ``identity``. A cache: a file that cannot
    be written is left alone (the next run builds a client again)."""
    key = _identity_key(identity)
    memory = _load_memory()
    if memory.get(key) == url:
        return
    memory.pop(key, None)
    memory[key] = url
    kept = dict(list(memory.items())[-MEMORY_LIMIT:])
    with contextlib.suppress(OSError):
        write_cache_file(_memory_file(), json.dumps(kept))
