"""CloudFront signed URLs: canned or custom policy, RSA or ECDSA key, SHA-1 or SHA-256.

With an RSA key and SHA-1 the URLs are byte-for-byte what botocore's CloudFrontSigner makes;
with SHA-256 they carry `Hash-Algorithm=SHA256`, as the AWS CLI and the JavaScript SDK add it.
Verification lives here too, so the local origin checks signatures with the very same
policy format instead of a second copy of it.
"""

from __future__ import annotations

import base64
import binascii
import math
import threading
from dataclasses import dataclass

from cryptography.exceptions import InternalError, InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from tfbulk.signing.policy import (
    HASH_ALGORITHMS,
    NO_CONDITIONS,
    Conditions,
    ResourcePattern,
    Statement,
    canned_policy,
    custom_policy,
    parse_policy,
)

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

SIGNATURE_PARAMS = ("Expires", "Policy", "Signature", "Key-Pair-Id", "Hash-Algorithm")
REFRESH = 1.0  # a shared policy is re-signed once it is this old (seconds)
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"SHA1": hashes.SHA1, "SHA256": hashes.SHA256}
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


# -- signatures ---------------------------------------------------------------------------


def sign_bytes(key: PrivateKey, data: bytes, hash_algorithm: str) -> bytes:
    """RSA PKCS#1 v1.5 or ECDSA (DER-encoded), as the key is; hashed as CloudFront is told."""
    digest = _HASHES[hash_algorithm]()
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), digest)
    return key.sign(data, ec.ECDSA(digest))


def verify_bytes(key: PublicKey, signature: bytes, data: bytes, hash_algorithm: str) -> bool:
    """Whether `signature` is `key`'s over `data`, by the rules of `sign_bytes`."""
    digest = _HASHES[hash_algorithm]()
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), digest)
        else:
            key.verify(signature, data, ec.ECDSA(digest))
    except InvalidSignature:
        return False
    return True


def can_sign(key: PrivateKey, hash_algorithm: str) -> bool:
    """False where this system's crypto policy refuses the hash (SHA-1 under FIPS mode or
    Fedora's DEFAULT policy), so a run fails at the start instead of on every request."""
    try:
        sign_bytes(key, b"tfbulk", hash_algorithm)
    except (UnsupportedAlgorithm, InternalError, ValueError):
        return False
    return True


def _append(url: str, params: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{params}"


def _tail(signature: bytes, key_pair_id: str, hash_algorithm: str) -> str:
    """`Signature` and `Key-Pair-Id` (botocore's order), then `Hash-Algorithm` unless SHA-1."""
    tail = f"Signature={cloudfront_b64encode(signature)}&Key-Pair-Id={key_pair_id}"
    return tail if hash_algorithm == "SHA1" else f"{tail}&Hash-Algorithm={hash_algorithm}"


def _custom_params(
    policy: bytes, key: PrivateKey, key_pair_id: str, hash_algorithm: str = "SHA1"
) -> str:
    signature = sign_bytes(key, policy, hash_algorithm)
    return f"Policy={cloudfront_b64encode(policy)}&{_tail(signature, key_pair_id, hash_algorithm)}"


def sign_canned(
    url: str, expires: int, key: PrivateKey, key_pair_id: str, hash_algorithm: str = "SHA1"
) -> str:
    """Append `Expires`, `Signature` and `Key-Pair-Id` to `url` (with `&` if it has a query)."""
    signature = sign_bytes(key, canned_policy(url, expires), hash_algorithm)
    return _append(url, f"Expires={expires}&{_tail(signature, key_pair_id, hash_algorithm)}")


def sign_custom(
    url: str, policy: bytes, key: PrivateKey, key_pair_id: str, hash_algorithm: str = "SHA1"
) -> str:
    """Append `Policy`, `Signature` and `Key-Pair-Id`: botocore's `generate_presigned_url(url,
    policy=...)`."""
    return _append(url, _custom_params(policy, key, key_pair_id, hash_algorithm))


# -- signers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CloudFrontSigner:
    """Signs each URL at the moment of the request, valid for `lifetime` seconds from then:
    a canned policy, or a custom one for that very URL when there are conditions."""

    key: PrivateKey
    key_pair_id: str
    lifetime: float
    hash_algorithm: str = "SHA1"
    conditions: Conditions = NO_CONDITIONS

    def sign(self, url: str, now: float) -> str:
        expires = int(now + self.lifetime)
        if not self.conditions.any:
            return sign_canned(url, expires, self.key, self.key_pair_id, self.hash_algorithm)
        policy = custom_policy(url, expires, self.conditions)
        return sign_custom(url, policy, self.key, self.key_pair_id, self.hash_algorithm)


class PolicySigner:
    """One custom policy for every URL its Resource matches (a wildcard): one signature a
    second serves any number of requests, and `sign` only appends the cached parameters.

    The policy is re-signed once it is `REFRESH` old (half the lifetime if that is shorter),
    so no request carries a signature older than that. The engine signs from its DB thread
    and from the event loop's: the cache is one immutable tuple, replaced under a lock.
    """

    def __init__(
        self,
        key: PrivateKey,
        key_pair_id: str,
        lifetime: float,
        resource: ResourcePattern,
        *,
        hash_algorithm: str = "SHA1",
        conditions: Conditions = NO_CONDITIONS,
    ) -> None:
        self.key, self.key_pair_id, self.lifetime = key, key_pair_id, lifetime
        self.resource, self.hash_algorithm, self.conditions = resource, hash_algorithm, conditions
        self.refresh = min(REFRESH, lifetime / 2)
        self._lock = threading.Lock()
        self._cached: tuple[float, str] = (-math.inf, "")

    def sign(self, url: str, now: float) -> str:
        signed_at, params = self._cached
        if now - signed_at >= self.refresh:
            params = self._resign(now)
        return _append(url, params)

    def _resign(self, now: float) -> str:
        with self._lock:
            signed_at, params = self._cached
            if now - signed_at >= self.refresh:  # not already done by the other thread
                policy = custom_policy(
                    self.resource.text, int(now + self.lifetime), self.conditions
                )
                params = _custom_params(policy, self.key, self.key_pair_id, self.hash_algorithm)
                self._cached = (now, params)
            return params


# -- verification (the local origin) ------------------------------------------------------


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


def verify_cloudfront(
    signed_url: str, public_keys: dict[str, PublicKey], now: float, client: str = "127.0.0.1"
) -> str | None:
    """Check a signed URL from `client` as CloudFront would; None if valid, else the reason."""
    resource, params = split_signed_url(signed_url)
    if "Expires" in params and "Policy" in params:
        return "both Expires and Policy: a signed URL carries one of them"
    expected = ("Policy" if "Policy" in params else "Expires", "Signature", "Key-Pair-Id")
    missing = [name for name in expected if name not in params]
    if missing:
        return f"missing {', '.join(missing)}"
    hash_algorithm = params.get("Hash-Algorithm", "SHA1")
    if hash_algorithm not in HASH_ALGORITHMS:
        return f"unsupported Hash-Algorithm {hash_algorithm!r}; CloudFront takes SHA1 or SHA256"
    key = public_keys.get(params["Key-Pair-Id"])
    if key is None:
        return "unknown Key-Pair-Id"
    try:
        policy, statement = _policy_of(resource, params)
    except ValueError as exc:
        return str(exc)
    try:
        signature = cloudfront_b64decode(params["Signature"])
    except ValueError:
        return "signature does not match"
    if not verify_bytes(key, signature, policy, hash_algorithm):
        return "signature does not match"
    return statement.refusal(resource, now, client)


def _policy_of(resource: str, params: dict[str, str]) -> tuple[bytes, Statement]:
    """The signed bytes and what they allow: rebuilt from `Expires`, or the given `Policy`."""
    if "Policy" in params:
        try:
            policy = cloudfront_b64decode(params["Policy"])
        except ValueError:
            raise ValueError("malformed Policy: not CloudFront base64") from None
    elif params["Expires"].isdigit():
        policy = canned_policy(resource, int(params["Expires"]))
    else:
        raise ValueError("malformed Expires")
    return policy, parse_policy(policy)
