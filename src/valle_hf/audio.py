"""Audio files in and out: `load_audio` reads a file as it is, `save_audio` writes one whole or not at all.

Turning what was read (or any array) into the model's 24 kHz mono waveforms is the feature extractor's work
(`valle_hf.feature_extraction`). An output file is written under a temporary name and renamed into place when
complete.
"""

from __future__ import annotations

import errno
import inspect
import io
import os
import re
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .configuration import CODEC_SAMPLING_RATE as SAMPLING_RATE
from .errors import (
    OutputError,
    VallEFileNotFoundError,
    VallETypeError,
    VallEValueError,
    get_logger,
    missing_dependency,
    one_line,
)
from .files import file_size_limit, path_errors, system_reason, why_not_writable, write_target, written_whole

try:
    import soundfile
except ImportError:
    raise missing_dependency("soundfile", "to read and write audio files") from None

logger = get_logger(__name__)


class _HasRead(type):
    def __instancecheck__(cls, instance) -> bool:
        return callable(getattr(instance, "read", None))


class FileLike(metaclass=_HasRead):
    """What is read as an open file: any object with a `read()` method, `isinstance(upload, FileLike)`. Web
    frameworks' uploads (Django's UploadedFile, Werkzeug's FileStorage) read like files but are no `io.IOBase`."""


AudioSource = str | os.PathLike | bytes | FileLike | np.ndarray | torch.Tensor

# What a failed write raises: the system's OSError, or soundfile's (older soundfile: RuntimeError).
WRITE_ERRORS = (OSError, soundfile.LibsndfileError, RuntimeError)
# libsndfile's code for "a system call failed" (SF_ERR_SYSTEM): its words are "System error.", without the errno.
_SYSTEM_ERROR = 2
# Free space below which a failed write is put down to a full disk.
_FULL_DISK_BYTES = 1 << 20
# How far short of the file-size limit a file whose write failed may be for the limit to be the reason (at most half
# the limit): the write that failed would have crossed it.
_LAST_WRITE_BYTES = 1 << 20

__all__ = [
    "AudioSource",
    "WRITE_ERRORS",
    "ENCODED_AUDIO",
    "FileLike",
    "as_samples",
    "audio_name",
    "check_file_rate",
    "check_output_path",
    "check_samples",
    "clipped_samples",
    "empty_audio_error",
    "encoded_audio",
    "joined_sentences",
    "load_audio",
    "output_format",
    "reference_paths",
    "reference_sources",
    "save_audio",
    "source_hint",
    "warn_clipped",
    "waveform_samples",
    "write_encoded",
    "write_failure",
]


# A URL's scheme and "://" (RFC 3986): no file name starts so.
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


# An audio file's content given instead of its path: its bytes, or an open binary file (`open(path, "rb")`,
# `io.BytesIO`, an upload), as transformers' speech-recognition pipeline takes them.
ENCODED_AUDIO = (bytes, bytearray, memoryview, FileLike)


def load_audio(source: str | os.PathLike | bytes | FileLike, whole: bool = False) -> tuple[np.ndarray, int]:
    """Read an audio file soundfile reads (WAV, FLAC, OGG, MP3, ...), given as its path or its content
    (`ENCODED_AUDIO`: bytes, or an open binary file, read from where it stands and left there when it can seek): its
    samples as float32 (integer formats scaled to [-1, 1], float ones as stored), `[channels, samples]`, and its
    sampling rate in Hz. A WAV cut short (its header promises more than the file holds) is read as what it holds, with
    a warning, or refused with `whole=True` (a training utterance, whose transcript says the whole).

    Raises `VallEFileNotFoundError` for a missing file or a directory, `VallEValueError` for an unreadable one, a URL
    or content that is no audio, and `VallETypeError` for a file open as text.
    """
    encoded = isinstance(source, ENCODED_AUDIO)
    file = _content(source) if encoded else str(check_audio_file(source))
    name = audio_name(source) if encoded else file
    what = name if encoded else f"audio file {name}"
    try:
        data, rate = soundfile.read(_readable(file), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as error:
        raise VallEValueError(f"could not read {what}: {_read_failure(error)}; give a WAV, FLAC, OGG or MP3 file "
                              "(convert other formats first, e.g. ffmpeg -i voice.m4a voice.wav)") from None
    cut = _cut_short(file, name, len(data), rate)
    if cut and whole:
        raise VallEValueError(f"{cut}: copy the file again")
    if cut:
        logger.warning(f"{cut}; the {len(data) / rate:.2f} s it holds are used")
    return data.T, rate


def check_audio_file(path: str | os.PathLike) -> Path:
    """`path` as the audio file to read, refused where there is none (its content is not read: `load_audio` reads
    it): `VallEValueError` for a URL, a pipe or a device, an empty file; `VallEFileNotFoundError` for a directory or
    a missing file. A command checks its inputs with it before any model loads."""
    if re.match(_URL, str(path)):  # transformers' speech-recognition pipeline downloads one; Path("a://b") is "a:/b"
        raise VallEValueError(f"{path} is a URL, and audio is read from files only: download it first and give the "
                              "file's path")
    path = Path(path).expanduser()
    if path.is_dir():
        raise VallEFileNotFoundError(f"{path} is a directory, not an audio file: give the file itself")
    if path.exists() and not path.is_file():
        raise VallEValueError(f"{path} is not a regular file (a pipe or a device): give the audio file itself")
    if not path.is_file():
        raise VallEFileNotFoundError(f"audio file not found: {path}: check its name and folder")
    if path.stat().st_size == 0:  # libsndfile says "Format not recognised"
        raise VallEValueError(f"audio file {path} is empty (0 bytes): a copy or a recording that failed? give the "
                              "file with the audio")
    return path


def audio_name(source: Any) -> str:
    """How messages name an audio source: a path as it is; a file's content (`ENCODED_AUDIO`) by its file's name,
    or else by its type ("the audio bytes given")."""
    if not isinstance(source, ENCODED_AUDIO):
        return str(source)
    name = getattr(source, "name", None)
    return f"the open file {name}" if isinstance(name, str) else f"the audio {type(source).__name__} given"


def _content(source: bytes | bytearray | memoryview | FileLike) -> bytes:
    """The bytes of an audio file given as its content (`ENCODED_AUDIO`); a file that can seek is left where it stood,
    so that the same file object serves every call it is given to. Raises `VallETypeError` for a file open as text (or
    whose read gives no bytes, or is async) and `VallEValueError` for a closed or unreadable one, or no bytes."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        content = bytes(source)
    else:
        content = _read_file(source)
    if not content:
        raise VallEValueError(f"{audio_name(source)} holds no bytes (an empty file, or one read to its end already): "
                              "give the audio file's content")
    return content


def _read_file(file: FileLike) -> bytes:
    """All that `file` holds from where it stands, leaving it there when it can seek."""
    closed = getattr(file, "closed", False) is True
    if closed or not getattr(file, "readable", lambda: True)():
        raise VallEValueError(f"{audio_name(file)} is {'closed' if closed else 'not open for reading'}: give its path, "
                              "or a file open for reading with open(path, 'rb')")
    if isinstance(file, io.TextIOBase):  # refused before its read decodes audio as text
        raise _open_as_text(file)
    if inspect.iscoroutinefunction(file.read):  # an ASGI framework's upload (FastAPI's UploadFile), read by awaiting
        raise VallETypeError(f"{audio_name(file)} reads with an async read(): give its bytes, await upload.read(), or "
                             "its file, upload.file")
    if not _takes_no_arguments(file.read):  # a file's read() reads all it holds
        raise VallETypeError(f"read() of {audio_name(file)} needs arguments, so it is no open file: give its path, "
                             "its bytes, or a file open with open(path, 'rb')")
    start = _position(file)
    content = file.read()
    if start is not None:
        file.seek(start)
    if isinstance(content, str):
        raise _open_as_text(file)
    if not isinstance(content, (bytes, bytearray)):
        raise VallETypeError(f"read() of {audio_name(file)} gave a {type(content).__name__}, not the file's bytes: "
                             "give its path, or a file open with open(path, 'rb')")
    return bytes(content)


def _takes_no_arguments(function) -> bool:
    try:
        inspect.signature(function).bind()
    except TypeError:
        return False
    except ValueError:  # a built-in without a signature to read: taken at its word, as a file's
        pass
    return True


def _open_as_text(file: FileLike) -> VallETypeError:
    return VallETypeError(f"{audio_name(file)} is open as text, and audio is bytes: open it with open(path, 'rb'), or "
                          "give its path")


def _position(file: FileLike) -> int | None:
    """Where `file` stands, if it can go back there (`seek`): None for a stream."""
    seekable = getattr(file, "seekable", None)
    if (callable(seekable) and not seekable()) or not callable(getattr(file, "seek", None)):
        return None
    try:
        return file.tell()
    except (AttributeError, OSError):  # io.UnsupportedOperation is an OSError
        return None


def _readable(file: str | bytes) -> str | io.BytesIO:
    """What soundfile reads `file` (a path, or an audio file's bytes) from; each call gets a reader of its own."""
    return io.BytesIO(file) if isinstance(file, bytes) else file


# A WAV data chunk size at or above this is a writer's "length unknown" (ffmpeg writing to a pipe leaves 0xFFFFFFFF).
_UNKNOWN_WAV_SIZE = 0x7FFFFFFF


def _cut_short(file: str | bytes, name: str, frames: int, rate: int) -> str | None:
    """What is missing from a WAV (`file`: a path or a file's bytes, called `name`) whose data chunk runs past the end
    of the file (a copy that stopped early), which libsndfile reads as the samples it holds and says so only in its
    log; None for a whole file."""
    log = soundfile.info(_readable(file), verbose=True).extra_info
    found = re.search(r"^data : (\d+) \(should be (\d+)\)", log, re.MULTILINE)
    if found is None:
        return None
    declared, held = int(found[1]), int(found[2])
    if not held < declared < _UNKNOWN_WAV_SIZE:
        return None
    # The header's seconds are the frames held scaled by its bytes over those held (whatever the sample format); a
    # file cut before its first whole frame has none to scale, so its header is quoted in bytes.
    header = f"{frames * declared / held / rate:.2f} s" if frames else f"{declared} bytes"
    return (f"{name} is cut short: its header says {header} of audio, the file holds {frames / rate:.2f} s (a copy "
            "that stopped early?)")


def _read_failure(error: Exception) -> str:
    """Why soundfile could not read a file that exists, in libsndfile's words without soundfile's "Error opening
    <file>: " (the file is named already; an in-memory file's name is an object's address). libsndfile reports an
    MP3 it cannot decode as "File does not exist or is not a regular file", which misleads: the file was found, its
    content is what it cannot read."""
    words = error.error_string if isinstance(error, soundfile.LibsndfileError) else str(error)
    if "does not exist" in words:
        return "its content is not audio libsndfile can decode (a damaged file, or not the format its name says)"
    return one_line(words.removeprefix("Error : ").rstrip("."))


# The sample format written per container: 32-bit float WAV, as the original writes (torchaudio.save of a float
# tensor); the container's own default for the rest (FLAC 16-bit, Ogg Vorbis, MP3).
_OUTPUT_SUBTYPES = {"WAV": "FLOAT"}
_OUTPUT_FORMATS = {"wav": "WAV", "flac": "FLAC", "ogg": "OGG", "mp3": "MP3"}
# The highest rate (Hz) of a format whose encoder takes down the whole process above it (libvorbis: a segfault),
# where other formats' encoders refuse a rate they cannot take with an error.
_MAX_FORMAT_RATE = {"OGG": 200_000}


def output_format(path: str | os.PathLike) -> tuple[str, str]:
    """The soundfile `(format, subtype)` an output file is written with, chosen by its extension.

    Raises `VallEValueError` naming the supported extensions when the extension is missing or not one soundfile (the
    libsndfile build at hand) can write.
    """
    suffix = Path(path).suffix.lower().lstrip(".")
    container = _OUTPUT_FORMATS.get(suffix)
    writable = [ext for ext, fmt in _OUTPUT_FORMATS.items() if fmt in soundfile.available_formats()]
    if container not in soundfile.available_formats():
        raise VallEValueError(f"cannot write {path}: the output file must end in one of "
                              f"{', '.join('.' + ext for ext in writable)}")
    return container, _OUTPUT_SUBTYPES.get(container, soundfile.default_subtype(container))


def check_output_path(path: str | os.PathLike, inputs: Any = ()) -> Path:
    """Check, before any work, that audio can be written to `path`; returns it as a Path.

    Refuses a directory (before its name's extension, which a folder seldom has), an unsupported extension
    (`output_format`), a missing parent directory or one where the file cannot be made (`why_not_writable`: read-only,
    a name too long), a read-only file, and a path that is one of the `inputs`, given in any syntax
    `reference_sources` reads ("a.wav;b.wav" included): the same file, whatever the spelling or link, as the reference
    audio would be overwritten. A symbolic link is written through (`write_target`: its target's folder is checked),
    and refused where it leads back to itself. Raises `VallEValueError`.
    """
    out = Path(path).expanduser()
    try:  # bytes of another encoding on the command line: soundfile cannot name such a file
        str(out).encode(sys.getfilesystemencoding())
    except UnicodeEncodeError:
        raise VallEValueError(f"the output path {ascii(str(out))} is not valid {sys.getfilesystemencoding()}: give "
                              "the name in that encoding (check the terminal's)") from None
    with path_errors(f"the output file {out}", VallEValueError):
        if out.is_dir():
            raise VallEValueError(f"the output path {out} is a directory: give a file name such as "
                                  f"{out / 'speech.wav'}")
        if isinstance(path, str) and path.endswith(("/", os.sep)):  # a Path drops the slash, and would write a file
            raise VallEValueError(f"the output path {path} names a folder (it ends in '/'): give a file name such as "
                                  f"{out / 'speech.wav'}")
        output_format(out)
        target = write_target(out)
        if target.is_symlink() and not target.exists():
            raise VallEValueError(f"the output path {out} is a symbolic link that leads back to itself: remove it or "
                                  "choose another path")
        if not target.parent.is_dir():
            problem = ("is a file, not a folder: choose another path" if target.parent.exists()
                       else "does not exist: create it first")
            raise VallEValueError(f"cannot write the output file {out}: its folder {target.parent} {problem}")
        problem = why_not_writable(target) or (os.strerror(errno.EACCES)
                                               if target.exists() and not os.access(target, os.W_OK) else None)
    if problem:
        raise VallEValueError(f"cannot write the output file {out} ({problem}): choose another path")
    if inputs is None:
        inputs = ()
    elif not isinstance(inputs, (str, os.PathLike, np.ndarray, torch.Tensor, *ENCODED_AUDIO, list, tuple)):
        inputs = list(inputs)  # any other iterable of them (a set, a generator)
    for source in reference_paths(inputs):
        if out.exists() and Path(source).exists() and os.path.samefile(out, source):
            raise VallEValueError(f"the output path {out} is also an input ({source}): writing it would destroy the "
                                  "reference audio; choose another output file")
    return out


def check_samples(data: np.ndarray, path: str | os.PathLike) -> np.ndarray:
    """`data`, refused (`VallEValueError`, naming `path`, the file it was for) if a sample is NaN or infinite: no
    audio format holds them (they would be written as clicks or silence), and they mean the model's numbers broke."""
    finite = np.isfinite(data)
    if not finite.all():
        raise VallEValueError(f"{path} was not written: the audio has {finite.size - int(finite.sum())} NaN or "
                              f"infinite samples (the first is sample {int(np.argmin(finite))})")
    return data


def clipped_samples(data: np.ndarray) -> tuple[np.ndarray, int, float]:
    """`data` clipped to [-1, 1], the full scale of every output format (16-bit formats cannot hold more, and players
    wrap or distort what lies beyond it in a float WAV), with the count of samples that lay beyond it and the peak
    before the clipping, for `warn_clipped`."""
    magnitude = np.abs(data)
    return np.clip(data, -1.0, 1.0), int((magnitude > 1.0).sum()), float(magnitude.max(initial=0.0))


def warn_clipped(path: str | os.PathLike, count: int, peak: float) -> None:
    """Say that `count` samples written to `path` were clipped (`clipped_samples`), if any: the file does not hold
    the waveform as it was."""
    if count:
        logger.warning(f"{path}: {count} sample(s) beyond full scale (peak {peak:.3g}) were clipped to [-1, 1]; to "
                       "keep them, scale the waveform into [-1, 1] before writing it (waveform / peak)")


def empty_audio_error(path: str | os.PathLike) -> VallEValueError:
    """The error for audio of 0 samples meant for `path`: an empty file would look like a result."""
    return VallEValueError(f"{path} was not written: the audio is empty (0 samples; generated audio is empty when "
                           "the model stopped at its first step: try another seed)")


def joined_sentences(waveforms: Sequence[torch.Tensor], sentences: Sequence[str]) -> torch.Tensor:
    """The waveforms of a text's sentences joined into one (float32, on the CPU: `[sum of samples]`). Raises
    `VallEValueError` when one of them is empty: the model stopped at its first step there, and joined with the others
    that sentence would be missing from the audio unnoticed."""
    empty = [index for index, waveform in enumerate(waveforms) if waveform.numel() == 0]
    if empty:
        named = ", ".join(f"{index + 1} ({sentences[index]!r:.40})" for index in empty)
        raise VallEValueError(f"sentence {named} of {len(sentences)} came out empty (the model stopped at its first "
                              "step), so nothing was written: try another seed")
    return torch.cat([waveform.float().cpu() for waveform in waveforms])


def waveform_samples(waveform: torch.Tensor | np.ndarray, path: str | os.PathLike) -> np.ndarray:
    """The samples of a waveform to be written to `path`, as a 1-D float array; refused (`VallEValueError`) when no
    file should hold them: not 1-D float samples (integer PCM would be clipped to ±1, not scaled; int64 values are
    codes, not audio), empty, or NaN or infinite (`check_samples`)."""
    if isinstance(waveform, torch.Tensor):
        waveform = waveform.detach().cpu()
        waveform = waveform.float() if waveform.is_floating_point() else waveform
    data = np.asarray(waveform)
    if data.dtype == np.int64:  # no audio format's samples: the codes generate returns with output_audio=False
        raise VallEValueError(f"{path}: save_audio writes audio, got int64 values of shape {data.shape}, which look "
                              "like EnCodec codes (generate's output with output_audio=False): generate without "
                              "output_audio=False for audio, or decode the codes with model.vocoder.decode(codes) "
                              "(valle_hf.codec.decode(model.codec_model, codes) for a model without Vocos)")
    if np.issubdtype(data.dtype, np.integer):
        raise VallEValueError(f"{path}: save_audio writes float samples in [-1, 1], got {data.dtype}: scale integer "
                              "PCM first (int16: divide by 32768)")
    if not np.issubdtype(data.dtype, np.floating):  # complex (a spectrum), bool, text: no samples at all
        raise VallEValueError(f"{path}: save_audio writes float samples in [-1, 1], got {data.dtype} values, which "
                              "are no audio samples: give the real-valued waveform")
    if data.ndim != 1:
        raise VallEValueError(f"save_audio writes one mono waveform (1-D), got shape {data.shape}")
    if data.size == 0:
        raise empty_audio_error(path)
    return check_samples(data, path)


# The highest sampling rate (Hz) a file's header holds (a signed 32-bit field in WAV's).
MAX_FILE_RATE = 2**31 - 1


def check_file_rate(sampling_rate: Any, container: str | None = None) -> None:
    """Refuse (`VallEValueError`) a sampling rate that is not a positive integer (Hz) a file's header holds, or, given
    the soundfile `container` (`output_format`), one above what its encoder survives."""
    limit = min(MAX_FILE_RATE, _MAX_FORMAT_RATE.get(container, MAX_FILE_RATE))
    if (isinstance(sampling_rate, bool) or not isinstance(sampling_rate, (int, np.integer))
            or not 0 < sampling_rate <= limit):
        kind = f"an {container} file's " if limit < MAX_FILE_RATE else "the "
        raise VallEValueError(f"{kind}sampling rate must be a positive integer (Hz) up to {limit}, got "
                              f"{sampling_rate!r}")


def save_audio(
    path: str | os.PathLike, waveform: torch.Tensor | np.ndarray, sampling_rate: int = SAMPLING_RATE
) -> Path:
    """Write a mono waveform to `path` (format by extension, see `output_format`), all or nothing.

    The file is written under a temporary name in the same folder and renamed into place when complete, so an
    interrupted or failed write never leaves a partial file, and an existing file is replaced only by a whole one.
    Samples are clipped to [-1, 1], with a warning naming how many were (`clipped_samples`). Raises `VallEValueError`
    for a path that cannot be written (`check_output_path`: a directory, a missing folder, ...), samples no file
    should hold (`waveform_samples`) and a sampling rate that is not a positive integer a file header holds
    (`check_file_rate`); `OutputError` when the write fails (a rate the format does not take, disk full, file-size
    limit, ...), with the reason and `path` as it was.
    """
    return write_encoded(*encoded_audio(path, waveform, sampling_rate))


def encoded_audio(path: str | os.PathLike, waveform: torch.Tensor | np.ndarray,
                  sampling_rate: int = SAMPLING_RATE) -> tuple[Path, bytes]:
    """`save_audio`'s first half: `path` checked and the bytes of its file, `waveform` encoded in memory in the format
    of its extension, so that a batch of files can all be encoded before any is written (and so that a failed write
    is the system's own error: libsndfile keeps it). Raises as `save_audio` does, before writing."""
    out = check_output_path(path)
    container, subtype = output_format(out)
    data = waveform_samples(waveform, out)
    check_file_rate(sampling_rate, container)
    data, count, peak = clipped_samples(data)
    encoded = io.BytesIO()
    try:
        soundfile.write(encoded, data, sampling_rate, format=container, subtype=subtype)
    except WRITE_ERRORS as error:  # a rate the format does not take
        raise _output_error(out, error) from None
    warn_clipped(out, count, peak)
    return out, encoded.getvalue()


def write_encoded(out: Path, encoded: bytes) -> Path:
    """`save_audio`'s second half: `encoded` (`encoded_audio`) written to `out` whole or not at all; returns `out`.
    Raises `OutputError` when the write fails (disk full, file-size limit, ...), with `out` as it was."""
    try:
        with written_whole(out) as temporary:
            temporary.write_bytes(encoded)
    except OSError as error:
        raise _output_error(out, error) from None
    return out


def _output_error(out: Path, error: BaseException) -> OutputError:
    kept = "left unchanged" if out.exists() else "not created"
    return OutputError(f"could not write {out} ({write_failure(error, out)}); it was {kept}")


def write_failure(error: BaseException, path: Path) -> str:
    """Why writing `path` (a file being written, or about to be) failed, in the system's words (`OSError.strerror`).
    libsndfile says only "System error." for a failed system call, so for that the file system is asked: under 1 MiB
    free is a full disk; a file at the file-size limit (`ulimit -f`) is too large. Otherwise libsndfile's words, or
    the error's."""
    if isinstance(error, OSError) and error.strerror:
        return system_reason(error)
    if not isinstance(error, soundfile.LibsndfileError):
        return one_line(error)
    if error.code == _SYSTEM_ERROR:
        if shutil.disk_usage(path.parent).free < _FULL_DISK_BYTES:
            return os.strerror(errno.ENOSPC)
        limit = file_size_limit()
        if limit is not None and path.exists() and path.stat().st_size >= limit - min(_LAST_WRITE_BYTES, limit // 2):
            return system_reason(OSError(errno.EFBIG, os.strerror(errno.EFBIG)))
    return one_line(error.error_string.removeprefix("Error : "))  # without soundfile's "Error opening <file>: "


def as_samples(value: Any) -> Any:
    """`value` as a numpy array when it is a non-empty list or tuple of numbers (a waveform as Python numbers, which
    can be nothing else: a list of sources holds paths or arrays); anything else as it is. Checked first where a list
    means one source per row, which read a waveform's samples each as a row."""
    if isinstance(value, (list, tuple)) and value and all(
            isinstance(item, (int, float, np.integer, np.floating)) and not isinstance(item, bool) for item in value):
        return np.asarray(value)
    return value


def reference_sources(sources: Any, name: str = "prompt_audio") -> list[AudioSource]:
    """Flatten the original's prompt syntaxes: "a.wav;b.wav", [path, path, ...], an array (or a list of numbers,
    `as_samples`), an audio file's content (`ENCODED_AUDIO`: bytes or an open binary file), or a mix in a list. Raises
    `VallETypeError` for anything else, naming the argument as `name` and, for what a notebook holds audio in (a
    dict, a number), how to give it."""
    sources = as_samples(sources)
    if isinstance(sources, str):  # each path's "~" read as the home folder, as a shell reads an unquoted one
        return [os.path.expanduser(part) for part in (piece.strip() for piece in sources.split(";")) if part]
    if isinstance(sources, os.PathLike):
        return [Path(sources).expanduser()]
    if isinstance(sources, (np.ndarray, torch.Tensor, *ENCODED_AUDIO)):
        return [sources]
    if isinstance(sources, (list, tuple)):
        return [item for source in sources for item in reference_sources(source, name)]
    raise VallETypeError(f"{name} must be a path, a ';'-joined string of paths, an array, an audio file's bytes or "
                         f"open file, or a list, got {type(sources).__name__}{source_hint(sources, name)}")


def source_hint(source: Any, name: str) -> str:
    """How to give, as `name`, audio held in `source` (a dict, a number: no audio source), as the end of the message
    refusing it; "" for other types."""
    if isinstance(source, Mapping):  # a `datasets` audio column's item
        return (f": give its samples and rate, {name}=item['array'], sampling_rate=item['sampling_rate'] (the "
                "speech-recognition pipeline takes the dict itself)")
    if isinstance(source, (int, float, np.number)) and not isinstance(source, bool):
        return ": a waveform's samples one by one? give the waveform as one array (or one list of numbers)"
    return ""


def reference_paths(sources: Any) -> list[str | os.PathLike]:
    """The file paths among `sources` (see `reference_sources`), e.g. to keep an output from overwriting them."""
    return [source for source in reference_sources(sources) if isinstance(source, (str, os.PathLike))]
