"""The live view on a real run, read mid-run while one body is held at the origin."""

from __future__ import annotations

import os
import re
import threading

from tests.conftest import Workspace, wait_for
from tfbulk.origin import Fault
from tfbulk.origin.sample import guitar_catalogue

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Screen:
    """Everything a forced live view wrote so far, without its escape codes."""

    def __init__(self, fd: int) -> None:
        self._chunks: list[bytes] = []
        self._thread = threading.Thread(target=self._read, args=(fd,), daemon=True)
        self._thread.start()

    def _read(self, fd: int) -> None:
        while chunk := os.read(fd, 65536):
            self._chunks.append(chunk)

    @property
    def text(self) -> str:
        return ANSI.sub("", b"".join(self._chunks).decode(errors="replace"))

    def frames(self) -> list[str]:
        """Each redraw starts with the title line."""
        return ["tfbulk ·" + part for part in self.text.split("tfbulk ·")[1:]]


def test_live_view_tells_the_truth_mid_run(ws: Workspace) -> None:
    ws.write_catalogue(guitar_catalogue(3, 3))
    segments = ws.downloadable()
    (first_course, flaky), held = segments[0], segments[-1]
    ws.origin.add_fault(ws.url_path(flaky), Fault(status=503, times=1))
    gate = threading.Event()
    ws.origin.add_fault(ws.url_path(held[1]), Fault(gate=gate))
    proc = ws.start("--progress", "--concurrency", "3", env={"COLUMNS": "120", "LINES": "40"})
    assert proc.stdout is not None
    screen = Screen(proc.stdout.fileno())

    def truthful_frame() -> str | None:
        for frame in reversed(screen.frames()):
            course = next((ln for ln in frame.splitlines() if f"course {first_course} " in ln), "")
            if "3/3" in course and "done" in course and "1 segment recovered" in frame:
                return frame
        return None

    try:
        wait_for(lambda: all(ws.file_of(c, s).exists() for c, s in segments[:-1]), 60, "others")
        wait_for(truthful_frame, 30, "a frame with the done course and the recovered error")
        frame = truthful_frame()
        assert frame is not None
        assert "503" not in frame and "recent errors" not in frame
        assert re.search(r"ETA \d", frame), frame
    finally:
        gate.set()
    proc.wait(timeout=60)
    assert proc.returncode == 0
    assert screen.text.lstrip().startswith("tfbulk")
    assert "checking the inputs and planning the snapshot" in screen.text
