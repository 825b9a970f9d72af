"""Written text → the words espeak-ng reads (`valle_hf.text_normalization`): Unicode forms, and numbers, money,
dates, times, units, ranges, phone numbers and symbols as the language says them, checked through `phonemize` against
the phonemes of the words expected."""

from __future__ import annotations

import pytest

from valle_hf import phonemes
from valle_hf.phonemes import phonemize
from valle_hf.text_normalization import _ordinals_as_read, _ranges_as_words, normalize_text, verbalize


def espeak_alone(text: str, language: str) -> str:
    """The phonemes espeak-ng's voice for `language` gives `text` as it is, without the text normalisation: what a
    text the normalisation leaves alone must be read as."""
    return phonemes._espeak_backend(phonemes._check_language(language)).phonemize([text], strip=True)[0]


def test_decomposed_and_full_width_text_reads_as_its_composed_ascii_form():
    import unicodedata

    for text, language in (("Grüße aus Köln, café.", "de"), ("Ça va, garçon?", "fr")):
        decomposed = unicodedata.normalize("NFD", text)
        assert decomposed != text
        assert normalize_text(decomposed) == text  # composed (NFC), what espeak reads correctly
        assert phonemize(decomposed, language) == phonemize(text, language)
    assert phonemize("Ｈｅｌｌｏ ｗｏｒｌｄ．") == phonemize("Hello world.")  # U+FF01..FF5E → ASCII
    assert normalize_text("ＡＢＣ！１２３") == "ABC!123"
    assert normalize_text("\uff01\uff5e") == "!~"  # the block's first and last forms


@pytest.mark.parametrize("language", ["en", "fr", "de", "ja"])
def test_the_digits_of_every_script_read_as_the_number_they_write(language):
    """espeak-ng's voices left Arabic-Indic, Devanagari or Thai digits out ("Pay ٣٥ dollars" was "pay dollars", and
    "٣٥" alone in German no phonemes at all): every script's decimal digits read as the ASCII digits they are."""
    import unicodedata

    digits = [char for char in map(chr, range(0x80, 0x20000)) if unicodedata.category(char) == "Nd"]
    assert len(digits) > 500 and normalize_text("".join(digits)) == "".join(
        str(unicodedata.digit(char)) for char in digits)
    for text, ascii_text in (("٣٥", "35"), ("५ 7", "5 7"), ("๓", "3"), ("٣٫٥ ١٬٠٠٠", "3.5 1,000"), ("𝟓", "5")):
        assert phonemize(text, language) == phonemize(ascii_text, language), text
    assert normalize_text("a٫b ٬") == "a٫b ٬"  # an Arabic separator between no digits is none


def test_a_japanese_decimal_point_is_read_and_its_decimals_one_by_one():
    """espeak-ng's Japanese voice dropped the point: "3.5メートル" was "san go meetoru" (three five), "3.14" "san ichi
    yon". Numbers of more points (a date, a version) or after a letter are no decimal numbers, and other languages'
    voices read the point themselves."""
    for text, read in (("3.5メートル", "3てん5メートル"), ("3.14", "3てん1 4"), ("0.5です", "0てん5です"),
                       ("1,234.5", "1,234てん5"), ("3.5〜4.5メートル", "3てん5 から 4てん5メートル")):
        assert normalize_text(text) == text and verbalize(text, "ja") == read
        assert phonemize(text, "ja") == phonemize(read, "ja")
    for text in ("2026.12.04", "1.2.3", "v1.2", "3.", ".5", "3.5,4.5"):
        assert verbalize(text, "ja") == text
    assert verbalize("3.14 m", "en") == "3.14 meters"


def test_roman_numerals_degree_signs_and_squared_units_read_as_what_they_stand_for():
    """espeak-ng said "Chapter Ⅻ." as "Chapter letter 2 1 6 b.", left "℃" out ("It is 5.") and read "㎏" as "Chinese
    symbol": each now reads as the letters it stands for."""
    for text, plain, language in (("Chapter Ⅻ.", "Chapter XII.", "en"), ("Henry ⅷ.", "Henry viii.", "en"),
                                  ("It is 5 ℃.", "It is 5 °C.", "en"), ("Il fait 5 ℉.", "Il fait 5 °F.", "fr"),
                                  ("It weighs 5 ㎏.", "It weighs 5 kg.", "en"),
                                  ("It is 5 ㎛ wide.", "It is 5 \N{MICRO SIGN}m wide.", "en"),
                                  ("It goes 5 ㎧.", "It goes 5 m/s.", "en"), ("It is 5 ㏀.", "It is 5 kΩ.", "en")):
        assert phonemize(text, language) == phonemize(plain, language), text
    assert "Chinese" not in phonemize("5 ㎛, 5 ㎨, 5 ㏁.", "en")  # what espeak-ng says of a symbol it cannot read
    assert phonemize("5 ㎛.", "en") != phonemize("5 \N{GREEK SMALL LETTER MU}m.", "en")  # "micro", not "mew"
    assert normalize_text("ⅠⅯ ㏄ ㏿") == "IM cc gal"  # the blocks' first and last forms
    assert normalize_text("㎡ ㎨") == "m² m/s²"  # powers as superscripts, for `_SYMBOL_WORDS` to read
    assert normalize_text("㍻ ㍿") == "㍻ ㍿"  # 平成, 株式会社: kanji, left to the script checks


@pytest.mark.parametrize(("text", "words", "language"), [
    ("It is 5 ㎡.", "It is 5 m squared.", "en"), ("Il fait 5 ㎡.", "Il fait 5 m carré.", "fr"),
    ("x² + y³", "x squared + y cubed", "en"), ("(a+b)²", "(a+b) squared", "en"), ("5 m³", "5 m cube", "fr"),
    ("x²", "x hoch zwei", "de"), ("5 ㎥", "5 m al cubo", "es"), ("² see below", "2 see below", "en"),
    ("x²y", "x squared y", "en"), ("6×10²³", "6×10 to the power of 23", "en"),
    ("10⁻³ m", "10 to the power of minus 3 m", "en"),
    ("x⁴ + (a)⁵", "x to the power of 4 + (a) to the power of 5", "en"), ("word¹ here", "word 1 here", "en"),
    ("10⁻³", "10 puissance moins 3", "fr"), ("10⁶ Zellen", "10 hoch 6 Zellen", "de"), ("x⁴", "x elevado a 4", "es"),
    ("5 ㎡", "5 m じじょう", "ja"),
    # with a caret, as plain text writes powers: espeak-ng left the caret out ("ten three")
    ("10^3", "10 cubed", "en"), ("10^-3 m", "10 to the power of minus 3 m", "en"), ("x^2", "x hoch zwei", "de"),
    ("(a+b)^4 and 2^10", "(a+b) to the power of 4 and 2 to the power of 10", "en"), ("10^−3", "10 puissance moins 3",
                                                                                    "fr"),
])
def test_a_power_reads_as_one(text, words, language):
    """espeak-ng read "m²" and "㎡" (then "m2") as "m two", French "㎡" as "m deux", "10²³" as "ten squared cubed" and
    "10⁻³" as "ten three": a superscript after a digit, a bracket or a letter standing alone is a power, and "²" or
    "³" after any letter too ("m²"), read as the language says them; after a word ("word¹", a footnote's mark) or
    alone, as their digits. A caret's power is its superscript's (`test_a_caret_is_...`)."""
    assert phonemize(text, language) == phonemize(words, language)


def test_a_caret_is_a_power_only_between_a_base_and_a_whole_number_in_a_language_with_words_for_powers():
    """Written as a superscript in every language, a caret's power was dropped or misread by the voices that have no
    words for powers ("10^12" in Russian was "ten"), and one after a word read as a footnote ("Smith^12", "... two")."""
    from valle_hf.text_normalization import _caret_powers

    assert _caret_powers("10^3, x^-2, (a)^+4, [b]^−5, 2^10", "en") == "10³, x⁻², (a)⁺⁴, [b]⁻⁵, 2¹⁰"
    # spaced, no base, a decimal, no number, after a word, one of several
    for text in ("a ^ 2", "^2", "10^3.5", "10^3,5", "10^34.5", "x^y", "Smith^12", "ab^10", "2^3^2", "2^34^5"):
        assert _caret_powers(text, "en") == text
    for language in ("ja", "ru", "it", "pt"):  # no words for any power: their voices drop a superscript
        assert verbalize("10^12", language) == "10^12"
        assert phonemize("10^12", language) == espeak_alone("10^12", language)


@pytest.mark.parametrize(("text", "words", "language"), [
    ("5‰ off.", "5 per mille off.", "en"), ("1 ‱", "1 per ten thousand", "en"), ("ℵ zero", "aleph zero", "en"),
    ("Brand℠ ok", "Brand service mark ok", "en"), ("℅Bob", "care of Bob", "en"), ("5 ‰", "5 pour mille", "fr"),
    ("№ 5", "numéro 5", "fr"), ("ℵ", "aleph", "fr"), ("5 ‰", "5 Promille", "de"), ("ℵ", "Aleph", "de"),
    ("5 ‰", "5 por mil", "es"), ("№ 5", "número 5", "es"), ("5 = 5", "5 égale 5", "fr"),
    ("a ≠ b", "a différent de b", "fr"), ("a ≤ b", "a inférieur ou égal à b", "fr"),
    ("© Müller", "Copyright Müller", "de"), ("5 × 2", "5 por 2", "es"), ("5 ± 2", "5 más o menos 2", "es"),
    ("Marca™", "Marca marca comercial", "es"), ("¾ kilo", "tres cuartos kilo", "es"), ("5‰", "5 パーミル", "ja"),
    ("50%です", "50 パーセント です", "ja"),
    ("5×2", "5 かける 2", "ja"), ("25℃です", "25 ど です", "ja"), ("25 °C", "25 ど", "ja"), ("90°", "90 ど", "ja"),
    ("(‰) «℅Bob»", "(per mille) «care of Bob»", "en"), ("(№ 5)", "(numéro 5)", "fr"),
])
def test_symbols_a_voice_leaves_out_or_says_as_a_code_point_read_as_their_words(text, words, language):
    """espeak-ng left "‰", "‱", "℠", "℅" out ("5 ‰ off" was read "5 off"; "№", "=", "×", "©" and more in French, German,
    Spanish or Japanese: "25℃" was "nijuugo (en)C"), said "ℵ" (and "™" in Spanish) as its code point ("letter 2 1 3
    5"), and handed "≠", "±" to the English voice in French and Spanish. After an opening bracket or quote, a word
    for a symbol has no space before it ("( per mille)")."""
    from conftest import logged_warnings

    with logged_warnings() as logged:
        assert phonemize(text, language) == phonemize(words, language)
    assert "left out" not in logged.out, logged.out


@pytest.mark.parametrize(("text", "words", "language"), [
    ("It costs $5.", "It costs 5 dollars.", "en"), ("It costs $5.50 today.", "It costs 5 dollars 50 today.", "en"),
    ("£20 and €3", "20 pounds and 3 euros", "en"), ("$1 or ¥500", "one dollar or 500 yen", "en"),
    ("-$1,234.05 ok", "minus 1234 dollars 05 ok", "en"), ("5 $ or 1 €", "5 dollars or one euro", "en"),
    ("$ 5 million", "5 million dollars", "en"), ("US$5", "US 5 dollars", "en"), ("(₹100)", "(100 rupees)", "en"),
    ("Il coûte $5,50 ou -5 €.", "Il coûte 5 dollars 50 ou moins 5 euros.", "fr"), ("£1", "une livre", "fr"),
    ("5,50 €", "5 euros 50", "fr"), ("Es kostet 1.234,56 €.", "Es kostet 1234 Euro 56.", "de"),
    ("€1 und $5 Millionen", "ein Euro und 5 Millionen Dollar", "de"), ("$5 y 5€", "5 dólares y 5 euros", "es"),
    ("-£1,50", "menos una libra 50", "es"), ("₹2", "2 rupias", "es"), ("$5.00", "5 dollars", "en"),
    ("5,05 €", "5 Euro 05", "de"), ("$1.5 million", "1.5 million dollars", "en"),
    ("€ 2.75 billion today.", "2.75 billion euros today.", "en"), ("5 millions $", "5 millions de dollars", "fr"),
    ("-1,5 million €", "moins 1,5 million d'euros", "fr"), ("$5 millones", "5 millones de dólares", "es"),
    ("5 mil millones €", "5 mil millones de euros", "es"), ("$5 mil", "5 mil dólares", "es"),
    ("2 Milliarden €", "2 Milliarden Euro", "de"), ("¥500です", "500 えんです", "ja"),
    ("-¥1", "マイナス いちえん", "ja"), ("$1.234 million", "1.234 million dollars", "en"),
    ("$1,234 million", "1234 million dollars", "en"), ("1,234 Millionen €", "1,234 Millionen Euro", "de"),
    ("1.234 Millionen €", "1234 Millionen Euro", "de"), ("$1.5 Millionen", "1,5 Millionen Dollar", "de"),
    ("1.234 millones €", "1234 millones de euros", "es"), ("$5.05", "5 ドル 5 セント", "ja"),
    ("€1,01", "いちユーロ いちセント", "ja"), ("£2.50", "2 ポンド 50 ペンス", "ja"),
    ("1\u202f000\u202f000 €, 2000000 $", "1000000 d'euros, 2000000 de dollars", "fr"),
    ("1.000.000 €, 2.500.000 €", "1000000 de euros, 2500000 euros", "es"),
    # decimals but the cents' two, by the language's mark: "$2.5" was "dollar two point five", "$3.599" (a gallon)
    # "three thousand five hundred ninety-nine dollars", German "3,599 €" "dreitausend..."
    ("It costs $2.5 a share, $0.125 a unit.", "It costs 2.5 dollars a share, 0.125 dollars a unit.", "en"),
    ("Gas is $3.599 today.", "Gas is 3.599 dollars today.", "en"),
    # but two groups of three are thousands with either mark
    ("Cuesta $1,000,000.", "Cuesta 1000000 de dólares.", "es"), ("€1.000.000", "1000000 euros", "en"),
    ("1,000,000 $", "1000000 Dollar", "de"),
    ("3,599 € und 3.599 €", "3,599 Euro und 3599 Euro", "de"),
])
def test_an_amount_of_money_reads_as_the_language_says_it(text, words, language):
    """espeak-ng read a sign before its amount first ("$5" as "dollar five"), "$5.50 today." as "dollar five.", the
    rest lost, "-$5" and "-5 €" without the minus in French and Spanish, and "5 €" as "cinco euro", "1 €" as "one
    euros"; "$5.05" was "five dollars five", the cents' zero lost, "$1.5 million" "dollar one point five million",
    "$5 millones" "cinco dólares millones", Japanese "¥500" "gohyaku" (the yen left out), and a scale before a sign
    after the amount ("5 millions $") was left to espeak-ng, which said no "de". Three digits after the language's
    decimal mark before a scale word are decimals ("$1.234 million" was "1234 million dollars", German "1,234
    Millionen €" "1234 Millionen"), read with its word ("$1.5 Millionen" was "eins Punkt fünf"). Japanese says the
    cents' word ("$5.05" was "go doru rei go"). Whole millions in digits are said as a scale is, with "de" in French
    and Spanish ("1 000 000 €" was "un million euros")."""
    assert phonemize(text, language) == phonemize(words, language)


@pytest.mark.parametrize(("text", "words", "language"), [
    ("$10k, $5m, £1bn, $10K", "10 thousand dollars, 5 million dollars, 1 billion pounds, 10 thousand dollars", "en"),
    ("€2.5M and $3B, $1tn.", "2.5 million euros and 3 billion dollars, 1 trillion dollars.", "en"),
    ("$1.234bn, 5k $", "1.234 billion dollars, 5 thousand dollars", "en"),
    ("5 Mio. €, 1 Mio €, 5 Mrd. €", "5 Millionen Euro, eine Million Euro, 5 Milliarden Euro", "de"),
    ("Es kostet €1,5 Mio.", "Es kostet 1,5 Millionen Euro.", "de"),
    ("5 M€, 1 M€, 5 Md€, 5 k€", "5 millions d'euros, un million d'euros, 5 milliards d'euros, 5 mille euros", "fr"),
    ("5 M€", "5 millones de euros", "es"),
    ("1 Million €, 1 Mrd. € und 1 Tsd. €", "eine Million Euro, eine Milliarde Euro und ein Tausend Euro", "de"),
    ("1 M€, $1 mil", "un millón de euros, mil dólares", "es"), ("1 k€", "mille euros", "fr"),
])
def test_a_scale_written_short_after_an_amount_of_money_is_said_as_its_word(text, words, language):
    """espeak-ng read "$10k" as "ten dollarsk", "£1bn" as "one poundbn", "€2.5M" as "euros two point five M", German
    "5 Mrd. €" as "fünf M R D. Euro", French "5 M€" as "cinq M euros"; one before a scale as a number alone ("eins
    Million Euro", "uno millón", "un mille euros")."""
    assert phonemize(text, language) == phonemize(words, language)


@pytest.mark.parametrize(("text", "words", "language"), [
    ("1 Milliarde Menschen, -1 Million, 1 Tausend", "eine Milliarde Menschen, minus eine Million, ein Tausend", "de"),
    ("1 millón de personas, 1 mil personas", "un millón de personas, mil personas", "es"),
    ("1 mille personnes", "mille personnes", "fr"),
])
def test_one_before_a_scale_noun_is_said_as_in_money(text, words, language):
    """espeak-ng read "1 Milliarde" as "eins Milliarde", "1 millón" as "uno millón", "1 mille" as "un mille", as it
    did in amounts of money; a 1 that ends another number, or before another word, keeps its reading."""
    from valle_hf.text_normalization import _one_before_scale_as_read

    assert phonemize(text, language) == phonemize(words, language)
    for other in ("31 Million", "0,1 Million", "0.1 Million", "1 Millionär", "1 Millionen", "1 Tausender"):
        assert _one_before_scale_as_read(other, "de") == other


def test_a_letter_after_an_amount_that_is_no_short_scale_is_left_to_espeak():
    """In English a short scale is glued to its amount and no word follows it: "$5 m", "$5 T-shirts", "$10km" are no
    millions or trillions; nor is "5k" without a sign."""
    from valle_hf.text_normalization import _currency_as_words

    text = "$5 m, $5 T-shirts, $10km, 5k"
    assert _currency_as_words(text, "en") == "5 dollars m, 5 dollars T-shirts, 10 dollarskm, 5k"


@pytest.mark.parametrize(("text", "language"), [
    ("$HOME is set", "en"), ("Version 1.2.3$", "en"), ("5 mill. €", "es"), ("$5", "it"),
])
def test_what_is_no_amount_of_money_here_is_left_to_espeak(text, language):
    """A sign without an amount, a scale the table has no word for, and a language it has no words for are read by
    espeak-ng as they are."""
    assert phonemize(text, language) == espeak_alone(text, language)


@pytest.mark.parametrize(("text", "plain", "language"), [
    ("1⁄2 cup", "½ cup", "en"), ("3⁄4 Liter", "¾ Liter", "de"), ("Step ① and ⑳, ⑴.", "Step 1 and 20, (1).", "en"),
    ("Étape ⑩.", "Étape 10.", "fr"),
])
def test_slashed_fractions_and_circled_numbers_read_as_what_they_stand_for(text, plain, language):
    """espeak-ng read "1⁄2" (the fraction slash) as "one two" and left circled numbers out."""
    assert phonemize(text, language) == phonemize(plain, language)


@pytest.mark.parametrize(("text", "words", "language"), [
    ("2½ cups", "2 and ½ cups", "en"), ("2 ¾", "2 and ¾", "en-gb"), ("2 1⁄2 cups", "2 and ½ cups", "en"),
    ("2¼ kilos", "2 et ¼ kilos", "fr"), ("2½", "2 y medio", "es"), ("2½ kilos", "2 et demi kilos", "fr"),
    ("2 et ½", "2 et demi", "fr"), ("2 y ½", "2 y medio", "es"), ("2 y ¾", "2 y tres cuartos", "es"),
])
def test_a_whole_number_and_its_fraction_are_said_with_the_word_between_them(text, words, language):
    """espeak-ng read "2½" as "two a half", French "deux un demi", Spanish "dos un medio", and "2 et ½" as "deux et un
    demi" (a half after the word is "deux et demi", "dos y medio"); a fraction alone or after a comma is no part of a
    number."""
    from valle_hf.text_normalization import _mixed_numbers_as_words

    assert phonemize(text, language) == phonemize(words, language)
    assert _mixed_numbers_as_words("½ cup, 5, ½", language) == "½ cup, 5, ½"


@pytest.mark.parametrize(("text", "words", "language"), [
    ("1/2, 3/4 cup, 2/3", "one half, three quarters cup, two thirds", "en"),
    ("1/4 mile, 5/8, ⅝, ⅕", "one quarter mile, five eighths, five eighths, one fifth", "en"),
    ("1 1/2 cups, 2¼, 1 ¾", "one and a half cups, two and a quarter, one and three quarters", "en-gb"),
    ("1/2 kg, ½ kg, 2½ kg", "one half kilograms, one half kilograms, two and a half kilograms", "en"),
    ("1/2, 3/4, ⅛", "ein halb, drei Viertel, ein Achtel", "de"),
    ("1/2, 3/4, ⅓, 2/3, 2 1/4", "un demi, trois quarts, un tiers, deux tiers, deux et un quart", "fr"),
    ("1/2, 3/4, ⅓, 1 1/2", "un medio, tres cuartos, un tercio, uno y medio", "es"),
    ("(1/2 cup), [⅝]", "(one half cup), [five eighths]", "en"), ("(1/2)", "(un demi)", "fr"),
    ("1/2カップ、やく3/4です、⅝", "にぶんのいち カップ、やく よんぶんの3 です、はちぶんの5", "ja"),
    ("2½、2 1/2", "2 と にぶんのいち、2 と にぶんのいち", "ja"),
])
def test_a_fraction_is_said_as_one(text, words, language):
    """espeak-ng read "1/2" as "one slash two", left out "⅝" and "⅕" (refused alone: nothing to read), and French and
    Spanish handed "⅓" to the English voice; "1 1/2" was "one one slash two". Japanese names the denominator first
    ("3/4" was "san (en)slash(ja) shi"; "½" was left out)."""
    assert phonemize(text, language) == phonemize(words, language)


@pytest.mark.parametrize("language", ["en", "de", "fr", "es", "ja", "it"])
def test_what_is_no_fraction_is_left_to_espeak(language):
    """A date's or a longer run's slashes, a numerator not below its denominator, a fraction with no vulgar form, a
    path, a word's or a decimal number's digits are no fraction; in a language the table has no words for, neither is
    "1/2"."""
    from valle_hf.text_normalization import _fractions_as_words

    text = "12/25/2026, 1/2/3, 24/7, 9/11, 3/10, 0/3, a/b, A1/2, 1/2.5, 1/2x, é1/2, 1/2é, _1/2, α1/2, 1/2я"
    assert _fractions_as_words(text, language) == text
    assert _fractions_as_words("1/2", "it") == "1/2"


@pytest.mark.parametrize(("text", "words", "language"), [
    ("5–10 minutes", "5 to 10 minutes", "en"), ("$5–$10", "5 dollars to 10 dollars", "en"),
    ("5 – 10 Minuten", "5 bis 10 Minuten", "de"), ("5–10 minutes", "5 à 10 minutes", "fr"),
    ("5–10 minutos", "5 a 10 minutos", "es"), ("5〜10ふん", "5 から 10ふん", "ja"),
    ("5～10ふん", "5 から 10ふん", "ja"), ("5–10ふん", "5 から 10ふん", "ja"),
    ("9:00–17:00", "9 o'clock to 17 hundred", "en"), ("9am–5pm", "9am to 5pm", "en"),
    ("15h–17h", "15 heures à 17 heures", "fr"),
    ("9:00-17:00, 9am - 5pm, 9:30am-5pm", "9 o'clock to 17 hundred, 9am to 5pm, 9 30am to 5pm", "en"),
    ("9:00-17:00 Uhr, 9:00–17:30 Uhr", "9 Uhr bis 17 Uhr, 9 Uhr bis 17 Uhr 30", "de"),
    ("Mo-Fr 9-18 Uhr, 9 - 18.30 Uhr, 9.00-18.00 Uhr", "Mo-Fr 9 bis 18 Uhr, 9 bis 18 Uhr 30, 9 Uhr bis 18 Uhr", "de"),
    ("9h-17h30, 9 h - 17 h, 9:00-17:00", "9 heures à 17 heures 30, 9 heures à 17 heures, 9 heures à 17 heures", "fr"),
    ("9:00-17:00", "9 en punto a 17 en punto", "es"), ("9:00-17:00", "くじ から 17じ", "ja"),
    ("$5–10, $5-10 million", "5 to 10 dollars, 5 to 10 million dollars", "en"),
    ("€5–10, 5-10 €", "5 to 10 euros, 5 to 10 euros", "en"),
    ("$5-10", "5 bis 10 Dollar", "de"), ("1.000–2.000 €", "1000 bis 2000 Euro", "de"), ("€5–10", "5 à 10 euros", "fr"),
    ("$5 - 10", "5 a 10 dólares", "es"),
    ("$5-$10, $5.50 - $10", "5 dollars to 10 dollars, 5 dollars 50 to 10 dollars", "en"),
    ("5€-10€, 5 € - 10 €", "5 euros à 10 euros, 5 euros à 10 euros", "fr"),
    ("$1.5-2 million, €2–2.5 billion", "1.5 to 2 million dollars, 2 to 2.5 billion euros", "en"),
    ("1,5-2 Millionen €", "1,5 bis 2 Millionen Euro", "de"),
    ("$5–10k, £1-2bn, €1.5–2.5M", "5 to 10 thousand dollars, 1 to 2 billion pounds, 1.5 to 2.5 million euros", "en"),
    ("5–10 Mio. €", "5 bis 10 Millionen Euro", "de"),
    ("$5m-$10m, $5m – $10m", "5 million dollars to 10 million dollars, 5 million dollars to 10 million dollars", "en"),
    ("$5 million-$10 million, 5€–10€", "5 million dollars to 10 million dollars, 5 euros to 10 euros", "en"),
    ("5 Mio. € - 10 Mio. €", "5 Millionen Euro bis 10 Millionen Euro", "de"),
    ("5 M€-10 M€", "5 millions d'euros à 10 millions d'euros", "fr"),
    ("5 M€–10 M€", "5 millones de euros a 10 millones de euros", "es"),
    ("-5 – -10 °C, 5–−2", "minus 5 to minus 10 degrees Celsius, 5 to minus 2", "en"),
    ("-5 – -10 °C", "moins 5 à moins 10 degrés Celsius", "fr"),
    ("5 km–10 km, 5km-10km, 1 L - 2 L", "5 kilometers to 10 kilometers, 5 kilometers to 10 kilometers, one liter to 2 "
     "liters", "en"), ("5 km – 10 km", "5 Kilometer bis 10 Kilometer", "de"),
    ("½–¾ cup, 5½–6 cups", "one half to three quarters cup, five and a half to six cups", "en"),
    ("½–¾ Liter", "ein halb bis drei Viertel Liter", "de"),
    ("the 1990s–2000s, the '80s–'90s", "the nineteen nineties to two thousands, the eighties to nineties", "en"),
    ("$5m-10m, $500k–1m", "5 million dollars to 10 million dollars, 500 thousand dollars to one million dollars", "en"),
    ("5 M-10 M€", "5 millions d'euros à 10 millions d'euros", "fr"),
    ("5 Mio.-10 Mio. €, 5 Mrd.–10 Mrd. €", "5 Millionen Euro bis 10 Millionen Euro, 5 Milliarden Euro bis 10 "
     "Milliarden Euro", "de"), ("€5 Mio.-€10 Mio.", "5 Millionen Euro bis 10 Millionen Euro.", "de"),
])
def test_a_range_of_numbers_is_said_with_the_word_between_its_ends(text, words, language):
    """espeak-ng read "5–10" as "five ten", and in Japanese "5〜10" and "5–10" as "go Japanese letter juu", "5～10"
    as "go tilde juu". A range of money was read with the currency's word after its first end ("$5–10" as "five
    dollars to ten", "$5-10" "five dollars ten"), and a hyphen between two amounts with their signs as nothing or a
    minus ("$5-$10" "five dollars ten dollars", "5€-10€" "cinq euros moins dix euros"), also where the first had its
    scale or its sign after it ("$5m-$10m", "5€–10€"; "5 M€-10 M€" was "cinq millions d'euros moins dix ..."); "$1.5–2
    million" was "dollar one point five to two million", and "$5–10k" "five dollars to ten K"; a range to a negative
    number ("-5 – -10"), between fractions ("½–¾") or decades ("1990s–2000s") had no word between its ends, nor one
    of two numbers each with its unit ("5 km–10 km" was "five kilometers ten kilometers"); "$5m-10m", each end with
    its scale, was "five million dollars ten meters"; German "5 Mio.-10 Mio. €", the abbreviation's period before
    the dash, "fünf Mio minus zehn Millionen Euro"."""
    assert phonemize(text, language) == phonemize(words, language)


def test_three_numbers_or_more_joined_by_dashes_are_no_range():
    """"1–800–555–1234" was read "one to eight hundred to five hundred fifty five to ..."; a range beside it, or one
    between dates whose numbers are joined by hyphens, still gets its word."""
    text = "Call 1–800–555–1234, 5–10–15 or 1.5 ~ 2.5 ~ 3 $5–10–15 now"
    assert _ranges_as_words(text, "en") == text
    assert _ranges_as_words("1–800–555–1234 or 5–10 times", "en") == "1–800–555–1234 or 5 to 10 times"
    assert _ranges_as_words("2026-12-25–2026-12-31", "de") == "2026-12-25 bis 2026-12-31"


@pytest.mark.parametrize(("text", "words", "language"), [
    ("pages 5-10, 3-5 days, ages 6-12, 1.5-2 hours, 5-10%",
     "pages 5 to 10, 3 to 5 days, ages 6 to 12, 1.5 to 2 hours, 5 to 10%", "en"),
    ("1990-2000, 1990-95, 9-5pm, 9-5 PM", "1990 to 2000, 1990 to 95, 9 to 5pm, 9 to 5 PM", "en"),
    ("3-5 Tage, 1,5-2 Stunden, 1990-95", "3 bis 5 Tage, 1,5 bis 2 Stunden, 1990 bis 95", "de"),
    ("3-5 jours", "3 à 5 jours", "fr"), ("3-5 días", "3 a 5 días", "es"), ("3-5にち", "3 から 5にち", "ja"),
    # before a hyphen and a word ("a 2-3-day trip" kept its first hyphen)
    ("a 2-3-day trip, 3-5-year-olds", "a 2 to 3-day trip, 3 to 5-year-olds", "en"),
    ("eine 2-3-tägige Reise", "eine 2 bis 3-tägige Reise", "de"),
    # a second end no greater than the first is a score
    ("won 3-2, a 2-2 draw, a 50-50 chance", "won 3 to 2, a 2 2 draw, a 50 50 chance", "en"),
    ("3-2 gewonnen, 0-0", "3 zu 2 gewonnen, 0 zu 0", "de"),
    ("3-2", "3 à 2", "fr"), ("3-2", "3 a 2", "es"), ("3-2でかった", "3 たい 2でかった", "ja"),
    # a variant's code reads its language's words ("en-us" was a KeyError, and phonemize failed)
    ("won 3-2, a 2-2 draw, pages 5-10", "won 3 to 2, a 2 2 draw, pages 5 to 10", "en-us"),
    ("3-2, 3-5", "3 à 2, 3 à 5", "fr-fr"),
])
def test_a_hyphen_between_two_numbers_is_a_range_or_a_score(text, words, language):
    """espeak-ng read "pages 5-10" as "pages five dash ten", German "3-5 Tage" "drei Strich fünf Tage"."""
    assert _ranges_as_words(text, language) == words
    assert phonemize(text, language) == phonemize(words, language)


@pytest.mark.parametrize(("text", "words", "language"), [
    ("It takes 2-3h, a 10-15min break, 2-3hrs.", "It takes 2 to 3 hours, a 10 to 15 minutes break, 2 to 3 hours.",
     "en"),
    ("5-10km, 1-2mL, 3-5km/h", "5 to 10 kilometers, 1 to 2 milliliters, 3 to 5 kilometers per hour", "en"),
    ("5-10kg, 10-15min", "5 bis 10 Kilogramm, 10 bis 15 Minuten", "de"), ("20-30cm", "20 à 30 centimètres", "fr"),
    ("5-10km", "5 から 10 キロメートル", "ja"),
])
def test_a_hyphen_before_a_glued_unit_is_a_range(text, words, language):
    """A unit of measure or of time glued to a range's second end ("5-10km", "10-15min") kept the hyphen: "five ten
    kilometers", "ten dash fifteen min"."""
    assert verbalize(text, language) == words


def test_a_hyphen_before_letters_that_are_no_unit_is_no_range():
    """A word ("2-3x", "A3-5"), seconds' "s" ("wait 5-10s", read by the seconds' pass), a unit with more letters; and
    a decade's "s" in a language without decades' words."""
    text = "2-3x, A3-5km, wait 5-10s, 5-10kmh, 5-10km2, 5-10hz"
    assert _ranges_as_words(text, "en") == text
    assert _ranges_as_words("die 1950-60s", "de") == "die 1950-60s"


def test_a_hyphen_of_a_phone_number_a_word_or_a_sum_is_left_to_espeak():
    """A hyphen also joins phone numbers, codes, words and sums, and more numbers than two; and in a language with no
    range word."""
    text = ("Call 555-1234, 0170-12, 1-2-3, 5-10-15, 978-3-16, A3-5, 3-5x, δ3-5, 3-5δ, COVID-19, v1-2, 10-3=7, "
            "5-3 = 2, x = 5-3, x=5-3, 2+5-3, 9-5pmx, 1-2.3.4, 1/2-3, 1-2/3, 12:30-45, 5-10:30, 1-2-3-go, 1-2-")
    assert _ranges_as_words(text, "en") == text
    assert phonemize("Call 555-1234, 10-3=7", "en") == espeak_alone("Call 555-1234, 10-3=7", "en")
    assert _ranges_as_words("3-5 giorni", "it") == "3-5 giorni"
    assert _ranges_as_words("1-5-10 €, $5-10-15", "en") == "1-5-10 €, $5-10-15"
    assert _ranges_as_words("5€ -10€, 5 -$10", "en") == "5€ -10€, 5 -$10"  # a minus: spaced on one side
    # cents: no range of amounts, but of the numbers, as with an en dash
    assert _ranges_as_words("$5.50-10, $5.50–10", "en") == "$5.50 to 10, $5.50 to 10"
    assert _ranges_as_words("$5k-10", "en") == "$5k-10"  # one end with its scale, one without
    # nor between a number with its unit and one without, or with another unit
    assert _ranges_as_words("5 km-10, 5 m-10 m/s, 5 km–10 kms", "en") == "5 km-10, 5 m-10 m/s, 5 km–10 kms"
    # an end written with a letter that is no scale is left whole (its sign stays before the range)
    assert _ranges_as_words("$5–10x, £1-2kg", "en") == "$5 to 10x, £1 to 2kg"
    # nor between a date and what is no whole date, an ISBN's or a phone number's groups, or a word's numbers
    text = ("12/24/2026-12, 2026-12-24-1, 978-3-16-148410-0, 555.123.4567-555.123.4568, v1.2.33-1.2.34, 5/10-12/1/26, "
            "δ12/24/2026-12/26/2026, 12/24/2026-12/26/2026δ")
    assert _ranges_as_words(text, "en") == text
    assert phonemize("Version 10.12.11-10.12.12", "de") == espeak_alone("Version 10.12.11-10.12.12", "de")
    # nor between a time and what is no time: a number ("9:00-5", a time minus five)
    text = "9:00-5, 9am-5, 9h-5, 9:00-5x"
    assert _ranges_as_words(text, "en") == text
    # nor a phone number's or more numbers' hyphen before a German hour ("0170-12 Uhr", "1-2-3 Uhr"), nor a leading
    # zero's before a word that is no "Uhr"
    text = "0170-12 Uhr, 1-2-3 Uhr, 10-12-14 Uhr, 09-18 Uhrzeit"
    assert _ranges_as_words(text, "de") == text


@pytest.mark.parametrize(("text", "language"), [
    ("see Figure 3-2, Fig. 3-4 and Table 4-1", "en"), ("siehe Abb. 3-2, Abbildung 3-4 und Tabelle 4-1", "de"),
    ("voir la figure 3-2 et le tableau 4-1", "fr"), ("Figure 3-2", "fr"), ("véase la figura 3-2 y la tabla 4-1", "es"),
    ("図3-2と表4-1をみて", "ja"), ("ぎんざ4丁目6-1", "ja"), ("see Figure 3-2", "en-gb"),
])
def test_a_hyphen_of_a_figures_number_is_left_to_espeak(text, language):
    """A figure's or a table's number with its chapter's ("Figure 3-2") was read "figure three to two", "図3たい2"; so
    was an address's block and house after "丁目"."""
    assert _ranges_as_words(text, language) == text


def test_a_hyphen_after_a_word_that_is_no_label_is_still_a_range_or_a_score():
    """The verb "figure", a plural ("Figures 3-5") and "表" after a kanji ("代表", a national team) bring no label."""
    assert _ranges_as_words("I figure 2-3 hours, Figures 3-5", "en") == "I figure 2 to 3 hours, Figures 3 to 5"
    assert _ranges_as_words("にほんだいひょう3-1、日本代表3-1", "ja") == "にほんだいひょう3 たい 1、日本代表3 たい 1"


def test_a_hyphen_after_four_digits_before_a_lesser_number_is_a_codes():
    """No score runs to thousands: "article L. 1234-5" of the French labour code was read "1234 à 5", "case 2023-15"
    "2023 to 15"; a year's last digits ("1990-95") are still a range's end."""
    text = "article L. 1234-5 du Code du travail, article 1240-1 du Code civil, 2023-15"
    assert _ranges_as_words(text, "fr") == text
    assert _ranges_as_words("case no. 2023-15, SKU 4471-22", "en") == "case no. 2023-15, SKU 4471-22"
    assert _ranges_as_words("1990-95, 2019-20, 1939-1945", "en") == "1990 to 95, 2019 to 20, 1939 to 1945"


@pytest.mark.parametrize(("text", "words", "language"), [
    ("the 1990s", "the nineteen nineties", "en"), ("the '90s", "the nineties", "en"),
    ("the 1990’s, his 20s", "the nineteen nineties, his twenties", "en-gb"), ("the 2020s", "the twenty twenties", "en"),
    ("the 1900s", "the nineteen hundreds", "en"),
    ("the 2000s, the 1910s", "the two thousands, the nineteen tens", "en"),
    ("1000s of fans in the 2010s, the '10s", "thousands of fans in the twenty tens, the tens", "en"),
    ("$1000s, £1000s", "thousands of dollars, thousands of pounds", "en"),
    ("100s of fans, $100s, the 500s", "hundreds of fans, hundreds of dollars, the five hundreds", "en"),
    # a range of them, with a hyphen or with a first decade without its "s" ("nineteen fifty to sixties")
    ("the 1950-60s, the 1950–60s, the 1950s-60s", "the nineteen fifties to sixties, the nineteen fifties to sixties, "
     "the nineteen fifties to sixties", "en"),
    ("the 1980s-1990s, the '50s-'60s, 1990-2000s", "the nineteen eighties to nineteen nineties, the fifties to "
     "sixties, nineteen nineties to two thousands", "en"),
    # German: "eintausend neunhundertneunziger" was read
    ("die 1990er Jahre, in den 1980ern, die 1900er", "die neunzehn hundert neunziger Jahre, in den neunzehn hundert "
     "achtzigern, die neunzehn hunderter", "de"),
])
def test_a_decade_is_said_as_one(text, words, language):
    """espeak-ng read "1990s" as "nineteen hundred ninety z", "'90s" as "ninety z" and "1990's" as "nineteen hundred
    ninety", "2000s" as "two thousand z", "1910s" as "nineteen hundred ten z"; "1000s" was "ten hundreds", "100s"
    "one hundred z", and "$1000s" "dollar thousands"."""
    assert phonemize(text, language) == phonemize(words, language)


@pytest.mark.parametrize(("text", "words", "language"), [
    ("wait 10s, every 30s, it took 1.5s, Waiting 1s", "wait 10 seconds, every 30 seconds, it took 1.5 seconds, Waiting "
     "one second", "en"), ("it lasts 0.5s, 10s of people, in her 20s", "it lasts 0.5 seconds, tens of people, in her "
                           "twenties", "en-gb"),
    # a range of them ("wait 5-10s" was "wait five tens")
    ("wait 5-10s, it took 1.5-2.5s, 2-2.5s", "wait 5 to 10 seconds, it took 1.5 to 2.5 seconds, 2 to 2.5 seconds",
     "en"),
    # a range of whole numbers with no duration word before it ("a 3-4s clip" was "three four s", "5-10s" "five tens")
    ("a 3-4s clip, then 5-10s", "a 3 to 4 seconds clip, then 5 to 10 seconds", "en"),
])
def test_a_number_of_seconds_glued_to_its_s_is_said_as_seconds(text, words, language):
    """espeak-ng read "wait 10s" as "wait ten z" and "1.5s" as "one point five s", and the decades' pass made "wait 10s"
    "wait tens": a decimal number, or one after a word that takes a duration, is seconds, and so is a range of them."""
    assert phonemize(text, language) == phonemize(words, language)


@pytest.mark.parametrize(("text", "words", "language"), [
    ("It takes 2h 30min, then 1 h, 45 mins, 2 hrs, 30 sec.",
     "It takes 2 hours 30 minutes, then one hour, 45 minutes, 2 hours, 30 seconds.", "en"),
    ("1h 30m, 5m 30s, 1h 2.5s, 1h30m, 24h, 10-15 min",
     "one hour 30 minutes, 5 minutes 30 seconds, one hour 2.5 seconds, one hour 30 minutes, 24 hours, 10 to 15 minutes",
     "en"),
    ("1 hr. 30 m", "one hour 30 minutes", "en"),
    ("Es dauert 2 Std. 30 Min.", "Es dauert 2 Stunden 30 Minuten.", "de"),
    ("1 Std. später, 1,5 Std., 30 Min. Dann", "eine Stunde später, 1,5 Stunden, 30 Minuten. Dann", "de"),
    ("Tarda 1 h 30 min y 30 seg.", "Tarda una hora 30 minutos y 30 segundos.", "es"),
    ("2 h 30 min, 30 min", "2 heures 30 minutes, 30 minutes", "fr"),
])
def test_a_duration_written_short_is_said_in_words(text, words, language):
    """espeak-ng read "2h 30min" as "two aitch thirty min", German "2 Std. 30 Min." as "zwei S T D. dreißig Min.", the
    abbreviation's period a sentence's end."""
    from valle_hf.text_normalization import verbalize

    assert verbalize(text, language) == words
    assert phonemize(text, language) == phonemize(words, language)


@pytest.mark.parametrize(("text", "language"), [
    ("5 m, 5m, 10s, 5 s, 5 mph, 5 ms, 5 hours, v2h, 0x1h, x5 min, 5 km/h, 5 min/km, 5m 3h, 5 h 5 h, 2h30, a min of 5, "
     "-5 min, 5-5 min, 1.2.3 h, 5 minx, 5 hδ, 5 h5", "en"), ("30 min", "ja"), ("30 min", "it"),
])
def test_what_is_no_duration_written_short_is_left_as_it_is(text, language):
    """Meters and seconds alone, other units, a word's letters, units out of order, an hour without its minutes'
    unit, a word, a number's part before it, and a language with no words for it."""
    from valle_hf.text_normalization import _durations_as_words

    assert _durations_as_words(text, language) == text


def test_english_pairs_of_numbers_joined_by_a_slash_are_read_one_after_the_other():
    """espeak-ng read "24/7" as "twenty four slash seven": "24/7", "9/11", equal numbers and a split of a hundred are
    two numbers said one after the other."""
    text, words = ("open 24/7, a 50/50 chance, since 9/11, a 60/40 mix, 20/20 vision, the 90/10 rule.",
                   "open 24 7, a 50 50 chance, since 9 11, a 60 40 mix, 20 20 vision, the 90 10 rule.")
    assert verbalize(text, "en") == words
    assert phonemize(text, "en") == phonemize(words, "en")


def test_what_is_no_pair_of_numbers_read_one_after_the_other_is_left_as_it_is():
    """A fraction, a date, a score out of a number ("3/3", "rated 10/10", "a 1/99 chance"), a run of three, a word's or
    a decimal's part, a pair of a hundred and nothing, and a language the table has none for."""
    from valle_hf.text_normalization import _slash_pairs_as_read

    text = "1/2, 1/1, 12/25, 3/11, 10/20, 5/100, 24/7/365, x24/7, 24/7.5, 2023/24, 100/0, 3/3, 10/10, 5/5, 1/99, 95/5"
    assert _slash_pairs_as_read(text, "en") == text
    assert _slash_pairs_as_read("24/7, 50/50", "de") == "24/7, 50/50"


def test_what_is_no_number_of_seconds_is_left_as_it_is():
    """Tens ("10s of people", "within 10s of meters", "in 10s"), decades, a plural number ("two 5s"), a word's digits,
    another unit and a duration's seconds after its minutes are no seconds here, nor in a language the table has no
    words for."""
    from valle_hf.text_normalization import _seconds_as_words

    text = ("10s of people, within 10s of meters, in 10s, the 80s, two 5s, x1.5s, 1.5sec, 5m 30.5s, 1h 2.5s, in their "
            "20-30s, the 1950-60s, the 1990-95s")
    assert _seconds_as_words(text, "en") == text
    assert _seconds_as_words("wait 10s, 1.5s", "de") == "wait 10s, 1.5s"


def test_what_is_no_decade_is_left_to_espeak():
    """A decimal number of seconds is no decade, nor a duration's seconds after its minutes; the "'00s" have no
    "hundreds" to say."""
    from valle_hf.text_normalization import _decades_as_words

    text = "5.90s, x90s, the '00s, 990s, 1990se, 5m 30s, $'00s"
    assert _decades_as_words(text, "en") == text
    assert _decades_as_words("the 1990s", "de") == "the 1990s"


@pytest.mark.parametrize(("text", "words", "language"), [
    ("Call +1 555 123 4567.", "Call +1, 5 5 5, 1 2 3, 4 5 6 7.", "en"),
    ("+1-555-123-4567", "+1, 5 5 5, 1 2 3, 4 5 6 7", "en"), ("+49 30 1234567", "+49, 3 0, 1 2 3 4 5 6 7", "de"),
    ("+33 1 23 45 67 89", "+33, 1, 2 3, 4 5, 6 7, 8 9", "fr"), ("+34 912 345 678", "+34, 9 1 2, 3 4 5, 6 7 8", "es"),
    ("+1 (555) 123-4567, +44 (0)20 7946 0958", "+1, 5 5 5, 1 2 3, 4 5 6 7, +44, 0, 2 0, 7 9 4 6, 0 9 5 8", "en"),
    ("+49 (30) 1234567", "+49, 3 0, 1 2 3 4 5 6 7", "de"),
])
def test_an_international_phone_number_is_read_digit_by_digit_after_its_country_code(text, words, language):
    """espeak-ng read its groups as numbers: "+49 30 1234567" as "plus neunundvierzig dreißig eine Million ...", and
    a group in brackets ("+44 (0)20 7946 0958") kept the number whole."""
    assert phonemize(text, language) == phonemize(words, language)


@pytest.mark.parametrize(("text", "words", "language"), [
    ("Call (555) 123-4567.", "Call 5 5 5, 1 2 3, 4 5 6 7.", "en"),
    ("555-123-4567 or 1-800-555-1234", "5 5 5, 1 2 3, 4 5 6 7 or 1, 8 0 0, 5 5 5, 1 2 3 4", "en"),
    ("555.123.4567, 1 (800) 555-1234", "5 5 5, 1 2 3, 4 5 6 7, 1, 8 0 0, 5 5 5, 1 2 3 4", "en"),
    ("Ruf (555)123-4567 an", "Ruf 5 5 5, 1 2 3, 4 5 6 7 an", "de"),
])
def test_a_north_american_phone_number_is_read_digit_by_digit_in_its_groups(text, words, language):
    """espeak-ng read "555-123-4567" as "five hundred fifty five dash one hundred twenty three dash four thousand
    ...", "(555) 123-4567" with its area code as a number in brackets."""
    assert phonemize(text, language) == phonemize(words, language)


def test_what_is_no_phone_number_is_left_as_it_is():
    """A "+" after a word or a number, fewer than two groups after the country code; without a "+", a number without
    its area code, groups of other lengths or joined to more, or spaced, a range, a date and an ISBN."""
    from valle_hf.text_normalization import _phone_numbers_as_read

    text = ("555-1234, 5+1 555 123, C++ 11 22, +1 555, +5 points, 555-123-45678, 1555-123-4567, 555-123-4567-1, "
            "12/555-123-4567, 5.555-123-4567, 555 123 4567, 5-10, 2026-12-25, 978-3-16-148410-0, 2-555-123-4567")
    assert _phone_numbers_as_read(text) == text


@pytest.mark.parametrize(("text", "words", "language"), [
    ("at 192.168.0.1.", "at 192 dot 168 dot 0 dot 1.", "en"),
    ("IP 10.0.0.255", "IP 10 Punkt 0 Punkt 0 Punkt 255", "de"),
    ("192.168.0.1", "192 point 168 point 0 point 1", "fr"), ("192.168.0.1", "192 punto 168 punto 0 punto 1", "es"),
    ("192.168.0.1", "192 ドット 168 ドット 0 ドット 1", "ja"),
])
def test_an_ip_address_is_said_with_the_word_for_its_dots(text, words, language):
    """espeak-ng's German, French and Spanish voices read "192.168.0.1" as a number in thousands with decimals
    ("hundertzweiundneunzigtausend einhundertachtundsechzig Punkt ..."), its Japanese one without its dots."""
    assert phonemize(text, language) == phonemize(words, language)


@pytest.mark.parametrize("language", ["en", "de", "fr", "es", "ja"])
def test_what_is_no_ip_address_is_left_to_espeak(language):
    """Numbers in groups of three, more or fewer than four numbers, one above 255 or with a leading zero make no
    address; nor does any in a language the table has no word for."""
    from valle_hf.text_normalization import _addresses_as_words

    text = "1.000.000.000, 1.2.3, 1.2.3.4.5, 256.1.1.1, 01.2.3.4"
    assert _addresses_as_words(text, language) == text
    assert _addresses_as_words("192.168.0.1", "it") == "192.168.0.1"


@pytest.mark.parametrize(("text", "words", "language"), [
    ("on 12/25/2026, or 2026-01-01.", "on December 25th, 2026, or January 1st, 2026.", "en"),
    ("3/22/2026, 03/23/2024, 5/11/2026", "March 22nd, 2026, March 23rd, 2024, May 11th, 2026", "en"),
    ("le 25/12/2026, le 2026-05-01", "le 25 décembre 2026, le 1er mai 2026", "fr"),
    ("el 25/12/2026 y el 2026-01-05", "el 25 de diciembre de 2026 y el 5 de enero de 2026", "es"),
    ("12/25/2026–12/31/2026, 2026-12-25–2026-12-31", "December 25th, 2026 to December 31st, 2026, December 25th, "
     "2026 to December 31st, 2026", "en"),
    ("12/24/2026-12/26/2026, 2026-12-24 - 2026-12-26", "December 24th, 2026 to December 26th, 2026, December 24th, "
     "2026 to December 26th, 2026", "en"),
    ("24.12.2026-26.12.2026, 24.12.26 – 26.12.26", "vierundzwanzigsten Dezember 2026 bis sechsundzwanzigsten Dezember "
     "2026, vierundzwanzigsten Dezember 26 bis sechsundzwanzigsten Dezember 26", "de"),
    ("2026-12-24-2026-12-26", "24 décembre 2026 à 26 décembre 2026", "fr"),
    ("2026-12-25T15:00", "December 25th, 2026 fifteen hundred", "en"),
    ("12/11/2026, 25/12/2026", "12th November 2026, 25th December 2026", "en-gb"),
    ("12/11/2026", "12th November 2026", "en-gb-x-rp"),
    ("on 12/25/26, 1/2/26, 2/29/00", "on December 25th, 26, January 2nd, 26, February 29th, 00", "en"),
    ("25/12/26", "25th December 26", "en-gb"), ("le 25/12/26", "le 25 décembre 26", "fr"),
    ("12/25/05, 12/25/0999", "December 25th, oh 5, December 25th, 0999", "en"),
    ("25/12/05", "25th December oh 5", "en-gb"), ("le 25/12/05", "le 25 décembre 05", "fr"),
    ("el 25/12/26", "el 25 de diciembre de 26", "es"),
    ("am 25.12.2026, am 03.10.90, 2026-05-01", "am fünfundzwanzigsten Dezember 2026, am dritten Oktober 90, ersten "
     "Mai 2026", "de"), ("Stand 10.12.11, Ev 24.12.26", "Stand zehnten Dezember 11, Ev vierundzwanzigsten Dezember 26",
                         "de"), ("am 3.5.2026", "am dritten Mai 2026", "de"),
    ("Wir kommen am 24.12. um 10 Uhr, vom 24.12. bis 26.12.2026, am 29.02. und ab 1.3.", "Wir kommen am "
     "vierundzwanzigsten Dezember um 10 Uhr, vom vierundzwanzigsten Dezember bis sechsundzwanzigsten Dezember 2026, am "
     "neunundzwanzigsten Februar und ab ersten März.", "de"),
    ("しめきりは2026-12-25です", "しめきりは2026ねん 12がつ 25にちです", "ja"),
    ("2026/4/1、2026/7/9、2024/9/14",
     "2026ねん しがつ ついたち、2026ねん しちがつ ここのか、2020 よねん くがつ じゅうよっか", "ja"),
    ("2026/1/20、2026/12/19、2026/12/24、2026/12/29、2026/12/17",
     "2026ねん いちがつ はつか、2026ねん 12がつ じゅうくにち、2026ねん 12がつ にじゅうよっか、"
     "2026ねん 12がつ にじゅうくにち、2026ねん 12がつ 17にち", "ja"),
    ("2026/5/2、2026/5/3、2026/5/4、2026/5/5、2026/5/6、2026/5/8、2026/5/10",
     "2026ねん 5がつ ふつか、2026ねん 5がつ みっか、2026ねん 5がつ よっか、2026ねん 5がつ いつか、"
     "2026ねん 5がつ むいか、2026ねん 5がつ ようか、2026ねん 5がつ とおか", "ja"),
    ("2026-07-07", "2026ねん しちがつ なのか", "ja"),
    ("2026/12/24〜2026/12/26、2026-12-24–2026-12-26",
     "2026ねん 12がつ にじゅうよっか から 2026ねん 12がつ 26にち、2026ねん 12がつ にじゅうよっか から "
     "2026ねん 12がつ 26にち", "ja"),
    ("きかんは2026/12/24-2026/12/26です",
     "きかんは2026ねん 12がつ にじゅうよっか から 2026ねん 12がつ 26にちです", "ja"),
])
def test_a_date_in_numbers_is_said_with_its_months_name(text, words, language):
    """espeak-ng read "12/25/2026" as "twelve slash twenty five slash two thousand twenty six", "2026-12-25" with its
    hyphens as dashes or minuses, Spanish "25/12/2026" as "veinticinco barra doce barra ..."; a range of dates in
    English lost its "to" ("December 25th, 2026–December 31st, 2026": the dash had no digits after it), one joined
    by a hyphen ("12/24/2026-12/26/2026") was no date, and ISO's "T" before a time was read as the letter; British
    "12/11/2026" (the 12th of November) was read in the US order, "December 11th"; a year of two digits
    ("12/25/26") was read as numbers and slashes too ("05" "zero five"), German "25.12.2026" as "fünfundzwanzig
    Punkt zwölf Punkt ...", and "am 24.12." without its year as "am vierundzwanzig Punkt zwölf"; Japanese
    "2026/12/25" with its slashes ("nisen nijuuroku slash juuni ..."), without the counters "ねん", "がつ", "にち" and
    the days' own words ("ついたち", "はつか"; "19にち", "24にち" were "juukyuu nichi", "nijuushi nichi")."""
    assert phonemize(text, language) == phonemize(words, language)


@pytest.mark.parametrize(("text", "language"), [
    ("25/12/2026, 2026-02-30, 2/29/2026, 1/2/3/2026, 12/25/20261, 2026-12-25-1, 1-2026-12-25", "en"),
    ("1/2, 3/4 cup, 3/10, 2/29/25, 13/25/26, 12/25/261, 12/25/2, 26-12-25, 12/25/26/1, 12/25/26.5", "en"),
    ("12/25/2026, 25/13/26", "fr"), ("12/25/2026", "es"), ("12/25/2026", "en-gb"),
    ("31.02.2026, 1.2.3, 1.234.567, 25.12.2026.5, 5.25.12.26, 25/12/2026", "de"), ("2026-12-25", "it"),
    ("Python 3.12.10, Version 2.7.18, 3.5.26, 25.5.26", "de"),
    ("Version 10.12.11, v10.12.11, Python 10.12.11, RELEASE 24.12.2026, V 10.12.11, build 01.02.03", "de"),
    ("Java 10.12.11, Node.js 10.12.11, Firmware 10.12.11, iOS 10.12.11, Firefox 10.12.11", "de"),
    ("v12/25/2026, x2026-12-25, Ωμέγα12/25/2026, Москва2026-12-25", "en"),
    ("Kapitel 3.2. zeigt, am 31.04. nicht, am 3.12.10", "de"),
    ("3/4、2026/13/45、2026/2/29、26/12/25、v2026.12.25、v2026/12/25、x2026-12-25、2026.12.25、03-1234-5678、"
     "0166-12-3456、978-4-10-109205-8", "ja"),
])
def test_what_is_no_date_is_left_to_espeak(text, language):
    """A day and month in the other order than the language's, a day the month has not (a year of two digits is
    one of this century: 2025 had no February 29th), a fraction or a score, numbers joined to more, an ISO date's
    year of two digits, German thousands and versions (a year of two digits after a day or month of one, numbers
    after a word that brings in a version: "Version 10.12.11" was "zehnten Dezember 11"), numbers glued to a letter
    of a script written with spaces ("v2026/12/25", "Ωμέγα12/25/2026"; kana may come before a date), a Japanese
    date's year of two digits ("26/12/25"), its dotted form (a version's too: "2026.12.25"), phone numbers, ISBNs and
    a language the table has no words for are no date to read."""
    from valle_hf.text_normalization import _dates_as_words

    assert _dates_as_words(text, language) == text


@pytest.mark.parametrize(("text", "words", "language"), [
    ("the 5/10/15/20 rule, 1/2/3/2026", "the 5 10 15 20 rule, 1 2 3 2026", "en"),
    ("die 5/10/15/20-Regel", "die 5 10 15 20-Regel", "de"), ("1/2/3/4/5", "1 2 3 4 5", "fr"),
])
def test_four_numbers_or_more_joined_by_slashes_are_read_one_after_another(text, words, language):
    """espeak-ng read "the 5/10/15/20 rule" as "the five slash ten slash fifteen slash twenty rule": no date, nor
    fraction, but a list. Three numbers stay a date where they make one, and are left to espeak-ng otherwise; a run
    in a path or a word, or with a decimal number, is none."""
    from valle_hf.text_normalization import _slash_runs_as_read

    assert phonemize(text, language) == phonemize(words, language)
    assert phonemize("the 5/10/15 rule", "en") == phonemize("the May 10th, 15 rule", "en")
    text = "5/10/15, 50/30/20, api/1/2/3/4, /1/2/3/4, 1.5/2/3/4, 1/2/3/4.5, 1/2/3/4x, 24/7"
    assert _slash_runs_as_read(text) == text


@pytest.mark.parametrize(("text", "words", "language"), [
    ("5 km, 100kg, 2 mL", "5 kilometers, 100 kilograms, 2 milliliters", "en"), ("1 km", "one kilometer", "en"),
    ("25 °C, 1 °C, -1 °C", "25 degrees Celsius, one degree Celsius, minus one degree Celsius", "en"),
    ("1.5 l at 50 km/h", "1.5 liters at 50 kilometers per hour", "en"),
    ("5 cm and 5 mm", "5 centimeters and 5 millimeters", "en-gb"),
    ("1 kg, 1,5 l, 25 °C", "ein Kilogramm, 1,5 Liter, 25 Grad Celsius", "de"),
    ("50 km/h", "50 Kilometer pro Stunde", "de"),
    ("1 km, 100 kg, 77 °F", "un kilómetro, 100 kilogramos, 77 grados Fahrenheit", "es"),
    ("5 m, 5 g, 50 km/h, 1 °C", "5 mètres, 5 grammes, 50 kilomètres par heure, un degré Celsius", "fr"),
    ("5 m², 10⁻³ m", "5 meters squared, 10 to the power of minus 3 meters", "en"), ("5 m³", "5 Meter hoch drei", "de"),
    ("5km, 1 kg, 5kgです", "5 キロメートル, いちキログラム, 5 キログラムです", "ja"),
    ("6 ft tall, 1 ft, 55 mph, 3 mi, 2 lbs, 8 oz, 10 yd",  # "6 ft" was "six F T"
     "6 feet tall, one foot, 55 miles per hour, 3 miles, 2 pounds, 8 ounces, 10 yards", "en"),
])
def test_a_unit_after_a_number_is_said_as_its_words(text, words, language):
    """espeak-ng spelled units out ("5 km" was "five K M", "25 °C" "twenty five degrees C", Spanish "100 kg" "cien
    kilogramo"), in French "5 m" as "cinq M", in Japanese in English letters."""
    assert phonemize(text, language) == phonemize(words, language)


@pytest.mark.parametrize("language", ["en", "de", "fr", "es", "ja"])
def test_what_is_no_unit_after_a_number_is_left_to_espeak(language):
    """A unit inside a word or before another is no unit of the table, nor a letter without a number before it, nor
    one after an amount of money ("$1.5m" is millions), nor a duration's minutes."""
    from valle_hf.text_normalization import _units_as_words

    text = "5 kms, 5 m/s, km 5, H2 g, $1.5m, € 2 m, 1h 30m, 5m 30s, 5m 30.5s, δ5 km, 5 kmΩ"
    assert _units_as_words(text, language) == text


@pytest.mark.parametrize(("text", "words", "language"), [
    ("at 3:45pm", "at 3 45pm", "en"), ("3:45 PM", "3 45 PM", "en"), ("15:45", "15 45", "en"),
    ("10:05", "10 oh 5", "en"), ("3:00", "3 o'clock", "en"), ("at 3:00pm, 9:00 a.m.", "at 3pm, 9 a.m.", "en"),
    ("um 15:45 Uhr", "um 15 Uhr 45", "de"),
    ("15.45 Uhr", "15 Uhr 45", "de"), ("1:05 Uhr", "ein Uhr 5", "de"), ("15h45", "15 heures 45", "fr"),
    ("15:45", "15 heures 45", "fr"), ("1h30", "une heure 30", "fr"), ("à 15 h", "à 15 heures", "fr"),
    ("15:45", "15 45", "es"), ("1:30", "una 30", "es"), ("15:05", "15 y 5", "es"), ("15:00", "15 en punto", "es"),
    ("a las 13:00 h, 20:30h, 9:00 horas.", "a las 13 en punto, 20 30, 9 en punto.", "es"),
    ("at 15:00, 00:00, 09:05, 12:00", "at fifteen hundred, zero hundred, nine oh five, twelve o'clock", "en"),
    ("09h05", "9 heures 5", "fr"), ("um 09:05 Uhr", "um 9 Uhr 5", "de"), ("09:05", "9 y 5", "es"),
    ("15:00:30, 9:05:07, 12:00:01", "fifteen hundred and thirty seconds, nine oh five and seven seconds, twelve "
     "o'clock and one second", "en"), ("3:45:10pm, 9:05:00", "3 45pm and 10 seconds, 9 oh 5", "en"),
    ("um 9:05:07 Uhr, 1:00:01 Uhr", "um 9 Uhr 5 und 7 Sekunden, ein Uhr und eine Sekunde", "de"),
    ("15:00:30, 9:05:07", "15 heures et 30 secondes, 9 heures 5 et 7 secondes", "fr"),
    ("15:00:30, 9:05:07 h", "15 horas y 30 segundos, 9 y 5 y 7 segundos", "es"),
    ("a la 1:00:01, a las 9:00:10, 15:00:00", "a la una y un segundo, a las 9 y 10 segundos, 15 en punto", "es"),
    ("15:30、9:05、4:01、12:47", "15じ 30ぷん、くじ 5ふん、よじ いっぷん、12じ 47ふん", "ja"),
    ("14:00、19:00、1:00:01、15:00:30", "じゅうよじ、じゅうくじ、いちじ いちびょう、15じ 30びょう", "ja"),
    ("9:00〜17:00", "くじ から 17じ", "ja"),
    ("open 18:00-24:00", "open eighteen hundred to twenty four hundred", "en"),
    ("bis 24:00 Uhr", "bis 24 Uhr", "de"), ("jusqu'à 24:00", "jusqu'à 24 heures", "fr"),
    ("hasta las 24:00", "hasta las 24 en punto", "es"),
])
def test_a_time_of_day_is_said_as_the_language_says_it(text, words, language):
    """espeak-ng read "3:45pm" as "three: forty five p m", the colon a pause, French "15h45" as "quinze ache
    quarante-cinq" and German "15.45 Uhr" as "fünfzehn Punkt fünfundvierzig Uhr"; an hour's leading zero as "zero"
    ("09:05" "zero nine oh five"), and an English 24-hour clock's hour alone was said "fifteen o'clock". Seconds
    ("15:00:30", read "fifteen: zero: thirty") are said after the clock's words; in Spanish an hour's "en punto" is not
    said before them ("15 en punto y 30 segundos" was said). Japanese "15:30" was "juugo: sanjuu", without the
    counters "じ" and "ふん" ("ぷん" after some digits), and "4じ", "9じ" are "よじ", "くじ" (espeak-ng read "shi ji",
    "kyuu ji")."""
    assert phonemize(text, language) == phonemize(words, language)


@pytest.mark.parametrize(("text", "language"), [("3:2, 1:2.5, 24:10, 24:00:10, 10:30:60, 1:02:03:04", "en"),
                                                ("Halbzeit 14:12, es stand 14:12 bis 17 Uhr", "de"),
                                                ("15 hommes", "fr"), ("16:9", "es"),
                                                ("3:2、16:9、24:10、1:2.5、10:30:60", "ja")])
def test_what_is_no_time_of_day_is_left_to_espeak(text, language):
    """A ratio has no two-digit minutes, a clock's hours are under 24 (24:00 alone ends the day) and its seconds under
    60, a time has no fourth part, and a German score is written as a time: only one followed by "Uhr" is a time
    there, or one before "bis" and such a time (not a lone hour). (A Japanese decimal point is read as its word.)"""
    read = text.replace("2.5", "2てん5") if language == "ja" else text
    assert phonemize(text, language) == espeak_alone(read, language)


@pytest.mark.parametrize(("text", "words", "language"), [
    ("le 21e siècle", "le 21ème siècle", "fr"), ("le 2ᵉ étage", "le 2ème étage", "fr"),
    ("el 2.º piso, la 3.ª vez", "el 2º piso, la 3ª vez", "es"),
    ("el 1.er piso, el 3er lugar", "el primer piso, el tercer lugar", "es"),
    ("la 1re fois, les 1ères", "la première fois, les premières", "fr"),
    ("le XIXe siècle, François Ier, la Ve République", "le 19ème siècle, François premier, la 5ème République", "fr"),
    ("le n° 5, N°12", "le numéro 5, numéro 12", "fr"),
])
def test_short_ordinals_read_as_ordinals(text, words, language):
    """espeak-ng read French "21e" as "vingt et un e", "1re" as "un re", "XIXe" as "gziks", "n° 5" as "N cinq";
    Spanish "2.º" as "dos punto o" and "1.er" as "uno punto er"."""
    assert phonemize(text, language) == phonemize(words, language)


@pytest.mark.parametrize(("text", "words"), [
    ("der 3. Mai, am 3.Oktober 1990", "der dritte Mai, am dritten Oktober 19 hundert 90"),
    ("Der 1. Januar 1900, oder 7. Mai, bis zum 31. Dezember 2026", "Der erste Januar 19 hundert, oder siebten Mai, bis "
     "zum einunddreißigsten Dezember 2026"), ("Berlin, 20. Juni 1905", "Berlin, zwanzigsten Juni 19 hundert 5"),
    ("vom 3.–5. Mai, der 3. und 4. Mai, am 1., 2. bis 3. Juni", "vom dritten bis fünften Mai, der dritte und vierte "
     "Mai, am ersten, zweiten bis dritten Juni"),
    ("vom 3. bis zum 5. Mai, zwischen dem 3. und dem 5. Mai, der 3. und der 4. Mai", "vom dritten bis zum fünften Mai, "
     "zwischen dem dritten und dem fünften Mai, der dritte und der vierte Mai"),
    ("die 3. Mai-Woche, das 1. Mai-Wochenende, den 1. Mai-Feiertag", "die dritte Mai-Woche, das erste Mai-Wochenende, "
     "den ersten Mai-Feiertag"), ("an der 1. Mai-Kundgebung, In der 3. Mai-Woche, während der 1. Mai-Feiern, der 1. "
     "Mai-Feiertag", "an der ersten Mai-Kundgebung, In der dritten Mai-Woche, während der ersten Mai-Feiern, der erste "
     "Mai-Feiertag"),
])
def test_a_german_day_before_its_month_is_said_as_an_ordinal(text, words):
    """espeak-ng read "der 3. Mai" as "der drei. Mai", and a year "1990" as "eintausend neunhundertneunzig"; the day
    ends in "-te" after "der", in "-ten" elsewhere (after "am", "bis zum", on a letter's date line), and so do the
    days before it that share its month ("vom 3.–5. Mai" was "vom drei. fünf. Mai", "vom 3. bis zum 5. Mai" "vom
    drei. bis zum fünften Mai"); "die" and "das" before a word made with the month take "-te" too ("die 3. Mai-Woche"
    was "die dritten Mai-Woche"), but "der" after a preposition ("an der 1. Mai-Kundgebung" was "an der erste")."""
    assert phonemize(text, "de") == phonemize(words, "de")


def test_what_is_no_german_day_before_its_month_is_left_as_it_is():
    """A number that is no day of a month, one that ends a decimal number, one before no month's name, and a day in
    another language."""
    text = "32. Mai, 0. Mai, 1,5. Mai, 3. Maiglöckchen, 3. Platz"
    assert _ordinals_as_read(text, "de") == text
    assert _ordinals_as_read("3. Mai", "en") == "3. Mai"


@pytest.mark.parametrize(("text", "words"), [
    ("Zum 3. Mal gewann er den 1. Platz.", "Zum dritten Mal gewann er den ersten Platz."),
    ("der 1. Platz, die 3. Auflage, das 2. Kind", "der erste Platz, die dritte Auflage, das zweite Kind"),
    ("im 2. Stock, am 2. Tag, des 3. Jahrhunderts, an der 1. Stelle, beim 31. Versuch, vom 1. Platz",
     "im zweiten Stock, am zweiten Tag, des dritten Jahrhunderts, an der ersten Stelle, beim einunddreißigsten "
     "Versuch, vom ersten Platz"), ("Am 3. Mai kam er zum 2. Mal.", "Am dritten Mai kam er zum zweiten Mal."),
    ("Der 1. FC Köln, die 2. Ölkrise", "Der erste FC Köln, die zweite Ölkrise"),
])
def test_a_german_ordinal_after_an_article_is_said_as_one(text, words):
    """espeak-ng read "zum 3. Mal" as "zum drei. Mal", the period a sentence's end."""
    assert _ordinals_as_read(text, "de") == words
    assert phonemize(text, "de") == phonemize(words, "de")


def test_what_may_end_a_german_sentence_is_no_ordinal():
    """A number without an article before it, one before a word that starts a sentence rather than names a thing, one
    before a word in lower case, one past 31, a decimal number, and one in another language."""
    text = ("Er wurde 3. Dann ging er. Ich nehme die 3. Sie ist gut. Das ist der 2. Danach kam er. Seite 3. Dann, der "
            "3. im Rennen, der 35. Platz, den 1,5. Platz, die 0. Klasse, der 3.Platz, Kinder 3. Klasse")
    assert _ordinals_as_read(text, "de") == text
    assert _ordinals_as_read("der 1. Platz", "en") == "der 1. Platz"


@pytest.mark.parametrize(("text", "language"), [("le 1er mai, 1e fois, 5e3", "fr"), ("2.5 veces", "es"), ("2e", "en"),
                                              ("Le livre. Ce jour. La IIXe. Ire et colère.", "fr"),  # no numerals
                                              ("11er, 2.er, 1.ero, v1er, 1,3er", "es"), ("1er", "en")])
def test_what_is_no_short_ordinal_is_left_to_espeak(text, language):
    """"1er" (premier) is read right, and "1e" is no "unième"; a decimal point before a digit is no ordinal's."""
    assert phonemize(text, language) == espeak_alone(text, language)


@pytest.mark.parametrize(("text", "words", "language"), [
    ("Il fait -5 degrés.", "Il fait moins 5 degrés.", "fr"), ("Hace −3 grados.", "Hace menos 3 grados.", "es"),
    ("x = -2.5", "x = minus 2.5", "en"), ("x = -5", "x = minus 5", "de"), ("-5 ど", "マイナス 5 ど", "ja"),
])
def test_the_minus_of_a_negative_number_is_said(text, words, language):
    """espeak-ng's French, Spanish and Japanese voices left a number's minus out ("-5 degrés" was "cinq degrés"), and
    its English and German ones after "="; a dash between numbers or after a letter or a decimal mark is no minus."""
    from valle_hf.text_normalization import _minus_as_word

    assert phonemize(text, language) == phonemize(words, language)
    assert _minus_as_word("pages 5-7, A-5, 1.-2", language) == "pages 5-7, A-5, 1.-2"
