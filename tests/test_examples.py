"""The scripts in examples/ run end to end offline (tiny-random model, a few steps each).

Building the tiny-random model takes a second or two (its EnCodec's init), so the examples' `load_model_and_processor`
is memoised here: the first call per model name loads for real, the others reuse that model.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

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


@pytest.mark.parametrize("preset", ["greedy", "original", "varied", "dry", "beam"])
def test_tts_example_writes_a_wav(tmp_path, prompt_wav, capsys, preset):
    out = tmp_path / "speech.wav"
    argv = ["Hello there. A second sentence.", str(prompt_wav), str(out), "--model", "tiny-random",
            "--preset", preset, "--max-new-tokens", "3", "--input-prompt-length", "0.5", "--device", "cpu"]
    assert example("tts").main(argv) == 0
    audio, rate = soundfile.read(out)
    assert rate == 24000 and audio.ndim == 1 and len(audio) == 2 * 3 * 320  # two sentences of 3 frames
    assert "2 sentence(s)" in capsys.readouterr().out


def test_stt_example_prints_ipa_per_file(prompt_wav, capsys):
    argv = [str(prompt_wav), str(prompt_wav), "--model", "tiny-random", "--max-new-tokens", "4", "--device", "cpu"]
    assert example("stt").main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    for line in lines:
        path, ipa = line.split("\t")
        assert path == str(prompt_wav) and 0 < len(ipa) <= 4 * 3  # a few tokens of (random) IPA


def test_pipeline_example_writes_one_wav_per_text(tmp_path, prompt_wav, capsys):
    out = tmp_path / "speech.wav"
    argv = ["Hello there.", "Bonjour.", str(prompt_wav), str(out), "--model", "tiny-random", "--temperature", "0",
            "--max-new-tokens", "3", "--input-prompt-length", "0.5", "--device", "cpu"]
    assert example("pipeline_example").main(argv) == 0
    for index in range(2):
        audio, rate = soundfile.read(tmp_path / f"speech-{index}.wav")
        assert rate == 24000 and len(audio) == 3 * 320
    assert capsys.readouterr().out.count(".wav:") == 2


def test_pipeline_example_with_a_directory(tmp_path, converted_dir, prompt_wav):
    out = tmp_path / "speech.wav"
    argv = ["Hello there.", str(prompt_wav), str(out), "--model", str(converted_dir), "--temperature", "0",
            "--max-new-tokens", "3", "--language", "en-gb", "--device", "cpu"]
    assert example("pipeline_example").main(argv) == 0
    assert len(soundfile.read(out)[0]) == 3 * 320
