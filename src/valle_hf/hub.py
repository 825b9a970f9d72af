"""Downloads from the Hugging Face Hub that fail fast, in one line, with what to do instead.

`huggingface_hub` retries a file it cannot reach for about half a minute before it gives up, and then says only
that it could not connect. Every download of this package goes through `hub_file`, which first asks for the file's
metadata once, without retries: an unreachable Hub, a missing repository or file is reported at once as a
`ModelNotFoundError` that names what was wanted and the offline alternative. `HF_ENDPOINT`, `HF_HUB_OFFLINE` and the
cache apply as usual.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from pathlib import Path

from .errors import ModelNotFoundError, VallETypeError, one_line

TINY_RANDOM = "tiny-random"  # the name of the model built in memory to check an installation (`loading`)


def default_cache_dir() -> Path:
    """Where this package keeps what it made from downloads (converted models) and measured on this machine:
    `$VALLE_HF_CACHE`, else `$HF_HOME/valle_hf` (~/.cache/huggingface/valle_hf)."""
    base = os.environ.get("VALLE_HF_CACHE") or os.path.join(
        os.environ.get("HF_HOME", os.path.join(Path.home(), ".cache", "huggingface")), "valle_hf"
    )
    return Path(base)


def hub_errors() -> tuple[type[BaseException], ...]:
    """What a Hub call raises when the Hub cannot give what was asked: HTTP answers (not found, gated, refused; all
    `OSError`s), no network or offline mode (`OSError`s), transport errors and timeouts (from the HTTP client
    huggingface_hub uses: httpx, or httpx2 in its newer releases), and a file in neither the cache nor the Hub."""
    from huggingface_hub.errors import EntryNotFoundError

    errors: list[type[BaseException]] = [OSError, EntryNotFoundError]
    for client in ("httpx", "httpx2"):
        with contextlib.suppress(ImportError):
            errors.append(importlib.import_module(client).HTTPError)
    return tuple(errors)


def _download_error(what: str, where: str, error: BaseException | None, instead: str) -> ModelNotFoundError:
    """The one-line error for a file that cannot be had (`where`: repository, path and revision); offline
    (HF_HUB_OFFLINE), the Hub's words about the connection would mislead, so it says that the file is not cached and
    the variable is set."""
    from huggingface_hub import constants
    from huggingface_hub.errors import GatedRepoError, RevisionNotFoundError

    if constants.HF_HUB_OFFLINE or error is None:
        return ModelNotFoundError(f"{what} ({where}) is not in the Hugging Face cache, and HF_HUB_OFFLINE is set, so "
                                  f"it cannot be downloaded; {instead}")
    if isinstance(error, RevisionNotFoundError):  # the repository answered: going offline would not help
        return ModelNotFoundError(f"could not download {what} ({where}): the repository has no branch, tag or commit "
                                  "of that name; give one it has")
    if isinstance(error, GatedRepoError):  # a token is the fix, which no option of ours takes: the Hub's own login
        return ModelNotFoundError(f"could not download {what} ({where}): the repository is gated, and this machine's "
                                  "Hugging Face token (HF_TOKEN, or hf auth login) has no access to it: log in with a "
                                  "token that has, after accepting its conditions on the Hub")
    return ModelNotFoundError(f"could not download {what} ({where}: {type(error).__name__}: {one_line(error, 240)}); "
                              f"{instead}")


def _in_repo(filename: str, subfolder: str | None) -> str:
    """The file's path in its repository (`hf_hub_download`'s `subfolder` joined with its `filename`)."""
    return f"{subfolder}/{filename}" if subfolder else filename


def cached_hub_file(repo_id: str, filename: str, cache_dir=None, revision=None,
                    subfolder=None) -> tuple[str, Path | None]:
    """`filename`'s path in `repo_id` (in `subfolder`), and its copy in the cache (`cache_dir`, or the default) at
    `revision`, or None where none is cached (or the cache knows the Hub lacks it). Nothing is downloaded."""
    from huggingface_hub import try_to_load_from_cache

    path = _in_repo(filename, subfolder)
    cached = try_to_load_from_cache(repo_id, path, cache_dir=cache_dir, revision=revision)
    return path, Path(cached) if isinstance(cached, str) else None


def hub_location(repo_id: str, path: str, revision: str | None) -> str:
    """A file of a Hub repository as messages name it: "repo/path", and "at revision R" unless R is the default
    branch (transformers resolves a revision not given to "main")."""
    return f"{repo_id}/{path}" + (f" at revision {revision}" if revision and revision != "main" else "")


def model_name(name, what: str) -> str:
    """`name`, a folder's path (a leading "~" read as the home folder) or a Hub id given as a str or an `os.PathLike`,
    as a str. Raises `VallETypeError` for
    any other type (`what`: "the model", say): transformers asked the Hub for a None or a number, retrying for half a
    minute."""
    path = os.fspath(name) if isinstance(name, os.PathLike) else name
    if not isinstance(path, str):
        raise VallETypeError(f"{what}'s name must be a folder's path or a Hub id, as a str or os.PathLike, got "
                             f"{type(name).__name__}")
    return os.path.expanduser(path)  # a folder's "~" (no Hub id has one), which no shell expanded in quotes or Python


def check_hub_id(repo_id: str, what: str) -> None:
    """Raise `ModelNotFoundError` (`what`: what was wanted, named in it) for a `repo_id` that is no Hub id by
    huggingface_hub's rule: a path that does not exist, say ("/no/such/folder", "./model", "~/model", "a/b/c"), which
    transformers reported as a repository name of the wrong form."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise ModelNotFoundError(f"{what} cannot be found: {repo_id} is no folder here, and no Hub id (a name or "
                                 "namespace/name of letters, digits, '-', '_' and '.'); give the path of a folder that "
                                 "exists, or a Hub id") from None


def check_model_name(name, what: str) -> str:
    """`name` as `from_pretrained` may read it (`model_name`): an existing path or a Hub id; one that is neither
    raises `ModelNotFoundError` naming it (`check_hub_id`) before transformers is asked."""
    name = model_name(name, what)
    if name == TINY_RANDOM and not os.path.exists(name):  # transformers asked the Hub for it
        raise ModelNotFoundError(f"{TINY_RANDOM} is built in memory, not loaded from a folder or the Hub: "
                                 f"valle_hf.loading.load_model_and_processor({TINY_RANDOM!r}) makes it")
    if not os.path.exists(name):
        check_hub_id(name, f"{what} {name}")
    return name


def check_reachable(repo_id: str, filename: str, what: str, instead: str, cache_dir=None, revision=None,
                    subfolder=None, token=None, missing_ok=False, **download_kwargs) -> bool:
    """Raise `ModelNotFoundError` at once unless `filename` of `repo_id` (in `subfolder`, at `revision`) is cached (in
    `cache_dir`, or the default cache) or the Hub answers for it (with `token`; offline, unless it is cached); with
    `missing_ok`, a Hub that answers that the repository has no such file is an answer too, for the caller's loader to
    report. Other download keyword arguments are taken and ignored, so that a caller passes its own on.

    Returns whether the file is cached but the Hub does not give it (no answer, an outage): a load should then read
    the cache only (`local_files_only=True`), as transformers would ask the Hub again, retrying for half a
    minute, for each optional file the cache lacks (adapter_config.json).
    """
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url

    check_hub_id(repo_id, what)
    path, cached_copy = cached_hub_file(repo_id, filename, cache_dir, revision, subfolder)
    cached = cached_copy is not None
    if constants.HF_HUB_OFFLINE:
        if not cached:
            raise _download_error(what, hub_location(repo_id, path, revision), None, instead)
        return False  # transformers reads the cache only, as it should
    try:
        # the file that will be downloaded: another revision's or folder's answer would say nothing about it
        get_hf_file_metadata(hf_hub_url(repo_id, path, revision=revision), token=token, retry_on_errors=False)
    except hub_errors() as error:
        from huggingface_hub.errors import EntryNotFoundError

        if missing_ok and isinstance(error, EntryNotFoundError):
            return False
        if not cached:
            raise _download_error(what, hub_location(repo_id, path, revision), error, instead) from None
        return True
    return False


def hub_file(repo_id: str, filename: str, what: str, instead: str, **download_kwargs) -> Path:
    """The local path of `filename` in the Hub repository `repo_id`, downloaded (once) if needed.

    `what` names the download in the error message ("the released model"), `instead` says what to do offline.
    `download_kwargs` go to `hf_hub_download` (`revision`, `subfolder`, `cache_dir`, `token`, ...).
    Raises `ModelNotFoundError`.
    """
    from huggingface_hub import hf_hub_download

    check_reachable(repo_id, filename, what, instead, **download_kwargs)
    try:
        return Path(hf_hub_download(repo_id, filename, **download_kwargs))
    except hub_errors() as error:  # a failure during the download itself
        path = _in_repo(filename, download_kwargs.get("subfolder"))
        where = hub_location(repo_id, path, download_kwargs.get("revision"))
        raise _download_error(what, where, error, instead) from None
