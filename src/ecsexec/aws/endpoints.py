"""Name the endpoint an AWS client would call without building one (a cache key's part).

Building a botocore client to read its ``endpoint_url`` costs ~50 ms of CPU (service
model, endpoint rules) and resolves credentials first; the node cache is consulted before
any of that is needed.
"""

from __future__ import annotations

import os
from typing import Final

__all__ = ["endpoint_identity"]

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
