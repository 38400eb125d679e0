"""What a run (or a dry run) reports: the summary views print it, `--json` serialises it."""

from __future__ import annotations

import resource
from dataclasses import dataclass, field
from pathlib import Path

from tfbulk.pipeline.plan import PlanStats
from tfbulk.settings import Limits
from tfbulk.state import SegmentRecord, Summary


def peak_rss_bytes() -> int:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, it resets on exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclass
class RunReport:
    """What a run did, for the summary, `--json` and the exit code."""

    exit_code: int
    summary: Summary
    elapsed: float
    downloaded: int
    stop_reason: str | None = None
    message: str | None = None
    failures: list[SegmentRecord] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    limits: Limits = field(default_factory=Limits)

    def as_json(self) -> dict[str, object]:
        data = self.summary.as_json()
        data |= {
            "elapsed_s": round(self.elapsed, 3),
            "exit_code": self.exit_code,
            "downloaded_bytes": self.downloaded,
            "peak_rss_bytes": peak_rss_bytes(),
            "limits": self.limits.as_json(),
        }
        if self.stop_reason:
            data["stopped"] = self.stop_reason
        if self.message:
            data["error"] = self.message
        return data


@dataclass
class DryRunReport:
    stats: PlanStats
    existing: Summary
    warnings: list[str]

    def as_json(self) -> dict[str, int]:
        done = self.existing.total_of("success") + self.existing.total_of("skipped")
        return {
            "courses": len(self.stats.courses),
            "segments": self.stats.planned,
            "no_video": self.stats.no_video,
            "refused": self.stats.refused,
            "already_done": done,
            "failed": self.existing.total_of("failed"),
            "to_download": self.stats.planned - done - self.existing.total_of("failed"),
            "new": self.stats.planned - self.existing.total,
        }
