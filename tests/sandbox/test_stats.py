"""Sandbox counters (docs/sandbox.md §12): gauges survive a reset, so nothing goes negative."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ecsexec.sandbox.stats import Stats


def test_sessions_open_across_a_reset_stay_counted() -> None:
    stats = Stats()
    for _ in range(3):
        stats.sessions.opened += 1
    stats.reset()
    assert stats.sessions.active == 3  # still running: a gauge, not a counter
    assert stats.as_dict()["sessions"]["opened"] == 0  # counters restart
    for _ in range(3):
        stats.session_ended("exited")
    assert stats.sessions.active == 0
    assert stats.as_dict()["sessions"] == {
        "opened": 0,
        "closed": 3,
        "active": 0,
        "client_connects": 0,
        "resumes": 0,
        "by_end_reason": {**dict.fromkeys(stats.sessions.by_end_reason, 0), "exited": 3},
    }


def test_open_ptys_survive_a_reset() -> None:
    stats = Stats()
    stats.processes.ptys_open += 2
    stats.processes.exec += 2
    stats.reset()
    assert stats.processes.ptys_open == 2
    assert stats.processes.exec == 0
    stats.processes.ptys_open -= 2
    assert stats.as_dict()["processes"]["ptys_open"] == 0


EVENTS = st.lists(st.sampled_from(["open", "close", "pty+", "pty-", "reset"]), max_size=60)


@settings(max_examples=300, deadline=None)
@given(EVENTS)
def test_no_sequence_of_opens_closes_and_resets_goes_negative(events: list[str]) -> None:
    stats = Stats()
    live = ptys = 0
    for event in events:
        if event == "open":
            stats.sessions.opened += 1
            live += 1
        elif event == "close" and live:
            stats.session_ended("exited")
            live -= 1
        elif event == "pty+":
            stats.processes.ptys_open += 1
            ptys += 1
        elif event == "pty-" and ptys:
            stats.processes.ptys_open -= 1
            ptys -= 1
        elif event == "reset":
            stats.reset()
        shown = stats.as_dict()
        assert shown["sessions"]["active"] == live
        assert shown["processes"]["ptys_open"] == ptys
        assert all(v >= 0 for v in shown["sessions"].values() if isinstance(v, int))
