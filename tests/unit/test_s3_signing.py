"""S3 presigned URLs: byte-identical to botocore's for random keys, and checked like S3 would."""

from __future__ import annotations

import string

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.s3_reference import botocore_url
from tfbulk.signing.s3 import (
    MAX_EXPIRES,
    AwsCredentials,
    S3Signer,
    object_url,
    presign,
    verify_presigned,
)

# Characters that URL encoders disagree on, mixed with any non-surrogate character.
AWKWARD = list(" +/~%?#&=!*'(),;:@$[]{}^`|\\\"<>.-_\t")
KEYS = st.text(
    st.one_of(st.sampled_from(AWKWARD), st.characters(codec="utf-8")), min_size=1, max_size=80
)
BUCKETS = st.one_of(
    st.from_regex(r"[a-z0-9][a-z0-9-]{1,30}[a-z0-9]", fullmatch=True),
    st.from_regex(r"[a-zA-Z0-9][a-zA-Z0-9._-]{0,40}", fullmatch=True),
    st.sampled_from(["tfstream", "my.dotted.bucket", "Upper_Case", "192.168.1.1", "ab", "a-"]),
)
REGIONS = st.sampled_from(
    ["us-east-1", "us-west-2", "eu-west-1", "eu-central-2", "ap-southeast-2", "cn-north-1"]
)
ENDPOINTS = st.sampled_from(
    [
        "http://127.0.0.1:9000",
        "http://localhost:8080/prefix/",
        "https://minio.example.com",
        "https://S3.Example.com:443",
        "http://[::1]:9000",
    ]
)
CREDENTIALS = st.builds(
    AwsCredentials,
    access_key=st.from_regex(r"A[A-Z0-9]{15,19}", fullmatch=True),
    secret_key=st.text(string.ascii_letters + string.digits + "/+", min_size=1, max_size=40),
    token=st.none() | st.text(string.ascii_letters + string.digits + "/+=", min_size=1),
)
# Whole seconds and microseconds apart, so botocore's datetime and our float agree exactly.
INSTANTS = st.tuples(st.integers(946_684_800, 4_102_444_800), st.integers(0, 999_999))
EXPIRIES = st.integers(1, MAX_EXPIRES)
FIXED = AwsCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")


def ours(
    credentials: AwsCredentials,
    region: str,
    bucket: str,
    key: str,
    instant: tuple[int, int],
    expires: int,
    endpoint_url: str | None = None,
) -> str:
    url = object_url(bucket, key, region, endpoint_url)
    return presign("GET", url, credentials, region, instant[0] + instant[1] / 1e6, expires)


def examples(count: int) -> settings:
    """`count` examples, without a deadline: the first botocore client is slow to build."""
    return settings(max_examples=count, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@examples(300)
@given(CREDENTIALS, REGIONS, BUCKETS, KEYS, INSTANTS, EXPIRIES)
@example(FIXED, "us-east-1", "tfstream", "guitar101/lesson 03_med.mp4", (1_714_979_289, 0), 3600)
@example(FIXED, "eu-west-1", "tfstream", "a+b/c d/ü~%25.mp4", (1_714_979_289, 5), 7200)
@example(FIXED, "us-east-1", "tfstream", "/leading//double/./dot/../x", (1_714_979_289, 0), 60)
@example(FIXED, "ap-southeast-2", "tfstream", "日本語/レッスン 1.mp4", (1_714_979_289, 0), 1)
def test_virtual_hosted_urls_match_botocore(
    credentials: AwsCredentials,
    region: str,
    bucket: str,
    key: str,
    instant: tuple[int, int],
    expires: int,
) -> None:
    """Regional virtual-hosted names (path style for buckets that cannot be host names)."""
    expected = botocore_url(
        credentials, region, bucket, key, instant, expires, addressing="virtual"
    )
    assert ours(credentials, region, bucket, key, instant, expires) == expected


@examples(100)
@given(CREDENTIALS, BUCKETS, KEYS, INSTANTS, EXPIRIES)
def test_us_east_1_matches_botocore_default_config(
    credentials: AwsCredentials,
    bucket: str,
    key: str,
    instant: tuple[int, int],
    expires: int,
) -> None:
    expected = botocore_url(credentials, "us-east-1", bucket, key, instant, expires)
    assert ours(credentials, "us-east-1", bucket, key, instant, expires) == expected


@examples(200)
@given(CREDENTIALS, REGIONS, BUCKETS, KEYS, INSTANTS, EXPIRIES, ENDPOINTS)
def test_path_style_with_an_endpoint_matches_botocore(
    credentials: AwsCredentials,
    region: str,
    bucket: str,
    key: str,
    instant: tuple[int, int],
    expires: int,
    endpoint: str,
) -> None:
    expected = botocore_url(
        credentials, region, bucket, key, instant, expires, endpoint_url=endpoint
    )
    assert ours(credentials, region, bucket, key, instant, expires, endpoint) == expected


def test_a_query_the_url_already_has_comes_first_like_botocore() -> None:
    instant = (1_714_979_289, 0)
    expected = botocore_url(
        FIXED,
        "eu-west-1",
        "tfstream",
        "a b.mp4",
        instant,
        900,
        addressing="virtual",
        version_id="3/L4kq+tX==",
    )
    url = object_url("tfstream", "a b.mp4", "eu-west-1") + "?versionId=3%2FL4kq%2BtX%3D%3D"
    assert presign("GET", url, FIXED, "eu-west-1", instant[0], 900) == expected


def test_object_urls_are_where_the_issue_says() -> None:
    key = "guitar101/lesson 03_med.mp4"
    assert (
        object_url("tfstream", key, "us-east-1")
        == "https://tfstream.s3.amazonaws.com/guitar101/lesson%2003_med.mp4"
    )
    assert (
        object_url("tfstream", key, "eu-west-1")
        == "https://tfstream.s3.eu-west-1.amazonaws.com/guitar101/lesson%2003_med.mp4"
    )
    assert (
        object_url("tfstream", key, "eu-west-1", "http://127.0.0.1:9000/")
        == "http://127.0.0.1:9000/tfstream/guitar101/lesson%2003_med.mp4"
    )


def test_parameter_order_and_session_token_placement() -> None:
    signer = S3Signer(AwsCredentials("AKID", "secret", "tok/en+="), "us-east-1", 3600)
    url = signer.sign("https://tfstream.s3.amazonaws.com/a.mp4", 1_714_979_289.7)
    names = [pair.split("=")[0] for pair in url.split("?")[1].split("&")]
    assert names == [
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
        "X-Amz-Security-Token",
        "X-Amz-Signature",
    ]
    assert "X-Amz-Date=20240506T070809Z" in url
    assert "X-Amz-Security-Token=tok%2Fen%2B%3D" in url
    assert "X-Amz-Credential=AKID%2F20240506%2Fus-east-1%2Fs3%2Faws4_request" in url


def test_secrets_stay_out_of_repr() -> None:
    text = repr(AwsCredentials("AKIDVISIBLE", "SECRETVALUE", "TOKENVALUE"))
    assert "AKIDVISIBLE" in text and "SECRETVALUE" not in text and "TOKENVALUE" not in text


# -- verification ------------------------------------------------------------------------

NOW = 1_714_979_289.0
SECRETS = {FIXED.access_key: FIXED.secret_key}


def signed(key: str = "guitar101/lesson 03_med.mp4", expires: int = 3600, **kw: object) -> str:
    credentials = kw.get("credentials", FIXED)
    region = str(kw.get("region", "eu-west-1"))
    url = object_url("tfstream", key, region, "http://127.0.0.1:8080")
    return presign("GET", url, credentials, region, NOW, expires)  # type: ignore[arg-type]


@examples(100)
@given(CREDENTIALS, REGIONS, KEYS, EXPIRIES)
def test_what_presign_makes_verify_accepts_until_it_expires(
    credentials: AwsCredentials, region: str, key: str, expires: int
) -> None:
    url = presign("GET", object_url("tfstream", key, region), credentials, region, NOW, expires)
    secrets = {credentials.access_key: credentials.secret_key}
    assert verify_presigned("GET", url, secrets, NOW, region) is None
    assert verify_presigned("GET", url, secrets, NOW + expires, region) is None
    late = verify_presigned("GET", url, secrets, NOW + expires + 1, region)
    assert late is not None and (late.code, late.message) == ("AccessDenied", "Request has expired")


@pytest.mark.parametrize(
    ("old", "new", "code", "status"),
    [
        ("lesson%2003", "lesson%2004", "SignatureDoesNotMatch", 403),
        ("X-Amz-Expires=3600", "X-Amz-Expires=3601", "SignatureDoesNotMatch", 403),
        ("127.0.0.1:8080", "127.0.0.1:8081", "SignatureDoesNotMatch", 403),
        ("AKIDEXAMPLE", "AKIDOTHER", "InvalidAccessKeyId", 403),
        ("&X-Amz-Signature=", "&X-Amz-Sig=", "AccessDenied", 403),
        ("X-Amz-Date=20240506", "X-Amz-Date=2024-05-06", "AuthorizationQueryParametersError", 400),
    ],
    ids=["path", "expiry", "host", "access key", "no signature", "bad date"],
)
def test_tampered_urls_are_refused_like_s3(old: str, new: str, code: str, status: int) -> None:
    url = signed()
    assert old in url
    refusal = verify_presigned("GET", url.replace(old, new), SECRETS, NOW, "eu-west-1")
    assert refusal is not None and (refusal.code, refusal.status) == (code, status)


def test_wrong_secret_wrong_method_wrong_region_and_too_long_are_refused() -> None:
    url = signed()
    assert verify_presigned("GET", url, {FIXED.access_key: "nope"}, NOW).code == (  # type: ignore[union-attr]
        "SignatureDoesNotMatch"
    )
    assert verify_presigned("HEAD", url, SECRETS, NOW).code == "SignatureDoesNotMatch"  # type: ignore[union-attr]
    wrong_region = verify_presigned("GET", url, SECRETS, NOW, "us-east-1")
    assert wrong_region is not None and "the region 'eu-west-1' is wrong" in wrong_region.message
    week_and_a_second = verify_presigned("GET", signed(expires=MAX_EXPIRES + 1), SECRETS, NOW)
    assert week_and_a_second is not None and "less than a week" in week_and_a_second.message
