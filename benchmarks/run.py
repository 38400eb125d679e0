"""tfbulk against aria2c and curl on a real nginx: one command, rerunnable by anyone.

    .venv/bin/python benchmarks/run.py                 # full: small, large, small over HTTPS
                                                       # and HTTP/2, 3 rounds, start-up, scale
    .venv/bin/python benchmarks/run.py --smoke         # 50 small files plain and over HTTP/2,
                                                       # 1 round (test suite)
    .venv/bin/python benchmarks/run.py --sets large-https --rounds 5 --out results.json

Contenders run alternately (tfbulk, aria2c, curl, tfbulk, …) so a noisy minute on a shared
machine hits all of them, and tfbulk's ratio to each peer is taken within a round.
See docs/performance.md for what the numbers mean and the latest results.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchlib import contenders as cont
from benchlib import datasets, report, verify
from benchlib.measure import GNU_TIME, have_gnu_time, measure
from benchlib.nginx import Nginx, find_nginx
from benchlib.nginx import version as nginx_version
from benchlib.scale import scale_figures
from benchlib.startup import STARTUP_RUNS, startup_figures
from benchlib.tls import make_certificates

DEFAULT_ROUNDS = 3
DEFAULT_SETS = "small,large,small-https,small-h2"  # large-https opt-in: bounds the run time
SETS = {
    d.name: d
    for d in (
        datasets.SMALL, datasets.LARGE, datasets.SMALL_HTTPS, datasets.SMALL_H2,
        datasets.LARGE_HTTPS,
    )
}  # fmt: skip
SCALE_SEGMENTS = 1_000_000
SMOKE_SCALE_SEGMENTS = 1_000
SMOKE_STARTUP_RUNS = 3


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--smoke", action="store_true", help="50 small files, plain and HTTP/2, 1 round, quick"
    )
    parser.add_argument("--rounds", type=int, help=f"rounds (default {DEFAULT_ROUNDS}; smoke 1)")
    parser.add_argument("--out", type=Path, default=Path("benchmark-results.json"))
    parser.add_argument(
        "--sets",
        default=DEFAULT_SETS,
        help=f"comma-separated, of {', '.join(SETS)} (default {DEFAULT_SETS})",
    )
    parser.add_argument(
        "--contenders", default="tfbulk,aria2c,curl", help="comma-separated (default all three)"
    )
    parser.add_argument("--scale-segments", type=int, help=f"default {SCALE_SEGMENTS:,}; 0 skips")
    parser.add_argument(
        "--workdir", type=Path, help="keep data here and reuse it next time (default: temporary)"
    )
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = 1 if args.smoke else DEFAULT_ROUNDS
    if args.scale_segments is None:
        args.scale_segments = SMOKE_SCALE_SEGMENTS if args.smoke else SCALE_SEGMENTS
    return args


def chosen_sets(args: argparse.Namespace) -> list[datasets.DataSet]:
    if args.smoke:
        return [datasets.SMOKE, datasets.SMOKE_H2]
    names = [n.strip() for n in args.sets.split(",") if n.strip()]
    unknown = [n for n in names if n not in SETS]
    if unknown:
        raise SystemExit(f"benchmark: unknown data set {', '.join(unknown)}; use {', '.join(SETS)}")
    return [SETS[n] for n in names]


def log(message: str) -> None:
    """Progress goes to stderr; stdout is for the table."""
    print(message, file=sys.stderr, flush=True)


def prepare_inputs(work: Path, dataset: datasets.DataSet, server: Nginx, key: Path) -> cont.Inputs:
    """The URL lists and snapshot of one set, pointing at the listener its scheme needs."""
    base_url = server.tls_url if dataset.tls else server.base_url
    inputs = work / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    aria, curl = datasets.write_url_lists(inputs, dataset, base_url)
    snapshot = datasets.write_snapshot(inputs / f"{dataset.name}.snapshot.db", dataset.files)
    return cont.Inputs(
        snapshot=snapshot,
        private_key=key,
        url_template=f"{base_url}/{dataset.folder}/{{segment_id}}.mp4",
        aria2_input=aria,
        curl_config=curl,
        ca_bundle=server.certificates.ca if dataset.tls else None,
        http=dataset.http,
    )


def run_once(
    name: str, dataset: datasets.DataSet, inputs: cont.Inputs, digests: dict[str, str],
    work: Path, server: Nginx, round_number: int,
) -> report.Run:  # fmt: skip
    """One contender, one data set, into a fresh folder; verified, then the folder goes."""
    dest = work / "downloads" / name
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    os.sync()  # no dirty pages of the previous contender competing with this one
    mark = server.log_mark()
    measured = measure(cont.BUILDERS[name](inputs, dest), cwd=dest, env=cont.child_env())
    verdict = verify.check(dest, digests)
    requests = server.requests_since(mark)  # read after the check: nginx has logged by then
    peak, method = measured.peak_rss_bytes, measured.rss_method
    problem = "" if verdict.ok else f"missing {verdict.missing} differ {verdict.different}"
    expected = cont.expected_http(name, dataset.http)
    if requests.http_versions != {expected}:
        problem = f"{problem} expected {expected}, nginx logged {requests.protocols}"
    if name == "tfbulk":
        peak, method, problem = _tfbulk_peak(measured.stdout, peak, method, problem)
    if measured.exit_code != 0:
        problem = f"exit {measured.exit_code}: {measured.stderr.strip()[-300:]} {problem}"
    shutil.rmtree(dest, ignore_errors=True)
    return report.Run(
        dataset=dataset.name,
        round=round_number,
        contender=name,
        exit_code=measured.exit_code,
        wall_s=measured.wall_s,
        cpu_s=measured.cpu_s,
        peak_rss_bytes=peak,
        rss_method=method,
        files=dataset.files,
        bytes=dataset.total_bytes,
        identical=verdict.identical,
        ok=verdict.ok and measured.exit_code == 0 and not problem,
        protocols=requests.protocols,
        connections=requests.connections,
        problem=problem.strip(),
    )


def _tfbulk_peak(
    stdout: str, peak: int | None, method: str, problem: str
) -> tuple[int | None, str, str]:
    """tfbulk's own VmHWM from `--json` is the most direct figure; keep the other if absent."""
    try:
        data = json.loads(stdout)
    except json.JSONDecodeError:
        return peak, method, f"{problem} no JSON summary on stdout"
    if data.get("success") != data.get("total"):
        problem = f"{problem} tfbulk: {data.get('success')}/{data.get('total')} success"
    return int(data["peak_rss_bytes"]), "tfbulk --json peak_rss_bytes (VmHWM)", problem


def benchmark_set(
    dataset: datasets.DataSet, names: list[str], rounds: int, work: Path, data_root: Path,
    server: Nginx, key: Path,
) -> list[report.Run]:  # fmt: skip
    log(f"data set {dataset.name}: {dataset.files:,} × {dataset.file_bytes:,} bytes")
    digests = datasets.generate(data_root, dataset)
    inputs = prepare_inputs(work, dataset, server, key)
    runs = []
    for number in range(1, rounds + 1):
        for name in names:
            run = run_once(name, dataset, inputs, digests, work, server, number)
            runs.append(run)
            rate = f"{run.files_per_s:,.0f} files/s, {run.mb_per_s:,.0f} MB/s"
            status = "ok" if run.ok else f"PROBLEM: {run.problem}"
            spoke = ", ".join(run.protocols)
            log(f"  round {number} {name:<7} {run.wall_s:6.2f} s  {rate}  {spoke}  {status}")
    return runs


def environment(names: list[str]) -> dict[str, Any]:
    nginx = find_nginx()
    return {
        "tfbulk_commit": _git_commit(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "nginx": nginx_version(nginx) if nginx else None,
        "tools": {name: cont.tool_version(name) for name in names},
        "peak_rss_for_peers": "/usr/bin/time -v" if have_gnu_time() else "sampled VmHWM",
        "gnu_time": GNU_TIME if have_gnu_time() else None,
    }


def _git_commit() -> str | None:
    """The commit measured, so a table in the docs can be traced to its code."""
    out = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        capture_output=True, text=True, check=False, cwd=Path(__file__).parent,
    )  # fmt: skip
    return out.stdout.strip() or None


def make_key(work: Path) -> Path:
    """A throw-away RSA-2048 key: tfbulk signs every URL for real (nginx ignores it)."""
    from tfbulk.credentials import write_key_pair

    key = work / "bench-private.pem"
    write_key_pair(key, work / "bench-public.pem")
    return key


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sets = chosen_sets(args)
    names = [n.strip() for n in args.contenders.split(",") if n.strip()]
    if "tfbulk" not in names or any(n not in cont.BUILDERS for n in names):
        raise SystemExit("benchmark: --contenders must include tfbulk; known: tfbulk,aria2c,curl")
    missing = cont.missing_tools(names) + ([] if find_nginx() else ["nginx"])
    if missing:
        raise SystemExit(
            f"benchmark: not installed: {', '.join(missing)} (Debian: nginx aria2 curl)"
        )
    temporary = args.workdir is None
    work = Path(tempfile.mkdtemp(prefix="tfbulk-bench-")) if temporary else args.workdir
    work.mkdir(parents=True, exist_ok=True)
    try:
        return _benchmark(args, sets, names, work.resolve())
    finally:
        if temporary:
            shutil.rmtree(work, ignore_errors=True)
        else:
            shutil.rmtree(work / "downloads", ignore_errors=True)


def _benchmark(
    args: argparse.Namespace, sets: list[datasets.DataSet], names: list[str], work: Path
) -> int:
    data_root = work / "data"
    data_root.mkdir(exist_ok=True)
    generated = {p.name.removesuffix(".manifest.json") for p in data_root.glob("*.manifest.json")}
    datasets.check_disk(work, sets, generated=generated)
    datasets.write_scale_file(data_root)
    key = make_key(work)
    started = time.time()
    log(f"start-up: tfbulk --version and python3 -c pass, {sys.executable}")
    startup = startup_figures(SMOKE_STARTUP_RUNS if args.smoke else STARTUP_RUNS)
    runs: list[report.Run] = []
    scale = None
    with Nginx(data_root, work / "nginx", make_certificates(work / "tls")) as server:
        log(f"nginx on {server.base_url} and {server.tls_url}, work folder {work}")
        for dataset in sets:
            runs += benchmark_set(dataset, names, args.rounds, work, data_root, server, key)
        if args.scale_segments:
            log(f"scale figures: {args.scale_segments:,} segments")
            scale = scale_figures(work, server.base_url, key, args.scale_segments)
    peers = [n for n in names if n in cont.PEERS]
    summary = {d.name: report.summarise(d, runs, peers) for d in sets}
    found = report.targets(summary, startup, scale)
    document = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "duration_s": round(time.time() - started, 1),
        "rounds": args.rounds,
        "concurrency": cont.CONCURRENCY,
        "environment": environment(names),
        "datasets": summary,
        "startup": startup,
        "scale": scale,
        "targets": found,
    }
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    blocks = [report.table(name, data, args.rounds) for name, data in summary.items()]
    blocks.append(report.startup_table(startup))
    if scale:
        blocks.append(report.scale_table(scale))
    blocks.append(report.targets_table(found))
    print("\n\n".join(blocks))
    log(f"results: {args.out}")
    return 0 if all(r.ok for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
