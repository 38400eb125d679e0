"""`tfbulk verify`: are the finished files still there, whole and unchanged?

A finished segment's size (and, for files tfbulk downloaded, MD5) is in the state DB. This
re-reads the files against those records so a folder that lost or damaged files — a bad
disk, a careless `rm`, an interrupted copy — is found and requeued instead of trusted.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from pathlib import Path

from tfbulk.pipeline.checks import container, read_digest
from tfbulk.state import SegmentRecord, Store


@dataclass(frozen=True)
class Problem:
    segment_id: int
    course_id: int
    path: str | None
    reason: str


@dataclass
class AuditReport:
    checked: int = 0
    problems: list[Problem] = field(default_factory=list)


def audit(store: Store, root: Path, *, full: bool, course: int | None = None) -> AuditReport:
    """Check every finished segment's file; `full` also re-hashes it against the MD5."""
    report = AuditReport()
    for record in store.finished(course=course):
        report.checked += 1
        reason = _problem(root, record, full=full)
        if reason:
            report.problems.append(
                Problem(record.segment_id, record.course_id, record.path, reason)
            )
    return report


def _problem(root: Path, record: SegmentRecord, *, full: bool) -> str | None:
    if record.path is None:
        return None
    try:
        fd = os.open(root / record.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return "file is missing"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "file is a symlink (tfbulk writes none): it will be replaced"
        return f"file cannot be read: {exc.strerror}"
    try:
        return _checked(fd, record, full=full)
    finally:
        os.close(fd)


def _checked(fd: int, record: SegmentRecord, *, full: bool) -> str | None:
    size = os.fstat(fd).st_size
    if record.size is not None and size != record.size:
        return f"file has {size:,} bytes, {record.size:,} were recorded"
    head, digest = read_digest(fd, size if full and record.md5 else 0)
    if container(head) is None:
        return "file is no longer a video"
    if full and record.md5 and digest.hexdigest() != record.md5:
        return "file's MD5 differs from the one recorded at download"
    return None
