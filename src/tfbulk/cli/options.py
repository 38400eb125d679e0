"""Options shared by several commands, and the builders that turn flags into settings
(each checked once, each error one line naming the flag and the fix)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tfbulk.errors import BadInput
from tfbulk.settings import (
    CANNED_SHA1,
    DEFAULT_HOOK_TIMEOUT,
    DEFAULT_KEY_TEMPLATE,
    DEFAULT_MIN_FREE_SPACE,
    DEFAULT_PART_SIZE,
    DEFAULT_REGION,
    DEFAULT_URL_TEMPLATE,
    SIGNERS,
    Limits,
    Network,
    Observing,
    PolicySettings,
    RunSettings,
    S3Dest,
    S3Location,
    Scope,
    SignerSettings,
    check_ca_bundle,
    check_http_version,
    check_listen_addr,
    check_part_size,
    check_ping_url,
    check_positive,
    check_rps,
    is_s3,
    parse_bwlimit,
    parse_duration,
    parse_size,
    resolve_state,
)

if TYPE_CHECKING:
    from tfbulk.state import Store

from tfbulk.cli.output import print_warnings

# The contract's `TFBULK_<FLAG>` name first; the older one keeps working.
PRIVATE_KEY_ENV = ["TFBULK_PRIVATE_KEY", "TFBULK_PRIVATE_KEY_FILE"]

SnapshotPath = Annotated[
    Path,
    typer.Option(
        "--snapshot", metavar="PATH", envvar="TFBULK_SNAPSHOT", help="Catalogue snapshot (SQLite)."
    ),
]
UrlTemplate = Annotated[
    str | None,
    typer.Option(
        "--url-template",
        metavar="TEMPLATE",
        envvar="TFBULK_URL_TEMPLATE",
        help=f"URL of a segment (default {DEFAULT_URL_TEMPLATE}; not with --signer s3).",
        show_default=False,
    ),
]
PathTemplate = Annotated[
    str,
    typer.Option(
        "--path-template",
        metavar="TEMPLATE",
        envvar="TFBULK_PATH_TEMPLATE",
        help="File path under --dest.",
    ),
]

Dest = Annotated[
    str,
    typer.Option(
        "--dest",
        metavar="DIR|s3://BUCKET/PREFIX",
        envvar="TFBULK_DEST",
        help="Download folder, or s3://BUCKET/PREFIX for an S3-compatible store.",
        show_default=True,
    ),
]
DestEndpointUrl = Annotated[
    str | None,
    typer.Option(
        "--dest-endpoint-url",
        metavar="URL",
        envvar="TFBULK_DEST_ENDPOINT_URL",
        help="S3-compatible store for --dest s3://BUCKET/PREFIX, addressed path-style.",
    ),
]
DestRegion = Annotated[
    str,
    typer.Option(
        "--dest-region",
        metavar="REGION",
        envvar="TFBULK_DEST_REGION",
        help="Region of --dest s3://BUCKET/PREFIX.",
    ),
]
DestProfile = Annotated[
    str | None,
    typer.Option(
        "--dest-profile",
        metavar="NAME",
        envvar="TFBULK_DEST_PROFILE",
        help="AWS profile for an s3:// --dest, instead of AWS_* keys and AWS_PROFILE.",
    ),
]
DestPartSize = Annotated[
    str,
    typer.Option(
        "--dest-part-size",
        metavar="SIZE",
        envvar="TFBULK_DEST_PART_SIZE",
        help="Multipart part size for --dest s3://BUCKET/PREFIX (at least 5M).",
    ),
]
State = Annotated[
    str | None,
    typer.Option(
        "--state",
        metavar="PATH|URL",
        envvar="TFBULK_STATE",
        help="State DB (default DEST/.tfbulk/state.db).",
        show_default=False,
    ),
]
Courses = Annotated[
    list[int] | None,
    typer.Option(
        "--course", metavar="ID", envvar="TFBULK_COURSE", help="Only this course (repeatable)."
    ),
]
LimitCourses = Annotated[
    int | None,
    typer.Option(
        "--limit-courses",
        metavar="N",
        envvar="TFBULK_LIMIT_COURSES",
        help="Only the first N courses.",
    ),
]
Segments = Annotated[
    list[int] | None,
    typer.Option(
        "--segment", metavar="ID", envvar="TFBULK_SEGMENT", help="Only this segment (repeatable)."
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
KeyPairId = Annotated[
    str | None,
    typer.Option(
        "--key-pair-id", metavar="ID", envvar="TFBULK_KEY_PAIR_ID", help="CloudFront public key ID."
    ),
]
PrivateKey = Annotated[
    Path | None,
    typer.Option(
        "--private-key",
        metavar="PATH",
        envvar=PRIVATE_KEY_ENV,
        help="PEM private key file: RSA (2048 bits or more) or ECDSA P-256.",
    ),
]
HashAlgorithm = Annotated[
    str | None,
    typer.Option(
        "--hash-algorithm",
        metavar="SHA1|SHA256",
        envvar="TFBULK_HASH_ALGORITHM",
        help="CloudFront signature hash: SHA1 (default) or SHA256.",
        show_default=False,
    ),
]
PolicyResource = Annotated[
    str | None,
    typer.Option(
        "--policy-resource",
        metavar="PATTERN",
        envvar="TFBULK_POLICY_RESOURCE",
        help="Custom policy for every URL matching this pattern (* and ? wildcards).",
    ),
]
DateGreaterThan = Annotated[
    str | None,
    typer.Option(
        "--date-greater-than",
        metavar="TIME",
        envvar="TFBULK_DATE_GREATER_THAN",
        help="Custom policy: not valid before this time (Unix seconds or ISO-8601).",
    ),
]
IpAddress = Annotated[
    str | None,
    typer.Option(
        "--ip-address",
        metavar="CIDR",
        envvar="TFBULK_IP_ADDRESS",
        help="Custom policy: only for clients in this range (CIDR).",
    ),
]
Expires = Annotated[
    str,
    typer.Option(
        "--expires",
        metavar="DURATION",
        envvar="TFBULK_EXPIRES",
        help="Lifetime of each signature: 90s, 30m, 2h.",
    ),
]
SignerKind = Annotated[
    str,
    typer.Option(
        "--signer",
        metavar="cloudfront|s3|none",
        envvar="TFBULK_SIGNER",
        help="cloudfront, s3 or none.",
    ),
]
Bucket = Annotated[
    str | None,
    typer.Option(
        "--bucket", metavar="NAME", envvar="TFBULK_BUCKET", help="S3 bucket (--signer s3)."
    ),
]
Region = Annotated[
    str,
    typer.Option(
        "--region", metavar="REGION", envvar="TFBULK_REGION", help="S3 region (--signer s3)."
    ),
]
EndpointUrl = Annotated[
    str | None,
    typer.Option(
        "--endpoint-url",
        metavar="URL",
        envvar="TFBULK_ENDPOINT_URL",
        help="S3-compatible store, addressed path-style (--signer s3).",
    ),
]
KeyTemplate = Annotated[
    str,
    typer.Option(
        "--key-template",
        metavar="TEMPLATE",
        envvar="TFBULK_KEY_TEMPLATE",
        help="S3 object key of a segment (--signer s3).",
    ),
]
Profile = Annotated[
    str | None,
    typer.Option(
        "--profile",
        metavar="NAME",
        envvar="TFBULK_PROFILE",
        help="AWS profile (--signer s3), used instead of AWS_* keys and AWS_PROFILE.",
    ),
]


HttpVersion = Annotated[
    str,
    typer.Option(
        "--http",
        metavar="1.1|2|3",
        envvar="TFBULK_HTTP",
        help="HTTP version: 1.1, 2 (HTTP/2 over TLS where the server offers it) or 3.",
    ),
]
CaBundle = Annotated[
    Path | None,
    typer.Option(
        "--ca-bundle",
        metavar="PATH",
        envvar="TFBULK_CA_BUNDLE",
        help="PEM file of CA certificates to trust (private CAs, TLS-inspecting proxies).",
    ),
]
MaxFileSize = Annotated[
    str,
    typer.Option(
        "--max-file-size",
        metavar="SIZE",
        envvar="TFBULK_MAX_FILE_SIZE",
        help="A body longer than this fails its segment (e.g. 64G, 500M).",
    ),
]

BwLimit = Annotated[
    str,
    typer.Option(
        "--bwlimit",
        metavar="RATE|TIMETABLE",
        envvar="TFBULK_BWLIMIT",
        help='Total download rate: 10M, 512K or off; or a timetable "08:00,512K 19:00,off".',
    ),
]
MaxRps = Annotated[
    float | None,
    typer.Option(
        "--max-rps",
        metavar="N",
        envvar="TFBULK_MAX_RPS",
        help="Most requests started per second (retries too).",
    ),
]
MaxTransfer = Annotated[
    str | None,
    typer.Option(
        "--max-transfer",
        metavar="SIZE",
        envvar="TFBULK_MAX_TRANSFER",
        help="After this many bytes (e.g. 50G), start nothing new; exit 75.",
    ),
]
MinFreeSpace = Annotated[
    str,
    typer.Option(
        "--min-free-space",
        metavar="SIZE",
        envvar="TFBULK_MIN_FREE_SPACE",
        help="Never start a download that would leave less free on --dest (0: no reserve).",
    ),
]


def limit_settings(
    bwlimit: str = "off",
    max_rps: float | None = None,
    max_transfer: str | None = None,
    min_free_space: str = DEFAULT_MIN_FREE_SPACE,
) -> Limits:
    """The operator's limits, each checked with its flag's name."""
    return Limits(
        bwlimit=parse_bwlimit(bwlimit),
        max_rps=check_rps(max_rps) if max_rps is not None else None,
        max_transfer=check_positive(parse_size(max_transfer, "--max-transfer"), "--max-transfer")
        if max_transfer is not None
        else None,
        min_free_space=parse_size(min_free_space, "--min-free-space"),
    )


def network_settings(http: str, ca_bundle: Path | None, max_file_size: str) -> Network:
    return Network(
        http_version=check_http_version(http),
        ca_bundle=check_ca_bundle(ca_bundle),
        max_file_size=check_positive(
            parse_size(max_file_size, "--max-file-size"), "--max-file-size"
        ),
    )


LONG_EXPIRES = 24 * 3600.0
S3_MAX_EXPIRES = 7 * 86400.0  # refused by the S3 signer anyway: no warning before the error


def signer_settings(
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
        print_warnings(
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


def scope(courses: list[int] | None, segments: list[int] | None, limit: int | None) -> Scope:
    """What `run` and `doctor` cover: the same flags, the same checks."""
    return Scope(
        courses=frozenset(courses or ()),
        segments=frozenset(segments or ()),
        limit_courses=check_positive(limit, "--limit-courses") if limit is not None else None,
    )


def dest_location(dest: str) -> Path | S3Location:
    """--dest as a folder or a bucket and prefix (checked)."""
    return S3Location.parse(dest) if is_s3(dest) else Path(dest)


def open_existing(state: str | None, dest: str) -> Store:
    """The state DB of a finished or running run, for the commands that only read it."""
    from tfbulk.state import open_store

    return open_store(resolve_state(state, dest_location(dest)), create=False, lock=False)


def s3_dest(
    dest: str,
    endpoint_url: str | None,
    region: str,
    profile: str | None,
    part_size: str = DEFAULT_PART_SIZE,
) -> S3Dest | None:
    """The S3 destination the --dest-* flags describe; None for a local --dest."""
    if not is_s3(dest):
        return None
    from tfbulk.credentials import check_region

    if endpoint_url is not None and not endpoint_url.startswith(("http://", "https://")):
        raise BadInput(f"--dest-endpoint-url {endpoint_url!r} is not an http(s) URL")
    return S3Dest(
        S3Location.parse(dest),
        endpoint_url=endpoint_url,
        region=check_region(region, "--dest-region"),
        profile=profile,
        part_size=check_part_size(parse_size(part_size, "--dest-part-size")),
    )


def run_settings(
    snapshot: Path,
    dest: str,
    state: str | None,
    templates: tuple[str | None, str],
    *,
    signer: SignerSettings,
    **rest: Any,
) -> RunSettings:
    """What `run` and `doctor` both need: input, output, templates; the rest is theirs."""
    url_template, path_template = templates
    if url_template is not None and signer.kind == "s3":
        raise BadInput(
            "--url-template (or TFBULK_URL_TEMPLATE) does not apply to --signer s3, whose "
            "URLs come from --bucket, --key-template and --endpoint-url; drop one of them"
        )
    return RunSettings(
        snapshot=snapshot,
        dest=Path(dest),
        state=resolve_state(state, dest_location(dest)),
        url_template=url_template or DEFAULT_URL_TEMPLATE,
        path_template=path_template,
        signer=signer,
        **rest,
    )


MetricsFile = Annotated[
    Path | None,
    typer.Option(
        "--metrics-file",
        metavar="PATH",
        envvar="TFBULK_METRICS_FILE",
        help="Prometheus metrics, rewritten every 5 s and at the end (textfile collector).",
    ),
]
MetricsAddr = Annotated[
    str | None,
    typer.Option(
        "--metrics-addr",
        metavar="HOST:PORT",
        envvar="TFBULK_METRICS_ADDR",
        help="Serve Prometheus /metrics at HOST:PORT while the run lasts (host 127.0.0.1).",
    ),
]
OnComplete = Annotated[
    str | None,
    typer.Option(
        "--on-complete",
        metavar="CMD",
        envvar="TFBULK_ON_COMPLETE",
        help="Shell command after each downloaded file (TFBULK_PATH, TFBULK_SEGMENT_ID, ...).",
    ),
]
OnFinish = Annotated[
    str | None,
    typer.Option(
        "--on-finish",
        metavar="CMD",
        envvar="TFBULK_ON_FINISH",
        help="Shell command at the end (TFBULK_EXIT_CODE, TFBULK_SUMMARY).",
    ),
]
HookConcurrency = Annotated[
    int,
    typer.Option(
        "--hook-concurrency",
        metavar="N",
        envvar="TFBULK_HOOK_CONCURRENCY",
        help="Most --on-complete commands running at once.",
    ),
]
HookTimeout = Annotated[
    str,
    typer.Option(
        "--hook-timeout",
        metavar="DURATION",
        envvar="TFBULK_HOOK_TIMEOUT",
        help="A hook running longer is killed (and reported).",
    ),
]
PingUrl = Annotated[
    str | None,
    typer.Option(
        "--ping-url",
        metavar="URL",
        envvar="TFBULK_PING_URL",
        help="Health-check URL: GET URL/start at the start, URL/<exit code> at the end.",
    ),
]


def observing_settings(
    metrics_file: Path | None,
    metrics_addr: str | None,
    hooks: tuple[str | None, str | None],
    hook_concurrency: int,
    hook_timeout: str = DEFAULT_HOOK_TIMEOUT,
    ping_url: str | None = None,
) -> Observing:
    on_complete, on_finish = hooks
    return Observing(
        metrics_file=metrics_file,
        metrics_addr=check_listen_addr(metrics_addr, "--metrics-addr") if metrics_addr else None,
        on_complete=on_complete or None,
        on_finish=on_finish or None,
        hook_concurrency=check_positive(hook_concurrency, "--hook-concurrency"),
        hook_timeout=parse_duration(hook_timeout, "--hook-timeout"),
        ping_url=check_ping_url(ping_url) if ping_url else None,
    )
