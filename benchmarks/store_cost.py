"""What the SQLite state store alone costs at scale, in CPU seconds (steady on a busy machine).

    .venv/bin/python benchmarks/store_cost.py --segments 1000000 --repeats 3

Planning into a fresh state DB, `status` (the summary of the whole DB), a replan of the same
rows with 99 % done, and the next run's start and first claim: the parts of `run` and
`status` that are the store's, without the snapshot, the planner or the interpreter's start.
Prints medians; `PYTHONPATH=<other tree>/src` measures another version of the store.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from tfbulk.pipeline.plan import PlanRow
from tfbulk.state import open_store

PER_COURSE = 100
DONE_FRACTION = 0.99


def planned(segments: int) -> Iterator[PlanRow]:
    for sid in range(1, segments + 1):
        course = 1 + (sid - 1) // PER_COURSE
        yield PlanRow(sid, course, course, f"mp4:bench/lesson_{sid}", f"Lesson {sid}",
                      f"{sid}.mp4", None)  # fmt: skip


def cpu(action: Callable[[], object]) -> float:
    start = time.process_time()
    action()
    return time.process_time() - start


def mark_done(path: Path, segments: int) -> None:
    """As a long earlier run would have left it (plain SQL, like benchmarks/benchlib/scale)."""
    with sqlite3.connect(path) as conn:
        conn.execute(
            "UPDATE segments SET status = 'success', size = 1000, attempts = 1, "
            "run_attempts = 1 WHERE id <= ?",
            (int(segments * DONE_FRACTION),),
        )
    conn.close()


def once(folder: Path, segments: int) -> dict[str, float]:
    state = folder / "state.db"
    titles = {c: f"Course {c}" for c in range(1, segments // PER_COURSE + 2)}
    store = open_store(str(state), create=True, lock=True)
    figures = {"plan_s": cpu(lambda: store.plan(planned(segments), titles))}
    store.close()
    mark_done(state, segments)
    reader = open_store(str(state), create=False, lock=False)
    figures["status_s"] = cpu(lambda: reader.summary(scoped=False))
    reader.close()
    store = open_store(str(state), create=True, lock=True)
    figures["replan_s"] = cpu(lambda: store.plan(planned(segments), titles))
    figures["start_s"] = cpu(lambda: (store.start_run(), store.claim(20, time.time())))
    store.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    runs = []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="tfbulk-store-") as folder:
            runs.append(once(Path(folder), args.segments))
    medians = {key: round(statistics.median(r[key] for r in runs), 3) for key in runs[0]}
    print(json.dumps({"segments": args.segments, "cpu_s_median": medians, "runs": runs}))


if __name__ == "__main__":
    main()
