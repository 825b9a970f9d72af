"""Streaming TTS: codes and audio equal to a non-streamed run's, chunks before the AR ends, refusals."""

from __future__ import annotations

import contextlib
import math
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from conftest import PLAIN_SETTINGS
from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

from valle_hf.cli import main
from valle_hf.codec import DecoderStream
from valle_hf.streaming import (
    AudioChunk,
    AudioFileStreamer,
    AudioIteratorStreamer,
    AudioStreamer,
    decoder_context,
    not_streamable,
)
from valle_hf.tokenization import load_phoneme_tokenizer


class Recorder(AudioStreamer):
    """Keeps every chunk, and the AR steps taken when it arrived (read from `steps`, a StepCounter)."""

    def __init__(self, chunk_seconds, steps=None):
        super().__init__(chunk_seconds)
        self.chunks, self.arrivals, self.steps, self.ended = [], [], steps, False

    def put(self, chunk):
        self.chunks.append(chunk)
        self.arrivals.append(None if self.steps is None else self.steps.count)

    def end(self):
        self.ended = True

    def row(self, row):
        return [chunk for chunk in self.chunks if chunk.row == row]


class RowLimits(StoppingCriteria):
    """Ends row i after `limits[i]` generated frames (as a user's stopping criterion would), so that the rows of a
    batch stop at different steps whatever the random model does."""

    def __init__(self, start: int, limits: list[int]):
        self.start, self.limits = start, torch.tensor(limits)

    def __call__(self, input_ids, scores, **kwargs):
        return (input_ids.shape[1] - self.start) >= self.limits.to(input_ids.device)


class StepCounter(StoppingCriteria):
    def __init__(self):
        self.count = 0

    def __call__(self, input_ids, scores, **kwargs):
        self.count += 1
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


@pytest.fixture(scope="module")
def case(fixtures):
    if "tts_e2e_greedy" not in fixtures.cases:
        pytest.skip("fixture set has no tts_e2e_greedy case")
    case = fixtures.cases["tts_e2e_greedy"]
    return fixtures.case_tensor(case, "text"), fixtures.case_tensor(case, "prom"), case["ar_kwargs"]["max_steps"]


def _inputs(text, prompt, rows, with_prompt):
    """`rows` rows cut from the fixture's text and prompt, so that they stop at different steps."""
    from valle_hf.layout import pad

    texts = [text, text[2:-3], text[4:]][:rows]
    ids, mask = pad(texts, 0, side="right")
    inputs = dict(input_ids=ids, attention_mask=mask)
    if with_prompt:
        prompts = [prompt, prompt[: len(prompt) // 2], prompt[len(prompt) // 3:]][:rows]
        codes, codes_mask = pad(prompts, 0, side="right")
        inputs.update(prompt_codes=codes, prompt_attention_mask=codes_mask)
    return inputs


def _ar_length(model, inputs) -> int:
    """Columns of the AR's input (the prefix every generated frame follows)."""
    from valle_hf.layout import pad, tts_sequence

    texts = [row[mask.bool()] for row, mask in zip(inputs["input_ids"], inputs["attention_mask"], strict=True)]
    prompts = inputs.get("prompt_attention_mask")
    lengths = [None] * len(texts) if prompts is None else prompts.sum(dim=1).tolist()
    return pad([tts_sequence(model.config, text, 0, length, torch.zeros(0, dtype=torch.long))
                for text, length in zip(texts, lengths, strict=True)], 0)[0].shape[1]


def _snr(reference, other):
    return 10 * torch.log10(reference.pow(2).sum() / (reference - other).pow(2).sum().clamp_min(1e-30)).item()


@pytest.mark.parametrize(("backend", "unified"), [("vocos", False), ("encodec", False), ("encodec", True)],
                         ids=["vocos", "encodec", "encodec-unified-positions"])
@pytest.mark.parametrize("rows", [1, 3])
@pytest.mark.parametrize("with_prompt", [True, False], ids=["prompt", "no-prompt"])
def test_streamed_codes_and_audio_equal_generate(fixture_model, case, backend, unified, rows, with_prompt,
                                                 monkeypatch):
    """The audio to float precision (both decoders stream exactly). Also with `unified_position_ids` (the chunks'
    positions then count on from the prefix)."""
    monkeypatch.setattr(fixture_model.config, "unified_position_ids", unified)
    text, prompt, steps = case
    settings = {**PLAIN_SETTINGS, "temperature": 0.0, "max_new_tokens": steps, "audio_backend": backend,
                "return_dict_in_generate": True}
    inputs = _inputs(text, prompt, rows, with_prompt)
    limits = []
    if rows > 1:  # rows end at different steps: by a stopping criterion, if not by their stop token first; the last
        # before EnCodec's lead (its only piece is then its last)
        start, lead = _ar_length(fixture_model, inputs), DecoderStream(fixture_model.codec_model).lead
        limits = [RowLimits(start, [steps - 3 * row for row in range(rows - 1)] + [min(steps, lead) - 1])]
    expected = fixture_model.generate(**inputs, **settings, stopping_criteria=StoppingCriteriaList(limits))
    counter = StepCounter()
    recorder = Recorder(chunk_seconds=4 / fixture_model.config.frame_rate, steps=counter)
    streamed = fixture_model.generate(**inputs, **settings, audio_streamer=recorder,
                                      stopping_criteria=StoppingCriteriaList([counter, *limits]))
    assert recorder.ended
    assert torch.equal(streamed.codes, expected.codes) and torch.equal(streamed.lengths, expected.lengths)
    for row in range(rows):
        chunks = recorder.row(row)
        assert chunks[-1].final and not any(chunk.final for chunk in chunks[:-1])
        length = int(expected.lengths[row])
        assert torch.equal(torch.cat([chunk.codes for chunk in chunks]), expected.codes[row, :length])
        audio = torch.cat([chunk.audio for chunk in chunks])
        assert audio.shape == expected.audio[row].shape
        assert (audio - expected.audio[row]).abs().max() <= 1e-5 * expected.audio[row].abs().max()
    if rows > 1:
        assert len(set(expected.lengths.tolist())) > 1  # the rows stopped at different steps
    # audio came out while the AR was still running: after the chunks that hold the frames the first audio needs (the
    # decoder's look-ahead; EnCodec's lead), not at the end
    _, right = decoder_context(fixture_model, backend)
    needed = max(right + 1, DecoderStream(fixture_model.codec_model).lead if backend == "encodec" else 0)
    first = next(arrival for arrival, chunk in zip(recorder.arrivals, recorder.chunks, strict=True) if len(chunk.codes))
    if max(expected.lengths) > 4 * math.ceil(needed / 4) + 1:
        assert first < counter.count


def test_what_cannot_be_streamed_is_refused_in_one_line(fixture_model, case):
    text, prompt, _ = case
    inputs = dict(input_ids=text[None], prompt_codes=prompt[None], max_new_tokens=4)
    for settings, message in (
        (dict(num_beams=2), "num_beams=2 cannot be streamed: beam search reorders its beams until the end"),
        (dict(refine_on_stop=True), "refine_on_stop=True cannot be streamed: it re-predicts the whole output"),
        (dict(num_return_sequences=2, do_sample=True), "num_return_sequences=2 cannot be streamed: a stream follows "
                                                       "one sequence per row"),
    ):
        recorder = Recorder(0.1)
        with pytest.raises(ValueError, match=f"^{message}") as error:
            fixture_model.generate(**inputs, **settings, audio_streamer=recorder)
        assert "\n" not in str(error.value) and recorder.ended and not recorder.chunks
    with pytest.raises(ValueError, match="task='tts' only"):
        fixture_model.generate(audio_codes=prompt[None], task="stt", audio_streamer=Recorder(0.1))
    recorder = Recorder(0.1)  # one beam is plain search: streamed
    fixture_model.generate(**inputs, num_beams=1, temperature=0.0, audio_streamer=recorder)
    assert recorder.ended and recorder.chunks
    for seconds in (0.0, -1, float("nan"), float("inf"), "0.5", True):
        with pytest.raises(ValueError, match="chunk_seconds must be a number of seconds"):
            AudioStreamer(seconds)


def test_a_call_that_fails_before_its_first_chunk_still_ends_the_stream(fixture_model, case, tmp_path):
    """The streamer's `end` comes however `generate` ends: a consumer iterating over it would otherwise wait for
    ever for a call that failed on its settings or inputs. A file streamer at another rate than the model's would
    write audio that plays at the wrong speed: refused."""
    text, prompt, _ = case
    inputs = dict(input_ids=text[None], max_new_tokens=4)
    for settings, error, message in (
        (dict(prompt_codes=prompt[None], temperature=-1.0), ValueError, "temperature"),
        (dict(prompt_codes=prompt[None], seeds=[-1]), ValueError, "seed"),
        (dict(prompt_audio=str(tmp_path / "nope.wav"), sampling_rate=24000), FileNotFoundError, "nope.wav"),
    ):
        recorder = Recorder(0.1)
        with pytest.raises(error, match=message):
            fixture_model.generate(**inputs, **settings, audio_streamer=recorder)
        assert recorder.ended and not recorder.chunks

    streamer, failures = AudioIteratorStreamer(chunk_seconds=0.1, timeout=30), []

    def failing_call():
        try:
            fixture_model.generate(**inputs, prompt_codes=prompt[None], temperature=-1.0, audio_streamer=streamer)
        except ValueError as failure:
            failures.append(failure)

    thread = threading.Thread(target=failing_call)
    thread.start()
    with pytest.raises(ValueError, match="temperature"):  # not a TimeoutError: the end came, after the failure
        next(streamer)
    thread.join()
    assert failures

    with pytest.raises(TypeError, match="audio_streamer must be a valle_hf.streaming.AudioStreamer"):
        fixture_model.generate(**inputs, prompt_codes=prompt[None], temperature=-1.0, audio_streamer=object())
    # a transformers streamer has put and end, but receives token ids: it failed after the prompt was encoded, with an
    # AttributeError (chunk_seconds); refused, and ended so that its reader stops
    tokens = TextIteratorStreamer(load_phoneme_tokenizer(), timeout=30)
    with pytest.raises(TypeError, match="AudioStreamer instance .*got TextIteratorStreamer: it receives token ids, so "
                                        "pass it as streamer="):
        fixture_model.generate(**inputs, prompt_codes=prompt[None], audio_streamer=tokens)
    assert "".join(tokens) == ""  # ended: no TimeoutError
    # an audio streamer of its own making that is no AudioStreamer: refused (and ended), not told it gets token ids

    class Duck:
        chunk_seconds, ended = 0.1, False

        def put(self, chunk):
            pass

        def end(self):
            self.ended = True

    duck = Duck()
    with pytest.raises(TypeError, match=r"AudioStreamer instance .*got Duck$"):
        fixture_model.generate(**inputs, prompt_codes=prompt[None], audio_streamer=duck)
    assert duck.ended
    # both at once ended in a TypeError about a private method; both readers get the end
    streamer, tokens = AudioIteratorStreamer(chunk_seconds=0.1, timeout=30), TextIteratorStreamer(
        load_phoneme_tokenizer(), timeout=30)
    with pytest.raises(ValueError, match="streamer= and audio_streamer= cannot be given together"):
        fixture_model.generate(**inputs, prompt_codes=prompt[None], audio_streamer=streamer, streamer=tokens)
    with pytest.raises(ValueError, match="cannot be given together"):
        next(streamer)
    assert "".join(tokens) == ""  # ended: no TimeoutError

    # given as transformers' streamer=, refused: its consumer gets the refusal too (it waited for ever)
    streamer = AudioIteratorStreamer(chunk_seconds=0.1, timeout=30)
    with pytest.raises(TypeError, match="pass it as audio_streamer= instead"):
        fixture_model.generate(**inputs, prompt_codes=prompt[None], streamer=streamer)
    with pytest.raises(TypeError, match="pass it as audio_streamer= instead"):
        next(streamer)
    served = Recorder(0.1)  # a streamer a call took is that call's: a later refusal does not end it again
    fixture_model.generate(**inputs, prompt_codes=prompt[None], audio_streamer=served)
    served.ended = False
    served.abandon(ValueError("refused after the call"))
    assert not served.ended

    rate = fixture_model.config.sampling_rate // 2
    file_streamer = AudioFileStreamer(tmp_path / "out.wav", rate)
    with pytest.raises(ValueError, match=f"writes at {rate} Hz but the model's audio is"):
        fixture_model.generate(**inputs, prompt_codes=prompt[None], audio_streamer=file_streamer)
    file_streamer.abort()
    assert list(tmp_path.iterdir()) == []


class StepFailure(Exception):
    pass


class FailAtStep(StoppingCriteria):
    """Raises `StepFailure` at AR step `step` (1-based), as a failure in the middle of a run would."""

    def __init__(self, step: int):
        self.step, self.count = step, 0

    def __call__(self, input_ids, scores, **kwargs):
        self.count += 1
        if self.count == self.step:
            raise StepFailure(f"step {self.step} failed")
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


def test_a_call_that_fails_mid_stream_raises_its_error_in_the_consumer_after_the_chunks_sent(fixture_model, case):
    """A consumer that saw the stream end normally would take the chunks so far for the whole speech."""
    text, prompt, _ = case
    streamer = AudioIteratorStreamer(chunk_seconds=1 / fixture_model.config.frame_rate, timeout=60)

    def failing_call():
        with contextlib.suppress(StepFailure):
            fixture_model.generate(input_ids=text[None], prompt_codes=prompt[None], temperature=0.0, min_new_tokens=8,
                                   max_new_tokens=8, output_audio=False, audio_streamer=streamer,
                                   stopping_criteria=StoppingCriteriaList([FailAtStep(6)]))

    thread = threading.Thread(target=failing_call)
    thread.start()
    chunks = []
    with pytest.raises(StepFailure, match="step 6 failed"):
        for chunk in streamer:
            chunks.append(chunk)
    thread.join()
    assert chunks and not any(chunk.final for chunk in chunks)


def test_a_streamer_subclass_without_put_or_its_base_init_is_refused_before_any_step(fixture_model, case):
    """One without `put` failed with a bare NotImplementedError after the AR and the NAR had run; one made without
    `AudioStreamer.__init__`, with an AttributeError deep in the chunking."""
    from valle_hf.errors import VallETypeError

    class WithoutInit(AudioStreamer):
        def __init__(self):
            self.chunks = []

        def put(self, chunk):
            self.chunks.append(chunk)

    class WithoutPut(AudioStreamer):
        pass

    text, prompt, _ = case
    inputs = dict(input_ids=text[None], prompt_codes=prompt[None], max_new_tokens=4, temperature=0.0)
    calls, handle = [], fixture_model.register_forward_pre_hook(lambda *args: calls.append(1))
    try:
        with pytest.raises(VallETypeError, match=r"^WithoutInit was made without AudioStreamer.__init__: call "):
            fixture_model.generate(**inputs, audio_streamer=WithoutInit())
        for streamer in (WithoutPut(), AudioStreamer()):
            with pytest.raises(VallETypeError, match=f"^{type(streamer).__name__} does not implement put"):
                fixture_model.generate(**inputs, audio_streamer=streamer)
    finally:
        handle.remove()
    assert not calls  # before any step


def test_the_package_streamers_serve_one_call_and_are_checked_when_made(fixture_model, case, tmp_path):
    """A second call into an iterator or file streamer would put its chunks after the consumer's end, or into a
    closed file: refused, the first call's chunks kept. A user's streamer may serve several calls."""
    text, prompt, _ = case
    inputs = dict(input_ids=text[None], prompt_codes=prompt[None], max_new_tokens=4, temperature=0.0)
    iterator = AudioIteratorStreamer(chunk_seconds=0.1, timeout=30)
    fixture_model.generate(**inputs, audio_streamer=iterator)
    with pytest.raises(ValueError, match="AudioIteratorStreamer already served a generate call"):
        fixture_model.generate(**inputs, audio_streamer=iterator)
    assert list(iterator) and iterator._queue.empty()  # the first call's chunks, then its end: nothing after it
    # read again after that end, it told of the refused call instead of waiting for ever for its chunks
    read = AudioIteratorStreamer(chunk_seconds=0.1, timeout=30)
    fixture_model.generate(**inputs, audio_streamer=read)
    assert list(read) and list(read) == []
    with pytest.raises(ValueError, match="AudioIteratorStreamer already served a generate call"):
        fixture_model.generate(**inputs, audio_streamer=read)
    with pytest.raises(ValueError, match="AudioIteratorStreamer already served a generate call"):
        next(read)
    file_streamer = AudioFileStreamer(tmp_path / "out.wav", fixture_model.config.sampling_rate, chunk_seconds=0.1)
    fixture_model.generate(**inputs, audio_streamer=file_streamer)
    with pytest.raises(ValueError, match="AudioFileStreamer already served"):
        fixture_model.generate(**inputs, audio_streamer=file_streamer)
    file_streamer.commit()
    recorder = Recorder(0.1)
    for _ in range(2):
        fixture_model.generate(**inputs, audio_streamer=recorder)
    assert len([chunk for chunk in recorder.chunks if chunk.final]) == 2

    class Player(Recorder):  # a user's streamer with a start of its own, which generate must not call
        def start(self, device):
            raise AssertionError("generate called the streamer's own start")

    fixture_model.generate(**inputs, audio_streamer=Player(0.1))

    # 1e10 and 10**400 s were taken, and the iteration's wait failed in an OverflowError
    for timeout in (0, -1.0, float("nan"), float("inf"), "5", True, 1e10, 10**400):
        with pytest.raises(ValueError, match="timeout must be None"):
            AudioIteratorStreamer(timeout=timeout)
    longest = AudioIteratorStreamer(timeout=threading.TIMEOUT_MAX)
    longest.end()
    assert list(longest) == []
    # numpy numbers count as the Python numbers they hold, as in generate's settings (np.float32 was refused)
    numpy_made = AudioIteratorStreamer(chunk_seconds=np.float32(0.5), timeout=np.float32(2))
    assert (numpy_made.chunk_seconds, numpy_made.timeout) == (0.5, 2.0)
    assert type(numpy_made.chunk_seconds) is float and type(numpy_made.timeout) is float
    waited = []

    def wait():  # for a chunk that never comes: nothing generates into the streamer
        try:
            next(AudioIteratorStreamer(timeout=0.01))
        except TimeoutError as error:
            waited.append(str(error))

    waiter = threading.Thread(target=wait, daemon=True)  # a wait past its timeout fails the test, not hangs the suite
    waiter.start()
    waiter.join(30)
    assert waited and "no audio chunk came within 0.01 s" in waited[0], waited

    with pytest.raises(TypeError, match="got the class AudioIteratorStreamer"):
        fixture_model.generate(**inputs, audio_streamer=AudioIteratorStreamer)
    silent = AudioFileStreamer(tmp_path / "codes.wav", fixture_model.config.sampling_rate)
    with pytest.raises(ValueError, match="output_audio=False makes none"):
        fixture_model.generate(**inputs, audio_streamer=silent, output_audio=False)
    silent.abort()
    for path, rate, message in ((tmp_path / "a.wav", 0, "sampling rate must be a positive integer"),
                                (tmp_path / "a.wav", "24000", "sampling rate must be a positive integer"),
                                (tmp_path / "missing" / "a.wav", 24000, "missing does not exist: create it first")):
        with pytest.raises(ValueError, match=message):
            AudioFileStreamer(path, rate)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out.wav"]  # no partial file left behind


def test_a_file_stream_is_not_committed_while_its_call_runs(fixture_model, case, tmp_path):
    """A commit from another thread while the call streamed put the audio so far in the output's place, cut short,
    and the call then failed saying the output "was left as it was"."""
    text, prompt, _ = case
    config = fixture_model.config
    streamer, out = AudioFileStreamer(tmp_path / "out.wav", config.sampling_rate, 2 / config.frame_rate), []

    class CommitMidCall(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            if streamer.seconds and not out:
                with pytest.raises(ValueError, match="is still running: commit after it returns"):
                    streamer.commit()
                out.append(sorted(path.name for path in tmp_path.iterdir() if not path.name.startswith(".")))
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    fixture_model.generate(input_ids=text[None], prompt_codes=prompt[None], temperature=0.0, min_new_tokens=20,
                           max_new_tokens=20, audio_streamer=streamer, stopping_criteria=[CommitMidCall()])
    assert out == [[]], "the call streamed no audio before its end, or the output appeared mid-call"
    assert streamer.commit() == tmp_path / "out.wav" and soundfile.info(tmp_path / "out.wav").frames > 0


def test_a_file_streamer_dropped_unsettled_removes_its_partial_file(fixture_model, tmp_path):
    """A streamer made, or used, then dropped without commit or abort left its hidden partial file beside the output
    for good; it is removed, with a warning saying commit was not called. A settled one says nothing."""
    import gc

    from conftest import logged_warnings

    rate = fixture_model.config.sampling_rate
    chunk = AudioChunk(row=0, audio=torch.zeros(rate // 10), codes=torch.zeros(1, 1, dtype=torch.long), start_frame=0,
                       final=True)
    with logged_warnings() as logged:
        AudioFileStreamer(tmp_path / "dropped.wav", rate).put(chunk)
        gc.collect()
    assert list(tmp_path.iterdir()) == []
    assert f"the stream into {tmp_path / 'dropped.wav'} was neither committed nor aborted" in logged.out, logged.out
    with logged_warnings() as logged:
        settled = AudioFileStreamer(tmp_path / "kept.wav", rate)
        settled.put(chunk)
        settled.commit()
        AudioFileStreamer(tmp_path / "aborted.wav", rate).abort()
        del settled
        gc.collect()
    assert [path.name for path in tmp_path.iterdir()] == ["kept.wav"] and "neither" not in logged.out, logged.out


def test_iterator_streamer_yields_the_chunks_of_a_generate_in_a_thread(fixture_model, case):
    text, prompt, steps = case
    streamer = AudioIteratorStreamer(chunk_seconds=0.1, timeout=60)
    kwargs = {**PLAIN_SETTINGS, "input_ids": text[None], "prompt_codes": prompt[None], "temperature": 0.0,
              "max_new_tokens": steps, "audio_streamer": streamer, "return_dict_in_generate": True}
    results = []
    thread = threading.Thread(target=lambda: results.append(fixture_model.generate(**kwargs)))
    thread.start()
    chunks = list(streamer)
    thread.join()
    assert chunks[-1].final and torch.equal(torch.cat([chunk.audio for chunk in chunks]), results[0].audio[0])


def _sent(row: int, final: bool = False) -> AudioChunk:
    return AudioChunk(row, torch.zeros(2), torch.zeros(2, 1, dtype=torch.long), 0, final)


def test_ready_takes_every_chunk_sent_at_once_and_leaves_the_end_to_the_iteration():
    """A consumer that pays for every step (a page's update) takes with one chunk all those that came meanwhile, and
    must never wait for one more; the end, or a failure, among them still ends the iteration after them."""
    streamer = AudioIteratorStreamer(timeout=1)
    started = time.perf_counter()
    assert streamer.ready() == [] and time.perf_counter() - started < 0.5  # none sent yet: no wait for one
    chunks = [_sent(0), _sent(1), _sent(0, final=True)]
    for chunk in chunks:
        streamer.put(chunk)
    assert streamer.ready() == chunks and streamer.ready() == []  # each read once, in order
    streamer.put(chunks[0])
    streamer.end()
    assert streamer.ready() == [chunks[0]] and streamer.ready() == []
    assert list(streamer) == []  # the end, still there, ends the iteration (a lost one would time out)

    failed = AudioIteratorStreamer(timeout=1)
    failed.put(chunks[0])
    failed.fail(StepFailure("cut short"))
    failed.end()
    assert failed.ready() == [chunks[0]]
    with pytest.raises(StepFailure, match="cut short"):  # the chunks before the failure, then the failure
        next(failed)


def test_cli_stream_writes_the_same_speech_and_leaves_no_partial_file(tmp_path, converted_dir, prompt_wav, capsys):
    common = ["Hello there. And again.", str(prompt_wav), "--model", str(converted_dir), "--seed", "3",
              "--max-ar-steps", "30", "--nar-dtype", "float32"]
    assert main([*common[:2], str(tmp_path / "plain.wav"), *common[2:]]) == 0
    assert main([*common[:2], str(tmp_path / "streamed.wav"), *common[2:], "--stream", "--stream-chunk", "0.1"]) == 0
    assert "streaming into" in capsys.readouterr().err
    plain = torch.from_numpy(soundfile.read(tmp_path / "plain.wav", dtype="float32")[0])
    streamed = torch.from_numpy(soundfile.read(tmp_path / "streamed.wav", dtype="float32")[0])
    assert streamed.shape == plain.shape and _snr(plain, streamed) >= 30
    assert sorted(path.name for path in tmp_path.iterdir()) == ["plain.wav", "streamed.wav"]


@pytest.mark.parametrize(("setting", "value", "message"), [
    ("num_beams", 2, "num_beams=2 (its generation config): beam search reorders its beams until the end; give "
                     "--beam-width 1 or drop --stream"),
    ("refine_on_stop", True, "refine_on_stop=True (its generation config): it re-predicts the whole output at the "
                             "end; drop --stream"),
])
def test_cli_stream_refuses_a_model_whose_own_settings_cannot_be_streamed(tmp_path, converted_dir, prompt_wav, capsys,
                                                                           setting, value, message):
    """The flags were checked, the model's generation config was not: generate refused it after loading, naming its
    audio_streamer argument, which a CLI user never gave."""
    import json
    import shutil

    model = shutil.copytree(converted_dir, tmp_path / "model")
    config = json.loads((model / "generation_config.json").read_text())
    (model / "generation_config.json").write_text(json.dumps({**config, setting: value}))
    out = tmp_path / "speech.wav"
    status = main(["Hi.", str(prompt_wav), str(out), "--model", str(model), "--stream", "--max-ar-steps", "4"])
    err = capsys.readouterr().err
    assert status == 1 and f"error: --stream cannot follow {model}'s {message}" in err, err
    assert not out.exists() and not list(tmp_path.glob(".speech.wav*"))


def test_a_failed_stream_leaves_the_previous_output_and_no_partial_file(tmp_path, converted_dir, prompt_wav,
                                                                        monkeypatch, capsys):
    from valle_hf import streaming

    out = tmp_path / "speech.wav"
    out.write_bytes(b"previous")

    def fail(self, chunk):
        raise OSError("disk full")

    monkeypatch.setattr(streaming.AudioFileStreamer, "put", fail)
    with contextlib.suppress(OSError):  # however the CLI reports it
        main(["Hello.", str(prompt_wav), str(out), "--model", str(converted_dir), "--max-ar-steps", "20",
              "--stream", "--stream-chunk", "0.05"])
    assert out.read_bytes() == b"previous" and sorted(path.name for path in tmp_path.iterdir()) == ["speech.wav"]


@pytest.mark.parametrize("moment", ["opening", "announcing"])
def test_ctrl_c_as_the_stream_file_appears_leaves_no_partial_file(tmp_path, converted_dir, prompt_wav, monkeypatch,
                                                                  moment):
    """A SIGTERM sent as soon as the partial file appeared (a job scheduler's, a test's) left it behind: the file was
    made before the CLI's clean-up began, and the streamer's own only caught write errors."""
    import builtins

    from valle_hf import streaming

    if moment == "opening":  # inside the streamer's constructor, the partial file made, the audio file not yet open
        opened = streaming.soundfile.SoundFile

        def interrupted(file, mode="r", *args, **kwargs):
            if mode == "w":
                assert Path(file).exists()  # the partial file
                raise KeyboardInterrupt
            return opened(file, mode, *args, **kwargs)

        monkeypatch.setattr(streaming.soundfile, "SoundFile", interrupted)
    else:  # the CLI's "streaming into" line, the streamer made
        say = builtins.print

        def interrupted(*args, **kwargs):
            if "streaming into" in str(args[0]):
                raise KeyboardInterrupt
            say(*args, **kwargs)

        monkeypatch.setattr(builtins, "print", interrupted)
    status = main(["Hello.", str(prompt_wav), str(tmp_path / "speech.wav"), "--model", str(converted_dir),
                   "--max-ar-steps", "4", "--stream"])
    assert status == 130 and list(tmp_path.iterdir()) == []


def test_a_failed_call_removes_its_file_streams_partial_file(fixture_model, case, tmp_path):
    """A caller without the abort of the README's try/except kept the partial file of a call that failed (a hidden,
    growing file beside the output); commit after it is refused, naming why."""
    text, prompt, _ = case
    out = tmp_path / "out.wav"
    streamer = AudioFileStreamer(out, fixture_model.config.sampling_rate,
                                 chunk_seconds=1 / fixture_model.config.frame_rate)
    failing = decoder_context(fixture_model, "vocos")[1] + 4  # a step after the first chunk's audio was sent
    with pytest.raises(StepFailure):
        fixture_model.generate(input_ids=text[None], prompt_codes=prompt[None], temperature=0.0,
                               min_new_tokens=failing + 1, max_new_tokens=failing + 1, audio_streamer=streamer,
                               stopping_criteria=StoppingCriteriaList([FailAtStep(failing)]))
    assert streamer.seconds > 0 and list(tmp_path.iterdir()) == []  # chunks were written, then removed
    with pytest.raises(ValueError, match="abandoned when its generate call failed"):
        streamer.commit()
    assert list(tmp_path.iterdir()) == []


def test_a_streamed_call_returns_the_ar_fields_a_plain_call_returns(fixture_model, case):
    """The AR's hidden states and, with layer skip, the layers each AR step ran are those of a plain call (the NAR
    chunks that run between the AR steps are not AR steps)."""
    text, prompt, steps = case
    settings = {**PLAIN_SETTINGS, "input_ids": text[None], "prompt_codes": prompt[None], "temperature": 0.0,
                "max_new_tokens": min(steps, 8), "layer_skip": True, "output_hidden_states": True,
                "return_dict_in_generate": True}
    expected = fixture_model.generate(**settings)
    streamed = fixture_model.generate(**settings, audio_streamer=Recorder(1 / fixture_model.config.frame_rate))
    assert torch.equal(streamed.codes, expected.codes)
    assert streamed.exit_layers is not None and torch.equal(streamed.exit_layers, expected.exit_layers)
    assert len(streamed.hidden_states) == len(expected.hidden_states)
    for got, want in zip(streamed.hidden_states, expected.hidden_states, strict=True):
        assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True))


def test_rows_that_come_out_unspoken_are_warned_about_when_streamed_too(tiny_model):
    """A streamed row that stops at its first step has empty codes and audio: named in a warning, as without
    streaming (an iterating consumer joining the rows would miss it otherwise)."""
    import copy

    from conftest import logged_warnings

    model = copy.deepcopy(tiny_model)
    with torch.no_grad():
        model.classifiers[0].bias[model.config.stop_token_id] = 1e4  # every row stops at once
    text = torch.tensor([model.config.text_bos_token_id, 5, 6, model.config.text_eos_token_id])
    recorder = Recorder(0.1)
    with logged_warnings() as logged:
        out = model.generate(input_ids=torch.stack([text, text]), **{**PLAIN_SETTINGS, "temperature": 0.0},
                             max_new_tokens=4, audio_streamer=recorder, return_dict_in_generate=True)
    assert out.lengths.tolist() == [0, 0] and [len(chunk.audio) for chunk in recorder.chunks] == [0, 0]
    assert "row(s) [0, 1] stopped at their first step: their codes and audio are empty" in logged.out


class _HeldAtItsFirstChunk(AudioIteratorStreamer):
    """Holds the call after its first chunk until the consumer stops it (at most `timeout`): on a busy machine the
    call could otherwise reach its step limit before the consumer, given no time, got to `stop()`."""

    held = False

    def put(self, chunk: AudioChunk) -> None:
        super().put(chunk)
        if not self.held:
            self.held = True
            self._stop.wait(self.timeout)


def test_a_consumer_that_has_heard_enough_stops_the_call(fixture_model, case):
    """Leaving the loop left generate running to its step limit, holding the model: `stop()` ends it at the next AR
    step, with the speech so far finished and streamed."""
    text, prompt, _ = case
    steps = 200
    streamer = _HeldAtItsFirstChunk(chunk_seconds=2 / fixture_model.config.frame_rate, timeout=60)
    outputs = []
    thread = threading.Thread(target=lambda: outputs.append(fixture_model.generate(
        input_ids=text[None], prompt_codes=prompt[None], temperature=0.0, min_new_tokens=steps, max_new_tokens=steps,
        output_audio=False, audio_streamer=streamer, return_dict_in_generate=True)))
    thread.start()
    chunks = [next(streamer)]
    streamer.stop()
    chunks += list(streamer)
    thread.join()
    (output,) = outputs
    assert output.lengths[0] < steps and chunks[-1].final
    assert torch.equal(torch.cat([chunk.codes for chunk in chunks]), output.codes[0, : output.lengths[0]])


def test_vocos_context_covers_exactly_what_a_frame_of_audio_depends_on(fixture_model):
    """Streamed Vocos audio equals the plain audio only if `decoder_context` covers the vocoder's whole receptive
    field: codes outside it leave a frame's samples bit for bit as they were (they enter none of its sums)."""
    left, right = decoder_context(fixture_model, "vocos")
    config, frame = fixture_model.config, left + 1
    generator = torch.Generator().manual_seed(0)
    codes = torch.randint(0, config.audio_vocab_size, (left + right + 3, config.num_rvq_levels), generator=generator)
    outside = codes.clone()
    outside[: frame - left] = (outside[: frame - left] + 1) % config.audio_vocab_size
    outside[frame + right + 1:] = (outside[frame + right + 1:] + 1) % config.audio_vocab_size
    samples = slice(frame * config.hop_length, (frame + 1) * config.hop_length)
    plain, changed = fixture_model._decode([codes, outside], "vocos")
    assert torch.equal(changed[samples], plain[samples])


def test_without_audio_each_chunk_holds_chunk_seconds_of_frames_as_soon_as_the_ar_made_them(fixture_model, case):
    """With no decoder look-ahead to wait for, a chunk is sent at the AR step that completes its `chunk_seconds`; the
    chunks and the call's output hold no audio, as a plain call's output does not."""
    text, prompt, steps = case
    frames = 3
    counter = StepCounter()
    recorder = Recorder(chunk_seconds=frames / fixture_model.config.frame_rate, steps=counter)
    output = fixture_model.generate(input_ids=text[None], prompt_codes=prompt[None],
                                    **{**PLAIN_SETTINGS, "temperature": 0.0}, min_new_tokens=steps,
                                    max_new_tokens=steps, output_audio=False, audio_streamer=recorder,
                                    stopping_criteria=StoppingCriteriaList([counter]), return_dict_in_generate=True)
    assert output.audio is None and all(chunk.audio is None for chunk in recorder.chunks)
    *chunks, last = recorder.chunks
    assert len(chunks) >= 2 and last.final and len(last.codes) <= frames
    assert [len(chunk.codes) for chunk in chunks] == [frames] * len(chunks)
    assert [chunk.start_frame for chunk in recorder.chunks] == [frames * index for index in range(len(chunks) + 1)]
    assert recorder.arrivals[: len(chunks)] == [frames * (index + 1) for index in range(len(chunks))]


def test_a_silence_prefix_conditions_the_streamed_nar_and_is_left_out_of_its_output(fixture_model, case):
    text, _, steps = case
    settings = {**PLAIN_SETTINGS, "input_ids": text[None], "temperature": 0.0, "max_new_tokens": steps,
                "prefix_silence": 3 / fixture_model.config.frame_rate, "return_dict_in_generate": True}
    expected = fixture_model.generate(**settings)
    recorder = Recorder(chunk_seconds=4 / fixture_model.config.frame_rate)
    streamed = fixture_model.generate(**settings, audio_streamer=recorder)
    length = int(expected.lengths[0])
    assert torch.equal(streamed.codes, expected.codes) and int(streamed.lengths[0]) == length
    assert torch.equal(torch.cat([chunk.codes for chunk in recorder.chunks]), expected.codes[0, :length])
    assert torch.cat([chunk.audio for chunk in recorder.chunks]).shape == expected.audio[0].shape


def test_a_setting_given_to_the_call_overrides_the_models_own_when_checked_for_streaming(fixture_model, monkeypatch):
    """`generate` lets a call's setting win over the model's generation config, so the stream check must too: a
    model saved with beam search streams with `num_beams=1` (the CLI's `--beam-width 1`, which its refusal advises)."""
    monkeypatch.setattr(fixture_model.generation_config, "num_beams", 2)
    assert not_streamable({}, fixture_model) == ("num_beams", "beam search reorders its beams until the end")
    assert not_streamable({"num_beams": 1}, fixture_model) is None


def test_a_row_that_stopped_does_not_hold_back_the_chunks_of_the_others(fixture_model, case):
    """A round is due when any row has `chunk_seconds` of new frames: one that stopped at its first step has none to
    add, and the rows still speaking get their chunks at the same steps as alone."""
    text, prompt, steps = case
    frames = 3
    inputs = _inputs(text, prompt, 2, with_prompt=True)
    counter = StepCounter()
    recorder = Recorder(chunk_seconds=frames / fixture_model.config.frame_rate, steps=counter)
    limits = RowLimits(_ar_length(fixture_model, inputs), [steps, 1])
    fixture_model.generate(**inputs, **{**PLAIN_SETTINGS, "temperature": 0.0}, min_new_tokens=steps,
                           max_new_tokens=steps, output_audio=False, audio_streamer=recorder,
                           stopping_criteria=StoppingCriteriaList([counter, limits]))
    arrivals = [arrival for arrival, chunk in zip(recorder.arrivals, recorder.chunks, strict=True)
                if chunk.row == 0 and not chunk.final]
    assert len(arrivals) >= 2 and arrivals == [frames * (index + 1) for index in range(len(arrivals))]


def test_a_call_that_asks_for_vocos_from_an_encodec_model_waits_for_vocos_context(fixture_model, case, monkeypatch):
    """Vocos chunks equal the plain audio only with Vocos' context: a call asking for Vocos from a model that
    defaults to EnCodec waited for EnCodec's shorter look-ahead."""
    text, prompt, steps = case
    monkeypatch.setattr(fixture_model.config, "audio_backend", "encodec")
    settings = {**PLAIN_SETTINGS, "input_ids": text[None], "prompt_codes": prompt[None], "temperature": 0.0,
                "max_new_tokens": steps, "audio_backend": "vocos", "return_dict_in_generate": True}
    expected = fixture_model.generate(**settings)
    recorder = Recorder(chunk_seconds=4 / fixture_model.config.frame_rate)
    fixture_model.generate(**settings, audio_streamer=recorder)
    audio = torch.cat([chunk.audio for chunk in recorder.chunks])
    assert torch.allclose(audio, expected.audio[0], atol=1e-5)


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "streamed"])
def test_vocos_audio_from_a_model_without_vocos_is_refused_before_any_step(tiny_model, streamed):
    """A streamed call failed with an AttributeError ('NoneType' object has no attribute 'config'), a plain call
    refused only after its whole AR and NAR had run."""
    steps, config = StepCounter(), tiny_model.config
    streamer = {"audio_streamer": Recorder(0.1)} if streamed else {}
    with pytest.raises(ValueError, match="^audio_backend='vocos' is not allowed: .*without the Vocos decoder"):
        tiny_model.generate(input_ids=torch.tensor([[config.text_bos_token_id, config.text_eos_token_id]]),
                            max_new_tokens=4, audio_backend="vocos", stopping_criteria=StoppingCriteriaList([steps]),
                            **streamer)
    assert tiny_model.vocoder is None and steps.count == 0


def test_a_file_stream_into_its_own_voice_prompt_is_refused(fixture_model, case, tmp_path, prompt_wav):
    """generate(prompt_audio=voice.wav, audio_streamer=AudioFileStreamer(voice.wav)) replaced the voice with the
    speech, without a word, where the CLI and corpus synthesis refuse an output that is the reference."""
    text, _, _ = case
    voice = tmp_path / "voice.wav"
    voice.write_bytes(prompt_wav.read_bytes())
    streamer = AudioFileStreamer(voice, fixture_model.config.sampling_rate)
    with pytest.raises(ValueError, match=f"the output path {voice} is also an input .*destroy the reference audio"):
        fixture_model.generate(input_ids=text[None], prompt_audio=str(voice), temperature=0.0, max_new_tokens=5,
                               audio_streamer=streamer)
    assert voice.read_bytes() == prompt_wav.read_bytes()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["voice.wav"]  # nor a partial file left
