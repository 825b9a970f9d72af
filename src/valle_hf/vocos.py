"""Vocos decoder for EnCodec 24 kHz codes (`charactr/vocos-encodec-24khz`, gemelo-ai/vocos 0.1.0) on transformers.

The original VALL-E turns generated codes into audio with Vocos rather than EnCodec's own decoder:
`features = vocos.codes_to_features(codes); audio = vocos.decode(features, bandwidth_id=...)`. This module is a
self-contained re-implementation of that path (no `vocos`, `encodec` or `torchaudio` import):

1. features: the sum over RVQ levels k of the EnCodec codebook vectors `codebooks[codes[k] + k * codebook_size]`
   (vocos/pretrained.py `Vocos.codes_to_features`);
2. backbone: Conv1d embedding, AdaLayerNorm conditioned on the bandwidth id, ConvNeXt blocks, final LayerNorm
   (vocos/models.py `VocosBackbone`, vocos/modules.py `ConvNeXtBlock`, `AdaLayerNorm`);
3. head: a Linear layer predicting log-magnitude and phase of an STFT, inverted with "same" padding
   (vocos/heads.py `ISTFTHead`, vocos/spectral_ops.py `ISTFT`).

Codes are `[batch, frames, levels]` (time first, like the rest of valle_hf; the original takes `[levels, frames]`
or `[levels, batch, frames]`). Every frame gives `hop_length` samples at `sampling_rate`.

Batches of different lengths are decoded with `attention_mask` (right padding). Vocos is not causal, so padding
is kept from leaking into real frames: padded frames are zeroed before every convolution (the convolution then sees
the same zero padding as a row decoded alone), padded frames of the spectrum are zeroed, and each row is divided by
the window envelope of its own length. Samples after a row's end are zero.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .errors import CheckpointError, VallEFileNotFoundError, VallEValueError, either_caller, is_integer_tensor
from .files import load_tensors
from .hub import hub_file

__all__ = [
    "VocosAdaLayerNorm",
    "VocosBackbone",
    "VocosConfig",
    "VocosConvNeXtBlock",
    "VocosISTFTHead",
    "VocosModel",
    "VocosOutput",
    "load_original_vocos",
    "tiny_random_vocos",
]

DEFAULT_VOCODER = "charactr/vocos-encodec-24khz"
CONFIG_NAME = "config.yaml"
WEIGHTS_NAME = "pytorch_model.bin"
# Vocos' convolutions (embedding and depthwise) are fixed at kernel 7, padding 3; they are not in its config.
KERNEL_SIZE = 7
# vocos/heads.py ISTFTHead clips exp(log-magnitude) here to keep random or diverging outputs finite.
MAX_MAGNITUDE = 1e2
# The EnCodec models Vocos' EncodecFeatures knows; only the 24 kHz one has a released Vocos decoder.
ENCODEC_SAMPLING_RATES = {"encodec_24khz": 24000}
# Codes per EnCodec RVQ level; a Vocos config.yaml does not state it. (configuration.CODEC_CODEBOOK_SIZE is this one.)
ENCODEC_CODEBOOK_SIZE = 1024
ORIGINAL_CLASSES = {
    "feature_extractor": "vocos.feature_extractors.EncodecFeatures",
    "backbone": "vocos.models.VocosBackbone",
    "head": "vocos.heads.ISTFTHead",
}
# The frozen EnCodec model inside a checkpoint's feature extractor: only its codebooks (copied into
# `feature_extractor.codebook_weights`) are needed to decode.
IGNORED_PREFIX = "feature_extractor.encodec."
# (original key, our key); "*" stands for one dotted component. The first rule matching the whole key applies; keys
# matching none are the same in both. The original's AdaLayerNorm tables are nn.Embeddings ("scale.weight"); ours are
# plain parameters ("scale").
KEY_RENAMES = (
    ("feature_extractor.codebook_weights", "codebooks.weight"),
    ("backbone.norm.*.weight", "backbone.norm.*"),
    ("backbone.convnext.*.norm.*.weight", "backbone.layers.*.norm.*"),
    ("backbone.convnext.*.gamma", "backbone.layers.*.layer_scale"),
    ("backbone.convnext.*.*.*", "backbone.layers.*.*.*"),
    ("head.istft.window", "head.window"),
)


def frame_lengths(lengths, batch_size: int, num_frames: int) -> list[int]:
    """Each row's number of real frames in a right-padded batch `[batch_size, num_frames, levels]` of codes: `lengths`
    (a sequence or 1-D tensor of `batch_size` integers in 0..`num_frames`), or `num_frames` for every row when None.

    Raises `VallEValueError` for anything else: a fractional length would drop part of a frame's audio in silence.
    """
    if lengths is None:
        return [num_frames] * batch_size
    refusal = VallEValueError(f"lengths must be {batch_size} whole numbers in 0..{num_frames} (each row's real "
                              f"frames), got {lengths!r}")
    try:
        values = torch.as_tensor(lengths)
    except (TypeError, ValueError, RuntimeError):  # what torch.as_tensor raises for what holds no numbers (a str)
        raise refusal from None
    if not is_integer_tensor(values) or values.shape != (batch_size,):
        raise refusal
    if ((values < 0) | (values > num_frames)).any():
        raise refusal
    return values.tolist()


def _kbps_per_level(codebook_size: int, sampling_rate: int, hop_length: int) -> float:
    """Bit rate of one RVQ level in kbps: log2(codebook_size) bits per frame at sampling_rate / hop_length frames/s."""
    return math.log2(codebook_size) * sampling_rate / hop_length / 1000


def _levels_within(bandwidth: float, kbps_per_level: float) -> int:
    """How many RVQ levels fit in `bandwidth` kbps (EnCodec's get_num_quantizers_for_bandwidth, without its floor of 1).

    The tolerance keeps an exact fit (e.g. 12 / 0.75 = 16) from being lost to float rounding.
    """
    return int(bandwidth / kbps_per_level + 1e-9)


class VocosConfig(PretrainedConfig):
    r"""Hyper-parameters of a Vocos decoder for EnCodec codes; the defaults are `charactr/vocos-encodec-24khz`'s.

    Args:
        input_channels: size of a codebook vector (EnCodec's latent size), the backbone's input channels.
        hidden_size: the backbone's width (`dim` in the original).
        intermediate_size: the ConvNeXt blocks' inner width (`intermediate_dim`).
        num_layers: number of ConvNeXt blocks.
        bandwidths: the EnCodec bandwidths in kbps the decoder was trained on; AdaLayerNorm has one scale/shift
            embedding per entry and `bandwidth_id` indexes this list.
        n_fft: FFT size (and window length) of the inverse STFT; even, larger than `hop_length`.
        hop_length: samples per frame.
        padding: the inverse STFT's padding; only "same" (what the released model uses) is implemented.
        codebook_size: codes per RVQ level.
        num_codebooks: RVQ levels in the codebook table (`num_codebooks * codebook_size` rows).
        layer_norm_eps: epsilon of every LayerNorm / AdaLayerNorm.
        sampling_rate: output sampling rate in Hz.

    Raises:
        ValueError: for a padding other than "same", an odd `n_fft`, `n_fft <= hop_length`, an odd
            `n_fft - hop_length` (the output would not be `frames * hop_length` samples) or no bandwidths.
    """

    model_type = "valle_vocos"

    def __init__(
        self,
        input_channels: int = 128,
        hidden_size: int = 384,
        intermediate_size: int = 1152,
        num_layers: int = 8,
        bandwidths: Sequence[float] = (1.5, 3.0, 6.0, 12.0),
        n_fft: int = 1280,
        hop_length: int = 320,
        padding: str = "same",
        codebook_size: int = 1024,
        num_codebooks: int = 16,
        layer_norm_eps: float = 1e-6,
        sampling_rate: int = 24000,
        **kwargs,
    ):
        if padding != "same":
            raise VallEValueError(f'padding={padding!r} is not supported: only "same" (the released model\'s) is')
        if n_fft % 2 or n_fft <= hop_length or (n_fft - hop_length) % 2:
            raise VallEValueError(
                f"n_fft={n_fft}, hop_length={hop_length}: n_fft must be even and exceed hop_length by an even number"
            )
        if not bandwidths:
            raise VallEValueError("bandwidths is empty: Vocos needs at least one bandwidth (kbps)")
        self.input_channels = input_channels
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_layers = num_layers
        self.bandwidths = [float(bandwidth) for bandwidth in bandwidths]
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.padding = padding
        self.codebook_size = codebook_size
        self.num_codebooks = num_codebooks
        self.layer_norm_eps = layer_norm_eps
        self.sampling_rate = sampling_rate
        super().__init__(**kwargs)

    @property
    def kbps_per_level(self) -> float:
        """Bit rate of one RVQ level in kbps (0.75 for EnCodec 24 kHz: 10 bits x 75 frames/s)."""
        return _kbps_per_level(self.codebook_size, self.sampling_rate, self.hop_length)

    def bandwidth_id_for_levels(self, num_levels: int) -> int:
        """Index into `bandwidths` of the smallest bandwidth that carries `num_levels` RVQ levels.

        A bandwidth carries K levels when it is >= K * `kbps_per_level` kbps. With the defaults: 1-2 levels -> 0
        (1.5 kbps), 3-4 -> 1 (3 kbps), 5-8 -> 2 (6 kbps), 9-16 -> 3 (12 kbps). (The original VALL-E always passed 2.)

        Raises:
            ValueError: `num_levels` < 1, or more levels than the largest bandwidth carries.
        """
        if num_levels < 1:
            raise VallEValueError(f"num_levels must be >= 1, got {num_levels}")
        per_level = self.kbps_per_level
        fitting = [
            index
            for index, bandwidth in enumerate(self.bandwidths)
            if _levels_within(bandwidth, per_level) >= num_levels
        ]
        if not fitting:
            largest = max(self.bandwidths)
            raise VallEValueError(
                f"{num_levels} RVQ levels need {num_levels * per_level:g} kbps, more than the largest bandwidth "
                f"{largest:g} kbps (at most {_levels_within(largest, per_level)} levels)"
            )
        return min(fitting, key=lambda index: self.bandwidths[index])

    @classmethod
    def from_original_yaml(cls, path: str | Path, **overrides) -> VocosConfig:
        """Build the config from a Vocos Hub repo's `config.yaml` (EncodecFeatures + VocosBackbone + ISTFTHead).

        `num_codebooks` is what EncodecFeatures keeps: the levels the largest bandwidth carries (16 for 12 kbps);
        `load_original_vocos` replaces it with the codebook table's actual size. `overrides` are passed on to
        `VocosConfig` last.

        Raises:
            CheckpointError: not YAML, a missing section or argument, another feature extractor / backbone / head class,
                an EnCodec model other than "encodec_24khz", AdaLayerNorm embeddings not one per bandwidth, or head
                and backbone widths that differ.
        """
        path = Path(path)
        try:
            original = yaml.safe_load(path.read_text())
        except (yaml.YAMLError, UnicodeDecodeError) as error:
            raise CheckpointError(f"{path} is not valid YAML: {' '.join(str(error).split())}") from None
        if not isinstance(original, dict):
            raise CheckpointError(f"{path} is not a Vocos config: expected a mapping, got {type(original).__name__}")
        args = {}
        for section, class_path in ORIGINAL_CLASSES.items():
            entry = original.get(section)
            if not isinstance(entry, dict) or entry.get("class_path") != class_path:
                found = entry.get("class_path") if isinstance(entry, dict) else entry
                raise CheckpointError(f"{path}: section {section!r} must have class_path {class_path!r}, got {found!r}")
            args[section] = entry.get("init_args") or {}

        def required(section: str, key: str):
            if key not in args[section]:
                raise CheckpointError(f"{path}: {section}.init_args.{key} is missing")
            return args[section][key]

        features, backbone, head = args["feature_extractor"], args["backbone"], args["head"]
        encodec_model = features.get("encodec_model", "encodec_24khz")
        if encodec_model not in ENCODEC_SAMPLING_RATES:
            raise CheckpointError(
                f"{path}: encodec_model {encodec_model!r} is not supported, only {list(ENCODEC_SAMPLING_RATES)}"
            )
        # EncodecFeatures' own default when the yaml leaves it out.
        bandwidths = [float(bandwidth) for bandwidth in features.get("bandwidths", [1.5, 3.0, 6.0, 12.0])]
        embeddings = backbone.get("adanorm_num_embeddings")
        if embeddings != len(bandwidths):
            raise CheckpointError(
                f"{path}: backbone.init_args.adanorm_num_embeddings is {embeddings}, expected one per bandwidth "
                f"({len(bandwidths)})"
            )
        dim = required("backbone", "dim")
        if required("head", "dim") != dim:
            raise CheckpointError(f"{path}: head dim {head['dim']} differs from backbone dim {dim}")
        sampling_rate = ENCODEC_SAMPLING_RATES[encodec_model]
        hop_length = required("head", "hop_length")
        per_level = _kbps_per_level(ENCODEC_CODEBOOK_SIZE, sampling_rate, hop_length)
        values = dict(
            input_channels=required("backbone", "input_channels"),
            hidden_size=dim,
            intermediate_size=required("backbone", "intermediate_dim"),
            num_layers=required("backbone", "num_layers"),
            bandwidths=bandwidths,
            n_fft=required("head", "n_fft"),
            hop_length=hop_length,
            padding=head.get("padding", "same"),
            codebook_size=ENCODEC_CODEBOOK_SIZE,
            num_codebooks=max(1, _levels_within(max(bandwidths), per_level)),
            sampling_rate=sampling_rate,
        )
        values.update(overrides)
        return cls(**values)


@dataclass
class VocosOutput(ModelOutput):
    """Output of `VocosModel.forward`.

    Args:
        audio_values: `[batch, frames * hop_length]` float waveform at `config.sampling_rate`; zero after each row's
            last real frame when an `attention_mask` was given.
    """

    audio_values: torch.FloatTensor | None = None


class VocosAdaLayerNorm(nn.Module):
    """LayerNorm without affine parameters, then a scale and shift looked up by bandwidth id.

    Source: vocos/modules.py `AdaLayerNorm` (its nn.Embedding tables are plain `[num_bandwidths, dim]` parameters
    here, so that transformers' initialisation visits this module). Input `[batch, frames, dim]`, `bandwidth_id`
    LongTensor `[batch]`.
    """

    def __init__(self, num_bandwidths: int, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(num_bandwidths, dim))
        self.shift = nn.Parameter(torch.zeros(num_bandwidths, dim))

    def forward(self, hidden_states: torch.Tensor, bandwidth_id: torch.LongTensor) -> torch.Tensor:
        normed = nn.functional.layer_norm(hidden_states, hidden_states.shape[-1:], eps=self.eps)
        return normed * self.scale[bandwidth_id][:, None] + self.shift[bandwidth_id][:, None]


class VocosConvNeXtBlock(nn.Module):
    """Depthwise conv, AdaLayerNorm, Linear-GELU-Linear MLP, layer scale, residual.

    Source: vocos/modules.py `ConvNeXtBlock`. Input and output `[batch, dim, frames]`.
    """

    def __init__(self, config: VocosConfig):
        super().__init__()
        dim = config.hidden_size
        self.dwconv = nn.Conv1d(dim, dim, kernel_size=KERNEL_SIZE, padding=KERNEL_SIZE // 2, groups=dim)
        self.norm = VocosAdaLayerNorm(len(config.bandwidths), dim, config.layer_norm_eps)
        self.pwconv1 = nn.Linear(dim, config.intermediate_size)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(config.intermediate_size, dim)
        self.layer_scale = nn.Parameter(torch.ones(dim))

    def forward(
        self, hidden_states: torch.Tensor, bandwidth_id: torch.LongTensor, frame_mask: torch.Tensor
    ) -> torch.Tensor:
        """`frame_mask` `[batch, 1, frames]` (1 = real frame) zeroes padded frames before the convolution."""
        hidden_states = hidden_states * frame_mask
        update = self.norm(self.dwconv(hidden_states).transpose(1, 2), bandwidth_id)
        update = self.layer_scale * self.pwconv2(self.act(self.pwconv1(update)))
        return hidden_states + update.transpose(1, 2)


class VocosBackbone(nn.Module):
    """Conv1d embedding, AdaLayerNorm, `num_layers` ConvNeXt blocks, final LayerNorm.

    Source: vocos/models.py `VocosBackbone` (with `adanorm_num_embeddings` = number of bandwidths).
    Input features `[batch, input_channels, frames]`, output `[batch, frames, hidden_size]`.
    """

    def __init__(self, config: VocosConfig):
        super().__init__()
        dim = config.hidden_size
        self.embed = nn.Conv1d(config.input_channels, dim, kernel_size=KERNEL_SIZE, padding=KERNEL_SIZE // 2)
        self.norm = VocosAdaLayerNorm(len(config.bandwidths), dim, config.layer_norm_eps)
        self.layers = nn.ModuleList(VocosConvNeXtBlock(config) for _ in range(config.num_layers))
        self.final_layer_norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)

    def forward(self, features: torch.Tensor, bandwidth_id: torch.LongTensor, frame_mask: torch.Tensor) -> torch.Tensor:
        """`frame_mask` `[batch, 1, frames]` (1 = real frame) zeroes padded frames before every convolution."""
        hidden_states = self.embed(features * frame_mask)
        hidden_states = self.norm(hidden_states.transpose(1, 2), bandwidth_id).transpose(1, 2)
        for layer in self.layers:
            hidden_states = layer(hidden_states, bandwidth_id, frame_mask)
        return self.final_layer_norm(hidden_states.transpose(1, 2))


class VocosISTFTHead(nn.Module):
    """Linear layer to STFT log-magnitude and phase, inverse STFT with "same" padding.

    Source: vocos/heads.py `ISTFTHead` and vocos/spectral_ops.py `ISTFT`: irfft of each frame, Hann window
    (periodic), overlap-add, `(n_fft - hop_length) / 2` samples trimmed on both sides, division by the overlap-added
    squared window. Input `[batch, frames, hidden_size]`, output `[batch, frames * hop_length]`.
    """

    def __init__(self, config: VocosConfig):
        super().__init__()
        self.n_fft = config.n_fft
        self.hop_length = config.hop_length
        # n_fft // 2 + 1 log-magnitudes, then as many phases.
        self.out = nn.Linear(config.hidden_size, config.n_fft + 2)
        self.register_buffer("window", torch.hann_window(config.n_fft))

    def _overlap_add(self, frames: torch.Tensor) -> torch.Tensor:
        """Overlap-add `[batch, n_fft, frames]` at `hop_length`, trimmed to the "same" region `[batch, frames*hop]`."""
        num_frames = frames.shape[-1]
        total = (num_frames - 1) * self.hop_length + self.n_fft
        summed = nn.functional.fold(
            frames, output_size=(1, total), kernel_size=(1, self.n_fft), stride=(1, self.hop_length)
        )[:, 0, 0]
        trim = (self.n_fft - self.hop_length) // 2
        return summed[:, trim : trim + num_frames * self.hop_length]

    def forward(self, hidden_states: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        """`frame_mask` `[batch, frames]` (1 = real frame): padded frames add nothing and their samples are zero.

        The spectrum and its inverse are computed in float32 whatever the model's dtype (torch has no complex
        bfloat16, and no float16 FFT on the CPU); the audio is float32.
        """
        frame_mask, window = frame_mask.float(), self.window.float()
        log_magnitude, phase = self.out(hidden_states).float().transpose(1, 2).chunk(2, dim=1)
        magnitude = log_magnitude.exp().clamp(max=MAX_MAGNITUDE) * frame_mask[:, None]
        spectrum = torch.complex(magnitude * phase.cos(), magnitude * phase.sin())
        frames = torch.fft.irfft(spectrum, n=self.n_fft, dim=1) * window[:, None]
        audio = self._overlap_add(frames)
        # Each row's own envelope: the squared windows of its real frames only, as when it is decoded alone.
        envelope = self._overlap_add(window.square()[None, :, None] * frame_mask[:, None])
        real = frame_mask.repeat_interleave(self.hop_length, dim=1).bool()
        # Every real sample is covered by a non-zero window value; samples past the row's end are set to zero.
        return torch.where(real, audio / torch.where(real, envelope, 1.0), 0.0)


class VocosModel(PreTrainedModel):
    """Vocos decoder: EnCodec codes `[batch, frames, levels]` to a waveform `[batch, frames * hop_length]`.

    Source: vocos/pretrained.py `Vocos` (`codes_to_features`, then `decode`). Load the released weights with
    `load_original_vocos()`; `save_pretrained` / `from_pretrained` work as for any transformers model.
    """

    config_class = VocosConfig
    main_input_name = "audio_codes"

    def __init__(self, config: VocosConfig):
        super().__init__(config)
        # All levels' codebooks in one table, level k at rows k * codebook_size ... (k + 1) * codebook_size - 1.
        self.codebooks = nn.Embedding(config.num_codebooks * config.codebook_size, config.input_channels)
        self.backbone = VocosBackbone(config)
        self.head = VocosISTFTHead(config)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        """Vocos' initialisation (vocos/models.py, vocos/modules.py); the codebooks (trained by EnCodec) unit-normal."""
        if isinstance(module, VocosAdaLayerNorm):
            init.ones_(module.scale)
            init.zeros_(module.shift)
        elif isinstance(module, VocosConvNeXtBlock):
            init.constant_(module.layer_scale, 1 / self.config.num_layers)
        elif isinstance(module, VocosISTFTHead):
            init.copy_(module.window, torch.hann_window(self.config.n_fft))
        elif isinstance(module, (nn.Conv1d, nn.Linear)):
            init.trunc_normal_(module.weight, std=0.02)
            init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif module is self.codebooks:
            init.normal_(module.weight)

    def bandwidth_id_for_levels(self, num_levels: int) -> int:
        """The `bandwidth_id` used when none is given; see `VocosConfig.bandwidth_id_for_levels`."""
        return self.config.bandwidth_id_for_levels(num_levels)

    def _check_codes(
        self, audio_codes: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> tuple[torch.LongTensor, torch.Tensor]:
        """Validate `[batch, frames, levels]` codes and the mask; return codes (padded frames set to 0) and the
        float frame mask `[batch, frames]`."""
        if not isinstance(audio_codes, torch.Tensor):
            raise VallEValueError(f"audio_codes must be a torch.Tensor, got {type(audio_codes).__name__}")
        if not is_integer_tensor(audio_codes):
            raise VallEValueError(f"audio_codes must hold integer codes, got dtype {audio_codes.dtype}")
        if audio_codes.dim() != 3:
            raise VallEValueError(f"audio_codes must be [batch, frames, levels], got shape {tuple(audio_codes.shape)}")
        batch_size, num_frames, num_levels = audio_codes.shape
        if not 1 <= num_levels <= self.config.num_codebooks:
            raise VallEValueError(
                f"audio_codes has {num_levels} levels (shape {tuple(audio_codes.shape)}), expected 1.."
                f"{self.config.num_codebooks}"
            )
        if batch_size == 0 or num_frames == 0:
            raise VallEValueError(
                f"audio_codes is empty (shape {tuple(audio_codes.shape)}), expected >= 1 row and frame"
            )
        if attention_mask is None:
            real = torch.ones(batch_size, num_frames, dtype=torch.bool, device=audio_codes.device)
        else:
            attention_mask = torch.as_tensor(attention_mask)
            if tuple(attention_mask.shape) != (batch_size, num_frames):
                raise VallEValueError(
                    f"attention_mask has shape {tuple(attention_mask.shape)}, expected [batch, frames] = "
                    f"{(batch_size, num_frames)}"
                )
            if ((attention_mask != 0) & (attention_mask != 1)).any():
                raise VallEValueError("attention_mask must hold only 0 and 1")
            real = attention_mask.to(device=audio_codes.device, dtype=torch.bool)
            if (real[:, 1:] & ~real[:, :-1]).any() or not real[:, 0].all():
                raise VallEValueError("attention_mask must be right padding: each row 1s (at least one) then 0s")
        real_codes = audio_codes[real]
        low, high = int(real_codes.min()), int(real_codes.max())
        if low < 0 or high >= self.config.codebook_size:
            raise VallEValueError(
                f"audio_codes range {low}..{high} on real frames, expected 0..{self.config.codebook_size - 1}"
            )
        # Padded frames may hold anything (e.g. a stop or pad id); they are read as code 0 and masked out later.
        codes = torch.where(real[..., None], audio_codes, 0).long()
        return codes, real.to(self.dtype)

    def _features(self, codes: torch.LongTensor, frame_mask: torch.Tensor) -> torch.Tensor:
        """Sum of the levels' codebook vectors, `[batch, input_channels, frames]`, zero on padded frames."""
        offsets = torch.arange(codes.shape[-1], device=codes.device) * self.config.codebook_size
        features = self.codebooks(codes + offsets).sum(dim=2)
        return (features * frame_mask[..., None]).transpose(1, 2)

    def codes_to_features(
        self, audio_codes: torch.LongTensor, attention_mask: torch.Tensor | None = None
    ) -> torch.FloatTensor:
        """EnCodec codes to Vocos input features (vocos/pretrained.py `Vocos.codes_to_features`).

        Args:
            audio_codes: LongTensor `[batch, frames, levels]`, 1 <= levels <= `num_codebooks`, values
                0..`codebook_size - 1` on real frames (padded frames may hold anything).
            attention_mask: optional `[batch, frames]`, 1 = real frame, right padding.

        Returns:
            FloatTensor `[batch, input_channels, frames]`: the sum over levels k of the codebook vectors of level k;
            zero on padded frames.

        Raises:
            ValueError: codes that are not an integer tensor of that shape and range, or a malformed mask.
        """
        codes, frame_mask = self._check_codes(audio_codes, attention_mask)
        return self._features(codes, frame_mask)

    def _bandwidth_ids(
        self, bandwidth_id: int | torch.Tensor | None, batch_size: int, num_levels: int
    ) -> torch.LongTensor:
        """`bandwidth_id` as a LongTensor `[batch]`, chosen from the number of levels when None."""
        if bandwidth_id is None:
            bandwidth_id = self.bandwidth_id_for_levels(num_levels)
        ids = torch.as_tensor(bandwidth_id, device=self.device)
        wrong_type = not is_integer_tensor(ids)
        if wrong_type or ids.dim() > 1 or ids.numel() not in (1, batch_size):
            raise VallEValueError(
                f"bandwidth_id must be an int or an integer tensor of 1 or {batch_size} (batch) values, got "
                f"{ids.dtype} of shape {tuple(ids.shape)}"
            )
        if ((ids < 0) | (ids >= len(self.config.bandwidths))).any():
            raise VallEValueError(
                f"bandwidth_id {ids.tolist()} out of range: expected indices 0..{len(self.config.bandwidths) - 1} "
                f"into bandwidths {self.config.bandwidths} kbps"
            )
        return ids.reshape(-1).long().expand(batch_size)

    def forward(
        self,
        audio_codes: torch.LongTensor,
        bandwidth_id: int | torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        return_dict: bool | None = None,
    ) -> VocosOutput | tuple[torch.FloatTensor]:
        """Decode EnCodec codes to a waveform (vocos/pretrained.py `Vocos.codes_to_features` then `Vocos.decode`).

        Args:
            audio_codes: LongTensor `[batch, frames, levels]`, see `codes_to_features`.
            bandwidth_id: index into `config.bandwidths` (int, or LongTensor `[batch]` for one per row); None picks
                `bandwidth_id_for_levels(levels)`.
            attention_mask: optional `[batch, frames]`, 1 = real frame, right padding. Each row then decodes exactly
                as it would alone; its samples past `length * hop_length` are zero.
            return_dict: return a `VocosOutput` (default: `config.return_dict`) or a tuple.

        Returns:
            `VocosOutput.audio_values`: FloatTensor `[batch, frames * hop_length]` at `config.sampling_rate` Hz.

        Raises:
            ValueError: bad codes or mask (see `codes_to_features`), `bandwidth_id` out of range or of the wrong
                shape, more levels than the largest bandwidth carries when `bandwidth_id` is None.
        """
        codes, frame_mask = self._check_codes(audio_codes, attention_mask)
        bandwidth = self._bandwidth_ids(bandwidth_id, codes.shape[0], codes.shape[-1])
        hidden_states = self.backbone(self._features(codes, frame_mask), bandwidth, frame_mask[:, None])
        audio = self.head(hidden_states, frame_mask)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        return VocosOutput(audio_values=audio) if return_dict else (audio,)

    @torch.no_grad()
    def decode(
        self,
        codes: torch.LongTensor,
        bandwidth_id: int | torch.Tensor | None = None,
        lengths: Sequence[int] | torch.Tensor | None = None,
    ) -> torch.FloatTensor | list[torch.FloatTensor]:
        """Decode one utterance `[frames, levels]` or a batch `[batch, frames, levels]` to waveforms (no gradients).

        Args:
            codes: LongTensor `[frames, levels]` or `[batch, frames, levels]`, values 0..`codebook_size - 1`.
            bandwidth_id: as in `forward`.
            lengths: for a batch, each row's number of real frames (right padding, see `frame_lengths`); default: all
                `frames`.

        Returns:
            For `[frames, levels]`: a 1-D waveform of `frames * hop_length` samples. For a batch: a list of 1-D
            waveforms, row i trimmed to `lengths[i] * hop_length` samples (a row of 0 frames gives empty audio).

        Raises:
            ValueError: codes not 2-D/3-D integer tensors in range, lengths given for 2-D codes, lengths not one per
                row in 0..frames, bad `bandwidth_id`.
        """
        if not isinstance(codes, torch.Tensor) or codes.dim() not in (2, 3):
            shape = tuple(codes.shape) if isinstance(codes, torch.Tensor) else type(codes).__name__
            raise VallEValueError(f"codes must be a tensor [frames, levels] or [batch, frames, levels], got {shape}")
        if codes.dim() == 2:
            if lengths is not None:
                raise VallEValueError(
                    "lengths is only for batched codes [batch, frames, levels], got codes [frames, levels]"
                )
            return self.decode(codes[None], bandwidth_id)[0]
        batch_size, num_frames = codes.shape[:2]
        lengths = frame_lengths(lengths, batch_size, num_frames)
        waveforms = [torch.zeros(0, device=codes.device) for _ in lengths]
        spoken = [row for row, length in enumerate(lengths) if length > 0]  # a row of 0 frames has nothing to decode
        if not spoken:
            return waveforms
        kept = torch.tensor([lengths[row] for row in spoken], device=codes.device)
        attention_mask = torch.arange(num_frames, device=codes.device) < kept[:, None]
        if isinstance(bandwidth_id, torch.Tensor) and bandwidth_id.dim() == 1 and len(bandwidth_id) == batch_size:
            bandwidth_id = bandwidth_id[spoken]  # one per row: those of the rows decoded
        audio = self(codes[spoken], bandwidth_id=bandwidth_id, attention_mask=attention_mask,
                     return_dict=True).audio_values
        for row, waveform in zip(spoken, audio, strict=True):
            waveforms[row] = waveform[: lengths[row] * self.config.hop_length]
        return waveforms


def _resolve_files(name_or_path: str | Path, hub_kwargs: dict) -> tuple[Path, Path]:
    """`config.yaml` and `pytorch_model.bin` from a local directory, or downloaded from the Hub repo `name_or_path`."""
    local = Path(name_or_path).expanduser()
    if local.is_dir():
        files = local / CONFIG_NAME, local / WEIGHTS_NAME
        for file in files:
            if not file.is_file():
                raise VallEFileNotFoundError(
                    f"{file} not found: a Vocos checkpoint holds {CONFIG_NAME} and {WEIGHTS_NAME}"
                )
        return files
    # Hub repo ids never start like a path; a missing local directory should not turn into a Hub lookup.
    if local.exists() or str(name_or_path).startswith(("/", ".", "~")):
        raise VallEFileNotFoundError(f"{name_or_path} is not a directory holding {CONFIG_NAME} and {WEIGHTS_NAME}")
    instead = (f"give a local copy of {DEFAULT_VOCODER}, tiny-random (a test decoder that makes noise) or none (decode "
               f"with EnCodec; None in Python), {either_caller('vocoder')}")
    return tuple(hub_file(str(name_or_path), name, "the Vocos decoder", instead, **hub_kwargs)
                 for name in (CONFIG_NAME, WEIGHTS_NAME))


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The checkpoint's dict of tensors; OSError/ValueError naming `path` when it is not one."""
    try:
        state_dict = load_tensors(path)
    except Exception as error:  # torch.load raises pickle, zip, EOF or runtime errors for a corrupt file
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint ({type(error).__name__}: {reason})"
        ) from None
    if not isinstance(state_dict, dict) or not all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in state_dict.items()
    ):
        raise CheckpointError(f"{path} holds a {type(state_dict).__name__}, not a Vocos state dict (name -> tensor)")
    return state_dict


def _rename(key: str, to_original: bool = False) -> str:
    """An original state-dict key in our naming (or back, with `to_original`)."""
    for original, ours in KEY_RENAMES:
        source, target = (ours, original) if to_original else (original, ours)
        match = re.fullmatch(re.escape(source).replace(r"\*", r"([^.]+)"), key)
        if match:
            return target.replace("*", "{}").format(*match.groups())
    return key


def load_original_vocos(name_or_path: str | Path = DEFAULT_VOCODER, **hub_kwargs) -> VocosModel:
    """Load an original Vocos checkpoint (`config.yaml` + `pytorch_model.bin`, the Hub repo layout) as a VocosModel.

    Source layout: vocos/pretrained.py `Vocos.from_pretrained`. `feature_extractor.encodec.*` weights (the frozen
    EnCodec model) are ignored; `num_codebooks` is read from the codebook table's size.

    Args:
        name_or_path: a local directory, or a Hub repo id downloaded with `huggingface_hub.hf_hub_download` (so
            HF_ENDPOINT, HF_HUB_OFFLINE and the cache apply).
        hub_kwargs: passed to `hf_hub_download` (e.g. `revision`, `cache_dir`); unused for a local directory.

    Returns:
        The model in eval mode, float32, on CPU.

    Raises:
        VallEFileNotFoundError: a local directory without one of the two files.
        ModelNotFoundError: the download failed.
        CheckpointError: `pytorch_model.bin` is not a readable PyTorch checkpoint, not a dict of tensors, or its
            keys/shapes do not match the config (the first missing key, unexpected key or shape mismatch is named).
        CheckpointError: also a bad config (see `VocosConfig.from_original_yaml`).
    """
    config_file, weights_file = _resolve_files(name_or_path, hub_kwargs)
    config = VocosConfig.from_original_yaml(config_file)
    original = _read_state_dict(weights_file)
    state_dict = {_rename(key): value for key, value in original.items() if not key.startswith(IGNORED_PREFIX)}
    table = state_dict.get("codebooks.weight")
    if table is None:
        raise CheckpointError(f"{weights_file}: missing key 'feature_extractor.codebook_weights'")
    if table.dim() != 2 or table.shape[0] % config.codebook_size or table.shape[1] != config.input_channels:
        raise CheckpointError(
            f"{weights_file}: feature_extractor.codebook_weights has shape {tuple(table.shape)}, expected "
            f"[levels * {config.codebook_size}, {config.input_channels}]"
        )
    config.num_codebooks = table.shape[0] // config.codebook_size
    model = VocosModel(config)
    expected = model.state_dict()
    for key in expected:
        if key not in state_dict:
            raise CheckpointError(f"{weights_file}: missing key {_rename(key, to_original=True)!r}")
    for key, value in state_dict.items():
        if key not in expected:
            raise CheckpointError(f"{weights_file}: unexpected key {_rename(key, to_original=True)!r}")
        if value.shape != expected[key].shape:
            raise CheckpointError(
                f"{weights_file}: {_rename(key, to_original=True)!r} has shape {tuple(value.shape)}, "
                f"the config expects {tuple(expected[key].shape)}"
            )
    model.load_state_dict(state_dict)
    return model.eval()


def tiny_random_vocos(seed: int = 0) -> VocosModel:
    """A small random Vocos with the released STFT layout (n_fft 1280, hop 320), for tests and `tiny-random`.

    Unlike a freshly initialised Vocos, whose AdaLayerNorm tables are all ones and zeros, every bandwidth id gets its
    own random scale and shift, so the output depends on the bandwidth as a trained model's does. Deterministic for a
    given `seed`; the global RNG state is left untouched. It makes noise, not speech.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = VocosModel(VocosConfig(hidden_size=32, intermediate_size=64, num_layers=2, num_codebooks=8)).eval()
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, VocosAdaLayerNorm):
                    module.scale.add_(0.5 * torch.randn_like(module.scale))
                    module.shift.add_(0.5 * torch.randn_like(module.shift))
    return model
