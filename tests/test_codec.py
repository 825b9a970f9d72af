"""EnCodec wrapper: layout, shapes, ranges and errors, on a tiny random codec (no download)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from conftest import logged_warnings
from safetensors.torch import save_file
from transformers import EncodecConfig, EncodecModel

from valle_hf.codec import (
    DecoderStream,
    decode,
    decode_batch,
    encode,
    encode_batch,
    load_codec,
    num_frames,
    tiny_random_codec,
)
from valle_hf.configuration import CODEC_CODEBOOK_SIZE as CODEBOOK_SIZE
from valle_hf.configuration import CODEC_HOP_LENGTH as HOP_LENGTH

NUM_LEVELS = 8  # the released model's RVQ levels (6 kbps)


@pytest.fixture(scope="module")
def codec() -> EncodecModel:
    return tiny_random_codec()


def _speechlike(num_samples: int, seed: int = 0) -> torch.Tensor:
    """A 220 Hz tone under a slowly changing envelope, plus a little noise."""
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(num_samples) / 24000
    envelope = 0.5 + 0.4 * torch.sin(2 * math.pi * 3 * t)
    return 0.4 * envelope * torch.sin(2 * math.pi * 220 * t) + 0.02 * torch.randn(num_samples, generator=generator)


def test_tiny_codec_keeps_the_valle_layout(codec):
    config = codec.config
    assert (config.sampling_rate, config.hop_length, config.frame_rate, config.codebook_size) == (24000, 320, 75, 1024)
    assert codec.quantizer.get_num_quantizers_for_bandwidth(6.0) == NUM_LEVELS
    assert all(layer.codebook.embed.abs().sum() > 0 for layer in codec.quantizer.layers)  # not the zero init


def test_encode_one_second_gives_75_frames_of_8_levels(codec):
    codes = encode(codec, _speechlike(24000))
    assert codes.shape == (75, NUM_LEVELS)
    assert codes.dtype == torch.long
    assert 0 <= int(codes.min()) and int(codes.max()) < CODEBOOK_SIZE
    assert all(codes[:, level].unique().numel() > 1 for level in range(NUM_LEVELS))  # codes actually vary


@pytest.mark.parametrize("num_samples, frames", [(1, 1), (320, 1), (321, 2), (24001, 76)])
def test_frame_count_is_ceil_of_samples_over_hop(codec, num_samples, frames):
    assert num_frames(num_samples) == frames
    assert encode(codec, _speechlike(num_samples)).shape == (frames, NUM_LEVELS)


def test_bandwidth_is_honoured(codec):
    assert encode(codec, _speechlike(3200), bandwidth=1.5).shape == (10, 2)
    assert encode(codec, _speechlike(3200), bandwidth=3.0).shape == (10, 4)


def test_a_bandwidth_the_codec_has_no_setting_for_is_refused_in_one_line(codec):
    from valle_hf.errors import VallEValueError

    for call in (lambda: encode(codec, _speechlike(3200), bandwidth=2.0),
                 lambda: encode_batch(codec, [_speechlike(3200)], bandwidth=2.0)):
        with pytest.raises(VallEValueError, match=r"the codec encodes at \[.*\] kbps, not at 2.0 kbps: give one"):
            call()
    # a bandwidth given as text ("6.0") was refused as "not at 6.0 kbps", beside 6.0 in the list
    with pytest.raises(VallEValueError, match=r"\] kbps, not at '6.0' kbps: give one"):
        encode(codec, _speechlike(3200), bandwidth="6.0")


def test_tiny_codec_is_deterministic_per_seed():
    waveform = _speechlike(6400)
    first, again, other = tiny_random_codec(0), tiny_random_codec(0), tiny_random_codec(1)
    assert torch.equal(encode(first, waveform), encode(again, waveform))
    assert not torch.equal(encode(first, waveform), encode(other, waveform))


def test_tiny_codec_reacts_to_the_waveform_at_every_level(codec):
    """Different audio gives different codes at every level: the tests that check a prompt is encoded, looped or
    joined rely on it. (Its decoder is nearly deaf to the codes: the audio tests decode with Vocos.)"""
    first, second = _speechlike(4800, seed=0), 0.7 * _speechlike(4800, seed=1).flip(0)
    codes, other = encode(codec, first), encode(codec, second)
    assert all(not torch.equal(codes[:, level], other[:, level]) for level in range(NUM_LEVELS))


def test_decode_gives_320_samples_per_frame(codec):
    codes = encode(codec, _speechlike(24000))
    waveform = decode(codec, codes)
    assert waveform.shape == (24000,)
    assert waveform.dtype == torch.float32 and torch.isfinite(waveform).all()
    assert decode(codec, codes[:, :2]).shape == (24000,)  # fewer levels: coarser, same length


def test_decode_batch_trims_each_row_and_ignores_padding(codec):
    full = encode(codec, _speechlike(24000, seed=1))
    short = encode(codec, _speechlike(12800, seed=2))  # 40 frames
    batch = torch.full((2, 75, NUM_LEVELS), 1024)  # padded with the stop id, out of codec range on purpose
    batch[0], batch[1, :40] = full, short
    waveforms = decode_batch(codec, batch, lengths=torch.tensor([75, 40]))
    assert [w.shape[0] for w in waveforms] == [75 * HOP_LENGTH, 40 * HOP_LENGTH]
    torch.testing.assert_close(waveforms[0], decode(codec, full), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(waveforms[1], decode(codec, short), atol=1e-5, rtol=1e-4)  # causal: no leak
    assert [w.shape[0] for w in decode_batch(codec, batch[:1])] == [75 * HOP_LENGTH]  # lengths default to T


def test_decode_batch_of_rows_too_short_to_reflect_equals_each_row_alone(codec):
    """The decoder's first convolution pads a row by reflecting its frames, and a row shorter than that padding is
    extended with zeros first: in a batch it reflected the padding frames after it instead, so a TTS row that stopped
    within its first few frames decoded to other samples than alone."""
    reach = int(codec.decoder.layers[0].padding_total)
    lengths = [*range(1, reach + 2), 3 * reach]
    codes = torch.randint(0, CODEBOOK_SIZE, (len(lengths), max(lengths), NUM_LEVELS),
                          generator=torch.Generator().manual_seed(0))
    waveforms = decode_batch(codec, codes, lengths=lengths)
    for row, length in enumerate(lengths):
        torch.testing.assert_close(waveforms[row], decode(codec, codes[row, :length]), atol=1e-6, rtol=1e-5,
                                   msg=f"row {row} ({length} frames)")


@pytest.fixture(scope="module")
def codec_whose_codes_count() -> EncodecModel:
    """The tiny codec with unit-normal codebooks. `tiny_random_codec`'s, taken from its random encoder's nearly
    constant output, barely move its audio (a frame's codes changed move it by ~1e-6 of its peak, float rounding's
    size), so a decoder that reads the wrong frames would pass a float-precision check there."""
    codec = tiny_random_codec()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for layer in codec.quantizer.layers:
            layer.codebook.embed.copy_(torch.randn(layer.codebook.embed.shape, generator=generator))
    return codec


@pytest.mark.parametrize("piece", [1, 3, None], ids=["frame-by-frame", "3-frames", "whole-row"])
def test_a_decoder_stream_gives_each_rows_audio_to_float_precision_whatever_its_pieces(codec_whose_codes_count, piece):
    """Each row of a batch whose rows end at different frames, streamed piece by piece (its first piece holding its
    `lead` frames), decodes as in the batch: the LSTM's state carried from piece to piece, the layers around it given
    the frames before each piece that they read. A row shorter than the lead (and the contexts) is one piece."""
    codec = codec_whose_codes_count
    stream = DecoderStream(codec)
    lead, context = stream.lead, stream.embedding_frames + stream.lstm_frames
    lengths = [3 * (lead + context), 2 * lead + 1, lead - 1]
    generator = torch.Generator().manual_seed(0)
    codes = torch.randint(0, CODEBOOK_SIZE, (len(lengths), max(lengths), NUM_LEVELS), generator=generator)
    for row, (length, expected) in enumerate(zip(lengths, decode_batch(codec, codes, lengths), strict=True)):
        stream, size = DecoderStream(codec), piece or length
        bounds = [0, *range(max(size, lead), length, size), length]
        audio = torch.cat([stream(codes[row, start:end], last=end == length)
                           for start, end in itertools.pairwise(bounds)])
        assert audio.shape == expected.shape
        assert (audio - expected).abs().max() <= 1e-5 * expected.abs().max()


def test_a_decoder_stream_refuses_a_first_piece_shorter_than_its_lead(codec_whose_codes_count):
    """Its audio would differ from the row's (1.2 % of peak at the 24 kHz codec's size), without a word: the first
    convolution reflects frames the piece does not hold."""
    stream = DecoderStream(codec_whose_codes_count)
    codes = torch.zeros(stream.lead - 1, NUM_LEVELS, dtype=torch.long)
    with pytest.raises(ValueError, match=f"^a row's first piece needs {stream.lead} frames .*, got {stream.lead - 1}"):
        stream(codes)
    assert stream(codes, last=True).shape == (len(codes) * HOP_LENGTH,)


@pytest.mark.parametrize("last_frames", [lambda lead: lead - 1, lambda lead: 0], ids=["short", "empty"])
def test_a_decoder_stream_refuses_a_piece_after_its_rows_last(codec_whose_codes_count, last_frames):
    """A piece after the one given last=True went on from a row decoded as ended (a short one without its lead), its
    audio differing from the whole row's without a word; after an empty last piece, it went on as if none ended."""
    stream = DecoderStream(codec_whose_codes_count)
    codes = torch.zeros(stream.lead, NUM_LEVELS, dtype=torch.long)  # a piece the stream takes but for the row's end
    stream(codes[:last_frames(stream.lead)], last=True)
    with pytest.raises(ValueError, match="^this DecoderStream's row ended with the piece given last=True: decode the "
                       "next row with a new DecoderStream$"):
        stream(codes)


def test_encode_batch_matches_single_encodes_but_the_last_frame(codec):
    waveforms = [_speechlike(24000, seed=3), _speechlike(9000, seed=4)]
    batched = encode_batch(codec, waveforms)
    assert [c.shape for c in batched] == [(75, 8), (29, 8)]
    # equal up to float rounding, which may flip a code on a quantiser boundary now and then
    assert (batched[0] == encode(codec, waveforms[0])).float().mean() > 0.95
    assert (batched[1][:-1] == encode(codec, waveforms[1])[:-1]).float().mean() > 0.95
    assert torch.equal(encode_batch(codec, waveforms[:1])[0], encode(codec, waveforms[0]))


@pytest.mark.parametrize(
    "codes, message",
    [
        (torch.zeros(75, dtype=torch.long), "shape"),
        (torch.zeros(1, 75, 8, dtype=torch.long), "shape"),
        (torch.zeros(75, 33, dtype=torch.long), "1..32 RVQ levels"),  # EnCodec 24 kHz has 32 (at 24 kbps)
        (torch.zeros(75, 0, dtype=torch.long), "1..32 RVQ levels"),
        (torch.full((75, 8), 1024), "0..1023"),
        (torch.full((75, 8), -1), "0..1023"),
        (torch.zeros(75, 8), "integer"),
    ],
)
def test_decode_rejects_bad_codes(codec, codes, message):
    with pytest.raises(ValueError, match=message) as raised:
        decode(codec, codes)
    assert "\n" not in str(raised.value)


def test_decode_batch_rejects_bad_shapes_and_lengths(codec):
    codes = torch.zeros(2, 10, 8, dtype=torch.long)
    with pytest.raises(ValueError, match="shape"):
        decode_batch(codec, codes[0])
    for lengths in ([10], [10, 11], [10, 2.5], "10"):  # a fractional length was cut to whole frames in silence
        with pytest.raises(ValueError, match=r"^lengths must be 2 whole numbers in 0..10 \(each row's real frames\)"):
            decode_batch(codec, codes, lengths=lengths)
    codes[1, 3, 0] = 5000
    with pytest.raises(ValueError, match="0..1023"):
        decode_batch(codec, codes, lengths=[10, 4])
    decode_batch(codec, codes, lengths=[10, 3])  # the bad code lies in the padding: fine


@pytest.mark.parametrize(
    "waveform, message",
    [(torch.zeros(2, 100), "1-D"), (torch.zeros(0), "empty"), (torch.zeros(100, dtype=torch.long), "float"),
     (torch.tensor([0.1, float("nan"), 0.2, float("inf")]), r"2 NaN or infinite samples \(the first is sample 1\)")],
)
def test_encode_rejects_bad_waveforms(codec, waveform, message):
    """NaN samples were encoded as codes of silence, without a word."""
    with pytest.raises(ValueError, match=message):
        encode(codec, waveform)
    with pytest.raises(ValueError, match=message):
        encode_batch(codec, [torch.zeros(10), waveform])


def test_load_codec_reads_a_saved_codec_and_checks_its_layout(codec, tmp_path):
    codec.save_pretrained(tmp_path / "codec")
    loaded = load_codec(str(tmp_path / "codec"))
    assert not loaded.training
    waveform = _speechlike(3200)
    assert torch.equal(encode(loaded, waveform), encode(codec, waveform))

    EncodecModel(EncodecConfig(num_filters=4, hidden_size=16, num_lstm_layers=1, sampling_rate=16000)).save_pretrained(
        tmp_path / "wrong"
    )
    with pytest.raises(ValueError, match="24 kHz layout"):
        load_codec(str(tmp_path / "wrong"))


@pytest.mark.parametrize(("setting", "message"), [
    (dict(codebook_size=CODEBOOK_SIZE // 2), f"codebook_size={CODEBOOK_SIZE // 2}; VALL-E needs the EnCodec 24 kHz"),
    (dict(audio_channels=2), "codec expects 2 audio channels; VALL-E needs a mono codec"),
])
def test_a_codec_of_another_codebook_size_or_channel_count_is_refused(tmp_path, setting, message):
    """VALL-E's audio vocabulary is one id per code of a 1024-code book, and its prompts are mono: a codec at 24 kHz
    and hop 320 with another book or channel count encodes codes the model cannot read."""
    from valle_hf.errors import CheckpointError

    config = EncodecConfig(num_filters=4, hidden_size=16, num_lstm_layers=1, **setting)
    EncodecModel(config).save_pretrained(tmp_path / "other")
    with pytest.raises(CheckpointError, match=message):
        load_codec(str(tmp_path / "other"))


def test_a_folder_that_is_not_an_encodec_checkpoint_is_refused_not_loaded_at_random(codec, tmp_path,
                                                                                     vocos_checkpoint_dir):
    """transformers loads any folder with EnCodec's default config and starts the weights it lacks at random."""
    from valle_hf.errors import CheckpointError

    codec.save_pretrained(tmp_path / "codec")
    (tmp_path / "codec" / "model.safetensors").rename(tmp_path / "model.safetensors")
    save_file({"encoder.layers.0.conv.bias": torch.zeros(4)}, tmp_path / "codec" / "model.safetensors")
    for folder in (vocos_checkpoint_dir, tmp_path / "codec"):  # Vocos' (no config.json), EnCodec's with few weights
        with pytest.raises(CheckpointError, match=r"is not an EnCodec checkpoint \(\d+ of its weights missing"), \
                logged_warnings() as logged:
            load_codec(str(folder))
        assert "LOAD REPORT" not in logged.out  # its table (65 lines) came before the one line


def test_decode_takes_codes_of_every_level_the_codec_has(codec):
    most = len(codec.quantizer.layers)
    codes = torch.randint(0, CODEBOOK_SIZE, (5, most), generator=torch.Generator().manual_seed(0))
    assert decode(codec, codes).shape[-1] == 5 * HOP_LENGTH
    assert [row.shape[-1] for row in decode_batch(codec, codes[None])] == [5 * HOP_LENGTH]
    with pytest.raises(ValueError, match=f"codes must have 1..{most} RVQ levels in the last dim, got {most + 1}"):
        decode(codec, torch.zeros(5, most + 1, dtype=torch.long))


def test_load_codec_with_the_hub_unreachable_names_the_codec_and_the_choices(hub_unreachable):
    from valle_hf.errors import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match=r"^could not download the EnCodec codec \(nobody/no-codec/config\.json"
                       r": .*\); VALL-E needs it to encode voice prompts: give a local copy of "
                       r"facebook/encodec_24khz, or tiny-random \(a test codec that makes noise\), as --codec on the "
                       r"command line or codec= in Python$"):
        load_codec("nobody/no-codec")


def test_load_codec_offline_says_that_hf_hub_offline_is_set(monkeypatch):
    """Offline, the error quoted the Hub's advice to check the connection, cut mid-sentence, and never named the
    variable that made it offline."""
    import huggingface_hub.constants

    from valle_hf.errors import ModelNotFoundError

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelNotFoundError, match=r"^the EnCodec codec \(nobody/no-codec/config\.json\) is not in the "
                       r"Hugging Face cache, and HF_HUB_OFFLINE is set, so it cannot be downloaded; VALL-E needs it"):
        load_codec("nobody/no-codec")


def test_tiny_codec_is_as_small_as_documented(codec):
    """`tiny_random_codec`'s docstring: a 0.17 M-parameter EnCodec (what keeps the tests fast)."""
    documented = float(tiny_random_codec.__doc__.split(" M-parameter")[0].split()[-1])
    assert round(sum(p.numel() for p in codec.parameters()) / 1e6, 2) == documented


def test_a_codec_with_a_weight_of_another_shape_is_refused_and_one_without_the_kmeans_state_loads(codec, tmp_path):
    """A weight of another shape counts as missing (transformers starts it at random); EnCodec's k-means training
    buffers (`inited`, `cluster_size`, `embed_avg`), which encoding never reads, may be left out."""
    from safetensors.torch import load_file

    from valle_hf.errors import CheckpointError

    codec.save_pretrained(tmp_path / "codec")
    weights = load_file(tmp_path / "codec" / "model.safetensors")
    lean = {key: value for key, value in weights.items() if not key.endswith((".inited", ".cluster_size",
                                                                               ".embed_avg"))}
    assert len(lean) < len(weights)
    save_file(lean, tmp_path / "codec" / "model.safetensors", metadata={"format": "pt"})
    waveform = _speechlike(3200)
    assert torch.equal(encode(load_codec(str(tmp_path / "codec")), waveform), encode(codec, waveform))
    key = "encoder.layers.0.conv.bias"
    save_file({**weights, key: torch.zeros(weights[key].numel() + 1)}, tmp_path / "codec" / "model.safetensors",
              metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=rf"not an EnCodec checkpoint \(1 of its weights missing, e.g. {key}\)"):
        load_codec(str(tmp_path / "codec"))


def test_damaged_codec_weights_are_refused_in_one_line(codec, tmp_path):
    from valle_hf.errors import CheckpointError

    codec.save_pretrained(tmp_path / "codec")
    weights = tmp_path / "codec" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # a download cut short
    with pytest.raises(CheckpointError, match=r"^the EnCodec weights in .* are damaged \(.*\): download them again$"):
        load_codec(str(tmp_path / "codec"))


def test_tiny_codec_leaves_the_global_rng_alone():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    tiny_random_codec(seed=5)
    assert torch.equal(torch.rand(3), expected)


def test_no_frames_decode_to_no_samples(codec):
    assert decode(codec, torch.zeros(0, NUM_LEVELS, dtype=torch.long)).shape == (0,)
    assert [w.shape for w in decode_batch(codec, torch.zeros(2, 4, NUM_LEVELS, dtype=torch.long), lengths=[0, 0])] \
        == [(0,), (0,)]


def test_a_codec_in_bfloat16_encodes_and_codes_of_any_integer_type_decode(codec):
    """The waveform takes the codec's dtype and the audio comes back in float32 (numpy and soundfile have no
    bfloat16); codes stored as int16 (a prepared data set's) decode as int64 ones."""
    import copy

    waveform = _speechlike(3200)
    half = copy.deepcopy(codec).to(torch.bfloat16)
    codes = encode(half, waveform)
    assert codes.shape == (10, NUM_LEVELS) and codes.dtype == torch.long
    assert decode(half, codes).dtype == decode_batch(half, codes[None])[0].dtype == torch.float32
    codes = encode(codec, waveform)
    for dtype in (torch.int16, torch.int32):
        assert torch.equal(decode(codec, codes.to(dtype)), decode(codec, codes))
        assert torch.equal(decode_batch(codec, codes[None].to(dtype))[0], decode_batch(codec, codes[None])[0])
