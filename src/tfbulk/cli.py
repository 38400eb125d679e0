"""The `tfbulk` command line: flags to settings, settings to the library, results to exit codes.

Every error a user can cause ends here as one line on stderr with the contract's exit
code; tracebacks are for bugs, and even those never show local variables.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from tfbulk import __version__
from tfbulk.credentials import build_signer
from tfbulk.display.console import RunDisplay, make_console
from tfbulk.display.logfile import JsonLog
from tfbulk.display.summary import (
    course_table,
    failures_table,
    segments_table,
    status_grid,
    totals_line,
    workers_table,
)
from tfbulk.errors import BadInput, TfbulkError
from tfbulk.events import Broadcast, Observer
from tfbulk.report import DryRunReport
from tfbulk.runner import dry_run, run
from tfbulk.settings import (
    DEFAULT_EXPIRES,
    DEFAULT_LEASE,
    DEFAULT_PATH_TEMPLATE,
    DEFAULT_URL_TEMPLATE,
    SIGNERS,
    RunSettings,
    Scope,
    Sharing,
    SignerSettings,
    Tuning,
    check_lease,
    check_positive,
    parse_duration,
    resolve_state,
)
from tfbulk.state import Store, WorkerStatus, open_store

app = typer.Typer(
    name="tfbulk",
    help="Bulk-download a signed-URL video catalogue: just-in-time signing, resumable, verified.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# -- shared options ------------------------------------------------------------------

Dest = Annotated[
    Path, typer.Option("--dest", envvar="TFBULK_DEST", help="Download folder.", show_default=True)
]
State = Annotated[
    str | None,
    typer.Option(
        "--state",
        envvar="TFBULK_STATE",
        help="State DB (default DEST/.tfbulk/state.db).",
        show_default=False,
    ),
]
Courses = Annotated[
    list[int] | None,
    typer.Option("--course", envvar="TFBULK_COURSE", help="Only this course (repeatable)."),
]
Segments = Annotated[
    list[int] | None,
    typer.Option("--segment", envvar="TFBULK_SEGMENT", help="Only this segment (repeatable)."),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
KeyPairId = Annotated[
    str | None,
    typer.Option("--key-pair-id", envvar="TFBULK_KEY_PAIR_ID", help="CloudFront public key ID."),
]
PrivateKey = Annotated[
    Path | None,
    typer.Option(
        "--private-key", envvar="TFBULK_PRIVATE_KEY_FILE", help="PEM RSA private key file."
    ),
]
Expires = Annotated[
    str,
    typer.Option(
        "--expires", envvar="TFBULK_EXPIRES", help="Lifetime of each signature: 90s, 30m, 2h."
    ),
]
SignerKind = Annotated[
    str,
    typer.Option("--signer", envvar="TFBULK_SIGNER", help="cloudfront, s3 or none."),
]


def _signer_settings(
    signer: str, key_pair_id: str | None, private_key: Path | None, expires: str
) -> SignerSettings:
    if signer not in SIGNERS:
        raise BadInput(f"--signer {signer!r} is not one of {', '.join(SIGNERS)}")
    return SignerSettings(
        kind=signer,
        key_pair_id=key_pair_id,
        private_key=private_key,
        expires=parse_duration(expires, "--expires"),
    )


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tfbulk {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """tfbulk downloads every video of a course catalogue snapshot from a signed-URL CDN."""


# -- run ---------------------------------------------------------------------------------


@app.command("run")
def run_command(
    snapshot: Annotated[
        Path | None,
        typer.Option("--snapshot", envvar="TFBULK_SNAPSHOT", help="Catalogue snapshot (SQLite)."),
    ] = None,
    dest: Dest = Path("downloads"),
    state: State = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", envvar="TFBULK_CONCURRENCY", help="Downloads at once.")
    ] = 10,
    lease: Annotated[
        str,
        typer.Option(
            "--lease",
            envvar="TFBULK_LEASE",
            help="PostgreSQL: a dead worker's segments go to others after this long.",
        ),
    ] = DEFAULT_LEASE,
    max_global: Annotated[
        int | None,
        typer.Option(
            "--max-global",
            envvar="TFBULK_MAX_GLOBAL",
            help="PostgreSQL: most downloads in flight across all workers.",
        ),
    ] = None,
    retries: Annotated[
        int,
        typer.Option("--retries", envvar="TFBULK_RETRIES", help="Attempts per segment and run."),
    ] = 5,
    course: Courses = None,
    segment: Segments = None,
    limit_courses: Annotated[
        int | None,
        typer.Option(
            "--limit-courses", envvar="TFBULK_LIMIT_COURSES", help="Only the first N courses."
        ),
    ] = None,
    max_time: Annotated[
        str | None,
        typer.Option(
            "--max-time",
            envvar="TFBULK_MAX_TIME",
            help="Start no new download after this long (seconds, or 30m, 2h).",
        ),
    ] = None,
    dry_run_flag: Annotated[
        bool,
        typer.Option(
            "--dry-run", envvar="TFBULK_DRY_RUN", help="Plan and print; download nothing."
        ),
    ] = False,
    progress: Annotated[
        bool | None,
        typer.Option(
            "--progress/--no-progress",
            envvar="TFBULK_PROGRESS",
            help="Live progress view (default: when the output is a terminal).",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", envvar="TFBULK_JSON", help="One JSON summary on stdout.")
    ] = False,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet", "-q", envvar="TFBULK_QUIET", help="Errors and a one-line summary only."
        ),
    ] = False,
    log_file: Annotated[
        Path | None,
        typer.Option(
            "--log-file", envvar="TFBULK_LOG_FILE", help="Append one JSON line per event."
        ),
    ] = None,
    stats_interval: Annotated[
        str,
        typer.Option(
            "--stats-interval",
            envvar="TFBULK_STATS_INTERVAL",
            help="Without a terminal: a stats line this often.",
        ),
    ] = "60s",
    url_template: Annotated[
        str, typer.Option("--url-template", envvar="TFBULK_URL_TEMPLATE", help="URL of a segment.")
    ] = DEFAULT_URL_TEMPLATE,
    path_template: Annotated[
        str,
        typer.Option(
            "--path-template", envvar="TFBULK_PATH_TEMPLATE", help="File path under --dest."
        ),
    ] = DEFAULT_PATH_TEMPLATE,
    signer: SignerKind = "cloudfront",
    key_pair_id: KeyPairId = None,
    private_key: PrivateKey = None,
    expires: Expires = DEFAULT_EXPIRES,
    backoff_base: Annotated[
        str,
        typer.Option(
            "--backoff-base", envvar="TFBULK_BACKOFF_BASE", help="First retry delay ceiling."
        ),
    ] = "1s",
    backoff_max: Annotated[
        str, typer.Option("--backoff-max", envvar="TFBULK_BACKOFF_MAX", help="Longest retry delay.")
    ] = "120s",
    connect_timeout: Annotated[
        str,
        typer.Option("--connect-timeout", envvar="TFBULK_CONNECT_TIMEOUT", help="Connect timeout."),
    ] = "30s",
    read_timeout: Annotated[
        str,
        typer.Option(
            "--read-timeout",
            envvar="TFBULK_READ_TIMEOUT",
            help="No byte for this long fails the attempt.",
        ),
    ] = "60s",
) -> int:
    """Plan the snapshot into the state DB, then download every segment not yet done."""
    if snapshot is None:
        raise BadInput("--snapshot PATH (or TFBULK_SNAPSHOT) is required")
    settings = RunSettings(
        snapshot=snapshot,
        dest=dest,
        state=resolve_state(state, dest),
        url_template=url_template,
        path_template=path_template,
        signer=_signer_settings(signer, key_pair_id, private_key, expires),
        scope=Scope(
            courses=frozenset(course or ()),
            segments=frozenset(segment or ()),
            limit_courses=check_positive(limit_courses, "--limit-courses")
            if limit_courses is not None
            else None,
        ),
        tuning=Tuning(
            concurrency=check_positive(concurrency, "--concurrency"),
            retries=check_positive(retries, "--retries"),
            backoff_base=parse_duration(backoff_base, "--backoff-base"),
            backoff_max=parse_duration(backoff_max, "--backoff-max"),
            connect_timeout=parse_duration(connect_timeout, "--connect-timeout"),
            read_timeout=parse_duration(read_timeout, "--read-timeout"),
            max_time=parse_duration(max_time, "--max-time") if max_time else None,
        ),
        sharing=Sharing(
            lease=check_lease(parse_duration(lease, "--lease")),
            max_global=check_positive(max_global, "--max-global")
            if max_global is not None
            else None,
        ),
        dry_run=dry_run_flag,
    )
    human = sys.stderr if as_json else sys.stdout
    if settings.dry_run:
        return _print_dry_run(dry_run(settings), human, as_json=as_json)
    live = progress if progress is not None else human.isatty()
    display = RunDisplay(
        human,
        live=live,
        quiet=quiet,
        stats_interval=parse_duration(stats_interval, "--stats-interval"),
    )
    observers: list[Observer] = [display]
    if log_file is not None:
        observers.append(JsonLog(log_file))
    try:
        report = run(settings, Broadcast(observers))
    finally:
        display.close()
    _print_warnings(report.warnings)
    display.finish(report)
    if as_json:
        _print_json(report.as_json())
    if report.message:
        typer.echo(f"tfbulk: error: {report.message}", err=True)
    return report.exit_code


def _print_dry_run(report: DryRunReport, human: object, *, as_json: bool) -> int:
    _print_warnings(report.warnings)
    data = report.as_json()
    if as_json:
        _print_json(data)
        return 0
    stats = report.stats
    lines = [
        f"dry run: {data['segments']:,} downloadable segments in {data['courses']:,} courses "
        f"({stats.no_video:,} without video, {stats.segments:,} segments in the snapshot)",
        f"  already done: {data['already_done']:,} · failed earlier: {data['failed']:,} · "
        f"to download: {data['to_download']:,} (new: {data['new']:,})",
    ]
    if stats.refused:
        lines.append(f"  refused (unsafe path): {stats.refused:,}")
    lines.append("nothing was downloaded and nothing was written")
    typer.echo("\n".join(lines), file=human)  # type: ignore[arg-type]
    return 0


def _print_warnings(warnings: list[str]) -> None:
    for warning in warnings:
        typer.echo(f"tfbulk: warning: {warning}", err=True)


def _print_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")
    sys.stdout.flush()


# -- status, failed, retry -------------------------------------------------------------


def _open_existing(state: str | None, dest: Path) -> Store:
    return open_store(resolve_state(state, dest), create=False, lock=False)


@app.command("status")
def status_command(
    dest: Dest = Path("downloads"),
    state: State = None,
    course: Annotated[
        int | None, typer.Option("--course", help="List this course's segments.")
    ] = None,
    as_json: AsJson = False,
) -> int:
    """Counts from the state DB, overall and per course."""
    store = _open_existing(state, dest)
    try:
        summary = store.summary(scoped=False, course=course)
        records = store.records(course=course) if course is not None else []
        workers = store.workers()
    finally:
        store.close()
    if course is not None and not summary.courses:
        raise BadInput(f"course {course} is not in the state DB")
    if as_json:
        data = summary.as_json()
        if course is not None:
            data["segments"] = [
                {
                    "segment_id": r.segment_id,
                    "title": r.title,
                    "status": r.status,
                    "size": r.size,
                    "attempts": r.attempts,
                    "error": r.error,
                    "path": r.path,
                }
                for r in records
            ]
        data["workers"] = [_worker_json(w) for w in workers]
        _print_json(data)
        return 0
    console = make_console(sys.stdout, terminal=sys.stdout.isatty())
    fancy = sys.stdout.isatty()
    console.print(
        status_grid(
            success=summary.total_of("success"),
            processing=summary.total_of("processing"),
            queued=summary.total_of("pending"),
            failed=summary.total_of("failed"),
            skipped=summary.total_of("skipped"),
            fancy=fancy,
        )
    )
    console.print(course_table(summary.courses, fancy=fancy, bars=True))
    if records:
        console.print(segments_table(records, fancy=fancy))
    console.print(totals_line(summary))
    if workers:
        console.print(workers_table(workers, fancy=fancy))
    return 0


def _worker_json(worker: WorkerStatus) -> dict[str, object]:
    return {
        "id": worker.id,
        "host": worker.host,
        "pid": worker.pid,
        "live": worker.live,
        "claimed": worker.claimed,
        "started": _iso(worker.started),
        "last_heartbeat": _iso(worker.last_heartbeat),
        "heartbeat_age_s": round(worker.heartbeat_age, 3),
        "files": worker.files,
        "bytes": worker.bytes,
        "throughput_bps": round(worker.rate),
    }


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


@app.command("failed")
def failed_command(
    dest: Dest = Path("downloads"),
    state: State = None,
    course: Annotated[int | None, typer.Option("--course", help="Only this course.")] = None,
    as_json: AsJson = False,
) -> int:
    """Failed segments with their last error."""
    store = _open_existing(state, dest)
    try:
        records = store.records(course=course, status="failed")
    finally:
        store.close()
    if as_json:
        _print_json(
            [
                {
                    "segment_id": r.segment_id,
                    "course_id": r.course_id,
                    "attempts": r.attempts,
                    "error": r.error,
                    "title": r.title,
                    "path": r.path,
                }
                for r in records
            ]
        )
        return 0
    if not records:
        typer.echo("no failed segments")
        return 0
    console = make_console(sys.stdout, terminal=sys.stdout.isatty())
    console.print(failures_table(records, fancy=sys.stdout.isatty()))
    console.print(f"{len(records):,} failed; requeue them with `tfbulk retry`")
    return 0


@app.command("retry")
def retry_command(
    dest: Dest = Path("downloads"),
    state: State = None,
    course: Courses = None,
    segment: Segments = None,
    as_json: AsJson = False,
) -> int:
    """Put failed segments back to pending (all, or --course/--segment)."""
    store = _open_existing(state, dest)
    try:
        count = store.requeue_failed(course or (), segment or ())
    finally:
        store.close()
    if as_json:
        _print_json({"requeued": count})
    else:
        typer.echo(
            f"requeued {count:,} failed segment{'s' if count != 1 else ''}; "
            "run `tfbulk run` with the same flags to download them"
        )
    return 0


# -- sign ------------------------------------------------------------------------------


@app.command("sign")
def sign_command(
    url: Annotated[str, typer.Argument(help="The URL to sign.")],
    signer: SignerKind = "cloudfront",
    key_pair_id: KeyPairId = None,
    private_key: PrivateKey = None,
    expires: Expires = DEFAULT_EXPIRES,
    expires_at: Annotated[
        int | None,
        typer.Option("--expires-at", help="Absolute expiry (Unix time) instead of --expires."),
    ] = None,
) -> int:
    """Print URL signed the way `tfbulk run` signs each request."""
    settings = _signer_settings(signer, key_pair_id, private_key, expires)
    built = build_signer(settings)
    now = time.time() if expires_at is None else expires_at - settings.expires
    typer.echo(built.sign(url, now))
    return 0


# -- entry point -------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    """Run the app; turn every expected error into one line and a documented exit code."""
    try:
        code = app(args=argv, prog_name="tfbulk", standalone_mode=False)
    except TfbulkError as exc:
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted; nothing was lost, run again to resume", 130)
    except Exception as exc:
        usage = _usage_error(exc)
        if usage is None:
            raise
        _fail(*usage)
    sys.exit(code if isinstance(code, int) else 0)


def _usage_error(exc: Exception) -> tuple[str, int] | None:
    """Click's errors (typer may vendor its own click), recognised by their interface."""
    if type(exc).__name__ == "Abort":
        return "interrupted", 130
    if type(exc).__name__ == "NoArgsIsHelpError":
        typer.echo(exc.format_message(), err=True)  # type: ignore[attr-defined]
        sys.exit(2)
    message, code = getattr(exc, "format_message", None), getattr(exc, "exit_code", None)
    if not callable(message) or not isinstance(code, int):
        return None
    ctx = getattr(exc, "ctx", None)
    name = getattr(getattr(ctx, "command", None), "name", None)
    hint = f" (see `tfbulk {name} --help`)" if name and name != "tfbulk" else ""
    return f"{message()}{hint}", code


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(f"tfbulk: error: {message}", err=True)
    sys.exit(code)
