"""A real nginx on 127.0.0.1 with its own config in a temporary prefix.

Peers like aria2c and curl are usually pointed at a real web server, so tfbulk is measured
against one too: the server must be fast enough (sendfile, keep-alive, no access log) that
only the clients differ between contenders.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from string import Template

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


class Nginx:
    """`with Nginx(root, prefix) as server:` serves `root` at `server.base_url`."""

    def __init__(self, root: Path, prefix: Path, binary: str | None = None) -> None:
        found = binary or find_nginx()
        if found is None:
            raise RuntimeError("nginx is not installed (Debian: apt-get install nginx)")
        self.binary = found
        self.root = root.resolve()
        self.prefix = prefix.resolve()
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Nginx:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Write the config, start nginx in the foreground, return once it accepts."""
        self.prefix.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
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
            user_line=user, prefix=self.prefix, root=self.root, port=self.port
        )

    def _wait_ready(self) -> None:
        """Poll the port: nginx has no readiness signal when it runs in the foreground."""
        assert self._proc is not None
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                break
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.02)
        self.stop()
        errors = (self.prefix / "stderr.log").read_text(errors="replace").strip()
        raise RuntimeError(f"nginx did not start on port {self.port}: {errors[-500:]}")
