"""`--signer s3` end to end: the real CLI against the origin checking SigV4 presigned URLs."""

from __future__ import annotations

import os
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.conftest import Keys, Result, Workspace
from tests.s3_reference import botocore_url
from tfbulk.origin import Origin, SyntheticContent
from tfbulk.origin.sample import SampleCourse, SampleSegment, guitar_catalogue
from tfbulk.pipeline.plan import video_key
from tfbulk.signing.s3 import AwsCredentials

ACCESS_KEY = "AKIDTFBULKTEST0001"
SECRET = "tfbulk/TEST+secret/key/0123456789abcdefgh"
REGION = "eu-west-1"
BUCKET = "tfstream"
SIGNATURE = re.compile(r"X-Amz-Signature=[0-9a-f]{64}")


class S3Workspace(Workspace):
    """A workspace whose origin checks SigV4 and whose runs use `--signer s3`."""

    key_template = "{video_dir}/{video_name}_med.mp4"

    def run_args(self, *extra: str) -> list[str]:
        return [
            "run",
            "--snapshot", str(self.snapshot),
            "--dest", str(self.dest),
            "--signer", "s3",
            "--bucket", BUCKET,
            "--region", REGION,
            "--endpoint-url", self.origin.base_url,
            "--backoff-base", "0.05s",
            "--backoff-max", "0.2s",
            *extra,
        ]  # fmt: skip

    def aws(self, env: dict[str, str] | None) -> dict[str, str]:
        """Credentials in the environment unless `env` says otherwise; no AWS files."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET,
            "AWS_SHARED_CREDENTIALS_FILE": str(self.root / "no-credentials"),
            "AWS_CONFIG_FILE": str(self.root / "no-config"),
        } | (env or {})

    def cli(self, *args: str, timeout: float = 120, env: dict[str, str] | None = None) -> Result:
        return super().cli(*args, timeout=timeout, env=self.aws(env))

    def url_path(self, segment_id: int) -> str:
        course, video = next(
            (c.course_id, s.video)
            for c in self.catalogue
            for s in c.segments
            if s.segment_id == segment_id
        )
        key = video_key(video)
        assert key is not None
        rendered = self.key_template.format(
            video_dir=key.split("/", 1)[0] if "/" in key else "",
            video_name=key.rsplit("/", 1)[-1],
            course_id=course,
            segment_id=segment_id,
        )
        return f"/{BUCKET}/{quote(rendered, safe='/~')}"


@pytest.fixture(autouse=True)
def no_aws_settings_from_this_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)


@pytest.fixture
def s3(tmp_path: Path, keys: Keys) -> Iterator[S3Workspace]:
    content = SyntheticContent(min_size=2048, max_size=48 * 1024)
    with Origin(content=content, s3_credentials={ACCESS_KEY: SECRET}, s3_region=REGION) as origin:
        workspace = S3Workspace(tmp_path, origin, keys)
        workspace.write_catalogue(guitar_catalogue(3, 10))
        yield workspace


def test_full_s3_run_is_byte_identical(s3: S3Workspace) -> None:
    log = s3.root / "run.log"
    result = s3.run("--json", "--log-file", str(log))
    assert result.code == 0, result.stderr
    s3.assert_all_identical()
    assert result.json["success"] == len(s3.downloadable())
    assert {r.path for r in s3.origin.log} == {s3.url_path(s) for _, s in s3.downloadable()}
    assert all(r.status == 200 for r in s3.origin.log)
    text = log.read_text() + result.stdout + result.stderr
    assert SECRET not in text and not SIGNATURE.search(text)


def test_keys_with_spaces_plus_unicode_and_percent(s3: S3Workspace) -> None:
    videos = ["blues 101/lesson+01", "jazz/ü~naïve 02", "rock%20/a&b=c?", "日本/レッスン 3"]
    segments = tuple(
        SampleSegment(5000 + n, 100, f"mp4:{video}", f"Lesson {n}")
        for n, video in enumerate(videos)
    )
    s3.write_catalogue([SampleCourse(1, "Awkward names", (100,), segments)])
    result = s3.run("--json")
    assert result.code == 0, result.stderr
    s3.assert_all_identical()
    assert "/tfstream/blues%20101/lesson%2B01_med.mp4" in {r.path for r in s3.origin.log}


def test_signatures_shorter_than_the_queue_still_succeed(s3: S3Workspace) -> None:
    """Each attempt is presigned on the spot: 2-second URLs carry a longer queue."""
    s3.origin.speed = 60_000
    result = s3.run("--concurrency", "1", "--expires", "2s", "--json")
    assert result.code == 0, result.stderr
    assert result.json["elapsed_s"] > 4, "the queue must outlive one signature to mean anything"
    assert [r for r in s3.origin.log if r.status == 403] == []
    s3.assert_all_identical()


def test_wrong_secret_fails_every_segment_with_the_s3_hint(s3: S3Workspace) -> None:
    result = s3.run("--retries", "2", "--json", env={"AWS_SECRET_ACCESS_KEY": "not-the-secret"})
    assert result.code == 1
    assert result.json["failed"] == len(s3.downloadable())
    failed = s3.cli("failed", "--dest", str(s3.dest), "--json").json
    assert {item["error"] for item in failed} == {
        "HTTP 403 Forbidden: The request signature we calculated does not match the signature "
        "you provided. Check your key and signing method. (check the AWS credentials, "
        "--bucket, --region and this machine's clock)"
    }
    assert s3.final_files() == []
    assert "not-the-secret" not in result.stdout + result.stderr


def test_wrong_region_is_named_by_the_origin(s3: S3Workspace) -> None:
    result = s3.run("--retries", "1", "--region", "us-east-2")
    assert result.code == 1
    failed = s3.cli("failed", "--dest", str(s3.dest), "--json").json
    assert failed[0]["error"] == (
        "HTTP 400 Bad Request: Error parsing the X-Amz-Credential parameter; "
        "the region 'us-east-2' is wrong; expecting 'eu-west-1'"
    )


def test_environment_and_a_profile_configure_an_s3_run(s3: S3Workspace) -> None:
    credentials = s3.root / "aws-credentials"
    credentials.write_text(
        f"[video]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET}\n"
    )
    s3.key_template = "{course_id}/{segment_id}.mp4"
    env = {
        "AWS_ACCESS_KEY_ID": "",
        "AWS_SECRET_ACCESS_KEY": "",
        "AWS_SHARED_CREDENTIALS_FILE": str(credentials),
        "TFBULK_SNAPSHOT": str(s3.snapshot),
        "TFBULK_DEST": str(s3.dest),
        "TFBULK_SIGNER": "s3",
        "TFBULK_BUCKET": BUCKET,
        "TFBULK_REGION": REGION,
        "TFBULK_ENDPOINT_URL": s3.origin.base_url,
        "TFBULK_KEY_TEMPLATE": s3.key_template,
        "TFBULK_PROFILE": "video",
    }
    result = s3.cli("run", "--json", env=env)
    assert result.code == 0, result.stderr
    assert {r.path for r in s3.origin.log} == {
        f"/tfstream/{c}/{s}.mp4" for c, s in s3.downloadable()
    }
    s3.assert_all_identical()


# -- tfbulk sign -------------------------------------------------------------------------


def sign(s3: S3Workspace, key: str, *flags: str) -> str:
    result = s3.cli("sign", "--signer", "s3", "--bucket", BUCKET, *flags, key)
    assert result.code == 0, result.stderr
    return result.stdout.strip()


def test_sign_matches_botocore_virtual_hosted(s3: S3Workspace) -> None:
    key = "guitar101/lesson 03+ü_med.mp4"
    expires_at = 2_000_000_000
    ours = sign(s3, key, "--expires", "2h", "--expires-at", str(expires_at))
    credentials = AwsCredentials(ACCESS_KEY, SECRET)
    assert ours == botocore_url(credentials, "us-east-1", BUCKET, key, (expires_at - 7200, 0), 7200)
    assert ours.startswith("https://tfstream.s3.amazonaws.com/guitar101/lesson%2003%2B%C3%BC_med")


def test_sign_matches_botocore_path_style_and_the_origin_serves_it(s3: S3Workspace) -> None:
    segment = s3.downloadable()[0][1]
    key = s3.url_path(segment).removeprefix(f"/{BUCKET}/")
    expires_at = int(time.time()) + 3600
    flags = ("--region", REGION, "--endpoint-url", s3.origin.base_url, "--expires", "1h")
    ours = sign(s3, key, *flags, "--expires-at", str(expires_at))
    expected = botocore_url(
        AwsCredentials(ACCESS_KEY, SECRET),
        REGION,
        BUCKET,
        key,
        (expires_at - 3600, 0),
        3600,
        endpoint_url=s3.origin.base_url,
    )
    assert ours == expected
    response = httpx.get(ours)
    assert response.status_code == 200 and response.content == s3.expected(segment)
    assert httpx.get(ours.split("?")[0]).status_code == 403


def test_expired_presigned_url_is_refused_like_s3(s3: S3Workspace) -> None:
    flags = ("--region", REGION, "--endpoint-url", s3.origin.base_url, "--expires", "60s")
    expired = sign(s3, "a/b_med.mp4", *flags, "--expires-at", str(int(time.time()) - 5))
    response = httpx.get(expired)
    assert response.status_code == 403
    assert b"<Code>AccessDenied</Code><Message>Request has expired</Message>" in response.content


# -- bad input ---------------------------------------------------------------------------


def drop(args: list[str], flag: str) -> list[str]:
    index = args.index(flag)
    return [*args[:index], *args[index + 2 :]]


NO_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}
BAD_INPUT: dict[str, tuple[list[str], dict[str, str], str]] = {
    "no bucket": (["--bucket-dropped"], {}, "--bucket (or TFBULK_BUCKET) is required"),
    "no credentials": ([], NO_CREDENTIALS, "no AWS credentials found"),
    "half a key pair": ([], {"AWS_SECRET_ACCESS_KEY": ""}, "AWS_SECRET_ACCESS_KEY is not"),
    "unknown profile": (["--profile", "nope"], {}, "AWS profile 'nope' is not in"),
    "expires over a week": (["--expires", "8d"], {}, "longer than the 7 days"),
    "bad region": (["--region", "eu/west"], {}, "--region 'eu/west' is not a region name"),
    "bad endpoint": (["--endpoint-url", "s3.local"], {}, "--endpoint-url 's3.local'"),
    "bad key template": (["--key-template", "{video_id}.mp4"], {}, "unknown placeholder"),
    "a url template too": (["--url-template", "https://x/{segment_id}"], {}, "--url-template"),
    "a url template from the environment": (
        [],
        {"TFBULK_URL_TEMPLATE": "https://x/{segment_id}"},
        "does not apply to --signer s3",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_s3_input_exits_2_with_one_line(s3: S3Workspace, case: str) -> None:
    extra, env, needle = BAD_INPUT[case]
    args = s3.run_args()
    args = drop(args, "--bucket") if extra == ["--bucket-dropped"] else [*args, *extra]
    result = s3.cli(*args, env=env)
    assert result.code == 2, (result.stdout, result.stderr)
    assert needle in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tfbulk: error:"), result.stderr
    assert "Traceback" not in result.stderr + result.stdout and SECRET not in result.stderr
    assert s3.origin.log == []
    if s3.state.exists():
        with sqlite3.connect(s3.state) as conn:
            assert conn.execute("SELECT count(*) FROM segments").fetchone()[0] == 0


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--expires", "8d", "k"], "longer than the 7 days"),
        (["k"], "no AWS credentials found"),
    ],
)
def test_bad_sign_input_exits_2(s3: S3Workspace, args: list[str], needle: str) -> None:
    result = s3.cli("sign", "--signer", "s3", "--bucket", BUCKET, *args, env=NO_CREDENTIALS)
    assert result.code == 2 and needle in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def s3_doctor(s3: S3Workspace, *extra: str, env: dict[str, str] | None = None) -> dict[str, dict]:
    args = s3.run_args(*extra, "--json")
    args[0] = "doctor"
    for flag in ("--backoff-base", "--backoff-max"):
        index = args.index(flag)
        del args[index : index + 2]
    result = s3.cli(*args, env=env)
    checks = {f"{c['area']}: {c['name']}": c for c in result.json["checks"]}
    checks["exit"] = {"status": str(result.code)}
    return checks


def test_doctor_with_s3_names_the_credential_source_and_probes(s3: S3Workspace) -> None:
    checks = s3_doctor(s3, "--probe", "2")
    assert checks["exit"]["status"] == "0", checks
    assert checks["signing: AWS credentials"]["detail"].startswith("found in environment")
    assert SECRET not in str(checks)
    probes = [c for name, c in checks.items() if name.startswith("probe: segment")]
    assert len(probes) == 2 and all(c["detail"].startswith("206") for c in probes)
    assert all(r.range == "bytes=0-0" for r in s3.origin.log)


def test_doctor_with_s3_and_no_credentials_fails(s3: S3Workspace) -> None:
    checks = s3_doctor(s3, env={"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""})
    assert checks["exit"]["status"] == "1"
    assert checks["signing: AWS credentials"]["status"] == "fail"


def test_doctor_with_s3_wrong_secret_gets_the_s3_hint(s3: S3Workspace) -> None:
    checks = s3_doctor(s3, "--probe", "1", env={"AWS_SECRET_ACCESS_KEY": "wrong"})
    probe = next(c for name, c in checks.items() if name.startswith("probe: segment"))
    assert "HTTP 403" in probe["detail"] and "--bucket, --region" in probe["advice"]
