"""Audio in and out: formats, rates, channels, PCM types, references kept whole, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from valle_hf.audio import load_audio, load_references

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_PROMPT = REPO / "examples" / "prompt.wav"


def _tone(seconds: float, rate: int, amplitude: float = 0.5, frequency: float = 440.0) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


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


@pytest.mark.parametrize("extension", ["wav", "flac", "ogg", "mp3"])
def test_every_supported_format_is_written_whole(tmp_path, extension):
    from valle_hf.audio import output_format, save_audio

    container, _ = output_format(f"x.{extension}")
    if container not in soundfile.available_formats():
        pytest.skip(f"this libsndfile cannot write {container}")
    tone = _tone(0.5, 24000, 0.5)
    out = save_audio(tmp_path / f"speech.{extension}", tone)
    audio, rate = soundfile.read(out, dtype="float32")
    assert rate == 24000 and abs(len(audio) - len(tone)) <= 2400  # lossy codecs may pad a frame
    assert [path.name for path in tmp_path.iterdir()] == [out.name]


@pytest.mark.parametrize("name", ["o.txt", "out", "speech.wav.part"])
def test_an_unsupported_output_is_refused_naming_the_supported_ones(tmp_path, name):
    from valle_hf.audio import check_output_path
    from valle_hf.errors import VallEValueError

    with pytest.raises(VallEValueError, match=r"must end in one of \.wav, \.flac, \.ogg"):
        check_output_path(tmp_path / name)


def test_the_reference_is_never_an_output_whatever_the_spelling(tmp_path, monkeypatch):
    from valle_hf.audio import check_output_path
    from valle_hf.errors import VallEValueError

    reference = tmp_path / "ref.wav"
    soundfile.write(reference, _tone(0.1, 24000), 24000)
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.wav").symlink_to(reference)
    monkeypatch.chdir(tmp_path)
    for out in (reference, tmp_path / "sub" / ".." / "ref.wav", tmp_path / "link.wav", "ref.wav"):
        with pytest.raises(VallEValueError, match="would destroy the reference audio"):
            check_output_path(out, [str(reference)])
    assert check_output_path(tmp_path / "other.wav", [str(reference)]) == tmp_path / "other.wav"


def _failing_write(fail_after: int):
    """A soundfile.write that writes `fail_after` bytes of the file, then fails as a full disk does."""

    def write(file, data, samplerate, **kwargs):
        with open(file, "wb") as handle:
            handle.write(b"RIFF" + b"\0" * (fail_after - 4))
        raise soundfile.LibsndfileError(0, prefix="Error writing: ")

    return write


def test_a_failed_write_keeps_the_previous_file_and_leaves_no_partial_one(tmp_path, monkeypatch):
    from valle_hf import audio
    from valle_hf.errors import OutputError

    out = tmp_path / "speech.wav"
    audio.save_audio(out, _tone(0.2, 24000))
    before = out.read_bytes()
    monkeypatch.setattr(audio.soundfile, "write", _failing_write(1000))
    with pytest.raises(OutputError, match="could not write .*speech.wav.*it was left unchanged"):
        audio.save_audio(out, _tone(2.0, 24000))
    assert out.read_bytes() == before and [path.name for path in tmp_path.iterdir()] == ["speech.wav"]
    with pytest.raises(OutputError, match="it was not created"):
        audio.save_audio(tmp_path / "new.wav", _tone(2.0, 24000))
    assert [path.name for path in tmp_path.iterdir()] == ["speech.wav"]


def test_a_file_size_limit_keeps_the_previous_file(tmp_path):
    """The kernel refuses the write past RLIMIT_FSIZE (Python ignores SIGXFSZ), as a full disk would."""
    import resource

    from valle_hf.audio import save_audio
    from valle_hf.errors import OutputError

    out = tmp_path / "speech.wav"
    soundfile.write(out, _tone(0.1, 24000), 24000, subtype="FLOAT")  # the user's earlier output
    before = out.read_bytes()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (len(before) * 4, hard))
    try:
        with pytest.raises(OutputError, match="could not write"):
            save_audio(out, _tone(3.0, 24000))  # 30 times the first file
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert out.read_bytes() == before and [path.name for path in tmp_path.iterdir()] == ["speech.wav"]


def test_arrays_outside_minus_one_to_one_are_refused():
    from valle_hf.errors import VallEValueError

    tone = _tone(0.1, 24000, 0.5)
    with pytest.raises(VallEValueError, match=r"outside \[-1, 1\] \(peak 1.638e\+04\)"):
        load_audio(tone * 32768)  # int16 PCM values stored as floats
    with pytest.raises(VallEValueError, match="outside"):
        load_references([torch.from_numpy(tone) * 3])
    assert load_audio((tone * 32767).astype(np.int16)).abs().max() <= 1  # integer PCM is scaled, as documented


def test_a_directory_is_not_an_audio_file(tmp_path):
    from valle_hf.errors import VallEFileNotFoundError

    with pytest.raises(VallEFileNotFoundError, match="is a directory, not an audio file"):
        load_audio(tmp_path)
