"""After each contender: did it download every file, byte for byte? A fast wrong answer
must never count as a win, so each run is checked before its time is kept."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from benchlib.datasets import file_digest

# What a contender may leave beside the files: tfbulk's state DB, our measurement logs.
ALLOWED_EXTRA = {".tfbulk", ".measure"}


@dataclass
class Verdict:
    expected: int
    identical: int
    missing: list[str]
    different: list[str]
    extra: list[str]

    @property
    def ok(self) -> bool:
        return self.identical == self.expected and not self.extra


def check(dest: Path, digests: dict[str, str]) -> Verdict:
    """Compare every expected file in `dest` with the source's digest."""
    missing, different, identical = [], [], 0
    for name, digest in digests.items():
        path = dest / name
        if not path.is_file():
            missing.append(name)
        elif file_digest(path) != digest:
            different.append(name)
        else:
            identical += 1
    extra = sorted(
        p.name for p in dest.iterdir() if p.name not in digests and p.name not in ALLOWED_EXTRA
    )
    return Verdict(len(digests), identical, missing[:10], different[:10], extra[:10])
