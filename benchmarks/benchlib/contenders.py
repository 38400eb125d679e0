"""The three contenders, each downloading one data set with 10 transfers at once.

tfbulk gets a catalogue snapshot and signs every URL for real with a throw-away key (nginx
ignores the query string); the peers get the plain URL list a user would script them with.
Each writes flat `<id>.mp4` files into a fresh folder, so all do the same file work.

Over HTTPS each is given the benchmark's CA and, where it can choose, the set's HTTP
version. aria2c speaks HTTP/1.1 only, so on an HTTP/2 set it runs HTTP/1.1 (and the report
says so).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

CONCURRENCY = 10
KEY_PAIR_ID = "KBENCHMARKKEY"
HTTP2_CAPABLE = ("tfbulk", "curl")
CURL_HTTP = {"1.1": "--http1.1", "2": "--http2"}  # curl asks for HTTP/2 over TLS by default
# A benchmark measures tfbulk as installed, from byte-code; a developer's shell that forbids
# writing it would have every run compile tfbulk's sources again, CPU no user pays.
DROPPED_ENV = ("PYTHONDONTWRITEBYTECODE",)


@dataclass(frozen=True)
class Inputs:
    """Everything a contender reads for one data set (built once, reused every round)."""

    snapshot: Path
    private_key: Path
    url_template: str
    aria2_input: Path
    curl_config: Path
    ca_bundle: Path | None  # the benchmark CA for an HTTPS set
    http: str  # "1.1" or "2" over HTTPS; "" leaves each contender's default (plain HTTP/1.1)


def tfbulk_argv(inputs: Inputs, dest: Path) -> list[str]:
    """`tfbulk run` as a user runs it: fresh state DB (inside the fresh --dest), no progress."""
    return [
        sys.executable, "-m", "tfbulk", "run",
        "--snapshot", str(inputs.snapshot),
        "--dest", str(dest),
        "--url-template", inputs.url_template,
        "--path-template", "{segment_id}.mp4",
        "--key-pair-id", KEY_PAIR_ID,
        "--private-key", str(inputs.private_key),
        "--concurrency", str(CONCURRENCY),
        "--no-progress",
        "--json",
        *(["--ca-bundle", str(inputs.ca_bundle)] if inputs.ca_bundle else []),
        *(["--http", inputs.http] if inputs.http else []),
    ]  # fmt: skip


def aria2c_argv(inputs: Inputs, dest: Path) -> list[str]:
    """`aria2c -i urls.txt -j 10`, quiet, into `dest` (defaults otherwise)."""
    return [
        "aria2c",
        "--input-file", str(inputs.aria2_input),
        "--max-concurrent-downloads", str(CONCURRENCY),
        "--dir", str(dest),
        "--quiet=true",
        "--auto-file-renaming=false",
        "--allow-overwrite=true",
        *(["--ca-certificate", str(inputs.ca_bundle)] if inputs.ca_bundle else []),
    ]  # fmt: skip


def curl_argv(inputs: Inputs, dest: Path) -> list[str]:
    """`curl --parallel --parallel-max 10` over a config of url/output pairs."""
    return [
        "curl",
        "--parallel", "--parallel-max", str(CONCURRENCY),
        "--config", str(inputs.curl_config),
        "--output-dir", str(dest),
        "--silent", "--show-error", "--fail",
        *(["--cacert", str(inputs.ca_bundle)] if inputs.ca_bundle else []),
        *([CURL_HTTP[inputs.http]] if inputs.http else []),
    ]  # fmt: skip


BUILDERS = {"tfbulk": tfbulk_argv, "aria2c": aria2c_argv, "curl": curl_argv}
PEERS = ("aria2c", "curl")
TOOLS = {"aria2c": "aria2c", "curl": "curl"}


def missing_tools(names: list[str]) -> list[str]:
    """Peers whose program is not installed (Debian packages `aria2` and `curl`)."""
    return [name for name in names if name in TOOLS and shutil.which(TOOLS[name]) is None]


def expected_http(name: str, http: str) -> str:
    """The protocol nginx should log for contender `name` on a set asking for `http`."""
    return "HTTP/2.0" if http == "2" and name in HTTP2_CAPABLE else "HTTP/1.1"


def child_env() -> dict[str, str]:
    """The caller's environment minus TFBULK_* settings and others that would change the run."""
    return {
        k: v for k, v in os.environ.items() if not k.startswith("TFBULK_") and k not in DROPPED_ENV
    }


def tool_version(name: str) -> str:
    if name == "tfbulk":
        from tfbulk import __version__

        return f"tfbulk {__version__}"
    out = subprocess.run([TOOLS[name], "--version"], capture_output=True, text=True, check=False)
    return out.stdout.splitlines()[0].strip() if out.stdout else "unknown"
