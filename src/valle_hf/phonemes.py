"""Text → IPA phonemes: espeak-ng through `phonemizer`, with the original's flags, and sentence splitting.

Text is phonemised as the original does (e-c-k-e-r/vall-e `vall_e/emb/g2p.py`): punctuation kept, stress marks on,
espeak's language-switch markers such as `(en)…(fr)` kept, surrounding whitespace stripped, "en" read as "en-us" and
"fr" as "fr-fr", Japanese converted to hiragana first. The espeak-ng library and voice data come from the
`espeakng_loader` wheel, so no system espeak is needed (set `PHONEMIZER_ESPEAK_LIBRARY` to use another library).

Improvements over the original, each documented where it is implemented: `language="auto"`, pass-through of text that is
already IPA, orthographic text normalised first (`text_normalization`: Unicode forms, and numbers, money, dates, times,
units, ranges, phone numbers and symbols written as the words the language says), symbols a voice still leaves out or
says as a code point left out with a warning, a line with a decimal number kept whole (`_split_at_marks`: phonemizer
cut "It was 2.5 degrees." at the decimal point), the language-switch markers as an option, Latin letters a voice
cannot read ("ệ", "ư", "ș" in English: Vietnamese or Romanian names) read without their marks, with a warning, clear
errors for text with nothing to speak (empty, or punctuation alone), for letters a voice would spell out or say as code
points, unknown languages and a missing pykakasi, and `split_sentences` for long texts.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import itertools
import os
import re
import tempfile
import unicodedata
from collections.abc import Iterator, Sequence

from .errors import MissingDependencyError, OutputError, VallETypeError, VallEValueError, get_logger, missing_dependency
from .files import system_reason
from .text_normalization import LATIN_LETTER, normalize_text, verbalize

# The released model's language ids, in order ({"en": 0, "ja": 1, "de": 2, "fr": 3} in the original).
MODEL_LANGUAGES = ("en", "ja", "de", "fr")
# The original's `coerce_language`; every other code goes to espeak-ng as given.
_ESPEAK_VOICE = {"en": "en-us", "fr": "fr-fr"}

# espeak's language-switch markers: "keep" writes them as the released model was trained ("(en)fˈʊtbɔːl(fr)"), "remove"
# drops the markers and keeps the words' phonemes (phonemizer's "remove-flags").
LANGUAGE_SWITCH = {"keep": "keep-flags", "remove": "remove-flags"}

__all__ = [
    "LANGUAGE_SWITCH",
    "MODEL_LANGUAGES",
    "check_text",
    "check_texts",
    "check_unicode",
    "detect_language",
    "language_code",
    "looks_like_ipa",
    "phonemize",
    "phonemize_all",
    "resolve_language",
    "split_sentences",
]

logger = get_logger(__name__)

# Characters that occur in IPA but in no orthography of the model's languages: the IPA Extensions block, stress and
# length marks, and the few modifier letters espeak-ng emits (ʰ ʲ ʷ ˞ ᵻ ᵝ).
_IPA_ONLY = re.compile("[\u0250-\u02af\u02b0\u02b2\u02b7\u02c8\u02cc\u02d0\u02d1\u02de\u1d5d\u1d7b]")
_KANA = re.compile("[\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f]")
_HAN = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
# Where a Latin letter touches kana, in either order: espeak-ng's Japanese voice reads the kana there one by one and
# a voiced one as "Japanese letter" ("5kgです" as "go kg te Japanese letter su"), unless a space parts them.
_LATIN_KANA = re.compile(f"(?<={LATIN_LETTER})(?={_KANA.pattern})|(?<={_KANA.pattern})(?={LATIN_LETTER})")
# Emoji and pictographs (the blocks of misc technical symbols, geometric shapes, misc symbols, dingbats, arrows and
# symbols, and the pictographs from U+1F000 on), and any other character but a keycap's (a digit, # or *) shown as an
# emoji by the variation selector U+FE0F ("▶️", "‼️", "↩️", "㊗️": espeak-ng read "play button"), each with what joins
# or modifies it: variation selectors, skin tones, a keycap, zero-width joiners to the next one. The music signs ♭ ♮ ♯
# (U+266D-266F) are no emoji but words: "F♯" is "F sharp".
_PICTOGRAPH = "\u2300-\u23ff\u25a0-\u25ff\u2600-\u266c\u2670-\u27bf\u2b00-\u2bff\U0001f000-\U0001faff"
_MODIFIERS = "\ufe0e\ufe0f\u20e3\U0001f3fb-\U0001f3ff"
_EMOJI_BASE = f"(?:[{_PICTOGRAPH}]|[^\\s\\d#*\ufe0e\ufe0f]\ufe0f)"
_EMOJI = re.compile(f"{_EMOJI_BASE}[{_MODIFIERS}]*(?:\u200d{_EMOJI_BASE}[{_MODIFIERS}]*)*")
# What is left of a keycap emoji ("1" + U+FE0F + U+20E3) once read as its digit, and the joiners (zero-width, word
# joiner, zero-width no-break space) outside an emoji: nothing to see or say, but espeak-ng parted a word at a joiner
# ("hel" + U+200D + "lo" was read "hel lo").
_EMOJI_MARKS = re.compile("[\ufe0e\ufe0f\u20e3\u200d\u2060\ufeff]")


def looks_like_ipa(text: str) -> bool:
    """True if `text` contains IPA-only characters (e.g. ə ɪ ʃ ˈ ː), i.e. it is already phonemised.

    espeak-ng output always carries some (stress marks at least), while English, German, French and Japanese
    orthography never does. Languages written with IPA letters (e.g. Azerbaijani ə, Ewe ɛ ɔ) are misread as IPA.
    """
    return _IPA_ONLY.search(text) is not None


# Words of ordinary spelling: one with a capital letter (espeak-ng writes none), or of three plain letters or more
# without a stress mark, which espeak-ng and people who write IPA by hand write too ("los", "kon", "big red bus"), but
# without the letters and digraphs of spelling that IPA writes with a letter of its own ("c", "q", "th", "sh", "ph"):
# half the text's words of them, one with such letters among them, is spelled text
_SPELLED_WORD = re.compile(r"(?<!\S)(?:\w*[A-Z]\w*|[a-z]{3,})(?=[\s.,;:!?]|$)")
_SPELLING = re.compile("c|q|th|sh|ph")


def _warn_if_spelled_words(text: str) -> None:
    """Warn where text passed through as IPA (`looks_like_ipa`: one IPA letter is enough) holds words in ordinary
    spelling ("the schwa ə is common"): the model would read their letters as phonemes."""
    spelled = _SPELLED_WORD.findall(text)
    if any(not word.islower() for word in spelled) or (len(spelled) >= max(2, len(text.split()) / 2)
                                                        and any(map(_SPELLING.search, spelled))):
        logger.warning(f"the text is read as IPA (it has IPA letters), but holds words in ordinary spelling "
                       f"({' '.join(spelled[:5])}): their letters are read as phonemes; write the whole text in IPA, "
                       "or the IPA letters in ordinary spelling")


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


# The errors of a copy that found no room: a full disk, a full quota, the file-size limit.
_NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


@contextlib.contextmanager
def _loading_espeak():
    """Say why the espeak-ng library could not be loaded: phonemizer copies it (~650 KB) into a temporary folder for
    each backend, which a full disk or a small file-size limit refuses (the copy's traceback said only "File too
    large")."""
    _use_bundled_espeak()
    try:
        yield
    except OSError as error:
        fix = ("free space there, raise the file-size limit, or point TMPDIR at a folder that can take it"
               if error.errno in _NO_ROOM else "point TMPDIR at a folder where libraries can be loaded (not noexec)")
        raise OutputError(f"the espeak-ng library phonemizer runs could not be loaded ({system_reason(error)}): "
                          f"phonemizer copies it into the temporary folder {tempfile.gettempdir()}, so {fix}") from None


@functools.cache
def _espeak_languages() -> frozenset[str]:
    with _loading_espeak():
        from phonemizer.backend import EspeakBackend

        return frozenset(EspeakBackend.supported_languages())


@functools.cache
def _espeak_backend(voice: str, language_switch: str = "keep"):
    """One espeak backend per voice and marker choice, built with the original's flags, its punctuation split where
    the marks are (`_split_at_marks`)."""
    with _loading_espeak():
        from phonemizer.backend import EspeakBackend

        backend = EspeakBackend(voice, preserve_punctuation=True, with_stress=True,
                                language_switch=LANGUAGE_SWITCH[language_switch])
    backend._punctuator._preserve_line = functools.partial(_split_at_marks, backend._punctuator._marks_re)
    return backend


def _split_at_marks(marks_re: re.Pattern, line: str, num: int) -> tuple[list[str], list]:
    """phonemizer's `Punctuation._preserve_line`, splitting `line` where its marks were found: phonemizer's own split
    at the first occurrence of each mark's text, so a final "." cut "It was 2.5 degrees." at the decimal point, and
    "It was two." came back, the rest lost (as in the original). Returns the chunks between marks and the marks, each
    at the beginning (B), inside (I) or at the end (E) of the line, or the whole line (A)."""
    from phonemizer.punctuation import _MarkIndex

    matches = list(marks_re.finditer(line))
    if len(matches) == 1 and matches[0].group() == line:
        return [], [_MarkIndex(num, line, "A")]
    chunks, marks, start = [], [], 0
    for match in matches:
        position = "B" if match.start() == 0 else "E" if match.end() == len(line) else "I"
        marks.append(_MarkIndex(num, match.group(), position))
        chunks.append(line[start:match.start()])
        start = match.end()
    return [*chunks, line[start:]], marks


def language_code(language):
    """`language` as espeak-ng spells its codes, lower case with '-' between the parts: "EN", "en_GB" and " en-GB "
    are "en", "en-gb" and "en-gb". Anything but a str is returned as it is (for `_check_language` to refuse)."""
    return language.strip().lower().replace("_", "-") if isinstance(language, str) else language


# Codes often given for a language espeak-ng names otherwise
_ESPEAK_CODES = {"zh": "'cmn' (Mandarin) or 'yue' (Cantonese)", "jp": "'ja'", "gr": "'el'"}


def _check_language(language: str) -> str:
    """Return the espeak-ng voice for a model language or espeak-ng code; reject anything else in one line."""
    if not isinstance(language, str):
        raise VallETypeError(f"language must be a str, got {type(language).__name__}")
    if language in MODEL_LANGUAGES:
        return _ESPEAK_VOICE.get(language, language)
    if language in _espeak_languages():
        return language
    meant = _ESPEAK_CODES.get(language.split("-")[0])
    raise VallEValueError(
        f"unknown language {language!r}: " + (f"espeak-ng's code is {meant}" if meant else
                                              f"use 'auto', one of the model's languages {', '.join(MODEL_LANGUAGES)}, "
                                              "or an espeak-ng code such as 'en-gb' or 'es' (phonemizer's "
                                              "EspeakBackend.supported_languages())")
    )


def resolve_language(text: str, language: str) -> str:
    """The language `text` is read in: `language` itself, or `detect_language(text)` for "auto"; validated.

    Everything `phonemize` needs is checked here, so that a command can check its text before loading a model (espeak
    runs only to ask a voice other than en, de, fr about a letter): the language exists, it can read the text's script
    (`_check_script`), and Japanese text with kanji has pykakasi (the `ja` extra). Raises `VallEValueError` for an
    unknown language or a script it cannot read and `MissingDependencyError` for kanji without pykakasi.
    """
    language = language_code(language)
    resolved = detect_language(text) if language == "auto" else language
    _check_language(resolved)
    _check_script(text, resolved)
    if resolved == "ja" and _HAN.search(text) and _kakasi() is None:
        raise MissingDependencyError(
            "Japanese text with kanji needs pykakasi to convert it to hiragana first: pip install -e \".[ja]\" in "
            "valle-hf's folder (or pip install pykakasi), or pass kana or IPA"
        )
    return resolved


# The model's languages, Japanese aside: text in them with kana or Han characters, or letters of `_SPELLED_SCRIPTS`,
# is refused (`_check_script`).
_SPELLS_OTHER_SCRIPTS = ("en", "de", "fr")
# Scripts whose letters espeak-ng's English, German and French voices spell out one by one, by name ("Cyrillic pe",
# "Arabic mim", "Thai letter ..."), by code point ("letter 1790") or leave out unspoken (Cherokee, Javanese), as
# their Unicode names begin: each script those voices were found to have no voice to switch to. For others
# (Devanagari, Hangul, Armenian, Greek in German and French, ...) they switch to a voice that reads them
# (`language_switch`), and a Greek letter alone ("π") is read as its name, as it should be.
_SPELLED_SCRIPTS = ("CYRILLIC", "ARABIC", "HEBREW", "THAI", "ETHIOPIC", "SYRIAC", "THAANA", "NKO", "SAMARITAN",
                    "MANDAIC", "ORIYA", "LAO", "TIBETAN", "MYANMAR", "KHMER", "MONGOLIAN", "CHEROKEE", "CANADIAN",
                    "TIFINAGH", "COPTIC", "GLAGOLITIC", "RUNIC", "OGHAM", "YI", "VAI", "LISU", "BAMUM", "JAVANESE",
                    "BALINESE", "SUNDANESE", "CHAM", "TAI")


# A Greek word, which espeak-ng's English voices spell out letter by letter, by name ("Αθήνα" as "alpha theta eta nu
# alpha"), where the German and French ones switch to the Greek voice: a Greek letter with an accent or a diaeresis
# (which words carry, symbols never: "ή", "ϊ"), a capital before two small letters or more ("Και"), or four capitals
# or more ("ΑΘΗΝΑ": capitals carry no accent). Symbols are read by their names, as they should be: a letter or a few
# ("π", "ΔG", "αβ T cells", "the αβγ frame", "the ΔΔΔ mutant").
_GREEK_WORD = re.compile("[\u0386\u0388-\u0390\u03aa-\u03b0\u03ca-\u03ce\u1f00-\u1fff]"
                         "|[\u0391-\u03a9][\u03b1-\u03c9]{2,}|[\u0391-\u03a9]{4,}")


def _reads_latin_only(language: str) -> bool:
    """Whether `language` is read by one of `_SPELLS_OTHER_SCRIPTS`' voices (their regional ones too)."""
    return language.split("-")[0].lower() in _SPELLS_OTHER_SCRIPTS


def _check_script(text: str, language: str) -> None:
    """Refuse (`VallEValueError`) kana or Han characters in English, German or French text: espeak-ng's voices for
    these read each one as the words "Chinese letter" or "Japanese letter", so the speech would say those instead
    (text in "en", the default, is the usual case: Japanese given without a language). Their regional voices
    ("en-us", "en-gb", "fr-fr") read them alike. Letters of `_SPELLED_SCRIPTS` are refused too: those voices spell
    them out by name or leave them out; and so are Greek words (`_GREEK_WORD`) in English. In every language, so
    are Latin letters its voice has no reading for and no base letter to read instead (`_check_latin`)."""
    _check_latin(text, language)
    if not _reads_latin_only(language):
        return
    found = _words_with(text, lambda char: bool(_KANA.match(char) or _HAN.match(char)))
    if found:
        raise VallEValueError(f"the text has Chinese or Japanese characters ({found}), which espeak-ng's "
                              f"{language!r} voice reads aloud as \"Chinese letter\" or \"Japanese letter\", one per "
                              "character: for Japanese text give the language 'ja' (or 'auto'), otherwise write those "
                              "words in Latin letters")
    spelled = _words_with(text, lambda char: char.isalpha()
                          and unicodedata.name(char, "").split(" ")[0] in _SPELLED_SCRIPTS)
    if spelled:
        raise VallEValueError(f"the text has letters of another alphabet ({spelled}), which espeak-ng's "
                              f"{language!r} voice spells out one by one, by name (\"Cyrillic pe\", \"Arabic mim\"), "
                              "or leaves out: write those words in Latin letters, or give their IPA")
    english = language.split("-")[0] == "en" and not looks_like_ipa(text)  # IPA has θ, β and χ
    greek = [word for word in text.split() if _GREEK_WORD.search(word)] if english else []
    if greek:
        raise VallEValueError(f"the text has Greek words ({_words_with(' '.join(greek), bool)}), which espeak-ng's "
                              f"{language!r} voice spells out letter by letter, by name (\"alpha theta ...\"): for "
                              "Greek text give the language 'el', otherwise write those words in Latin letters or "
                              "give their IPA")


def _check_latin(text: str, language: str) -> None:
    """Refuse (`VallEValueError`) Latin letters the language's voice has no reading for (`_unread_latin`) and no base
    letter to read instead (`_latin_base`: "ƒ", "ı" in English), but in text that is already IPA."""
    unread = "" if looks_like_ipa(text) else _words_with(
        normalize_text(text), lambda char: _unread_latin(char, language) and not _latin_base(char, language))
    if unread:
        raise VallEValueError(f"the text has Latin letters ({unread}) that espeak-ng's {language!r} voice has no "
                              "reading for (it says a code point, as \"letter 1 9 2\" for ƒ in English, or leaves them "
                              "out): write those words with other letters, or give their IPA")


# The Latin letters espeak-ng's English, German and French voices read: Latin-1 and Latin Extended-A but for ı ŉ ſ, and
# these few of later blocks (capitals of African alphabets and of IPA letters, the capital sharp s, subscripts and
# superscripts, the Kelvin and Ångström signs). Any other one they read as its code point when it stands alone ("ư" is
# "letter 1 b 0") and leave out inside a word ("người" is read "ngi"): letters with marks, the ligatures "ﬁ", "ﬂ"
# (which the English voices spell out: "ﬁ" is "f i"), and the Latin letters of other blocks ("ℓ", "ℌ", "ᵃ", "𝐀").
_READ_LATER_LATIN = frozenset("ƁƆƉƊƏƐƓƗƜƝƟƦƩƮƲƷɄɅẞ" "ⱢⱤⱮⱯⱰ" "ꞍꞪꞫꞭꞮꞰꞱꞲ" "ₐₑₒₓₔₕₖₗₘₙₚₛₜ" "ʱʳʴʵʶʸˡˢˣⁱⁿ" "\u212a\u212b")


def _without_marks(char: str) -> str:
    """What `char` is made of, its combining marks left out (NFKD: "ệ" → "e", "ǆ" → "dz", "ﬁ" → "fi")."""
    return "".join(part for part in unicodedata.normalize("NFKD", char) if not unicodedata.combining(part))


def _is_latin_letter(char: str) -> bool:
    """Whether `char` is a Latin letter: named so, or a form of Latin letters ("ℓ", "ᵃ", "𝐀", "ﬁ": by NFKD)."""
    if unicodedata.name(char, "").startswith("LATIN "):
        return True
    parts = _without_marks(char)
    # a letter of marks alone (the half-width kana sound marks "ﾞ", "ﾟ") is none
    return char.isalpha() and parts not in ("", char) and all(unicodedata.name(part, "").startswith("LATIN ")
                                                              for part in parts)


def _unread_latin(char: str, language: str) -> bool:
    """Whether `char` is a Latin letter the voice of `language` has no reading for: by `_READ_LATER_LATIN` for the
    English, German and French voices, by asking the voice itself (`_said_as_code_point`) for any other ("ệ" is read
    in Vietnamese, "ı" in Turkish, "ș" in Italian)."""
    if _reads_latin_only(language):
        if char < "\u0180":
            return char in "ıŉſ"
        return char not in _READ_LATER_LATIN and _is_latin_letter(char)
    return char >= "\u00c0" and _is_latin_letter(char) and _said_as_code_point(char, _check_language(language))


# Three letters nearly every voice tried says as code points, whose code points start with different digits (U+1D00,
# U+2C65, U+FB00): what their readings share is the voice's word for "letter" alone. Two are not enough where a voice
# says all three: where the words for 1 and 2 begin alike (Swahili "moja", "mbili"; Korean, Basque, Hawaiian,
# Cantonese), the shared part was taken for the word, and a code point read from another digit ("ﬁ", "f b 0 1") passed
# as a reading. English reads "ﬀ" as "ff": there the two it spells give the word (`_code_point_word`).
_CODE_POINT_PROBES = ("ᴀ", "ⱥ", "ﬀ")


def _unstressed(phonemes: str) -> str:
    return "".join(char for char in phonemes if char not in "ˈˌ ")


@functools.cache
def _code_point_word(voice: str) -> str:
    """The voice's word for "letter" as it says a code point ("lɛɾɚ" in en-us, "simbolo" in es), unstressed: the
    start all the probes' readings share (not only two: Swahili says 1 and 2 "moja", "mbili"), or where they share
    less than 3 sounds (a voice that reads one probe: en-us says "ﬀ" as "ff"), the one start of 3 or more that two of
    them share; "" where none do."""
    readings = [_unstressed(reading) for reading in _espeak_backend(voice).phonemize(list(_CODE_POINT_PROBES),
                                                                                    strip=True)]
    shared = [os.path.commonprefix(readings)]
    if len(shared[0]) < 3:
        shared = [os.path.commonprefix(pair) for pair in itertools.combinations(readings, 2)]
    return next((word for word in shared if len(word) >= 3), "")


@functools.cache
def _said_as_code_point(char: str, voice: str) -> bool:
    """Whether espeak-ng's `voice` says `char` alone as a code point ("símbolo 1 e c 7" for "ệ" in es) or not at all,
    as it does a letter it has no reading for (inside a word, it leaves such a letter out). A letter it hands to the
    English, German or French voice ("(en)…(ru)": the Cyrillic, Greek and Indic voices do so with Latin text) is
    judged as that one reads it: the English voice says "ǎ" alone as its code point too."""
    said = _espeak_backend(voice).phonemize([char], strip=True)[0]
    switched = re.match(r"\(([a-z-]+)\)", said)
    if switched and _reads_latin_only(switched.group(1)):
        return _unread_latin(char, switched.group(1))
    reading = _unstressed(said)
    word = _code_point_word(voice)
    return not reading or bool(word) and reading.startswith(word)


def _latin_bases(char: str, keep_marks: bool) -> Iterator[str]:
    """The forms of `char` in plain letters, closest first: its NFKC form ("ǆ" → "dž", "ﬁ" → "fi", "ℓ" → "l"), then
    its NFKD form with fewer and fewer of its marks ("ǘ" → "ü", "ú", then "u"; "ǆ" → "dz"), or with none unless
    `keep_marks`."""
    yield unicodedata.normalize("NFKC", char)
    parts = unicodedata.normalize("NFKD", char)
    marks = [index for index, part in enumerate(parts) if unicodedata.combining(part)]
    for kept in range(len(marks) - 1 if keep_marks else 0, -1, -1):
        for marks_kept in itertools.combinations(marks, kept):
            yield unicodedata.normalize("NFC", "".join(part for index, part in enumerate(parts)
                                                       if index not in marks or index in marks_kept))


def _latin_base(char: str, language: str) -> str:
    """The closest form of `char` (`_latin_bases`) whose Latin letters the voice of `language` all reads: "ệ" → "ê"
    in French, "ǘ" → "ü" in Spanish, "ư" → "u", "ș" → "s"; in English, whose spelling has no marks, the letters
    without any ("ệ" → "e": its voice reads "ê" as in "crêpe"); else ""."""
    for base in _latin_bases(char, keep_marks=language.split("-")[0].lower() != "en"):
        if base != char and all(_is_latin_letter(part) and not _unread_latin(part, language) for part in base):
            return base
    return ""


def _without_unread_marks(text: str, language: str, folded: list[str]) -> str:
    """`text` with the Latin letters the voice of `language` has no reading for (`_unread_latin`) written as their
    base letters (`_latin_base`: "Việt Nam" → "Viet Nam" in English, as such a reader says it; "ﬁne" → "fine"), each
    added to `folded` for one warning naming them. `_check_latin` refused those without a base first."""
    letters = [_latin_base(char, language) if _unread_latin(char, language) else char for char in text]
    folded.extend(char for char, letter in zip(text, letters, strict=True) if letter != char)
    return "".join(letters)


def _words_with(text: str, wanted) -> str:
    """The first words of `text` (up to 3, each cut at 12 characters) with a character that is `wanted`, as a message
    quotes them: "привет мир", where the distinct letters run together read as a word that is not there."""
    words = [word for word in text.split() if any(wanted(char) for char in word)]
    return " ".join(word if len(word) <= 12 else word[:12] + "…" for word in words[:3])


@functools.cache
def _kakasi():
    try:
        import pykakasi
    except ImportError:
        return None
    return pykakasi.kakasi()


def _to_hiragana(text: str) -> str:
    """Japanese text → hiragana with pykakasi, as the original does before espeak (which cannot read kanji).

    pykakasi is optional (the `ja` extra): kana-only text goes to espeak-ng as it is (espeak reads hiragana and
    katakana alike), and only text with kanji needs it (`resolve_language` checks that).
    """
    kakasi = _kakasi()
    return text if kakasi is None else "".join(item["hira"] for item in kakasi.convert(text))


def _without_emoji(text: str, found: list[str]) -> str:
    """`text` without its emoji, each added to `found` (for one warning naming them): espeak-ng reads an emoji's name
    aloud ("grinning face", "thumbs medium"), which the speech should not say. Symbols outside the emoji blocks (°,
    %, ©) are read as words and kept."""
    found.extend(_EMOJI.findall(text))
    return _EMOJI_MARKS.sub("", _left_out(text, _EMOJI.pattern))  # U+FE0F first: it makes some characters emoji


def _left_out(text: str, pattern: str) -> str:
    """`text` without what `pattern` matches: with the space before it where a closing mark follows ("note †." →
    "note.", since espeak-ng writes the space it is given: "nˈoʊt ."), a space elsewhere (no words run together)."""
    text = re.sub(rf"\s*(?:{pattern})+(?=[.,;:!?)\]}}»”’\"'])", "", text)
    return " ".join(re.sub(pattern, " ", text).split())


# Marks of punctuation and letters that stand for words, which some voice leaves out or says as a code point: with
# the symbols and number forms (Unicode categories Sm, Sc, So, No: "×", "€", "©", "⅛") and the spacing modifier
# letters (`_is_modifier_letter`: "ˊ", "ˮ", spelled "letter 2 c a" inside a word), what `_without_unread_symbols` asks
# the voice about.
_WORD_MARKS = "†‡‰‱′″‴§¶ℵℶℷℸ"


def _is_modifier_letter(char: str) -> bool:
    """Whether `char` is in Unicode's block of spacing modifier letters (U+02B0..U+02FF)."""
    return "\u02b0" <= char <= "\u02ff"


def _without_unread_symbols(text: str, language: str, left_out: list[str]) -> str:
    """`text` without the symbols the voice of `language` leaves out or says as a code point (`_said_as_code_point`:
    "†", "′" in every voice tried, "→" in French and Spanish), each added to `left_out` for one warning naming them:
    the speech would skip them without a word, or say "letter 2 1 3 5". Raises `VallEValueError` where they were all
    the text's words ("⅛" alone): nothing would be left to speak."""
    voice = _check_language(language)
    unread = {char for char in set(text) if (unicodedata.category(char) in ("Sm", "Sc", "So", "No")
                                             or char in _WORD_MARKS or _is_modifier_letter(char)
                                             or char in "^`")  # not "´", an apostrophe to espeak-ng
              and _said_as_code_point(char, voice)}
    modifiers = "".join(filter(_is_modifier_letter, unread))
    # a modifier letter is part of its word ("naˇive"): left out without parting it
    kept = re.sub(rf"(?<=\w)[{re.escape(modifiers)}]+(?=\w)", "", text) if modifiers else text
    kept = _left_out(kept, f"[{re.escape(''.join(unread))}]") if unread else kept
    if not _has_words(kept):
        raise VallEValueError(f"the text {text!r:.40} has no word espeak-ng's {language!r} voice reads, only "
                              "symbols it has no reading for: write in words what they should say")
    left_out.extend(char for char in text if char in unread)
    return kept


def check_unicode(text: str) -> str:
    """`text`, refused (`VallEValueError`) where it holds lone surrogates, what Python makes of bytes that are not
    UTF-8 (a command-line argument in another encoding), or control characters other than whitespace (a NUL ended
    espeak's reading); espeak cannot read them."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise VallEValueError(f"the text is not valid UTF-8 after {text[max(0, error.start - 20):error.start]!r}: "
                              "give it as UTF-8 (check the terminal's or the file's encoding)") from None
    control = next((index for index, char in enumerate(text)
                    if unicodedata.category(char) == "Cc" and not char.isspace()), None)
    if control is not None:  # espeak reads C strings: it stopped at a NUL, dropping the rest of the text
        raise VallEValueError(f"the text has a control character {text[control]!r} after "
                              f"{text[max(0, control - 20):control]!r}: remove it")
    return text


def _has_words(text: str) -> bool:
    """Whether `text` holds a letter or digit (of any script) or a symbol or mark that stands for a word ("∞" alone is
    "infinity", "‰" "per mille"; `_without_unread_symbols` leaves out those a voice does not read), emoji aside:
    punctuation alone has nothing to speak."""
    return any(char.isalnum() or unicodedata.category(char) in ("Sm", "Sc", "So") or char in _WORD_MARKS
               for char in _EMOJI.sub("", text))


def _has_spoken_words(text: str, language: str) -> bool:
    """Whether `text` holds words (`_has_words`) that the voice of `language` reads: a piece of symbols it has none
    for ("†") would be refused as a sentence of its own."""
    if not _has_words(text):
        return False
    try:
        _without_unread_symbols(text, language, [])
    except VallEValueError:
        return False
    return True


def check_text(text: str) -> str:
    """`text`, refused (`VallEValueError`) where it holds nothing to speak: empty or only whitespace, no letter, digit
    or symbol for a word at all (`_has_words`: punctuation alone, "...", would be spoken as noise), or not UTF-8
    (`check_unicode`); and (`VallETypeError`) where it is not a str."""
    if not isinstance(text, str):
        raise VallETypeError(f"text must be a str, got {type(text).__name__}")
    if not text.strip():
        raise VallEValueError("empty text: nothing to speak; give the words to speak")
    check_unicode(text)
    if not _has_words(text):
        unspoken = "emoji and punctuation are" if _EMOJI.search(text) else "punctuation alone is"
        raise VallEValueError(f"the text {text.strip()!r:.40} has no letter or digit: nothing to speak ({unspoken} "
                              "not spoken); give it words")
    return text


def check_texts(texts: Sequence[str], given_to: str = "") -> None:
    """`check_text` for each of `texts`, its refusal naming which text where there are several (counting from 0, as
    Python does), `given_to` whom (" to the text-to-speech pipeline")."""
    for index, text in enumerate(texts):
        try:
            check_text(text)
        except VallEValueError as error:
            if len(texts) == 1:
                raise
            raise VallEValueError(f"text {index} of the {len(texts)} given{given_to}: {error}") from None


def phonemize(text: str, language: str = "en", language_switch: str = "keep") -> str:
    """Text → IPA phonemes with espeak-ng (punctuation kept, stress marked), as the original model was trained.

    `language`: "auto" (see `detect_language`), one of `MODEL_LANGUAGES` ("en" is read as en-us, "fr" as fr-fr), or any
    espeak-ng language code. Text that is already IPA (see `looks_like_ipa`) is returned exactly as it is, only stripped
    of surrounding whitespace; other text is normalised first (`text_normalization.normalize_text`; the original split
    lines before phonemising, use `split_sentences` for long texts), its numbers, amounts, dates, times and symbols
    written as the language's words (`text_normalization.verbalize`: "5 ‰", "m²", "$5"), and symbols the voice would
    still leave out or say as a code point left out with a warning. `language_switch`: "keep" (default) writes
    espeak's markers for words it reads in another language, "(en)fˈʊtbɔːl(fr)", as the released model was trained;
    "remove" drops the markers and keeps those words' phonemes, which suits mixed-language text. Raises
    `VallEValueError` for text with nothing to speak (`check_text`), an unknown language or `language_switch`, kana or
    Han characters in English, German or French text (`resolve_language`); `MissingDependencyError` for Japanese kanji
    without pykakasi.
    """
    return phonemize_all([text], [language], language_switch)[0]


def phonemize_all(texts: Sequence[str], languages: Sequence[str], language_switch: str = "keep") -> list[str]:
    """`phonemize` for each text in its language, the emoji of them all named in one warning, the symbols no voice
    reads in another, and the letters read without their marks in a third (the sentences of one text are one text to
    its reader). A text with nothing to speak is refused naming which (`check_texts`)."""
    check_texts(texts)
    emoji: list[str] = []
    symbols: dict[str, list[str]] = {}  # language → symbols its voice does not read
    folded: dict[str, list[str]] = {}  # language → letters read without their marks
    phonemes = [_phonemized(text, language, language_switch, emoji, symbols, folded)
                for text, language in zip(texts, languages, strict=True)]
    if emoji:
        logger.warning(f"the text's emoji ({''.join(dict.fromkeys(emoji))[:20]}) are left out: espeak-ng would read "
                       "their names aloud; write in words what they should say")
    for language, unread in symbols.items():
        if unread:
            logger.warning(f"the text's symbols {' '.join(dict.fromkeys(unread))} are left out: espeak-ng's "
                           f"{language!r} voice has no reading for them; write in words what they should say")
    for language, letters in folded.items():
        letters = "".join(dict.fromkeys(letters))[:20]
        if letters:
            bases = " ".join(_latin_base(letter, language) for letter in letters)
            logger.warning(f"the text's letters {' '.join(letters)} are read as {bases}: "
                           f"espeak-ng's {language!r} voice has no reading for them; for text in another language, "
                           "give that language")
    return phonemes


# espeak-ng reads a word only up to its buffer's length, and leaves the rest out without a word (a run of 76 kana
# lost its end, a 250-letter word its last 80 letters, a 60-digit number its last 16 digits): a longer run is read
# in parts, runs of more than 70 kana (espeak-ng read 72 whole) by 60, of more than 100 other letters (a real word is
# shorter) by 100, and more than 20 digits (an account number) digit by digit, as they are said (20 make number words
# still).
_LONG_RUNS = ((re.compile(r"\d{21,}"), 1), (re.compile(f"(?:{_KANA.pattern}){{71,}}"), 60),
              (re.compile(r"[^\W\d_]{101,}"), 100))


def _within_word_limit(text: str) -> str:
    """`text` with each run longer than espeak-ng reads (`_LONG_RUNS`) parted by spaces into runs it reads whole."""
    def parted(run: str, size: int) -> str:
        return " ".join(run[start:start + size] for start in range(0, len(run), size))

    for pattern, size in _LONG_RUNS:
        text = pattern.sub(lambda run, size=size: parted(run[0], size), text)
    return text


def _phonemized(text: str, language: str, language_switch: str, emoji: list[str], symbols: dict[str, list[str]],
                folded: dict[str, list[str]]) -> str:
    """`phonemize` of one text, its emoji added to `emoji`, the symbols left out to `symbols` and the letters read
    without their marks to `folded` (these two under the language), for the caller's warnings. `text` is one
    `check_texts` passed."""
    if language_switch not in LANGUAGE_SWITCH:
        raise VallEValueError(f"language_switch must be one of {', '.join(LANGUAGE_SWITCH)}, got {language_switch!r}")
    language = resolve_language(text, language)
    if looks_like_ipa(text):
        _warn_if_spelled_words(text)
        return text.strip()
    text = verbalize(_without_emoji(normalize_text(text), emoji), language)
    text = _without_unread_symbols(text, language, symbols.setdefault(language, []))
    if language == "ja":
        text = _LATIN_KANA.sub(" ", _to_hiragana(text))
    text = _within_word_limit(_without_unread_marks(text, language, folded.setdefault(language, [])))
    voice = _check_language(language)
    phonemes = _espeak_backend(voice, language_switch).phonemize([text], strip=True)
    if not phonemes or not phonemes[0].strip():
        raise VallEValueError(f"espeak-ng ({voice}) produced no phonemes for {text!r}: give words it can read")
    return phonemes[0]


# Titles before a name that sentencex's segmenter does not know as abbreviations, by language: it ended a sentence
# after them ("M. Dupont est là." was "M." and "Dupont est là.", the title spoken alone, in a call of its own). A
# piece that ends with one is joined to the next.
_TITLES = {"fr": re.compile(r"(?<![\w.])(?:M|MM|Mmes?|Mlles?|Mgr|Dr|Pr|Me|Vve|Ste?)\.$")}


def split_sentences(text: str, language: str = "en") -> list[str]:
    """Split long text into sentences for piece-by-piece synthesis; punctuation stays with its sentence.

    Every line is split on its own (the original synthesised line by line), by sentencex's rule-based segmenter for
    `language` (an espeak code's first part: "en-gb" → "en"; "auto" goes by the script, see `detect_language`),
    which knows each language's abbreviations, so "Dr. Smith went home." stays one sentence (and `_TITLES` those it
    does not: "M. Dupont"); it needs no model download. Pieces are stripped; empty ones are dropped and pieces without
    any word the voice reads (a stray "...", a "†") are glued to the previous piece, or to the next one at the start of
    the text.
    """
    from sentencex import segment

    language = language_code(language)
    if language != "auto":
        _check_language(language)
    pieces: list[str] = []
    leading = ""  # word-less pieces before the first sentence, for the first sentence
    for line in text.splitlines():
        voice = detect_language(line) if language == "auto" else language
        code = voice.split("-")[0]
        title, titled = _TITLES.get(code), False  # whether the last piece of this line ended with a title
        for piece in segment(code, line):
            piece = piece.strip()
            if not piece:
                continue
            if titled:
                pieces[-1] = f"{pieces[-1]} {piece}"
            elif _has_spoken_words(piece, voice):
                pieces.append(f"{leading} {piece}".strip())
                leading = ""
            elif pieces:
                pieces[-1] = f"{pieces[-1]} {piece}"
            else:
                leading = f"{leading} {piece}".strip()
            titled = bool(title and pieces and title.search(pieces[-1]))
    return pieces or ([leading] if leading else [])  # word-less pieces alone: left for `check_text` to refuse
