"""EnCodec 24 kHz codes for VALL-E, through transformers' `EncodecModel` (no torchaudio, no `encodec` package).

VALL-E reads and writes EnCodec codes at 6 kbps: 8 residual-VQ levels of 1024 codes, 75 frames per second, one
frame per 320 samples at 24 kHz. Codes are kept as `[T, levels]` (time first), the layout of the original's
`qnt.encode_from_file`; `EncodecModel` wants `[chunks=1, batch, levels, T]`.

Two traps of `EncodecModel` are handled here: `encode()` defaults to the *lowest* bandwidth (1.5 kbps, 2 levels), so
the bandwidth is always passed; and a freshly built model has all-zero codebooks, so `tiny_random_codec` fills them.
The layout VALL-E needs (24 kHz, hop 320, 1024 codes) is `valle_hf.configuration`'s; everything else is read from the
codec's own config.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors import SafetensorError
from transformers import EncodecConfig, EncodecModel
from transformers.models.encodec.modeling_encodec import EncodecConv1d, EncodecConvTranspose1d

from .configuration import CODEC_CODEBOOK_SIZE, CODEC_HOP_LENGTH, CODEC_SAMPLING_RATE, DEFAULT_CODEC
from .errors import (
    CheckpointError,
    ModelNotFoundError,
    VallEValueError,
    either_caller,
    is_integer_tensor,
    one_line,
    without_load_report,
)
from .hub import check_reachable, model_name
from .vocos import frame_lengths

# The bandwidth of the 8 RVQ levels the released model reads (0.75 kbps per level).
BANDWIDTH = 6.0

__all__ = [
    "BANDWIDTH",
    "DecoderStream",
    "decode",
    "decode_batch",
    "encode",
    "encode_batch",
    "load_codec",
    "num_frames",
    "tiny_random_codec",
]


def num_frames(num_samples: int, hop_length: int = CODEC_HOP_LENGTH) -> int:
    """Number of codec frames for `num_samples` samples: ceil(samples / hop_length)."""
    return -(-num_samples // hop_length)


def _check_layout(codec: EncodecModel) -> None:
    """Refuse codecs whose frame layout is not the one VALL-E was trained on (24 kHz, hop 320, 75 Hz, 1024 codes)."""
    config = codec.config
    layout = (config.sampling_rate, config.hop_length, config.codebook_size)
    if layout != (CODEC_SAMPLING_RATE, CODEC_HOP_LENGTH, CODEC_CODEBOOK_SIZE):
        raise CheckpointError(
            f"codec has sampling_rate={config.sampling_rate}, hop_length={config.hop_length}, "
            f"codebook_size={config.codebook_size}; VALL-E needs the EnCodec 24 kHz layout "
            f"({CODEC_SAMPLING_RATE}, {CODEC_HOP_LENGTH}, {CODEC_CODEBOOK_SIZE})"
        )
    if config.audio_channels != 1:
        raise CheckpointError(f"codec expects {config.audio_channels} audio channels; VALL-E needs a mono codec")


def load_codec(name_or_path: str = DEFAULT_CODEC, **from_pretrained_kwargs) -> EncodecModel:
    """Load the EnCodec model (by default the 24 kHz one VALL-E uses) in eval mode and check its frame layout.

    Raises `ModelNotFoundError` (at once, naming a local copy and tiny-random as the choices) when it cannot be had, and
    `CheckpointError` for damaged weights or a codec of another layout.
    """
    instead = (f"VALL-E needs it to encode voice prompts: give a local copy of {DEFAULT_CODEC}, or tiny-random (a test "
               f"codec that makes noise), {either_caller('codec')}")
    name_or_path = model_name(name_or_path, "the EnCodec codec")  # a folder's "~" read as the home folder
    if Path(name_or_path).is_file():  # not a Hub id either: the Hub cache was searched for "<file>/config.json"
        raise CheckpointError(f"{name_or_path} is a file: give the EnCodec codec's folder (config.json and its "
                              f"weights), a Hub id such as {DEFAULT_CODEC}, or tiny-random")
    if not Path(name_or_path).is_dir() and check_reachable(str(name_or_path), "config.json", "the EnCodec codec",
                                                           instead, **from_pretrained_kwargs):
        from_pretrained_kwargs = {**from_pretrained_kwargs, "local_files_only": True}
    try:
        with without_load_report():  # `_check_loaded` says what it would report, in one line
            codec, info = EncodecModel.from_pretrained(name_or_path, output_loading_info=True,
                                                       ignore_mismatched_sizes=True, **from_pretrained_kwargs)
    except OSError as error:
        raise ModelNotFoundError(f"could not load the EnCodec codec {name_or_path} ({one_line(error, 200)}); "
                                 f"{instead}") from None
    except SafetensorError as error:
        raise CheckpointError(f"the EnCodec weights in {name_or_path} are damaged ({one_line(error)}): download them "
                              "again") from None
    _check_loaded(info, name_or_path)
    _check_layout(codec)
    return codec.eval()


# EnCodec's k-means training state: a checkpoint may leave it out, and encoding never reads it.
_TRAINING_BUFFERS = (".inited", ".cluster_size", ".embed_avg")


def _check_loaded(info: dict, name_or_path) -> None:
    """Refuse (`CheckpointError`) a folder that is not an EnCodec checkpoint (another model's, Vocos'): transformers
    loads one with the default config and starts every weight it lacks at random, and the codes would be noise."""
    missing = sorted(key for key in [*info["missing_keys"], *(key for key, *_ in info["mismatched_keys"])]
                     if not key.endswith(_TRAINING_BUFFERS))
    if missing:
        raise CheckpointError(f"{name_or_path} is not an EnCodec checkpoint ({len(missing)} of its weights missing, "
                              f"e.g. {missing[0]}): give a copy of {DEFAULT_CODEC}, or tiny-random, "
                              f"{either_caller('codec')}")


def codebook_fingerprint(codec: EncodecModel) -> str:
    """A codec's identity as its codes see it: the SHA-256 of its RVQ codebooks (float32, level by level), so that
    two codecs with the same fingerprint quantize to the same codes (a prepared data set records it as
    `codec_codebooks_sha256`)."""
    digest = hashlib.sha256()
    for layer in codec.quantizer.layers:
        digest.update(layer.codebook.embed.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def tiny_random_codec(seed: int = 0) -> EncodecModel:
    """A 0.17 M-parameter EnCodec with the 24 kHz / hop 320 / 75 Hz / 8-levels-at-6-kbps layout, for tests.

    `EncodecModel`'s init zeroes the codebooks, which would encode everything to code 0. The codebooks are filled the
    way EnCodec's k-means init starts: with (jittered) encoder outputs of a fixed random signal, level by level on
    the residual, so that different inputs give different codes at every level. Deterministic for a given `seed`;
    the global RNG state is left untouched.
    """
    config = EncodecConfig(num_filters=4, hidden_size=16, num_lstm_layers=1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        codec = EncodecModel(config).eval()
    generator = torch.Generator().manual_seed(seed)
    num_samples = 4 * config.sampling_rate
    envelope = torch.rand(num_samples // 2400 + 1, generator=generator).repeat_interleave(2400)[:num_samples]
    signal = 0.3 * envelope * torch.randn(num_samples, generator=generator)
    with torch.no_grad():
        residual = codec.encoder(signal[None, None])[0].T  # [frames, codebook_dim]
        for layer in codec.quantizer.layers:
            book = layer.codebook
            picks = torch.randint(0, residual.shape[0], (config.codebook_size,), generator=generator)
            jitter = torch.randn(config.codebook_size, residual.shape[1], generator=generator)
            embed = residual[picks] + 0.1 * residual.std(dim=0, keepdim=True) * jitter
            book.embed.copy_(embed)
            book.embed_avg.copy_(embed)
            residual = residual - book.decode(book.encode(residual[None]))[0]
    _check_layout(codec)
    return codec


def _codec_device_dtype(codec: EncodecModel) -> tuple[torch.device, torch.dtype]:
    parameter = next(codec.parameters())
    return parameter.device, parameter.dtype


def _check_waveform(waveform: torch.Tensor, name: str = "waveform") -> torch.Tensor:
    waveform = torch.as_tensor(waveform)
    if waveform.ndim != 1:
        raise VallEValueError(f"{name} must be a 1-D (mono, 24 kHz) tensor, got shape {tuple(waveform.shape)}")
    if waveform.numel() == 0:
        raise VallEValueError(f"{name} is empty")
    if not waveform.is_floating_point():
        raise VallEValueError(f"{name} must be a float tensor in [-1, 1], got dtype {waveform.dtype}")
    finite = torch.isfinite(waveform)
    if not finite.all():  # EnCodec encodes NaN as codes of silence, without a word
        raise VallEValueError(f"{name} has {int((~finite).sum())} NaN or infinite samples (the first is sample "
                              f"{int((~finite).nonzero()[0])}): give a waveform of finite samples")
    return waveform


@torch.no_grad()
def encode(codec: EncodecModel, waveform: torch.Tensor, bandwidth: float = BANDWIDTH) -> torch.LongTensor:
    """Encode a 1-D float waveform at 24 kHz into codes `[T, levels]` with T = ceil(samples / 320).

    `bandwidth` 6.0 gives the 8 levels VALL-E uses (1.5 → 2, 3.0 → 4). It is always passed on, because
    `EncodecModel.encode` would otherwise fall back to 1.5 kbps. The codes are on the codec's device.
    """
    waveform = _check_waveform(waveform)
    _check_bandwidth(codec, bandwidth)
    device, dtype = _codec_device_dtype(codec)
    input_values = waveform.to(device=device, dtype=dtype)[None, None]
    codes = codec.encode(input_values, bandwidth=bandwidth, return_dict=True).audio_codes  # [1, 1, levels, T]
    return codes[0, 0].T.long().contiguous()


@torch.no_grad()
def encode_batch(
    codec: EncodecModel, waveforms: Sequence[torch.Tensor], bandwidth: float = BANDWIDTH
) -> list[torch.LongTensor]:
    """Encode several 1-D waveforms in one padded pass; returns one `[ceil(len_i / 320), levels]` tensor each.

    EnCodec 24 kHz is causal (causal convolutions, one-way LSTM), so zero right-padding leaves the frames of a
    shorter item unchanged but for its last one (alone, the encoder sees a reflect-padded edge there; in the batch,
    zeros) and for float rounding, which differs between batched and single matrix products and can flip a code
    that sits on a quantiser boundary. Use `encode` per item where bit-exact codes matter.
    """
    waveforms = [_check_waveform(w, f"waveforms[{i}]") for i, w in enumerate(waveforms)]
    if not waveforms:
        raise VallEValueError("waveforms is empty")
    _check_bandwidth(codec, bandwidth)
    device, dtype = _codec_device_dtype(codec)
    lengths = [w.numel() for w in waveforms]
    batch = torch.zeros(len(waveforms), 1, max(lengths), device=device, dtype=dtype)
    for row, waveform in enumerate(waveforms):
        batch[row, 0, : lengths[row]] = waveform.to(device=device, dtype=dtype)
    codes = codec.encode(batch, bandwidth=bandwidth, return_dict=True).audio_codes[0]  # [B, levels, T]
    hop = codec.config.hop_length
    return [codes[row, :, : num_frames(length, hop)].T.long().contiguous() for row, length in enumerate(lengths)]


def _check_bandwidth(codec: EncodecModel, bandwidth: float) -> None:
    """Refuse (`VallEValueError`) a bandwidth the codec has no setting for (transformers raises a bare ValueError)."""
    if bandwidth not in (codec.config.target_bandwidths or ()):
        raise VallEValueError(f"the codec encodes at {list(codec.config.target_bandwidths or ())} kbps, not at "
                              f"{bandwidth!r} kbps: give one of these (a model's codec_config that lacks its own "
                              "bandwidth does not fit the model: convert it again)")


def _check_codes(codec: EncodecModel, codes: torch.Tensor, expected_dims: int, layout: str) -> torch.Tensor:
    codes = torch.as_tensor(codes)
    if codes.ndim != expected_dims:
        raise VallEValueError(f"codes must have shape {layout}, got {codes.ndim} dims (shape {tuple(codes.shape)})")
    if not is_integer_tensor(codes):
        raise VallEValueError(f"codes must be an integer tensor, got dtype {codes.dtype}")
    levels, most = codes.shape[-1], len(codec.quantizer.layers)
    if not 1 <= levels <= most:
        raise VallEValueError(f"codes must have 1..{most} RVQ levels in the last dim, got {levels} (shape {layout})")
    return codes


def _check_code_range(codes: torch.Tensor, codebook_size: int) -> None:
    if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= codebook_size):
        raise VallEValueError(
            f"codes must lie in 0..{codebook_size - 1}, got values in {int(codes.min())}..{int(codes.max())} "
            f"(strip stop/pad tokens before decoding)"
        )


@torch.no_grad()
def decode(codec: EncodecModel, codes: torch.Tensor) -> torch.Tensor:
    """Decode codes `[T, n_levels]` (values 0..1023) to a 1-D float32 waveform of T * 320 samples.

    n_levels is 1 up to the codec's quantizer levels (32 for EnCodec 24 kHz, of which VALL-E uses 8); a refused shape,
    dtype or value raises `VallEValueError`. Fewer levels decode as the sum of the given levels' embeddings (a coarser
    reconstruction).
    """
    codes = _check_codes(codec, codes, 2, "[T, n_levels]")
    _check_code_range(codes, codec.config.codebook_size)
    device, _ = _codec_device_dtype(codec)
    if codes.shape[0] == 0:
        return torch.zeros(0, device=device, dtype=torch.float32)
    audio_codes = codes.to(device=device, dtype=torch.long).T[None, None]  # [1, 1, levels, T]
    audio = codec.decode(audio_codes, [None], return_dict=True).audio_values  # [1, 1, T * 320]
    return audio[0, 0].float()


@torch.no_grad()
def decode_batch(
    codec: EncodecModel, codes: torch.Tensor, lengths: Sequence[int] | torch.Tensor | None = None
) -> list[torch.Tensor]:
    """Decode a right-padded batch `[B, T, n_levels]` into B 1-D float32 waveforms of `lengths[i] * 320` samples
    (`lengths`: B whole numbers of frames, see `valle_hf.vocos.frame_lengths`; default: all T).

    Only the first `lengths[i]` frames of a row are read (and range-checked); whatever pads the rest (a stop or pad
    id, say) is ignored. The decoder is causal, so the padding cannot leak into the kept samples, but for its first
    convolution's reflected edge: a row too short to reflect (`_reflect_frames`) is decoded on its own.
    """
    codes = _check_codes(codec, codes, 3, "[B, T, n_levels]")
    batch_size, max_frames, _ = codes.shape
    lengths = frame_lengths(lengths, batch_size, max_frames)
    valid = torch.arange(max_frames, device=codes.device)[None, :] < torch.tensor(lengths, device=codes.device)[:, None]
    _check_code_range(codes[valid], codec.config.codebook_size)
    device, _ = _codec_device_dtype(codec)
    if max(lengths, default=0) == 0:
        return [torch.zeros(0, device=device, dtype=torch.float32) for _ in lengths]
    codes = codes.masked_fill(~valid[..., None], 0)[:, : max(lengths)]
    audio_codes = codes.to(device=device, dtype=torch.long).transpose(1, 2)[None]  # [1, B, levels, T]
    audio = codec.decode(audio_codes, [None], return_dict=True).audio_values  # [B, 1, T * 320]
    waveforms = [audio[row, 0, : length * codec.config.hop_length].float() for row, length in enumerate(lengths)]
    for row, length in enumerate(lengths):
        if 0 < length < _reflect_frames(codec):
            waveforms[row] = decode(codec, codes[row, :length])
    return waveforms


def _reflect_frames(codec: EncodecModel) -> int:
    """The fewest frames a row needs for the decoder's first convolution to pad it by reflecting its own frames. A
    shorter row is first extended with zeros (transformers' `EncodecConv1d._pad1d`), where in a padded batch it
    reflected the padding frames after it: its first samples differed from the row decoded alone."""
    first = codec.decoder.layers[0]
    return int(first.padding_total) + 1 if codec.config.pad_mode == "reflect" else 0


class DecoderStream:
    """Decodes one row's codes piece by piece, as they come, into the samples `decode` gives for the whole row (equal
    to float rounding), keeping the decoder's state between pieces. For the causal 24 kHz codec (`use_causal_conv`,
    weight norm), the one whose layout `load_codec` admits.

    The decoder is a causal convolution at the frame rate, a one-way LSTM (plus its input), then causal convolutions
    and transposed convolutions up to the sample rate. A piece of frames runs the quantizer per frame; the first
    convolution over the piece with the `padding_total` embedding frames before it (its receptive field); transformers'
    LSTM module from the (h, c) state the previous piece left, which carries the whole past; and the layers after it
    over the piece with the LSTM frames before it that they read (`_frames_reached`), keeping the piece's samples.

    No sample waits for later frames (a causal transposed convolution's output at sample n reads inputs up to n //
    stride only), but at a row's start: the first convolution pads it by reflecting the row's frames 1..padding_total,
    so a row's first piece must hold `lead` frames (`_reflect_frames`), or be the whole row (`last=True`).
    """

    def __init__(self, codec: EncodecModel):
        self.codec = codec
        self.first, self.lstm, *self.upsampling = codec.decoder.layers
        self.lead = _reflect_frames(codec)
        self.embedding_frames = int(self.first.padding_total)
        self.lstm_frames = _frames_reached(self.upsampling)
        self.embeddings = self.hidden = self.state = None  # the frames before the next piece that it reads
        self.ended = False  # a piece given last=True ended the row

    @torch.no_grad()
    def __call__(self, codes: torch.Tensor, last: bool = False) -> torch.Tensor:
        """The next piece's codes `[n, levels]` (values 0..codebook_size - 1) as a 1-D float32 waveform of n * hop
        samples on the codec's device; `last`: the row ends with this piece. Raises `VallEValueError` for codes
        `decode` refuses, for a row's first piece of fewer than `lead` frames that is not its last (its audio would
        differ from the row's), and for a piece after the last."""
        if self.ended:  # its audio would go on from a row decoded as ended, a short one without its lead
            raise VallEValueError("this DecoderStream's row ended with the piece given last=True: decode the next row "
                                  "with a new DecoderStream")
        codes = _check_codes(self.codec, codes, 2, "[T, n_levels]")
        _check_code_range(codes, self.codec.config.codebook_size)
        self.ended = bool(last)  # an empty last piece ends the row too
        frames, (device, _) = codes.shape[0], _codec_device_dtype(self.codec)
        if frames == 0:
            return torch.zeros(0, device=device, dtype=torch.float32)
        if self.embeddings is None and frames < self.lead and not last:
            raise VallEValueError(f"a row's first piece needs {self.lead} frames (DecoderStream.lead), got {frames}: "
                                  "hold its first frames until there are that many, or pass last=True for a row that "
                                  "ends there")
        embeddings = self.codec.quantizer.decode(codes.to(device=device, dtype=torch.long).T[:, None])  # [1, D, n]
        self.embeddings = _with_context(self.embeddings, embeddings, self.embedding_frames)
        hidden = self.first(self.embeddings)[..., -frames:].permute(2, 0, 1)  # [n, 1, C], the LSTM's layout
        output, self.state = self.lstm.lstm(hidden, self.state)
        self.hidden = _with_context(self.hidden, (output + hidden).permute(1, 2, 0), self.lstm_frames)
        audio = self.hidden
        for layer in self.upsampling:
            audio = layer(audio)
        return audio[0, 0, -frames * self.codec.config.hop_length:].float()


def _with_context(before: torch.Tensor | None, new: torch.Tensor, context: int) -> torch.Tensor:
    """`new` `[1, channels, n]` after the last `context` frames of `before` (None at a row's start)."""
    if before is None:
        return new
    return torch.cat([before[..., max(before.shape[-1] - context, 0):], new], dim=-1)


def _frames_reached(layers) -> int:
    """How many frames before its own a sample out of `layers` (the decoder's layers after its LSTM) reads, at most.

    Walking back from the output, `reach` counts the samples before its own that a sample reads at the rate of the
    layer walked through: a stride-1 causal convolution reads `padding_total` samples back (a residual block's
    convolutions, in series, add up; its kernel-1 shortcut reads none); a causal transposed convolution's output
    sample m reads inputs (m - kernel + 1) / stride .. m // stride, so a reach R behind it is (R + kernel - 1) //
    stride input samples. 2 frames for the 24 kHz codec.
    """
    reach = 0
    for layer in reversed(layers):
        if isinstance(layer, EncodecConvTranspose1d):
            reach = (reach + layer.conv.kernel_size[0] - 1) // layer.conv.stride[0]
        else:
            reach += sum(int(conv.padding_total) for conv in layer.modules() if isinstance(conv, EncodecConv1d))
    return reach
