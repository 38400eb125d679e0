"""What a 64 MiB multipart upload costs the uploading process, by S3 client: our SigV4 over
the engine's libcurl transport (tfbulk.pipeline.s3client) or botocore (its defaults).
"tfbulk spooled" is ours as the S3 sink uses it: each part written to a spool file
(tfbulk.pipeline.s3spool) and sent from there.

A moto server runs in its own process on 127.0.0.1; each client uploads in a fresh child
process, `--rounds` times, four 16 MiB parts made on the fly (the same bytes for both), so
the figures are the client's own: CPU seconds (user + system) and peak RSS of the child,
imports included, minus nothing. Medians are reported.

    python benchmarks/s3_upload_cost.py [--rounds 5] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

PART = 16 << 20
PARTS = 4
BUCKET = "tfbulk-bench"
CHILDREN = ("tfbulk import", "tfbulk", "tfbulk spooled", "botocore import", "botocore")
KEYS = ("AKIATFBULKBENCH00001", "tfbulk-bench-secret-0000000000000000000")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print the medians as JSON")
    parser.add_argument("--child", choices=CHILDREN, help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.endpoint)
        return
    endpoint, server = _start_moto()
    try:
        _run("botocore import", endpoint)  # creates the bucket; warms the server
        results = {
            name: _medians([_run(name, endpoint) for _ in range(args.rounds)]) for name in CHILDREN
        }
    finally:
        server.terminate()
        server.wait()
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{PARTS} x {PART >> 20} MiB multipart upload to moto, median of {args.rounds}:")
    for name, figures in results.items():
        shown = f"{name}, parts made" if name.endswith("import") else f"{name}, uploaded"
        print(
            f"  {shown:30} CPU {figures['cpu_s']:6.3f} s   peak RSS {figures['rss_mib']:6.1f} MiB"
        )


def _start_moto() -> tuple[str, subprocess.Popen[bytes]]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    moto = str(Path(sys.executable).parent / "moto_server")
    server = subprocess.Popen(
        [moto, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
            return endpoint, server
        except OSError:
            time.sleep(0.05)
    server.terminate()
    raise SystemExit("moto_server did not start")


def _run(name: str, endpoint: str) -> dict[str, float]:
    output = subprocess.run(
        [sys.executable, __file__, "--child", name, "--endpoint", endpoint],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(output)


def _medians(rounds: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}


def _parts() -> Iterator[bytes]:
    """The same parts in every child, made one at a time (one part in memory at once)."""
    seed = b"tfbulk-bench"
    for number in range(PARTS):
        yield (seed + bytes([number])) * (PART // (len(seed) + 1))


def _child(name: str, endpoint: str) -> None:
    """One measured process: the client's imports and the parts made, then the upload
    unless `name` ends in "import" (the baseline the upload's cost is read against)."""
    if name.startswith("botocore"):
        _with_botocore(endpoint, upload=name == "botocore")
    else:
        import asyncio

        asyncio.run(
            _with_tfbulk(endpoint, upload=name != "tfbulk import", spool=name.endswith("spooled"))
        )
    usage = resource.getrusage(resource.RUSAGE_SELF)
    figures = {"cpu_s": usage.ru_utime + usage.ru_stime, "rss_mib": usage.ru_maxrss / 1024}
    print(json.dumps(figures))


def _with_botocore(endpoint: str, *, upload: bool = True) -> None:
    import botocore.session

    client = botocore.session.get_session().create_client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=KEYS[0],
        aws_secret_access_key=KEYS[1],
    )
    if not upload:
        client.create_bucket(Bucket=BUCKET)
        for _ in _parts():
            pass
        return
    upload_id = client.create_multipart_upload(Bucket=BUCKET, Key="botocore.bin")["UploadId"]
    etags = []
    for number, body in enumerate(_parts(), 1):
        answer = client.upload_part(
            Bucket=BUCKET, Key="botocore.bin", UploadId=upload_id, PartNumber=number, Body=body
        )
        etags.append({"PartNumber": number, "ETag": answer["ETag"]})
    client.complete_multipart_upload(
        Bucket=BUCKET, Key="botocore.bin", UploadId=upload_id, MultipartUpload={"Parts": etags}
    )


async def _with_tfbulk(endpoint: str, *, upload: bool, spool: bool) -> None:
    import os
    import tempfile

    from tfbulk.pipeline.s3client import Body, Bucket, S3Client
    from tfbulk.pipeline.s3spool import Spool
    from tfbulk.pipeline.transport import CurlOptions, CurlTransport
    from tfbulk.signing.s3 import AwsCredentials

    transport = CurlTransport(CurlOptions(http_version="1.1"))
    client = S3Client(
        transport, Bucket(BUCKET, "us-east-1", endpoint), AwsCredentials(*KEYS), time.time
    )
    if not upload:
        for _ in _parts():
            pass
        return
    upload_id = await client.create_upload("tfbulk.bin")
    etags = []
    with tempfile.TemporaryDirectory() as folder:
        spooled = Spool(Path(folder)) if spool else None
        for number, made in enumerate(_parts(), 1):
            md5 = hashlib.md5(made, usedforsecurity=False).digest()
            body: Body = made
            if spooled is not None:
                spooled.reset()
                os.write(spooled.fd, made)
                body = spooled.body(len(made))
                del made
            etags.append(await client.upload_part("tfbulk.bin", upload_id, number, body, md5))
    await client.complete("tfbulk.bin", upload_id, etags)
    await transport.aclose()


if __name__ == "__main__":
    main()
