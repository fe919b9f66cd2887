"""Where and as whom to call AWS: :class:`AwsSettings`, the value ``[aws]`` and each
``[[sources]]`` entry of ``ecsexec.toml`` resolve to (docs/ecs-nodes.md §3).

It lives in the aws layer because the credential resolver (:mod:`ecsexec.aws.credentials`)
consumes it; :mod:`ecsexec.config` parses and validates the file into it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Final, Literal

__all__ = ["PROVIDERS", "AwsSettings", "CredentialProvider", "mask"]

CredentialProvider = Literal["default", "instance", "container", "keys", "profile"]
PROVIDERS: Final[tuple[CredentialProvider, ...]] = (
    "default",
    "instance",
    "container",
    "keys",
    "profile",
)


def mask(value: str, keep: int = 4) -> str:
    """``****************WXYZ``, as ``aws configure list`` shows an access key."""
    if not value:
        return ""
    if keep <= 0 or len(value) <= keep * 2:
        return "*" * len(value)
    return "*" * (len(value) - keep) + value[-keep:]


@dataclass(frozen=True)
class AwsSettings:
    """Where and as whom to call AWS. Holds no secret: the secret key is a key-storage path."""

    region: str = ""
    credential_provider: CredentialProvider = "default"
    profile: str = ""
    access_key_id: str = ""
    secret_key_path: str = ""
    assume_role_arn: str = ""
    external_id: str = ""
    role_session_name: str = ""
    endpoint_url: str = ""
    ca_bundle: str = ""

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.masked().items() if v)
        return f"AwsSettings({fields})"

    def masked(self) -> dict[str, str]:
        """Every setting as text, identifying values masked (for ``config show``)."""
        out = {f.name: str(getattr(self, f.name)) for f in dataclasses.fields(self)}
        out["access_key_id"] = mask(self.access_key_id)
        out["external_id"] = mask(self.external_id, keep=0) if self.external_id else ""
        return out

    def describe(self) -> str:
        """One line naming the provider (and role), for ``whoami`` and errors."""
        match self.credential_provider:
            case "profile":
                text = f"profile {self.profile!r}"
            case "keys":
                text = f"keys (access key {mask(self.access_key_id)} + {self.secret_key_path})"
            case "instance":
                text = "instance (EC2 instance metadata, IMDSv2)"
            case "container":
                text = "container (ECS container credentials endpoint)"
            case _:
                text = "default (standard chain" + (
                    f", profile {self.profile!r})" if self.profile else ")"
                )
        if self.assume_role_arn:
            text += f" -> assume-role {self.assume_role_arn}"
        return text
