"""`tfbulk doctor`: will tonight's run work? Every check, each with one line of advice.

Checks reuse the run's own pieces (snapshot reader, planner, signer, state store, lock), so
a green doctor means the same code will accept the same inputs. Nothing is written.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path

import anyio
import httpx
from cryptography.hazmat.primitives.asymmetric import rsa

from tfbulk import __version__
from tfbulk.credentials import (
    build_signer,
    describe_key,
    is_world_readable,
    load_aws_credentials,
    load_private_key,
)
from tfbulk.display.format import counted, human_bytes, human_duration
from tfbulk.errors import BadInput, TfbulkError
from tfbulk.pipeline.destination import write_problem
from tfbulk.pipeline.fetch import USER_AGENT, open_transport
from tfbulk.pipeline.limits import disk_shortfall
from tfbulk.pipeline.plan import PlanRow, PlanStats, Template, plan_rows
from tfbulk.pipeline.retry import FORBIDDEN_HINTS
from tfbulk.pipeline.snapshot import Snapshot
from tfbulk.pipeline.urls import SegmentUrl, check_covered, segment_urls
from tfbulk.settings import PolicySettings, RunSettings, Tuning, binary_size
from tfbulk.signing import Signer, redact
from tfbulk.signing.cloudfront import PrivateKey, can_sign
from tfbulk.state import open_store, store_exists
from tfbulk.state.schema import SCHEMA_VERSION
from tfbulk.state.url import is_postgres_url, redact_url

OK, WARN, FAIL = "ok", "warn", "fail"
REBUILD_ADVICE = "move it aside; the next run rebuilds state and skips finished files"
PG_ADVICE = "check the URL and password, and that PostgreSQL is up and lets this host in"
CLOCK_SKEW_LIMIT = 60.0
PROBE_TIMEOUT = 15.0


@dataclass(frozen=True)
class Check:
    area: str
    name: str
    status: str
    detail: str
    advice: str = ""


@dataclass
class _Findings:
    """What earlier checks learned that later ones use."""

    rows: list[PlanRow] = field(default_factory=list)
    signer: Signer | None = None
    url_of: SegmentUrl | None = None
    probed_sizes: list[int] = field(default_factory=list)
    ranged_probe: bool = False
    hint: str = FORBIDDEN_HINTS["cloudfront"]
    remaining: int | None = None
    average_size: float | None = None


def diagnose(settings: RunSettings, *, probe: int = 0) -> list[Check]:
    """Run every check in order; later checks use what earlier ones found."""
    found = _Findings(
        ranged_probe=settings.signer.kind == "s3",
        hint=FORBIDDEN_HINTS[settings.signer.kind],
    )
    checks = _snapshot_checks(settings, found)
    checks += _signing_checks(settings, found)
    checks += _state_checks(settings, found)
    if probe:
        checks += _probe_checks(settings, found, probe)
    checks += _destination_checks(settings, found)
    return checks


def as_json(checks: list[Check]) -> dict[str, object]:
    return {
        "ok": not any(c.status == FAIL for c in checks),
        "version": __version__,
        "checks": [asdict(c) for c in checks],
    }


# -- snapshot -----------------------------------------------------------------------------


def _snapshot_checks(settings: RunSettings, found: _Findings) -> list[Check]:
    try:
        path_template = Template(settings.path_template, "--path-template")
        snapshot = Snapshot.open(settings.snapshot)
    except BadInput as exc:
        return [
            Check(
                "snapshot",
                "opens read-only, schema valid",
                FAIL,
                str(exc),
                "pass --snapshot PATH to the catalogue's SQLite snapshot",
            )
        ]
    with snapshot:
        counts = snapshot.counts()
        stats = PlanStats()
        found.rows = list(plan_rows(snapshot.segments(), settings.scope, path_template, stats))
    checks = [
        Check(
            "snapshot",
            "opens read-only, schema valid",
            OK,
            f"{counts.courses:,} courses, {counts.channels:,} channels, "
            f"{counts.segments:,} segments",
        ),
        Check(
            "snapshot",
            "downloadable segments",
            OK if stats.planned else FAIL,
            f"{stats.planned:,} in scope across {len(stats.courses):,} courses "
            f"({stats.no_video:,} without video)",
            "" if stats.planned else "check --course/--segment, or the snapshot's video fields",
        ),
    ]
    if stats.refused:
        checks.append(
            Check(
                "snapshot",
                "paths stay inside --dest",
                WARN,
                f"{stats.refused:,} segments would be refused (unsafe path)",
                "check --path-template and those segments' video fields",
            )
        )
    return checks


# -- signing ------------------------------------------------------------------------------


def _signing_checks(settings: RunSettings, found: _Findings) -> list[Check]:
    signer = settings.signer
    checks: list[Check] = []
    try:
        found.url_of = segment_urls(settings.url_template, signer)
    except BadInput as exc:
        return [Check("signing", "segment URLs", FAIL, str(exc), "see docs/signers.md")]
    if signer.kind == "cloudfront":
        checks += _key_checks(settings)
    if signer.kind == "s3":
        checks.append(_aws_credentials_check(signer.profile))
    try:
        found.signer = build_signer(signer)
    except BadInput as exc:
        if not any(c.status == FAIL for c in checks):
            checks.append(Check("signing", "signer", FAIL, str(exc), "see docs/signers.md"))
        return checks
    if signer.kind == "none":
        return [Check("signing", "signer", OK, "URLs are not signed (--signer none)")]
    if found.rows:
        url = _url_of(found.rows[0], found.url_of)
        found.signer.sign(url, time.time())
        checks.append(
            Check(
                "signing",
                "a sample URL signs",
                OK,
                f"{redact(url)} (valid {human_duration(signer.expires)})",
            )
        )
    if signer.policy.resource is not None and found.rows:
        checks.append(_coverage_check(signer.policy.resource, found))
    return checks


def _key_checks(settings: RunSettings) -> list[Check]:
    signer = settings.signer
    checks = [
        Check("signing", "key pair ID given", OK, signer.key_pair_id)
        if signer.key_pair_id
        else Check(
            "signing",
            "key pair ID given",
            FAIL,
            "no --key-pair-id",
            "pass --key-pair-id or set TFBULK_KEY_PAIR_ID (CloudFront public key ID)",
        )
    ]
    if signer.private_key is None:
        return [
            *checks,
            Check(
                "signing",
                "private key",
                FAIL,
                "no --private-key",
                "pass --private-key PATH or set TFBULK_PRIVATE_KEY",
            ),
        ]
    try:
        key = load_private_key(signer.private_key)
    except BadInput as exc:
        return [
            *checks,
            Check(
                "signing", "private key", FAIL, str(exc), "export the key pair's private key as PEM"
            ),
        ]
    checks.append(Check("signing", "private key", OK, f"{signer.private_key}: {describe_key(key)}"))
    checks += _signature_checks(key, signer.policy)
    if is_world_readable(signer.private_key):
        checks.append(
            Check(
                "signing",
                "private key permissions",
                WARN,
                "readable by every user on this machine",
                f"chmod 600 {signer.private_key}",
            )
        )
    return checks


def _signature_checks(key: PrivateKey, policy: PolicySettings) -> list[Check]:
    """Which signature, over which policy; and whether this system can make it at all."""
    algorithm = "RSA" if isinstance(key, rsa.RSAPrivateKey) else "ECDSA"
    detail = f"{algorithm} with {policy.hash_algorithm}, {_policy_kind(policy)}"
    checks = [Check("signing", "signature", OK, detail)]
    if policy.hash_algorithm == "SHA1" and not can_sign(key, "SHA1"):
        checks.append(
            Check(
                "signing",
                "SHA-1 signatures",
                WARN,
                "this system's crypto policy refuses SHA-1 signatures (FIPS mode?)",
                "pass --hash-algorithm SHA256: CloudFront accepts it, and it works here",
            )
        )
    start = policy.date_greater_than
    if start is not None and start > time.time():
        checks.append(
            Check(
                "signing",
                "policy start",
                WARN,
                f"--date-greater-than is {human_duration(start - time.time())} from now: "
                "CloudFront refuses every request until then",
                "drop --date-greater-than, or run after that time",
            )
        )
    return checks


def _policy_kind(policy: PolicySettings) -> str:
    conditions = [
        f"{name} {value}"
        for name, value in (
            ("DateGreaterThan", _utc(policy.date_greater_than)),
            ("IpAddress", policy.ip_address),
        )
        if value is not None
    ]
    suffix = f" ({', '.join(conditions)})" if conditions else ""
    if policy.resource is not None:
        return f"one custom policy for {policy.resource}, re-signed every second{suffix}"
    return f"a custom policy per URL{suffix}" if conditions else "a canned policy per URL"


def _utc(epoch: int | None) -> str | None:
    return None if epoch is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _coverage_check(resource: str, found: _Findings) -> Check:
    """Every planned URL must match the policy's Resource, or `run` refuses to start."""
    urls = [(f"segment {row.segment_id}", _url_of(row, found.url_of)) for row in found.rows]
    try:
        check_covered(resource, urls)
    except BadInput as exc:
        return Check("signing", "policy resource covers the URLs", FAIL, str(exc))
    return Check(
        "signing",
        "policy resource covers the URLs",
        OK,
        f"{resource} matches all {counted(len(urls), 'planned URL')}",
    )


def _aws_credentials_check(profile: str | None) -> Check:
    """Where the S3 credentials come from (never what they are)."""
    try:
        _, source = load_aws_credentials(profile)
    except BadInput as exc:
        return Check("signing", "AWS credentials", FAIL, str(exc), "see docs/signers.md")
    return Check("signing", "AWS credentials", OK, f"found in {source}")


def _url_of(row: PlanRow, url_of: SegmentUrl | None) -> str:
    assert url_of is not None
    return url_of(row.segment())


# -- state DB -----------------------------------------------------------------------------


def _state_checks(settings: RunSettings, found: _Findings) -> list[Check]:
    """What the store says of itself; `doctor` opens it read-only and upgrades nothing."""
    if is_postgres_url(settings.state):
        return _postgres_checks(settings.state, found)
    path = Path(settings.state)
    if not path.exists():
        found.remaining = len(found.rows)
        return [Check("state", "state DB", OK, f"{path} will be created by the first run")]
    try:
        store = open_store(settings.state, create=False, lock=False, readonly=True)
    except TfbulkError as exc:
        return [Check("state", "state DB opens", FAIL, str(exc), REBUILD_ADVICE)]
    try:
        health = store.health()
        checks = [_integrity(path, health.integrity), _schema(health.schema_version)]
        if health.integrity == "ok" and health.schema_version <= SCHEMA_VERSION:
            _learn_sizes({r.segment_id: r.size for r in store.finished()}, found)
    except TfbulkError as exc:
        return [Check("state", "state DB opens", FAIL, str(exc), REBUILD_ADVICE)]
    finally:
        store.close()
    checks.append(
        Check(
            "state",
            "not locked",
            WARN,
            f"a tfbulk run (PID {health.holder}) is using it now",
            "a second run now would exit 3; wait for it or stop it",
        )
        if health.holder
        else Check("state", "not locked", OK, "no run holds the lock")
    )
    return checks


def _integrity(path: Path, result: str | None) -> Check:
    if result == "ok":
        return Check("state", "integrity check", OK, f"{path}: ok")
    return Check("state", "integrity check", FAIL, f"{path}: {result}", REBUILD_ADVICE)


def _schema(version: int) -> Check:
    """An older schema is fine (the next run upgrades it in place); a newer one is not."""
    if version <= SCHEMA_VERSION:
        return Check("state", "schema version", OK, f"version {version}")
    return Check(
        "state",
        "schema version",
        FAIL,
        f"version {version}, this tfbulk knows {SCHEMA_VERSION}",
        "use the tfbulk version that wrote it, or upgrade",
    )


def _postgres_checks(spec: str, found: _Findings) -> list[Check]:
    """A shared queue: reachable, schema known, who works on it (several workers are normal)."""
    where = redact_url(spec)
    try:
        if not store_exists(spec):
            found.remaining = len(found.rows)
            return [Check("state", "state DB", OK, f"{where}: the first run creates the schema")]
        store = open_store(spec, create=False, lock=False, readonly=True)
    except TfbulkError as exc:
        return [Check("state", "state DB opens", FAIL, str(exc), PG_ADVICE)]
    try:
        _learn_sizes({r.segment_id: r.size for r in store.finished()}, found)
        live = sum(1 for worker in store.workers() if worker.live)
    except TfbulkError as exc:
        return [Check("state", "state DB opens", FAIL, str(exc), PG_ADVICE)]
    finally:
        store.close()
    return [
        Check("state", "state DB opens", OK, f"{where}: opens, schema known"),
        Check("state", "workers", OK, f"{counted(live, 'live worker')} on this queue now"),
    ]


def _learn_sizes(done: dict[int, int | None], found: _Findings) -> None:
    """Average finished size and how many planned segments are not done yet."""
    sizes = [size for size in done.values() if size]
    found.average_size = sum(sizes) / len(sizes) if sizes else None
    found.remaining = sum(1 for row in found.rows if row.segment_id not in done)


# -- probe ---------------------------------------------------------------------------------


def _probe_checks(settings: RunSettings, found: _Findings, count: int) -> list[Check]:
    if not found.rows or found.signer is None or found.url_of is None:
        return [
            Check(
                "probe",
                "signed HEAD requests",
                FAIL,
                "nothing to probe",
                "fix the snapshot and signing checks first",
            )
        ]
    step = max(1, len(found.rows) // count)
    sample = found.rows[::step][:count]
    results = anyio.run(_probe_all, settings, found, sample)
    checks = [check for check, _ in results]
    skews = [skew for _, skew in results if skew is not None]
    if skews:
        worst = max(skews, key=abs)
        checks.append(
            Check(
                "probe",
                "clock",
                WARN,
                f"server clock differs by {worst:+.0f}s",
                "sync this machine's clock (NTP): signatures carry absolute expiry times",
            )
            if abs(worst) > CLOCK_SKEW_LIMIT
            else Check("probe", "clock", OK, f"within {abs(worst):.0f}s of the server's Date")
        )
    return checks


async def _probe_all(
    settings: RunSettings, found: _Findings, sample: list[PlanRow]
) -> list[tuple[Check, float | None]]:
    """The run's own HTTP stack (libcurl, --http, --ca-bundle, redirects), one at a time."""
    tuning = Tuning(concurrency=1, connect_timeout=PROBE_TIMEOUT, read_timeout=PROBE_TIMEOUT)
    transport = open_transport(tuning, settings.network)
    async with httpx.AsyncClient(
        transport=transport, timeout=PROBE_TIMEOUT, headers={"User-Agent": USER_AGENT}
    ) as client:
        return [await _probe_one(client, row, found) for row in sample]


async def _probe_one(
    client: httpx.AsyncClient, row: PlanRow, found: _Findings
) -> tuple[Check, float | None]:
    assert found.signer is not None
    url = found.signer.sign(_url_of(row, found.url_of), time.time())
    name = f"segment {row.segment_id}"
    started = time.monotonic()
    try:
        if found.ranged_probe:  # S3 refuses HEAD on a URL presigned for GET
            response = await client.get(url, headers={"Range": "bytes=0-0"})
        else:
            response = await client.head(url)
    except httpx.HTTPError as exc:
        return Check(
            "probe",
            name,
            FAIL,
            redact(f"{type(exc).__name__}: {exc}"),
            "check the URL template, DNS, network, --http and --ca-bundle",
        ), None
    latency = time.monotonic() - started
    skew = _skew(response)
    if response.status_code in (200, 206):
        size = _object_size(response)
        found.probed_sizes.append(size)
        version = response.http_version
        detail = f"{response.status_code}, {human_bytes(size)}, {latency * 1000:.0f} ms, {version}"
        return Check("probe", name, OK, detail), skew
    advice = found.hint if response.status_code == 403 else "see `tfbulk failed` after a run"
    return Check(
        "probe", name, FAIL, f"HTTP {response.status_code}, {latency * 1000:.0f} ms", advice
    ), skew


def _object_size(response: httpx.Response) -> int:
    """The object's size: a 206's Content-Range total, or a 200's Content-Length."""
    total = response.headers.get("content-range", "").rpartition("/")[2]
    if total.isdigit():
        return int(total)
    return int(response.headers.get("content-length", 0))


def _skew(response: httpx.Response) -> float | None:
    try:
        server = parsedate_to_datetime(response.headers["date"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return None
    return server - time.time()


# -- destination -------------------------------------------------------------------------


def _destination_checks(settings: RunSettings, found: _Findings) -> list[Check]:
    if settings.s3 is not None:
        return [_bucket_check(settings)]
    dest = settings.dest
    existing = _nearest_existing(dest)
    if existing is None or not existing.is_dir():
        return [
            Check(
                "destination",
                "exists or can be created",
                FAIL,
                f"{dest}: {existing} is not a folder",
                "pass another --dest",
            )
        ]
    checks = [_writable(dest, existing)]
    free = shutil.disk_usage(existing).free
    checks.append(_space(free, settings.limits.min_free_space, found))
    return checks


def _bucket_check(settings: RunSettings) -> Check:
    """--dest s3://…: credentials found and the bucket answering with them (a HEAD)."""
    from tfbulk.pipeline.s3dest import preflight

    assert settings.s3 is not None
    where = str(settings.s3.location)
    try:
        preflight(settings.s3, settings.tuning)
    except BadInput as exc:
        problem, _, fix = str(exc).partition("; ")
        return Check("destination", "bucket reachable", FAIL, problem, fix or "check --dest")
    endpoint = settings.s3.endpoint_url or f"S3 in {settings.s3.region}"
    return Check("destination", "bucket reachable", OK, f"{where} answers at {endpoint}")


def _nearest_existing(path: Path) -> Path | None:
    path = path.absolute()
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return None


def _writable(dest: Path, existing: Path) -> Check:
    problem = write_problem(existing)
    if problem:
        return Check(
            "destination",
            "writable",
            FAIL,
            f"{existing}: {problem}",
            "fix its permissions or pass another --dest",
        )
    what = "exists" if existing == dest.absolute() else f"will be created under {existing}"
    return Check("destination", "writable", OK, f"{dest} {what}")


def _space(free: int, reserve: int, found: _Findings) -> Check:
    """The run's own arithmetic (--min-free-space): what is still to come plus the reserve
    must fit in what is free, or the run stops with exit 2 before the disk fills."""
    sizes = found.probed_sizes
    average = sum(sizes) / len(sizes) if sizes else found.average_size
    remaining = found.remaining if found.remaining is not None else len(found.rows)
    kept = f"--min-free-space keeps {binary_size(reserve)}"
    if average is None:
        short = disk_shortfall(free, reserve, 0, 0)
        detail = f"{human_bytes(free)} free, {kept} (no size estimate yet: add --probe N)"
        if short:
            return Check("destination", "free space", FAIL, detail, _space_fix(short))
        return Check("destination", "free space", OK, detail)
    needed = int(average * remaining)
    short = disk_shortfall(free, reserve, 0, needed)
    detail = (
        f"{human_bytes(free)} free, about {human_bytes(needed)} still needed "
        f"({counted(remaining, 'segment')} × {human_bytes(average)}), {kept}"
    )
    if short:
        return Check("destination", "free space", FAIL, detail, _space_fix(short))
    return Check("destination", "free space", OK, detail)


def _space_fix(short: int) -> str:
    return (
        f"free {binary_size(short)} more, pass a --dest on a larger disk, or lower --min-free-space"
    )
