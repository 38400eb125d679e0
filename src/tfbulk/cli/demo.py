"""`tfbulk demo` and `tfbulk origin`: the self-contained run, and the origin to rehearse against."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tfbulk.cli.app import examples
from tfbulk.cli.options import (
    AsJson,
)
from tfbulk.cli.output import print_json
from tfbulk.cli.run import Output, execute
from tfbulk.errors import BadInput
from tfbulk.settings import (
    check_positive,
    default_state_path,
    parse_size,
)

DEMO_EXAMPLES = examples(
    "tfbulk demo",
    "tfbulk demo --faults                   # retries and a permanent 404",
    "tfbulk demo --dir demo --courses 20 --segments 40 --speed 2M",
)
ORIGIN_EXAMPLES = examples(
    "tfbulk origin --synthetic --port 8080",
    "tfbulk origin --root /srv/videos --port 8080 \\",
    "    --public-key cf-public.pem --key-pair-id K2JCJMDEHXQW5F",
)


def demo_command(
    folder: Annotated[
        Path | None,
        typer.Option(
            "--dir", metavar="DIR", help="Work here and keep it (default: a new temporary folder)."
        ),
    ] = None,
    courses: Annotated[
        int, typer.Option("--courses", metavar="N", help="Courses in the sample catalogue.")
    ] = 4,
    segments: Annotated[
        int,
        typer.Option(
            "--segments", metavar="N", help="Segments per course (every 7th has no video)."
        ),
    ] = 12,
    speed: Annotated[
        str,
        typer.Option(
            "--speed",
            metavar="SIZE",
            help="Origin speed per connection (e.g. 512k; 0 = unthrottled).",
        ),
    ] = "512k",
    min_size: Annotated[
        str, typer.Option("--min-size", metavar="SIZE", help="Smallest sample video.")
    ] = "256k",
    max_size: Annotated[
        str, typer.Option("--max-size", metavar="SIZE", help="Largest sample video.")
    ] = "3M",
    concurrency: Annotated[
        int, typer.Option("--concurrency", metavar="N", help="Downloads at once.")
    ] = 6,
    faults: Annotated[
        bool, typer.Option("--faults", help="Inject transient errors, a drop and a 404.")
    ] = False,
    progress: Annotated[
        bool | None,
        typer.Option(
            "--progress/--no-progress",
            help="Live view (default: on a terminal).",
            show_default=False,
        ),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Errors and a one-line summary only.")
    ] = False,
    as_json: AsJson = False,
) -> int:
    """A self-contained run on this machine: sample catalogue, throw-away key, local origin."""
    from tfbulk.commands.demo import DemoOptions
    from tfbulk.commands.demo import prepare as prepare_demo

    options = DemoOptions(
        folder=folder,
        courses=check_positive(courses, "--courses"),
        segments=check_positive(segments, "--segments"),
        min_size=parse_size(min_size, "--min-size"),
        max_size=max(parse_size(max_size, "--max-size"), parse_size(min_size, "--min-size")),
        speed=parse_size(speed, "--speed"),
        concurrency=check_positive(concurrency, "--concurrency"),
        faults=faults,
    )
    if not (quiet or as_json):
        typer.echo("preparing the demo: a sample catalogue, a throw-away key, a local origin")
    setup = prepare_demo(options)
    try:
        output = Output(as_json, quiet=quiet, progress=progress)
        report = execute(setup.settings(options.concurrency), output)
    finally:
        setup.origin.stop()
    if as_json:
        print_json(
            report.as_json()
            | {
                "demo": {
                    "folder": str(setup.folder),
                    "origin": setup.origin.base_url,
                    "faults": setup.faulty,
                }
            }
        )
        return report.exit_code
    if quiet:
        return report.exit_code
    typer.echo(f"\nfiles: {setup.dest}\nstate DB: {default_state_path(setup.dest)}")
    failed = bool(report.summary.total_of("failed"))
    typer.echo("to look around" + (" and requeue what failed" if failed else "") + ":")
    for command in setup.inspect_commands(failed=failed):
        typer.echo(f"  {command}")
    origin, run = setup.rerun_commands()
    typer.echo("the demo's origin has stopped; to run it again by hand, start it in one terminal:")
    typer.echo(f"  {origin}\nand the run in another:\n  {run}")
    return report.exit_code


def origin_command(
    synthetic: Annotated[
        bool, typer.Option("--synthetic", help="Serve generated MP4 bodies for any *.mp4 path.")
    ] = False,
    root: Annotated[
        Path | None,
        typer.Option("--root", metavar="DIR", help="Serve the files under this folder."),
    ] = None,
    public_key: Annotated[
        Path | None,
        typer.Option(
            "--public-key",
            metavar="PATH",
            help="PEM public key: check CloudFront signatures with it.",
        ),
    ] = None,
    key_pair_id: Annotated[
        str | None,
        typer.Option(
            "--key-pair-id", metavar="ID", help="The Key-Pair-Id the public key answers to."
        ),
    ] = None,
    host: Annotated[
        str, typer.Option("--host", metavar="ADDRESS", help="Address to listen on.")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", metavar="N", help="Port (0 = any free port).")
    ] = 8080,
    speed: Annotated[
        str,
        typer.Option(
            "--speed", metavar="SIZE", help="Throttle each connection (e.g. 1M; 0 = unthrottled)."
        ),
    ] = "0",
    min_size: Annotated[
        str, typer.Option("--min-size", metavar="SIZE", help="Smallest synthetic body.")
    ] = "256k",
    max_size: Annotated[
        str, typer.Option("--max-size", metavar="SIZE", help="Largest synthetic body.")
    ] = "3M",
) -> int:
    """Serve a local CloudFront-like origin to rehearse a configuration (Ctrl-C stops it)."""
    import asyncio
    import contextlib
    import signal

    from tfbulk.credentials import load_public_key
    from tfbulk.origin import DirectoryContent, Origin, SyntheticContent

    if synthetic == (root is not None):
        raise BadInput("pass exactly one of --synthetic or --root DIR")
    if root is not None and not root.is_dir():
        raise BadInput(f"--root {root} is not a folder")
    keys = None
    if public_key is not None:
        if not key_pair_id:
            raise BadInput("--key-pair-id is required with --public-key")
        keys = {key_pair_id: load_public_key(public_key)}
    content = (
        DirectoryContent(root)
        if root is not None
        else SyntheticContent(
            parse_size(min_size, "--min-size"), parse_size(max_size, "--max-size")
        )
    )
    server = Origin(
        content=content,
        public_keys=keys,
        speed=parse_size(speed, "--speed") or None,
        host=host,
        port=port,
    )
    checking = (
        f"checking signatures of key pair {key_pair_id}" if keys else "not checking signatures"
    )
    try:
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C before the handlers are in
            asyncio.run(
                server.serve(
                    lambda o: typer.echo(f"serving {o.base_url} ({checking}); Ctrl-C stops"),
                    stop_signals=(signal.SIGINT, signal.SIGTERM),
                )
            )
    except OSError as exc:
        raise BadInput(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    typer.echo("origin stopped")
    return 0
