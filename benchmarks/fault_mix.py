"""How tfbulk comes back from a realistic mix of faults, against a fault-free run.

500 segments; 20 % get transient faults (503s, a 429 with Retry-After, dropped connections,
an HTML error page once, a wrong-MD5 body once), 2 % a permanent 404. Reports exit code,
retries made, bytes served by the origin vs bytes stored, and elapsed time, for the faulty
run and a fault-free run of the same catalogue. Everything runs on 127.0.0.1.

    python benchmarks/fault_mix.py [--segments 500] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

from tfbulk.credentials import write_key_pair
from tfbulk.origin import Fault, Origin, SyntheticContent
from tfbulk.origin.sample import guitar_catalogue, write_snapshot

KEY_ID = "KBENCHFAULTS"
TRANSIENT = [
    Fault(status=503, times=2),
    Fault(status=429, times=1, retry_after="1"),
    Fault(drop_after=40_000, times=1),
    Fault(html=True, times=1),
    Fault(wrong_md5=True, times=1),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, default=500)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tfbulk-faults-") as tmp:
        root = Path(tmp)
        key = write_key_pair(root / "key.pem", root / "pub.pem")
        catalogue = guitar_catalogue(10, args.segments // 10, no_video_every=0)
        write_snapshot(root / "snapshot.db", catalogue)
        ids = [s.segment_id for c in catalogue for s in c.segments]
        results = {
            "faulty": measure(root / "faulty", root, key.public_key(), ids, faults=True),
            "fault_free": measure(root / "clean", root, key.public_key(), ids, faults=False),
        }
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def measure(work: Path, root: Path, public_key: object, ids: list[int], *, faults: bool) -> dict:
    content = SyntheticContent(64 * 1024, 512 * 1024)
    with Origin(content=content, public_keys={KEY_ID: public_key}) as origin:
        counts = inject(origin, ids) if faults else {"transient": 0, "permanent": 0}
        log = work / "events.jsonl"
        work.mkdir()
        proc = subprocess.run(
            [
                sys.executable, "-m", "tfbulk", "run", "--snapshot", str(root / "snapshot.db"),
                "--dest", str(work / "videos"), "--key-pair-id", KEY_ID,
                "--private-key", str(root / "key.pem"), "--backoff-base", "0.2s",
                "--backoff-max", "5s", "--log-file", str(log), "--json",
                "--url-template", f"{origin.base_url}/truefire/{{segment_id}}.mp4",
            ],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        summary = json.loads(proc.stdout)
        events = [json.loads(line)["event"] for line in log.read_text().splitlines()]
        stored = sum(p.stat().st_size for p in (work / "videos").rglob("*.mp4"))
        return {
            "exit_code": proc.returncode,
            "segments": summary["total"],
            "faulted_transient": counts["transient"],
            "faulted_permanent": counts["permanent"],
            "success": summary["success"],
            "failed": summary["failed"],
            "requests": len(origin.log),
            "retries": events.count("segment_retry"),
            "immediate_retries": events.count("segment_start")
            - summary["total"]
            - events.count("segment_retry")
            + summary["skipped"],
            "bytes_served": origin.bytes_served(),
            "bytes_stored": stored,
            "elapsed_s": summary["elapsed_s"],
        }


def inject(origin: Origin, ids: list[int]) -> dict[str, int]:
    rng = random.Random(2026)
    chosen = rng.sample(ids, len(ids) * 22 // 100)
    permanent, transient = chosen[: len(ids) // 50], chosen[len(ids) // 50 :]
    for segment_id in permanent:
        origin.add_fault(f"/truefire/{segment_id}.mp4", Fault(status=404, times=0))
    for index, segment_id in enumerate(transient):
        template = TRANSIENT[index % len(TRANSIENT)]
        origin.add_fault(f"/truefire/{segment_id}.mp4", Fault(**{
            k: v for k, v in vars(template).items() if k != "used"
        }))  # fmt: skip
    return {"transient": len(transient), "permanent": len(permanent)}


def print_table(results: dict[str, dict]) -> None:
    keys = list(results["faulty"])
    width = max(map(len, keys))
    print(f"{'':{width}}  {'faulty':>14}  {'fault-free':>14}")
    for key in keys:
        print(f"{key:{width}}  {results['faulty'][key]:>14,}  {results['fault_free'][key]:>14,}")
    ratio = results["faulty"]["elapsed_s"] / results["fault_free"]["elapsed_s"]
    print(f"elapsed, faulty / fault-free: {ratio:.2f}x")


if __name__ == "__main__":
    main()
