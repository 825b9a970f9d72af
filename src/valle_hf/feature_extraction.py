"""Audio in: files and arrays at their own sampling rate → mono float32 waveforms at the model's 24 kHz.

`VallEFeatureExtractor` is the processor's audio half, as transformers' EnCodec and Dia processors have one. The codec
runs inside the model, so the features are the waveforms themselves. Arrays come with their `sampling_rate` (one
without is refused, since a wrong guess changes the voice's speed and length silently); files carry their own.
Integer PCM becomes float in [-1, 1), channels are averaged (the original's training data was), and other rates are
resampled with soxr's high-quality filter (the original used torchaudio's sinc resampler, so codes can differ
slightly at other input rates).
"""

from __future__ import annotations

import os
import weakref
from typing import Any

import numpy as np
import torch
from transformers import BatchFeature, SequenceFeatureExtractor

from .audio import ENCODED_AUDIO, as_samples, audio_name, load_audio, reference_sources, source_hint
from .configuration import CODEC_HOP_LENGTH, CODEC_SAMPLING_RATE
from .errors import VallETypeError, VallEValueError, get_logger, missing_dependency, shown

try:
    import soxr
except ImportError:
    raise missing_dependency("soxr", "to resample audio") from None

__all__ = ["VallEFeatureExtractor", "check_prompt_for_texts", "check_return_tensors", "check_stackable"]

logger = get_logger(__name__)

# A reference quieter than this everywhere (-80 dBFS) is silence: a failed recording, or the wrong channel or file.
SILENT_PEAK = 1e-4
# A reference louder than this somewhere (twice full scale, +6 dBFS) holds samples no recording has: a float file
# written without scaling (16-bit values as they are, up to 32767). A full-scale recording resampled overshoots less.
LOUDEST_PEAK = 2.0
# The waveforms `VallEFeatureExtractor.load` returned and that are still alive, by id: given back to `load` (by
# `generate`, from the processor's output), they are not checked again. A file's float samples may go past twice
# full scale, which the check of an array refuses.
_LOADED: weakref.WeakValueDictionary[int, torch.Tensor] = weakref.WeakValueDictionary()


def _pcm_to_float(array: np.ndarray) -> np.ndarray:
    """Integer PCM → float32 in [-1, 1) (unsigned 8-bit is centred on 128); floats pass through as float32. Either
    byte order is taken (">i2" from an AIFF file's bytes is 16-bit PCM, though unequal to np.int16)."""
    array = array.astype(array.dtype.newbyteorder("="), copy=False)
    if array.dtype == np.uint8:
        return (array.astype(np.float32) - 128.0) / 128.0
    if array.dtype in (np.int8, np.int16, np.int32):
        return array.astype(np.float32) / float(-np.iinfo(array.dtype).min)
    if np.issubdtype(array.dtype, np.floating):
        return array.astype(np.float32, copy=False)
    whole = (" (a list of whole numbers is read as int64: give floats in [-1, 1], or the PCM samples as an array of "
             "their type, np.array(samples, dtype=np.int16))" if array.dtype == np.int64 else "")
    raise VallEValueError(f"unsupported audio sample type {array.dtype}{whole}: use float, int8/16/32 or uint8 PCM")


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


def check_return_tensors(return_tensors: Any) -> None:
    """Refuse (`VallEValueError`) a `return_tensors` other than "pt", "np" or None: transformers' `BatchFeature`
    raises a bare ValueError for it, after the work is done."""
    if return_tensors not in ("pt", "np", None):
        raise VallEValueError(f"return_tensors must be 'pt', 'np' or None, got {return_tensors!r}")


def pads(padding: Any) -> bool:
    """Whether a `padding` argument asks for padding, as transformers reads it: True or "longest" (the longest row's
    length), not False or "do_not_pad" (a non-empty string, so truthy)."""
    return bool(padding) and padding != "do_not_pad"


def check_stackable(lengths: list[int], padding: Any, return_tensors: str | None, what: str, unit: str) -> None:
    """Refuse (`VallEValueError`, naming `what`) rows of different `lengths` (in `unit`) as tensors without
    padding: they cannot be stacked, and transformers' `BatchFeature` fails with a bare multi-line ValueError (or,
    for "np", silently makes an array of objects)."""
    if return_tensors is None or pads(padding) or len(set(lengths)) < 2:
        return
    raise VallEValueError(f"{what} of different lengths ({min(lengths)} to {max(lengths)} {unit}) cannot be "
                          f"returned as one {return_tensors!r} tensor without padding: pass padding=True, or "
                          "return_tensors=None for a list per row")


def check_prompt_for_texts(prompt: Any, texts: int) -> None:
    """Refuse one `[2, samples]` array given as the voice prompt of exactly two texts: it reads as one stereo voice
    (its channels averaged) but may as well be two voices, one per text, and either guess changes the voices without
    a word. One text keeps it stereo; `[3+, samples]` is refused as a batch whatever the texts (`waveform`)."""
    if texts == 2 and isinstance(prompt, (np.ndarray, torch.Tensor)) and prompt.ndim == 2 and prompt.shape[0] == 2:
        raise VallEValueError(f"prompt_audio is one array of shape {tuple(prompt.shape)} for 2 texts: one stereo "
                              "voice, or two voices (one per text)? For two voices give a list of the two waveforms, "
                              "[first, second]; for one voice give it mono (its channels averaged, audio.mean(0)) or "
                              "the stereo file's path")


# The lowest rate of audio taken in (Hz): below it, no speech can be heard (its Nyquist frequency is under 2 kHz).
MIN_SAMPLING_RATE = 4000
# The highest (Hz): twice DXD's 352.8 kHz, above any recording's; a larger one is a typo or a damaged header, which
# resampling would shrink to nothing (or, at 1e30 Hz, never finish).
MAX_SAMPLING_RATE = 768000


class VallEFeatureExtractor(SequenceFeatureExtractor):
    """Audio → mono float32 waveforms at `sampling_rate` (24 kHz, the codec's): the processor's audio half.

    `__call__` prepares a batch of arrays as transformers' feature extractors do (`input_values`, padded, with a
    `padding_mask`); `load` reads one voice prompt or speech-to-text input in any of the package's forms (paths,
    ';'-joined paths, arrays, lists of those) as a list of whole waveforms, which is what `generate` reads.
    Saved with the processor (`processor_config.json`). Its `sampling_rate` is the model's (another raises
    `VallEValueError`): the processor writes audio at that rate too (`VallEProcessor.save_audio`).
    """

    model_input_names = ["input_values", "padding_mask"]

    def __init__(self, feature_size: int = 1, sampling_rate: int = CODEC_SAMPLING_RATE, padding_value: float = 0.0,
                 **kwargs):
        if sampling_rate != CODEC_SAMPLING_RATE:  # what it returns is what the model reads and writes
            raise VallEValueError(f"VallEFeatureExtractor's sampling_rate is the model's, {CODEC_SAMPLING_RATE} Hz "
                                  f"(EnCodec 24 kHz), got {sampling_rate!r}: audio at another rate is resampled when "
                                  "given with its rate")
        super().__init__(feature_size=feature_size, sampling_rate=sampling_rate, padding_value=padding_value, **kwargs)

    def waveform(self, array: np.ndarray | torch.Tensor, sampling_rate: int | None, what: str = "audio array"
                 ) -> torch.Tensor:
        """One array (1-D, or 2-D channels x samples either way round; float or integer PCM) recorded at
        `sampling_rate` Hz → a 1-D float32 tensor at `self.sampling_rate`.

        Raises `VallEValueError` for an array without a sampling rate or at one outside `MIN_SAMPLING_RATE` ..
        `MAX_SAMPLING_RATE`, an empty array, a given array with more than 2 channels (most likely a batch of
        waveforms, which would be averaged into one), non-finite samples, or float samples past twice full scale
        (`LOUDEST_PEAK`: integer PCM stored as floats, which EnCodec would read as clipped noise; a full-scale
        recording resampled, as `librosa.load` gives it, overshoots ±1 a little, and is read as a file's samples are).
        """
        if sampling_rate is None:
            raise VallEValueError(f"{what} has no sampling_rate: pass sampling_rate=<its rate in Hz> (the model reads "
                                  f"{self.sampling_rate} Hz and resamples other rates), or give a file path")
        if isinstance(sampling_rate, (list, tuple)):  # generate takes one per row, the processor one per call
            raise VallEValueError(f"sampling_rate is a list ({shown(sampling_rate):.60}), but the processor takes one "
                                  "rate for the arrays of a call: call it once per rate, or give file paths (each "
                                  "file has its own)")
        if isinstance(sampling_rate, bool) or not isinstance(sampling_rate, (int, np.integer)) or sampling_rate <= 0:
            raise VallEValueError(f"sampling_rate must be a positive integer (Hz), got {sampling_rate!r}")
        if not MIN_SAMPLING_RATE <= sampling_rate <= MAX_SAMPLING_RATE:  # a 1 Hz header made gigabytes of samples
            raise VallEValueError(f"{what} is at {sampling_rate} Hz, and no recording of speech is below "
                                  f"{MIN_SAMPLING_RATE} Hz (telephone audio is 8000 Hz) or above {MAX_SAMPLING_RATE} "
                                  "Hz: give its true rate (a file that says so has a damaged header: save it again at "
                                  "its rate)")
        if isinstance(array, torch.Tensor) and array.is_meta:  # torch: "Cannot copy out of meta tensor"
            raise VallEValueError(f"{what} is on the meta device, which holds shapes but no values: give it real data")
        if isinstance(array, torch.Tensor):
            array = array.detach().cpu()
            array = (array.float() if array.dtype in (torch.float16, torch.bfloat16) else array).numpy()
        array = np.asarray(array)
        if array.size == 0:
            raise VallEValueError(f"{what} is empty (no samples): give a recording of a few seconds")
        floats = _pcm_to_float(array)
        if what == "audio array" and floats.ndim == 2 and min(floats.shape) > 2:
            raise VallEValueError(f"the audio array has shape {floats.shape}: an array is one recording, mono or "
                                  "stereo; give several waveforms as a list (one per row of the batch), or average "
                                  "the channels of a multichannel recording first")
        samples = _to_mono(floats)
        if not np.isfinite(samples).all():
            raise VallEValueError(f"{what} contains NaN or infinite samples, which no voice has (a damaged "
                                  "recording, or a computation that failed): give a clean recording")
        if what == "audio array" and np.abs(floats).max() > LOUDEST_PEAK:  # a little past ±1 is a file's too
            raise VallEValueError(f"the audio array has samples far outside [-1, 1] (peak {np.abs(floats).max():.4g}):"
                                  " scale float audio to [-1, 1], or pass integer PCM with its integer dtype (e.g. "
                                  "int16)")
        if sampling_rate != self.sampling_rate:
            samples = soxr.resample(samples, int(sampling_rate), self.sampling_rate, quality="HQ")
        return torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))

    def load(self, sources: Any, sampling_rate: int | None = None, to_transcribe: bool = False
             ) -> list[torch.Tensor]:
        """The references of one voice prompt (or, `to_transcribe`, one speech-to-text input): a list of whole 1-D
        float32 waveforms.

        `sources`: a path, a ';'-joined string of paths (the original CLI's syntax), an audio file's content (bytes or
        an open binary file, `valle_hf.audio.load_audio`), an array at `sampling_rate`, or a list of those. Each
        reference stays whole and separate: the model encodes each one on its own, joins the codes and only then loops
        or trims them to `input_prompt_length`, as the original does, so nothing is cut here. Raises `VallEValueError`
        for no reference at all, for one shorter than a codec frame (it holds no voice; and as `waveform`),
        FileNotFoundError for a missing file; warns about a silent one. A waveform that `load` itself returned, given
        back at the rate it returned it at (the processor's output, passed on to `generate`), is taken as it is: it
        was checked, and warned about, once.
        """
        parts = reference_sources(sources, "audio" if to_transcribe else "prompt_audio")
        if not parts:  # "no voice prompt" is None, never an empty string (usually an unset shell variable)
            what, fix = (("no audio to transcribe", "give the audio file to transcribe") if to_transcribe else
                         ("no reference audio", "give an audio file (for a random voice: prompt_audio=None, or "
                                                "--no-prompt on the command line)"))
            raise VallEValueError(f"{what} given (an empty path, list or ';'-joined string, often an unset "
                                  f"variable): {fix}")
        # a rate given with files alone is no file's: each is read at its own, which the caller may not know
        files = all(isinstance(part, (str, os.PathLike, *ENCODED_AUDIO)) for part in parts)
        for_files = sampling_rate if files else None
        return [self._reference(part, sampling_rate, for_files) for part in parts]

    def _reference(self, part: Any, sampling_rate: int | None, for_files: int | None = None) -> torch.Tensor:
        """One reference (a path, or an array at `sampling_rate`) as a checked waveform at `self.sampling_rate`;
        warns where `for_files`, a rate given with files alone, is not the file's own."""
        if _LOADED.get(id(part)) is part and sampling_rate == self.sampling_rate:
            return part
        if isinstance(part, (str, os.PathLike, *ENCODED_AUDIO)):
            samples, rate = load_audio(part)
            if for_files is not None and for_files != rate:
                logger.warning(f"sampling_rate={for_files} is not the rate of {audio_name(part)}, a file, which is "
                               f"read at its own ({rate} Hz): the rate is for arrays; drop it")
            waveform = self.check_reference(self.waveform(samples, rate, what=audio_name(part)), audio_name(part))
        else:
            waveform = self.check_reference(self.waveform(part, sampling_rate), "the audio array")
        _LOADED[id(waveform)] = waveform
        return waveform

    def check_reference(self, waveform: torch.Tensor, what: str, refuse_silence: bool = False) -> torch.Tensor:
        """`waveform` (1-D, at `sampling_rate`) as a voice prompt, STT input or training utterance: refused
        (`VallEValueError`, naming `what`) when shorter than one codec frame; when silent, warned about, or refused
        with `refuse_silence` (a training utterance: trained on, it would teach its transcript as silence); when past
        full scale (`LOUDEST_PEAK`), warned about: EnCodec is made for samples in [-1, 1]."""
        frame = CODEC_HOP_LENGTH  # samples, at the codec's rate (the only one this extractor has)
        if len(waveform) < frame:
            milliseconds = 1000 * len(waveform) / self.sampling_rate
            raise VallEValueError(f"{what} is {milliseconds:.2f} ms long, shorter than one codec frame "
                                  f"({1000 * frame / self.sampling_rate:.1f} ms): it holds no voice; give a recording "
                                  "of a few seconds")
        peak = float(waveform.abs().max())
        if peak < SILENT_PEAK and refuse_silence:
            raise VallEValueError(f"{what} is silent (peak {peak:.1e}, below -80 dBFS): no speech to learn its "
                                  "transcript from; check the recording (the wrong file or channel?)")
        if peak < SILENT_PEAK:
            # the same check serves a voice prompt and speech to transcribe: the warning names what each gets
            logger.warning(f"{what} is silent (peak {peak:.1e}, below -80 dBFS): as a voice prompt it gives a random "
                           "voice, as speech to transcribe a transcript of noise; check the recording")
        if peak > LOUDEST_PEAK:
            logger.warning(f"{what} goes past full scale (peak {peak:.3g}; recordings stay within -1 and 1), so "
                           "EnCodec hears it distorted: a float file written without scaling? scale it to [-1, 1]")
        return waveform

    def __call__(self, raw_audio: Any, sampling_rate: int | None = None, padding: bool | str = True,
                 return_tensors: str | None = None) -> BatchFeature:
        """A batch of arrays (one array, or a list of them) at `sampling_rate` → `input_values`: one 1-D waveform at
        `self.sampling_rate` per array; with `padding` (True or "longest"; not False or "do_not_pad"), right-padded
        with zeros to `[batch, samples]` beside a `padding_mask` (1 = audio). Raises `VallEValueError` without a
        `sampling_rate`, for no array at all, a path (files go to `load`), a `return_tensors` other than "pt", "np" or
        None, and arrays of different lengths returned as tensors without padding."""
        check_return_tensors(return_tensors)
        raw_audio = as_samples(raw_audio)  # one waveform as a list of numbers, as transformers' extractors take it
        arrays = raw_audio if isinstance(raw_audio, (list, tuple)) else [raw_audio]
        if not arrays:
            raise VallEValueError("the feature extractor got an empty list: give an audio array or a list of them")
        if any(isinstance(array, (str, os.PathLike, *ENCODED_AUDIO)) for array in arrays):
            raise VallEValueError("the feature extractor takes audio arrays, not files (paths, bytes or open files): "
                                  "read them with VallEFeatureExtractor.load(file), or give them to the processor")
        odd = next((array for array in arrays if source_hint(array, "raw_audio")), None)
        if odd is not None:  # numpy would make it an array of objects or bytes, refused for its dtype
            raise VallETypeError(f"the feature extractor takes audio arrays, got {type(odd).__name__}"
                                 f"{source_hint(odd, 'raw_audio')}")
        waveforms = [self.waveform(array, sampling_rate).numpy() for array in arrays]
        check_stackable([len(waveform) for waveform in waveforms], padding, return_tensors, "audio arrays", "samples")
        features = BatchFeature({"input_values": waveforms})
        if pads(padding):
            features = self.pad(features, padding=True, return_attention_mask=True)
            features["padding_mask"] = features.pop("attention_mask")
        return features.convert_to_tensors(return_tensors) if return_tensors else features
