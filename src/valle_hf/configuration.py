"""Configuration of the VALL-E model (e-c-k-e-r/vall-e flavour, "ar+nar-llama-8")."""

from __future__ import annotations

from transformers import EncodecConfig, LlamaConfig, PretrainedConfig

from .vocos import VocosConfig

SUPPORTED_CAPABILITIES = ("ar", "nar")
AUDIO_BACKENDS = ("vocos", "encodec")


class VallEConfig(PretrainedConfig):
    r"""Hyper-parameters of the unified AR+NAR VALL-E decoder, with the released ar+nar-llama-8 values as defaults.

    The backbone is a stock Llama decoder (GeGLU MLP, RMSNorm, RoPE, full multi-head attention); the model around it
    embeds text, audio-prompt and response segments from separate tables and predicts one RVQ level per pass through
    its own classifier head (see `spec/architecture.md`).

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
        audio_vocab_size: int = 1024,
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
        frame_rate: int = 75,
        sampling_rate: int = 24000,
        codec_bandwidth: float = 6.0,
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
        self.head_dim = hidden_size // num_attention_heads if num_attention_heads else 0
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
        self.frame_rate = frame_rate
        self.sampling_rate = sampling_rate
        self.codec_bandwidth = codec_bandwidth
        # Level 0..7 codes of the original's "silence" frame (emb/qnt.py:get_silence).
        default_silence = [62, 424, 786, 673, 622, 986, 570, 948]
        self.silence_codes = list(silence_codes) if silence_codes is not None else default_silence
        if isinstance(codec_config, dict):
            codec_config = EncodecConfig(**codec_config)
        self.codec_config = codec_config if codec_config is not None else EncodecConfig()
        if isinstance(vocoder_config, dict):
            vocoder_config = VocosConfig(**vocoder_config)
        self.vocoder_config = vocoder_config
        # The original decodes with Vocos (its default `audio_backend`); a model without one decodes with EnCodec.
        self.audio_backend = audio_backend or ("vocos" if vocoder_config is not None else "encodec")
        self.text_head = text_head
        kwargs.setdefault("pad_token_id", self.pad_token_id_for(audio_vocab_size, text_vocab_size, num_rvq_levels))
        kwargs.setdefault("eos_token_id", self.stop_token_id)
        kwargs.setdefault("tie_word_embeddings", False)
        super().__init__(**kwargs)
        self.validate()

    # ---------------------------------------------------------------- unified id space
    @property
    def stop_token_id(self) -> int:
        """The AR's stop token: one past the last audio code (class 1024 of the level-0 head)."""
        return self.audio_vocab_size

    @property
    def text_token_offset(self) -> int:
        return self.audio_vocab_size + 1

    @property
    def separator_token_id(self) -> int:
        return self.text_token_offset + self.text_vocab_size

    @property
    def level_token_offset(self) -> int:
        return self.separator_token_id + 1

    @property
    def prompt_frame_token_id(self) -> int:
        return self.level_token_offset + self.num_rvq_levels

    @property
    def audio_frame_token_id(self) -> int:
        return self.prompt_frame_token_id + 1

    @staticmethod
    def pad_token_id_for(audio_vocab_size: int, text_vocab_size: int, num_rvq_levels: int) -> int:
        return audio_vocab_size + 1 + text_vocab_size + 1 + num_rvq_levels + 2

    @property
    def unified_vocab_size(self) -> int:
        return self.pad_token_id_for(self.audio_vocab_size, self.text_vocab_size, self.num_rvq_levels) + 1

    @property
    def num_heads(self) -> int:
        """Classifier heads: one per RVQ level, plus the text head (STT) when the checkpoint has one."""
        return self.num_rvq_levels + (1 if self.text_head else 0)

    def head_size(self, level: int) -> int:
        """Width of the classifier for RVQ `level` (0..7), or of the text head for `level = num_rvq_levels` (STT)."""
        if level == self.num_rvq_levels:
            return self.text_vocab_size
        return self.audio_vocab_size + 1 if level == 0 else self.audio_vocab_size

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
                     "text_vocab_size", "audio_vocab_size", "frame_rate", "sampling_rate"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"VallEConfig.{name} must be a positive integer, got {value!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"VallEConfig.hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                f"({self.num_attention_heads})"
            )
        if self.num_rvq_levels < 2:
            raise ValueError(f"VallEConfig.num_rvq_levels must be at least 2, got {self.num_rvq_levels}")
        if self.version < 5:
            raise ValueError(f"VallEConfig.version {self.version} is not supported (only version >= 5 models)")
        unknown = sorted(set(self.capabilities) - set(SUPPORTED_CAPABILITIES))
        if unknown or "ar" not in self.capabilities:
            raise ValueError(
                f"VallEConfig.capabilities {self.capabilities} is not supported: this implementation runs "
                f"'ar'+'nar' models (unsupported: {unknown or ['(missing ar)']})"
            )
        if not self.audio_embedding_sums or not self.split_classifiers:
            raise ValueError(
                "VallEConfig: only audio_embedding_sums=True and split_classifiers=True models are supported "
                "(the released ar+nar-llama-8 configuration)"
            )
        if self.rms_norm_eps <= 0 or self.rope_theta <= 0:
            raise ValueError("VallEConfig.rms_norm_eps and rope_theta must be positive")
        if self.audio_backend not in AUDIO_BACKENDS:
            raise ValueError(f"VallEConfig.audio_backend must be one of {AUDIO_BACKENDS}, got {self.audio_backend!r}")
        if self.audio_backend == "vocos" and self.vocoder_config is None:
            raise ValueError("VallEConfig.audio_backend='vocos' needs a vocoder_config (convert with a Vocos decoder)")
        if len(self.silence_codes) != self.num_rvq_levels:
            raise ValueError(
                f"VallEConfig.silence_codes needs one code per RVQ level ({self.num_rvq_levels}), "
                f"got {len(self.silence_codes)}"
            )
