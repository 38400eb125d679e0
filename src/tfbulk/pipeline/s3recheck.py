"""The check of an upload another run left half done, before it is continued.

The running MD5 of the bytes a killed run stored in its parts died with it, and S3 gives
no part back before the completion. So when the source's ETag is an MD5 (the whole body
can be verified), the stored prefix is read again from the source with a Range request
and hashed only (nothing is uploaded again): each part against the MD5 recorded when it
went up (a part that differs was stored from corrupted bytes, so the upload starts
over), and the whole digest continues from there as if this run had received those
bytes. The object then appears only if its whole MD5 matches, as for any download.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator

import anyio
import httpx

from tfbulk.pipeline.retry import AttemptFailed, Kind
from tfbulk.pipeline.transport import CurlTransport
from tfbulk.signing import redact

BATCH = 1 << 20  # bytes hashed at a time, on a worker thread (the loop only receives)
_CONTENT_RANGE = re.compile(r"bytes 0-(\d+)/(\d+|\*)")


async def recheck_prefix(
    transport: CurlTransport,
    request: httpx.Request,
    sums: list[tuple[int, str]],
    total: int | None,
) -> hashlib._Hash:
    """The running MD5 of the stored parts (`sums`: each one's size and MD5), read again
    with `request` (a Range from 0 with If-Range); AttemptFailed (start over) when the
    source cannot give those bytes of the same object or a part differs from them."""
    stored = sum(size for size, _ in sums)
    try:
        response = await transport.handle_async_request(request)
        try:
            _check_range(response, stored, total)
            return await _hash_parts(response.aiter_raw(), sums)
        finally:
            await response.aclose()
    except httpx.TransportError as exc:  # the next attempt checks again
        detail = redact(str(exc)) or type(exc).__name__
        raise AttemptFailed(Kind.NETWORK, f"resume check: connection error: {detail}") from None


def _check_range(response: httpx.Response, stored: int, total: int | None) -> None:
    match = _CONTENT_RANGE.fullmatch(response.headers.get("content-range", ""))
    whole = str(total) if total is not None else None
    if response.status_code != 206 or not match or int(match.group(1)) != stored - 1:
        raise _start_over(f"the source answered HTTP {response.status_code} to the re-read")
    if whole is not None and match.group(2) != whole:
        raise _start_over(f"the source's size is now {match.group(2)}, not {whole}")


async def _hash_parts(pieces: AsyncIterator[bytes], sums: list[tuple[int, str]]) -> hashlib._Hash:
    """The whole MD5 of the pieces, each part's checked against its recorded MD5."""
    whole = hashlib.md5(usedforsecurity=False)
    number, part, batch, batched, filled = 0, hashlib.md5(usedforsecurity=False), [], 0, 0
    async for piece in pieces:
        while piece:
            size, expected = sums[number]
            taken, piece = piece[: size - filled], piece[size - filled :]
            batch.append(taken)
            batched += len(taken)
            filled += len(taken)
            if filled == size or batched >= BATCH:
                await anyio.to_thread.run_sync(_feed, (whole, part), b"".join(batch))
                batch, batched = [], 0
            if filled < size:
                continue
            if part.hexdigest() != expected:
                raise _start_over(
                    f"part {number + 1} stored by an earlier run differs from the source's "
                    f"bytes now (MD5 {expected} then, {part.hexdigest()} now)",
                    kind=Kind.INVALID,
                )
            number, part, filled = number + 1, hashlib.md5(usedforsecurity=False), 0
            if number == len(sums):
                return whole
    raise _start_over("the source's re-read ended early")


def _feed(digests: tuple[hashlib._Hash, ...], data: bytes) -> None:
    for digest in digests:
        digest.update(data)


def _start_over(reason: str, kind: Kind = Kind.NETWORK) -> AttemptFailed:
    return AttemptFailed(kind, f"resume check: {reason}; starting over", restart=True)
