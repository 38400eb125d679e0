"""Choosing and wiring the views for one command: live or plain, quiet, JSON on stdout."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from rich.console import Console

from tfbulk.errors import ExitCode

if TYPE_CHECKING:
    from tfbulk.display.live import LiveView
    from tfbulk.display.plain import PlainReporter
    from tfbulk.pipeline.events import Event, Observer
    from tfbulk.report import RunReport


def make_console(stream: TextIO, *, terminal: bool) -> Console:
    """A rich console that, when not a terminal, writes plain text: no ANSI, no wrapping.

    Markup and emoji codes are off: titles, paths and server errors are data, and a `[/b]`,
    `[ssl]` or `:one:` in them must print as it is, not vanish, turn into an emoji or raise.
    """
    if terminal:
        return Console(file=stream, force_terminal=True, highlight=False, markup=False, emoji=False)
    return Console(
        file=stream,
        force_terminal=False,
        markup=False,
        no_color=True,
        color_system=None,
        highlight=False,
        emoji=False,
        width=160,
        soft_wrap=True,
    )


class RunDisplay:
    """The human side of `tfbulk run`: tracker + one view + the closing summary."""

    def __init__(self, stream: TextIO, *, live: bool, quiet: bool, stats_interval: float) -> None:
        from tfbulk.display.live import LiveView
        from tfbulk.display.plain import PlainReporter
        from tfbulk.display.tracker import RunTracker

        self.tracker = RunTracker()
        self.live = live and not quiet
        self.quiet = quiet
        self.console = make_console(stream, terminal=self.live)
        self._view: Observer
        self._live_view: LiveView | None = None
        self._plain: PlainReporter | None = None
        if self.live:
            self._view = self._live_view = LiveView(self.tracker, self.console)
            self._live_view.start()
        else:
            self._view = self._plain = PlainReporter(
                self.tracker, stream, stats_interval=stats_interval, quiet=quiet
            )

    def __call__(self, event: Event) -> None:
        self.tracker(event)
        self._view(event)

    def close(self) -> None:
        if self._live_view is not None:
            self._live_view.close()
        if self._plain is not None:
            self._plain.close()

    def finish(self, report: RunReport, hint: Callable[[str], str] = "tfbulk {}".format) -> None:
        """Print the summary that replaces the live view (or the one line of --quiet);
        `hint("retry")` is the command line that requeues this run's failures."""
        from tfbulk.display.summary import one_line, print_run_summary

        self.close()
        if self.quiet:
            self.console.print(
                one_line(report.summary, elapsed=report.elapsed, exit_code=report.exit_code)
            )
            return
        print_run_summary(
            self.console,
            report.summary,
            elapsed=report.elapsed,
            downloaded=report.downloaded,
            failures=report.failures,
            fancy=self.live,
            hint=hint,
            limits=report.limits,
        )
        if report.stop_reason and ExitCode(report.exit_code).resumable:
            self.console.print("state saved; run the same command again to resume")
