"""Whole-file checks: is this a complete video, or an error page that came with a 200?

Pure functions over bytes and sizes, so they serve both a fresh download and the
"a valid file is already there" decision without knowing about HTTP.
"""

from __future__ import annotations

import hashlib
import os
import re

MIN_SIZE = 1024
HEAD_SIZE = 16
_MP4_BOXES = (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot")
_EBML = b"\x1a\x45\xdf\xa3"
_MD5_ETAG = re.compile(r'^"?([0-9a-fA-F]{32})"?$')  # a weak W/ ETag is no digest of the bytes


class VerifyError(ValueError):
    """The body is not the video we asked for; the message says what it looks like instead."""


def container(head: bytes) -> str | None:
    """The container a file's first bytes announce, or None if none we know."""
    if len(head) >= 8 and head[4:8] in _MP4_BOXES:
        return "mp4"
    if head.startswith(_EBML):
        return "matroska"
    if head.startswith(b"FLV\x01"):
        return "flv"
    return None


def describe(head: bytes) -> str:
    """A short, log-safe description of bytes that are not a video."""
    text = head.lstrip()[:5].lower()
    if text.startswith((b"<!doc", b"<html")):
        return "an HTML page"
    if text.startswith(b"<?xml") or text.startswith(b"<"):
        return "an XML/HTML document"
    if text.startswith((b"{", b"[")):
        return "a JSON document"
    return f"unknown bytes {head[:8].hex()}"


def etag_md5(etag: str | None) -> str | None:
    """The MD5 an ETag stands for when it is a plain one (32 hex digits, not multipart)."""
    if not etag:
        return None
    match = _MD5_ETAG.match(etag.strip())
    return match.group(1).lower() if match else None


def check_body(
    head: bytes, size: int, expected_size: int | None, md5: str | None, etag: str | None
) -> None:
    """Raise VerifyError unless the downloaded body is a complete, plausible video."""
    if expected_size is not None and size != expected_size:
        raise VerifyError(f"got {size} bytes, the server announced {expected_size}")
    if size < MIN_SIZE:
        raise VerifyError(f"only {size} bytes, too small to be a video ({describe(head)})")
    if container(head) is None:
        raise VerifyError(f"not a video: the body is {describe(head)}")
    expected_md5 = etag_md5(etag)
    if expected_md5 and md5 and md5 != expected_md5:
        raise VerifyError(f"MD5 {md5} does not match the ETag {expected_md5}")


def acceptable(head: bytes, size: int, known_size: int | None = None) -> bool:
    """Would we accept a file with these first bytes and size as the video (the `skipped`
    decision for a file already at the final name)?"""
    if known_size is not None and size != known_size:
        return False
    return size >= MIN_SIZE and container(head) is not None


def read_digest(fd: int, size: int, block: int = 1 << 20) -> tuple[bytes, hashlib._Hash]:
    """The first bytes and the running MD5 of the first `size` bytes of an open file: a
    resume continues the digest, a `.part` that turned out complete is checked by it, and
    `tfbulk verify --full` compares it with the one recorded."""
    digest = hashlib.md5(usedforsecurity=False)
    head = os.pread(fd, HEAD_SIZE, 0)
    position = 0
    while position < size:
        data = os.pread(fd, min(block, size - position), position)
        if not data:
            break
        digest.update(data)
        position += len(data)
    return head, digest
