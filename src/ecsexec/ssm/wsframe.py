"""RFC 6455 binary-frame headers, shared by the client's transport and the sandbox's relay.

Pure (no socket, no event loop, no websockets import), so the sandbox can build the frames
it writes with the same code the client uses without depending on the client's stack.
"""

from __future__ import annotations

import struct
from typing import Final

__all__ = ["binary_frame_header"]

_BINARY_FIN: Final = 0x82
_MASKED: Final = 0x80
_LENGTH_16: Final = struct.Struct("!BBH")
_LENGTH_64: Final = struct.Struct("!BBQ")


def binary_frame_header(length: int, *, masked: bool) -> bytes:
    """RFC 6455 §5.2 header of one unfragmented binary frame (FIN, no RSV bits), up to but
    not including a masking key. The length takes the shortest encoding: 7 bits up to 125,
    then 16 bits up to 65535, then 64 bits. Clients mask (§5.3), servers never do (§5.1).
    """
    mask = _MASKED if masked else 0
    if length < 126:
        return bytes((_BINARY_FIN, mask | length))
    if length < 65536:
        return _LENGTH_16.pack(_BINARY_FIN, mask | 126, length)
    return _LENGTH_64.pack(_BINARY_FIN, mask | 127, length)
