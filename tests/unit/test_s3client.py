"""The S3 calls of the S3 destination, against a real S3-compatible server (moto)."""

from __future__ import annotations

import gc
import hashlib
import sys
import time

import anyio
import pytest

from tests.s3server import ACCESS_KEY, REGION, SECRET_KEY, S3Server
from tfbulk.pipeline.s3client import Bucket, S3Client, S3Error
from tfbulk.pipeline.transport import CurlOptions, CurlTransport
from tfbulk.signing.s3 import AwsCredentials

BUCKET = "tfbulk-test"


def md5(data: bytes) -> bytes:
    return hashlib.md5(data).digest()


def run(server: S3Server, steps, bucket: str = BUCKET):  # type: ignore[no-untyped-def]
    async def main():  # type: ignore[no-untyped-def]
        transport = CurlTransport(CurlOptions(http_version="1.1"))
        client = S3Client(
            transport,
            Bucket(bucket, REGION, server.url),
            AwsCredentials(ACCESS_KEY, SECRET_KEY),
            time.time,
        )
        try:
            return await steps(client)
        finally:
            await transport.aclose()

    return anyio.run(main)


def test_put_then_head(s3_server: S3Server) -> None:
    body = bytes(range(256)) * 40

    async def steps(client: S3Client) -> tuple[int | None, int | None, str]:
        before = await client.head("videos/a b/é.mp4")
        etag = await client.put("videos/a b/é.mp4", body, md5(body))
        return before, await client.head("videos/a b/é.mp4"), etag

    before, after, etag = run(s3_server, steps)
    assert (before, after) == (None, len(body))
    assert etag.strip('"') == hashlib.md5(body).hexdigest()
    assert s3_server.object(BUCKET, "videos/a b/é.mp4") == body


def test_multipart_appears_only_when_complete(s3_server: S3Server) -> None:
    first, second = b"\x01" * (5 << 20), b"\x02" * 1000

    async def steps(client: S3Client) -> list[str]:
        upload = await client.create_upload("big.mp4")
        etags = [
            await client.upload_part("big.mp4", upload, 1, first, md5(first)),
            await client.upload_part("big.mp4", upload, 2, memoryview(second), md5(second)),
        ]
        seen = s3_server.keys(BUCKET)
        await client.complete("big.mp4", upload, etags)
        return seen

    assert run(s3_server, steps) == []
    assert s3_server.object(BUCKET, "big.mp4") == first + second
    assert s3_server.open_uploads(BUCKET) == []


def test_abort_leaves_nothing(s3_server: S3Server) -> None:
    async def steps(client: S3Client) -> None:
        upload = await client.create_upload("gone.mp4")
        await client.upload_part("gone.mp4", upload, 1, b"x" * 100, md5(b"x" * 100))
        await client.abort("gone.mp4", upload)

    run(s3_server, steps)
    assert s3_server.open_uploads(BUCKET) == []
    assert s3_server.keys(BUCKET) == []


def test_a_wrong_content_md5_is_refused(s3_server: S3Server) -> None:
    async def steps(client: S3Client) -> None:
        await client.put("bad.mp4", b"the bytes", md5(b"other bytes"))

    with pytest.raises(S3Error) as caught:
        run(s3_server, steps)
    assert caught.value.status == 400
    assert s3_server.keys(BUCKET) == []


def test_a_missing_bucket_is_an_s3_error_with_its_code(s3_server: S3Server) -> None:
    async def steps(client: S3Client) -> None:
        await client.put("x.mp4", b"x", md5(b"x"))

    with pytest.raises(S3Error, match="NoSuchBucket") as caught:
        run(s3_server, steps, bucket="no-such-bucket")
    assert caught.value.status == 404


def test_a_body_is_not_kept_once_uploaded(s3_server: S3Server) -> None:
    """Left referenced (by the transport's request), every 16 MiB part of a download would
    stay in memory until a garbage collection: RSS would grow with the file's size."""
    body = bytearray(b"x" * 100_000)
    before = sys.getrefcount(body)

    async def steps(client: S3Client) -> None:
        await client.put("kept.mp4", body, md5(bytes(body)))
        upload = await client.create_upload("big.mp4")
        await client.upload_part("big.mp4", upload, 1, body, md5(bytes(body)))
        await client.abort("big.mp4", upload)

    gc.disable()
    try:
        run(s3_server, steps)
        assert sys.getrefcount(body) == before
    finally:
        gc.enable()
