"""Build one :class:`Connector` per region from a boto3 session factory, and reuse it."""

from __future__ import annotations

import functools
import threading

from ecsexec.aws.clients import SessionFactory, ssl_context
from ecsexec.aws.ecs import EcsApi
from ecsexec.aws.exec_async import preload
from ecsexec.aws.ssm import KmsDataKeyProvider, SsmSessionControl
from ecsexec.exec.runner import Connector, ContainerTarget
from ecsexec.ssm.session import SessionOptions


class ConnectorPool:
    """Connectors keyed by region; ``pool(target)`` picks the target's region.

    ExecuteCommand keeps HTTP connections open on the event loop that used it: close the
    pool on that loop (``async with ConnectorPool(...)`` or :meth:`aclose`). Nothing
    closes them otherwise; an unclosed pool is reported as a ResourceWarning.
    """

    def __init__(
        self,
        session_factory: SessionFactory,
        *,
        default_region: str,
        options: SessionOptions | None = None,
    ) -> None:
        self._factory = session_factory
        self._default_region = default_region
        self._options = options or SessionOptions()
        self._connectors: dict[str, Connector] = {}
        self._lock = threading.Lock()

    def for_region(self, region: str) -> Connector:
        with self._lock:
            connector = self._connectors.get(region)
            if connector is None:
                session = self._factory(region)
                connector = Connector(
                    ecs=EcsApi(session, region=region),
                    control=SsmSessionControl(session),
                    data_key_provider=KmsDataKeyProvider(session),
                    session_options=self._options,
                    tls_context=functools.partial(ssl_context, session),
                )
                self._connectors[region] = connector
            return connector

    def prepare(self, region: str) -> None:
        """Build ``region``'s connector and its ExecuteCommand client now (blocking: for a
        worker thread), with the HTTP library importing beside it in a thread of its own."""
        preload()
        self.for_region(region).ecs.prepare_exec()

    def __call__(self, target: ContainerTarget) -> Connector:
        return self.for_region(target.region or self._default_region)

    async def aclose(self) -> None:
        """Close every connector's HTTP connections (ExecuteCommand's connection pool)."""
        with self._lock:
            connectors, self._connectors = list(self._connectors.values()), {}
        for connector in connectors:
            await connector.ecs.aclose()

    async def __aenter__(self) -> ConnectorPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
