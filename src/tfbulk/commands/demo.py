"""`tfbulk demo`: the whole product on one machine, with nothing to set up.

It writes a sample catalogue and a throw-away key pair, starts the local origin (the same
signature-checking server the tests use) and runs the real `tfbulk run` pipeline against
it. Only the inputs are staged; the download path is exactly the production one.
"""

from __future__ import annotations

import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tfbulk.credentials import load_public_key, write_key_pair
from tfbulk.invocation import program
from tfbulk.origin import Fault, Origin, SyntheticContent
from tfbulk.origin.sample import SampleCourse, guitar_catalogue, write_snapshot
from tfbulk.pipeline.plan import video_key
from tfbulk.settings import RunSettings, SignerSettings, Tuning

KEY_PAIR_ID = "KDEMO2026TFBULK"
URL_PATH = "/truefire/{segment_id}.mp4"


@dataclass(frozen=True)
class DemoOptions:
    folder: Path | None = None
    courses: int = 4
    segments: int = 12
    min_size: int = 256 * 1024
    max_size: int = 3 * 1024 * 1024
    speed: float = 512 * 1024
    concurrency: int = 6
    faults: bool = False


@dataclass
class DemoSetup:
    """Everything the demo made, so the CLI can run it and print how to come back."""

    folder: Path
    snapshot: Path
    dest: Path
    private_key: Path
    public_key: Path
    origin: Origin
    catalogue: list[SampleCourse]
    faulty: dict[str, int]
    sizes: tuple[int, int]

    def settings(self, concurrency: int) -> RunSettings:
        return RunSettings(
            snapshot=self.snapshot,
            dest=self.dest,
            state=str(self.dest / ".tfbulk" / "state.db"),
            url_template=f"{self.origin.base_url}{URL_PATH}",
            signer=SignerSettings(
                kind="cloudfront",
                key_pair_id=KEY_PAIR_ID,
                private_key=self.private_key,
                expires=300.0,
            ),
            tuning=Tuning(concurrency=concurrency, backoff_base=0.5, backoff_max=4.0),
        )

    def inspect_commands(self, *, failed: bool) -> list[str]:
        """The commands that look at this demo's state DB (and requeue its failures)."""
        names = ["status", "failed", *(["retry"] if failed else [])]
        return [shlex.join([*program(), name, "--dest", str(self.dest)]) for name in names]

    def rerun_commands(self) -> tuple[str, str]:
        """The origin to start in one terminal, and the run to start in another."""
        port = self.origin.port
        origin = [
            *program(), "origin", "--synthetic", "--port", str(port),
            "--public-key", str(self.public_key), "--key-pair-id", KEY_PAIR_ID,
            "--min-size", str(self.sizes[0]), "--max-size", str(self.sizes[1]),
        ]  # fmt: skip
        run = [
            *program(), "run", "--snapshot", str(self.snapshot), "--dest", str(self.dest),
            "--url-template", f"http://127.0.0.1:{port}{URL_PATH}",
            "--key-pair-id", KEY_PAIR_ID, "--private-key", str(self.private_key),
        ]  # fmt: skip
        return shlex.join(origin), shlex.join(run)


def prepare(options: DemoOptions) -> DemoSetup:
    """Stage the inputs and start the origin (the caller stops it)."""
    folder = options.folder or Path(tempfile.mkdtemp(prefix="tfbulk-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    keys = folder / "keys"
    keys.mkdir(exist_ok=True)
    private_key, public_key = keys / "private.pem", keys / "public.pem"
    if not private_key.exists():
        write_key_pair(private_key, public_key)
    catalogue = guitar_catalogue(options.courses, options.segments)
    snapshot = folder / "catalogue.db"
    snapshot.unlink(missing_ok=True)
    write_snapshot(snapshot, catalogue)
    content = SyntheticContent(options.min_size, options.max_size)
    origin = Origin(
        content=content,
        public_keys={KEY_PAIR_ID: load_public_key(public_key)},
        speed=options.speed or None,
    )
    faulty = _inject_faults(origin, catalogue) if options.faults else {}
    origin.start()
    sizes = (options.min_size, options.max_size)
    return DemoSetup(
        folder,
        snapshot,
        folder / "videos",
        private_key,
        public_key,
        origin,
        catalogue,
        faulty,
        sizes,
    )


def _inject_faults(origin: Origin, catalogue: list[SampleCourse]) -> dict[str, int]:
    """A few transient errors, a dropped connection and one permanent 404."""
    ids = [s.segment_id for c in catalogue for s in c.segments if video_key(s.video)]
    plan = {
        "503 twice": (ids[1], Fault(status=503, times=2)),
        "429 with Retry-After": (ids[4], Fault(status=429, times=1, retry_after="1")),
        "dropped connection": (ids[len(ids) // 2], Fault(drop_after=100_000, times=1)),
        "404 (permanent)": (ids[-3], Fault(status=404, times=0)),
    }
    for segment_id, fault in plan.values():
        origin.add_fault(URL_PATH.format(segment_id=segment_id), fault)
    return {name: segment_id for name, (segment_id, _) in plan.items()}
