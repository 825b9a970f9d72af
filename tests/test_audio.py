"""Audio files in and out: reading a file as it is, errors, the example prompt, reference syntaxes."""

from __future__ import annotations

import errno
import io
import os
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile
import torch
from conftest import Upload

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


@pytest.mark.parametrize("subtype", ["PCM_16", "FLOAT"])
def test_a_wav_cut_short_is_read_as_what_it_holds_with_a_warning_naming_both_lengths(tmp_path, subtype):
    from conftest import logged_warnings

    whole, cut = tmp_path / "whole.wav", tmp_path / "cut.wav"
    soundfile.write(whole, _tone(1.0, 16000), 16000, subtype=subtype)
    cut.write_bytes(whole.read_bytes()[:-(whole.stat().st_size // 4)])  # the last quarter of the bytes lost
    with logged_warnings() as logged:
        data, rate = load_audio(whole)
    assert logged.out == ""
    held = soundfile.info(cut).frames
    with logged_warnings() as logged:
        data, rate = load_audio(cut)
    assert data.shape[1] == held and 0 < held < 16000
    assert f"cut.wav is cut short: its header says 1.00 s of audio, the file holds {held / rate:.2f} s" in logged.out


@pytest.mark.parametrize("kept", [0, 1])
def test_a_wav_cut_before_its_first_whole_sample_is_named_as_cut_short(tmp_path, kept):
    """A copy that stopped within a sample of its header was read as empty audio without a word, even for a training
    utterance (`whole=True`): the header's length was worked out from the samples held, and there were none."""
    from conftest import logged_warnings

    from valle_hf.errors import VallEValueError

    whole, cut = tmp_path / "whole.wav", tmp_path / "cut.wav"
    soundfile.write(whole, _tone(1.0, 16000), 16000, subtype="PCM_16")
    content = whole.read_bytes()
    samples_start = content.index(b"data") + 8  # the chunk's name and size, then its samples
    cut.write_bytes(content[:samples_start + kept])
    said = (f"cut.wav is cut short: its header says {len(content) - samples_start} bytes of audio, the file holds "
            "0.00 s")
    with pytest.raises(VallEValueError, match=re.escape(said)):
        load_audio(cut, whole=True)
    with logged_warnings() as logged:
        data, rate = load_audio(cut)
    assert data.shape == (1, 0) and rate == 16000 and said in logged.out

def test_a_wav_whose_header_leaves_its_length_unknown_is_read_without_a_warning(tmp_path):
    """A WAV written to a pipe cannot go back to write its length: ffmpeg leaves the largest size there."""
    from conftest import logged_warnings

    path = tmp_path / "piped.wav"
    soundfile.write(path, _tone(0.5, 16000), 16000, subtype="PCM_16")
    header = bytearray(path.read_bytes())
    data_size = header.index(b"data") + 4
    header[4:8] = header[data_size:data_size + 4] = (0xFFFFFFFF).to_bytes(4, "little")
    path.write_bytes(bytes(header))
    with logged_warnings() as logged:
        data, _ = load_audio(path)
    assert logged.out == "" and data.shape[1] == 8000


def test_audio_errors(tmp_path):
    missing = tmp_path / "missing.wav"
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        load_audio(missing)
    junk = tmp_path / "junk.wav"
    junk.write_text("this is not audio\nat all\n")
    with pytest.raises(ValueError, match="could not read audio file .*junk.wav") as raised:
        load_audio(junk)
    assert "\n" not in str(raised.value)
    assert "give a WAV, FLAC, OGG or MP3 file (convert other formats first" in str(raised.value)  # how to fix it


@pytest.mark.parametrize("form", ["bytes", "bytearray", "BytesIO", "open file", "upload"])
def test_an_audio_files_content_is_read_as_its_path_is(form):
    """transformers' speech-recognition pipeline reads a file's bytes, and a notebook holds audio as bytes or an open
    file: both were refused, and a web framework's upload (no io.IOBase) still was. The same samples come back, and a
    file object is left where it stood, so that it serves every call it is given to (a pipeline's batches)."""
    content = EXAMPLE_PROMPT.read_bytes()
    with open(EXAMPLE_PROMPT, "rb") as opened:
        source = {"bytes": content, "bytearray": bytearray(content), "BytesIO": io.BytesIO(content),
                  "open file": opened, "upload": Upload("voice.wav", content)}[form]
        for _ in range(2):
            data, rate = load_audio(source)
            expected, expected_rate = load_audio(EXAMPLE_PROMPT)
            assert rate == expected_rate and np.array_equal(data, expected)
        assert isinstance(source, (bytes, bytearray)) or source.tell() == 0


def test_a_stream_that_cannot_seek_is_read_once():
    """A file-like that reads and says where it stands but cannot seek (a socket's, a pipe's): read to its end, and
    then holds no bytes."""
    from valle_hf.errors import VallEValueError

    class Stream:
        def __init__(self, content: bytes):
            stream = io.BytesIO(content)
            self.read, self.tell = stream.read, stream.tell

    stream = Stream(EXAMPLE_PROMPT.read_bytes())
    assert np.array_equal(load_audio(stream)[0], load_audio(EXAMPLE_PROMPT)[0])
    with pytest.raises(VallEValueError, match="^the audio Stream given holds no bytes"):
        load_audio(stream)


def test_a_wav_cut_short_given_as_bytes_is_named_by_what_was_given(tmp_path):
    from conftest import logged_warnings

    whole = tmp_path / "whole.wav"
    soundfile.write(whole, _tone(1.0, 16000), 16000, subtype="PCM_16")
    content = whole.read_bytes()
    with logged_warnings() as logged:
        data, rate = load_audio(content[:-(len(content) // 4)])
    held = soundfile.info(io.BytesIO(content[:-(len(content) // 4)])).frames
    assert data.shape[1] == held and 0 < held < rate
    assert f"the audio bytes given is cut short: its header says 1.00 s of audio, the file holds {held / rate:.2f} s" \
        in logged.out


class AsyncUpload:
    """An ASGI framework's upload (Starlette's, FastAPI's UploadFile): its read is a coroutine function."""

    filename = "voice.wav"

    async def read(self, size: int = -1) -> bytes:
        return EXAMPLE_PROMPT.read_bytes()


@pytest.mark.parametrize("make, error, message", [
    (lambda path: b"this is not audio", "VallEValueError",
     "could not read the audio bytes given: Format not recognised; give a WAV, FLAC, OGG or MP3 file"),
    (lambda path: io.BytesIO(b""), "VallEValueError", "the audio BytesIO given holds no bytes"),
    (lambda path: open(path, encoding="latin-1"), "VallETypeError", "the open file {path} is open as text, and "
     "audio is bytes: open it with open(path, 'rb')"),
    (lambda path: open(path, encoding="utf-8"), "VallETypeError", "the open file {path} is open as text"),
    (lambda path: open(path, "ab"), "VallEValueError", "the open file {path} is not open for reading"),
    (lambda path: Upload("voice.txt", "RIFF"), "VallETypeError", "the open file voice.txt is open as text, and audio "
     "is bytes"),
    (lambda path: SimpleNamespace(read=lambda: [1, 2]), "VallETypeError", "read() of the audio SimpleNamespace "
     "given gave a list, not the file's bytes"),
    (lambda path: AsyncUpload(), "VallETypeError", "the audio AsyncUpload given reads with an async read(): give its "
     "bytes, await upload.read(), or its file, upload.file"),
    (lambda path: SimpleNamespace(read=lambda size: b"RIFF"), "VallETypeError", "read() of the audio SimpleNamespace "
     "given needs arguments, so it is no open file"),
])
def test_content_that_is_no_audio_is_refused_naming_what_was_given(tmp_path, make, error, message):
    """Undecodable bytes, no bytes, a file open as text (its read gives a str) or for writing only, an upload read by
    awaiting (FastAPI's UploadFile: a coroutine was read, never awaited), a read() that needs an argument (a bare
    TypeError from inside the reader)."""
    from valle_hf import errors

    path = tmp_path / "voice.wav"
    path.write_bytes(EXAMPLE_PROMPT.read_bytes())
    source = make(path)
    try:
        with pytest.raises(getattr(errors, error), match="^" + re.escape(message.format(path=path))) as raised:
            load_audio(source)
    finally:
        if isinstance(source, io.IOBase):
            source.close()
    assert "\n" not in str(raised.value) and "object at 0x" not in str(raised.value)
    closed = open(path, "rb")
    closed.close()
    with pytest.raises(errors.VallEValueError, match=f"^the open file {re.escape(str(path))} is closed"):
        load_audio(closed)


def test_a_tilde_in_an_audio_path_is_the_home_folder(tmp_path, monkeypatch):
    """No shell expands "~" in Python or in quotes: "~/voice.wav" was looked for in a folder named "~" here, and an
    output "~/voice.wav" was not known to be the reference itself."""
    from valle_hf.audio import check_output_path
    from valle_hf.errors import VallEValueError

    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "voice.wav").write_bytes(EXAMPLE_PROMPT.read_bytes())
    data, rate = load_audio("~/voice.wav")
    expected, expected_rate = load_audio(EXAMPLE_PROMPT)
    assert rate == expected_rate and np.array_equal(data, expected)
    assert reference_sources("~/voice.wav; ~/other.wav") == [str(tmp_path / "voice.wav"), str(tmp_path / "other.wav")]
    assert reference_sources(Path("~/voice.wav")) == [tmp_path / "voice.wav"]
    assert check_output_path("~/out.wav") == tmp_path / "out.wav"
    with pytest.raises(VallEValueError, match="is also an input"):
        check_output_path(tmp_path / "voice.wav", "~/voice.wav")


def test_an_empty_audio_file_is_named_as_empty_not_of_an_unknown_format(tmp_path):
    (tmp_path / "voice.wav").touch()
    with pytest.raises(ValueError, match=r"audio file .*voice.wav is empty \(0 bytes\): a copy or a recording that "
                                         r"failed\? give the file with the audio"):
        load_audio(tmp_path / "voice.wav")


def test_a_pipe_given_as_audio_is_named_as_such_not_missing(tmp_path):
    import os

    pipe = tmp_path / "voice.wav"
    os.mkfifo(pipe)  # reading it would wait for a writer forever
    with pytest.raises(ValueError, match="voice.wav is not a regular file \\(a pipe or a device\\)"):
        load_audio(pipe)


def test_a_file_that_is_not_the_audio_its_name_says_is_not_reported_missing(tmp_path):
    """libsndfile says an MP3 it cannot decode "does not exist"; the file is there, its content is the problem."""
    fake = tmp_path / "fake.mp3"
    fake.write_bytes(b"ID3garbage" * 10)
    with pytest.raises(ValueError, match=r"could not read audio file .*fake\.mp3: its content is not audio") as raised:
        load_audio(fake)
    assert "does not exist" not in str(raised.value)


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
    with pytest.raises(TypeError, match="^prompt_audio must be a path"):
        reference_sources(3)


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


@pytest.mark.parametrize("name, container, subtype", [("speech.WAV", "WAV", "FLOAT"), ("Speech.Flac", "FLAC", None)])
def test_an_output_extension_is_read_in_any_case(tmp_path, name, container, subtype):
    """Cameras and Windows tools write SPEECH.WAV: the extension names the format whatever its case."""
    from valle_hf.audio import check_output_path, save_audio

    assert check_output_path(tmp_path / name) == tmp_path / name
    info = soundfile.info(save_audio(tmp_path / name, _tone(0.1, 24000)))
    assert info.format == container and info.subtype == (subtype or soundfile.default_subtype(container))


def test_samples_beyond_one_are_clipped_when_saved_and_said_so(tmp_path):
    """A float WAV holds any value, and players wrap or distort what lies beyond full scale: `save_audio` clips to
    [-1, 1], as the file streamer does, and says how many samples it clipped; audio within full scale is written
    without a word."""
    from conftest import logged_warnings

    from valle_hf.audio import save_audio

    samples = np.array([0.5, 1.5, -2.0, -0.25, 1.0], dtype=np.float32)
    with logged_warnings() as logged:
        written = soundfile.read(save_audio(tmp_path / "speech.wav", samples), dtype="float32")[0]
    np.testing.assert_array_equal(written, np.clip(samples, -1.0, 1.0))
    assert f"{tmp_path / 'speech.wav'}: 2 sample(s) beyond full scale (peak 2) were clipped" in logged.out
    with logged_warnings() as logged:
        save_audio(tmp_path / "within.wav", np.clip(samples, -1.0, 1.0))
    assert "clipped" not in logged.out


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_16bit_waveform_is_saved_as_its_float32_values(tmp_path, dtype):
    """A waveform a 16-bit model or a user's cast gives: numpy has no bfloat16, and soundfile writes no float16."""
    from valle_hf.audio import save_audio

    waveform = torch.from_numpy(_tone(0.1, 24000)).to(dtype)
    written = soundfile.read(save_audio(tmp_path / "speech.wav", waveform), dtype="float32")[0]
    np.testing.assert_array_equal(written, waveform.float().numpy())


@pytest.mark.parametrize("name", ["o.txt", "out", "speech.wav.part"])
def test_an_unsupported_output_is_refused_naming_the_supported_ones(tmp_path, name):
    from valle_hf.audio import check_output_path
    from valle_hf.errors import VallEValueError

    with pytest.raises(VallEValueError, match=r"must end in one of \.wav, \.flac, \.ogg"):
        check_output_path(tmp_path / name)


@pytest.mark.parametrize("route", ["check_output_path", "save_audio"])
def test_an_output_folder_or_a_missing_one_is_named_as_such(tmp_path, route):
    """A folder given as the output (which seldom has an audio extension) is said to be a folder, and a missing or
    mistaken parent folder is named, on the CLI's check and in `save_audio` alike."""
    from valle_hf import audio
    from valle_hf.errors import VallEValueError

    def write(path):
        if route == "check_output_path":
            return audio.check_output_path(path)
        return audio.save_audio(path, _tone(0.1, 24000))

    (tmp_path / "folder").mkdir()
    (tmp_path / "notes.txt").write_text("")
    with pytest.raises(VallEValueError, match=r"folder is a directory: give a file name such as .*speech\.wav"):
        write(tmp_path / "folder")
    with pytest.raises(VallEValueError, match=r"new\.wav/ names a folder \(it ends in '/'\)"):
        write(f"{tmp_path / 'new.wav'}/")
    with pytest.raises(VallEValueError, match=r"its folder .*missing does not exist: create it first"):
        write(tmp_path / "missing" / "o.wav")
    with pytest.raises(VallEValueError, match=r"its folder .*notes\.txt is a file, not a folder: choose another path"):
        write(tmp_path / "notes.txt" / "o.wav")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["folder", "notes.txt"]


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
    for joined in ("other.wav;ref.wav", ["other.wav;ref.wav"], [" ref.wav ", ""]):  # the prompt syntaxes
        with pytest.raises(VallEValueError, match="would destroy the reference audio"):
            check_output_path(reference, joined)
    assert check_output_path(tmp_path / "other.wav", [str(reference)]) == tmp_path / "other.wav"
    assert check_output_path(reference, "") == reference  # no reference (an empty path is not the folder ".")
    assert check_output_path(reference, None) == reference
    assert check_output_path(reference, _tone(0.1, 24000)) == reference  # a waveform as the prompt: no file
    with pytest.raises(VallEValueError, match="would destroy the reference audio"):
        check_output_path(reference, {str(reference)})
    with pytest.raises(VallEValueError, match="would destroy the reference audio"):
        check_output_path(reference, (path for path in [str(reference)]))  # any iterable of paths


def _failing_write(fail_after: int):
    """A Path.write_bytes that writes `fail_after` bytes of the file, then fails as a full disk does."""

    def write_bytes(path, data):
        with open(path, "wb") as handle:
            handle.write(bytes(data[:fail_after]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    return write_bytes


def test_a_failed_write_keeps_the_previous_file_and_leaves_no_partial_one(tmp_path, monkeypatch):
    from valle_hf import audio
    from valle_hf.errors import OutputError

    out = tmp_path / "speech.wav"
    audio.save_audio(out, _tone(0.2, 24000))
    before = out.read_bytes()
    monkeypatch.setattr(Path, "write_bytes", _failing_write(1000))
    with pytest.raises(OutputError, match=r"could not write .*speech.wav \(No space left on device\); it was left "
                                          "unchanged"):
        audio.save_audio(out, _tone(2.0, 24000))
    assert out.read_bytes() == before and [path.name for path in tmp_path.iterdir()] == ["speech.wav"]
    with pytest.raises(OutputError, match="it was not created"):
        audio.save_audio(tmp_path / "new.wav", _tone(2.0, 24000))
    assert [path.name for path in tmp_path.iterdir()] == ["speech.wav"]


@pytest.mark.parametrize(
    "waveform, rate, expected",
    [
        (np.zeros(0, dtype=np.float32), 24000, "the audio is empty (0 samples"),
        (np.array([0.1, np.nan, 0.2, np.nan], dtype=np.float32), 24000, "2 NaN or infinite samples (the first is "
                                                                         "sample 1)"),
        (torch.tensor([0.0, float("inf")]), 24000, "1 NaN or infinite samples (the first is sample 1)"),
        (np.full(8, 0.1, dtype=np.float32), 0, "the sampling rate must be a positive integer (Hz) up to "
                                                "2147483647, got 0"),
        (np.full(8, 0.1, dtype=np.float32), 10**10, "got 10000000000"),  # OverflowError in soundfile
        (np.full(8, 0.1, dtype=np.float32), 24000.5, "got 24000.5"),
        (np.full(8, 0.1, dtype=np.float32), True, "got True"),  # a bool is no rate, though Python counts it as 1
        (np.full((1, 8), 0.1, dtype=np.float32), 24000, "save_audio writes one mono waveform (1-D), got shape (1, 8)"),
        (np.full((8, 2), 0.1, dtype=np.float32), 24000, "got shape (8, 2)"),  # soundfile's frames by channels
    ],
)
def test_audio_no_file_can_hold_is_refused_and_nothing_written(tmp_path, waveform, rate, expected):
    from valle_hf.audio import save_audio
    from valle_hf.errors import VallEValueError

    (tmp_path / "kept.wav").write_bytes(b"previous")
    for name in ("kept.wav", "new.flac"):
        with pytest.raises(VallEValueError, match=re.escape(expected)):
            save_audio(tmp_path / name, waveform, rate)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["kept.wav"]
    assert (tmp_path / "kept.wav").read_bytes() == b"previous"


def test_a_stream_that_wrote_nothing_or_a_nan_chunk_leaves_no_file(tmp_path):
    """A row that stopped at once is empty audio; a stream committed before any call streamed into it says so, not
    that its audio came out empty."""
    from valle_hf.errors import VallEValueError
    from valle_hf.streaming import AudioChunk, AudioFileStreamer

    out = tmp_path / "speech.wav"
    out.write_bytes(b"previous")
    codes = torch.zeros(1, 8, dtype=torch.long)
    with pytest.raises(VallEValueError, match="speech.wav received no audio: commit it after the generate call"):
        AudioFileStreamer(out, 24000).commit()
    streamer = AudioFileStreamer(out, 24000)
    streamer.put(AudioChunk(0, torch.zeros(0), codes[:0], 0, final=True))  # a row that stopped at once
    with pytest.raises(VallEValueError, match="speech.wav was not written: the audio is empty"):
        streamer.commit()
    streamer = AudioFileStreamer(out, 24000)
    streamer.put(AudioChunk(0, torch.full((320,), 0.1), codes, 0, final=False))
    with pytest.raises(VallEValueError, match="1 NaN or infinite samples"):
        streamer.put(AudioChunk(0, torch.tensor([0.1, float("nan")]), codes, 1, final=True))
    streamer.abort()  # what the CLI does with an error during generation
    assert out.read_bytes() == b"previous" and sorted(path.name for path in tmp_path.iterdir()) == ["speech.wav"]


def test_a_rate_the_format_does_not_take_is_said_in_libsndfile_words_and_nothing_written(tmp_path):
    from valle_hf.audio import save_audio
    from valle_hf.errors import OutputError

    with pytest.raises(OutputError, match=r"could not write \S*speech.flac \(flac does not support this sample "
                                          r"rate.\); it was not created$"):
        save_audio(tmp_path / "speech.flac", _tone(0.1, 24000), 700_000)
    assert not list(tmp_path.iterdir())


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
        with pytest.raises(OutputError, match=rf"could not write .*speech.wav \(File too large: the file-size limit "
                                              rf"\(ulimit -f\) is {len(before) * 4} bytes\)"):
            save_audio(out, _tone(3.0, 24000))  # 30 times the first file
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert out.read_bytes() == before and [path.name for path in tmp_path.iterdir()] == ["speech.wav"]


def test_arrays_far_outside_minus_one_to_one_are_refused():
    from valle_hf.errors import VallEValueError
    from valle_hf.feature_extraction import VallEFeatureExtractor

    extractor, tone = VallEFeatureExtractor(), _tone(0.1, 24000, 0.5)
    with pytest.raises(VallEValueError, match=r"outside \[-1, 1\] \(peak 1.638e\+04\)"):
        extractor.waveform(tone * 32768, 24000)  # int16 PCM values stored as floats
    with pytest.raises(VallEValueError, match="outside"):
        extractor.load([torch.from_numpy(tone) * 5], sampling_rate=24000)  # past twice full scale
    assert extractor.waveform((tone * 32767).astype(np.int16), 24000).abs().max() <= 1  # integer PCM is scaled


def test_a_directory_is_not_an_audio_file(tmp_path):
    from valle_hf.errors import VallEFileNotFoundError

    with pytest.raises(VallEFileNotFoundError, match="is a directory, not an audio file"):
        load_audio(tmp_path)


@pytest.mark.parametrize("url", ["https://example.com/voice.wav", "s3://bucket/voice.flac"])
def test_a_url_is_refused_saying_to_download_it(url):
    """A URL (transformers' speech-recognition pipeline downloads one) was "not found" with its "//" made "/"."""
    from valle_hf.errors import VallEValueError

    with pytest.raises(VallEValueError, match=f"^{re.escape(url)} is a URL, and audio is read from files only"):
        load_audio(url)


@pytest.mark.parametrize(("free", "reason"), [
    (10**12, "File too large: the file-size limit (ulimit -f) is 65536 bytes"),
    (4096, "No space left on device"),  # libsndfile says "System error." for both: the file system is asked
])
def test_a_stream_that_fills_the_disk_ends_with_an_output_error_and_leaves_no_file(tmp_path, monkeypatch, free,
                                                                                   reason):
    """The kernel refuses the write past RLIMIT_FSIZE, as a full disk would."""
    import resource

    from valle_hf import audio
    from valle_hf.errors import OutputError
    from valle_hf.streaming import AudioChunk, AudioFileStreamer

    out = tmp_path / "speech.wav"
    out.write_bytes(b"previous")
    streamer = AudioFileStreamer(out, 24000)
    monkeypatch.setattr(audio.shutil, "disk_usage", lambda path: SimpleNamespace(free=free))
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, hard))
    try:
        with pytest.raises(OutputError, match=re.escape(f"speech.wav ({reason}); it was left as it was")):
            for index in range(100):  # 100 chunks of 4800 float32 samples: far past 64 KiB
                streamer.put(AudioChunk(0, torch.full((4800,), 0.1), torch.zeros(15, 8, dtype=torch.long), 15 * index,
                                        final=False))
        streamer.abort()
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert out.read_bytes() == b"previous" and sorted(path.name for path in tmp_path.iterdir()) == ["speech.wav"]


def test_a_file_stream_is_committed_once_and_a_refused_partial_file_or_rename_leaves_no_file(tmp_path):
    """A second commit, or one after abort, has no partial file left to rename; a folder that refuses the rename (the
    output became a folder meanwhile) is an output error, not a traceback, and leaves no partial file; one that would
    refuse the partial file (a name its longer name makes too long) is refused before any chunk."""
    import os

    from valle_hf.errors import OutputError, VallEValueError
    from valle_hf.streaming import AudioChunk, AudioFileStreamer

    out = tmp_path / "speech.wav"
    chunk = AudioChunk(0, torch.full((320,), 0.1), torch.zeros(1, 8, dtype=torch.long), 0, final=True)
    streamer = AudioFileStreamer(out, 24000)
    streamer.put(chunk)
    assert streamer.commit() == out
    written = out.read_bytes()
    streamer.abort()  # after commit: changes nothing
    with pytest.raises(VallEValueError, match="speech.wav was already committed: commit it once"):
        streamer.commit()
    aborted = AudioFileStreamer(out, 24000)
    aborted.put(chunk)
    aborted.abort()
    with pytest.raises(VallEValueError, match="speech.wav was already aborted"):
        aborted.commit()
    assert out.read_bytes() == written

    blocked = AudioFileStreamer(tmp_path / "blocked.wav", 24000)
    blocked.put(chunk)
    (tmp_path / "blocked.wav").mkdir()
    with pytest.raises(OutputError, match="could not write .*blocked.wav .*it was left as it was"):
        blocked.commit()
    longest = "a" * (os.pathconf(tmp_path, "PC_NAME_MAX") - len(".wav")) + ".wav"
    with pytest.raises(VallEValueError, match=r"cannot write the output file .* \(File name too long\)"):
        AudioFileStreamer(tmp_path / longest, 24000)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["blocked.wav", "speech.wav"]


def test_aborting_a_stream_whose_file_fails_to_close_still_removes_it_and_raises_nothing(tmp_path, monkeypatch):
    """Closing writes the header, which a full disk refuses; the abort that follows a failed write must still remove
    the partial file, and not raise over the error that led to it."""
    from valle_hf.streaming import AudioChunk, AudioFileStreamer

    out = tmp_path / "speech.wav"
    out.write_bytes(b"previous")
    streamer = AudioFileStreamer(out, 24000)
    streamer.put(AudioChunk(0, torch.full((320,), 0.1), torch.zeros(1, 8, dtype=torch.long), 0, final=True))
    close = streamer._file.close

    def full_disk():
        close()
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(streamer._file, "close", full_disk)
    streamer.abort()
    assert out.read_bytes() == b"previous" and sorted(path.name for path in tmp_path.iterdir()) == ["speech.wav"]


def test_a_file_stream_writes_the_rows_one_after_the_other_clipped_to_one(tmp_path):
    """Chunks of a batch arrive interleaved (row by row at each NAR round); the file holds row 0's speech, then row
    1's, whatever the arrival order, and clips samples to [-1, 1] as `save_audio` does, saying so once at commit."""
    from conftest import logged_warnings

    from valle_hf.streaming import AudioChunk, AudioFileStreamer

    out, rate = tmp_path / "speech.wav", 24000
    codes = torch.zeros(1, 8, dtype=torch.long)
    pieces = [(0, torch.full((160,), 0.25), False), (1, torch.full((80,), -1.5), True),
              (0, torch.full((40,), 2.0), True)]
    streamer = AudioFileStreamer(out, rate)
    for row, audio, final in pieces:
        streamer.put(AudioChunk(row, audio, codes, 0, final))
    with logged_warnings() as logged:
        streamer.commit()
    assert logged.out.count("clipped") == 1, logged.out  # once for the whole stream, with every piece's samples
    assert f"{out}: 120 sample(s) beyond full scale (peak 2) were clipped" in logged.out
    expected = torch.cat([pieces[0][1], pieces[2][1], pieces[1][1]]).clamp(-1.0, 1.0)
    written = torch.from_numpy(soundfile.read(out, dtype="float32")[0])
    assert torch.equal(written, expected)


def test_a_file_stream_whose_last_chunk_is_empty_is_still_committed_whole(tmp_path):
    """A row's final chunk is often empty (the row stopped right after a chunk was sent): the seconds written count
    every chunk, so the stream is not taken for an empty one, and the file holds all of them."""
    from valle_hf.streaming import AudioChunk, AudioFileStreamer

    out, rate = tmp_path / "speech.wav", 24000
    codes = torch.zeros(1, 8, dtype=torch.long)
    pieces = [torch.full((160,), 0.25), torch.full((80,), -0.5), torch.zeros(0)]
    streamer = AudioFileStreamer(out, rate)
    for index, audio in enumerate(pieces):
        streamer.put(AudioChunk(0, audio, codes, index, final=index == len(pieces) - 1))
    assert streamer.seconds == sum(len(audio) for audio in pieces) / rate
    streamer.commit()
    assert torch.equal(torch.from_numpy(soundfile.read(out, dtype="float32")[0]), torch.cat(pieces))


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc, a folder where no file can be made")
def test_a_folder_that_takes_no_files_is_refused_before_any_work_whatever_its_permissions_say(monkeypatch):
    """Root passes every permission test, yet cannot make a file in /proc or /sys: such an output was found only when
    the speech, generated, was written."""
    from valle_hf.audio import check_output_path
    from valle_hf.errors import UsageError, VallEValueError
    from valle_hf.files import check_output_folder

    monkeypatch.setattr(os, "access", lambda path, mode: True)  # what root is told
    with pytest.raises(VallEValueError, match=r"cannot write the output file /proc/o.wav \(.+\): choose another path"):
        check_output_path("/proc/o.wav")
    with pytest.raises(UsageError, match=r"cannot write --output /proc/corpus: /proc cannot take a file \(.+\)$"):
        check_output_folder("/proc/corpus", "--output")


def test_a_name_the_file_system_cannot_take_is_refused_before_any_work(tmp_path):
    """A name that fits but whose temporary file (.NAME.XXXXXXXX.part) does not was refused only after generating;
    one longer than the file system takes raised a traceback."""
    from valle_hf.audio import check_output_path
    from valle_hf.errors import UsageError, VallEValueError
    from valle_hf.files import check_output_folder

    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    fits_alone = tmp_path / ("a" * (limit - 4) + ".wav")
    too_long = tmp_path / ("a" * limit + ".wav")
    for path in (fits_alone, too_long):
        with pytest.raises(VallEValueError, match=r"cannot write the output file .* \(File name too long\): choose"):
            check_output_path(path)
    with pytest.raises(UsageError, match=r"cannot write --output .* \(File name too long\): choose another path$"):
        check_output_folder(tmp_path / ("d" * (limit + 1)), "--output")
    assert list(tmp_path.iterdir()) == []


def test_an_output_name_in_another_encoding_is_refused_before_any_work(tmp_path):
    """Bytes that are not UTF-8 in a command line's file name (here 0xff) passed the check, and writing the speech
    then raised a traceback."""
    from valle_hf.audio import check_output_path
    from valle_hf.errors import VallEValueError

    with pytest.raises(VallEValueError, match=r"the output path .*\\udcff.wav' is not valid utf-8: give the name"):
        check_output_path(str(tmp_path) + "/\udcff.wav")


def test_a_symbolic_link_to_nothing_is_refused_as_an_output_folder(tmp_path):
    """A link to a folder that does not exist passed the check, then failed to be made after the model loaded; a link
    to itself raised a traceback."""
    from valle_hf.errors import UsageError
    from valle_hf.files import check_output_folder

    (tmp_path / "dangling").symlink_to(tmp_path / "missing")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    for name in ("dangling", "loop"):
        with pytest.raises(UsageError, match=f"--output {tmp_path / name} is a symbolic link to .*, which does not "
                                             r"exist \(or leads back to itself\): give a folder"):
            check_output_folder(tmp_path / name, "--output")


def test_a_read_only_output_file_is_refused_before_any_work(tmp_path, monkeypatch):
    """Its folder takes new files, but the file itself cannot be replaced by a user who may not write it."""
    from valle_hf.audio import check_output_path
    from valle_hf.errors import VallEValueError

    out = tmp_path / "speech.wav"
    out.write_bytes(b"previous")
    access = os.access  # the tests may run as root, who may write anywhere: the file is read-only for os.access
    monkeypatch.setattr(os, "access",
                        lambda path, mode: not (Path(path) == out and mode & os.W_OK) and access(path, mode))
    with pytest.raises(VallEValueError, match=r"cannot write the output file .*speech.wav \(Permission denied\)"):
        check_output_path(out)
    assert out.read_bytes() == b"previous"


def test_a_read_only_mount_is_named_as_one(tmp_path, monkeypatch):
    """It was "Permission denied", which sends the user to the folder's permissions."""
    from valle_hf.files import why_not_writable

    statvfs = os.statvfs

    class ReadOnly:  # what os.statvfs says of a read-only mount, which denies writing to root too
        def __init__(self, path):
            self.f_flag = statvfs(path).f_flag | (os.ST_RDONLY if Path(path) == tmp_path else 0)

    monkeypatch.setattr(os, "statvfs", ReadOnly)
    access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != tmp_path and access(path, mode))
    assert why_not_writable(tmp_path / "speech.wav") == os.strerror(errno.EROFS)
    monkeypatch.setattr(os, "statvfs", statvfs)
    assert why_not_writable(tmp_path / "speech.wav") == os.strerror(errno.EACCES)
    monkeypatch.delattr(os, "statvfs")  # Windows has none: it crashed where it had answered
    assert why_not_writable(tmp_path / "speech.wav") == os.strerror(errno.EACCES)


def test_a_folder_that_keeps_what_is_made_in_it_is_named_with_the_file_left_there(tmp_path, monkeypatch):
    """An append-only folder takes the test file but refuses to remove it: said, naming the file left behind."""
    from valle_hf.files import why_not_writable

    unlink = Path.unlink

    def refuse(path, missing_ok=False):
        if path.name.endswith(".part"):
            raise PermissionError(1, "Operation not permitted")
        return unlink(path, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", refuse)
    problem = why_not_writable(tmp_path / "speech.wav")
    assert problem is not None and re.fullmatch(
        r"Operation not permitted \(removing the test file \.speech\.wav\..+\.part, which is left there\)", problem)


def test_a_rate_an_encoder_would_crash_on_is_refused_before_it_runs(tmp_path):
    """libvorbis takes the whole process down (a segfault) above 200 kHz, where other encoders refuse in words."""
    from valle_hf.audio import save_audio
    from valle_hf.errors import VallEValueError
    from valle_hf.streaming import AudioFileStreamer

    with pytest.raises(VallEValueError, match="an OGG file's sampling rate must be a positive integer .* up to 200000"):
        save_audio(tmp_path / "speech.ogg", _tone(0.1, 24000), 200_001)
    with pytest.raises(VallEValueError, match="an OGG file's sampling rate"):
        AudioFileStreamer(tmp_path / "speech.ogg", 300_000)
    assert not list(tmp_path.iterdir())
    assert load_audio(save_audio(tmp_path / "speech.ogg", _tone(0.1, 200_000), 200_000))[1] == 200_000


def test_a_file_far_below_a_small_size_limit_is_not_said_to_be_too_large(tmp_path, monkeypatch):
    """Under a file-size limit below 1 MiB, every "System error." was put down to the limit, an empty file's too."""
    from valle_hf import audio

    monkeypatch.setattr(audio, "file_size_limit", lambda: 512 * 1024)
    monkeypatch.setattr(audio.shutil, "disk_usage", lambda path: SimpleNamespace(free=10**12))
    partial = tmp_path / "speech.wav"
    partial.write_bytes(b"")
    assert audio.write_failure(soundfile.LibsndfileError(2), partial) == "System error."
    partial.write_bytes(b"\0" * (500 * 1024))
    assert audio.write_failure(soundfile.LibsndfileError(2), partial).startswith("File too large")


def test_an_output_path_that_is_a_symbolic_link_is_written_through_the_link_stays(tmp_path):
    """`open()` writes through a link; the rename that makes a file whole replaced the link by a file instead, so a
    link into a shared folder (or a file kept elsewhere) was cut. Links to a file made, not yet made, and one that
    leads back to itself (refused); the temporary file goes beside the target, in its folder."""
    from valle_hf.audio import check_output_path, save_audio
    from valle_hf.errors import VallEValueError
    from valle_hf.streaming import AudioChunk, AudioFileStreamer

    elsewhere, here = tmp_path / "elsewhere", tmp_path / "here"
    elsewhere.mkdir(), here.mkdir()
    tone = _tone(0.05, 24000)
    for name, made in (("made.wav", True), ("not-yet.wav", False)):
        target = elsewhere / name
        if made:
            target.write_bytes(b"previous")
        (here / name).symlink_to(target)
        assert save_audio(here / name, tone) == here / name
        assert (here / name).is_symlink() and soundfile.info(target).frames == len(tone)
    streamed = here / "streamed.wav"
    streamed.symlink_to(elsewhere / "streamed.wav")
    streamer = AudioFileStreamer(streamed, 24000)
    assert streamer.partial.parent == elsewhere
    streamer.put(AudioChunk(0, torch.from_numpy(tone), torch.zeros(1, 8, dtype=torch.long), 0, final=True))
    streamer.commit()
    assert streamed.is_symlink() and soundfile.info(elsewhere / "streamed.wav").frames == len(tone)
    assert sorted(path.name for path in here.iterdir()) == ["made.wav", "not-yet.wav", "streamed.wav"]
    assert sorted(path.name for path in elsewhere.iterdir()) == ["made.wav", "not-yet.wav", "streamed.wav"]

    (here / "loop.wav").symlink_to(here / "loop.wav")
    (here / "nowhere.wav").symlink_to(tmp_path / "missing" / "x.wav")
    with pytest.raises(VallEValueError, match=r"the output path .*loop.wav is a symbolic link that leads back to "
                                              r"itself: remove it or choose another path"):
        check_output_path(here / "loop.wav")
    with pytest.raises(VallEValueError, match=r"cannot write the output file .*nowhere.wav: its folder .*missing does "
                                              r"not exist: create it first"):
        check_output_path(here / "nowhere.wav")


def test_an_output_path_that_is_a_pipe_gets_the_whole_file_and_stays_a_pipe(tmp_path, tmp_path_factory, monkeypatch):
    """A player reading a FIFO named as the output got nothing: the finished file was renamed over the pipe. Now the
    complete file's bytes are written into it, by `save_audio` and by a file stream's commit, and the temporary file
    they were first written to (in the system's temporary folder) is gone."""
    import tempfile
    import threading

    from valle_hf.audio import save_audio

    system_temporary = tmp_path_factory.mktemp("system-temporary")
    monkeypatch.setattr(tempfile, "tempdir", str(system_temporary))
    tone = _tone(0.05, 24000)
    save_audio(tmp_path / "plain.wav", tone)
    pipe = tmp_path / "player.wav"
    os.mkfifo(pipe)
    for write in (lambda: save_audio(pipe, tone), lambda: _stream_into(pipe, tone)):
        received = []
        reader = threading.Thread(target=lambda into=received: into.append(pipe.read_bytes()), daemon=True)
        reader.start()
        write()
        reader.join(timeout=60)
        assert len(received) == 1 and _same_wav(received[0], tmp_path / "plain.wav")
        assert pipe.is_fifo() and sorted(path.name for path in tmp_path.iterdir()) == ["plain.wav", "player.wav"]
        assert list(system_temporary.iterdir()) == []


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs Linux's /proc/self/fd")
def test_a_link_to_a_pipe_or_a_device_is_written_into_as_open_would(tmp_path, monkeypatch):
    """A link to /dev/stdout piped to a player was refused ("No such file or directory": the link's end is the
    pipe's /proc name, "pipe:[N]", no path to make a file beside), and a link to a device had the temporary file made
    in /dev. Here the pipe is this process's own, through /proc/self/fd as /dev/stdout is; the temporary files go to
    the system's temporary folder."""
    import tempfile

    from valle_hf.audio import check_output_path, save_audio

    tone = _tone(0.05, 24000)  # a WAV well within a pipe's buffer: written before anything reads it
    save_audio(tmp_path / "plain.wav", tone)
    devices, links = tmp_path / "dev", tmp_path / "links"
    devices.mkdir(), links.mkdir()
    os.mkfifo(devices / "player.wav")
    for write in (save_audio, _stream_into):
        read, written = os.pipe()
        try:
            (links / "stdout.wav").symlink_to(f"/proc/self/fd/{written}")
            write(links / "stdout.wav", tone)
            os.close(written)
            with os.fdopen(read, "rb") as pipe:
                assert _same_wav(pipe.read(), tmp_path / "plain.wav")
        finally:
            (links / "stdout.wav").unlink()
    from valle_hf.streaming import AudioFileStreamer

    (links / "player.wav").symlink_to(devices / "player.wav")
    streamer = AudioFileStreamer(links / "player.wav", 24000)
    assert streamer.partial.parent == Path(tempfile.gettempdir())
    streamer.abort()
    assert sorted(path.name for path in devices.iterdir()) == ["player.wav"]
    assert sorted(path.name for path in links.iterdir()) == ["player.wav"]
    access = os.access  # a folder of devices takes no file from a user (/dev), who may still write a device in it
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != devices and access(path, mode))
    assert check_output_path(devices / "player.wav") == devices / "player.wav"


def test_a_stream_interrupted_while_it_is_put_in_place_leaves_no_partial_file(tmp_path, monkeypatch):
    """Ctrl-C while the commit waits for a pipe's reader left the complete partial file beside the pipe."""
    from valle_hf import streaming

    def interrupted(temporary, target):
        raise KeyboardInterrupt

    monkeypatch.setattr(streaming, "put_in_place", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _stream_into(tmp_path / "speech.wav", _tone(0.05, 24000))
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("step", ["SoundFile", "RowOrder"])
def test_a_stream_interrupted_while_it_is_made_leaves_no_partial_file(tmp_path, monkeypatch, step):
    """Ctrl-C while the streamer is made, the partial file opened (or a step after it, which left it: the caller had
    no streamer yet to abort), leaves nothing."""
    from valle_hf import streaming

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(streaming.soundfile if step == "SoundFile" else streaming, step, interrupted)
    with pytest.raises(KeyboardInterrupt):
        streaming.AudioFileStreamer(tmp_path / "speech.wav", 24000)
    assert not list(tmp_path.iterdir())


def _same_wav(data: bytes, path: Path) -> bool:
    """Whether `data` is the WAV file at `path` but for the time its PEAK chunk records (libsndfile's float WAVs)."""
    import io

    written, expected = soundfile.read(io.BytesIO(data)), soundfile.read(path)
    return len(data) == path.stat().st_size and written[1] == expected[1] and np.array_equal(written[0], expected[0])


def _stream_into(path: Path, audio: np.ndarray) -> None:
    from valle_hf.streaming import AudioChunk, AudioFileStreamer

    streamer = AudioFileStreamer(path, 24000)
    streamer.put(AudioChunk(0, torch.from_numpy(audio), torch.zeros(1, 8, dtype=torch.long), 0, final=True))
    streamer.commit()


def test_sentences_of_bfloat16_audio_are_joined_into_one_float32_waveform():
    """A text's sentences come back as one float32 waveform, in their order, whatever dtype the vocoder gave."""
    from valle_hf.audio import joined_sentences

    sentences = [torch.tensor([0.25, -0.5], dtype=torch.bfloat16), torch.tensor([0.125], dtype=torch.bfloat16)]
    joined = joined_sentences(sentences, ["First.", "Second."])
    assert joined.dtype == torch.float32 and joined.tolist() == [0.25, -0.5, 0.125]
