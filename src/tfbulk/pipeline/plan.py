"""From snapshot rows to work items: which segments, which URL, which file.

Templates are checked once, before anything is written, so a typo in `--path-template` is
an exit-2 error and not 100,000 failed segments.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple
from urllib.parse import quote

from tfbulk.errors import BadInput
from tfbulk.pipeline.snapshot import Snapshot, SnapshotRow
from tfbulk.settings import STATE_DIR, Scope

VIDEO_PREFIX = "mp4:"
FIELDS = ("segment_id", "course_id", "channel_id", "video", "video_dir", "video_name")
MAX_NAME_BYTES = 255  # NAME_MAX of ext4, XFS, btrfs, NTFS; a smaller one fails per segment
PART_SUFFIX = ".part"  # the longest name written is the file's name plus this


class UnsafePath(ValueError):
    """A rendered path that must not be written; the message says why."""


def video_key(video: str | None) -> str | None:
    """The part after `mp4:` for a downloadable segment, else None ("no video")."""
    if video and video.startswith(VIDEO_PREFIX) and len(video) > len(VIDEO_PREFIX):
        return video[len(VIDEO_PREFIX) :]
    return None


class Template:
    """A `{placeholder}` template, parsed once and rendered many times."""

    def __init__(self, text: str, option: str) -> None:
        self.text = text
        self.option = option
        self.parts: list[tuple[str, str | None]] = []
        try:
            parsed = list(string.Formatter().parse(text))
        except ValueError as exc:
            raise BadInput(
                f"{option} {text!r}: {exc}; placeholders look like {{segment_id}}"
            ) from None
        for literal, name, spec, conversion in parsed:
            if name is not None and (name not in FIELDS or spec or conversion):
                raise BadInput(
                    f"{option} {text!r}: unknown placeholder {{{name}}}; use {', '.join(FIELDS)}"
                )
            self.parts.append((literal, name))
        self.fields = frozenset(name for _, name in self.parts if name)

    def render(self, values: Mapping[str, str]) -> str:
        return "".join(literal + (values[name] if name else "") for literal, name in self.parts)


@dataclass(frozen=True, slots=True)
class Segment:
    """The facts about one segment that templates may use."""

    segment_id: int
    course_id: int
    channel_id: int | None
    video: str

    def values(self) -> dict[str, str]:
        key = self.video
        return {
            "segment_id": str(self.segment_id),
            "course_id": str(self.course_id),
            "channel_id": "" if self.channel_id is None else str(self.channel_id),
            "video": key,
            "video_dir": key.split("/", 1)[0] if "/" in key else "",
            "video_name": key.rsplit("/", 1)[-1],
        }


def render_url(template: Template, segment: Segment) -> str:
    """The unsigned URL; values are percent-encoded as path segments (`/` kept in {video})."""
    values = {
        name: quote(value, safe="/" if name == "video" else "")
        for name, value in segment.values().items()
    }
    return template.render(values)


PathRenderer = Callable[[int, int, "int | None", str], str]
_POSITIONS = ("segment_id", "course_id", "channel_id", "video", "video_dir", "video_name")
_NEVER_EMPTY = frozenset({"segment_id", "course_id", "video"})  # ids, and a key after mp4:


def path_renderer(template: Template) -> PathRenderer:
    """`--path-template` made ready for a million rows: (segment_id, course_id, channel_id,
    key) -> the file's path relative to `--dest`, or UnsafePath if it would leave it.

    One `str.format` over the fields by position; `video_dir` and `video_name` are
    computed, and empty values looked for, only when the template names such a field.
    """
    fmt = "".join(
        literal.replace("{", "{{").replace("}", "}}")
        + (f"{{{_POSITIONS.index(name)}}}" if name else "")
        for literal, name in template.parts
    ).format
    if _always_plain(template):
        return lambda segment_id, course_id, _channel, key: fmt(segment_id, course_id, None, key)
    if template.fields <= _NEVER_EMPTY:
        return lambda segment_id, course_id, _channel, key: safe_relative_path(
            fmt(segment_id, course_id, None, key)
        )
    names = [name for _, name in template.parts if name]

    def render(segment_id: int, course_id: int, channel_id: int | None, key: str) -> str:
        values = (
            segment_id,
            course_id,
            "" if channel_id is None else channel_id,
            key,
            key.split("/", 1)[0] if "/" in key else "",
            key.rsplit("/", 1)[-1],
        )
        for name in names:
            if values[_POSITIONS.index(name)] == "":
                raise UnsafePath(f"path template needs {{{name}}}, which is empty for this segment")
        return safe_relative_path(fmt(*values))

    return render


def paths_are_distinct(template: Template) -> bool:
    """Two segments can never share a path: the file name (after the template's last `/`)
    is {segment_id} between fixed text, and distinct ids print distinctly. A store then
    need not look for clashes among a million rows (normalising keeps the last name)."""
    in_name: list[str] = []
    for literal, field_name in template.parts:
        if "/" in literal:
            in_name = []
        if field_name:
            in_name.append(field_name)
    return in_name == ["segment_id"]


def _always_plain(template: Template) -> bool:
    """The template names only ids (never empty) and every rendering of it is plainly
    safe: true when its rendering with 0 for each id is, and stays short with 20-character
    ids.

    An id renders as `-?[0-9]+`: never empty, never `/` or `.`, so no `//`, `/.`, leading
    `/` or `.`, trailing `/`, NUL or non-ASCII character can appear where a literal does
    not put it; the 0s put none either, and 20 characters is the longest 64-bit integer.
    """
    if not template.fields <= _INTEGERS:
        return False
    sample = template.render(dict.fromkeys(template.fields, "0"))
    longest = len(sample) + sum(1 for _, name in template.parts if name) * (_INT64_CHARS - 1)
    return _plainly_safe(sample) and longest <= _PLAIN_MAX


_INTEGERS = frozenset({"segment_id", "course_id"})  # never empty: a row without one is no row
_INT64_CHARS = len(str(-(2**63)))
_NOT_FIRST = ("", "/", ".")  # an empty, absolute or dot-led first name needs the full check
_PLAIN_MAX = MAX_NAME_BYTES - len(PART_SUFFIX)  # an ASCII path this short has no long name


def safe_relative_path(rendered: str) -> str:
    """Normalise `rendered` to a/b/c form, refusing anything that could escape the destination.

    Almost every path is already in that form; `_plainly_safe` says so in a few string
    tests, and only the others are split and checked name by name.
    """
    return rendered if _plainly_safe(rendered) else _checked_path(rendered)


def _plainly_safe(rendered: str) -> bool:
    """True only if `_checked_path` would return `rendered` unchanged: no empty, `.` or
    `..` name (none starts with a dot), not absolute, not in .tfbulk/, no NUL, short."""
    return (
        rendered.isascii()
        and len(rendered) <= _PLAIN_MAX
        and rendered[:1] not in _NOT_FIRST
        and rendered[-1] != "/"
        and "//" not in rendered
        and "/." not in rendered
        and "\x00" not in rendered
    )


def _checked_path(rendered: str) -> str:
    if "\x00" in rendered:
        raise UnsafePath("path contains a NUL byte")
    if rendered.startswith("/"):
        raise UnsafePath(f"path {rendered!r} is absolute")
    parts = [part for part in rendered.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise UnsafePath(f"path {rendered!r} climbs out of the destination with '..'")
    if not parts:
        raise UnsafePath("path is empty")
    if parts[0] == STATE_DIR:
        raise UnsafePath(f"path {rendered!r} is inside tfbulk's own {STATE_DIR}/ folder")
    if any(len(part.encode()) > MAX_NAME_BYTES for part in parts[:-1]):
        raise UnsafePath(f"path {rendered!r} has a folder name longer than {MAX_NAME_BYTES} bytes")
    if len((parts[-1] + PART_SUFFIX).encode()) > MAX_NAME_BYTES:
        limit = MAX_NAME_BYTES - len(PART_SUFFIX)
        raise UnsafePath(
            f"path {rendered!r} has a file name longer than {limit} bytes "
            f"(its {PART_SUFFIX} must fit in {MAX_NAME_BYTES})"
        )
    return "/".join(parts)


class PlanRow(NamedTuple):
    """One segment to keep in the state DB; `error` set means refused (path unsafe).

    A tuple in the state DB's column order, so a store binds it as it comes."""

    segment_id: int
    course_id: int
    channel_id: int | None
    video: str
    title: str | None
    path: str | None
    error: str | None

    def segment(self) -> Segment:
        """What the URL template is rendered from."""
        key = video_key(self.video) or ""
        return Segment(self.segment_id, self.course_id, self.channel_id, key)


@dataclass
class PlanStats:
    """What planning saw, for `--dry-run` and the run's opening line."""

    segments: int = 0
    no_video: int = 0
    orphans: int = 0
    no_id: int = 0
    planned: int = 0
    refused: int = 0
    courses: set[int] = field(default_factory=set)
    missing_courses: set[int] = field(default_factory=set)
    missing_segments: set[int] = field(default_factory=set)


def plan_rows(
    segments: Iterable[SnapshotRow], scope: Scope, path_template: Template, stats: PlanStats
) -> Iterator[PlanRow]:
    """Downloadable segments in scope, in the order read; fills `stats` as it goes.

    The whole snapshot is read even past `--limit-courses` (which needs rows in course
    order), so the counts describe it all. A million rows pass through here before the
    first download: the loop keeps to local names and tuples.
    """
    render = path_renderer(path_template)
    add_course = stats.courses.add
    limit = scope.limit_courses
    filtered = bool(scope.courses or scope.segments)
    found_segments: set[int] = set()
    found_courses: set[int] = set()
    for segment_id, channel_id, course_id, video, title in segments:
        stats.segments += 1
        if segment_id is None:
            stats.no_id += 1
        elif course_id is None:
            stats.orphans += 1
        elif video is None or len(video) <= len(VIDEO_PREFIX) or not video.startswith(VIDEO_PREFIX):
            stats.no_video += 1
        elif filtered and not _in_scope(segment_id, course_id, scope):
            continue
        else:
            if filtered:
                found_courses.add(course_id)
                if segment_id in scope.segments:
                    found_segments.add(segment_id)
            if limit is not None and _beyond_limit(course_id, limit, stats):
                continue
            add_course(course_id)
            stats.planned += 1
            try:
                path, error = (
                    render(segment_id, course_id, channel_id, video[len(VIDEO_PREFIX) :]),
                    None,
                )
            except UnsafePath as exc:
                path, error = None, f"refused: {exc}"
                stats.refused += 1
            yield _row(PlanRow, (segment_id, course_id, channel_id, video, title, path, error))
    stats.missing_segments = set(scope.segments) - found_segments
    stats.missing_courses = set(scope.courses) - found_courses


@dataclass(frozen=True, slots=True)
class PlanQuery:
    """The plan as SQL over the snapshot attached as `snap`: the same rows as `plan_rows`,
    made by SQLite itself, so that a million of them never pass through Python. `rows`
    selects PlanRow's columns (the last named `error`), `ids` only the segment ids."""

    uri: str
    rows: str
    ids: str


def plan_query(
    snapshot: Snapshot, scope: Scope, path_template: Template, stats: PlanStats
) -> PlanQuery | None:
    """The plan as SQL, its counts in `stats`; None where only `plan_rows` plans right:
    a filtered scope, a path needing more than ids and text, or values of odd types."""
    if scope.courses or scope.segments or scope.limit_courses is not None:
        return None
    if not _always_plain(path_template):
        return None
    sql = snapshot.sql()
    if sql is None:
        return None
    video = "s.video"
    # GLOB is case-sensitive like startswith, and its `?` asks for one more character.
    planned = f"s.id IS NOT NULL AND ch.courseid IS NOT NULL AND {video} GLOB '{VIDEO_PREFIX}?*'"
    _count(snapshot, sql.source("main"), planned, stats)
    path = " || ".join(_sql_parts(path_template))
    chosen = f"{sql.source('snap')} WHERE {planned}"
    return PlanQuery(
        sql.uri,
        f"SELECT s.id, ch.courseid, s.channel_id, {video}, {sql.title}, {path}, NULL AS error "
        f"{chosen}",
        f"SELECT s.id {chosen}",
    )


def _count(snapshot: Snapshot, source: str, planned: str, stats: PlanStats) -> None:
    """What plan_rows counts row by row, counted by SQLite."""
    counts = snapshot.rows_of(
        f"SELECT count(*), count(*) - count(s.id), "
        f"coalesce(sum(s.id IS NOT NULL AND ch.courseid IS NULL), 0), "
        f"coalesce(sum({planned}), 0) {source}"
    )
    stats.segments, stats.no_id, stats.orphans, stats.planned = counts[0]
    stats.no_video = stats.segments - stats.no_id - stats.orphans - stats.planned
    courses = snapshot.rows_of(f"SELECT DISTINCT ch.courseid {source} WHERE {planned}")
    stats.courses.update(course_id for (course_id,) in courses)


def _sql_parts(template: Template) -> Iterator[str]:
    """The path template as SQL text pieces: literals quoted, ids as their decimal text."""
    columns = {"segment_id": "s.id", "course_id": "ch.courseid"}
    for literal, name in template.parts:
        if literal:
            yield "'" + literal.replace("'", "''") + "'"
        if name:
            yield f"CAST({columns[name]} AS TEXT)"


_row = tuple.__new__  # PlanRow(...) without NamedTuple's __new__: a Python call per row


def _beyond_limit(course_id: int, limit: int, stats: PlanStats) -> bool:
    """A new course would exceed `--limit-courses` (rows arrive in course order)."""
    return course_id not in stats.courses and len(stats.courses) >= limit


def _in_scope(segment_id: int, course_id: int, scope: Scope) -> bool:
    return course_id in scope.courses or segment_id in scope.segments
