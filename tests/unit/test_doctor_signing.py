"""What `tfbulk doctor` says about a CloudFront signature: key, hash, policy, and whether
this system can sign with SHA-1 at all (FIPS mode and some crypto policies cannot)."""

from __future__ import annotations

import time

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tfbulk.commands.doctor import WARN, _signature_checks
from tfbulk.settings import PolicySettings
from tfbulk.signing import cloudfront

RSA = rsa.generate_private_key(65537, 2048)
EC = ec.generate_private_key(ec.SECP256R1())


@pytest.mark.parametrize(
    ("key", "policy", "detail"),
    [
        (RSA, PolicySettings(), "RSA with SHA1, a canned policy per URL"),
        (EC, PolicySettings("SHA256"), "ECDSA with SHA256, a canned policy per URL"),
        (
            RSA,
            PolicySettings(date_greater_than=5, ip_address="10.0.0.0/8"),
            "RSA with SHA1, a custom policy per URL "
            "(DateGreaterThan 1970-01-01T00:00:05Z, IpAddress 10.0.0.0/8)",
        ),
        (
            EC,
            PolicySettings("SHA256", resource="https://h/*"),
            "ECDSA with SHA256, one custom policy for https://h/*, re-signed every second",
        ),
    ],
)
def test_the_signature_check_names_key_hash_and_policy(
    key: cloudfront.PrivateKey, policy: PolicySettings, detail: str
) -> None:
    (check,) = _signature_checks(key, policy)
    assert (check.name, check.status, check.detail) == ("signature", "ok", detail)


def test_a_system_without_sha1_gets_a_warning_suggesting_sha256(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A hash the library refuses for RSA stands in for SHA-1 under FIPS mode."""
    monkeypatch.setitem(cloudfront._HASHES, "SHA1", lambda: hashes.BLAKE2b(64))
    warnings = [c for c in _signature_checks(RSA, PolicySettings()) if c.status == WARN]
    assert [c.name for c in warnings] == ["SHA-1 signatures"]
    assert "--hash-algorithm SHA256" in warnings[0].advice
    assert all(c.status == "ok" for c in _signature_checks(RSA, PolicySettings("SHA256")))


def test_a_start_time_in_the_future_warns() -> None:
    later = PolicySettings(date_greater_than=int(time.time()) + 7200)
    warnings = [c for c in _signature_checks(RSA, later) if c.status == WARN]
    assert [c.name for c in warnings] == ["policy start"]
    assert "refuses every request until then" in warnings[0].detail
