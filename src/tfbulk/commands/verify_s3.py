"""`tfbulk verify --dest s3://…`: are the finished objects still in the bucket, whole?

A HEAD per finished segment compares the object's size with the one recorded; `--full`
also reads each object back and compares its MD5 and container with what was verified
at download. Imported only for an s3:// destination.
"""

from __future__ import annotations

import hashlib

import anyio
import httpx

from tfbulk.commands.verify import AuditReport, Problem
from tfbulk.pipeline.checks import HEAD_SIZE, container
from tfbulk.pipeline.s3client import S3Client, S3Error
from tfbulk.pipeline.s3dest import check_reachable, load_credentials, open_client
from tfbulk.settings import S3Dest, Tuning
from tfbulk.state import SegmentRecord, Store


def audit_bucket(
    store: Store, settings: S3Dest, *, full: bool, course: int | None = None
) -> AuditReport:
    """Check every finished segment's object; `full` also reads it against the MD5."""

    async def main() -> AuditReport:
        client = open_client(settings, load_credentials(settings), Tuning())
        try:
            await check_reachable(settings, client)
            report = AuditReport()
            for record in store.finished(course=course):
                report.checked += 1
                reason = await _problem(client, settings, record, full=full)
                if reason:
                    problem = Problem(record.segment_id, record.course_id, record.path, reason)
                    report.problems.append(problem)
            return report
        finally:
            await client.aclose()

    return anyio.run(main)


async def _problem(
    client: S3Client, settings: S3Dest, record: SegmentRecord, *, full: bool
) -> str | None:
    if record.path is None:
        return None
    key = settings.location.key(record.path)
    try:
        size = await client.head(key)
        if size is None:
            return "object is missing"
        if record.size is not None and size != record.size:
            return f"object has {size:,} bytes, {record.size:,} were recorded"
        return await _read_back(client, key, record) if full else None
    except (S3Error, httpx.HTTPError) as exc:
        return f"object cannot be read: {exc}"


async def _read_back(client: S3Client, key: str, record: SegmentRecord) -> str | None:
    """Stream the object through MD5 (a piece at a time) and check what it starts with."""
    response = await client.get(key)
    digest = hashlib.md5(usedforsecurity=False)
    head = b""
    try:
        if response.status_code != 200:
            return f"object cannot be read: HTTP {response.status_code}"
        async for piece in response.aiter_raw():
            head += piece[: HEAD_SIZE - len(head)] if len(head) < HEAD_SIZE else b""
            digest.update(piece)
    finally:
        await response.aclose()
    if container(head) is None:
        return "object is no longer a video"
    if record.md5 and digest.hexdigest() != record.md5:
        return "object's MD5 differs from the one recorded at download"
    return None
