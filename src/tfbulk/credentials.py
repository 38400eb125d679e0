"""Load signing material from files and build the signer a run asks for.

This is the only place that reads key files and AWS credentials, so every error about them
is worded once, and never contains the key or the secret itself.
"""

from __future__ import annotations

import configparser
import os
import re
import stat
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tfbulk.errors import BadInput
from tfbulk.settings import SignerSettings
from tfbulk.signing import Signer, Unsigned
from tfbulk.signing.cloudfront import (
    CloudFrontSigner,
    PolicySigner,
    PrivateKey,
    PublicKey,
    can_sign,
)
from tfbulk.signing.policy import Conditions, ResourcePattern
from tfbulk.signing.s3 import MAX_EXPIRES, AwsCredentials, S3Signer

# Profile settings that get credentials some other way than static keys.
_NOT_STATIC = (
    "role_arn",
    "credential_process",
    "sso_session",
    "sso_start_url",
    "web_identity_token_file",
)
_REGION = re.compile(r"[A-Za-z0-9_-]+")
MIN_RSA_BITS = 2048
KEY_ADVICE = "CloudFront takes RSA of 2048 bits or more, or ECDSA P-256 (see docs/signers.md)"


def load_private_key(path: Path) -> PrivateKey:
    """Read a PEM private key CloudFront can use (RSA 2048+ or ECDSA P-256), with a message
    that says what is wrong and how to fix it."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BadInput(f"private key {path} does not exist; pass --private-key PATH") from None
    except IsADirectoryError:
        raise BadInput(f"private key {path} is a directory; pass the PEM file") from None
    except PermissionError:
        raise BadInput(f"private key {path} is not readable by this user") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise BadInput(f"private key {path} is encrypted; export it without a passphrase") from None
    except ValueError:
        raise BadInput(
            f"private key {path} is not a PEM private key; "
            "use the CloudFront key pair's private key (-----BEGIN ... PRIVATE KEY-----)"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) or not _usable(key):
        raise BadInput(f"private key {path} is {describe_key(key)}; {KEY_ADVICE}")
    return key


def load_public_key(path: Path) -> PublicKey:
    """Read a PEM public key (the origin's side of a key pair): RSA 2048+ or ECDSA P-256."""
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except OSError as exc:
        raise BadInput(f"public key {path}: {exc.strerror}") from None
    except ValueError:
        raise BadInput(f"public key {path} is not a PEM public key") from None
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey) or not _usable(key):
        raise BadInput(f"public key {path} is {describe_key(key)}; {KEY_ADVICE}")
    return key


def _usable(key: PrivateKey | PublicKey) -> bool:
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return key.key_size >= MIN_RSA_BITS
    return isinstance(key.curve, ec.SECP256R1)


def describe_key(key: object) -> str:
    """What a key is, for messages and doctor: `RSA 2048-bit`, `ECDSA P-256`, `Ed25519`."""
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return "ECDSA P-256" if isinstance(key.curve, ec.SECP256R1) else f"ECDSA {key.curve.name}"
    kind = type(key).__name__.removesuffix("PrivateKey").removesuffix("PublicKey")
    size = getattr(key, "key_size", None)
    return f"{kind} {size}-bit" if size else kind


def is_world_readable(path: Path) -> bool:
    """A private key others can read is worth a warning (doctor)."""
    return bool(path.stat().st_mode & stat.S_IROTH)


def build_signer(settings: SignerSettings) -> Signer:
    """The signer for `--signer`, failing early (exit 2) on missing or bad material."""
    if settings.kind == "none":
        return Unsigned()
    if settings.kind == "cloudfront":
        if not settings.key_pair_id:
            raise BadInput("--key-pair-id (or TFBULK_KEY_PAIR_ID) is required to sign URLs")
        if settings.private_key is None:
            raise BadInput("--private-key (or TFBULK_PRIVATE_KEY) is required to sign URLs")
        return _cloudfront_signer(load_private_key(settings.private_key), settings)
    if settings.kind == "s3":
        lifetime = s3_lifetime(settings.expires)
        region = check_region(settings.region)
        credentials, _ = load_aws_credentials(settings.profile)
        return S3Signer(credentials, region, lifetime)
    raise BadInput(f"--signer {settings.kind!r} is not available; use cloudfront, s3 or none")


def _cloudfront_signer(key: PrivateKey, settings: SignerSettings) -> Signer:
    """Per-URL signatures (canned, or custom with conditions), or one shared policy when
    `--policy-resource` is given; refused at once if this system cannot make them."""
    assert settings.key_pair_id is not None
    policy = settings.policy
    if not can_sign(key, policy.hash_algorithm):
        raise BadInput(
            f"this system's crypto policy refuses {policy.hash_algorithm} signatures "
            "(FIPS mode?); pass --hash-algorithm SHA256, which CloudFront accepts"
        )
    conditions = Conditions(policy.date_greater_than, policy.ip_address)
    if policy.resource is None:
        return CloudFrontSigner(
            key, settings.key_pair_id, settings.expires, policy.hash_algorithm, conditions
        )
    return PolicySigner(
        key,
        settings.key_pair_id,
        settings.expires,
        ResourcePattern(policy.resource),
        hash_algorithm=policy.hash_algorithm,
        conditions=conditions,
    )


def s3_lifetime(expires: float) -> int:
    """`--expires` as X-Amz-Expires: whole seconds, at most the week SigV4 allows."""
    if expires > MAX_EXPIRES:
        raise BadInput(
            f"--expires {expires:g}s is longer than the 7 days ({MAX_EXPIRES}s) "
            "an S3 presigned URL may last"
        )
    if expires < 1:
        raise BadInput(f"--expires {expires:g}s: an S3 presigned URL lasts at least 1s")
    return int(expires)


def check_region(region: str, flag: str = "--region") -> str:
    """The region goes into the credential scope and the host name: refuse anything odd."""
    if not _REGION.fullmatch(region):
        raise BadInput(f"{flag} {region!r} is not a region name; use e.g. us-east-1")
    return region


# -- AWS credentials ---------------------------------------------------------------------


def load_aws_credentials(
    profile: str | None, used_by: tuple[str, str] = ("--signer s3", "--profile")
) -> tuple[AwsCredentials, str]:
    """Static AWS credentials from the standard sources, and which source they came from.

    The order is the AWS CLI's: an explicit `--profile` is used alone; otherwise
    AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, then the profile named by
    AWS_PROFILE (or `default`) in the shared credentials file, then in the config file
    (AWS_SHARED_CREDENTIALS_FILE and AWS_CONFIG_FILE move those files). `used_by` names
    the option they are for and its profile flag, for the message when there are none.
    """
    if profile is None:
        found = _from_environment()
        if found is not None:
            return found, "environment variables AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
    name = profile or os.environ.get("AWS_PROFILE") or "default"
    files = (
        (_aws_file("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"), (name,)),
        (
            _aws_file("AWS_CONFIG_FILE", "~/.aws/config"),
            (f"profile {name}", "default") if name == "default" else (f"profile {name}",),
        ),
    )
    seen_in: list[Path] = []
    for path, sections in files:
        parser = _read_ini(path)
        for section in (s for s in sections if parser.has_section(s)):
            seen_in.append(path)
            found = _from_profile(parser[section], name, path)
            if found is not None:
                return found, f"profile {name} in {path}"
    if seen_in:
        raise BadInput(
            f"AWS profile {name!r} in {seen_in[0]} has no aws_access_key_id and "
            "aws_secret_access_key"
        )
    if profile or os.environ.get("AWS_PROFILE"):
        where = " or ".join(str(path) for path, _ in files)
        raise BadInput(f"AWS profile {name!r} is not in {where}")
    raise BadInput(
        f"no AWS credentials found for {used_by[0]}: set AWS_ACCESS_KEY_ID and "
        f"AWS_SECRET_ACCESS_KEY, or name a profile with {used_by[1]} (or AWS_PROFILE)"
    )


def _from_environment() -> AwsCredentials | None:
    access_key = os.environ.get("AWS_ACCESS_KEY_ID")
    secret_key = os.environ.get("AWS_SECRET_ACCESS_KEY")
    if not access_key and not secret_key:
        return None
    if not access_key or not secret_key:
        given, missing = (
            ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
            if access_key
            else ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID")
        )
        raise BadInput(f"{given} is set but {missing} is not; set both (or neither)")
    return AwsCredentials(access_key, secret_key, os.environ.get("AWS_SESSION_TOKEN") or None)


def _from_profile(
    section: configparser.SectionProxy, name: str, path: Path
) -> AwsCredentials | None:
    """Static keys of one profile section; None if it has none (the next file may)."""
    access_key = section.get("aws_access_key_id", "").strip()
    secret_key = section.get("aws_secret_access_key", "").strip()
    if access_key and secret_key:
        token = section.get("aws_session_token", "").strip() or None
        return AwsCredentials(access_key, secret_key, token)
    if access_key or secret_key:
        raise BadInput(
            f"AWS profile {name!r} in {path} needs both aws_access_key_id and aws_secret_access_key"
        )
    other = next((option for option in _NOT_STATIC if option in section), None)
    if other is not None:
        raise BadInput(
            f"AWS profile {name!r} in {path} gets its credentials through {other}, which "
            "tfbulk does not support; give it static keys, or export them to the environment "
            f"with `aws configure export-credentials --profile {name} --format env`"
        )
    return None


def _aws_file(variable: str, default: str) -> Path:
    return Path(os.environ.get(variable) or default).expanduser()


def _read_ini(path: Path) -> configparser.RawConfigParser:
    """An AWS INI file (empty if absent); its errors name the line, never its content."""
    parser = configparser.RawConfigParser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return parser
    except UnicodeDecodeError:
        raise BadInput(f"{path} is not a UTF-8 text file") from None
    except OSError as exc:
        raise BadInput(f"cannot read {path}: {exc.strerror}") from None
    try:
        parser.read_string(text, source=str(path))
    except configparser.Error as exc:
        line = getattr(exc, "lineno", None) or next(iter(getattr(exc, "errors", [])), (None,))[0]
        at = f" at line {line}" if line else ""
        raise BadInput(f"{path} is not a valid AWS INI file{at}") from None
    return parser


def write_key_pair(
    private_path: Path, public_path: Path, kind: Literal["rsa", "ec"] = "rsa"
) -> PrivateKey:
    """A throw-away RSA 2048 or ECDSA P-256 key pair (demo, tests); the private half is 0600."""
    key: PrivateKey = (
        rsa.generate_private_key(public_exponent=65537, key_size=MIN_RSA_BITS)
        if kind == "rsa"
        else ec.generate_private_key(ec.SECP256R1())
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    public_path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return key
