"""Which URL a segment has: the URL template, or the S3 object its key template names."""

from __future__ import annotations

import pytest

from tfbulk.errors import BadInput
from tfbulk.pipeline.plan import Segment
from tfbulk.pipeline.urls import segment_urls, sign_target
from tfbulk.settings import SignerSettings

SEGMENT = Segment(1042, 7, 100, "guitar 101/lesson+03")
S3 = SignerSettings(kind="s3", bucket="tfstream")


def test_cloudfront_and_unsigned_runs_render_the_url_template() -> None:
    url_of = segment_urls("https://cdn.example/{course_id}/{video}.mp4", SignerSettings())
    assert url_of(SEGMENT) == "https://cdn.example/7/guitar%20101/lesson%2B03.mp4"


def test_s3_runs_address_the_object_the_key_template_names() -> None:
    url_of = segment_urls("https://ignored/{segment_id}", S3)
    assert url_of(SEGMENT) == "https://tfstream.s3.amazonaws.com/guitar%20101/lesson%2B03_med.mp4"
    custom = SignerSettings(
        kind="s3",
        bucket="tfstream",
        region="eu-west-1",
        endpoint_url="http://127.0.0.1:9000",
        key_template="{course_id}/{segment_id}.mp4",
    )
    assert segment_urls("", custom)(SEGMENT) == "http://127.0.0.1:9000/tfstream/7/1042.mp4"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a b/c.mp4", "https://tfstream.s3.amazonaws.com/a%20b/c.mp4"),
        ("s3://other/a b.mp4", "https://other.s3.amazonaws.com/a%20b.mp4"),
        ("https://x.example/a%20b.mp4", "https://x.example/a%20b.mp4"),
    ],
)
def test_sign_takes_a_key_an_s3_uri_or_a_url(text: str, expected: str) -> None:
    assert sign_target(text, S3) == expected


@pytest.mark.parametrize(
    ("settings", "needle"),
    [
        (SignerSettings(kind="s3"), "--bucket (or TFBULK_BUCKET) is required"),
        (SignerSettings(kind="s3", bucket="a/b"), "is not a bucket name"),
        (SignerSettings(kind="s3", bucket="b", endpoint_url="ftp://x"), "not an http(s) base URL"),
        (SignerSettings(kind="s3", bucket="b", endpoint_url="http://x:port"), "not a number"),
        (SignerSettings(kind="s3", bucket="b", key_template="{course}"), "--key-template"),
    ],
)
def test_bad_s3_flags_are_refused_before_anything_runs(
    settings: SignerSettings, needle: str
) -> None:
    with pytest.raises(BadInput) as caught:
        segment_urls("", settings)
    assert needle in str(caught.value)


def test_an_s3_uri_without_a_key_is_refused() -> None:
    with pytest.raises(BadInput, match="names no object key"):
        sign_target("s3://tfstream/", S3)
