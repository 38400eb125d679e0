"""What commands print besides tables: JSON on stdout, warnings on stderr."""

from __future__ import annotations

import json
import sys

import typer


def print_warnings(warnings: list[str]) -> None:
    for warning in warnings:
        typer.echo(f"tfbulk: warning: {warning}", err=True)


def print_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")
    sys.stdout.flush()
