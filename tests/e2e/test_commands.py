"""status, failed, retry and sign against a real run's state DB."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from botocore.signers import CloudFrontSigner as BotocoreSigner
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from tests.conftest import KEY_PAIR_ID, Workspace
from tfbulk.origin import Fault


def break_two(ws: Workspace) -> list[int]:
    broken = [ws.downloadable()[1][1], ws.downloadable()[-1][1]]
    for segment_id in broken:
        ws.origin.add_fault(ws.url_path(segment_id), Fault(status=404, times=1))
    return broken


def test_status_json_matches_the_contract(ws: Workspace) -> None:
    broken = break_two(ws)
    assert ws.run().code == 1
    status = ws.cli("status", "--dest", str(ws.dest), "--json")
    assert status.code == 0
    data = status.json
    for key in ("total", "success", "skipped", "failed", "pending", "processing", "bytes"):
        assert isinstance(data[key], int), key
    assert data["failed"] == len(broken)
    assert data["success"] == len(ws.downloadable()) - len(broken)
    course = data["courses"][0]
    assert set(course) >= {"id", "title", "total", "success", "skipped", "failed", "pending"}
    assert course["title"] == ws.catalogue[0].title


def test_status_for_one_course_lists_its_segments(ws: Workspace) -> None:
    broken = break_two(ws)
    assert ws.run().code == 1
    course_id = ws.downloadable()[1][0]
    human = ws.cli("status", "--dest", str(ws.dest), "--course", str(course_id))
    assert human.code == 0
    assert "HTTP 404" in human.stdout and str(broken[0]) in human.stdout
    data = ws.cli("status", "--dest", str(ws.dest), "--course", str(course_id), "--json").json
    rows = {row["segment_id"]: row for row in data["segments"]}
    assert rows[broken[0]]["status"] == "failed"
    assert rows[broken[0]]["attempts"] == 1
    assert all(r["status"] == "success" for sid, r in rows.items() if sid != broken[0])


def test_failed_then_retry_then_run_completes(ws: Workspace) -> None:
    broken = break_two(ws)
    assert ws.run().code == 1
    failed = ws.cli("failed", "--dest", str(ws.dest), "--json")
    assert sorted(item["segment_id"] for item in failed.json) == sorted(broken)
    assert all(item["error"].startswith("HTTP 404") for item in failed.json)
    assert all(item["attempts"] == 1 for item in failed.json)

    only_first = ws.cli("retry", "--dest", str(ws.dest), "--segment", str(broken[0]))
    assert only_first.code == 0 and "requeued 1 failed segment" in only_first.stdout
    assert ws.run().code == 1
    retry_all = ws.cli("retry", "--dest", str(ws.dest), "--json")
    assert retry_all.json == {"requeued": 1}
    final = ws.run("--json")
    assert final.code == 0 and final.json["failed"] == 0
    ws.assert_all_identical()


def test_state_flag_points_anywhere(ws: Workspace) -> None:
    state = ws.root / "elsewhere" / "jobs.db"
    assert ws.run("--state", str(state)).code == 0
    assert state.exists() and not ws.state.exists()
    result = ws.cli("status", "--state", str(state), "--json")
    assert result.json["success"] == len(ws.downloadable())


@pytest.mark.parametrize("key_var", ["TFBULK_PRIVATE_KEY", "TFBULK_PRIVATE_KEY_FILE"])
def test_environment_variables_configure_run(ws: Workspace, key_var: str) -> None:
    """`TFBULK_<FLAG>` for every flag; the private key's older variable keeps working."""
    env = {
        "TFBULK_SNAPSHOT": str(ws.snapshot),
        "TFBULK_DEST": str(ws.dest),
        "TFBULK_URL_TEMPLATE": f"{ws.origin.base_url}/truefire/{{segment_id}}.mp4",
        "TFBULK_KEY_PAIR_ID": KEY_PAIR_ID,
        key_var: str(ws.keys.private),
        "TFBULK_CONCURRENCY": "2",
    }
    result = ws.cli("run", "--json", env=env)
    assert result.code == 0, result.stderr
    assert ws.origin.max_in_flight <= 2
    ws.assert_all_identical()


def test_sign_matches_botocore_and_the_origin_accepts_it(ws: Workspace) -> None:
    url = f"{ws.origin.base_url}/truefire/{ws.downloadable()[0][1]}.mp4"
    expires_at = 2_000_000_000
    result = ws.cli(
        "sign", url, "--key-pair-id", KEY_PAIR_ID, "--private-key", str(ws.keys.private),
        "--expires-at", str(expires_at),
    )  # fmt: skip
    assert result.code == 0, result.stderr
    signer = BotocoreSigner(
        KEY_PAIR_ID, lambda m: ws.keys.key.sign(m, padding.PKCS1v15(), hashes.SHA1())
    )
    expected = signer.generate_presigned_url(
        url, date_less_than=datetime.fromtimestamp(expires_at, tz=UTC)
    )
    assert result.stdout.strip() == expected
    assert httpx.get(result.stdout.strip()).status_code == 200


def test_origin_refuses_expired_and_tampered_signatures(ws: Workspace) -> None:
    url = f"{ws.origin.base_url}/truefire/{ws.downloadable()[0][1]}.mp4"
    common = ["--key-pair-id", KEY_PAIR_ID, "--private-key", str(ws.keys.private)]
    expired = ws.cli("sign", url, *common, "--expires-at", "1000000000").stdout.strip()
    response = httpx.get(expired)
    assert response.status_code == 403 and b"expired" in response.content
    fresh = ws.cli("sign", url, *common).stdout.strip()
    other = fresh.replace(f"/{ws.downloadable()[0][1]}.mp4", f"/{ws.downloadable()[1][1]}.mp4")
    assert httpx.get(other).status_code == 403
    assert httpx.get(url).status_code == 403


def test_signatures_shorter_than_the_queue_still_succeed(ws: Workspace) -> None:
    """Every request is signed on the spot: 2-second signatures carry a longer queue."""
    ws.origin.speed = 60_000
    result = ws.run("--concurrency", "1", "--expires", "2s", "--json")
    assert result.code == 0, result.stderr
    elapsed = result.json["elapsed_s"]
    assert elapsed > 4, "the queue must outlive one signature for this test to mean anything"
    assert [r for r in ws.origin.log if r.status == 403] == []
    ws.assert_all_identical()
