"""SigV4 header signing (the S3 destination's requests): the same Authorization as botocore's
S3 signer for the same request, time and credentials."""

from __future__ import annotations

import datetime

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from tests.s3_reference import EPOCH, botocore_clock
from tfbulk.signing.s3 import UNSIGNED_PAYLOAD, AwsCredentials, sign_request

CREDENTIALS = AwsCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
NOW = 1_767_225_600


def botocore_authorization(
    method: str, url: str, headers: dict[str, str], credentials: AwsCredentials
) -> str:
    """botocore's Authorization header for the request, its clock at NOW, payload unsigned."""
    request = AWSRequest(method=method, url=url, headers=dict(headers))
    request.context["client_config"] = Config(s3={"payload_signing_enabled": False})
    request.headers["X-Amz-Content-SHA256"] = UNSIGNED_PAYLOAD
    keys = Credentials(credentials.access_key, credentials.secret_key, credentials.token)
    with botocore_clock(EPOCH + datetime.timedelta(seconds=NOW)):
        S3SigV4Auth(keys, "s3", "eu-west-1").add_auth(request)
    return request.headers["Authorization"]


@pytest.mark.parametrize(
    ("method", "url", "headers"),
    [
        (
            "PUT",
            "http://127.0.0.1:9000/bucket/videos/a%20b.mp4",
            {"content-md5": "1B2M2Y8AsgTpgAmY7PhCfg=="},
        ),
        ("POST", "http://127.0.0.1:9000/bucket/videos/x.mp4?uploads", {}),
        (
            "PUT",
            "https://s3.example.com/bucket/k.mp4?partNumber=3&uploadId=abc%2Bdef",
            {"content-md5": "1B2M2Y8AsgTpgAmY7PhCfg=="},
        ),
        ("HEAD", "http://localhost:5000/b/p/1/2.mp4", {}),
        ("DELETE", "http://localhost:5000/b/p.mp4?uploadId=xyz", {}),
    ],
)
def test_authorization_matches_botocore(method: str, url: str, headers: dict[str, str]) -> None:
    added = sign_request(method, url, headers, CREDENTIALS, "eu-west-1", NOW)
    assert added["authorization"] == botocore_authorization(method, url, headers, CREDENTIALS)
    assert added["x-amz-date"] == "20260101T000000Z"


def test_session_token_is_signed() -> None:
    keys = AwsCredentials("ASIAEXAMPLE", "secret", token="session-token")
    url = "http://127.0.0.1:9000/bucket/k"
    added = sign_request("PUT", url, {}, keys, "eu-west-1", NOW)
    assert added["x-amz-security-token"] == "session-token"
    assert added["authorization"] == botocore_authorization("PUT", url, {}, keys)
