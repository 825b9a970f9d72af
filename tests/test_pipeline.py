"""pipeline("text-to-speech") with a local directory and with a model instance, batched, with a voice prompt."""

from __future__ import annotations

import copy
import io
import math

import numpy as np
import pytest
import torch
from conftest import Upload
from transformers import pipeline

import valle_hf  # noqa: F401  (registers the Auto classes)

GENERATE = {"temperature": 0.0, "max_new_tokens": 8, "min_new_tokens": 8}
TEXTS = ["Hello.", "A second, longer sentence."]


@pytest.fixture(scope="module")
def tts(converted_dir):
    return pipeline("text-to-speech", model=str(converted_dir))


def prompt_frames_seen(model):
    """Record the number of prompt frames of every AR prefill (the forward calls that get `prompt_codes`)."""
    seen = []

    def hook(module, args, kwargs):
        if kwargs.get("prompt_codes") is not None and kwargs.get("level") == 0:
            seen.append(kwargs["prompt_codes"].shape[1])

    return seen, model.register_forward_pre_hook(hook, with_kwargs=True)


def test_pipeline_from_a_directory(tts, prompt_wav):
    assert isinstance(tts.processor, valle_hf.VallEProcessor)
    result = tts("Hello there.", forward_params={"prompt_audio": str(prompt_wav)}, generate_kwargs=GENERATE)
    assert result["sampling_rate"] == 24000
    assert isinstance(result["audio"], np.ndarray) and result["audio"].shape == (8 * 320,)


def test_pipeline_with_a_model_instance_and_a_batch(converted_dir, prompt_wav):
    model = valle_hf.VallEForConditionalGeneration.from_pretrained(converted_dir)
    processor = valle_hf.VallEProcessor.from_pretrained(converted_dir)
    tts = pipeline("text-to-speech", model=model, tokenizer=processor.tokenizer, processor=processor)
    results = tts(TEXTS, forward_params={"prompt_audio": str(prompt_wav)}, generate_kwargs=GENERATE)
    assert len(results) == 2
    assert all(result["audio"].shape == (8 * 320,) for result in results)


def test_a_folder_saved_without_its_processor_is_refused_saying_how_to_fill_it(fixture_model, tmp_path):
    """pipeline() on a folder that `model.save_pretrained` alone wrote failed in transformers' tokenizer loader, which
    spoke of sentencepiece and tiktoken; the pipeline built as the message says then speaks."""
    from valle_hf.errors import CheckpointError

    fixture_model.save_pretrained(tmp_path)
    for task in ("text-to-speech", "automatic-speech-recognition"):
        with pytest.raises(CheckpointError, match="has no tokenizer.json.*processor.save_pretrained.*processor=.*"
                                                  "feature_extractor as feature_extractor="):
            pipeline(task, model=str(tmp_path))
    processor = valle_hf.VallEProcessor.from_tokenizer_file()
    tts = pipeline("text-to-speech", model=str(tmp_path), tokenizer=processor.tokenizer, processor=processor)
    audio = tts("Hello.", generate_kwargs=GENERATE)["audio"]
    assert audio.shape == (GENERATE["max_new_tokens"] * 320,)
    stt = pipeline("automatic-speech-recognition", model=str(tmp_path), tokenizer=processor.tokenizer,
                   feature_extractor=processor.feature_extractor, processor=processor)
    assert isinstance(stt({"raw": audio, "sampling_rate": 24000}, generate_kwargs={"max_new_tokens": 2})["text"], str)


def test_a_model_instance_with_its_tokenizer_only_phonemises_the_text(converted_dir):
    """transformers needs `tokenizer=` with a model instance, and without `processor=` the pipeline tokenized the
    text's letters as phonemes: the model spoke "h e l l o", silently."""
    model = valle_hf.VallEForConditionalGeneration.from_pretrained(converted_dir)
    processor = valle_hf.VallEProcessor.from_pretrained(converted_dir)
    seen = []
    model.register_forward_pre_hook(lambda module, args, kwargs: seen.append(kwargs["input_ids"]), with_kwargs=True)
    tts = pipeline("text-to-speech", model=model, tokenizer=processor.tokenizer)
    assert isinstance(tts.processor, valle_hf.VallEProcessor)
    tts("Hello.", generate_kwargs=GENERATE)
    text = processor("Hello.")["input_ids"][0] + model.config.text_token_offset
    assert torch.equal(seen[0][0, :len(text)], text)


def test_a_batch_gives_each_text_its_own_takes_and_what_it_gets_alone(tts, prompt_wav):
    """num_return_sequences takes stay with their text (transformers' batching took a text's second take for the
    next text and lost the last texts'), a partial last batch included; one seed serves every text, as it does for
    texts run one by one, and more seeds than the pipeline can deal out are refused."""
    settings = {"prompt_audio": str(prompt_wav), "nar_dtype": "float32", "do_sample": True, "temperature": 1.0,
                "max_new_tokens": 8, "num_return_sequences": 2, "seeds": [5]}
    texts = [*TEXTS, "Third."]
    alone = [tts(text, forward_params=settings) for text in texts]
    batched = tts(texts, batch_size=2, forward_params=settings)
    assert len(batched) == len(texts)
    for one, other in zip(alone, batched, strict=True):
        assert len(one["audio"]) == len(other["audio"]) == 2
        assert not np.array_equal(*other["audio"])  # two takes
        for take, same in zip(one["audio"], other["audio"], strict=True):
            np.testing.assert_allclose(same, take, atol=1e-5)
    assert not np.array_equal(batched[0]["audio"][1], batched[1]["audio"][0])
    single = {**settings, "num_return_sequences": 1}
    for text, other in zip(texts, tts(texts, batch_size=2, forward_params=single), strict=True):
        np.testing.assert_allclose(other["audio"], tts(text, forward_params=single)["audio"], atol=1e-5)
    with pytest.raises(ValueError, match="give one seed"):
        tts(texts, batch_size=2, forward_params={**settings, "seeds": [1, 2]})
    for one_seed in (torch.tensor([5]), 5, np.int64(5)):  # one seed as a tensor, or as a number
        again = tts(texts, batch_size=2, forward_params={**settings, "seeds": one_seed})
        assert all(np.array_equal(take, same) for one, other in zip(batched, again, strict=True)
                   for take, same in zip(one["audio"], other["audio"], strict=True))
    with pytest.raises(ValueError, match="seeds must be a list with one integer >= 0 per row"):
        tts(texts, batch_size=2, forward_params={**settings, "seeds": "5"})
    # the seed given in generate_kwargs serves every text of a batch as well
    unseeded = {name: value for name, value in settings.items() if name != "seeds"}
    again = tts(texts, batch_size=2, forward_params=unseeded, generate_kwargs={"seeds": [5]})
    assert all(np.array_equal(take, same) for one, other in zip(batched, again, strict=True)
               for take, same in zip(one["audio"], other["audio"], strict=True))
    # a tuple of texts is one item of several rows to transformers: every row's takes, in order, as before
    takes = tts(tuple(texts), forward_params=settings)["audio"]
    assert len(takes) == 2 * len(texts)
    for index, take in enumerate(takes):
        np.testing.assert_allclose(take, alone[index // 2]["audio"][index % 2], atol=1e-5)


@pytest.mark.parametrize("setting, value", [("temperature", math.nan), ("repetition_penalty", 0.0), ("num_beams", -1),
                                            ("layer_skip_entropy_threshold", -1.0), ("nar_temperature", -1.0),
                                            ("pad_token_id", 0), ("cache_implementation", "x")])
def test_the_pipeline_checks_every_setting(converted_dir, prompt_wav, setting, value):
    tts = pipeline("text-to-speech", model=str(converted_dir))
    with pytest.raises(ValueError, match=f"{setting}=.* is not allowed: it must be "):
        tts("Hello.", forward_params={"prompt_audio": str(prompt_wav)}, generate_kwargs={setting: value})


def test_batched_pipeline_with_a_prompt_in_processor_kwargs(tts, prompt_wav):
    frame_rate = tts.model.config.frame_rate
    processor_kwargs = {"prompt_audio": str(prompt_wav), "input_prompt_length": 1.0}
    seen, handle = prompt_frames_seen(tts.model)
    try:
        batched = tts(TEXTS, processor_kwargs=processor_kwargs, batch_size=2, generate_kwargs=GENERATE)
        alone = [tts(text, processor_kwargs=processor_kwargs, generate_kwargs=GENERATE) for text in TEXTS]
    finally:
        handle.remove()
    assert seen == [frame_rate] * 3  # one batched run, two runs alone: each row's prompt cut to 1 s
    for row, single in zip(batched, alone, strict=True):
        np.testing.assert_allclose(row["audio"], single["audio"], atol=1e-5, rtol=0)


def test_input_prompt_length_in_processor_kwargs_applies_to_a_prompt_in_forward_params(tts, prompt_wav):
    frame_rate = tts.model.config.frame_rate
    seen, handle = prompt_frames_seen(tts.model)
    try:
        tts(TEXTS[0], forward_params={"prompt_audio": str(prompt_wav)}, processor_kwargs={"input_prompt_length": 0.5},
            generate_kwargs=GENERATE)
    finally:
        handle.remove()
    assert seen == [int(0.5 * frame_rate)]


def test_a_list_of_one_prompt_is_that_one_voice(tts, prompt_wav):
    """Only a list of several prompts is refused (one voice per text): a list of one is the voice itself."""
    seen, handle = prompt_frames_seen(tts.model)
    try:
        listed = tts(TEXTS[0], forward_params={"prompt_audio": [str(prompt_wav)]}, generate_kwargs=GENERATE)
        alone = tts(TEXTS[0], forward_params={"prompt_audio": str(prompt_wav)}, generate_kwargs=GENERATE)
    finally:
        handle.remove()
    assert len(seen) == 2 and seen[0] == seen[1] > 0
    np.testing.assert_allclose(listed["audio"], alone["audio"], atol=1e-5, rtol=0)


def test_an_array_prompt_needs_its_sampling_rate(tts, prompt_wav):
    samples = np.zeros(16000, dtype=np.float32)
    with pytest.raises(ValueError, match="sampling_rate"):
        tts(TEXTS[0], forward_params={"prompt_audio": samples}, generate_kwargs=GENERATE)
    result = tts(TEXTS[0], forward_params={"prompt_audio": samples, "sampling_rate": 16000}, generate_kwargs=GENERATE)
    assert result["audio"].shape == (8 * 320,)


@pytest.mark.parametrize("where", ["forward_params", "processor_kwargs"])
def test_a_prompt_given_as_a_list_of_numbers_is_that_waveform(tts, prompt_wav, where):
    """A waveform held as a Python list was refused as "a list of 48000 prompts" (one per sample)."""
    import soundfile

    mono, rate = soundfile.read(prompt_wav, dtype="float32")
    listed = tts(TEXTS[0], **{where: {"prompt_audio": mono.tolist(), "sampling_rate": rate}}, generate_kwargs=GENERATE)
    alone = tts(TEXTS[0], **{where: {"prompt_audio": mono, "sampling_rate": rate}}, generate_kwargs=GENERATE)
    np.testing.assert_array_equal(listed["audio"], alone["audio"])


@pytest.mark.parametrize("where, kind", [("forward_params", "numpy"), ("processor_kwargs", "numpy"),
                                         ("forward_params", "tensor")])
def test_a_stereo_array_prompt_is_one_voice_for_a_batch_of_two(tts, prompt_wav, where, kind):
    """generate cannot tell a [2, samples] array given with two texts from two voices and refuses it; the pipeline's
    prompt is one voice for every text, so a batch of two texts takes it as one stereo voice."""
    import soundfile

    mono, rate = soundfile.read(prompt_wav, dtype="float32")
    stereo = np.stack([mono, mono]) if kind == "numpy" else torch.from_numpy(np.stack([mono, mono]))
    settings = {where: {"prompt_audio": stereo, "sampling_rate": rate}, "generate_kwargs": GENERATE}
    batched = tts([*TEXTS, "Third."], batch_size=2, **settings)
    alone = [tts(text, forward_params={"prompt_audio": mono, "sampling_rate": rate}, generate_kwargs=GENERATE)
             for text in [*TEXTS, "Third."]]
    assert all(np.allclose(b["audio"], a["audio"], atol=1e-5) for b, a in zip(batched, alone, strict=True))


@pytest.mark.parametrize("call, error, message", [
    (lambda tts, prompt: tts([]), ValueError, "empty list of texts"),
    (lambda tts, prompt: tts(()), ValueError, "empty list of texts"),
    (lambda tts, prompt: tts(["Hi.", "Yo."], batch_size=2, forward_params={"seeds": []}), ValueError,
     "forward_params has 0 seeds: .*give one seed"),
    (lambda tts, prompt: tts(["Hi.", "Yo."], batch_size=2, forward_params={"seeds": True}), ValueError,
     "seeds must be a list with one integer >= 0 per row"),  # a bool is no seed, though Python counts it an int
    (lambda tts, prompt: tts("Hi.", forward_params="voice.wav"), TypeError,
     r"forward_params must be a dict of keyword arguments, got str \('voice.wav'\)"),
    (lambda tts, prompt: tts("Hi.", generate_kwargs=[("max_new_tokens", 3)]), TypeError,
     r"generate_kwargs must be a dict .*: e.g. generate_kwargs=\{'temperature': 0.5\}$"),  # the voice goes elsewhere
    (lambda tts, prompt: tts("Hi.", processor_kwargs=[("prompt_audio", prompt)]), TypeError,
     r"processor_kwargs must be a dict of keyword arguments, got list .*: e.g. processor_kwargs=\{'prompt_audio'"),
    # transformers' pipeline read a dict as a GenerationConfig: an AttributeError before generate was called
    (lambda tts, prompt: tts("Hi.", generate_kwargs={"generation_config": {"temperature": 0.0}}), TypeError,
     "generation_config must be a GenerationConfig, got dict: give settings as keyword arguments of generate"),
    (lambda tts, prompt: tts("Hi.", generate_kwargs=10**5000), TypeError,  # no repr: Python writes 4,300 digits at most
     r"generate_kwargs must be a dict of keyword arguments, got int \(1e\+5000\)"),
    (lambda tts, prompt: tts("Hi.", forward_params={"prompt_audio": prompt}, generate_kwargs={"output_audio": False}),
     ValueError, "generate_kwargs has output_audio=False, but the text-to-speech pipeline returns audio"),
    (lambda tts, prompt: tts("Hi.", forward_params={"output_audio": False}), ValueError, "forward_params has output"),
    (lambda tts, prompt: tts(123), TypeError, "text must be a str or a list of str"),
    (lambda tts, prompt: tts("Hi.", forward_params={"task": "stt", "audio": prompt}), ValueError,
     r"forward_params has task='stt', but the text-to-speech pipeline speaks text: drop it \(speech to text is "),
    (lambda tts, prompt: tts("Hi.", generate_kwargs={"task": "asr"}), ValueError, "generate_kwargs has task='asr'"),
    (lambda tts, prompt: tts(["Hi.", "Yo."], batch_size=2, processor_kwargs={"prompt_audio": [prompt, prompt]}),
     ValueError, "processor_kwargs has a list of 2 prompts, but the pipeline gives every text the same settings"),
    (lambda tts, prompt: tts(["Hi.", "Yo."], forward_params={"prompt_audio": [prompt, prompt]}), ValueError,
     "forward_params has a list of 2 prompts"),
    # the processor sees one text at a time: "got 2 languages for 1 texts"
    (lambda tts, prompt: tts(["Hi.", "Yo."], batch_size=2, processor_kwargs={"language": ["en", "fr"],
                                                                            "prompt_audio": prompt}),
     ValueError, r"processor_kwargs has a list of 2 values of language, but the pipeline's processor reads one text "
                 r"at a time: give one; for one per text, model.generate\(\*\*processor\(texts, language=\[...\]\)\)$"),
    # given to each batch whole: refused after the first batch was generated
    (lambda tts, prompt: tts(["Hi.", "Yo.", "Hey."], batch_size=2, forward_params={"prompt_audio": prompt},
                             generate_kwargs={"input_prompt_length": [1.0, 2.0]}),
     ValueError, r"generate_kwargs has 2 values of input_prompt_length, but the pipeline makes one generate call per "
                 r"batch of texts \(3 texts, batch_size=2\), each given them all: give one, or every text in one "
                 r"batch"),
    (lambda tts, prompt: tts(["Hi.", "Yo."], forward_params={"sampling_rate": np.array([24000, 16000])}),
     ValueError, r"forward_params has 2 values of sampling_rate, .*\(2 texts, batch_size=1\)"),
    (lambda tts, prompt: tts("Hi.", processor_kwargs={"input_prompt_length": [1.0, 2.0]}), ValueError,
     "processor_kwargs has a list of 2 values of input_prompt_length, .*: give one; for one per text, give them in "
     "generate_kwargs, with every text in one batch"),
    # the processor's own text replaced every text of the call, without a word
    (lambda tts, prompt: tts("Hello.", processor_kwargs={"text": "Goodbye.", "prompt_audio": prompt}), ValueError,
     "^processor_kwargs has text: the pipeline gives the processor each text it is called with: drop it"),
    (lambda tts, prompt: tts("Hello.", processor_kwargs={"return_tensors": None}), ValueError,
     "^processor_kwargs has return_tensors=None: the pipeline gives generate tensors: drop it$"),
    # transformers passes both to the processor, which took one of them without a word
    (lambda tts, prompt: tts("Hi.", preprocess_params={"language": "fr"}, processor_kwargs={"language": "en"}),
     ValueError, "^language given twice, the last time in processor_kwargs: give each once, in processor_kwargs$"),
    (lambda tts, prompt: tts("Hi.", preprocess_params=[1]), TypeError,
     "^preprocess_params must be a dict of keyword arguments, got list"),
    # generate got them twice: "got multiple values for keyword argument"
    (lambda tts, prompt: tts("Hi.", processor_kwargs={"prompt_audio": prompt}, forward_params={"sampling_rate": 24000}),
     ValueError, "^sampling_rate given in forward_params, but the pipeline's processor gives generate that from the "
                 "texts and processor_kwargs: drop it from forward_params"),
    (lambda tts, prompt: tts("Hi.", generate_kwargs={"input_ids": torch.tensor([[1, 40, 2]])}), ValueError,
     "^input_ids given in generate_kwargs, but the pipeline's processor gives generate that"),
    # the processor's refusal did not say which text
    (lambda tts, prompt: tts(["Hi.", None], processor_kwargs={"prompt_audio": prompt}), TypeError,
     "^text 1 of the 2 given to the text-to-speech pipeline is None: give each text as a str$"),
    (lambda tts, prompt: tts("Hi.", processor_kwargs={"prompt_audio": prompt, "input_prompt_length": 1.0},
                             generate_kwargs={"input_prompt_length": 2.0}),
     ValueError, "input_prompt_length given in both processor_kwargs and generate_kwargs: give each once"),
    (lambda tts, prompt: tts("Hi.", processor_kwargs={"prompt_audio": prompt}, forward_params={"prompt_audio": prompt}),
     ValueError, "prompt_audio given in both processor_kwargs and forward_params: give each once"),
    # transformers' TypeError named its _sanitize_parameters, and not where a setting goes
    (lambda tts, prompt: tts("Hi.", processor_kwargs={"prompt_audio": prompt}, temperature=0.5), TypeError,
     r"pipeline got unexpected keyword argument\(s\) temperature: give generation settings in generate_kwargs"),
    # torch's sampler refused these deep in the run, "2" as "batch_size=2"
    (lambda tts, prompt: tts(["Hi.", "Yo."], batch_size="2", processor_kwargs={"prompt_audio": prompt}), ValueError,
     "batch_size must be an integer >= 1 \\(inputs per generate call\\), got '2'"),
    (lambda tts, prompt: tts(["Hi.", "Yo."], batch_size=0, processor_kwargs={"prompt_audio": prompt}), ValueError,
     "batch_size must be an integer >= 1"),
])
def test_calls_the_pipeline_cannot_run_are_refused_in_one_line(tts, prompt_wav, call, error, message):
    from valle_hf.errors import VallEError

    with pytest.raises(error, match=message) as raised:
        call(tts, str(prompt_wav))
    assert isinstance(raised.value, VallEError) and "\n" not in str(raised.value)


def test_one_value_per_text_in_one_call_and_the_processors_arguments_in_preprocess_params_are_taken(tts, prompt_wav):
    """Where every text goes into one generate call, a list with one value per text is generate's own per-row setting;
    transformers' preprocess_params reach the processor as processor_kwargs do."""
    settings = {"forward_params": {"prompt_audio": str(prompt_wav)}, "generate_kwargs": GENERATE}
    lengths = {**settings["generate_kwargs"], "input_prompt_length": [0.5, 2.0]}
    per_row = tts(["Hi.", "Yo."], batch_size=2, **{**settings, "generate_kwargs": lengths})
    alone = [tts(text, **{**settings, "generate_kwargs": {**GENERATE, "input_prompt_length": length}})
             for text, length in (("Hi.", 0.5), ("Yo.", 2.0))]
    assert all(np.allclose(a["audio"], b["audio"], atol=1e-5) for a, b in zip(per_row, alone, strict=True))
    french = tts("Bonjour.", preprocess_params={"language": "fr"}, **settings)["audio"]
    assert np.array_equal(french, tts("Bonjour.", processor_kwargs={"language": "fr"}, **settings)["audio"])
    assert not np.array_equal(french, tts("Bonjour.", **settings)["audio"])
    assert np.array_equal(tts("Hi.", processor_kwargs={"return_tensors": "pt"}, **settings)["audio"],
                          tts("Hi.", **settings)["audio"])


def test_a_streamer_follows_the_texts_of_one_generate_call_only(tts, prompt_wav):
    """The pipeline makes one generate call per batch: a streamer given several batches' texts is refused (it got the
    first text's audio and lost the others'); every text in one batch streams them all, row by row."""
    from valle_hf.streaming import AudioIteratorStreamer

    texts = [*TEXTS, "Third."]
    settings = {**GENERATE, "prompt_audio": str(prompt_wav)}
    for batch_size in (None, 2):
        streamer = AudioIteratorStreamer(chunk_seconds=0.1, timeout=30)
        with pytest.raises(ValueError, match=f"makes one per batch of texts \\(3 texts, batch_size={batch_size or 1}"):
            tts(texts, batch_size=batch_size, forward_params={**settings, "audio_streamer": streamer})
        # its consumer, in another thread, gets the refusal: it waited for ever for a call that never came
        with pytest.raises(ValueError, match="makes one per batch of texts"):
            next(streamer)
    streamer = AudioIteratorStreamer(chunk_seconds=0.1, timeout=60)
    results = tts(texts, batch_size=len(texts), forward_params={**settings, "audio_streamer": streamer})
    chunks = list(streamer)
    assert sorted({chunk.row for chunk in chunks}) == [0, 1, 2]
    for row, result in enumerate(results):
        streamed = np.concatenate([chunk.audio.numpy() for chunk in chunks if chunk.row == row])
        np.testing.assert_allclose(streamed, result["audio"], atol=1e-4)
    one = AudioIteratorStreamer(chunk_seconds=0.1, timeout=60)
    tts(TEXTS[0], forward_params={**settings, "audio_streamer": one})
    assert list(one)
    assert len(tts(TEXTS, forward_params={**settings, "audio_streamer": None})) == 2  # no streamer: any batching


def test_a_streamer_is_checked_in_every_setting_and_with_the_pipelines_own_batch_size(converted_dir, tts,
                                                                                     prompt_wav):
    """A streamer in generate_kwargs, or with texts from an iterator, is refused like one in forward_params; a tuple
    of texts (one item to transformers) and a pipeline made with batch_size=len(texts) make one call: streamed."""
    from valle_hf.streaming import AudioIteratorStreamer

    texts = [*TEXTS, "Third."]
    settings = {**GENERATE, "prompt_audio": str(prompt_wav)}
    streamer = AudioIteratorStreamer(chunk_seconds=0.1, timeout=30)
    with pytest.raises(ValueError, match=r"makes one per batch of texts \(3 texts, batch_size=1\)"):
        tts(texts, forward_params={"prompt_audio": str(prompt_wav)},
            generate_kwargs={**GENERATE, "audio_streamer": streamer})
    with pytest.raises(ValueError, match="makes one per batch of texts"):  # its consumer gets the refusal
        next(streamer)
    streamer = AudioIteratorStreamer(chunk_seconds=0.1, timeout=30)  # refused by the processor, before generate
    with pytest.raises(ValueError, match="xx-nope"):
        tts(texts[0], forward_params={**settings, "audio_streamer": streamer}, processor_kwargs={"language": "xx-nope"})
    with pytest.raises(ValueError, match="xx-nope"):
        next(streamer)
    # one in each dict: generate_kwargs' was used, and the other's consumer waited for ever
    streamers = [AudioIteratorStreamer(chunk_seconds=0.1, timeout=30) for _ in range(2)]
    with pytest.raises(ValueError, match="an audio_streamer in both forward_params and generate_kwargs"):
        tts(texts[0], forward_params={**settings, "audio_streamer": streamers[0]},
            generate_kwargs={"audio_streamer": streamers[1]})
    for streamer in streamers:
        with pytest.raises(ValueError, match="in both forward_params and generate_kwargs"):
            next(streamer)
    with pytest.raises(ValueError, match=r"makes one per batch of texts \(texts from an iterator, batch_size=3\)"):
        tts((text for text in texts), batch_size=3,
            forward_params={**settings, "audio_streamer": AudioIteratorStreamer(0.1)})
    for pipe, inputs in ((tts, tuple(texts)),
                         (pipeline("text-to-speech", model=str(converted_dir), batch_size=len(texts)), texts)):
        streamer = AudioIteratorStreamer(chunk_seconds=0.1, timeout=60)
        pipe(inputs, forward_params={**settings, "audio_streamer": streamer})
        assert sorted({chunk.row for chunk in streamer}) == [0, 1, 2]


def test_other_models_get_transformers_pipeline_unchanged(tts, monkeypatch):
    from transformers.pipelines.text_to_audio import TextToAudioPipeline

    from valle_hf.pipeline import VallETextToAudioPipeline

    assert isinstance(tts, VallETextToAudioPipeline)
    calls = []
    monkeypatch.setattr(TextToAudioPipeline, "__call__", lambda self, text, **kwargs: calls.append((text, kwargs)))
    monkeypatch.setattr(tts.model.config, "model_type", "bark")  # a model of another type: straight to transformers
    tts([], forward_params="anything")
    assert calls == [([], {"forward_params": "anything"})]


def test_a_setting_without_its_switch_is_warned_about_once_per_call(tts, prompt_wav):
    """Each batch of texts warned again about the same setting."""
    from conftest import logged_warnings

    with logged_warnings() as logged:
        tts(TEXTS, forward_params={"prompt_audio": str(prompt_wav)}, batch_size=1,
            generate_kwargs={**GENERATE, "dry_allowed_length": 4})
    inert = [line for line in logged.out.splitlines() if "has no effect" in line]
    assert inert == ["dry_allowed_length has no effect without dry_multiplier > 0: set dry_multiplier, or drop "
                     "dry_allowed_length"]


# ---------------------------------------------------------------------------------------------------- speech to text

@pytest.fixture(scope="module")
def asr(converted_dir):
    return pipeline("automatic-speech-recognition", model=str(converted_dir))


def _transcribed(pipe, audio, rate: int | None = None) -> str:
    """What `generate(task="stt")` gives `audio` (a path, or an array at `rate`), greedily, decoded."""
    batch = pipe.processor(audio=audio, sampling_rate=rate)
    return pipe.processor.decode(pipe.model.generate(**batch, task="stt", **GENERATE)[0])


def test_the_speech_recognition_pipeline_transcribes_each_input_as_generate_does(asr, prompt_wav, monkeypatch):
    """A path, an array at 24 kHz and a dict of another rate (as `datasets` gives it), alone or in a list; with the
    model's generation settings, not the pipeline's Whisper defaults (five beams, 256 tokens)."""
    import soundfile
    import soxr

    from valle_hf.pipeline import VallESpeechRecognitionPipeline

    assert isinstance(asr, VallESpeechRecognitionPipeline) and isinstance(asr.processor, valle_hf.VallEProcessor)
    audio, rate = soundfile.read(prompt_wav, dtype="float32")
    rate, other = 16000, soxr.resample(audio[::-1], rate, 16000)  # the model must react to what it transcribes
    expected = _transcribed(asr, str(prompt_wav)), _transcribed(asr, other, rate)
    assert expected[0] != expected[1]
    calls = []
    generate = asr.model.generate
    monkeypatch.setattr(asr.model, "generate", lambda **kwargs: calls.append(kwargs) or generate(**kwargs))
    assert asr(str(prompt_wav), generate_kwargs=GENERATE) == {"text": expected[0]}
    assert asr({"array": other, "sampling_rate": rate, "path": "x.wav"}, **GENERATE) == {"text": expected[1]}
    assert asr([str(prompt_wav), {"raw": other, "sampling_rate": rate}], **GENERATE) == [{"text": text}
                                                                                         for text in expected]
    at_24k = asr.processor.feature_extractor(other, sampling_rate=rate)  # the feature extractor resamples
    assert asr(np.asarray(at_24k["input_values"][0]), **GENERATE)["text"] == _transcribed(
        asr, np.asarray(at_24k["input_values"][0]), 24000)
    assert all(call["task"] == "stt" and "num_beams" not in call and call["max_new_tokens"] == 8 for call in calls)


def test_a_batch_size_transcribes_that_many_inputs_in_one_generate_call(asr, prompt_wav, monkeypatch):
    """batch_size=2 over three inputs: two generate calls (two rows, then one), each transcript as generate gives it
    in that batch, though they differ in what they say and in length."""
    import soundfile

    audio, rate = soundfile.read(prompt_wav, dtype="float32")
    sources = [audio, audio[::-1], audio[: len(audio) // 3]]
    settings = {"temperature": 0.0, "max_new_tokens": 8}
    expected = []
    for batch in (sources[:2], sources[2:]):
        ids = asr.model.generate(**asr.processor(audio=batch, sampling_rate=rate), task="stt", **settings)
        expected += asr.processor.batch_decode(ids)
    assert len(set(expected)) == 3
    rows = []
    generate = asr.model.generate
    monkeypatch.setattr(asr.model, "generate", lambda **kwargs: rows.append(len(kwargs["audio"])) or generate(**kwargs))
    inputs = [{"array": source, "sampling_rate": rate} for source in sources]
    assert asr(inputs, batch_size=2, generate_kwargs=settings) == [{"text": text} for text in expected]
    assert rows == [2, 1]


@pytest.mark.parametrize("settings", [dict(num_beams=2, num_return_sequences=2, temperature=0.0),
                                      dict(do_sample=True, temperature=1.0, num_return_sequences=2, seeds=[5])],
                         ids=["beams", "seeded-takes"])
def test_a_batch_of_inputs_gives_each_its_own_first_sequence_and_the_one_seed(asr, prompt_wav, settings):
    """With num_return_sequences, transformers split a batch's rows as one per input: the second input got the first
    one's second take; one seed serves every input of a batch, as it does for inputs one by one."""
    import soundfile

    audio, rate = soundfile.read(prompt_wav, dtype="float32")
    sources = [audio, audio[::-1]]
    batch = asr.processor(audio=sources, sampling_rate=rate)
    seeds = {"seeds": settings["seeds"] * 2} if "seeds" in settings else {}
    ids = asr.model.generate(**batch, task="stt", max_new_tokens=8, **{**settings, **seeds})
    expected = asr.processor.batch_decode(ids[::2])  # each input's first sequence
    assert expected[0] != expected[1] and asr.processor.decode(ids[1]) != expected[1]
    inputs = [{"array": source, "sampling_rate": rate} for source in sources]
    assert asr(inputs, batch_size=2, max_new_tokens=8, **settings) == [{"text": text} for text in expected]


@pytest.mark.parametrize(("call", "message"), [
    (dict(chunk_length_s=10), "chunk_length_s: VALL-E's speech to text transcribes a whole utterance"),
    (dict(return_timestamps=True), "return_timestamps: VALL-E's speech to text"),
    (dict(stride_length_s=1.0), "stride_length_s: VALL-E's speech to text"),
    (dict(return_language=True), "return_language: VALL-E's speech to text"),
    (dict(decoder_kwargs={"beam_width": 4}), "decoder_kwargs: VALL-E's speech to text"),
])
def test_what_the_speech_recognition_pipeline_cannot_do_for_vall_e_is_refused_in_one_line(asr, prompt_wav, call,
                                                                                         message):
    from valle_hf.errors import VallEValueError

    with pytest.raises(VallEValueError, match=message):
        asr(str(prompt_wav), **call)
    off = {name: type(value)() for name, value in call.items()}  # False, 0, {}: what a generic caller passes
    assert asr(str(prompt_wav), **off, **GENERATE) == asr(str(prompt_wav), **GENERATE)
    for no_audio_or_no_rate in ({"array": np.zeros(2400, dtype=np.float32)}, {"sampling_rate": 16000, "path": "x.wav"}):
        with pytest.raises(VallEValueError, match="needs the audio under 'raw' or 'array' and its 'sampling_rate'"):
            asr(no_audio_or_no_rate)


def test_a_dict_with_its_audio_or_rate_as_none_is_refused_naming_that_key(asr):
    """A `datasets` dict whose rate was None was told to "pass sampling_rate=", which this pipeline refuses; one
    whose audio was None, to "give `text` or `audio`"."""
    from valle_hf.errors import VallEValueError

    samples = np.zeros(2400, dtype=np.float32)
    for given, named in (({"array": samples, "sampling_rate": None}, "sampling_rate"),
                         ({"array": None, "sampling_rate": 16000}, "array"),
                         ({"raw": None, "sampling_rate": 16000}, "raw"),
                         ({"raw": None, "sampling_rate": None}, "raw and sampling_rate")):
        with pytest.raises(VallEValueError, match=f"^the dict given to the speech-recognition pipeline has {named} "
                                                  "None: give the audio's samples and the rate"):
            asr(given)


def test_a_waveform_given_as_a_list_of_numbers_is_one_input(asr, prompt_wav):
    """A list of numbers was taken as a batch of inputs, each number refused as no audio."""
    import soundfile

    samples, rate = soundfile.read(prompt_wav, dtype="float32")
    assert rate == asr.feature_extractor.sampling_rate  # a bare waveform is at the model's rate
    assert asr(samples.tolist(), generate_kwargs=GENERATE) == asr(samples, generate_kwargs=GENERATE)
    raw = {"raw": samples.tolist(), "sampling_rate": rate}
    assert asr(raw, generate_kwargs=GENERATE) == asr(samples, generate_kwargs=GENERATE)
    # in a list of inputs too: it was "audio array has no sampling_rate", and the sampling_rate asked for is refused
    assert asr([samples.tolist()], generate_kwargs=GENERATE) == [asr(samples, generate_kwargs=GENERATE)]


def test_an_audio_files_bytes_or_open_file_is_an_input_as_its_path_is(asr, prompt_wav):
    """transformers' speech-recognition pipeline reads a file's bytes; VALL-E's refused them, and an open file."""
    from valle_hf.errors import VallEValueError

    expected = asr(str(prompt_wav), generate_kwargs=GENERATE)
    with open(prompt_wav, "rb") as opened:
        for source in (prompt_wav.read_bytes(), io.BytesIO(prompt_wav.read_bytes()), opened,
                       Upload(prompt_wav.name, prompt_wav.read_bytes())):
            assert asr(source, generate_kwargs=GENERATE) == expected
    with pytest.raises(VallEValueError, match="^could not read the audio bytes given: "):
        asr(b"RIFF....WAVE")


@pytest.mark.parametrize("form", ["open file", "upload"])
def test_a_prompt_given_as_an_open_file_serves_every_batch(tts, prompt_wav, form):
    """A file object (or a web framework's upload, no io.IOBase) is read from where it stood and left there: each
    batch of texts (a processor call each) reads the same voice."""
    alone = tts(TEXTS[1], processor_kwargs={"prompt_audio": str(prompt_wav)}, generate_kwargs=GENERATE)
    with open(prompt_wav, "rb") as opened:
        prompt = opened if form == "open file" else Upload(prompt_wav.name, prompt_wav.read_bytes())
        spoken = tts(TEXTS, processor_kwargs={"prompt_audio": prompt}, batch_size=1, generate_kwargs=GENERATE)
    np.testing.assert_allclose(spoken[1]["audio"], alone["audio"], atol=1e-5, rtol=0)


def test_the_speech_recognition_pipelines_own_settings_reach_generate(converted_dir, prompt_wav, monkeypatch):
    """Generation settings and batch_size given when the pipeline is made apply to each call, as transformers'
    pipelines do; transformers' own ignore_warning is taken, not passed on."""
    asr = pipeline("automatic-speech-recognition", model=str(converted_dir), batch_size=2, **GENERATE)
    expected = _transcribed(asr, str(prompt_wav))
    calls = []
    generate = asr.model.generate
    monkeypatch.setattr(asr.model, "generate", lambda **kwargs: calls.append(kwargs) or generate(**kwargs))
    assert asr(str(prompt_wav)) == asr(str(prompt_wav), ignore_warning=True) == {"text": expected}
    assert asr([str(prompt_wav)] * 2) == [{"text": expected}] * 2
    assert [len(call["audio"]) for call in calls] == [1, 1, 2]  # the two inputs in one call
    monkeypatch.setattr(asr.model.generation_config, "return_dict_in_generate", True)  # the model's: still text
    assert asr(str(prompt_wav)) == {"text": expected}
    calls.pop()
    assert all(call["max_new_tokens"] == 8 and call["temperature"] == 0.0 for call in calls)


def test_a_setting_given_both_directly_and_in_generate_kwargs_reaches_generate_as_given_directly(asr, prompt_wav,
                                                                                               monkeypatch):
    """The speech-recognition pipeline takes generate's settings directly or in generate_kwargs; given in both, the
    direct one is what generate gets."""
    calls = []
    generate = asr.model.generate
    monkeypatch.setattr(asr.model, "generate", lambda **kwargs: calls.append(kwargs) or generate(**kwargs))
    asr(str(prompt_wav), generate_kwargs={"temperature": 0.0, "max_new_tokens": 2}, max_new_tokens=3)
    assert [(call["max_new_tokens"], call["temperature"]) for call in calls] == [(3, 0.0)]


@pytest.mark.parametrize(("inputs", "call", "message"), [
    ([], {}, "got an empty list of inputs"),
    ("speech.wav", dict(generate_kwargs=[1]), "generate_kwargs must be a dict of keyword arguments, got list"),
    ("speech.wav", dict(generate_kwargs={"task": "tts"}), "task: the speech-recognition pipeline sets the task"),
    ("speech.wav", dict(return_dict_in_generate=True), "return_dict_in_generate: the speech-recognition pipeline"),
    ("speech.wav", dict(sampling_rate=16000), "sampling_rate: the speech-recognition pipeline sets"),
    ("speech.wav", dict(audio_codes=torch.zeros(1, 4, 8, dtype=torch.long)),
     "audio_codes: the speech-recognition pipeline sets the task and the audio"),
    ("speech.wav", dict(batch_size=2, seeds=[1, 2]), "has 2 seeds: .* give one seed"),
    ("speech.wav", dict(batch_size="2"), "batch_size must be an integer >= 1 \\(inputs per generate call\\), got '2'"),
    ("speech.wav", dict(generate_kwargs={"generation_config": {"temperature": 0.0}}),
     "generation_config must be a GenerationConfig, got dict"),
])
def test_a_speech_recognition_call_the_pipeline_cannot_run_is_refused_in_one_line(asr, prompt_wav, inputs, call,
                                                                                  message):
    """An empty list, settings not in a dict and generate's arguments the pipeline sets itself ended in transformers'
    IndexError or TypeError."""
    from valle_hf.errors import VallEError

    inputs = str(prompt_wav) if inputs == "speech.wav" else inputs
    with pytest.raises(VallEError, match=message):
        asr([inputs, inputs] if call.get("batch_size") else inputs, **call)


def test_other_models_get_transformers_speech_recognition_unchanged(asr, monkeypatch):
    from transformers.pipelines.automatic_speech_recognition import AutomaticSpeechRecognitionPipeline

    calls = []
    for stage in ("_sanitize_parameters", "preprocess", "_forward", "postprocess"):
        monkeypatch.setattr(AutomaticSpeechRecognitionPipeline, stage,
                            lambda self, *args, stage=stage, **kwargs: calls.append(stage) or iter(()))
    monkeypatch.setattr(asr.model.config, "model_type", "wav2vec2")  # another model: straight to transformers
    asr._sanitize_parameters(chunk_length_s=10)
    list(asr.preprocess("speech.wav"))
    asr._forward({"is_last": True})
    asr.postprocess([])
    assert calls == ["_sanitize_parameters", "preprocess", "_forward", "postprocess"]


def test_a_model_whose_generation_config_leaves_its_pad_unset_speaks_as_generate_does(tiny_model, processor):
    """transformers' pipeline filled a pad that the model's generation config leaves unset (a plain GenerationConfig
    assigned to it) with the phoneme tokenizer's: id 0, an audio code to the AR, refused."""
    from transformers import GenerationConfig

    model = copy.deepcopy(tiny_model)
    model.generation_config = GenerationConfig(do_sample=False, max_new_tokens=8)
    expected = model.generate(**processor("Hello."))[0]
    tts = pipeline("text-to-speech", model=model, tokenizer=processor.tokenizer, processor=processor)
    np.testing.assert_array_equal(tts("Hello.")["audio"], expected.numpy())


def test_a_hub_models_config_field_out_of_range_is_refused_naming_its_file(converted_dir, tmp_path, monkeypatch):
    """pipeline() reads a Hub model's config.json with AutoConfig first: a field out of range was refused as a bare
    "VallEConfig.hidden_size must be ..." that named neither the model nor the file (from_pretrained names both)."""
    import json
    import re
    import shutil

    from conftest import served_hub
    from huggingface_hub import constants

    from valle_hf.errors import CheckpointError

    edited = tmp_path / "edited"
    shutil.copytree(converted_dir, edited)
    config = json.loads((edited / "config.json").read_text(encoding="utf-8"))
    (edited / "config.json").write_text(json.dumps({**config, "hidden_size": -1}), encoding="utf-8")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    repos = {"someone/edited": {path.name: path for path in edited.iterdir() if path.is_file()}}
    refusal = "^" + re.escape("someone/edited/config.json cannot be read (VallEConfig.hidden_size must be")
    with served_hub(monkeypatch, repos), pytest.raises(CheckpointError, match=refusal):
        pipeline("text-to-speech", model="someone/edited")


def test_a_text_with_nothing_to_speak_is_refused_by_its_number_before_any_is_spoken(tts):
    """The pipeline speaks a list one text at a time: "Hello." was spoken in full before "!!" was refused, and the
    refusal did not say which text."""
    spoken = []
    hook = tts.model.register_forward_pre_hook(lambda module, args: spoken.append(1))
    try:
        with pytest.raises(valle_hf.errors.VallEValueError,
                           match=r"^text 1 of the 2 given to the text-to-speech pipeline: the text '!!' has no letter"):
            tts(["Hello.", "!!"], generate_kwargs=GENERATE)
    finally:
        hook.remove()
    assert not spoken
