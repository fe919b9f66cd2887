"""Build and parse the JSON payloads of the data channel (docs/ssm-protocol.md §2, §5-§11).

Pure. Builders produce the exact bytes the spec fixes (key order, compact JSON); parsers
are lenient and raise :class:`ProtocolError` only for payloads they cannot use at all,
including JSON nested deeper than :data:`MAX_JSON_DEPTH` (the deepest payload of the
protocol nests 4 levels; Python's parser would otherwise recurse until RecursionError).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any, Final

from ecsexec.errors import ProtocolError

CLIENT_VERSION: Final = "1.2.677.0"  # §2: the agent gates behaviour on this value

ACTION_SUCCESS: Final = 1  # §7 ActionStatus
ACTION_FAILED: Final = 2
ACTION_UNSUPPORTED: Final = 3

SESSION_TYPE_ACTION: Final = "SessionType"
KMS_ACTION: Final = "KMSEncryption"

_COMPACT: Final = (",", ":")

#: How deeply a payload's JSON may nest (objects and arrays); the protocol needs 4.
MAX_JSON_DEPTH: Final = 32

_JSON_STRING: Final = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS: Final = bytes(b for b in range(256) if b not in b"[]{}")
_BRACKET_STEP: Final = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def json_depth(payload: bytes) -> int:
    """How deeply ``payload``'s arrays and objects nest, found without parsing it (C-speed
    passes: strings removed by a linear regex, then a running sum over the brackets)."""
    brackets = _JSON_STRING.sub(b"", payload).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_BRACKET_STEP.__getitem__, brackets)), default=0)


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=_COMPACT).encode()


def _loads_object(payload: bytes, what: str) -> dict[str, Any]:
    opening = payload.count(b"[") + payload.count(b"{")  # more than the depth, and cheap
    if opening > MAX_JSON_DEPTH and json_depth(payload) > MAX_JSON_DEPTH:
        raise ProtocolError(
            f"{what} payload nests JSON deeper than the limit of {MAX_JSON_DEPTH} levels"
        )
    try:
        obj = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ProtocolError(f"{what} payload is not JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise ProtocolError(f"{what} payload is not a JSON object")
    return obj


# --- open frame (§2) -----------------------------------------------------------------


def open_data_channel(
    token: str, *, client_id: str, request_id: str, client_version: str = CLIENT_VERSION
) -> str:
    """The first (TEXT) websocket message, keys in the spec's order."""
    return json.dumps(
        {
            "MessageSchemaVersion": "1.0",
            "RequestId": request_id,
            "TokenValue": token,
            "ClientId": client_id,
            "ClientVersion": client_version,
        },
        separators=_COMPACT,
    )


# --- acknowledge (§6) ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ack:
    message_type: str
    message_id: uuid.UUID
    sequence_number: int


def build_ack(message_type: str, message_id: uuid.UUID | str, sequence_number: int) -> bytes:
    """Ack payload in exactly the key order the agent and Go plugin write.

    ``message_id`` may be given as its canonical text (``Frame.message_id_text``).
    """
    return (
        f'{{"AcknowledgedMessageType":"{message_type}","AcknowledgedMessageId":"{message_id}",'
        f'"AcknowledgedMessageSequenceNumber":{sequence_number},"IsSequentialMessage":true}}'
    ).encode()


def parse_ack(payload: bytes) -> Ack:
    obj = _loads_object(payload, "acknowledge")
    seq = obj.get("AcknowledgedMessageSequenceNumber")
    if not isinstance(seq, int) or isinstance(seq, bool):
        raise ProtocolError("acknowledge payload has no integer AcknowledgedMessageSequenceNumber")
    raw_id = obj.get("AcknowledgedMessageId", "")
    try:
        mid = uuid.UUID(str(raw_id))
    except ValueError:
        mid = uuid.UUID(int=0)
    return Ack(str(obj.get("AcknowledgedMessageType", "")), mid, seq)


# --- size (§5) -------------------------------------------------------------------------


def build_size(cols: int, rows: int) -> bytes:
    return _dumps({"cols": cols, "rows": rows})  # §5: compact, cols first


def parse_size(payload: bytes) -> tuple[int, int]:
    obj = _loads_object(payload, "size")
    cols, rows = obj.get("cols"), obj.get("rows")
    if not isinstance(cols, int) or not isinstance(rows, int):
        raise ProtocolError("size payload needs integer cols and rows")
    return cols, rows


# --- handshake (§7, §8) ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientAction:
    action_type: str
    parameters: dict[str, Any]


@dataclass(frozen=True, slots=True)
class HandshakeRequest:
    agent_version: str
    actions: tuple[ClientAction, ...]

    @property
    def session_type(self) -> str:
        for action in self.actions:
            if action.action_type == SESSION_TYPE_ACTION:
                return str(action.parameters.get("SessionType", ""))
        return ""

    @property
    def kms(self) -> ClientAction | None:
        for action in self.actions:
            if action.action_type == KMS_ACTION:
                return action
        return None


def build_handshake_request(agent_version: str, actions: list[ClientAction]) -> bytes:
    return _dumps(
        {
            "AgentVersion": agent_version,
            "RequestedClientActions": [
                {"ActionType": a.action_type, "ActionParameters": a.parameters} for a in actions
            ],
        }
    )


def parse_handshake_request(payload: bytes) -> HandshakeRequest:
    obj = _loads_object(payload, "HandshakeRequest")
    raw_actions = obj.get("RequestedClientActions") or []
    if not isinstance(raw_actions, list):
        raise ProtocolError("HandshakeRequest RequestedClientActions is not a list")
    actions = []
    for raw in raw_actions:
        if not isinstance(raw, dict):
            raise ProtocolError("HandshakeRequest action is not an object")
        params = raw.get("ActionParameters")
        actions.append(
            ClientAction(str(raw.get("ActionType", "")), params if isinstance(params, dict) else {})
        )
    return HandshakeRequest(str(obj.get("AgentVersion", "")), tuple(actions))


@dataclass(frozen=True, slots=True)
class ProcessedAction:
    action_type: str
    status: int
    result: Any = None
    error: str = ""


def build_handshake_response(
    actions: list[ProcessedAction], *, client_version: str = CLIENT_VERSION
) -> bytes:
    return _dumps(
        {
            "ClientVersion": client_version,
            "ProcessedClientActions": [
                {
                    "ActionType": a.action_type,
                    "ActionStatus": a.status,
                    "ActionResult": a.result,
                    "Error": a.error,
                }
                for a in actions
            ],
            "Errors": None,
        }
    )


@dataclass(frozen=True, slots=True)
class HandshakeResponse:
    client_version: str
    actions: tuple[ProcessedAction, ...]


def parse_handshake_response(payload: bytes) -> HandshakeResponse:
    obj = _loads_object(payload, "HandshakeResponse")
    raw_actions = obj.get("ProcessedClientActions") or []
    if not isinstance(raw_actions, list):
        raise ProtocolError("HandshakeResponse ProcessedClientActions is not a list")
    actions = []
    for raw in raw_actions:
        if not isinstance(raw, dict):
            raise ProtocolError("HandshakeResponse action is not an object")
        status = raw.get("ActionStatus")
        actions.append(
            ProcessedAction(
                str(raw.get("ActionType", "")),
                status if isinstance(status, int) else 0,
                raw.get("ActionResult"),
                str(raw.get("Error") or ""),
            )
        )
    return HandshakeResponse(str(obj.get("ClientVersion", "")), tuple(actions))


def build_handshake_complete(time_to_complete_ns: int, customer_message: str) -> bytes:
    return _dumps(
        {"HandshakeTimeToComplete": time_to_complete_ns, "CustomerMessage": customer_message}
    )


def parse_handshake_complete(payload: bytes) -> str:
    """Return the CustomerMessage (may be empty)."""
    obj = _loads_object(payload, "HandshakeComplete")
    return str(obj.get("CustomerMessage") or "")


def build_challenge(challenge_b64: str) -> bytes:
    return _dumps({"Challenge": challenge_b64})


def parse_challenge(payload: bytes) -> str:
    obj = _loads_object(payload, "EncChallenge")
    challenge = obj.get("Challenge")
    if not isinstance(challenge, str):
        raise ProtocolError("EncChallenge payload has no Challenge string")
    return challenge


# --- channel_closed and agent_session_state (§4, §11) ----------------------------------


@dataclass(frozen=True, slots=True)
class ChannelClosedInfo:
    session_id: str = ""
    output: str = ""
    raw: dict[str, Any] = field(default_factory=dict)


def build_channel_closed(
    *, message_id: str, created_date: str, destination_id: str, session_id: str, output: str
) -> bytes:
    return json.dumps(
        {
            "MessageId": message_id,
            "CreatedDate": created_date,
            "DestinationId": destination_id,
            "SessionId": session_id,
            "MessageType": "channel_closed",
            "SchemaVersion": 1,
            "Output": output,
        }
    ).encode()


def parse_channel_closed(payload: bytes) -> ChannelClosedInfo:
    """Lenient: §18 says the real MGS payload is unverified, so never fail on it."""
    try:
        obj = _loads_object(payload, "channel_closed") if payload else {}
    except ProtocolError:
        return ChannelClosedInfo(output=payload.decode("utf-8", "replace"))
    return ChannelClosedInfo(
        session_id=str(obj.get("SessionId") or ""), output=str(obj.get("Output") or ""), raw=obj
    )


def build_agent_session_state(session_id: str, state: str) -> bytes:
    return _dumps({"SchemaVersion": 1, "SessionState": state, "SessionId": session_id})


def parse_agent_session_state(payload: bytes) -> str:
    obj = _loads_object(payload, "agent_session_state")
    return str(obj.get("SessionState") or "")


def parse_exit_code(payload: bytes) -> int | None:
    """Parse a type-12 payload ``EXIT_CODE: <n>`` (never sent under ECS Exec, §12)."""
    text = payload.decode("utf-8", "replace").strip()
    _, _, number = text.partition(":")
    try:
        return int(number.strip())
    except ValueError:
        return None
