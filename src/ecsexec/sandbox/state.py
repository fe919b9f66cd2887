"""The state directory: lock, ``sandbox.json``, control token, AWS config files, ``env`` output.

docs/sandbox.md §1 and §9.4.

Files holding keys or tokens are written 0600 and the directory is 0700. ``sandbox env``
prints only paths and URLs, never a secret.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shlex
from pathlib import Path
from typing import Any

from ecsexec.errors import ConfigurationError
from ecsexec.sandbox.credentials import Credential

PROFILE = "ecsexec-sandbox"
ENV_FORMATS = ("sh", "fish", "json", "dotenv")
# docs/sandbox.md §9.4: variables that would otherwise win over the sandbox profile.
UNSET = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
)
SERVICES = ("ECS", "SSM", "KMS", "STS")


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/ecsexec/sandbox``, else ``~/.local/state/ecsexec/sandbox`` (§1)."""
    base = os.environ.get("XDG_STATE_HOME")
    root = Path(base) if base else Path.home() / ".local" / "state"
    return root / "ecsexec" / "sandbox"


def write_private(path: Path, text: str) -> None:
    """Atomically write ``text`` with mode 0600."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


class StateDir:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path).expanduser().absolute()
        self._lock_fd: int | None = None

    @property
    def info_file(self) -> Path:
        return self.path / "sandbox.json"

    @property
    def token_file(self) -> Path:
        return self.path / "control-token"

    @property
    def config_file(self) -> Path:
        return self.path / "aws-config"

    @property
    def credentials_file(self) -> Path:
        return self.path / "aws-credentials"

    @property
    def container_token_file(self) -> Path:
        return self.path / "container-credentials-token"

    @property
    def log_file(self) -> Path:
        return self.path / "sandbox.log"

    @property
    def ca_file(self) -> Path:
        return self.path / "ca.pem"

    @property
    def containers(self) -> Path:
        return self.path / "containers"

    @property
    def lock_file(self) -> Path:
        return self.path / "lock"

    def create(self) -> None:
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.path, 0o700)

    def lock(self) -> None:
        """Hold an exclusive flock for this process's lifetime; fail clearly if taken (§1)."""
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            info = self.read_info() or {}
            pid = f" (pid {info['pid']})" if "pid" in info else ""
            raise ConfigurationError(
                f"a sandbox is already running with state dir {self.path}{pid}; "
                "stop it with `ecsexec sandbox down` or choose another --state-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def locked_by_other(self) -> bool:
        """True while some process holds the lock (a sandbox runs on this dir)."""
        if not self.lock_file.exists():
            return False
        fd = os.open(self.lock_file, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def new_control_token(self) -> str:
        token = secrets.token_urlsafe(32)
        write_private(self.token_file, token + "\n")
        return token

    def read_token(self) -> str:
        try:
            return self.token_file.read_text().strip()
        except OSError:
            raise ConfigurationError(
                f"no control token in {self.path}: is a sandbox running?"
            ) from None

    def write_info(self, info: dict[str, Any]) -> None:
        write_private(self.info_file, json.dumps(info, indent=2) + "\n")

    def read_info(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.info_file.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def remove_info(self) -> None:
        self.info_file.unlink(missing_ok=True)

    def write_aws_files(
        self,
        *,
        region: str,
        endpoint_url: str,
        ca_bundle: Path | None,
        credential: Credential | None,
    ) -> None:
        """``aws-config`` with the profile; ``aws-credentials`` (0600) with the keys, if any.

        In container and imds modes there is no credential here, so botocore's chain
        reaches those providers (§9.4).
        """
        lines = [f"[profile {PROFILE}]", f"region = {region}", f"endpoint_url = {endpoint_url}"]
        if ca_bundle is not None:
            lines.append(f"ca_bundle = {ca_bundle}")
        write_private(self.config_file, "\n".join(lines) + "\n")
        creds = [f"[{PROFILE}]"]
        if credential is not None:
            creds += [
                f"aws_access_key_id = {credential.access_key}",
                f"aws_secret_access_key = {credential.secret_key}",
            ]
        write_private(self.credentials_file, "\n".join(creds) + "\n")


def env_vars(
    info: dict[str, Any], *, per_service: bool = False
) -> tuple[dict[str, str], list[str]]:
    """(variables to set, variables to unset) for a running sandbox's ``sandbox.json`` (§9.4)."""
    state = Path(info["state_dir"])
    out: dict[str, str] = {
        "AWS_CONFIG_FILE": str(state / "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(state / "aws-credentials"),
        "AWS_PROFILE": PROFILE,
    }
    endpoint = info["endpoint_url"]
    if per_service:
        for svc in SERVICES:
            out[f"AWS_ENDPOINT_URL_{svc}"] = endpoint
    else:
        out["AWS_ENDPOINT_URL"] = endpoint
    regions = info.get("regions") or ["us-east-1"]
    out["AWS_DEFAULT_REGION"] = regions[0]
    if info.get("tls"):
        out["AWS_CA_BUNDLE"] = str(state / "ca.pem")
    unset = list(UNSET)
    mode = info.get("credentials", "keys")
    if mode == "container":
        out["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = info["container_credentials_uri"]
        out["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"] = str(state / "container-credentials-token")
        unset.remove("AWS_CONTAINER_CREDENTIALS_FULL_URI")
        unset.append("AWS_CONTAINER_AUTHORIZATION_TOKEN")
    elif mode in ("imds", "instance"):
        out["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = info["metadata_url"] + "/"
        unset.append("AWS_EC2_METADATA_DISABLED")
    return out, unset


def render_env(values: dict[str, str], unset: list[str], fmt: str) -> str:
    if fmt == "sh":
        lines = [f"export {k}={shlex.quote(v)}" for k, v in values.items()]
        lines.append("unset " + " ".join(unset))
        return "\n".join(lines) + "\n"
    if fmt == "fish":
        lines = [f"set -gx {k} {shlex.quote(v)};" for k, v in values.items()]
        lines += [f"set -e {k};" for k in unset]
        return "\n".join(lines) + "\n"
    if fmt == "json":
        return json.dumps({"set": values, "unset": unset}, indent=2) + "\n"
    if fmt == "dotenv":
        return "".join(f"{k}={json.dumps(v)}\n" for k, v in values.items())
    raise ConfigurationError(f"unknown env format {fmt!r} (use one of {', '.join(ENV_FORMATS)})")
