"""Policy resources: `*` and `?` wildcards, matched as CloudFront matches them."""

from __future__ import annotations

from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.test_cloudfront import urls
from tfbulk.signing.policy import ResourcePattern

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


@pytest.mark.parametrize(
    ("pattern", "wildcard"),
    [("https://h/*", True), ("https://h/?.mp4", True), ("https://h/", False)],
)
def test_has_wildcards(pattern: str, wildcard: bool) -> None:
    assert ResourcePattern(pattern).has_wildcards is wildcard
