"""The processor: text → ids in one or several languages, prompt and STT audio for `generate`, save and load."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import soundfile
import torch
from conftest import HELLO_IDS, HELLO_IPA
from tokenizers import Tokenizer
from transformers import BatchFeature, PreTrainedTokenizerFast

from valle_hf.errors import VallETypeError, VallEValueError
from valle_hf.processing import VallEProcessor
from valle_hf.tokenization import packaged_tokenizer_file

TOKENIZER_FILE = packaged_tokenizer_file()


def _tone(seconds: float, rate: int, amplitude: float = 0.5, frequency: float = 440.0) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


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


def test_a_misspelt_processor_argument_is_refused_naming_the_one_it_misspells(processor):
    """`langauge=` or `processor_kwargs={"langauge": ...}` (the pipeline's route) was named without its fix."""
    for arguments in ({"langauge": "fr"}, {"processor_kwargs": {"langauge": "fr"}}):
        with pytest.raises(TypeError, match=r"unexpected .*: langauge \(did you mean language\?\); it takes text, "
                                            r"prompt_audio, audio, language, "):
            processor("Hello", **arguments)
    with pytest.raises(TypeError, match=r"arguments: bogus; it takes text,"):  # nothing close: no guess
        processor("Hello", bogus=1)


def test_processor_call_options_and_errors(processor):
    listed = processor("Hello world.", return_tensors=None, language="auto")
    assert listed["input_ids"] == [HELLO_IDS]
    assert processor("Hello world.")["input_ids"].shape == (1, 10)
    with pytest.raises(TypeError, match="unexpected arguments: bogus"):
        processor("Hello", bogus=1)
    with pytest.raises(ValueError, match="exclusive"):
        processor("Hello", audio=np.zeros(100, dtype=np.float32), sampling_rate=24000)
    with pytest.raises(ValueError, match="give `text`"):
        processor()
    with pytest.raises(ValueError, match="2 languages for 1 texts"):
        processor("Hello", language=["en", "de"])
    with pytest.raises(ValueError, match="1 languages for 2 texts: give one, or one per text"):
        processor(["Hello", "There"], language=["en"])
    with pytest.raises(ValueError, match="^text is an empty list$"):
        processor([])
    with pytest.raises(ValueError, match="^audio is an empty list$"):
        processor(audio=[], sampling_rate=24000)
    with pytest.raises(ValueError, match="list of 0 prompts for 2 texts"):
        processor(["Hello", "There"], prompt_audio=[])
    longest = processor(["Hello", "Hello world."], padding="longest")  # transformers' name for True
    assert torch.equal(longest["input_ids"], processor(["Hello", "Hello world."])["input_ids"])
    for language in (None, 3, ["en", None]):
        with pytest.raises(TypeError, match="language must be a language code"):
            processor(["Hello", "There"], language=language)
    with pytest.raises(ValueError, match="empty"):
        processor(["Hello", " "])
    # rows of different lengths do not stack without padding (transformers failed with a bare, multi-line error)
    for return_tensors in ("pt", "np"):
        for padding in (False, "do_not_pad"):  # transformers' name for False
            with pytest.raises(VallEValueError, match="texts of different lengths .* pass padding=True"):
                processor(["Hello", "Hello world."], padding=padding, return_tensors=return_tensors)
    assert processor(["Hello", "Hello"], padding=False)["input_ids"].shape[0] == 2
    listed = processor(["Hello", "Hello world."], padding=False, return_tensors=None)["input_ids"]
    assert len({len(ids) for ids in listed}) == 2  # as lists, each row keeps its length


def test_processor_prompt_audio_broadcast_and_per_row(processor, tmp_path):
    path = tmp_path / "voice.wav"
    soundfile.write(path, _tone(1.0, 22050, 0.3), 22050)
    broadcast = processor(["Hello.", "World."], prompt_audio=str(path), input_prompt_length=0.5)
    prompts = broadcast["prompt_audio"]
    assert isinstance(prompts, list) and len(prompts) == 2 and prompts[0] is prompts[1]  # loaded once
    assert [[w.numel() for w in row] for row in prompts] == [[24000], [24000]]  # whole: generate trims the codes
    assert prompts[0][0].dtype == torch.float32 and broadcast["input_prompt_length"] == 0.5  # passed through
    # as given, not as tensors, whatever return_tensors says
    assert type(broadcast["input_prompt_length"]) is float and type(broadcast["sampling_rate"]) is int
    per_row = processor(["Hello.", "World."], prompt_audio=[path, np.ones(800, dtype=np.float32)], sampling_rate=8000)
    assert [[w.numel() for w in row] for row in per_row["prompt_audio"]] == [[24000], [2400]]  # the array resampled
    assert per_row["sampling_rate"] == broadcast["sampling_rate"] == 24000  # what generate reads them at
    assert "input_prompt_length" not in per_row
    joined = processor("Hello.", prompt_audio=[[path, path]])  # several references for one row
    assert [w.numel() for w in joined["prompt_audio"][0]] == [24000, 24000]
    with pytest.raises(ValueError, match="list of 2 prompts for 3 texts"):
        processor(["a", "b", "c"], prompt_audio=[path, path])
    with pytest.raises(FileNotFoundError):
        processor("Hello.", prompt_audio=tmp_path / "nope.wav")


def test_a_two_channel_array_for_two_texts_is_refused_as_ambiguous(processor):
    """A [2, samples] array with two texts was averaged into one stereo voice, though it may be two voices."""
    pair = np.stack([_tone(0.5, 24000), _tone(0.5, 24000, frequency=220.0)])
    texts = ["Hello.", "World."]
    for array in (pair, torch.from_numpy(pair)):
        with pytest.raises(ValueError, match=r"^prompt_audio is one array of shape \(2, 12000\) for 2 texts: one "
                                             r"stereo voice, or two voices \(one per text\)\? For two voices give a "
                                             r"list of the two waveforms, \[first, second\]; for one voice give it "
                                             r"mono .* or the stereo file's path$"):
            processor(texts, prompt_audio=array, sampling_rate=24000)
    stereo = processor("Hello.", prompt_audio=pair, sampling_rate=24000)["prompt_audio"]  # one text: one voice
    assert [[w.numel() for w in row] for row in stereo] == [[12000]]
    three = processor([*texts, "Again."], prompt_audio=pair, sampling_rate=24000)["prompt_audio"]  # 2 voices for 3?
    assert len(three) == 3 and all(torch.equal(row[0], stereo[0][0]) for row in three)  # no: one stereo voice
    two_voices = processor(texts, prompt_audio=list(pair), sampling_rate=24000)["prompt_audio"]
    assert not torch.equal(two_voices[0][0], two_voices[1][0])
    one_voice = processor(texts, prompt_audio=pair.mean(0), sampling_rate=24000)["prompt_audio"]
    torch.testing.assert_close(one_voice[1][0], stereo[0][0])


def test_processor_speech_to_text_audio(processor):
    batch = processor(audio=[_tone(1.0, 16000), _tone(6.4, 16000)], sampling_rate=16000)
    assert "input_ids" not in batch
    assert [[a.numel() for a in row] for row in batch["audio"]] == [[24000], [153600]]  # no loop or cut to 5 s
    assert batch["sampling_rate"] == 24000
    assert len(processor(audio=_tone(1.0, 24000), sampling_rate=24000)["audio"]) == 1


def test_processor_works_as_the_text_to_speech_pipeline_calls_it(processor):
    # transformers' TextToAudioPipeline.preprocess: `preprocessor(text_list, return_tensors="pt")` (plus
    # `processor_kwargs={...}` when the pipeline was given some: see the next test)
    batch = processor(["Hello world."], language="en", prompt_audio=_tone(0.2, 24000), sampling_rate=24000,
                      return_tensors="pt")
    batch = batch.to(torch.float16)  # the pipeline casts a BatchFeature to the model dtype
    assert batch["input_ids"].dtype == torch.long and batch["prompt_audio"][0][0].dtype == torch.float16
    assert processor.model_input_names == ["input_ids", "attention_mask", "prompt_audio", "audio", "sampling_rate"]


def test_processor_kwargs_of_the_pipeline_are_merged_in(processor):
    # pipeline("text-to-speech")(text, processor_kwargs={...}) calls `processor(texts, processor_kwargs={...}, ...)`
    merged = processor(["Bonjour."], processor_kwargs={"language": "fr", "prompt_audio": _tone(2.0, 24000),
                                                       "sampling_rate": 24000, "input_prompt_length": 1.0},
                       return_tensors="pt")
    direct = processor(["Bonjour."], language="fr", prompt_audio=_tone(2.0, 24000), sampling_rate=24000,
                       input_prompt_length=1.0)
    assert merged["input_ids"].tolist() == direct["input_ids"].tolist()
    assert merged["prompt_audio"][0][0].numel() == direct["prompt_audio"][0][0].numel() == 48000
    assert merged["input_prompt_length"] == direct["input_prompt_length"] == 1.0
    with pytest.raises(TypeError, match="processor_kwargs: nope"):
        processor("Hello.", processor_kwargs={"nope": 1})


def test_processor_holds_a_feature_extractor_saved_beside_the_tokenizer(processor, tmp_path):
    from valle_hf.feature_extraction import VallEFeatureExtractor

    assert isinstance(processor.feature_extractor, VallEFeatureExtractor)
    VallEProcessor(processor.tokenizer, VallEFeatureExtractor(sampling_rate=24000)).save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "processor_config.json").read_text())
    assert saved["feature_extractor"]["feature_extractor_type"] == "VallEFeatureExtractor"
    assert isinstance(VallEProcessor.from_pretrained(tmp_path).feature_extractor, VallEFeatureExtractor)


def test_a_directory_saved_before_the_feature_extractor_still_loads(processor, tmp_path):
    from transformers import AutoProcessor

    import valle_hf  # noqa: F401  (registers the Auto classes)

    processor.save_pretrained(tmp_path)
    (tmp_path / "processor_config.json").write_text(json.dumps({"processor_class": "VallEProcessor"}))
    for loader in (VallEProcessor, AutoProcessor):
        loaded = loader.from_pretrained(tmp_path)
        assert isinstance(loaded, VallEProcessor) and loaded.feature_extractor.sampling_rate == 24000
        assert loaded("Hello world.")["input_ids"][0].tolist() == HELLO_IDS


def test_save_audio_writes_each_waveform_whole(processor, tmp_path):
    waveforms = [torch.from_numpy(_tone(0.5, 24000)), _tone(0.25, 24000)]  # as generate returns them, or arrays
    written = processor.save_audio(waveforms, [tmp_path / "a.wav", tmp_path / "b.flac"])
    assert [soundfile.info(path).frames for path in written] == [12000, 6000]
    assert {soundfile.info(path).samplerate for path in written} == {24000}
    processor.save_audio(waveforms[0], tmp_path / "one.wav")
    assert soundfile.read(tmp_path / "one.wav")[0].shape == (12000,)
    with pytest.raises(ValueError, match="2 waveforms for 1 paths"):
        processor.save_audio(waveforms, tmp_path / "c.wav")


def test_save_audio_checks_every_waveform_before_writing_any(processor, tmp_path):
    """Every waveform, path and rate: a rate the second file's format does not take left the first file written;
    generate's whole output, given for its .audio, was shown as the start of its repr."""
    from valle_hf.errors import OutputError, VallETypeError
    from valle_hf.generation import VallEGenerateOutput

    tone = _tone(0.25, 24000)
    nan = tone.copy()
    nan[10] = np.nan
    cases = [
        (([tone, nan], [tmp_path / "a.wav", tmp_path / "b.wav"]), ValueError,
         "b.wav was not written: the audio has 1 NaN"),
        (([tone, tone], [tmp_path / "a.wav", tmp_path / "x" / ".." / "a.wav"]), ValueError, "the same path for two"),
        (((tone * 32767).astype(np.int16), tmp_path / "a.wav"), ValueError, "float samples in \\[-1, 1\\], got int16"),
        # were told to scale integer PCM
        ((torch.zeros(100, dtype=torch.complex64), tmp_path / "a.wav"), ValueError, "got complex64 values, which are "
         "no audio samples: give the real-valued waveform"),
        ((np.zeros(100, dtype=bool), tmp_path / "a.wav"), ValueError, "got bool values, which are no audio samples"),
        ((torch.zeros(9, 8, dtype=torch.long), tmp_path / "a.wav"), ValueError,
         "got int64 values of shape \\(9, 8\\), which look like EnCodec codes \\(generate's output with "
         "output_audio=False\\): generate without output_audio=False for audio, or decode the codes with "
         "model.vocoder.decode\\(codes\\)"),
        ((None, tmp_path / "a.wav"), VallETypeError, "a waveform .* or a list of them, got None"),
        ((VallEGenerateOutput(sequences=None, audio=[tone]), tmp_path / "a.wav"), VallETypeError,
         "^save_audio takes waveforms, got VallEGenerateOutput, which holds them: pass its .audio$"),
        (([tone, tone], [tmp_path / "a.wav", tmp_path / "b.ogg"], 300_000), ValueError,
         "an OGG file's sampling rate must be .* up to 200000"),
        (([tone, tone], [tmp_path / "a.wav", tmp_path / "b.mp3"], 7000), OutputError,
         r"b.mp3 \(MPEG-1/2/2.5 only supports sample rates of .*\); it was not created"),  # found by encoding it
    ]
    for (audio, paths, *rate), error, message in cases:
        with pytest.raises(error, match=message):
            processor.save_audio(audio, paths, *rate)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("text", [123, [1, 2], ["fine", None]])
def test_text_of_another_type_is_refused_in_one_line(processor, text):
    from valle_hf.errors import VallETypeError

    with pytest.raises(VallETypeError, match="text must be a str or a list of str"):
        processor(text)


# --- mutation-run survivors (tests/MUTATION.md) ----------------------------------------------------------------


@pytest.mark.parametrize("layout", ["current", "before the feature extractor"])
def test_a_processor_loads_from_a_subfolder(processor, tmp_path, layout):
    processor.save_pretrained(tmp_path / "processor")
    if layout != "current":
        (tmp_path / "processor" / "processor_config.json").write_text(json.dumps({"processor_class": "VallEProcessor"}))
    loaded = VallEProcessor.from_pretrained(tmp_path, subfolder="processor")
    assert loaded("Hello world.")["input_ids"][0].tolist() == processor("Hello world.")["input_ids"][0].tolist()
    # the other keyword arguments reach the tokenizer too
    limit = processor.tokenizer.model_max_length // 2
    assert VallEProcessor.from_pretrained(tmp_path, subfolder="processor",
                                          model_max_length=limit).tokenizer.model_max_length == limit


def test_a_folder_without_the_tokenizer_is_refused_saying_how_to_fill_it(processor, tmp_path):
    """A Trainer's checkpoint folder holds no processor unless the Trainer was given one: transformers said only that
    it "couldn't instantiate the backend tokenizer"."""
    from valle_hf.errors import CheckpointError

    processor.save_pretrained(tmp_path / "processor")
    (tmp_path / "processor" / "tokenizer.json").unlink()
    for folder, subfolder in ((tmp_path, None), (tmp_path, "processor"), (tmp_path / "processor", None)):
        with pytest.raises(CheckpointError, match="has no tokenizer.json.*processor.save_pretrained"):
            VallEProcessor.from_pretrained(folder, subfolder=subfolder)


def test_a_chat_template_given_is_kept(processor):
    template = "{% for message in messages %}{{ message['content'] }}{% endfor %}"
    assert VallEProcessor(processor.tokenizer, chat_template=template).chat_template == template


def test_decode_refuses_what_is_not_one_sequence_of_the_vocabularys_ids(processor):
    vocab_size = len(processor.tokenizer)
    assert isinstance(processor.decode([1, vocab_size - 1, 2]), str)  # the last id decodes
    with pytest.raises(ValueError, match=f"phoneme ids must lie in 0..{vocab_size - 1}, got 1..{vocab_size}"):
        processor.decode([1, vocab_size])
    with pytest.raises(ValueError, match=r"decode takes one sequence of ids, got shape \(2, 10\): use batch_decode"):
        processor.decode(torch.tensor([HELLO_IDS, HELLO_IDS]))
    with pytest.raises(TypeError, match=r"decode got unexpected arguments: \['clean_up_tokenization_spaces'\]"):
        processor.decode(HELLO_IDS, clean_up_tokenization_spaces=True)
    # a text or None ended in torch's "new(): invalid data type 'str'" or "Could not infer dtype of NoneType"
    for given in (HELLO_IPA, None):
        with pytest.raises(VallETypeError, match=r"^decode takes phoneme ids \(a tensor or a list of integers\), got "):
            processor.decode(given)
    with pytest.raises(VallETypeError, match=r"got int \(1e\+5000\)$"):  # no repr: past Python's 4,300 digits
        processor.decode(10**5000)


def test_batch_decode_refuses_one_sequence_whose_ids_it_would_decode_one_by_one(processor):
    for one in (torch.tensor(HELLO_IDS), HELLO_IDS):
        with pytest.raises(VallEValueError, match=r"^batch_decode takes a batch of sequences .*: use decode$"):
            processor.batch_decode(one)
    assert processor.batch_decode([HELLO_IDS]) == [processor.decode(HELLO_IDS)]


def test_phonemize_reads_one_text_or_a_list_in_the_language_given(processor):
    from valle_hf.phonemes import phonemize

    french = phonemize("Bonjour le monde.", "fr")
    assert french != phonemize("Bonjour le monde.", "en")
    assert processor.phonemize("Bonjour le monde.", "fr") == french
    assert processor.phonemize(["Bonjour le monde.", "Bonjour le monde."], "fr") == [french, french]


def test_batch_decode_passes_skip_special_tokens_to_each_row(processor):
    ids = processor("Hello world.")["input_ids"]
    kept = processor.batch_decode(ids, skip_special_tokens=False)
    assert kept == [processor.decode(row, skip_special_tokens=False) for row in ids]
    assert kept != processor.batch_decode(ids)


def test_stt_audio_with_a_prompt_is_refused_in_words(processor):
    with pytest.raises(ValueError, match="^`prompt_audio` is for text-to-speech; speech-to-text takes `audio` only$"):
        processor(audio=_tone(0.5, 24000), prompt_audio=_tone(0.5, 24000), sampling_rate=24000)


def test_a_source_of_another_type_is_named_by_its_argument(processor):
    """A prompt of the wrong type was called "prompt audio" also when it was the audio to transcribe."""
    from valle_hf.errors import VallETypeError

    with pytest.raises(VallETypeError, match="^prompt_audio must be a path, .* got int"):
        processor("Hi.", prompt_audio=3)
    with pytest.raises(VallETypeError, match="^audio must be a path, .* got int"):
        processor(audio=3)


def test_a_waveform_given_as_a_list_of_numbers_is_that_waveform(processor):
    """A waveform held as a Python list was read as a list of sources, one per sample: refused as "a list of 16000
    prompts for 1 texts", or, to transcribe, as a float that is no audio."""
    voice = _tone(0.5, 16000)
    as_array = processor("Hello.", prompt_audio=voice, sampling_rate=16000)["prompt_audio"][0]
    for texts in (["Hello."], ["Hello.", "World."]):  # broadcast to every text
        rows = processor(texts, prompt_audio=voice.tolist(), sampling_rate=16000)["prompt_audio"]
        assert len(rows) == len(texts) and all(len(row) == 1 and torch.equal(row[0], as_array[0]) for row in rows)
    per_row = processor(["Hello.", "World."], prompt_audio=[voice.tolist(), voice[::-1].tolist()],
                        sampling_rate=16000)["prompt_audio"]  # a list of them: one voice per text
    assert [len(row) for row in per_row] == [1, 1] and torch.equal(per_row[0][0], as_array[0])
    assert not torch.equal(per_row[1][0], as_array[0])
    heard = processor(audio=voice.tolist(), sampling_rate=16000)["audio"]
    assert len(heard) == 1 and len(heard[0]) == 1 and torch.equal(heard[0][0], as_array[0])
    features = processor.feature_extractor(voice.tolist(), sampling_rate=16000, return_tensors="pt")
    assert torch.equal(features["input_values"], as_array[0][None])


@pytest.mark.parametrize("form", ["bytes", "BytesIO", "open file"])
def test_an_audio_files_content_is_a_prompt_and_an_input_as_its_path_is(processor, prompt_wav, form):
    """A file's bytes or an open file (transformers' speech-recognition pipeline reads bytes) were refused with a
    hint; they are read, checked and resampled as the file's path is, alone or among other references."""
    with open(prompt_wav, "rb") as opened:
        source = {"bytes": prompt_wav.read_bytes(), "BytesIO": io.BytesIO(prompt_wav.read_bytes()),
                  "open file": opened}[form]
        expected = processor("Hi.", prompt_audio=str(prompt_wav))["prompt_audio"][0]
        prompt = processor(["Hi.", "Yo."], prompt_audio=[[source, str(prompt_wav)]])["prompt_audio"]
        assert all(len(row) == 2 and all(torch.equal(got, expected[0]) for got in row) for row in prompt)
        heard = processor(audio=source)["audio"]
        assert len(heard) == 1 and torch.equal(heard[0][0], expected[0])
    with pytest.raises(VallEValueError, match="^could not read the audio bytes given: "):
        processor("Hi.", prompt_audio=b"RIFF....WAVE")


@pytest.mark.parametrize(("source", "fix"), [
    ({"array": np.zeros(16000, np.float32), "sampling_rate": 16000},
     r"got dict: give its samples and rate, {name}=item\['array'\], sampling_rate=item\['sampling_rate'\]"),
    (0.25, r"got float: a waveform's samples one by one\? give the waveform as one array"),
])
def test_audio_held_in_another_form_is_refused_saying_how_to_give_it(processor, source, fix):
    """A `datasets` item, which a notebook holds audio in, was refused as "got dict" without a word of how to give
    it; a number, which is no audio either, says what is."""
    with pytest.raises(VallETypeError, match="^prompt_audio must be a path, .*" + fix.format(name="prompt_audio")):
        processor("Hi.", prompt_audio=source, sampling_rate=16000)
    with pytest.raises(VallETypeError, match="^audio must be a path, .*" + fix.format(name="audio")):
        processor(audio=source, sampling_rate=16000)


def test_return_attention_mask_as_transformers_processors_take_it(processor):
    texts = ["Hello", "Hello world."]
    padded = processor(texts)
    for asked in (True, None):
        inputs = processor(texts, return_attention_mask=asked)
        assert torch.equal(inputs["attention_mask"], padded["attention_mask"])
    # processor_kwargs (as the pipeline passes them) carry it too
    assert "attention_mask" in processor(texts, processor_kwargs={"return_attention_mask": True})
    unmasked = processor(texts, return_attention_mask=False)
    assert "attention_mask" not in unmasked and torch.equal(unmasked["input_ids"], padded["input_ids"])
    assert "attention_mask" not in processor(texts, processor_kwargs={"return_attention_mask": False})
    stt = processor(audio=_tone(0.5, 24000), sampling_rate=24000, return_attention_mask=True)
    assert set(stt) == {"audio", "sampling_rate"}  # whole waveforms: nothing to mask
    for wrong in (1, "yes"):
        with pytest.raises(VallEValueError, match=r"^return_attention_mask must be True, False or None, got "):
            processor(texts, return_attention_mask=wrong)


def test_decoding_an_stt_outputs_sequences_or_the_output_names_its_text_ids(processor, tiny_model):
    codes = torch.randint(0, tiny_model.config.audio_vocab_size, (1, 30, 8), generator=torch.Generator().manual_seed(0))
    out = tiny_model.generate(audio_codes=codes, task="stt", temperature=0.0, max_new_tokens=4,
                              return_dict_in_generate=True)
    text = processor.batch_decode(out.text_ids)
    assert text == processor.batch_decode(tiny_model.generate(audio_codes=codes, task="stt", temperature=0.0,
                                                               max_new_tokens=4))
    # transformers' habit reads the AR's whole sequence, whose audio positions are no phoneme ids
    with pytest.raises(VallEValueError, match=r"^phoneme ids must lie in .*: .* the `text_ids` of its output"):
        processor.batch_decode(out.sequences)
    for method, given in ((processor.batch_decode, out), (processor.decode, out), (processor.batch_decode, dict(out))):
        # the output object, or a dict of it: decode named only its type, batch_decode a dict's first key as a text
        with pytest.raises(VallETypeError, match=rf"^{method.__name__} takes phoneme ids .*, got a "
                                                 rf"{type(given).__name__}: .* the `text_ids` of its output"):
            method(given)


def test_a_text_with_nothing_to_speak_in_a_list_is_named_by_its_number(processor):
    from valle_hf.errors import VallEValueError

    with pytest.raises(VallEValueError, match=r"^text 2 of the 3 given: empty text: nothing to speak"):
        processor(["Hello.", "Hi.", " "])
    with pytest.raises(VallEValueError, match=r"^empty text: nothing to speak"):  # one text is the text
        processor([" "])
