"""HTTPS and HTTP/2 for real: a throw-away CA, nginx with `ssl` and `http2` on 127.0.0.1.

The access log records `$server_protocol`, so the tests see which HTTP version libcurl
actually spoke, not which one tfbulk asked for.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import pwd
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.conftest import wait_for
from tests.hostile import HostileRun, mp4

NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
)
pytestmark = pytest.mark.skipif(
    NGINX is None, reason="nginx is not installed (Debian: apt-get install nginx; CI does)"
)
SEGMENTS = 3
CONFIG = """
{user}
worker_processes 1;
daemon off;
master_process on;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 64; }}
http {{
    log_format protocol '$server_protocol $uri $status';
    access_log {prefix}/access.log protocol;
    types {{ video/mp4 mp4; }}
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl http2;
        ssl_certificate {prefix}/server.pem;
        ssl_certificate_key {prefix}/server.key;
        root {root};
    }}
}}
"""


@dataclass(frozen=True)
class Tls:
    ca: Path
    cert: bytes
    key: bytes


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    """A CA that exists only for this module, and its certificate for 127.0.0.1."""
    folder = tmp_path_factory.mktemp("tls")
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tfbulk test CA")])
    ca = (
        _certificate(ca_name, ca_name, ca_key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(cert_sign=True), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    server = (
        _certificate(name, ca_name, key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return Tls(folder / "ca.pem", server.public_bytes(serialization.Encoding.PEM), key_pem)


def _certificate(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePublicKey, now: datetime.datetime
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )


def _usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


@dataclass
class Site:
    """nginx serving `SEGMENTS` MP4-like files at /v/{segment_id}.mp4 over HTTPS."""

    port: int
    prefix: Path
    bodies: dict[int, bytes]

    @property
    def url_template(self) -> str:
        return f"https://127.0.0.1:{self.port}/v/{{segment_id}}.mp4"

    def access_log(self, expected: int) -> list[str]:
        """The access log once it has `expected` lines (nginx writes a line after the
        response has gone, so a client may be done first)."""
        log = self.prefix / "access.log"
        wait_for(lambda: len(log.read_text().splitlines()) >= expected, 10, "access log")
        return log.read_text().splitlines()


@pytest.fixture
def site(tmp_path: Path, tls: Tls) -> Iterator[Site]:
    prefix, root = tmp_path / "nginx", tmp_path / "www"
    (root / "v").mkdir(parents=True)
    prefix.mkdir()
    bodies = {segment: mp4(16 * 1024, segment) for segment in range(101, 101 + SEGMENTS)}
    for segment, body in bodies.items():
        (root / "v" / f"{segment}.mp4").write_bytes(body)
    (prefix / "server.pem").write_bytes(tls.cert)
    (prefix / "server.key").write_bytes(tls.key)
    (prefix / "access.log").touch()
    port = _free_port()
    # As root, nginx would drop its workers to `nobody`, who may not read tmp_path.
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else ""
    conf = prefix / "nginx.conf"
    conf.write_text(CONFIG.format(user=user, prefix=prefix, port=port, root=root))
    assert NGINX is not None
    proc = subprocess.Popen(
        [NGINX, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: proc.poll() is not None or _accepts(port), 10, "nginx to listen")
        assert proc.poll() is None, (prefix / "error.log").read_text()
        yield Site(port, prefix, bodies)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture
def run(tmp_path: Path, site: Site) -> HostileRun:
    runner = HostileRun(tmp_path, site.url_template)
    runner.catalogue(SEGMENTS)
    return runner


def no_system_ca() -> dict[str, str]:
    """Neither --ca-bundle nor the environment's CA overrides: certifi's bundle only."""
    return {"SSL_CERT_FILE": "", "SSL_CERT_DIR": ""}


def assert_all_downloaded(run: HostileRun, site: Site) -> None:
    for segment, body in site.bodies.items():
        assert run.file_of(segment).read_bytes() == body


@pytest.mark.parametrize(
    ("flags", "protocols"),
    [
        pytest.param((), {"HTTP/2.0"}, id="default-http2"),
        pytest.param(("--http", "1.1"), {"HTTP/1.1"}, id="http1.1"),
        pytest.param(("--http", "3"), {"HTTP/2.0", "HTTP/1.1"}, id="http3-falls-back"),
    ],
)
def test_https_downloads_with_the_ca_bundle(
    run: HostileRun, site: Site, tls: Tls, flags: tuple[str, ...], protocols: set[str]
) -> None:
    result = run.run("--ca-bundle", str(tls.ca), *flags, env=no_system_ca())
    assert result.code == 0, result.stderr
    assert_all_downloaded(run, site)
    lines = site.access_log(SEGMENTS)
    assert len(lines) == SEGMENTS, lines
    assert {line.split()[0] for line in lines} <= protocols, lines
    assert {line.split()[2] for line in lines} == {"200"}, lines


def test_an_unknown_ca_fails_every_segment_with_a_certificate_error(
    run: HostileRun, site: Site
) -> None:
    result = run.run("--retries", "2", env=no_system_ca())
    assert result.code == 1, result.stderr
    assert "Traceback" not in result.stderr
    failures = run.failures()
    assert set(failures) == set(site.bodies)
    for error in failures.values():
        assert error.startswith("connection error: ") and "certificate" in error, error
    assert not list(run.dest.rglob("*.mp4"))


def test_a_missing_ca_bundle_is_bad_input(run: HostileRun, site: Site) -> None:
    result = run.run("--ca-bundle", "/nonexistent/ca.pem")
    assert result.code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--ca-bundle /nonexistent/ca.pem" in lines[0], result.stderr
    assert (site.prefix / "access.log").read_text() == ""


def test_doctor_probes_through_the_same_transport(run: HostileRun, site: Site, tls: Tls) -> None:
    result = run.tfbulk(
        *run.args("doctor", "--probe", "2", "--ca-bundle", str(tls.ca), "--json"),
        env=no_system_ca(),
    )
    assert result.code == 0, result.stdout
    checks = {f"{c['area']}: {c['name']}": c for c in result.json["checks"]}
    probes = [c for name, c in checks.items() if name.startswith("probe: segment")]
    assert len(probes) == 2, checks
    for probe in probes:
        assert probe["status"] == "ok", probe
        assert "200" in probe["detail"] and "HTTP/2" in probe["detail"], probe
    assert [line.split()[0] for line in site.access_log(2)] == ["HTTP/2.0"] * 2
