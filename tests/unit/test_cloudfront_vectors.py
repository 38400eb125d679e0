"""SHA-256 and ECDSA against the AWS SDK for JavaScript v3 (`@aws-sdk/cloudfront-signer`).

botocore has neither, so the vectors in tests/vectors were made once with the JavaScript
SDK (`make_cloudfront_vectors.mjs`, which says how) from the throw-away TEST-ONLY keys
there. RSA PKCS#1 v1.5 is deterministic: our Policy and Signature must equal the SDK's.
ECDSA is randomised: the Policy must be equal, and each side's signature must verify with
the public key by cryptography's own ECDSA check, independent of both signers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from tfbulk.signing import Signer
from tfbulk.signing.cloudfront import (
    CloudFrontSigner,
    PolicySigner,
    PrivateKey,
    cloudfront_b64decode,
    split_signed_url,
    verify_bytes,
    verify_cloudfront,
)
from tfbulk.signing.policy import Conditions, ResourcePattern, custom_policy

VECTORS = Path(__file__).parent.parent / "vectors"
DATA = json.loads((VECTORS / "cloudfront_vectors.json").read_text())
KEY_PAIR_ID = DATA["key_pair_id"]
LIFETIME = 60.0


def _key(name: str) -> PrivateKey:
    pem = (VECTORS / DATA["keys"][name]).read_bytes()
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, PrivateKey)
    return key


KEYS = {name: _key(name) for name in DATA["keys"]}


@dataclass(frozen=True)
class Vector:
    key: str
    algorithm: str
    kind: str  # canned, custom (the SDK built the policy), policy (a policy handed to it)
    url: str
    resource: str
    date_less_than: int
    date_greater_than: int | None
    ip_address: str | None
    signed_url: str

    @property
    def conditions(self) -> Conditions:
        return Conditions(self.date_greater_than, self.ip_address)

    def signer(self) -> Signer:
        """The tfbulk signer that `run` builds for the same flags."""
        key = KEYS[self.key]
        if self.kind == "policy":
            return PolicySigner(
                key,
                KEY_PAIR_ID,
                LIFETIME,
                ResourcePattern(self.resource),
                hash_algorithm=self.algorithm,
                conditions=self.conditions,
            )
        return CloudFrontSigner(key, KEY_PAIR_ID, LIFETIME, self.algorithm, self.conditions)

    def ours(self) -> str:
        return self.signer().sign(self.url, self.date_less_than - LIFETIME)

    def policy(self) -> bytes:
        return custom_policy(self.resource, self.date_less_than, self.conditions)


CASES = [Vector(**item) for item in DATA["vectors"]]
IDS = [f"{v.key}-{v.algorithm}-{v.kind}-{i}" for i, v in enumerate(CASES)]


def test_the_vectors_cover_every_kind() -> None:
    kinds = {(v.key, v.algorithm, v.kind) for v in CASES}
    assert kinds == {
        (key, algorithm, kind)
        for key in ("rsa", "ec")
        for algorithm in ("SHA1", "SHA256")
        for kind in ("canned", "custom", "policy")
    }


@pytest.mark.parametrize("vector", CASES, ids=IDS)
def test_policy_and_parameters_equal_the_sdks(vector: Vector) -> None:
    sdk_resource, sdk = split_signed_url(vector.signed_url)
    our_resource, ours = split_signed_url(vector.ours())
    assert our_resource == sdk_resource == vector.url
    assert set(ours) == set(sdk)
    assert ours.get("Hash-Algorithm") == sdk.get("Hash-Algorithm")
    assert sdk.get("Hash-Algorithm") == ("SHA256" if vector.algorithm == "SHA256" else None)
    assert ours["Key-Pair-Id"] == sdk["Key-Pair-Id"] == KEY_PAIR_ID
    if vector.kind == "canned":
        assert ours["Expires"] == sdk["Expires"] == str(vector.date_less_than)
    else:
        assert ours["Policy"] == sdk["Policy"]
        assert cloudfront_b64decode(sdk["Policy"]) == vector.policy()


@pytest.mark.parametrize(
    "vector", [v for v in CASES if v.key == "rsa"], ids=lambda v: f"{v.key}-{v.algorithm}-{v.kind}"
)
def test_rsa_signatures_equal_the_sdks(vector: Vector) -> None:
    assert split_signed_url(vector.ours())[1] == split_signed_url(vector.signed_url)[1]


@pytest.mark.parametrize(
    "vector", [v for v in CASES if v.key == "ec"], ids=lambda v: f"{v.key}-{v.algorithm}-{v.kind}"
)
def test_ecdsa_signatures_verify_both_ways(vector: Vector) -> None:
    public = KEYS["ec"].public_key()
    signed = {"sdk": vector.signed_url, "ours": vector.ours()}
    for who, url in signed.items():
        signature = cloudfront_b64decode(split_signed_url(url)[1]["Signature"])
        assert verify_bytes(public, signature, vector.policy(), vector.algorithm), who
        other = "SHA1" if vector.algorithm == "SHA256" else "SHA256"
        assert not verify_bytes(public, signature, vector.policy(), other), who


@pytest.mark.parametrize("vector", CASES, ids=IDS)
def test_the_origin_accepts_what_the_sdk_signs(vector: Vector) -> None:
    public = {KEY_PAIR_ID: KEYS[vector.key].public_key()}
    now = vector.date_less_than - 1
    assert verify_cloudfront(vector.signed_url, public, now, "203.0.113.9") is None
    assert verify_cloudfront(vector.signed_url, public, vector.date_less_than, "203.0.113.9") == (
        "signature expired"
    )
