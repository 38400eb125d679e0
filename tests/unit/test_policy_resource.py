"""Policy resources (`*` and `?` wildcards) and the URLs a signature can cover at all."""

from __future__ import annotations

from functools import cache
from urllib.parse import unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.test_cloudfront import urls
from tfbulk.errors import BadInput
from tfbulk.pipeline.urls import check_covered, check_sent_as_is, sign_target
from tfbulk.settings import PolicySettings, SignerSettings
from tfbulk.signing.policy import ResourcePattern, sent_as_is

SETTINGS = settings(max_examples=400, deadline=None, database=None)


def reference_match(pattern: str, text: str) -> bool:
    """CloudFront's rule, spelled out recursively: `*` any run, `?` one character."""

    @cache
    def match(p: int, t: int) -> bool:
        if p == len(pattern):
            return t == len(text)
        if pattern[p] == "*":
            return match(p + 1, t) or (t < len(text) and match(p, t + 1))
        return t < len(text) and pattern[p] in ("?", text[t]) and match(p + 1, t + 1)

    return match(0, 0)


_alphabet = st.sampled_from("ab/.?*%-")  # few letters, so matches are common


@SETTINGS
@given(pattern=st.text(_alphabet, max_size=10), text=st.text(_alphabet, max_size=12))
def test_pattern_matches_as_cloudfront_does(pattern: str, text: str) -> None:
    assert ResourcePattern(pattern).matches(text) == reference_match(pattern, text)


@settings(SETTINGS, max_examples=150)
@given(url=urls(), data=st.data())
def test_a_url_matches_its_own_wildcard_generalisations(url: str, data: st.DataObject) -> None:
    start = data.draw(st.integers(0, len(url)))
    end = data.draw(st.integers(start, len(url)))
    starred = url[:start] + "*" + url[end:]
    assert ResourcePattern(starred).matches(url)
    assert ResourcePattern(url[:start] + "?" * (end - start) + url[end:]).matches(url)
    assert ResourcePattern(url).matches(url)
    assert not ResourcePattern(url + "?").matches(url)


@settings(SETTINGS, max_examples=150)
@given(url=urls(), position=st.integers(min_value=0), char=st.sampled_from("Z#!"))
def test_a_changed_character_outside_the_wildcard_does_not_match(
    url: str, position: int, char: str
) -> None:
    index = position % len(url)
    changed = url[:index] + char + url[index + 1 :]
    if changed != url and url[index] not in "*?":
        assert not ResourcePattern(url).matches(changed)


def test_many_stars_do_not_backtrack_for_ever() -> None:
    assert not ResourcePattern("*a" * 30 + "*b").matches("a" * 5000)
    assert ResourcePattern("https://h/****/x").matches("https://h/a/b/x")


# -- what goes on the wire as written ----------------------------------------------------


@SETTINGS
@given(text=st.text(max_size=40))
def test_only_sendable_urls_pass_and_the_suggestion_is_their_encoding(text: str) -> None:
    url = f"https://h/{text}"
    try:
        assert check_sent_as_is(url) == url
    except BadInput as exc:
        message = str(exc)
        assert "\n" not in message
        suggestion = message.rsplit(": ", 1)[1]
        assert sent_as_is(suggestion)
        assert unquote(suggestion) == unquote(url)
    else:
        assert all("!" <= char <= "~" and char != "#" for char in url)


@pytest.mark.parametrize(
    ("url", "needle", "encoded"),
    [
        ("https://h/a b.mp4", "a space or a non-ASCII", "https://h/a%20b.mp4"),
        ("https://h/café.mp4?x=1", "non-ASCII", "https://h/caf%C3%A9.mp4?x=1"),
        ("https://h/a.mp4#t=10", "a fragment", "https://h/a.mp4%23t=10"),
        ("https://h/a\tb.mp4", "a space", "https://h/a%09b.mp4"),
    ],
)
def test_sign_refuses_urls_not_sent_as_written(url: str, needle: str, encoded: str) -> None:
    with pytest.raises(BadInput, match=needle) as caught:
        sign_target(url, SignerSettings())
    assert str(caught.value).endswith(f": {encoded}")


def test_sign_refuses_a_url_its_policy_resource_does_not_cover() -> None:
    covered = SignerSettings(policy=PolicySettings(resource="https://h/videos/*"))
    assert sign_target("https://h/videos/1.mp4", covered) == "https://h/videos/1.mp4"
    with pytest.raises(BadInput, match=r"the URL is https://h/audio/1.mp4, which --policy-res"):
        sign_target("https://h/audio/1.mp4", covered)


def test_s3_and_unsigned_urls_are_not_checked_here() -> None:
    assert sign_target("https://h/a b", SignerSettings(kind="none")) == "https://h/a b"


def test_check_covered_names_the_first_url_outside() -> None:
    urls_ = [("segment 1", "https://h/a/1.mp4"), ("segment 2", "https://h/b/2.mp4")]
    check_covered(None, urls_)
    check_covered("https://h/*", urls_)
    with pytest.raises(BadInput, match=r"^segment 2 is https://h/b/2.mp4, which --policy"):
        check_covered("https://h/a/*", urls_)
