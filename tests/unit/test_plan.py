"""Planning: templates, URL/path rendering, unsafe paths, scope and counts."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tfbulk.errors import BadInput
from tfbulk.pipeline.plan import (
    PlanRow,
    PlanStats,
    Segment,
    Template,
    UnsafePath,
    _checked_path,
    _plainly_safe,
    path_renderer,
    plan_rows,
    render_url,
    safe_relative_path,
    video_key,
)
from tfbulk.pipeline.snapshot import SnapshotSegment
from tfbulk.settings import DEFAULT_PATH_TEMPLATE, DEFAULT_URL_TEMPLATE, Scope

# -- Template -------------------------------------------------------------------------


def test_template_fields() -> None:
    template = Template("{course_id}/{segment_id}-{video_name}.mp4", "--path-template")
    assert template.fields == frozenset({"course_id", "segment_id", "video_name"})
    assert Template("static.mp4", "--path-template").fields == frozenset()


def test_template_escaped_braces_are_literal() -> None:
    template = Template("{{x}}/{segment_id}", "--url-template")
    assert template.render({"segment_id": "7"}) == "{x}/7"


@pytest.mark.parametrize(
    "text",
    ["{segment}.mp4", "{course_id}/{title}", "{}", "{0}", "{video.upper}", "{video[0]}"],
)
def test_template_unknown_placeholder(text: str) -> None:
    with pytest.raises(BadInput) as info:
        Template(text, "--path-template")
    message = str(info.value)
    assert message.startswith("--path-template ")
    assert "unknown placeholder" in message
    assert "segment_id" in message  # lists what may be used


@pytest.mark.parametrize("text", ["{segment_id!r}", "{segment_id:>5}"])
def test_template_conversion_or_format_spec_refused(text: str) -> None:
    with pytest.raises(BadInput, match=r"^--url-template "):
        Template(text, "--url-template")


@pytest.mark.parametrize("text", ["{segment_id", "segment_id}", "{course_id}/{", "a}b"])
def test_template_unbalanced_braces(text: str) -> None:
    with pytest.raises(BadInput) as info:
        Template(text, "--url-template")
    message = str(info.value)
    assert message.startswith(f"--url-template {text!r}")
    assert "{segment_id}" in message


def test_default_templates_parse() -> None:
    assert Template(DEFAULT_URL_TEMPLATE, "--url-template").fields == {"segment_id"}
    assert Template(DEFAULT_PATH_TEMPLATE, "--path-template").fields == {
        "course_id",
        "segment_id",
    }


# -- video_key and Segment values ------------------------------------------------------


@pytest.mark.parametrize(
    ("video", "key"),
    [
        (None, None),
        ("", None),
        ("mp4:", None),
        ("flv:x", None),
        ("MP4:a", None),
        (" mp4:a", None),
        ("mp4:a", "a"),
        ("mp4:guitar101/lesson_03", "guitar101/lesson_03"),
        ("mp4:mp4:x", "mp4:x"),
    ],
)
def test_video_key(video: str | None, key: str | None) -> None:
    assert video_key(video) == key


@pytest.mark.parametrize(
    ("video", "video_dir", "video_name"),
    [
        ("guitar101/lesson_03", "guitar101", "lesson_03"),
        ("lesson_03", "", "lesson_03"),
        ("a/b/c", "a", "c"),
    ],
)
def test_segment_values(video: str, video_dir: str, video_name: str) -> None:
    values = Segment(11, 22, 33, video).values()
    assert values == {
        "segment_id": "11",
        "course_id": "22",
        "channel_id": "33",
        "video": video,
        "video_dir": video_dir,
        "video_name": video_name,
    }


def test_segment_values_without_channel() -> None:
    assert Segment(1, 2, None, "x").values()["channel_id"] == ""


# -- render_url ------------------------------------------------------------------------

ALL_FIELDS_URL = "https://h/{course_id}/{channel_id}/{video_dir}/{video_name}/{video}/{segment_id}"


def test_render_url_default_template() -> None:
    template = Template(DEFAULT_URL_TEMPLATE, "--url-template")
    assert render_url(template, Segment(1234, 7, 3, "a/b")) == (
        "https://d2kum0w8xvhbpf.cloudfront.net/truefire/1234.mp4"
    )


def test_render_url_percent_encodes_path_segments() -> None:
    template = Template(ALL_FIELDS_URL, "--url-template")
    url = render_url(template, Segment(5, 6, 7, "blues 101/lesson 03"))
    assert url == "https://h/6/7/blues%20101/lesson%2003/blues%20101/lesson%2003/5"


def test_render_url_slash_kept_in_video_only() -> None:
    template = Template("https://h/{video}|{video_dir}|{video_name}", "--url-template")
    # {video} keeps its '/' separators; {video_dir} and {video_name} are single segments
    # (they never contain '/'), and every other reserved character is encoded everywhere.
    url = render_url(template, Segment(1, 2, 3, "a?b#c/d&e=f/g%h"))
    assert url == "https://h/a%3Fb%23c/d%26e%3Df/g%25h|a%3Fb%23c|g%25h"


def test_render_url_encodes_unicode_as_utf8() -> None:
    template = Template("https://h/{video}", "--url-template")
    assert render_url(template, Segment(1, 2, 3, "café/日本")) == (
        "https://h/caf%C3%A9/%E6%97%A5%E6%9C%AC"
    )


def test_render_url_empty_values() -> None:
    template = Template("https://h/{channel_id}/{video_dir}/{video_name}", "--url-template")
    assert render_url(template, Segment(1, 2, None, "x")) == "https://h///x"


# -- path_renderer / safe_relative_path ----------------------------------------------------


def test_render_path_default() -> None:
    template = Template(DEFAULT_PATH_TEMPLATE, "--path-template")
    assert path_renderer(template)(1001, 7, 3, "a/b") == "7/1001.mp4"


def test_render_path_keeps_video_as_subfolders() -> None:
    template = Template("{video}.mp4", "--path-template")
    assert path_renderer(template)(1, 2, 3, "guitar101/lesson_03") == ("guitar101/lesson_03.mp4")


def test_render_path_is_not_percent_encoded() -> None:
    template = Template("{video_dir}/{video_name}.mp4", "--path-template")
    assert path_renderer(template)(1, 2, 3, "blues 101/café") == "blues 101/café.mp4"


@pytest.mark.parametrize("template_text", ["{video_dir}/{segment_id}.mp4", "{channel_id}.mp4"])
def test_render_path_refuses_empty_field(template_text: str) -> None:
    template = Template(template_text, "--path-template")
    with pytest.raises(UnsafePath, match="empty for this segment"):
        path_renderer(template)(1, 2, None, "no_dir")


def test_render_path_refuses_climbing_video() -> None:
    template = Template("{video}", "--path-template")
    with pytest.raises(UnsafePath, match=r"\.\."):
        path_renderer(template)(1, 2, 3, "../../etc/passwd")


@pytest.mark.parametrize(
    ("rendered", "expected"),
    [
        ("a//./b", "a/b"),
        ("./a/b/", "a/b"),
        ("a/./././b//c", "a/b/c"),
        ("...", "..."),
        ("..a/b..", "..a/b.."),
        ("x/.tfbulk/y", "x/.tfbulk/y"),
        (".tfbulkx/y", ".tfbulkx/y"),
        ("é" * 125, "é" * 125),  # a 250-byte name: its .part is 255 bytes exactly
        ("é" * 127 + "a/x.mp4", "é" * 127 + "a/x.mp4"),  # a 255-byte folder name
    ],
)
def test_safe_relative_path_normalises(rendered: str, expected: str) -> None:
    assert safe_relative_path(rendered) == expected


@pytest.mark.parametrize(
    ("rendered", "why"),
    [
        ("/etc/passwd", "absolute"),
        ("//server/share", "absolute"),
        ("..", r"\.\."),
        ("a/../b", r"\.\."),
        ("a/b/..", r"\.\."),
        ("a\x00b", "NUL"),
        ("", "empty"),
        ("/", "absolute"),
        ("./", "empty"),
        (".//.", "empty"),
        ("a" * 251, "longer than 250 bytes"),  # its .part would be 256 bytes
        ("ok/" + "é" * 127 + "a", "longer than 250 bytes"),  # the 255-byte name
        ("a" * 256 + "/x.mp4", "folder name longer than 255 bytes"),
        ("é" * 128 + "/x.mp4", "folder name longer than 255 bytes"),  # 256 bytes in UTF-8
        (".tfbulk/state.db", ".tfbulk"),
        ("./.tfbulk/x.mp4", ".tfbulk"),
        (".tfbulk", ".tfbulk"),
    ],
)
def test_safe_relative_path_refuses(rendered: str, why: str) -> None:
    with pytest.raises(UnsafePath, match=why):
        safe_relative_path(rendered)


# Paths made of the characters that matter to the checks, long enough to cross the limits.
PATHISH = st.text(alphabet="./a\x00é", max_size=12) | st.builds(
    lambda n, tail: "a" * n + tail, st.integers(240, 260), st.sampled_from(["", "/b", "é"])
)


@given(PATHISH)
@example(".tfbulk/x")
@example("a/.tfbulk")
@example("a" * 250)
@example("a" * 251)
def test_plainly_safe_paths_are_what_the_full_check_returns(rendered: str) -> None:
    """The fast path may only say yes where the name-by-name check returns the path as is."""
    if _plainly_safe(rendered):
        assert _checked_path(rendered) == rendered
    try:
        expected: str | type[UnsafePath] = _checked_path(rendered)
    except UnsafePath:
        expected = UnsafePath
    try:
        assert safe_relative_path(rendered) == expected
    except UnsafePath:
        assert expected is UnsafePath


KEYS = st.text(alphabet="/.ab é", min_size=1, max_size=8)
TEMPLATES = st.lists(
    st.sampled_from(["{segment_id}", "{course_id}", "{channel_id}", "{video}", "{video_dir}",
                     "{video_name}", "/", ".", "x", "{{"]),
    min_size=1, max_size=5,
).map("".join)  # fmt: skip


@given(TEMPLATES, st.integers(-5, 10**12), st.integers(0, 99), st.none() | st.integers(0, 9), KEYS)
@example("{channel_id}/{segment_id}", 1, 2, None, "k")
@example("{video_dir}{{", 1, 2, 3, "flat")
def test_path_renderer_renders_what_the_template_says(
    text: str, segment_id: int, course_id: int, channel_id: int | None, key: str
) -> None:
    """The fast renderer against the plain definition: the template's text with every
    field's value, refused if a field it names is empty or the path is unsafe."""
    template = Template(text, "--path-template")
    values = Segment(segment_id, course_id, channel_id, key).values()
    try:
        if any(values[name] == "" for name in template.fields):
            raise UnsafePath("empty")
        expected: str | type[UnsafePath] = safe_relative_path(template.render(values))
    except UnsafePath:
        expected = UnsafePath
    try:
        assert path_renderer(template)(segment_id, course_id, channel_id, key) == expected
    except UnsafePath:
        assert expected is UnsafePath


# -- plan_rows ---------------------------------------------------------------------------

PATHS = Template(DEFAULT_PATH_TEMPLATE, "--path-template")


def seg(
    segment_id: int,
    course_id: int | None,
    video: str | None = None,
    *,
    channel_id: int | None = None,
    title: str | None = None,
) -> SnapshotSegment:
    """A snapshot segment; by default downloadable with a video named after its id."""
    return SnapshotSegment(
        segment_id=segment_id,
        channel_id=channel_id if channel_id is not None else (course_id or 0) * 10,
        course_id=course_id,
        video=f"mp4:c{course_id}/s{segment_id}" if video is None else video,
        title=title if title is not None else f"Lesson {segment_id}",
    )


def catalogue() -> list[SnapshotSegment]:
    """In snapshot order: orphans first, then by course, then by id."""
    return [
        seg(1, None),  # orphan
        seg(2, None, ""),  # orphan without video: counted as orphan
        seg(10, 1),
        seg(11, 1, ""),  # no video
        seg(12, 1),
        seg(20, 2, "mp4:"),  # course 2 has no downloadable segment
        seg(21, 2, "flv:x"),
        seg(30, 3),
        seg(31, 3),
        seg(40, 4),
        seg(50, 5, "mp4:c5/s50"),
    ]


def plan(
    scope: Scope, segments: list[SnapshotSegment] | None = None
) -> tuple[list[PlanRow], PlanStats]:
    stats = PlanStats()
    rows = list(plan_rows(catalogue() if segments is None else segments, scope, PATHS, stats))
    return rows, stats


def ids(rows: list[PlanRow]) -> list[int]:
    return [row.segment_id for row in rows]


def test_plan_everything() -> None:
    rows, stats = plan(Scope())
    assert ids(rows) == [10, 12, 30, 31, 40, 50]
    assert stats.segments == 11
    assert stats.orphans == 2
    assert stats.no_video == 3
    assert stats.planned == 6
    assert stats.refused == 0
    assert stats.courses == {1, 3, 4, 5}
    assert stats.missing_courses == set()
    assert stats.missing_segments == set()


def test_plan_row_fields() -> None:
    rows, _ = plan(Scope(segments=frozenset({12})))
    assert rows == [PlanRow(12, 1, 10, "mp4:c1/s12", "Lesson 12", "1/12.mp4", None)]


def test_plan_courses_and_segments_add_up() -> None:
    rows, stats = plan(Scope(courses=frozenset({3}), segments=frozenset({10, 50})))
    assert ids(rows) == [10, 30, 31, 50]
    assert stats.courses == {1, 3, 5}
    assert stats.missing_courses == set()
    assert stats.missing_segments == set()


def test_plan_reports_missing_courses_and_segments() -> None:
    scope = Scope(courses=frozenset({2, 3, 99}), segments=frozenset({11, 12, 1, 999}))
    rows, stats = plan(scope)
    assert ids(rows) == [12, 30, 31]
    # course 2 exists but has nothing downloadable; 11 has no video; 1 is an orphan.
    assert stats.missing_courses == {2, 99}
    assert stats.missing_segments == {11, 1, 999}


@pytest.mark.parametrize(
    ("limit", "expected_ids", "expected_courses"),
    [
        (1, [10, 12], {1}),
        (2, [10, 12, 30, 31], {1, 3}),  # course 2 has no downloadable segment: not counted
        (3, [10, 12, 30, 31, 40], {1, 3, 4}),
        (10, [10, 12, 30, 31, 40, 50], {1, 3, 4, 5}),
    ],
)
def test_plan_limit_courses(
    limit: int, expected_ids: list[int], expected_courses: set[int]
) -> None:
    rows, stats = plan(Scope(limit_courses=limit))
    assert ids(rows) == expected_ids
    assert stats.courses == expected_courses
    assert stats.planned == len(expected_ids)


def test_plan_limit_applies_after_union() -> None:
    scope = Scope(courses=frozenset({4, 5}), segments=frozenset({31}), limit_courses=2)
    rows, stats = plan(scope)
    assert ids(rows) == [31, 40]
    assert stats.courses == {3, 4}


def test_plan_limit_still_counts_whole_snapshot() -> None:
    _, stats = plan(Scope(limit_courses=1))
    assert stats.segments == 11
    assert stats.no_video == 3


def test_plan_limit_does_not_call_existing_segment_missing() -> None:
    _, stats = plan(Scope(segments=frozenset({10, 40}), limit_courses=1))
    assert stats.missing_segments == set()


def test_plan_refuses_unsafe_paths_per_segment() -> None:
    segments = [
        seg(1, 1, "mp4:ok/one"),
        seg(2, 1, "mp4:../../evil"),
        seg(3, 1, "mp4:flat"),
        seg(4, 1, "mp4:.tfbulk/state"),
    ]
    stats = PlanStats()
    template = Template("{video}.mp4", "--path-template")
    rows = list(plan_rows(segments, Scope(), template, stats))
    assert [(r.segment_id, r.path) for r in rows] == [
        (1, "ok/one.mp4"),
        (2, None),
        (3, "flat.mp4"),
        (4, None),
    ]
    assert rows[1].error is not None
    assert rows[1].error.startswith("refused: ")
    assert ".." in rows[1].error
    assert rows[3].error is not None
    assert ".tfbulk" in rows[3].error
    assert rows[0].error is None
    assert stats.refused == 2
    assert stats.planned == 4


def test_plan_refuses_empty_placeholder() -> None:
    stats = PlanStats()
    template = Template("{video_dir}/{segment_id}.mp4", "--path-template")
    rows = list(plan_rows([seg(1, 1, "mp4:flat")], Scope(), template, stats))
    assert rows[0].path is None
    assert rows[0].error == (
        "refused: path template needs {video_dir}, which is empty for this segment"
    )
    assert stats.refused == 1


def test_plan_is_lazy() -> None:
    stats = PlanStats()
    iterator = plan_rows(iter(catalogue()), Scope(), PATHS, stats)
    first = next(iterator)
    assert first.segment_id == 10
    assert stats.planned == 1
    assert stats.segments == 3
