"""The scripts in examples/ run end to end offline (tiny-random model, a few steps each).

Building the tiny-random model takes a second or two (its EnCodec's init), so the examples' `load_model_and_processor`
is memoised here: the first call per model name loads for real, the others reuse that model.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile

from valle_hf.loading import load_model_and_processor

REPO = Path(__file__).resolve().parents[1]
_LOADED: dict = {}


def _load_once(name=None, **kwargs):
    key = (name, tuple(sorted(kwargs.items())))
    if key not in _LOADED:
        _LOADED[key] = load_model_and_processor(name, **kwargs)
    return _LOADED[key]


def example(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", REPO / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.load_model_and_processor = _load_once
    return module


def _greedy_audio(model_name, texts, prompt, language, **settings) -> list[np.ndarray]:
    """What `model.generate` speaks for `texts`, greedy: the route the examples must agree with."""
    model, processor = _load_once(model_name)
    out = model.generate(**processor(texts, prompt_audio=str(prompt), language=language), temperature=0.0,
                         do_sample=False, return_dict_in_generate=True, **settings)
    return [audio.float().clamp(-1, 1).numpy() for audio in out.audio]


def _same_pcm16(written: np.ndarray, expected: np.ndarray) -> bool:
    """A 16-bit WAV holds the waveform to within one quantisation step."""
    return written.shape == expected.shape and bool(np.abs(written - expected).max(initial=0.0) <= 1.5 / 32768)


@pytest.mark.parametrize("preset", ["greedy", "original", "varied", "dry", "beam"])
def test_tts_example_writes_a_wav(tmp_path, prompt_wav, capsys, preset):
    out = tmp_path / "speech.wav"
    argv = ["Hello there. A second sentence.", str(prompt_wav), str(out), "--model", "tiny-random",
            "--preset", preset, "--max-new-tokens", "3", "--input-prompt-length", "0.5", "--device", "cpu"]
    assert example("tts").main(argv) == 0
    printed = capsys.readouterr().out
    frames = json.loads(re.search(r"frames (\[[\d, ]*\])", printed).group(1))
    assert "2 sentence(s)" in printed and len(frames) == 2 and all(0 <= count <= 3 for count in frames)
    audio, rate = soundfile.read(out)
    config = _load_once("tiny-random")[0].config
    assert rate == config.sampling_rate and audio.ndim == 1
    assert len(audio) == sum(frames) * config.sampling_rate // config.frame_rate  # the frames printed, no more
    if preset == "original":  # sampled: one seed per sentence, any size (torch.manual_seed overflowed past 64 bits)
        again = tmp_path / "again.wav"
        assert example("tts").main([*argv[:2], str(again), *argv[3:], "--seed", str(2**70)]) == 0
    if preset == "greedy":
        expected = np.concatenate(_greedy_audio("tiny-random", ["Hello there.", "A second sentence."], prompt_wav,
                                                "en", repetition_penalty=1.0, max_new_tokens=3,
                                                input_prompt_length=0.5))
        assert _same_pcm16(audio, expected)


def test_stt_example_prints_ipa_per_file(prompt_wav, capsys):
    argv = [str(prompt_wav), str(prompt_wav), "--model", "tiny-random", "--max-new-tokens", "4", "--device", "cpu"]
    assert example("stt").main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    model, processor = _load_once("tiny-random")
    ids = model.generate(**processor(audio=[str(prompt_wav)]), task="stt", temperature=0.0, repetition_penalty=1.0,
                         max_new_tokens=4)[0]
    assert 0 <= len(ids) <= 4
    assert lines == [f"{prompt_wav}\t{processor.decode(ids)}"] * 2


def test_pipeline_example_writes_one_file_per_text(tmp_path, prompt_wav, capsys):
    out = tmp_path / "speech.flac"  # the extension is kept for each text's file (it was speech.flac-0.wav)
    texts = ["Hello there.", "Bonjour."]
    argv = [*texts, str(prompt_wav), str(out), "--model", "tiny-random", "--temperature", "0",
            "--max-new-tokens", "3", "--input-prompt-length", "0.5", "--device", "cpu"]
    assert example("pipeline_example").main(argv) == 0
    # the pipeline speaks one text at a time (no batch_size): so does the reference
    expected = [_greedy_audio("tiny-random", [text], prompt_wav, "en", max_new_tokens=3, input_prompt_length=0.5)[0]
                for text in texts]
    for index, waveform in enumerate(expected):
        audio, rate = soundfile.read(tmp_path / f"speech-{index}.flac")
        assert rate == 24000 and len(audio) <= 3 * 320 and _same_pcm16(audio, waveform)
    assert capsys.readouterr().out.count(".flac:") == 2


def test_pipeline_example_with_a_directory(tmp_path, converted_dir, prompt_wav):
    out = tmp_path / "speech.wav"
    argv = ["Hello there.", str(prompt_wav), str(out), "--model", str(converted_dir), "--temperature", "0",
            "--max-new-tokens", "3", "--language", "en-gb", "--device", "cpu"]
    assert example("pipeline_example").main(argv) == 0
    (expected,) = _greedy_audio(str(converted_dir), ["Hello there."], prompt_wav, "en-gb", max_new_tokens=3)
    assert _same_pcm16(soundfile.read(out)[0], expected)


@pytest.mark.parametrize("name, argv, message", [
    ("tts", ["Hello.", "{ws}/nope.wav", "{ws}/o.wav"], "audio file not found: {ws}/nope.wav"),
    ("tts", ["Hello.", "{prompt}", "{ws}/missing/o.wav"], "cannot write the output file {ws}/missing/o.wav"),
    ("tts", ["", "{prompt}", "{ws}/o.wav"], "empty text: nothing to speak"),
    ("tts", ["Hello.", "{prompt}", "{ws}/o.wav", "--preset", "loud"], "argument --preset: invalid choice"),
    ("tts", ["Hello.", "{prompt}", "{ws}/o.wav", "--seed", "-1"], "argument --seed: expected an integer >= 0"),
    ("tts", ["Hello.", "{prompt}", "{ws}/o.wav", "--max-new-tokens", "-3"],
     "argument --max-new-tokens: expected an integer >= 1, got '-3'"),  # was named max_new_tokens=-3, the API's word
    ("tts", ["Hello.", "{prompt}", "{ws}/o.wav", "--max-new-tokens", "2.5"], "argument --max-new-tokens: expected an "
                                                                              "integer, got '2.5'"),
    ("tts", ["Hello.", "{prompt}", "{ws}/o.wav", "--input-prompt-length", "nan"],
     r"argument --input-prompt-length: expected seconds in [0, 3600] (0: all), got 'nan'"),
    ("tts", ["Hello.", "{prompt}", "{ws}/o.wav", "--input-prompt-length", "three"],
     r"argument --input-prompt-length: expected seconds in [0, 3600] (0: all), got 'three'"),
    ("stt", ["{ws}/nope.wav"], "audio file not found"),
    ("stt", ["{prompt}", "--device", "bogus"], "--device bogus: not a device torch knows"),
    ("pipeline_example", ["Hi.", "{prompt}", "{ws}/o.wav", "--device", "meta"], "--device meta: a device without"),
    *((script, [*argv, "--device", ""], "argument --device: is empty")  # was the default device
      for script, argv in (("tts", ["Hi.", "{prompt}", "{ws}/o.wav"]), ("stt", ["{prompt}"]),
                           ("pipeline_example", ["Hi.", "{prompt}", "{ws}/o.wav"]))),
    ("stt", ["{prompt}", "--max-new-tokens", "0"], "argument --max-new-tokens: expected an integer >= 1, got '0'"),
    ("pipeline_example", ["Hi.", "{prompt}", "{ws}/o.wav", "--max-new-tokens", "0"], "argument --max-new-tokens: "
                                                                                      "expected an integer >= 1"),
    # the model's limit, known once it loads, named by the flag (was max_new_tokens=..., the API's word)
    ("tts", ["Hello.", "{prompt}", "{ws}/o.wav", "--max-new-tokens", "999999"],
     "--max-new-tokens 999999 is not allowed: it must be an integer in [1, "),
    ("stt", ["{prompt}", "--max-new-tokens", "999999"], "--max-new-tokens 999999 is not allowed: it must be "),
    ("pipeline_example", ["Hi.", "{prompt}", "{ws}/o.wav", "--max-new-tokens", "999999"],
     "--max-new-tokens 999999 is not allowed: it must be "),
    ("pipeline_example", ["Hi.", "{prompt}", "{ws}/o.wav", "--temperature", "-1"],
     "--temperature -1 is not allowed: it must be 0 (greedy) or a finite number"),
    ("pipeline_example", ["Hi.", "{prompt}", "{ws}/o.wav", "--input-prompt-length", "-1"],
     "argument --input-prompt-length: expected seconds in [0, 3600] (0: all), got '-1'"),
    ("pipeline_example", ["Hi.", "{prompt}", "{ws}/o.wav", "--seed", "-1"],
     "argument --seed: expected an integer >= 0"),
    ("pipeline_example", ["Hi.", "{ws}/nope.wav", "{ws}/o.wav"], "audio file not found"),
    ("pipeline_example", ["Hi.", "{prompt}", "{ws}/o.mp4"], "cannot write {ws}/o.mp4"),
    ("pipeline_example", ["Hi.", "Yo.", "{prompt}", "{ws}/missing/o.wav"],
     "cannot write the output file {ws}/missing/o-0"),
])
def test_examples_end_a_mistake_with_one_error_line_and_status_1(tmp_path, prompt_wav, capsys, name, argv, message):
    """They showed tracebacks (a missing prompt, a bad --max-new-tokens) or failed after generating (an output folder
    that does not exist); argparse's own errors ended with status 2."""
    fill = {"ws": str(tmp_path), "prompt": str(prompt_wav)}
    argv = [arg.format(**fill) for arg in argv] + ["--model", "tiny-random"] + ([] if "--device" in argv else
                                                                               ["--device", "cpu"])
    assert example(name).main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message.format(**fill) in err and err.count("\n") == 1, err
    assert not [path for path in tmp_path.iterdir()], "nothing is written"


@pytest.mark.parametrize("name, argv", [("tts", ["Hello.", "{prompt}", "{ws}/o.wav"]), ("stt", ["{prompt}"]),
                                        ("pipeline_example", ["Hello.", "{prompt}", "{ws}/o.wav"])])
def test_the_command_line_examples_name_their_flag_for_a_model_not_found(tmp_path, prompt_wav, capsys, name, argv):
    """load_model_and_processor names its own arguments to a Python caller; these scripts take --model, and have no
    --codec to convert an original checkpoint offline with. The pipeline's loaders ended a folder that is no model, a
    file or a name that is none in a traceback, and an empty --model was the released model."""
    from valle_hf.loading import EXAMPLE_CHOICES

    fill = {"ws": str(tmp_path), "prompt": str(prompt_wav)}
    (tmp_path / "folder").mkdir()
    for model, expected in (("tiny-randm", f"model not found: tiny-randm; {EXAMPLE_CHOICES}"),
                            (str(tmp_path / "folder"), "folder is a directory but not a converted model"),
                            (str(prompt_wav), f"is a file, not a converted model's directory; {EXAMPLE_CHOICES}"),
                            ("", "is empty")):
        assert example(name).main([arg.format(**fill) for arg in argv] + ["--model", model]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ") and expected in err and err.count("\n") == 1, err


def test_pipeline_example_with_a_hub_model_refuses_one_without_a_tokenizer_and_reads_the_cache_in_an_outage(
        tmp_path, monkeypatch, converted_dir, prompt_wav, capsys):
    """A Hub model without tokenizer.json ended in transformers' "no tokenizer backend" error after its weights were
    downloaded; with the Hub out of reach, a model whose files were cached was asked for again, file by file."""
    from conftest import served_hub
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    files = {path.name: path for path in converted_dir.iterdir() if path.is_file()}
    repos = {"someone/valle": files,
             "someone/no-tokenizer": {name: path for name, path in files.items() if name != "tokenizer.json"}}
    argv = ["Hello there.", str(prompt_wav), str(tmp_path / "speech.wav"), "--temperature", "0",
            "--max-new-tokens", "3", "--device", "cpu", "--model"]
    with served_hub(monkeypatch, repos) as hub:
        assert example("pipeline_example").main([*argv, "someone/no-tokenizer"]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: could not download the phoneme tokenizer of someone/no-tokenizer"), err
        assert "--tokenizer" not in err and err.count("\n") == 1, err
        assert not [path for path in hub.downloads() if path.endswith("model.safetensors")]
        assert example("pipeline_example").main([*argv, "someone/valle"]) == 0  # into the cache
        hub.outage, asked = True, len(hub.requests)
        assert example("pipeline_example").main([*argv, "someone/valle"]) == 0, capsys.readouterr().err
        checks = len(hub.requests) - asked
    (expected,) = _greedy_audio(str(converted_dir), ["Hello there."], prompt_wav, "en", max_new_tokens=3)
    assert _same_pcm16(soundfile.read(tmp_path / "speech.wav")[0], expected)
    # one request per file checked (config, generation settings, tokenizer) for each of the example's loads, and no
    # retry: a retried file alone is five
    assert checks <= 9, f"{checks} requests to a Hub out of reach"


@pytest.mark.parametrize("name, argv", [("stt", ["{prompt}", "{ws}/nope.wav"]),
                                        ("tts", ["Hello.", "{ws}/nope.wav", "{ws}/o.wav"]),
                                        ("pipeline_example", ["Hello.", "{ws}/nope.wav", "{ws}/o.wav"])])
def test_the_examples_refuse_a_missing_audio_file_before_loading_the_model(tmp_path, prompt_wav, capsys, monkeypatch,
                                                                            name, argv):
    """stt.py found a missing file only after the model had loaded (a minute for the released one)."""
    script = example(name)

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(script, "load_model_and_processor", no_load)
    monkeypatch.setattr(script, "pipeline", no_load, raising=False)
    fill = {"ws": str(tmp_path), "prompt": str(prompt_wav)}
    assert script.main([arg.format(**fill) for arg in argv] + ["--model", "tiny-random", "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "audio file not found" in err and err.count("\n") == 1, err


def test_stt_example_transcribes_references_joined_with_a_semicolon(prompt_wav, capsys):
    """The files given are checked before the model loads, each of a ';'-joined argument (one row of audio, as the
    processor reads it): the joined argument was looked for as one file."""
    joined = f"{prompt_wav};{prompt_wav}"
    assert example("stt").main([joined, "--model", "tiny-random", "--max-new-tokens", "2", "--device", "cpu"]) == 0
    assert capsys.readouterr().out.startswith(f"{joined}\t")
