"""Where the metrics go: `--metrics-file` (rewritten atomically, for node_exporter's textfile
collector) and `--metrics-addr` (an HTTP /metrics endpoint while the run lasts).

Both read `RunMetrics` from their own threads; the event loop only updates the counters.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server, write_to_textfile
from prometheus_client.registry import CollectorRegistry

from tfbulk.errors import BadInput
from tfbulk.observe.metrics import RunMetrics, registry
from tfbulk.pipeline.events import Event, RunFinished, RunStarted

FILE_INTERVAL = 5.0  # seconds between rewrites of --metrics-file


class MetricsExport:
    """Observer: feeds `RunMetrics`, writes the file every FILE_INTERVAL and at the end,
    serves /metrics from the run's start to its end."""

    def __init__(self, path: Path | None, addr: tuple[str, int] | None) -> None:
        self.metrics = RunMetrics()
        self._registry = registry(self.metrics)
        self._path = _checked_file(path) if path is not None else None
        self._stop = threading.Event()
        self._writer: threading.Thread | None = None
        self._server = _serve(addr, self._registry) if addr else None

    def __call__(self, event: Event) -> None:
        self.metrics(event)
        if isinstance(event, RunStarted) and self._path is not None:
            self._write()
            self._writer = threading.Thread(
                target=self._rewrite, name="tfbulk-metrics", daemon=True
            )
            self._writer.start()
        elif isinstance(event, RunFinished):
            self.close()

    def close(self) -> None:
        """Write the file a last time and stop serving (idempotent)."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._writer is not None:
            self._writer.join()
            self._write()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _rewrite(self) -> None:
        while not self._stop.wait(FILE_INTERVAL):
            self._write()

    def _write(self) -> None:
        """Atomically: a temporary file beside it, renamed over it."""
        assert self._path is not None
        try:
            write_to_textfile(str(self._path), self._registry)
        except OSError as exc:
            os.write(2, f"tfbulk: warning: --metrics-file {self._path}: {exc.strerror}\n".encode())


def _checked_file(path: Path) -> Path:
    folder = path.absolute().parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise BadInput(f"--metrics-file {path}: the folder {folder} is not a writable folder")
    return path


def _serve(addr: tuple[str, int], registry: CollectorRegistry) -> WSGIServer:
    host, port = addr
    try:
        server, _thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise BadInput(
            f"--metrics-addr {host}:{port} cannot be served: {exc.strerror}; choose another port"
        ) from None
    return server
