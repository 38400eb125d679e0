"""What the live display costs: the same 2,000-segment run with and without it.

The live view draws on a real pseudo-terminal (drained by a reader thread, as a terminal
emulator would), the other run has `--no-progress`. Rounds alternate; medians are reported.

    python benchmarks/display_cost.py [--segments 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import pty
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from tfbulk.credentials import write_key_pair
from tfbulk.origin import Origin, SyntheticContent
from tfbulk.origin.sample import guitar_catalogue, write_snapshot

KEY_ID = "KBENCHDISPLAY"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"progress": [], "no-progress": []}
    with tempfile.TemporaryDirectory(prefix="tfbulk-display-") as tmp:
        root = Path(tmp)
        key = write_key_pair(root / "key.pem", root / "pub.pem")
        write_snapshot(
            root / "snap.db", guitar_catalogue(20, args.segments // 20, no_video_every=0)
        )
        content = SyntheticContent(16 * 1024, 64 * 1024)
        with Origin(content=content, public_keys={KEY_ID: key.public_key()}) as origin:
            for round_no in range(args.rounds):
                for mode in times:
                    work = root / f"{mode}-{round_no}"
                    times[mode].append(
                        run_once(root, work, origin.base_url, live=mode == "progress")
                    )
    for mode, values in times.items():
        print(f"{mode:12} median {statistics.median(values):6.2f}s  runs {values}")
    ratio = statistics.median(times["progress"]) / statistics.median(times["no-progress"])
    print(f"progress / no-progress: {ratio:.3f}")


def run_once(root: Path, work: Path, base_url: str, *, live: bool) -> float:
    """One run; with `live`, stderr (where --json sends the human view) is a real pty."""
    args = [
        sys.executable, "-m", "tfbulk", "run", "--snapshot", str(root / "snap.db"),
        "--dest", str(work), "--key-pair-id", KEY_ID, "--private-key", str(root / "key.pem"),
        "--url-template", f"{base_url}/truefire/{{segment_id}}.mp4", "--json",
        "--progress" if live else "--no-progress",
    ]  # fmt: skip
    if not live:
        proc = subprocess.run(args, capture_output=True, text=True, check=True)
        return json.loads(proc.stdout)["elapsed_s"]
    master, slave = pty.openpty()
    drain = threading.Thread(target=_drain, args=(master,), daemon=True)
    drain.start()
    env = os.environ | {"COLUMNS": "100", "LINES": "30"}
    proc = subprocess.run(
        args, stdout=subprocess.PIPE, stderr=slave, text=True, check=True, env=env
    )
    os.close(slave)
    return json.loads(proc.stdout)["elapsed_s"]


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 65536):
            pass
    except OSError:
        pass


if __name__ == "__main__":
    main()
