"""The sandbox SSM API: ResumeSession and TerminateSession as ECS Exec uses them (§5)."""

from __future__ import annotations

from typing import Any

from ecsexec.sandbox.model import ApiError, arn
from ecsexec.sandbox.runtime import Call, Handler, Runtime


class SsmApi:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.handlers: dict[str, Handler] = {
            "ResumeSession": self.resume_session,
            "TerminateSession": self.terminate_session,
        }

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
