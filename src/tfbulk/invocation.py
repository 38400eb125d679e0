"""How this tfbulk was started, so every hint it prints can be pasted as it is.

After the README's set-up `tfbulk` is `.venv/bin/tfbulk`, not a command on PATH: a hint
that says `tfbulk status` would fail when pasted. Hints name the program the way the user
started it, and say plain `tfbulk` only when that is what PATH finds.
"""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from tfbulk.state.url import redact_url

if TYPE_CHECKING:
    from tfbulk.settings import S3Location

NAME = "tfbulk"


def program() -> list[str]:
    """The argv prefix that starts this tfbulk again from the current folder."""
    started = sys.argv[0] if sys.argv else ""
    if Path(started).name != NAME:  # `python -m tfbulk`, or embedded (tests, benchmarks)
        return [_shortest(sys.executable), "-m", NAME]
    on_path = shutil.which(NAME)
    if on_path and _same_file(on_path, started):
        return [NAME]
    return [started]


def command(*args: str) -> str:
    """A shell command line for `tfbulk ARGS`, quoted so that it pastes."""
    return shlex.join([*program(), *args])


def place(dest: Path | str | S3Location, state: str | None) -> list[str]:
    """The flags that point a hint at the same state DB (a URL's password masked)."""
    return ["--dest", str(dest)] + (["--state", redact_url(state)] if state else [])


def _same_file(a: str, b: str) -> bool:
    try:
        return Path(a).samefile(b)
    except OSError:
        return False


def _shortest(path: str) -> str:
    """`.venv/bin/python` rather than its absolute path, when it is under this folder."""
    absolute = Path(path).absolute()
    try:
        relative = absolute.relative_to(Path.cwd())
    except ValueError:
        return path
    return str(relative) if len(relative.parts) > 1 else f"./{relative}"
