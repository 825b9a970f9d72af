"""Audio files in and out: reading a file as it is, errors, the example prompt, reference syntaxes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from valle_hf.audio import load_audio, reference_paths, reference_sources

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_PROMPT = REPO / "examples" / "prompt.wav"


def _tone(seconds: float, rate: int, amplitude: float = 0.5, frequency: float = 440.0) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def test_a_file_is_read_as_it_is_channels_first_with_its_rate(tmp_path):
    left, right = _tone(0.5, 44100, 0.6), _tone(0.5, 44100, 0.2)
    path = tmp_path / "stereo.wav"
    soundfile.write(path, np.stack([left, right], axis=1), 44100, subtype="PCM_16")
    data, rate = load_audio(path)
    assert rate == 44100 and data.dtype == np.float32 and data.shape == (2, len(left))
    np.testing.assert_allclose(data[0], left, atol=1e-4)


def test_audio_errors(tmp_path):
    missing = tmp_path / "missing.wav"
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        load_audio(missing)
    junk = tmp_path / "junk.wav"
    junk.write_text("this is not audio\nat all\n")
    with pytest.raises(ValueError, match="could not read audio file .*junk.wav") as raised:
        load_audio(junk)
    assert "\n" not in str(raised.value)


def test_example_prompt_is_about_three_seconds_of_24k_mono():
    info = soundfile.info(EXAMPLE_PROMPT)
    assert (info.samplerate, info.channels, info.subtype) == (24000, 1, "PCM_16")
    assert 2.0 < info.duration < 5.0
    data, _ = load_audio(EXAMPLE_PROMPT)
    assert float(np.abs(data).max()) > 0.1


def test_reference_syntaxes(tmp_path):
    tone = _tone(0.1, 24000)
    assert reference_sources("a.wav; b.wav") == ["a.wav", "b.wav"]
    assert [type(part) for part in reference_sources([tmp_path, [tone, "c.wav"]])] == [type(tmp_path), np.ndarray, str]
    assert reference_paths(["a.wav;b.wav", tone]) == ["a.wav", "b.wav"]
    with pytest.raises(TypeError, match="prompt audio must be"):
        reference_sources(3)
