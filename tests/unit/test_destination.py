"""The destination reached by descriptors: nothing is created or written through a symlink
planted under --dest, folders are 0755, files 0644, and a valid file already there is kept."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tfbulk.pipeline.destination import Destination, Existing, PartFile, sync_folders
from tfbulk.pipeline.plan import UnsafePath

MP4 = b"\x00\x00\x00\x18ftypisom" + b"\x00" * 4096


@pytest.fixture
def dest(tmp_path: Path) -> Iterator[Destination]:
    destination = Destination.prepare(tmp_path / "dest")
    yield destination
    destination.close()


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "outside"
    folder.mkdir()
    return folder


def opened(dest: Destination, relative: str, **kwargs: object) -> PartFile:
    part = dest.open(relative, known_size=None, replace=False, **kwargs)  # type: ignore[arg-type]
    assert isinstance(part, PartFile)
    return part


def test_folders_are_created_0755_and_parts_0644_whatever_the_umask(dest: Destination) -> None:
    old = os.umask(0o077)
    try:
        part = opened(dest, "7/70/1.mp4")
    finally:
        os.umask(old)
    os.write(part.fd, MP4)
    part.publish()
    part.close()
    assert stat.S_IMODE((dest.root / "7").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest.root / "7" / "70").stat().st_mode) == 0o755
    final = dest.root / "7" / "70" / "1.mp4"
    assert stat.S_IMODE(final.stat().st_mode) == 0o644
    assert final.read_bytes() == MP4
    assert not (dest.root / "7" / "70" / "1.mp4.part").exists()


def test_a_symlinked_folder_is_refused_before_anything_is_created_outside(
    dest: Destination, outside: Path
) -> None:
    (dest.root / "7").symlink_to(outside)
    with pytest.raises(UnsafePath, match="is a symlink"):
        dest.open("7/70/1.mp4", known_size=None, replace=False)
    assert list(outside.iterdir()) == []


def test_a_symlinked_part_is_never_written_through(dest: Destination, outside: Path) -> None:
    victim = outside / "victim"
    victim.write_bytes(b"precious")
    (dest.root / "7").mkdir()
    (dest.root / "7" / "1.mp4.part").symlink_to(victim)
    with pytest.raises(UnsafePath, match=r"1\.mp4\.part is a symlink"):
        dest.open("7/1.mp4", known_size=None, replace=False)
    assert victim.read_bytes() == b"precious"


def test_a_symlinked_final_name_is_replaced_not_written_through(
    dest: Destination, outside: Path
) -> None:
    victim = outside / "victim.mp4"
    victim.write_bytes(MP4)  # even a valid video behind the link is not taken as done
    (dest.root / "7").mkdir()
    (dest.root / "7" / "1.mp4").symlink_to(victim)
    part = opened(dest, "7/1.mp4")
    os.write(part.fd, MP4 + b"new")
    part.publish()
    part.close()
    final = dest.root / "7" / "1.mp4"
    assert not final.is_symlink()
    assert final.read_bytes() == MP4 + b"new"
    assert victim.read_bytes() == MP4


def test_a_file_where_a_folder_belongs_fails_the_segment(dest: Destination) -> None:
    (dest.root / "7").write_bytes(b"not a folder")
    with pytest.raises(UnsafePath, match="not a folder"):
        dest.open("7/1.mp4", known_size=None, replace=False)


@pytest.mark.parametrize("kind", ["folder", "fifo"])
def test_a_part_that_is_not_a_regular_file_fails_the_segment(dest: Destination, kind: str) -> None:
    (dest.root / "7").mkdir()
    part = dest.root / "7" / "1.mp4.part"
    if kind == "folder":
        part.mkdir()
    else:
        os.mkfifo(part)
    with pytest.raises(UnsafePath, match=r"1\.mp4\.part is"):
        dest.open("7/1.mp4", known_size=None, replace=False)


def test_a_valid_file_already_there_is_kept_unless_replaced(dest: Destination) -> None:
    (dest.root / "7").mkdir()
    (dest.root / "7" / "1.mp4").write_bytes(MP4)
    assert dest.open("7/1.mp4", known_size=None, replace=False) == Existing(len(MP4))
    assert dest.open("7/1.mp4", known_size=len(MP4), replace=False) == Existing(len(MP4))
    wrong_size = dest.open("7/1.mp4", known_size=len(MP4) + 1, replace=False)
    replaced = dest.open("7/1.mp4", known_size=None, replace=True)
    for part in (wrong_size, replaced):
        assert isinstance(part, PartFile)
        part.close()


def test_an_existing_part_is_resumable_and_an_empty_one_goes_away(dest: Destination) -> None:
    (dest.root / "7").mkdir()
    (dest.root / "7" / "1.mp4.part").write_bytes(b"x" * 100)
    part = opened(dest, "7/1.mp4")
    assert part.size == 100
    part.start_over()
    assert part.size == 0
    part.close()
    assert not (dest.root / "7" / "1.mp4.part").exists()


def test_folder_descriptors_are_cached_and_bounded(dest: Destination) -> None:
    parts = [opened(dest, f"c{i % 300}/{i}.mp4") for i in range(600)]
    for part in parts:
        os.write(part.fd, MP4)
        part.publish()
    assert sync_folders(parts) == {}
    for part in parts:
        part.close()
    assert len(list(dest.root.rglob("*.mp4"))) == 600
