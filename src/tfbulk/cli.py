"""The `tfbulk` command line: flags to settings, settings to the library, results to exit codes.

Every error a user can cause ends here as one line on stderr with the contract's exit
code; tracebacks are for bugs, and even those never show local variables.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from tfbulk import __version__
from tfbulk.display.console import make_console
from tfbulk.display.summary import (
    course_table,
    failures_table,
    segments_table,
    status_grid,
    totals_line,
    workers_table,
)
from tfbulk.errors import BadInput, TfbulkError
from tfbulk.settings import (
    CANNED_SHA1,
    DEFAULT_EXPIRES,
    DEFAULT_KEY_TEMPLATE,
    DEFAULT_LEASE,
    DEFAULT_MAX_FILE_SIZE,
    DEFAULT_PATH_TEMPLATE,
    DEFAULT_REGION,
    DEFAULT_URL_TEMPLATE,
    SIGNERS,
    Network,
    PolicySettings,
    RunSettings,
    Scope,
    Sharing,
    SignerSettings,
    Tuning,
    check_ca_bundle,
    check_concurrency,
    check_http_version,
    check_lease,
    check_positive,
    parse_duration,
    parse_size,
    policy_settings,
    resolve_state,
)
from tfbulk.state import Store, WorkerStatus, open_store

if TYPE_CHECKING:
    from tfbulk.audit import AuditReport
    from tfbulk.report import DryRunReport, RunReport

# Commands import what only they use when they run: `status`, `failed` and `retry` load no
# HTTP stack, signer or event loop; a cron `run` never loads the origin, the doctor's
# probes or the audit.

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

SnapshotPath = Annotated[
    Path | None,
    typer.Option("--snapshot", envvar="TFBULK_SNAPSHOT", help="Catalogue snapshot (SQLite)."),
]
UrlTemplate = Annotated[
    str | None,
    typer.Option(
        "--url-template",
        envvar="TFBULK_URL_TEMPLATE",
        help=f"URL of a segment (default {DEFAULT_URL_TEMPLATE}; not with --signer s3).",
        show_default=False,
    ),
]
PathTemplate = Annotated[
    str,
    typer.Option("--path-template", envvar="TFBULK_PATH_TEMPLATE", help="File path under --dest."),
]

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
        "--private-key",
        envvar="TFBULK_PRIVATE_KEY_FILE",
        help="PEM private key file: RSA (2048 bits or more) or ECDSA P-256.",
    ),
]
HashAlgorithm = Annotated[
    str | None,
    typer.Option(
        "--hash-algorithm",
        envvar="TFBULK_HASH_ALGORITHM",
        help="CloudFront signature hash: SHA1 (default) or SHA256.",
        show_default=False,
    ),
]
PolicyResource = Annotated[
    str | None,
    typer.Option(
        "--policy-resource",
        envvar="TFBULK_POLICY_RESOURCE",
        help="Custom policy for every URL matching this pattern (* and ? wildcards).",
    ),
]
DateGreaterThan = Annotated[
    str | None,
    typer.Option(
        "--date-greater-than",
        envvar="TFBULK_DATE_GREATER_THAN",
        help="Custom policy: not valid before this time (Unix seconds or ISO-8601).",
    ),
]
IpAddress = Annotated[
    str | None,
    typer.Option(
        "--ip-address",
        envvar="TFBULK_IP_ADDRESS",
        help="Custom policy: only for clients in this range (CIDR).",
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
Bucket = Annotated[
    str | None, typer.Option("--bucket", envvar="TFBULK_BUCKET", help="S3 bucket (--signer s3).")
]
Region = Annotated[
    str, typer.Option("--region", envvar="TFBULK_REGION", help="S3 region (--signer s3).")
]
EndpointUrl = Annotated[
    str | None,
    typer.Option(
        "--endpoint-url",
        envvar="TFBULK_ENDPOINT_URL",
        help="S3-compatible store, addressed path-style (--signer s3).",
    ),
]
KeyTemplate = Annotated[
    str,
    typer.Option(
        "--key-template",
        envvar="TFBULK_KEY_TEMPLATE",
        help="S3 object key of a segment (--signer s3).",
    ),
]
Profile = Annotated[
    str | None,
    typer.Option(
        "--profile",
        envvar="TFBULK_PROFILE",
        help="AWS profile (--signer s3), used instead of AWS_* keys and AWS_PROFILE.",
    ),
]


HttpVersion = Annotated[
    str,
    typer.Option(
        "--http",
        envvar="TFBULK_HTTP",
        help="HTTP version: 1.1, 2 (HTTP/2 over TLS where the server offers it) or 3.",
    ),
]
CaBundle = Annotated[
    Path | None,
    typer.Option(
        "--ca-bundle",
        envvar="TFBULK_CA_BUNDLE",
        help="PEM file of CA certificates to trust (private CAs, TLS-inspecting proxies).",
    ),
]
MaxFileSize = Annotated[
    str,
    typer.Option(
        "--max-file-size",
        envvar="TFBULK_MAX_FILE_SIZE",
        help="A body longer than this fails its segment (e.g. 64G, 500M).",
    ),
]


def _network(http: str, ca_bundle: Path | None, max_file_size: str) -> Network:
    return Network(
        http_version=check_http_version(http),
        ca_bundle=check_ca_bundle(ca_bundle),
        max_file_size=check_positive(
            parse_size(max_file_size, "--max-file-size"), "--max-file-size"
        ),
    )


LONG_EXPIRES = 24 * 3600.0
S3_MAX_EXPIRES = 7 * 86400.0  # refused by the S3 signer anyway: no warning before the error


def _signer_settings(
    signer: str,
    key_pair_id: str | None,
    private_key: Path | None,
    expires: str,
    *,
    bucket: str | None = None,
    region: str = DEFAULT_REGION,
    endpoint_url: str | None = None,
    key_template: str = DEFAULT_KEY_TEMPLATE,
    profile: str | None = None,
    policy: PolicySettings = CANNED_SHA1,
) -> SignerSettings:
    if signer not in SIGNERS:
        raise BadInput(f"--signer {signer!r} is not one of {', '.join(SIGNERS)}")
    if signer != "cloudfront" and policy.flags():
        raise BadInput(f"{policy.flags()[0]} applies to --signer cloudfront only; drop it")
    lifetime = parse_duration(expires, "--expires")
    if lifetime > LONG_EXPIRES and not (signer == "s3" and lifetime > S3_MAX_EXPIRES):
        _print_warnings(
            [
                f"--expires {expires} is over 24 hours: a leaked URL stays valid that long; "
                "each request is signed as it is sent, so minutes are enough"
            ]
        )
    return SignerSettings(
        kind=signer,
        key_pair_id=key_pair_id,
        private_key=private_key,
        expires=lifetime,
        bucket=bucket,
        region=region,
        endpoint_url=endpoint_url,
        key_template=key_template,
        profile=profile,
        policy=policy,
    )


def _run_settings(
    snapshot: Path | None,
    dest: Path,
    state: str | None,
    templates: tuple[str | None, str],
    *,
    signer: SignerSettings,
    **rest: Any,
) -> RunSettings:
    """What `run` and `doctor` both need: input, output, templates; the rest is theirs."""
    if snapshot is None:
        raise BadInput("--snapshot PATH (or TFBULK_SNAPSHOT) is required")
    url_template, path_template = templates
    if url_template is not None and signer.kind == "s3":
        raise BadInput(
            "--url-template (or TFBULK_URL_TEMPLATE) does not apply to --signer s3, whose "
            "URLs come from --bucket, --key-template and --endpoint-url; drop one of them"
        )
    return RunSettings(
        snapshot=snapshot,
        dest=dest,
        state=resolve_state(state, dest),
        url_template=url_template or DEFAULT_URL_TEMPLATE,
        path_template=path_template,
        signer=signer,
        **rest,
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
    snapshot: SnapshotPath = None,
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
    url_template: UrlTemplate = None,
    path_template: PathTemplate = DEFAULT_PATH_TEMPLATE,
    signer: SignerKind = "cloudfront",
    key_pair_id: KeyPairId = None,
    private_key: PrivateKey = None,
    expires: Expires = DEFAULT_EXPIRES,
    hash_algorithm: HashAlgorithm = None,
    policy_resource: PolicyResource = None,
    date_greater_than: DateGreaterThan = None,
    ip_address: IpAddress = None,
    bucket: Bucket = None,
    region: Region = DEFAULT_REGION,
    endpoint_url: EndpointUrl = None,
    key_template: KeyTemplate = DEFAULT_KEY_TEMPLATE,
    profile: Profile = None,
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
    http: HttpVersion = "2",
    ca_bundle: CaBundle = None,
    max_file_size: MaxFileSize = DEFAULT_MAX_FILE_SIZE,
) -> int:
    """Plan the snapshot into the state DB, then download every segment not yet done."""
    settings = _run_settings(
        snapshot,
        dest,
        state,
        (url_template, path_template),
        signer=_signer_settings(
            signer,
            key_pair_id,
            private_key,
            expires,
            bucket=bucket,
            region=region,
            endpoint_url=endpoint_url,
            key_template=key_template,
            profile=profile,
            policy=policy_settings(hash_algorithm, policy_resource, date_greater_than, ip_address),
        ),
        scope=Scope(
            courses=frozenset(course or ()),
            segments=frozenset(segment or ()),
            limit_courses=check_positive(limit_courses, "--limit-courses")
            if limit_courses is not None
            else None,
        ),
        tuning=Tuning(
            concurrency=check_concurrency(concurrency),
            retries=check_positive(retries, "--retries"),
            backoff_base=parse_duration(backoff_base, "--backoff-base"),
            backoff_max=parse_duration(backoff_max, "--backoff-max"),
            connect_timeout=parse_duration(connect_timeout, "--connect-timeout"),
            read_timeout=parse_duration(read_timeout, "--read-timeout"),
            max_time=parse_duration(max_time, "--max-time") if max_time else None,
        ),
        network=_network(http, ca_bundle, max_file_size),
        sharing=Sharing(
            lease=check_lease(parse_duration(lease, "--lease")),
            max_global=check_positive(max_global, "--max-global")
            if max_global is not None
            else None,
        ),
        dry_run=dry_run_flag,
    )
    if settings.dry_run:
        from tfbulk.runner import dry_run

        human = sys.stderr if as_json else sys.stdout
        return _print_dry_run(dry_run(settings), human, as_json=as_json)
    report = _execute(settings, _Output(as_json, quiet, progress, log_file, stats_interval))
    if as_json:
        _print_json(report.as_json())
    return report.exit_code


@dataclass(frozen=True)
class _Output:
    """How a run talks to people: the flags `run` and `demo` share."""

    as_json: bool = False
    quiet: bool = False
    progress: bool | None = None
    log_file: Path | None = None
    stats_interval: str = "60s"


def _execute(settings: RunSettings, output: _Output) -> RunReport:
    """Run with the display the flags ask for; print the summary and any error."""
    from tfbulk.display.console import RunDisplay
    from tfbulk.display.logfile import JsonLog
    from tfbulk.events import Broadcast, Observer
    from tfbulk.runner import run

    human = sys.stderr if output.as_json else sys.stdout
    live = output.progress if output.progress is not None else human.isatty()
    interval = parse_duration(output.stats_interval, "--stats-interval")
    display = RunDisplay(human, live=live, quiet=output.quiet, stats_interval=interval)
    observers: list[Observer] = [display]
    if output.log_file is not None:
        observers.append(JsonLog(output.log_file))
    try:
        report = run(settings, Broadcast(observers))
    finally:
        display.close()
    _print_warnings(report.warnings)
    display.finish(report)
    if report.message:
        typer.echo(f"tfbulk: error: {report.message}", err=True)
    return report


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


@app.command("verify")
def verify_command(
    dest: Dest = Path("downloads"),
    state: State = None,
    course: Annotated[int | None, typer.Option("--course", help="Only this course.")] = None,
    full: Annotated[
        bool, typer.Option("--full", help="Also re-hash every file against its recorded MD5.")
    ] = False,
    dry_run_flag: Annotated[
        bool, typer.Option("--dry-run", help="Report problems; requeue nothing.")
    ] = False,
    as_json: AsJson = False,
) -> int:
    """Re-check finished files against the state DB; requeue missing or damaged ones."""
    from tfbulk.audit import audit

    store = _open_existing(state, dest)
    try:
        report = audit(store, dest, full=full, course=course)
        reasons = {p.segment_id: f"verify: {p.reason}" for p in report.problems}
        requeued = store.requeue(reasons) if reasons and not dry_run_flag else 0
    finally:
        store.close()
    if as_json:
        problems = [vars(p) for p in report.problems]
        _print_json({"checked": report.checked, "problems": problems, "requeued": requeued})
    else:
        _print_audit(report, requeued, dry_run=dry_run_flag)
    return 1 if report.problems else 0


def _print_audit(report: AuditReport, requeued: int, *, dry_run: bool) -> None:
    for problem in report.problems:
        typer.echo(f"segment {problem.segment_id} (course {problem.course_id}) "
                   f"{problem.path}: {problem.reason}")  # fmt: skip
    typer.echo(f"checked {report.checked:,} finished segments: {len(report.problems):,} problems")
    if requeued:
        typer.echo(
            f"requeued {requeued:,}; run `tfbulk run` with the same flags to fetch them again"
        )
    elif dry_run and report.problems:
        typer.echo("dry run: nothing was changed")


# -- sign ------------------------------------------------------------------------------


@app.command("sign")
def sign_command(
    url: Annotated[
        str,
        typer.Argument(help="The URL to sign; for --signer s3 also KEY or s3://BUCKET/KEY."),
    ],
    signer: SignerKind = "cloudfront",
    key_pair_id: KeyPairId = None,
    private_key: PrivateKey = None,
    expires: Expires = DEFAULT_EXPIRES,
    expires_at: Annotated[
        int | None,
        typer.Option("--expires-at", help="Absolute expiry (Unix time) instead of --expires."),
    ] = None,
    hash_algorithm: HashAlgorithm = None,
    policy_resource: PolicyResource = None,
    date_greater_than: DateGreaterThan = None,
    ip_address: IpAddress = None,
    bucket: Bucket = None,
    region: Region = DEFAULT_REGION,
    endpoint_url: EndpointUrl = None,
    profile: Profile = None,
) -> int:
    """Print URL signed the way `tfbulk run` signs each request."""
    from tfbulk.credentials import build_signer
    from tfbulk.urls import sign_target

    settings = _signer_settings(
        signer,
        key_pair_id,
        private_key,
        expires,
        bucket=bucket,
        region=region,
        endpoint_url=endpoint_url,
        profile=profile,
        policy=policy_settings(hash_algorithm, policy_resource, date_greater_than, ip_address),
    )
    target = sign_target(url, settings)
    built = build_signer(settings)
    now = time.time() if expires_at is None else expires_at - settings.expires
    typer.echo(built.sign(target, now))
    return 0


# -- doctor, demo, origin ------------------------------------------------------------------


@app.command("doctor")
def doctor_command(
    snapshot: SnapshotPath = None,
    dest: Dest = Path("downloads"),
    state: State = None,
    course: Courses = None,
    segment: Segments = None,
    url_template: UrlTemplate = None,
    path_template: PathTemplate = DEFAULT_PATH_TEMPLATE,
    signer: SignerKind = "cloudfront",
    key_pair_id: KeyPairId = None,
    private_key: PrivateKey = None,
    expires: Expires = DEFAULT_EXPIRES,
    hash_algorithm: HashAlgorithm = None,
    policy_resource: PolicyResource = None,
    date_greater_than: DateGreaterThan = None,
    ip_address: IpAddress = None,
    bucket: Bucket = None,
    region: Region = DEFAULT_REGION,
    endpoint_url: EndpointUrl = None,
    key_template: KeyTemplate = DEFAULT_KEY_TEMPLATE,
    profile: Profile = None,
    probe: Annotated[
        int, typer.Option("--probe", help="Send signed HEAD requests for N sampled segments.")
    ] = 0,
    http: HttpVersion = "2",
    ca_bundle: CaBundle = None,
    max_file_size: MaxFileSize = DEFAULT_MAX_FILE_SIZE,
    as_json: AsJson = False,
) -> int:
    """Check snapshot, key, destination, free disk and state DB; non-zero if any check fails."""
    settings = _run_settings(
        snapshot,
        dest,
        state,
        (url_template, path_template),
        signer=_signer_settings(
            signer,
            key_pair_id,
            private_key,
            expires,
            bucket=bucket,
            region=region,
            endpoint_url=endpoint_url,
            key_template=key_template,
            profile=profile,
            policy=policy_settings(hash_algorithm, policy_resource, date_greater_than, ip_address),
        ),
        scope=Scope(courses=frozenset(course or ()), segments=frozenset(segment or ())),
        network=_network(http, ca_bundle, max_file_size),
    )
    from tfbulk.display.checks import print_checks
    from tfbulk.doctor import as_json as doctor_json
    from tfbulk.doctor import diagnose

    checks = diagnose(settings, probe=probe)
    if as_json:
        _print_json(doctor_json(checks))
    else:
        fancy = sys.stdout.isatty()
        print_checks(make_console(sys.stdout, terminal=fancy), checks, fancy=fancy)
    return 1 if any(c.status == "fail" for c in checks) else 0


@app.command("demo")
def demo_command(
    folder: Annotated[
        Path | None,
        typer.Option("--dir", help="Work here and keep it (default: a new temporary folder)."),
    ] = None,
    courses: Annotated[int, typer.Option("--courses", help="Courses in the sample catalogue.")] = 4,
    segments: Annotated[int, typer.Option("--segments", help="Segments per course.")] = 12,
    speed: Annotated[
        str,
        typer.Option("--speed", help="Origin speed per connection (e.g. 512k; 0 = unthrottled)."),
    ] = "512k",
    min_size: Annotated[str, typer.Option("--min-size", help="Smallest sample video.")] = "256k",
    max_size: Annotated[str, typer.Option("--max-size", help="Largest sample video.")] = "3M",
    concurrency: Annotated[int, typer.Option("--concurrency", help="Downloads at once.")] = 6,
    faults: Annotated[
        bool, typer.Option("--faults", help="Inject transient errors, a drop and a 404.")
    ] = False,
    progress: Annotated[
        bool | None,
        typer.Option(
            "--progress/--no-progress",
            help="Live view (default: on a terminal).",
            show_default=False,
        ),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Errors and a one-line summary only.")
    ] = False,
    as_json: AsJson = False,
) -> int:
    """A self-contained run on this machine: sample catalogue, throw-away key, local origin."""
    from tfbulk.demo import DemoOptions
    from tfbulk.demo import prepare as prepare_demo

    options = DemoOptions(
        folder=folder,
        courses=check_positive(courses, "--courses"),
        segments=check_positive(segments, "--segments"),
        min_size=parse_size(min_size, "--min-size"),
        max_size=max(parse_size(max_size, "--max-size"), parse_size(min_size, "--min-size")),
        speed=parse_size(speed, "--speed"),
        concurrency=check_positive(concurrency, "--concurrency"),
        faults=faults,
    )
    setup = prepare_demo(options)
    try:
        output = _Output(as_json, quiet=quiet, progress=progress)
        report = _execute(setup.settings(options.concurrency), output)
    finally:
        setup.origin.stop()
    if as_json:
        _print_json(
            report.as_json()
            | {
                "demo": {
                    "folder": str(setup.folder),
                    "origin": setup.origin.base_url,
                    "faults": setup.faulty,
                }
            }
        )
        return report.exit_code
    if quiet:
        return report.exit_code
    typer.echo(f"\nfiles: {setup.dest}\nstate DB: {setup.dest / '.tfbulk' / 'state.db'}")
    typer.echo("the demo's origin has stopped; to look around or run it again by hand:")
    for command in setup.commands():
        typer.echo(f"  {command}")
    return report.exit_code


@app.command("origin")
def origin_command(
    synthetic: Annotated[
        bool, typer.Option("--synthetic", help="Serve generated MP4 bodies for any *.mp4 path.")
    ] = False,
    root: Annotated[
        Path | None, typer.Option("--root", help="Serve the files under this folder.")
    ] = None,
    public_key: Annotated[
        Path | None,
        typer.Option("--public-key", help="PEM public key: check CloudFront signatures with it."),
    ] = None,
    key_pair_id: Annotated[
        str | None, typer.Option("--key-pair-id", help="The Key-Pair-Id the public key answers to.")
    ] = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port (0 = any free port).")] = 8080,
    speed: Annotated[
        str, typer.Option("--speed", help="Throttle each connection (e.g. 1M; 0 = unthrottled).")
    ] = "0",
    min_size: Annotated[str, typer.Option("--min-size", help="Smallest synthetic body.")] = "256k",
    max_size: Annotated[str, typer.Option("--max-size", help="Largest synthetic body.")] = "3M",
) -> int:
    """Serve a local CloudFront-like origin to rehearse a configuration (Ctrl-C stops it)."""
    import asyncio
    import contextlib
    import signal

    from tfbulk.credentials import load_public_key
    from tfbulk.origin import DirectoryContent, Origin, SyntheticContent

    if synthetic == (root is not None):
        raise BadInput("pass exactly one of --synthetic or --root DIR")
    if root is not None and not root.is_dir():
        raise BadInput(f"--root {root} is not a folder")
    keys = None
    if public_key is not None:
        if not key_pair_id:
            raise BadInput("--key-pair-id is required with --public-key")
        keys = {key_pair_id: load_public_key(public_key)}
    content = (
        DirectoryContent(root)
        if root is not None
        else SyntheticContent(
            parse_size(min_size, "--min-size"), parse_size(max_size, "--max-size")
        )
    )
    server = Origin(
        content=content,
        public_keys=keys,
        speed=parse_size(speed, "--speed") or None,
        host=host,
        port=port,
    )
    checking = (
        f"checking signatures of key pair {key_pair_id}" if keys else "not checking signatures"
    )
    try:
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C before the handlers are in
            asyncio.run(
                server.serve(
                    lambda o: typer.echo(f"serving {o.base_url} ({checking}); Ctrl-C stops"),
                    stop_signals=(signal.SIGINT, signal.SIGTERM),
                )
            )
    except OSError as exc:
        raise BadInput(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    typer.echo("origin stopped")
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
