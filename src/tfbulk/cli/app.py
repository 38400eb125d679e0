"""The typer app every command module registers with, and the entry point that turns every
error a user can cause into one line on stderr with the contract's exit code; tracebacks
are for bugs, and even those never show local variables.

Commands import what only they use when they run: `status`, `failed` and `retry` load no
HTTP stack, signer or event loop; a cron `run` never loads the origin, the doctor's probes
or the verifier.
"""

from __future__ import annotations

import sys
from typing import Annotated, NoReturn

import typer

from tfbulk import __version__
from tfbulk.errors import ExitCode, TfbulkError

app = typer.Typer(
    name="tfbulk",
    help="Bulk-download a signed-URL video catalogue: just-in-time signing, resumable, verified.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tfbulk {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """tfbulk downloads every video of a course catalogue snapshot from a signed-URL CDN."""


def main(argv: list[str] | None = None) -> None:
    """Run the app; turn every expected error into one line and a documented exit code."""
    try:
        code = app(args=argv, prog_name="tfbulk", standalone_mode=False)
    except TfbulkError as exc:
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted; nothing was lost, run again to resume", ExitCode.INTERRUPTED)
    except Exception as exc:
        usage = _usage_error(exc)
        if usage is None:
            raise
        _fail(*usage)
    sys.exit(code if isinstance(code, int) else 0)


def _usage_error(exc: Exception) -> tuple[str, int] | None:
    """Click's errors (typer may vendor its own click), recognised by their interface."""
    if type(exc).__name__ == "Abort":
        return "interrupted", ExitCode.INTERRUPTED
    if type(exc).__name__ == "NoArgsIsHelpError":
        typer.echo(exc.format_message(), err=True)  # type: ignore[attr-defined]
        sys.exit(ExitCode.BAD_INPUT)
    message, code = getattr(exc, "format_message", None), getattr(exc, "exit_code", None)
    if not callable(message) or not isinstance(code, int):
        return None
    ctx = getattr(exc, "ctx", None)
    name = getattr(getattr(ctx, "command", None), "name", None)
    hint = f" (see `tfbulk {name} --help`)" if name and name != "tfbulk" else ""
    return f"{message()}{hint}", code


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(f"tfbulk: error: {message}", err=True)
    sys.exit(code)
