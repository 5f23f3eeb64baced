"""Writing outputs safely (``flipsketch.files``): the checks, and the atomic replacement."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from flipsketch.errors import UsageError
from flipsketch.files import (
    atomic_path,
    check_writable,
    check_writable_folder,
    replace_atomically,
    staging_folder,
    sweep_killed_writes,
    write_text_atomic,
)


def listing(folder: Path) -> list[str]:
    """Every entry, hidden ones included: leftovers are what these tests look for."""
    return sorted(p.name for p in folder.iterdir())


def only_frames(folder: Path) -> bool:
    return all(p.suffix == ".png" for p in folder.iterdir())


@pytest.fixture
def locked(tmp_path):
    """A folder its owner may read but not write; skipped as root (os.geteuid() == 0 with its
    usual capabilities), who can write anyway."""
    folder = tmp_path / "locked"
    folder.mkdir(mode=0o500)
    if os.access(folder, os.W_OK):
        pytest.skip("running as root: folder permissions do not stop writes")
    yield folder
    folder.chmod(0o700)


# -- atomic_path ---------------------------------------------------------------------------------
def test_replaces_a_file_through_a_hidden_temporary_that_keeps_the_suffix(tmp_path):
    target = tmp_path / "out.gif"
    target.write_text("old")
    with atomic_path(target, force=True) as tmp:
        assert tmp.parent == tmp_path and not tmp.exists()
        assert tmp.name.startswith(".out.gif.") and tmp.name.endswith(".tmp.gif")
        tmp.write_text("new")
        assert target.read_text() == "old"  # nothing changes before the block ends
    assert target.read_text() == "new"
    assert listing(tmp_path) == ["out.gif"]


def test_suffix_can_be_chosen(tmp_path):
    with atomic_path(tmp_path / "a.sheet.png", force=True, suffix=".sheet.png") as tmp:
        assert tmp.name.endswith(".tmp.sheet.png")
        tmp.write_bytes(b"png")
    assert listing(tmp_path) == ["a.sheet.png"]


@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()])
@pytest.mark.parametrize("kind", ["file", "folder"])
def test_a_failure_keeps_the_previous_output_and_leaves_no_temporary(tmp_path, error, kind):
    target = tmp_path / "out"
    target.write_text("previous")
    with pytest.raises(type(error)), atomic_path(target, force=True) as tmp:
        if kind == "file":
            tmp.write_text("half")
        else:
            tmp.mkdir()
            (tmp / "frame_000.png").write_text("half")
        raise error
    assert target.read_text() == "previous"
    assert listing(tmp_path) == ["out"]


def test_without_force_an_output_that_appeared_meanwhile_is_kept(tmp_path):
    target = tmp_path / "table.csv"
    with pytest.raises(UsageError, match="exists; pass --force"), \
            atomic_path(target, force=False) as tmp:
        tmp.write_text("ours")
        target.write_text("someone else's")
    assert target.read_text() == "someone else's"
    assert listing(tmp_path) == ["table.csv"]


def test_a_folder_replaces_a_folder_and_nothing_is_left_aside(tmp_path):
    target = tmp_path / "frames"
    target.mkdir()
    (target / "frame_000.png").write_text("old")
    with atomic_path(target, force=True) as tmp:
        tmp.mkdir()
        (tmp / "frame_001.png").write_text("new")
    assert listing(target) == ["frame_001.png"]
    assert listing(tmp_path) == ["frames"]


def test_a_file_replaces_a_folder_and_a_folder_a_file(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    with atomic_path(target, force=True) as tmp:
        tmp.write_text("file")
    assert target.read_text() == "file"
    with atomic_path(target, force=True) as tmp:
        tmp.mkdir()
    assert target.is_dir() and listing(tmp_path) == ["out"]


# -- replace_atomically --------------------------------------------------------------------------
def test_the_old_folder_stays_until_the_new_one_is_in_place(tmp_path):
    """The rename that would put the new folder in place fails (there is none): the old
    folder, already moved aside, is put back whole and nothing is left beside it."""
    target = tmp_path / "model"
    target.mkdir()
    (target / "weights").write_text("old")
    with pytest.raises(FileNotFoundError):
        replace_atomically(tmp_path / "missing", target)
    assert (target / "weights").read_text() == "old"
    assert listing(tmp_path) == ["model"]

    new = tmp_path / "new"
    new.mkdir()
    (new / "weights").write_text("new")
    replace_atomically(new, target)
    assert (target / "weights").read_text() == "new"
    assert listing(tmp_path) == ["model"]


def test_replacing_a_link_to_a_folder_leaves_the_folder_alone(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    link = tmp_path / "out"
    link.symlink_to(mine)
    new = tmp_path / "new"
    new.mkdir()
    replace_atomically(new, link)
    assert not link.is_symlink() and link.is_dir()
    assert (mine / "notes.txt").read_text() == "keep"


# -- write_text_atomic and staging_folder --------------------------------------------------------
def test_write_text_atomic_keeps_newlines_as_given(tmp_path):
    path = tmp_path / "t.csv"
    write_text_atomic(path, "a,b\r\n1,2\n", force=False)
    assert path.read_bytes() == b"a,b\r\n1,2\n"
    with pytest.raises(UsageError, match="exists"):
        write_text_atomic(path, "other", force=False)
    write_text_atomic(path, "é", force=True)
    assert path.read_text(encoding="utf-8") == "é"
    assert listing(tmp_path) == ["t.csv"]


@pytest.mark.parametrize("error", [None, KeyboardInterrupt()])
def test_staging_folder_is_hidden_inside_and_always_removed(tmp_path, error):
    try:
        with staging_folder(tmp_path) as staging:
            assert staging.parent == tmp_path and staging.name.startswith(".")
            (staging / "clip.gif").write_text("x")
            if error:
                raise error
            replace_atomically(staging / "clip.gif", tmp_path / "clip.gif")
    except KeyboardInterrupt:
        pass
    assert listing(tmp_path) == ([] if error else ["clip.gif"])


# -- check_writable: outputs replaced whole ------------------------------------------------------
def test_check_writable_refuses_an_existing_output_without_force(tmp_path):
    target = tmp_path / "out.gif"
    check_writable(target, force=False)  # nothing there yet
    target.write_text("mine")
    with pytest.raises(UsageError) as info:
        check_writable(target, force=False)
    assert str(info.value) == f"'{target}' exists; pass --force to overwrite"
    check_writable(target, force=True)
    assert target.read_text() == "mine"  # a check writes nothing


@pytest.mark.parametrize("case", ["missing", "file"])
def test_check_writable_needs_the_parent_folder(tmp_path, case):
    parent = tmp_path / "nope"
    if case == "file":
        parent.write_text("a file, not a folder")
    with pytest.raises(UsageError, match=f"folder '{parent}' for 'out.gif' does not exist; "
                                         "create it first"):
        check_writable(parent / "out.gif", force=True)


def test_check_writable_needs_a_writable_parent(locked):
    with pytest.raises(UsageError, match="cannot write to folder .*pick another --csv path"):
        check_writable(locked / "table.csv", force=True, what="--csv path")


def test_a_folder_of_user_files_is_never_replaced(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "holiday.jpg").write_text("memories")
    for replaceable in (None, only_frames):
        with pytest.raises(UsageError, match="holding other files, which --force never deletes"):
            check_writable(photos, force=True, replaceable=replaceable)
    assert listing(photos) == ["holiday.jpg"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UsageError, match="is a folder; pass another --csv path"):
        check_writable(empty, force=True, what="--csv path")

    frames = tmp_path / "frames"
    frames.mkdir()
    (frames / "frame_000.png").write_text("ours")
    with pytest.raises(UsageError, match="exists; pass --force"):
        check_writable(frames, force=False, replaceable=only_frames)
    check_writable(frames, force=True, replaceable=only_frames)


# -- check_writable_folder: folders written into -------------------------------------------------
def test_check_writable_folder_refuses_a_non_empty_folder_without_force(tmp_path):
    out = tmp_path / "data"
    check_writable_folder(out, force=False)  # missing: created by the command
    out.mkdir()
    (out / ".DS_Store").write_text("hidden entries do not count")
    check_writable_folder(out, force=False)
    (out / "notes.md").write_text("mine")
    with pytest.raises(UsageError) as info:
        check_writable_folder(out, force=False, force_fix="--force to replace its clips",
                              what="output folder")
    assert str(info.value) == (f"'{out}' is not empty; pass --force to replace its clips, "
                               "or another output folder")
    check_writable_folder(out, force=True)
    with pytest.raises(UsageError, match=r"not empty; pass another --export folder$"):
        check_writable_folder(out, force=False, force_fix=None, what="--export folder")


def test_check_writable_folder_refuses_a_file(tmp_path):
    file = tmp_path / "adapter"
    file.write_text("not a folder")
    with pytest.raises(UsageError, match="is a file, not a folder; pass another -o folder"):
        check_writable_folder(file, force=True)
    with pytest.raises(UsageError, match=f"cannot create '{file / 'sub'}': '{file}' is a file"):
        check_writable_folder(file / "sub", force=True)


def test_check_writable_folder_needs_write_access(locked):
    with pytest.raises(UsageError, match=f"cannot write to folder '{locked}'"):
        check_writable_folder(locked, force=True)
    with pytest.raises(UsageError, match=f"cannot write to folder '{locked}'"):
        check_writable_folder(locked / "new" / "deeper", force=True)


# A real process killed (SIGKILL: no handler, no finally) in the middle of each kind of write.
KILLED_WRITES = """
import os, signal, sys
from pathlib import Path
from flipsketch.files import atomic_path, replace_atomically, staging_folder

folder, what = Path(sys.argv[1]), sys.argv[2]
if what == "file":
    with atomic_path(folder / "out.gif", force=True) as tmp:
        tmp.write_bytes(b"GIF89a, half of it")
        os.kill(os.getpid(), signal.SIGKILL)
elif what == "folder":  # between moving the old folder aside and putting the new one in
    new = folder / "new"
    new.mkdir()
    (new / "a.png").write_bytes(b"new")
    rename = os.replace

    def replace_then_die(source, target):
        rename(source, target)
        os.kill(os.getpid(), signal.SIGKILL)

    os.replace = replace_then_die
    replace_atomically(new, folder / "frames")
else:
    with staging_folder(folder) as staging:
        (staging / "part").write_bytes(b"x")
        os.kill(os.getpid(), signal.SIGKILL)
"""


def test_writes_killed_mid_way_are_swept_and_an_output_moved_aside_is_put_back(tmp_path):
    (tmp_path / "frames").mkdir()
    (tmp_path / "frames" / "a.png").write_bytes(b"old")
    (tmp_path / ".flipsketch").mkdir()  # hidden, but not a leftover
    (tmp_path / ".notes.txt").write_text("the user's")
    for what in ("file", "folder", "staging"):
        done = subprocess.run([sys.executable, "-c", KILLED_WRITES, tmp_path, what])
        assert done.returncode == -signal.SIGKILL, what
    kept = [".flipsketch", ".notes.txt", "new"]
    left = sorted(set(listing(tmp_path)) - set(kept))
    assert len(left) == 3 and "frames" not in left, left  # the old frames are aside
    assert sweep_killed_writes(tmp_path) == 3
    assert listing(tmp_path) == [*kept[:2], "frames", "new"]
    assert (tmp_path / "frames" / "a.png").read_bytes() == b"old"
