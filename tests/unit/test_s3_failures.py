"""How the S3 destination's storage errors become attempt failures for the engine."""

from __future__ import annotations

import httpx
import pytest

from tfbulk.pipeline.retry import AttemptFailed, Kind
from tfbulk.pipeline.s3client import S3Error
from tfbulk.pipeline.s3dest import _failure


@pytest.mark.parametrize(
    ("error", "kind", "restart"),
    [
        (S3Error(404, "NoSuchUpload", "gone"), Kind.NETWORK, True),
        (S3Error(403, "AccessDenied", "no"), Kind.CLIENT, False),  # not the CDN's "forbidden"
        (S3Error(404, "NoSuchBucket", "no"), Kind.CLIENT, False),  # not the video's "gone"
        (S3Error(503, "SlowDown", "later"), Kind.SERVER, False),
        (httpx.ConnectError("refused"), Kind.NETWORK, False),
    ],
)
def test_storage_errors(error: Exception, kind: Kind, restart: bool) -> None:
    failure = _failure(error)
    assert isinstance(failure, AttemptFailed)
    assert (failure.kind, failure.restart) == (kind, restart)
    assert str(failure).startswith("storing the object")
