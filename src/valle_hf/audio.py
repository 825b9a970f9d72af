"""Audio in and out: files and arrays → 24 kHz mono float waveforms, and waveforms → files, written whole or not at all.

Every voice prompt and speech-to-text input goes through `load_audio` / `load_references`; every output file through
`save_audio`. Channels are averaged (the original's training data was), other rates are resampled with soxr, and a
file is written under a temporary name and renamed into place when complete.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
import soxr
import torch

from .configuration import CODEC_SAMPLING_RATE as SAMPLING_RATE
from .errors import OutputError, VallEFileNotFoundError, VallETypeError, VallEValueError, one_line

AudioSource = str | os.PathLike | np.ndarray | torch.Tensor

__all__ = [
    "AudioSource",
    "check_output_path",
    "load_audio",
    "load_references",
    "output_format",
    "reference_paths",
    "save_audio",
]


def _pcm_to_float(array: np.ndarray) -> np.ndarray:
    """Integer PCM → float32 in [-1, 1) (unsigned 8-bit is centred on 128); floats pass through as float32."""
    if array.dtype == np.uint8:
        return (array.astype(np.float32) - 128.0) / 128.0
    if array.dtype in (np.int8, np.int16, np.int32):
        return array.astype(np.float32) / float(-np.iinfo(array.dtype).min)
    if np.issubdtype(array.dtype, np.floating):
        return array.astype(np.float32, copy=False)
    raise VallEValueError(f"unsupported audio sample type {array.dtype}: use float, int8/16/32 or uint8 PCM")


def _to_mono(array: np.ndarray) -> np.ndarray:
    """Average the channels; a 2-D array's shorter axis is taken as the channel axis ([C, N] or [N, C])."""
    while array.ndim > 2 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 1:
        return array
    if array.ndim != 2:
        raise VallEValueError(f"audio must be 1-D or 2-D (channels x samples), got shape {array.shape}")
    channel_axis = 0 if array.shape[0] <= array.shape[1] else 1
    return array.mean(axis=channel_axis)


def load_audio(source: AudioSource, sampling_rate: int | None = None) -> torch.Tensor:
    """Load audio as a 1-D float32 tensor at 24 kHz, mono.

    `source` is a path to a file soundfile reads (WAV, FLAC, OGG, MP3, ...) or a numpy array / torch tensor, 1-D or
    [channels, samples] / [samples, channels], float in [-1, 1] or integer PCM (uint8, int8, int16, int32).
    `sampling_rate` is the rate of an array (default 24000); for a file the header gives it, and a different value
    here is an error. A float array must lie in [-1, 1] (samples beyond it are almost always integer PCM stored as
    floats, which EnCodec would read as clipped noise); a file's samples are taken as the file holds them. Channels
    are averaged, as the original's training data was (its inference took channel 0 of stereo prompts only).
    Resampling uses soxr's high-quality filter (the original used torchaudio's default sinc resampler, so codes can
    differ slightly at other input rates).
    Raises `VallEFileNotFoundError` for a missing file or a directory, `VallEValueError` for an unreadable file,
    empty, non-finite or out-of-range audio, and `VallETypeError` for a source of another type.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            raise VallEFileNotFoundError(f"{path} is a directory, not an audio file: give the file itself")
        if not path.is_file():
            raise VallEFileNotFoundError(f"audio file not found: {path}")
        try:
            data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
        except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as error:
            raise VallEValueError(f"could not read audio file {path}: {one_line(error)}") from None
        if sampling_rate is not None and sampling_rate != rate:
            raise VallEValueError(f"{path} is {rate} Hz but sampling_rate={sampling_rate} was given")
        what, samples = str(path), None
        array = data.mean(axis=1)
    elif isinstance(source, (np.ndarray, torch.Tensor)):
        if isinstance(source, torch.Tensor):
            source = source.detach().cpu()
            source = (source.float() if source.dtype in (torch.float16, torch.bfloat16) else source).numpy()
        rate = SAMPLING_RATE if sampling_rate is None else sampling_rate
        what, samples = "audio array", _pcm_to_float(source)
        array = _to_mono(samples)
    else:
        raise VallETypeError(f"audio source must be a path, numpy array or torch tensor, got {type(source).__name__}")
    if not isinstance(rate, int) or rate <= 0:
        raise VallEValueError(f"sampling_rate must be a positive integer, got {rate!r}")
    if array.size == 0:
        raise VallEValueError(f"{what} is empty (no samples)")
    if not np.isfinite(array).all():
        raise VallEValueError(f"{what} contains NaN or infinite samples")
    if samples is not None and np.abs(samples).max() > 1.0:
        raise VallEValueError(f"the audio array has samples outside [-1, 1] (peak {np.abs(samples).max():.4g}): scale "
                              "float audio to [-1, 1], or pass integer PCM with its integer dtype (e.g. int16)")
    if rate != SAMPLING_RATE:
        array = soxr.resample(array, rate, SAMPLING_RATE, quality="HQ")
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


# The sample format written per container: 32-bit float WAV, as the original writes (torchaudio.save of a float
# tensor); the container's own default for the rest (FLAC 16-bit, Ogg Vorbis, MP3).
_OUTPUT_SUBTYPES = {"WAV": "FLOAT"}
_OUTPUT_FORMATS = {"wav": "WAV", "flac": "FLAC", "ogg": "OGG", "mp3": "MP3"}


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


def check_output_path(path: str | os.PathLike, inputs: Sequence[str | os.PathLike] = ()) -> Path:
    """Check, before any work, that audio can be written to `path`; returns it as a Path.

    Refuses a directory, a missing or read-only parent directory, an unsupported extension (`output_format`) and a
    path that is one of the `inputs` (the same file, whatever the spelling or link: the reference audio would be
    overwritten). Raises `VallEValueError`.
    """
    out = Path(path)
    output_format(out)
    if out.is_dir():
        raise VallEValueError(f"the output path {out} is a directory: give a file name such as {out / 'speech.wav'}")
    if not out.parent.is_dir() or not os.access(out.parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise VallEValueError(f"cannot write the output file {out}: its folder does not exist or is not writable")
    for source in inputs:
        if out.exists() and Path(source).exists() and os.path.samefile(out, source):
            raise VallEValueError(f"the output path {out} is also an input ({source}): writing it would destroy the "
                                  "reference audio; choose another output file")
    return out


def save_audio(
    path: str | os.PathLike, waveform: torch.Tensor | np.ndarray, sampling_rate: int = SAMPLING_RATE
) -> Path:
    """Write a mono waveform to `path` (format by extension, see `output_format`), all or nothing.

    The file is written under a temporary name in the same folder and renamed into place when complete, so an
    interrupted or failed write never leaves a partial file, and an existing file is replaced only by a whole one.
    Raises `OutputError` when the write fails (disk full, file-size limit, ...), with `path` as it was.
    """
    out = Path(path)
    container, subtype = output_format(out)
    data = waveform.detach().float().cpu().numpy() if isinstance(waveform, torch.Tensor) else np.asarray(waveform)
    if data.ndim != 1:
        raise VallEValueError(f"save_audio writes one mono waveform (1-D), got shape {data.shape}")
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
    except OSError as error:
        raise OutputError(f"could not write {out}: {one_line(error)}") from None
    os.close(handle)
    try:
        soundfile.write(temporary, np.clip(data, -1.0, 1.0), sampling_rate, format=container, subtype=subtype)
        os.replace(temporary, out)
    except (OSError, soundfile.LibsndfileError, RuntimeError) as error:
        kept = "left unchanged" if out.exists() else "not created"
        raise OutputError(f"could not write {out} ({one_line(error)}); it was {kept}") from None
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return out


def _prompt_sources(sources: Any) -> list[AudioSource]:
    """Flatten the original's prompt syntaxes: "a.wav;b.wav", [path, path, ...], an array, or a mix in a list."""
    if isinstance(sources, str):
        return [part for part in (piece.strip() for piece in sources.split(";")) if part]
    if isinstance(sources, (os.PathLike, np.ndarray, torch.Tensor)):
        return [sources]
    if isinstance(sources, (list, tuple)):
        return [item for source in sources for item in _prompt_sources(source)]
    raise VallETypeError(
        f"prompt audio must be a path, a ';'-joined string of paths, an array or a list, got {type(sources).__name__}"
    )


def reference_paths(sources: Any) -> list[str | os.PathLike]:
    """The file paths among `sources` (see `load_references`), e.g. to keep an output from overwriting them."""
    return [source for source in _prompt_sources(sources) if isinstance(source, (str, os.PathLike))]


def load_references(sources: Any, sampling_rate: int = SAMPLING_RATE) -> list[torch.Tensor]:
    """Load the reference audio of one voice prompt (or one STT input): a list of whole 1-D float32 24 kHz waveforms.

    `sources`: a path, a ';'-joined string of paths (the original CLI's syntax), an array / tensor at
    `sampling_rate`, or a list of those. Each reference stays whole and separate: the model encodes each one on its
    own, joins the codes and only then loops or trims them to `input_prompt_length`, as the original does
    (`vall_e/inference.py:encode_audio`), so nothing is cut here. An empty path, list or ';'-joined string is refused
    (`VallEValueError`): "no voice prompt" is None, never an empty string, which is usually an unset variable.
    """
    parts = _prompt_sources(sources)
    if not parts:
        raise VallEValueError("no reference audio given (an empty path, list or ';'-joined string, often an unset "
                              "variable): give an audio file")
    return [load_audio(part, None if isinstance(part, (str, os.PathLike)) else sampling_rate) for part in parts]
