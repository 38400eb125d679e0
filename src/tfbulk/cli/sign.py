"""`tfbulk sign`: print a URL signed the way a run signs each request."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from tfbulk.cli.app import examples
from tfbulk.cli.options import (
    Bucket,
    DateGreaterThan,
    EndpointUrl,
    Expires,
    HashAlgorithm,
    IpAddress,
    KeyPairId,
    PolicyResource,
    PrivateKey,
    Profile,
    Region,
    SignerKind,
    signer_settings,
)
from tfbulk.settings import (
    DEFAULT_EXPIRES,
    DEFAULT_REGION,
    policy_settings,
)

EXAMPLES = examples(
    "export TFBULK_KEY_PAIR_ID=K2JCJMDEHXQW5F TFBULK_PRIVATE_KEY=cf.pem",
    "URL=https://d2kum0w8xvhbpf.cloudfront.net/truefire/1042.mp4",
    'tfbulk sign "$URL"',
    'curl -I "$(tfbulk sign "$URL")"               # what does the CDN say?',
    "tfbulk sign --signer s3 --bucket videos s3://videos/blues101/lesson_01.mp4",
)


def sign_command(
    url: Annotated[
        str,
        typer.Argument(
            metavar="URL", help="The URL to sign; for --signer s3 also KEY or s3://BUCKET/KEY."
        ),
    ],
    signer: SignerKind = "cloudfront",
    key_pair_id: KeyPairId = None,
    private_key: PrivateKey = None,
    expires: Expires = DEFAULT_EXPIRES,
    expires_at: Annotated[
        int | None,
        typer.Option(
            "--expires-at",
            metavar="UNIX_TIME",
            help="Absolute expiry (Unix time) instead of --expires.",
        ),
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
    from tfbulk.pipeline.urls import sign_target

    settings = signer_settings(
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
