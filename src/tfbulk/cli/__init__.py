"""The `tfbulk` command line: flags to settings, settings to the use cases in
`tfbulk.commands`, results to exit codes. One module per command group, registered here
in the order `tfbulk --help` lists them."""

from tfbulk.cli import config, demo, doctor, inspect, run, sign, verify
from tfbulk.cli.app import app, main

app.command("run")(run.run_command)
app.command("status")(inspect.status_command)
app.command("failed")(inspect.failed_command)
app.command("retry")(inspect.retry_command)
app.command("verify")(verify.verify_command)
app.command("sign")(sign.sign_command)
app.command("doctor")(doctor.doctor_command)
app.command("demo")(demo.demo_command)
app.command("origin")(demo.origin_command)
app.command("config")(config.config_command)

__all__ = ["app", "main"]
