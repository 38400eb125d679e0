"""The config file: TOML whose keys are flag names with underscores (`dest`, `max_time`),
at the top for every command that has the flag or under `[run]`, `[status]`... for one.

It comes from `--config PATH` (before the command), `TFBULK_CONFIG`, or the default file
in the XDG config folder when there is one. Its values become click's `default_map`, so a
flag on the command line wins over its `TFBULK_*` variable, which wins over the file,
which wins over the built-in default. `tfbulk config` shows which one each setting is.

Typer may vendor its own click, so commands and options are read by their interface
(`params`, `opts`, `type.convert`), never by isinstance.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from tfbulk.cli.app import examples
from tfbulk.cli.options import AsJson
from tfbulk.cli.output import print_json
from tfbulk.errors import BadInput

CONFIG_ENV = "TFBULK_CONFIG"
SECRET_KEYS = frozenset({"ping_url"})  # a check's URL lets anyone report to it

Command = Any  # a click command (typer's vendored click or click itself)
Option = Any


@dataclass(frozen=True)
class Config:
    """A loaded file: where it is and its values, `{command: {key: value}}` plus `""`
    for the keys at the top."""

    path: Path | None = None
    values: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def value(self, command: str, key: str) -> tuple[bool, Any]:
        for section in (command, ""):
            if key in self.values.get(section, {}):
                return True, self.values[section][key]
        return False, None


def default_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path("~/.config").expanduser())
    return Path(base) / "tfbulk" / "config.toml"


def load(ctx: typer.Context, given: Path | None, commands: Mapping[str, Command]) -> Config:
    """The file named by `given` (which must exist), else the default one if present."""
    path = given if given is not None else default_path()
    if given is None and not path.is_file():
        return Config()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BadInput(f"config {path}: {exc.strerror}; check --config or TFBULK_CONFIG") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BadInput(f"config {path}: not valid TOML: {exc}") from None
    return Config(path, _checked(ctx, path, data, commands))


def _checked(
    ctx: typer.Context, path: Path, data: dict[str, Any], commands: Mapping[str, Command]
) -> dict[str, dict[str, Any]]:
    """Every key must be a flag of some command (or of the command whose table it is in),
    and every value one that flag accepts."""
    sections: dict[str, dict[str, Any]] = {"": {}}
    everywhere = {key: p for cmd in commands.values() for key, p in options(cmd).items()}
    for key, value in data.items():
        if key in commands and isinstance(value, dict):
            known = options(commands[key])
            sections[key] = {
                k: _value(ctx, path, f"[{key}] {k}", known, v) for k, v in value.items()
            }
        else:
            sections[""][key] = _value(ctx, path, key, everywhere, value)
    return sections


def _value(
    ctx: typer.Context, path: Path, where: str, known: Mapping[str, Option], value: Any
) -> Any:
    param = known.get(where.rpartition(" ")[2])
    if param is None:
        raise BadInput(
            f"config {path}: unknown key {where!r}; keys are flag names with underscores, "
            'e.g. dest = "/srv/videos" or max_time = "2h"'
        )
    try:
        param.process_value(ctx, value)
    except Exception as exc:  # click's BadParameter, from whichever click
        message = getattr(exc, "message", None)
        if message is None:
            raise
        raise BadInput(f"config {path}: {where} = {value!r}: {message}") from None
    return value


def options(command: Command) -> dict[str, Option]:
    """A command's options by config key: the long flag without dashes, `-` as `_`."""
    found: dict[str, Option] = {}
    for param in command.params:
        if getattr(param, "param_type_name", "") == "option" and not param.hidden:
            longs = [opt for opt in param.opts if opt.startswith("--")]
            if longs and longs[0] != "--help":
                found[longs[0][2:].replace("-", "_")] = param
    return found


def default_map(config: Config, commands: Mapping[str, Command]) -> dict[str, dict[str, Any]]:
    """click's default_map: per command, parameter name → the file's value."""
    result: dict[str, dict[str, Any]] = {}
    for name, command in commands.items():
        for key, param in options(command).items():
            present, value = config.value(name, key)
            if present and param.name:
                result.setdefault(name, {})[param.name] = value
    return result


def apply(ctx: typer.Context, given: Path | None) -> None:
    """Load the file and make it the commands' defaults (the root callback calls this)."""
    commands = getattr(ctx.command, "commands", {})
    config = load(ctx, given, commands)
    ctx.meta["tfbulk.config"] = config
    ctx.default_map = default_map(config, commands)


# -- tfbulk config --------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    key: str
    value: Any
    source: str  # "env", "config" or "default"
    origin: str | None  # the variable or the file


def effective(command: Command, name: str, config: Config) -> Iterator[Setting]:
    """Each option of `command` as the run would see it, and where it came from."""
    for key, param in sorted(options(command).items()):
        envvar = param.envvar if isinstance(param.envvar, str) else None
        present, value = config.value(name, key)
        if envvar and envvar in os.environ:
            yield Setting(key, _masked(key, os.environ[envvar]), "env", envvar)
        elif present:
            yield Setting(key, _masked(key, value), "config", str(config.path))
        else:
            default = param.default if not callable(param.default) else None
            yield Setting(key, _masked(key, _plain(default)), "default", None)


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def _masked(key: str, value: Any) -> Any:
    if value is None or not isinstance(value, str):
        return value
    if key in SECRET_KEYS:
        from tfbulk.observe.ping import masked

        return masked(value)
    from tfbulk.state.url import is_postgres_url, redact_url

    return redact_url(value) if is_postgres_url(value) else value


EXAMPLES = examples(
    "tfbulk config                                  # what `tfbulk run` would use",
    "tfbulk --config /etc/tfbulk/nightly.toml config run",
    "tfbulk config status --json",
)


def config_command(
    ctx: typer.Context,
    command: Annotated[
        str,
        typer.Argument(
            metavar="COMMAND", help="The command whose settings to show.", show_default=True
        ),
    ] = "run",
    as_json: AsJson = False,
) -> None:
    """Show the effective settings of a command and where each came from (flag defaults,
    TFBULK_* variables, the config file); secrets masked."""
    root = ctx.find_root()
    commands = getattr(root.command, "commands", {})
    if command not in commands:
        raise BadInput(f"no command {command!r}; try one of {', '.join(sorted(commands))}")
    config: Config = root.meta.get("tfbulk.config", Config())
    settings = list(effective(commands[command], command, config))
    if as_json:
        print_json(
            {
                "command": command,
                "config_file": str(config.path) if config.path else None,
                "settings": {
                    s.key: {"value": s.value, "source": s.source, "from": s.origin}
                    for s in settings
                },
            }
        )
        return
    typer.echo(f"config file: {config.path or f'none ({default_path()} is not there)'}")
    width = max(len(s.key) for s in settings)
    for s in settings:
        where = f"{s.source} {s.origin}" if s.origin else s.source
        typer.echo(f"{s.key:<{width}} = {_shown(s.value):<24} ({where})")


def _shown(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)
