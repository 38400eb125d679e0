"""From snapshot rows to work items: which segments, which URL, which file.

Templates are checked once, before anything is written, so a typo in `--path-template` is
an exit-2 error and not 100,000 failed segments.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from urllib.parse import quote

from tfbulk.errors import BadInput
from tfbulk.pipeline.snapshot import SnapshotSegment
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
        self._parts: list[tuple[str, str | None]] = []
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
            self._parts.append((literal, name))
        self.fields = frozenset(name for _, name in self._parts if name)

    def render(self, values: Mapping[str, str]) -> str:
        return "".join(literal + (values[name] if name else "") for literal, name in self._parts)


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


def render_path(template: Template, segment: Segment) -> str:
    """The file's path relative to `--dest`, or UnsafePath if it would leave it."""
    values = segment.values()
    for name in template.fields:
        if values[name] == "":
            raise UnsafePath(f"path template needs {{{name}}}, which is empty for this segment")
    return safe_relative_path(template.render(values))


def safe_relative_path(rendered: str) -> str:
    """Normalise `rendered` to a/b/c form, refusing anything that could escape the destination."""
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


@dataclass(slots=True)
class PlanRow:
    """One segment to keep in the state DB; `error` set means refused (path unsafe)."""

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
    segments: Iterable[SnapshotSegment], scope: Scope, path_template: Template, stats: PlanStats
) -> Iterator[PlanRow]:
    """Downloadable segments in scope, in (course, id) order; fills `stats` as it goes.

    The whole snapshot is read even past `--limit-courses`, so the counts describe it all.
    """
    found_segments: set[int] = set()
    found_courses: set[int] = set()
    for snap in segments:
        stats.segments += 1
        key = video_key(snap.video)
        if snap.segment_id is None:
            stats.no_id += 1
            continue
        if snap.course_id is None:
            stats.orphans += 1
            continue
        if key is None:
            stats.no_video += 1
            continue
        if not _in_scope(snap, scope):
            continue
        found_courses.add(snap.course_id)
        if snap.segment_id in scope.segments:
            found_segments.add(snap.segment_id)
        if _beyond_limit(snap.course_id, scope, stats):
            continue
        stats.courses.add(snap.course_id)
        yield _row(snap, key, path_template, stats)
    stats.missing_segments = set(scope.segments) - found_segments
    stats.missing_courses = set(scope.courses) - found_courses


def _beyond_limit(course_id: int, scope: Scope, stats: PlanStats) -> bool:
    """A new course would exceed `--limit-courses` (rows arrive in course order)."""
    limit = scope.limit_courses
    return limit is not None and course_id not in stats.courses and len(stats.courses) >= limit


def _in_scope(snap: SnapshotSegment, scope: Scope) -> bool:
    if not scope.courses and not scope.segments:
        return True
    return snap.course_id in scope.courses or snap.segment_id in scope.segments


def _row(snap: SnapshotSegment, key: str, path_template: Template, stats: PlanStats) -> PlanRow:
    assert snap.segment_id is not None and snap.course_id is not None  # rows without were skipped
    segment = Segment(snap.segment_id, snap.course_id, snap.channel_id, key)
    stats.planned += 1
    try:
        path, error = render_path(path_template, segment), None
    except UnsafePath as exc:
        path, error = None, f"refused: {exc}"
        stats.refused += 1
    return PlanRow(
        snap.segment_id, snap.course_id, snap.channel_id, snap.video or "", snap.title, path, error
    )
