"""The package's own error types: a user's mistake raises one of these, with a one-line message that says what is
wrong, where, and how to fix it. Warnings go through `get_logger`, transformers' logging.

Every entry point (CLI, converter, scripts) turns exactly these into ``error: <message>`` and exit status 1; any
other exception is a bug and keeps its traceback. Each type also derives from the built-in exception a Python
caller would expect (``ValueError`` for a bad value, ``OSError`` for a missing file or model, ``ImportError`` for a
missing optional package), so ``except ValueError`` keeps working.
"""

from __future__ import annotations

import logging

from transformers.utils import logging as transformers_logging


class VallEError(Exception):
    """Base class of every error this package raises for a user's input or environment."""


class VallEValueError(VallEError, ValueError):
    """A setting, input or file content the package cannot use."""


class CheckpointError(VallEValueError):
    """A file is not a checkpoint (or tokenizer) this package can convert or load; the message says why."""


class ModelNotFoundError(VallEError, OSError):
    """No model could be loaded; the message says how to get one (including offline)."""


class VallEFileNotFoundError(VallEError, FileNotFoundError):
    """An input file or directory the user named does not exist or is not a file."""


class UsageError(VallEValueError):
    """A command line that cannot be parsed (a missing argument, an unknown flag, a malformed value)."""


class MissingDependencyError(VallEError, ImportError):
    """A package is needed for what was asked; the message names the ``pip install`` that adds it."""


def missing_dependency(package: str, purpose: str) -> MissingDependencyError:
    """The error for a runtime dependency that is not installed: one line naming the pip package. Raised where the
    package is imported, so that it reads the same when this code runs as a model's remote code (transformers checks
    only the imports of the module it loads first)."""
    return MissingDependencyError(f"valle_hf needs the package {package} {purpose}: pip install {package}")


def get_logger(name: str) -> logging.Logger:
    """The logger of module `name`, a child of transformers' own logger: its verbosity settings
    (`transformers.logging.set_verbosity_error()`, TRANSFORMERS_VERBOSITY) and its handler apply to this package's
    warnings too, which a logger named after this package (outside transformers' hierarchy) would escape."""
    return transformers_logging.get_logger(f"transformers.{name}")
