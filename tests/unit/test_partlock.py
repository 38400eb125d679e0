"""Per-segment `.part` locks: one writer per segment across workers sharing a destination.

Open-file-description locks conflict between two descriptors even in one process, so two
`PartLocks` on one folder stand in for two workers.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from pathlib import Path

import pytest

from tfbulk.state.partlock import PROBE, PartLocks


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[PartLocks, PartLocks]]:
    first, second = PartLocks(tmp_path), PartLocks(tmp_path)
    yield first, second
    first.close()
    second.close()


def test_a_segment_has_one_holder_at_a_time(pair: tuple[PartLocks, PartLocks]) -> None:
    first, second = pair
    assert first.acquire(7)
    assert first.acquire(7), "the holder may ask again"
    assert not second.acquire(7)
    assert second.acquire(8)
    first.release(7)
    assert second.acquire(7)


def test_closing_drops_every_lock(tmp_path: Path) -> None:
    first, second = PartLocks(tmp_path), PartLocks(tmp_path)
    assert first.acquire(1) and first.acquire(2)
    first.close()
    assert second.acquire(1) and second.acquire(2)
    second.close()


def test_workers_starting_together_do_not_trip_over_the_probe(tmp_path: Path) -> None:
    """A probe lock held by another worker at that instant proves locks work here."""
    starting = PartLocks(tmp_path)
    starting._set(fcntl.F_WRLCK, PROBE)
    joining = PartLocks(tmp_path)
    assert joining.acquire(5) and not starting.acquire(5)
    starting.close()
    joining.close()
