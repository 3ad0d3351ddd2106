"""Usage accumulates per replica across runs; the engine's counters restart with each run."""

from __future__ import annotations

from orchestrator.metering import Meter, MeterTarget, ReplicaUsage
from orchestrator.spec import ReplicaKey

WEB = ReplicaKey("c", "web", 0)


def test_samples_of_one_run_keep_the_latest_counter() -> None:
    meter = Meter()
    run = MeterTarget(WEB, "c1", started_at=100.0)
    meter.record_sample(run, sampled_at=110.0, cpu_ns=1_000, memory_bytes=10)
    meter.record_sample(run, sampled_at=120.0, cpu_ns=3_000, memory_bytes=30)
    assert meter.usage(WEB) == ReplicaUsage(3_000, 30, 30, 20_000, 2)


def test_runs_add_up_and_a_run_end_counts_once() -> None:
    meter = Meter()
    first = MeterTarget(WEB, "c1", started_at=100.0)
    meter.record_sample(first, sampled_at=110.0, cpu_ns=5_000, memory_bytes=50)
    meter.record_exit(WEB, "c1", 100.0, 115.0)
    meter.record_exit(WEB, "c1", 100.0, 115.0)
    meter.record_sample(first, sampled_at=114.0, cpu_ns=6_000, memory_bytes=60)  # late read
    second = MeterTarget(WEB, "c1", started_at=120.0)
    meter.record_sample(second, sampled_at=130.0, cpu_ns=2_000, memory_bytes=20)
    usage = meter.usage(WEB)
    assert (usage.cpu_ns, usage.memory_bytes, usage.peak_memory_bytes) == (7_000, 20, 50)
    assert usage.uptime_ms == 15_000 + 10_000
    assert usage.cpu_seconds == 7e-6 and usage.uptime_seconds == 25.0


def test_a_new_start_seen_in_a_sample_closes_the_previous_run() -> None:
    meter = Meter()
    meter.record_sample(MeterTarget(WEB, "c1", 0.0), sampled_at=50.0, cpu_ns=9, memory_bytes=1)
    meter.record_sample(MeterTarget(WEB, "c1", 60.0), sampled_at=70.0, cpu_ns=1, memory_bytes=2)
    assert meter.usage(WEB) == ReplicaUsage(10, 2, 2, 60_000, 2)


def test_removal_keeps_the_totals() -> None:
    meter = Meter()
    meter.record_sample(MeterTarget(WEB, "c1", 0.0), sampled_at=5.0, cpu_ns=4, memory_bytes=8)
    meter.forget_container("c1")
    assert meter.usage(WEB) == ReplicaUsage(4, 0, 8, 5_000, 1)
    assert meter.usage(ReplicaKey("c", "other", 0)) == ReplicaUsage()
