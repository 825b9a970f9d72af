"""Text → IPA phonemes: espeak-ng through `phonemizer`, with the original's flags, and sentence splitting.

Text is phonemised as the original does (e-c-k-e-r/vall-e `vall_e/emb/g2p.py`): punctuation kept, stress marks on,
surrounding whitespace stripped, "en" read as "en-us" and "fr" as "fr-fr", Japanese converted to hiragana first. The
espeak-ng library and voice data come from the `espeakng_loader` wheel, so no system espeak is needed (set
`PHONEMIZER_ESPEAK_LIBRARY` to use another library).

Improvements over the original, each documented where it is implemented: `language="auto"`, pass-through of text
that is already IPA, clear errors for empty text and unknown languages, and `split_sentences` for long texts.
"""

from __future__ import annotations

import functools
import os
import re

from .errors import missing_dependency

# The released model's language ids, in order ({"en": 0, "ja": 1, "de": 2, "fr": 3} in the original).
MODEL_LANGUAGES = ("en", "ja", "de", "fr")
# The original's `coerce_language`; every other code goes to espeak-ng as given.
_ESPEAK_VOICE = {"en": "en-us", "fr": "fr-fr"}

__all__ = ["MODEL_LANGUAGES", "detect_language", "looks_like_ipa", "phonemize", "resolve_language", "split_sentences"]

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
    try:
        from phonemizer.backend.espeak.wrapper import EspeakWrapper
    except ImportError:
        raise missing_dependency("phonemizer", "to turn text into phonemes") from None
    if "PHONEMIZER_ESPEAK_LIBRARY" in os.environ:  # the user's explicit choice wins
        return
    try:
        import espeakng_loader
    except ImportError:
        raise missing_dependency("espeakng-loader", "for the espeak-ng library phonemizer runs") from None

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
