"""The exit codes of the contract, and the errors that end a command with one of them and a
one-line message. Every layer speaks `ExitCode`; no bare number stands for one."""

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0  # every segment in scope is success or skipped
    FAILED = 1  # the run finished and some segments failed
    BAD_INPUT = 2  # bad usage or input, or the disk filled up: nothing more was done
    LOCKED = 3  # another run holds the state DB or the destination
    STOPPED = 75  # stopped early (--max-time, the shared queue away): run again to continue
    INTERRUPTED = 130  # SIGINT/SIGTERM: state saved, run again to resume

    @property
    def resumable(self) -> bool:
        """Work remains that the same command, run again, picks up."""
        return self in (ExitCode.STOPPED, ExitCode.INTERRUPTED)


class TfbulkError(Exception):
    """Base error; the CLI prints its message (never a traceback) and exits with `exit_code`."""

    exit_code = ExitCode.FAILED


class BadInput(TfbulkError):
    """Bad usage or bad input (flags, snapshot, key, destination): nothing was downloaded."""

    exit_code = ExitCode.BAD_INPUT


class DiskError(TfbulkError):
    """Writing files or state failed for a reason no retry fixes (disk full, read-only)."""

    exit_code = ExitCode.BAD_INPUT


class StateLocked(TfbulkError):
    """Another tfbulk run holds the lock on this state DB or this destination."""

    exit_code = ExitCode.LOCKED


class StateUnavailable(TfbulkError):
    """The shared queue (PostgreSQL) is out of reach: this worker stops, the work remains."""

    exit_code = ExitCode.STOPPED
