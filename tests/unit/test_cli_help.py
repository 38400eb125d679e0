"""The help a new user reads: real placeholders, examples, nothing cut, docs/cli.md current."""

from __future__ import annotations

import re

import pytest
import typer.main
from typer.testing import CliRunner

from tfbulk.cli import app
from tfbulk.cli.docs import TARGET, render

COMMANDS = list(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
TYPE_PLACEHOLDER = re.compile(r"<(str|int|float|path|list\[[a-z]+\])>|\{[a-z_]+\}(?= )")
# What only `run` does (the download itself, its display); every other flag of `run` says
# what a run reads, signs or fetches, and `doctor` must accept it so a run's command line
# can be checked by swapping one word.
RUN_ONLY = {
    "--concurrency", "--lease", "--max-global", "--retries", "--max-time", "--dry-run",
    "--progress", "--no-progress", "--json", "--quiet", "-q", "--log-file", "--stats-interval",
    "--backoff-base", "--backoff-max", "--connect-timeout", "--read-timeout",
    "--bwlimit", "--max-rps", "--max-transfer",
    "--metrics-file", "--metrics-addr", "--on-complete", "--on-finish", "--hook-concurrency",
    "--hook-timeout", "--ping-url", "--dest-part-size",
}  # fmt: skip


def help_text(*args: str, columns: int = 80) -> str:
    result = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("columns", [80, 120])
@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help_fits_the_terminal_and_names_what_to_type(command: str, columns: int) -> None:
    text = help_text(*([command] if command else []), columns=columns)
    assert "…" not in text and "..." not in text.split("Commands:")[-1].split("Options:")[0]
    assert all(len(line) <= columns for line in text.splitlines()), text
    assert not TYPE_PLACEHOLDER.search(text), TYPE_PLACEHOLDER.search(text)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_examples_an_operator_types(command: str) -> None:
    text = help_text(command)
    examples = text.split("Examples:", 1)[1]
    assert f"tfbulk {command}" in examples


def test_run_help_shows_metavars_and_marks_the_snapshot_required() -> None:
    text = help_text("run")
    for shown in ("--snapshot PATH", "--course ID", "--max-time DURATION", "--max-file-size SIZE",
                  "--endpoint-url URL", "--state PATH|URL"):  # fmt: skip
        assert shown in text
    snapshot = text.split("--snapshot PATH", 1)[1].split("--dest", 1)[0]
    assert "required" in snapshot
    assert "TFBULK_PRIVATE_KEY, TFBULK_PRIVATE_KEY_FILE" in " ".join(text.split())


def test_sign_shows_its_argument_as_url() -> None:
    text = help_text("sign")
    assert "Usage: tfbulk sign [OPTIONS] URL" in text
    assert "<str>" not in text and "{url}" not in text.lower()


def test_verify_says_it_changes_the_state_db_unless_dry_run() -> None:
    text = " ".join(help_text("verify").split())
    assert "requeues" in text and "--dry-run" in text


def test_doctor_takes_every_input_flag_of_run() -> None:
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]

    def flags(name: str) -> set[str]:
        return {opt for p in commands[name].params for opt in [*p.opts, *p.secondary_opts]}

    assert flags("run") - RUN_ONLY - flags("doctor") == set()


def test_docs_cli_md_is_generated_from_the_app() -> None:
    """Regenerate with `python -m tfbulk.cli.docs` when this fails."""
    assert TARGET.read_text(encoding="utf-8") == render()


def test_shell_completion_completes_commands_and_flags() -> None:
    runner = CliRunner()
    for words, cword, expected in (("tfbulk ru", "1", "run"), ("tfbulk run --snap", "2",
                                                               "--snapshot")):  # fmt: skip
        env = {"_TFBULK_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": cword}
        result = runner.invoke(app, [], env=env, prog_name="tfbulk")
        assert result.output.split() == [expected], result.output
