"""The package's own error types: a user's mistake raises one of these, with a one-line message that says what is
wrong, where, and how to fix it; and the one error path every entry point shares. Warnings go through
`get_logger`, transformers' logging.

Every entry point (CLI, converter, scripts) is wrapped in `entry_point`, which turns exactly these into
``error: <message>`` and exit status 1 (and Ctrl-C into one line and status 130, a SIGTERM into the same line and
143); any other exception is a bug and keeps its traceback. Third-party exceptions caused by a user's input
(soundfile, safetensors, yaml, tokenizers, huggingface_hub) are translated into these where they happen, never
caught wholesale at the top.

Each type also derives from the built-in exception a Python caller would expect (``ValueError`` for a bad value,
``OSError`` for a missing file or model, ``ImportError`` for a missing optional package), so ``except ValueError``
keeps working.

`is_integer_tensor` is the one rule by which ids, codes, levels and lengths are refused for their dtype.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import functools
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from pathlib import Path

from transformers.utils import logging as transformers_logging

# The exit status of an entry point that did part of its work: the rows (`synthesize`) or files (prepare_dataset.py)
# it could not do are listed, the others are done.
SOME_ROWS_FAILED = 3

class VallEError(Exception):
    """Base class of every error this package raises for a user's input or environment."""


class VallEValueError(VallEError, ValueError):
    """A setting, input or file content the package cannot use."""


class VallETypeError(VallEError, TypeError):
    """An input of a type the package cannot use (a number where text is expected, ...)."""


class CheckpointError(VallEValueError):
    """A file is not a checkpoint (or tokenizer) this package can convert or load; the message says why."""


class DamagedWeightsError(VallEError):
    """A model's weights cannot be read (the file is damaged or cut short). No ValueError, as safetensors' own error is
    none: transformers' `pipeline()` takes a ValueError for "try the next model class", and buried the message under a
    traceback per class."""


class ModelNotFoundError(VallEError, OSError):
    """No model could be loaded; the message says how to get one (including offline)."""


class VallEFileNotFoundError(VallEError, FileNotFoundError):
    """An input file or directory the user named does not exist or is not a file."""


class OutputError(VallEError, OSError):
    """An output could not be written (disk full, file-size limit, permissions); what was there before is kept."""


class UsageError(VallEValueError):
    """A command line that cannot be parsed (a missing argument, an unknown flag, a malformed value)."""


def as_typed(value) -> str:
    """A flag's value as the user most likely typed it: a whole float without its ".0" (argparse reads "-1" given to
    a float flag as -1.0), a huge integer in the shorter of its digits and its exponent form, as a float is written
    from 1e16 on (an integer flag reads "1e400" as 1 and 400 zeros), a list of values comma-separated ("3,-1"),
    anything else as `str` writes it."""
    if isinstance(value, (list, tuple)):
        return ",".join(map(as_typed, value))
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:  # from 1e16 on, str writes 1e+16
        return str(int(value))
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**16:
        exponent = f"{Decimal(value).normalize():e}"
        try:
            return min(str(value), exponent, key=len)
        except ValueError:  # more digits than Python writes (4,300 by default, `sys.set_int_max_str_digits`)
            return exponent
    return str(value)


def shown(value) -> str:
    """A value given in Python as an API error message shows it: its `repr`, an integer as `as_typed` writes it (no
    repr exists for one of over 4,300 digits: Python refuses to write it)."""
    return as_typed(value) if isinstance(value, int) and not isinstance(value, bool) else repr(value)


def option_name(dest: str) -> str:
    """The command-line option of an argparse `dest` (or a setting of the same name): "top_p" → "--top-p"."""
    return f"--{dest.replace('_', '-')}"


def either_caller(argument: str) -> str:
    """How both kinds of caller give `argument` (a converter's "codec"), for a message that can reach either: the
    command line's flag and the Python call's keyword."""
    return f"as {option_name(argument)} on the command line or {argument}= in Python"


def value_refused(name: str, value, rule: str) -> UsageError:
    """The refusal of a value a flag or column (`name`, as the user wrote it) gave: ``--top-p 2 is not allowed: it
    must be RULE``, the value `as_typed`."""
    return UsageError(f"{name} {as_typed(value)} is not allowed: it must be {rule}")


class VallEMemoryError(VallEError, MemoryError):
    """A run would need more memory than its device has free; the message names the settings that ask for it, and
    `setting` the one to lower (None: the inputs, fewer or shorter texts)."""

    def __init__(self, message: str, setting: str | None = None):
        super().__init__(message)
        self.setting = setting


class MissingDependencyError(VallEError, ImportError):
    """A package is needed for what was asked; the message names the ``pip install`` that adds it."""


# A negative number as argparse should read it: digits with an optional fraction and exponent, or an infinity or NaN
# as `float` reads them ("-inf" was taken for an option, and the flag before it said it expected an argument).
_NEGATIVE_NUMBER = re.compile(r"^-((\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|inf|infinity|nan)$", re.IGNORECASE)


def one_line(error: BaseException, limit: int | None = None) -> str:
    """An exception's message as one line (runs of whitespace, newlines included, become one space); with `limit`,
    at most that many characters, cut between words (never inside a path or an address) and ended with "…"."""
    text = " ".join(str(error).split()) or type(error).__name__
    if limit is None or len(text) <= limit:
        return text
    head = text[:limit + 1]
    head = head.rsplit(" ", 1)[0] if " " in head else text[:limit]
    return head.rstrip(" ,;:(") + " …"


def hinted(name: str, known: Iterable[str], shown: str | None = None) -> str:
    """`shown` (`name` by default), with the closest of `known` to `name` where one is close:
    "temprature (did you mean temperature?)"."""
    shown = name if shown is None else shown
    close = difflib.get_close_matches(name, list(known), 1)
    return f"{shown} (did you mean {close[0]}?)" if close else shown


def with_hints(names: Sequence[str], known: Iterable[str]) -> str:
    """`names` (of settings or arguments no one takes), comma-separated, each `hinted` with the closest of `known`."""
    known = list(known)
    return ", ".join(hinted(name, known) for name in names)


class ArgumentParser(argparse.ArgumentParser):
    """argparse, except that its errors are `UsageError`s: one `error:` line and exit status 1, like any other; an
    option is named in full: argparse took an abbreviation for the option it starts ("--manifest=x.csv", given for the
    MANIFEST file, was --manifest-format's value, refused as a layout); and a negative number in scientific notation
    ("--min-ar-temp -1e-3") or a negative infinity ("-inf") is read as a value, as "-0.001" is, not as an option."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, allow_abbrev=False, **kwargs)  # subcommands' parsers are of this class too
        self._negative_number_matcher = _NEGATIVE_NUMBER  # argparse's own matches -1 and -0.5 only

    def parse_known_args(self, args=None, namespace=None):
        self._given = list(sys.argv[1:] if args is None else args)  # for `error`: what argparse did not recognize
        return super().parse_known_args(args, namespace)

    def error(self, message: str):
        raise UsageError(f"{self._hinted(message)} (see {self.prog} --help)")

    def _hinted(self, message: str) -> str:
        """argparse's message, a misspelt option in it named with the option it likely means ("--lora-rnk (did you
        mean --lora-rank?)"), or a positional argument given as an option ("--manifest") said to go without its
        name: a word too many or a letter left out was named alone. An error argparse reports before the options it
        did not recognize (a required argument missing: the misspelt "--output_dir"; a positional given the misspelt
        option's value) names them after it."""
        prefix = "unrecognized arguments: "
        options = self._long_options()
        positionals = {action.dest for action in self._actions if not action.option_strings}
        given = getattr(self, "_given", [])
        if message.startswith(prefix):
            # an option after "--" is a positional argument there: "(did you mean --model?)" named it again
            after_end = set(given[given.index("--") + 1:]) if "--" in given else set()
            return prefix + " ".join(
                f"{word} (an option after --: give the options before --, after which every word is an argument)"
                if word in after_end and word.split("=")[0] in options else self._misplaced(word)
                if word.split("=")[0] in options else _option_hinted(word, options, positionals)
                for word in message.removeprefix(prefix).split(" "))
        given = given[:given.index("--")] if "--" in given else given  # after it, words are positionals
        dashed = _dashed_value(message, given) or self._subcommand_option_first(message, given)
        if dashed:
            return dashed
        unknown = [word for word in given if word.startswith("--") and word.split("=")[0] not in options]
        return f"{message}; {prefix}{' '.join(_option_hinted(word, options, positionals) for word in unknown)}" \
            if unknown else message

    def _misplaced(self, word: str) -> str:
        """A known option that its parser did not take where it was given (with subcommands: "(did you mean
        --size?)" named the very option given): where it goes."""
        if word.split("=")[0] in self._option_string_actions:
            return f"{word} (an option of {self.prog} itself: give it before the subcommand)"
        return f"{word} (an option of another subcommand, or of this one given before it: give it after its subcommand)"

    def _subcommand_option_first(self, message: str, given: list[str]) -> str | None:
        """argparse's "invalid choice" of a subcommand when the word refused is the value of a subcommand's option
        given before the subcommand ("--max-children 2 run": "2" was taken for the command); where the option goes.
        None for any other message."""
        match = _INVALID_CHOICE.match(message)
        if not match:
            return None
        value = match["value"]
        commands = {name: parser for action in self._actions if isinstance(action, argparse._SubParsersAction)
                    for name, parser in action.choices.items()}
        for option, word in zip(given, given[1:], strict=False):
            owners = [name for name, parser in commands.items() if option in parser._option_string_actions]
            if word == value and owners:
                return (f"{option} {value}: {option} is an option of the {' and '.join(owners)} command: give it after "
                        f"the command ({owners[0]} {option} {value})")
        return None

    def _long_options(self) -> list[str]:
        """The "--" options of this parser and of its subcommands' parsers, whose unrecognized arguments this one
        reports."""
        options = [option for option in self._option_string_actions if option.startswith("--")]
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                options += [option for parser in action.choices.values() for option in parser._long_options()]
        return options


# argparse's message for a word that is none of a subcommand's names.
_INVALID_CHOICE = re.compile(r"argument [\w-]+: invalid choice: '(?P<value>[^']*)'")

# argparse's message for an option whose value it took for another option.
_EXPECTED_ONE = re.compile(r"argument (?P<option>--[\w-]+)(?:/-\w)?: expected one argument")


def _dashed_value(message: str, given: list[str]) -> str | None:
    """argparse's "expected one argument", when the word after the option is a value that starts with "-" and a
    digit ("--dry-sequence-breakers -1,2": argparse takes any such word that is not a number alone for an option),
    with how to give it; None otherwise (a value left out before the next option)."""
    match = _EXPECTED_ONE.match(message)
    option = match and match["option"]
    if not option or option not in given[:-1]:
        return None
    value = given[given.index(option) + 1]
    if not re.match(r"-[\d.]", value):
        return None
    return f"{message}: {value!r} starts with '-' and was taken for an option; give it after '=': {option}={value}"


def _option_hinted(word: str, options: list[str], positionals: set[str]) -> str:
    """A word of the command line as given, `hinted` with the option it likely means if it is one ("--x=1"), or, if
    it names one of `positionals` (argparse's dests), with how that one is given."""
    if not word.startswith("--"):
        return word
    name = word.split("=")[0]
    if name[2:].replace("-", "_") in positionals and name.replace("_", "-") not in options:  # --out_path: --out-path
        return f"{word} ({name[2:]} is a positional argument: give its value alone, without {name})"
    return hinted(name, options, word)


def named(text: str) -> str:
    """A name or path (argparse type): not empty. An empty one is most often an unset shell variable, and would be
    read as the current folder, or as no option at all."""
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty (an unset shell variable?): give a name or path")
    return text


def named_path(text: str) -> Path:
    """A path (argparse type) that is not empty (`named`), its "~" read as the home folder: a shell does not expand
    one in quotes or after "=" ("--output=~/runs")."""
    return Path(named(text)).expanduser()


class Terminated(KeyboardInterrupt):
    """A SIGTERM (`kill`, `timeout`, a job scheduler's time limit, `docker stop`) received by an entry point. It
    unwinds the run as Ctrl-C does, so that the same clean-up runs (no partial file is left) and the same line says
    what was kept; the signal's default action would end the process at once, in silence."""


def _raise_terminated(signum, frame):
    raise Terminated


def _interrupt_once(signum, frame):
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the run unwinds from now on: nothing may cut its clean-up
    raise KeyboardInterrupt


# The signals an entry point unwinds on: each one's default handling, and the handler set in its place
_UNWINDING = {signal.SIGTERM: (signal.SIG_DFL, _raise_terminated), signal.SIGINT: (signal.default_int_handler,
                                                                                   _interrupt_once)}


@contextlib.contextmanager
def _signals_unwind():
    """Within the block, in the main thread (signal handlers can be set only there):
    - a SIGTERM raises `Terminated` where it would end the process (its default action);
    - Ctrl-C raises KeyboardInterrupt once, and a second one is ignored while the run unwinds. The run removes its
      partial files on the way, and a second Ctrl-C a moment after the first printed a traceback from the middle of
      that clean-up.
    Each default is set back after the block. A signal the program handles or ignores itself keeps its own handling
    (a notebook kernel's SIGINT handler; a SIGTERM handler set outside Python, which `getsignal` gives as None and
    which could not be set back); the package's handler for a command's loading (`valle_hf._ended_while_loading`) is
    replaced, as a default is."""
    loading = getattr(sys.modules.get(__package__), "_ended_while_loading", signal.SIG_DFL)
    ours = [] if threading.current_thread() is not threading.main_thread() else [
        (signum, default) for signum, (default, _) in _UNWINDING.items()
        if signal.getsignal(signum) in (default, loading)]  # never None: a handler set outside Python is kept
    for signum, _ in ours:
        signal.signal(signum, _UNWINDING[signum][1])
    try:
        yield
    finally:
        for signum, default in ours:
            signal.signal(signum, default)


class _CommandFormat(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        level = record.levelname.lower()
        message = super().format(record)
        # a library's message that names its level itself ("Warning: The following arguments do not match", the
        # Trainer's) would read "warning: Warning: ..."
        if message[:len(level) + 1].lower() == f"{level}:":
            message = message[len(level) + 1:].lstrip()
        return f"{level}: {message}"


@contextlib.contextmanager
def _command_log_format():
    """A command's warnings as `warning: <message>`, as its errors read, instead of `[transformers] <message>`: this
    package's loggers write through transformers' handler (`get_logger`), and a warning about the command (its flags,
    its output) read as transformers' own. Only that handler changes: a caller's own handlers keep their format, and so
    does TRANSFORMERS_VERBOSITY=detail's (file, line and time). A command run inside another (or beside it, in
    another thread) leaves the format to the outer one, which puts it back."""
    root = transformers_logging.get_logger()  # sets transformers' handler up first
    handler = getattr(transformers_logging, "_default_handler", None)  # transformers' own, unnamed in its API
    if (os.environ.get("TRANSFORMERS_VERBOSITY") == "detail" or handler not in root.handlers
            or isinstance(handler.formatter, _CommandFormat)):
        yield
        return
    kept = handler.formatter
    handler.setFormatter(_CommandFormat())
    try:
        yield
    finally:
        handler.setFormatter(kept)


def entry_point(interrupted: str = "interrupted") -> Callable:
    """Decorator for an entry point's `main(argv) -> int`: the one error path of every command.

    A `VallEError` prints ``error: <message>`` (one line) on stderr and returns 1, as does running out of memory (a
    setting too large for the machine, see `out_of_memory`); Ctrl-C prints `interrupted` (one line, which may say
    what was kept and how to resume; the interrupt's own `said`, where the run set one) and returns 130, the shell's
    status for SIGINT; a SIGTERM (`Terminated`) prints the same line and returns 143, the shell's status for SIGTERM.
    Any other exception is a bug and propagates with its traceback. Warnings print as ``warning: <message>`` while it
    runs. In a run of several processes (a launcher's), the main process alone prints the Ctrl-C line (every process
    is stopped); each prints its own error, as a mistake one process finds may be its own (its share of the data),
    except one that every process finds alike (`found_by_every_process`), which the main process alone prints.
    """

    def decorate(main: Callable[..., int]) -> Callable[..., int]:
        @functools.wraps(main)
        def run(*args, **kwargs) -> int:
            try:
                with _signals_unwind(), _command_log_format():
                    return main(*args, **kwargs)
            except VallEError as error:
                if not getattr(error, "every_process", False) or is_main_process():
                    print(f"error: {one_line(error)}", file=sys.stderr)
                return 1
            except KeyboardInterrupt as interrupt:
                if is_main_process():  # a launcher or the terminal stops every process: the main one says so
                    print(getattr(interrupt, "said", interrupted), file=sys.stderr)
                return 143 if isinstance(interrupt, Terminated) else 130
            except (MemoryError, RuntimeError) as error:
                if not out_of_memory(error):
                    raise
                print(f"error: out of memory ({one_line(error, 200)}): ask for less (a shorter text, a smaller "
                      "batch or beam width, fewer steps)", file=sys.stderr)
                return 1

        return run

    return decorate


@contextlib.contextmanager
def found_by_every_process():
    """Mark the usage mistakes raised inside as ones every process of a run finds alike (its command line's: every
    process parses the same one), so that the main process alone prints them: a launcher's N processes each printed
    the same `error:` line. What depends on the process (its device, its files, a package missing on its node) must
    stay outside, or not be a `UsageError`."""
    try:
        yield
    except UsageError as error:
        error.every_process = True
        raise


def is_main_process() -> bool:
    """Whether this process is the main one of its run (rank 0, as its launcher set it: torchrun, accelerate launch,
    mpirun), or was started alone: the one that says what is said once for the run. Read from the launcher's
    variables, it holds before any process group is joined."""
    from accelerate.utils import get_cpu_distributed_information  # every launcher's variables, as accelerate reads them

    return get_cpu_distributed_information().rank == 0


def out_of_memory(error: BaseException) -> bool:
    """Whether `error` says that an allocation failed: `torch.OutOfMemoryError` on an accelerator, a plain
    RuntimeError from torch's CPU allocator, or Python's MemoryError. A batch or beam too large for the machine is the
    user's setting to lower, so the entry points that take such settings say so in one line."""
    import torch

    # torch.cuda.OutOfMemoryError: the name since torch 1.13 (torch.OutOfMemoryError, the same class, since 2.5)
    return isinstance(error, (MemoryError, torch.cuda.OutOfMemoryError)) or "can't allocate memory" in str(error)


def is_integer_tensor(tensor) -> bool:
    """Whether a tensor holds integers (any signed or unsigned integer dtype): not floating point, not complex, not
    bool. Ids, codes, levels and lengths are refused for their dtype by this one rule, never cast (2.7 or True would
    be read as 2 or 1)."""
    import torch  # loaded already: `tensor` is one of its tensors

    return not (tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool)


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


class _WithoutLoadReport(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "LOAD REPORT" not in record.getMessage()


@contextlib.contextmanager
def without_load_report():
    """A context without transformers' LOAD REPORT table (weights missing, unused or of another shape), for loaders
    that refuse what it reports in one line of their own: printed first, it buried that line."""
    report = logging.getLogger("transformers.modeling_utils")
    quiet = _WithoutLoadReport()
    report.addFilter(quiet)
    try:
        yield
    finally:
        report.removeFilter(quiet)
