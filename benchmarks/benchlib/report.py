"""From individual runs to what issue 13 asks for: medians and ranges per contender,
tfbulk's ratio to each peer *from the same round* (so a noisy minute hurts both sides of a
ratio alike), the targets, a table for stdout and a JSON document."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import Any

from benchlib.contenders import HTTP2_CAPABLE
from benchlib.datasets import DataSet

MB = 1_000_000
MIB = 1 << 20


@dataclass
class Run:
    """One contender's download of one data set in one round."""

    dataset: str
    round: int
    contender: str
    exit_code: int
    wall_s: float
    cpu_s: float
    peak_rss_bytes: int | None
    rss_method: str
    files: int
    bytes: int
    identical: int
    ok: bool
    protocols: dict[str, int]  # nginx's access log: requests by "HTTP version TLS version"
    connections: int  # distinct connections in that log
    problem: str = ""

    @property
    def files_per_s(self) -> float:
        return self.files / self.wall_s

    @property
    def mb_per_s(self) -> float:
        return self.bytes / MB / self.wall_s

    @property
    def cpu_ms_per_file(self) -> float:
        return self.cpu_s * 1000 / self.files


def spread(values: list[float]) -> dict[str, float]:
    """Median and range: a shared, noisy machine makes means meaningless."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def headline(dataset: DataSet) -> str:
    """The rate the targets are stated in: files/s for small files, MB/s for large ones."""
    return "mb_per_s" if dataset.file_bytes >= 16 * MB else "files_per_s"


def summarise(dataset: DataSet, runs: list[Run], peers: list[str]) -> dict[str, Any]:
    """Per contender spreads, and per peer the spread of same-round ratios."""
    mine = [r for r in runs if r.dataset == dataset.name]
    contenders: dict[str, Any] = {}
    for name in dict.fromkeys(r.contender for r in mine):
        own = [r for r in mine if r.contender == name]
        contenders[name] = {
            "wall_s": spread([r.wall_s for r in own]),
            "files_per_s": spread([r.files_per_s for r in own]),
            "mb_per_s": spread([r.mb_per_s for r in own]),
            "cpu_s": spread([r.cpu_s for r in own]),
            "cpu_ms_per_file": spread([r.cpu_ms_per_file for r in own]),
            "peak_rss_mib": spread([(r.peak_rss_bytes or 0) / MIB for r in own]),
            "rss_method": own[0].rss_method,
            "protocols": sorted({p for r in own for p in r.protocols}),
            "connections": spread([r.connections for r in own]),
            "all_ok": all(r.ok for r in own),
        }
    return {
        "files": dataset.files,
        "file_bytes": dataset.file_bytes,
        "total_bytes": dataset.total_bytes,
        "served_from": dataset.folder,
        "scheme": "https" if dataset.tls else "http",
        "http_asked": dataset.http or None,
        "headline": headline(dataset),
        "contenders": contenders,
        "ratios": {peer: _ratios(mine, peer) for peer in peers if peer in contenders},
        "runs": [
            asdict(r)
            | {"files_per_s": r.files_per_s, "mb_per_s": r.mb_per_s}
            | {"cpu_ms_per_file": r.cpu_ms_per_file}
            for r in mine
        ],
    }


def _ratios(runs: list[Run], peer: str) -> dict[str, Any]:
    """tfbulk's rate ÷ the peer's, round by round (same work, so the inverse wall ratio)."""
    per_round = []
    for number in sorted({r.round for r in runs}):
        ours = [r for r in runs if r.round == number and r.contender == "tfbulk"]
        theirs = [r for r in runs if r.round == number and r.contender == peer]
        if ours and theirs:
            per_round.append(theirs[0].wall_s / ours[0].wall_s)
    return {"per_round": per_round, **(spread(per_round) if per_round else {})}


# -- targets -------------------------------------------------------------------------------

SPEED_TARGETS = {
    # data set: {peer: minimum ratio of tfbulk's headline rate to the peer's}
    "small": {"curl": 0.45, "aria2c": 1.5},
    "large": {"curl": 0.7, "aria2c": 1.2},
}
CPU_MS_PER_FILE_LIMIT = 2.5  # on every small-file set: per-file cost, not bandwidth
RSS_LIMIT_MIB = 64
RSS_GROWTH_LIMIT_MIB = 1  # large − small: memory must not grow with the file size
STARTUP_LIMIT_S = 0.15  # `tfbulk --version` above a bare interpreter
SCALE_TARGETS = {
    "plan_s": 3.0,  # issue 13, set for 100,000 segments
    "rerun_first_download_s": 3.0,  # issue 13, 100,000 segments
    "first_download_s": 15.0,  # issue 16, 1,000,000 segments
    "dry_run_s": 10.0,  # issue 16
    "status_s": 1.0,  # issues 13 and 16
    "rss_growth_mib": 32.0,  # issue 16: peak RSS over a 1,000-segment run
}


def targets(
    summary: dict[str, Any], startup: dict[str, Any], scale: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """Every target of issue 13 that this run measured, with the value and met/not met."""
    found = _speed_targets(summary) + _cpu_targets(summary) + _rss_targets(summary)
    extra = startup["difference_s"]
    found.append(
        _target("start-up: tfbulk --version − python3 -c pass (s, medians)",
                f"<= {STARTUP_LIMIT_S}", extra, extra <= STARTUP_LIMIT_S)
    )  # fmt: skip
    for key, limit in SCALE_TARGETS.items():
        if scale and scale.get(key) is not None:
            name = f"scale: {key} ({scale['segments']:,} segments)"
            found.append(_target(name, f"<= {limit}", scale[key], scale[key] <= limit))
    return found


def _speed_targets(summary: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for name, limits in SPEED_TARGETS.items():
        if name not in summary:
            continue
        unit = "MB/s" if summary[name]["headline"] == "mb_per_s" else "files/s"
        for peer, minimum in limits.items():
            ratio = summary[name]["ratios"].get(peer, {}).get("median")
            if ratio is not None:
                label = f"{name}: tfbulk {unit} ÷ {peer} (median of same-round ratios)"
                found.append(_target(label, f">= {minimum}", ratio, ratio >= minimum))
    return found


def _cpu_targets(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """CPU per file on every set of small files (large sets show it in their table)."""
    found = []
    for name, data in summary.items():
        tfbulk = data["contenders"].get("tfbulk")
        if tfbulk and data["headline"] == "files_per_s":
            value = tfbulk["cpu_ms_per_file"]["median"]
            label = f"{name}: tfbulk CPU ms per file (median of rounds)"
            found.append(
                _target(label, f"<= {CPU_MS_PER_FILE_LIMIT}", value,
                        value <= CPU_MS_PER_FILE_LIMIT)
            )  # fmt: skip
    return found


def _rss_targets(summary: dict[str, Any]) -> list[dict[str, Any]]:
    rss = {
        name: summary[name]["contenders"]["tfbulk"]["peak_rss_mib"]["max"]
        for name in ("small", "large")
        if name in summary and "tfbulk" in summary[name]["contenders"]
    }
    found = [
        _target(f"{name}: tfbulk peak RSS MiB (worst round)", f"<= {RSS_LIMIT_MIB}", peak,
                peak <= RSS_LIMIT_MIB)
        for name, peak in rss.items()
    ]  # fmt: skip
    if len(rss) == 2:
        growth = rss["large"] - rss["small"]
        found.append(
            _target("tfbulk peak RSS large − small (MiB, worst rounds)",
                    f"<= {RSS_GROWTH_LIMIT_MIB}", growth, growth <= RSS_GROWTH_LIMIT_MIB)
        )  # fmt: skip
    return found


def _target(name: str, goal: str, value: float, met: bool) -> dict[str, Any]:
    return {"target": name, "goal": goal, "value": round(value, 3), "met": met}


# -- the table ---------------------------------------------------------------------------


def _cell(stat: dict[str, float], digits: int) -> str:
    fmt = f"{{:,.{digits}f}}"
    middle, low, high = (fmt.format(stat[k]) for k in ("median", "min", "max"))
    return f"{middle} ({low}–{high})"


def _ms_digits(stat: dict[str, float]) -> int:
    """Hundredths where a file costs a few ms (small sets), whole ms where it costs seconds."""
    return 2 if stat["median"] < 100 else 0


def _transport(data: dict[str, Any]) -> str:
    """What a set asks of the clients, and what the ones that cannot choose do instead."""
    if data["scheme"] == "http":
        return "HTTP/1.1"
    if data["http_asked"] != "2":
        return f"HTTPS, HTTP/{data['http_asked']} for every contender"
    fallback = [c for c in data["contenders"] if c not in HTTP2_CAPABLE]
    text = f"HTTPS, HTTP/2 for {', '.join(c for c in data['contenders'] if c in HTTP2_CAPABLE)}"
    return text + "".join(f"; {c} HTTP/1.1 (it has no HTTP/2)" for c in fallback)


def table(name: str, data: dict[str, Any], rounds: int) -> str:
    """A fixed-width table: medians with (min–max), the same-round ratios, then what
    nginx's access log says each contender spoke."""
    size = data["file_bytes"]
    label = f"{size // MIB} MiB" if size >= MIB else f"{size // 1024} KiB"
    lines = [
        f"{name}: {data['files']:,} files × {label} = {data['total_bytes'] / MB:,.0f} MB, "
        f"{_transport(data)}, 10 at once, {rounds} round{'s' if rounds != 1 else ''}; "
        "median (min–max)",
        f"{'contender':<9}  {'wall s':<19}  {'files/s':<22}  {'MB/s':<19}  {'CPU s':<19}  "
        f"{'CPU ms/file':<22}  {'peak RSS MiB':<19}  ok",
    ]
    for contender, c in data["contenders"].items():
        lines.append(
            f"{contender:<9}  {_cell(c['wall_s'], 2):<19}  {_cell(c['files_per_s'], 0):<22}  "
            f"{_cell(c['mb_per_s'], 0):<19}  {_cell(c['cpu_s'], 2):<19}  "
            f"{_cell(c['cpu_ms_per_file'], _ms_digits(c['cpu_ms_per_file'])):<22}  "
            f"{_cell(c['peak_rss_mib'], 1):<19}  "
            f"{'yes' if c['all_ok'] else 'NO'}"
        )
    unit = "MB/s" if data["headline"] == "mb_per_s" else "files/s"
    for peer, ratio in data["ratios"].items():
        if "median" in ratio:
            rounds_text = ", ".join(f"{r:.2f}" for r in ratio["per_round"])
            lines.append(
                f"  tfbulk ÷ {peer} ({unit}, same round): {_cell(ratio, 2)}  [{rounds_text}]"
            )
    seen = "; ".join(
        f"{contender} {' + '.join(c['protocols']) or 'nothing'} over "
        f"{_cell(c['connections'], 0)} connections"
        for contender, c in data["contenders"].items()
    )
    lines.append(f"  nginx access log: {seen}")
    return "\n".join(lines)


def startup_table(startup: dict[str, Any]) -> str:
    runs = startup["runs"]
    return (
        f"start-up (wall clock, median of {runs} alternating runs each, {startup['python']})\n"
        f"  python3 -c pass: {startup['python_s'] * 1000:.0f} ms; "
        f"tfbulk --version: {startup['tfbulk_s'] * 1000:.0f} ms; "
        f"difference: {startup['difference_s'] * 1000:.0f} ms"
    )


def scale_table(scale: dict[str, Any]) -> str:
    segments = scale["segments"]
    rows = [
        f"scale (tfbulk alone, {segments:,}-segment snapshot)",
        f"  plan into a fresh state DB, until the run starts: {scale['plan_s']:.2f} s, "
        f"until the first download starts: {scale['first_download_s']:.2f} s",
        f"  peak RSS {scale['plan_peak_rss_bytes'] / MB:.1f} MB, "
        f"{scale['rss_growth_mib']:+.1f} MiB over a {scale['baseline_segments']:,}-segment run",
        f"  dry run on that state DB: {scale['dry_run_s']:.2f} s",
        f"  tfbulk status on that state DB: {scale['status_s']:.2f} s "
        f"(median of {len(scale['status_runs_s'])})",
        f"  rerun with {scale['done_fraction']:.0%} done, until the first new download "
        f"starts: {scale['rerun_first_download_s']:.2f} s",
    ]
    return "\n".join(rows)


def targets_table(found: list[dict[str, Any]]) -> str:
    lines = ["targets"]
    for t in found:
        verdict = "met    " if t["met"] else "NOT MET"
        lines.append(f"  {verdict}  {t['target']}: {t['value']} (goal {t['goal']})")
    return "\n".join(lines)
