"""Text → IPA: espeak-ng with the original's flags, languages, IPA pass-through, Japanese, sentence splitting."""

from __future__ import annotations

import re
import sys
import unicodedata

import pytest

from valle_hf import phonemes
from valle_hf.phonemes import detect_language, looks_like_ipa, phonemize, split_sentences
from valle_hf.text_normalization import normalize_text

HELLO_IPA = "həlˈoʊ wˈɜːld."


def test_phonemize_english_as_the_original():
    assert phonemize("Hello world.") == HELLO_IPA
    assert phonemize("Hello world.", "en") == phonemize("Hello world.", "en-us")  # en is read as en-us
    assert phonemize("123 apples") == "wˈʌnhˈʌndɹɪd twˈɛnti θɹˈiː ˈæpəlz"  # espeak expands numbers


def test_phonemize_german_and_french():
    german = phonemize("Guten Tag, Welt!", "de")
    assert german.startswith("ɡˈuːtən") and german.endswith("!") and "," in german  # punctuation kept
    french = phonemize("Bonjour le monde.", "fr")
    assert "bɔ̃ʒˈuʁ" in french and french.endswith(".")


def test_whitespace_and_newlines_count_as_one_space():
    assert phonemize("  Hello\n  world.  ") == HELLO_IPA


def test_auto_language_goes_by_script():
    assert detect_language("Hello there") == "en"
    assert detect_language("Grüße aus Köln") == "en"  # Latin script: not guessed, documented
    assert [detect_language(text) for text in ("こんにちは", "カタカナ", "漢字")] == ["ja", "ja", "ja"]
    assert phonemize("こんにちは", "auto") == phonemize("こんにちは", "ja")
    assert phonemize("Hello world.", "auto") == HELLO_IPA


def test_japanese_kana_needs_no_pykakasi(monkeypatch):
    monkeypatch.setattr(phonemes, "_kakasi", lambda: None)
    assert phonemize("こんにちは", "ja") == phonemize("コンニチハ", "ja")
    assert phonemize("こんにちは", "ja").startswith("k")


def test_japanese_kanji_without_pykakasi_names_it(monkeypatch):
    monkeypatch.setattr(phonemes, "_kakasi", lambda: None)
    with pytest.raises(ImportError, match="pip install pykakasi"):
        phonemize("今日は", "ja")


def test_japanese_goes_through_pykakasi_hiragana_when_installed(monkeypatch):
    class FakeKakasi:
        def convert(self, text):
            if text == "今日は":
                return [{"orig": "今日", "hira": "きょう"}, {"orig": "は", "hira": "は"}]
            return [{"orig": text, "hira": text}]

    monkeypatch.setattr(phonemes, "_kakasi", lambda: FakeKakasi())
    assert phonemize("今日は", "ja") == phonemize("きょうは", "ja")


def test_ipa_is_passed_through():
    assert looks_like_ipa(HELLO_IPA) and looks_like_ipa("ʃ")
    for text in ("Hello world.", "Grüße, Straße", "Ça va, café?", "こんにちは", "123"):
        assert not looks_like_ipa(text)
    assert phonemize(HELLO_IPA) == HELLO_IPA
    assert phonemize(f"  {HELLO_IPA}\n", "de") == HELLO_IPA


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_text_is_an_error(text):
    with pytest.raises(ValueError, match="empty"):
        phonemize(text)


@pytest.mark.parametrize("text", ["...", " !? ", "\u2014", "« »", "😀👍", "❤️!"])
def test_text_without_a_letter_or_digit_is_refused_as_nothing_to_speak(text):
    """Emoji alone were called punctuation."""
    unspoken = "emoji and punctuation are" if text in ("😀👍", "❤️!") else "punctuation alone is"
    with pytest.raises(ValueError, match=f"has no letter or digit: nothing to speak \\({unspoken} not spoken\\)"):
        phonemize(text)
    assert phonemize(f"{text} 7") and phonemize(f"ʃ{text}")  # one digit or one (IPA) letter is enough


@pytest.mark.parametrize(("text", "words", "language"), [
    ("∞", "infinity", "en"), ("∞", "infini", "fr"), ("‰", "per mille", "en"), ("© ∞!", "copyright infinity!", "en"),
])
def test_a_text_of_symbols_a_voice_reads_is_spoken(text, words, language):
    """"∞" alone was refused as having no letter or digit, before its symbol was read as a word."""
    assert phonemes.check_text(text) == text
    assert phonemize(text, language) == phonemize(words, language)


def test_text_that_was_not_utf8_is_refused_naming_where():
    from valle_hf.errors import VallEValueError

    with pytest.raises(VallEValueError, match="not valid UTF-8 after 'Hello '"):
        phonemize("Hello \udcff world.")  # how Python reads the byte 0xff of a command line that was not UTF-8


def test_control_characters_are_refused_and_whitespace_is_not():
    """espeak read the text up to a NUL and silently dropped the rest."""
    from valle_hf.errors import VallEValueError

    for control in ("\x00", "\x07", "\x1b"):
        with pytest.raises(VallEValueError, match=f"control character {re.escape(repr(control))} after 'Hello'"):
            phonemize(f"Hello{control}world.")
    assert phonemize("Hello\tworld.\r\n") == phonemize("Hello world.")


def test_unknown_language_is_a_one_line_error_listing_the_supported_ones():
    with pytest.raises(ValueError, match="unknown language 'xx'") as raised:
        phonemize("Hello", "xx")
    message = str(raised.value)
    assert "\n" not in message and "'auto'" in message and "en, ja, de, fr" in message
    with pytest.raises(ValueError, match="unknown language"):
        phonemize(HELLO_IPA, "klingon")  # checked even when the text needs no phonemiser
    assert phonemize("Hola", "es")  # any espeak-ng language code works
    with pytest.raises(ValueError, match="unknown language 'xx'"):  # sentencex splits any code by its default rules
        split_sentences("Hello there. Bye.", "xx")
    # a code often given for a language espeak-ng names otherwise gets its name, which it takes
    for given, meant in (("zh", "cmn"), ("zh_CN", "cmn"), ("jp", "ja"), ("gr", "el")):
        with pytest.raises(ValueError, match=f"unknown language '{given.lower().replace('_', '-')}': espeak-ng's code "
                                             f"is '{meant}'"):
            phonemize("Hello", given)
        assert phonemize("1", meant)


@pytest.mark.parametrize(("written", "code"), [("EN", "en"), ("en_GB", "en-gb"), (" En-Gb ", "en-gb"), ("FR", "fr")])
def test_a_language_code_in_any_case_or_with_an_underscore_is_that_code(written, code):
    """--language EN, en_GB (a locale's spelling) were refused as unknown languages."""
    text = "Dr. Smith went home. He slept."
    assert phonemize(text, written) == phonemize(text, code)
    assert split_sentences(text, written) == split_sentences(text, code)


@pytest.mark.parametrize(("text", "spoken", "emoji"), [
    ("Hello 😀 there.", "Hello there.", "😀"), ("I ❤️ you.", "I you.", "❤️"), ("Hi 👍🏽 ok.", "Hi ok.", "👍🏽"),
    ("A family 👨\u200d👩\u200d👧 here.", "A family here.", "👨\u200d👩\u200d👧"), ("Press 1️⃣ now.", "Press 1 now.", ""),
    ("Well 😀!", "Well!", "😀"),
    # characters outside the emoji blocks shown as emoji (U+FE0F), and the geometric shapes: names read aloud
    ("▶️ Play ↩️ now ‼️", "Play now", "▶️↩️‼️"), ("● First item.", "First item.", "●"),
    ("It is 25°C, © me.", "It is 25°C, © me.", ""), ("Play it in F♯, not B♭.", "Play it in F♯, not B♭.", ""),
])
def test_emoji_are_left_out_with_a_warning_and_other_symbols_read(text, spoken, emoji):
    """espeak-ng read an emoji's name aloud ("grinning face", "thumbs medium"); a keycap is its digit; symbols such
    as ° and © are words, and so are the music signs among the pictographs ("F♯" was read "F")."""
    from conftest import logged_warnings

    with logged_warnings() as logged:
        phonemes = phonemize(text, "en")
    assert phonemes == phonemize(spoken, "en")
    assert (f"emoji ({emoji})" in logged.out) if emoji else "emoji" not in logged.out, logged.out


def test_the_emoji_of_a_texts_sentences_are_named_in_one_warning(processor):
    """A text is phonemised sentence by sentence: its emoji were warned about once per sentence."""
    from conftest import logged_warnings

    from valle_hf.phonemes import phonemize_all

    texts = ["Hello 😀 there.", "And 😀 again 👍 now."]
    alone = [phonemize(text, "en") for text in texts]
    with logged_warnings() as logged:
        phonemes = phonemize_all(texts, ["en", "en"])
    assert phonemes == alone
    assert logged.out.count("emoji") == 1 and "emoji (😀👍) are left out" in logged.out, logged.out
    with logged_warnings() as logged:
        processor(text=texts)  # the sentences the CLI, the page and synthesis give it
    assert logged.out.count("emoji") == 1, logged.out
    with logged_warnings() as logged:
        assert processor.phonemize(texts) == alone
    assert logged.out.count("emoji") == 1, logged.out


class _RecordingEspeak:
    """Stands in for phonemizer's EspeakBackend: records the texts given to espeak-ng and answers `output`."""

    def __init__(self, output: str):
        self.output, self.read = output, []

    def phonemize(self, texts, strip):
        self.read.extend(texts)
        return [self.output for _ in texts]


def test_a_keycap_reaches_espeak_as_its_digit_alone(monkeypatch):
    """A keycap emoji is a digit, U+FE0F (emoji presentation) and U+20E3 (combining keycap); espeak-ng gets the digit
    without the two marks, with or without the presentation selector."""
    espeak = _RecordingEspeak(HELLO_IPA)
    monkeypatch.setattr(phonemes, "_espeak_backend", lambda voice, language_switch="keep": espeak)
    assert phonemize("Press 1\ufe0f\u20e3 or 2\u20e3 now.", "en") == HELLO_IPA
    assert espeak.read == ["Press 1 or 2 now."]


@pytest.mark.parametrize("output", ["", "  ", "\n"])
def test_espeak_output_without_phonemes_is_refused(monkeypatch, output):
    """Text of letters espeak-ng cannot read gives no phonemes: an empty prompt would be synthesised as noise."""
    from valle_hf.errors import VallEValueError

    monkeypatch.setattr(phonemes, "_espeak_backend", lambda voice, language_switch="keep": _RecordingEspeak(output))
    with pytest.raises(VallEValueError, match=r"^espeak-ng \(en-us\) produced no phonemes for 'Hello\.'"):
        phonemize("Hello.", "en")


def test_split_sentences():
    text = 'Hello there. How are you?\nI\'m fine!  He said "Stop." Then... pi is 3.14 ...\n\n今日は。元気？ end'
    assert split_sentences(text) == [
        "Hello there.",
        "How are you?",
        "I'm fine!",
        'He said "Stop."',
        "Then... pi is 3.14 ...",
        "今日は。",
        "元気？",
        "end",
    ]
    assert split_sentences("No full stop") == ["No full stop"]
    assert split_sentences("  \n ") == []
    assert split_sentences("line one\nline two") == ["line one", "line two"]  # lines apart, as the original
    assert split_sentences("... Hello there. Bye.") == ["... Hello there.", "Bye."]  # word-less start: to the next
    # symbols the voice has no reading for are no sentence of their own: "†" alone was refused, the whole text failing
    assert split_sentences("Hello world. †") == ["Hello world. †"]
    assert split_sentences("† Guten Tag. Bis bald.", "de") == ["† Guten Tag.", "Bis bald."]
    assert phonemize(split_sentences("Hello world. †")[0]) == phonemize("Hello world.")
    assert split_sentences("...\n« Hello there. »") == ["... « Hello there. »"]
    assert split_sentences("Hello there.\n...") == ["Hello there. ..."]
    assert split_sentences(" ... !") == ["... !"]


@pytest.mark.parametrize("language, text, sentences", [
    ("en", "Dr. Smith went home. He was tired.", ["Dr. Smith went home.", "He was tired."]),
    ("en-gb", "Mr. and Mrs. Jones left at 3 p.m. today. Bye.", ["Mr. and Mrs. Jones left at 3 p.m. today.", "Bye."]),
    ("de", "Herr Dr. Müller kam z. B. am 3. Mai. Er blieb.", ["Herr Dr. Müller kam z. B. am 3. Mai.", "Er blieb."]),
    # a regional code splits by its language's rules (sentencex's default rules end a sentence at each "Sra.")
    ("es-419", "La Sra. Pérez vive en la Avda. Colón, pág. 5. Se fue.",
     ["La Sra. Pérez vive en la Avda. Colón, pág. 5.", "Se fue."]),
    # French titles sentencex ends a sentence at, "M." then spoken alone
    ("fr", "M. Dupont est là. Il part.", ["M. Dupont est là.", "Il part."]),
    ("fr-fr", "Mme. Curie, Mgr. Dupont et MM. Durand. St. Denis.", ["Mme. Curie, Mgr. Dupont et MM. Durand.",
                                                                    "St. Denis."]),
    ("fr", "Le Pr. Martin et M.Dupont.\nM.\nIls partent.", ["Le Pr. Martin et M. Dupont.", "M.", "Ils partent."]),
    ("fr", "Il part à 5 h. Il revient. Voir le ADN-PGM. Fin.", ["Il part à 5 h.", "Il revient.", "Voir le ADN-PGM.",
                                                                "Fin."]),
])
def test_split_sentences_keeps_abbreviations(language, text, sentences):
    assert split_sentences(text, language) == sentences


def test_auto_splits_each_line_by_its_own_script():
    """"auto" picks the rules per line: an English line of a text with Japanese in it keeps its "Mr." (sentencex's
    Japanese rules end a sentence there)."""
    assert split_sentences("I am Mr. X. You are Y.\n今日は。元気？", "auto") == [
        "I am Mr. X.", "You are Y.", "今日は。", "元気？"]


@pytest.mark.parametrize(("text", "spoken", "symbols", "language"), [
    ("Goethe † 1832.", "Goethe 1832.", "†", "de"), ("5′ 3″ tall", "5 3 tall", "′ ″", "en"), ("a → b", "a b", "→", "es"),
    ("5 ℵ ok", "5 ok", "ℵ", "it"), ("↉ cup", "cup", "↉", "en"), ("5 × 2", "5 × 2", "", "en"),
    ("5 ‰", "5 ‰", "", "it"), ("3⁄16 inch", "3 16 inch", "⁄", "en"),  # a fraction with no vulgar form ("1⁄2" is "½")
    ("See note †.", "See note.", "†", "en"),
    # ASCII ones too: "x < 5" was "x five", without a word; those read ("+", "=", "~", "$") are kept
    ("x < 5 | 3 > 2", "x 5 3 2", "< | >", "en"), ("a ^ b", "a b", "^", "de"),
    ("2 + 2 = 4 ~ $5", "2 + 2 = 4 ~ $5", "", "en"),
    ("I don´t know.", "I don't know.", "", "en"), ("Wie geht´s?", "Wie geht's?", "", "de"),  # "´": an apostrophe
])
def test_symbols_a_voice_has_no_reading_for_are_left_out_with_a_warning(text, spoken, symbols, language):
    """A symbol espeak-ng left out was lost without a word, and one it said as a code point ("ℵ" in Italian) was
    spoken as one: each is left out, named in a warning. Those the voice reads ("×" in English) are read."""
    from conftest import logged_warnings

    with logged_warnings() as logged:
        assert phonemize(text, language) == phonemize(spoken, language)
    if symbols:
        assert f"symbols {symbols} are left out: espeak-ng's {language!r} voice" in logged.out, logged.out
    else:
        assert "left out" not in logged.out, logged.out


@pytest.mark.parametrize(("text", "language"), [("↉", "en"), ("ℵ", "it"), ("† ↉.", "de")])
def test_a_text_of_symbols_no_voice_reads_is_refused_naming_it(text, language):
    """With its symbols left out such a text had nothing left, and espeak-ng's empty reading was refused as "no
    phonemes for ''"."""
    from valle_hf.errors import VallEValueError

    with pytest.raises(VallEValueError, match=f"^the text '{re.escape(text)}' has no word espeak-ng's '{language}' "
                                              "voice reads, only symbols it has no reading for"):
        phonemize(text, language)


@pytest.mark.parametrize(("text", "plain", "language"), [
    ("hel\u200dlo world", "hello world", "en"), ("hel\u2060lo world", "hello world", "en"),
    ("hel\ufefflo world", "hello world", "de"), ("5\u00a0000 euros", "5000 euros", "en"),
    ("1\u202f234\u202f567 km", "1234567 km", "en"), ("2\u2009500 m", "2500 m", "en"),
])
def test_joiners_are_unseen_and_thousands_parted_by_a_no_break_space_one_number(text, plain, language):
    """espeak-ng parted a word at a zero-width joiner or word joiner ("hel lo"), and the English voice read
    "5 000" written with a no-break space as "five zero zero zero"."""
    assert phonemize(text, language) == phonemize(plain, language)


def test_japanese_kana_touching_latin_letters_read_as_with_a_space_between():
    """espeak-ng's Japanese voice read kana next to a Latin letter one by one, a voiced one as "Japanese letter":
    "ごkgです" came out as "go kg te Japanese letter su" ("5㎏です" too, now read "5 キログラムです")."""
    for text, spaced in (("ごkgです", "ご kg です"), ("ABCです", "ABC です"),
                         ("カタカナcaféテスト", "カタカナ café テスト")):
        assert phonemize(text, "ja") == phonemize(spaced, "ja"), text


def test_ipa_and_its_modifier_letters_are_never_normalised():
    # NFKC would turn ʲ into j and ᵝ into β: symbols the tokenizer has ids for. IPA passes through untouched.
    for ipa in ("mʲˈɛsta", "ˈaᵝa", "ɡˈuːtn̩", "t͡ʃˈiː", "ˈbo\u0303"):  # o + combining tilde, not NFC's "õ"
        assert phonemize(ipa) == ipa
    assert normalize_text("mʲ ᵝ") == "mʲ ᵝ"


def test_language_switch_markers_are_kept_by_default_and_removable():
    text = "J'aime le football."
    kept, removed = phonemize(text, "fr"), phonemize(text, "fr", language_switch="remove")
    assert "(en)" in kept and "(fr)" in kept  # as the released model was trained
    assert "(" not in removed and kept.replace("(en)", "").replace("(fr)", "") == removed
    with pytest.raises(ValueError, match="language_switch"):
        phonemize(text, "fr", language_switch="drop")


def test_kanji_without_pykakasi_is_found_before_espeak_runs(monkeypatch):
    from valle_hf.errors import MissingDependencyError

    monkeypatch.setattr(phonemes, "_kakasi", lambda: None)
    for language in ("ja", "auto"):
        with pytest.raises(MissingDependencyError, match=r"^Japanese text with kanji needs pykakasi to convert it "
                                                         r'to hiragana first: pip install -e "\.\[ja\]"'):
            phonemes.resolve_language("今日は", language)
    assert phonemes.resolve_language("こんにちは", "auto") == "ja"  # kana need no pykakasi


@pytest.mark.parametrize("language", ["en", "de", "fr", "en-gb", "fr-fr"])  # espeak's regional voices read alike
@pytest.mark.parametrize("text", ["こんにちは", "I had 寿司 today.", "ﾊﾟﾝ"])
def test_chinese_or_japanese_characters_in_a_latin_script_language_are_refused(text, language):
    # espeak-ng would read each character as the words "Chinese letter" / "Japanese letter". The half-width sound
    # marks (ﾟ, ﾞ: alphabetic, all combining mark in NFKD) were taken for Latin letters and refused as those
    with pytest.raises(ValueError, match=r"Chinese or Japanese characters .*'ja'") as refused:
        phonemize(text, language)
    assert phonemize("Hello world.", language)  # Latin text in the same language still reads
    quoted = [word for word in text.split() if not word.isascii()]  # the words they are in, as written
    assert f"characters ({' '.join(quoted)})" in str(refused.value)


@pytest.mark.parametrize("language", ["en", "de", "fr", "en-gb"])
@pytest.mark.parametrize("text", ["Say привет.", "مرحبا", "Shalom, שלום.", "สวัสดี", "ሰላም",
                                  *(unicodedata.lookup(letter) * 2 for letter in (
                                      "LAO LETTER KO", "KHMER LETTER KA", "TIBETAN LETTER KA", "SYRIAC LETTER ALAPH",
                                      "CHEROKEE LETTER A"))])
def test_letters_the_voice_spells_out_by_name_are_refused(text, language):
    # espeak-ng's voice would say "Cyrillic pe, Cyrillic er, ..." for each letter, "Lao letter e81" or nothing at all
    # (Cherokee)
    with pytest.raises(ValueError, match=r"letters of another alphabet .*spells out one by one") as refused:
        phonemize(text, language)
    quoted = [word for word in text.split() if not word.isascii()]  # the words they are in, as written
    assert f"alphabet ({' '.join(quoted)})" in str(refused.value)  # the distinct letters run together read as a word


@pytest.mark.parametrize("language", ["en", "en-gb", "auto"])
@pytest.mark.parametrize("text", ["Visit Αθήνα today.", "ΑΘΗΝΑ", "Καλημέρα κόσμε", "σκύλος", "ή", "Και", "Ἀθῆναι"])
def test_greek_words_in_english_are_refused_and_greek_symbols_read(text, language):
    """espeak-ng's English voices spelt a Greek word out by its letters' names ("alpha theta eta nu alpha"), without a
    word; the German and French ones switch to the Greek voice, and a Greek letter or two are symbols."""
    refusal = r"Greek words \(.*spells out letter by letter.*give the language 'el'"
    with pytest.raises(ValueError, match=refusal) as refused:
        phonemize(text, language)
    quoted = [word for word in text.split() if not word.isascii()]
    assert f"Greek words ({' '.join(quoted)})" in str(refused.value)
    for other in ("de", "fr", "el"):
        assert "(el)" in phonemize(text, other) or other == "el"
    for symbols in ("the ΔG value", "an α-helix", "αβ T cells", "α β γ δ", "π", "θˈɪŋk βχθ", "the αβγ frame",
                    "The ΔΔΔ mutant", "the Gαβγ trimer", "πππ"):  # refused once, as words
        assert phonemize(symbols, language)
    with pytest.raises(ValueError, match=r"Greek words \(ὁ\)"):  # a polytonic letter is a word's ("the")
        phonemize("ὁ", language)


@pytest.mark.parametrize("language", ["en", "de", "fr", "en-gb"])
def test_latin_letters_the_voice_has_no_reading_for_are_read_without_their_marks_with_one_warning(language):
    """espeak-ng's English, German and French voices said "letter 1 e c 7" for a lone "ệ" and dropped it inside a word
    ("người" was read "ngi"): Vietnamese, Romanian or pinyin names in such text were read wrong without a word. Their
    base letters are read instead, named once for all the sentences of a text."""
    from conftest import logged_warnings

    from valle_hf.phonemes import phonemize_all

    texts = ["Xin chào, người Việt Nam.", "Timișoara, Mǎ, ﬁne ệ, 𝐀pple."]
    english = language.startswith("en")  # English spelling has no marks; the others keep those read: "ờ" → "ò"
    bases = ["Xin chào, nguoi Viet Nam.", "Timisoara, Ma, fine e, Apple."] if english else \
        ["Xin chào, nguòi Viêt Nam.", "Timisoara, Ma, fine ê, Apple."]
    with logged_warnings() as logged:
        assert phonemize_all(texts, [language] * 2) == [phonemize(text, language) for text in bases]
    assert logged.out.count("are read as") == 1, logged.out
    read_as = "u o e s a fi A" if english else "u ò ê s a fi A"
    assert f"letters ư ờ ệ ș ǎ ﬁ 𝐀 are read as {read_as}: espeak-ng's '{language}' voice has no reading" \
        in logged.out
    with logged_warnings() as logged:
        phonemize("Łódź, naïve Ægir, Đà Nẵng", language)  # Latin-1 and Latin Extended-A letters are read as written
    assert f"ẵ are read as {'a' if english else 'ă'}:" in logged.out, logged.out
    assert "Ł" not in logged.out and "Đ" not in logged.out, logged.out


def test_a_letter_of_several_marks_keeps_those_the_voice_reads():
    """Spanish reads "ü" but not "ǘ" (pinyin's ü with a tone mark): its reading keeps the diaeresis, where leaving
    every mark out read "u"."""
    from valle_hf.phonemes import _unread_latin

    assert _unread_latin("ǘ", "es") and not _unread_latin("ü", "es")
    assert phonemize("pingǘino", "es") == phonemize("pingüino", "es") != phonemize("pinguino", "es")


@pytest.mark.parametrize("language", ["en", "de", "fr", "en-gb", "es", "tr"])
def test_the_latin_letters_judged_unread_are_those_the_voice_says_as_code_points(language):
    """The letters judged unread (`_unread_latin`: a table for the English, German and French voices, the voice asked
    for any other) against espeak-ng itself: every Latin letter below U+20000, by its name or its NFKD form ("ℓ", "ᵃ",
    "𝐀"; the IPA letters aside: text with those is IPA), alone, which the voice reads as its code point (its word for
    letter, then the digits: "letter 1 e c 7") or not at all, exactly when it is judged unread. The English voices
    spell the ligatures out and name "ℹ", yet these are read as their letters ("ﬁ" as "fi") in every voice."""
    from valle_hf.phonemes import _check_language, _espeak_backend, _unread_latin

    word = {"en": "letter", "de": "Buchstabe", "fr": "lettre", "es": "símbolo", "tr": "harf"}[language.split("-")[0]]
    backend = _espeak_backend(_check_language(language), "keep")

    def unstressed(phonemes: str) -> str:
        return phonemes.replace("ˈ", "").replace("ˌ", "")

    letter = unstressed(backend.phonemize([word], strip=True)[0])
    def named_latin(char: str) -> bool:
        return unicodedata.name(char, "").startswith("LATIN ")

    def latin(char: str) -> bool:
        parts = [part for part in unicodedata.normalize("NFKD", char) if not unicodedata.combining(part)]
        return named_latin(char) or (parts != [char] and all(map(named_latin, parts)))

    latin = [char for char in map(chr, range(0xC0, 0x20000)) if char.isalpha() and latin(char)
             and not looks_like_ipa(char) and not 0xFF00 <= ord(char) <= 0xFFEF]  # full-width forms are mapped
    said = backend.phonemize(latin, strip=True)
    unread = {char for char, phonemes in zip(latin, said, strict=True)
              if unstressed(phonemes).replace(" ", "").startswith(letter) or not phonemes.strip()}
    wrong = [char for char in latin if _unread_latin(char, language) != (char in unread)
             and not (unicodedata.name(char).startswith("LATIN SMALL LIGATURE") or char == "ℹ")]
    assert len(unread) > 100 and not wrong, "".join(wrong)


def test_each_voice_reads_the_latin_letters_it_has_no_reading_for_by_their_base_letters():
    """Only the English, German and French voices were checked: in Spanish, "Nguyễn" was read "Nguy símbolo 1 e c 5"
    alone and "Nguyn" in a sentence. Each other voice is asked which letters it reads: Vietnamese reads them, Turkish
    reads the dotless i that Spanish cannot (and which has no base letter)."""
    from conftest import logged_warnings

    from valle_hf.phonemes import resolve_language

    with logged_warnings() as logged:
        assert phonemize("Nguyễn Thị", "es") == phonemize("Nguyen Thi", "es")  # its voice reads "ê" as "e"
    assert "letters ễ ị are read as ê i: espeak-ng's 'es' voice has no reading for them" in logged.out, logged.out
    with logged_warnings() as logged:
        assert phonemize("Nguyễn Thị", "vi") != phonemize("Nguyen Thi", "vi")
    assert "are read as" not in logged.out, logged.out
    with pytest.raises(ValueError, match=r"Latin letters \(Kadıköy\) that espeak-ng's 'es' voice has no reading for"):
        resolve_language("Kadıköy", "es")
    with logged_warnings() as logged:
        assert "ɯ" in phonemize("Kadıköy", "tr")
    assert "are read as" not in logged.out, logged.out


@pytest.mark.parametrize("language", ["sw", "ko", "eu", "haw"])
def test_a_code_point_is_told_from_a_reading_where_the_voice_says_one_and_two_alike_at_first(language):
    """Swahili says 1 and 2 "moja", "mbili": the "m" they share was taken for part of the voice's word for letter, so
    "ﬁ", said "letə ef bi sifuri moja" (U+FB01), passed as a letter the voice reads and was spoken as its code point."""
    from conftest import logged_warnings

    with logged_warnings() as logged:
        assert phonemize("ﬁsi", language) == phonemize("fisi", language)
    assert f"letters ﬁ are read as fi: espeak-ng's '{language}' voice has no reading" in logged.out, logged.out


@pytest.mark.parametrize("language", ["ru", "el", "hi"])
def test_a_letter_the_voice_hands_to_english_is_judged_as_the_english_voice_reads_it(language):
    """The Cyrillic, Greek and Indic voices hand Latin letters to the English one, which says "ǎ" or "ƒ" alone as its
    code point ("(en)letə ..."): the switch marker hid that, and the letter was spoken so."""
    from conftest import logged_warnings

    from valle_hf.phonemes import resolve_language

    with logged_warnings() as logged:
        assert phonemize("Mǎ ǎ", language) == phonemize("Ma a", language)
    assert f"letters ǎ are read as a: espeak-ng's '{language}' voice has no reading" in logged.out, logged.out
    with pytest.raises(ValueError, match=rf"Latin letters \(ƒ\) that espeak-ng's '{language}' voice has no reading"):
        resolve_language("Pay ƒ 5.", language)


def test_a_letter_made_of_letters_the_voice_reads_keeps_their_marks():
    """"ǅ" is the letters "Dž" (NFKC), which the Croatian voice reads (/dʒ/): all marks stripped, it was "Dz" (/dʑ/)."""
    from conftest import logged_warnings

    with logged_warnings() as logged:
        assert phonemize("ǅemal", "hr") == phonemize("Džemal", "hr")
    assert "letters ǅ are read as Dž: espeak-ng's 'hr' voice" in logged.out, logged.out


@pytest.mark.parametrize("text", ["Pay ƒ 5.", "Kadıköy", "ǝ", "ŉ"])
def test_latin_letters_without_a_reading_or_a_base_letter_are_refused_but_in_ipa(text):
    from valle_hf.phonemes import resolve_language

    with pytest.raises(ValueError, match=r"Latin letters \(.+\) that espeak-ng's 'en' voice has no reading for"):
        resolve_language(text, "en")  # before any model loads
    assert phonemize("ɐ ə ʃ", "en") == "ɐ ə ʃ"  # IPA letters are Latin letters too


def test_the_words_of_another_alphabet_are_quoted_three_at_most_each_cut_after_12_characters():
    """The message quotes the first 3 words with such letters, a word of up to 12 characters whole."""
    twelve = "здравствуйте"
    assert len(twelve) == 12
    with pytest.raises(ValueError, match=f"alphabet \\(привет {twelve} {twelve}…\\)"):
        phonemize(f"Say привет {twelve} {twelve}, мир.", "en")


@pytest.mark.parametrize("text, language", [("The ratio is π.", "en"), ("नमस्ते", "en"), ("Γειά", "de"),
                                            ("привет", "ru"), ("naïve café Ægir", "en"), ("Hello\u060c world.", "en")])
def test_letters_a_voice_reads_are_spoken(text, language):
    """A Greek letter alone is read as its name, and where espeak-ng switches to a voice that reads the script (or the
    language is the script's own, or the letters are Latin), nothing is refused; nor is a script's punctuation mark,
    no letter (the Arabic comma U+060C, which espeak-ng passes over)."""
    assert phonemize(text, language)


@pytest.mark.parametrize("module, package", [("phonemizer.backend.espeak.wrapper", "phonemizer"),
                                             ("espeakng_loader", "espeakng-loader")])
def test_a_missing_runtime_dependency_is_named_in_one_line(monkeypatch, module, package):
    from valle_hf.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, module, None)  # `import module` fails, as where it is not installed
    monkeypatch.delenv("PHONEMIZER_ESPEAK_LIBRARY", raising=False)
    with pytest.raises(MissingDependencyError, match=f"pip install {package}$"):
        phonemes._use_bundled_espeak.__wrapped__()  # past the per-process cache


def test_the_espeak_library_the_user_names_is_kept(monkeypatch):
    """`PHONEMIZER_ESPEAK_LIBRARY` (the module's docstring) is the user's choice of library: the bundled one is set only
    without it."""
    import espeakng_loader
    from phonemizer.backend.espeak.wrapper import EspeakWrapper

    chosen = []
    monkeypatch.setattr(EspeakWrapper, "set_library", lambda path: chosen.append(("library", path)))
    monkeypatch.setattr(EspeakWrapper, "set_data_path", lambda path: chosen.append(("data", path)))
    monkeypatch.setenv("PHONEMIZER_ESPEAK_LIBRARY", "/opt/espeak/libespeak-ng.so")
    phonemes._use_bundled_espeak.__wrapped__()  # past the per-process cache
    assert chosen == []
    monkeypatch.delenv("PHONEMIZER_ESPEAK_LIBRARY")
    phonemes._use_bundled_espeak.__wrapped__()
    assert chosen == [("library", espeakng_loader.get_library_path()), ("data", espeakng_loader.get_data_path())]


def test_an_espeak_library_that_cannot_be_loaded_is_one_error_saying_why(monkeypatch):
    """ctypes' OSError for a library it cannot load (a noexec temporary folder) has no strerror: the wrapper that
    names the reason failed on it with a TypeError, and its advice spoke of disk space."""
    from phonemizer import backend

    from valle_hf.errors import OutputError

    def unloadable(*args, **kwargs):
        raise OSError("/tmp/tmpx/libespeak-ng.so: failed to map segment from shared object")

    monkeypatch.setattr(backend, "EspeakBackend", unloadable)
    phonemes._espeak_backend.cache_clear()
    try:
        with pytest.raises(OutputError, match=r"could not be loaded \(/tmp/tmpx/libespeak-ng.so: failed to map "
                                              r"segment from shared object\): .*where libraries can be loaded"):
            phonemes._espeak_backend("en-us")
    finally:
        phonemes._espeak_backend.cache_clear()


@pytest.mark.parametrize(("text", "language"), [("It was 2.5 degrees.", "en"), ("Pi is 3.14 or so.", "de"),
                                                ("Version 1.2.3 is out.", "es"), ("Il fait 2.5 degrés.", "fr")])
def test_a_decimal_point_before_the_final_mark_keeps_the_words_after_it(text, language):
    """phonemizer split a line at the first "." to restore its final one, the decimal point: "It was 2.5 degrees."
    came back as "It was two.", the rest lost (the original's reading too)."""
    assert phonemize(text, language) == phonemize(text[:-1], language) + text[-1]



@pytest.mark.parametrize("apostrophe", ["\u02bc", "\u02b9", "\u02bb", "\u02bd", "\u02be", "\u02bf"])
@pytest.mark.parametrize("language, text", [("en", "I don{}t know"), ("fr", "aujourd{}hui"), ("de", "geht{}s")])
def test_an_apostrophe_written_as_a_modifier_letter_is_read_as_one(apostrophe, language, text):
    """espeak-ng read "donʼt" (U+02BC, an apostrophe as Ukrainian and some keyboards write it) as "D O N ejective T",
    and spelled the other modifier letters written for an apostrophe as their code points ("letter 2 b 9")."""
    from conftest import logged_warnings

    with logged_warnings() as logged:
        assert phonemize(text.format(apostrophe), language) == phonemize(text.format("'"), language)
    assert "left out" not in logged.out, logged.out


@pytest.mark.parametrize("language", ["en", "fr", "de"])
def test_a_modifier_letter_the_voice_spells_is_left_out_with_a_warning(language):
    """A spacing modifier letter ("ˊ", "ˮ") inside a word was spelled out ("letter 2 c a") without a warning; the
    English voice's word for a code point was not found at all (it reads one of the probes, "ﬀ", as "ff"), so it
    spelled every symbol it has no reading for. Inside a word it is left out without parting the word."""
    from conftest import logged_warnings

    with logged_warnings() as logged:
        assert phonemize("I don\u02cat know \u02ee", language) == phonemize("I dont know", language)
    assert "the text's symbols ˊ ˮ are left out" in logged.out, logged.out


@pytest.mark.parametrize(("text", "language"), [
    ("The quick brown fox jumps over the lazy dog and runs into the forest.", "en"),
    ("Los niños están en la casa de sus padres.", "es"), ("Il cane è andato con il suo amico per il pane.", "it"),
    ("Der Hund hat dort gespielt.", "de"), ("Nous avons mangé des pommes.", "fr"), ("Non per il pane.", "it"),
    ("Sin los demás.", "es"),
])
def test_text_read_as_ipa_with_words_of_ordinary_spelling_is_warned_about(text, language):
    """One IPA letter makes a text IPA: "the schwa ə is common" went to the model as phonemes, its spelled words
    read letter by letter, without a word. espeak-ng's own IPA passes without the warning."""
    from conftest import logged_warnings

    ipa = phonemize(text, language)
    with logged_warnings() as logged:
        assert phonemize(ipa, language) == ipa
    assert "ordinary spelling" not in logged.out, logged.out
    with logged_warnings() as logged:
        phonemize("ɪt wʌz ə big red bus", language)  # IPA written by hand: plain words of IPA's own letters
    assert "ordinary spelling" not in logged.out, logged.out
    for mixed, words in (("the schwa ə is common", "the schwa common"), ("Hello ðə wɜːld", "Hello")):
        with logged_warnings() as logged:
            assert phonemize(mixed, language) == mixed
        assert (f"the text is read as IPA (it has IPA letters), but holds words in ordinary spelling ({words}): their "
                "letters are read as phonemes") in logged.out, logged.out


def test_a_run_longer_than_espeak_reads_is_read_in_parts_not_cut():
    """espeak-ng reads a word only up to its buffer's length and left the rest out without a word: a 60-digit number
    lost 16 digits, a 250-letter word 80 letters, the end of a run of 100 kana. A real word of 63 letters is whole."""
    assert phonemize("1" * 60).count(phonemize("1")) == 60
    assert phonemize("hello" * 50).count("loʊ") == 50
    assert phonemize(("あいうえおかきくけこさしすせそ" * 5)[:73] + "ねこ", "ja").endswith(phonemize("ねこ", "ja"))
    assert " " not in phonemize(("あいうえおかきくけこさしすせそ" * 5)[:70], "ja")  # read whole: not parted
    word = "Rindfleischetikettierungsüberwachungsaufgabenübertragungsgesetz"
    assert " " not in phonemize(word, "de")
    assert phonemize("12345678901234567890") == phonemize("12,345,678,901,234,567,890")  # 20 digits: a number still
