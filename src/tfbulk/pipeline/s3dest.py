"""--dest s3://BUCKET/PREFIX: downloads streamed into an S3-compatible store.

The second kind of destination beside the local folder, for the same engine. A body is
cut into parts as it arrives: a body smaller than one part goes up in a single PUT, a
larger one as a multipart upload, one part in flight per download (the transfer pauses
while its part uploads). A part waits for its upload in a spool file (s3spool.py), not in
memory, so a download holds a writer's batch whatever the part or file size. Every part
carries its Content-MD5, computed as its bytes reach the spool; the whole body is checked
like a local one (length, container, the source's MD5 when its ETag is one) before it is
made visible, and the object appears only with the PUT or the CompleteMultipartUpload that
ends a verified fetch. Nothing but the spool files (unnamed, a part each) touches the disk.

An upload that did not end in an object (a failed attempt started over, a failed
segment, a stopped run) is aborted before the run ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import anyio.from_thread
import httpx

from tfbulk.credentials import load_aws_credentials
from tfbulk.errors import BadInput
from tfbulk.pipeline.checks import HEAD_SIZE, MIN_SIZE, VerifyError, check_body, etag_md5
from tfbulk.pipeline.destination import Existing
from tfbulk.pipeline.events import Transfer
from tfbulk.pipeline.fetch import USER_AGENT, Fetched, Fetcher, Validator, _PartBody
from tfbulk.pipeline.retry import AttemptFailed, Kind
from tfbulk.pipeline.s3client import Bucket, S3Client, S3Error
from tfbulk.pipeline.s3recheck import recheck_prefix
from tfbulk.pipeline.s3resume import Recorded, UploadLog
from tfbulk.pipeline.s3spool import PartDigests, Spool
from tfbulk.pipeline.transport import CurlOptions, CurlTransport, FileBody
from tfbulk.pipeline.writer import DiskWriter, PartWriter
from tfbulk.settings import S3_SCHEME, S3Dest, S3Location, Tuning, s3_work_folder
from tfbulk.signing import redact
from tfbulk.signing.s3 import AwsCredentials
from tfbulk.state import Status, Store

MAX_PARTS = 10_000


@dataclass(eq=False)
class S3Part:
    """The S3 counterpart of a `.part`: one claim's object and its upload so far.

    `size` is what is already stored in finished parts (0 until a multipart upload has
    one): a new attempt continues from there. `pending` is a body smaller than a part,
    held for its PUT once verified.
    """

    dest: S3Destination
    key: str
    size: int = 0
    upload_id: str | None = None
    etags: list[str] = field(default_factory=list)
    sums: list[tuple[int, str]] | None = field(default_factory=list)  # each part's size, MD5
    pending: tuple[FileBody, bytes] | None = None  # (the spooled body, its MD5 digest)
    spool: Spool | None = None  # where this claim's parts wait for their upload
    published: bool = False
    head: bytes = b""  # the body's first bytes, for the container check of a resume
    digest: hashlib._Hash | None = None  # the running MD5 of the `size` bytes stored
    md5_partial: bool = False  # resumed from another run: the MD5 misses what it stored
    body_md5: str | None = None  # recorded by a run whose parts hold the whole body

    @property
    def final(self) -> str:
        return f"{S3_SCHEME}{self.dest.location.bucket}/{self.key}"

    @property
    def folder(self) -> str:
        """No folder to sync: the group commit only records the batch."""
        return ""

    @property
    def path(self) -> str:
        return self.final

    def start_over(self) -> None:
        """Drop the upload so far (aborted in the background); the next attempt starts at 0."""
        self._drop_upload()
        self.size, self.pending, self.head, self.digest = 0, None, b"", None
        self.md5_partial, self.body_md5 = False, None

    def continue_at(self, offset: int) -> None:
        assert offset == self.size

    def publish(self) -> None:
        """The object was made visible by the fetch itself (see S3Fetcher)."""

    def close(self) -> None:
        """Done with this claim. An upload with finished parts stays for the next claim to
        resume (the run's end aborts those of failed segments); one without is aborted."""
        if not self.published and not self.etags:
            self._drop_upload()
        self.pending = None
        if self.spool is not None:
            self.spool.close()
            self.spool = None

    def _drop_upload(self) -> None:
        if self.upload_id is not None:
            self.dest.abort_soon(self.key, self.upload_id)
        self.upload_id, self.etags, self.sums = None, [], []

    async def make_visible(self, client: S3Client) -> str:
        """PUT the held body, or complete the multipart upload: the object appears now."""
        if self.upload_id is not None:
            etag = await client.complete(self.key, self.upload_id, self.etags)
            await anyio.to_thread.run_sync(self.dest.log.forget, self.key, self.upload_id)
        else:
            assert self.pending is not None
            body, md5 = self.pending
            etag = await client.put(self.key, body, md5)
        self.published, self.pending, self.upload_id = True, None, None
        return etag


class S3Destination:
    """The bucket and prefix of a run: where planned paths go, what is already there, and
    the aborts of uploads that will not be completed."""

    def __init__(self, location: S3Location, client: S3Client, log: UploadLog) -> None:
        self.location = location
        self.client = client
        self.log = log
        self.root = str(location)
        self._aborts: set[asyncio.Task[None]] = set()
        self._loop = asyncio.get_running_loop()

    def open(self, relative: str, *, known_size: int | None, replace: bool) -> S3Part | Existing:
        """On a worker thread of the run: the object already there with the expected size
        (`skipped`, unless `replace`), else a new upload to it. A HEAD that fails counts as
        no object: the download then meets the same trouble and is retried as usual."""
        key = self.location.key(relative)
        if not replace:
            try:
                size = anyio.from_thread.run(self.client.head, key)
            except (S3Error, httpx.HTTPError):
                size = None
            if size is not None and size == (known_size or max(size, MIN_SIZE)):
                return Existing(size)
        recorded = self.log.find(key)
        if recorded is None:
            return S3Part(self, key)
        return S3Part(
            self,
            key,
            recorded.stored,
            recorded.upload_id,
            list(recorded.etags),
            head=recorded.head,
            body_md5=recorded.body_md5,
            sums=list(recorded.sums) if recorded.sums is not None else None,
        )

    def abort_soon(self, key: str, upload_id: str) -> None:
        """Abort an upload in the background; `drain` waits for it."""
        task = self._loop.create_task(self._abort(key, upload_id))
        self._aborts.add(task)
        task.add_done_callback(self._aborts.discard)

    async def _abort(self, key: str, upload_id: str) -> None:
        # Should this fail, the bucket's lifecycle rule for incomplete uploads is the backstop.
        with contextlib.suppress(S3Error, httpx.HTTPError):
            await self.client.abort(key, upload_id)
            await anyio.to_thread.run_sync(self.log.forget, key, upload_id)

    async def sweep(self, store: Store) -> None:
        """Abort the recorded uploads of segments that failed: they will not be resumed
        (`tfbulk retry` starts them afresh)."""
        recorded = await anyio.to_thread.run_sync(self.log.keys)
        if not recorded:
            return
        failed = await anyio.to_thread.run_sync(lambda: store.records(status=Status.FAILED))
        for record in failed:
            key = self.location.key(record.path) if record.path else None
            found = await anyio.to_thread.run_sync(self.log.find, key) if key in recorded else None
            if key is not None and found is not None:
                self.abort_soon(key, found.upload_id)
        await self.drain()

    async def drain(self) -> None:
        """Wait for the aborts under way (the end of a run)."""
        while self._aborts:
            await asyncio.gather(*list(self._aborts), return_exceptions=True)

    @staticmethod
    def sync_folders(_parts: list[object]) -> dict[str, OSError]:
        return {}

    def raise_if_disk(self, exc: OSError, path: object) -> None:
        """No local disk here: nothing stops the run for it."""

    def close(self) -> None:
        """Nothing held open: the transport belongs to the run."""


class S3Writer:
    """The S3 counterpart of the DiskWriter: parts of `part_size` bytes, each spooled to a
    file in `folder` by the writer threads (which also digest it), one in flight a download."""

    def __init__(self, client: S3Client, part_size: int, folder: Path) -> None:
        self.client = client
        self.part_size = part_size
        self.folder = folder
        self.threads = DiskWriter()

    def open(
        self, part: S3Part, offset: int, digest: hashlib._Hash, resume: Callable[[], None]
    ) -> PartUploader:
        assert offset == part.size
        part.digest = digest
        if part.spool is None:
            part.spool = Spool(self.folder)
        return PartUploader(self, part, part.spool, digest, resume)

    def close(self) -> None:
        self.threads.close()


class PartUploader:
    """One attempt's body going up: `take` on the loop hands the bytes to a writer thread
    that spools and digests them; a full part uploads from the spool while the transfer
    waits (take says False), then it is woken."""

    def __init__(
        self,
        writer: S3Writer,
        part: S3Part,
        spool: Spool,
        digest: hashlib._Hash,
        resume: Callable[[], None],
    ) -> None:
        self._writer = writer
        self._part = part
        self._spool = spool
        self.digest = digest
        self._resume = resume
        spool.reset()
        self._digests = PartDigests(digest)  # the whole body's MD5 and this part's
        self._filling: PartWriter | None = None  # its writer, opened with its first bytes
        self._filled = 0  # bytes of the part being filled, taken so far
        self._uploading: asyncio.Task[None] | None = None
        self.error: BaseException | None = None

    @property
    def head(self) -> bytes:
        return self._part.head

    @property
    def md5(self) -> str | None:
        """The whole body's MD5, unless part of it was stored by an earlier run."""
        return None if self._part.md5_partial else self.digest.hexdigest()

    def take(self, chunk: bytes) -> bool:
        if self.error is not None:
            raise self.error
        if self._uploading is not None:
            return False
        room = self._writer.part_size - self._filled
        if not self._fill().take(chunk if len(chunk) < room else chunk[:room]):
            return False  # the writer thread is behind: nothing taken
        if len(self._part.head) < HEAD_SIZE:
            self._part.head += chunk[: HEAD_SIZE - len(self._part.head)]
        self._filled += min(len(chunk), room)
        if len(chunk) >= room:  # this part is full: up it goes, the transfer waits
            self._uploading = asyncio.get_running_loop().create_task(self._turn(chunk[room:]))
        return True

    async def _turn(self, rest: bytes) -> None:
        """Upload the full part, then start the next one with what came after it."""
        try:
            await self._flush()
            await self._upload_part()
            if rest:
                taken = self._fill().take(rest)  # a fresh writer has no backlog
                assert taken
                self._filled = len(rest)
        except BaseException as exc:
            self.error = _failure(exc)
        finally:
            self._uploading = None
            self._resume()

    def _fill(self) -> PartWriter:
        """The writer of the part being filled (one a part: a finished one is done)."""
        if self._filling is None:
            self._filling = self._writer.threads.spool(self._spool.fd, self._digests, self._resume)
        return self._filling

    async def _flush(self) -> None:
        """Every byte taken is in the spool and digested (a spool error as an attempt's)."""
        if self._filling is None:
            return
        try:
            await self._filling.finish()
        except OSError as exc:
            raise AttemptFailed(
                Kind.CLIENT, f"cannot spool a part in {self._writer.folder}: {exc.strerror}"
            ) from None

    async def _upload_part(self) -> None:
        """Upload the spooled part (flushed), record it, and empty the spool for the next."""
        part, client = self._part, self._writer.client
        if len(part.etags) >= MAX_PARTS:
            raise AttemptFailed(
                Kind.INVALID,
                f"more than {MAX_PARTS:,} parts: raise --dest-part-size",
                permanent=True,
            )
        if part.upload_id is None:
            part.upload_id = await client.create_upload(part.key)
            await self._record(None)  # recorded before its first part: a kill orphans nothing
        md5 = self._digests.part.digest()
        number = len(part.etags) + 1
        etag = await client.upload_part(
            part.key, part.upload_id, number, self._spool.body(self._filled), md5
        )
        part.etags.append(etag)
        if part.sums is not None:
            part.sums.append((self._filled, md5.hex()))
        part.size += self._filled
        await self._record(None)
        self._next_part()

    def _next_part(self) -> None:
        self._spool.reset()
        self._filled = 0
        self._digests, self._filling = PartDigests(self.digest), None

    async def _record(self, body_md5: str | None) -> None:
        """The upload so far in the state DB (with the body's MD5 once every part is up)."""
        part = self._part
        assert part.upload_id is not None
        sums = list(part.sums) if part.sums is not None else None
        upload = Recorded(part.upload_id, part.head, list(part.etags), part.size, body_md5, sums)
        await anyio.to_thread.run_sync(part.dest.log.save, part.key, upload)

    async def finish(self) -> None:
        """Every byte taken is digested; the last part is up (or spooled, for a small
        body's PUT once verified). Raises the first upload error."""
        if self._uploading is not None:
            await self._uploading
        if self.error is not None:
            raise self.error
        await self._flush()
        if self._part.upload_id is not None or len(self._part.etags):
            if self._filled:
                await self._upload_part()
            await self._record(self.md5)  # a kill before the completion need fetch no more
        else:
            self._part.pending = (self._spool.body(self._filled), self._digests.part.digest())

    async def abandon(self) -> None:
        """After a failed attempt: the part in flight ends; the bytes after it are dropped
        (a new attempt continues at the last part boundary)."""
        if self._uploading is not None:
            await asyncio.gather(self._uploading, return_exceptions=True)
        with contextlib.suppress(AttemptFailed):
            await self._flush()  # the thread is done with the spool before it is emptied
        self._next_part()


class _S3Body(_PartBody):
    """The fetch's sink for an S3 part: what a failed attempt keeps is what is uploaded."""

    async def keep(self) -> None:
        if self.writer is not None:
            await self.writer.abandon()  # type: ignore[attr-defined]


class S3Fetcher(Fetcher):
    """A fetch whose verified body becomes an object before it returns."""

    body_class = _S3Body

    async def prefix(  # type: ignore[override]
        self, part: S3Part, offset: int
    ) -> tuple[bytes, hashlib._Hash] | None:
        """What the parts stored so far (`offset` bytes) began with, and their running MD5."""
        assert offset == part.size
        if part.digest is None:  # stored by an earlier run: its bytes are not here to hash
            part.md5_partial = True
            return part.head, hashlib.md5(usedforsecurity=False)
        return part.head, part.digest

    async def fetch(
        self,
        url: str,
        part: S3Part,  # type: ignore[override]
        validator: Validator | None,
        transfer: Transfer,
        remember: Callable[[Validator], None],
    ) -> Fetched:
        if _stored_whole(part, validator):
            assert validator is not None
            fetched = _already_stored(part, validator, transfer)
        else:
            if _to_recheck(part, validator):
                assert validator is not None
                await self._recheck(url, part, validator)
            fetched = await super().fetch(url, part, validator, transfer, remember)  # type: ignore[arg-type]
        try:
            await part.make_visible(self._dest.client)  # type: ignore[attr-defined]
        except BaseException as exc:
            failure = _failure(exc)
            if isinstance(failure, AttemptFailed):
                failure.restart = True  # the upload is not resumed past its completion
            raise failure from None
        return fetched

    async def _recheck(self, url: str, part: S3Part, validator: Validator) -> None:
        """Read the parts an earlier run stored from the source again, hashing them only
        (s3recheck.py): the whole body's MD5 is then checked as for any download."""
        if part.sums is None:
            raise AttemptFailed(
                Kind.NETWORK,
                "resume check: the stored parts were recorded by an older tfbulk and cannot "
                "be checked; starting over",
                restart=True,
            )
        assert validator.if_range is not None
        headers = [
            ("User-Agent", USER_AGENT),
            ("Accept-Encoding", "identity"),
            ("Range", f"bytes=0-{part.size - 1}"),
            ("If-Range", validator.if_range),
        ]
        request = httpx.Request("GET", url, headers=headers)
        part.digest = await recheck_prefix(self._transport, request, part.sums, validator.size)
        part.md5_partial = False


def _to_recheck(part: S3Part, validator: Validator | None) -> bool:
    """Parts stored by another run are continued, and the source's ETag is an MD5 that
    the whole body can be checked against."""
    return (
        part.size > 0
        and part.digest is None
        and validator is not None
        and validator.if_range is not None
        and (validator.size is None or part.size <= validator.size)
        and etag_md5(validator.etag) is not None
    )


def _stored_whole(part: S3Part, validator: Validator | None) -> bool:
    """An earlier run's parts hold the whole body, and what it recorded can be checked
    against the source's ETag without fetching it again."""
    return (
        part.upload_id is not None
        and part.size > 0
        and validator is not None
        and validator.size == part.size
        and (part.body_md5 is not None or etag_md5(validator.etag) is None)
    )


def _already_stored(part: S3Part, validator: Validator, transfer: Transfer) -> Fetched:
    """Verify what the parts hold as a fetch would have (size, container, MD5), with no
    request: what remains is the completion."""
    try:
        check_body(part.head, part.size, validator.size, part.body_md5, validator.etag)
    except VerifyError as exc:
        raise AttemptFailed(Kind.INVALID, f"verification failed: {exc}", restart=True) from None
    transfer.size = transfer.received = transfer.resumed_from = part.size
    return Fetched(part.size, part.body_md5, validator.etag, 0)


def _failure(exc: BaseException) -> BaseException:
    """An S3 or connection error while storing, as the AttemptFailed the engine decides on."""
    match exc:
        case AttemptFailed():
            return exc
        case S3Error(code="NoSuchUpload"):  # aborted meanwhile: its record was stale
            return AttemptFailed(
                Kind.NETWORK, f"storing the object: {exc}; starting over", restart=True
            )
        case S3Error():
            # The store's refusals are not the CDN's: a 403 or 404 here is about the
            # bucket, not the URL's signature or the video (which "forbidden"/"gone" mean).
            kind = Kind.SERVER if exc.status == 429 or exc.status >= 500 else Kind.CLIENT
            return AttemptFailed(kind, f"storing the object: {exc}")
        case httpx.TransportError():
            detail = redact(str(exc)) or type(exc).__name__
            return AttemptFailed(Kind.NETWORK, f"storing the object: connection error: {detail}")
    return exc


def preflight(settings: S3Dest, tuning: Tuning) -> None:
    """Before the state DB is touched: credentials found and the bucket answering with
    them, or exit 2 with the one thing to fix."""

    async def check() -> None:
        client = open_client(settings, load_credentials(settings), tuning)
        try:
            await check_reachable(settings, client)
        finally:
            await client.aclose()

    anyio.run(check)


async def open_sink(
    settings: S3Dest, tuning: Tuning, store: Store, state: str
) -> tuple[S3Destination, S3Writer, Callable[[], Awaitable[None]]]:
    """On the run's event loop: the destination and writer of an S3 run, and what ends
    them (failed segments' uploads aborted, the uploads' transport closed). Uploads of
    segments that failed since they were recorded are aborted first."""
    client = open_client(settings, load_credentials(settings), tuning)
    log = await anyio.to_thread.run_sync(UploadLog, state)
    dest = S3Destination(settings.location, client, log)
    await dest.sweep(store)

    writer = S3Writer(client, settings.part_size, s3_work_folder(settings.location))

    async def aclose() -> None:
        await dest.drain()
        await dest.sweep(store)
        await client.aclose()
        writer.close()
        log.close()

    return dest, writer, aclose


def load_credentials(settings: S3Dest) -> AwsCredentials:
    """The destination's AWS credentials, or exit 2 naming where they were looked for."""
    return load_aws_credentials(settings.profile, ("--dest s3://", "--dest-profile"))[0]


def open_client(settings: S3Dest, credentials: AwsCredentials, tuning: Tuning) -> S3Client:
    """The destination's client over a transport of its own (uploads never wait behind
    downloads for a connection), HTTP/1.1 as S3 speaks it."""
    transport = CurlTransport(
        CurlOptions(
            http_version="1.1",
            max_connections=tuning.concurrency,
            read_timeout=tuning.read_timeout,
            connect_timeout=tuning.connect_timeout,
        )
    )
    bucket = Bucket(settings.location.bucket, settings.region, settings.endpoint_url)
    return S3Client(transport, bucket, credentials, time.time)


async def check_reachable(settings: S3Dest, client: S3Client) -> None:
    """Before anything is written: the bucket answers, or exit 2 with what to fix."""
    where = settings.endpoint_url or f"S3 in {settings.region}"
    try:
        await client.check_bucket()
    except httpx.TransportError as exc:
        detail = redact(str(exc)) or type(exc).__name__
        raise BadInput(
            f"--dest {settings.location}: cannot reach {where} ({detail}); "
            "check --dest-endpoint-url and the network"
        ) from None
    except S3Error as exc:
        hint = _BUCKET_HINTS.get(exc.status, "check --dest, --dest-region and the credentials")
        raise BadInput(
            f"--dest {settings.location}: {where} said HTTP {exc.status}; {hint}"
        ) from None


_BUCKET_HINTS = {
    403: "the credentials may not use this bucket: check AWS_* or --dest-profile",
    404: "there is no such bucket: create it or fix --dest",
    301: "the bucket is in another region: set --dest-region",
}
