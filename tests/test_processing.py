"""Front-end: phonemisation, the original phoneme tokenizer, audio and prompt loading, and the processor."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from tokenizers import Tokenizer
from transformers import BatchFeature, PreTrainedTokenizerFast

from valle_hf import processing
from valle_hf.processing import (
    VallEProcessor,
    detect_language,
    ids_to_phonemes,
    load_audio,
    load_phoneme_tokenizer,
    load_references,
    looks_like_ipa,
    phonemize,
    split_sentences,
)
from valle_hf.tokenization import packaged_tokenizer_file

REPO = Path(__file__).resolve().parents[1]
TOKENIZER_FILE = packaged_tokenizer_file()
EXAMPLE_PROMPT = REPO / "examples" / "prompt.wav"
HELLO_IPA = "həlˈoʊ wˈɜːld."
HELLO_IDS = [1, 22, 111, 100, 4, 37, 115, 169, 11, 2]  # spec/samplers_inference.md §2.3 item 7 [run]



@pytest.fixture(scope="module")
def processor() -> VallEProcessor:
    return VallEProcessor.from_tokenizer_file(TOKENIZER_FILE)


def _tone(seconds: float, rate: int, amplitude: float = 0.5, frequency: float = 440.0) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


# ---------------------------------------------------------------------------------------------------- phonemes


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
    monkeypatch.setattr(processing, "_kakasi", lambda: None)
    assert phonemize("こんにちは", "ja") == phonemize("コンニチハ", "ja")
    assert phonemize("こんにちは", "ja").startswith("k")


def test_japanese_kanji_without_pykakasi_names_it(monkeypatch):
    monkeypatch.setattr(processing, "_kakasi", lambda: None)
    with pytest.raises(ImportError, match="pip install pykakasi"):
        phonemize("今日は", "ja")


def test_japanese_goes_through_pykakasi_hiragana_when_installed(monkeypatch):
    class FakeKakasi:
        def convert(self, text):
            if text == "今日は":
                return [{"orig": "今日", "hira": "きょう"}, {"orig": "は", "hira": "は"}]
            return [{"orig": text, "hira": text}]

    monkeypatch.setattr(processing, "_kakasi", lambda: FakeKakasi())
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


# ---------------------------------------------------------------------------------------------------- tokenizer


def test_tokenizer_round_trip_with_the_reference_file(processor):
    tokenizer = processor.tokenizer
    special_ids = (tokenizer.unk_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)
    assert special_ids == (0, 1, 2, 0)
    assert tokenizer(HELLO_IPA)["input_ids"] == HELLO_IDS
    assert processor.decode(HELLO_IDS) == HELLO_IPA
    assert processor.decode(torch.tensor(HELLO_IDS[1:-1])) == HELLO_IPA
    assert processor.decode(HELLO_IDS, skip_special_tokens=False) == f"<bos>{HELLO_IPA}</eos>"
    assert processor.batch_decode(torch.tensor([HELLO_IDS, HELLO_IDS])) == [HELLO_IPA, HELLO_IPA]
    assert ids_to_phonemes(["h", "əl", "ˈoʊ", " ", "w"]) == "həlˈoʊ w"
    with pytest.raises(ValueError, match="0..255"):
        processor.decode([1, 300])


def test_aliased_ids_decode_deterministically_with_unchanged_ids(processor):
    """The reference vocab gives several strings one id; ids must match the original file, decoding must not vary."""
    original = Tokenizer.from_file(str(TOKENIZER_FILE))
    aliased = "ä ɒ ĩ ũ ø œ y ɣ ʍ ɸ ɽ ʁ ɲ ɴ e̞ ᵝ {x} [y] ĩː"
    texts = [
        HELLO_IPA,
        aliased,
        phonemize("Guten Tag, schöne Welt!", "de"),
        phonemize("Une œuvre très réussie.", "fr"),
        phonemize("こんにちは、せかい", "ja"),
        "<bos>a<unk>b€",
    ]
    for text in texts:
        assert processor.tokenizer(text)["input_ids"] == original.encode(text).ids, text
    # one canonical string per id: a space stays a space (the original may print "ᵝ"), "w" stays "w" (not "ʍ")
    assert processor.decode([16, 4, 23, 4, 35, 4, 37, 4, 7, 8]) == "a i u w ()"


def test_processor_save_and_load_round_trip(processor, tmp_path):
    processor.save_pretrained(tmp_path)
    assert {"tokenizer.json", "tokenizer_config.json", "processor_config.json"} <= {p.name for p in tmp_path.iterdir()}
    Tokenizer.from_file(str(tmp_path / "tokenizer.json"))  # the saved file is loadable by plain `tokenizers`
    loaded = VallEProcessor.from_pretrained(tmp_path)
    assert isinstance(loaded, VallEProcessor)
    texts = ["Hello world.", "Hi."]
    expected, got = processor(texts), loaded(texts)
    assert torch.equal(expected["input_ids"], got["input_ids"])
    assert torch.equal(expected["attention_mask"], got["attention_mask"])
    assert loaded.decode(HELLO_IDS) == HELLO_IPA
    assert loaded.tokenizer.pad_token_id == 0 and loaded.tokenizer.padding_side == "right"


def test_processor_accepts_a_tokenizer_loaded_straight_from_the_original_file(tmp_path):
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_file=str(TOKENIZER_FILE), bos_token="<bos>", eos_token="</eos>", unk_token="<unk>"
    )
    wrapped = VallEProcessor(tokenizer)
    assert wrapped.tokenizer.pad_token_id == 0
    wrapped.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "tokenizer.json").read_text(encoding="utf-8"))
    assert len(saved["model"]["vocab"]) == 256  # one string per id, aliases moved to the normalizer
    assert VallEProcessor.from_pretrained(tmp_path).tokenizer(HELLO_IPA)["input_ids"] == HELLO_IDS


def test_load_phoneme_tokenizer_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.json"):
        load_phoneme_tokenizer(tmp_path / "nothere.json")


# ---------------------------------------------------------------------------------------------------- audio


def test_stereo_44k_16bit_wav_is_averaged_to_mono_and_resampled(tmp_path):
    left, right = _tone(0.5, 44100, 0.6), _tone(0.5, 44100, 0.2)
    path = tmp_path / "stereo.wav"
    soundfile.write(path, np.stack([left, right], axis=1), 44100, subtype="PCM_16")
    audio = load_audio(path)
    assert audio.dtype == torch.float32 and audio.ndim == 1
    assert abs(audio.numel() - 0.5 * 24000) <= 1
    assert abs(float(audio[200:-200].abs().max()) - 0.4) < 0.01  # (0.6 + 0.2) / 2, not channel 0's 0.6


def test_unsigned_8bit_wav_is_centred(tmp_path):
    path = tmp_path / "u8.wav"
    soundfile.write(path, _tone(0.25, 24000, 0.5), 24000, subtype="PCM_U8")
    audio = load_audio(path)
    assert audio.numel() == 6000
    assert abs(float(audio.mean())) < 0.01 and abs(float(audio.abs().max()) - 0.5) < 0.02


def test_flac_at_16k(tmp_path):
    path = tmp_path / "mono.flac"
    soundfile.write(path, _tone(0.5, 16000, 0.3), 16000, subtype="PCM_16")
    audio = load_audio(path)
    assert audio.numel() == 12000
    assert abs(float(audio[200:-200].abs().max()) - 0.3) < 0.01


def test_arrays_and_tensors():
    tone = _tone(0.1, 24000, 0.5)
    assert torch.equal(load_audio(tone), torch.from_numpy(tone))  # 24 kHz by default, untouched
    as_int16 = (tone * 32768).astype(np.int16)
    torch.testing.assert_close(load_audio(as_int16), torch.from_numpy(tone), atol=1e-4, rtol=0)
    assert float(load_audio(np.full(10, 128, dtype=np.uint8)).abs().max()) == 0.0
    stereo = torch.stack([torch.from_numpy(tone), torch.zeros(len(tone))])  # [channels, samples]
    torch.testing.assert_close(load_audio(stereo), torch.from_numpy(tone) / 2)
    torch.testing.assert_close(load_audio(stereo.T.numpy()), torch.from_numpy(tone) / 2)  # [samples, channels]
    assert load_audio(_tone(0.1, 48000), sampling_rate=48000).numel() == 2400


def test_audio_errors(tmp_path):
    missing = tmp_path / "missing.wav"
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        load_audio(missing)
    junk = tmp_path / "junk.wav"
    junk.write_text("this is not audio\nat all\n")
    with pytest.raises(ValueError, match="could not read audio file .*junk.wav") as raised:
        load_audio(junk)
    assert "\n" not in str(raised.value)
    empty = tmp_path / "empty.wav"
    soundfile.write(empty, np.zeros(0, dtype=np.float32), 24000)
    with pytest.raises(ValueError, match="empty"):
        load_audio(empty)
    with pytest.raises(ValueError, match="empty"):
        load_audio(np.zeros(0, dtype=np.float32))
    with pytest.raises(ValueError, match="sampling_rate=16000"):
        load_audio(empty, sampling_rate=16000)


def test_example_prompt_is_about_three_seconds_of_24k_mono():
    info = soundfile.info(EXAMPLE_PROMPT)
    assert (info.samplerate, info.channels, info.subtype) == (24000, 1, "PCM_16")
    assert 2.0 < info.duration < 5.0
    assert float(load_audio(EXAMPLE_PROMPT).abs().max()) > 0.1


# ---------------------------------------------------------------------------------------------------- prompts


def test_references_stay_whole_and_separate(tmp_path):
    first, second = tmp_path / "a.wav", tmp_path / "b.wav"
    soundfile.write(first, _tone(0.5, 24000, 0.2), 24000)
    soundfile.write(second, _tone(0.25, 48000, 0.6), 48000)
    joined = load_references(f"{first};{second}")
    # nothing is cut, padded or looped: the model encodes each reference alone and trims the joined codes
    assert [w.numel() for w in joined] == [12000, 6000]
    assert torch.equal(joined[0], load_audio(first)) and torch.equal(joined[1], load_audio(second))
    assert all(torch.equal(a, b) for a, b in zip(load_references([first, str(second)]), joined, strict=True))
    one_second = _tone(1.0, 24000, 0.5, 333.0)
    assert torch.equal(load_references(one_second)[0], torch.from_numpy(one_second))
    with pytest.raises(ValueError, match="no reference audio"):
        load_references(" ; ")


# ---------------------------------------------------------------------------------------------------- processor call


def test_processor_call_pads_a_list_of_texts_on_the_right(processor):
    batch = processor(["Hello world.", "Hi.", HELLO_IPA], language=["en", "en", "de"])
    assert isinstance(batch, BatchFeature)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert ids.shape == mask.shape == (3, 10) and ids.dtype == torch.long
    assert ids[0].tolist() == HELLO_IDS and ids[2].tolist() == HELLO_IDS
    short = int(mask[1].sum())
    assert ids[1, 0] == 1 and ids[1, short - 1] == 2 and (ids[1, short:] == 0).all() and (mask[1, short:] == 0).all()
    assert mask[1, :short].all()


def test_each_row_is_phonemised_in_its_own_language(processor):
    """Orthographic text (not IPA, which passes through whatever the language), one language per row."""
    texts = ["Guten Morgen, meine Damen.", "Guten Morgen, meine Damen."]

    def rows(language):
        batch = processor(texts, language=language)
        return [ids[mask.bool()].tolist() for ids, mask in zip(batch["input_ids"], batch["attention_mask"],
                                                                 strict=True)]

    english, mixed, german = rows(["en", "en"]), rows(["en", "de"]), rows(["de", "de"])
    assert english[1] != german[1]
    assert mixed == [english[0], german[1]]
    assert mixed[1] == processor(texts[1], language="de")["input_ids"][0].tolist()


def test_processor_call_options_and_errors(processor):
    listed = processor("Hello world.", return_tensors=None, language="auto")
    assert listed["input_ids"] == [HELLO_IDS]
    assert processor("Hello world.")["input_ids"].shape == (1, 10)
    with pytest.raises(TypeError, match="unexpected arguments: bogus"):
        processor("Hello", bogus=1)
    with pytest.raises(ValueError, match="exclusive"):
        processor("Hello", audio=np.zeros(100, dtype=np.float32))
    with pytest.raises(ValueError, match="give `text`"):
        processor()
    with pytest.raises(ValueError, match="2 languages for 1 texts"):
        processor("Hello", language=["en", "de"])
    with pytest.raises(ValueError, match="empty"):
        processor(["Hello", " "])


def test_processor_prompt_audio_broadcast_and_per_row(processor, tmp_path):
    path = tmp_path / "voice.wav"
    soundfile.write(path, _tone(1.0, 22050, 0.3), 22050)
    broadcast = processor(["Hello.", "World."], prompt_audio=str(path), input_prompt_length=0.5)
    prompts = broadcast["prompt_audio"]
    assert isinstance(prompts, list) and len(prompts) == 2 and prompts[0] is prompts[1]  # loaded once
    assert [[w.numel() for w in row] for row in prompts] == [[24000], [24000]]  # whole: generate trims the codes
    assert prompts[0][0].dtype == torch.float32 and broadcast["input_prompt_length"] == 0.5  # passed through
    per_row = processor(["Hello.", "World."], prompt_audio=[path, np.zeros(800, dtype=np.float32)])
    assert [[w.numel() for w in row] for row in per_row["prompt_audio"]] == [[24000], [800]]
    assert "input_prompt_length" not in per_row
    joined = processor("Hello.", prompt_audio=[[path, path]])  # several references for one row
    assert [w.numel() for w in joined["prompt_audio"][0]] == [24000, 24000]
    with pytest.raises(ValueError, match="list of 2 prompts for 3 texts"):
        processor(["a", "b", "c"], prompt_audio=[path, path])
    with pytest.raises(FileNotFoundError):
        processor("Hello.", prompt_audio=tmp_path / "nope.wav")


def test_processor_speech_to_text_audio(processor):
    batch = processor(audio=[_tone(1.0, 16000), _tone(6.4, 16000)], sampling_rate=16000)
    assert "input_ids" not in batch
    assert [[a.numel() for a in row] for row in batch["audio"]] == [[24000], [153600]]  # no loop or cut to 5 s
    assert len(processor(audio=_tone(1.0, 24000))["audio"]) == 1


def test_processor_works_as_the_text_to_speech_pipeline_calls_it(processor):
    # transformers' TextToAudioPipeline.preprocess: `preprocessor(text_list, return_tensors="pt")` (plus
    # `processor_kwargs={...}` when the pipeline was given some: see the next test)
    batch = processor(["Hello world."], language="en", prompt_audio=_tone(0.2, 24000), return_tensors="pt")
    batch = batch.to(torch.float16)  # the pipeline casts a BatchFeature to the model dtype
    assert batch["input_ids"].dtype == torch.long and batch["prompt_audio"][0][0].dtype == torch.float16
    assert processor.model_input_names == ["input_ids", "attention_mask", "prompt_audio", "audio"]


def test_processor_kwargs_of_the_pipeline_are_merged_in(processor):
    # pipeline("text-to-speech")(text, processor_kwargs={...}) calls `processor(texts, processor_kwargs={...}, ...)`
    merged = processor(["Bonjour."], processor_kwargs={"language": "fr", "prompt_audio": _tone(2.0, 24000),
                                                       "input_prompt_length": 1.0}, return_tensors="pt")
    direct = processor(["Bonjour."], language="fr", prompt_audio=_tone(2.0, 24000), input_prompt_length=1.0)
    assert merged["input_ids"].tolist() == direct["input_ids"].tolist()
    assert merged["prompt_audio"][0][0].numel() == direct["prompt_audio"][0][0].numel() == 48000
    assert merged["input_prompt_length"] == direct["input_prompt_length"] == 1.0
    with pytest.raises(TypeError, match="processor_kwargs: nope"):
        processor("Hello.", processor_kwargs={"nope": 1})
