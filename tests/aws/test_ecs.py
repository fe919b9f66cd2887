"""aws.ecs pieces that need no sandbox: timestamp parsing and the SSM target."""

from __future__ import annotations

from datetime import timedelta

from ecsexec.aws.ecs import _utc_timestamp, ssm_target


def test_epoch_and_iso_timestamps_parse_to_utc() -> None:
    assert _utc_timestamp(1714566896.789).isoformat() == "2024-05-01T12:34:56.789000+00:00"
    assert _utc_timestamp("2024-05-01T12:34:56Z").utcoffset() == timedelta(0)


def test_ssm_target_uses_the_last_arn_segments() -> None:
    assert (
        ssm_target(
            "arn:aws:ecs:us-east-1:1:cluster/demo", "arn:aws:ecs:us-east-1:1:task/demo/abc", "abc-1"
        )
        == "ecs:demo_abc_abc-1"
    )
