"""How ``ecsexec run`` shows one node's output live (pure: events in, bytes out)."""

from __future__ import annotations

import io

from ecsexec.cli.render import LiveText
from ecsexec.exec.dispatcher import NodeOutput


def shown(events: list[NodeOutput], *, line_buffered: bool) -> list[bytes]:
    """What stdout holds after each event."""
    out = io.BytesIO()
    seen = []
    with LiveText(out, prefix=False, line_buffered=line_buffered) as live:
        for event in events:
            live(event)
            seen.append(out.getvalue())
    return seen


def test_one_node_gets_exactly_the_commands_bytes() -> None:
    # "first\n" arrives with its line break held (it may be the end marker's own).
    events = [NodeOutput("n", b"first", line_break_held=True), NodeOutput("n", b"\nsecond\n")]
    assert shown(events, line_buffered=False) == [b"first", b"first\nsecond\n"]


def test_line_buffered_shows_a_line_when_its_break_arrives() -> None:
    events = [
        NodeOutput("n", b"first", line_break_held=True),
        NodeOutput("n", b"\nsecond", line_break_held=True),
        NodeOutput("n", b"\n"),
    ]
    assert shown(events, line_buffered=True) == [
        b"first\n",
        b"first\nsecond\n",
        b"first\nsecond\n",  # the held break is not shown twice
    ]
    # A break that was the end marker's never arrives: the output gained one.
    assert shown([NodeOutput("n", b"no-break", line_break_held=True)], line_buffered=True) == [
        b"no-break\n"
    ]
