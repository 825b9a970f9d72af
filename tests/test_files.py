"""Files written whole (`valle_hf.files`): the staging names, the modes an output gets, and how a refused write is
worded. The outputs themselves are tested with their writers (test_audio.py, test_conversion.py, test_manifest.py)."""

from __future__ import annotations

import errno
import os

import pytest

from valle_hf import files


def test_only_folders_are_leftovers_of_a_killed_conversion(tmp_path):
    """A staging folder is `.<name>.<random>`: a file of that name beside the output (a user's, or another writer's
    partial file) is no conversion's leftover and is not named as one."""
    output = tmp_path / "converted"
    left = files.temporary_folder_beside(output)
    (tmp_path / ".converted.notes").write_text("mine\n")
    files.temporary_file_beside(output)
    assert files.leftovers_beside(output) == [left]


def test_plain_file_modes_reach_every_file_below_the_folder_and_no_file_a_link_leads_to(tmp_path):
    """Weights shards are written owner-only, in subfolders too; a symbolic link in the folder leads to a file of
    someone else's, whose mode is not the output's to change."""
    umask = os.umask(0o022)
    os.umask(umask)
    folder, outside = tmp_path / "model", tmp_path / "outside.txt"
    (folder / "sub").mkdir(parents=True)
    for path in (folder / "config.json", folder / "sub" / "weights.safetensors", outside):
        path.write_text("{}")
        path.chmod(0o600)
    (folder / "link.txt").symlink_to(outside)
    files.plain_file_modes(folder)
    assert (folder / "config.json").stat().st_mode & 0o777 == 0o666 & ~umask
    assert (folder / "sub" / "weights.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask
    assert outside.stat().st_mode & 0o777 == 0o600


def test_reading_the_umask_leaves_it_as_it_was(tmp_path):
    """The umask can be read only by setting it: it is set back, or every file made afterwards (by any code of the
    process) would get the modes of the value it was set to while reading."""
    files._umask.cache_clear()
    before = os.umask(0o077)
    try:
        assert files._umask() == 0o077 and os.umask(0o077) == 0o077
        made = files.temporary_file_beside(tmp_path / "speech.wav")
        assert made.stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(before)
        files._umask.cache_clear()


def _safetensors_error(message: str) -> Exception:
    from safetensors import SafetensorError

    return SafetensorError(message)


@pytest.mark.parametrize("error, reason", [
    (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), "No space left on device"),
    (OSError(errno.EDQUOT, os.strerror(errno.EDQUOT)), "Disk quota exceeded"),
    (OSError(errno.EROFS, os.strerror(errno.EROFS)), "Read-only file system"),
    (OSError(errno.ENOENT, os.strerror(errno.ENOENT)), None),  # a bug (a folder removed under the save), not a refusal
    ("safetensors: I/O error: No space left on device (os error 28)", "No space left on device"),
    ("safetensors: I/O error: Disk quota exceeded (os error 122)", "Disk quota exceeded"),
    ("safetensors: I/O error: No such file or directory (os error 2)", None),
    ("safetensors: invalid header", None),
    (RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0: file write failed"),
     "[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0: file write failed"),
    (RuntimeError("a bug"), None),
    (ValueError("file write failed"), None),
])
def test_a_refused_write_is_told_from_a_bug(error, reason):
    """What a save raises when the file system refuses it (an OSError, safetensors' own error with the system's
    number in its words, torch.save's RuntimeError) is a reason for the user; anything else keeps its traceback."""
    if isinstance(error, str):
        error = _safetensors_error(error.removeprefix("safetensors: "))
    assert files.refused_write(error) == reason



def test_only_a_file_too_large_is_put_down_to_the_file_size_limit(monkeypatch):
    """Under a file-size limit (ulimit -f), a full disk or a read-only folder is not said to have met it."""
    monkeypatch.setattr(files, "file_size_limit", lambda: 65536)
    assert files.system_reason(OSError(errno.EFBIG, os.strerror(errno.EFBIG))) == (
        "File too large: the file-size limit (ulimit -f) is 65536 bytes")
    for number in (errno.ENOSPC, errno.EROFS, errno.EACCES):
        assert files.system_reason(OSError(number, os.strerror(number))) == os.strerror(number)


def test_no_file_size_limit_is_none_not_a_number(monkeypatch):
    """Without a limit the system says RLIM_INFINITY, which is no size: read as one, every failed write of libsndfile
    ("System error.") was put down to a file too large."""
    import resource

    monkeypatch.setattr(resource, "getrlimit", lambda which: (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    assert files.file_size_limit() is None
    monkeypatch.setattr(resource, "getrlimit", lambda which: (4096, resource.RLIM_INFINITY))
    assert files.file_size_limit() == 4096


def test_an_output_folder_under_the_home_folder_is_named_by_its_tilde(tmp_path, monkeypatch):
    """A "~" no shell expanded (in Python, or in quotes) was a folder named "~" in the current one."""
    monkeypatch.setenv("HOME", str(tmp_path))
    assert files.check_output_folder("~/runs", "--output") == tmp_path / "runs"
