"""The `tfbulk` command's entry point: `--version` answers before anything is imported.

Importing the command line (typer, rich, the state store) takes about half a second on a
busy machine; a version check from a script or a package manager should not pay for it.
"""

from __future__ import annotations

import sys

from tfbulk import __version__


def main() -> None:
    if sys.argv[1:] == ["--version"]:
        sys.stdout.write(f"tfbulk {__version__}\n")
        return
    from tfbulk.cli import main as cli

    cli()
