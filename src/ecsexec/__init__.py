"""ecsexec: run commands in Amazon ECS containers through ECS Exec, natively.

::

    import asyncio, ecsexec

    async def main():
        async with ecsexec.Client() as client:
            result = await client.run("ECS:Service-Name: web", "echo hi; exit 3")
            for r in result:
                print(r.node, r.status, r.exit_code, r.output)
            print(result.exit_status)

    asyncio.run(main())

The names below are imported on first use, so ``import ecsexec`` (and ``ecsexec --help``)
stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "Client": "ecsexec.app",
    "InteractiveSession": "ecsexec.app",
    "JobPlan": "ecsexec.app",
    "Run": "ecsexec.app",
    "Selection": "ecsexec.app",
    "SourceOverrides": "ecsexec.app",
    "CommandResult": "ecsexec.exec.results",
    "RunResult": "ecsexec.exec.results",
    "Config": "ecsexec.config",
    "load_config": "ecsexec.config",
    "Node": "ecsexec.nodes.node",
    "Status": "ecsexec.errors",
    "EcsexecError": "ecsexec.errors",
    "ConfigurationError": "ecsexec.errors",
    "FilterSyntaxError": "ecsexec.errors",
    "JobFileError": "ecsexec.errors",
    "OptionError": "ecsexec.errors",
    "CredentialsError": "ecsexec.errors",
    "KeyStoreError": "ecsexec.errors",
    "AwsError": "ecsexec.errors",
    "DiscoveryError": "ecsexec.errors",
    "SessionError": "ecsexec.errors",
    "TransportError": "ecsexec.errors",
    "CommandFailedError": "ecsexec.errors",
}

__all__ = [
    "AwsError",
    "Client",
    "CommandFailedError",
    "CommandResult",
    "Config",
    "ConfigurationError",
    "CredentialsError",
    "DiscoveryError",
    "EcsexecError",
    "FilterSyntaxError",
    "InteractiveSession",
    "JobFileError",
    "JobPlan",
    "KeyStoreError",
    "Node",
    "OptionError",
    "Run",
    "RunResult",
    "Selection",
    "SessionError",
    "SourceOverrides",
    "Status",
    "TransportError",
    "__version__",
    "load_config",
]

if TYPE_CHECKING:
    from ecsexec.app import Client, InteractiveSession, JobPlan, Run, Selection, SourceOverrides
    from ecsexec.config import Config, load_config
    from ecsexec.errors import (
        AwsError,
        CommandFailedError,
        ConfigurationError,
        CredentialsError,
        DiscoveryError,
        EcsexecError,
        FilterSyntaxError,
        JobFileError,
        KeyStoreError,
        OptionError,
        SessionError,
        Status,
        TransportError,
    )
    from ecsexec.exec.results import CommandResult, RunResult
    from ecsexec.nodes.node import Node


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ecsexec' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
