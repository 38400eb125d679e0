"""`tfbulk run` from settings to a report: validate, plan, download, summarise.

Everything that can be wrong with the input is checked before the state DB is touched,
so an exit-2 run has changed nothing. Signals and `--max-time` ask the engine to stop;
they never kill it, so the state DB always ends consistent.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import anyio
import anyio.abc

from tfbulk.credentials import build_signer
from tfbulk.display.format import counted
from tfbulk.display.summary import FAILURES_SHOWN
from tfbulk.errors import BadInput, ExitCode
from tfbulk.pipeline.destination import Destination
from tfbulk.pipeline.engine import Engine, EngineResult
from tfbulk.pipeline.events import (
    CourseTotals,
    Observer,
    PlanProgress,
    RunFinished,
    RunStarted,
    RunStopping,
)
from tfbulk.pipeline.fetch import Fetcher, open_transport
from tfbulk.pipeline.limits import RunLimits
from tfbulk.pipeline.plan import (
    PlanQuery,
    PlanRow,
    PlanStats,
    Template,
    paths_are_distinct,
    plan_query,
    plan_rows,
)
from tfbulk.pipeline.retry import FORBIDDEN_HINTS
from tfbulk.pipeline.snapshot import Snapshot
from tfbulk.pipeline.transport import CurlTransport
from tfbulk.pipeline.urls import SegmentUrl, check_covered, segment_urls
from tfbulk.pipeline.writer import DiskWriter
from tfbulk.report import DryRunReport, RunReport
from tfbulk.settings import RunSettings, Scope, Sharing, Tuning, s3_work_folder
from tfbulk.signing import Signer
from tfbulk.state import STATUSES, Status, Store, Summary, open_store, store_exists
from tfbulk.state.url import is_postgres_url

PLAN_REPORT_EVERY = 2000


@dataclass
class _Inputs:
    snapshot: Snapshot
    signer: Signer
    url_of: SegmentUrl
    path_template: Template


def _validated(settings: RunSettings) -> _Inputs:
    """Check every input (templates, bucket, key, snapshot, the URLs a policy must cover)
    before anything is written."""
    url_of = segment_urls(settings.url_template, settings.signer)
    path_template = Template(settings.path_template, "--path-template")
    signer = build_signer(settings.signer)
    snapshot = Snapshot.open(settings.snapshot)
    try:
        urls = _planned_urls(settings, snapshot, path_template, url_of)
        check_covered(settings.signer.policy.resource, urls)
    except BadInput:
        snapshot.close()
        raise
    return _Inputs(snapshot, signer, url_of, path_template)


def _planned_urls(
    settings: RunSettings, snapshot: Snapshot, path_template: Template, url_of: SegmentUrl
) -> Iterator[tuple[str, str]]:
    """("segment ID", unsigned URL) of every segment the run would plan (read lazily)."""
    for row in plan_rows(snapshot.segments(), settings.scope, path_template, PlanStats()):
        yield f"segment {row.segment_id}", url_of(row.segment())


def dry_run(settings: RunSettings) -> DryRunReport:
    """Plan and compare with the state DB (if any) without writing anything."""
    inputs = _validated(settings)
    stats = PlanStats()
    with inputs.snapshot:
        rows = _planned(inputs, settings, stats)
        if not store_exists(settings.state):
            if not isinstance(rows, PlanQuery):
                collections.deque(rows, maxlen=0)  # read them all, for the counts
            return DryRunReport(stats, Summary(), _warnings(stats))
        store = open_store(settings.state, create=False, lock=False)
        try:
            store.scope_planned(rows)
            return DryRunReport(stats, store.summary(), _warnings(stats))
        finally:
            store.close()


def run(settings: RunSettings, observer: Observer, *, handle_signals: bool = True) -> RunReport:
    """Plan the snapshot into the state DB, then download what is not done yet."""
    started = time.monotonic()
    inputs = _validated(settings)
    stats = PlanStats()
    with contextlib.ExitStack() as held:
        with inputs.snapshot:
            rows = _planned(inputs, settings, stats)
            dest = _local_dest(settings, held)
            if settings.s3 is not None:
                from tfbulk.pipeline.s3dest import preflight

                preflight(settings.s3, settings.tuning)
            store = open_store(
                settings.state,
                create=True,
                lock=True,
                dest=dest.root if dest else s3_work_folder(settings.s3.location),  # type: ignore[union-attr]
                sharing=_sharing(settings),
            )
            held.callback(store.close)
            store.plan(
                _reported(rows, observer, stats),
                inputs.snapshot.course_titles(),
                distinct_paths=paths_are_distinct(inputs.path_template),
            )
        observer(_run_started(store, settings))
        try:
            result = anyio.run(_download, settings, inputs, dest, store, observer, handle_signals)
        except ExceptionGroup as group:
            raise _lone(group) from None
        summary = store.summary()
        report = RunReport(
            exit_code=_exit_code(result, summary),
            summary=summary,
            elapsed=time.monotonic() - started,
            downloaded=result.downloaded,
            stop_reason=result.stop_reason,
            message=result.disk_error,
            failures=store.records(status=Status.FAILED, scoped=True, limit=FAILURES_SHOWN),
            warnings=_warnings(stats),
            limits=settings.limits,
        )
        totals = {k: v for k, v in summary.as_json().items() if isinstance(v, int)}
        observer(RunFinished(report.exit_code, report.elapsed, report.downloaded, totals))
        return report


def _sharing(settings: RunSettings) -> Sharing:
    """How this worker joins a shared queue, with its limits published for `status`."""
    return replace(settings.sharing, limits=json.dumps(settings.limits.as_json()))


def _local_dest(settings: RunSettings, held: contextlib.ExitStack) -> Destination | None:
    """The local folder, prepared and locked; None for an s3:// destination (a bucket has
    no lock: the state DB's own lock, or PostgreSQL's claims, keep runs apart)."""
    if settings.s3 is not None:
        return None
    dest = held.enter_context(Destination.prepare(settings.dest))
    dest.lock(shared=is_postgres_url(settings.state))
    _refuse_linked_state(settings.state, dest)
    return dest


def _planned(
    inputs: _Inputs, settings: RunSettings, stats: PlanStats
) -> Iterator[PlanRow] | PlanQuery:
    """The planned rows, streamed; if there are none, exit 2 before anything is written
    (a cron job pointed at an empty snapshot or a stale --course must not look fine).

    Rows come in course order only where that matters: for `--limit-courses`, and for
    PostgreSQL, whose workers fingerprint the plan as streamed (one order on every host).
    A SQLite store keys the rows itself, and a million of them need no sort; where it
    can, it makes them itself from the snapshot (a PlanQuery: no Python per row)."""
    scope = settings.scope
    ordered = scope.limit_courses is not None or is_postgres_url(settings.state)
    query = None if ordered else plan_query(inputs.snapshot, scope, inputs.path_template, stats)
    if query is not None:
        if not stats.planned:
            raise BadInput(_nothing_to_download(stats, scope))
        return query
    segments = inputs.snapshot.segments(ordered=ordered)
    rows = plan_rows(segments, scope, inputs.path_template, stats)
    first = next(rows, None)
    if first is None:
        raise BadInput(_nothing_to_download(stats, scope))
    return itertools.chain([first], rows)


def _reported(
    rows: Iterator[PlanRow] | PlanQuery, observer: Observer, stats: PlanStats
) -> Iterator[PlanRow] | PlanQuery:
    """The rows, telling observers every PLAN_REPORT_EVERY how far planning has got.

    Passed on a batch at a time by C iterators: a million rows cost no Python per row.
    A PlanQuery has counted its rows already."""
    if isinstance(rows, PlanQuery):
        observer(PlanProgress(stats.planned))
        return rows
    planned = itertools.count(PLAN_REPORT_EVERY, PLAN_REPORT_EVERY)

    def batch() -> tuple[PlanRow, ...]:
        rows_read = tuple(itertools.islice(rows, PLAN_REPORT_EVERY))
        if len(rows_read) == PLAN_REPORT_EVERY:
            observer(PlanProgress(next(planned)))
        return rows_read

    return itertools.chain.from_iterable(iter(batch, ()))


def _nothing_to_download(stats: PlanStats, scope: Scope) -> str:
    downloadable = stats.segments - stats.no_video - stats.orphans - stats.no_id
    if not downloadable:
        unusable = f", {stats.no_id:,} without an integer id" if stats.no_id else ""
        return (
            f"nothing to download: the snapshot has {counted(stats.segments, 'segment')}, "
            f"{stats.no_video:,} without a video and {stats.orphans:,} without a course"
            f"{unusable}; a downloadable segment has a video like mp4:course/lesson"
        )
    return (
        f"nothing to download: {describe_filters(scope)} selects none of the snapshot's "
        f"{counted(downloadable, 'downloadable segment')}; check the ids"
    )


def describe_filters(scope: Scope) -> str:
    """The scope as the flags that made it, for messages."""
    flags = [f"--course {cid}" for cid in sorted(scope.courses)]
    flags += [f"--segment {sid}" for sid in sorted(scope.segments)]
    if scope.limit_courses is not None:
        flags.append(f"--limit-courses {scope.limit_courses}")
    return " ".join(flags)


def _lone(error: BaseException) -> BaseException:
    """The one error that task groups wrapped (the engine's lost state DB, say): the CLI
    turns a TfbulkError into its one line and exit code, never a group's traceback."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


def _refuse_linked_state(state: str, dest: Destination) -> None:
    """A state DB kept under --dest is written by path (SQLite): a link there is refused
    like any other under --dest, so nothing is written outside it through one."""
    if is_postgres_url(state):
        return
    path = Path(state).absolute()
    folder = path.parent.resolve()
    if path.is_symlink() and (folder == dest.root or dest.root in folder.parents):
        raise BadInput(f"state DB {path} is a symlink under --dest; remove it")


async def _download(
    settings: RunSettings,
    inputs: _Inputs,
    dest: Destination | None,
    store: Store,
    observer: Observer,
    handle_signals: bool,
) -> EngineResult:
    tuning = settings.tuning
    limits = RunLimits(settings.limits, dest.root if dest else None)
    transport = open_transport(tuning, settings.network, limits.receive_buffer)
    async with transport, anyio.create_task_group() as watchers:
        sink = await _sink(settings, transport, dest, store, limits)
        try:
            engine = Engine(
                store=store,
                signer=inputs.signer,
                fetcher=sink.fetcher,
                dest=sink.dest,  # type: ignore[arg-type]
                url_of=inputs.url_of,
                tuning=tuning,
                observer=observer,
                forbidden_hint=FORBIDDEN_HINTS[settings.signer.kind],
                claim_ahead=settings.sharing.max_global is None,
                limits=limits,
            )
            result = await _supervised(engine, observer, tuning, handle_signals, watchers)
        finally:
            with anyio.CancelScope(shield=True):
                await sink.aclose()
    return result


@dataclass
class _Sink:
    """Where bodies go: the fetcher that writes them, the destination, what to close."""

    fetcher: Fetcher
    dest: object
    aclose: Callable[[], Awaitable[None]]


async def _sink(
    settings: RunSettings,
    transport: CurlTransport,
    dest: Destination | None,
    store: Store,
    limits: RunLimits,
) -> _Sink:
    max_size = settings.network.max_file_size
    if settings.s3 is None:
        assert dest is not None
        writer = DiskWriter()

        async def close_writer() -> None:
            writer.close()

        fetcher = Fetcher(transport, writer, dest, time.time, max_size, limits)
        return _Sink(fetcher, dest, close_writer)
    from tfbulk.pipeline.s3dest import S3Fetcher, open_sink

    s3, uploads, aclose = await open_sink(settings.s3, settings.tuning, store, settings.state)
    fetcher = S3Fetcher(transport, uploads, s3, time.time, max_size, limits)  # type: ignore[arg-type]
    return _Sink(fetcher, s3, aclose)


async def _supervised(
    engine: Engine,
    observer: Observer,
    tuning: Tuning,
    handle_signals: bool,
    watchers: anyio.abc.TaskGroup,
) -> EngineResult:
    """Run the engine with its stop watchers (signals, --max-time) beside it."""
    if handle_signals:
        watchers.start_soon(_watch_signals, engine, observer)
    if tuning.max_time:
        watchers.start_soon(_deadline, engine, observer, tuning.max_time, tuning.stop_grace)
    result = await engine.run()
    watchers.cancel_scope.cancel()
    return result


async def _watch_signals(engine: Engine, observer: Observer) -> None:
    """First SIGINT/SIGTERM: stop cleanly. Second: leave at once (the DB stays consistent)."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            if engine.stopping:
                os._exit(ExitCode.INTERRUPTED)
            observer(RunStopping(f"interrupted by {signal.Signals(signum).name}"))
            engine.request_stop("interrupted")


async def _deadline(engine: Engine, observer: Observer, max_time: float, grace: float) -> None:
    await anyio.sleep(max_time)
    observer(RunStopping(f"--max-time reached; finishing in-flight downloads for up to {grace:g}s"))
    engine.request_stop("max-time", grace=grace)


def _exit_code(result: EngineResult, summary: Summary) -> int:
    if result.disk_error:
        return ExitCode.BAD_INPUT
    if result.stop_reason == "interrupted":
        return ExitCode.INTERRUPTED
    if summary.total_of("pending") or summary.total_of("processing"):
        return ExitCode.STOPPED
    return ExitCode.FAILED if summary.total_of("failed") else ExitCode.OK


def _run_started(store: Store, settings: RunSettings) -> RunStarted:
    summary = store.summary()
    return RunStarted(
        total=summary.total,
        done=summary.total_of("success") + summary.total_of("skipped"),
        failed=summary.total_of("failed"),
        pending=summary.total_of("pending") + summary.total_of("processing"),
        concurrency=settings.tuning.concurrency,
        dest=str(settings.s3.location) if settings.s3 else str(settings.dest.resolve()),
        state=settings.state if settings.s3 else "",
        scope=describe_scope(settings.scope),
        courses=tuple(
            CourseTotals(c.course_id, c.title, c.total, c.done, c.failed) for c in summary.courses
        ),
        limits=settings.limits,
        statuses={str(status): summary.total_of(status) for status in STATUSES},
        worker=store.worker_id,
    )


def describe_scope(scope: Scope) -> str:
    parts = []
    if scope.courses:
        parts.append("courses " + ",".join(map(str, sorted(scope.courses))))
    if scope.segments:
        parts.append("segments " + ",".join(map(str, sorted(scope.segments))))
    text = " + ".join(parts) or "all courses"
    if scope.limit_courses is not None:
        text += f", first {scope.limit_courses} courses"
    return text


def _warnings(stats: PlanStats) -> list[str]:
    notes = (
        [f"{counted(stats.no_id, 'segment')} of the snapshot without an integer id: skipped"]
        if stats.no_id
        else []
    )
    notes += [
        f"--course {cid} has no downloadable segment in the snapshot"
        for cid in sorted(stats.missing_courses)
    ]
    notes += [
        f"--segment {sid} is not a downloadable segment of the snapshot"
        for sid in sorted(stats.missing_segments)
    ]
    return notes
