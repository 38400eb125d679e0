"""URL signers: pure functions of (URL, key, time); loading keys is `credentials`' job.

The signers themselves live in `cloudfront` and `s3` (which load cryptography); this
module stays light, so what only needs `redact` or the protocol does not pay for them."""

from __future__ import annotations

import re
from typing import Protocol


class Signer(Protocol):
    """Turns a plain URL into one the origin accepts, valid from `now` on."""

    def sign(self, url: str, now: float) -> str: ...


class Unsigned:
    """`--signer none`: public origins and mirrors take the plain URL."""

    def sign(self, url: str, now: float) -> str:  # noqa: ARG002 - same shape as real signers
        return url


__all__ = ["Signer", "Unsigned", "redact"]


_SECRET_PARAM = re.compile(
    r"(Signature|Policy|Key-Pair-Id|X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token)=[^&\s\"'<>),;]+",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """Hide signature material in any text bound for a log line or an error message."""
    return _SECRET_PARAM.sub(r"\1=REDACTED", text)
