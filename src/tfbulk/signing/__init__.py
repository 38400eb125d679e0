"""URL signers: pure functions of (URL, key, time); loading keys is `credentials`' job."""

from __future__ import annotations

import re
from typing import Protocol

from tfbulk.signing.cloudfront import CloudFrontSigner, PolicySigner
from tfbulk.signing.s3 import S3Signer


class Signer(Protocol):
    """Turns a plain URL into one the origin accepts, valid from `now` on."""

    def sign(self, url: str, now: float) -> str: ...


class Unsigned:
    """`--signer none`: public origins and mirrors take the plain URL."""

    def sign(self, url: str, now: float) -> str:  # noqa: ARG002 - same shape as real signers
        return url


__all__ = ["CloudFrontSigner", "PolicySigner", "S3Signer", "Signer", "Unsigned", "redact"]


_SECRET_PARAM = re.compile(
    r"(Signature|Policy|Key-Pair-Id|X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token)=[^&\s\"'<>),;]+",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """Hide signature material in any text bound for a log line or an error message."""
    return _SECRET_PARAM.sub(r"\1=REDACTED", text)
