"""CloudFront canned-policy signing: byte-identical to botocore, and verified like CloudFront."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import quote

import pytest
from botocore.signers import CloudFrontSigner as BotoSigner
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.hashes import SHA1
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tfbulk.signing.cloudfront import (
    CloudFrontSigner,
    canned_policy,
    cloudfront_b64decode,
    cloudfront_b64encode,
    sign_canned,
    split_signed_url,
    verify_cloudfront,
)

KEY_PAIR_ID = "K2JCJMDEHXQW5F"
NOW = 1_700_000_000.0
HOSTS = ("d111111abcdef8.cloudfront.net", "d2kum0w8xvhbpf.cloudfront.net", "cdn.example.com")
SETTINGS = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
FEW = settings(SETTINGS, max_examples=100)


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def boto_signer(key: rsa.RSAPrivateKey, key_pair_id: str = KEY_PAIR_ID) -> BotoSigner:
    rsa_signer: Callable[[bytes], bytes] = lambda msg: key.sign(msg, PKCS1v15(), SHA1())  # noqa: E731
    return BotoSigner(key_pair_id, rsa_signer)


def boto_url(key: rsa.RSAPrivateKey, url: str, expires: int) -> str:
    when = datetime.fromtimestamp(expires, tz=UTC)
    return boto_signer(key).generate_presigned_url(url, date_less_than=when)


# -- URL strategies -----------------------------------------------------------------

# Raw path segments: ASCII, reserved characters, spaces and non-ASCII text. They are
# percent-encoded (unicode as UTF-8) before they go in a URL, as the planner does.
_raw_segment = st.text(
    alphabet=st.characters(
        codec="utf-8", exclude_categories=("Cs",), min_codepoint=0x20, max_codepoint=0x2FFF
    ),
    min_size=1,
    max_size=12,
)
_encoded_segment = _raw_segment.map(lambda text: quote(text, safe=""))
_plain_segment = st.from_regex(r"[A-Za-z0-9._~-]{1,12}", fullmatch=True)
_segment = st.one_of(_encoded_segment, _plain_segment)
_query_value = st.one_of(_plain_segment, _encoded_segment, st.just(""))
_query = st.lists(st.tuples(_plain_segment, _query_value), min_size=1, max_size=4).map(
    lambda pairs: "&".join(f"{name}={value}" for name, value in pairs)
)


@st.composite
def urls(draw: st.DrawFn) -> str:
    host = draw(st.sampled_from(HOSTS))
    path = "/".join(draw(st.lists(_segment, min_size=1, max_size=5)))
    url = f"https://{host}/{path}"
    if draw(st.booleans()):
        url = f"{url}?{draw(_query)}"
    return url


expiries = st.integers(min_value=0, max_value=4_102_444_800)  # up to 2100-01-01


# -- byte-identical to botocore ------------------------------------------------------


@SETTINGS
@given(url=urls(), expires=expiries)
def test_sign_canned_is_byte_identical_to_botocore(
    key: rsa.RSAPrivateKey, url: str, expires: int
) -> None:
    assert sign_canned(url, expires, key, KEY_PAIR_ID) == boto_url(key, url, expires)


@SETTINGS
@given(
    url=urls(),
    now=st.floats(min_value=0, max_value=4_000_000_000, allow_nan=False),
    lifetime=st.sampled_from([1.0, 90.0, 1800.0, 7200.0, 86400.0, 0.5, 3599.9]),
)
def test_signer_sign_is_byte_identical_to_botocore(
    key: rsa.RSAPrivateKey, url: str, now: float, lifetime: float
) -> None:
    signer = CloudFrontSigner(key, KEY_PAIR_ID, lifetime)
    expires = int(now + lifetime)
    assert signer.sign(url, now) == boto_url(key, url, expires)


@pytest.mark.parametrize(
    "url",
    [
        "https://d111111abcdef8.cloudfront.net/truefire/1234.mp4",
        "https://d111111abcdef8.cloudfront.net/truefire/1234.mp4?quality=hd&x=1",
        "https://cdn.example.com/guitar%20101/lesson%2F03.mp4",
        "https://cdn.example.com/caf%C3%A9/%E6%97%A5%E6%9C%AC.mp4",
        "https://cdn.example.com/a/b?",
        "https://cdn.example.com/quote%22and%5Cbackslash.mp4",
    ],
)
def test_known_urls_match_botocore(key: rsa.RSAPrivateKey, url: str) -> None:
    expires = 1_767_225_600
    signed = sign_canned(url, expires, key, KEY_PAIR_ID)
    assert signed == boto_url(key, url, expires)
    separator = "&" if "?" in url else "?"
    assert signed.startswith(f"{url}{separator}Expires={expires}&Signature=")
    assert signed.endswith(f"&Key-Pair-Id={KEY_PAIR_ID}")


def test_canned_policy_matches_botocore_build_policy(key: rsa.RSAPrivateKey) -> None:
    url = 'https://cdn.example.com/a b/\u00e9?x="1"'
    expires = 1_700_000_123
    boto_policy = boto_signer(key).build_policy(url, datetime.fromtimestamp(expires, tz=UTC))
    assert canned_policy(url, expires) == boto_policy.encode("utf-8")
    assert canned_policy("https://h/p", 5) == (
        b'{"Statement":[{"Resource":"https://h/p","Condition":'
        b'{"DateLessThan":{"AWS:EpochTime":5}}}]}'
    )


def test_signer_truncates_fractional_expiry(key: rsa.RSAPrivateKey) -> None:
    signer = CloudFrontSigner(key, KEY_PAIR_ID, 7200.0)
    signed = signer.sign("https://h/x.mp4", 1000.9)
    assert "Expires=8200&" in signed


@FEW
@given(data=st.binary(min_size=0, max_size=300))
def test_b64_round_trip_uses_cloudfront_alphabet(data: bytes) -> None:
    text = cloudfront_b64encode(data)
    assert not set(text) & set("+=/")
    assert cloudfront_b64decode(text) == data


@pytest.mark.parametrize("garbage", ["!!!!", "abc", "é"])
def test_b64decode_rejects_garbage(garbage: str) -> None:
    with pytest.raises(ValueError, match="CloudFront base64"):
        cloudfront_b64decode(garbage)


# -- verification ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def public_keys(key: rsa.RSAPrivateKey) -> dict[str, rsa.RSAPublicKey]:
    return {KEY_PAIR_ID: key.public_key()}


def _replace_param(signed: str, name: str, value: str) -> str:
    resource, params = split_signed_url(signed)
    params[name] = value
    separator = "&" if "?" in resource else "?"
    return resource + separator + "&".join(f"{k}={v}" for k, v in params.items())


def _drop_param(signed: str, name: str) -> str:
    resource, params = split_signed_url(signed)
    del params[name]
    separator = "&" if "?" in resource else "?"
    return resource + separator + "&".join(f"{k}={v}" for k, v in params.items())


@pytest.mark.parametrize(
    "url", ["https://h.example/a/b%20c.mp4", "https://h.example/a.mp4?quality=hd&lang=en"]
)
def test_verify_accepts_freshly_signed_url(
    key: rsa.RSAPrivateKey, public_keys: dict[str, rsa.RSAPublicKey], url: str
) -> None:
    signed = CloudFrontSigner(key, KEY_PAIR_ID, 60).sign(url, NOW)
    assert verify_cloudfront(signed, public_keys, NOW) is None
    assert verify_cloudfront(signed, public_keys, NOW + 59.999) is None


@FEW
@given(url=urls(), lifetime=st.integers(min_value=1, max_value=10**6))
def test_verify_accepts_any_url_botocore_signs(
    key: rsa.RSAPrivateKey, public_keys: dict[str, rsa.RSAPublicKey], url: str, lifetime: int
) -> None:
    signed = boto_url(key, url, int(NOW) + lifetime)
    assert verify_cloudfront(signed, public_keys, NOW) is None


@pytest.mark.parametrize("offset", [0, 1, 3600])
def test_verify_rejects_expired(
    key: rsa.RSAPrivateKey, public_keys: dict[str, rsa.RSAPublicKey], offset: int
) -> None:
    expires = int(NOW)
    signed = sign_canned("https://h.example/a.mp4", expires, key, KEY_PAIR_ID)
    assert verify_cloudfront(signed, public_keys, expires + offset) == "signature expired"


def test_verify_rejects_tampered_resource(
    key: rsa.RSAPrivateKey, public_keys: dict[str, rsa.RSAPublicKey]
) -> None:
    signed = sign_canned("https://h.example/course/1.mp4", int(NOW) + 60, key, KEY_PAIR_ID)
    tampered = signed.replace("/course/1.mp4", "/course/2.mp4")
    assert tampered != signed
    assert verify_cloudfront(tampered, public_keys, NOW) == "signature does not match"


def test_verify_rejects_added_query_param(
    key: rsa.RSAPrivateKey, public_keys: dict[str, rsa.RSAPublicKey]
) -> None:
    signed = sign_canned("https://h.example/1.mp4", int(NOW) + 60, key, KEY_PAIR_ID)
    assert verify_cloudfront(signed + "&extra=1", public_keys, NOW) == "signature does not match"


def test_verify_rejects_tampered_expires(
    key: rsa.RSAPrivateKey, public_keys: dict[str, rsa.RSAPublicKey]
) -> None:
    expires = int(NOW) + 60
    signed = sign_canned("https://h.example/1.mp4", expires, key, KEY_PAIR_ID)
    tampered = _replace_param(signed, "Expires", str(expires + 3600))
    assert verify_cloudfront(tampered, public_keys, NOW) == "signature does not match"


def test_verify_rejects_tampered_signature(
    key: rsa.RSAPrivateKey, public_keys: dict[str, rsa.RSAPublicKey]
) -> None:
    signed = sign_canned("https://h.example/1.mp4", int(NOW) + 60, key, KEY_PAIR_ID)
    signature = split_signed_url(signed)[1]["Signature"]
    flipped = ("B" if signature[0] == "A" else "A") + signature[1:]
    assert verify_cloudfront(_replace_param(signed, "Signature", flipped), public_keys, NOW) == (
        "signature does not match"
    )
    garbage = _replace_param(signed, "Signature", "not*base64")
    assert verify_cloudfront(garbage, public_keys, NOW) == "signature does not match"


def test_verify_rejects_signature_from_another_key(
    other_key: rsa.RSAPrivateKey, public_keys: dict[str, rsa.RSAPublicKey]
) -> None:
    signed = sign_canned("https://h.example/1.mp4", int(NOW) + 60, other_key, KEY_PAIR_ID)
    assert verify_cloudfront(signed, public_keys, NOW) == "signature does not match"


def test_verify_rejects_unknown_key_pair_id(
    key: rsa.RSAPrivateKey, public_keys: dict[str, rsa.RSAPublicKey]
) -> None:
    signed = sign_canned("https://h.example/1.mp4", int(NOW) + 60, key, "KUNKNOWN")
    assert verify_cloudfront(signed, public_keys, NOW) == "unknown Key-Pair-Id"


@pytest.mark.parametrize("name", ["Expires", "Signature", "Key-Pair-Id"])
def test_verify_rejects_missing_param(
    key: rsa.RSAPrivateKey, public_keys: dict[str, rsa.RSAPublicKey], name: str
) -> None:
    signed = sign_canned("https://h.example/1.mp4", int(NOW) + 60, key, KEY_PAIR_ID)
    assert verify_cloudfront(_drop_param(signed, name), public_keys, NOW) == f"missing {name}"


def test_verify_rejects_unsigned_url(public_keys: dict[str, rsa.RSAPublicKey]) -> None:
    assert verify_cloudfront("https://h.example/1.mp4", public_keys, NOW) == (
        "missing Expires, Signature, Key-Pair-Id"
    )


def test_verify_rejects_malformed_expires_and_policy(
    key: rsa.RSAPrivateKey, public_keys: dict[str, rsa.RSAPublicKey]
) -> None:
    signed = sign_canned("https://h.example/1.mp4", int(NOW) + 60, key, KEY_PAIR_ID)
    assert verify_cloudfront(_replace_param(signed, "Expires", "soon"), public_keys, NOW) == (
        "malformed Expires"
    )
    assert verify_cloudfront(signed + "&Policy=abc", public_keys, NOW) == (
        "both Expires and Policy: a signed URL carries one of them"
    )


# -- split_signed_url -------------------------------------------------------------------


def test_split_keeps_other_query_params_in_order() -> None:
    signed = "https://h/p.mp4?b=2&Expires=5&a=1&Signature=S-_~&z=&Key-Pair-Id=K&c=3"
    resource, params = split_signed_url(signed)
    assert resource == "https://h/p.mp4?b=2&a=1&z=&c=3"
    assert params == {"Expires": "5", "Signature": "S-_~", "Key-Pair-Id": "K"}


def test_split_without_query() -> None:
    assert split_signed_url("https://h/p.mp4") == ("https://h/p.mp4", {})
    assert split_signed_url("https://h/p.mp4?Expires=1&Signature=s&Key-Pair-Id=K") == (
        "https://h/p.mp4",
        {"Expires": "1", "Signature": "s", "Key-Pair-Id": "K"},
    )


@FEW
@given(url=urls(), expires=expiries)
def test_split_recovers_signed_resource(url: str, expires: int) -> None:
    signed = f"{url}{'&' if '?' in url else '?'}Expires={expires}&Signature=S&Key-Pair-Id=K"
    resource, params = split_signed_url(signed)
    assert resource == url.rstrip("?")
    assert params == {"Expires": str(expires), "Signature": "S", "Key-Pair-Id": "K"}
