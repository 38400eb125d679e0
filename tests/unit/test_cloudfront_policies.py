"""Custom and wildcard policies, ECDSA keys and SHA-256: byte-identical to botocore where
botocore can say (RSA, SHA-1), verified like CloudFront everywhere, thread-safe when shared."""

from __future__ import annotations

import ipaddress
import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from botocore.signers import CloudFrontSigner as BotoSigner
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.hashes import SHA1
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.unit.test_cloudfront import KEY_PAIR_ID, urls
from tfbulk.signing.cloudfront import (
    CloudFrontSigner,
    PolicySigner,
    PrivateKey,
    cloudfront_b64decode,
    sign_canned,
    sign_custom,
    split_signed_url,
    verify_cloudfront,
)
from tfbulk.signing.policy import Conditions, ResourcePattern, custom_policy

NOW = 1_700_000_000.0
CLIENT = "203.0.113.7"
SETTINGS = settings(
    max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module", params=["rsa", "ec"])
def key(request: pytest.FixtureRequest, rsa_key: PrivateKey, ec_key: PrivateKey) -> PrivateKey:
    return rsa_key if request.param == "rsa" else ec_key


def keys_of(key: PrivateKey) -> dict[str, object]:
    return {KEY_PAIR_ID: key.public_key()}


def when(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC)


def boto(key: rsa.RSAPrivateKey) -> BotoSigner:
    sha1: Callable[[bytes], bytes] = lambda msg: key.sign(msg, PKCS1v15(), SHA1())  # noqa: E731
    return BotoSigner(KEY_PAIR_ID, sha1)


def boto_custom(
    key: rsa.RSAPrivateKey, url: str, resource: str, expires: int, conditions: Conditions
) -> str:
    """botocore's `generate_presigned_url(url, policy=build_policy(...))`."""
    start = conditions.date_greater_than
    signer = boto(key)
    policy = signer.build_policy(
        resource,
        when(expires),
        date_greater_than=when(start) if start is not None else None,
        ip_address=conditions.ip_address,
    )
    return signer.generate_presigned_url(url, policy=policy)


epochs = st.integers(min_value=1, max_value=4_102_444_800)
cidrs_v4 = st.tuples(st.ip_addresses(v=4), st.integers(0, 32)).map(
    lambda pair: str(ipaddress.ip_network(f"{pair[0]}/{pair[1]}", strict=False))
)
conditions = st.builds(
    Conditions, st.one_of(st.none(), epochs), st.one_of(st.none(), cidrs_v4)
).filter(lambda c: c.any)


# -- byte-identical to botocore (RSA, SHA-1) -----------------------------------------------


def test_custom_policy_is_botocores_json(rsa_key: rsa.RSAPrivateKey) -> None:
    both = Conditions(date_greater_than=1_600_000_000, ip_address="192.0.2.0/24")
    expected = (
        '{"Statement":[{"Resource":"https://h/*","Condition":{"DateLessThan":{"AWS:EpochTime":'
        '1700000000},"IpAddress":{"AWS:SourceIp":"192.0.2.0/24"},"DateGreaterThan":'
        '{"AWS:EpochTime":1600000000}}}]}'
    )
    assert custom_policy("https://h/*", 1_700_000_000, both).decode() == expected
    built = boto(rsa_key).build_policy(
        "https://h/*", when(1_700_000_000), when(1_600_000_000), "192.0.2.0/24"
    )
    assert built == expected


@SETTINGS
@given(url=urls(), expires=epochs, extra=conditions)
def test_per_url_custom_policy_is_byte_identical_to_botocore(
    rsa_key: rsa.RSAPrivateKey, url: str, expires: int, extra: Conditions
) -> None:
    ours = CloudFrontSigner(rsa_key, KEY_PAIR_ID, 60.0, conditions=extra).sign(url, expires - 60)
    assert ours == boto_custom(rsa_key, url, url, expires, extra)


@SETTINGS
@given(url=urls(), cut=st.integers(min_value=8), expires=epochs, data=st.data())
def test_wildcard_policy_is_byte_identical_to_botocore(
    rsa_key: rsa.RSAPrivateKey, url: str, cut: int, expires: int, data: st.DataObject
) -> None:
    resource = url[:cut] + "*"
    extra = data.draw(st.one_of(st.just(Conditions()), conditions))
    signer = PolicySigner(rsa_key, KEY_PAIR_ID, 60.0, ResourcePattern(resource), conditions=extra)
    assert signer.sign(url, expires - 60) == boto_custom(rsa_key, url, resource, expires, extra)


# -- SHA-256 and ECDSA ---------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["SHA1", "SHA256"])
def test_hash_algorithm_is_named_only_for_sha256(key: PrivateKey, algorithm: str) -> None:
    signed = sign_canned("https://h/a.mp4?x=1", 2_000_000_000, key, KEY_PAIR_ID, algorithm)
    tail = "&Hash-Algorithm=SHA256" if algorithm == "SHA256" else f"&Key-Pair-Id={KEY_PAIR_ID}"
    assert signed.startswith("https://h/a.mp4?x=1&Expires=2000000000&Signature=")
    assert signed.endswith(tail)
    assert signed.count("Hash-Algorithm") == (algorithm == "SHA256")


def test_ecdsa_signatures_are_der_in_cloudfront_base64(ec_key: ec.EllipticCurvePrivateKey) -> None:
    signed = sign_canned("https://h/a.mp4", 2_000_000_000, ec_key, KEY_PAIR_ID, "SHA256")
    der = cloudfront_b64decode(split_signed_url(signed)[1]["Signature"])
    r, s = decode_dss_signature(der)  # raises unless it is a DER SEQUENCE of two INTEGERs
    assert 0 < r < 2**256 and 0 < s < 2**256


@settings(SETTINGS, max_examples=40)
@given(url=urls(), algorithm=st.sampled_from(["SHA1", "SHA256"]), extra=conditions)
def test_every_kind_verifies_and_a_changed_url_does_not(
    rsa_key: PrivateKey, ec_key: PrivateKey, url: str, algorithm: str, extra: Conditions
) -> None:
    start = extra.date_greater_than
    now = max(NOW, start or 0)
    client = CLIENT if extra.ip_address is None else _inside(extra.ip_address)
    for key in (rsa_key, ec_key):
        for signer in (
            CloudFrontSigner(key, KEY_PAIR_ID, 60.0, algorithm),
            CloudFrontSigner(key, KEY_PAIR_ID, 60.0, algorithm, extra),
            PolicySigner(
                key, KEY_PAIR_ID, 60.0, ResourcePattern(url), hash_algorithm=algorithm,
                conditions=extra,
            ),
        ):  # fmt: skip
            signed = signer.sign(url, now)
            assert verify_cloudfront(signed, keys_of(key), now, client) is None
            changed = signed.replace("://", "://x", 1)
            assert verify_cloudfront(changed, keys_of(key), now, client) is not None


def _inside(cidr: str) -> str:
    return str(ipaddress.ip_network(cidr)[0])


@pytest.mark.parametrize("algorithm", ["SHA1", "SHA256"])
def test_a_signature_checked_with_the_other_hash_does_not_match(
    key: PrivateKey, algorithm: str
) -> None:
    signed = sign_canned("https://h/a.mp4", 2_000_000_000, key, KEY_PAIR_ID, algorithm)
    other = (
        signed.removesuffix("&Hash-Algorithm=SHA256")
        if algorithm == "SHA256"
        else signed + "&Hash-Algorithm=SHA256"
    )
    assert verify_cloudfront(signed, keys_of(key), NOW) is None
    assert verify_cloudfront(other, keys_of(key), NOW) == "signature does not match"
    md5 = signed + "&Hash-Algorithm=MD5" if algorithm == "SHA1" else signed.replace("SHA256", "MD5")
    assert "unsupported Hash-Algorithm 'MD5'" in (verify_cloudfront(md5, keys_of(key), NOW) or "")


# -- what a custom policy allows ------------------------------------------------------------


def _policy_url(key: PrivateKey, url: str, resource: str, extra: Conditions) -> str:
    return PolicySigner(key, KEY_PAIR_ID, 60.0, ResourcePattern(resource), conditions=extra).sign(
        url, NOW
    )


def test_wildcard_policy_serves_matching_urls_only(key: PrivateKey) -> None:
    signed = _policy_url(key, "https://h/videos/1.mp4", "https://h/videos/*.mp?", Conditions())
    for path in ("/videos/2.mp4", "/videos/a/b.mp3", "/videos/.mpx"):
        other = signed.replace("/videos/1.mp4", path)
        assert verify_cloudfront(other, keys_of(key), NOW) is None, path
    for path in ("/audio/1.mp4", "/videos/1.mp", "/videos/1.mp4x"):
        other = signed.replace("/videos/1.mp4", path)
        assert verify_cloudfront(other, keys_of(key), NOW) == (
            "the URL does not match the policy's Resource"
        ), path


def test_date_greater_than_and_ip_address_are_enforced(key: PrivateKey) -> None:
    extra = Conditions(date_greater_than=int(NOW) - 10, ip_address="203.0.113.0/24")
    signed = _policy_url(key, "https://h/1.mp4", "https://h/*", extra)
    public = keys_of(key)
    assert verify_cloudfront(signed, public, NOW - 10, CLIENT) is None
    assert verify_cloudfront(signed, public, NOW - 11, CLIENT) == (
        "signature not valid yet (DateGreaterThan)"
    )
    assert verify_cloudfront(signed, public, NOW, "198.51.100.1") == (
        "client address 198.51.100.1 is not in the policy's IpAddress 203.0.113.0/24"
    )
    assert verify_cloudfront(signed, public, NOW, "::1") is not None
    assert verify_cloudfront(signed, public, NOW + 60, CLIENT) == "signature expired"


def test_ipv6_ranges_are_enforced(key: PrivateKey) -> None:
    signed = _policy_url(key, "https://h/1.mp4", "https://h/*", Conditions(ip_address="::1/128"))
    assert verify_cloudfront(signed, keys_of(key), NOW, "::1") is None
    assert verify_cloudfront(signed, keys_of(key), NOW, "127.0.0.1") is not None


def test_an_ipv4_peer_of_a_dual_stack_socket_counts_as_ipv4(key: PrivateKey) -> None:
    loopback = Conditions(ip_address="127.0.0.0/8")
    signed = _policy_url(key, "https://h/1.mp4", "https://h/*", loopback)
    assert verify_cloudfront(signed, keys_of(key), NOW, "::ffff:127.0.0.1") is None
    assert verify_cloudfront(signed, keys_of(key), NOW, "::ffff:10.0.0.1") is not None


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (b"not json", "one Statement with a Condition expected"),
        (b'{"Statement":[]}', "one Statement with a Condition expected"),
        (b'{"Statement":[{"Condition":{}},{"Condition":{}}]}', "one Statement"),
        (b'{"Statement":[{"Resource":"*","Condition":{}}]}', "no DateLessThan"),
        (
            b'{"Statement":[{"Resource":"*","Condition":{"DateLessThan":{"AWS:EpochTime":"9"}}}]}',
            "AWS:EpochTime must be a whole number",
        ),
        (
            b'{"Statement":[{"Resource":7,"Condition":{"DateLessThan":{"AWS:EpochTime":9}}}]}',
            "Resource must be a string",
        ),
        (
            b'{"Statement":[{"Condition":{"DateLessThan":{"AWS:EpochTime":true}}}]}',
            "must be a whole number",
        ),
        (
            b'{"Statement":[{"Condition":{"DateLessThan":{"AWS:EpochTime":9},'
            b'"IpAddress":{"AWS:SourceIp":"nope"}}}]}',
            "AWS:SourceIp 'nope' is not a CIDR",
        ),
        (
            b'{"Statement":[{"Condition":{"DateLessThan":{"AWS:EpochTime":9},"Referer":{}}}]}',
            "unknown condition Referer",
        ),
    ],
)
def test_malformed_policies_are_refused_with_the_reason(
    rsa_key: rsa.RSAPrivateKey, document: bytes, reason: str
) -> None:
    signed = sign_custom("https://h/1.mp4", document, rsa_key, KEY_PAIR_ID)
    refusal = verify_cloudfront(signed, keys_of(rsa_key), NOW) or ""
    assert refusal.startswith("malformed Policy") and reason in refusal


def test_a_policy_without_resource_covers_everything(rsa_key: rsa.RSAPrivateKey) -> None:
    document = json.dumps(
        {"Statement": [{"Condition": {"DateLessThan": {"AWS:EpochTime": int(NOW) + 5}}}]}
    ).encode()
    signed = sign_custom("https://any.example/x.mp4", document, rsa_key, KEY_PAIR_ID)
    assert verify_cloudfront(signed, keys_of(rsa_key), NOW) is None


def test_policy_and_expires_together_and_bad_policy_base64(rsa_key: rsa.RSAPrivateKey) -> None:
    public = keys_of(rsa_key)
    signed = _policy_url(rsa_key, "https://h/1.mp4", "https://h/*", Conditions())
    assert verify_cloudfront(signed + "&Expires=5", public, NOW) == (
        "both Expires and Policy: a signed URL carries one of them"
    )
    resource, params = split_signed_url(signed)
    broken = signed.replace(params["Policy"], "!!" + params["Policy"])
    assert verify_cloudfront(broken, public, NOW) == "malformed Policy: not CloudFront base64"
    assert verify_cloudfront(signed.replace("&Signature=", "&X="), public, NOW) == (
        "missing Signature"
    )
    assert resource == "https://h/1.mp4"


# -- the shared policy signer ------------------------------------------------------------


def _expires_of(signed: str) -> int:
    policy = json.loads(cloudfront_b64decode(split_signed_url(signed)[1]["Policy"]))
    return policy["Statement"][0]["Condition"]["DateLessThan"]["AWS:EpochTime"]


def test_policy_signer_reuses_its_signature_for_one_second(ec_key: PrivateKey) -> None:
    signer = PolicySigner(ec_key, KEY_PAIR_ID, 7200.0, ResourcePattern("https://h/*"))
    first = signer.sign("https://h/1.mp4", NOW)
    again = signer.sign("https://h/2.mp4?q=1", NOW + 0.999)
    assert again == first.replace("/1.mp4?", "/2.mp4?q=1&")  # ECDSA: a new signature differs
    later = signer.sign("https://h/1.mp4", NOW + 1.0)
    assert later != first and _expires_of(later) == int(NOW + 1.0 + 7200)


def test_a_short_lifetime_re_signs_at_half_of_it(rsa_key: PrivateKey) -> None:
    signer = PolicySigner(rsa_key, KEY_PAIR_ID, 1.0, ResourcePattern("https://h/*"))
    assert signer.refresh == 0.5
    first = signer.sign("https://h/1.mp4", NOW)
    assert signer.sign("https://h/1.mp4", NOW + 0.49) == first
    assert _expires_of(signer.sign("https://h/1.mp4", NOW + 0.5)) == int(NOW + 1.5)


def test_policy_signer_is_safe_from_two_threads(ec_key: PrivateKey) -> None:
    """The engine signs from its DB thread and from the event loop's at once: every URL must
    verify, none may carry a signature older than the refresh, and a re-sign happens once."""
    signer = PolicySigner(ec_key, KEY_PAIR_ID, 60.0, ResourcePattern("https://h/*"))
    moments = [NOW + i * 0.002 for i in range(1500)]  # three seconds of requests
    results: list[list[tuple[float, str]]] = [[] for _ in range(4)]
    start = threading.Barrier(len(results))

    def work(out: list[tuple[float, str]]) -> None:
        start.wait()
        out.extend((now, signer.sign(f"https://h/{i}.mp4", now)) for i, now in enumerate(moments))

    threads = [threading.Thread(target=work, args=(out,)) for out in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    signatures = set()
    for now, signed in (pair for out in results for pair in out):
        assert verify_cloudfront(signed, keys_of(ec_key), now) is None
        assert _expires_of(signed) >= int(now - signer.refresh + 60.0)
        signatures.add(split_signed_url(signed)[1]["Signature"])
    assert len(signatures) <= 4  # one per second of `moments`, at most, whatever the threads


@settings(SETTINGS, max_examples=50)
@given(url=urls(), lifetime=st.floats(min_value=0.01, max_value=86400.0))
def test_policy_signer_appends_to_any_url(rsa_key: PrivateKey, url: str, lifetime: float) -> None:
    assume(int(NOW + lifetime) > NOW)
    signer = PolicySigner(rsa_key, KEY_PAIR_ID, lifetime, ResourcePattern("*"))
    signed = signer.sign(url, NOW)
    resource, params = split_signed_url(signed)
    assert resource == url.rstrip("?") and set(params) == {"Policy", "Signature", "Key-Pair-Id"}
    assert verify_cloudfront(signed, keys_of(rsa_key), NOW) is None
