"""Peak RSS of `tfbulk run --dest s3://…` for small files against one large file: the S3
sink holds at most one part per download, so the large file must not cost more memory.

The local synthetic origin (unsigned) serves the bodies; moto's server in its own process
is the bucket. Each case is a fresh `tfbulk run` whose peak RSS and CPU time (user +
system) are read from the kernel (GNU time's %M, %U, %S); concurrency 1, so one download
at a time in both cases.

    python benchmarks/s3_sink_rss.py [--large 256M] [--small-count 64] [--part-size 16M]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tfbulk.origin import Origin, SyntheticContent
from tfbulk.origin.sample import SampleCourse, SampleSegment, write_snapshot
from tfbulk.settings import parse_size

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.s3_upload_cost import BUCKET, KEYS, _start_moto


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", default="256M", help="size of the one large file")
    parser.add_argument("--small", default="1M", help="size of each small file")
    parser.add_argument("--small-count", type=int, default=64)
    parser.add_argument("--part-size", default="16M")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    endpoint, moto = _start_moto()
    try:
        _bucket(endpoint)
        results = {
            f"{args.small_count} x {args.small}": _case(
                endpoint, parse_size(args.small, "--small"), args.small_count, args.part_size
            ),
            f"1 x {args.large}": _case(
                endpoint, parse_size(args.large, "--large"), 1, args.part_size
            ),
        }
    finally:
        moto.terminate()
        moto.wait()
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"tfbulk run --dest s3://… (part size {args.part_size}, concurrency 1):")
    for name, figures in results.items():
        print(
            f"  {name:14} peak RSS {figures['rss_mib']:6.1f} MiB   "
            f"CPU {figures['cpu_s']:6.2f} s   {figures['seconds']:6.1f} s"
        )


def _bucket(endpoint: str) -> None:
    import botocore.session

    client = botocore.session.get_session().create_client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=KEYS[0],
        aws_secret_access_key=KEYS[1],
    )
    client.create_bucket(Bucket=BUCKET)


def _case(endpoint: str, size: int, count: int, part_size: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        segments = tuple(
            SampleSegment(10_000 + n, 1, f"mp4:bench/lesson_{n}", f"lesson {n}")
            for n in range(count)
        )
        write_snapshot(root / "snapshot.db", [SampleCourse(1, "bench", (1,), segments)])
        content = SyntheticContent(min_size=size, max_size=size)
        with Origin(content=content) as origin:
            started = time.monotonic()
            subprocess.run(
                [
                    "/usr/bin/time",
                    "-o",
                    str(root / "rss"),
                    "-f",
                    "%M %U %S",
                    sys.executable,
                    "-m",
                    "tfbulk",
                    "run",
                    "--no-progress",
                    "--quiet",
                    "--snapshot",
                    str(root / "snapshot.db"),
                    "--signer",
                    "none",
                    "--url-template",
                    f"{origin.base_url}/truefire/{{segment_id}}.mp4",
                    "--dest",
                    f"s3://{BUCKET}/{size}",
                    "--dest-endpoint-url",
                    endpoint,
                    "--dest-part-size",
                    part_size,
                    "--state",
                    str(root / "state.db"),
                    "--concurrency",
                    "1",
                ],
                check=True,
                env={**os.environ, "AWS_ACCESS_KEY_ID": KEYS[0], "AWS_SECRET_ACCESS_KEY": KEYS[1]},
                stdout=subprocess.DEVNULL,
            )
            seconds = time.monotonic() - started
        peak, user, system = (root / "rss").read_text().split()[-3:]
    return {"rss_mib": int(peak) / 1024, "cpu_s": float(user) + float(system), "seconds": seconds}


if __name__ == "__main__":
    main()
