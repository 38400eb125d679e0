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
from urllib.parse import urlsplit

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
    limits: str = "{}"  # this worker's Limits as JSON, published for `status`


DEFAULT_MIN_FREE_SPACE = "256M"
_RATE = re.compile(r"(\d+(?:\.\d+)?)([bkmg]?)")
_RATE_UNITS = {"b": 1, "": 1024, "k": 1024, "m": 1024**2, "g": 1024**3}
_ENTRY = re.compile(r"(\d{1,2}):(\d{2}),(\S+)")
DAY = 24 * 60


def minute_of_day() -> float:
    """Minutes past local midnight, as a timetable's HH:MM are read (like rclone's)."""
    now = datetime.now()
    return now.hour * 60 + now.minute + now.second / 60


@dataclass(frozen=True)
class Timetable:
    """`--bwlimit`: bytes per second (None: no limit) from each minute of the day on.

    The entry whose time passed last applies; before the first entry of a day, the last
    entry of the day before still does (rclone's rule). A plain rate is one entry at 00:00.
    """

    entries: tuple[tuple[int, float | None], ...]

    def rate_at(self, minute: float) -> float | None:
        """The limit at `minute` past local midnight."""
        current = self.entries[-1][1]
        for start, rate in self.entries:
            if start <= minute:
                current = rate
        return current

    def next_change(self, minute: float) -> float:
        """Minutes from `minute` until the next entry starts (a day with one entry)."""
        later = [start for start, _ in self.entries if start > minute]
        following = later[0] if later else self.entries[0][0] + DAY
        return following - minute

    @property
    def limited(self) -> bool:
        return any(rate is not None for _, rate in self.entries)

    def seconds_for(self, size: float, minute: float, unlimited_rate: float) -> float | None:
        """How long `size` bytes take from `minute` on, at each entry's limit (at
        `unlimited_rate` while it is off); None if that rate is unknown when it counts."""
        seconds = 0.0
        for _ in range(len(self.entries) * 8):  # a week of entries at most
            rate = self.rate_at(minute % DAY)
            if rate is None:
                rate = unlimited_rate if unlimited_rate > 0 else None
            if rate is None:
                return None
            span = self.next_change(minute % DAY) * 60
            if size <= rate * span:
                return seconds + size / rate
            size -= rate * span
            seconds += span
            minute += span / 60
        return seconds + size / rate if rate else None

    def describe(self) -> str:
        """As the user wrote it, normalised: `1 MiB/s`, or `08:00 512 KiB/s, 19:00 off`."""
        if len(self.entries) == 1:
            return _shown_rate(self.entries[0][1])
        return ", ".join(f"{m // 60:02d}:{m % 60:02d} {_shown_rate(r)}" for m, r in self.entries)


def _shown_rate(rate: float | None) -> str:
    return "off" if rate is None else f"{binary_size(rate)}/s"


def binary_size(size: float) -> str:
    """`512 KiB`, `1.5 GiB`: sizes in the binary units the flags take."""
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= factor:
            return f"{size / factor:.4g} {unit}"
    return f"{size:g} B"


def parse_rate(text: str, what: str = "--bwlimit") -> float | None:
    """Bytes per second in rclone's form: `off`, or a number with B, K, M or G (binary;
    a bare number is KiB/s)."""
    raw = text.strip().lower()
    if raw == "off":
        return None
    match = _RATE.fullmatch(raw.removesuffix("/s").removesuffix("i").removesuffix("ib"))
    if not match:
        raise BadInput(f"{what}: {text!r} is not a rate; use e.g. 512K, 10M, 1G or off")
    rate = float(match.group(1)) * _RATE_UNITS[match.group(2)]
    if rate <= 0:
        raise BadInput(f"{what}: {text!r} must be more than zero (or off for no limit)")
    return rate


def parse_bwlimit(text: str) -> Timetable:
    """A rate, or a timetable of space-separated `HH:MM,RATE` entries."""
    parts = text.split()
    if len(parts) == 1 and "," not in parts[0]:
        return Timetable(((0, parse_rate(parts[0])),))
    entries: dict[int, float | None] = {}
    for part in parts:
        match = _ENTRY.fullmatch(part)
        if not match or int(match.group(1)) > 23 or int(match.group(2)) > 59:
            raise BadInput(
                f"--bwlimit: {part!r} is not a timetable entry; use HH:MM,RATE entries "
                'separated by spaces, e.g. "08:00,512K 19:00,10M 23:00,off"'
            )
        minute = int(match.group(1)) * 60 + int(match.group(2))
        if minute in entries:
            raise BadInput(f"--bwlimit: {match.group(1)}:{match.group(2)} is given twice")
        entries[minute] = parse_rate(match.group(3), f"--bwlimit {part}")
    if not entries:
        raise BadInput("--bwlimit is empty; use a rate such as 10M, or off")
    return Timetable(tuple(sorted(entries.items())))


NO_BWLIMIT = Timetable(((0, None),))


@dataclass(frozen=True)
class Limits:
    """What an operator allows a run (per worker on a shared queue): bandwidth over the
    day, requests started per second, bytes received, free space left on --dest."""

    bwlimit: Timetable = NO_BWLIMIT
    max_rps: float | None = None
    max_transfer: int | None = None
    min_free_space: int = 256 << 20

    def describe(self) -> str:
        """The limits in force, for the views: `bwlimit 1 MiB/s · min-free-space 256 MiB`."""
        return describe_limits(self.as_json())

    def as_json(self) -> dict[str, object]:
        return {
            "bwlimit": self.bwlimit.describe(),
            "max_rps": self.max_rps,
            "max_transfer": self.max_transfer,
            "min_free_space": self.min_free_space,
        }


def describe_limits(data: dict[str, object]) -> str:
    """`Limits.as_json()` (this run's, or a worker's from the shared queue) in one line."""
    parts = [] if data.get("bwlimit", "off") == "off" else [f"bwlimit {data['bwlimit']}"]
    if isinstance(rps := data.get("max_rps"), int | float):
        parts.append(f"max-rps {rps:g}")
    if isinstance(quota := data.get("max_transfer"), int):
        parts.append(f"max-transfer {binary_size(quota)}")
    if isinstance(reserve := data.get("min_free_space"), int):
        parts.append(f"min-free-space {binary_size(reserve)}")
    return " · ".join(parts) or "none"


def check_rps(value: float) -> float:
    """`--max-rps` above zero: a zero rate would never start anything."""
    if not math.isfinite(value) or value <= 0:
        raise BadInput(f"--max-rps must be more than zero (got {value:g}); omit it for no limit")
    return value


DEFAULT_METRICS_HOST = "127.0.0.1"
DEFAULT_HOOK_CONCURRENCY = 4
DEFAULT_HOOK_TIMEOUT = "10m"


@dataclass(frozen=True)
class Observing:
    """What watches a run besides its display: metrics, hooks, a health-check ping."""

    metrics_file: Path | None = None
    metrics_addr: tuple[str, int] | None = None
    on_complete: str | None = None
    on_finish: str | None = None
    hook_concurrency: int = DEFAULT_HOOK_CONCURRENCY
    hook_timeout: float = 600.0
    ping_url: str | None = None

    @property
    def metrics(self) -> bool:
        return self.metrics_file is not None or self.metrics_addr is not None


def check_listen_addr(text: str, what: str) -> tuple[str, int]:
    """`HOST:PORT`, `:PORT` or `PORT` (host 127.0.0.1); `[::1]:PORT` for IPv6."""
    host, sep, port = text.strip().rpartition(":")
    host = host.strip("[]") if sep else ""
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise BadInput(f"{what} {text!r} is not HOST:PORT; use e.g. 127.0.0.1:9464")
    return host or DEFAULT_METRICS_HOST, int(port)


def check_ping_url(url: str) -> str:
    """An http(s) URL with a host; a trailing slash is dropped."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadInput(
            f"--ping-url {parts.scheme or 'without a scheme'}: must be an http:// or https:// "
            "URL, e.g. https://hc-ping.com/<uuid>"
        )
    return url.strip().rstrip("/")


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
    limits: Limits = field(default_factory=Limits)
    dry_run: bool = False
    s3: S3Dest | None = None  # --dest s3://…: then `dest` is unused

    @property
    def destination(self) -> Path | S3Location:
        """What --dest names, as given: the folder, or the bucket and prefix (as a Path,
        `dest` would fold s3:// into s3:/)."""
        return self.s3.location if self.s3 else self.dest


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
