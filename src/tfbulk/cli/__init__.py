"""The `tfbulk` command line: flags to settings, settings to the use cases in
`tfbulk.commands`, results to exit codes. One module per command group, registered here
in the order `tfbulk --help` lists them."""

from tfbulk.cli import config, demo, doctor, inspect, run, sign, verify
from tfbulk.cli.app import Command, app, main

app.command(
    "run",
    cls=Command,
    epilog=run.EXAMPLES,
    short_help="Plan the snapshot, then download every segment not yet done.",
)(run.run_command)
app.command("status", cls=Command, epilog=inspect.STATUS_EXAMPLES)(inspect.status_command)
app.command("failed", cls=Command, epilog=inspect.FAILED_EXAMPLES)(inspect.failed_command)
app.command("retry", cls=Command, epilog=inspect.RETRY_EXAMPLES)(inspect.retry_command)
app.command(
    "verify",
    cls=Command,
    epilog=verify.EXAMPLES,
    short_help="Re-check finished files; requeue bad ones (unless --dry-run).",
)(verify.verify_command)
app.command("sign", cls=Command, epilog=sign.EXAMPLES)(sign.sign_command)
app.command(
    "doctor",
    cls=Command,
    epilog=doctor.EXAMPLES,
    short_help="Check snapshot, key, destination, disk and state DB.",
)(doctor.doctor_command)
app.command(
    "demo",
    cls=Command,
    epilog=demo.DEMO_EXAMPLES,
    short_help="A self-contained run: sample catalogue, key and local origin.",
)(demo.demo_command)
app.command(
    "origin",
    cls=Command,
    epilog=demo.ORIGIN_EXAMPLES,
    short_help="Serve a local CloudFront-like origin to rehearse against.",
)(demo.origin_command)
app.command(
    "config",
    cls=Command,
    epilog=config.EXAMPLES,
    short_help="Show the effective settings and where each one came from.",
)(config.config_command)

__all__ = ["app", "main"]
