"""Errors that end a command with a documented exit code and a one-line message."""


class TfbulkError(Exception):
    """Base error; the CLI prints its message (never a traceback) and exits with `exit_code`."""

    exit_code = 1


class BadInput(TfbulkError):
    """Bad usage or bad input (flags, snapshot, key, destination): nothing was downloaded."""

    exit_code = 2


class DiskError(TfbulkError):
    """Writing files or state failed for a reason no retry fixes (disk full, read-only)."""

    exit_code = 2


class StateLocked(TfbulkError):
    """Another tfbulk run holds the lock on this state DB."""

    exit_code = 3
