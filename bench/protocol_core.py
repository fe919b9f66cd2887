"""Benchmark the sans-I/O protocol core: frames decoded and acked per second, bytes per frame.

Usage: .venv/bin/python bench/protocol_core.py [--frames N] [--payload BYTES]

Feeds N pre-encoded output frames (in order, plus a 5% reordered variant) through
DataChannel.receive_frame one by one, and through DataChannel.receive_frames in batches of
64 (a socket read's worth, as the session driver does), collecting the acks. Prints
human-readable figures and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import random
import time
import tracemalloc
import uuid

from ecsexec.ssm.channel import DataChannel
from ecsexec.ssm.frames import decode_frame, encode_frame


def make_frames(count: int, size: int, *, shuffle_fraction: float, seed: int) -> list[bytes]:
    payload = bytes(random.Random(seed).getrandbits(8) for _ in range(size))
    frames = [
        encode_frame(
            "output_stream_data",
            payload,
            sequence_number=i,
            flags=int(i == 0),
            payload_type=1,
            message_id=uuid.uuid4(),
            created_ms=1,
        )
        for i in range(count)
    ]
    rng = random.Random(seed)
    for i in range(0, count - 1):
        if rng.random() < shuffle_fraction:
            frames[i], frames[i + 1] = frames[i + 1], frames[i]
    return frames


def run(frames: list[bytes]) -> tuple[float, int, int]:
    channel = DataChannel(session_id="bench", now=0.0, epoch_ms=1)
    received = 0
    start = time.perf_counter()
    for raw in frames:
        channel.receive_frame(raw, 0.0)
        channel.data_to_send()
        for event in channel.events_received():
            received += len(getattr(event, "data", b""))
    return time.perf_counter() - start, received, channel.stats.frames_received


def run_batched(frames: list[bytes], batch: int = 64) -> tuple[float, int, int]:
    channel = DataChannel(session_id="bench", now=0.0, epoch_ms=1)
    received = 0
    start = time.perf_counter()
    for first in range(0, len(frames), batch):
        channel.receive_frames(frames[first : first + batch], 0.0)
        channel.data_to_send()
        for event in channel.events_received():
            received += len(getattr(event, "data", b""))
    return time.perf_counter() - start, received, channel.stats.frames_received


def allocated_per_frame(frames: list[bytes]) -> float:
    channel = DataChannel(session_id="bench", now=0.0, epoch_ms=1)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    total = 0
    tracemalloc.reset_peak()
    for raw in frames:
        channel.receive_frame(raw, 0.0)
        channel.data_to_send()
        channel.events_received()
    _, peak = tracemalloc.get_traced_memory()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    total = sum(s.size_diff for s in after.compare_to(before, "filename") if s.size_diff > 0)
    return max(total, 0) / len(frames), peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=50_000)
    parser.add_argument("--payload", type=int, default=1024)
    args = parser.parse_args()
    in_order = make_frames(args.frames, args.payload, shuffle_fraction=0.0, seed=1)
    reordered = make_frames(args.frames, args.payload, shuffle_fraction=0.05, seed=2)
    decode_start = time.perf_counter()
    for raw in in_order:
        decode_frame(raw)
    decode_only = args.frames / (time.perf_counter() - decode_start)
    seconds, received, count = run(in_order)
    seconds_r, received_r, _ = run(reordered)
    seconds_b, received_b, _ = run_batched(in_order)
    seconds_br, received_br, _ = run_batched(reordered)
    assert received == received_r == received_b == received_br == args.frames * args.payload
    retained, peak = allocated_per_frame(in_order[:5000])
    result = {
        "bench": "protocol_core",
        "frames": count,
        "payload_bytes": args.payload,
        "decode_only_frames_per_s": round(decode_only),
        "decode_ack_frames_per_s": round(count / seconds),
        "decode_ack_reordered_frames_per_s": round(count / seconds_r),
        "batched_frames_per_s": round(count / seconds_b),
        "batched_reordered_frames_per_s": round(count / seconds_br),
        "batched_us_per_frame": round(seconds_b / count * 1e6, 2),
        "mb_per_s": round(received / seconds / 1e6, 1),
        "retained_bytes_per_frame": round(retained, 1),
        "peak_traced_bytes": peak,
    }
    print(f"decode only:            {result['decode_only_frames_per_s']:>10,} frames/s")
    print(
        f"decode + ack + deliver: {result['decode_ack_frames_per_s']:>10,} frames/s "
        f"({result['mb_per_s']} MB/s of {args.payload}-byte payloads)"
    )
    print(f"  with 5% reordering:   {result['decode_ack_reordered_frames_per_s']:>10,} frames/s")
    print(
        f"batches of 64 (receive_frames): {result['batched_frames_per_s']:>10,} frames/s "
        f"({result['batched_us_per_frame']} us each)"
    )
    print(f"  with 5% reordering:   {result['batched_reordered_frames_per_s']:>10,} frames/s")
    print(
        f"memory retained after delivery: {result['retained_bytes_per_frame']} bytes/frame "
        f"(peak traced {peak:,} bytes over 5,000 frames)"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
