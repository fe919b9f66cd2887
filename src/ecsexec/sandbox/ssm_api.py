"""The sandbox SSM API: ResumeSession and TerminateSession as ECS Exec uses them (§5), and
StartSession for ECS targets, as ``aws ssm start-session --target ecs:...`` uses it."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Final

from ecsexec.sandbox.model import ApiError, Container, arn, invalid
from ecsexec.sandbox.runtime import Call, Handler, Runtime

if TYPE_CHECKING:
    from ecsexec.sandbox.ecs_api import EcsApi

ECS_TARGET: Final = re.compile(r"^ecs:(?P<cluster>[^_]+)_(?P<task>[0-9a-f]+)_(?P<runtime>.+)$")
# The shell an ECS target gets when StartSession names no document (the agent's default).
DEFAULT_SHELL: Final = "/bin/sh"
INTERACTIVE_COMMAND: Final = "AWS-StartInteractiveCommand"


class SsmApi:
    def __init__(self, rt: Runtime, ecs: EcsApi | None = None) -> None:
        self.rt = rt
        self.ecs = ecs
        self.handlers: dict[str, Handler] = {
            "ResumeSession": self.resume_session,
            "TerminateSession": self.terminate_session,
            "StartSession": self.start_session,
        }

    async def start_session(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        """A shell (no document) or ``AWS-StartInteractiveCommand``'s ``command`` in the
        container that ``Target`` (``ecs:<cluster>_<task id>_<runtime id>``) names; the
        same checks and session as ExecuteCommand."""
        target_id = p["Target"]
        container = self._container(call.region, target_id)
        if container is None:
            raise ApiError("TargetNotConnected", f"{target_id} is not connected.")
        self.rt.authorize(call, container.task.arn)
        document = p.get("DocumentName")
        if document is None:
            command = DEFAULT_SHELL
        elif document == INTERACTIVE_COMMAND:
            words = (p.get("Parameters") or {}).get("command") or []
            if len(words) != 1 or not words[0].strip():
                raise invalid(
                    f"{INTERACTIVE_COMMAND} needs exactly one non-empty 'command' parameter."
                )
            command = words[0]
        else:
            raise ApiError(
                "InvalidDocument",
                f"Document {document} is not supported for ECS targets in this sandbox; use "
                f"{INTERACTIVE_COMMAND} or no document (a shell).",
            )
        if "\0" in command:
            raise invalid("The command contains a NUL character, which no command can hold.")
        assert self.ecs is not None, "StartSession needs the ECS API"
        grant = self.ecs.open_session(container.task, container, command)
        return {
            "SessionId": grant.session_id,
            "TokenValue": grant.token_value,
            "StreamUrl": grant.stream_url,
        }

    def _container(self, region: str, target_id: str) -> Container | None:
        found = ECS_TARGET.match(target_id)
        if found is None:
            return None
        cluster = self.rt.world.region(region).clusters.get(found["cluster"])
        task = cluster.tasks.get(found["task"]) if cluster is not None else None
        if task is None:
            return None
        return next((c for c in task.containers if c.target_id == target_id), None)

    def _resource(self, call: Call, sid: str) -> str:
        return arn(call.region, self.rt.world.account, "ssm", f"session/{sid}")

    async def resume_session(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        sid = p["SessionId"]
        self.rt.authorize(call, self._resource(call, sid))
        grant = self.rt.hub.resume(sid) if self.rt.hub is not None else None
        if grant is None:
            # *(model)*: an unknown session.
            raise ApiError("DoesNotExistException", f"Session {sid} does not exist.")
        if not grant.token_value:
            # A session that ended less than an hour ago: no token, which the plugin reads
            # as "timed out" *(model)*.
            return {"SessionId": sid}
        return {"SessionId": sid, "TokenValue": grant.token_value, "StreamUrl": grant.stream_url}

    async def terminate_session(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        sid = p["SessionId"]
        self.rt.authorize(call, self._resource(call, sid))
        # Always succeeds: the model lists no not-found error for TerminateSession.
        if self.rt.hub is not None:
            await self.rt.hub.terminate(sid)
        return {"SessionId": sid}
