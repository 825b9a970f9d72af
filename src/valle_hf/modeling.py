"""The VALL-E model: segment embeddings, a Llama backbone and one classifier head per RVQ level.

One forward pass computes one of the original's three passes, chosen by `task` and `level`:

* AR (TTS, level 0):  ``text SEP [level 0] SEP prompt SEP response``  -> next level-0 code or the stop token;
* NAR (TTS, level k): ``text SEP [level k] SEP prompt SEP frames``    -> level k of every response frame;
* STT:                ``frames SEP [level 0] SEP text``               -> next phoneme id.

Every position is an id of the unified space described in `VallEConfig`; frames whose embedding needs more than one
RVQ level are placeholders whose codes arrive in `prompt_codes` / `audio_codes` (see `valle_hf.embeddings`).
Attention is causal for all three passes (the NAR included), exactly as the released weights were trained
(e-c-k-e-r/vall-e `vall_e/models/base.py:Base`, `vall_e/models/ar_nar.py:AR_NAR`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from numbers import Integral  # NumPy's integers too
from pathlib import Path

import torch
from torch import nn
from transformers import EncodecModel, LlamaModel, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding
from transformers.utils.generic import can_return_tuple

from .cache import CACHE_FIELD, CACHE_KWARG
from .configuration import VallEConfig, VallEGenerationConfig, check_config_files
from .cpu_kernels import backbone_attention, decoding_step
from .embeddings import SegmentEmbedding, VallEEmbeddings, level_argument, passes_of
from .entropix import note_layers_run, start_pass
from .errors import (
    CheckpointError,
    DamagedWeightsError,
    MissingDependencyError,
    VallEValueError,
    one_line,
    shown,
    without_load_report,
)
from .files import check_output_folder
from .generation import VallEGenerationMixin
from .hub import check_model_name
from .layer_skip import EarlyExit, LayerSkip, VallEDecoderLayer
from .layout import segment_position_ids
from .loss import valle_loss
from .vocos import VocosModel

__all__ = ["VallEForConditionalGeneration", "VallEModel", "VallEOutput", "VallEPreTrainedModel"]


@dataclass
class VallEOutput(CausalLMOutputWithPast):
    r"""`CausalLMOutputWithPast` plus the per-item terms of the training loss and the layers each row ran.

    item_losses: `[B]` each item's token-mean cross-entropy; `loss` is their mean (the original's `nll`).
    token_losses: `[B, L]` cross-entropy of every logit row against its (shifted) target, 0 where ignored.
    exit_layers: `[B]` decoder layers each row ran (with `layer_skip`).
    """

    item_losses: torch.FloatTensor | None = None
    token_losses: torch.FloatTensor | None = None
    exit_layers: torch.LongTensor | None = None


class VallEPreTrainedModel(PreTrainedModel):
    """Shared `PreTrainedModel` settings (config class, attention backends, compile) and the original's init."""

    config: VallEConfig
    config_class = VallEConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules = ["VallEDecoderLayer"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_compile_fullgraph = True
    output_modalities = ("audio",)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """`PreTrainedModel.from_pretrained`, with the name checked first (`check_model_name`): a path that does not
        exist raises `ModelNotFoundError` naming it (transformers said the repository name had the wrong form), a
        name that is no str or os.PathLike `VallETypeError` (transformers asked the Hub for it for half a minute).
        None stays transformers' "no files", for weights given as `state_dict` (with `config`). A directory's (or its
        `subfolder`'s) config.json (unless `config` is given) and generation_config.json are read first
        (`check_config_files`): a file that is not a JSON object, or a setting out of range or that the model cannot
        generate with, raises `CheckpointError` naming the file; a Hub model's config.json and generation_config.json,
        once fetched, the same naming the repository (`VallEConfig.get_config_dict`, `adjust_generation_fn`). Raises
        `VallEValueError` for a `num_attention_heads` keyword. Weights that config.json does not fit (missing, unused,
        of another shape) raise `CheckpointError`, unless `ignore_mismatched_sizes=True` asks for those of another
        shape to start at random: transformers started them at random under its LOAD REPORT table, or raised a
        RuntimeError pointing at it. Weights that cannot be read (a file cut short or damaged) raise
        `DamagedWeightsError` naming the model: safetensors' own error named neither the model nor the fix."""
        if "num_attention_heads" in kwargs:  # no weight's shape shows it: any count dividing hidden_size loaded
            raise VallEValueError(f"from_pretrained got num_attention_heads={shown(kwargs['num_attention_heads'])}: "
                                  "a model's head count is its config.json's (its weights fit any count that divides "
                                  "hidden_size, and another one makes the model speak noise): drop it")
        if pretrained_model_name_or_path is not None or kwargs.get("state_dict") is None:
            pretrained_model_name_or_path = check_model_name(pretrained_model_name_or_path, "the model")
        folder = (Path(pretrained_model_name_or_path) / (kwargs.get("subfolder") or "")
                  if pretrained_model_name_or_path is not None else None)
        if folder is not None and folder.is_dir():
            check_config_files(folder, kwargs.get("config"))
        elif folder is not None and folder.is_file():  # transformers read it as a malformed repository id
            raise CheckpointError(_not_a_folder(folder))
        if kwargs.pop("ignore_mismatched_sizes", False):  # the caller's choice, as in transformers
            with _readable_weights(pretrained_model_name_or_path):
                return super().from_pretrained(pretrained_model_name_or_path, *args, ignore_mismatched_sizes=True,
                                               **kwargs)
        wants_info = kwargs.pop("output_loading_info", False)
        with without_load_report(), _readable_weights(pretrained_model_name_or_path):  # `_check_weights_fit` says
            # what the load report would, in one line
            model, info = super().from_pretrained(pretrained_model_name_or_path, *args, output_loading_info=True,
                                                  ignore_mismatched_sizes=True, **kwargs)
        _check_weights_fit(pretrained_model_name_or_path, info,
                           lambda: _config_source(cls, pretrained_model_name_or_path, kwargs, model.config))
        return (model, info) if wants_info else model

    def set_attn_implementation(self, attn_implementation: str | dict, allow_all_kernels: bool = False) -> None:
        """Switch the backbone's attention implementation; as in `VallEConfig`, a plain string leaves the codec and
        the vocoder (no attention layers) with their own."""
        if not isinstance(attn_implementation, dict):
            attn_implementation = {"": attn_implementation}
        super().set_attn_implementation(attn_implementation, allow_all_kernels)
        for module in self.modules():
            if isinstance(module, VallEBackbone):
                module.config._attn_implementation = backbone_attention(module.config._attn_implementation)

    def to(self, *args, **kwargs):
        """`PreTrainedModel.to`, where a floating-point dtype makes the model `from_pretrained(dtype=...)` makes: the
        rotary embeddings' inverse frequencies stay float32 (transformers computes them in float32; rounded, the model
        speaks differently from the same checkpoint loaded in that dtype), and so do, in a 16-bit dtype, the modules
        of `_keep_in_fp32_modules_strict` (the codec). `model.to(torch.bfloat16)` in a notebook rounded both."""
        device, dtype, non_blocking, _ = torch._C._nn._parse_to(*args, **kwargs)  # nn.Module.to's own parsing
        if dtype is None or not dtype.is_floating_point:
            return super().to(*args, **kwargs)
        if device is not None:
            super().to(device, non_blocking=non_blocking)
        rotaries = [module for module in self.modules() if isinstance(module, LlamaRotaryEmbedding)]
        frequencies = [dict(module.named_buffers(recurse=False)) for module in rotaries]
        sixteen_bit = dtype in (torch.float16, torch.bfloat16)
        kept = (self._keep_in_fp32_modules_strict or ()) if sixteen_bit else ()
        for name, child in self.named_children():  # a model holds no tensor of its own, only its children's
            if name not in kept:
                nn.Module.to(child, dtype)
        for module, buffers in zip(rotaries, frequencies, strict=True):
            for name, buffer in buffers.items():
                setattr(module, name, buffer)
        return self

    def half(self):
        """`to(torch.float16)`: the codec and the rotary frequencies stay float32 (see `to`)."""
        return self.to(torch.float16)

    def bfloat16(self):
        """`to(torch.bfloat16)`: the codec and the rotary frequencies stay float32 (see `to`)."""
        return self.to(torch.bfloat16)

    def resize_token_embeddings(self, new_num_tokens: int | None = None, pad_to_multiple_of: int | None = None,
                                mean_resizing: bool = True) -> nn.Embedding:
        """The phoneme table (`get_input_embeddings`), unchanged: `PreTrainedModel.resize_token_embeddings` where the
        size stays `config.text_vocab_size`. Raises `VallEValueError` for another size: the phoneme ids' place among
        the unified ids, the STT head and the tokenizer are all sized by the checkpoint, so transformers' resize gave
        a table whose new rows no id reaches, and a saved folder that did not load; and for a size or a multiple that
        is not a positive integer (or None)."""
        for name, value in (("new_num_tokens", new_num_tokens), ("pad_to_multiple_of", pad_to_multiple_of)):
            if value is not None and (not isinstance(value, Integral) or isinstance(value, bool) or value < 1):
                raise VallEValueError(f"resize_token_embeddings: {name} must be a positive integer or None, got "
                                      f"{shown(value)}")
        embeddings = self.get_input_embeddings()
        size = embeddings.num_embeddings
        wanted = size if new_num_tokens is None else new_num_tokens
        if pad_to_multiple_of:
            wanted = -(-wanted // pad_to_multiple_of) * pad_to_multiple_of  # up, as transformers rounds it
        if wanted != size:
            raise VallEValueError(f"resize_token_embeddings cannot resize VALL-E's phoneme table from {size} to "
                                  f"{wanted} ids: the phoneme vocabulary is fixed by the checkpoint (its layout of "
                                  "ids, STT head and tokenizer); map new symbols to existing phonemes instead")
        return embeddings

    def _init_weights(self, module: nn.Module) -> None:
        """The original's initialisation: unit-normal segment embeddings and separator, Llama's init elsewhere."""
        if isinstance(module, SegmentEmbedding):
            init.normal_(module.weight)
        elif isinstance(module, VallEEmbeddings):
            init.normal_(module.separator)
        else:
            super()._init_weights(module)


class VallEBackbone(LlamaModel):
    """transformers' `LlamaModel` with `VallEDecoderLayer`s, which layer skip can step around (same weights). Its
    "sdpa" is `valle_hf.cpu_kernels.sdpa_attention`: transformers' SDPA, with the CPU's 16-bit decoding steps in
    float32."""

    def __init__(self, config):
        config._attn_implementation = backbone_attention(config._attn_implementation)
        super().__init__(config)
        self.layers = nn.ModuleList(VallEDecoderLayer(config, index) for index in range(config.num_hidden_layers))
        self.post_init()


class VallEModel(VallEPreTrainedModel):
    """Segment embeddings and the Llama backbone; returns the backbone's (normed) hidden states."""

    # loaded from a whole model's folder (AutoModel), the parts around the base model are not its weights
    _keys_to_ignore_on_load_unexpected = [r"^(classifiers|codec_model|vocoder)\."]

    def __init__(self, config: VallEConfig):
        super().__init__(config)
        self.embeddings = VallEEmbeddings(config)
        self.backbone = VallEBackbone(config.backbone_config())
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings.text

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.embeddings.text = value

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache=None,
        inputs_embeds: torch.Tensor | None = None,
        prompt_codes: torch.LongTensor | None = None,
        audio_codes: torch.LongTensor | None = None,
        level: int | torch.LongTensor = 0,
        task: str | list[str] | torch.LongTensor = "tts",
        use_cache: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPast:
        """The backbone's hidden states `[B, L, hidden]` for unified ids `[B, L]` (see `VallEForConditionalGeneration`
        for the arguments); keyword arguments go on to the backbone and its layers."""
        batch = (input_ids if input_ids is not None else inputs_embeds).shape[0]
        passes = passes_of(level, task, batch, self.config.num_rvq_levels, self.device)
        if inputs_embeds is None:
            inputs_embeds = self.embeddings(input_ids, passes, prompt_codes, audio_codes)
        past = cache.get_seq_length() if cache is not None else 0
        if position_ids is None:
            if input_ids is None or (torch.is_tensor(past) or past > 0):
                raise VallEValueError("position_ids are required with inputs_embeds or a non-empty cache")
            position_ids = segment_position_ids(input_ids, self.config)
        if attention_mask is None:
            # Always pass a mask: without one, transformers reads restarting position ids as packed sequences.
            length = inputs_embeds.shape[1]
            attention_mask = torch.ones(batch, past + length, dtype=torch.long, device=inputs_embeds.device)
        return self.backbone(inputs_embeds=inputs_embeds, attention_mask=attention_mask, position_ids=position_ids,
                             use_cache=use_cache, **{CACHE_KWARG: cache}, **kwargs)


class VallEForConditionalGeneration(VallEPreTrainedModel, VallEGenerationMixin):
    """VALL-E with its classifier heads, the EnCodec codec (prompts → codes) and the Vocos decoder (codes → audio).

    `forward` runs one pass (AR step, NAR level or STT step); `generate` runs text -> level 0 (AR, cached) ->
    levels 1..7 (NAR) -> audio, or audio -> phonemes for STT.
    """

    _keys_to_ignore_on_load_unexpected = [r"^codec_model\.quantizer\..*\.(inited|cluster_size|embed_avg)$"]
    # EnCodec's quantizer picks each code by the largest of near-equal distances, sums far larger than their
    # differences: in 16 bits they round to ties, and a voice prompt's codes come out wrong (the original's EnCodec
    # kept float32 weights too). So the codec stays float32 in a 16-bit model.
    _keep_in_fp32_modules_strict = ["codec_model"]
    # The loss is a mean of per-item means (the original's), not a sum over tokens: the Trainer must not pass
    # `num_items_in_batch`, and divides the loss by the gradient-accumulation steps itself.
    accepts_loss_kwargs = False
    generation_config_class = VallEGenerationConfig

    def __init__(self, config: VallEConfig):
        super().__init__(config)
        self.model = VallEModel(config)
        self.classifiers = nn.ModuleList(
            nn.Linear(config.hidden_size, config.head_size(level), bias=True) for level in range(config.num_heads)
        )
        self.codec_model = EncodecModel(config.codec_config)
        self.vocoder = VocosModel(config.vocoder_config) if config.vocoder_config is not None else None
        self._freeze_audio_models()
        self.post_init()

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """`VallEPreTrainedModel.from_pretrained`, with the codec and the vocoder frozen again: transformers' loader
        puts every loaded tensor in a new `nn.Parameter`, trainable, whatever `__init__` had set. In a 16-bit model
        the float32 codec owns its memory (it mapped the checkpoint file). A model saved with int8 weights needs
        torchao (`MissingDependencyError`, where transformers' import failed with a traceback)."""
        try:
            loaded = super().from_pretrained(*args, **kwargs)
        except ImportError as error:
            if (error.name or "").split(".")[0] != "torchao":
                raise
            raise MissingDependencyError("this model's weights are int8, which needs torchao: pip install -e "
                                         "\".[int8]\" in valle-hf's folder (or pip install torchao)") from None
        model = loaded[0] if isinstance(loaded, tuple) else loaded  # (model, info) with output_loading_info=True
        if model.codec_model.dtype != model.dtype:
            # The codec kept in float32 (`_keep_in_fp32_modules_strict`) is read from the checkpoint file without a
            # copy, and so kept the whole file mapped (1 GB resident for the released model): it gets its own copy.
            model.codec_model._apply(torch.Tensor.clone)
        model._freeze_audio_models()
        return loaded

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedModel.save_pretrained`, with the generation config checked first (`SettingError`): transformers
        checks it after writing config.json and the code, so a bad setting left a folder without weights. With the
        model's code saved (`register_for_auto_class`), the `auto_map` names `VallEModel` for `AutoModel` too, and
        this class for `AutoModelForSpeechSeq2Seq` (what the speech-recognition pipeline loads): transformers names only
        the saved class, so `AutoModel` with `trust_remote_code=True` refused the folder. A `save_directory` that
        cannot be a folder (a file) is refused first (`check_output_folder`, `UsageError`): transformers logged it
        and returned, nothing saved."""
        check_output_folder(save_directory, "save_directory")
        self.generation_config.validate()
        if self._auto_class is not None:  # VallEModel is defined in the module file saved for this class
            module = type(self).__module__.rsplit(".", 1)[-1]
            self.config.auto_map = {**(getattr(self.config, "auto_map", None) or {}),
                                    "AutoModel": f"{module}.{VallEModel.__name__}",
                                    "AutoModelForSpeechSeq2Seq": f"{module}.{type(self).__name__}"}
        return super().save_pretrained(save_directory, *args, **kwargs)

    def _freeze_audio_models(self) -> None:
        """The codec and the vocoder are never trained with the model: no gradient, not in an optimizer."""
        self.codec_model.requires_grad_(False)
        if self.vocoder is not None:
            self.vocoder.requires_grad_(False)

    def _check_training_loss(self, level, labels) -> None:
        """Refuse (`VallEValueError`) a training batch (one level per row, as `VallEDataCollator` makes it) without its
        labels while training with gradients: the Trainer takes the labels away to compute a loss of its own from the
        logits (label smoothing, `compute_loss_func`), which cannot read them (rows shift differently, narrower heads
        are -inf-padded) and trained on an infinite or wrong loss, logged as 0. A loop of one's own that computes
        another loss from the logits passes the labels too (the model's loss then comes beside the logits)."""
        per_row = torch.is_tensor(level) and level.dim() > 0
        if per_row and labels is None and self.training and torch.is_grad_enabled():
            raise VallEValueError("a training batch (one level per row, from VallEDataCollator) came without its "
                                  "labels while training: the model computes its loss itself, from labels=. "
                                  "transformers' Trainer takes them away for label_smoothing_factor > 0 or a "
                                  "compute_loss_func, whose loss cannot read these logits (level-0 rows shift, NAR "
                                  "rows do not; narrower heads are -inf-padded): leave label_smoothing_factor at 0 and "
                                  "compute_loss_func unset (VALL-E trains without label smoothing); a training "
                                  "loop of your own that computes another loss from the logits passes labels= too")

    def _sampled_positions(self, input_ids, inputs_embeds, level, logits_to_keep: int) -> torch.BoolTensor:
        """`[B, K]`: which of the last K positions (`logits_to_keep`, 0 = all) each row samples from: a NAR pass's
        response frames (rows of a batch have different lengths), or every one of them."""
        batch, length = (input_ids if input_ids is not None else inputs_embeds).shape[:2]
        kept = logits_to_keep or length
        if input_ids is not None and int(level) != 0:  # one level for the pass (an int or a 0-dim tensor)
            return (input_ids == self.config.audio_frame_token_id)[:, -kept:]
        return torch.ones(batch, kept, dtype=torch.bool, device=self.device)

    def head_index(self, level: int, task: str) -> int:
        """Index of the classifier a pass uses: level k for TTS, the text head for STT."""
        if task == "stt" and not self.config.text_head:
            raise VallEValueError("this checkpoint has no text head (it was exported without one): it cannot "
                                  "transcribe speech (task='stt'); use a checkpoint with the STT head, such as the "
                                  "released ar+nar-llama-8")
        return self.config.num_rvq_levels if task == "stt" else level

    def logits(self, hidden: torch.Tensor, level, task) -> torch.Tensor:
        """Logits `[B, L, V]`: each pass's rows through its own head.

        One `level` and `task` for the batch give that head's width. Per-row ones (a training batch, which may mix
        passes) give the width of the model's widest head, every row right-padded with -inf beyond its own head, as
        in the original; that changes neither the softmax nor the cross-entropy of a row, and every such batch has
        one width, so that predictions concatenate across batches (`Trainer.predict`).
        """
        passes = passes_of(level, task, hidden.shape[0], self.config.num_rvq_levels, hidden.device)
        heads = [(self.classifiers[self.head_index(one.level, one.task)], one.rows) for one in passes]
        if len(heads) == 1 and isinstance(passes[0].rows, slice):
            return heads[0][0](hidden)
        width = max(head.out_features for head in self.classifiers)
        logits = hidden.new_full((*hidden.shape[:2], width), float("-inf"))
        for head, rows in heads:
            part = head(hidden[rows])
            logits[rows, :, : part.shape[-1]] = part.to(logits.dtype)
        return logits

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache=None,
        past_key_values=None,
        inputs_embeds: torch.Tensor | None = None,
        prompt_codes: torch.LongTensor | None = None,
        audio_codes: torch.LongTensor | None = None,
        level: int | torch.LongTensor = 0,
        task: str | list[str] | torch.LongTensor = "tts",
        use_cache: bool | None = None,
        logits_to_keep: int = 0,
        labels: torch.LongTensor | None = None,
        early_exit: LayerSkip | None = None,
        **kwargs,
    ) -> VallEOutput:
        r"""One pass of the model over a unified-id sequence.

        Args:
            input_ids: `[B, L]` ids of the unified space (`VallEConfig`), padded on either side with `pad_token_id`
                (0 in `attention_mask`; `VallEDataCollator` pads right by default, `generate` left).
            prompt_codes: `[B, Tp, 8]` codes of the voice prompt, one frame per `prompt_frame_token_id`.
            audio_codes: `[B, T, n]` codes for the `audio_frame_token_id` placeholders (NAR response or STT audio).
            level: the RVQ level predicted (0 = AR; 1..7 = NAR). task: "tts" or "stt". Both may be given per row
                (`level` a LongTensor `[B]`, `task` a list of str or a LongTensor of `TASKS` indices) for a training
                batch that mixes passes; rows with different heads then get -inf-padded logits (`logits`).
            logits_to_keep: compute logits for the last N positions only (0 = all).
            labels: `[B, L]` training targets aligned with `input_ids`, in each row's head classes, -100 where not
                scored (`valle_hf.training.build_training_sequence` makes them). The returned `loss` is then the
                original's (`valle_hf.loss.valle_loss`): a one-step shift for level-0 rows, none for NAR rows.
            early_exit: layer-skip settings (`valle_hf.layer_skip.LayerSkip`) for a single pass; `exit_layers`
                then holds the decoder layers each row ran.

        Returns a `VallEOutput`, or its non-None fields as a tuple with `return_dict=False`. Raises ValueError for an
        unknown task or level, for layer skip over a batch that mixes passes, and for a training batch (one level per
        row) without labels while training with gradients (`_check_training_loss`).
        """
        start_pass()  # entropix reads this pass's attention only
        level = level_argument(level)  # the loss's shift reads it too
        self._check_training_loss(level, labels)
        exit_state = None
        if early_exit is not None:
            if (torch.is_tensor(level) and level.dim()) or not isinstance(task, str):
                raise VallEValueError("early_exit runs one pass at a time: give one level and task for the batch")
            head = self.classifiers[self.head_index(level, task)]
            exit_state = EarlyExit(early_exit, head, self.model.backbone.norm,
                                   self._sampled_positions(input_ids, inputs_embeds, level, logits_to_keep),
                                   self.config.num_hidden_layers)
            kwargs["exit_state"] = exit_state
        # A level-0 pass over one new position per row, its head included, is a cached AR (or STT) step: the CPU
        # kernels for such steps.
        length = (input_ids if input_ids is not None else inputs_embeds).shape[1]
        with decoding_step(length == 1 and isinstance(level, int) and level == 0):
            outputs = self.model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                cache=cache if cache is not None else past_key_values,
                inputs_embeds=inputs_embeds,
                prompt_codes=prompt_codes,
                audio_codes=audio_codes,
                level=level,
                task=task,
                use_cache=use_cache,
                **kwargs,
            )
            if exit_state is not None:
                note_layers_run(exit_state.layers_run)  # entropix reads the last layer each row ran
            hidden = outputs.last_hidden_state
            if logits_to_keep:
                if labels is not None:
                    raise VallEValueError(
                        "labels need the logits of every position: do not pass logits_to_keep with labels"
                    )
                hidden = hidden[:, -logits_to_keep:]
            logits = self.logits(hidden, level, task)
        loss = item_losses = token_losses = None
        if labels is not None:
            shift = torch.as_tensor(level == 0, device=logits.device).expand(logits.shape[0])  # AR and STT rows
            loss, item_losses, token_losses, _ = valle_loss(logits, labels, shift, attention_mask)
        return VallEOutput(
            loss=loss,
            item_losses=item_losses,
            token_losses=token_losses,
            exit_layers=None if exit_state is None else exit_state.layers_run,
            logits=logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            **{CACHE_FIELD: getattr(outputs, CACHE_FIELD, None)},
        )


def _config_source(model_class, name, kwargs: dict, config) -> tuple[str, str] | None:
    """What replaced model `name`'s config.json in a `model_class.from_pretrained(name, **kwargs)` call, and how to
    undo it, for `_check_weights_fit`: a `config=` given whole, or keywords that change the weights' names or shapes
    (`num_hidden_layers=1`: transformers sets every keyword that names a field on the loaded config; `AutoModel`
    sets them on the config it passes). None when the file is to blame."""
    if name is None:  # weights given as a state_dict, with a config: no config.json to compare it with
        return "the config passed to from_pretrained", "pass none, or one of the model's own sizes"
    fields = config.to_dict().keys() - {"dtype"}  # dtype is the loader's own argument too
    loader_kwargs = {key: value for key, value in kwargs.items() if key not in fields and key != "config"}
    saved = type(config).get_config_dict(name, **loader_kwargs)[0]

    def weight_shapes(**changes) -> dict:
        with torch.device("meta"):  # no memory: only names and shapes are read
            return {key: value.shape for key, value in model_class(type(config).from_dict({**saved, **changes}))
                    .state_dict().items()}

    saved_shapes = weight_shapes()
    passed = kwargs.get("config") is not None
    changes = {key: value for key, value in (config.to_dict() if passed else kwargs).items()
               if key in fields and (key not in saved or saved[key] != value)}
    given = ", ".join(f"{key}={value!r}" for key, value in changes.items()
                      if weight_shapes(**{key: value}) != saved_shapes)
    if passed:
        return (f"the config passed to from_pretrained{f' (with {given})' if given else ''}",
                f"drop {given}" if given else "pass none, or one of the model's own sizes")
    return (f"its config.json with {given} given to from_pretrained", f"drop {given}") if given else None


@contextlib.contextmanager
def _readable_weights(name):
    """Raise `DamagedWeightsError` naming the model `name` for weights safetensors cannot read (a file cut short by a
    download or a copy, or damaged)."""
    from safetensors import SafetensorError

    try:
        yield
    except SafetensorError as error:
        raise DamagedWeightsError(f"the weights of {name} cannot be read ({one_line(error, 200)}): the file is damaged "
                                  "or cut short; download or convert the model again") from None


def _not_a_folder(file: Path) -> str:
    """Why `from_pretrained` cannot take `file`: it takes a converted model's folder or a Hub id."""
    if (file.parent / "config.json").is_file():
        return f"{file} is a file of the converted model in {file.parent}: give that folder"
    return (f"{file} is a file, and from_pretrained takes a converted model's folder or Hub id: an original checkpoint "
            "loads with valle_hf.loading.load_model_and_processor(path), which converts it, or convert it once "
            f"(python -m valle_hf.convert --checkpoint {file} --output-dir DIR)")


def _check_weights_fit(name, info: dict, source=lambda: None) -> None:
    """Refuse (`CheckpointError`) a model whose config and weights disagree: transformers starts a missing weight, or
    one of another shape, at random, and the model would speak noise. `source()` (`_config_source`, read only then)
    names a config the caller changed, and its fix."""
    found = {label: info[key] for key, label in (("missing_keys", "missing"), ("unexpected_keys", "unused"),
                                                  ("mismatched_keys", "of another shape")) if info[key]}
    if found:
        counts = ", ".join(f"{len(keys)} {label}" for label, keys in found.items())
        example = sorted(next(iter(found.values())))[0]  # sets and lists: the first by name
        config, fix = source() or ("its config.json", "the config was edited or the files come from different "
                                                    "models; convert it again, or download it again")
        raise CheckpointError(f"{name}: {config} does not fit its weights ({counts}, e.g. "
                              f"{example[0] if isinstance(example, tuple) else example}): {fix}")
