"""The few S3 calls the S3 destination makes, over the engine's own libcurl transport.

Measured against botocore on a 64 MiB upload (benchmarks/s3_upload_cost.py,
docs/scaling.md): SigV4 header signing over the transport the downloads already use costs
less CPU and memory than botocore, and keeps one HTTP stack and no new dependency. Each
request is signed at the moment it is sent; the payload goes unsigned and each body
carries its Content-MD5, which S3 checks. Imported only when --dest is an s3:// URL.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

import httpx

from tfbulk import __version__
from tfbulk.pipeline.transport import UPLOAD, FileBody
from tfbulk.signing import redact
from tfbulk.signing.s3 import AwsCredentials, object_url, sign_request

_TAG = re.compile(rb"<(Code|Message|UploadId|ETag)>([^<]{0,400})</\1>")
_USER_AGENT = f"tfbulk/{__version__}"
Body = bytes | bytearray | memoryview | FileBody  # a FileBody is read as it is sent
_HEAD_ERRORS = {403: "AccessDenied", 404: "NoSuchBucket"}  # a HEAD's answer has no body


@dataclass(frozen=True)
class Bucket:
    """Where objects go: the bucket, its endpoint (path style) or AWS's, and the region."""

    name: str
    region: str
    endpoint_url: str | None = None


class S3Error(Exception):
    """S3 refused a request: its HTTP status and the XML error's Code and Message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"S3 said HTTP {status} {code}: {redact(message)}".rstrip(": "))
        self.status = status
        self.code = code


class S3Client:
    """One bucket's objects and multipart uploads, each call one signed request."""

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport,
        bucket: Bucket,
        credentials: AwsCredentials,
        clock: Callable[[], float],
    ) -> None:
        self._transport = transport
        self.bucket = bucket
        self._credentials = credentials
        self._clock = clock

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def check_bucket(self) -> None:
        """The bucket exists and these credentials may use it (S3Error if not)."""
        response = await self._send("HEAD", "")
        if response.status_code >= 300:
            raise S3Error(response.status_code, _HEAD_ERRORS.get(response.status_code, ""), "")

    async def head(self, key: str) -> int | None:
        """The size of the object at `key`, or None if there is none."""
        response = await self._send("HEAD", key)
        if response.status_code == 404:
            return None
        _raise_for(response)
        return int(response.headers.get("content-length", "0"))

    async def put(self, key: str, body: Body, md5: bytes) -> str:
        """Store `body` (whose MD5 digest is `md5`) as the object at `key`; its ETag."""
        response = await self._send("PUT", key, body=body, md5=md5)
        _raise_for(response)
        return str(response.headers.get("etag", ""))

    async def create_upload(self, key: str) -> str:
        """Start a multipart upload: its upload ID (nothing is visible at `key` yet)."""
        response = await self._send("POST", key, "uploads", body=b"")
        _raise_for(response)
        return _field(response, b"UploadId")

    async def upload_part(
        self, key: str, upload_id: str, number: int, body: Body, md5: bytes
    ) -> str:
        """Upload part `number` (1-based) of an upload; its ETag, for the completion.
        `md5` is the body's digest, computed by the caller off the event loop."""
        query = f"partNumber={number}&uploadId={quote(upload_id, safe='')}"
        response = await self._send("PUT", key, query, body=body, md5=md5)
        _raise_for(response)
        return str(response.headers.get("etag", ""))

    async def complete(self, key: str, upload_id: str, etags: list[str]) -> str:
        """Join the parts: the object appears at `key` now, whole, or not at all."""
        parts = "".join(
            f"<Part><PartNumber>{number}</PartNumber><ETag>{etag}</ETag></Part>"
            for number, etag in enumerate(etags, 1)
        )
        body = f"<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>".encode()
        md5 = hashlib.md5(body, usedforsecurity=False).digest()
        query = f"uploadId={quote(upload_id, safe='')}"
        response = await self._send("POST", key, query, body=body, md5=md5)
        _raise_for(response)
        if b"<Error>" in response.content:  # S3 may fail a completion inside a 200
            raise _error(response)
        return _field(response, b"ETag")

    async def abort(self, key: str, upload_id: str) -> None:
        """Drop an upload and its parts (one already gone is not an error)."""
        query = f"uploadId={quote(upload_id, safe='')}"
        response = await self._send("DELETE", key, query, body=b"")
        if response.status_code != 404:
            _raise_for(response)

    async def get(self, key: str) -> httpx.Response:
        """The object, its body streamed (for `verify --full`): the caller closes it."""
        return await self._send("GET", key, stream=True)

    async def _send(
        self,
        method: str,
        key: str,
        query: str = "",
        *,
        body: Body | None = None,
        md5: bytes | None = None,
        stream: bool = False,
    ) -> httpx.Response:
        """One request, signed now; with `md5` its Content-MD5, which S3 checks."""
        url = object_url(self.bucket.name, key, self.bucket.region, self.bucket.endpoint_url)
        url = f"{url}?{query}" if query else url
        signed = {"content-md5": base64.b64encode(md5).decode()} if md5 is not None else {}
        signed |= sign_request(
            method, url, signed, self._credentials, self.bucket.region, self._clock()
        )
        request = httpx.Request(
            method,
            url,
            headers={"user-agent": _USER_AGENT, **signed},
            extensions={UPLOAD: body} if body is not None else {},
        )
        try:
            response = await self._transport.handle_async_request(request)
        finally:
            # The transport's exchange ends in a reference cycle with the request: left in
            # it, each part's body would live until the next garbage collection.
            request.extensions.pop(UPLOAD, None)
        if not stream:
            await response.aread()
        return response


def _raise_for(response: httpx.Response) -> None:
    if response.status_code >= 300:
        raise _error(response)


def _error(response: httpx.Response) -> S3Error:
    found = dict(_TAG.findall(response.content))
    code = found.get(b"Code", b"").decode(errors="replace") or response.reason_phrase
    return S3Error(response.status_code, code, found.get(b"Message", b"").decode(errors="replace"))


def _field(response: httpx.Response, name: bytes) -> str:
    found: dict[bytes, bytes] = dict(_TAG.findall(response.content))
    if name not in found:
        raise S3Error(response.status_code, "MalformedResponse", f"no {name.decode()} in it")
    return found[name].decode().replace("&quot;", '"')
