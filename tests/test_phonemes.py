"""Text → IPA: espeak-ng with the original's flags, languages, IPA pass-through, Japanese, sentence splitting."""

from __future__ import annotations

import sys

import pytest

from valle_hf import phonemes
from valle_hf.phonemes import detect_language, looks_like_ipa, phonemize, split_sentences

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


def test_unknown_language_is_a_one_line_error_listing_the_supported_ones():
    with pytest.raises(ValueError, match="unknown language 'xx'") as raised:
        phonemize("Hello", "xx")
    message = str(raised.value)
    assert "\n" not in message and "'auto'" in message and "en, ja, de, fr" in message
    with pytest.raises(ValueError, match="unknown language"):
        phonemize(HELLO_IPA, "klingon")  # checked even when the text needs no phonemiser
    assert phonemize("Hola", "es")  # any espeak-ng language code works


def test_split_sentences():
    text = 'Hello there. How are you?\nI\'m fine!  He said "Stop." Then... pi is 3.14 ...\n\n今日は。元気？ end'
    assert split_sentences(text) == [
        "Hello there.",
        "How are you?",
        "I'm fine!",
        'He said "Stop."',
        "Then...",
        "pi is 3.14 ...",
        "今日は。",
        "元気？",
        "end",
    ]
    assert split_sentences("No full stop") == ["No full stop"]
    assert split_sentences("  \n ") == []


@pytest.mark.parametrize("module, package", [("phonemizer.backend.espeak.wrapper", "phonemizer"),
                                             ("espeakng_loader", "espeakng-loader")])
def test_a_missing_runtime_dependency_is_named_in_one_line(monkeypatch, module, package):
    from valle_hf.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, module, None)  # `import module` fails, as where it is not installed
    monkeypatch.delenv("PHONEMIZER_ESPEAK_LIBRARY", raising=False)
    with pytest.raises(MissingDependencyError, match=f"pip install {package}$"):
        phonemes._use_bundled_espeak.__wrapped__()  # past the per-process cache
