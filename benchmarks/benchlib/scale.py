"""Scale figures, tfbulk alone: what a catalogue of a million segments costs before and
around the downloads, where the peers have no equivalent (they keep no state).

Times run from spawning the real CLI to an event in its `--log-file` (wall clock, ms), so
interpreter start-up counts: that is what a user waits for.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import statistics
import sys
from pathlib import Path
from typing import Any

from benchlib.contenders import KEY_PAIR_ID, child_env
from benchlib.datasets import SCALE_FILE_BYTES, write_snapshot
from benchlib.measure import Measured, measure

DONE_FRACTION = 0.99
STATUS_REPEATS = 3
BASELINE_SEGMENTS = 1_000  # the run whose peak RSS a big catalogue may exceed by little


def _run_argv(snapshot: Path, dest: Path, base_url: str, key: Path, log: Path) -> list[str]:
    return [
        sys.executable, "-m", "tfbulk", "run",
        "--snapshot", str(snapshot),
        "--dest", str(dest),
        "--url-template", f"{base_url}/scale/{{segment_id}}.mp4",
        "--path-template", "{segment_id}.mp4",
        "--key-pair-id", KEY_PAIR_ID,
        "--private-key", str(key),
        "--no-progress", "--json",
        "--log-file", str(log),
    ]  # fmt: skip


def _first(log: Path, event: str) -> float:
    """Timestamp of the first `event` line in a tfbulk --log-file."""
    for line in log.read_text().splitlines():
        record = json.loads(line)
        if record["event"] == event:
            return float(record["ts"])
    raise RuntimeError(f"no {event} in {log}")


def _checked(result: Measured, allowed: tuple[int, ...], what: str) -> dict[str, Any]:
    if result.exit_code not in allowed:
        raise RuntimeError(f"{what}: exit {result.exit_code}: {result.stderr[-800:]}")
    return json.loads(result.stdout)


def mark_done(state: Path, fraction: float) -> int:
    """Set the first `fraction` of segments to success, as a long earlier run would have.

    Downloading 99,000 files first would only measure downloading again; the rerun reads
    these rows exactly as it would read rows a real run wrote.
    """
    with sqlite3.connect(state) as conn:
        total = conn.execute("SELECT count(*) FROM segments").fetchone()[0]
        done = int(total * fraction)
        conn.execute(
            "UPDATE segments SET status = 'success', size = ?, attempts = 1, "
            "finished_at = strftime('%s', 'now') WHERE id IN "
            "(SELECT id FROM segments ORDER BY course_id, id LIMIT ?)",
            (SCALE_FILE_BYTES, done),
        )
    conn.close()
    return done


def _first_run_limit(segments: int) -> str:
    """Long enough for a first download on a busy machine, short enough that the last 1 %
    is still to do for the rerun: 1 s up to 100,000 segments, then 1 s per 100,000."""
    return f"{max(1, segments // 100_000)}s"


def _first_run(folder: Path, base_url: str, key: Path, segments: int) -> dict[str, Any]:
    """Plan `segments` into a fresh state DB and download for a second: the times to the
    run's start and to its first download, and the peak RSS."""
    folder.mkdir(parents=True)
    snapshot = write_snapshot(folder / "snapshot.db", segments)
    log = folder / "plan.log"
    argv = _run_argv(snapshot, folder / "dest", base_url, key, log)
    first = measure([*argv, "--max-time", _first_run_limit(segments)], cwd=folder, env=child_env())
    planned = _checked(first, (0, 75), "planning run")
    return {
        "snapshot": snapshot,
        "plan_s": _first(log, "run_start") - first.started_at,
        "first_download_s": _first(log, "segment_start") - first.started_at,
        "peak_rss_bytes": planned["peak_rss_bytes"],
    }


def scale_figures(workdir: Path, base_url: str, key: Path, segments: int) -> dict[str, Any]:
    """Time to start and to the first download, peak RSS over a 1,000-segment run, a dry
    run's time, `status` time, and a 99 %-done rerun's time to first download."""
    shutil.rmtree(workdir / "scale", ignore_errors=True)
    baseline = _first_run(workdir / "scale" / "baseline", base_url, key, BASELINE_SEGMENTS)
    folder = workdir / "scale" / "big"
    planned = _first_run(folder, base_url, key, segments)
    snapshot, dest, env = planned["snapshot"], folder / "dest", child_env()

    dry_argv = [*_run_argv(snapshot, dest, base_url, key, folder / "dry.log"), "--dry-run"]
    dry = measure(dry_argv, cwd=folder, env=env)
    _checked(dry, (0,), "dry run")

    done = mark_done(dest / ".tfbulk" / "state.db", DONE_FRACTION)
    status_runs = [
        measure(
            [sys.executable, "-m", "tfbulk", "status", "--dest", str(dest), "--json"],
            cwd=folder,
            env=env,
        )
        for _ in range(STATUS_REPEATS)
    ]
    for run in status_runs:
        _checked(run, (0,), "status")

    rerun_log = folder / "rerun.log"
    rerun = measure(_run_argv(snapshot, dest, base_url, key, rerun_log), cwd=folder, env=env)
    rerun_json = _checked(rerun, (0,), "rerun")
    return {
        "segments": segments,
        "plan_s": planned["plan_s"],
        "first_download_s": planned["first_download_s"],
        "plan_peak_rss_bytes": planned["peak_rss_bytes"],
        "baseline_segments": BASELINE_SEGMENTS,
        "baseline_peak_rss_bytes": baseline["peak_rss_bytes"],
        "rss_growth_mib": (planned["peak_rss_bytes"] - baseline["peak_rss_bytes"]) / 2**20,
        "dry_run_s": dry.wall_s,
        "status_s": statistics.median(r.wall_s for r in status_runs),
        "status_runs_s": [r.wall_s for r in status_runs],
        "done_fraction": DONE_FRACTION,
        "done_before_rerun": done,
        "rerun_plan_s": _first(rerun_log, "run_start") - rerun.started_at,
        "rerun_first_download_s": _first(rerun_log, "segment_start") - rerun.started_at,
        "rerun_total_s": rerun.wall_s,
        "rerun_downloaded": rerun_json["total"] - done,
        "rerun_peak_rss_bytes": rerun_json["peak_rss_bytes"],
    }
