"""The download engine: a fixed pool of workers pulling segments from the state store.

There are exactly `concurrency` worker tasks, whatever the queue's length: a worker claims
a small batch from the store, so 100,000 pending segments cost no more memory than 1,000.
A segment waiting for its retry is back in the store with a due time, holding no slot.
Every attempt signs its URL at the moment of the request: a first attempt on the claim's
worker thread (a claim takes only free slots, so its jobs start at once), a retry right
before it is sent.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import anyio
from anyio.abc import TaskGroup

from tfbulk.errors import DiskError
from tfbulk.pipeline.commit import Committer, Ready
from tfbulk.pipeline.destination import Destination, Existing, PartFile
from tfbulk.pipeline.events import (
    Observer,
    RunStopping,
    SegmentFailed,
    SegmentFinished,
    SegmentParked,
    SegmentRetrying,
    SegmentStarted,
    Transfer,
)
from tfbulk.pipeline.fetch import Fetched, Fetcher, Validator
from tfbulk.pipeline.limits import RunLimits
from tfbulk.pipeline.plan import Segment, UnsafePath, video_key
from tfbulk.pipeline.retry import (
    FORBIDDEN_HINT,
    Action,
    AttemptFailed,
    Backoff,
    Decision,
    Kind,
    decide,
)
from tfbulk.settings import Tuning
from tfbulk.signing import Signer
from tfbulk.state import Attempted, Done, Failed, Job, Parked, Retry, Status, Store, Validated

FLUSH_INTERVAL = 0.25
IDLE_RECHECK = 5.0
FRESH = 1.0  # seconds: a claimed job's URL signed longer ago than this is signed again
T = TypeVar("T")


@dataclass(slots=True)
class _Claimed:
    """A claimed job waiting for a slot: its `.part` open and its URL signed at
    `signed_at`; or a valid file already there (`skipped`), or a path refused."""

    job: Job
    url: str
    signed_at: float
    part: PartFile | None = None
    skipped: int | None = None
    refused: str | None = None
    disk_error: DiskError | None = None


@dataclass(frozen=True, slots=True)
class _Finished:
    """What the commit reports back about one verified download."""

    job: Job
    fetched: Fetched
    started: float
    made: int  # attempts it took in this claim


@dataclass
class EngineResult:
    """Why the engine stopped (None: the queue ran dry) and what it moved."""

    stop_reason: str | None
    downloaded: int
    disk_error: str | None


class Engine:
    def __init__(
        self,
        *,
        store: Store,
        signer: Signer,
        fetcher: Fetcher,
        dest: Destination,
        url_of: Callable[[Segment], str],
        tuning: Tuning,
        observer: Observer,
        clock: Callable[[], float] = time.time,
        forbidden_hint: str = FORBIDDEN_HINT,
        claim_ahead: bool = True,
        limits: RunLimits | None = None,
    ) -> None:
        self._store = store
        self._signer = signer
        self._fetcher = fetcher
        self._dest = dest
        self._url_of = url_of
        self._forbidden_hint = forbidden_hint
        self._claim_ahead = claim_ahead  # off under a global cap, whose slots it would hold
        self._tuning = tuning
        self._limits = limits
        self._emit = observer
        self._clock = clock
        self._backoff = Backoff(tuning.backoff_base, tuning.backoff_max)
        self._db_limiter = anyio.CapacityLimiter(1)
        self._queue: deque[_Claimed] = deque()
        self._claiming = False
        self._last_claim_full = False
        self._in_flight = 0
        self._ended = 0  # jobs finished so far: a claim that saw none end may call it a day
        self._drained = False
        self._stop_reason: str | None = None
        self._disk_error: str | None = None
        self._downloaded = 0
        self._wake_event = anyio.Event()
        self._job_scopes: set[anyio.CancelScope] = set()
        self._task_group: TaskGroup | None = None
        self._committer: Committer[_Finished] | None = None

    async def run(self) -> EngineResult:
        """Download until the scope's queue is empty or a stop is requested."""
        await self._db(self._store.start_run)
        self._committer = Committer(self._committed, sync=self._dest.sync_folders)
        try:
            async with anyio.create_task_group() as group:
                self._task_group = group
                flusher = anyio.CancelScope()
                group.start_soon(self._flush_periodically, flusher)
                async with anyio.create_task_group() as workers:
                    for _ in range(self._tuning.concurrency):
                        workers.start_soon(self._worker)
                with anyio.CancelScope(shield=True):
                    await self._committer.drain()
                flusher.cancel()
        finally:
            self._committer.close()
        for claimed in self._queue:
            self._store.record(Parked(claimed.job.segment_id))
            if claimed.part is not None:
                claimed.part.close()
        self._queue.clear()
        with contextlib.suppress(DiskError):
            await self._db(self._store.flush)
        return EngineResult(self._stop_reason, self._downloaded, self._disk_error)

    def request_stop(self, reason: str, *, grace: float = 0.0) -> None:
        """Start no new download; park in-flight ones now, or after `grace` seconds (with
        an infinite grace, let them finish)."""
        if self._stop_reason is not None:
            return
        self._stop_reason = reason
        self._wake()
        if grace == math.inf:
            return
        if grace <= 0 or self._task_group is None:
            self._cancel_in_flight()
        else:
            self._task_group.start_soon(self._cancel_after, grace)

    @property
    def stopping(self) -> bool:
        return self._stop_reason is not None

    # -- workers ------------------------------------------------------------------

    async def _worker(self) -> None:
        while (claimed := await self._next_job()) is not None:
            job = claimed.job
            try:
                with anyio.CancelScope() as scope:
                    self._job_scopes.add(scope)
                    await self._process(claimed)
                if scope.cancelled_caught:
                    self._park(job)
            except DiskError as exc:
                self._park(job)
                self._disk_full(exc)
            finally:
                self._job_scopes.discard(scope)
                self._in_flight -= 1
                self._ended += 1
                self._wake()

    async def _next_job(self) -> _Claimed | None:
        """The next claimed job, its URL signed (counted in flight), or None at the end."""
        while self._stop_reason is None and not self._drained:
            if self._limits is not None and self._limits.quota_reached:
                self._quota_reached(self._limits)
                break
            if self._queue:
                if not self._fits(self._queue[0]):
                    break
                self._in_flight += 1
                claimed = self._queue.popleft()
                if claimed.part and self._clock() - claimed.signed_at > FRESH:
                    claimed.url = self._sign(claimed.job)  # it waited behind long downloads
                self._refill_soon()
                return claimed
            if self._claiming:
                await self._wait(None)
                continue
            ended_before = self._ended
            jobs, due = await self._claim()
            if jobs:
                self._queue.extend(jobs)
            elif due is None and self._in_flight == 0 and self._ended == ended_before:
                self._drained = True
                self._wake()
            else:
                await self._wait(due)
        return None

    def _quota_reached(self, limits: RunLimits) -> None:
        """--max-transfer: start nothing new; what runs finishes, the rest waits for a rerun."""
        if self.stopping:
            return
        self._emit(
            RunStopping(
                f"--max-transfer reached ({limits.received:,} bytes received); "
                "finishing the downloads in flight"
            )
        )
        self.request_stop("max-transfer", grace=math.inf)

    def _fits(self, claimed: _Claimed) -> bool:
        """--min-free-space: may this download start? If not, the run stops for the disk."""
        if self._limits is None or claimed.part is None:
            return True
        job = claimed.job
        size = job.expected_size or job.known_size
        wanted = None if size is None else max(0, size - claimed.part.size)
        try:
            self._limits.disk.check(job.segment_id, wanted)
        except DiskError as exc:
            self._disk_full(exc)
            return False
        return True

    def _refill_soon(self) -> None:
        """With `claim_ahead`, claim the next jobs in the background while half of the
        claimed ones still wait: a worker that frees its slot finds one ready. Not after
        a claim that came back short (the queue is running dry: the workers' own claims
        then notice the end)."""
        if (
            self._claim_ahead
            and not self._claiming
            and self._last_claim_full
            and len(self._queue) < self._tuning.concurrency // 2 + 1
            and self._task_group is not None
        ):
            self._claiming = True
            self._task_group.start_soon(self._refill)

    async def _refill(self) -> None:
        jobs, _ = await self._claim()
        self._queue.extend(jobs)

    async def _claim(self) -> tuple[list[_Claimed], float | None]:
        """Claim what fills the free slots and (with `claim_ahead`) as many again to start
        next: a trip to the DB thread per `concurrency` files, not per file."""
        self._claiming = True
        jobs: list[_Claimed] = []
        ended_before = self._ended
        try:
            ahead = self._tuning.concurrency if self._claim_ahead else 0
            wanted = self._tuning.concurrency + ahead - self._in_flight - len(self._queue)
            jobs = await self._db(self._claim_signed, wanted) if wanted > 0 else []
            self._last_claim_full = len(jobs) >= wanted
            due = None if jobs else await self._db(self._store.next_due)
            return jobs, due
        except DiskError as exc:
            self._disk_full(exc)
            return [], None
        finally:
            self._claiming = False
            # Only news wakes the idle workers: jobs, or a job that ended meanwhile (this
            # claim may predate what it freed). Waking them after every empty claim made
            # each claim in turn and wake the others, round and round, at full CPU.
            if jobs or self._ended != ended_before:
                self._wake()

    def _claim_signed(self, wanted: int) -> list[_Claimed]:
        """Claim, prepare and sign in one trip to the DB thread: RSA signing (~1 ms a URL)
        releases the GIL, so it runs on the other core instead of the event loop, and so
        does creating each `.part`, which can wait on the file system."""
        return [self._prepare(job) for job in self._store.claim(wanted, self._clock())]

    async def _wait(self, due: float | None) -> None:
        """Sleep until woken (a job ended, a claim finished, a stop) or `due` comes."""
        if self._stop_reason is not None or self._drained:
            return
        timeout = IDLE_RECHECK if due is None else max(0.0, due - self._clock())
        event = self._wake_event
        with anyio.move_on_after(min(timeout, IDLE_RECHECK)):
            await event.wait()

    def _wake(self) -> None:
        self._wake_event.set()
        self._wake_event = anyio.Event()

    # -- one segment ----------------------------------------------------------------

    async def _process(self, claimed: _Claimed) -> None:
        job, part = claimed.job, claimed.part
        if claimed.disk_error is not None:
            raise claimed.disk_error
        if claimed.refused is not None:
            self._fail(job, None, f"refused: {claimed.refused}", made=0)
            return
        if part is None:
            self._skipped(job, claimed.skipped or 0)
            return
        started = self._clock()
        try:
            outcome = await self._attempts(job, part, claimed.url)
        except BaseException:
            part.close()
            raise
        if outcome is None:
            part.close()
            return
        fetched, made = outcome
        assert self._committer is not None
        self._committer.submit(Ready(part, _Finished(job, fetched, started, made)))

    def _skipped(self, job: Job, size: int) -> None:
        self._store.record(Done(job.segment_id, Status.SKIPPED, size, None, None, self._clock()))
        self._emit(
            SegmentFinished(
                job.segment_id, job.course_id, Status.SKIPPED, size, 0.0, 0, job.path or ""
            )
        )

    def _committed(self, batch: list[Ready[_Finished]]) -> None:
        """A batch is final and durable on disk: now the state DB may say `success`."""
        now = self._clock()
        for item in batch:
            job, fetched = item.payload.job, item.payload.fetched
            if item.error is not None:
                self._not_committed(job, item)
                continue
            self._store.record(
                Done(job.segment_id, Status.SUCCESS, fetched.size, fetched.md5, fetched.etag, now)
            )
            if self._limits is not None:
                self._limits.disk.learn(fetched.size)
            self._emit(
                SegmentFinished(
                    job.segment_id,
                    job.course_id,
                    Status.SUCCESS,
                    fetched.size,
                    now - item.payload.started,
                    fetched.received,
                    job.path or "",
                )
            )

    def _not_committed(self, job: Job, item: Ready[_Finished]) -> None:
        """A verified `.part` that could not become final: a full disk parks it (the next
        run finds it complete), any other error fails the segment."""
        assert item.error is not None
        try:
            self._dest.raise_if_disk(item.error, item.part.final)
        except DiskError as exc:
            self._park(job)
            self._disk_full(exc)
            return
        message = f"cannot write {item.part.final}: {item.error.strerror}"
        self._fail(job, None, message, made=item.payload.made)

    def _prepare(self, job: Job) -> _Claimed:
        """The file side of a claimed job, on the claim's thread: folders made, an existing
        valid file found (skip), or the `.part` opened; then its URL signed."""
        try:
            if job.path is None:
                reason = job.error or "no safe path for this segment"
                raise UnsafePath(reason.removeprefix("refused: "))
            opened = self._dest.open(job.path, known_size=job.known_size, replace=job.replace)
        except UnsafePath as exc:
            return _Claimed(job, "", 0.0, refused=str(exc))
        except DiskError as exc:
            return _Claimed(job, "", 0.0, disk_error=exc)
        except OSError as exc:
            return _Claimed(job, "", 0.0, refused=f"cannot write {job.path}: {exc.strerror}")
        if isinstance(opened, Existing):
            return _Claimed(job, "", 0.0, skipped=opened.size)
        return _Claimed(job, self._sign(job), self._clock(), part=opened)

    async def _attempts(self, job: Job, part: PartFile, url: str) -> tuple[Fetched, int] | None:
        """Attempt until success (with the attempts it took), a retry for later (slot
        released), or failure.

        `url` was signed at the claim, just now; every further attempt signs afresh. An
        attempt's number counts every attempt at the segment, all runs (what `failed`
        shows); `--retries` bounds this run's (`attempt`)."""
        validator = Validator(job.etag, job.last_modified, job.expected_size)
        previous = Kind(job.last_kind) if job.last_kind else None
        attempt = job.run_attempts
        while True:
            attempt += 1
            made = attempt - job.run_attempts
            waited = self._limits is not None and await self._limits.request()
            if self.stopping:  # a stop came while it waited for --max-rps: not started
                self._park(job)
                return None
            transfer = Transfer(
                job.segment_id, job.course_id, job.title, self._clock(), job.attempts + made
            )
            self._emit(SegmentStarted(transfer))
            if made > 1 or waited:
                url = self._sign(job)
            self._track(transfer)
            try:
                fetched = await self._fetcher.fetch(
                    url, part, validator, transfer, lambda v: self._remember(job, v)
                )
                return fetched, made
            except AttemptFailed as failure:
                if failure.restart:
                    part.start_over()
                    validator = Validator(None, None, None)
                decision = decide(
                    failure,
                    attempt,
                    self._tuning.retries,
                    previous,
                    self._backoff,
                    self._forbidden_hint,
                )
                if decision.action is Action.LATER or (
                    decision.action is Action.NOW and self.stopping
                ):
                    self._retry_later(job, failure, decision, job.attempts + made)
                    return None
                if decision.action is Action.FAIL:
                    self._fail(job, failure.kind, decision.message, made=made)
                    return None
                self._store.record(Attempted(job.segment_id, failure.kind, decision.message))
                previous = failure.kind
            finally:  # every byte received counts, whatever became of the attempt
                self._downloaded += max(0, transfer.received - transfer.resumed_from)
                self._untrack(transfer)

    def _track(self, transfer: Transfer) -> None:
        """--min-free-space counts what the running attempts still have to write."""
        if self._limits is not None:
            self._limits.disk.running(transfer)

    def _untrack(self, transfer: Transfer) -> None:
        if self._limits is not None:
            self._limits.disk.ended(transfer)

    def _sign(self, job: Job) -> str:
        return self._signer.sign(self._url(job), self._clock())

    def _url(self, job: Job) -> str:
        key = video_key(job.video) or ""
        return self._url_of(Segment(job.segment_id, job.course_id, job.channel_id, key))

    def _remember(self, job: Job, validator: Validator) -> None:
        self._store.record(
            Validated(job.segment_id, validator.etag, validator.last_modified, validator.size)
        )

    def _retry_later(
        self, job: Job, failure: AttemptFailed, decision: Decision, attempt: int
    ) -> None:
        """Back to the store, due after the delay: the slot goes to another segment."""
        due = self._clock() + decision.delay
        self._store.record(
            Retry(job.segment_id, failure.kind, decision.message, due, failure.restart)
        )
        self._emit(
            SegmentRetrying(
                job.segment_id, job.course_id, attempt, decision.message, decision.delay
            )
        )

    def _fail(self, job: Job, kind: Kind | None, message: str, *, made: int) -> None:
        """Failed after `made` attempts in this claim (0: none was made)."""
        self._store.record(Failed(job.segment_id, kind, message, made > 0, self._clock()))
        self._emit(SegmentFailed(job.segment_id, job.course_id, job.attempts + made, message))

    def _park(self, job: Job) -> None:
        self._store.record(Parked(job.segment_id))
        self._emit(SegmentParked(job.segment_id, job.course_id))

    # -- housekeeping -----------------------------------------------------------------

    async def _db(self, func: Callable[..., T], *args: object) -> T:
        """Store calls run on one thread, in order, off the event loop."""
        return await anyio.to_thread.run_sync(func, *args, limiter=self._db_limiter)

    async def _flush_periodically(self, scope: anyio.CancelScope) -> None:
        with scope:
            while True:
                await anyio.sleep(FLUSH_INTERVAL)
                try:
                    await self._db(self._store.flush)
                except DiskError as exc:
                    self._disk_full(exc)

    def _disk_full(self, exc: DiskError) -> None:
        """Stop starting downloads and park the rest; the first such message is reported."""
        if self._disk_error is None:
            self._disk_error = str(exc)
        self.request_stop("disk")

    def _cancel_in_flight(self) -> None:
        for scope in list(self._job_scopes):
            scope.cancel()

    async def _cancel_after(self, grace: float) -> None:
        """Let in-flight downloads finish for `grace` seconds, then park what is left."""
        with anyio.move_on_after(grace):
            while self._in_flight:
                await self._wake_event.wait()
        self._cancel_in_flight()
