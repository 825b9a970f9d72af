"""The feature extractor: files and arrays at their own rate → 24 kHz mono float waveforms; rate-less arrays refused."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile
import torch
from transformers import AutoFeatureExtractor

import valle_hf  # noqa: F401  (registers the Auto classes)
from valle_hf.errors import VallETypeError, VallEValueError
from valle_hf.feature_extraction import VallEFeatureExtractor

RATE = 24000


def _tone(seconds: float, rate: int, amplitude: float = 0.5, frequency: float = 440.0) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


@pytest.fixture(scope="module")
def extractor():
    return VallEFeatureExtractor()


def test_an_array_is_resampled_from_its_own_rate(extractor):
    for rate in (16000, 22050, 44100, 48000):
        tone = _tone(1.5, rate, 0.4)
        waveform = extractor.waveform(tone, rate)
        assert waveform.dtype == torch.float32 and waveform.ndim == 1
        assert abs(waveform.numel() - round(len(tone) * RATE / rate)) <= 1  # the duration is kept
        assert abs(float(waveform[500:-500].abs().max()) - 0.4) < 0.01
    native = _tone(0.1, RATE)
    assert torch.equal(extractor.waveform(native, RATE), torch.from_numpy(native))  # the model's rate: untouched


def test_resampling_keeps_what_is_under_the_models_nyquist_frequency_and_removes_what_is_over_it(extractor):
    """soxr's high-quality filter: from 48 kHz, an 11 kHz tone comes out whole, a 13 kHz one (over 12 kHz) is filtered
    out, not folded back to 11 kHz as a low-quality resampler does."""
    kept, removed = (extractor.waveform(_tone(1.0, 48000, 0.5, frequency), 48000)[500:-500].abs().max()
                     for frequency in (11000.0, 13000.0))
    assert abs(float(kept) - 0.5) < 0.005 and float(removed) < 1e-4


def test_an_array_without_a_rate_is_refused_in_one_line(extractor, processor):
    for call in (lambda: extractor.waveform(_tone(0.1, 16000), None), lambda: extractor(_tone(0.1, 16000)),
                 lambda: extractor.load(torch.zeros(100)), lambda: processor("Hi.", prompt_audio=_tone(0.1, 16000)),
                 lambda: processor(audio=_tone(0.1, 16000))):
        with pytest.raises(VallEValueError, match="sampling_rate") as raised:
            call()
        assert "\n" not in str(raised.value)
    for rate in (0, True):  # a bool is no rate, though Python counts True as 1
        with pytest.raises(VallEValueError, match="positive integer"):
            extractor.waveform(_tone(0.1, 16000), rate)


def test_a_waveform_on_the_meta_device_is_refused_naming_it(extractor, processor):
    """torch failed with "Cannot copy out of meta tensor" from inside the feature extractor."""
    meta = torch.empty(2400, device="meta")
    with pytest.raises(VallEValueError, match="on the meta device, which holds shapes but no values"):
        extractor.load(meta, 24000)
    with pytest.raises(VallEValueError, match="on the meta device"):
        processor("Hi.", prompt_audio=meta, sampling_rate=24000)


def test_samples_of_a_type_no_recording_has_are_refused_saying_what_to_give(extractor):
    """A Python list of whole numbers was refused as "int64" samples, a type its caller never chose."""
    with pytest.raises(VallEValueError, match=r"^unsupported audio sample type int64 \(a list of whole numbers is "
                                              r"read as int64: give floats in \[-1, 1\], or .*dtype=np.int16\)\)"):
        extractor.waveform([0, 100, -100] * 800, 24000)
    with pytest.raises(VallEValueError, match="^unsupported audio sample type uint16: use float"):
        extractor.waveform(np.zeros(2400, dtype=np.uint16), 24000)
    pcm = extractor.waveform(np.array([0, 16384, -16384] * 800, dtype=np.int16), 24000)
    assert torch.allclose(pcm[1:3], torch.tensor([0.5, -0.5]))


def test_a_list_of_rates_is_refused_as_one_rate_per_call(extractor, processor):
    """generate takes one rate per row, the processor one per call: a list was refused as no "positive integer"."""
    waveform = _tone(0.1, 16000)
    with pytest.raises(VallEValueError, match=r"^sampling_rate is a list \(\[24000, 8000\]\), but the processor "
                                              "takes one rate for the arrays of a call: call it once per rate"):
        processor(["Hi.", "Yo."], prompt_audio=[waveform, waveform], sampling_rate=[24000, 8000])


def test_a_rate_given_with_files_alone_is_warned_about_where_it_is_not_theirs(extractor, tmp_path):
    """The rate is for arrays: a file is read at its own, and the rate given with it was ignored without a word."""
    from conftest import logged_warnings

    path = tmp_path / "voice.wav"
    soundfile.write(path, _tone(0.5, 16000), 16000)
    with logged_warnings() as other:
        extractor.load(str(path), 8000)
    assert f"sampling_rate=8000 is not the rate of {path}, a file, which is read at its own (16000 Hz)" in other.out
    with logged_warnings() as quiet:
        extractor.load(str(path), 16000)  # its own rate
        extractor.load([str(path), _tone(0.5, 8000)], 8000)  # the array's rate, beside a file
        extractor.load(str(path))
    assert "is not the rate of" not in quiet.out


def test_a_rate_below_any_speech_recording_is_refused_before_resampling(extractor, tmp_path):
    """A file whose header said 1 Hz was resampled to 24 kHz whole: gigabytes of samples, and the CLI was killed for
    memory without a word."""
    from valle_hf.feature_extraction import MIN_SAMPLING_RATE

    tone = _tone(0.5, MIN_SAMPLING_RATE)
    assert len(extractor.waveform(tone, MIN_SAMPLING_RATE)) == RATE // 2  # the lowest rate taken
    with pytest.raises(VallEValueError, match=f"audio array is at {MIN_SAMPLING_RATE - 1} Hz, and no recording"):
        extractor.waveform(tone, MIN_SAMPLING_RATE - 1)
    soundfile.write(tmp_path / "damaged.wav", tone, 1)
    with pytest.raises(VallEValueError, match=r"damaged.wav is at 1 Hz.*give its true rate"):
        extractor.load(str(tmp_path / "damaged.wav"))


def test_a_rate_above_any_recording_is_refused_before_resampling(extractor):
    """sampling_rate=10**7 (a typo) was resampled to a few samples and refused as "shorter than one codec frame";
    10**30 never came back from the resampler."""
    from valle_hf.feature_extraction import MAX_SAMPLING_RATE

    tone = _tone(0.01, MAX_SAMPLING_RATE)
    assert len(extractor.waveform(tone, MAX_SAMPLING_RATE)) == RATE // 100  # the highest rate taken
    for rate in (MAX_SAMPLING_RATE + 1, 10**30):
        with pytest.raises(VallEValueError, match=f"audio array is at {rate} Hz, and no recording .* or above "
                                                  f"{MAX_SAMPLING_RATE} Hz: give its true rate"):
            extractor.waveform(tone, rate)


def test_pcm_types_channels_and_tensors(extractor):
    tone = _tone(0.1, RATE, 0.5)
    as_int16 = (tone * 32768).astype(np.int16)
    torch.testing.assert_close(extractor.waveform(as_int16, RATE), torch.from_numpy(tone), atol=1e-4, rtol=0)
    swapped = as_int16.astype(as_int16.dtype.newbyteorder())  # the other byte order (">i2" from AIFF bytes here)
    torch.testing.assert_close(extractor.waveform(swapped, RATE), extractor.waveform(as_int16, RATE), atol=0, rtol=0)
    assert float(extractor.waveform(np.full(10, 128, dtype=np.uint8), RATE).abs().max()) == 0.0
    # integer PCM spans [-1, 1): the most negative sample is exactly -1, by the type's range
    extremes = np.array([-32768, -16384, 0, 16384, 32767], dtype=np.int16)
    torch.testing.assert_close(extractor.waveform(extremes, RATE),
                               torch.tensor([-1.0, -0.5, 0.0, 0.5, 32767 / 32768]), atol=0, rtol=0)
    for dtype in (np.int8, np.int32):  # every width of signed PCM, by its own range
        info = np.iinfo(dtype)
        extremes = np.array([info.min, info.min // 2, 0, -(info.min // 2), info.max], dtype=dtype)
        torch.testing.assert_close(extractor.waveform(extremes, RATE), torch.tensor(
            [-1.0, -0.5, 0.0, 0.5, info.max / -info.min]), atol=0, rtol=0)
    unsigned = np.array([0, 64, 128, 192, 255], dtype=np.uint8)  # centred on 128, by 128
    torch.testing.assert_close(extractor.waveform(unsigned, RATE),
                               torch.tensor([-1.0, -0.5, 0.0, 0.5, 127 / 128]), atol=0, rtol=0)
    # a little past full scale, as a full-scale recording resampled is (and a float file may be): read as it is
    overshoot = np.array([0.0, 1.2, -0.3], dtype=np.float32)
    torch.testing.assert_close(extractor.waveform(overshoot, RATE), torch.from_numpy(overshoot), atol=0, rtol=0)
    with pytest.raises(ValueError, match=r"far outside \[-1, 1\] \(peak 2.5\)"):  # int16 values as floats
        extractor.waveform(np.array([0.0, 2.5, -0.3], dtype=np.float32), RATE)
    stereo = torch.stack([torch.from_numpy(tone), torch.zeros(len(tone))])  # [channels, samples]
    torch.testing.assert_close(extractor.waveform(stereo, RATE), torch.from_numpy(tone) / 2)
    torch.testing.assert_close(extractor.waveform(stereo.T.numpy(), RATE), torch.from_numpy(tone) / 2)
    torch.testing.assert_close(extractor.waveform(stereo.half(), RATE), torch.from_numpy(tone) / 2, atol=1e-3, rtol=0)
    torch.testing.assert_close(extractor.waveform(stereo.bfloat16(), RATE), torch.from_numpy(tone) / 2, atol=1e-2,
                               rtol=0)
    # leading axes of one are no channels ([1, 1, samples]: a batch of one, of one channel); more axes are refused
    torch.testing.assert_close(extractor.waveform(tone[None, None], RATE), torch.from_numpy(tone), atol=0, rtol=0)
    with pytest.raises(ValueError, match=r"audio must be 1-D or 2-D \(channels x samples\), got shape \(2, 1, 2400\)"):
        extractor.waveform(np.stack([tone[None], tone[None]]), RATE)
    with pytest.raises(ValueError, match="NaN or infinite samples"):
        extractor.waveform(np.array([0.0, np.inf, 0.0], dtype=np.float32), RATE)
    with pytest.raises(ValueError, match="is empty .*: give a recording"):
        extractor.waveform(np.zeros(0, dtype=np.float32), RATE)
    with pytest.raises(ValueError, match="NaN .*: give a clean recording"):
        extractor.waveform(np.full(10, np.nan, dtype=np.float32), RATE)
    batch = np.stack([tone, tone / 2, tone / 4])  # three waveforms in one array: averaged, they were one voice
    for array in (batch, batch.T):
        with pytest.raises(ValueError, match=r"has shape \(.*\): an array is one recording, mono or stereo; give "
                                             "several waveforms as a list"):
            extractor.waveform(array, RATE)


def test_files_carry_their_own_rate_and_channels_are_averaged(extractor, tmp_path):
    left, right = _tone(0.5, 44100, 0.6), _tone(0.5, 44100, 0.2)
    stereo = tmp_path / "stereo.wav"
    soundfile.write(stereo, np.stack([left, right], axis=1), 44100, subtype="PCM_16")
    unsigned = tmp_path / "u8.wav"
    soundfile.write(unsigned, _tone(0.25, RATE, 0.5), RATE, subtype="PCM_U8")
    (averaged,), (centred,) = extractor.load(stereo), extractor.load(str(unsigned), sampling_rate=8000)
    assert abs(averaged.numel() - 0.5 * RATE) <= 1
    assert abs(float(averaged[200:-200].abs().max()) - 0.4) < 0.01  # (0.6 + 0.2) / 2, not channel 0's 0.6
    assert centred.numel() == RATE // 4 and abs(float(centred.mean())) < 0.01  # the file's rate, not the argument's
    empty = tmp_path / "empty.wav"
    soundfile.write(empty, np.zeros(0, dtype=np.float32), RATE)
    with pytest.raises(ValueError, match="is empty"):
        extractor.load(empty)
    loud = tmp_path / "loud.wav"  # a float file's samples past 1 are taken as the file holds them
    soundfile.write(loud, 3 * _tone(0.5, RATE, 0.5), RATE, subtype="FLOAT")
    assert abs(float(extractor.load(loud)[0].abs().max()) - 1.5) < 1e-3


def test_references_stay_whole_and_separate(extractor, tmp_path):
    first, second = tmp_path / "a.wav", tmp_path / "b.wav"
    soundfile.write(first, _tone(0.5, RATE, 0.2), RATE)
    soundfile.write(second, _tone(0.25, 48000, 0.6), 48000)
    joined = extractor.load(f"{first};{second}")
    # nothing is cut, padded or looped: the model encodes each reference alone and trims the joined codes
    assert [w.numel() for w in joined] == [RATE // 2, RATE // 4]
    assert all(torch.equal(a, b) for a, b in zip(extractor.load([first, str(second)]), joined, strict=True))
    mixed = extractor.load([first, _tone(1.0, 16000)], sampling_rate=16000)  # the rate is the arrays'
    assert [w.numel() for w in mixed] == [RATE // 2, RATE]
    with pytest.raises(ValueError, match="no reference audio"):
        extractor.load(" ; ")


def test_a_loaded_waveform_given_back_at_another_rate_is_resampled(extractor):
    """`load` takes a waveform it returned as it is only at the rate it returned it at (the model's); given with
    another rate, it is an array recorded at that rate, resampled like any other."""
    (loaded,) = extractor.load(_tone(0.5, RATE), RATE)
    assert extractor.load(loaded, RATE)[0] is loaded  # checked once, not again
    for rate in (RATE // 2, 2 * RATE):
        (again,) = extractor.load(loaded, rate)
        assert abs(again.numel() - round(loaded.numel() * RATE / rate)) <= 1


def test_a_silent_training_utterance_is_refused_where_a_prompt_is_warned_about(extractor):
    """`refuse_silence` (a training utterance): trained on, a silent recording would teach its transcript as
    silence."""
    from conftest import logged_warnings

    from valle_hf.feature_extraction import SILENT_PEAK

    silent, quiet = (torch.from_numpy(_tone(1.0, RATE, level)) for level in (SILENT_PEAK / 2, 2 * SILENT_PEAK))
    with pytest.raises(VallEValueError, match=r"^utt\.wav is silent \(peak .*, below -80 dBFS\): no speech to learn"):
        extractor.check_reference(silent, "utt.wav", refuse_silence=True)
    with logged_warnings() as logged:
        assert extractor.check_reference(silent, "utt.wav") is silent
    assert "utt.wav is silent" in logged.out
    assert extractor.check_reference(quiet, "utt.wav", refuse_silence=True) is quiet


def test_a_reference_past_full_scale_is_warned_about(extractor, tmp_path):
    """A float WAV holds any value: one written without scaling (16-bit values as they are) was encoded as it stood,
    distorted, without a word. A full-scale recording resampled (its peaks overshoot a little) is no such file."""
    from conftest import logged_warnings

    from valle_hf.feature_extraction import LOUDEST_PEAK

    loud, full = tmp_path / "loud.wav", tmp_path / "full.wav"
    soundfile.write(loud, _tone(1.0, RATE, 2 * LOUDEST_PEAK), RATE, subtype="FLOAT")
    soundfile.write(full, np.sign(_tone(1.0, 16000, 1.0, 1000.0)), 16000, subtype="PCM_16")  # clipped, resampled
    for path, warned in ((loud, True), (full, False)):
        with logged_warnings() as logged:
            extractor.load(path)
        assert (f"{path} goes past full scale (peak {2 * LOUDEST_PEAK:.3g};" in logged.out) == warned, logged.out
    with logged_warnings() as logged:
        extractor.check_reference(torch.from_numpy(_tone(1.0, RATE, LOUDEST_PEAK)), "utt.wav", refuse_silence=True)
    assert "past full scale" not in logged.out


def test_call_pads_a_batch_as_transformers_feature_extractors_do(extractor):
    batch = extractor([_tone(1.0, 16000), _tone(0.5, 16000)], sampling_rate=16000, return_tensors="pt")
    assert batch["input_values"].shape == (2, RATE) and batch["padding_mask"].shape == (2, RATE)
    assert batch["padding_mask"][1].sum() == RATE // 2 and (batch["input_values"][1, RATE // 2:] == 0).all()
    unpadded = extractor(_tone(1.0, RATE), sampling_rate=RATE, padding=False)
    assert len(unpadded["input_values"]) == 1 and "padding_mask" not in unpadded
    # transformers' "do_not_pad" is no padding, though a non-empty string is truthy (it padded)
    ragged = extractor([_tone(1.0, RATE), _tone(0.5, RATE)], sampling_rate=RATE, padding="do_not_pad")
    assert [len(row) for row in ragged["input_values"]] == [RATE, RATE // 2] and "padding_mask" not in ragged


@pytest.mark.parametrize(("call", "message"), [
    (dict(raw_audio=_tone(0.1, RATE), return_tensors="tf"), "return_tensors must be 'pt', 'np' or None"),
    (dict(raw_audio=[_tone(0.1, RATE), _tone(0.2, RATE)], padding=False, return_tensors="pt"), "padding=True"),
    (dict(raw_audio=[_tone(0.1, RATE), _tone(0.2, RATE)], padding=False, return_tensors="np"), "padding=True"),
    (dict(raw_audio=[]), "empty list"),
    (dict(raw_audio="voice.wav"), r"not files \(paths, bytes or open files\): read them with VallEFeatureExtractor"),
    (dict(raw_audio=[_tone(0.1, RATE), b"RIFF....WAVE"]), r"not files \(paths, bytes or open files\)"),
    (dict(raw_audio=io.BytesIO(b"RIFF....WAVE")), r"not files \(paths, bytes or open files\)"),
])
def test_call_refuses_a_batch_it_cannot_make_in_one_line(extractor, call, message):
    """transformers' BatchFeature failed on these with a bare, multi-line error (or made an array of objects for
    ragged "np"); an empty list came back as an empty batch, a path as an unsupported sample type "<U9"."""
    with pytest.raises(VallEValueError, match=message) as caught:
        extractor(**call, sampling_rate=RATE)
    assert "\n" not in str(caught.value)
    same = extractor([_tone(0.1, RATE)] * 2, sampling_rate=RATE, padding=False, return_tensors="pt")
    assert same["input_values"].shape == (2, RATE // 10)  # rows of one length stack without padding



@pytest.mark.parametrize(("audio", "message"), [
    ({"array": _tone(0.1, RATE), "sampling_rate": RATE},
     r"^the feature extractor takes audio arrays, got dict: give its samples and rate, raw_audio=item\['array'\]"),
])
def test_call_refuses_audio_held_in_another_form_saying_how_to_give_it(extractor, audio, message):
    """A `datasets` dict, a file's bytes or an open file was refused as an "unsupported audio sample type" object or
    |S12, which it is not."""
    with pytest.raises(VallETypeError, match=message):
        extractor(audio, sampling_rate=RATE)

def test_save_and_load_with_the_auto_class(extractor, tmp_path):
    extractor.save_pretrained(tmp_path)
    loaded = AutoFeatureExtractor.from_pretrained(tmp_path)
    assert isinstance(loaded, VallEFeatureExtractor) and loaded.sampling_rate == RATE and loaded.feature_size == 1
    # another rate would label the model's 24 kHz audio with it when the processor saves it (played 1.5x slow)
    with pytest.raises(ValueError, match="sampling_rate is the model's, 24000 Hz .* got 16000"):
        VallEFeatureExtractor(sampling_rate=16000)
    config = tmp_path / "preprocessor_config.json"
    config.write_text(config.read_text().replace(f'"sampling_rate": {RATE}', '"sampling_rate": 16000'))
    with pytest.raises(ValueError, match="got 16000"):
        AutoFeatureExtractor.from_pretrained(tmp_path)


def test_a_bad_file_is_named_in_the_error(extractor, tmp_path):
    good, empty = tmp_path / "good.wav", tmp_path / "empty.wav"
    soundfile.write(good, np.zeros(2400, dtype=np.float32), 24000)
    soundfile.write(empty, np.zeros(0, dtype=np.float32), 24000)
    with pytest.raises(VallEValueError, match=f"^{empty} is empty"):
        extractor.load(f"{good};{empty}")


def test_a_reference_shorter_than_a_codec_frame_is_refused_and_a_silent_one_warned_about(extractor, tmp_path):
    from conftest import logged_warnings

    frame = 320  # samples of one codec frame at 24 kHz
    for samples, rate in ((1, RATE), (frame - 1, RATE), (212, 16000)):  # 16 kHz: 212 samples resample to 318
        path = tmp_path / f"short{samples}.wav"
        soundfile.write(path, _tone(samples / rate, rate), rate)
        for source in (path, (_tone(samples / rate, rate), rate)):
            with pytest.raises(VallEValueError, match=r"ms long, shorter than one codec frame \(13.3 ms\)"):
                extractor.load(*source) if isinstance(source, tuple) else extractor.load(source)
    assert len(extractor.load(_tone(frame / RATE, RATE), RATE)[0]) == frame and extractor.load(_tone(0.014, 16000),
                                                                                              16000)
    silent = tmp_path / "silent.wav"
    soundfile.write(silent, np.zeros(RATE, dtype=np.float32), RATE)
    for source, quiet in ((silent, True), (f"{silent};{silent}", True), (_tone(1.0, RATE, 5e-5), True),
                          (_tone(1.0, RATE, 2e-4), False)):
        with logged_warnings() as logged:
            extractor.load(source, RATE)
        assert ("is silent (peak" in logged.out) == quiet, logged.out
        assert ("as speech to transcribe a transcript of noise" in logged.out) == quiet  # STT reads it too
