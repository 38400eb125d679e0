"""Signing material: AWS credentials for `--signer s3` in the AWS CLI's order, CloudFront
keys (RSA 2048+ or ECDSA P-256), and one-line errors that name the fix and never the secret."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa

from tfbulk.credentials import (
    build_signer,
    describe_key,
    load_aws_credentials,
    load_private_key,
    load_public_key,
    write_key_pair,
)
from tfbulk.errors import BadInput
from tfbulk.settings import PolicySettings, SignerSettings
from tfbulk.signing import cloudfront
from tfbulk.signing.cloudfront import CloudFrontSigner, PolicySigner
from tfbulk.signing.policy import Conditions
from tfbulk.signing.s3 import AwsCredentials, S3Signer

SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


@pytest.fixture(autouse=True)
def clean_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No AWS variable from the machine running the tests; HOME is an empty folder."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def refusal(profile: str | None = None) -> str:
    with pytest.raises(BadInput) as caught:
        load_aws_credentials(profile)
    message = str(caught.value)
    assert SECRET not in message and "\n" not in message
    return message


def test_environment_variables_come_first(monkeypatch: pytest.MonkeyPatch, clean_aws: Path) -> None:
    write(clean_aws / ".aws" / "credentials", "[default]\naws_access_key_id = AKIDFILE\n")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", "TOKEN/+=")
    credentials, source = load_aws_credentials(None)
    assert credentials == AwsCredentials("AKIDENV", SECRET, "TOKEN/+=")
    assert "environment" in source and SECRET not in source


def test_aws_profile_does_not_beat_environment_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_PROFILE", "missing")
    assert load_aws_credentials(None)[0].access_key == "AKIDENV"


def test_explicit_profile_beats_environment_keys(
    monkeypatch: pytest.MonkeyPatch, clean_aws: Path
) -> None:
    write(
        clean_aws / ".aws" / "credentials",
        f"[video]\naws_access_key_id = AKIDVIDEO\naws_secret_access_key = {SECRET}\n",
    )
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "other")
    credentials, source = load_aws_credentials("video")
    assert credentials == AwsCredentials("AKIDVIDEO", SECRET, None)
    assert source == f"profile video in {clean_aws / '.aws' / 'credentials'}"


def test_default_profile_of_the_shared_credentials_file(clean_aws: Path) -> None:
    write(
        clean_aws / ".aws" / "credentials",
        "[other]\naws_access_key_id = AKIDOTHER\naws_secret_access_key = x\n\n"
        f"[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = {SECRET}\n"
        "aws_session_token = TOKEN\n",
    )
    assert load_aws_credentials(None)[0] == AwsCredentials("AKIDDEFAULT", SECRET, "TOKEN")


def test_files_moved_by_environment_and_profile_sections_of_the_config_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = write(
        tmp_path / "elsewhere" / "config",
        "[default]\nregion = eu-west-1\n\n"
        "[profile video]\nregion = eu-west-1\naws_access_key_id = AKIDCONFIG\n"
        f"aws_secret_access_key = {SECRET}\ns3 =\n    addressing_style = virtual\n",
    )
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_PROFILE", "video")
    credentials, source = load_aws_credentials(None)
    assert credentials.access_key == "AKIDCONFIG"
    assert source == f"profile video in {config}"


def test_default_section_of_the_config_file(clean_aws: Path) -> None:
    write(
        clean_aws / ".aws" / "config",
        f"[default]\naws_access_key_id = AKIDCONF\naws_secret_access_key = {SECRET}\n",
    )
    assert load_aws_credentials(None)[0].access_key == "AKIDCONF"


def test_credentials_file_beats_config_file(clean_aws: Path) -> None:
    write(
        clean_aws / ".aws" / "credentials",
        f"[video]\naws_access_key_id = AKIDCREDS\naws_secret_access_key = {SECRET}\n",
    )
    write(
        clean_aws / ".aws" / "config",
        "[profile video]\naws_access_key_id = AKIDCONF\naws_secret_access_key = x\n",
    )
    assert load_aws_credentials("video")[0].access_key == "AKIDCREDS"


def test_nothing_anywhere_says_where_to_put_credentials() -> None:
    message = refusal()
    assert "no AWS credentials found" in message
    assert "AWS_ACCESS_KEY_ID" in message and "--profile" in message


def test_unknown_profile_names_both_files(clean_aws: Path) -> None:
    write(clean_aws / ".aws" / "credentials", "[default]\naws_access_key_id = A\n")
    message = refusal("nope")
    assert "'nope'" in message
    assert str(clean_aws / ".aws" / "credentials") in message
    assert str(clean_aws / ".aws" / "config") in message


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"AWS_ACCESS_KEY_ID": "AKID"}, "AWS_SECRET_ACCESS_KEY is not"),
        ({"AWS_SECRET_ACCESS_KEY": SECRET}, "AWS_ACCESS_KEY_ID is not"),
    ],
)
def test_half_a_key_pair_in_the_environment(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], needle: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert needle in refusal()


def test_half_a_key_pair_in_a_profile(clean_aws: Path) -> None:
    write(clean_aws / ".aws" / "credentials", f"[default]\naws_secret_access_key = {SECRET}\n")
    assert "needs both aws_access_key_id and aws_secret_access_key" in refusal()


@pytest.mark.parametrize(
    "setting",
    [
        "role_arn = arn:aws:iam::123456789012:role/x\nsource_profile = default",
        "credential_process = /usr/bin/get-creds",
        "sso_session = corp",
    ],
)
def test_profiles_without_static_keys_are_named_as_unsupported(
    clean_aws: Path, setting: str
) -> None:
    write(clean_aws / ".aws" / "config", f"[profile video]\n{setting}\n")
    message = refusal("video")
    assert setting.split(" ")[0] in message and "export-credentials" in message


def test_profile_with_no_keys_at_all(clean_aws: Path) -> None:
    write(clean_aws / ".aws" / "config", "[profile video]\nregion = eu-west-1\n")
    assert "has no aws_access_key_id" in refusal("video")


def test_a_broken_file_names_the_line_but_not_its_content(clean_aws: Path) -> None:
    write(clean_aws / ".aws" / "credentials", f"aws_secret_access_key = {SECRET}\n[default]\n")
    message = refusal()
    assert "is not a valid AWS INI file at line 1" in message


def test_build_signer_makes_an_s3_signer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKID")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    signer = build_signer(SignerSettings(kind="s3", region="eu-west-1", expires=5400.9))
    assert signer == S3Signer(AwsCredentials("AKID", SECRET), "eu-west-1", 5400)


@pytest.mark.parametrize(
    ("settings", "needle"),
    [
        (SignerSettings(kind="s3", expires=7 * 86400 + 1), "longer than the 7 days"),
        (SignerSettings(kind="s3", expires=0.5), "at least 1s"),
        (SignerSettings(kind="s3", region="eu west"), "--region 'eu west'"),
        (SignerSettings(kind="s3"), "no AWS credentials found"),
    ],
)
def test_build_signer_refuses_bad_s3_settings(settings: SignerSettings, needle: str) -> None:
    with pytest.raises(BadInput, match=needle):
        build_signer(settings)


# -- CloudFront keys ----------------------------------------------------------------------


def _pem(key: object) -> bytes:
    return key.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _public_pem(key: object) -> bytes:
    return key.public_key().public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.mark.parametrize(
    ("make", "described"),
    [
        (lambda: rsa.generate_private_key(65537, 2048), "RSA 2048-bit"),
        (lambda: rsa.generate_private_key(65537, 3072), "RSA 3072-bit"),
        (lambda: ec.generate_private_key(ec.SECP256R1()), "ECDSA P-256"),
    ],
    ids=["rsa2048", "rsa3072", "p256"],
)
def test_cloudfront_keys_load(tmp_path: Path, make: Callable[[], object], described: str) -> None:
    key = make()
    write(tmp_path / "k.pem", _pem(key).decode())
    write(tmp_path / "k.pub", _public_pem(key).decode())
    assert describe_key(load_private_key(tmp_path / "k.pem")) == described
    assert describe_key(load_public_key(tmp_path / "k.pub")) == described


@pytest.mark.parametrize(
    ("key", "header"),
    [
        (rsa.generate_private_key(65537, 2048), b"-----BEGIN RSA PRIVATE KEY-----"),
        (ec.generate_private_key(ec.SECP256R1()), b"-----BEGIN EC PRIVATE KEY-----"),
    ],
    ids=["pkcs1", "sec1"],
)
def test_traditional_pem_loads_too(tmp_path: Path, key: object, header: bytes) -> None:
    """`openssl genrsa` (older) and `openssl ecparam -genkey` write these, not PKCS#8."""
    pem = key.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    assert pem.startswith(header)
    (tmp_path / "k.pem").write_bytes(pem)
    assert describe_key(load_private_key(tmp_path / "k.pem")) == describe_key(key)


@pytest.mark.parametrize(
    ("make", "found"),
    [
        (lambda: rsa.generate_private_key(65537, 1024), "is RSA 1024-bit"),
        (lambda: ec.generate_private_key(ec.SECP384R1()), "is ECDSA secp384r1"),
        (lambda: ec.generate_private_key(ec.SECP256K1()), "is ECDSA secp256k1"),
        (ed25519.Ed25519PrivateKey.generate, "is Ed25519"),
        (lambda: dsa.generate_private_key(2048), "is DSA 2048-bit"),
    ],
    ids=["rsa1024", "p384", "secp256k1", "ed25519", "dsa"],
)
def test_other_keys_are_refused_naming_what_was_found(
    tmp_path: Path, make: Callable[[], object], found: str
) -> None:
    key = make()
    write(tmp_path / "k.pem", _pem(key).decode())
    write(tmp_path / "k.pub", _public_pem(key).decode())
    advice = "CloudFront takes RSA of 2048 bits or more, or ECDSA P-256"
    for load, path in ((load_private_key, "k.pem"), (load_public_key, "k.pub")):
        with pytest.raises(BadInput) as caught:
            load(tmp_path / path)
        message = str(caught.value)
        assert found in message and advice in message and "\n" not in message
        assert "PRIVATE KEY" not in message


@pytest.fixture(scope="module")
def cf_key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cf")
    write_key_pair(folder / "key.pem", folder / "key.pub", "ec")
    return folder / "key.pem"


def _cloudfront(key_file: Path, policy: PolicySettings) -> SignerSettings:
    return SignerSettings(key_pair_id="KID", private_key=key_file, expires=90, policy=policy)


def test_build_signer_follows_the_policy_flags(cf_key_file: Path) -> None:
    canned = build_signer(_cloudfront(cf_key_file, PolicySettings("SHA256")))
    assert isinstance(canned, CloudFrontSigner) and canned.hash_algorithm == "SHA256"
    assert not canned.conditions.any
    per_url = build_signer(_cloudfront(cf_key_file, PolicySettings(ip_address="10.0.0.0/8")))
    assert isinstance(per_url, CloudFrontSigner)
    assert per_url.conditions == Conditions(None, "10.0.0.0/8")
    shared = build_signer(
        _cloudfront(cf_key_file, PolicySettings(resource="https://h/*", date_greater_than=5))
    )
    assert isinstance(shared, PolicySigner) and shared.resource.text == "https://h/*"
    assert shared.conditions == Conditions(5, None) and shared.lifetime == 90


def test_a_system_that_refuses_sha1_fails_at_the_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Under FIPS mode the crypto library refuses SHA-1 signatures; stand in for that with a
    hash it refuses for RSA here, so the refusal comes from the library itself."""
    monkeypatch.setitem(cloudfront._HASHES, "SHA1", lambda: hashes.BLAKE2b(64))
    write_key_pair(tmp_path / "k.pem", tmp_path / "k.pub")
    with pytest.raises(BadInput, match=r"refuses SHA1 signatures .*--hash-algorithm SHA256"):
        build_signer(_cloudfront(tmp_path / "k.pem", PolicySettings()))
    assert isinstance(
        build_signer(_cloudfront(tmp_path / "k.pem", PolicySettings("SHA256"))), CloudFrontSigner
    )
