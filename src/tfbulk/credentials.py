"""Load signing material from files and build the signer a run asks for.

This is the only place that reads key files, so every error about them is worded once,
and never contains the key itself.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tfbulk.errors import BadInput
from tfbulk.settings import SignerSettings
from tfbulk.signing import CloudFrontSigner, Signer, Unsigned


def load_private_key(path: Path) -> rsa.RSAPrivateKey:
    """Read a PEM RSA private key, with a message that says what is wrong and how to fix it."""
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
    if not isinstance(key, rsa.RSAPrivateKey):
        raise BadInput(f"private key {path} is not an RSA key; CloudFront signs with RSA")
    return key


def load_public_key(path: Path) -> rsa.RSAPublicKey:
    """Read a PEM RSA public key (the origin's side of a key pair)."""
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except OSError as exc:
        raise BadInput(f"public key {path}: {exc.strerror}") from None
    except ValueError:
        raise BadInput(f"public key {path} is not a PEM public key") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise BadInput(f"public key {path} is not an RSA key")
    return key


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
            raise BadInput("--private-key (or TFBULK_PRIVATE_KEY_FILE) is required to sign URLs")
        key = load_private_key(settings.private_key)
        return CloudFrontSigner(key, settings.key_pair_id, settings.expires)
    raise BadInput(f"--signer {settings.kind!r} is not available; use cloudfront or none")


def write_key_pair(private_path: Path, public_path: Path, bits: int = 2048) -> rsa.RSAPrivateKey:
    """A throw-away RSA key pair (demo, tests); the private half is written 0600."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
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
