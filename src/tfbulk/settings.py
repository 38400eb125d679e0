"""Run settings: one frozen object built by the CLI, read by everything else.

Keeping settings free of the CLI library lets the demo, the tests and the benchmark build a
run without going through argument parsing.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tfbulk.errors import BadInput
from tfbulk.signing.policy import HASH_ALGORITHMS, sent_as_is

STATE_DIR = ".tfbulk"  # tfbulk's own folder under --dest: state DB, locks

DEFAULT_URL_TEMPLATE = "https://d2kum0w8xvhbpf.cloudfront.net/truefire/{segment_id}.mp4"
DEFAULT_PATH_TEMPLATE = "{course_id}/{segment_id}.mp4"
DEFAULT_EXPIRES = "2h"
DEFAULT_KEY_TEMPLATE = "{video_dir}/{video_name}_med.mp4"
DEFAULT_REGION = "us-east-1"
DEFAULT_LEASE = "5m"
MIN_LEASE = 1.0
SIGNERS = ("cloudfront", "s3", "none")
HTTP_VERSIONS = ("1.1", "2", "3")
DEFAULT_MAX_FILE_SIZE = "64G"

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")


def parse_duration(text: str, what: str) -> float:
    """Seconds in `90s`, `30m`, `2h`, `1d`, `1h30m` or a bare number of seconds.

    `what` names the flag, so the error tells the user which value to fix.
    """
    raw = text.strip().lower()
    try:
        seconds = float(raw)
    except ValueError:
        parts = _DURATION.findall(raw)
        if not parts or "".join(n + u for n, u in parts) != raw:
            raise BadInput(
                f"{what}: {text!r} is not a duration; use e.g. 90s, 30m, 2h or 1h30m"
            ) from None
        seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if not math.isfinite(seconds):
        raise BadInput(f"{what}: {text!r} is not a finite duration; use e.g. 90s, 30m or 2h")
    if seconds <= 0:
        raise BadInput(f"{what}: {text!r} must be longer than zero")
    return seconds


@dataclass(frozen=True)
class PolicySettings:
    """CloudFront's hash and policy flags; the defaults make a canned SHA-1 signature.

    Any of `resource`, `date_greater_than` or `ip_address` makes the policy custom; with
    `resource` one signed policy serves every URL it matches.
    """

    hash_algorithm: str = "SHA1"
    resource: str | None = None
    date_greater_than: int | None = None
    ip_address: str | None = None

    @property
    def is_custom(self) -> bool:
        return (self.resource, self.date_greater_than, self.ip_address) != (None, None, None)

    def flags(self) -> list[str]:
        """The flags that differ from the defaults, for messages about them."""
        given = {
            "--hash-algorithm": self.hash_algorithm != "SHA1",
            "--policy-resource": self.resource is not None,
            "--date-greater-than": self.date_greater_than is not None,
            "--ip-address": self.ip_address is not None,
        }
        return [flag for flag, is_given in given.items() if is_given]


CANNED_SHA1 = PolicySettings()


def policy_settings(
    hash_algorithm: str | None,
    resource: str | None,
    date_greater_than: str | None,
    ip_address: str | None,
) -> PolicySettings:
    """Check the CloudFront policy flags once, at the edge, each error naming its flag."""
    return PolicySettings(
        hash_algorithm=check_hash_algorithm(hash_algorithm or "SHA1"),
        resource=check_policy_resource(resource) if resource is not None else None,
        date_greater_than=(
            parse_time(date_greater_than, "--date-greater-than")
            if date_greater_than is not None
            else None
        ),
        ip_address=check_cidr(ip_address, "--ip-address") if ip_address is not None else None,
    )


def check_hash_algorithm(text: str) -> str:
    """`SHA1` or `SHA256`, in any case, with or without the dash."""
    name = text.strip().upper().replace("-", "")
    if name not in HASH_ALGORITHMS:
        raise BadInput(f"--hash-algorithm {text!r} is not SHA1 or SHA256")
    return name


def check_policy_resource(text: str) -> str:
    """A Resource is compared with the URL on the wire: printable ASCII, no fragment."""
    if not sent_as_is(text):
        raise BadInput(
            f"--policy-resource {text!r} must be a URL pattern in printable ASCII without "
            "spaces or '#', e.g. https://d111111abcdef8.cloudfront.net/videos/*"
        )
    return text


def parse_time(text: str, what: str) -> int:
    """Unix seconds in `1767225600`, or an ISO-8601 time (`2026-01-01T00:00:00Z`; UTC if no
    zone is given), as the AWS CLI reads its dates."""
    raw = text.strip()
    if raw.isdigit():
        return int(raw)
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise BadInput(
            f"{what}: {text!r} is not a time; use Unix seconds or ISO-8601, "
            "e.g. 2026-01-01T00:00:00Z"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def check_cidr(text: str, what: str) -> str:
    """An IPv4 or IPv6 range as CloudFront's `AWS:SourceIp` takes it; a bare address becomes
    a one-address range (`/32`, `/128`), as botocore does for IPv4."""
    raw = text.strip()
    try:
        network = ipaddress.ip_network(raw, strict=False)
    except ValueError:
        raise BadInput(
            f"{what} {text!r} is not an IP address range; use CIDR, e.g. 203.0.113.0/24"
        ) from None
    return raw if "/" in raw else f"{raw}/{network.max_prefixlen}"


@dataclass(frozen=True)
class SignerSettings:
    """How each URL gets signed; the key material is loaded by `credentials`.

    The S3 fields also say where an object lives: with `kind="s3"` a segment's URL is its
    object's (bucket, `key_template`), not `--url-template`.
    """

    kind: str = "cloudfront"
    key_pair_id: str | None = None
    private_key: Path | None = None
    expires: float = 7200.0
    bucket: str | None = None
    region: str = DEFAULT_REGION
    endpoint_url: str | None = None
    key_template: str = DEFAULT_KEY_TEMPLATE
    profile: str | None = None
    policy: PolicySettings = CANNED_SHA1


@dataclass(frozen=True)
class Scope:
    """Which planned segments a run covers: courses and segments add up, then the limit."""

    courses: frozenset[int] = frozenset()
    segments: frozenset[int] = frozenset()
    limit_courses: int | None = None


@dataclass(frozen=True)
class Tuning:
    """Knobs of the download engine, with defaults that suit a CDN and a cron job."""

    concurrency: int = 10
    retries: int = 5
    backoff_base: float = 1.0
    backoff_max: float = 120.0
    connect_timeout: float = 30.0
    read_timeout: float = 60.0
    max_time: float | None = None
    stop_grace: float = 5.0


@dataclass(frozen=True)
class Network:
    """How the transfers talk HTTP: protocol, trust, and what a body may be."""

    http_version: str = "2"
    ca_bundle: Path | None = None
    max_file_size: int = 64 << 30


@dataclass(frozen=True)
class Sharing:
    """How a worker shares a PostgreSQL queue with others (SQLite runs alone and ignores it).

    `lease`: how long a claimed segment stays this worker's without a heartbeat, so how
    soon others take over after a crash. `max_global`: most downloads in flight across
    all workers, or None for no cap beyond each worker's --concurrency.
    """

    lease: float = 300.0
    max_global: int | None = None


S3_SCHEME = "s3://"
DEFAULT_PART_SIZE = "16M"
MIN_PART_SIZE = 5 << 20  # S3's smallest part but the last
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


@dataclass(frozen=True)
class S3Location:
    """`--dest s3://BUCKET/PREFIX`: the bucket, and the key prefix planned paths go under."""

    bucket: str
    prefix: str

    @classmethod
    def parse(cls, text: str) -> S3Location:
        """`s3://BUCKET/PREFIX` (the prefix may be empty), or exit 2 saying what is wrong."""
        bucket, _, prefix = text.removeprefix(S3_SCHEME).partition("/")
        if not _BUCKET_NAME.fullmatch(bucket):
            raise BadInput(
                f"--dest {text}: {bucket!r} is not an S3 bucket name (3-63 lower-case "
                "letters, digits, dots, hyphens); use s3://BUCKET/PREFIX"
            )
        parts = [part for part in prefix.split("/") if part]
        if any(part in (".", "..") for part in parts):
            raise BadInput(f"--dest {text}: the prefix may not hold . or .. segments")
        return cls(bucket, "/".join(parts))

    def key(self, relative: str) -> str:
        """The object key of a planned path (the planner has refused unsafe ones)."""
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def __str__(self) -> str:
        return f"{S3_SCHEME}{self.bucket}/{self.prefix}"


@dataclass(frozen=True)
class S3Dest:
    """An S3 destination: where, through which endpoint, and how objects go up."""

    location: S3Location
    endpoint_url: str | None = None
    region: str = DEFAULT_REGION
    profile: str | None = None
    part_size: int = 16 << 20


def is_s3(dest: str | Path) -> bool:
    return str(dest).startswith(S3_SCHEME)


def check_part_size(size: int) -> int:
    """`--dest-part-size`: S3 takes parts of 5 MiB at least (all but the last)."""
    if size < MIN_PART_SIZE:
        raise BadInput(f"--dest-part-size must be at least 5M, S3's smallest part (got {size:,})")
    return size


@dataclass(frozen=True)
class RunSettings:
    """Everything `tfbulk run` needs, validated once at the edge."""

    snapshot: Path
    dest: Path
    state: str
    url_template: str = DEFAULT_URL_TEMPLATE
    path_template: str = DEFAULT_PATH_TEMPLATE
    signer: SignerSettings = field(default_factory=SignerSettings)
    scope: Scope = field(default_factory=Scope)
    tuning: Tuning = field(default_factory=Tuning)
    network: Network = field(default_factory=Network)
    sharing: Sharing = field(default_factory=Sharing)
    dry_run: bool = False
    s3: S3Dest | None = None  # --dest s3://…: then `dest` is unused


_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmg]?)i?b?")
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_size(text: str, what: str) -> int:
    """Bytes in `512k`, `2M`, `1.5GiB` or a bare number (binary units)."""
    match = _SIZE.fullmatch(text.strip().lower())
    if not match:
        raise BadInput(f"{what}: {text!r} is not a size; use e.g. 512k, 2M or 1G")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])


def default_state_path(dest: Path | S3Location) -> Path:
    """The state DB lives with the files it describes unless told otherwise; for a bucket,
    in the user's state folder, one file per bucket and prefix."""
    if isinstance(dest, S3Location):
        home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        tag = hashlib.sha256(dest.prefix.encode()).hexdigest()[:12]
        return Path(home) / "tfbulk" / f"{dest.bucket}-{tag}.db"
    return dest / STATE_DIR / "state.db"


def s3_work_folder(location: S3Location) -> Path:
    """This host's own folder for an S3 destination (a PostgreSQL worker's segment locks,
    kept beside the default state DB): a bucket has no folder to hold them."""
    return default_state_path(location).with_suffix("")


def resolve_state(state: str | None, dest: Path | S3Location) -> str:
    """`--state` as given, or the default under `--dest`."""
    return state if state else str(default_state_path(dest))


def check_lease(seconds: float) -> float:
    """Heartbeats come a third of a lease apart: a shorter lease would flood the database."""
    if seconds < MIN_LEASE:
        raise BadInput(f"--lease must be at least {MIN_LEASE:g}s (got {seconds:g}s)")
    return seconds


MAX_CONCURRENCY = 1024  # each download holds a socket, a .part and buffers


def check_concurrency(value: int) -> int:
    """`--concurrency` between 1 and MAX_CONCURRENCY: past that a CDN throttles anyway, and
    the file descriptors and memory of 100,000 downloads at once would sink the run."""
    check_positive(value, "--concurrency")
    if value > MAX_CONCURRENCY:
        raise BadInput(f"--concurrency {value} is more than the maximum, {MAX_CONCURRENCY}")
    return value


def check_positive(value: int, what: str) -> int:
    """Counts like `--concurrency` must be at least 1."""
    if value < 1:
        raise BadInput(f"{what} must be at least 1 (got {value})")
    return value


def check_http_version(value: str) -> str:
    """`--http 1.1|2|3` (`1` and `1.1`, `2` and `2.0` are the same)."""
    aliases = {"1": "1.1", "1.1": "1.1", "2": "2", "2.0": "2", "3": "3", "3.0": "3"}
    if value.strip() not in aliases:
        raise BadInput(f"--http {value!r} is not one of {', '.join(HTTP_VERSIONS)}")
    return aliases[value.strip()]


CA_BUNDLE_LIMIT = 16 << 20


def check_ca_bundle(path: Path | None) -> Path | None:
    """A CA bundle must be a readable PEM file of certificates before a run relies on it
    (otherwise every segment would fail the same TLS error, one by one)."""
    if path is None:
        return None
    try:
        with path.open("rb") as handle:
            text = handle.read(CA_BUNDLE_LIMIT)
    except OSError as exc:
        raise BadInput(
            f"--ca-bundle {path}: {exc.strerror or exc}; pass a PEM file of CA certificates"
        ) from None
    if b"-----BEGIN CERTIFICATE-----" not in text:
        raise BadInput(
            f"--ca-bundle {path} holds no PEM certificate (-----BEGIN CERTIFICATE-----); "
            "pass a PEM file of CA certificates"
        )
    return path
