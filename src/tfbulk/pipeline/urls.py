"""What URL a segment has before it is signed: one function per run, built from the settings.

CloudFront and unsigned runs render `--url-template`; S3 runs address the object that
`--key-template` names in `--bucket`. The engine only calls the function and signs what
it returns, so every signer is used the same way, immediately before each attempt.

A signature covers the URL as it goes on the wire, so what is signed is `wire_url(...)`:
httpx's form of the URL (dot segments resolved, unsafe characters escaped), which the
transport then sends byte for byte; a CDN compares the signed resource with the request
line exactly.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from urllib.parse import quote, urlsplit

from tfbulk.errors import BadInput
from tfbulk.pipeline.plan import Segment, Template, render_url
from tfbulk.settings import SignerSettings
from tfbulk.signing.policy import ResourcePattern, sent_as_is
from tfbulk.signing.s3 import object_url

SegmentUrl = Callable[[Segment], str]

_BUCKET = re.compile(r"[a-zA-Z0-9._-]{1,255}")  # what botocore accepts as a bucket name


def wire_url(url: str) -> str:
    """`url` as it goes on the wire: what httpx keeps of it (the transport sends that
    verbatim). Escapes keep their case; `a/./b` and `a/x/../b` become `a/b`."""
    import httpx  # only runs need it; `status` and friends never load httpx

    return str(httpx.URL(url))


def segment_urls(url_template: str, signer: SignerSettings) -> SegmentUrl:
    """The unsigned URL of each segment; templates and S3 flags are checked here, once."""
    if signer.kind != "s3":
        template = Template(url_template, "--url-template")
        return lambda segment: wire_url(render_url(template, segment))
    keys = Template(signer.key_template, "--key-template")
    bucket = check_bucket(signer.bucket)
    endpoint = check_endpoint(signer.endpoint_url)

    def url(segment: Segment) -> str:
        return object_url(bucket, keys.render(segment.values()), signer.region, endpoint)

    return url


def sign_target(text: str, signer: SignerSettings) -> str:
    """The URL `tfbulk sign` signs: `text` itself, or for S3 also an object key (in
    `--bucket`) or `s3://bucket/key`, addressed the way a run addresses it. A CloudFront URL
    must be sent as written and match `--policy-resource`, or its signature is useless."""
    if signer.kind == "cloudfront":
        check_sent_as_is(text)
        check_covered(signer.policy.resource, [("the URL", text)], "sign a URL it matches")
    if signer.kind != "s3" or text.startswith(("http://", "https://")):
        return text
    bucket, key = signer.bucket, text
    if text.startswith("s3://"):
        bucket, _, key = text.removeprefix("s3://").partition("/")
    if not key:
        raise BadInput(f"{text!r} names no object key; give KEY, s3://BUCKET/KEY or a URL")
    return object_url(check_bucket(bucket), key, signer.region, check_endpoint(signer.endpoint_url))


def check_sent_as_is(url: str) -> str:
    """Refuse a URL that would not go on the wire as written, showing the form to sign."""
    if sent_as_is(url):
        return url
    encoded = quote(url, safe="!$%&'()*+,/:;=?@[]~")
    if "#" in url:
        raise BadInput(
            "the URL has a fragment ('#...'), which is never sent, so a signature over it "
            f"would not match the request; drop it, or sign the '#' percent-encoded: {encoded}"
        )
    raise BadInput(
        "the URL has a space or a non-ASCII character, which is sent percent-encoded, so a "
        f"signature over it would not match the request; sign this instead: {encoded}"
    )


def check_covered(
    resource: str | None, urls: Iterable[tuple[str, str]], fix: str = "fix --url-template"
) -> None:
    """With `--policy-resource`, every URL must match it: one that does not would be refused
    on every attempt, so it is exit 2 before the first request. `urls`: (what, URL) pairs."""
    if resource is None:
        return
    pattern = ResourcePattern(resource)
    for what, url in urls:
        if not pattern.matches(url):
            raise BadInput(
                f"{what} is {url}, which --policy-resource {resource} does not match; "
                f"widen the pattern or {fix}"
            )


def check_bucket(bucket: str | None) -> str:
    if not bucket:
        raise BadInput("--bucket (or TFBULK_BUCKET) is required with --signer s3")
    if not _BUCKET.fullmatch(bucket):
        raise BadInput(
            f"--bucket {bucket!r} is not a bucket name; use letters, digits, '.', '-' and '_'"
        )
    return bucket


def check_endpoint(endpoint_url: str | None) -> str | None:
    """An S3-compatible store's base URL: scheme and host, maybe a path, nothing else."""
    if endpoint_url is None:
        return None
    parts = urlsplit(endpoint_url)
    try:
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        raise BadInput(f"--endpoint-url {endpoint_url!r} has a port that is not a number") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise BadInput(
            f"--endpoint-url {endpoint_url!r} is not an http(s) base URL; "
            "use e.g. http://127.0.0.1:9000"
        )
    return endpoint_url
