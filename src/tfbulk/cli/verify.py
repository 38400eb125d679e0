"""`tfbulk verify`: re-check finished files against the state DB."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from tfbulk.commands.verify import AuditReport

from tfbulk.cli.app import examples
from tfbulk.cli.options import (
    AsJson,
    Dest,
    DestEndpointUrl,
    DestProfile,
    DestRegion,
    State,
    open_existing,
    s3_dest,
)
from tfbulk.cli.output import print_json
from tfbulk.display.format import counted
from tfbulk.invocation import command
from tfbulk.settings import DEFAULT_REGION

EXAMPLES = examples(
    "tfbulk verify --dest /srv/videos --dry-run       # report only",
    "tfbulk verify --dest /srv/videos                 # requeue what is bad",
    "tfbulk verify --dest /srv/videos --full          # also re-hash (MD5)",
    "tfbulk verify --dest /srv/videos --course 7 --json",
)


def verify_command(
    dest: Dest = "downloads",
    state: State = None,
    course: Annotated[
        int | None, typer.Option("--course", metavar="ID", help="Only this course.")
    ] = None,
    full: Annotated[
        bool, typer.Option("--full", help="Also re-hash every file against its recorded MD5.")
    ] = False,
    dry_run_flag: Annotated[
        bool, typer.Option("--dry-run", help="Report problems; change nothing in the state DB.")
    ] = False,
    as_json: AsJson = False,
    dest_endpoint_url: DestEndpointUrl = None,
    dest_region: DestRegion = DEFAULT_REGION,
    dest_profile: DestProfile = None,
) -> int:
    """Re-check finished files against the state DB; requeues missing or damaged ones
    (this changes the state DB: --dry-run only reports)."""
    from tfbulk.commands.verify import audit

    s3 = s3_dest(dest, dest_endpoint_url, dest_region, dest_profile)
    store = open_existing(state, dest)
    try:
        if s3 is not None:
            from tfbulk.commands.verify_s3 import audit_bucket

            report = audit_bucket(store, s3, full=full, course=course)
        else:
            report = audit(store, Path(dest), full=full, course=course)
        reasons = {p.segment_id: f"verify: {p.reason}" for p in report.problems}
        requeued = store.requeue(reasons) if reasons and not dry_run_flag else 0
    finally:
        store.close()
    if as_json:
        problems = [vars(p) for p in report.problems]
        print_json({"checked": report.checked, "problems": problems, "requeued": requeued})
    else:
        _print_audit(report, requeued, dry_run=dry_run_flag)
    return 1 if report.problems else 0


def _print_audit(report: AuditReport, requeued: int, *, dry_run: bool) -> None:
    for problem in report.problems:
        typer.echo(f"segment {problem.segment_id} (course {problem.course_id}) "
                   f"{problem.path}: {problem.reason}")  # fmt: skip
    checked = counted(report.checked, "finished segment")
    typer.echo(f"checked {checked}: {counted(len(report.problems), 'problem')}")
    if requeued:
        typer.echo(
            f"requeued {counted(requeued, 'segment')} in the state DB (back to pending); "
            f"run `{command('run')}` with the same flags to fetch them again"
        )
    elif dry_run and report.problems:
        typer.echo("dry run: the state DB was not changed (without --dry-run they are requeued)")
