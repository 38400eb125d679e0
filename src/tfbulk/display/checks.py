"""`tfbulk doctor`'s table: one row per check, advice under every one that is not green."""

from __future__ import annotations

from collections.abc import Sequence

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from tfbulk.commands.doctor import FAIL, OK, Check
from tfbulk.display.format import counted

MARKS = {OK: ("✓", "green"), "warn": ("!", "yellow"), FAIL: ("✗", "red")}


def print_checks(console: Console, checks: Sequence[Check], *, fancy: bool) -> None:
    table = Table(box=box.SIMPLE_HEAD if fancy else None, pad_edge=False, show_edge=False)
    table.add_column("", no_wrap=True)
    table.add_column("area", no_wrap=True)
    table.add_column("check", no_wrap=True)
    table.add_column("result", overflow="fold")
    for check in checks:
        mark, style = MARKS[check.status]
        result = Text(check.detail)
        if check.advice:
            result.append(f"\n→ {check.advice}", style="italic" if fancy else "")
        table.add_row(Text(mark, style=style if fancy else ""), check.area, check.name, result)
    console.print(table)
    failed = sum(1 for c in checks if c.status == FAIL)
    warned = sum(1 for c in checks if c.status == "warn")
    verdict = "all checks passed" if not failed else f"{counted(failed, 'check')} failed"
    console.print(f"{verdict}" + (f", {counted(warned, 'warning')}" if warned else ""))
