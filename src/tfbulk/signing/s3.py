"""S3 SigV4 presigned URLs, byte-for-byte what botocore's `generate_presigned_url` makes.

Pure functions of (URL, credentials, region, time): the clock is read by the caller, so a
test can pin it and compare with botocore. Verification lives here too, so the local origin
checks presigned URLs with the very same canonical request instead of a second copy of it.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import re
import time
from dataclasses import dataclass, field
from urllib.parse import SplitResult, parse_qsl, quote, unquote, urlsplit, urlunsplit

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
MAX_EXPIRES = 7 * 24 * 3600  # SigV4 query signatures are valid for at most a week
SERVICE = "s3"
AMZ_DATE = "%Y%m%dT%H%M%SZ"
_QUERY_SAFE = "-_.~"  # RFC 3986 unreserved: everything else is percent-encoded
_DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST_LABEL = re.compile(r"(?!-)[a-z\d-]{3,63}(?<!-)")
_IPV4 = re.compile(r"(?:\d{1,3}\.){3}\d{1,3}")


@dataclass(frozen=True)
class AwsCredentials:
    """Static AWS credentials; the secret and the token never show in a repr."""

    access_key: str
    secret_key: str = field(repr=False)
    token: str | None = field(default=None, repr=False)


def object_url(bucket: str, key: str, region: str, endpoint_url: str | None = None) -> str:
    """The URL botocore addresses the object at (before signing).

    With `endpoint_url` (S3-compatible stores): path style under it. Without: the regional
    virtual-hosted name, as botocore's `addressing_style='virtual'` gives it (for us-east-1
    that is also its default, `bucket.s3.amazonaws.com`), or path style on the regional
    endpoint for a bucket name that cannot be a host name (dots, capitals).
    The key is percent-encoded once, `/` kept, as S3 expects it.
    """
    path = quote(key, safe="/~")
    if endpoint_url is not None:
        return f"{endpoint_url.rstrip('/')}/{quote(bucket, safe=_QUERY_SAFE)}/{path}"
    domain = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    service_host = "s3.amazonaws.com" if region == "us-east-1" else f"s3.{region}.{domain}"
    if is_virtual_hostable(bucket):
        return f"https://{bucket}.{service_host}/{path}"
    return f"https://{service_host}/{quote(bucket, safe=_QUERY_SAFE)}/{path}"


def is_virtual_hostable(bucket: str) -> bool:
    """botocore's rule: one lower-case DNS label of 3 to 63 characters, not an IP address."""
    return _HOST_LABEL.fullmatch(bucket) is not None and _IPV4.fullmatch(bucket) is None


def presign(
    method: str, url: str, credentials: AwsCredentials, region: str, now: float, expires: int
) -> str:
    """`url` with SigV4 query authentication valid for `expires` seconds from `now`.

    Parameters come in botocore's order (any query the URL had first, then Algorithm,
    Credential, Date, Expires, SignedHeaders, Security-Token, and Signature last).
    """
    parts = urlsplit(url)
    amz_date = time.strftime(AMZ_DATE, time.gmtime(now))
    auth = [
        ("X-Amz-Algorithm", ALGORITHM),
        ("X-Amz-Credential", f"{credentials.access_key}/{_scope(amz_date, region)}"),
        ("X-Amz-Date", amz_date),
        ("X-Amz-Expires", str(expires)),
        ("X-Amz-SignedHeaders", "host"),
    ]
    if credentials.token is not None:
        auth.append(("X-Amz-Security-Token", credentials.token))
    existing: dict[str, str] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        existing.setdefault(name, value)
    query = "&".join(_encode(name, value) for name, value in [*existing.items(), *auth])
    canonical = canonical_request(method, parts.path, query, _host(parts))
    signature = _signature(credentials.secret_key, amz_date, region, canonical)
    signed = urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))
    return f"{signed}&X-Amz-Signature={signature}"


def canonical_request(method: str, path: str, query: str, host: str) -> str:
    """SigV4's canonical request for a presigned URL: the path as sent (S3 does not
    normalise it), the encoded query pairs sorted, `host` the only signed header."""
    pairs = sorted(pair.partition("=")[::2] for pair in query.split("&") if pair)
    canonical_query = "&".join(f"{name}={value}" for name, value in pairs)
    return "\n".join(
        [method.upper(), path or "/", canonical_query, f"host:{host}\n", "host", UNSIGNED_PAYLOAD]
    )


def sign_request(
    method: str,
    url: str,
    headers: dict[str, str],
    credentials: AwsCredentials,
    region: str,
    now: float,
) -> dict[str, str]:
    """The headers that authenticate a request with SigV4 (the `Authorization` header):
    `headers` (lower-case names) are all signed, with `host`; the payload goes unsigned
    (`UNSIGNED-PAYLOAD`: its integrity is the Content-MD5 the caller puts in `headers`),
    as botocore's S3 signer does over HTTPS."""
    parts = urlsplit(url)
    amz_date = time.strftime(AMZ_DATE, time.gmtime(now))
    signed = {
        **{name.lower(): " ".join(value.split()) for name, value in headers.items()},
        "host": _host(parts),
        "x-amz-content-sha256": UNSIGNED_PAYLOAD,
        "x-amz-date": amz_date,
    }
    if credentials.token is not None:
        signed["x-amz-security-token"] = credentials.token
    names = sorted(signed)
    pairs = sorted(pair.partition("=")[::2] for pair in parts.query.split("&") if pair)
    canonical = "\n".join(
        [
            method.upper(),
            parts.path or "/",
            "&".join(f"{name}={value}" for name, value in pairs),
            "".join(f"{name}:{signed[name]}\n" for name in names),
            ";".join(names),
            UNSIGNED_PAYLOAD,
        ]
    )
    signature = _signature(credentials.secret_key, amz_date, region, canonical)
    authorization = (
        f"{ALGORITHM} Credential={credentials.access_key}/{_scope(amz_date, region)}, "
        f"SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    added = {name: signed[name] for name in signed if name not in headers and name != "host"}
    return {**added, "authorization": authorization}


def _encode(name: str, value: str) -> str:
    return f"{quote(name, safe=_QUERY_SAFE)}={quote(value, safe=_QUERY_SAFE)}"


def _scope(amz_date: str, region: str) -> str:
    return f"{amz_date[:8]}/{region}/{SERVICE}/aws4_request"


def _host(parts: SplitResult) -> str:
    """The `host` header value botocore signs: lower case, default port left out."""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None and parts.port != _DEFAULT_PORTS.get(parts.scheme):
        host = f"{host}:{parts.port}"
    return host


def _signature(secret_key: str, amz_date: str, region: str, canonical: str) -> str:
    to_sign = "\n".join(
        [
            ALGORITHM,
            amz_date,
            _scope(amz_date, region),
            hashlib.sha256(canonical.encode("utf-8")).hexdigest(),
        ]
    )
    key = f"AWS4{secret_key}".encode()
    for part in (amz_date[:8], region, SERVICE, "aws4_request"):
        key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class S3Signer:
    """Presigns each GET at the moment of the request, valid for `lifetime` seconds."""

    credentials: AwsCredentials
    region: str
    lifetime: int

    def sign(self, url: str, now: float) -> str:
        return presign("GET", url, self.credentials, self.region, now, self.lifetime)


# -- verification (the local origin) ---------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """Why S3 would refuse the request: the HTTP status and its XML error's Code and Message."""

    code: str
    message: str
    status: int = 403


_REQUIRED = (
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Signature",
    "X-Amz-Date",
    "X-Amz-SignedHeaders",
    "X-Amz-Expires",
)
_MISSING = Refusal(
    "AccessDenied",
    "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, "
    "X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters.",
)
_MISMATCH = Refusal(
    "SignatureDoesNotMatch",
    "The request signature we calculated does not match the signature you provided. "
    "Check your key and signing method.",
)


def _query_error(message: str) -> Refusal:
    return Refusal("AuthorizationQueryParametersError", message, status=400)


def verify_presigned(
    method: str,
    url: str,
    secrets: dict[str, str],
    now: float,
    region: str | None = None,
) -> Refusal | None:
    """Check a presigned URL as S3 would: None if valid, else the refusal S3 would give.

    `secrets` maps access key IDs to secret keys; `region`, if given, must be the one in
    the credential scope. Only `host` may be signed (a URL carries no other header).
    """
    parts = urlsplit(url)
    pairs = [pair.partition("=")[::2] for pair in parts.query.split("&") if pair]
    params = {unquote(name): unquote(value) for name, value in pairs}
    if any(name not in params for name in _REQUIRED):
        return _MISSING
    if params["X-Amz-Algorithm"] != ALGORITHM:
        return _query_error(f'X-Amz-Algorithm only supports "{ALGORITHM}"')
    access_key, _, scope = params["X-Amz-Credential"].partition("/")
    scope_parts = scope.split("/")
    if len(scope_parts) != 4 or scope_parts[2:] != [SERVICE, "aws4_request"]:
        return _query_error("Error parsing the X-Amz-Credential parameter")
    amz_date = params["X-Amz-Date"]
    try:
        signed_at = _parse_amz_date(amz_date)
    except ValueError:
        return _query_error(
            "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\""
        )
    if scope_parts[0] != amz_date[:8]:
        return _query_error("Invalid credential date. Date is not the same as X-Amz-Date.")
    expires = params["X-Amz-Expires"]
    if not expires.isdigit():
        return _query_error("X-Amz-Expires should be a number")
    if int(expires) > MAX_EXPIRES:
        return _query_error(
            f"X-Amz-Expires must be less than a week (in seconds) that is; {MAX_EXPIRES} seconds"
        )
    if params["X-Amz-SignedHeaders"] != "host":
        return _query_error("this origin checks presigned URLs that sign only the host header")
    secret = secrets.get(access_key)
    if secret is None:
        return Refusal(
            "InvalidAccessKeyId",
            "The AWS Access Key Id you provided does not exist in our records.",
        )
    signed_region = scope_parts[1]
    if region is not None and signed_region != region:
        return _query_error(
            f"Error parsing the X-Amz-Credential parameter; the region '{signed_region}' "
            f"is wrong; expecting '{region}'"
        )
    query = "&".join(_encode(n, v) for n, v in params.items() if n != "X-Amz-Signature")
    path = quote(unquote(parts.path), safe="/~")
    canonical = canonical_request(method, path, query, _host(parts))
    expected = _signature(secret, amz_date, signed_region, canonical)
    if not hmac.compare_digest(expected, params["X-Amz-Signature"]):
        return _MISMATCH
    if now > signed_at + int(expires):
        return Refusal("AccessDenied", "Request has expired")
    return None


def _parse_amz_date(text: str) -> float:
    """Seconds since the epoch for an `X-Amz-Date` (UTC); ValueError if malformed."""
    return float(calendar.timegm(time.strptime(text, AMZ_DATE)))
