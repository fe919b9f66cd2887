"""ECS API calls: paged discovery, batched describes, ExecuteCommand, and their errors.

Everything here is blocking boto3, which callers in asyncio code run in a worker thread,
except :meth:`EcsApi.execute_command_async` (see :mod:`ecsexec.aws.execute_command`).
Errors leave as :class:`ecsexec.errors.AwsError` with an actionable hint.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, InvalidRegionError
from botocore.utils import parse_timestamp

from ecsexec.aws.clients import CONNECT_TIMEOUT, fail_fast, ssl_context
from ecsexec.aws.endpoints import recall_endpoint, remember_endpoint
from ecsexec.aws.errors import translate
from ecsexec.aws.execute_command import SignedExecuteCommand
from ecsexec.aws.execute_command import requested as http_library_requested
from ecsexec.errors import AwsError, ConfigurationError, EcsexecError

DESCRIBE_BATCH: Final = 100  # DescribeTasks takes at most 100 tasks
EXEC_NOT_ENABLED: Final = "execute command was not enabled"

TNC_CHECKLIST: Final = (
    "the container's SSM agent could not be reached. Check:\n"
    "  1. the ExecuteCommandAgent status of the container is RUNNING "
    "(node attribute ECS:Exec-Agent-Status: {agent_status});\n"
    "  2. the task role allows ssmmessages:CreateControlChannel, CreateDataChannel, "
    "OpenControlChannel and OpenDataChannel;\n"
    "  3. tasks in private subnets can reach ssmmessages (a VPC endpoint or NAT), and KMS "
    "if the cluster encrypts sessions;\n"
    "  4. the container does not use a read-only root filesystem (unsupported by ECS Exec)."
)


@dataclass(frozen=True)
class ExecSession:
    """What ExecuteCommand returned, plus the SSM target the agent identifies as."""

    session_id: str
    stream_url: str
    token_value: str
    cluster_arn: str
    task_arn: str
    container_name: str
    target: str

    def __repr__(self) -> str:  # keep the token out of logs and tracebacks
        return f"ExecSession(session_id={self.session_id!r}, target={self.target!r})"


def _utc_timestamp(value: Any) -> datetime:
    """Epoch numbers (what the ECS JSON API sends) as UTC datetimes, fast.

    botocore's default gives the same instant in the local zone through dateutil's tzlocal,
    which cProfile showed to be a third of DescribeTasks' parse time (7 stamps per task).
    """
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    result: datetime = parse_timestamp(value)
    return result


def use_fast_timestamps(session: boto3.session.Session) -> None:
    """Make the session's clients parse timestamps with :func:`_utc_timestamp`."""
    factory = session._session.get_component("response_parser_factory")
    factory.set_parser_defaults(timestamp_parser=_utc_timestamp)


def last_segment(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


def ssm_target(cluster_arn: str, task_arn: str, runtime_id: str) -> str:
    """docs/ssm-protocol.md §13: ``ecs:<clusterName>_<taskId>_<containerRuntimeId>``."""
    return f"ecs:{last_segment(cluster_arn)}_{last_segment(task_arn)}_{runtime_id}"


class EcsApi:
    """One region's ECS client with discovery helpers and ExecuteCommand."""

    def __init__(
        self,
        session: boto3.session.Session,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        discovery_config: Config | None = None,
    ) -> None:
        # The client is built on first use: it costs ~50 ms of CPU (service model, endpoint
        # rules), and a run served from the node cache never needs it (ExecuteCommand is
        # signed and sent by SignedExecuteCommand, to the endpoint remembered for this session).
        self._session = session
        self._region = region
        self._endpoint_url = endpoint_url
        self._discovery_config = discovery_config
        self._client: Any = None
        self._lock = threading.Lock()  # discovery calls come from worker threads
        self._exec: SignedExecuteCommand | None = None

    @property
    def region(self) -> str:
        return str(self._region or self._session.region_name or "")

    @property
    def client(self) -> Any:
        """The ECS client for discovery: adaptive retries (docs/ecs-nodes.md §4)."""
        with self._lock:
            if self._client is None:
                self._client = fail_fast(
                    self._new_client(
                        self._discovery_config
                        or Config(
                            connect_timeout=CONNECT_TIMEOUT,
                            retries={"mode": "adaptive", "max_attempts": 10},
                        )
                    )
                )
            return self._client

    def prepare_exec(self) -> None:
        """Get what ExecuteCommand needs (the endpoint, the credentials, for https the TLS
        context) now, e.g. in a worker thread while the caller selects nodes. The HTTP
        library a fan-out uses is imported only once a run is known to need it
        (``ConnectorPool.expect``)."""
        self._signed().prepare()

    def _signed(self) -> SignedExecuteCommand:
        """ExecuteCommand's sender, which never retries on its own: ExecuteCommand starts
        the command on the agent at once (docs/ssm-protocol.md §1), so only the dispatcher
        retries, and only when the call certainly started nothing (throttling)."""
        with self._lock:
            exec_sender = self._exec
        if exec_sender is None:
            endpoint = self._exec_endpoint()
            with self._lock:
                if self._exec is None:
                    self._exec = SignedExecuteCommand(
                        self._session, endpoint, self.region, lambda: ssl_context(self._session)
                    )
                exec_sender = self._exec
        return exec_sender

    def _exec_endpoint(self) -> str:
        """The URL a client of this session would call: the explicit one, else the one
        remembered for the session's endpoint identity, else a built client's (which is
        then remembered). Sessions that cannot name their identity (a caller's own, e.g.
        from :func:`~ecsexec.aws.clients.session_from_env`) always build the client."""
        if self._endpoint_url:
            return self._endpoint_url
        identity = self._endpoint_identity()
        remembered = recall_endpoint(identity) if identity else None
        return remembered or str(self.client.meta.endpoint_url)

    def _endpoint_identity(self) -> str:
        describe = getattr(self._session, "endpoint_identity", None)
        return str(describe("ECS")) if describe is not None and self.region else ""

    def _new_client(self, config: Config) -> Any:
        use_fast_timestamps(self._session)
        try:
            client = self._session.client(
                "ecs", region_name=self._region, endpoint_url=self._endpoint_url, config=config
            )
        except InvalidRegionError as exc:
            raise ConfigurationError(
                f"{exc.kwargs.get('region_name', self._region)!r} is not an AWS region name "
                "(like us-east-1); check --region, [aws] region or AWS_REGION"
            ) from None
        identity = self._endpoint_identity()
        if identity and not self._endpoint_url:
            remember_endpoint(identity, str(client.meta.endpoint_url))
        return client

    def _call(self, operation: str, method: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            result: dict[str, Any] = method(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, operation) from None
        return result

    # --- discovery ---------------------------------------------------------------------

    def _paged(self, operation: str, method: Any, key: str, **kwargs: Any) -> Iterator[str]:
        token = None
        while True:
            page = self._call(
                operation, method, **kwargs, **({"nextToken": token} if token else {})
            )
            yield from page.get(key, [])
            token = page.get("nextToken")
            if not token:
                return

    def list_clusters(self) -> list[str]:
        return list(
            self._paged("ListClusters", self.client.list_clusters, "clusterArns", maxResults=100)
        )

    def list_tasks(self, cluster: str, **filters: str) -> list[str]:
        return list(
            self._paged(
                "ListTasks",
                self.client.list_tasks,
                "taskArns",
                cluster=cluster,
                desiredStatus="RUNNING",
                maxResults=100,
                **filters,
            )
        )

    def describe_tasks(
        self, cluster: str, task_arns: list[str], *, tags: bool = True
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Describe in batches of 100; return (tasks, failures)."""
        tasks: list[dict[str, Any]] = []
        failures: list[dict[str, Any]] = []
        for start in range(0, len(task_arns), DESCRIBE_BATCH):
            page = self._call(
                "DescribeTasks",
                self.client.describe_tasks,
                cluster=cluster,
                tasks=task_arns[start : start + DESCRIBE_BATCH],
                **({"include": ["TAGS"]} if tags else {}),
            )
            tasks.extend(page.get("tasks", []))
            failures.extend(page.get("failures", []))
        return tasks, failures

    def describe_task_definition(self, arn: str) -> dict[str, Any]:
        page = self._call(
            "DescribeTaskDefinition", self.client.describe_task_definition, taskDefinition=arn
        )
        result: dict[str, Any] = page.get("taskDefinition", {})
        return result

    def describe_services(
        self, cluster: str, names: list[str]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        services: list[dict[str, Any]] = []
        failures: list[dict[str, Any]] = []
        for start in range(0, len(names), 10):
            page = self._call(
                "DescribeServices",
                self.client.describe_services,
                cluster=cluster,
                services=names[start : start + 10],
                include=["TAGS"],
            )
            services.extend(page.get("services", []))
            failures.extend(page.get("failures", []))
        return services, failures

    def describe_cluster_kms_key(self, cluster: str) -> str:
        """The cluster's executeCommandConfiguration.kmsKeyId, or ''."""
        page = self._call(
            "DescribeClusters",
            self.client.describe_clusters,
            clusters=[cluster],
            include=["CONFIGURATIONS"],
        )
        for item in page.get("clusters", []):
            config = item.get("configuration", {}).get("executeCommandConfiguration", {})
            return str(config.get("kmsKeyId") or "")
        return ""

    # --- ExecuteCommand ----------------------------------------------------------------

    def execute_command(
        self,
        *,
        cluster: str,
        task: str,
        container: str,
        command: str,
        runtime_id: str = "",
        agent_status: str = "",
        exec_enabled: str = "",
    ) -> ExecSession:
        """Start ``command`` in the container and return the session to attach to at once.

        ``runtime_id`` (from discovery) saves the DescribeTasks call that the target
        needs (docs/ssm-protocol.md §13); without it we make that call.
        """
        try:
            response = self._signed().call(
                cluster=cluster, task=task, container=container, command=command, interactive=True
            )
        except EcsexecError as exc:
            raise explain_execute_command_error(
                exc, agent_status=agent_status, exec_enabled=exec_enabled
            ) from None
        ids = _response_ids(response, cluster, task, container)
        if not runtime_id:
            runtime_id = self._runtime_id(*ids)
        return _exec_session(response, ids, runtime_id)

    async def aclose(self) -> None:
        """Close the connections ExecuteCommand keeps open on the running event loop."""
        if self._exec is not None:
            await self._exec.aclose()

    async def execute_command_async(
        self,
        *,
        cluster: str,
        task: str,
        container: str,
        command: str,
        runtime_id: str = "",
        agent_status: str = "",
        exec_enabled: str = "",
    ) -> ExecSession:
        """:meth:`execute_command` on the running event loop, without a worker thread.

        Until the HTTP library has been asked for (:func:`~ecsexec.aws.execute_command.preload`,
        which a run of more than a few nodes does), the same signed request is sent with
        urllib in a worker thread instead: the same errors, and no aiohttp import (~0.1 s
        of CPU) before a small run's first ExecuteCommand.
        """
        if not http_library_requested():
            return await asyncio.to_thread(
                functools.partial(
                    self.execute_command,
                    cluster=cluster,
                    task=task,
                    container=container,
                    command=command,
                    runtime_id=runtime_id,
                    agent_status=agent_status,
                    exec_enabled=exec_enabled,
                )
            )
        signed = self._exec
        if signed is None:  # learning the endpoint may build a client: not on the loop
            signed = await asyncio.to_thread(self._signed)
        try:
            response = await signed.acall(
                cluster=cluster, task=task, container=container, command=command, interactive=True
            )
        except EcsexecError as exc:
            raise explain_execute_command_error(
                exc, agent_status=agent_status, exec_enabled=exec_enabled
            ) from None
        ids = _response_ids(response, cluster, task, container)
        if not runtime_id:
            runtime_id = await asyncio.to_thread(self._runtime_id, *ids)
        return _exec_session(response, ids, runtime_id)

    def _runtime_id(self, cluster_arn: str, task_arn: str, container: str) -> str:
        tasks, _ = self.describe_tasks(last_segment(cluster_arn), [task_arn], tags=False)
        for task in tasks:
            for item in task.get("containers", []):
                if item.get("name") == container:
                    return str(item.get("runtimeId") or "")
        return ""


def _response_ids(
    response: dict[str, Any], cluster: str, task: str, container: str
) -> tuple[str, str, str]:
    """Cluster ARN, task ARN and container name as ExecuteCommand echoed them."""
    return (
        str(response.get("clusterArn") or cluster),
        str(response.get("taskArn") or task),
        str(response.get("containerName") or container),
    )


def _exec_session(
    response: dict[str, Any], ids: tuple[str, str, str], runtime_id: str
) -> ExecSession:
    session = response["session"]
    cluster_arn, task_arn, name = ids
    return ExecSession(
        session_id=str(session["sessionId"]),
        stream_url=str(session["streamUrl"]),
        token_value=str(session["tokenValue"]),
        cluster_arn=cluster_arn,
        task_arn=task_arn,
        container_name=name,
        target=ssm_target(cluster_arn, task_arn, runtime_id),
    )


def explain_execute_command_error(
    error: EcsexecError, *, agent_status: str = "", exec_enabled: str = ""
) -> EcsexecError:
    """Turn ExecuteCommand failures into the actionable messages users need (issue 5).

    ``agent_status`` and ``exec_enabled`` come from the node's attributes and tell which
    of AWS's two merged causes applies.
    """
    if not isinstance(error, AwsError):
        return error
    if error.code == "InvalidParameterException" and EXEC_NOT_ENABLED in error.message:
        if exec_enabled == "true" and agent_status and agent_status != "RUNNING":
            hint = (
                f"exec is enabled but the container's ExecuteCommandAgent is {agent_status}: "
                "wait for it to start, or replace the task (a new task starts a new agent)"
            )
        else:
            hint = (
                "exec was not enabled when the task started: the task must be restarted with "
                "--enable-execute-command (for a service: aws ecs update-service "
                "--enable-execute-command --force-new-deployment)"
            )
        return AwsError(error.message, code=error.code, operation="ExecuteCommand", hint=hint)
    if error.code == "TargetNotConnectedException":
        return AwsError(
            error.message,
            code=error.code,
            operation="ExecuteCommand",
            hint=TNC_CHECKLIST.format(agent_status=agent_status or "unknown"),
        )
    return error
