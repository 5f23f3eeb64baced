"""Writing outputs safely: the checks before, and the atomic replacement at the end.

Every command that writes something the user keeps (an animation, a CSV, a dataset, a model,
an adapter, a checkpoint) follows the same two rules, kept here once:

* **May I write it?** ``check_writable`` (an output replaced whole: a file, or a folder the
  program wrote earlier) and ``check_writable_folder`` (a folder written into, where the user's
  other files stay) run before any work is spent, and refuse with one line that names the
  problem and the fix. ``--force`` means "overwrite my previous output", never "delete a folder
  of my own files".
* **Never half a file.** ``atomic_path`` hands out a hidden temporary sibling of the target and
  renames it into place only once it is complete, so a crash, a full disk or Ctrl-C leaves the
  previous output exactly as it was and no temporary file behind. Renames are atomic only
  within one file system, which is why temporaries live next to their target.

This module imports only the standard library and ``flipsketch.errors``, so any layer can use it.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from flipsketch.errors import UsageError


# -- may I write this output? ------------------------------------------------------------------
def check_writable(path: Path, force: bool, *, what: str = "output path",
                   replaceable: Callable[[Path], bool] | None = None) -> None:
    """Refuse an output that is replaced whole (a file, or a folder such as PNG frames) if it
    cannot or may not be written, before any work is spent on it.

    ``what`` is how the user names the output in the fix ("pick another --csv path").
    ``replaceable(folder)`` says whether an existing folder at ``path`` is the program's own
    earlier output, which ``force`` may replace; without it no folder is ever replaced.
    """
    path = Path(path)
    if path.is_dir() and not (replaceable is not None and replaceable(path)):
        if any(path.iterdir()):
            raise UsageError(f"'{path}' is a folder holding other files, which --force never "
                             f"deletes; pass another {what}")
        raise UsageError(f"'{path}' is a folder; pass another {what}")
    if (path.exists() or path.is_symlink()) and not force:
        raise UsageError(_exists(path))
    parent = path.parent
    if not parent.is_dir():
        raise UsageError(f"folder '{parent}' for '{path.name}' does not exist; create it first")
    _check_access(parent, what)


def check_writable_folder(path: Path, force: bool, *, what: str = "-o folder",
                          force_fix: str | None = "--force to replace it") -> None:
    """Refuse a folder output that is written into (a dataset, a model, an adapter, a run) if
    it cannot or may not be written, before any work is spent on it.

    Such commands replace only their own entries and keep the user's other files, but a
    non-empty folder still needs ``force`` (or the command's own option, such as ``--resume``),
    so that two outputs are never mixed by accident. Hidden entries do not count: they are an
    interrupted run's temporaries or the file manager's, not something the user would miss.
    Missing parent folders are fine (the command creates them), as long as they can be created.
    ``force_fix`` is what the fix offers for a non-empty folder ("--force to replace its
    clips"); None when the command has no such option.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"'{path}' is a file, not a folder; pass another {what}")
    if path.is_dir() and not force and any(not p.name.startswith(".") for p in path.iterdir()):
        fix = f"{force_fix}, or another {what}" if force_fix else f"another {what}"
        raise UsageError(f"'{path}' is not empty; pass {fix}")
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"cannot create '{path}': '{existing}' is a file; pass another {what}")
    _check_access(existing, what)


def _check_access(folder: Path, what: str) -> None:
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write to folder '{folder}'; check its permissions or pick "
                         f"another {what}")


def _exists(path: Path) -> str:
    return f"'{path}' exists; pass --force to overwrite"


# -- writing atomically ------------------------------------------------------------------------
@contextmanager
def atomic_path(target: Path, *, force: bool, suffix: str | None = None) -> Iterator[Path]:
    """Yield a hidden temporary sibling of ``target`` (not yet existing) for the caller to
    write a file or create a folder at; when the block ends normally it is renamed to
    ``target`` (``replace_atomically``).

    On any failure, Ctrl-C included, the temporary is removed and an existing ``target`` is
    left untouched. Without ``force`` a ``target`` that appeared while the block ran is not
    replaced (a ``UsageError``). The temporary's name ends in ``suffix`` (default: the
    target's), because some writers pick the format from it or append their own:
    ``out.gif`` is written as ``.out.gif.1a2b3c4d.tmp.gif``.
    """
    target = Path(target)
    suffix = target.suffix if suffix is None else suffix
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp{suffix}")
    try:
        yield tmp
        if not force and (target.exists() or target.is_symlink()):
            raise UsageError(_exists(target))
        replace_atomically(tmp, target)
    except BaseException:
        remove(tmp)
        raise


def replace_atomically(source: Path, target: Path) -> None:
    """Rename ``source`` to ``target``, replacing what is there.

    A file replaces a file in one atomic rename. A folder cannot be renamed over another, so
    an existing ``target`` (or a file where a folder goes, or the other way round) is moved
    aside first and deleted only once ``source`` is in place: at every moment ``target`` is
    either the old output or the new one, and a failed rename puts the old one back.
    """
    source, target = Path(source), Path(target)
    if not (target.exists() and (target.is_dir() or source.is_dir())):
        os.replace(source, target)
        return
    aside = target.with_name(f".{target.name}.{secrets.token_hex(4)}.old")
    os.replace(target, aside)
    try:
        os.replace(source, target)
    except BaseException:
        os.replace(aside, target)
        raise
    remove(aside)


def write_text_atomic(path: Path, text: str, *, force: bool) -> None:
    """``path.write_text(text)`` (UTF-8, newlines as given), replacing ``path`` atomically."""
    with atomic_path(Path(path), force=force) as tmp:
        with open(tmp, "x", encoding="utf-8", newline="") as file:
            file.write(text)


@contextmanager
def exclusive_folder(folder: Path, busy: str) -> Iterator[None]:
    """Hold ``folder`` for this process while the block runs; if another process holds it,
    raise ``UsageError(busy)`` at once rather than wait.

    The lock is ``flock`` on the folder itself: nothing is written into it, and the kernel
    drops it when the process ends however it ends (``kill -9`` included), so a crash never
    leaves a stale lock to clear by hand. Without ``fcntl`` (Windows) the block runs unheld.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(busy) from None
        yield
    finally:
        os.close(fd)  # releases the lock


# What a write killed mid-way leaves (SIGKILL, a power cut: no cleanup runs): atomic_path's
# temporary (.NAME.1a2b3c4d.tmp.SUFFIX), an output replace_atomically moved aside
# (.NAME.1a2b3c4d.old), a staging_folder (.staging-XXXX).
_LEFT_BY_A_KILL = re.compile(r"^\.(?P<name>.+)\.[0-9a-f]{8}\.(?P<kind>tmp(\..*)?|old)$")


def sweep_killed_writes(folder: Path) -> int:
    """Clear what writes killed mid-way left in ``folder`` and below; returns how many.

    A moved-aside output whose replacement never arrived (the kill came between the two
    renames) is put back; every other leftover is deleted. Only for a folder this process
    holds (``exclusive_folder``): another process's write in progress looks the same.
    """
    swept = 0
    for path in sorted(Path(folder).rglob(".*"), key=lambda p: len(p.parts), reverse=True):
        match = _LEFT_BY_A_KILL.match(path.name)
        if match is None and not (path.is_dir() and path.name.startswith(".staging-")):
            continue
        target = path.with_name(match["name"]) if match else None
        if match and match["kind"] == "old" and not (target.exists() or target.is_symlink()):
            os.replace(path, target)  # the previous output, back where it was
        else:
            remove(path)
        swept += 1
    return swept


@contextmanager
def staging_folder(folder: Path) -> Iterator[Path]:
    """A hidden empty folder inside ``folder``, deleted when the block ends whatever happens.

    For outputs that go into a folder the user also keeps other files in (an adapter, a
    dataset): they are written here and then moved in entry by entry with
    ``replace_atomically``, as the folder itself must not be replaced. Inside ``folder``, so
    that those renames stay on one file system.
    """
    with tempfile.TemporaryDirectory(prefix=".staging-", dir=folder,
                                     ignore_cleanup_errors=True) as staging:
        yield Path(staging)


def remove(path: Path) -> None:
    """Delete a file, link or folder that may or may not exist (a link, not what it points
    to). Never raises: it cleans up after a failure or an earlier run, and must not hide the
    error that matters."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass


# -- where flipsketch keeps its own files --------------------------------------------------------
def user_config_dir() -> Path:
    """The folder of the user's settings (``flipsketch models default``): ``FLIPSKETCH_CONFIG_DIR``
    when set, else the platform's config folder (click's rule: ``~/.config/flipsketch``,
    ``~/Library/Application Support/flipsketch``, ``%APPDATA%\\flipsketch``)."""
    override = os.environ.get("FLIPSKETCH_CONFIG_DIR")
    if override:
        return Path(override).expanduser()
    import click  # typer's own dependency; it knows each platform's convention

    return Path(click.get_app_dir("flipsketch"))


def user_cache_dir() -> Path:
    """The folder of results that can be recomputed (inverted drawings): ``FLIPSKETCH_CACHE``
    when set, else ``$XDG_CACHE_HOME/flipsketch`` (``~/.cache``), ``~/Library/Caches/flipsketch``
    on macOS, ``%LOCALAPPDATA%\\flipsketch\\Cache`` on Windows. Deleting it loses nothing."""
    override = os.environ.get("FLIPSKETCH_CACHE")
    if override:
        return Path(override).expanduser()
    import sys

    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "flipsketch" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "flipsketch"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "flipsketch"
