"""Fault SPEC grammar and deterministic per-frame draws (docs/sandbox.md §12)."""

from __future__ import annotations

import pytest

from ecsexec.errors import ConfigurationError
from ecsexec.sandbox.faults import (
    Direction,
    DirectionFaults,
    ErrorRule,
    FaultPlan,
    FaultSpecError,
    FrameDecision,
    FrameFaultStream,
    ThrottleRule,
    api_rng,
    parse_faults,
    parse_throttle,
    parse_throttle_list,
)

TASK = "arn:aws:ecs:us-east-1:123456789012:task/demo/0123456789abcdef0123456789abcdef"


def test_full_grammar() -> None:
    plan = parse_faults(
        "drop=0.05,a2c.dup=0.1,c2a.reorder=0.2,delay=5ms..20ms,c2a.disconnect=0.01,"
        "throttle=ExecuteCommand:5/s:10,throttle=DescribeTasks:20/s,"
        "error=ListTasks:0.5,error=DescribeTasks:0.25:AccessDeniedException,"
        "tnc=0.3,short_pages=0.4,seed=7"
    )
    assert plan.c2a == DirectionFaults(
        drop=0.05, dup=0.0, reorder=0.2, delay=(0.005, 0.020), disconnect=0.01
    )
    assert plan.a2c == DirectionFaults(drop=0.05, dup=0.1, reorder=0.0, delay=(0.005, 0.020))
    assert plan.throttle == (
        ThrottleRule("ExecuteCommand", 5.0, 10),
        ThrottleRule("DescribeTasks", 20.0, None),
    )
    assert plan.error == (
        ErrorRule("ListTasks", 0.5, "ServerException"),
        ErrorRule("DescribeTasks", 0.25, "AccessDeniedException"),
    )
    assert plan.error[0].http_status == 500
    assert plan.error[1].http_status == 400
    assert (plan.tnc, plan.short_pages, plan.seed) == (0.3, 0.4, 7)
    assert plan.error_for("ListTasks") == plan.error[0]
    assert plan.error_for("ListClusters") is None
    assert plan.throttle_for("DescribeTasks") == plan.throttle[1]


def test_empty_spec_is_an_empty_plan() -> None:
    plan = parse_faults("")
    assert plan == FaultPlan()
    assert not plan.has_frame_faults


def test_prefixed_item_overrides_unprefixed_in_any_order() -> None:
    plan = parse_faults("c2a.drop=0.5,drop=0.1")
    assert plan.c2a.drop == 0.5
    assert plan.a2c.drop == 0.1


def test_delay_units() -> None:
    assert parse_faults("delay=1s").a2c.delay == (1.0, 1.0)
    assert parse_faults("delay=250ms").c2a.delay == (0.25, 0.25)
    assert parse_faults("a2c.delay=0.5s..1.5s").a2c.delay == (0.5, 1.5)
    assert parse_faults("a2c.delay=0.5s..1.5s").c2a.delay is None


def test_to_spec_round_trips() -> None:
    plan = parse_faults(
        "drop=0.05,a2c.delay=10ms..30ms,throttle=ExecuteCommand:5/s:10,error=ListTasks:0.5,"
        "tnc=0.1,short_pages=0.2,seed=3"
    )
    assert parse_faults(plan.to_spec()) == plan


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("drop", "'drop'"),
        ("drop=", "'drop='"),
        ("drop=1.5", "'drop=1.5'"),
        ("drop=abc", "'drop=abc'"),
        ("dropp=0.1", "'dropp=0.1'"),
        ("x2y.drop=0.1", "'x2y.drop=0.1'"),
        ("c2a.seed=3", "'c2a.seed=3'"),
        ("seed=x", "'seed=x'"),
        ("delay=5", "'delay=5'"),
        ("delay=20ms..5ms", "'delay=20ms..5ms'"),
        ("drop=0.1,drop=0.2", "'drop=0.2'"),
        ("drop=0.1,,dup=0.2", "empty fault item"),
        ("throttle=ExecuteCommand:5", "'throttle=ExecuteCommand:5'"),
        ("throttle=ExecuteCommand:0/s", "'throttle=ExecuteCommand:0/s'"),
        ("throttle=Exec-Command:5/s", "'throttle=Exec-Command:5/s'"),
        ("throttle=ExecuteCommand:5/s:zero", "'throttle=ExecuteCommand:5/s:zero'"),
        ("error=ListTasks", "'error=ListTasks'"),
        ("error=ListTasks:2", "'error=ListTasks:2'"),
        ("tnc=-0.1", "'tnc=-0.1'"),
    ],
)
def test_errors_name_the_bad_item(spec: str, fragment: str) -> None:
    with pytest.raises(FaultSpecError) as info:
        parse_faults(spec)
    assert fragment in str(info.value)
    assert isinstance(info.value, ConfigurationError)
    assert isinstance(info.value, ValueError)


def test_throttle_grammar_is_shared_with_the_flag() -> None:
    assert parse_throttle("ExecuteCommand:5/s:10") == ThrottleRule("ExecuteCommand", 5.0, 10)
    assert parse_throttle_list("ExecuteCommand:5/s:10, DescribeTasks:2.5/s") == (
        ThrottleRule("ExecuteCommand", 5.0, 10),
        ThrottleRule("DescribeTasks", 2.5, None),
    )


def _decisions(
    plan: FaultPlan, n: int = 400, *, ordinal: int = 0, direction: Direction = "a2c"
) -> list[FrameDecision]:
    stream = FrameFaultStream(
        plan, task_arn=TASK, container_name="app", ordinal=ordinal, direction=direction
    )
    return [stream.next() for _ in range(n)]


def test_same_seed_same_decisions() -> None:
    plan = parse_faults("drop=0.3,dup=0.2,reorder=0.1,delay=1ms..9ms,disconnect=0.05,seed=11")
    first = _decisions(plan)
    assert first == _decisions(plan)
    assert any(d.drop for d in first)
    assert not all(d.drop for d in first)


def test_key_parts_change_the_sequence() -> None:
    plan = parse_faults("drop=0.5,seed=1")
    base = [d.drop for d in _decisions(plan)]
    assert base != [d.drop for d in _decisions(parse_faults("drop=0.5,seed=2"))]
    assert base != [d.drop for d in _decisions(plan, ordinal=1)]
    assert base != [d.drop for d in _decisions(plan, direction="c2a")]


def test_adding_a_fault_does_not_change_the_others() -> None:
    # §12: five draws per frame whatever is enabled, so each fault's decisions are stable.
    only_drop = _decisions(parse_faults("drop=0.2,seed=5"))
    everything = _decisions(
        parse_faults("drop=0.2,dup=0.5,reorder=0.5,delay=1ms..50ms,disconnect=0.5,seed=5")
    )
    only_dup = _decisions(parse_faults("dup=0.5,seed=5"))
    assert [d.drop for d in only_drop] == [d.drop for d in everything]
    assert [d.dup for d in only_dup] == [d.dup for d in everything]
    assert not any(d.dup for d in only_drop)
    assert all(d.delay == 0.0 for d in only_drop)


def test_rates_and_delay_range() -> None:
    decisions = _decisions(parse_faults("drop=0.25,delay=10ms..20ms,seed=9"), n=4000)
    rate = sum(d.drop for d in decisions) / len(decisions)
    assert 0.2 < rate < 0.3
    assert all(0.010 <= d.delay <= 0.020 for d in decisions)
    assert max(d.delay for d in decisions) - min(d.delay for d in decisions) > 0.008


def test_api_rng_is_deterministic_and_keyed() -> None:
    a = [api_rng(3, "us-east-1", "ListTasks").random() for _ in range(2)]
    assert a[0] == a[1]
    assert api_rng(3, "ListTasks").random() != api_rng(4, "ListTasks").random()
