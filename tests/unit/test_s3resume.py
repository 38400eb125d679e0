"""The s3_uploads table: created idempotently beside the store's tables, rows by key."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from tfbulk.pipeline.s3resume import Recorded, UploadLog
from tfbulk.state import open_store


def test_rows_survive_a_reopen_and_the_store_is_untouched(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    open_store(str(state), create=True, lock=False).close()
    log = UploadLog(str(state))
    log.save("a/1.mp4", Recorded("up-1", b"\0\0\0\x18ftyp", ['"e1"'], 5 << 20))
    log.save("a/1.mp4", Recorded("up-1", b"\0\0\0\x18ftyp", ['"e1"', '"e2"'], 10 << 20))
    log.close()
    again = UploadLog(str(state))  # CREATE TABLE IF NOT EXISTS: a second open is fine
    assert again.find("a/1.mp4") == Recorded("up-1", b"\0\0\0\x18ftyp", ['"e1"', '"e2"'], 10 << 20)
    assert again.find("a/2.mp4") is None
    assert again.keys() == {"a/1.mp4"}
    again.close()
    store = open_store(str(state), create=False, lock=False)
    assert store.summary().total == 0
    store.close()


def test_forget_drops_only_that_upload(tmp_path: Path) -> None:
    log = UploadLog(str(tmp_path / "state.db"))
    log.save("k", Recorded("new", b"h", ['"e"'], 1))
    log.forget("k", "old")  # an abort of an earlier upload to the same key
    assert log.find("k") is not None
    log.forget("k", "new")
    assert log.find("k") is None
    log.close()


def test_a_table_from_before_body_md5_and_part_sums_gets_them(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    with contextlib.closing(sqlite3.connect(state)) as conn:
        conn.execute(
            "CREATE TABLE s3_uploads (object_key TEXT PRIMARY KEY, upload_id TEXT NOT NULL, "
            "head BLOB NOT NULL, part_etags TEXT NOT NULL, stored BIGINT NOT NULL, "
            "updated DOUBLE PRECISION NOT NULL)"
        )
        conn.execute("INSERT INTO s3_uploads VALUES ('old', 'up-0', x'00', '[\"e\"]', 5, 0)")
        conn.commit()
    log = UploadLog(str(state))
    assert log.find("old") == Recorded("up-0", b"\0", ["e"], 5)
    log.save("k", Recorded("up-1", b"h", ['"e"'], 1, "0" * 32, [(1, "f" * 32)]))
    log.close()
    again = UploadLog(str(state))  # the columns are there now: nothing to add
    assert again.find("k") == Recorded("up-1", b"h", ['"e"'], 1, "0" * 32, [(1, "f" * 32)])
    assert again.find("old") == Recorded("up-0", b"\0", ["e"], 5)  # sums None: uncheckable
    again.close()


def test_an_unreachable_postgresql_is_exit_75_without_its_password() -> None:
    """A worker whose queue is away stops with the contract's "run again" code and one
    line, never psycopg's traceback, and the URL's password stays out of it."""
    import pytest

    from tfbulk.errors import ExitCode, StateUnavailable

    with pytest.raises(StateUnavailable) as caught:
        UploadLog("postgresql://tfbulk:hunter2-secret@127.0.0.1:1/queue?connect_timeout=5")
    assert caught.value.exit_code == ExitCode.STOPPED
    assert "127.0.0.1:1/queue" in str(caught.value)
    assert "hunter2" not in str(caught.value)
