"""`--ping-url`: tell a health-check service (healthchecks.io's convention) that the run
started (`URL/start`) and how it ended (`URL/<exit code>`).

A ping that fails is a warning, never the run's problem. Messages name the host only: the
rest of a ping URL (a check's UUID) lets anyone report to the check.
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from tfbulk import __version__
from tfbulk.observe.hooks import warn
from tfbulk.pipeline.events import Event, RunStarted

PING_TIMEOUT = 10.0


def masked(url: str) -> str:
    """The URL with only its scheme and host shown."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}/…" if parts.hostname else "…"


class Ping:
    """Observer for the start ping (on a thread, so the run does not wait for it);
    `finish` sends the end ping once the exit code is known."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._start: threading.Thread | None = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted) and self._start is None:
            self._start = threading.Thread(
                target=self._get, args=("start",), name="tfbulk-ping", daemon=True
            )
            self._start.start()

    def finish(self, exit_code: int) -> None:
        """After the start ping (if any), so the service sees them in order."""
        if self._start is not None:
            self._start.join()
        self._get(str(exit_code))

    def _get(self, suffix: str) -> None:
        request = urllib.request.Request(  # noqa: S310 (check_ping_url allowed http(s) only)
            f"{self._url}/{suffix}", headers={"User-Agent": f"tfbulk/{__version__}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=PING_TIMEOUT) as response:  # noqa: S310
                response.read()
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            warn(f"--ping-url {masked(self._url)}/{suffix} failed: {reason}")
