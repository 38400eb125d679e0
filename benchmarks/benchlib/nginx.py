"""A real nginx on 127.0.0.1 with its own config in a temporary prefix.

Peers like aria2c and curl are usually pointed at a real web server, so tfbulk is measured
against one too: the server must be fast enough (sendfile, keep-alive) that only the
clients differ between contenders. It listens twice: plain HTTP/1.1, and HTTPS with HTTP/2
offered by ALPN. Its access log says, request by request, which protocol a client used.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from string import Template

from benchlib.tls import Certificates

TEMPLATE = Path(__file__).resolve().parent.parent / "nginx.conf.template"
CANDIDATES = ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")
READY_TIMEOUT = 10.0


def find_nginx() -> str | None:
    """The nginx binary (Debian puts it in /usr/sbin, often not on a user's PATH)."""
    found = shutil.which("nginx")
    if found:
        return found
    return next((path for path in CANDIDATES if os.access(path, os.X_OK)), None)


def free_port() -> int:
    """A port the kernel just handed out on loopback (nginx binds it right after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def version(binary: str) -> str:
    """`nginx version: nginx/1.22.1` → `nginx/1.22.1` (nginx prints it on stderr)."""
    out = subprocess.run([binary, "-v"], capture_output=True, text=True, check=False)
    return (out.stderr or out.stdout).strip().removeprefix("nginx version: ")


@dataclass(frozen=True)
class Requests:
    """What the access log recorded for one run: requests by protocol, connections used."""

    protocols: dict[str, int]  # e.g. {"HTTP/2.0 TLSv1.3": 2000}, {"HTTP/1.1": 2000}
    connections: int

    @property
    def http_versions(self) -> set[str]:
        return {key.split()[0] for key in self.protocols}


class Nginx:
    """`with Nginx(root, prefix, certs) as server:` serves `root` at `server.base_url`
    (plain HTTP) and `server.tls_url` (HTTPS, HTTP/2 or HTTP/1.1 by ALPN)."""

    def __init__(
        self, root: Path, prefix: Path, certificates: Certificates, binary: str | None = None
    ) -> None:
        found = binary or find_nginx()
        if found is None:
            raise RuntimeError("nginx is not installed (Debian: apt-get install nginx)")
        self.binary = found
        self.root = root.resolve()
        self.prefix = prefix.resolve()
        self.certificates = certificates
        self.port = self.tls_port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def tls_url(self) -> str:
        return f"https://127.0.0.1:{self.tls_port}"

    @property
    def access_log(self) -> Path:
        return self.prefix / "access.log"

    def log_mark(self) -> int:
        """Where the access log ends now: `requests_since` reads only what comes after."""
        return self.access_log.stat().st_size if self.access_log.exists() else 0

    def requests_since(self, mark: int) -> Requests:
        """The requests logged after `mark` (nginx writes each line as its request ends)."""
        with self.access_log.open("rb") as log:
            log.seek(mark)
            lines = log.read().decode(errors="replace").splitlines()
        # "$connection $server_protocol $ssl_protocol"; nginx logs "-" for no TLS
        fields = [line.removesuffix(" -").split(" ", 1) for line in lines if " " in line]
        return Requests(
            protocols=dict(Counter(protocol for _, protocol in fields)),
            connections=len({connection for connection, _ in fields}),
        )

    def __enter__(self) -> Nginx:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Write the config, start nginx in the foreground, return once it accepts."""
        self.prefix.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        while self.tls_port in (0, self.port):
            self.tls_port = free_port()
        conf = self.prefix / "nginx.conf"
        conf.write_text(self._config())
        log = (self.prefix / "stderr.log").open("wb")
        self._proc = subprocess.Popen(
            [self.binary, "-p", str(self.prefix), "-c", str(conf), "-e", "stderr"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        log.close()
        self._wait_ready()

    def stop(self) -> None:
        """Fast shutdown (SIGTERM) of our own nginx master, which takes its workers along."""
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.send_signal(signal.SIGTERM)
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()

    def _config(self) -> str:
        # As root, nginx would drop its workers to `nobody`, who may not read our files.
        user = f"user {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else ""
        return Template(TEMPLATE.read_text()).substitute(
            user_line=user, prefix=self.prefix, root=self.root, port=self.port,
            tls_port=self.tls_port, certificate=self.certificates.cert,
            certificate_key=self.certificates.key,
        )  # fmt: skip

    def _wait_ready(self) -> None:
        """Poll the ports: nginx has no readiness signal when it runs in the foreground."""
        assert self._proc is not None
        deadline = time.monotonic() + READY_TIMEOUT
        waiting = [self.port, self.tls_port]
        while waiting and time.monotonic() < deadline and self._proc.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", waiting[0]), timeout=0.5):
                    waiting.pop(0)
            except OSError:
                time.sleep(0.02)
        if not waiting:
            return
        self.stop()
        errors = (self.prefix / "stderr.log").read_text(errors="replace").strip()
        raise RuntimeError(f"nginx did not start on port {waiting[0]}: {errors[-500:]}")
