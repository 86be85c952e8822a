"""Atomic writes of one file or a whole folder: build it under a hidden temporary name
beside the target, fsync, then rename it into place, so a reader (or a crash) sees the
old version or the new one, never half of one. What to write is the caller's business."""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import os
import re
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

# What a file created by open() has under the usual umask 022; mkstemp makes 0o600.
FILE_MODE = 0o644
# Hidden names (a leading dot), so listings that skip dot-entries never show them.
STAGING_PREFIX, REPLACED_PREFIX, LOCK_FILE = ".tmp-", ".replaced-", ".lock"
_LEFTOVER = re.compile(rf"(?P<kind>{re.escape(STAGING_PREFIX)}|{re.escape(REPLACED_PREFIX)})"
                       r"(?P<name>.+)-(?P<tag>[0-9a-f]{8})")
# A staging folder this old belongs to a process that died; younger ones may be live.
STALE_AFTER_SECONDS = 3600
# Test hook, see pause_point().
PAUSE_ENV = "DIGIT_LAB_TEST_PAUSE_IN_SAVE"


# ---- one file -------------------------------------------------------------------

@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "wb", *,
                encoding: str = "utf-8") -> Iterator[IO[Any]]:
    """Yield a handle to a temporary file in `path`'s folder ("wb", or "w" for text).

    On a clean exit the file is made 0o644, fsynced and renamed to `path`; on an error
    (or KeyboardInterrupt) it is removed and `path` is left as it was.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                             suffix=".tmp")
    try:
        text_options = {} if mode == "wb" else {"encoding": encoding}
        with os.fdopen(descriptor, mode, **text_options) as handle:
            yield handle
            handle.flush()
            if hasattr(os, "fchmod"):
                os.fchmod(handle.fileno(), FILE_MODE)
            os.fsync(handle.fileno())
        if not hasattr(os, "fchmod"):
            os.chmod(temporary, FILE_MODE)
        pause_point("before-replace")
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically; return the path."""
    with atomic_file(path, "wb") as handle:
        handle.write(data)
    return Path(path)


# ---- a whole folder ---------------------------------------------------------------

@contextlib.contextmanager
def atomic_folder(target: str | os.PathLike, *, replace: bool = False) -> Iterator[Path]:
    """Yield an empty staging folder beside `target`; on a clean exit it becomes `target`.

    FileExistsError if `target` exists and `replace` is false. With `replace` the old
    folder stays whole until the new one is in place: it is renamed aside, the new one
    renamed in, then the old one removed; if the process dies between the two renames,
    recover_folders() puts the old one back. On an error the staging folder is removed.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover_folders(target.parent)
    if target.exists() and not replace:
        raise FileExistsError(errno.EEXIST, "already exists", str(target))
    staging = target.parent / f"{STAGING_PREFIX}{target.name}-{_tag()}"
    staging.mkdir()
    try:
        yield staging
        fsync_dir(staging)
        pause_point("staged")
        _move_into_place(staging, target, replace)
    except BaseException:
        remove_path(staging)
        raise


def _move_into_place(staging: Path, target: Path, replace: bool) -> None:
    aside = None
    with folder_lock(target.parent):
        if target.exists() and replace:
            aside = target.parent / f"{REPLACED_PREFIX}{target.name}-{_tag()}"
            os.rename(target, aside)
            pause_point("between-renames")
        try:
            if target.exists():        # saved by another process meanwhile
                raise FileExistsError(errno.EEXIST, "already exists", str(target))
            os.rename(staging, target)
        except BaseException:
            if aside is not None:
                os.rename(aside, target)
            raise
        fsync_dir(target.parent)
    if aside is not None:
        remove_path(aside)


def rename_folder(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """Rename a folder; FileExistsError if `target` exists (even an empty folder)."""
    source, target = Path(source), Path(target)
    with folder_lock(source.parent):
        if target.exists():
            raise FileExistsError(errno.EEXIST, "already exists", str(target))
        os.rename(source, target)
    fsync_dir(target.parent)


def delete_folder(folder: str | os.PathLike) -> None:
    """Remove a folder; it is renamed to a hidden name first, so a half-deleted folder
    never shows up in a listing."""
    folder = Path(folder)
    doomed = folder.parent / f"{STAGING_PREFIX}deleted-{folder.name}-{_tag()}"
    os.rename(folder, doomed)
    remove_path(doomed)


def recover_folders(parent: str | os.PathLike) -> None:
    """Put back folders whose replacement was interrupted; drop stale staging folders."""
    parent = Path(parent)
    if not parent.is_dir():
        return
    asides = []
    for entry in parent.iterdir():
        # Only names this module makes: a folder of other things loses nothing.
        made_here = _LEFTOVER.fullmatch(entry.name)
        if made_here is None:
            continue
        if made_here["kind"] == REPLACED_PREFIX:
            asides.append((entry, parent / made_here["name"]))
        elif _age_seconds(entry) > STALE_AFTER_SECONDS:
            remove_path(entry)
    if not asides:
        return
    with folder_lock(parent):       # a live replacement between its renames holds the lock
        for entry, original in asides:
            if not entry.exists():
                continue            # another process recovered it meanwhile
            if original.exists():
                remove_path(entry)
            else:
                with contextlib.suppress(OSError):
                    os.rename(entry, original)


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Renames in `folder` happen one process (and thread) at a time: POSIX flock on
    `folder/.lock`, which dies with its process, so a killed writer never blocks anyone."""
    try:
        import fcntl
        handle = open(folder / LOCK_FILE, "a")      # noqa: SIM115 - held across the yield
    except (ImportError, OSError):                  # Windows, or a read-only folder
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def remove_path(path: Path) -> None:
    """Remove a file or a folder tree, quietly (it may be gone already)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


def _tag() -> str:
    return uuid.uuid4().hex[:8]


def _age_seconds(path: Path) -> float:
    try:
        return dt.datetime.now().timestamp() - path.stat().st_mtime
    except OSError:
        return 0.0


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make renames in `folder` durable (POSIX; elsewhere a no-op)."""
    if os.name != "posix":
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def pause_point(point: str) -> None:
    """Test hook: when $DIGIT_LAB_TEST_PAUSE_IN_SAVE equals `point`, say so on stderr and
    sleep, so a test can SIGKILL a real process at exactly that moment of a write.

    Points: "before-replace" (atomic_file: the temporary file complete, not renamed),
    "staged" (atomic_folder: the staging folder complete, nothing renamed) and
    "between-renames" (the old folder moved aside, the new one not yet in place).
    """
    if os.environ.get(PAUSE_ENV) == point:
        print(f"paused at {point}", file=sys.stderr, flush=True)
        time.sleep(3600)
