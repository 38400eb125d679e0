"""The libcurl transport under httpx: signed URLs reach the origin byte for byte as signed,
and its errors are classified exactly as `fetch` classifies httpx's own.
"""

from __future__ import annotations

from tests.conftest import Workspace
from tfbulk.origin import Fault
from tfbulk.origin.sample import SampleCourse, SampleSegment


def failed_json(ws: Workspace) -> dict[int, dict]:
    data = ws.cli("failed", "--dest", str(ws.dest), "--json").json
    return {item["segment_id"]: item for item in data}


def test_escapes_in_the_signed_url_survive_to_the_origin(ws: Workspace) -> None:
    """`%7E`, lowercase `%2f`, `~ - _` and encoded values must not be re-quoted on the way:
    the origin checks the signature over the exact request target (403 otherwise)."""
    videos = ["mp4:dir name/lesson 01+é", "mp4:a~b/c-d_e%41"]
    ws.write_catalogue(
        [
            SampleCourse(
                1,
                "Escapes",
                (10,),
                tuple(SampleSegment(500 + i, 10, v, f"L{i}") for i, v in enumerate(videos)),
            )
        ]
    )
    template = f"{ws.origin.base_url}/tf%7Euser/a%2fb/{{video}}~-_.mp4?v=%41%2f"
    args = ws.run_args("--path-template", "{segment_id}.mp4", "--json")
    args[args.index("--url-template") + 1] = template
    result = ws.cli(*args)
    assert result.code == 0, result.stderr
    assert sorted(r.path for r in ws.origin.log) == [
        "/tf%7Euser/a%2fb/a~b/c-d_e%2541~-_.mp4",
        "/tf%7Euser/a%2fb/dir%20name/lesson%2001%2B%C3%A9~-_.mp4",
    ]
    assert {r.status for r in ws.origin.log} == {200}


def test_connection_dropped_mid_body_is_a_network_error(ws: Workspace) -> None:
    segment = ws.downloadable()[0][1]
    path = ws.url_path(segment)
    ws.origin.content.set_size(path, 300_000)
    ws.origin.add_fault(path, Fault(drop_after=100_000, times=0))
    result = ws.run("--retries", "2", "--course", "1")
    assert result.code == 1
    error = failed_json(ws)[segment]["error"]
    assert error.startswith("connection error: "), error
    assert "Signature=" not in error


def test_stalled_body_is_a_read_timeout(ws: Workspace) -> None:
    segment = ws.downloadable()[0][1]
    path = ws.url_path(segment)
    ws.origin.content.set_size(path, 200_000)
    ws.origin.add_fault(path, Fault(stall=5.0, times=0))
    result = ws.run("--retries", "1", "--read-timeout", "0.3s", "--course", "1")
    assert result.code == 1
    assert failed_json(ws)[segment]["error"] == "timeout: no data received for the read timeout"
