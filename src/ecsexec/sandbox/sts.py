"""The sandbox STS: AssumeRole, AssumeRoleWithWebIdentity, GetCallerIdentity (docs/sandbox.md §9.2).

Requests arrive as form fields; responses are the XML botocore's query parser expects.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any
from xml.sax.saxutils import escape

from ecsexec.sandbox.credentials import Credential
from ecsexec.sandbox.model import ApiError
from ecsexec.sandbox.runtime import Call, Handler, Runtime

XMLNS = "https://sts.amazonaws.com/doc/2011-06-15/"
VERSION = "2011-06-15"
# Operations botocore sends unsigned (the model marks them smithy.api#noAuth).
UNSIGNED = frozenset({"AssumeRoleWithWebIdentity"})


def parse_form(fields: dict[str, str], shape: Any) -> dict[str, Any]:
    """Top-level scalar members of a query request, typed per the input shape.

    Nested members (``Tags.member.1.Key``...) are not used by any caller of the sandbox and
    are ignored.
    """
    out: dict[str, Any] = {}
    for name, member in shape.members.items():
        if name not in fields:
            continue
        raw = fields[name]
        kind = member.type_name
        if kind in ("integer", "long"):
            try:
                out[name] = int(raw)
            except ValueError:
                out[name] = raw  # the validator reports the wrong type
        elif kind == "boolean":
            out[name] = raw == "true"
        elif kind in ("string", "timestamp", "blob"):
            out[name] = raw
    return out


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _xml_value(value: Any, shape: Any) -> str:
    kind = shape.type_name
    if kind == "structure":
        return "".join(f"<{k}>{_xml_value(v, shape.members[k])}</{k}>" for k, v in value.items())
    if kind == "list":
        return "".join(f"<member>{_xml_value(v, shape.member)}</member>" for v in value)
    if kind == "timestamp":
        return _iso(float(value))
    if kind == "boolean":
        return "true" if value else "false"
    return escape(str(value))


def render(action: str, result: dict[str, Any], shape: Any, request_id: str) -> str:
    return (
        f'<{action}Response xmlns="{XMLNS}"><{action}Result>{_xml_value(result, shape)}'
        f"</{action}Result><ResponseMetadata><RequestId>{request_id}</RequestId>"
        f"</ResponseMetadata></{action}Response>"
    )


def render_error(code: str, message: str, request_id: str) -> str:
    kind = "Receiver" if code in ("InternalFailure", "ServiceUnavailable") else "Sender"
    return (
        f'<ErrorResponse xmlns="{XMLNS}"><Error><Type>{kind}</Type><Code>{escape(code)}</Code>'
        f"<Message>{escape(message)}</Message></Error><RequestId>{request_id}</RequestId>"
        "</ErrorResponse>"
    )


def _denied(principal: str, action: str, resource: str) -> ApiError:
    return ApiError(
        "AccessDenied",
        f"User: {principal} is not authorized to perform: {action} on resource: {resource}",
        403,
    )


class StsApi:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.handlers: dict[str, Handler] = {
            "AssumeRole": self.assume_role,
            "AssumeRoleWithWebIdentity": self.assume_role_with_web_identity,
            "GetCallerIdentity": self.get_caller_identity,
        }

    def _role(self, call: Call, role_arn: str) -> str:
        prefix = "arn:aws:iam::"
        parts = role_arn.split(":", 5)
        if not role_arn.startswith(prefix) or len(parts) != 6 or not parts[5].startswith("role/"):
            raise ApiError("ValidationError", f"{role_arn} is invalid", 400)
        role = parts[5].rsplit("/", 1)[-1]
        # §9.2: only roles listed under topology iam.roles can be assumed.
        if parts[4] != self.rt.world.account or role not in self.rt.world.iam_roles:
            raise _denied(call.principal, f"sts:{call.action}", role_arn)
        try:
            self.rt.authorize(call, role_arn)
        except ApiError:
            raise _denied(call.principal, f"sts:{call.action}", role_arn) from None
        return role

    def _issue(self, role: str, session: str, duration: int | None) -> Credential:
        if duration is not None and not 900 <= duration <= 43200:
            raise ApiError(
                "ValidationError",
                f"1 validation error detected: Value '{duration}' at 'durationSeconds' failed "
                "to satisfy constraint: Member must have value between 900 and 43200",
            )
        # The configured TTL caps the lifetime, so tests can exercise credential refresh.
        ttl = min(float(duration or 3600), self.rt.config.credential_ttl)
        return self.rt.creds.issue_role(role, session, ttl)

    @staticmethod
    def _result(cred: Credential) -> dict[str, Any]:
        return {
            "Credentials": {
                "AccessKeyId": cred.access_key,
                "SecretAccessKey": cred.secret_key,
                "SessionToken": cred.token,
                "Expiration": cred.expires_at,
            },
            "AssumedRoleUser": {"AssumedRoleId": cred.user_id, "Arn": cred.principal},
        }

    async def assume_role(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        role = self._role(call, p["RoleArn"])
        cred = self._issue(role, p["RoleSessionName"], p.get("DurationSeconds"))
        return self._result(cred)

    async def assume_role_with_web_identity(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        role = self._role(call, p["RoleArn"])
        cred = self._issue(role, p["RoleSessionName"], p.get("DurationSeconds"))
        result = self._result(cred)
        result.update(
            SubjectFromWebIdentityToken=_jwt_subject(p["WebIdentityToken"]),
            Provider=p.get("ProviderId") or "sandbox",
            Audience="sts.amazonaws.com",
        )
        return result

    async def get_caller_identity(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        return {
            "UserId": call.credential.user_id,
            "Account": self.rt.world.account,
            "Arn": call.principal,
        }


def _jwt_subject(token: str) -> str:
    """The ``sub`` claim of a JWT-shaped token, unverified; anything else is "sandbox"."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return str(claims.get("sub") or "sandbox")
    except (IndexError, ValueError, AttributeError):
        return "sandbox"
