"""`tfbulk run`: the download, or with --dry-run the plan compared with the state DB."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tfbulk.settings import (
    DEFAULT_EXPIRES,
    DEFAULT_KEY_TEMPLATE,
    DEFAULT_LEASE,
    DEFAULT_MAX_FILE_SIZE,
    DEFAULT_PART_SIZE,
    DEFAULT_PATH_TEMPLATE,
    DEFAULT_REGION,
    RunSettings,
    Scope,
    Sharing,
    Tuning,
    check_concurrency,
    check_lease,
    check_positive,
    parse_duration,
    policy_settings,
)

if TYPE_CHECKING:
    from tfbulk.report import DryRunReport, RunReport

from tfbulk.cli.options import (
    Bucket,
    CaBundle,
    Courses,
    DateGreaterThan,
    Dest,
    DestEndpointUrl,
    DestPartSize,
    DestProfile,
    DestRegion,
    EndpointUrl,
    Expires,
    HashAlgorithm,
    HttpVersion,
    IpAddress,
    KeyPairId,
    KeyTemplate,
    MaxFileSize,
    PathTemplate,
    PolicyResource,
    PrivateKey,
    Profile,
    Region,
    Segments,
    SignerKind,
    SnapshotPath,
    State,
    UrlTemplate,
    network_settings,
    run_settings,
    s3_dest,
    signer_settings,
)
from tfbulk.cli.output import print_json, print_warnings


def run_command(
    snapshot: SnapshotPath = None,
    dest: Dest = "downloads",
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
    dest_endpoint_url: DestEndpointUrl = None,
    dest_region: DestRegion = DEFAULT_REGION,
    dest_profile: DestProfile = None,
    dest_part_size: DestPartSize = DEFAULT_PART_SIZE,
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
    settings = run_settings(
        snapshot,
        dest,
        state,
        (url_template, path_template),
        signer=signer_settings(
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
        network=network_settings(http, ca_bundle, max_file_size),
        sharing=Sharing(
            lease=check_lease(parse_duration(lease, "--lease")),
            max_global=check_positive(max_global, "--max-global")
            if max_global is not None
            else None,
        ),
        dry_run=dry_run_flag,
        s3=s3_dest(dest, dest_endpoint_url, dest_region, dest_profile, dest_part_size),
    )
    if settings.dry_run:
        from tfbulk.commands.run import dry_run

        human = sys.stderr if as_json else sys.stdout
        return _print_dry_run(dry_run(settings), human, as_json=as_json)
    report = execute(settings, Output(as_json, quiet, progress, log_file, stats_interval))
    if as_json:
        print_json(report.as_json())
    return report.exit_code


@dataclass(frozen=True)
class Output:
    """How a run talks to people: the flags `run` and `demo` share."""

    as_json: bool = False
    quiet: bool = False
    progress: bool | None = None
    log_file: Path | None = None
    stats_interval: str = "60s"


def execute(settings: RunSettings, output: Output) -> RunReport:
    """Run with the display the flags ask for; print the summary and any error."""
    from tfbulk.commands.run import run
    from tfbulk.display.console import RunDisplay
    from tfbulk.display.logfile import JsonLog
    from tfbulk.pipeline.events import Broadcast, Observer

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
    print_warnings(report.warnings)
    display.finish(report)
    if report.message:
        typer.echo(f"tfbulk: error: {report.message}", err=True)
    return report


def _print_dry_run(report: DryRunReport, human: object, *, as_json: bool) -> int:
    print_warnings(report.warnings)
    data = report.as_json()
    if as_json:
        print_json(data)
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
