"""`tfbulk verify`: finished files that went missing or bad are found and fetched again."""

from __future__ import annotations

from tests.conftest import Workspace


def damage(ws: Workspace) -> dict[str, int]:
    """Delete one finished file, truncate another, flip a byte in a third."""
    (c1, deleted), (c2, truncated), (c3, flipped) = ws.downloadable()[:3]
    ws.file_of(c1, deleted).unlink()
    path = ws.file_of(c2, truncated)
    path.write_bytes(path.read_bytes()[:-100])
    path = ws.file_of(c3, flipped)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    return {"deleted": deleted, "truncated": truncated, "flipped": flipped}


def test_verify_on_a_complete_folder_is_clean(ws: Workspace) -> None:
    assert ws.run().code == 0
    result = ws.cli("verify", "--dest", str(ws.dest), "--full", "--json")
    assert result.code == 0
    assert result.json == {"checked": len(ws.downloadable()), "problems": [], "requeued": 0}


def test_verify_finds_damage_and_run_repairs_it(ws: Workspace) -> None:
    assert ws.run().code == 0
    damaged = damage(ws)
    quick = ws.cli("verify", "--dest", str(ws.dest), "--dry-run", "--json")
    assert quick.code == 1
    assert {p["segment_id"] for p in quick.json["problems"]} == {
        damaged["deleted"],
        damaged["truncated"],
    }, "without --full only size and presence are checked"
    assert quick.json["requeued"] == 0

    full = ws.cli("verify", "--dest", str(ws.dest), "--full", "--json")
    assert full.code == 1
    reasons = {p["segment_id"]: p["reason"] for p in full.json["problems"]}
    assert set(reasons) == set(damaged.values()) and full.json["requeued"] == 3
    assert reasons[damaged["deleted"]] == "file is missing"
    assert "were recorded" in reasons[damaged["truncated"]]
    assert "MD5 differs" in reasons[damaged["flipped"]]

    before = len(ws.origin.log)
    assert ws.run().code == 0
    refetched = {r.path for r in ws.origin.log[before:]}
    assert refetched == {ws.url_path(s) for s in damaged.values()}
    ws.assert_all_identical()
    assert ws.cli("verify", "--dest", str(ws.dest), "--full").code == 0
