"""redact(): signature material never reaches a log line or an error message."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tfbulk.signing import Unsigned, redact

SECRET_NAMES = ("Signature", "Key-Pair-Id", "Policy", "X-Amz-Signature", "X-Amz-Credential")
# Characters that end a parameter value in a URL or in text around it.
SEPARATORS = ("&", " ", "\n", "\t", '"', "'", "<", ">")


def test_redacts_cloudfront_url() -> None:
    url = (
        "https://d1.cloudfront.net/truefire/1.mp4?Expires=1700000000"
        "&Signature=abc-_~DEF123&Key-Pair-Id=K2JCJMDEHXQW5F"
    )
    assert redact(url) == (
        "https://d1.cloudfront.net/truefire/1.mp4?Expires=1700000000"
        "&Signature=REDACTED&Key-Pair-Id=REDACTED"
    )


def test_redacts_policy_and_keeps_other_params() -> None:
    text = "GET https://h/x.mp4?quality=hd&Policy=eyJTdGF0ZW1lbnQiOltd&lang=en failed: 403"
    assert redact(text) == "GET https://h/x.mp4?quality=hd&Policy=REDACTED&lang=en failed: 403"


def test_redacts_s3_presigned_url() -> None:
    url = (
        "https://bucket.s3.amazonaws.com/k.mp4?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIAEXAMPLE%2F20240101%2Fus-east-1%2Fs3%2Faws4_request"
        "&X-Amz-Date=20240101T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host"
        "&X-Amz-Signature=0123456789abcdef"
    )
    redacted = redact(url)
    assert "AKIAEXAMPLE" not in redacted
    assert "0123456789abcdef" not in redacted
    assert redacted == (
        "https://bucket.s3.amazonaws.com/k.mp4?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=REDACTED"
        "&X-Amz-Date=20240101T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host"
        "&X-Amz-Signature=REDACTED"
    )


def test_is_case_insensitive_and_keeps_the_name_as_written() -> None:
    assert redact("signature=abc&KEY-PAIR-ID=K1") == "signature=REDACTED&KEY-PAIR-ID=REDACTED"


@pytest.mark.parametrize("end", SEPARATORS)
def test_value_stops_at_separator(end: str) -> None:
    assert redact(f"x Signature=s3cr3t{end}tail") == f"x Signature=REDACTED{end}tail"


def test_text_without_secrets_is_unchanged() -> None:
    text = "HTTP 404 for segment 12 (https://h/x.mp4?Expires=17&quality=hd); Signature missing"
    assert redact(text) == text


def test_several_urls_in_one_message() -> None:
    text = (
        'tried "https://a/1?Signature=AAA&Key-Pair-Id=K1" and '
        "<https://b/2?Signature=BBB&Key-Pair-Id=K2>"
    )
    assert redact(text) == (
        'tried "https://a/1?Signature=REDACTED&Key-Pair-Id=REDACTED" and '
        "<https://b/2?Signature=REDACTED&Key-Pair-Id=REDACTED>"
    )


def test_unsigned_signer_returns_url_unchanged() -> None:
    assert Unsigned().sign("https://h/x.mp4?a=1", 123.0) == "https://h/x.mp4?a=1"


# Filler text that cannot itself look like a secret parameter (no '=').
_filler = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="="),
    max_size=20,
)
_secret_value = st.from_regex(r"[A-Za-z0-9_~%.\-]{1,40}", fullmatch=True)


@settings(max_examples=300, deadline=None, database=None)
@given(
    pieces=st.lists(
        st.tuples(
            _filler,
            st.sampled_from(SECRET_NAMES),
            _secret_value,
            st.sampled_from(SEPARATORS),
        ),
        min_size=1,
        max_size=5,
    ),
    tail=_filler,
)
def test_arbitrary_text_loses_only_the_secret_values(
    pieces: list[tuple[str, str, str, str]], tail: str
) -> None:
    text = "".join(f"{f}{name}={value}{sep}" for f, name, value, sep in pieces) + tail
    expected = "".join(f"{f}{name}=REDACTED{sep}" for f, name, _value, sep in pieces) + tail
    assert redact(text) == expected


@settings(max_examples=200, deadline=None, database=None)
@given(text=_filler)
def test_text_without_equals_is_never_changed(text: str) -> None:
    assert redact(text) == text
