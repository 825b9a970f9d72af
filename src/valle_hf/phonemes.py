"""Text → IPA phonemes: espeak-ng through `phonemizer`, with the original's flags, and sentence splitting.

Text is phonemised as the original does (e-c-k-e-r/vall-e `vall_e/emb/g2p.py`): punctuation kept, stress marks on,
espeak's language-switch markers such as `(en)…(fr)` kept, surrounding whitespace stripped, "en" read as "en-us" and
"fr" as "fr-fr", Japanese converted to hiragana first. The espeak-ng library and voice data come from the
`espeakng_loader` wheel, so no system espeak is needed (set `PHONEMIZER_ESPEAK_LIBRARY` to use another library).

Improvements over the original, each documented where it is implemented: `language="auto"`, pass-through of text that is
already IPA, orthographic text read in Unicode NFC with full-width ASCII forms mapped to ASCII, symbols a voice leaves
out or says as a code point read as words ("5 ‰", "m²", "10⁻³") or left out with a warning, amounts of money read in the
order the language says them ("$5.50" as "5 dollars 50"), times of day ("3:45pm", "15h45"), dates in numbers
("2026-12-25", "12/25/2026") with the month's name, German days before a month ("am 3. Mai"), decades ("1990s"), IP
addresses ("192.168.0.1"), phone numbers ("+1 555 123 4567", "(555) 123-4567"), units after a number ("5 km"), ranges
("5–10") and short ordinals ("21e") read, a line with a decimal number kept whole (`_split_at_marks`: phonemizer cut "It
was 2.5 degrees." at the decimal point), the language-switch markers as an option, Latin letters a voice cannot read
("ệ", "ư", "ș" in English: Vietnamese or Romanian names) read without their marks, with a warning, clear errors for text
with nothing to speak (empty, or punctuation alone), for letters a voice would spell out or say as code points, unknown
languages and a missing pykakasi, and `split_sentences` for long texts.
"""

from __future__ import annotations

import contextlib
import datetime
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
    "check_unicode",
    "detect_language",
    "language_code",
    "looks_like_ipa",
    "normalize_text",
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
_LATIN = "[A-Za-z\u00c0-\u024f\u1e00-\u1eff]"  # Basic Latin, Latin-1, Extended-A and -B, Extended Additional
_LATIN_KANA = re.compile(f"(?<={_LATIN})(?={_KANA.pattern})|(?<={_KANA.pattern})(?={_LATIN})")
# Emoji and pictographs (the blocks of misc technical symbols, misc symbols, dingbats, arrows and symbols, and the
# pictographs from U+1F000 on), each with what joins or modifies it: variation selectors, skin tones, a keycap,
# zero-width joiners to the next one. The music signs ♭ ♮ ♯ (U+266D-266F) are no emoji but words: "F♯" is "F sharp".
_PICTOGRAPH = "\u2300-\u23ff\u2600-\u266c\u2670-\u27bf\u2b00-\u2bff\U0001f000-\U0001faff"
_MODIFIERS = "\ufe0e\ufe0f\u20e3\U0001f3fb-\U0001f3ff"
_EMOJI = re.compile(f"[{_PICTOGRAPH}][{_MODIFIERS}]*(?:\u200d[{_PICTOGRAPH}][{_MODIFIERS}]*)*")
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


def _check_language(language: str) -> str:
    """Return the espeak-ng voice for a model language or espeak-ng code; reject anything else in one line."""
    if not isinstance(language, str):
        raise VallETypeError(f"language must be a str, got {type(language).__name__}")
    if language in MODEL_LANGUAGES:
        return _ESPEAK_VOICE.get(language, language)
    if language in _espeak_languages():
        return language
    raise VallEValueError(
        f"unknown language {language!r}: use 'auto', one of the model's languages {', '.join(MODEL_LANGUAGES)}, "
        f"or an espeak-ng code such as 'en-gb' or 'es' (phonemizer's EspeakBackend.supported_languages())"
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


def _reads_latin_only(language: str) -> bool:
    """Whether `language` is read by one of `_SPELLS_OTHER_SCRIPTS`' voices (their regional ones too)."""
    return language.split("-")[0].lower() in _SPELLS_OTHER_SCRIPTS


def _check_script(text: str, language: str) -> None:
    """Refuse (`VallEValueError`) kana or Han characters in English, German or French text: espeak-ng's voices for
    these read each one as the words "Chinese letter" or "Japanese letter", so the speech would say those instead
    (text in "en", the default, is the usual case: Japanese given without a language). Their regional voices
    ("en-us", "en-gb", "fr-fr") read them alike. Letters of `_SPELLED_SCRIPTS` are refused too: those voices spell
    them out by name or leave them out. In every language, so are Latin letters its voice has no reading for and no
    base letter to read instead (`_check_latin`)."""
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


# Three letters every voice tried says as code points, whose code points start with different digits (U+1D00, U+2C65,
# U+FB00): what their readings share is the voice's word for "letter" alone. Two were not enough: where the words for
# 1 and 2 begin alike (Swahili "moja", "mbili"; Korean, Basque, Hawaiian, Cantonese), the shared part was taken for the
# word, and a code point read from another digit ("ﬁ", "f b 0 1") passed as a reading.
_CODE_POINT_PROBES = ("ᴀ", "ⱥ", "ﬀ")


def _unstressed(phonemes: str) -> str:
    return "".join(char for char in phonemes if char not in "ˈˌ ")


@functools.cache
def _code_point_word(voice: str) -> str:
    """The voice's word for "letter" as it says a code point ("lˌɛɾɚ" in en-us, "sˈimbolo" in es), unstressed; ""
    where it says no such word (a voice that reads one of the probes)."""
    readings = _espeak_backend(voice).phonemize(list(_CODE_POINT_PROBES), strip=True)
    word = os.path.commonprefix([_unstressed(reading) for reading in readings])
    return word if len(word) >= 2 else ""


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


# Full-width ASCII forms (U+FF01..U+FF5E, e.g. "Ｈｅｌｌｏ！") → ASCII: espeak spells them out letter by letter.
_FULL_WIDTH_TO_ASCII = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)}
# Roman numerals, degree signs, squared units and enclosed numbers and letters (U+2160..217F, U+2103, U+2109,
# U+3371..33DF, U+33FF, U+2460..24EA) → what they stand for ("Ⅻ" → "XII", "℃" → "°C", "㎏" → "kg", "㎧" → "m/s",
# "㎛" → "µm", "①" → "1", "⑴" → "(1)", "Ⓐ" → "A": their NFKC forms, with the micro sign for the Greek mu and "/" for
# the division slash, where made of ASCII and "°µΩ"): espeak-ng says the numerals' code points ("letter 2 1 6 b"),
# leaves the degree signs and enclosed numbers out and reads the units as "Chinese symbol"; it reads the micro sign
# "micro", the Greek mu "mew". A unit's power stays the superscript it stands for ("㎡" → "m²", "㎨" → "m/s²"),
# which `_POWER_WORDS` reads as a power: NFKC's "m2" is read "m two". The era names and "㍿" (kanji) are left to
# espeak.
_COMPATIBILITY_FORMS = {
    code: re.sub("(?<=[a-z])[23]$", lambda power: power.group().translate(str.maketrans("23", "²³")), form)
    for code, form in ((code, unicodedata.normalize("NFKC", chr(code)).translate({0x3BC: "µ", 0x2215: "/"}))
                       for code in (*range(0x2160, 0x2180), 0x2103, 0x2109, *range(0x3371, 0x33E0), 0x33FF,
                                    *range(0x2460, 0x24EB)))
    if all(char.isascii() or char in "°µΩ" for char in form)
}


# A no-break, narrow no-break, figure or thin space between digits and a group of three, as French, German and SI
# write thousands ("5 000"): espeak-ng's English voices read the groups apart ("five zero zero zero"), the others as
# one number, which it is.
_DIGIT_GROUP_SPACE = re.compile(r"(?<=\d)[\u00a0\u2007\u2009\u202f](?=\d{3}(?!\d))")
# A fraction written with the fraction slash ("1⁄2", as some editors set "1/2") as its vulgar fraction ("½"), which
# espeak-ng reads "a half"; it read "1⁄2" as "one two".
_VULGAR_FRACTIONS = {unicodedata.normalize("NFKC", chr(code)): chr(code)
                     for code in (0xBC, 0xBD, 0xBE, *range(0x2150, 0x215F), 0x2189)}
_SLASHED_FRACTION = re.compile(r"(?<!\d)\d+\u2044\d+(?!\d)")


def _as_vulgar(fraction: re.Match) -> str:
    """The vulgar fraction `fraction` ("1⁄2", "1/2") writes ("½"), or `fraction` as it is where it has none."""
    return _VULGAR_FRACTIONS.get(fraction.group().replace("/", "\u2044"), fraction.group())


def normalize_text(text: str) -> str:
    """Orthographic text as espeak-ng reads it correctly: Unicode NFC, full-width ASCII forms mapped to ASCII, Roman
    numerals, degree signs, squared units and circled numbers to what they stand for (`_COMPATIBILITY_FORMS`),
    thousands parted by a no-break space as one number (`_DIGIT_GROUP_SPACE`), "1⁄2" as "½" (`_SLASHED_FRACTION`), and
    runs of whitespace (newlines included) as one space.

    NFC, because espeak reads a decomposed "ü" (u + U+0308) as a plain "u". Never NFKC: it would also rewrite
    symbols that are phonemes in their own right (ʲ → j, ᵝ → β), and IPA text is never normalised at all.
    """
    text = unicodedata.normalize("NFC", text).translate(_FULL_WIDTH_TO_ASCII).translate(_COMPATIBILITY_FORMS)
    text = _DIGIT_GROUP_SPACE.sub("", text)
    text = _SLASHED_FRACTION.sub(_as_vulgar, text)
    return " ".join(text.split())


def _without_emoji(text: str, found: list[str]) -> str:
    """`text` without its emoji, each added to `found` (for one warning naming them): espeak-ng reads an emoji's name
    aloud ("grinning face", "thumbs medium"), which the speech should not say. Symbols outside the emoji blocks (°,
    %, ©) are read as words and kept."""
    found.extend(_EMOJI.findall(text))
    return _left_out(_EMOJI_MARKS.sub("", text), _EMOJI.pattern)


def _left_out(text: str, pattern: str) -> str:
    """`text` without what `pattern` matches: with the space before it where a closing mark follows ("note †." →
    "note.", since espeak-ng writes the space it is given: "nˈoʊt ."), a space elsewhere (no words run together)."""
    text = re.sub(rf"\s*(?:{pattern})+(?=[.,;:!?)\]}}»”’\"'])", "", text)
    return " ".join(re.sub(pattern, " ", text).split())


# Symbols espeak-ng leaves out ("5 ‰" is read "5") or says as a code point ("ℵ" as "letter 2 1 3 5"), as the words a
# reader says for them, by language (an espeak code's first part); with the French and Spanish readings of those their
# voices hand to the English one ("≠" was "(en)not equal to(fr)"). Any other symbol a voice leaves out or says as a
# code point is left out with a warning (`_without_unread_symbols`).
_SYMBOL_WORDS = {
    "en": {"‰": "per mille", "‱": "per ten thousand", "ℵ": "aleph", "℠": "service mark", "℅": "care of"},
    "fr": {"‰": "pour mille", "‱": "pour dix mille", "ℵ": "aleph", "℠": "marque de service", "℅": "aux bons soins de",
           "№": "numéro", "=": "égale", "≠": "différent de", "≈": "environ", "≤": "inférieur ou égal à",
           "≥": "supérieur ou égal à", "∞": "infini", "₹": "roupies"},
    "de": {"‰": "Promille", "‱": "pro zehntausend", "ℵ": "Aleph", "℠": "Dienstleistungsmarke", "℅": "zu Händen von",
           "©": "Copyright", "®": "eingetragene Marke"},
    "es": {"‰": "por mil", "‱": "por diez mil", "ℵ": "álef", "℠": "marca de servicio", "℅": "a la atención de",
           "№": "número", "×": "por", "÷": "entre", "±": "más o menos", "≠": "distinto de", "≈": "aproximadamente",
           "≤": "menor o igual que", "≥": "mayor o igual que", "∞": "infinito", "©": "copyright",
           "®": "marca registrada", "™": "marca comercial", "¥": "yenes", "¢": "centavos", "₹": "rupias"},
    # degrees and degrees Celsius are "ど" ("25℃", now "25°C", was "nijuugo (en)C", the "°" left out); "°C" first
    "ja": {"‰": "パーミル", "ℵ": "アレフ", "×": "かける", "÷": "わる", "∞": "むげんだい", "°C": "ど", "°": "ど"},
}
_SYMBOL_WORD_PATTERNS = {language: re.compile("|".join(map(re.escape, words)))  # the first that matches: "°C", "°"
                         for language, words in _SYMBOL_WORDS.items()}
# Marks of punctuation and letters that stand for words, which some voice leaves out or says as a code point: with
# the symbols and number forms (Unicode categories Sm, Sc, So, No: "×", "€", "©", "⅛"), what `_without_unread_symbols`
# asks the voice about.
_WORD_MARKS = "†‡‰‱′″‴§¶ℵℶℷℸ"


def _spaced(match: re.Match, word: str) -> str:
    """`word` in place of `match`, parted by a space from what it follows ("5‰" → "5 per mille", "(a+b)²" → "(a+b)
    squared") but an opening bracket or quote ("(½)" is "(one half)": espeak-ng writes the space it is given) and
    from a letter or digit after it."""
    text, start, end = match.string, match.start(), match.end()
    opened = start and unicodedata.category(text[start - 1]) in ("Ps", "Pi")
    before = " " if start and not text[start - 1].isspace() and not opened else ""
    after = " " if end < len(text) and text[end].isalnum() else ""
    return f"{before}{word}{after}"


def _for_language(table: dict, language: str):
    """`table`'s entry for `language` (an espeak-ng code, as `resolve_language` gives it) by the longest leading part
    of the code it has ("en-gb-x-rp", then "en-gb", then "en"), or None where it has none."""
    parts = language.split("-")
    variants = ("-".join(parts[:end]) for end in range(len(parts), 0, -1))
    return next((table[variant] for variant in variants if variant in table), None)


def _symbols_as_words(text: str, language: str) -> str:
    """`text` with the symbols of `_SYMBOL_WORDS` written as the words `language` reads them ("5‰" → "5 per mille" in
    English, "5 pour mille" in French); as it is in a language the table has none for."""
    words = _for_language(_SYMBOL_WORDS, language)
    if words is None:
        return text
    pattern = _for_language(_SYMBOL_WORD_PATTERNS, language)
    return pattern.sub(lambda match: _spaced(match, words[match.group()]), text)


# A whole number and its vulgar fraction ("2½", "2 ½", or with the word between them written: "2 et ½"), which
# espeak-ng read without that word ("two a half", French "deux un demi", Spanish "dos un medio"): the word, by
# language, and the fractions said otherwise after it (a half is "deux et demi", "dos y medio": "et un demi" was
# read). German says them as one number ("zwei ein halb", zweieinhalb), with none.
_FRACTION_AND = {"en": ("and", {"½": "a half", "¼": "a quarter"}), "fr": ("et", {"½": "demi"}),
                 "es": ("y", {"½": "medio"})}
_VULGAR = "".join(_VULGAR_FRACTIONS.values())
_FRACTION = f"(?P<fraction>[{_VULGAR}])"


def _mixed_numbers_as_words(text: str, language: str) -> str:
    """`text` with the word `language` says between a whole number and its fraction and the fraction as said after it
    (`_FRACTION_AND`: "2½" → "2 and ½", "2 ½" → "2 et demi" in French); as it is in a language the table has none
    for."""
    words = _for_language(_FRACTION_AND, language)
    if words is None:
        return text
    word, after_word = words
    return re.sub(rf"(?<=\d)(?: {word}\b)? ?{_FRACTION}",
                  lambda match: f" {word} {after_word.get(match['fraction'], match['fraction'])}", text)


# Vulgar fractions, which espeak-ng left out in every voice but "½", "⅓", "⅔", "¼" and "¾" ("⅝" alone was refused as
# nothing to read; French and Spanish handed "⅓", "⅔" to the English voice, Spanish "¼" too): by language, the word
# for a numerator of one, the plural's ending (not added to a name that has it: French "tiers") and the names of the
# denominators 2 to 10. A numerator above one is said as its number ("5 eighths", "3 Viertel").
_FRACTION_NAMES = {
    "en": ("one", "s", "half third quarter fifth sixth seventh eighth ninth tenth"),
    "de": ("ein", "", "halb Drittel Viertel Fünftel Sechstel Siebtel Achtel Neuntel Zehntel"),
    "fr": ("un", "s", "demi tiers quart cinquième sixième septième huitième neuvième dixième"),
    "es": ("un", "s", "medio tercio cuarto quinto sexto séptimo octavo noveno décimo"),
}


def _fraction_words(one: str, plural: str, names: str) -> dict[str, str]:
    """Each vulgar fraction with a numerator ("↉" has none) → its words, from an entry of `_FRACTION_NAMES`."""
    denominators = dict(zip(range(2, 11), names.split(), strict=True))
    words = {}
    for form, fraction in _VULGAR_FRACTIONS.items():
        numerator, denominator = map(int, form.split("\u2044"))
        name = denominators[denominator]
        if numerator:
            words[fraction] = f"{one} {name}" if numerator == 1 else f"{numerator} {name.removesuffix(plural)}{plural}"
    return words


_FRACTION_WORDS = {language: _fraction_words(*names) for language, names in _FRACTION_NAMES.items()}
_SAID_FRACTION = re.compile(f"[{''.join(_FRACTION_WORDS['en'])}]")
# A fraction written with a slash that has a vulgar form ("1/2", "3/4 cup"), which espeak-ng read "one slash two":
# as that form, in a language `_FRACTION_WORDS` has. No part of a date or of more slashes ("12/25/2026", "1/2/3") nor
# of a word or a decimal number ("A1/2", "1/2.5"); "24/7", "9/11" and "3/10" have no vulgar form and are left to
# espeak-ng.
_SLASH_FRACTION = re.compile(r"(?<![\w.,/])[1-9]\d*/\d+(?![\w/]|[.,]\d)")


def _fractions_as_words(text: str, language: str) -> str:
    """`text` with its fractions ("⅝", "5/8"; a whole number's, `_mixed_numbers_as_words`) as the words `language`
    says them (`_FRACTION_WORDS`: "5/8" → "5 eighths", "1 1/2" → "1 and a half", "3/4" → "3 Viertel" in German, "1/2"
    → "un demi" in French); in a language the table has none for, only a whole number's."""
    words = _for_language(_FRACTION_WORDS, language)
    if words is None:
        return _mixed_numbers_as_words(text, language)
    text = _mixed_numbers_as_words(_SLASH_FRACTION.sub(_as_vulgar, text), language)
    return _SAID_FRACTION.sub(lambda fraction: _spaced(fraction, words[fraction.group()]), text)


# Powers written in superscript ("m²", "10⁻³", "x⁴"), which espeak-ng reads as bare digits ("m two", "ten three": the
# minus left out; French "m puissance deux"): each language's words for squared, cubed, "to the power of" and minus
# (None: those powers are left to espeak-ng). "²" or "³" alone after a letter, digit or bracket (a unit, "mc²") is
# squared or cubed; another power is read so only after a digit, a bracket or a letter standing alone ("10⁶",
# "(a+b)⁴", "x⁴"): after a word it marks a footnote ("word¹"), as "²" does at the start of a note; both are left to
# espeak-ng.
_POWER_WORDS = {
    "en": ("squared", "cubed", "to the power of", "minus"),
    "fr": ("carré", "cube", "puissance", "moins"),
    "de": ("hoch zwei", "hoch drei", "hoch", "minus"),
    "es": ("al cuadrado", "al cubo", "elevado a", "menos"),
    "ja": ("じじょう", "さんじょう", None, "マイナス"),
}
_POWER = re.compile("[⁺⁻]?[⁰¹²³⁴⁵⁶⁷⁸⁹]+")
_FROM_SUPERSCRIPT = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹", "0123456789")


def _powers_as_words(text: str, language: str) -> str:
    """`text` with its powers (`_POWER_WORDS`) as the words `language` says them ("10⁻³" → "10 to the power of minus
    3", "5 ㎡" → "5 m squared", "5 m carré" in French); as it is in a language the table has none for."""
    words = _for_language(_POWER_WORDS, language)
    if words is None:
        return text
    squared, cubed, to_the_power_of, minus = words

    def said(match: re.Match) -> str:
        power, start = match.group(), match.start()
        base = text[start - 1] if start else ""
        if power in ("²", "³") and (base.isalnum() or base in (")", "]")):
            return _spaced(match, squared if power == "²" else cubed)
        lone_letter = base.isalpha() and not text[start - 2:start - 1].isalpha()
        if to_the_power_of and (base.isdigit() or base in (")", "]") or lone_letter):
            sign = f"{minus} " if power.startswith("⁻") else ""
            return _spaced(match, f"{to_the_power_of} {sign}{power.lstrip('⁺⁻').translate(_FROM_SUPERSCRIPT)}")
        return power

    return _POWER.sub(said, text)


# Currency signs, as the words each language says after the amount they are written before ("$5" is "five dollars";
# espeak-ng read "dollar five", dropped a minus in French and Spanish, and read "$5.50 today." as "dollar five.",
# losing the rest) or after ("5 €": "cinco euro" in Spanish, "5 $" "five dollar" in English): for one unit, the words
# with the amount ("ein Dollar", "una libra"), for several, the word after it.
_CURRENCY_WORDS = {
    "en": {"$": ("one dollar", "dollars"), "€": ("one euro", "euros"), "£": ("one pound", "pounds"),
           "¥": ("one yen", "yen"), "₹": ("one rupee", "rupees")},
    "fr": {"$": ("un dollar", "dollars"), "€": ("un euro", "euros"), "£": ("une livre", "livres"),
           "¥": ("un yen", "yens"), "₹": ("une roupie", "roupies")},
    "de": {"$": ("ein Dollar", "Dollar"), "€": ("ein Euro", "Euro"), "£": ("ein Pfund", "Pfund"),
           "¥": ("ein Yen", "Yen"), "₹": ("eine Rupie", "Rupien")},
    "es": {"$": ("un dólar", "dólares"), "€": ("un euro", "euros"), "£": ("una libra", "libras"),
           "¥": ("un yen", "yenes"), "₹": ("una rupia", "rupias")},
    # in kana, which needs no pykakasi; espeak-ng left "¥" out ("¥500" was "gohyaku") and reads a lone "1" "itsi"
    "ja": {"$": ("いちドル", "ドル"), "€": ("いちユーロ", "ユーロ"), "£": ("いちポンド", "ポンド"),
           "¥": ("いちえん", "えん"), "₹": ("いちルピー", "ルピー")},
}
# The cents' word for the currencies whose cents Japanese says with one ("$5.05" is "5 ドル 5 セント"; read as the
# digits, "5 ドル 05" was "go doru rei go"): for one cent (a lone "1" is "itsi") and for several. Other languages say
# the cents as written, after the currency's word.
_CENT_WORDS = {"ja": {"$": ("いちセント", "セント"), "€": ("いちセント", "セント"), "£": ("いちペニー", "ペンス")}}


def _cents_said(cents: str, sign: str, language: str) -> str:
    """The cents `cents` (two digits) of an amount in `sign`'s currency as `language` says them after its word:
    "05" as "05" in English ("zero five": "5" did not say they were cents), "5 セント" in Japanese
    (`_CENT_WORDS`); "" for none ("00")."""
    words = (_for_language(_CENT_WORDS, language) or {}).get(sign)
    if not int(cents):
        return ""
    if words is None:
        return f" {cents}"
    return f" {words[0]}" if int(cents) == 1 else f" {int(cents)} {words[1]}"


# An amount with a sign before it ("-$1,234.56", "€ 5", "$5 million") or after it ("5,50 €", "5€"). A separator before
# three digits parts thousands (but after a lone 0) and one before two the cents, whichever the language writes
# ("1.234,56 €" is "1,234.56 €"); before a scale word, any digits after one are decimals ("$1.5 million", "$1.50
# million": espeak-ng read "dollar one point five million"), and so are three after the language's decimal mark
# (`_DECIMAL_MARK`: "$1.234 million" in English, "1,234 Millionen €" in German; they were read as thousands, "1234
# million"); other decimals ("$0.125") are left to espeak-ng. A year before a sign ("2020 € prices") reads as an
# amount: only the meaning tells it from one ("1500 € for the flat").
_MILLIONS = r"(?i:\w*ill(?:i?on|ón|i?ard)\w*)"  # "million", "millones", "Milliarden", "millardo": nouns
_SCALE_WORD = rf"(?:(?i:thousand|tausend|mille|mil)|{_MILLIONS})\b"
# A scale of one word or more ("mil millones"), said before the sign's word: "$5 million", "5 millions $".
_SCALE = rf"(?: (?P<scale>{_SCALE_WORD}(?: {_SCALE_WORD})*))?"
_SIGN = "[$€£¥₹]"
# The mark each language of `_CURRENCY_WORDS` writes before decimals, which espeak-ng reads as its word ("point",
# "Komma"; it read "1.5 Millionen" as "eins Punkt fünf Millionen").
_DECIMAL_MARK = {"en": ".", "ja": ".", "fr": ",", "de": ",", "es": ","}
# A scale written short after an amount ("$10k", "£1bn", "€2.5M", German "5 Mio. €", French "5 M€"), which espeak-ng
# read as letters glued to the currency's word ("ten dollarsk", "one poundbn") or spelled ("fünf M R D Euro"): by
# language, the space it may have before it (in English none: "$5 m" is no scale) and its words, each abbreviation's
# noun for one and for several ("1 Mio. €" is "1 Million Euro"). No word may follow it ("$5 T-shirts"); a period
# after it is its own where a sign follows ("5 Mio. €") or a range's dash and the next number ("5 Mio.-10 Mio. €",
# once read "fünf Mio minus zehn Millionen Euro"), the sentence's otherwise ("€5 Mio."). "5k" without a sign
# is left to espeak-ng.
_SCALE_SHORT = {
    "en": ("", {"k K": ("thousand", "thousand"), "m M mn": ("million", "million"), "b B bn": ("billion", "billion"),
                "T tn": ("trillion", "trillion")}),
    "de": (" ?", {"Tsd": ("Tausend", "Tausend"), "Mio": ("Million", "Millionen"), "Mrd": ("Milliarde", "Milliarden")}),
    "fr": (" ?", {"k": ("mille", "mille"), "M": ("million", "millions"), "Md Mds Mrd": ("milliard", "milliards")}),
    "es": (" ?", {"M": ("millón", "millones")}),
}
_SCALE_NOUNS = {language: {short: nouns for shorts, nouns in table.items() for short in shorts.split()}
                for language, (_, table) in _SCALE_SHORT.items()}


@functools.cache
def _currency_pattern(decimal_mark: str, short_scale: str) -> re.Pattern:
    """Amounts of money as the comment above says, in a language that writes `decimal_mark` before decimals and a
    short scale as `short_scale` matches it (a regular expression; "(?!)" for none): three digits after that mark and
    before a scale are decimals, no thousands group."""
    scale_ahead = rf"(?: {_SCALE_WORD}|{short_scale})"
    group = rf"(?!{re.escape(decimal_mark)}\d+{scale_ahead})[.,]\d{{3}}"
    amount = (rf"(?<![\d.,])(?P<units>[1-9]\d{{0,2}}(?:{group})+|\d+)"
              rf"(?:(?P<decimals>[.,]\d+)(?={scale_ahead})|[.,](?P<cents>\d\d))?(?![\d]|[.,]\d)")
    return re.compile(rf"(?P<minus>(?<!\w)[-−])?(?:(?P<before>{_SIGN}) ?)?{amount}{_SCALE}"
                      rf"(?(scale)|(?P<short>{short_scale})?)(?(before)| ?(?P<after>{_SIGN}))")


def _short_scale_pattern(language: str) -> str:
    """What `_currency_pattern` matches as a short scale in `language` (`_SCALE_SHORT`), with its space and period;
    "(?!)", nothing, in a language the table has none for."""
    short = _for_language(_SCALE_SHORT, language)
    if short is None:
        return "(?!)"
    space, table = short
    abbreviations = "|".join(sorted(_for_language(_SCALE_NOUNS, language), key=len, reverse=True))
    return rf"{space}(?:{abbreviations})(?!\w|-[^\W\d])(?:\.(?= ?{_SIGN}|{_RANGE_DASH}(?:{_SIGN} ?)?\d))?"
# The word French and Spanish say between a scale that is a noun and the currency's ("cinq millions de dollars",
# "cinco millones de dólares"; not after "mille", "mil"), before a consonant and before a vowel ("d'euros"); whole
# millions in digits end in such a noun too ("1 000 000 €" is "un million d'euros", once "un million euros").
_SCALE_OF = {"fr": ("de ", "d'"), "es": ("de ", "de ")}
_SCALE_NOUN = re.compile(rf"{_MILLIONS}$")


# A "1" before a scale noun in the singular, written ("1 Milliarde Menschen", "1 millón de personas") or said for an
# amount of money ("1 Mio. €" is "1 Million Euro", "$1 mil" "1 mil dólares", "1 k€" "1 mille euros"), which espeak-ng
# read as the number ("eins Milliarde", "uno millón", "un mille"): by language, the word for one before a thousand
# and before a scale that is a noun ("ein Tausend", "eine Million", "mil", "un millón"). A 1 that ends another number
# ("31", "0,1") is not one. The nouns: the singular ones the short scales are said as, and those only written out.
_ONE_BEFORE_SCALE = {"de": ("ein", "eine"), "fr": ("", "un"), "es": ("", "un")}
_SAID_SCALES = {nouns[0] for language, (_, table) in _SCALE_SHORT.items() if language in _ONE_BEFORE_SCALE
                for nouns in table.values()}
_SINGULAR_SCALES = sorted(_SAID_SCALES | {"Billion", "Billiarde", "billón", "mil"}, key=len, reverse=True)
_ONE_AND_SCALE = re.compile(rf"(?<![\d.,])1 (?P<scale>{'|'.join(_SINGULAR_SCALES)})\b")


def _one_before_scale_as_read(text: str, language: str) -> str:
    """`text` with its "1" before a scale noun as `language` says it there (`_ONE_BEFORE_SCALE`: "1 Milliarde" →
    "eine Milliarde", "1 mil" → "mil"); as it is in a language the table has no words for."""
    words = _for_language(_ONE_BEFORE_SCALE, language)
    if words is None:
        return text
    return _ONE_AND_SCALE.sub(lambda one: f"{words[bool(re.match(_MILLIONS, one['scale']))]} {one['scale']}".lstrip(),
                              text)


def _scale_of(scale: str | None, units: str, currency: str, language: str) -> str:
    """The word `language` says between an amount of `units` and `scale` and `currency`, its word for the money
    (`_SCALE_OF`), or ""."""
    of = _for_language(_SCALE_OF, language)
    if of is None or not (_SCALE_NOUN.search(scale) if scale else units.endswith("000000")):
        return ""
    return of[1] if currency[0] in "aeiou" else of[0]


def _currency_as_words(text: str, language: str) -> str:
    """`text` with its amounts of money (`_currency_pattern`) as the words `language` says them: "-$1,234.05" →
    "minus 1234 dollars 05" in English, "$1.5 million" → "1.5 million dollars", "5 €" → "5 euros" in Spanish, "£1" →
    "une livre", "5 millions €" → "5 millions d'euros" in French; as it is in a language the table has none for."""
    currencies = _for_language(_CURRENCY_WORDS, language)
    if currencies is None:
        return text
    mark = _for_language(_DECIMAL_MARK, language)

    def said(match: re.Match) -> str:
        decimals = mark + match["decimals"][1:] if match["decimals"] else ""
        units, cents = re.sub("[.,]", "", match["units"]) + decimals, match["cents"] or "00"
        short = match["short"] and _for_language(_SCALE_NOUNS, language)[match["short"].strip(" .")][units != "1"]
        scale = match["scale"] or short
        sign = match["before"] or match["after"]
        one, several = currencies[sign]
        of = _scale_of(scale, units, several, language)
        words = one if units == "1" and not scale else f"{units}{f' {scale}' if scale else ''} {of}{several}"
        # the language's "minus", as powers say it
        minus = f"{_for_language(_POWER_WORDS, language)[3]} " if match["minus"] else ""
        return f"{minus}{words}{_cents_said(cents, sign, language)}"

    return _currency_pattern(mark, _short_scale_pattern(language)).sub(said, text)


# A German day before its month's name ("am 3. Mai", "3.Oktober 1990"; a date in numbers is written so first,
# `_dates_as_words`), which espeak-ng read as the number ("am drei. Mai"): the day as an ordinal, with the ending
# "-te" after "der" ("der dritte Mai") and "-ten" elsewhere, as after "am", "vom", "bis zum", "den" and on a letter's
# date line ("Berlin, 3. Oktober" is "den dritten Oktober"); so are the days before it that share its month ("vom
# 3.–5. Mai" is "vom dritten bis fünften Mai", "am 1. und 2. Mai"), the dash between them said "bis"; a year of 1100 to
# 1999 after it in hundreds, as a year is said ("neunzehnhundertneunzig"; espeak-ng read "eintausend
# neunhundertneunzig").
_GERMAN_MONTHS = "Januar Februar März April Mai Juni Juli August September Oktober November Dezember".split()
_GERMAN_DAYS = ("erst zweit dritt viert fünft sechst siebt acht neunt zehnt elft zwölft dreizehnt vierzehnt fünfzehnt "
                "sechzehnt siebzehnt achtzehnt neunzehnt zwanzigst einundzwanzigst zweiundzwanzigst "
                "dreiundzwanzigst vierundzwanzigst fünfundzwanzigst sechsundzwanzigst siebenundzwanzigst "
                "achtundzwanzigst neunundzwanzigst dreißigst einunddreißigst").split()
_GERMAN_DAY_NUMBER = r"(?:[1-9]|[12]\d|3[01])\."
_GERMAN_DAY = re.compile(rf"(?P<nominative>(?<!\w)[Dd]er )?(?<![\d.,])"
                         rf"(?P<days>{_GERMAN_DAY_NUMBER}(?: ?(?:[-–]|bis|und|,) ?{_GERMAN_DAY_NUMBER})*) ?"
                         rf"(?P<month>{'|'.join(_GERMAN_MONTHS)})\b(?: (?P<century>1[1-9])(?P<year>\d\d)\b)?")


def _german_day_said(match: re.Match) -> str:
    """The words of German days before their month (`_GERMAN_DAY`): "der 3. Mai" → "der dritte Mai", "3.–5. Oktober
    1990" → "dritten bis fünften Oktober 19 hundert 90"."""
    nominative = match["nominative"] or ""
    ending = "e" if nominative else "en"
    days = re.sub(r"(\d+)\.", lambda day: f"{_GERMAN_DAYS[int(day[1]) - 1]}{ending}", match["days"])
    year = f" {match['century']} hundert {int(match['year']) or ''}".rstrip() if match["century"] else ""
    return f"{nominative}{re.sub(' ?[-–] ?', ' bis ', days)} {match['month']}{year}"


# Ordinal numbers as a language writes them short that espeak-ng misreads, and how it reads them: French "21e",
# "2ᵉ" ("vingt et un e", "deux e") as "21ème" (the first is "1er", "1re": read right), Spanish "2.º", "2.ª" ("dos
# punto o") as "2º", "2ª", German days before their month (`_GERMAN_DAY`) as their words.
_ORDINALS = {"fr": (re.compile(r"(?<=\d)(?<!\b1)[eᵉ]\b"), "ème"), "es": (re.compile(r"(?<=\d)\.(?=[ºª])"), ""),
             "de": (_GERMAN_DAY, _german_day_said)}


def _ordinals_as_read(text: str, language: str) -> str:
    """`text` with its short ordinals (`_ORDINALS`) as espeak-ng reads them in `language` ("le 21e siècle" → "le
    21ème siècle"); as it is in a language the table has none for."""
    ordinal = _for_language(_ORDINALS, language)
    return text if ordinal is None else ordinal[0].sub(ordinal[1], text)


# An international phone number: a "+", its country code and two groups of digits or more ("+1 555 123 4567",
# "+49-30-1234567"), which espeak-ng read as numbers ("+49 30 1234567" as "plus forty nine thirty one million two
# hundred ..."): its country code as a number, the other groups' digits one by one, and a pause (a comma) between
# groups. Without its "+", a North American number with its area code ("(555) 123-4567", "555-123-4567", "555.123.4567",
# "1-800-555-1234"; once read "five hundred fifty five dash one hundred twenty three dash four thousand ...") is read
# so too, each group's digits; a shorter one ("555-1234") is not told from a score or a range, and is left to espeak-ng.
_PHONE_NUMBER = re.compile(r"(?<![\w+])(?P<code>\+\d{1,3})(?:[ .-]\d+){2,}(?!\w|[.,]\d)"
                           r"|(?<![\w+.,/-])(?:1[ .-])?(?:\(\d{3}\) ?|\d{3}[.-])\d{3}[.-]\d{4}(?![\w/]|[.,-]\d)")


def _phone_numbers_as_read(text: str) -> str:
    """`text` with its phone numbers (`_PHONE_NUMBER`) as read: "+1 555 123 4567" → "+1, 5 5 5, 1 2 3, 4 5 6 7",
    "(555) 123-4567" → "5 5 5, 1 2 3, 4 5 6 7"."""

    def read(number: re.Match) -> str:
        groups = [" ".join(group) for group in re.findall(r"\d+", number.group())]
        return ", ".join([number["code"], *groups[1:]] if number["code"] else groups)

    return _PHONE_NUMBER.sub(read, text)


# A range of numbers written with an en dash, a wave dash or a tilde ("5–10 minutes", "$5–$10", Japanese "5〜10ふん"),
# which espeak-ng read without a word between the ends ("five ten"), in Japanese as "Japanese letter" or "tilde": the
# word each language says there. A range of times or dates reads before they do ("9:00–17:00", once "9 o'clock–17
# o'clock", and "12/25/2026–12/31/2026", once "December 25th, 2026–December 31st, 2026", lost their dash's digits), and
# so does a range of decades ("the 1990s–2000s", "'80s–'90s": once "nineteen nineties two thousands"); its first end
# may end in "h" or "am" ("15h–17h", "9am–5pm"); its ends may be fractions ("½–¾ cup", "5½–6", once "one half three
# quarters") and its second end negative ("-5 – -10", once "minus five minus ten"). A hyphen ("5-10") is left to
# espeak-ng, but in a range of money (`_money_range_pattern`) and between two amounts that each have their sign
# ("$5-$10", "5€-10€", read "five dollars ten dollars", "five euros minus ten euros"; spaced alike on both sides, so
# "5€ -10€" keeps its minus): it also joins phone numbers and scores. Such amounts may have their scale, written short
# or not ("$5m-$10m", "5 M€–10 M€", once "five million dollars ten million dollars" and "cinq millions d'euros moins
# dix ..."), and so does a hyphen between two numbers that each have their unit of measure (`_UNIT_NAMES`: "5km-10km",
# "5 km–10 km", once "five kilometers ten kilometers").
_RANGE_WORDS = {"en": "to", "de": "bis", "fr": "à", "es": "a", "ja": "から"}
# The dash between a range's ends: a hyphen unspaced or spaced on both sides ("5 -10" is a minus), the others either way
_RANGE_DASH = "(?:-| - | ?[–〜~] ?)"


@functools.cache
def _range_pattern(short_scale: str) -> re.Pattern:
    """Ranges as the comment above says, in a language that writes a short scale as `short_scale` matches it
    (`_short_scale_pattern`); what ends the first amount before the dash, its scale and its sign, is "low_end", and
    the first number's unit "unit"."""
    scale = rf"(?:{short_scale}|(?: {_SCALE_WORD})+)?"
    return re.compile(rf"(?:(?<=[\d{_VULGAR}])|(?<=\dh)|(?<=\d[ap]m)|(?<=\d[AP]M)|(?<=\d0s)) ?[–〜~] ?"
                      rf"(?=[-−]?(?:{_SIGN} ?)?['’]?[\d{_VULGAR}])"
                      rf"|(?<=\d)(?P<low_end>{scale}(?P<sign> ?{_SIGN})?){_RANGE_DASH}"
                      rf"(?(sign)(?=\d[\d.,]*{scale} ?{_SIGN})|(?={_SIGN} ?\d))"
                      rf"|(?<=\d)(?P<unit> ?{_UNIT_NAMES}){_RANGE_DASH}"
                      rf"(?=[-−]?\d[\d.,]* ?{_UNIT_NAMES}(?![\w/]))")
# A range of amounts of money with one currency sign ("$5–10", "€5-10 million", "5-10 €"), whole or with decimals
# before a scale word ("$1.5-2 million"; cents, "$5.50–10", are not spread over the range), which was read with the
# currency's word after its first end ("five dollars to ten"; "$5-10" "five dollars ten", "$1.5–2 million" "dollar one
# point five to two million"): its sign goes after the range, where the amount's word is said ("5–10 $" is "5 to 10
# dollars"). A hyphen is a range's dash here too, but where more numbers are joined so ("$5-10-15"). A scale written
# short ("$5–10k", "£1-2bn", `_SCALE_SHORT`) goes with it ("5 to 10 dollarsk" was read), and where both ends have one
# ("$500k-1m", once "five hundred thousand dollars to ten meters"), each end has the sign; an end written with another
# letter is left whole.
_WHOLE_AMOUNT = r"\d+(?:[.,]\d{3})*"


@functools.cache
def _money_range_pattern(short_scale: str) -> re.Pattern:
    """Ranges of money as the comment above says, in a language that writes a short scale as `short_scale` matches
    it (`_short_scale_pattern`)."""
    return re.compile(rf"(?:(?P<before>{_SIGN}) ?)?(?<![\d.,–-])(?P<low>{_WHOLE_AMOUNT}(?P<low_decimals>[.,]\d+)?)"
                      rf"(?P<low_short>{short_scale})? ?[-–〜~] ?(?P<high>{_WHOLE_AMOUNT}(?P<high_decimals>[.,]\d+)?)"
                      rf"(?:(?P<short>{short_scale})|(?![.,]?\d|[-–]\d|[A-Za-z]){_SCALE})"
                      rf"(?(before)| ?(?P<after>{_SIGN}))")


# Three numbers or more joined by en dashes, wave dashes or tildes ("1–800–555–1234", a phone number; "5–10–15") are no
# range ("one to eight hundred to ..." was read): left to espeak-ng, which reads them one after the other.
_DASH_RUN = re.compile(r"(?<![\d.,/:-])\d+(?:[.,]\d+)*(?: ?[–〜~] ?\d+(?:[.,]\d+)*){2,}(?![\d/:-]|[.,]\d)")


def _outside(pattern: re.Pattern, change, text: str) -> str:
    """`text` with `change` applied to each of its parts outside `pattern`'s matches, which stay as they are."""
    parts, last = [], 0
    for kept in pattern.finditer(text):
        parts += [change(text[last:kept.start()]), kept.group()]
        last = kept.end()
    return "".join([*parts, change(text[last:])])


def _ranges_as_words(text: str, language: str) -> str:
    """`text` with the dash of its ranges (`_range_pattern`) as the word `language` says (`_RANGE_WORDS`: "5–10" → "5 to
    10"), the sign of a range of money after it ("$5–10" → "5 to 10 $", "$5–10k" → "5 to 10k $",
    `_money_range_pattern`), runs of three numbers or more (`_DASH_RUN`) left as they are; as it is in a language the
    table has none for."""
    word = _for_language(_RANGE_WORDS, language)
    if word is None:
        return text

    def money(match: re.Match) -> str:
        if match["low_short"]:  # each end with its scale ("$500k-1m"): each with the sign, "$500k–$1m"
            if not match["short"]:
                return match.group()
            sign = match["before"] or match["after"]
            ends = f"{match['low']}{match['low_short']}", f"{match['high']}{match['short']}"
            return "–".join(f"{sign}{end}" if match["before"] else f"{end} {sign}" for end in ends)
        scaled = match["scale"] or match["short"]
        if not scaled and (match["low_decimals"] or match["high_decimals"]):  # cents: no range of amounts
            return match.group()
        scale = f" {match['scale']}" if match["scale"] else match["short"] or ""
        return f"{match['low']}–{match['high']}{scale} {match['before'] or match['after']}"

    short_scale = _short_scale_pattern(language)

    def dash(match: re.Match) -> str:
        # a short scale's period ("€5 Mio.–€10 Mio.") is its own only before the dash or a sign: not before the word
        low_end = (match["low_end"] or "").removesuffix(".")
        return f"{low_end or match['unit'] or ''} {word} "

    def ranges(part: str) -> str:
        return _range_pattern(short_scale).sub(dash, _money_range_pattern(short_scale).sub(money, part))

    return _outside(_DASH_RUN, ranges, text)


# A time of day: an hour of 0 to 23 and minutes of two digits ("3:45pm", "15:45"; a ratio "3:2" or "1:2.5" is none),
# which espeak-ng read with the colon kept as a pause ("three: forty five"), French "15h45" as "quinze ache
# quarante-cinq", German "15.45 Uhr" as "fünfzehn Punkt ...". German writes a score as a time ("14:12"), so only one
# followed by "Uhr" is one there; French writes "15h45", "15 h" too. Spanish may write "h" or "horas" after a time
# ("13:00 h"), which the words say already ("13 en punto h" read "hache", "13 en punto horas").
_HOUR = r"(?<![\d:.,])(?P<hour>[01]?\d|2[0-3])"
# Seconds after the minutes ("15:00:30", once read "fifteen: zero: thirty"), said after the clock's words
_SECONDS = r"(?::(?P<seconds>[0-5]\d))?"
_MINUTES = rf"(?P<minutes>[0-5]\d){_SECONDS}(?![\d:]|[.,]\d)"
# An English time's "am" or "pm", after which the hour alone is said without "o'clock" ("3:00pm" is "3pm"; "3
# o'clockpm" was read), and before the seconds ("3:00:10pm" is "3pm and 10 seconds").
_MERIDIEM = r"(?P<meridiem> ?(?i:[ap]\.?m)\b)?"
# By language: the time's pattern, the hour said when it is 1 and otherwise, what follows the hour alone (minutes
# "00") on a 12-hour clock and on a 24-hour one (an hour of 0 or 13 to 23: "15:00" is "fifteen hundred", "fifteen
# o'clock" was read), what comes before minutes under ten, between the hour's words and the minutes ("15:05" is
# "fifteen oh five", "quince y cinco"), the seconds' words for one second and several ("9:05:07" is "nine oh five
# and seven seconds"; none for "00"), and what follows the hour alone before seconds where that differs: Spanish says
# no "en punto" before them ("15:00:30" is "quince horas y treinta segundos", "9:00:10" "nueve y diez segundos"; "15
# en punto y 30 segundos" was said). The hour's leading zero is not said ("09:05" was "zero nine oh five").
_TIMES = {
    "en": (re.compile(rf"{_HOUR}:{_MINUTES}{_MERIDIEM}"), "1", "{hour}", (" o'clock", " hundred"), " oh ",
           ("and one second", "and {seconds} seconds")),
    "de": (re.compile(rf"{_HOUR}[:.]{_MINUTES} Uhr\b"), "ein Uhr", "{hour} Uhr", ("", ""), " ",
           ("und eine Sekunde", "und {seconds} Sekunden")),
    "fr": (re.compile(rf"{_HOUR}(?::(?=\d)| ?h ?)(?:(?P<minutes>[0-5]\d){_SECONDS})?(?![\w:]|[.,]\d)"),
           "une heure", "{hour} heures", ("", ""), " ", ("et une seconde", "et {seconds} secondes")),
    "es": (re.compile(rf"{_HOUR}:{_MINUTES}(?: ?h\b| horas\b)?"), "una", "{hour}", (" en punto", " en punto"),
           " y ", ("y un segundo", "y {seconds} segundos"), ("", " horas")),
}


def _times_as_words(text: str, language: str) -> str:
    """`text` with its times of day (`_TIMES`) as the words `language` says them ("3:45pm" → "3 45pm", "09:05" → "9
    oh 5", "15:00" → "15 hundred", "9:05:07" → "9 oh 5 and 7 seconds" in English, "15:45 Uhr" → "15 Uhr 45", "15h45"
    → "15 heures 45"); as it is in a language the table has none for."""
    time = _for_language(_TIMES, language)
    if time is None:
        return text
    pattern, one, several, on_the_hour, before_one_digit, (one_second, several_seconds), *before_seconds = time

    def said(match: re.Match) -> str:
        number = int(match["hour"])
        hour = one if number == 1 else several.format(hour=number)
        minutes, meridiem = match["minutes"] or "00", match.groupdict().get("meridiem") or ""
        seconds = int(match["seconds"] or 0)
        if minutes == "00":
            twenty_four_hour = number == 0 or number > 12
            hour_alone = before_seconds[0] if seconds and before_seconds else on_the_hour
            clock = hour if meridiem else f"{hour}{hour_alone[twenty_four_hour]}"
        else:
            clock = f"{hour}{before_one_digit}{minutes[1]}" if minutes[0] == "0" else f"{hour} {minutes}"
        after = one_second if seconds == 1 else several_seconds.format(seconds=seconds)
        return f"{clock}{meridiem} {after}" if seconds else f"{clock}{meridiem}"

    return pattern.sub(said, text)


# Decades ("the 1990s", "'90s", "the 1990's"), which espeak-ng's English voices read "nineteen hundred ninety z" (with
# an apostrophe, the "s" left out): the words for a decade, after its century ("19 nineties", "19 tens", "20 twenties"),
# a century's hundreds ("1900s" is "19 hundreds", "500s" "5 hundreds"), and the hundreds and thousands, said whole
# ("100s" is "hundreds", "2000s" "two thousands", "1000s" "thousands": espeak-ng read "one hundred z", "two thousand
# z", and the century's rule "ten hundreds"); after a currency sign, with the money's word ("$1000s" is "thousands of
# dollars", once "dollar thousands"). "'00s" and a duration's seconds after its minutes, "5m 30s", are left to
# espeak-ng.
_DECADE_WORDS = {"en": {"0": "hundreds", "1": "tens", "2": "twenties", "3": "thirties", "4": "forties",
                        "5": "fifties", "6": "sixties", "7": "seventies", "8": "eighties", "9": "nineties",
                        "100": "hundreds", "1000": "thousands", "2000": "two thousands"}}
_DECADE = re.compile(rf"(?<![\w.,'’])(?<!\dm )(?P<sign>{_SIGN})?(?:(?P<century>1\d|20|[1-9](?=00))|['’])?"
                     r"(?P<tens>\d)0['’]?s\b")


def _decades_as_words(text: str, language: str) -> str:
    """`text` with its decades (`_DECADE_WORDS`) as the words `language` says them ("the 1990s" → "the 19 nineties",
    "'90s" → "nineties", "the 2000s" → "the two thousands", "$1000s" → "thousands of dollars"); as it is in a language
    the table has none for."""
    words = _for_language(_DECADE_WORDS, language)
    if words is None:
        return text

    def said(match: re.Match) -> str:
        century, tens, sign = match["century"] or "", match["tens"], match["sign"]
        if tens == "0" and not century:  # "'00s": no "hundreds"
            return match.group()
        decade = words.get(f"{century}{tens}0") or f"{century} {words[tens]}".lstrip()  # "100s", "1000s", "2000s" whole
        return f"{decade} of {_for_language(_CURRENCY_WORDS, language)[sign][1]}" if sign else decade

    return _DECADE.sub(said, text)


def _date_pattern(order: str, then: str = "") -> re.Pattern:
    """A date of day, month and year in numbers, in `order` ("{year}-{month}-{day}"; "{short_year}" for a year of
    four digits or two), no part of a longer number, and what may follow it, `then`."""
    parts = {"year": r"(?P<year>\d{4})", "short_year": r"(?P<year>\d{4}|\d\d)", "month": r"(?P<month>\d\d?)",
             "day": r"(?P<day>\d\d?)"}
    return re.compile(rf"(?<![\d/.,-]){order.format(**parts)}(?![\d/]|[.,-]\d){then}")


# Dates written in numbers, ISO "2026-12-25" and each language's own order ("12/25/2026" in English, "25/12/2026" in
# French and Spanish), which espeak-ng read as numbers and marks ("twelve slash twenty five slash two thousand twenty
# six", "veinticinco barra doce ..."): by language, the date's words, with the month's name and the day as said in a
# date (before its suffix: "25th", French "1er"; "1th" was read "firth"), and the year read as any number. Numbers
# that make no date ("25/12/2026" in English: the other order is not guessed at; "2026-02-30") are left as they are.
# The language's own order may have a year of two digits ("12/25/26"), said as the number it is written ("December
# 25th, 26": its century is not guessed at), and checked as one of this century ("2/29/25" is no date); a fraction
# ("3/4") or a score ("3/10") has no third number, and is none. English says such a year's leading zero "oh"
# ("12/25/05" is "December 25th, oh five"; espeak-ng read "zero five"), but in "00"; the other languages say it as
# espeak-ng reads it.
_YEAR_ZERO = {"en": "oh "}
# German's date ("25.12.2026", "am 25.12.26") is written with the month's name ("25. Dezember 2026"), whose day
# `_ordinals_as_read` says with its case ending ("am fünfundzwanzigsten"). Japanese says its days' own words: left to
# espeak-ng.
# ISO's "T" before a time of day ("2026-12-25T15:00", whose "T" was read as the letter), read as a space
_ISO_DATE = _date_pattern("{year}-{month}-{day}", r"(?P<clock>T(?=\d\d:\d\d))?")
_DAY_MONTH_YEAR = _date_pattern("{day}/{month}/{short_year}")
# By language: its date's order, the date's words, the months' names, and the day as said in a date: its suffix and
# those said otherwise. English outside the US ("en-gb", "en-029") writes the day first, as French does: its
# "12/11/2026" is the 12th of November, which the US order read "December 11th".
_ENGLISH_MONTHS = "January February March April May June July August September October November December".split()
_ENGLISH_DAYS = {"1": "1st", "2": "2nd", "3": "3rd", "21": "21st", "22": "22nd", "23": "23rd", "31": "31st"}
_BRITISH_DATE = (_DAY_MONTH_YEAR, "{day} {month} {year}", _ENGLISH_MONTHS, "th", _ENGLISH_DAYS)
_DATE_WORDS = {
    "en": (_date_pattern("{month}/{day}/{short_year}"), "{month} {day}, {year}", _ENGLISH_MONTHS, "th", _ENGLISH_DAYS),
    "en-gb": _BRITISH_DATE, "en-029": _BRITISH_DATE,
    "fr": (_DAY_MONTH_YEAR, "{day} {month} {year}",
           "janvier février mars avril mai juin juillet août septembre octobre novembre décembre".split(),
           "", {"1": "1er"}),
    "de": (_date_pattern(r"{day}\.{month}\.{short_year}"), "{day} {month} {year}", _GERMAN_MONTHS, ".", {}),
    "es": (_DAY_MONTH_YEAR, "{day} de {month} de {year}",
           "enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre diciembre".split(), "", {}),
}


def _dates_as_words(text: str, language: str) -> str:
    """`text` with its dates in numbers (ISO and the language's own order) as the words `language` says them
    (`_DATE_WORDS`, by the longest leading part of the code it has: "2026-12-25" → "December 25th, 2026" in English,
    "25/12/2026" → "25th December 2026" in "en-gb-x-rp", "25 décembre 2026" in French); as it is in a language the
    table has none for."""
    words = _for_language(_DATE_WORDS, language)
    if words is None:
        return text
    order, template, months, suffix, days = words
    zero = _for_language(_YEAR_ZERO, language)

    def said(match: re.Match) -> str:
        year = int(match["year"]) + (2000 if len(match["year"]) == 2 else 0)
        try:
            date = datetime.date(year, int(match["month"]), int(match["day"]))
        except ValueError:  # no such day: not a date
            return match.group()
        day = days.get(str(date.day), f"{date.day}{suffix}")
        clock = " " if match.groupdict().get("clock") else ""
        said_year = f"{zero}{match['year'][1]}" if zero and re.fullmatch("0[1-9]", match["year"]) else match["year"]
        return template.format(day=day, month=months[date.month - 1], year=said_year) + clock

    return order.sub(said, _ISO_DATE.sub(said, text))


# An IPv4 address ("192.168.0.1"), which espeak-ng's German, French and Spanish voices read as a number in thousands
# with decimals ("hundertzweiundneunzigtausend einhundertachtundsechzig Punkt null Punkt eins"), its English one as
# "one hundred ninety two point one six eight point ...", its Japanese one without the dots: its four numbers, with
# the word for the dot between them. A number in groups of three ("1.000.000.000") is none: "000" is no part of one.
_DOT_WORDS = {"en": "dot", "de": "Punkt", "fr": "point", "es": "punto", "ja": "ドット"}
_ADDRESS_PART = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IP_ADDRESS = re.compile(rf"(?<![\d.]){_ADDRESS_PART}(?:\.{_ADDRESS_PART}){{3}}(?!\d|\.\d)")


def _addresses_as_words(text: str, language: str) -> str:
    """`text` with the dots of its IP addresses (`_IP_ADDRESS`) as the word `language` says (`_DOT_WORDS`:
    "192.168.0.1" → "192 dot 168 dot 0 dot 1"); as it is in a language the table has none for."""
    word = _for_language(_DOT_WORDS, language)
    if word is None:
        return text
    return _IP_ADDRESS.sub(lambda address: address.group().replace(".", f" {word} "), text)


# A minus sign before a number, after no letter, digit or decimal mark ("-5 degrés", "x = −2"; not "5-3" or "A-5"):
# espeak-ng's French, Spanish and Japanese voices left it out ("cinq degrés"), and its English and German ones after
# "=".
_NEGATIVE = re.compile(r"(?<![\w.,])[-−](?=\d)")


def _minus_as_word(text: str, language: str) -> str:
    """`text` with the minus of its negative numbers (`_NEGATIVE`) as the word `language` says (`_POWER_WORDS`'s:
    "moins 5 degrés"); as it is in a language the table has none for."""
    words = _for_language(_POWER_WORDS, language)
    if words is None or words[3] is None:
        return text
    return _NEGATIVE.sub(f"{words[3]} ", text)


# Units of measure after a number ("5 km", "100kg", "25 °C"), which espeak-ng's English, German and Spanish voices
# spelled out ("five K M", "twenty five degrees C"; "cien kilogramo" in Spanish), its French one "5 m", "5 g", "50 km/h"
# ("cinq kilomètres ache"), its Japanese one in English letters: the words for one unit, with the number ("one
# kilometer", "ein Kilometer", "un kilomètre"), and for any other amount, after it; with its power said after it ("5
# m²" is "5 meters squared"). A unit inside a word ("5 kms", "5 mph"; kana may follow: "5kgです") or before another
# ("5 m/s") is left to espeak-ng, and so is a letter after an amount of money ("$1.5m" is no "$1.5 meters") and a
# duration's minutes ("1h 30m", "5m 30s" are no meters); "L" is a liter too.
_UNIT_WORDS = {
    "en": {"km/h": ("one kilometer per hour", "kilometers per hour"), "km": ("one kilometer", "kilometers"),
           "m": ("one meter", "meters"), "cm": ("one centimeter", "centimeters"),
           "mm": ("one millimeter", "millimeters"), "kg": ("one kilogram", "kilograms"), "g": ("one gram", "grams"),
           "mg": ("one milligram", "milligrams"), "l": ("one liter", "liters"), "ml": ("one milliliter", "milliliters"),
           "°C": ("one degree Celsius", "degrees Celsius"), "°F": ("one degree Fahrenheit", "degrees Fahrenheit")},
    "de": {"km/h": ("ein Kilometer pro Stunde", "Kilometer pro Stunde"), "km": ("ein Kilometer", "Kilometer"),
           "m": ("ein Meter", "Meter"), "cm": ("ein Zentimeter", "Zentimeter"),
           "mm": ("ein Millimeter", "Millimeter"), "kg": ("ein Kilogramm", "Kilogramm"), "g": ("ein Gramm", "Gramm"),
           "mg": ("ein Milligramm", "Milligramm"), "l": ("ein Liter", "Liter"), "ml": ("ein Milliliter", "Milliliter"),
           "°C": ("ein Grad Celsius", "Grad Celsius"), "°F": ("ein Grad Fahrenheit", "Grad Fahrenheit")},
    "fr": {"km/h": ("un kilomètre par heure", "kilomètres par heure"), "km": ("un kilomètre", "kilomètres"),
           "m": ("un mètre", "mètres"), "cm": ("un centimètre", "centimètres"),
           "mm": ("un millimètre", "millimètres"), "kg": ("un kilogramme", "kilogrammes"),
           "g": ("un gramme", "grammes"), "mg": ("un milligramme", "milligrammes"), "l": ("un litre", "litres"),
           "ml": ("un millilitre", "millilitres"), "°C": ("un degré Celsius", "degrés Celsius"),
           "°F": ("un degré Fahrenheit", "degrés Fahrenheit")},
    "es": {"km/h": ("un kilómetro por hora", "kilómetros por hora"), "km": ("un kilómetro", "kilómetros"),
           "m": ("un metro", "metros"), "cm": ("un centímetro", "centímetros"),
           "mm": ("un milímetro", "milímetros"), "kg": ("un kilogramo", "kilogramos"), "g": ("un gramo", "gramos"),
           "mg": ("un miligramo", "miligramos"), "l": ("un litro", "litros"), "ml": ("un mililitro", "mililitros"),
           "°C": ("un grado Celsius", "grados Celsius"), "°F": ("un grado Fahrenheit", "grados Fahrenheit")},
    # a lone "1" is "itsi" (`_CURRENCY_WORDS`); degrees are symbols' words ("ど"); "km/h" is said with "じそく"
    # before the number, which is left to espeak-ng
    "ja": {"km": ("いちキロメートル", "キロメートル"), "m": ("いちメートル", "メートル"),
           "cm": ("いちセンチメートル", "センチメートル"), "mm": ("いちミリメートル", "ミリメートル"),
           "kg": ("いちキログラム", "キログラム"), "g": ("いちグラム", "グラム"),
           "mg": ("いちミリグラム", "ミリグラム"), "l": ("いちリットル", "リットル"),
           "ml": ("いちミリリットル", "ミリリットル")},
}
# The units of every language's table (the English one has them all), after a number, a fraction ("½ kg", "2½ kg":
# "K G" was read) or both
_UNIT_NAMES = rf"(?:{'|'.join(map(re.escape, _UNIT_WORDS['en']))}|m?L)"
_UNIT = re.compile(rf"(?<![\d.,])(?<!{_LATIN})(?<!{_SIGN})(?<!{_SIGN} )(?<!\dh )"
                   rf"(?P<number>\d+(?:[.,]\d+)*(?: ?{_SAID_FRACTION.pattern})?|{_SAID_FRACTION.pattern}) ?"
                   rf"(?P<unit>{_UNIT_NAMES})"
                   rf"(?!{_LATIN}|[\d/]| \d+s\b)")


def _units_as_words(text: str, language: str) -> str:
    """`text` with the units of measure after its numbers (`_UNIT_WORDS`) as the words `language` says them ("5 km"
    → "5 kilometers", "1 °C" → "one degree Celsius" in English, "1 kg" → "ein Kilogramm" in German); as it is in a
    language the table has none for."""
    units = _for_language(_UNIT_WORDS, language)
    if units is None:
        return text

    def said(match: re.Match) -> str:
        words = units.get(match["unit"].replace("L", "l"))
        if words is None:
            return match.group()
        return words[0] if match["number"] == "1" else f"{match['number']} {words[1]}"

    return _UNIT.sub(said, text)


def _without_unread_symbols(text: str, language: str, left_out: list[str]) -> str:
    """`text` without the symbols the voice of `language` leaves out or says as a code point (`_said_as_code_point`:
    "†", "′" in every voice tried, "→" in French and Spanish), each added to `left_out` for one warning naming them:
    the speech would skip them without a word, or say "letter 2 1 3 5". Raises `VallEValueError` where they were all
    the text's words ("⅛" alone): nothing would be left to speak."""
    voice = _check_language(language)
    unread = {char for char in set(text) if not char.isascii() and (
        unicodedata.category(char) in ("Sm", "Sc", "So", "No") or char in _WORD_MARKS)
        and _said_as_code_point(char, voice)}
    kept = _left_out(text, f"[{re.escape(''.join(unread))}]") if unread else text
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


def phonemize(text: str, language: str = "en", language_switch: str = "keep") -> str:
    """Text → IPA phonemes with espeak-ng (punctuation kept, stress marked), as the original model was trained.

    `language`: "auto" (see `detect_language`), one of `MODEL_LANGUAGES` ("en" is read as en-us, "fr" as fr-fr), or any
    espeak-ng language code. Text that is already IPA (see `looks_like_ipa`) is returned exactly as it is, only stripped
    of surrounding whitespace; other text is normalised first (`normalize_text`; the original split lines before
    phonemising, use `split_sentences` for long texts), and symbols the voice would leave out or say as a code point are
    read as the language's words for them ("5 ‰", "m²", "$5": `_SYMBOL_WORDS`, `_POWER_WORDS`, `_CURRENCY_WORDS`) or
    left out with a warning. `language_switch`: "keep" (default) writes espeak's markers for words it reads in another
    language, "(en)fˈʊtbɔːl(fr)", as the released model was trained; "remove" drops the markers and keeps those words'
    phonemes, which suits mixed-language text. Raises `VallEValueError` for text with nothing to speak (`check_text`),
    an unknown language or `language_switch`, kana or Han characters in English, German or French text
    (`resolve_language`); `MissingDependencyError` for Japanese kanji without pykakasi.
    """
    return phonemize_all([text], [language], language_switch)[0]


def phonemize_all(texts: Sequence[str], languages: Sequence[str], language_switch: str = "keep") -> list[str]:
    """`phonemize` for each text in its language, the emoji of them all named in one warning, the symbols no voice
    reads in another, and the letters read without their marks in a third (the sentences of one text are one text to
    its reader)."""
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


def _phonemized(text: str, language: str, language_switch: str, emoji: list[str], symbols: dict[str, list[str]],
                folded: dict[str, list[str]]) -> str:
    """`phonemize` of one text, its emoji added to `emoji`, the symbols left out to `symbols` and the letters read
    without their marks to `folded` (these two under the language), for the caller's warnings."""
    check_text(text)
    if language_switch not in LANGUAGE_SWITCH:
        raise VallEValueError(f"language_switch must be one of {', '.join(LANGUAGE_SWITCH)}, got {language_switch!r}")
    language = resolve_language(text, language)
    if looks_like_ipa(text):
        return text.strip()
    text = _phone_numbers_as_read(_without_emoji(normalize_text(text), emoji))
    text = _decades_as_words(_ranges_as_words(text, language), language)
    text = _times_as_words(_dates_as_words(_addresses_as_words(text, language), language), language)
    text = _one_before_scale_as_read(_minus_as_word(_currency_as_words(text, language), language), language)
    text = _fractions_as_words(_units_as_words(_powers_as_words(_ordinals_as_read(text, language), language),
                                               language), language)
    text = _symbols_as_words(text, language)
    text = _without_unread_symbols(text, language, symbols.setdefault(language, []))
    if language == "ja":
        text = _LATIN_KANA.sub(" ", _to_hiragana(text))
    text = _without_unread_marks(text, language, folded.setdefault(language, []))
    voice = _check_language(language)
    phonemes = _espeak_backend(voice, language_switch).phonemize([text], strip=True)
    if not phonemes or not phonemes[0].strip():
        raise VallEValueError(f"espeak-ng ({voice}) produced no phonemes for {text!r}: give words it can read")
    return phonemes[0]


def split_sentences(text: str, language: str = "en") -> list[str]:
    """Split long text into sentences for piece-by-piece synthesis; punctuation stays with its sentence.

    Every line is split on its own (the original synthesised line by line), by sentencex's rule-based segmenter for
    `language` (an espeak code's first part: "en-gb" → "en"; "auto" goes by the script, see `detect_language`),
    which knows each language's abbreviations, so "Dr. Smith went home." stays one sentence; it needs no model
    download. Pieces are stripped; empty ones are dropped and pieces without any letter or digit (a stray "...")
    are glued to the previous piece, or to the next one at the start of the text.
    """
    from sentencex import segment

    language = language_code(language)
    if language != "auto":
        _check_language(language)
    pieces: list[str] = []
    leading = ""  # word-less pieces before the first sentence, for the first sentence
    for line in text.splitlines():
        code = (detect_language(line) if language == "auto" else language).split("-")[0]
        for piece in segment(code, line):
            piece = piece.strip()
            if not piece:
                continue
            if _has_words(piece):
                pieces.append(f"{leading} {piece}".strip())
                leading = ""
            elif pieces:
                pieces[-1] = f"{pieces[-1]} {piece}"
            else:
                leading = f"{leading} {piece}".strip()
    return pieces or ([leading] if leading else [])  # word-less pieces alone: left for `check_text` to refuse
