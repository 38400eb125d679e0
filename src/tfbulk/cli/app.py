"""The typer app every command module registers with, and the entry point that turns every
error a user can cause into one line on stderr with the contract's exit code; tracebacks
are for bugs, and even those never show local variables.

Commands import what only they use when they run: `status`, `failed` and `retry` load no
HTTP stack, signer or event loop; a cron `run` never loads the origin, the doctor's probes
or the verifier.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperArgument, TyperCommand

from tfbulk import __version__
from tfbulk.display.ascii import plain_streams
from tfbulk.errors import ExitCode, TfbulkError
from tfbulk.invocation import command

app = typer.Typer(
    name="tfbulk",
    help="Bulk-download a signed-URL video catalogue: just-in-time signing, resumable, verified.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class Command(TyperCommand):
    """typer's command with arguments shown as written: `URL`, not `{URL}` or `URL <str>`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if isinstance(param, TyperArgument) and param.metavar:
                param.display_type_rich = lambda **_: None  # type: ignore[method-assign]

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return [piece.strip("{}") for piece in super().collect_usage_pieces(ctx)]


def examples(*lines: str) -> str:
    """A help epilog of commands an operator types, kept as written (click's `\\b`)."""
    return "Examples:\n\n\b\n" + "\n".join(f"  {line}" for line in lines)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tfbulk {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[  # noqa: ARG001 (answered by its callback)
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            metavar="PATH",
            envvar="TFBULK_CONFIG",
            help="TOML file of flag defaults (default: ~/.config/tfbulk/config.toml if present).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """tfbulk downloads every video of a course catalogue snapshot from a signed-URL CDN."""
    from tfbulk.cli import config as config_file

    config_file.apply(ctx, config)


def main(argv: list[str] | None = None) -> None:
    """Run the app; turn every expected error into one line and a documented exit code."""
    plain_streams()
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
    hint = f" (see `{command(name, '--help')}`)" if name and name != "tfbulk" else ""
    return f"{_missing(exc) or message()}{hint}", code


def _missing(exc: Exception) -> str | None:
    """A required option, said the way the other required inputs are: `--snapshot PATH (or
    TFBULK_SNAPSHOT) is required`."""
    param = getattr(exc, "param", None)
    if type(exc).__name__ != "MissingParameter" or not getattr(param, "opts", None):
        return None
    if getattr(param, "param_type_name", "") != "option":
        return None
    envvar = param.envvar[0] if isinstance(param.envvar, list | tuple) else param.envvar  # type: ignore[union-attr]
    flag = " ".join(filter(None, [param.opts[0], param.metavar]))  # type: ignore[union-attr]
    return f"{flag} (or {envvar}) is required" if envvar else f"{flag} is required"


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(f"tfbulk: error: {message}", err=True)
    sys.exit(code)
