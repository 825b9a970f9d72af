"""Files written whole: each output is made under a temporary name beside its destination and renamed into place
when complete, so that a reader (or a crash) never sees half of it.

A destination is written where `open()` would write it: through a symbolic link (the link stays a link, its target
gets the file), and into a pipe or device (a FIFO a player reads) by writing the complete file's bytes to it.

`tempfile` makes its files and folders private to their owner (modes 0600 and 0700). An output is not a secret: it
gets the mode a plain `open()` or `mkdir()` would give it under the process's umask, so that a shared output folder
or model folder stays readable by the people it is shared with.

Pickled checkpoints are read here too, without running code (`load_tensors`).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import glob
import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path

import torch

from .errors import UsageError, one_line

__all__ = [
    "check_output_folder",
    "file_size_limit",
    "is_special",
    "path_errors",
    "leftovers_beside",
    "load_tensors",
    "refused_write",
    "plain_file_modes",
    "put_in_place",
    "system_reason",
    "temporary_file_beside",
    "temporary_folder_beside",
    "why_not_writable",
    "write_target",
    "written_whole",
]


@functools.cache  # read once: setting it to read it is not thread-safe
def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _hidden_prefix(path: Path) -> str:
    """The start of the name of every temporary file or folder made beside `path`: hidden, and naming its output."""
    return f".{path.name}."


def temporary_file_beside(path: Path) -> Path:
    """A new empty file beside `path` (`.<name>.<random>.part`), with the mode `open(..., "w")` would give; for the
    caller to fill and rename onto `path` (`put_in_place`). Where `path` is a pipe or a device (`is_special`), it is
    made in the system's temporary folder instead: it is copied into `path`, never renamed, and a device's folder
    (/dev) is no place for it. Raises `OSError` where the folder cannot take it."""
    folder = None if is_special(path) else path.parent
    handle, temporary = tempfile.mkstemp(prefix=_hidden_prefix(path), suffix=".part", dir=folder)
    os.close(handle)
    _give_plain_mode(temporary)
    return Path(temporary)


def is_special(path: Path) -> bool:
    """Whether `path` is (or links to) a pipe, a device or a socket: what `open()` writes into, with no file to
    replace."""
    return path.exists() and not path.is_file() and not path.is_dir()


def write_target(path: Path) -> Path:
    """The file a write to `path` lands in, as `open(path, "w")` would find it: where a symbolic link at `path` leads
    (followed to its end, even to a file not made yet), else `path`; the link itself where it leads to a pipe or a
    device (`/dev/stdout`'s end is no path). Temporary files go beside it, so that renaming one onto it stays within
    one file system and leaves the link a link."""
    return Path(os.path.realpath(path)) if path.is_symlink() and not is_special(path) else path


def put_in_place(temporary: Path, target: Path) -> None:
    """Make the complete `temporary` file the content of `target` (`write_target`): renamed onto it, or, where
    `target` is a pipe or a device (`is_special`: no file to replace), its bytes written to it, as
    `open(target, "wb")` would (a FIFO's writer waits for its reader) and `temporary` removed. Raises `OSError`."""
    if is_special(target):
        with open(temporary, "rb") as source, open(target, "wb") as destination:
            shutil.copyfileobj(source, destination)
        temporary.unlink()
    else:
        os.replace(temporary, target)


@contextlib.contextmanager
def written_whole(path: Path):
    """Yields a temporary file beside `path`'s `write_target` (`temporary_file_beside`) for the block to write; when
    the block ends without an exception it takes that target's place (`put_in_place`), otherwise it is removed and
    `path` is left as it was. Raises `OSError` where the folder cannot take it."""
    target = write_target(path)
    temporary = temporary_file_beside(target)
    try:
        yield temporary
        _give_plain_mode(temporary)  # a writer that made the file again (safetensors) made it owner-only
        put_in_place(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def temporary_folder_beside(path: Path) -> Path:
    """A new empty folder beside `path` (`.<name>.<random>`), with the mode `mkdir` would give; for the caller to fill
    and rename onto `path`. Raises `OSError` where the parent cannot take it."""
    temporary = tempfile.mkdtemp(prefix=_hidden_prefix(path), dir=path.parent)
    os.chmod(temporary, 0o777 & ~_umask())
    return Path(temporary)


def leftovers_beside(path: Path) -> list[Path]:
    """The folders `temporary_folder_beside(path)` made that are still there: left by a run that was killed before it
    could remove them (kill -9, a power cut), or in use by one running now."""
    pattern = glob.escape(_hidden_prefix(path)) + "*"  # a name holding [ or * is no pattern
    return sorted(other for other in path.parent.glob(pattern) if other.is_dir())


def _give_plain_mode(path: str | Path) -> None:
    """Give the file `path` the mode `open(..., "w")` would give it (read and write for all, less the umask)."""
    os.chmod(path, 0o666 & ~_umask())


def plain_file_modes(folder: Path) -> None:
    """Give every file under `folder` the mode `open(..., "w")` would give: some writers (the model weights' shards)
    make theirs owner-only."""
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            _give_plain_mode(path)


def _read_only_mount(folder: Path) -> bool:
    """Whether `folder` is on a file system mounted read-only (where the system can say: not on Windows)."""
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (AttributeError, OSError):
        return False


def why_not_writable(path: Path) -> str | None:
    """Why the temporary file an output at `path` is first written to (`temporary_file_beside`) cannot be made now,
    in the system's words ("Permission denied", "Read-only file system", "File name too long", "No space left on
    device"), or None where it can. Permissions alone do not say it: root passes every permission test, yet cannot
    make a file in /sys, /proc or a read-only mount; so that file is made, and removed. A pipe or a device
    (`is_special`) is written into, so it is asked whether it may be."""
    if is_special(path):
        return None if os.access(path, os.W_OK) else os.strerror(errno.EACCES)
    if not os.access(path.parent, os.W_OK | os.X_OK):  # EROFS too: a read-only mount was "Permission denied"
        return os.strerror(errno.EROFS if _read_only_mount(path.parent) else errno.EACCES)
    try:
        made = temporary_file_beside(path)
    except OSError as error:
        return system_reason(error)
    try:
        made.unlink()
    except OSError as error:  # an append-only folder: what is made there stays
        return f"{error.strerror or error} (removing the test file {made.name}, which is left there)"
    return None


@contextlib.contextmanager
def path_errors(what: str, error_type: type[Exception] = UsageError):
    """Within the block, which checks a path the user gave, an `OSError` (a name longer than the file system takes, a
    symbolic link that leads back to itself) raises `error_type("cannot write <what> (<the system's words>): ...")`."""
    try:
        yield
    except OSError as error:
        raise error_type(f"cannot write {what} ({error.strerror or error}): choose another path") from None


def check_output_folder(folder: str | os.PathLike, name: str) -> Path:
    """`folder` as a Path, refused (`UsageError`) before any work where it cannot be made or written: it or a folder
    above it is a file, it is a symbolic link to nothing, or the nearest one that exists cannot take a file
    (`why_not_writable`). `name` is how messages call it ("--output", "the output folder")."""
    folder = Path(folder).expanduser()
    with path_errors(f"{name} {folder}"):
        if folder.is_symlink() and not folder.exists():
            raise UsageError(f"{name} {folder} is a symbolic link to {os.readlink(folder)}, which does not exist (or "
                             "leads back to itself): give a folder")
        existing = next(path for path in [folder, *folder.absolute().parents] if path.exists())
        if not existing.is_dir():
            where = "is a file" if existing is folder else f"is inside {existing}, which is a file"
            raise UsageError(f"{name} {folder} {where}: give a folder (it is created if missing)")
        problem = why_not_writable(existing / "write-test")
    if problem:
        raise UsageError(f"cannot write {name} {folder}: {existing} cannot take a file ({problem})")
    return folder


def file_size_limit() -> int | None:
    """The file-size limit (bytes) of this process, None without one (or without `resource`: not on Windows)."""
    try:
        import resource
    except ImportError:
        return None
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return None if limit == resource.RLIM_INFINITY else limit


def load_tensors(path: Path) -> object:
    """`torch.load(path, weights_only=True)` onto the CPU: tensors and plain data, never an object whose unpickling
    could run code (that raises `pickle.UnpicklingError`). A plain pickle (not torch's zip format) is read without
    torch's warning about its protocol: what the weights-only reader cannot read, it refuses with its own error."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
        return torch.load(path, map_location="cpu", weights_only=True)


# What the file system says when it refuses a write: no space, the file-size limit (ulimit -f), a quota, read-only.
_WRITE_REFUSALS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS}


def refused_write(error: BaseException) -> str | None:
    """Why a save failed when the file system refused its write (see `_WRITE_REFUSALS`), in `system_reason`'s words,
    else None (a bug keeps its traceback). Besides an OSError, it reads the two errors libraries raise for one:
    safetensors' "I/O error: ... (os error N)" (not an OSError: its number is read back) and torch.save's "file write
    failed" (a RuntimeError without the system's number, given in its own words)."""
    words = str(error)
    found = re.search(r"I/O error: .*\(os error (\d+)\)", words) if type(error).__name__ == "SafetensorError" else None
    if found:
        error = OSError(int(found[1]), os.strerror(int(found[1])))
    if isinstance(error, OSError):
        return system_reason(error) if error.errno in _WRITE_REFUSALS else None
    return one_line(error, 200) if isinstance(error, RuntimeError) and "file write failed" in words else None


def system_reason(error: OSError) -> str:
    """Why a system call failed, in the system's words (`strerror`, else the error's own: ctypes' failed loads have
    none), with the limit that a "File too large" met."""
    limit = file_size_limit() if error.errno == errno.EFBIG else None
    reason = error.strerror or one_line(error)
    return reason + (f": the file-size limit (ulimit -f) is {limit} bytes" if limit is not None else "")
