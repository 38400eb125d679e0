"""The limits' pure decisions: rate and timetable parsing, the token bucket, the request
window, the disk arithmetic — each on a fake clock."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tfbulk.display.tracker import RunTracker
from tfbulk.errors import BadInput, DiskError
from tfbulk.pipeline.events import RunStarted, SegmentFinished, SegmentStarted, Transfer
from tfbulk.pipeline.limits import (
    BURST_SECONDS,
    Bandwidth,
    DiskReserve,
    RequestRate,
    RunLimits,
    disk_shortfall,
)
from tfbulk.settings import Limits, parse_bwlimit, parse_rate

KIB, MIB = 1024, 1024 * 1024


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("1M", MIB),
        ("512K", 512 * KIB),
        ("512k", 512 * KIB),
        ("10", 10 * KIB),  # rclone: a bare number is KiB/s
        ("100B", 100),
        ("1.5G", 1.5 * 1024**3),
        ("2MiB", 2 * MIB),
        ("2M/s", 2 * MIB),
        ("off", None),
        ("OFF", None),
    ],
)
def test_rates_read_as_rclone_does(text: str, rate: float | None) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["", "fast", "-1M", "0", "1T", "1M1"])
def test_bad_rates_are_refused_with_the_flag_named(text: str) -> None:
    with pytest.raises(BadInput, match="--bwlimit"):
        parse_rate(text)


def test_timetable_entry_that_passed_last_applies() -> None:
    table = parse_bwlimit("08:00,512K 19:00,10M 23:00,off")
    assert table.rate_at(8 * 60) == 512 * KIB
    assert table.rate_at(12 * 60) == 512 * KIB
    assert table.rate_at(19 * 60 + 30) == 10 * MIB
    assert table.rate_at(23 * 60 + 59) is None
    assert table.rate_at(3 * 60) is None  # before 08:00: yesterday's 23:00 entry still holds
    assert table.next_change(12 * 60) == 7 * 60
    assert table.next_change(23 * 60 + 30) == 8 * 60 + 30  # tomorrow's 08:00


def test_timetable_order_does_not_matter_and_a_plain_rate_is_all_day() -> None:
    assert parse_bwlimit("19:00,1M 08:00,2M").rate_at(9 * 60) == 2 * MIB
    plain = parse_bwlimit("4M")
    assert plain.rate_at(0) == plain.rate_at(1439) == 4 * MIB
    assert not parse_bwlimit("off").limited
    assert parse_bwlimit("08:00,512K 23:00,off").describe() == "08:00 512 KiB/s, 23:00 off"


@pytest.mark.parametrize(
    "text", ["25:00,1M", "08:60,1M", "8,1M", "08:00", "08:00,1M 08:00,2M", "08:00,fast"]
)
def test_bad_timetables_are_refused(text: str) -> None:
    with pytest.raises(BadInput, match="--bwlimit"):
        parse_bwlimit(text)


def test_bucket_holds_the_rate_over_any_window() -> None:
    clock = FakeClock()
    bucket = Bandwidth(parse_bwlimit("1M"), clock, lambda: 600.0)
    chunk = 16 * KIB
    passed: list[tuple[float, int]] = []
    while clock.now < 1010.0:
        wait = bucket.admit(chunk)
        if wait:
            assert wait > 0
            clock.now += wait
        else:
            passed.append((clock.now, chunk))
    for start, _ in passed:
        window = sum(size for when, size in passed if start <= when < start + 2.0)
        assert window <= 2.0 * MIB + BURST_SECONDS * MIB + chunk
    assert sum(size for _, size in passed) >= 9.5 * MIB  # and it does let the rate through


def test_bucket_refusals_cost_one_decision_per_chunk() -> None:
    """The bwlimit does not burn CPU: each refusal sleeps until the bytes are due, so a
    limited transfer costs at most two decisions per chunk, never a spin."""
    clock = FakeClock()
    bucket = Bandwidth(parse_bwlimit("256K"), clock, lambda: 600.0)
    chunk, decisions, admitted = 16 * KIB, 0, 0
    while clock.now < 1060.0:
        decisions += 1
        wait = bucket.admit(chunk)
        clock.now += wait
        admitted += not wait
    assert decisions <= 2 * admitted + 1
    assert admitted * chunk <= 61 * 256 * KIB


def test_bucket_follows_the_timetable_as_the_clock_passes_an_entry() -> None:
    clock = FakeClock()
    minute = [7 * 60 + 59.5]
    bucket = Bandwidth(parse_bwlimit("08:00,1M 20:00,off"), clock, lambda: minute[0])
    assert bucket.rate is None  # yesterday's 20:00 entry
    assert bucket.admit(100 * MIB) == 0.0
    clock.now += 30
    minute[0] = 8 * 60
    assert bucket.rate == MIB
    assert bucket.admit(MIB) == 0.0
    assert bucket.admit(1) == pytest.approx(1.0)


def test_request_window_allows_n_per_second() -> None:
    clock = FakeClock()
    rate = RequestRate(5, clock)
    starts = []
    while clock.now < 1010.0:
        wait = rate.admit()
        if wait:
            clock.now += wait
        else:
            starts.append(clock.now)
    for start in starts:
        assert sum(1 for t in starts if start <= t < start + 1.0) <= 5
    assert len(starts) >= 50


def test_request_window_below_one_per_second() -> None:
    clock = FakeClock()
    rate = RequestRate(0.5, clock)
    assert rate.admit() == 0.0
    assert rate.admit() == pytest.approx(2.0)


def test_disk_shortfall_counts_running_downloads_and_the_reserve() -> None:
    assert disk_shortfall(free=10 * MIB, reserve=4 * MIB, in_flight=3 * MIB, wanted=2 * MIB) == 0
    assert disk_shortfall(free=10 * MIB, reserve=4 * MIB, in_flight=3 * MIB, wanted=4 * MIB) == MIB


def test_disk_reserve_names_what_is_needed(tmp_path: Path) -> None:
    reserve = DiskReserve(tmp_path, 4 * MIB, free=lambda _: 10 * MIB)
    running = Transfer(1, 1, None, 0.0, 1, size=5 * MIB, received=2 * MIB)
    reserve.running(running)
    reserve.check(2, 3 * MIB)
    with pytest.raises(DiskError, match=r"free 1000 KiB more .*--min-free-space"):
        reserve.check(2, 3 * MIB + 1000 * KIB)
    reserve.ended(running)
    reserve.check(2, 6 * MIB)


def test_unknown_sizes_count_as_the_average(tmp_path: Path) -> None:
    reserve = DiskReserve(tmp_path, MIB, free=lambda _: 5 * MIB)
    reserve.check(1, None)  # nothing known yet: only the reserve
    reserve.learn(2 * MIB)
    reserve.learn(7 * MIB)  # average 4.5 MiB + the reserve > 5 MiB free
    with pytest.raises(DiskError):
        reserve.check(1, None)


def test_eta_walks_the_timetable() -> None:
    table = parse_bwlimit("08:00,1M 20:00,off")
    # 1 MiB/s from 08:00 to 20:00: an hour's worth takes an hour
    assert table.seconds_for(3600 * MIB, 8 * 60, 0.0) == pytest.approx(3600)
    # at 19:00, one hour at 1 MiB/s, then off at the unlimited rate (10 MiB/s)
    left = 3600 * MIB + 36000 * MIB
    assert table.seconds_for(left, 19 * 60, 10 * MIB) == pytest.approx(7200)
    assert table.seconds_for(left, 19 * 60, 0.0) is None  # the unlimited rate is unknown


def test_tracker_eta_is_no_sooner_than_the_bandwidth_allows() -> None:
    clock = FakeClock()
    tracker = RunTracker(clock=clock, minute=lambda: 600.0)
    limits = Limits(bwlimit=parse_bwlimit("1M"))
    tracker(RunStarted(101, 0, 0, 101, 4, "/d", "all", limits=limits))
    transfer = Transfer(1, 1, None, clock.now, 1, size=10 * MIB)
    tracker(SegmentStarted(transfer))
    transfer.received = 10 * MIB
    clock.now += 1.0
    tracker(SegmentFinished(1, 1, "success", 10 * MIB, 1.0, 10 * MIB))
    snap = tracker.snapshot()  # one file a second, but 100 × 10 MiB at 1 MiB/s
    assert snap.eta == pytest.approx(1000, rel=0.01)


def test_limits_are_described_for_the_views() -> None:
    limits = Limits(parse_bwlimit("512K"), max_rps=10, max_transfer=50 << 30)
    assert limits.describe() == (
        "bwlimit 512 KiB/s · max-rps 10 · max-transfer 50 GiB · min-free-space 256 MiB"
    )
    assert Limits().describe() == "min-free-space 256 MiB"


def test_a_paused_transfer_is_woken_by_one_timer_not_a_spin(tmp_path: Path) -> None:
    """On a real loop: a limited 'transfer' that retries only when resumed asks the gate
    about twice per admitted chunk, whatever the machine's speed."""
    limits = RunLimits(Limits(bwlimit=parse_bwlimit("128K")), tmp_path)
    chunk, asked, taken = 4 * KIB, 0, 0

    async def transfer() -> None:
        nonlocal asked, taken
        loop = asyncio.get_running_loop()
        started = loop.time()
        while loop.time() - started < 0.5:
            resumed = asyncio.Event()
            asked += 1
            if limits.take(chunk, resumed.set):
                taken += 1
                await asyncio.sleep(0)
            else:
                await resumed.wait()

    asyncio.run(transfer())
    assert asked <= 2 * taken + 1
    assert taken * chunk <= 128 * KIB * (0.5 + BURST_SECONDS) + chunk + 64 * KIB
