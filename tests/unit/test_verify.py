"""Whole-file checks: container sniffing, sizes, error pages and MD5-vs-ETag."""

from __future__ import annotations

import hashlib
import random
import struct

import pytest

from tfbulk.pipeline.checks import (
    HEAD_SIZE,
    MIN_SIZE,
    VerifyError,
    acceptable,
    check_body,
    container,
    describe,
    etag_md5,
)


def mp4_head(box_size: int = 32, brand: bytes = b"isom") -> bytes:
    return struct.pack(">I", box_size) + b"ftyp" + brand + b"\x00\x00\x02\x00"


MP4 = mp4_head()
MKV = b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81\x01\x42\xf2\x81"
FLV = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00\x12\x00\x00"
HTML = b"<!DOCTYPE html><html><body>Access Denied</body></html>"
XML = b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code></Error>'
JSON = b'{"message": "Forbidden"}'
MD5_A = "0123456789abcdef0123456789abcdef"
MD5_B = "fedcba9876543210fedcba9876543210"


# -- container ------------------------------------------------------------------------


@pytest.mark.parametrize("box_size", [0, 1, 8, 20, 24, 32, 0x1C, 0xFFFFFFFF])
def test_container_mp4_any_ftyp_box_size(box_size: int) -> None:
    assert container(mp4_head(box_size)) == "mp4"


@pytest.mark.parametrize("box", [b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"])
def test_container_mp4_other_leading_boxes(box: bytes) -> None:
    assert container(b"\x00\x00\x00\x08" + box + b"\x00" * 8) == "mp4"


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (MKV, "matroska"),
        (b"\x1a\x45\xdf\xa3", "matroska"),
        (FLV, "flv"),
        (b"FLV\x01", "flv"),
    ],
)
def test_container_matroska_and_flv(head: bytes, kind: str) -> None:
    assert container(head) == kind


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"ftyp",  # too short to have a box header
        b"\x00\x00\x00ftyp",  # 7 bytes: the box type is not at offset 4..8
        b"ftypisom\x00\x00",  # ftyp at offset 0, not 4
        HTML,
        b"  \n<html><head>",
        XML,
        JSON,
        b"[1, 2, 3]",
        b"FLV\x02",
        b"\x1a\x45\xdf",
        b"ID3\x03\x00\x00\x00",
        b"\x00\x00\x00\x20FTYP",  # box types are case-sensitive
    ],
)
def test_container_unknown(head: bytes) -> None:
    assert container(head) is None


def test_container_random_bytes_are_not_video() -> None:
    rng = random.Random(1234)
    heads = [rng.randbytes(HEAD_SIZE) for _ in range(2000)]
    assert [head for head in heads if container(head) is not None] == []


@pytest.mark.parametrize(
    ("head", "text"),
    [
        (HTML, "an HTML page"),
        (b"\n  <HTML>", "an HTML page"),
        (XML, "an XML/HTML document"),
        (b"<Error>", "an XML/HTML document"),
        (JSON, "a JSON document"),
        (b"[]", "a JSON document"),
        (b"\x00\x01\x02\x03\x04\x05\x06\x07\x08", "unknown bytes 0001020304050607"),
    ],
)
def test_describe(head: bytes, text: str) -> None:
    assert describe(head) == text


# -- etag_md5 ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("etag", "md5"),
    [
        (f'"{MD5_A}"', MD5_A),
        (MD5_A, MD5_A),
        (f'"{MD5_A.upper()}"', MD5_A),
        (f'  "{MD5_A}"  ', MD5_A),
        (None, None),
        ("", None),
        ('"abc-3"', None),
        (f'"{MD5_A}-3"', None),  # multipart upload: not the MD5 of the body
        (f'"{MD5_A}0"', None),  # 33 hex digits
        (f'"{MD5_A[:-1]}"', None),  # 31 hex digits
        ('"0123456789abcdef0123456789abcdeg"', None),
    ],
)
def test_etag_md5(etag: str | None, md5: str | None) -> None:
    assert etag_md5(etag) == md5


def test_etag_md5_ignores_weak_etag() -> None:
    assert etag_md5(f'W/"{MD5_A}"') is None


# -- check_body ---------------------------------------------------------------------------


def test_check_body_accepts_complete_video() -> None:
    for head in (MP4, MKV, FLV):
        check_body(head, 5000, 5000, MD5_A, f'"{MD5_A}"')
        check_body(head, MIN_SIZE, None, None, None)


def test_check_body_size_mismatch() -> None:
    with pytest.raises(VerifyError, match="got 4999 bytes, the server announced 5000"):
        check_body(MP4, 4999, 5000, MD5_A, None)


@pytest.mark.parametrize("size", [0, 1, MIN_SIZE - 1])
def test_check_body_too_small(size: int) -> None:
    with pytest.raises(VerifyError, match=f"only {size} bytes, too small"):
        check_body(MP4, size, size, None, None)


def test_check_body_too_small_describes_content() -> None:
    with pytest.raises(VerifyError, match="an HTML page"):
        check_body(HTML[:HEAD_SIZE], 300, 300, None, None)


@pytest.mark.parametrize(
    ("head", "what"), [(HTML, "HTML page"), (XML, "XML/HTML"), (JSON, "JSON document")]
)
def test_check_body_error_page(head: bytes, what: str) -> None:
    with pytest.raises(VerifyError, match=f"not a video: the body is .*{what}"):
        check_body(head[:HEAD_SIZE], 4096, 4096, None, None)


def test_check_body_md5_mismatch_with_plain_etag() -> None:
    with pytest.raises(VerifyError, match=f"MD5 {MD5_A} does not match the ETag {MD5_B}"):
        check_body(MP4, 4096, 4096, MD5_A, f'"{MD5_B}"')


def test_check_body_md5_compare_ignores_etag_case() -> None:
    check_body(MP4, 4096, 4096, MD5_A, f'"{MD5_A.upper()}"')


@pytest.mark.parametrize("etag", ['"abc-3"', f'"{MD5_B}-3"', '"v1"', None, ""])
def test_check_body_passes_with_non_md5_etag(etag: str | None) -> None:
    check_body(MP4, 4096, 4096, MD5_A, etag)


def test_check_body_passes_with_weak_etag() -> None:
    check_body(MP4, 4096, 4096, MD5_A, f'W/"{MD5_B}"')


def test_check_body_without_md5_skips_comparison() -> None:
    check_body(MP4, 4096, 4096, None, f'"{MD5_B}"')


# -- acceptable: the skip decision for a file already there ----------------------------------


def test_existing_valid_video() -> None:
    assert acceptable(MP4, 4096)
    assert acceptable(MP4, 4096, 4096)


def test_existing_size_must_match_known_size() -> None:
    assert not acceptable(MP4, 4096, 4097)
    assert not acceptable(MP4, 4096, 4095)


def test_existing_too_small() -> None:
    assert not acceptable(MP4, MIN_SIZE - 1)
    assert acceptable(MP4, MIN_SIZE)


def test_existing_error_page() -> None:
    page = HTML * 100
    assert len(page) >= MIN_SIZE
    assert not acceptable(page[:HEAD_SIZE], len(page), len(page))


def test_existing_real_md5_body() -> None:
    body = MKV + bytes(range(256)) * 20
    assert acceptable(body[:HEAD_SIZE], len(body), len(body))
    # The same bytes pass the download check with their true MD5 as a plain ETag.
    digest = hashlib.md5(body).hexdigest()
    check_body(body[:HEAD_SIZE], len(body), len(body), digest, f'"{digest}"')
