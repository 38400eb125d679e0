"""Options shared by several commands, and the builders that turn flags into settings
(each checked once, each error one line naming the flag and the fix)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tfbulk.errors import BadInput
from tfbulk.settings import (
    CANNED_SHA1,
    DEFAULT_KEY_TEMPLATE,
    DEFAULT_PART_SIZE,
    DEFAULT_REGION,
    DEFAULT_URL_TEMPLATE,
    SIGNERS,
    Network,
    PolicySettings,
    RunSettings,
    S3Dest,
    S3Location,
    SignerSettings,
    check_ca_bundle,
    check_http_version,
    check_part_size,
    check_positive,
    is_s3,
    parse_duration,
    parse_size,
    resolve_state,
)

if TYPE_CHECKING:
    from tfbulk.state import Store

from tfbulk.cli.output import print_warnings

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
    str,
    typer.Option(
        "--dest",
        envvar="TFBULK_DEST",
        help="Download folder, or s3://BUCKET/PREFIX for an S3-compatible store.",
        show_default=True,
    ),
]
DestEndpointUrl = Annotated[
    str | None,
    typer.Option(
        "--dest-endpoint-url",
        envvar="TFBULK_DEST_ENDPOINT_URL",
        help="S3-compatible store for --dest s3://…, addressed path-style.",
    ),
]
DestRegion = Annotated[
    str,
    typer.Option("--dest-region", envvar="TFBULK_DEST_REGION", help="Region of --dest s3://…."),
]
DestProfile = Annotated[
    str | None,
    typer.Option(
        "--dest-profile",
        envvar="TFBULK_DEST_PROFILE",
        help="AWS profile for --dest s3://…, used instead of AWS_* keys and AWS_PROFILE.",
    ),
]
DestPartSize = Annotated[
    str,
    typer.Option(
        "--dest-part-size",
        envvar="TFBULK_DEST_PART_SIZE",
        help="Multipart part size for --dest s3://… (at least 5M).",
    ),
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
    snapshot: Path | None,
    dest: str,
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
        dest=Path(dest),
        state=resolve_state(state, dest_location(dest)),
        url_template=url_template or DEFAULT_URL_TEMPLATE,
        path_template=path_template,
        signer=signer,
        **rest,
    )
