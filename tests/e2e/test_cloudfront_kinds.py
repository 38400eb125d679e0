"""Every kind of CloudFront signature through the real CLI against the real origin: RSA or
ECDSA keys, SHA-1 or SHA-256, canned, custom per URL, or one wildcard policy for all."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime

import httpx
import pytest
from botocore.signers import CloudFrontSigner as BotocoreSigner
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from tests.conftest import EC_KEY_PAIR_ID, KEY_PAIR_ID, Keys, Workspace, child_env
from tests.e2e.test_demo_origin import stop_origin
from tfbulk.signing.cloudfront import split_signed_url

# name: (key, extra flags with {base} for the origin's URL, custom policy?, shared policy?)
KINDS: dict[str, tuple[str, list[str], bool, bool]] = {
    "rsa-sha256-canned": ("rsa", ["--hash-algorithm", "SHA256"], False, False),
    "ecdsa-sha1-canned": ("ec", [], False, False),
    "ecdsa-sha256-canned": ("ec", ["--hash-algorithm", "sha256"], False, False),
    "rsa-custom-per-url": (
        "rsa",
        ["--date-greater-than", "2020-01-01T00:00:00Z", "--ip-address", "127.0.0.0/8"],
        True,
        False,
    ),
    "ecdsa-sha256-wildcard": (
        "ec",
        ["--hash-algorithm", "SHA256", "--policy-resource", "{base}/truefire/*"],
        True,
        True,
    ),
    "rsa-sha1-wildcard-ip": (
        "rsa",
        ["--policy-resource", "http*://127.0.0.1:*/truefire/10??.mp4", "--ip-address", "127.0.0.1"],
        True,
        True,
    ),
}


def signed_with(ws: Workspace, keys: Keys, key_pair_id: str, args: list[str]) -> list[str]:
    """`args` with the key pair swapped and `{base}` filled in."""
    out = [a.replace("{base}", ws.origin.base_url) for a in args]
    out[out.index("--key-pair-id") + 1] = key_pair_id
    out[out.index("--private-key") + 1] = str(keys.private)
    return out


def key_of(kind: str, keys: Keys, ec_keys: Keys) -> tuple[Keys, str]:
    return (keys, KEY_PAIR_ID) if kind == "rsa" else (ec_keys, EC_KEY_PAIR_ID)


@pytest.mark.parametrize("name", list(KINDS))
def test_run_downloads_everything_with_each_kind(
    ws: Workspace, keys: Keys, ec_keys: Keys, name: str
) -> None:
    key, flags, custom, shared = KINDS[name]
    material, key_pair_id = key_of(key, keys, ec_keys)
    result = ws.cli(*signed_with(ws, material, key_pair_id, ws.run_args(*flags, "--json")))
    assert result.code == 0, result.stderr
    ws.assert_all_identical()
    assert [r.reason for r in ws.origin.log if r.status == 403] == []
    params = [split_signed_url(f"http://h/?{r.query}")[1] for r in ws.origin.log]
    sha256 = any(f.lower() == "sha256" for f in flags)
    assert all(p.get("Hash-Algorithm") == ("SHA256" if sha256 else None) for p in params)
    assert all(("Policy" in p) is custom and ("Expires" in p) is not custom for p in params)
    assert all(p["Key-Pair-Id"] == key_pair_id for p in params)
    signatures = {p["Signature"] for p in params}
    if shared:  # one signature a second serves all the requests of that second
        assert len(signatures) <= result.json["elapsed_s"] + 2 < len(params)
    else:
        assert len(signatures) == len(params) == len(ws.downloadable())


def test_a_url_outside_the_policy_resource_stops_the_run_before_anything(ws: Workspace) -> None:
    pattern = f"{ws.origin.base_url}/truefire/100?.mp4"  # 1001-1009, not 1010 and on
    result = ws.run("--policy-resource", pattern)
    assert result.code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert re.fullmatch(
        rf"tfbulk: error: segment 10[1-3]\d is {re.escape(ws.origin.base_url)}/truefire/10[1-3]\d"
        rf"\.mp4, which --policy-resource {re.escape(pattern)} does not match; .*",
        lines[0],
    ), lines[0]
    assert ws.origin.log == [] and not ws.state.exists()


def test_a_dry_run_checks_the_policy_resource_too(ws: Workspace) -> None:
    result = ws.run("--policy-resource", "https://elsewhere.example/*", "--dry-run")
    assert result.code == 2 and "does not match" in result.stderr


# -- tfbulk sign ------------------------------------------------------------------------


def sign(ws: Workspace, url: str, *flags: str, keys: Keys | None = None, **kw: object) -> str:
    material = keys or ws.keys
    key_pair_id = KEY_PAIR_ID if material is ws.keys else EC_KEY_PAIR_ID
    common = ["--key-pair-id", key_pair_id, "--private-key", str(material.private)]
    result = ws.cli("sign", url, *common, *flags, **kw)  # type: ignore[arg-type]
    assert result.code == 0, result.stderr
    return result.stdout.strip()


def botocore_custom(ws: Workspace, url: str, resource: str, expires: int, **policy: object) -> str:
    signer = BotocoreSigner(
        KEY_PAIR_ID, lambda m: ws.keys.key.sign(m, padding.PKCS1v15(), hashes.SHA1())
    )
    dates = {k: datetime.fromtimestamp(v, tz=UTC) for k, v in policy.items() if k.startswith("d")}
    built = signer.build_policy(
        resource,
        datetime.fromtimestamp(expires, tz=UTC),
        date_greater_than=dates.get("date_greater_than"),
        ip_address=policy.get("ip_address"),
    )
    return signer.generate_presigned_url(url, policy=built)


def test_sign_custom_policies_match_botocore_and_the_origin_accepts_them(ws: Workspace) -> None:
    url = f"{ws.origin.base_url}/truefire/{ws.downloadable()[0][1]}.mp4"
    resource = f"{ws.origin.base_url}/truefire/*"
    expires = int(time.time()) + 600
    flags = ["--expires-at", str(expires), "--date-greater-than", "2020-01-01"]
    wildcard = sign(ws, url, *flags, "--policy-resource", resource, "--ip-address", "127.0.0.1")
    assert wildcard == botocore_custom(
        ws, url, resource, expires, date_greater_than=1577836800, ip_address="127.0.0.1/32"
    )
    per_url = sign(ws, url, *flags)
    assert per_url == botocore_custom(ws, url, url, expires, date_greater_than=1577836800)
    for signed in (wildcard, per_url):
        assert httpx.get(signed).status_code == 200


def test_sign_takes_the_policy_flags_from_the_environment(ws: Workspace) -> None:
    url = f"{ws.origin.base_url}/truefire/{ws.downloadable()[0][1]}.mp4"
    flags = {
        "--hash-algorithm": "SHA256",
        "--policy-resource": f"{ws.origin.base_url}/*",
        "--date-greater-than": "1577836800",
        "--ip-address": "127.0.0.0/8",
    }
    env = {"TFBULK_" + flag[2:].upper().replace("-", "_"): value for flag, value in flags.items()}
    pinned = ["--expires-at", "2000000000"]
    from_env = sign(ws, url, *pinned, keys=ws.keys, env=env)
    from_flags = sign(ws, url, *pinned, *[x for pair in flags.items() for x in pair])
    assert from_env == from_flags and "&Hash-Algorithm=SHA256" in from_env
    assert "Policy=" in from_env


def test_sign_ecdsa_sha256_and_the_origin_accepts_it(ws: Workspace, ec_keys: Keys) -> None:
    url = f"{ws.origin.base_url}/truefire/{ws.downloadable()[0][1]}.mp4?quality=hd"
    signed = sign(ws, url, "--hash-algorithm", "SHA256", keys=ec_keys)
    assert signed.startswith(f"{url}&Expires=") and signed.endswith("&Hash-Algorithm=SHA256")
    assert httpx.get(signed).status_code == 200


@pytest.mark.parametrize(
    ("url", "needle", "encoded"),
    [
        ("/truefire/lesson 1.mp4", "a space", "/truefire/lesson%201.mp4"),
        ("/truefire/leçon.mp4", "non-ASCII", "/truefire/le%C3%A7on.mp4"),
        ("/truefire/1.mp4#t=30", "a fragment", "/truefire/1.mp4%23t=30"),
    ],
)
def test_sign_refuses_a_url_not_sent_as_written(
    ws: Workspace, url: str, needle: str, encoded: str
) -> None:
    base = ws.origin.base_url
    args = ["--key-pair-id", KEY_PAIR_ID, "--private-key", str(ws.keys.private)]
    result = ws.cli("sign", base + url, *args)
    assert result.code == 2 and result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert needle in line and line.endswith(f": {base}{encoded}")


# -- the origin says why ---------------------------------------------------------------


def refusal(url: str) -> str:
    response = httpx.get(url)
    assert response.status_code == 403
    return re.search(r"<Message>(.*)</Message>", response.text).group(1)  # type: ignore[union-attr]


def test_the_origin_refuses_with_the_reason(ws: Workspace, ec_keys: Keys) -> None:
    first, second = (f"{ws.origin.base_url}/truefire/{s}.mp4" for _, s in ws.downloadable()[:2])
    elsewhere = sign(ws, first, "--ip-address", "10.0.0.0/8")
    assert refusal(elsewhere) == (
        "client address 127.0.0.1 is not in the policy's IpAddress 10.0.0.0/8"
    )
    tomorrow = str(int(time.time()) + 86400)
    assert refusal(sign(ws, first, "--date-greater-than", tomorrow)) == (
        "signature not valid yet (DateGreaterThan)"
    )
    shared = sign(ws, first, "--policy-resource", first.replace(".mp4", "*"))
    assert httpx.get(shared).status_code == 200
    assert refusal(shared.replace(first, second)) == "the URL does not match the policy's Resource"
    sha256 = sign(ws, first, "--hash-algorithm", "SHA256", keys=ec_keys)
    assert refusal(sha256.removesuffix("&Hash-Algorithm=SHA256")) == "signature does not match"
    assert refusal(sha256.replace(EC_KEY_PAIR_ID, KEY_PAIR_ID)) == "signature does not match"


def test_origin_command_checks_ecdsa_signatures(ws: Workspace, ec_keys: Keys) -> None:
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "tfbulk", "origin", "--synthetic", "--port", "0",
            "--public-key", str(ec_keys.public_file), "--key-pair-id", EC_KEY_PAIR_ID,
        ],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(),
    )  # fmt: skip
    try:
        base = (proc.stdout.readline() if proc.stdout else "").split()[1]
        url = f"{base}/truefire/1001.mp4"
        for flags in ([], ["--hash-algorithm", "SHA256", "--policy-resource", f"{base}/*"]):
            assert httpx.get(sign(ws, url, *flags, keys=ec_keys)).status_code == 200
        assert httpx.get(sign(ws, url)).status_code == 403  # the RSA key is not its pair
    finally:
        stop_origin(proc, signal.SIGINT)
