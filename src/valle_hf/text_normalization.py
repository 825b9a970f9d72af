"""Written text → the words espeak-ng should read: the text normalisation before phonemisation (`phonemes`).

espeak-ng reads many written forms wrongly or not at all. Each pass here rewrites one kind, for the language the text
is read in (an espeak-ng code: a table's entry is found by the longest leading part of the code it has), and each
table says what espeak-ng said before: Unicode forms (`normalize_text`: NFC, full-width ASCII, Roman numerals, squared
units, digit groups parted by a space); then, in `verbalize`, phone numbers ("+1 555 123 4567", "(555) 123-4567") and
IP addresses read digit by digit, ranges ("5–10"), decades ("1990s"), dates in numbers ("2026-12-25", "12/25/26",
German "am 3. Mai") with the month's name, times of day ("3:45pm", "15h45", "15:00:30"), amounts of money in the order
the language says them ("$5.50" as "5 dollars 50", "$10k", "5 Mio. €"), a minus, short ordinals ("21e", "2.º"),
powers ("m²", "10⁻³"), units after a number ("5 km"), fractions ("3/4", "2½") and symbols a voice leaves out ("5 ‰").
What is left for espeak-ng (its own reading of numbers, abbreviations, words) is not touched.
"""

from __future__ import annotations

import datetime
import functools
import re
import unicodedata

__all__ = ["normalize_text", "verbalize"]

# A Latin letter: Basic Latin, Latin-1, Extended-A and -B, Extended Additional
LATIN_LETTER = "[A-Za-z\u00c0-\u024f\u1e00-\u1eff]"
# A letter of a script that parts its words with spaces (Latin, Greek, Cyrillic, ...), whose letters make a number
# glued to them part of a word ("v10.12.11", "δ5"): any but kana and kanji, which Japanese writes glued to numbers
# ("しめきりは2026-12-25です")
_SPACED_LETTER = "[^\\W\\d_\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f]"


def verbalize(text: str, language: str) -> str:
    """`text` (orthographic, after `normalize_text`) with the written forms espeak-ng misreads written as the words
    `language` (an espeak-ng code, as `phonemes.resolve_language` gives it) says for them: powers written with a caret
    (as superscripts, read with the other powers), phone numbers, runs of numbers joined by slashes, pairs of them
    read as two numbers, ranges, seconds, decades, addresses, dates, times, money, minus signs, one before a scale
    noun, ordinals, powers, durations, units, fractions, symbols and decimal points, in that order: each pass reads
    what the passes before it left ("5–10 km" is a range of numbers before its unit is read, "2026-12-25T15:00" a date
    before its time)."""
    text = _slash_pairs_as_read(_slash_runs_as_read(_phone_numbers_as_read(_caret_powers(text, language))), language)
    text = _decades_as_words(_seconds_as_words(_ranges_as_words(text, language), language), language)
    text = _times_as_words(_dates_as_words(_addresses_as_words(text, language), language), language)
    text = _one_before_scale_as_read(_minus_as_word(_currency_as_words(text, language), language), language)
    text = _powers_as_words(_ordinals_as_read(text, language), language)
    text = _fractions_as_words(_units_as_words(_durations_as_words(text, language), language), language)
    return _decimal_points_as_words(_symbols_as_words(text, language), language)


# A decimal number in a language whose voice drops its point, by language: the point's word, said between the whole
# part and the decimals read one by one. espeak-ng's Japanese voice read "3.5" as "3 5" (san go; "3.14" san ichi yon),
# and it is "3てん5" (san ten go). A number of more points (a date, "2026.12.04"; a version, "1.2.3") or after a
# letter ("v1.2") is none.
_DECIMAL_POINT_WORDS = {"ja": "てん"}
_DECIMAL_NUMBER = re.compile(rf"(?<![\d.,])(?<!{_SPACED_LETTER})(?P<whole>\d{{1,3}}(?:,\d{{3}})+|\d+)"
                             r"\.(?P<decimals>\d+)(?![\d.,]\d|\d)")


def _decimal_points_as_words(text: str, language: str) -> str:
    """`text` with the point of its decimal numbers as the word `language` says (`_DECIMAL_POINT_WORDS`: "3.14" →
    "3てん1 4"); as it is in a language the table has none for."""
    word = _for_language(_DECIMAL_POINT_WORDS, language)
    if word is None:
        return text
    return _DECIMAL_NUMBER.sub(lambda number: f"{number['whole']}{word}{' '.join(number['decimals'])}", text)


# Full-width ASCII forms (U+FF01..U+FF5E, e.g. "Ｈｅｌｌｏ！") → ASCII: espeak spells them out letter by letter.
_FULL_WIDTH_TO_ASCII = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)}
# The digits of other scripts (Arabic-Indic "٣٥", Devanagari "५", Thai "๓", ...: Unicode's decimal digits) as ASCII
# digits, which every espeak-ng voice reads in its own words: the English, German and French voices left them out ("Pay
# ٣٥ dollars" was "pay dollars"), and the Arabic decimal and thousands separators as the point and comma they are.
_OTHER_DIGIT = re.compile(r"(?![0-9])\d")
_ARABIC_SEPARATORS = re.compile("(?<=\\d)[\u066b\u066c](?=\\d)")


def _ascii_digits(text: str) -> str:
    """`text` with the decimal digits of every script as ASCII digits (`_OTHER_DIGIT`: "٣٫٥" → "3.5")."""
    text = _OTHER_DIGIT.sub(lambda digit: str(unicodedata.digit(digit.group())), text)
    return _ARABIC_SEPARATORS.sub(lambda mark: "." if mark.group() == "\u066b" else ",", text)


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


# Modifier letters written for an apostrophe → "'": U+02BC ("donʼt", "aujourdʼhui", as Ukrainian and some keyboards
# write it), the prime U+02B9 (a soft sign in transliterations), the turned comma U+02BB (the ʻokina) and the half
# rings and reversed comma of transliterated hamza and ayin (U+02BD..U+02BF). espeak-ng read U+02BC as the word
# "ejective", spelled the others as their code points ("letter 2 b 9") and said nothing for U+02BB alone.
_APOSTROPHE_LETTERS = dict.fromkeys((0x2B9, 0x2BB, 0x2BC, 0x2BD, 0x2BE, 0x2BF), "'")


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
    """Orthographic text as espeak-ng reads it correctly: Unicode NFC, full-width ASCII forms, apostrophes written as
    modifier letters (`_APOSTROPHE_LETTERS`) and the digits of every script (`_ascii_digits`) mapped to ASCII, Roman
    numerals, degree signs, squared units and circled numbers to what they stand for (`_COMPATIBILITY_FORMS`),
    thousands parted by a no-break space as one number (`_DIGIT_GROUP_SPACE`), "1⁄2" as "½" (`_SLASHED_FRACTION`), and
    runs of whitespace (newlines included) as one space.

    NFC, because espeak reads a decomposed "ü" (u + U+0308) as a plain "u". Never NFKC: it would also rewrite
    symbols that are phonemes in their own right (ʲ → j, ᵝ → β), and IPA text is never normalised at all.
    """
    text = unicodedata.normalize("NFC", text).translate(_FULL_WIDTH_TO_ASCII).translate(_COMPATIBILITY_FORMS)
    text = text.translate(_APOSTROPHE_LETTERS)
    text = _ascii_digits(text)
    text = _DIGIT_GROUP_SPACE.sub("", text)
    text = _SLASHED_FRACTION.sub(_as_vulgar, text)
    return " ".join(text.split())


# Symbols espeak-ng leaves out ("5 ‰" is read "5") or says as a code point ("ℵ" as "letter 2 1 3 5"), as the words a
# reader says for them, by language (an espeak code's first part); with the French and Spanish readings of those their
# voices hand to the English one ("≠" was "(en)not equal to(fr)"). Any other symbol a voice leaves out or says as a
# code point is left out with a warning (`phonemes._without_unread_symbols`).
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
    # degrees and degrees Celsius are "ど" ("25℃", now "25°C", was "nijuugo (en)C", the "°" left out); "°C" first;
    # "%" was the English voice's "percent"
    "ja": {"‰": "パーミル", "%": "パーセント", "ℵ": "アレフ",
           "×": "かける", "÷": "わる", "∞": "むげんだい", "°C": "ど", "°": "ど"},
}
_SYMBOL_WORD_PATTERNS = {language: re.compile("|".join(map(re.escape, words)))  # the first that matches: "°C", "°"
                         for language, words in _SYMBOL_WORDS.items()}


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
    """`table`'s entry for `language` (an espeak-ng code, as `phonemes.resolve_language` gives it) by the longest
    leading part of the code it has ("en-gb-x-rp", then "en-gb", then "en"), or None where it has none."""
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
                 "es": ("y", {"½": "medio"}), "ja": ("と", {})}
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
# denominators 2 to 10; and, where it is not the numerator before the name, the order they are said in: Japanese names
# the denominator first ("3/4" is "よんぶんの3", its denominators in kana: "4ぶんの" was read "shi bunno"). A
# numerator above one is said as its number ("5 eighths", "3 Viertel").
_FRACTION_NAMES = {
    "en": ("one", "s", "half third quarter fifth sixth seventh eighth ninth tenth"),
    "de": ("ein", "", "halb Drittel Viertel Fünftel Sechstel Siebtel Achtel Neuntel Zehntel"),
    "fr": ("un", "s", "demi tiers quart cinquième sixième septième huitième neuvième dixième"),
    "es": ("un", "s", "medio tercio cuarto quinto sexto séptimo octavo noveno décimo"),
    # a lone "1" is "itsi" (`_CURRENCY_WORDS`)
    "ja": ("いち", "", "にぶんの さんぶんの よんぶんの ごぶんの ろくぶんの ななぶんの はちぶんの "
           "きゅうぶんの じゅうぶんの", "{name}{numerator}"),
}


def _fraction_words(one: str, plural: str, names: str, order: str = "{numerator} {name}") -> dict[str, str]:
    """Each vulgar fraction with a numerator ("↉" has none) → its words, from an entry of `_FRACTION_NAMES`."""
    denominators = dict(zip(range(2, 11), names.split(), strict=True))
    words = {}
    for form, fraction in _VULGAR_FRACTIONS.items():
        numerator, denominator = map(int, form.split("\u2044"))
        name = denominators[denominator]
        if numerator == 1:
            words[fraction] = order.format(numerator=one, name=name)
        elif numerator:
            words[fraction] = order.format(numerator=numerator, name=f"{name.removesuffix(plural)}{plural}")
    return words


_FRACTION_WORDS = {language: _fraction_words(*names) for language, names in _FRACTION_NAMES.items()}
_SAID_FRACTION = re.compile(f"[{''.join(_FRACTION_WORDS['en'])}]")
# A fraction written with a slash that has a vulgar form ("1/2", "3/4 cup"), which espeak-ng read "one slash two":
# as that form, in a language `_FRACTION_WORDS` has. No part of a date or of more slashes ("12/25/2026", "1/2/3") nor
# of a word or a decimal number ("A1/2", "1/2.5"; kana may follow or come before, as Japanese writes no space:
# "1/2カップ"); "24/7", "9/11" and "3/10" have no vulgar form and are left to espeak-ng.
_SLASH_FRACTION = re.compile(rf"(?<!{_SPACED_LETTER})(?<![\d_.,/])[1-9]\d*/\d+(?!{_SPACED_LETTER}|[\d_/]|[.,]\d)")


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
# A power written with a caret, as plain text writes it ("10^3", "x^2", "10^-3"; espeak-ng left the caret out, "ten
# three"), is its superscript (`_caret_powers`), read as the table above says: in a language that has the words for
# any power, after a digit, a bracket or a letter standing alone ("Smith^12" and "2^3^2" are left as written)
_CARET_POWER = re.compile(r"(?:(?<=[\d)\]])|(?<=(?<![^\W\d_])[^\W\d_]))(?<!\^\d)(?<!\^\d\d)\^(?P<sign>[+\-−]?)"
                          r"(?P<power>\d+)(?![\d.,]\d|\d|\^)")
_TO_SUPERSCRIPT = str.maketrans("0123456789+-−", "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁻")


def _caret_powers(text: str, language: str) -> str:
    """`text` with its powers written with a caret (`_CARET_POWER`) as superscripts ("10^-3" → "10⁻³"), in a language
    that has words for any power (`_POWER_WORDS`); as it is in any other, whose voice would drop a superscript."""
    words = _for_language(_POWER_WORDS, language)
    if words is None or words[2] is None:
        return text
    return _CARET_POWER.sub(lambda caret: caret.group()[1:].translate(_TO_SUPERSCRIPT), text)


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


# An amount with a sign before it ("-$1,234.56", "€ 5", "$5 million") or after it ("5,50 €", "5€"). The language's
# thousands mark before three digits parts thousands (but after a lone 0: "1.234,56 €" in German, "$1,234.56" in
# English), and so does either mark before two groups of three or more ("$1,000,000" in Spanish, "€1.000.000" in
# English), and either mark before two the cents; before a scale word, any digits after either are decimals ("$1.5
# million", "$1.50 million": espeak-ng read "dollar one point five million"), and so are three after the language's
# decimal mark (`_DECIMAL_MARK`: "$1.234 million" in English, "1,234 Millionen €" in German; they were read as
# thousands, "1234 million"); other digits after that mark are decimals too ("$2.5", "$3.599" a gallon: espeak-ng read
# "dollar two point five", the thousands rule "three thousand five hundred..."). A year before a sign ("2020 €
# prices") reads as an amount: only the meaning tells it from one ("1500 € for the flat").
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
# is left to espeak-ng. Japanese has none: it counts in まん (10⁴) and おく (10⁸), so "$5M" is "500まんドル", "$3bn"
# "30おくドル": the amount's digits change, which no word put for the abbreviation says.
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
    short scale as `short_scale` matches it (a regular expression; "(?!)" for none): digits after that mark are
    decimals (but the cents' two), never a thousands group."""
    scale_ahead = rf"(?: {_SCALE_WORD}|{short_scale})"
    mark, group_mark = re.escape(decimal_mark), "," if decimal_mark == "." else r"\."
    groups = rf"(?:{group_mark}\d{{3}})+|(?:[.,]\d{{3}}){{2,}}"  # two groups of three are thousands with either mark
    amount = (rf"(?<![\d.,])(?P<units>[1-9]\d{{0,2}}(?:{groups})|\d+)"
              rf"(?:(?P<decimals>[.,]\d+)(?={scale_ahead})|[.,](?P<cents>\d\d)(?!\d)|(?P<fraction>{mark}\d+))?"
              rf"(?![\d]|[.,]\d)")
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
        digits = match["decimals"] or match["fraction"]  # the mark and the digits after it
        decimals = mark + digits[1:] if digits else ""
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
# "-te" after "der" ("der dritte Mai"; "die" and "das" before a word made with the month: "die 3. Mai-Woche" is "die
# dritte Mai-Woche", once "die dritten") and "-ten" elsewhere, as after "am", "vom", "bis zum", "den", a "der" after a
# preposition, which is no nominative ("an der 1. Mai-Kundgebung" is "an der ersten", once "an der erste"), and on a
# letter's date line ("Berlin, 3. Oktober" is "den dritten Oktober"; a heading's number before such a word, "Kapitel 3.
# Mai-Woche", is not told from a day, and is read as one); so are the days before it that share its month ("vom
# 3.–5. Mai" is "vom dritten bis fünften Mai", "am 1. und 2. Mai", "vom 3. bis zum 5. Mai", "zwischen dem 3. und dem
# 5. Mai": once "vom drei. bis zum fünften Mai"), the dash between them said "bis"; a year of 1100 to 1999 after it in
# hundreds, as a year is said ("neunzehnhundertneunzig"; espeak-ng read "eintausend neunhundertneunzig").
_GERMAN_MONTHS = "Januar Februar März April Mai Juni Juli August September Oktober November Dezember".split()
_GERMAN_DAYS = ("erst zweit dritt viert fünft sechst siebt acht neunt zehnt elft zwölft dreizehnt vierzehnt fünfzehnt "
                "sechzehnt siebzehnt achtzehnt neunzehnt zwanzigst einundzwanzigst zweiundzwanzigst "
                "dreiundzwanzigst vierundzwanzigst fünfundzwanzigst sechsundzwanzigst siebenundzwanzigst "
                "achtundzwanzigst neunundzwanzigst dreißigst einunddreißigst").split()
_GERMAN_DAY_NUMBER = r"(?:[1-9]|[12]\d|3[01])\."
_AFTER_NO_PREPOSITION = "".join(rf"(?<!\b(?i:{word}) )"
                                for word in "an auf aus bei in mit nach seit trotz von vor während wegen zu".split())
_GERMAN_DAY = re.compile(rf"(?P<nominative>(?<!\w)(?:{_AFTER_NO_PREPOSITION}[Dd]er|[Dd]ie|[Dd]as) )?(?<![\d.,])"
                         rf"(?P<days>{_GERMAN_DAY_NUMBER}"
                         rf"(?: ?(?:[-–]|bis(?: zum)?|und(?: de[mnr])?|,) ?{_GERMAN_DAY_NUMBER})*) ?"
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
# "2ᵉ" ("vingt et un e", "deux e") as "21ème" (and see `_french_ordinals_said`), Spanish "2.º", "2.ª" ("dos
# punto o") as "2º", "2ª", and the short forms before a masculine noun, "1.er", "3.er" ("uno punto er"), as "primer",
# "tercer"; German days before their month (`_GERMAN_DAY`) and ordinals after an article (`_GERMAN_ORDINAL`) as
# their words. A language's entry is a pattern and what replaces its matches, or a function of the text.
_SPANISH_ORDINAL = re.compile(r"(?<=\d)\.(?=[ºª])|(?<![\w.,])(?P<short>[13])\.?er\b")


def _spanish_ordinal_said(match: re.Match) -> str:
    """A short form's word ("primer", "tercer"); nothing for the period of "2.º", "2.ª"."""
    return {"1": "primer", "3": "tercer", None: ""}[match["short"]]


# A German ordinal after an article or a preposition joined with one, before a noun ("zum 3. Mal", "der 1. Platz",
# "im 2. Stock", "des 3. Jahrhunderts", once "zum drei. Mal", the period a sentence's end): its words, with the
# endings of a day before its month (`_german_day_said`). Without the article, "3." may end a sentence ("Er wurde
# 3. Dann ..."), and so it may before a word that starts one rather than names a thing ("Ich nehme die 3. Sie ist
# ..."): left to espeak-ng; so are numbers past 31.
_SENTENCE_STARTS = ("Ich Du Er Sie Es Wir Ihr Man Der Die Das Den Dem Des Ein Eine Einen Dieser Diese Dieses Aber "
                    "Und Oder Dann Danach Doch Denn Also Jetzt Heute Hier Da Dort So Nun Auch Noch Nicht Wenn Als "
                    "Weil Wie Was Wer Wo Warum Bitte Ja Nein").split()
_GERMAN_ORDINAL = re.compile(rf"(?<!\w)(?:(?P<nominative>(?:{_AFTER_NO_PREPOSITION}[Dd]er|[Dd]ie|[Dd]as) )|"
                             r"(?P<article>(?:[Dd]e[nmrs]|[Aa]m|[Ii]m|[Zz]um|[Zz]ur|[Vv]om|[Bb]eim) ))"
                             rf"(?P<number>{_GERMAN_DAY_NUMBER}) (?=[A-ZÄÖÜ])"
                             rf"(?!(?:{'|'.join(_SENTENCE_STARTS)})\b)")


def _german_ordinal_said(match: re.Match) -> str:
    """The words of a German ordinal (`_GERMAN_ORDINAL`): "zum 3. Mal" → "zum dritten Mal", "der 1. Platz" → "der
    erste Platz"."""
    article = match["nominative"] or match["article"]
    ending = "e" if match["nominative"] else "en"
    return f"{article}{_GERMAN_DAYS[int(match['number'][:-1]) - 1]}{ending} "


def _german_ordinals_said(text: str) -> str:
    """`text` with its German days before their month (`_GERMAN_DAY`) and its ordinals after an article
    (`_GERMAN_ORDINAL`) as words."""
    return _GERMAN_ORDINAL.sub(_german_ordinal_said, _GERMAN_DAY.sub(_german_day_said, text))


# French: "1re", "1ère" ("un re"), and a Roman numeral's ("XIXe siècle" was "gziks siècle", "François Ier" "I E R"),
# as the ordinal's word or its number; "n°" before a number ("N cinq") as "numéro".
_FRENCH_FIRST = re.compile(r"(?<![\w.,])(?:1|I(?=er))(?P<ending>ers?|res?|ères?)\b")  # "Ire" is a word too
_FRENCH_ROMAN_ORDINAL = re.compile(r"(?<![\w.,])(?P<roman>[IVXLC]{2,7}|[VX])(?:e|ᵉ|ème)\b")  # not "Le", "Ce"
_FRENCH_NUMBER_SIGN = re.compile(r"(?<!\w)[nN]° ?(?=\d)")
_ROMAN_VALUES = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100}


def _roman_value(numeral: str) -> int | None:
    """The number a Roman numeral of I, V, X, L and C writes ("XIX" → 19), or None where it is none ("IIX")."""
    values = [_ROMAN_VALUES[letter] for letter in numeral]
    number = sum(-value if value < after else value for value, after in zip(values, [*values[1:], 0], strict=True))
    written, rest = "", number
    for value, letters in ((100, "C"), (90, "XC"), (50, "L"), (40, "XL"), (10, "X"), (9, "IX"), (5, "V"), (4, "IV"),
                           (1, "I")):
        count, rest = divmod(rest, value)
        written += letters * count
    return number if written == numeral else None  # its one way of writing


def _french_ordinals_said(text: str) -> str:
    """`text` with its French short ordinals as espeak-ng reads them (see `_FRENCH_FIRST` and the table below)."""
    text = _FRENCH_NUMBER_SIGN.sub("numéro ", text)
    text = _FRENCH_FIRST.sub(lambda first: ("premier" if first["ending"].startswith("er") else "première")
                             + ("s" if first["ending"].endswith("s") else ""), text)
    text = _FRENCH_ROMAN_ORDINAL.sub(lambda ordinal: f"{number}ème" if (number := _roman_value(ordinal["roman"]))
                                     else ordinal.group(), text)
    return re.sub(r"(?<=\d)(?<!\b1)[eᵉ]\b", "ème", text)


_ORDINALS = {"fr": _french_ordinals_said, "es": (_SPANISH_ORDINAL, _spanish_ordinal_said),
             "de": _german_ordinals_said}


def _ordinals_as_read(text: str, language: str) -> str:
    """`text` with its short ordinals (`_ORDINALS`) as espeak-ng reads them in `language` ("le 21e siècle" → "le
    21ème siècle", "zum 3. Mal" → "zum dritten Mal"); as it is in a language the table has none for."""
    ordinal = _for_language(_ORDINALS, language)
    if ordinal is None:
        return text
    return ordinal(text) if callable(ordinal) else ordinal[0].sub(ordinal[1], text)


# An international phone number: a "+", its country code and two groups of digits or more ("+1 555 123 4567",
# "+49-30-1234567"; one may be in brackets: "+1 (555) 123-4567", "+44 (0)20 7946 0958", once "+1 5 5 5, ..." without
# the pause after the code, and the British one left whole), which espeak-ng read as numbers ("+49 30 1234567" as
# "plus forty nine thirty one million two hundred ..."): its country code as a number, the other groups' digits one by
# one, and a pause (a comma) between groups. Without its "+", a North American number with its area code ("(555)
# 123-4567", "555-123-4567", "555.123.4567", "1-800-555-1234"; once read "five hundred fifty five dash one hundred
# twenty three dash four thousand ...") is read so too, each group's digits; a shorter one ("555-1234") is not told
# from a score or a range, and is left to espeak-ng.
_PHONE_NUMBER = re.compile(r"(?<![\w+])(?P<code>\+\d{1,3})(?:[ .-]?\(\d+\)|(?:[ .-]|(?<=\)))\d+){2,}(?!\w|[.,]\d)"
                           r"|(?<![\w+.,/-])(?:1[ .-])?(?:\(\d{3}\) ?|\d{3}[.-])\d{3}[.-]\d{4}(?![\w/]|[.,-]\d)")


def _phone_numbers_as_read(text: str) -> str:
    """`text` with its phone numbers (`_PHONE_NUMBER`) as read: "+1 555 123 4567" → "+1, 5 5 5, 1 2 3, 4 5 6 7",
    "(555) 123-4567" → "5 5 5, 1 2 3, 4 5 6 7"."""

    def read(number: re.Match) -> str:
        groups = [" ".join(group) for group in re.findall(r"\d+", number.group())]
        return ", ".join([number["code"], *groups[1:]] if number["code"] else groups)

    return _PHONE_NUMBER.sub(read, text)


# Four numbers or more joined by slashes ("the 5/10/15/20 rule", "1/2/3/4"), which espeak-ng read with each slash's
# word ("five slash ten slash fifteen slash twenty"): the numbers one after another, as a reader says them. No date
# (`_date_pattern`) or fraction (`_SLASH_FRACTION`) is part of such a run; three numbers are a date where they make
# one in the language's order (nothing tells "the 5/10/15 rule" from "May 10th, 15"), left to espeak-ng otherwise
# ("50/30/20", "25/12/2026" in US English: a date in another order is not told from a list).
_SLASH_RUN = re.compile(r"(?<![\w/.,])\d+(?:/\d+){3,}(?![\w/]|[.,]\d)")


def _slash_runs_as_read(text: str) -> str:
    """`text` with the slashes of its runs of numbers (`_SLASH_RUN`) as spaces: "5/10/15/20" → "5 10 15 20"."""
    return _SLASH_RUN.sub(lambda run: run.group().replace("/", " "), text)


# Two numbers joined by a slash that English reads one after the other, which espeak-ng read with the slash's word
# ("open twenty four slash seven"): "24/7", "9/11", a pair of equal numbers from 20 ("50/50", "20/20 vision") and a
# split of a hundred in two numbers from 10 ("a 60/40 mix", "the 80/20 rule"). Other pairs may be a date ("12/25",
# "5/5"), a score out of a number ("3/11", "3/3 tests passed", "rated 10/10", "a 1/99 chance") or a fraction
# (`_SLASH_FRACTION`), left to the passes after this one and to espeak-ng.
_SLASH_PAIR = re.compile(r"(?<![\w/.,])(?P<first>[1-9]\d?)/(?P<second>[1-9]\d?)(?![\w/]|[.,]\d)")
_SLASH_PAIRS_READ = {"en": lambda first, second: (first, second) in ((24, 7), (9, 11)) or first == second >= 20
                     or first + second == 100 and min(first, second) >= 10}


def _slash_pairs_as_read(text: str, language: str) -> str:
    """`text` with the slash of the pairs of numbers `language` reads one after the other (`_SLASH_PAIR`,
    `_SLASH_PAIRS_READ`: "24/7" → "24 7", "50/50" → "50 50") as a space; as it is in a language the table has none
    for."""
    read = _for_language(_SLASH_PAIRS_READ, language)
    if read is None:
        return text

    def said(pair: re.Match) -> str:
        first, second = pair.group("first", "second")
        return f"{first} {second}" if read(int(first), int(second)) else pair.group()

    return _SLASH_PAIR.sub(said, text)


# A range of numbers written with an en dash, a wave dash or a tilde ("5–10 minutes", "$5–$10", Japanese "5〜10ふん"),
# which espeak-ng read without a word between the ends ("five ten"), in Japanese as "Japanese letter" or "tilde": the
# word each language says there. A range of times or dates reads before they do ("9:00–17:00", once "9 o'clock–17
# o'clock", and "12/25/2026–12/31/2026", once "December 25th, 2026–December 31st, 2026", lost their dash's digits), and
# so does a range of decades ("the 1990s–2000s", "'80s–'90s": once "nineteen nineties two thousands"); its first end
# may end in "h" or "am" ("15h–17h", "9am–5pm"); its ends may be fractions ("½–¾ cup", "5½–6", once "one half three
# quarters") and its second end negative ("-5 – -10", once "minus five minus ten"). A hyphen is a range's dash
# between two numbers alone (`_hyphen_range`), in a range of money (`_money_range_pattern`) and between two amounts
# that each have their sign ("$5-$10", "5€-10€", read "five dollars ten dollars", "five euros minus ten euros"; spaced
# alike on both sides, so "5€ -10€" keeps its minus). Such amounts may have their scale, written short
# or not ("$5m-$10m", "5 M€–10 M€", once "five million dollars ten million dollars" and "cinq millions d'euros moins
# dix ..."), and so does a hyphen between two numbers that each have their unit of measure (`_UNIT_NAMES`: "5km-10km",
# "5 km–10 km", once "five kilometers ten kilometers"), and one between two whole dates (`_DATE_SHAPE`:
# "12/24/2026-12/26/2026", "24.12.2026-26.12.2026", once no date at all, and "12/24/2026 - 12/26/2026" without its
# word), and one between two times of day (`_CLOCK_END`: "9:00-17:00", "9am-5pm", "9h-17h30", once "nine o'clock
# seventeen hundred", "9 heures-17 heures").
_RANGE_WORDS = {"en": "to", "de": "bis", "fr": "à", "es": "a", "ja": "から"}
# A hyphen between two numbers alone ("pages 5-10", "3-5 days", "1990-95", "won 3-2"), which espeak-ng read "five dash
# ten", is a range, or a score where the second is no greater ("3-2", said "drei zu zwei" in German, "3たい2" in
# Japanese; but "1990-95", a year's last digits); English says an even one without a word ("50-50" is "fifty fifty",
# "2-2" "two two"; "fifty to fifty" is none). A number of four digits before a lesser one that is no year's last
# digits ("article L. 1234-5" of the French labour code, "case 2023-15", once "1234 à 5") is a code's: no score runs to
# thousands. A hyphen of a phone number ("555-1234", a leading zero: "0170-12"), of more numbers ("1-2-3",
# "2026-12-25"), of a word ("A3-5", "3-5x", "COVID-19"; kana and kanji may touch it, as `_SPACED_LETTER` says, and "am"
# or "pm" follow it, "9-5pm"), or of a sum ("10-3=7") is left to espeak-ng. A unit of measure or of time may follow
# it glued ("5-10km", "10-15min", "2-3h", once "five ten kilometers", "ten dash fifteen min"), but "s", which may be
# seconds or a decade's ("the 1950-60s"); and a hyphen and a word may ("a 2-3-day trip", "3-5-year-olds").
# By language: the word of a score, and of an even one
_SCORE_WORDS = {"en": ("to", ""), "de": ("zu", "zu"), "fr": ("à", "à"), "es": ("a", "a"), "ja": ("たい", "たい")}
# A figure's or a table's number written with its chapter's ("see Figure 3-2", "Abb. 3-2", "図3-2", once "figure three
# to two", "3たい2") is one number's parts, left to espeak-ng ("three dash two"), and so are the block and house of a
# Japanese address after its district ("銀座4丁目6-1", once "6から1"). The English words are capitalised, as in a
# label ("I figure 2-3 hours" is a range); "表" is no label after a kanji ("日本代表3-1", the national team).
_NUMBER_LABELS = {language: re.compile(rf"(?:{words}) ?$") for language, words in {
    "en": r"\b(?:Figure|Fig\.|Table)", "de": r"\b(?:Abbildung|Abb\.|Tabelle)", "fr": r"\b(?i:figure|fig\.|tableau)",
    "es": r"\b(?i:figura|fig\.|tabla)", "ja": "図|(?<![\u3400-\u4dbf\u4e00-\u9fff])表|丁目"}.items()}
_HYPHEN_END = r"(?:[1-9]\d{0,3}|0)(?:[.,]\d+)?"


@functools.cache
def _hyphen_range() -> re.Pattern:
    """A hyphen between two numbers alone, as the comment above says; "low" and "high" are its ends."""
    durations = "|".join(unit for unit in _DURATION_UNITS if unit != "s")
    return re.compile(rf"(?<!{_SPACED_LETTER})(?<![\d_.,/:+−=×*÷-])(?<![+=×*÷/] )(?!\d{{3}}-\d{{4}}(?!\d))"
                      rf"(?P<low>{_HYPHEN_END})-(?P<high>{_HYPHEN_END})"
                      rf"(?:(?=[ap]m\b|[AP]M\b|(?:{_UNIT_NAMES}|{durations})(?![\w/]))"
                      rf"|(?!{_SPACED_LETTER}|[\d_/:]|-(?!{_SPACED_LETTER})|[.,]\d| ?[=+×*÷/]))")
# The dash between a range's ends: a hyphen unspaced or spaced on both sides ("5 -10" is a minus), the others either way
_RANGE_DASH = "(?:-| - | ?[–〜~] ?)"
# What may not come just before a date: a number's part or a letter ("v10.12.11", a version; "Ωμέγα12/25/2026"). Kana
# and kanji may: Japanese writes no space ("しめきりは2026-12-25です"; `_SPACED_LETTER`).
_NOTHING_GLUED_BEFORE_A_DATE = rf"(?<!{_SPACED_LETTER})(?<![\d_/.,-])"
# What a range's end written as a date looks like, in any language's order: three numbers joined by slashes or dots,
# the last a year of four digits or two ("12/24/2026", "24.12.26") or the first ("2026/12/24", Japanese's order), or
# ISO's ("2026-12-24"), after no word that brings in a version (a range of versions, "Version 10.12.11-10.12.12",
# would read its second end as a date); whether it is a date the language reads is `_dates_as_words`'s to tell, after
# the range's word parts the two.
_DATE_SHAPE = (r"(?:\d\d?(?:/\d\d?/|\.\d\d?\.)(?:\d{4}|\d\d)|\d{4}(?:-\d\d?-|/\d\d?/)\d\d?)"
               rf"(?!{_SPACED_LETTER}|[\d_/]|[.,]\d)")


# A time of day's end, with its minutes, "am" or "h" ("9:00", "9am", "15h", "15 h"), and such a time's start
_CLOCK_END = r"(?:(?<=\d:\d\d)|(?<=\d[ap]m)|(?<=\d[AP]M)|(?<=\dh)|(?<=\d h))"
_CLOCK_AHEAD = r"(?=\d\d?(?::\d\d|[ap]m|[AP]M| ?h(?:\d\d)?)(?!\w))"
# German marks a range of hours with "Uhr" after its second end alone ("9-18 Uhr", once "neun Strich achtzehn Uhr"):
# its first end an hour of one or two digits, not the last of numbers joined by hyphens ("1-2-3 Uhr")
_UHR_END = r"(?<=\d)(?<!\d\d\d)(?<!-\d)(?<!-\d\d)"
_UHR_AHEAD = r"(?=\d\d?(?:[:.]\d\d)? Uhr\b)"


@functools.cache
def _range_pattern(short_scale: str) -> re.Pattern:
    """Ranges as the comment above says, in a language that writes a short scale as `short_scale` matches it
    (`_short_scale_pattern`); what ends the first amount before the dash, its scale and its sign, is "low_end", the
    first number's unit "unit", and the first date "date"."""
    scale = rf"(?:{short_scale}|(?: {_SCALE_WORD})+)?"
    return re.compile(rf"(?:(?<=[\d{_VULGAR}])|(?<=\dh)|(?<=\d[ap]m)|(?<=\d[AP]M)|(?<=\d0s)) ?[–〜~] ?"
                      rf"(?=[-−]?(?:{_SIGN} ?)?['’]?[\d{_VULGAR}])"
                      rf"|(?<=\d)(?P<low_end>{scale}(?P<sign> ?{_SIGN})?){_RANGE_DASH}"
                      rf"(?(sign)(?=\d[\d.,]*{scale} ?{_SIGN})|(?={_SIGN} ?\d))"
                      rf"|(?<=\d)(?P<unit> ?{_UNIT_NAMES}){_RANGE_DASH}"
                      rf"(?=[-−]?\d[\d.,]* ?{_UNIT_NAMES}(?![\w/]))"
                      rf"|{_AFTER_NO_VERSION_WORD}{_NOTHING_GLUED_BEFORE_A_DATE}(?P<date>{_DATE_SHAPE}){_RANGE_DASH}"
                      rf"(?={_DATE_SHAPE})|{_CLOCK_END}{_RANGE_DASH}{_CLOCK_AHEAD}|{_UHR_END}{_RANGE_DASH}{_UHR_AHEAD}")
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


# A range of decades with a hyphen, or whose first decade has no "s" ("the 1950s-60s", "the 1950-60s", "the 1950–60s",
# "'50s-'60s", "1990-2000s"), read "19 fifties-sixties" and "1950 to sixties": each end a decade, as the decades' pass
# reads them (`_DECADE_WORDS`), in a language that has their words.
_DECADE_RANGE = re.compile(r"(?<![\w.,'’/:-])(?P<low>1\d\d0|20\d0|['’]\d0)(?:['’]?s)?(?:-|–| – | ?[〜~] ?)"
                           r"(?P<high>(?:1\d\d0|20\d0|['’]?\d0)['’]?s)\b")
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
        return f"{low_end or match['unit'] or match['date'] or ''} {word} "

    label, decades = _for_language(_NUMBER_LABELS, language), _for_language(_DECADE_WORDS, language)

    def hyphen(match: re.Match) -> str:
        if label.search(match.string, 0, match.start()):  # "Figure 3-2", "図3-2": a figure's number
            return match.group()
        low, high = (float(end.replace(",", ".")) for end in match.group("low", "high"))
        abbreviated_year = len(match["low"]) == 4 and len(match["high"]) == 2 and high > low % 100  # "1990-95"
        if high > low or abbreviated_year:
            return f"{match['low']} {word} {match['high']}"
        if len(match["low"]) == 4 and match["low"].isdigit():  # "L. 1234-5", "2023-15": a code's
            return match.group()
        score, even = _for_language(_SCORE_WORDS, language)  # a variant's code ("en-us") as its language's
        return " ".join(filter(None, (match["low"], even if high == low else score, match["high"])))

    def ranges(part: str) -> str:
        if decades:
            part = _DECADE_RANGE.sub(lambda match: f"{match['low']}s {word} {match['high']}", part)
        part = _range_pattern(short_scale).sub(dash, _money_range_pattern(short_scale).sub(money, part))
        return _hyphen_range().sub(hyphen, part)

    return _outside(_DASH_RUN, ranges, text)


# A time of day: an hour of 0 to 23 and minutes of two digits ("3:45pm", "15:45"; a ratio "3:2" or "1:2.5" is none),
# which espeak-ng read with the colon kept as a pause ("three: forty five"), French "15h45" as "quinze ache
# quarante-cinq", German "15.45 Uhr" as "fünfzehn Punkt ...". German writes a score as a time ("14:12"), so only one
# followed by "Uhr" is one there, or the first end of a range to such a one ("9:00 bis 17:00 Uhr", once "neun: null
# null bis siebzehn Uhr"); French writes "15h45", "15 h" too. Spanish may write "h" or "horas" after a time
# ("13:00 h"), which the words say already ("13 en punto h" read "hache", "13 en punto horas").
# An hour of 24 is the day's end, with no minutes ("open until 24:00", once "twenty four: zero zero"); "24h" is a
# duration.
_HOUR = r"(?<![\d:.,])(?P<hour>[01]?\d|2[0-3]|24(?=[:.]00(?![:\d])))"
# Seconds after the minutes ("15:00:30", once read "fifteen: zero: thirty"), said after the clock's words
_SECONDS = r"(?::(?P<seconds>[0-5]\d))?"
_MINUTES = rf"(?P<minutes>[0-5]\d){_SECONDS}(?![\d:]|[.,]\d)"
# An English time's "am" or "pm", after which the hour alone is said without "o'clock" ("3:00pm" is "3pm"; "3
# o'clockpm" was read), and before the seconds ("3:00:10pm" is "3pm and 10 seconds").
_MERIDIEM = r"(?P<meridiem> ?(?i:[ap]\.?m)\b)?"
# By language: the time's pattern, the hours said otherwise than by the next entry ("1:05 Uhr" is "ein Uhr 5";
# Japanese "4:00" is "よじ", "9:00" "くじ": "4じ", "9じ" were read "shi ji", "kyuu ji"), the hour's
# words, what follows the hour alone (minutes "00") on a 12-hour clock and on a 24-hour one (an hour of 0 or 13 to 23:
# "15:00" is "fifteen hundred", "fifteen o'clock" was read), what comes before minutes under ten, between the hour's
# words and the minutes ("15:05" is "fifteen oh five", "quince y cinco"), the seconds' words for one second and several
# ("9:05:07" is "nine oh five and seven seconds"; none for "00"), and what follows the hour alone before seconds where
# that differs: Spanish says no "en punto" before them ("15:00:30" is "quince horas y treinta segundos", "9:00:10"
# "nueve y diez segundos"; "15 en punto y 30 segundos" was said). The hour's leading zero is not said ("09:05" was "zero
# nine oh five").
_TIMES = {
    "en": (re.compile(rf"{_HOUR}:{_MINUTES}{_MERIDIEM}"), {}, "{hour}", (" o'clock", " hundred"), " oh ",
           ("and one second", "and {seconds} seconds")),
    "de": (re.compile(rf"{_HOUR}[:.]{_MINUTES}(?: Uhr\b|(?= bis [012]?\d[:.][0-5]\d Uhr\b))"), {1: "ein Uhr"},
           "{hour} Uhr", ("", ""), " ",
           ("und eine Sekunde", "und {seconds} Sekunden")),
    "fr": (re.compile(rf"{_HOUR}(?::(?=\d)| ?h ?)(?:(?P<minutes>[0-5]\d){_SECONDS})?(?![\w:]|[.,]\d)"),
           {1: "une heure"}, "{hour} heures", ("", ""), " ", ("et une seconde", "et {seconds} secondes")),
    "es": (re.compile(rf"{_HOUR}:{_MINUTES}(?: ?h\b| horas\b)?"), {1: "una"}, "{hour}", (" en punto", " en punto"),
           " y ", ("y un segundo", "y {seconds} segundos"), ("", " horas")),
    # in kana, with the number left to espeak-ng as money's is (`_CURRENCY_WORDS`): a lone "1" is "itsi"
    "ja": (re.compile(rf"{_HOUR}:{_MINUTES}"), {1: "いちじ", 4: "よじ", 9: "くじ", 14: "じゅうよじ", 19: "じゅうくじ"},
           "{hour}じ", ("", ""), " ", ("いちびょう", "{seconds}びょう")),
}
# Japanese says a time's minutes with their counter ("15:30" is "15じ 30ぷん"; espeak-ng read "juugo: sanjuu", the
# colon a pause): one minute's words, the counter after the last digits that take "ふん", and after the others.
_MINUTE_COUNTERS = {"ja": ("いっぷん", "2579", "ふん", "ぷん")}


def _minutes_said(minutes: str, language: str) -> str:
    """The minutes `minutes` (their number, no leading zero) as `language` says them after the hour: as written, or
    with their counter (`_MINUTE_COUNTERS`: "30" → "30ぷん", "5" → "5ふん", "1" → "いっぷん")."""
    counters = _for_language(_MINUTE_COUNTERS, language)
    if counters is None:
        return minutes
    one, digits, counter, other_counter = counters
    return one if minutes == "1" else f"{minutes}{counter if minutes[-1] in digits else other_counter}"


def _times_as_words(text: str, language: str) -> str:
    """`text` with its times of day (`_TIMES`) as the words `language` says them ("3:45pm" → "3 45pm", "09:05" → "9
    oh 5", "15:00" → "15 hundred", "9:05:07" → "9 oh 5 and 7 seconds" in English, "15:45 Uhr" → "15 Uhr 45", "15h45"
    → "15 heures 45", "15:30" → "15じ 30ぷん"); as it is in a language the table has none for."""
    time = _for_language(_TIMES, language)
    if time is None:
        return text
    pattern, hours, several, on_the_hour, before_one_digit, (one_second, several_seconds), *before_seconds = time

    def said(match: re.Match) -> str:
        number = int(match["hour"])
        hour = hours.get(number, several.format(hour=number))
        minutes, meridiem = match["minutes"] or "00", match.groupdict().get("meridiem") or ""
        seconds = int(match["seconds"] or 0)
        if minutes == "00":
            twenty_four_hour = number == 0 or number > 12
            hour_alone = before_seconds[0] if seconds and before_seconds else on_the_hour
            clock = hour if meridiem else f"{hour}{hour_alone[twenty_four_hour]}"
        else:
            before = before_one_digit if minutes[0] == "0" else " "
            clock = f"{hour}{before}{_minutes_said(minutes.removeprefix('0'), language)}"
        after = one_second if seconds == 1 else several_seconds.format(seconds=seconds)
        return f"{clock}{meridiem} {after}" if seconds else f"{clock}{meridiem}"

    return pattern.sub(said, text)


# A number of seconds with its "s" glued to it ("wait 10s", "it took 1.5s"), which the decades' pass read "wait tens"
# (espeak-ng: "ten z", "one point five s"): its words for one second and several, by language. A decimal number is
# seconds; a whole one only after a word that takes a duration ("wait", "every", "within", "took", "lasts"): elsewhere
# "10s" may be tens ("10s of people", "counting in 10s") or a decade ("in her 20s", "80s music"), and a lone "5s" a
# plural ("two 5s"), left to the decades' pass and to espeak-ng; so is a duration's seconds after its minutes, "1m
# 30.5s", and tens of a unit, "within 10s of meters". So is a range of such seconds ("wait 5-10s", once "wait five
# tens"; "it took 1.5-2.5s"), whose hyphen the ranges' pass left to this one; and a range of whole numbers anywhere,
# but one of two decades ("20-30s") or from a year ("1950-60s"): "a 3-4s clip" was left "three four s", "5-10s"
# was "five tens".
_SECOND_WORDS = {"en": ("one second", "seconds")}
_DURATION_WORDS = "wait waits waited waiting every within take takes took taking last lasts lasted lasting".split()
_AFTER_DURATION_WORD = "|".join(rf"(?<=\b(?i:{word}) )" for word in _DURATION_WORDS)
_RANGE_OF_SECONDS = r"(?=\d{1,3}-\d+s\b)(?!\d*0-\d*0s)"
_GLUED_SECONDS = re.compile(rf"(?:{_AFTER_DURATION_WORD}|(?<![\w.,])(?<!\d[mh] )"
                            rf"(?:(?=(?:\d+-)?\d+\.\d)|{_RANGE_OF_SECONDS}))"
                            r"(?:(?P<low>\d+(?:\.\d+)?)-)?(?P<number>\d+(?:\.\d+)?)s\b(?! of\b)")


# A duration written short: hours, minutes and seconds, each a number and its abbreviation ("2h 30min", "1h 30m",
# "5m 30s", "2 hrs", "45 mins", German "2 Std. 30 Min.", Spanish "30 seg"), which espeak-ng read as letters or cut
# words ("two aitch thirty min", "zwei S T D. dreißig Min."): the words `language` says for one and for several. "m"
# and "s" alone are meters and seconds' or decades' (`_units_as_words`, `_seconds_as_words`): they are minutes and
# seconds only after a larger unit of the same duration. An abbreviation's period goes with it where the sentence goes
# on ("2 Std. 30 Min. später"); elsewhere it ends the sentence too, and stays. French "15 h" is a time of day
# (`_times_as_words`, before this pass).
_DURATION_UNITS = {"h": 0, "hr": 0, "hrs": 0, "Std": 0, "min": 1, "mins": 1, "Min": 1, "m": 1,
                   "sec": 2, "secs": 2, "seg": 2, "Sek": 2, "s": 2}
_DURATION_UNIT_NAMES = "|".join(_DURATION_UNITS)  # what must follow a unit lets none stop short ("h" of "hrs")
_DURATION_PART = rf"(?P<number>\d+(?:[.,]\d+)?) ?(?P<unit>{_DURATION_UNIT_NAMES})"
_DURATION = re.compile(rf"(?<![\w.,/:-])(?<!{_SIGN})(?:\d+(?:[.,]\d+)? ?(?:{_DURATION_UNIT_NAMES})\.? ?){{0,2}}"
                       rf"{_DURATION_PART}(?:\.(?= ?[,;)]| [\da-zäöüß]))?(?!{_SPACED_LETTER}|[\d/])")
_DURATION_UNIT_WORDS = {
    "en": (("one hour", "hours"), ("one minute", "minutes"), ("one second", "seconds")),
    "de": (("eine Stunde", "Stunden"), ("eine Minute", "Minuten"), ("eine Sekunde", "Sekunden")),
    "fr": (("une heure", "heures"), ("une minute", "minutes"), ("une seconde", "secondes")),
    "es": (("una hora", "horas"), ("un minuto", "minutos"), ("un segundo", "segundos")),
}


def _durations_as_words(text: str, language: str) -> str:
    """`text` with its durations written short (`_DURATION`) as the words `language` says (`_DURATION_UNIT_WORDS`:
    "2h 30min" → "2 hours 30 minutes", German "1 Std." → "eine Stunde"); as it is in a language the table has none
    for, and where its units do not go from larger to smaller, or one alone is "m" or "s"."""
    words = _for_language(_DURATION_UNIT_WORDS, language)
    if words is None:
        return text

    def said(match: re.Match) -> str:
        parts = [(part["number"], _DURATION_UNITS[part["unit"]]) for part in re.finditer(_DURATION_PART, match.group())]
        ranks = [rank for _, rank in parts]
        if ranks != sorted(set(ranks)) or (len(parts) == 1 and match["unit"] in ("m", "s")):
            return match.group()
        return " ".join(_counted(number, words[rank]) for number, rank in parts)

    return _DURATION.sub(said, text)


def _seconds_as_words(text: str, language: str) -> str:
    """`text` with its numbers of seconds glued to their "s" (`_GLUED_SECONDS`) as the words `language` says
    (`_SECOND_WORDS`: "wait 10s" → "wait 10 seconds", "1s" → "one second", "wait 5-10s" → "wait 5 to 10
    seconds"); as it is in a language the table has none for."""
    words = _for_language(_SECOND_WORDS, language)
    if words is None:
        return text
    range_word = _for_language(_RANGE_WORDS, language)

    def said(match: re.Match) -> str:
        seconds = _counted(match["number"], words)
        return f"{match['low']} {range_word} {seconds}" if match["low"] else seconds

    return _GLUED_SECONDS.sub(said, text)


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
# German decades ("die 1990er Jahre", "in den 1980ern"), which espeak-ng read as a number of thousands
# ("eintausend neunhundertneunziger"): in hundreds, as a year is said ("19 hundert 90er", "19 hunderter")
_GERMAN_DECADE = re.compile(r"(?<![\w.,])(?P<century>1[1-9])(?P<decade>\d0)(?=er)")


def _english_decades_said(text: str, language: str) -> str:
    """`text` with its decades (`_DECADE`) as `language`'s words (`_DECADE_WORDS`): "the 1990s" → "the 19 nineties",
    "'90s" → "nineties", "the 2000s" → "the two thousands", "$1000s" → "thousands of dollars"."""
    words = _for_language(_DECADE_WORDS, language)

    def said(match: re.Match) -> str:
        century, tens, sign = match["century"] or "", match["tens"], match["sign"]
        if tens == "0" and not century:  # "'00s": no "hundreds"
            return match.group()
        decade = words.get(f"{century}{tens}0") or f"{century} {words[tens]}".lstrip()  # "100s", "1000s", "2000s" whole
        return f"{decade} of {_for_language(_CURRENCY_WORDS, language)[sign][1]}" if sign else decade

    return _DECADE.sub(said, text)


def _german_decades_said(text: str, language: str) -> str:
    """`text` with its German decades (`_GERMAN_DECADE`) in hundreds: "die 1990er" → "die 19 hundert 90er"."""
    return _GERMAN_DECADE.sub(lambda match: f"{match['century']} hundert"
                              + (f" {int(match['decade'])}" if int(match["decade"]) else ""), text)


_DECADE_READERS = {"en": _english_decades_said, "de": _german_decades_said}


def _decades_as_words(text: str, language: str) -> str:
    """`text` with its decades as the words `language` says them (`_DECADE_READERS`); as it is in a language the
    table has none for."""
    reader = _for_language(_DECADE_READERS, language)
    return text if reader is None else reader(text, language)


def _date_pattern(order: str, then: str = "") -> re.Pattern:
    """A date of day, month and year in numbers, in `order` ("{year}-{month}-{day}"; "{short_year}" for a year of
    four digits or two), no part of a longer number or glued to a letter ("v10.12.11" is a version; `_SPACED_LETTER`),
    and what may follow it, `then`."""
    parts = {"year": r"(?P<year>\d{4})", "short_year": r"(?P<year>\d{4}|\d\d)", "month": r"(?P<month>\d\d?)",
             "day": r"(?P<day>\d\d?)"}
    return re.compile(rf"{_NOTHING_GLUED_BEFORE_A_DATE}{order.format(**parts)}(?![\d/]|[.,-]\d){then}")


# Dates written in numbers, ISO "2026-12-25" and each language's own order ("12/25/2026" in English, "25/12/2026" in
# French and Spanish), which espeak-ng read as numbers and marks ("twelve slash twenty five slash two thousand twenty
# six", "veinticinco barra doce ..."): by language, the date's words, with the month's name and the day as said in a
# date (before its suffix: "25th", French "1er"; "1th" was read "firth"), and the year read as any number. Numbers
# that make no date ("25/12/2026" in English: the other order is not guessed at; "2026-02-30") are left as they are.
# The language's own order may have a year of two digits ("12/25/26"), said as the number it is written ("December
# 25th, 26": its century is not guessed at), and checked as one of this century ("2/29/25" is no date); a fraction
# ("3/4") or a score ("3/10") has no third number, and is none; three numbers that make a date are read as one,
# whatever they count ("the 5/10/15 rule" is "May 10th, 15": nothing in them tells), and four or more are none
# (`_SLASH_RUN`). A year's digits espeak-ng says otherwise than the language does in a date, and what is written for
# them: English says a year's leading zero "oh" ("12/25/05" is "December 25th, oh five"; espeak-ng read "zero five"),
# but in "00"; Japanese says a last 4 "よ" before its counter ("2024ねん" was read "... nijuushi nen"), written after
# the rest of the year ("2020 よねん"). The other languages say the year as espeak-ng reads it.
_YEAR_DIGITS = {"en": (re.compile("^0(?=[1-9]$)"), "oh "), "ja": (re.compile("4$"), "0 よ")}
# German's date ("25.12.2026", "am 25.12.26") is written with the month's name ("25. Dezember 2026"), whose day
# `_ordinals_as_read` says with its case ending ("am fünfundzwanzigsten").
# German writes a version's number as it writes a date ("Python 3.12.10", "2.7.18", once read "dritten Dezember 10"),
# mostly with a part of one digit: a year of two digits is one only after a day and a month of two digits
# ("25.12.26", "03.10.90"). "3.5.26" is left to espeak-ng; so are numbers after a word that brings in a version
# ("Version 10.12.11", "Python 10.12.11"; a letter glued to them, "v10.12.11", makes no date in any language), which
# were read "zehnten Dezember 11": the words for a version and the names of the runtimes, systems and browsers most
# often written with one ("Java 10.12.11", "Node.js" by its last word, "js"; "Android", "Firefox"). A product's name is
# not told from a German noun, both capitalised ("Stand 10.12.11" is a date), so no other word keeps them from one.
_VERSION_WORDS = ("v version release build patch update firmware kernel python java jdk node js ruby php perl rust "
                  "kotlin swift android ios macos windows linux chrome firefox").split()
_AFTER_NO_VERSION_WORD = "".join(rf"(?<!\b(?i:{word}) )" for word in _VERSION_WORDS)
_GERMAN_DATE = _date_pattern(_AFTER_NO_VERSION_WORD
                             + r"(?=\d\d\.\d\d\.|\d\d?\.\d\d?\.\d{{4}}){day}\.{month}\.{short_year}")
# A German date without its year after a word that brings one in ("am 24.12.", "vom 24.12. bis 26.12.2026", "ab
# 1.3."; once read "am vierundzwanzig Punkt zwölf"), written with the month's name ("am 24. Dezember", whose day
# `_ordinals_as_read` says); without such a word, "3.2." is a section's number ("Kapitel 3.2."), left to espeak-ng.
# Its last period also ends the sentence at the end of the text ("Wir kommen am 24.12.").
_GERMAN_CUES = "".join(rf"|(?<=\b(?i:{word}) )" for word in "am vom ab seit bis zum den".split())[1:]
_YEARLESS_DATES = {"de": (re.compile(rf"(?:{_GERMAN_CUES})(?P<day>0?[1-9]|[12]\d|3[01])\.(?P<month>0?[1-9]|1[0-2])\."
                                     r"(?!\d)"), "{day}. {month}", _GERMAN_MONTHS)}
# ISO's "T" before a time of day ("2026-12-25T15:00", whose "T" was read as the letter), read as a space
_ISO_DATE = _date_pattern("{year}-{month}-{day}", r"(?P<clock>T(?=\d\d:\d\d))?")
_DAY_MONTH_YEAR = _date_pattern("{day}/{month}/{short_year}")
# By language: its date's order, the date's words, the months' names, and the day as said in a date: its suffix and
# those said otherwise. English outside the US ("en-gb", "en-029") writes the day first, as French does: its
# "12/11/2026" is the 12th of November, which the US order read "December 11th". Japanese writes the year first, of
# four digits ("2026/12/25"; "26/12/25" is none), and says each part with its counter ("2026ねん 12がつ 25にち"), in
# kana where espeak-ng reads the number otherwise: the months 1, 4, 7 and 9 ("4がつ" was "shi gatsu", but "7がつ" and
# "9がつ" were "sitsi gatsu", "kyuu gatsu", and a lone "1" is "itsi"), the days with their own words ("ついたち",
# "はつか") and those in 9 ("19にち" was "juukyuu nichi"). The dotted form ("2026.12.25") is left to espeak-ng: it is
# also a version's number ("certifi 2024.12.14"), and nothing tells them apart.
_ENGLISH_MONTHS = "January February March April May June July August September October November December".split()
_ENGLISH_DAYS = {"1": "1st", "2": "2nd", "3": "3rd", "21": "21st", "22": "22nd", "23": "23rd", "31": "31st"}
_BRITISH_DATE = (_DAY_MONTH_YEAR, "{day} {month} {year}", _ENGLISH_MONTHS, "th", _ENGLISH_DAYS)
_DATE_WORDS = {
    "en": (_date_pattern("{month}/{day}/{short_year}"), "{month} {day}, {year}", _ENGLISH_MONTHS, "th", _ENGLISH_DAYS),
    "en-gb": _BRITISH_DATE, "en-029": _BRITISH_DATE,
    "fr": (_DAY_MONTH_YEAR, "{day} {month} {year}",
           "janvier février mars avril mai juin juillet août septembre octobre novembre décembre".split(),
           "", {"1": "1er"}),
    "de": (_GERMAN_DATE, "{day} {month} {year}", _GERMAN_MONTHS, ".", {}),
    "es": (_DAY_MONTH_YEAR, "{day} de {month} de {year}",
           "enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre diciembre".split(), "", {}),
    "ja": (_date_pattern("{year}/{month}/{day}"), "{year}ねん {month} {day}",
           "いちがつ 2がつ 3がつ しがつ 5がつ 6がつ しちがつ 8がつ くがつ 10がつ 11がつ 12がつ".split(), "にち",
           {"1": "ついたち", "2": "ふつか", "3": "みっか", "4": "よっか", "5": "いつか", "6": "むいか", "7": "なのか",
            "8": "ようか", "9": "ここのか", "10": "とおか", "14": "じゅうよっか", "19": "じゅうくにち", "20": "はつか",
            "24": "にじゅうよっか", "29": "にじゅうくにち"}),
}


def _calendar_date(match: re.Match, year: int) -> datetime.date | None:
    """The date of `match`'s "day" and "month" in `year`, or None where the month has no such day: not a date."""
    try:
        return datetime.date(year, int(match["month"]), int(match["day"]))
    except ValueError:
        return None


def _dates_as_words(text: str, language: str) -> str:
    """`text` with its dates in numbers (ISO and the language's own order) as the words `language` says them
    (`_DATE_WORDS`, by the longest leading part of the code it has: "2026-12-25" → "December 25th, 2026" in English,
    "25/12/2026" → "25th December 2026" in "en-gb-x-rp", "25 décembre 2026" in French); as it is in a language the
    table has none for."""
    words = _for_language(_DATE_WORDS, language)
    if words is None:
        return text
    order, template, months, suffix, days = words
    year_digits = _for_language(_YEAR_DIGITS, language)

    def said(match: re.Match) -> str:
        date = _calendar_date(match, int(match["year"]) + (2000 if len(match["year"]) == 2 else 0))
        if date is None:
            return match.group()
        day = days.get(str(date.day), f"{date.day}{suffix}")
        clock = " " if match.groupdict().get("clock") else ""
        said_year = year_digits[0].sub(year_digits[1], match["year"]) if year_digits else match["year"]
        return template.format(day=day, month=months[date.month - 1], year=said_year) + clock

    text = order.sub(said, _ISO_DATE.sub(said, text))
    yearless = _for_language(_YEARLESS_DATES, language)
    return text if yearless is None else _yearless_dates_as_words(text, *yearless)


def _yearless_dates_as_words(text: str, pattern: re.Pattern, template: str, months: list[str]) -> str:
    """`text` with the dates without a year that `pattern` finds (`_YEARLESS_DATES`) written by `template` with the
    month's name; a day the month never has ("31.04.") is left as it is."""

    def said(match: re.Match) -> str:
        date = _calendar_date(match, 2000)  # a leap year: "29.02." is a date
        if date is None:
            return match.group()
        end = "." if match.end() == len(text) else ""
        return template.format(day=date.day, month=months[date.month - 1]) + end

    return pattern.sub(said, text)


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
# m²" is "5 meters squared"); English also has the imperial ones ("6 ft" was "six F T"; "in" is left out: "5 in the
# box"). A unit inside a word ("5 kms"; kana may follow: "5kgです") or before another
# ("5 m/s") is left to espeak-ng, and so is a letter after an amount of money ("$1.5m" is no "$1.5 meters") and a
# duration's minutes ("1h 30m", "5m 30s", "5m 30.5s" are no meters); "L" is a liter too.
_UNIT_WORDS = {
    "en": {"km/h": ("one kilometer per hour", "kilometers per hour"), "km": ("one kilometer", "kilometers"),
           "m": ("one meter", "meters"), "cm": ("one centimeter", "centimeters"),
           "mm": ("one millimeter", "millimeters"), "kg": ("one kilogram", "kilograms"), "g": ("one gram", "grams"),
           "mg": ("one milligram", "milligrams"), "l": ("one liter", "liters"), "ml": ("one milliliter", "milliliters"),
           "°C": ("one degree Celsius", "degrees Celsius"), "°F": ("one degree Fahrenheit", "degrees Fahrenheit"),
           "mph": ("one mile per hour", "miles per hour"), "mi": ("one mile", "miles"), "ft": ("one foot", "feet"),
           "yd": ("one yard", "yards"), "lbs": ("one pound", "pounds"), "lb": ("one pound", "pounds"),
           "oz": ("one ounce", "ounces")},
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
_UNIT = re.compile(rf"(?<![\d.,])(?<!{_SPACED_LETTER})(?<!{_SIGN})(?<!{_SIGN} )(?<!\dh )"
                   rf"(?P<number>\d+(?:[.,]\d+)*(?: ?{_SAID_FRACTION.pattern})?|{_SAID_FRACTION.pattern}) ?"
                   rf"(?P<unit>{_UNIT_NAMES})"
                   rf"(?!{_SPACED_LETTER}|[\d/]| \d+(?:\.\d+)?s\b)")


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
        return _counted(match["number"], words)

    return _UNIT.sub(said, text)


def _counted(number: str, words: tuple[str, str]) -> str:
    """`number` (digits) said with a unit's `words` for one and for several ("one second", "5 seconds")"""
    return words[0] if number == "1" else f"{number} {words[1]}"
