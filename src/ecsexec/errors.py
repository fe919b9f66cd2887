"""Every exception ecsexec raises, in one tree.

::

    EcsexecError
    ├── ConfigurationError          bad input from the user: flags, files, filters
    │   ├── FilterSyntaxError       node filter, with the column
    │   ├── TopologyError           sandbox topology, with file:line:col
    │   ├── JobFileError            job file, with file:line
    │   ├── CredentialsError        a credential provider failed (never carries a secret)
    │   └── KeyStoreError           key storage: missing key, wrong passphrase, refused read
    ├── AwsError                    an AWS API call failed: code, operation, hint
    ├── DiscoveryError              node discovery failed as a whole (names region, action)
    ├── ProtocolError               the data channel received something it cannot accept
    │   └── FrameError              a frame that fails §3 validation
    ├── SessionError                a data-channel session could not run to its end
    │   ├── TransportError          websocket or OS error, translated at the driver boundary
    │   ├── HandshakeError          the agent's handshake could not complete
    │   │   └── KmsError            kms:GenerateDataKey failed (names key and context)
    │   ├── SessionTimeoutError     the caller's deadline passed (session was terminated)
    │   └── OutputTruncatedError    the channel closed with output missing (§11)
    └── CommandFailedError          a command ran but did not succeed (carries the result)

Errors that end an operation carry whatever partial result exists, so a caller
never loses output it already received.
"""

from __future__ import annotations


class EcsexecError(Exception):
    """Base class of every ecsexec error."""


class ConfigurationError(EcsexecError):
    """The user's input (flags, files, environment) is invalid."""


class FilterSyntaxError(ConfigurationError):
    """A node filter could not be parsed; ``column`` is 1-based."""

    def __init__(self, message: str, *, filter_text: str = "", column: int = 0) -> None:
        self.filter_text = filter_text
        self.column = column
        where = f" (column {column})" if column else ""
        super().__init__(f"{message}{where}")


class TopologyError(ConfigurationError):
    """A sandbox topology file is invalid; the message starts with file:line:col."""


class JobFileError(ConfigurationError):
    """A job file is invalid; every line of the message starts with file:line."""


class CredentialsError(ConfigurationError):
    """A credential provider failed. The message names the provider, never a secret."""


class KeyStoreError(ConfigurationError):
    """Key storage failed: no such key, wrong passphrase, a refused read. Never holds a value."""


class AwsError(EcsexecError):
    """An AWS API call failed.

    ``code`` is the AWS error code (``ThrottlingException``...), ``operation`` the API
    action, and ``hint`` tells the user what to do about it.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str = "",
        operation: str = "",
        hint: str = "",
        retryable: bool = False,
    ) -> None:
        self.message = message
        self.code = code
        self.operation = operation
        self.hint = hint
        self.retryable = retryable
        text = message
        if code and code not in message:
            text = f"{code}: {text}"
        if operation:
            text = f"{operation} failed: {text}"
        if hint:
            text = f"{text}\nhint: {hint}"
        super().__init__(text)


class DiscoveryError(EcsexecError):
    """Node discovery failed for a whole source (every cluster failed, or an action is denied)."""


class ProtocolError(EcsexecError):
    """The data channel received something the protocol does not allow."""


class FrameError(ProtocolError):
    """A frame failed validation (ssm/README.md §3) and must be dropped without an ack."""


class SessionError(EcsexecError):
    """A data-channel session could not run to its normal end.

    ``output`` holds every byte of remote output delivered before the failure.
    """

    def __init__(self, message: str, *, session_id: str = "", output: bytes = b"") -> None:
        self.session_id = session_id
        self.output = output
        super().__init__(message)


class TransportError(SessionError):
    """The websocket or the OS failed (connect, TLS, reset, closed without channel_closed)."""


class HandshakeError(SessionError):
    """The agent's handshake could not be completed."""


class KmsError(HandshakeError):
    """kms:GenerateDataKey (or the challenge built on it) failed."""


class SessionTimeoutError(SessionError):
    """The caller's deadline passed; the session was terminated."""


class OutputTruncatedError(SessionError):
    """The channel closed while output was still missing (ssm/README.md §11)."""

    def __init__(
        self, message: str, *, session_id: str = "", output: bytes = b"", missing_seq: int = -1
    ) -> None:
        self.missing_seq = missing_seq
        super().__init__(message, session_id=session_id, output=output)


class CommandFailedError(EcsexecError):
    """A command finished with a non-zero or unknown exit code; ``result`` has everything."""

    def __init__(self, message: str, result: object) -> None:
        self.result = result
        super().__init__(message)
