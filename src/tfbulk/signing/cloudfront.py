"""CloudFront canned-policy signed URLs, byte-for-byte what botocore's CloudFrontSigner makes.

Verification lives here too, so the local origin checks signatures with the very same
policy format instead of a second copy of it.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

SIGNATURE_PARAMS = ("Expires", "Signature", "Key-Pair-Id", "Policy")
_TO_CLOUDFRONT = bytes.maketrans(b"+=/", b"-_~")
_FROM_CLOUDFRONT = bytes.maketrans(b"-_~", b"+=/")


def cloudfront_b64encode(data: bytes) -> str:
    """Base64 with CloudFront's URL-safe alphabet (`+=/` become `-_~`)."""
    return base64.b64encode(data).translate(_TO_CLOUDFRONT).decode("ascii")


def cloudfront_b64decode(text: str) -> bytes:
    """Inverse of `cloudfront_b64encode`; raises ValueError on garbage."""
    try:
        return base64.b64decode(text.encode("ascii").translate(_FROM_CLOUDFRONT), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError("signature is not CloudFront base64") from exc


def canned_policy(url: str, expires: int) -> bytes:
    """The canned policy JSON, key order and separators exactly as CloudFront documents it."""
    statement = {"Resource": url, "Condition": {"DateLessThan": {"AWS:EpochTime": expires}}}
    return json.dumps({"Statement": [statement]}, separators=(",", ":")).encode("utf-8")


def sign_canned(url: str, expires: int, key: rsa.RSAPrivateKey, key_pair_id: str) -> str:
    """Append `Expires`, `Signature` and `Key-Pair-Id` to `url` (with `&` if it has a query)."""
    signature = key.sign(canned_policy(url, expires), padding.PKCS1v15(), hashes.SHA1())  # noqa: S303 - CloudFront mandates SHA-1
    separator = "&" if "?" in url else "?"
    return (
        f"{url}{separator}Expires={expires}"
        f"&Signature={cloudfront_b64encode(signature)}&Key-Pair-Id={key_pair_id}"
    )


@dataclass(frozen=True)
class CloudFrontSigner:
    """Signs each URL at the moment of the request, valid for `lifetime` seconds from then."""

    key: rsa.RSAPrivateKey
    key_pair_id: str
    lifetime: float

    def sign(self, url: str, now: float) -> str:
        return sign_canned(url, int(now + self.lifetime), self.key, self.key_pair_id)


def split_signed_url(signed_url: str) -> tuple[str, dict[str, str]]:
    """The resource URL as it was signed, and the signature parameters taken out of it."""
    base, _, query = signed_url.partition("?")
    kept: list[str] = []
    params: dict[str, str] = {}
    for pair in query.split("&") if query else []:
        name, _, value = pair.partition("=")
        if name in SIGNATURE_PARAMS:
            params[name] = value
        else:
            kept.append(pair)
    resource = f"{base}?{'&'.join(kept)}" if kept else base
    return resource, params


def verify_canned(
    signed_url: str, public_keys: dict[str, rsa.RSAPublicKey], now: float
) -> str | None:
    """Check a signed URL as CloudFront would; None if valid, else the reason it is refused."""
    resource, params = split_signed_url(signed_url)
    missing = [name for name in ("Expires", "Signature", "Key-Pair-Id") if name not in params]
    if "Policy" in params:
        return "custom policies are not supported by this origin"
    if missing:
        return f"missing {', '.join(missing)}"
    key = public_keys.get(params["Key-Pair-Id"])
    if key is None:
        return "unknown Key-Pair-Id"
    if not params["Expires"].isdigit():
        return "malformed Expires"
    expires = int(params["Expires"])
    if expires <= now:
        return "signature expired"
    try:
        signature = cloudfront_b64decode(params["Signature"])
        key.verify(signature, canned_policy(resource, expires), padding.PKCS1v15(), hashes.SHA1())  # noqa: S303
    except (ValueError, InvalidSignature):
        return "signature does not match"
    return None
