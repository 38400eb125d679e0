"""`python -m tfbulk.cli.docs`: docs/cli.md, written from the app itself.

The reference cannot drift from the code: a test renders it again and compares it with
the checked-in file, so a flag added without regenerating fails CI.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer.main

from tfbulk.cli import app

TARGET = Path(__file__).resolve().parents[3] / "docs" / "cli.md"

INTRO = """\
# Command-line reference

Generated from the app by `python -m tfbulk.cli.docs`; do not edit by hand (a test checks
that this file is current). `tfbulk COMMAND --help` prints the same at any width.

Every flag with an environment variable can be set there instead (`TFBULK_<FLAG>`, e.g.
`TFBULK_DEST`); a flag on the command line wins. A required flag is marked **required**.

## Shell completion

```sh
tfbulk --install-completion          # bash, zsh, fish or PowerShell: detected, then installed
tfbulk --show-completion             # print the script instead, to install it your own way
eval "$(_TFBULK_COMPLETE=bash_source tfbulk)"   # or load it for this shell only
```

Completion answers for the command named `tfbulk`: activate the venv (`. .venv/bin/activate`)
or put `.venv/bin` on PATH first. Open a new shell after installing.
"""


def render() -> str:
    """The whole reference, one section per command in `tfbulk --help` order."""
    group = typer.main.get_command(app)
    sections = [INTRO]
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        sections.append(_command(name, command))
    return "\n".join(sections)


def _command(name: str, command: Any) -> str:
    usage = " ".join(command.collect_usage_pieces(_context(command, name)))
    lines = [f"## tfbulk {name}", "", command.help.strip(), "", "```", f"tfbulk {name} {usage}"]
    lines += ["```", ""]
    rows = [_row(param) for param in command.params if param.name != "help"]
    if rows:
        lines += ["| flag | env var | default | meaning |", "|---|---|---|---|", *rows, ""]
    lines += _examples(command.epilog or "")
    return "\n".join(lines)


def _context(command: Any, name: str) -> Any:
    return command.context_class(command, info_name=name)


def _row(param: Any) -> str:
    flags = ", ".join(f"`{opt}`" for opt in [*param.opts, *param.secondary_opts])
    if param.metavar and not getattr(param, "is_flag", False):
        flags += f" `{param.metavar}`"
    env = param.envvar if isinstance(param.envvar, list | tuple) else [param.envvar]
    envvars = ", ".join(f"`{var}`" for var in env if var)
    meaning = _cell(param.help or "")
    if param.required:
        meaning = f"**required**. {meaning}"
    return f"| {_cell(flags)} | {envvars} | {_default(param)} | {meaning} |"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _default(param: Any) -> str:
    if param.show_default is False or param.default in (None, False, [], ()):
        return ""
    if getattr(param, "is_flag", False):
        return ""
    return f"`{param.default}`"


def _examples(epilog: str) -> list[str]:
    if "\b\n" not in epilog:
        return []
    body = [line.removeprefix("  ") for line in epilog.split("\b\n", 1)[1].splitlines()]
    return ["Examples:", "", "```sh", *body, "```", ""]


def main() -> None:
    """Write docs/cli.md (or print it with `-`)."""
    text = render()
    if sys.argv[1:] == ["-"]:
        sys.stdout.write(text)
        return
    TARGET.write_text(text, encoding="utf-8")
    sys.stdout.write(f"wrote {TARGET}\n")


if __name__ == "__main__":
    main()
