"""botocore as the reference for S3 presigned URLs, with its clock pinned.

botocore is a test-only dependency. Its SigV4 signer reads the time through the `datetime`
module of `botocore.auth` (older releases) or `botocore.compat` (newer ones): swapping
that module for one whose clock is frozen works with both.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import types
from collections.abc import Iterator
from unittest import mock

import botocore.auth
import botocore.compat
import botocore.session
from botocore.client import BaseClient
from botocore.config import Config
from botocore.credentials import Credentials

from tfbulk.signing.s3 import AwsCredentials

SESSION = botocore.session.get_session()
EPOCH = datetime.datetime(1970, 1, 1)


@contextlib.contextmanager
def botocore_clock(at: datetime.datetime) -> Iterator[None]:
    """Pin the time botocore's SigV4 signer reads, whichever helper its version uses."""

    class Frozen(datetime.datetime):
        @classmethod
        def now(cls, tz: datetime.tzinfo | None = None) -> datetime.datetime:  # type: ignore[override]
            return at.replace(tzinfo=tz) if tz else at

        @classmethod
        def utcnow(cls) -> datetime.datetime:  # type: ignore[override]
            return at

    fake = types.SimpleNamespace(**{**vars(datetime), "datetime": Frozen})
    with (
        mock.patch.object(botocore.auth, "datetime", fake),
        mock.patch.object(botocore.compat, "datetime", fake),
    ):
        yield


@functools.cache
def _client(region: str, endpoint_url: str | None, addressing: str | None) -> BaseClient:
    return SESSION.create_client(
        "s3",
        region_name=region,
        aws_access_key_id="replaced-per-call",
        aws_secret_access_key="replaced-per-call",
        endpoint_url=endpoint_url,
        config=Config(
            signature_version="s3v4", s3={"addressing_style": addressing} if addressing else None
        ),
    )


def botocore_url(
    credentials: AwsCredentials,
    region: str,
    bucket: str,
    key: str,
    instant: tuple[int, int],
    expires: int,
    *,
    endpoint_url: str | None = None,
    addressing: str | None = None,
    version_id: str | None = None,
) -> str:
    """botocore's presigned GET for the object at `instant` (whole seconds, microseconds)."""
    client = _client(region, endpoint_url, addressing)
    # Building a client costs ~70 ms, signing ~4 ms: one client per configuration, signing
    # with this example's credentials. Were they not used, the URLs would differ and fail.
    client._request_signer._credentials = Credentials(  # type: ignore[attr-defined]
        credentials.access_key, credentials.secret_key, credentials.token
    )
    params = {"Bucket": bucket, "Key": key} | ({"VersionId": version_id} if version_id else {})
    at = EPOCH + datetime.timedelta(seconds=instant[0], microseconds=instant[1])
    with botocore_clock(at):
        return client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires)
