"""`tfbulk verify`: are the finished files still there, whole and unchanged?

A finished segment's size (and, for files tfbulk downloaded, MD5) is in the state DB. This
re-reads the files against those records so a folder that lost or damaged files — a bad
disk, a careless `rm`, an interrupted copy — is found and requeued instead of trusted.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from tfbulk.state import SegmentRecord, Store
from tfbulk.verify import HEAD_SIZE, container

HASH_BLOCK = 1 << 20


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
    path = root / record.path
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(HEAD_SIZE)
    except FileNotFoundError:
        return "file is missing"
    except OSError as exc:
        return f"file cannot be read: {exc.strerror}"
    if record.size is not None and size != record.size:
        return f"file has {size:,} bytes, {record.size:,} were recorded"
    if container(head) is None:
        return "file is no longer a video"
    if full and record.md5 and _md5(path) != record.md5:
        return "file's MD5 differs from the one recorded at download"
    return None


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        while block := handle.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()
