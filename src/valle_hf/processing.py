"""Front-end of VALL-E: text → IPA phonemes → token ids, ids → IPA, and audio files → 24 kHz mono waveforms.

Text is phonemised by espeak-ng through `phonemizer`, with the flags of the original (e-c-k-e-r/vall-e
`emb/g2p.py`): punctuation kept, stress marks on, surrounding whitespace stripped, "en" read as "en-us" and "fr" as
"fr-fr". The espeak-ng library and voice data come from the `espeakng_loader` wheel, so no system espeak is needed
(set `PHONEMIZER_ESPEAK_LIBRARY` to use another library). Phonemes become ids with the original BPE
`tokenizer.json`, which wraps every text in `<bos>`=1 … `</eos>`=2 and maps unknown characters to `<unk>`=0.

Improvements over the original, each documented where it is implemented: `language="auto"`, pass-through of text
that is already IPA, clear errors for empty text and unknown languages, deterministic id → phoneme decoding,
stereo prompts averaged to mono (as the training data was), and `split_sentences` for long texts.
"""

from __future__ import annotations

import functools
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
import soxr
import torch
from transformers import BatchFeature, PreTrainedTokenizerBase, ProcessorMixin

from .codec import SAMPLING_RATE
from .tokenization import dealias_tokenizer, ids_to_phonemes, load_phoneme_tokenizer

# The released model's language ids, in order ({"en": 0, "ja": 1, "de": 2, "fr": 3} in the original).
MODEL_LANGUAGES = ("en", "ja", "de", "fr")
# The original's `coerce_language`; every other code goes to espeak-ng as given.
_ESPEAK_VOICE = {"en": "en-us", "fr": "fr-fr"}

AudioSource = str | os.PathLike | np.ndarray | torch.Tensor

__all__ = [
    "MODEL_LANGUAGES",
    "VallEProcessor",
    "detect_language",
    "ids_to_phonemes",
    "load_audio",
    "load_phoneme_tokenizer",
    "load_references",
    "looks_like_ipa",
    "check_output_path",
    "output_format",
    "phonemize",
    "save_audio",
    "split_sentences",
]


# ---------------------------------------------------------------------------------------------------- text → IPA

# Characters that occur in IPA but in no orthography of the model's languages: the IPA Extensions block, stress and
# length marks, and the few modifier letters espeak-ng emits (ʰ ʲ ʷ ˞ ᵻ ᵝ).
_IPA_ONLY = re.compile("[\u0250-\u02af\u02b0\u02b2\u02b7\u02c8\u02cc\u02d0\u02d1\u02de\u1d5d\u1d7b]")
_KANA = re.compile("[\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f]")
_HAN = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def looks_like_ipa(text: str) -> bool:
    """True if `text` contains IPA-only characters (e.g. ə ɪ ʃ ˈ ː), i.e. it is already phonemised.

    espeak-ng output always carries some (stress marks at least), while English, German, French and Japanese
    orthography never does. Languages written with IPA letters (e.g. Azerbaijani ə, Ewe ɛ ɔ) are misread as IPA.
    """
    return _IPA_ONLY.search(text) is not None


def detect_language(text: str) -> str:
    """The "auto" language: "ja" if the text contains kana or Han characters, otherwise "en".

    Only the writing system is looked at, so German and French text written in Latin letters reads as English:
    pass `language="de"`/`"fr"` for those. (The original at 9901c4f had no "auto"; its later versions call
    `langdetect`, which is not a dependency here.)
    """
    return "ja" if _KANA.search(text) or _HAN.search(text) else "en"


@functools.cache
def _use_bundled_espeak() -> None:
    """Point phonemizer at the espeak-ng library and data of the `espeakng_loader` wheel (once per process)."""
    if "PHONEMIZER_ESPEAK_LIBRARY" in os.environ:  # the user's explicit choice wins
        return
    import espeakng_loader
    from phonemizer.backend.espeak.wrapper import EspeakWrapper

    EspeakWrapper.set_library(espeakng_loader.get_library_path())
    EspeakWrapper.set_data_path(espeakng_loader.get_data_path())


@functools.cache
def _espeak_languages() -> frozenset[str]:
    _use_bundled_espeak()
    from phonemizer.backend import EspeakBackend

    return frozenset(EspeakBackend.supported_languages())


@functools.cache
def _espeak_backend(voice: str):
    """One espeak backend per voice, built with the original's flags (the cache key is the voice only)."""
    _use_bundled_espeak()
    from phonemizer.backend import EspeakBackend

    return EspeakBackend(voice, preserve_punctuation=True, with_stress=True)


def _check_language(language: str) -> str:
    """Return the espeak-ng voice for a model language or espeak-ng code; reject anything else in one line."""
    if not isinstance(language, str):
        raise TypeError(f"language must be a str, got {type(language).__name__}")
    if language in MODEL_LANGUAGES:
        return _ESPEAK_VOICE.get(language, language)
    if language in _espeak_languages():
        return language
    raise ValueError(
        f"unknown language {language!r}: use 'auto', one of the model's languages {', '.join(MODEL_LANGUAGES)}, "
        f"or an espeak-ng code such as 'en-gb' or 'es' (phonemizer's EspeakBackend.supported_languages())"
    )


def resolve_language(text: str, language: str) -> str:
    """The language `text` is read in: `language` itself, or `detect_language(text)` for "auto"; validated."""
    if language == "auto":
        return detect_language(text)
    _check_language(language)
    return language


@functools.cache
def _kakasi():
    try:
        import pykakasi
    except ImportError:
        return None
    return pykakasi.kakasi()


def _to_hiragana(text: str) -> str:
    """Japanese text → hiragana with pykakasi, as the original does before espeak (which cannot read kanji).

    pykakasi is optional: kana-only text goes to espeak-ng as it is (espeak reads hiragana and katakana alike), and
    only text with kanji needs it.
    """
    kakasi = _kakasi()
    if kakasi is None:
        if _HAN.search(text):
            raise ImportError(
                "Japanese text with kanji needs pykakasi to be converted to hiragana first: pip install pykakasi "
                "(or pass kana or IPA)"
            )
        return text
    return "".join(item["hira"] for item in kakasi.convert(text))


def phonemize(text: str, language: str = "en") -> str:
    """Text → IPA phonemes with espeak-ng (punctuation kept, stress marked), as the original model was trained.

    `language`: "auto" (see `detect_language`), one of `MODEL_LANGUAGES` ("en" is read as en-us, "fr" as fr-fr), or
    any espeak-ng language code. Text that is already IPA (see `looks_like_ipa`) is returned as it is, only stripped
    of surrounding whitespace. Runs of whitespace, newlines included, count as one space (the original split lines
    before phonemising; use `split_sentences` for long texts). Raises ValueError for empty text or an unknown
    language, ImportError for Japanese kanji without pykakasi.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if not text.strip():
        raise ValueError("text is empty or only whitespace: there is nothing to phonemize")
    language = resolve_language(text, language)
    if looks_like_ipa(text):
        return text.strip()
    text = " ".join(text.split())
    if language == "ja":
        text = _to_hiragana(text)
    voice = _check_language(language)
    phonemes = _espeak_backend(voice).phonemize([text], strip=True)
    if not phonemes or not phonemes[0].strip():
        raise ValueError(f"espeak-ng ({voice}) produced no phonemes for {text!r}")
    return phonemes[0]


_SENTENCE_BREAK = re.compile(
    r"(?<=[.!?…])\s+"  # after . ! ? … followed by whitespace
    r"|(?<=[.!?…][\"'”’»)\]])\s+"  # ... or after a closing quote or bracket that follows them
    r"|(?<=[。！？])"  # Japanese full stops need no space after them
    r"|\s*\n\s*"  # and at every line break
)


def split_sentences(text: str) -> list[str]:
    """Split long text into sentence pieces for piece-by-piece synthesis; punctuation stays with its sentence.

    Breaks come after `.` `!` `?` `…` followed by whitespace (a closing quote or bracket may sit in between), after
    Japanese `。！？`, and at newlines. Pieces are stripped; empty ones are dropped and pieces without any letter or
    digit (a stray "..." say) are glued to the previous piece. "Dr. Smith" splits too: the splitter knows no
    abbreviations.
    """
    pieces: list[str] = []
    for piece in _SENTENCE_BREAK.split(text):
        piece = piece.strip()
        if not piece:
            continue
        if pieces and not any(char.isalnum() for char in piece):
            pieces[-1] = f"{pieces[-1]} {piece}"
        else:
            pieces.append(piece)
    return pieces


# ---------------------------------------------------------------------------------------------------- audio


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _pcm_to_float(array: np.ndarray) -> np.ndarray:
    """Integer PCM → float32 in [-1, 1) (unsigned 8-bit is centred on 128); floats pass through as float32."""
    if array.dtype == np.uint8:
        return (array.astype(np.float32) - 128.0) / 128.0
    if array.dtype in (np.int8, np.int16, np.int32):
        return array.astype(np.float32) / float(-np.iinfo(array.dtype).min)
    if np.issubdtype(array.dtype, np.floating):
        return array.astype(np.float32, copy=False)
    raise ValueError(f"unsupported audio sample type {array.dtype}: use float, int8/16/32 or uint8 PCM")


def _to_mono(array: np.ndarray) -> np.ndarray:
    """Average the channels; a 2-D array's shorter axis is taken as the channel axis ([C, N] or [N, C])."""
    while array.ndim > 2 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 1:
        return array
    if array.ndim != 2:
        raise ValueError(f"audio must be 1-D or 2-D (channels x samples), got shape {array.shape}")
    channel_axis = 0 if array.shape[0] <= array.shape[1] else 1
    return array.mean(axis=channel_axis)


def load_audio(source: AudioSource, sampling_rate: int | None = None) -> torch.Tensor:
    """Load audio as a 1-D float32 tensor at 24 kHz, mono.

    `source` is a path to a file soundfile reads (WAV, FLAC, OGG, MP3, ...) or a numpy array / torch tensor, 1-D or
    [channels, samples] / [samples, channels], float in [-1, 1] or integer PCM (uint8, int8, int16, int32).
    `sampling_rate` is the rate of an array (default 24000); for a file the header gives it, and a different value
    here is an error. Channels are averaged, as the original's training data was (its inference took channel 0 of
    stereo prompts only). Resampling uses soxr's high-quality filter (the original used torchaudio's default
    sinc resampler, so codes can differ slightly at other input rates).
    Raises FileNotFoundError for a missing file and ValueError for an unreadable file or empty audio.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"audio file not found: {path}")
        try:
            data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
        except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as error:
            raise ValueError(f"could not read audio file {path}: {_one_line(error)}") from error
        if sampling_rate is not None and sampling_rate != rate:
            raise ValueError(f"{path} is {rate} Hz but sampling_rate={sampling_rate} was given")
        what = str(path)
        array = data.mean(axis=1)
    elif isinstance(source, (np.ndarray, torch.Tensor)):
        if isinstance(source, torch.Tensor):
            source = source.detach().cpu()
            source = (source.float() if source.dtype in (torch.float16, torch.bfloat16) else source).numpy()
        rate = SAMPLING_RATE if sampling_rate is None else sampling_rate
        what = "audio array"
        array = _to_mono(_pcm_to_float(source))
    else:
        raise TypeError(f"audio source must be a path, numpy array or torch tensor, got {type(source).__name__}")
    if not isinstance(rate, int) or rate <= 0:
        raise ValueError(f"sampling_rate must be a positive integer, got {rate!r}")
    if array.size == 0:
        raise ValueError(f"{what} is empty (no samples)")
    if not np.isfinite(array).all():
        raise ValueError(f"{what} contains NaN or infinite samples")
    if rate != SAMPLING_RATE:
        array = soxr.resample(array, rate, SAMPLING_RATE, quality="HQ")
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


# The sample format written per container: 32-bit float WAV, as the original writes (torchaudio.save of a float
# tensor); the container's own default for the rest (FLAC 16-bit, Ogg Vorbis, MP3).
_OUTPUT_SUBTYPES = {"WAV": "FLOAT"}
_OUTPUT_FORMATS = {"wav": "WAV", "flac": "FLAC", "ogg": "OGG", "mp3": "MP3"}


def output_format(path: str | os.PathLike) -> tuple[str, str]:
    """The soundfile `(format, subtype)` an output file is written with, chosen by its extension.

    Raises ValueError naming the supported extensions when the extension is missing or not one soundfile (the
    libsndfile build at hand) can write.
    """
    suffix = Path(path).suffix.lower().lstrip(".")
    container = _OUTPUT_FORMATS.get(suffix)
    writable = [ext for ext, fmt in _OUTPUT_FORMATS.items() if fmt in soundfile.available_formats()]
    if container not in soundfile.available_formats():
        raise ValueError(f"cannot write {path}: the output file must end in one of "
                         f"{', '.join('.' + ext for ext in writable)}")
    return container, _OUTPUT_SUBTYPES.get(container, soundfile.default_subtype(container))


def check_output_path(path: str | os.PathLike, inputs: Sequence[str | os.PathLike] = ()) -> Path:
    """Check, before any work, that audio can be written to `path`; returns it as a Path.

    Refuses a directory, a missing or read-only parent directory, an unsupported extension (`output_format`) and a
    path that is one of the `inputs` (the reference audio would be overwritten). Raises ValueError.
    """
    out = Path(path)
    output_format(out)
    if out.is_dir():
        raise ValueError(f"the output path {out} is a directory: give a file name such as {out / 'speech.wav'}")
    if not out.parent.is_dir() or not os.access(out.parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise ValueError(f"cannot write the output file {out}: its folder does not exist or is not writable")
    for source in inputs:
        if Path(source).exists() and out.exists() and out.resolve() == Path(source).resolve():
            raise ValueError(f"the output path {out} is also an input: writing it would destroy the reference audio")
    return out


def save_audio(
    path: str | os.PathLike, waveform: torch.Tensor | np.ndarray, sampling_rate: int = SAMPLING_RATE
) -> Path:
    """Write a mono waveform to `path` (format by extension, see `output_format`), all or nothing.

    The file is written under a temporary name in the same folder and renamed into place when complete, so an
    interrupted or failed write never leaves a partial file, and an existing file is replaced only by a whole one.
    """
    out = Path(path)
    container, subtype = output_format(out)
    data = waveform.detach().float().cpu().numpy() if isinstance(waveform, torch.Tensor) else np.asarray(waveform)
    if data.ndim != 1:
        raise ValueError(f"save_audio writes one mono waveform (1-D), got shape {data.shape}")
    handle, temporary = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
    os.close(handle)
    try:
        soundfile.write(temporary, np.clip(data, -1.0, 1.0), sampling_rate, format=container, subtype=subtype)
        os.replace(temporary, out)
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
    raise TypeError(
        f"prompt audio must be a path, a ';'-joined string of paths, an array or a list, got {type(sources).__name__}"
    )


def load_references(sources: Any, sampling_rate: int = SAMPLING_RATE) -> list[torch.Tensor]:
    """Load the reference audio of one voice prompt (or one STT input): a list of whole 1-D float32 24 kHz waveforms.

    `sources`: a path, a ';'-joined string of paths (the original CLI's syntax), an array / tensor at
    `sampling_rate`, or a list of those. Each reference stays whole and separate: the model encodes each one on its
    own, joins the codes and only then loops or trims them to `input_prompt_length`, as the original does
    (`vall_e/inference.py:encode_audio`), so nothing is cut here.
    """
    parts = _prompt_sources(sources)
    if not parts:
        raise ValueError("no reference audio given (an empty path, list or ';'-joined string)")
    return [load_audio(part, None if isinstance(part, (str, os.PathLike)) else sampling_rate) for part in parts]


# ---------------------------------------------------------------------------------------------------- processor


class VallEProcessor(ProcessorMixin):
    """Turns text into phoneme ids and prompt / STT audio into 24 kHz waveforms, and STT ids back into IPA.

    It holds the phoneme tokenizer only; the codec runs inside the model. `save_pretrained` / `from_pretrained`
    store it beside the model (tokenizer.json, tokenizer_config.json, processor_config.json).
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, chat_template: str | None = None):
        """Wrap a phoneme tokenizer. A fast tokenizer read straight from the original (aliased) `tokenizer.json` has
        its backend swapped in place for the alias-free equivalent (same ids), and a missing pad token becomes
        `<unk>` (id 0)."""
        dealias_tokenizer(tokenizer)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.unk_token
        super().__init__(tokenizer, chat_template=chat_template)

    @classmethod
    def from_tokenizer_file(cls, tokenizer_file: str | os.PathLike) -> VallEProcessor:
        """Build the processor from the original `tokenizer.json` (see `load_phoneme_tokenizer`)."""
        return cls(load_phoneme_tokenizer(tokenizer_file))

    @property
    def model_input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", "prompt_audio", "audio"]

    # ------------------------------------------------------------------ text
    def phonemize(self, text: str | Sequence[str], language: str = "en") -> str | list[str]:
        """`phonemize` for one text or a list of texts."""
        if isinstance(text, str):
            return phonemize(text, language)
        return [phonemize(item, language) for item in text]

    def decode(self, token_ids: Any, skip_special_tokens: bool = True, **kwargs) -> str:
        """Phoneme ids (one sequence) → IPA string, deterministically, by the original STT's rule (`ids_to_phonemes`).

        Special ids (`<unk>`, `<bos>`, `</eos>`, `<mask>`) are left out unless `skip_special_tokens=False`.
        """
        if kwargs:
            raise TypeError(f"VallEProcessor.decode got unexpected arguments: {sorted(kwargs)}")
        ids = torch.as_tensor(token_ids)
        if ids.ndim > 1:
            raise ValueError(f"decode takes one sequence of ids, got shape {tuple(ids.shape)}: use batch_decode")
        ids = ids.reshape(-1).tolist()
        vocab_size = len(self.tokenizer)
        if any(not 0 <= index < vocab_size for index in ids):
            raise ValueError(f"phoneme ids must lie in 0..{vocab_size - 1}, got {min(ids)}..{max(ids)}")
        tokens = self.tokenizer.convert_ids_to_tokens(ids, skip_special_tokens=skip_special_tokens)
        return ids_to_phonemes(tokens)

    def batch_decode(self, sequences: Any, skip_special_tokens: bool = True, **kwargs) -> list[str]:
        """`decode` for each row of a 2-D tensor or list of sequences."""
        return [self.decode(row, skip_special_tokens=skip_special_tokens, **kwargs) for row in sequences]

    # ------------------------------------------------------------------ call
    def __call__(
        self,
        text: str | Sequence[str] | None = None,
        prompt_audio: Any = None,
        audio: Any = None,
        language: str | Sequence[str] = "en",
        input_prompt_length: float | None = None,
        return_tensors: str | None = "pt",
        padding: bool | str = True,
        sampling_rate: int = SAMPLING_RATE,
        processor_kwargs: dict[str, Any] | None = None,
        **kwargs,
    ) -> BatchFeature:
        """Prepare a TTS batch (`text`, optional `prompt_audio`) or an STT batch (`audio`).

        TTS: `text` is a str or a list of str (one row each), phonemised in `language` (one code for all rows, or a
        list with one per row; see `phonemize`) unless already IPA. Returns `input_ids` and `attention_mask`: the
        phoneme ids with `<bos>`=1 … `</eos>`=2, right-padded with id 0 (mask 0) when `padding` is True/"longest".
        `prompt_audio` (optional) is either one prompt for all rows or a list with one prompt per row; a prompt is
        anything `load_references` accepts (to join several references for a row, join the paths with ';' or nest
        them in a list). It comes back as `prompt_audio`: one list of whole 1-D float32 24 kHz waveforms per row (the
        same list object for every row when one prompt was broadcast, so the model encodes it once).
        `input_prompt_length` (seconds) is not applied here: it is passed through to `generate` in the output, which
        loops or trims the prompt's *codes*, as the original does.
        STT: `audio` is one source or a list with one source per row; it comes back as `audio`, one list of whole
        waveforms per row (the original's silent loop/cut to exactly 5 s is not done).
        `sampling_rate` is the rate of array inputs. `processor_kwargs`: a dict of these arguments, merged in.
        Works as the text-to-speech pipeline calls it, `processor(list_of_texts, processor_kwargs=..., return_tensors=
        "pt")` (transformers passes the pipeline's `processor_kwargs` as one dict), so `tts(text, processor_kwargs=
        {"language": "fr", "prompt_audio": path, "input_prompt_length": 3.0})` works.
        """
        if processor_kwargs:
            arguments = dict(text=text, prompt_audio=prompt_audio, audio=audio, language=language,
                             input_prompt_length=input_prompt_length, return_tensors=return_tensors, padding=padding,
                             sampling_rate=sampling_rate)
            unknown = sorted(set(processor_kwargs) - set(arguments))
            if unknown:
                raise TypeError(f"VallEProcessor got unexpected processor_kwargs: {', '.join(unknown)}")
            return self(**{**arguments, **processor_kwargs}, **kwargs)
        if kwargs:
            raise TypeError(f"VallEProcessor got unexpected arguments: {', '.join(sorted(kwargs))}")
        if return_tensors not in ("pt", "np", None):
            raise ValueError(f"return_tensors must be 'pt', 'np' or None, got {return_tensors!r}")
        if padding not in (True, False, "longest", "do_not_pad"):
            raise ValueError(f"padding must be True, False, 'longest' or 'do_not_pad', got {padding!r}")
        if text is None and audio is None:
            raise ValueError("give `text` (text-to-speech, with optional `prompt_audio`) or `audio` (speech-to-text)")
        if text is not None and audio is not None:
            raise ValueError("`text` (TTS) and `audio` (STT) are exclusive; a TTS voice prompt goes in `prompt_audio`")
        skip = ["prompt_audio", "audio"]
        if audio is not None:
            if prompt_audio is not None:
                raise ValueError("`prompt_audio` is for text-to-speech; speech-to-text takes `audio` only")
            rows = audio if isinstance(audio, (list, tuple)) else [audio]
            if not rows:
                raise ValueError("audio is an empty list")
            waveforms = [load_references(source, sampling_rate) for source in rows]
            return BatchFeature({"audio": waveforms}, tensor_type=return_tensors, skip_tensor_conversion=skip)

        texts = [text] if isinstance(text, str) else list(text)
        if not texts:
            raise ValueError("text is an empty list")
        languages = [language] * len(texts) if isinstance(language, str) else list(language)
        if len(languages) != len(texts):
            raise ValueError(f"got {len(languages)} languages for {len(texts)} texts: give one, or one per text")
        phonemes = [phonemize(item, lang) for item, lang in zip(texts, languages, strict=True)]
        encoded = self.tokenizer(
            phonemes,
            padding=padding,
            padding_side="right",
            return_attention_mask=True,
            return_token_type_ids=False,
        )
        data = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
        if prompt_audio is not None:
            data["prompt_audio"] = self._prompts_per_row(prompt_audio, len(texts), sampling_rate)
        if input_prompt_length is not None:
            data["input_prompt_length"] = input_prompt_length
        return BatchFeature(data, tensor_type=return_tensors, skip_tensor_conversion=skip + ["input_prompt_length"])

    @staticmethod
    def _prompts_per_row(prompt_audio: Any, num_rows: int, sampling_rate: int) -> list[list[torch.Tensor]]:
        """One prompt (broadcast: loaded once, the same list for every row) or a list of exactly one prompt per row."""
        if isinstance(prompt_audio, (list, tuple)) and len(prompt_audio) != 1:
            if len(prompt_audio) != num_rows:
                raise ValueError(
                    f"prompt_audio is a list of {len(prompt_audio)} prompts for {num_rows} texts: give one prompt, "
                    f"or one per text (join several references for one text with ';' or nest them in a list)"
                )
            return [load_references(source, sampling_rate) for source in prompt_audio]
        if isinstance(prompt_audio, (list, tuple)):
            prompt_audio = prompt_audio[0]
        return [load_references(prompt_audio, sampling_rate)] * num_rows
