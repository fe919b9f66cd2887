"""The metadata listener: ECS container credentials and IMDSv2 on plain HTTP (docs/sandbox.md §9.3).

Both endpoints hand out role credentials from the sandbox's own CredentialStore; they
work only against the sandbox.
"""

from __future__ import annotations

import hmac
import json
import secrets
import time
import uuid
from dataclasses import dataclass, field

from aiohttp import web

from ecsexec.sandbox.credentials import Credential
from ecsexec.sandbox.runtime import Runtime

# The role behind container and instance credentials.
SANDBOX_ROLE = "ecsexec-sandbox"
INSTANCE_ID = "i-0ec5e7ec5e7ec5e70"
MAX_IMDS_TTL = 21600


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


@dataclass
class MetadataService:
    rt: Runtime
    mode: str
    imds_v1: bool = False
    path_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    auth_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    _current: Credential | None = None
    _imds_tokens: dict[str, float] = field(default_factory=dict)

    @property
    def container_path(self) -> str:
        return f"/v2/credentials/{self.path_id}"

    def _credential(self, session: str) -> Credential:
        # Reuse while comfortably valid, so botocore's refresh logic sees stable keys.
        now = time.time()
        ttl = self.rt.config.credential_ttl
        cur = self._current
        if cur is None or cur.expires_at is None or cur.expires_at - now < min(ttl / 2, 300):
            cur = self._current = self.rt.creds.issue_role(SANDBOX_ROLE, session, ttl)
        return cur

    def app(self) -> web.Application:
        app = web.Application()
        if self.mode == "container":
            app.router.add_get("/v2/credentials/{id}", self.container_credentials)
        else:
            app.router.add_put("/latest/api/token", self.imds_token)
            app.router.add_get("/latest/meta-data/{path:.*}", self.imds_get)
        return app

    async def container_credentials(self, request: web.Request) -> web.Response:
        if request.match_info["id"] != self.path_id:
            return web.Response(status=404, text="Not Found")
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), self.auth_token.encode()):
            return web.json_response({"message": "Unauthorized"}, status=401)
        cred = self._credential("ecs-task")
        body = {
            "RoleArn": cred.role_arn,
            "AccessKeyId": cred.access_key,
            "SecretAccessKey": cred.secret_key,
            "Token": cred.token,
            "Expiration": _iso(cred.expires_at or time.time()),
        }
        return web.Response(text=json.dumps(body), content_type="application/json")

    async def imds_token(self, request: web.Request) -> web.Response:
        raw = request.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "")
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_IMDS_TTL:
            return web.Response(status=400, text="Bad Request")
        token = secrets.token_urlsafe(32)
        now = time.time()
        self._imds_tokens = {t: exp for t, exp in self._imds_tokens.items() if exp > now}
        self._imds_tokens[token] = now + int(raw)
        return web.Response(text=token, headers={"X-aws-ec2-metadata-token-ttl-seconds": raw})

    def _token_ok(self, request: web.Request) -> bool:
        token = request.headers.get("X-aws-ec2-metadata-token")
        if token is None:
            return self.imds_v1
        exp = self._imds_tokens.get(token)
        return exp is not None and exp > time.time()

    async def imds_get(self, request: web.Request) -> web.Response:
        if not self._token_ok(request):
            # HttpTokens=required: a GET without a valid token is 401.
            return web.Response(status=401, text="Unauthorized")
        path = request.match_info["path"]
        region = self.rt.regions[0] if self.rt.regions else "us-east-1"
        if path in ("iam/security-credentials", "iam/security-credentials/"):
            return web.Response(text=SANDBOX_ROLE)
        if path == f"iam/security-credentials/{SANDBOX_ROLE}":
            cred = self._credential(INSTANCE_ID)
            body = {
                "Code": "Success",
                "LastUpdated": _iso(time.time()),
                "Type": "AWS-HMAC",
                "AccessKeyId": cred.access_key,
                "SecretAccessKey": cred.secret_key,
                "Token": cred.token,
                "Expiration": _iso(cred.expires_at or time.time()),
            }
            return web.Response(text=json.dumps(body))
        if path == "placement/region":
            return web.Response(text=region)
        if path == "placement/availability-zone":
            return web.Response(text=f"{region}a")
        if path == "instance-id":
            return web.Response(text=INSTANCE_ID)
        return web.Response(status=404, text="Not Found")
