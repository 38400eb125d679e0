"""botocore as the reference for S3 presigned URLs, with its clock pinned.

botocore is a test-only dependency. Its SigV4 signer reads the time through the `datetime`
module of `botocore.auth` (older releases) or `botocore.compat` (newer ones): swapping
that module for one whose clock is frozen works with both.
"""

from __future__ import annotations

import contextlib
import datetime
import types
from collections.abc import Iterator
from unittest import mock

import botocore.auth
import botocore.compat
import botocore.session
from botocore.config import Config

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
    client = SESSION.create_client(
        "s3",
        region_name=region,
        aws_access_key_id=credentials.access_key,
        aws_secret_access_key=credentials.secret_key,
        aws_session_token=credentials.token,
        endpoint_url=endpoint_url,
        config=Config(
            signature_version="s3v4", s3={"addressing_style": addressing} if addressing else None
        ),
    )
    """botocore's presigned GET for the object at `instant` (whole seconds, microseconds)."""
    params = {"Bucket": bucket, "Key": key} | ({"VersionId": version_id} if version_id else {})
    at = EPOCH + datetime.timedelta(seconds=instant[0], microseconds=instant[1])
    with botocore_clock(at):
        return client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires)
