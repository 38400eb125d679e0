"""`tfbulk run`: the download, or with --dry-run the plan compared with the state DB."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tfbulk.settings import (
    DEFAULT_EXPIRES,
    DEFAULT_HOOK_CONCURRENCY,
    DEFAULT_HOOK_TIMEOUT,
    DEFAULT_KEY_TEMPLATE,
    DEFAULT_LEASE,
    DEFAULT_MAX_FILE_SIZE,
    DEFAULT_MIN_FREE_SPACE,
    DEFAULT_PART_SIZE,
    DEFAULT_PATH_TEMPLATE,
    DEFAULT_REGION,
    Observing,
    RunSettings,
    Sharing,
    Tuning,
    check_concurrency,
    check_lease,
    check_positive,
    parse_duration,
    policy_settings,
    resolve_state,
)

if TYPE_CHECKING:
    from tfbulk.observe.ping import Ping
    from tfbulk.pipeline.events import Observer
    from tfbulk.report import DryRunReport, RunReport

from tfbulk.cli.app import examples
from tfbulk.cli.options import (
    Bucket,
    BwLimit,
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
    HookConcurrency,
    HookTimeout,
    HttpVersion,
    IpAddress,
    KeyPairId,
    KeyTemplate,
    LimitCourses,
    MaxFileSize,
    MaxRps,
    MaxTransfer,
    MetricsAddr,
    MetricsFile,
    MinFreeSpace,
    OnComplete,
    OnFinish,
    PathTemplate,
    PingUrl,
    PolicyResource,
    PrivateKey,
    Profile,
    Region,
    Segments,
    SignerKind,
    SnapshotPath,
    State,
    UrlTemplate,
    limit_settings,
    network_settings,
    observing_settings,
    run_settings,
    s3_dest,
    scope,
    signer_settings,
)
from tfbulk.cli.output import print_json, print_warnings
from tfbulk.display.format import counted
from tfbulk.invocation import command, place

EXAMPLES = examples(
    "export TFBULK_KEY_PAIR_ID=K2JCJMDEHXQW5F TFBULK_PRIVATE_KEY=cf.pem",
    "tfbulk run --snapshot catalogue.db --dest /srv/videos",
    "tfbulk run --snapshot catalogue.db --dest /srv/videos --dry-run",
    "tfbulk run --snapshot catalogue.db --dest /srv/videos --course 7 --course 9",
    "tfbulk run --snapshot catalogue.db --dest /srv/videos --max-time 5h \\",
    "    --log-file /var/log/tfbulk.jsonl --no-progress      # from cron",
    "# interrupted or stopped? the same command again resumes",
)


def run_command(
    snapshot: SnapshotPath,
    dest: Dest = "downloads",
    state: State = None,
    concurrency: Annotated[
        int,
        typer.Option(
            "--concurrency", metavar="N", envvar="TFBULK_CONCURRENCY", help="Downloads at once."
        ),
    ] = 10,
    lease: Annotated[
        str,
        typer.Option(
            "--lease",
            metavar="DURATION",
            envvar="TFBULK_LEASE",
            help="PostgreSQL: a dead worker's segments go to others after this long.",
        ),
    ] = DEFAULT_LEASE,
    max_global: Annotated[
        int | None,
        typer.Option(
            "--max-global",
            metavar="N",
            envvar="TFBULK_MAX_GLOBAL",
            help="PostgreSQL: most downloads in flight across all workers.",
        ),
    ] = None,
    retries: Annotated[
        int,
        typer.Option(
            "--retries", metavar="N", envvar="TFBULK_RETRIES", help="Attempts per segment and run."
        ),
    ] = 5,
    course: Courses = None,
    segment: Segments = None,
    limit_courses: LimitCourses = None,
    max_time: Annotated[
        str | None,
        typer.Option(
            "--max-time",
            metavar="DURATION",
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
            "--log-file",
            metavar="PATH",
            envvar="TFBULK_LOG_FILE",
            help="Append one JSON line per event.",
        ),
    ] = None,
    stats_interval: Annotated[
        str,
        typer.Option(
            "--stats-interval",
            metavar="DURATION",
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
            "--backoff-base",
            metavar="DURATION",
            envvar="TFBULK_BACKOFF_BASE",
            help="First retry delay ceiling.",
        ),
    ] = "1s",
    backoff_max: Annotated[
        str,
        typer.Option(
            "--backoff-max",
            metavar="DURATION",
            envvar="TFBULK_BACKOFF_MAX",
            help="Longest retry delay.",
        ),
    ] = "120s",
    connect_timeout: Annotated[
        str,
        typer.Option(
            "--connect-timeout",
            metavar="DURATION",
            envvar="TFBULK_CONNECT_TIMEOUT",
            help="Connect timeout.",
        ),
    ] = "30s",
    read_timeout: Annotated[
        str,
        typer.Option(
            "--read-timeout",
            metavar="DURATION",
            envvar="TFBULK_READ_TIMEOUT",
            help="No byte for this long fails the attempt.",
        ),
    ] = "60s",
    http: HttpVersion = "2",
    ca_bundle: CaBundle = None,
    max_file_size: MaxFileSize = DEFAULT_MAX_FILE_SIZE,
    bwlimit: BwLimit = "off",
    max_rps: MaxRps = None,
    max_transfer: MaxTransfer = None,
    min_free_space: MinFreeSpace = DEFAULT_MIN_FREE_SPACE,
    metrics_file: MetricsFile = None,
    metrics_addr: MetricsAddr = None,
    on_complete: OnComplete = None,
    on_finish: OnFinish = None,
    hook_concurrency: HookConcurrency = DEFAULT_HOOK_CONCURRENCY,
    hook_timeout: HookTimeout = DEFAULT_HOOK_TIMEOUT,
    ping_url: PingUrl = None,
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
        scope=scope(course, segment, limit_courses),
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
        limits=limit_settings(bwlimit, max_rps, max_transfer, min_free_space),
        dry_run=dry_run_flag,
        s3=s3_dest(dest, dest_endpoint_url, dest_region, dest_profile, dest_part_size),
    )
    observing = observing_settings(
        metrics_file,
        metrics_addr,
        (on_complete, on_finish),
        hook_concurrency,
        hook_timeout,
        ping_url,
    )
    if settings.dry_run:
        from tfbulk.commands.run import dry_run

        human = sys.stderr if as_json else sys.stdout
        return _print_dry_run(dry_run(settings), human, as_json=as_json)
    output = Output(as_json, quiet, progress, log_file, stats_interval)
    report = execute(settings, output, observing)
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


def execute(settings: RunSettings, output: Output, observing: Observing | None = None) -> RunReport:
    """Run with the display the flags ask for; print the summary and any error; then the
    end-of-run hook and ping."""
    from tfbulk.commands.run import run
    from tfbulk.display.console import RunDisplay
    from tfbulk.display.logfile import JsonLog
    from tfbulk.errors import TfbulkError
    from tfbulk.pipeline.events import Broadcast

    observing = observing or Observing()
    human = sys.stderr if output.as_json else sys.stdout
    live = output.progress if output.progress is not None else human.isatty()
    interval = parse_duration(output.stats_interval, "--stats-interval")
    display = RunDisplay(human, live=live, quiet=output.quiet, stats_interval=interval)
    observers: list[Observer] = [display]
    if output.log_file is not None:
        observers.append(JsonLog(output.log_file))
    ping = _ping(observing, observers)
    try:
        with _watchers(observing, observers):
            report = run(settings, Broadcast(observers))
    except TfbulkError as exc:
        if ping is not None:
            ping.finish(exc.exit_code)
        raise
    finally:
        display.close()
    print_warnings(report.warnings)
    display.finish(report, hint=hinter(settings))
    if report.message:
        typer.echo(f"tfbulk: error: {report.message}", err=True)
    _finished(observing, report, ping)
    return report


def hinter(settings: RunSettings) -> Callable[[str], str]:
    """`tfbulk NAME` pointed at this run's state DB, as the user would type it."""
    default = resolve_state(None, settings.destination) == settings.state
    flags = place(settings.destination, None if default else settings.state)
    return lambda name: command(name, *flags)


def _ping(observing: Observing, observers: list[Observer]) -> Ping | None:
    if observing.ping_url is None:
        return None
    from tfbulk.observe.ping import Ping

    ping = Ping(observing.ping_url)
    observers.append(ping)
    return ping


@contextlib.contextmanager
def _watchers(observing: Observing, observers: list[Observer]) -> Iterator[None]:
    """Metrics and completion hooks for the length of the run (each imported only when
    asked for: prometheus_client is not loaded otherwise)."""
    with contextlib.ExitStack() as stack:
        if observing.metrics:
            from tfbulk.observe.export import MetricsExport

            export = MetricsExport(observing.metrics_file, observing.metrics_addr)
            stack.callback(export.close)
            observers.append(export)
        if observing.on_complete:
            from tfbulk.observe.hooks import CompletionHooks, Hook

            hook = Hook("--on-complete", observing.on_complete, observing.hook_timeout)
            hooks = CompletionHooks(hook, observing.hook_concurrency)
            stack.callback(hooks.close)
            observers.append(hooks)
        yield


def _finished(observing: Observing, report: RunReport, ping: Ping | None) -> None:
    """`--on-finish`, then the end ping: neither changes the exit code."""
    if observing.on_finish:
        from tfbulk.observe.hooks import Hook, run_finish_hook

        hook = Hook("--on-finish", observing.on_finish, observing.hook_timeout)
        run_finish_hook(hook, report.as_json(), report.exit_code)
    if ping is not None:
        ping.finish(report.exit_code)


def _print_dry_run(report: DryRunReport, human: object, *, as_json: bool) -> int:
    print_warnings(report.warnings)
    data = report.as_json()
    if as_json:
        print_json(data)
        return 0
    stats = report.stats
    lines = [
        f"dry run: {counted(data['segments'], 'downloadable segment')} in "
        f"{counted(data['courses'], 'course')} ({stats.no_video:,} without video, "
        f"{counted(stats.segments, 'segment')} in the snapshot)",
        f"  already done: {data['already_done']:,} · failed earlier: {data['failed']:,} · "
        f"to download: {data['to_download']:,} (new: {data['new']:,})",
    ]
    if stats.refused:
        lines.append(f"  refused (unsafe path): {stats.refused:,}")
    lines.append("nothing was downloaded and nothing was written")
    typer.echo("\n".join(lines), file=human)  # type: ignore[arg-type]
    return 0
