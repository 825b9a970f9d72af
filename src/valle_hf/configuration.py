"""Configuration of the VALL-E model (e-c-k-e-r/vall-e flavour, "ar+nar-llama-8") and of its generation.

Every fact the model computes with lives here: the sizes, the unified id space, the tasks, the original's level rules
(which RVQ levels each pass reads), the codec layout (read from `codec_config`), and the sampling settings of the
original CLI (`VallEGenerationConfig`).
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Iterable
from pathlib import Path

import torch
from transformers import EncodecConfig, GenerationConfig, LlamaConfig, PretrainedConfig
from transformers.activations import ACT2FN
from transformers.generation.configuration_utils import ALL_CACHE_IMPLEMENTATIONS

from .errors import CheckpointError, VallEValueError, one_line, shown
from .hardware import NAR_DTYPES
from .hub import cached_hub_file, check_model_name, hub_location
from .vocos import ENCODEC_CODEBOOK_SIZE, VocosConfig

SUPPORTED_CAPABILITIES = ("ar", "nar")
AUDIO_BACKENDS = ("vocos", "encodec")
# The tasks a forward pass runs, in the index order a per-row `task` tensor uses.
TASKS = ("tts", "stt")
# Settings that only mean something for text-to-speech: speech to text runs the AR alone, on audio without a prompt,
# and returns phoneme ids.
TTS_ONLY_SETTINGS = ("max_levels", "nar_temperature", "nar_min_temperature", "nar_dtype", "input_prompt_length",
                     "input_prompt_prefix", "prefix_silence", "audio_backend")
# The codec of every original checkpoint: EnCodec 24 kHz, one frame per 320 samples (75 frames/s), 1024 codes per
# RVQ level; the released model reads 8 levels (6 kbps).
CODEC_SAMPLING_RATE = 24000
CODEC_HOP_LENGTH = 320
CODEC_CODEBOOK_SIZE = ENCODEC_CODEBOOK_SIZE  # vocos.py's: it cannot import this module (which imports it)
# Its weights on the Hub.
DEFAULT_CODEC = "facebook/encodec_24khz"
# Level 0..7 codes of the original's "silence" frame (`vall_e/emb/qnt.py:get_silence`).
SILENCE_CODES = (62, 424, 786, 673, 622, 986, 570, 948)
# transformers' `pipeline()` takes a config's `custom_pipelines` before its own task classes. Saved with the model's
# code, they make the remote-code text-to-speech and speech-recognition pipelines VALL-E's (`valle_hf.pipeline`);
# where the package itself is imported, the pipelines it registers serve and these are not read.
CUSTOM_PIPELINES = {
    **{task: {"impl": "pipeline.VallETextToAudioPipeline", "pt": ["AutoModelForTextToWaveform"]}
       for task in ("text-to-speech", "text-to-audio")},
    "automatic-speech-recognition": {"impl": "pipeline.VallESpeechRecognitionPipeline",
                                     "pt": ["AutoModelForSpeechSeq2Seq"]},
}
_REMOTE_CODE = not __name__.startswith("valle_hf.")


class VallEConfig(PretrainedConfig):
    r"""Hyper-parameters of the unified AR+NAR VALL-E decoder, with the released ar+nar-llama-8 values as defaults.

    The backbone is a stock Llama decoder (GeGLU MLP, RMSNorm, RoPE, full multi-head attention); the model around it
    embeds text, audio-prompt and response segments from separate tables and predicts one RVQ level per pass through
    its own classifier head.

    Besides the original's own token ids (text ids 0..255, audio codes 0..1023, stop 1024) the model reads one
    *unified* id space in `input_ids`, so that a whole sequence fits in one tensor that `generate()` can cache, pad and
    grow. Ids below the response vocabulary are response tokens (audio codes for TTS, text ids for STT); everything
    the prefix needs sits above the audio vocabulary:

    ==========================  =========================================================
    `text_token_offset + t`     text (phoneme) id `t` of a TTS prompt
    `separator_token_id`        the learned separator between segments
    `level_token_offset + k`    the "RVQ level k" token
    `prompt_frame_token_id`     one frame of the voice prompt (codes come in `prompt_codes`)
    `audio_frame_token_id`      one multi-level audio frame (codes come in `audio_codes`)
    `pad_token_id`              padding
    ==========================  =========================================================

    Sub-configs: `codec_config` (EnCodec 24 kHz, which encodes prompts; its sampling rate and hop length are the
    model's), `vocoder_config` (the original's Vocos decoder, or None), and `audio_backend` ("vocos" or "encodec")
    chooses the decoder. `text_head` is False for a checkpoint exported without the STT head. `num_tasks`,
    `num_languages` and `num_tones` record the sizes of the original's task, language and tone tables, which TTS and
    STT never read (the conversion drops them); `version` is the original's model version (5 and up are supported).
    """

    model_type = "valle"
    sub_configs = {"codec_config": EncodecConfig, "vocoder_config": VocosConfig}

    def __init__(
        self,
        hidden_size: int = 1024,
        num_hidden_layers: int = 12,
        num_attention_heads: int = 16,
        intermediate_size: int | None = None,
        hidden_act: str = "gelu",
        rms_norm_eps: float = 1e-6,
        rope_theta: float = 10000.0,
        max_position_embeddings: int = 22500,
        attention_dropout: float = 0.0,
        initializer_range: float = 0.02,
        text_vocab_size: int = 256,
        audio_vocab_size: int = CODEC_CODEBOOK_SIZE,
        num_rvq_levels: int = 8,
        num_tasks: int = 9,
        num_languages: int = 4,
        num_tones: int = 1,
        version: int = 5,
        capabilities: list[str] | tuple[str, ...] = SUPPORTED_CAPABILITIES,
        audio_embedding_sums: bool = True,
        split_classifiers: bool = True,
        unified_position_ids: bool = False,
        text_bos_token_id: int = 1,
        text_eos_token_id: int = 2,
        silence_codes: list[int] | None = None,
        codec_config: dict | EncodecConfig | None = None,
        vocoder_config: dict | VocosConfig | None = None,
        audio_backend: str | None = None,
        text_head: bool = True,
        **kwargs,
    ):
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = num_attention_heads  # the original always uses full multi-head attention
        self.intermediate_size = intermediate_size if intermediate_size is not None else 4 * hidden_size
        self.hidden_act = hidden_act
        self.rms_norm_eps = rms_norm_eps
        self.rope_theta = rope_theta
        self.max_position_embeddings = max_position_embeddings
        self.attention_dropout = attention_dropout
        self.initializer_range = initializer_range
        self.text_vocab_size = text_vocab_size
        self.audio_vocab_size = audio_vocab_size
        self.num_rvq_levels = num_rvq_levels
        self.num_tasks = num_tasks
        self.num_languages = num_languages
        self.num_tones = num_tones
        self.version = version
        self.capabilities = list(capabilities)
        self.audio_embedding_sums = audio_embedding_sums
        self.split_classifiers = split_classifiers
        self.unified_position_ids = unified_position_ids
        self.text_bos_token_id = text_bos_token_id
        self.text_eos_token_id = text_eos_token_id
        # EnCodec's code of silence at each level: a model of fewer levels reads the first ones (`validate` refuses a
        # num_rvq_levels that is no integer)
        silence = SILENCE_CODES[:num_rvq_levels] if isinstance(num_rvq_levels, int) else SILENCE_CODES
        self.silence_codes = list(silence_codes if silence_codes is not None else silence)
        self.codec_config = EncodecConfig(**codec_config) if isinstance(codec_config, dict) else codec_config
        if self.codec_config is None:
            self.codec_config = EncodecConfig()
        self.vocoder_config = VocosConfig(**vocoder_config) if isinstance(vocoder_config, dict) else vocoder_config
        # The original decodes with Vocos (its default `audio_backend`); a model without one decodes with EnCodec.
        self.audio_backend = audio_backend or ("vocos" if self.vocoder_config is not None else "encodec")
        self.text_head = text_head
        for derived in ("frame_rate", "sampling_rate", "codec_bandwidth"):  # read from codec_config now
            kwargs.pop(derived, None)
        self.validate()  # before the token ids below are computed from these fields
        _check_weights_dtype(kwargs.get("dtype") or kwargs.get("torch_dtype"))
        self.head_dim = hidden_size // num_attention_heads
        kwargs.setdefault("pad_token_id", self.prompt_frame_token_id + 2)
        kwargs.setdefault("eos_token_id", self.stop_token_id)
        kwargs.setdefault("tie_word_embeddings", False)
        custom_pipelines = kwargs.pop("custom_pipelines", None)
        super().__init__(**kwargs)
        if _REMOTE_CODE and custom_pipelines:
            self.custom_pipelines = custom_pipelines

    @classmethod
    def get_config_dict(cls, pretrained_model_name_or_path, **kwargs) -> tuple[dict, dict]:
        """`PretrainedConfig.get_config_dict`, with a Hub model's config.json checked where transformers fetched it
        (`check_hub_config_file`), and a folder's (in `subfolder`) where it lies: its reader fails with a bare error on
        a file that is not a JSON object and takes a config of another model type, or of none. Raises `CheckpointError`
        naming the file or the repository, and `ModelNotFoundError` for a name that is neither a path nor a Hub id
        (`check_model_name`); `CheckpointError` too for a folder or repository without config.json."""
        name = check_model_name(pretrained_model_name_or_path, "the model")
        folder = Path(name) / (kwargs.get("subfolder") or "")
        try:
            settings, unused = super().get_config_dict(name, **kwargs)
        finally:  # also when transformers' reader failed: the check says what is wrong with the file
            if folder.is_dir() and (folder / "config.json").is_file():  # a folder's, read by a config alone too
                _check_config_file(folder / "config.json", str(folder / "config.json"), None)
            elif not os.path.exists(name):
                check_hub_config_file(name, "config.json", **kwargs)
        if not settings:  # transformers reads a missing config.json as no settings: VallEConfig's defaults, no model's
            where = (str(folder / "config.json") if os.path.exists(name) else hub_location(
                name, (Path(kwargs.get("subfolder") or "") / "config.json").as_posix(), kwargs.get("revision")))
            raise CheckpointError(f"{where} not found: it is no converted VALL-E model; give a folder (or Hub "
                                  "repository) that save_pretrained or python -m valle_hf.convert wrote")
        return settings, unused

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs):
        """`PretrainedConfig.from_dict`. Read by `AutoConfig` from a folder (`name_or_path`), as transformers'
        `pipeline()` reads a model's before it tries the task's model classes, the folder's files are checked first
        (`check_config_files`, raising `CheckpointError` naming the file): the pipeline wrapped the model's refusal of
        them in a message of many lines, with tracebacks, and reported a field out of range without the file. Read
        from a Hub model's config.json, a field out of range raises `CheckpointError` naming it (AutoConfig does not
        say which revision it read)."""
        folder = kwargs.get("name_or_path")
        if folder is not None and os.path.isdir(folder):
            check_config_files(Path(folder))
        try:
            return super().from_dict(config_dict, **kwargs)
        except VallEValueError as error:  # a field out of range, in a Hub model's config.json that AutoConfig read
            if not folder or os.path.exists(folder):
                raise
            raise CheckpointError(f"{folder}/config.json cannot be read ({one_line(error, 200)}): fix it, convert "
                                  "the model again, or download it again") from None

    def to_dict(self) -> dict:
        """`PretrainedConfig.to_dict`, with `CUSTOM_PIPELINES` when the model's code is saved with it."""
        output = super().to_dict()
        output.pop("custom_pipelines", None)  # transformers' pipeline() turns their class names into classes
        if self._auto_class is not None:
            output["custom_pipelines"] = copy.deepcopy(CUSTOM_PIPELINES)
        return output

    def save_pretrained(self, save_directory, **kwargs) -> None:
        """`PretrainedConfig.save_pretrained`; with the model's code (`register_for_auto_class`), the pipeline's code
        too, which `CUSTOM_PIPELINES` names."""
        super().save_pretrained(save_directory, **kwargs)
        if self._auto_class is not None:
            from transformers.dynamic_module_utils import custom_object_save

            from .pipeline import VallETextToAudioPipeline

            custom_object_save(VallETextToAudioPipeline, save_directory)

    # ---------------------------------------------------------------- codec layout
    @property
    def sampling_rate(self) -> int:
        """Audio samples per second of every waveform the model reads or writes (the codec's)."""
        return self.codec_config.sampling_rate

    @property
    def hop_length(self) -> int:
        """Samples per codec frame."""
        return self.codec_config.hop_length

    @property
    def frame_rate(self) -> int:
        """Codec frames (AR steps) per second of audio."""
        return self.sampling_rate // self.hop_length

    @property
    def codec_bandwidth(self) -> float:
        """The codec bandwidth (kbps) that yields `num_rvq_levels` levels: 0.75 kbps per level at 75 frames/s."""
        return self.num_rvq_levels * self.frame_rate * math.log2(self.audio_vocab_size) / 1000

    def seconds_to_frames(self, seconds: float) -> int:
        """Whole codec frames in `seconds` of audio, counted as the original does: int(frame_rate * seconds)."""
        return int(self.frame_rate * seconds)

    # ---------------------------------------------------------------- unified id space
    @property
    def stop_token_id(self) -> int:
        """The AR's stop token: one past the last audio code (class 1024 of the level-0 head)."""
        return self.audio_vocab_size

    @property
    def text_token_offset(self) -> int:
        """Unified id of text (phoneme) id 0; text id t is `text_token_offset + t`."""
        return self.audio_vocab_size + 1

    @property
    def separator_token_id(self) -> int:
        """Unified id of the learned separator between segments."""
        return self.text_token_offset + self.text_vocab_size

    @property
    def level_token_offset(self) -> int:
        """Unified id of the "RVQ level 0" token; level k is `level_token_offset + k`."""
        return self.separator_token_id + 1

    @property
    def prompt_frame_token_id(self) -> int:
        """Unified id of a voice-prompt frame placeholder (its codes travel in `prompt_codes`)."""
        return self.level_token_offset + self.num_rvq_levels

    @property
    def audio_frame_token_id(self) -> int:
        """Unified id of a multi-level audio frame placeholder (its codes travel in `audio_codes`)."""
        return self.prompt_frame_token_id + 1

    # ---------------------------------------------------------------- the original's level rules
    def summed_levels(self, level: int) -> int:
        """How many RVQ levels of a prompt or NAR-response frame are embedded when predicting `level`.

        The original's off-by-one, kept because the weights were trained with it (`vall_e/models/base.py`,
        `AudioEmbedding` with sums): at level k >= 2 the levels 0..k-2 are summed (level k-1 itself is never read), at
        k <= 1 level 0 alone.
        """
        return max(level - 1, 1)

    @property
    def num_prompt_tables(self) -> int:
        """Prompt embedding tables the model can reach (levels 0..L-3): `summed_levels` never reads the last two."""
        return self.num_rvq_levels - 2

    @property
    def num_response_tables(self) -> int:
        """Response embedding tables the model can reach: table 0 (AR, level 0 and the stop token) and tables
        1..L-2 (NAR inputs, table i embedding level i-1)."""
        return self.num_rvq_levels - 1

    @property
    def stt_levels(self) -> int:
        """RVQ levels of the STT audio the model reads: 0..L-3 (`vall_e/models/base.py`, the stt branch of
        `inputs_to_embeddings`)."""
        return self.num_rvq_levels - 2

    @property
    def num_heads(self) -> int:
        """Classifier heads: one per RVQ level, plus the text head (STT) when the checkpoint has one."""
        return self.num_rvq_levels + (1 if self.text_head else 0)

    def head_size(self, level: int) -> int:
        """Width of the classifier for RVQ `level` (0..7), or of the text head for `level = num_rvq_levels` (STT)."""
        if level == self.num_rvq_levels:
            return self.text_vocab_size
        return self.audio_vocab_size + 1 if level == 0 else self.audio_vocab_size

    # ---------------------------------------------------------------- attention
    @PretrainedConfig._attn_implementation.setter
    def _attn_implementation(self, value: str | dict | None) -> None:
        """A requested attention implementation is the backbone's; the codec and the vocoder, which have no attention
        layers, keep their own (transformers would hand them a plain string, and EnCodec refuses "sdpa"). A dict
        keyed by sub-config sets them explicitly, as in transformers."""
        PretrainedConfig._attn_implementation.fset(self, value if isinstance(value, dict) else {"": value})

    # ---------------------------------------------------------------- backbone and validation
    def backbone_config(self) -> LlamaConfig:
        """The stock `LlamaConfig` the original builds (vocab unused: the model always feeds `inputs_embeds`)."""
        return LlamaConfig(
            vocab_size=1,
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            num_key_value_heads=self.num_attention_heads,
            hidden_act=self.hidden_act,
            max_position_embeddings=self.max_position_embeddings,
            rms_norm_eps=self.rms_norm_eps,
            rope_parameters={"rope_type": "default", "rope_theta": self.rope_theta},
            attention_dropout=self.attention_dropout,
            initializer_range=self.initializer_range,
            attention_bias=False,
            mlp_bias=False,
            tie_word_embeddings=False,
            pad_token_id=None,
            bos_token_id=None,
            eos_token_id=None,
            attn_implementation=self._attn_implementation,
        )

    def validate(self) -> None:
        """Reject values the model cannot compute, naming the field (the original would fail deep inside torch)."""
        for name in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                     "text_vocab_size", "audio_vocab_size", "num_rvq_levels", "max_position_embeddings", "num_tasks",
                     "num_languages", "num_tones", "version"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise VallEValueError(f"VallEConfig.{name} must be a positive integer, got {shown(value)}")
        if self.hidden_size % self.num_attention_heads:
            raise VallEValueError(
                f"VallEConfig.hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                f"({self.num_attention_heads})"
            )
        if self.num_rvq_levels < 3:
            raise VallEValueError(f"VallEConfig.num_rvq_levels must be at least 3, got {self.num_rvq_levels}")
        if self.version < 5:
            raise VallEValueError(f"VallEConfig.version {self.version} is not supported (only version >= 5 models)")
        unknown = sorted(set(self.capabilities) - set(SUPPORTED_CAPABILITIES))
        missing = [f"(missing {name})" for name in SUPPORTED_CAPABILITIES if name not in self.capabilities]
        if unknown or missing:
            raise VallEValueError(
                f"VallEConfig.capabilities {self.capabilities} is not supported: this implementation runs "
                f"'ar'+'nar' models (unsupported: {unknown or missing})"
            )
        if not self.audio_embedding_sums or not self.split_classifiers:
            raise VallEValueError(
                "VallEConfig: only audio_embedding_sums=True and split_classifiers=True models are supported "
                "(the released ar+nar-llama-8 configuration)"
            )
        for name in ("rms_norm_eps", "rope_theta"):
            if not _is_number(getattr(self, name)) or getattr(self, name) <= 0:
                raise VallEValueError(f"VallEConfig.{name} must be a positive number, got {getattr(self, name)!r}")
        if not _is_number(self.attention_dropout) or not 0 <= self.attention_dropout < 1:
            raise VallEValueError(f"VallEConfig.attention_dropout must be a probability in [0, 1), got "
                                  f"{self.attention_dropout!r}")
        if self.hidden_act not in ACT2FN:
            raise VallEValueError(f"VallEConfig.hidden_act {self.hidden_act!r} is not an activation transformers "
                                  "knows (the released model's is 'gelu')")
        codec = self.codec_config
        layout = (codec.sampling_rate, codec.hop_length, codec.codebook_size, codec.audio_channels)
        if layout != (CODEC_SAMPLING_RATE, CODEC_HOP_LENGTH, self.audio_vocab_size, 1):
            raise VallEValueError(
                f"VallEConfig.codec_config has sampling_rate, hop_length, codebook_size, channels = {layout}; VALL-E "
                f"reads EnCodec 24 kHz codes: ({CODEC_SAMPLING_RATE}, {CODEC_HOP_LENGTH}, {self.audio_vocab_size}, 1)"
            )
        if self.audio_backend not in AUDIO_BACKENDS:
            raise VallEValueError(
                f"VallEConfig.audio_backend must be one of {AUDIO_BACKENDS}, got {self.audio_backend!r}"
            )
        if self.audio_backend == "vocos" and self.vocoder_config is None:
            raise VallEValueError(
                "VallEConfig.audio_backend='vocos' needs a vocoder_config (convert with a Vocos decoder)"
            )
        if len(self.silence_codes) != self.num_rvq_levels:
            raise VallEValueError(
                f"VallEConfig.silence_codes needs one code per RVQ level ({self.num_rvq_levels}), "
                f"got {len(self.silence_codes)}"
            )
        if not all(isinstance(code, int) and 0 <= code < self.audio_vocab_size for code in self.silence_codes):
            raise VallEValueError(f"VallEConfig.silence_codes must be codes in 0..{self.audio_vocab_size - 1}, got "
                                  f"{self.silence_codes}")
        for name in ("text_bos_token_id", "text_eos_token_id"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < self.text_vocab_size:
                raise VallEValueError(f"VallEConfig.{name} must be a phoneme id in 0..{self.text_vocab_size - 1}, "
                                      f"got {shown(value)}")


def _check_weights_dtype(dtype) -> None:
    """Refuse a config's `dtype` (the weights' as saved, by name) that is no floating torch dtype: transformers looked
    the name up in torch (an AttributeError for "float8"), and refused an integer one at load without naming it."""
    if isinstance(dtype, str) and not getattr(getattr(torch, dtype, None), "is_floating_point", False):
        raise VallEValueError(f"VallEConfig.dtype {dtype!r} is no floating-point torch dtype: the weights' dtype as "
                              "saved, such as 'float32', 'bfloat16' or 'float16'")


# The original's sampler settings that transformers has no field for (or names differently), with the values that
# switch them off.
VALLE_GENERATION_DEFAULTS = {
    "min_temperature": -1.0,
    "repetition_penalty_decay": 0.0,
    "repetition_penalty_mode": "per_occurrence",
    "repetition_penalty_decay_mode": "nearer",
    "min_p_keep": 1,
    "stop_length_penalty": 0.0,
    "dry_multiplier": 0.0,
    "dry_base": 1.75,
    "dry_allowed_length": 2,
    "dry_sequence_breakers": [],
    "mirostat_tau": 0.0,
    "mirostat_eta": 0.1,
    "entropix": False,
    "sampler_order": "original",
    "nar_temperature": 0.0,
    "nar_min_temperature": -1.0,
    "nar_dtype": "auto",
    "max_levels": None,
    "prefix_silence": 0.0,
    "input_prompt_length": None,
    "input_prompt_prefix": False,
    "refine_on_stop": False,
    "layer_skip": False,
    "layer_skip_exit_layer": -1,
    "layer_skip_entropy_threshold": 0.1,
    "layer_skip_varentropy_threshold": 0.1,
    "output_audio": True,
    "audio_backend": None,
}


class SettingError(VallEValueError):
    """A generation setting outside its allowed range; `setting` names it, so the CLI can name its flag instead."""

    def __init__(self, setting: str, value, rule: str):
        self.setting, self.value, self.rule = setting, value, rule
        super().__init__(f"{setting}={shown(value)} is not allowed: it must be {rule}")


# The largest magnitude a setting may have: the samplers compute in float32 (1e39 overflowed there).
_MAX_SETTING = 3.4e38


def _is_array_scalar(value) -> bool:
    """Whether `value` is a numpy or torch scalar (0-d: `np.float32(0.5)`, `torch.tensor(0.5)`), which `.item()`
    makes the Python value it holds."""
    return getattr(value, "ndim", None) == 0 and callable(getattr(value, "item", None))


def python_values(settings: dict) -> dict:
    """`settings` with numpy and torch scalars (a temperature from `np.linspace` or `torch.linspace`, say), also
    inside lists, as the Python numbers they hold: the rules read Python numbers, and a generation config saves them
    as JSON."""
    def plain(value):
        if _is_array_scalar(value):
            return value.item()
        return type(value)(plain(item) for item in value) if isinstance(value, (list, tuple)) else value
    return {name: plain(value) for name, value in settings.items()}


def decoding_by_temperature(settings: dict) -> dict:
    """`settings` with the `do_sample` that a `temperature` given without it says, as in the original: > 0 samples,
    0 decodes greedily. transformers keeps `do_sample` (False by default) and ignores such a temperature, so a
    temperature given to a config or call that decodes greedily would change nothing, without a word."""
    temperature = settings.get("temperature")
    if settings.get("do_sample") is None and _is_number(temperature):
        return {**settings, "do_sample": temperature > 0}
    return settings


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) <= _MAX_SETTING


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_token_id(value) -> bool:
    return _is_int(value) and value >= 0


def _is_token_ids(value) -> bool:
    return isinstance(value, (list, tuple)) and all(map(_is_token_id, value))


_TOKEN_IDS = ("a list of token ids (integers >= 0)", _is_token_ids)
# The end tokens of a run: transformers reads floats and bools as ids (2.0 as 2, True as 1), a negative id as "never
# stop", and a list with none indexed an empty tensor
_END_TOKENS = ("a token id (an integer >= 0) or a non-empty list of them",
               lambda v: _is_token_id(v) or (_is_token_ids(v) and len(v) > 0))


def _is_temperature(value) -> bool:
    """0 (greedy) or at least `MIN_TEMPERATURE`: logits divided by less overflow float32, and sampling fails."""
    return _is_number(value) and (value == 0 or value >= MIN_TEMPERATURE)


def is_seconds(value) -> bool:
    """Whether `value` is a length in seconds a setting may have: a number (not a bool, not NaN) in [0,
    `MAX_SETTING_SECONDS`]."""
    return _is_number(value) and 0 <= value <= MAX_SETTING_SECONDS


def is_prompt_length(value) -> bool:
    """Whether `value` is a voice prompt's length a setting may have: None or 0 (the whole prompt), or seconds
    (`is_seconds`) that hold at least one codec frame, as the original counts them (int(75 * seconds))."""
    return value is None or (is_seconds(value) and (value == 0 or int(value * FRAME_RATE) >= 1))


# Codec frames per second: every model's, its codec's layout being EnCodec 24 kHz's.
FRAME_RATE = CODEC_SAMPLING_RATE // CODEC_HOP_LENGTH
# A temperature below this (but 0) is refused; the dynamic temperature is kept above it too.
MIN_TEMPERATURE = 1e-6
# The most seconds of audio a length setting may ask for (prefix silence, a prompt's length): far beyond any model's
# positions, and still memory a machine has.
MAX_SETTING_SECONDS = 3600
# The KV caches transformers can build ("paged", continuous batching's, it accepts beside its list).
CACHE_IMPLEMENTATIONS = (*ALL_CACHE_IMPLEMENTATIONS, "paged")
# The longest repeat DRY may be told to allow, in tokens (a longer one allocates its match table for nothing).
MAX_DRY_ALLOWED_LENGTH = 65536

# A share of the probability mass that nucleus-like samplers keep
_MASS = ("a number in (0, 1] (1 = off)", lambda v: _is_number(v) and 0 < v <= 1)
# A probability below which a token is dropped: transformers applies one strictly between 0 and 1, ignores any other
# without a word
_CUTOFF = ("a number in [0, 1) (0 = off)", lambda v: _is_number(v) and 0 <= v < 1)

# A setting that is on or off: a string ("no") or a number was taken for True
_FLAG = ("True or False", lambda v: isinstance(v, bool))

# Every setting `check_settings` knows: (the rule, as the error message states it; the test).
SETTING_RULES = {
    "temperature": (f"0 (greedy) or a finite number >= {MIN_TEMPERATURE:g}", _is_temperature),
    "min_temperature": ("a finite number (< 0 = off)", _is_number),
    "top_k": ("an integer >= 0 (0 = off)", lambda v: _is_int(v) and v >= 0),
    "top_p": _MASS,
    "min_p": ("a number in [0, 1] (0 = off)", lambda v: _is_number(v) and 0 <= v <= 1),
    "min_p_keep": ("an integer >= 1 (the original kept 32)", lambda v: _is_int(v) and v >= 1),
    "repetition_penalty": ("a finite number >= 1 (1 = off)", lambda v: _is_number(v) and v >= 1),
    "repetition_penalty_decay": ("a finite number (0 = off)", _is_number),
    "repetition_penalty_mode": ("'per_occurrence' (the original's) or 'per_token' (transformers')",
                                lambda v: v in ("per_occurrence", "per_token")),
    "repetition_penalty_decay_mode": ("'nearer' or 'original'", lambda v: v in ("nearer", "original")),
    "stop_length_penalty": ("a finite number (0 = off)", _is_number),
    "dry_multiplier": ("a finite number >= 0 (0 = off)", lambda v: _is_number(v) and v >= 0),
    "dry_base": ("a finite number >= 1", lambda v: _is_number(v) and v >= 1),
    "dry_allowed_length": (f"an integer in [1, {MAX_DRY_ALLOWED_LENGTH}]",
                           lambda v: _is_int(v) and 1 <= v <= MAX_DRY_ALLOWED_LENGTH),
    "dry_sequence_breakers": _TOKEN_IDS,
    "mirostat_tau": ("a finite number >= 0 (0 = off)", lambda v: _is_number(v) and v >= 0),
    "mirostat_eta": ("a finite number >= 0", lambda v: _is_number(v) and v >= 0),
    "entropix": _FLAG,
    "sampler_order": ("'original' or 'transformers'", lambda v: v in ("original", "transformers")),
    "nar_temperature": (f"0 (greedy) or a finite number >= {MIN_TEMPERATURE:g}", _is_temperature),
    "nar_min_temperature": ("a finite number (< 0 = off)", _is_number),
    "nar_dtype": ("'auto', 'float32', 'bfloat16' or 'float16'", lambda v: v in NAR_DTYPES),
    "max_levels": ("None or an integer >= 0 (0 = level 0 only)", lambda v: v is None or (_is_int(v) and v >= 0)),
    "prefix_silence": (f"a number of seconds in [0, {MAX_SETTING_SECONDS}]", is_seconds),
    "input_prompt_length": (f"None or 0 (the whole prompt), or a number of seconds in [1/{FRAME_RATE}, "
                            f"{MAX_SETTING_SECONDS}] (one frame at least), or a list of them (one per row)",
                            lambda v: all(map(is_prompt_length, v if isinstance(v, (list, tuple)) else [v]))),
    "input_prompt_prefix": _FLAG,
    "refine_on_stop": _FLAG,
    "layer_skip": _FLAG,
    "layer_skip_exit_layer": ("-1 (all layers) or the 0-based index of the last layer to run",
                              lambda v: _is_int(v) and v >= -1),
    "layer_skip_entropy_threshold": ("a finite number of bits >= 0", lambda v: _is_number(v) and v >= 0),
    "layer_skip_varentropy_threshold": ("a finite number of bits >= 0", lambda v: _is_number(v) and v >= 0),
    "output_audio": _FLAG,
    "audio_backend": (f"None or one of {AUDIO_BACKENDS}", lambda v: v is None or v in AUDIO_BACKENDS),
    "num_beams": ("an integer >= 1 (1 = no beam search)", lambda v: v is None or (_is_int(v) and v >= 1)),
    "max_new_tokens": ("an integer >= 1 (AR steps; 75 steps = 1 s)", lambda v: _is_int(v) and v >= 1),
    "num_return_sequences": ("an integer >= 1 (takes per input row)", lambda v: _is_int(v) and v >= 1),
    "do_sample": _FLAG,
    "cache_implementation": (f"None (the default: a dynamic cache) or one of {', '.join(CACHE_IMPLEMENTATIONS)}",
                             lambda v: v in CACHE_IMPLEMENTATIONS),
    # transformers' own fields that it takes unchecked: a string or a list failed deep in its loop, NaN passed
    "length_penalty": ("a finite number (beam search divides a beam's score by its length to this power)",
                       _is_number),
    "min_new_tokens": ("an integer >= 0 (AR steps before the stop token may come)", lambda v: _is_int(v) and v >= 0),
    "max_length": ("an integer >= 1 (input and AR steps; max_new_tokens takes precedence)",
                   lambda v: _is_int(v) and v >= 1),
    "min_length": ("an integer >= 0 (input and AR steps)", lambda v: _is_int(v) and v >= 0),
    "max_time": ("a number of seconds >= 0", lambda v: _is_number(v) and v >= 0),  # 0: the first step only
    "no_repeat_ngram_size": ("an integer >= 0 (0 = off)", lambda v: _is_int(v) and v >= 0),
    "exponential_decay_length_penalty": ("a pair (the AR step it starts at, an integer >= 0; the factor the end "
                                         "token's score grows by at each step after it, a finite number)",
                                         lambda v: isinstance(v, (list, tuple)) and len(v) == 2 and _is_int(v[0])
                                         and v[0] >= 0 and _is_number(v[1])),
    "typical_p": _MASS,  # transformers' own samplers: 0 failed as their ValueError, deep in the loop
    "top_h": ("a number in (0, 1] (the share of the distribution's entropy kept)",
              lambda v: _is_number(v) and 0 < v <= 1),
    "epsilon_cutoff": _CUTOFF,
    "eta_cutoff": _CUTOFF,
    "suppress_tokens": _TOKEN_IDS,
    "begin_suppress_tokens": _TOKEN_IDS,
    "bad_words_ids": ("a non-empty list of non-empty lists of token ids (each a sequence the AR may not emit)",
                      lambda v: isinstance(v, (list, tuple)) and len(v) > 0
                      and all(_is_token_ids(ids) and len(ids) > 0 for ids in v)),
    "forced_eos_token_id": _END_TOKENS,
    "eos_token_id": _END_TOKENS,
    "pad_token_id": ("a token id (an integer >= 0)", _is_token_id),
    **dict.fromkeys(("return_dict_in_generate", "use_cache", "renormalize_logits", "remove_invalid_values",
                     "output_scores", "output_logits", "output_attentions", "output_hidden_states"), _FLAG),
}


# Each sampling temperature and its dynamic temperature's lower bound (the AR's, the NAR's).
_TEMPERATURE_FLOORS = (("temperature", "min_temperature"), ("nar_temperature", "nar_min_temperature"))


def _why_refused(value, allowed) -> str:
    """What a value refused by the predicate `allowed` lacks where its rule's words would take it: a Python value (a
    numpy or torch scalar of an allowed value), or a magnitude that float32 holds (1e300 is a finite number, but not
    one the samplers can compute with)."""
    if _is_array_scalar(value) and allowed(value.item()):
        return " (a Python value: numpy's and torch's are not, convert with .item())"
    real = isinstance(value, (int, float)) and not isinstance(value, bool)
    too_large = real and (isinstance(value, int) or math.isfinite(value)) and abs(value) > _MAX_SETTING
    if too_large and allowed(_MAX_SETTING if value > 0 else -_MAX_SETTING):
        return f", at most {_MAX_SETTING:g} in magnitude (the samplers compute in float32)"
    return ""


def check_settings(settings: dict) -> None:
    """Refuse any generation setting outside its range (`SETTING_RULES`) or any combination that cannot work.

    None means "not set" (transformers' own defaults are None). Raises `SettingError` naming the first offending
    setting and its allowed range. Settings not in `SETTING_RULES` are left to their owners (transformers checks its
    own).
    """
    for name, value in settings.items():
        if value is not None and name in SETTING_RULES and not SETTING_RULES[name][1](value):
            rule, allowed = SETTING_RULES[name]
            raise SettingError(name, value, rule + _why_refused(value, allowed))
    for name, floor_name in _TEMPERATURE_FLOORS:
        temperature, floor = settings.get(name) or 0, settings.get(floor_name, -1)
        if temperature > 0 and floor is not None and floor > temperature:
            raise SettingError(floor_name, floor, f"at most {name} ({temperature}), or < 0 for off")
    _check_lengths(settings)
    decay = settings.get("repetition_penalty_decay") or 0
    if decay < 0 and settings.get("repetition_penalty_decay_mode", "nearer") != "original":
        raise SettingError("repetition_penalty_decay", decay,
                           ">= 0 (0 = off); a negative decay exists only with repetition_penalty_decay_mode='original'")
    if settings.get("input_prompt_prefix") and (settings.get("prefix_silence") or 0) > 0:
        raise SettingError("prefix_silence", settings["prefix_silence"],
                           "0 with input_prompt_prefix, which starts the response with the prompt instead of silence")
    if (settings.get("mirostat_tau") or 0) > 0 and (settings.get("num_beams") or 1) > 1:
        raise SettingError("mirostat_tau", settings["mirostat_tau"],
                           "0 with beam search (num_beams > 1): mirostat's per-row state cannot follow the beams")
    if settings.get("entropix"):
        _check_entropix_alone(settings)
    _check_takes(settings)


def _check_lengths(settings: dict) -> None:
    """Refuse a least length above the most in force: transformers only warned (naming max_length where
    max_new_tokens was given), then ran to the most, the least unmet."""
    least, most = "min_new_tokens", "max_new_tokens"
    if settings.get(most) is None:  # max_length is in force only without max_new_tokens, as in transformers
        least, most = "min_length", "max_length"
    if settings.get(least) is not None and settings.get(most) is not None and settings[least] > settings[most]:
        raise SettingError(least, settings[least], f"at most {most} ({settings[most]}), which ends the run first")


def _check_takes(settings: dict) -> None:
    """Refuse more takes per row (`num_return_sequences`) than the decoding gives: one for greedy decoding, which
    here includes `do_sample=True` at temperature 0 (transformers' own refusal said "do_sample != True" to a caller who
    had passed it), and at most `num_beams` for beam search."""
    takes, beams = settings.get("num_return_sequences") or 1, settings.get("num_beams") or 1
    temperature = settings.get("temperature")
    sampling = bool(settings.get("do_sample")) and (temperature is None or temperature > 0)
    if takes > 1 and beams == 1 and not sampling:
        raise SettingError("num_return_sequences", takes, "1 with greedy decoding (temperature 0 or do_sample=False), "
                           "which has one result per row: for several takes sample (temperature > 0) or search as "
                           "many beams (num_beams)")
    if beams > 1 and takes > beams:
        raise SettingError("num_return_sequences", takes, f"at most num_beams ({beams}): beam search returns its "
                           "best beams")


def _check_entropix_alone(settings: dict) -> None:
    """Entropix chooses each step's temperature and truncation itself: refuse the samplers that would fight it."""
    rivals = {
        "mirostat_tau": (lambda v: (v or 0) > 0, "0 with entropix, which sets each step's truncation itself"),
        "min_temperature": (lambda v: v is not None and v >= 0,
                            "< 0 (off) with entropix, which sets each step's temperature itself"),
        "num_beams": (lambda v: (v or 1) > 1, "1 with entropix, which draws one token per row"),
    }
    for name, (clashes, rule) in rivals.items():
        if clashes(settings.get(name)):
            raise SettingError(name, settings[name], rule)


def setting_limits(config) -> dict[str, str]:
    """What the model of `config` (`VallEConfig`) narrows settings' ranges to, in words, by setting: past it,
    `check_settings_fit` refuses them (the web demo says it beside each control's range)."""
    seconds = config.max_position_embeddings / config.frame_rate
    return {
        "prefix_silence": f"at most {seconds:g} s for this model", "input_prompt_length": f"at most {seconds:g} s for "
        "this model", "max_new_tokens": f"at most {config.max_position_embeddings} for this model",
        "max_levels": f"at most {config.num_rvq_levels - 1} for this model ({config.num_rvq_levels} RVQ levels)",
        "layer_skip_exit_layer": f"at most {config.num_hidden_layers - 1} for this model ({config.num_hidden_layers} "
        "layers)",
    }


def check_settings_fit(settings: dict, config, task: str | None = None) -> None:
    """Refuse settings beyond what the model (`VallEConfig`) has: NAR levels past its last RVQ level, an early-exit
    layer past its last layer, a prompt, silence prefix or `max_new_tokens` longer than its positions
    (`max_position_embeddings` frames: 300 s for the released model; longer ones asked for attention masks of many
    GB; positions restart in every segment, so the limit is on each, not on the whole sequence; the silence prefix
    and `max_new_tokens` share the response's), a DRY sequence breaker, end token (`eos_token_id`,
    `forced_eos_token_id`) or token to suppress (`suppress_tokens`, `begin_suppress_tokens`, `bad_words_ids`) that is
    no class of any of its heads (with `task` "stt", of its text head, which the AR of speech to text reads; it ends
    on that head's own end token, whatever `eos_token_id` says), a `pad_token_id` that is one (`_check_pad_fits`),
    Vocos audio without a Vocos decoder. Raises `SettingError`, as `check_settings` does."""
    seconds = config.max_position_embeddings / config.frame_rate
    for name in ("prefix_silence", "input_prompt_length"):
        values = settings.get(name)
        for value in values if isinstance(values, (list, tuple)) else [values]:
            if value is not None and value > seconds:
                raise SettingError(name, value, f"a number of seconds in [0, {seconds:g}]: this model has positions "
                                   f"for {config.max_position_embeddings} frames")
    steps = settings.get("max_new_tokens")
    if steps is not None and steps > config.max_position_embeddings:  # the response's positions start at 0
        raise SettingError("max_new_tokens", steps, f"an integer in [1, {config.max_position_embeddings}]: this model "
                           f"has positions for {config.max_position_embeddings} frames ({seconds:g} s)")
    silence = settings.get("prefix_silence") or 0
    if steps is not None and config.seconds_to_frames(silence) + steps > config.max_position_embeddings:
        left = (config.max_position_embeddings - steps) / config.frame_rate
        raise SettingError("prefix_silence", silence, f"a number of seconds in [0, {left:g}] with max_new_tokens="
                           f"{steps} (or fewer steps): the silence starts the response, whose positions it shares "
                           f"with the steps, and this model has positions for {config.max_position_embeddings} frames")
    levels, exit_layer = settings.get("max_levels"), settings.get("layer_skip_exit_layer")
    if levels is not None and levels > config.num_rvq_levels - 1:
        raise SettingError("max_levels", levels, f"an integer 0..{config.num_rvq_levels - 1} (or unset: all "
                           f"levels): this model has {config.num_rvq_levels} RVQ levels")
    if exit_layer is not None and exit_layer >= config.num_hidden_layers:
        raise SettingError("layer_skip_exit_layer", exit_layer, f"-1 (all layers) or a layer index "
                           f"0..{config.num_hidden_layers - 1}: this model has {config.num_hidden_layers} layers")
    # An id past every head is no token of this model: one past int64 failed deep in the sampler, unexplained, a
    # forced end token past them in transformers' processor, as an IndexError, and one to suppress was ignored
    stt = task == "stt" and config.text_head
    classes = config.text_vocab_size if stt else max(config.head_size(level) for level in range(config.num_heads))
    # speech to text ends on its text head's end token, whatever eos_token_id says
    for name in ("dry_sequence_breakers", "forced_eos_token_id", "suppress_tokens", "begin_suppress_tokens",
                 "bad_words_ids", *(() if stt else ("eos_token_id",))):
        ids = given = settings.get(name)
        if name == "bad_words_ids" and given:  # sequences of tokens
            ids = [token for words in given for token in words]
        if any(token >= classes for token in ([ids] if _is_int(ids) else ids or ())):
            raise SettingError(name, given, f"token ids in 0..{classes - 1}: this model's "
                               f"{'text' if stt else 'largest'} head has {classes} classes")
    _check_pad_fits(settings.get("pad_token_id"), config, stt, classes)
    if settings.get("audio_backend") == "vocos" and config.vocoder_config is None:  # before any step, streamed too
        raise SettingError("audio_backend", "vocos", "'encodec' (or left unset): this model was converted without "
                           "the Vocos decoder")


def _check_pad_fits(pad: int | None, config, stt: bool, classes: int) -> None:
    """Refuse a `pad_token_id` that is a class of the head the AR reads (`classes` of them), other than its end
    token: transformers fills the rows that end early with it, and the response is read up to its first id past the
    classes, so a class would be read as tokens (an audio code, silently; a negative id failed in the model's
    embedding). Ids past the model's own pad are no ids of its input space."""
    stop = config.text_eos_token_id if stt else config.stop_token_id
    if pad is not None and pad != stop and not classes <= pad <= config.pad_token_id:
        raise SettingError("pad_token_id", pad, f"{stop} (the end token) or an id in {classes}..{config.pad_token_id}"
                           f", past the {'text' if stt else 'audio'} head's classes (this model's own is "
                           f"{config.pad_token_id}): rows that end early are filled with it, and a class would be "
                           "read as a token")


def _greedy_by_temperature(config) -> bool:
    return config.temperature is not None and config.temperature <= 0


def _greedy(config) -> bool:
    """Whether the AR decodes greedily, by its temperature (0, the original's way) or by `do_sample=False`
    (transformers'): nothing that shapes the distribution it would sample from is used then."""
    return not config.do_sample or _greedy_by_temperature(config)


def _no_dry(config) -> bool:
    return not config.dry_multiplier > 0


def _no_repetition_penalty(config) -> bool:
    return (config.repetition_penalty or 1.0) == 1.0


def _no_layer_skip(config) -> bool:
    return not config.layer_skip


# Settings that change nothing unless another one switches their sampler on, which the original accepted without a
# word: (the setting, its switch, the switch's condition as a message writes it after the switch's name, whether a
# config leaves the setting unused). A setting at its own "off" value (top_k 0, no breakers) asks for nothing and is
# never unused.
INERT_WITHOUT = (
    ("dry_base", "dry_multiplier", " > 0", _no_dry),
    ("dry_allowed_length", "dry_multiplier", " > 0", _no_dry),
    ("dry_sequence_breakers", "dry_multiplier", " > 0", lambda c: bool(c.dry_sequence_breakers) and _no_dry(c)),
    ("mirostat_eta", "mirostat_tau", " > 0", lambda c: not c.mirostat_tau > 0),
    ("repetition_penalty_decay", "repetition_penalty", " > 1",
     lambda c: c.repetition_penalty_decay != 0 and _no_repetition_penalty(c)),
    ("repetition_penalty_mode", "repetition_penalty", " > 1", _no_repetition_penalty),
    # at distance**0 both decay modes give the penalty itself
    ("repetition_penalty_decay_mode", "repetition_penalty_decay", " != 0", lambda c: c.repetition_penalty_decay == 0),
    ("min_p_keep", "min_p", " > 0", lambda c: not (c.min_p or 0) > 0),
    ("min_temperature", "temperature", " > 0", lambda c: c.min_temperature >= 0 and _greedy(c)),
    ("top_k", "temperature", " > 0", lambda c: (c.top_k or 0) > 0 and _greedy(c)),
    ("top_p", "temperature", " > 0", lambda c: (c.top_p or 1.0) < 1 and _greedy(c)),
    ("min_p", "temperature", " > 0", lambda c: (c.min_p or 0) > 0 and _greedy(c)),
    ("mirostat_tau", "temperature", " > 0", lambda c: c.mirostat_tau > 0 and _greedy(c)),
    ("entropix", "temperature", " > 0", lambda c: c.entropix and _greedy(c)),
    ("temperature", "do_sample", "=True", lambda c: not c.do_sample and not _greedy_by_temperature(c)),
    ("nar_min_temperature", "nar_temperature", " > 0", lambda c: c.nar_min_temperature >= 0 and c.nar_temperature <= 0),
    ("layer_skip_exit_layer", "layer_skip", "=True", lambda c: c.layer_skip_exit_layer >= 0 and _no_layer_skip(c)),
    ("layer_skip_entropy_threshold", "layer_skip", "=True", _no_layer_skip),
    ("layer_skip_varentropy_threshold", "layer_skip", "=True", _no_layer_skip),
)


def inert_settings(config, given: Iterable[str], do_sample: bool = True) -> list[tuple[str, str, str]]:
    """The settings among `given` that `config` (a `VallEGenerationConfig`, its settings checked) leaves without
    effect (`INERT_WITHOUT`), each as (the setting, the switch it needs, the switch's condition), in the table's
    order. A sampler's switch is its temperature > 0, or `do_sample=True` where `do_sample=False` decodes greedily
    with a positive temperature; `do_sample=False` here: an interface without do_sample (a command line, where a
    temperature given turns sampling on) is always told of the temperature."""
    given = set(given)
    return [(setting, *_switch_as_set(config, switch, condition, do_sample))
            for setting, switch, condition, unused in INERT_WITHOUT if setting in given and unused(config)]


def _switch_as_set(config, switch: str, condition: str, do_sample: bool) -> tuple[str, str]:
    """The switch (and its condition) that is off, as `inert_settings` names it."""
    if switch == "temperature" and do_sample and not _greedy_by_temperature(config):
        return "do_sample", "=True"
    return switch, condition


# The original CLI's tuned settings (`vall_e/__main__.py`), which the released model is meant to be used with.
TUNED_SETTINGS = {"temperature": 0.5, "repetition_penalty": 1.5, "nar_temperature": 0.0, "input_prompt_length": 3.0}
MAX_SECONDS = 12  # the original CLI's `--max-ar-steps` default: 12 s of audio
# transformers' sampler fields whose values VALL-E's own processors apply (in the original's order, with its
# semantics); transformers must not apply them a second time.
VALLE_SAMPLER_FIELDS = ("temperature", "top_k", "top_p", "min_p", "repetition_penalty")


class VallEGenerationConfig(GenerationConfig):
    """A `GenerationConfig` with the original's sampler settings (`VALLE_GENERATION_DEFAULTS`) as fields of its own.

    transformers' own fields keep their meaning, with one addition from the original: `temperature` 0 is greedy
    decoding (as `do_sample=False`; a negative temperature raises `SettingError`). `temperature`, `top_k`, `top_p`,
    `min_p` and `repetition_penalty` are applied by VALL-E's own processors, in the original's order by default
    (`sampler_order`); see `valle_hf.logits_process`.
    The other settings:

    - `min_temperature` (dynamic temperature lower bound; < 0 off), `repetition_penalty_decay` with
      `repetition_penalty_decay_mode` ("nearer" or "original"), `repetition_penalty_mode` ("per_occurrence" or
      "per_token"), `min_p_keep` (tokens min-p always keeps), `stop_length_penalty`, `dry_multiplier` / `dry_base` /
      `dry_allowed_length` / `dry_sequence_breakers`, `mirostat_tau` / `mirostat_eta`, `entropix` (the
      original's entropix sampling, `valle_hf.entropix`), `sampler_order` ("original" or "transformers");
    - `nar_temperature` (0 = greedy), `nar_min_temperature` (the NAR's dynamic temperature lower bound, per frame; < 0
      off), `max_levels` (NAR levels to fill; None = all), `nar_dtype` (the precision of
      the NAR's matrix products: "auto" picks bfloat16 where the hardware multiplies it fast, see
      `valle_hf.hardware`);
    - `input_prompt_length` (seconds of prompt codes kept, looped when shorter; 0/None = all; a list gives one per
      row, as a pipeline batch does), `input_prompt_prefix`,
      `prefix_silence` (seconds);
    - `refine_on_stop`, `layer_skip` with `layer_skip_exit_layer`, `layer_skip_entropy_threshold`,
      `layer_skip_varentropy_threshold`;
    - `output_audio`, `audio_backend` ("vocos" / "encodec"; None = the model's).
    """

    def __init__(self, **kwargs):
        kwargs = python_values(kwargs)
        for name, default in VALLE_GENERATION_DEFAULTS.items():
            setattr(self, name, kwargs.pop(name, default))
        super().__init__(**decoding_by_temperature(kwargs))

    @classmethod
    def from_model_config(cls, model_config: VallEConfig) -> VallEGenerationConfig:
        """What a model built from `model_config` generates with: the tuned settings (`tuned`)."""
        return cls.tuned(model_config)

    @classmethod
    def tuned(cls, config: VallEConfig, **overrides) -> VallEGenerationConfig:
        """The shipped `generation_config.json`: the original CLI's tuned settings (AR temperature 0.5, greedy NAR,
        repetition penalty 1.5, a 3 s prompt, 12 s at most, or as many frames as the model has positions), so that
        `generate`, the pipeline and the CLI speak alike."""
        # `check_settings_fit` refuses more steps than positions: a smaller model's own default must not be refused
        steps = min(MAX_SECONDS * config.frame_rate, config.max_position_embeddings)
        settings = dict(max_new_tokens=steps, do_sample=True, top_k=0, top_p=1.0,
                        eos_token_id=config.stop_token_id, pad_token_id=config.pad_token_id, **TUNED_SETTINGS)
        return cls(**{**settings, **overrides})

    def validate(self, strict: bool = False, user_set_attributes: set[str] | None = None) -> None:
        """Every VALL-E setting in its range (`check_settings`, raising `SettingError`), then transformers' checks; in
        greedy mode without its warnings about the sampler fields VALL-E applies itself (the original's `temperature`
        0 means greedy, and a model's tuned temperature stays set while unused)."""
        check_settings({name: getattr(self, name, None) for name in SETTING_RULES})
        if self.do_sample is False:
            user_set_attributes = {"do_sample"} | (set(user_set_attributes or ()) - set(VALLE_SAMPLER_FIELDS))
        super().validate(strict, user_set_attributes)

    @property
    def is_sampling(self) -> bool:
        """Whether the AR samples: `do_sample` and a positive temperature (the original's 0 means greedy)."""
        return bool(self.do_sample) and (self.temperature is None or self.temperature > 0)

    def for_transformers(self) -> GenerationConfig:
        """A copy for transformers' own processor builder: without the sampler fields VALL-E applies itself
        (`VALLE_SAMPLER_FIELDS`), so that nothing is applied twice."""
        other = copy.copy(self)
        for name in VALLE_SAMPLER_FIELDS:
            setattr(other, name, None)
        return other


def check_config_files(folder: Path, config=None) -> None:
    """Read a model directory's config.json and generation_config.json before transformers does: its readers fail
    with a bare TypeError on a file that is not a JSON object or on a generation setting of the wrong type, replace a
    generation_config.json that is not JSON by defaults without a word, and take a generation setting the model cannot
    generate with (a pad token that is an audio code, more steps than its positions), which `generate` refused
    without naming the file. `config`: the one `from_pretrained` was given instead of config.json (a pipeline passes
    the one it read), which is then not read; the settings must fit it when it is a `VallEConfig`. Raises
    `CheckpointError` naming the file."""
    names = ("generation_config.json",) if config is not None else ("config.json", "generation_config.json")
    for file in (folder / name for name in names):
        if file.is_file():  # generation_config.json is optional: the tuned settings stand in for it
            config = _check_config_file(file, str(file), config)


def check_hub_config_file(repo_id: str, filename: str, config=None, cache_dir=None, revision=None, subfolder=None,
                          **download_kwargs) -> None:
    """`check_config_files` for `filename` (config.json, or generation_config.json whose settings must fit `config`)
    of Hub model `repo_id` (in `subfolder`, at `revision`), as transformers fetched it into the cache (`cache_dir`, or
    the default): nothing is downloaded, and a file not cached (none on the Hub) is none to check. Other download
    keyword arguments are taken and ignored, so that a caller passes its own on. Raises `CheckpointError` naming the
    repository, the file and the revision (unless the default branch)."""
    path, cached = cached_hub_file(repo_id, filename, cache_dir, revision, subfolder)
    if cached is not None:
        _check_config_file(cached, hub_location(repo_id, path, revision), config)


def _check_config_file(file: Path, label: str, config):
    """Read config.json or generation_config.json (`file`, called `label` in errors), as `check_config_files` says;
    returns the config read from config.json, or `config` as given for generation_config.json."""
    try:
        text = file.read_text(encoding="utf-8")
        if text.startswith("\ufeff"):  # an editor's byte-order mark: json's error names the wrong fix
            raise VallEValueError("it starts with a byte-order mark, which transformers' reader refuses: save it "
                                  "as UTF-8 without one")
        settings = json.loads(text)
        if not isinstance(settings, dict):
            raise VallEValueError(f"a JSON {type(settings).__name__}, not an object of settings")
        if file.name == "config.json":
            _check_model_type(settings, label)  # first: another model's fields would be refused with the wrong fix
            config = VallEConfig.from_dict(settings)  # every field's type and range
        else:
            VallEGenerationConfig.from_dict(settings)  # every setting's type and range
            if isinstance(config, VallEConfig):  # None: transformers will say config.json is missing
                check_settings_fit(settings, config)
    except CheckpointError:  # the file's own refusal, with its fix
        raise
    except SettingError as error:  # a setting edited by hand: the rest of the file is fine
        raise CheckpointError(f"{label}: {error}; fix or remove {error.setting} there (remove the file for the "
                              "tuned settings)") from None
    # transformers' GenerationConfig raises these for settings of the wrong type or value
    except (OSError, ValueError, TypeError, AttributeError) as error:
        raise CheckpointError(f"{label} cannot be read ({one_line(error, 200)}): fix it, convert the model again, "
                              "or download it again") from None
    return config


def _check_model_type(settings: dict, label: str) -> None:
    """Refuse (`CheckpointError`) the config.json `settings` (the file called `label`) of another model than VALL-E:
    transformers loads a config of another model type (a plain Llama checkpoint's) with a warning, and one without a
    model_type without a word."""
    if settings.get("model_type") != VallEConfig.model_type:
        found = f"model_type {shown(settings['model_type'])}" if "model_type" in settings else "no model_type"
        raise CheckpointError(f"{label} has {found}, and a VALL-E model's is {VallEConfig.model_type!r}: it is no "
                              "converted VALL-E model; convert an original VALL-E checkpoint with python -m "
                              "valle_hf.convert --checkpoint CHECKPOINT --output-dir DIR (see the README), and load "
                              "that folder")
