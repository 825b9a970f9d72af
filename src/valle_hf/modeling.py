"""The VALL-E model: segment embeddings, a stock Llama backbone and one classifier head per RVQ level.

One forward pass computes one of the original's three passes, chosen by `task` and `level`:

* AR (TTS, level 0):  ``text SEP [level 0] SEP prompt SEP response``  -> next level-0 code or the stop token;
* NAR (TTS, level k): ``text SEP [level k] SEP prompt SEP frames``    -> level k of every response frame;
* STT:                ``frames SEP [level 0] SEP text``               -> next phoneme id.

Every position is an id of the unified space described in `VallEConfig`; frames whose embedding needs more than one
RVQ level are placeholders whose codes arrive in `prompt_codes` / `audio_codes`, the i-th placeholder of a row taking
the i-th frame. Attention is causal for all three passes (the NAR included), exactly as the released weights were
trained.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import EncodecModel, LlamaModel, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast

from .cache import CACHE_FIELD, CACHE_KWARG
from .configuration import VallEConfig
from .generation import VallEGenerationMixin, default_generation_config
from .layer_skip import LayerSkip, early_exit_forward
from .layout import segment_position_ids
from .vocos import VocosModel

TASKS = ("tts", "stt")


def frames_at_placeholders(mask: torch.BoolTensor, codes: torch.LongTensor, name: str) -> torch.LongTensor:
    """Codes [B, L, n] aligned with the sequence: the i-th True of `mask` in a row takes frame i of `codes[b]`."""
    if codes.dim() != 3 or codes.shape[0] != mask.shape[0]:
        raise ValueError(f"{name} must have shape [batch={mask.shape[0]}, frames, levels], got {tuple(codes.shape)}")
    if mask.any() and int(mask.sum(dim=1).max()) > codes.shape[1]:
        raise ValueError(f"the sequence has more {name} placeholders than {name} has frames ({codes.shape[1]})")
    index = (mask.long().cumsum(dim=1) - 1).clamp(min=0, max=max(codes.shape[1] - 1, 0))
    return torch.gather(codes, 1, index.unsqueeze(-1).expand(-1, -1, codes.shape[-1]))


def is_mixed_batch(level, task) -> bool:
    """Whether `level` / `task` are given per row (a training batch) rather than once for the whole batch."""
    return (torch.is_tensor(level) and level.dim() > 0) or not isinstance(task, str)


def row_passes(level, task, batch_size: int, device=None) -> list[tuple[int, str, torch.LongTensor]]:
    """Group the rows of a batch by pass: `(level, task, row indices)` per distinct pair, in order of first row.

    `level` is an int or a LongTensor `[B]`; `task` a str, a sequence of str, or a LongTensor `[B]` of indices into
    `TASKS` (0 = tts, 1 = stt), the form a data collator can hand through accelerate.
    """
    levels = level.reshape(-1).tolist() if torch.is_tensor(level) else [int(level)] * batch_size
    if isinstance(task, str):
        tasks = [task] * batch_size
    elif torch.is_tensor(task):
        tasks = [TASKS[index] if 0 <= index < len(TASKS) else index for index in task.reshape(-1).tolist()]
    else:
        tasks = list(task)
    if len(levels) != batch_size or len(tasks) != batch_size:
        raise ValueError(f"level and task need one value per row ({batch_size}), got {len(levels)} and {len(tasks)}")
    groups: dict[tuple[int, str], list[int]] = {}
    for row, key in enumerate(zip(levels, tasks, strict=True)):
        groups.setdefault(key, []).append(row)
    return [(lvl, tsk, torch.tensor(rows, device=device)) for (lvl, tsk), rows in groups.items()]


def check_pass(level: int, task: str, num_levels: int) -> None:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    if not 0 <= level < num_levels or (task == "stt" and level != 0):
        raise ValueError(f"level must be 0..{num_levels - 1} (0 for STT), got {level}")


@dataclass
class VallEOutput(CausalLMOutputWithPast):
    r"""`CausalLMOutputWithPast` plus the per-item terms of the training loss (when `labels` were given).

    item_losses: `[B]` each item's token-mean cross-entropy; `loss` is their mean (the original's `nll`).
    token_losses: `[B, L]` cross-entropy of every logit row against its (shifted) target, 0 where ignored.
    """

    item_losses: torch.FloatTensor | None = None
    token_losses: torch.FloatTensor | None = None


class VallEAudioEmbedding(nn.Module):
    """One embedding table per RVQ level; a frame is embedded as a (weighted) sum over some of its levels."""

    def __init__(self, table_sizes: list[int], hidden_size: int):
        super().__init__()
        self.levels = nn.ModuleList(nn.Embedding(size, hidden_size) for size in table_sizes)

    def forward(
        self, codes: torch.LongTensor, first_table: int = 0, weights: list[float] | None = None
    ) -> torch.Tensor:
        """Sum of ``weights[j] * levels[first_table + j](codes[..., j])`` over the given levels j."""
        total = 0
        for j in range(codes.shape[-1]):
            term = self.levels[first_table + j](codes[..., j])
            total = total + (term if weights is None else weights[j] * term)
        return total


class VallEPreTrainedModel(PreTrainedModel):
    config: VallEConfig
    config_class = VallEConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules = ["LlamaDecoderLayer"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_compile_fullgraph = True
    output_modalities = ("audio",)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """The original's initialisation: unit-normal segment embeddings and separator, Llama's init elsewhere."""
        if isinstance(module, VallEModel):
            nn.init.normal_(module.separator)
            nn.init.normal_(module.embed_text.weight)
            nn.init.normal_(module.embed_level.weight)
        elif isinstance(module, VallEAudioEmbedding):
            for table in module.levels:
                nn.init.normal_(table.weight)
        elif isinstance(module, nn.Embedding) and module.weight.shape[-1] == self.config.hidden_size:
            return  # our tables, handled above through their parents
        else:
            super()._init_weights(module)


class VallEModel(VallEPreTrainedModel):
    """Segment embeddings and the Llama backbone; returns the backbone's (normed) hidden states."""

    def __init__(self, config: VallEConfig):
        super().__init__(config)
        levels, hidden = config.num_rvq_levels, config.hidden_size
        self.embed_text = nn.Embedding(config.text_vocab_size, hidden)
        self.embed_level = nn.Embedding(levels, hidden)
        self.separator = nn.Parameter(torch.zeros(hidden))
        # The original's off-by-one (kept: the weights were trained with it) leaves prompt tables 6-7 and response
        # table 7 unreachable, so they are not built: prompt levels 0..L-3, response tables 0..L-2.
        self.embed_prompt = VallEAudioEmbedding([config.audio_vocab_size] * (levels - 2), hidden)
        self.embed_response = VallEAudioEmbedding(
            [config.audio_vocab_size + 1] + [config.audio_vocab_size] * (levels - 2), hidden
        )
        self.backbone = LlamaModel(config.backbone_config())
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.embed_text

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.embed_text = value

    def embed(
        self,
        input_ids: torch.LongTensor,
        level: int = 0,
        task: str = "tts",
        prompt_codes: torch.LongTensor | None = None,
        audio_codes: torch.LongTensor | None = None,
    ) -> torch.Tensor:
        """`inputs_embeds` for a unified-id sequence, built segment by segment as the original does.

        `level` / `task` may be given per row (LongTensor `[B]`; see `row_passes`) for a batch that mixes passes.
        """
        if is_mixed_batch(level, task):
            return self._embed_mixed(input_ids, level, task, prompt_codes, audio_codes)
        config = self.config
        ids = input_ids
        # Response ids are text (STT) or level-0 codes (AR). A NAR sequence has none (its frames are placeholders), so
        # it does not read level 0's table and training leaves that table without a gradient, as the original does.
        is_response = (ids < config.text_token_offset).unsqueeze(-1)
        embeds = 0.0
        if task == "stt" or level == 0:
            embeds = torch.where(is_response, self.embed_response_tokens(ids, task), 0.0)

        is_text = (ids >= config.text_token_offset) & (ids < config.separator_token_id)
        text = self.embed_text((ids - config.text_token_offset).clamp(0, config.text_vocab_size - 1))
        embeds = torch.where(is_text.unsqueeze(-1), text, embeds)
        embeds = torch.where((ids == config.separator_token_id).unsqueeze(-1), self.separator.to(embeds.dtype), embeds)
        is_level = (ids >= config.level_token_offset) & (ids < config.prompt_frame_token_id)
        level_tokens = self.embed_level((ids - config.level_token_offset).clamp(0, config.num_rvq_levels - 1))
        embeds = torch.where(is_level.unsqueeze(-1), level_tokens, embeds)

        # Levels a frame contributes at target level q (the original's off-by-one): max(q - 1, 1) levels.
        num_summed = max(level - 1, 1)
        is_prompt = ids == config.prompt_frame_token_id
        if prompt_codes is not None:
            frames = frames_at_placeholders(is_prompt, prompt_codes, "prompt_codes")[..., :num_summed]
            embeds = torch.where(is_prompt.unsqueeze(-1), self.embed_prompt(frames), embeds)
        is_audio = ids == config.audio_frame_token_id
        if audio_codes is not None:
            frames = frames_at_placeholders(is_audio, audio_codes, "audio_codes")
            embeds = torch.where(is_audio.unsqueeze(-1), self.embed_audio_frames(frames, level, task), embeds)
        return embeds

    def embed_response_tokens(self, ids: torch.LongTensor, task: str = "tts") -> torch.Tensor:
        """The response ids of an AR (level-0 codes) or STT (phoneme ids) row: one table lookup.

        A cached decoding step feeds response ids only, so `generate` embeds them here rather than through `embed`,
        whose per-segment lookups would all be discarded. Ids outside the table (padding of finished rows) are
        clamped into it; those rows' outputs are never used.
        """
        if task == "stt":
            return self.embed_text(ids.clamp(0, self.config.text_vocab_size - 1))
        return self.embed_response.levels[0](ids.clamp(0, self.config.audio_vocab_size))

    def _embed_mixed(self, input_ids, level, task, prompt_codes, audio_codes) -> torch.Tensor:
        """A batch whose rows run different passes (a training batch): each pass embeds its own rows.

        Every row gets exactly what the single-pass path gives it, and only the tables some row reads are used, so
        the others receive no gradient (as in the original, where the optimiser then skips them).
        """
        embeds = None
        for row_level, row_task, rows in row_passes(level, task, input_ids.shape[0], input_ids.device):
            part = self.embed(
                input_ids[rows],
                row_level,
                row_task,
                None if prompt_codes is None else prompt_codes[rows],
                None if audio_codes is None else audio_codes[rows],
            )
            if embeds is None:
                embeds = part.new_zeros(*input_ids.shape, part.shape[-1])
            embeds[rows] = part
        return embeds

    def embed_audio_frames(self, frames: torch.LongTensor, level: int, task: str) -> torch.Tensor:
        """Multi-level response frames: the NAR's input at `level`, or the audio of an STT item."""
        if task == "stt":
            # resps_emb[0](L0) + sum_{l=1..L-2} sum_{j<l} resps_emb[j+1](L_j): level j counts (L-2-j) times.
            depth = self.config.num_rvq_levels - 2
            weights = [float(depth - j) for j in range(depth)]
            return self.embed_response(frames[..., :1]) + self.embed_response(frames[..., :depth], 1, weights)
        return self.embed_response(frames[..., : max(level - 1, 1)], first_table=1)

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
        early_exit: LayerSkip | None = None,
        exit_head: nn.Module | None = None,
        scored_rows: int = 0,
        **kwargs,
    ):
        """Hidden states of the backbone (normed). With `early_exit`, layers run until the rows' early exit, scored
        on the last `scored_rows` positions (0 = all) through `exit_head` (the pass's classifier)."""
        if is_mixed_batch(level, task):
            batch = (input_ids if input_ids is not None else inputs_embeds).shape[0]
            for row_level, row_task, _ in row_passes(level, task, batch):
                check_pass(row_level, row_task, self.config.num_rvq_levels)
        else:
            check_pass(level, task, self.config.num_rvq_levels)
        if inputs_embeds is None:
            inputs_embeds = self.embed(input_ids, level, task, prompt_codes, audio_codes)
        past = cache.get_seq_length() if cache is not None else 0
        if position_ids is None:
            if input_ids is None or (torch.is_tensor(past) or past > 0):
                raise ValueError("position_ids are required with inputs_embeds or a non-empty cache")
            position_ids = segment_position_ids(input_ids, self.config)
        if attention_mask is None:
            # Always pass a mask: without one, transformers reads restarting position ids as packed sequences.
            batch, length = inputs_embeds.shape[:2]
            attention_mask = torch.ones(batch, past + length, dtype=torch.long, device=inputs_embeds.device)
        if early_exit is not None:
            hidden, _ = early_exit_forward(self.backbone, exit_head, inputs_embeds, attention_mask, position_ids, cache,
                                           early_exit, scored_rows or inputs_embeds.shape[1], CACHE_KWARG)
            return BaseModelOutputWithPast(last_hidden_state=hidden, **{CACHE_FIELD: cache})
        return self.backbone(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=use_cache,
            **{CACHE_KWARG: cache},
            **kwargs,
        )


class VallEForConditionalGeneration(VallEPreTrainedModel, VallEGenerationMixin):
    """VALL-E with its classifier heads and the EnCodec codec that turns codes into audio.

    `forward` runs one pass (AR step, NAR level or STT step); `generate` runs text -> level 0 (AR, cached) ->
    levels 1..7 (NAR) -> audio, or audio -> phonemes for STT.
    """

    _keys_to_ignore_on_load_unexpected = [r"^codec_model\.quantizer\..*\.(inited|cluster_size|embed_avg)$"]
    # The loss is a mean of per-item means (the original's), not a sum over tokens: the Trainer must not pass
    # `num_items_in_batch`, and divides the loss by the gradient-accumulation steps itself.
    accepts_loss_kwargs = False

    def __init__(self, config: VallEConfig):
        super().__init__(config)
        self.model = VallEModel(config)
        self.classifiers = nn.ModuleList(
            nn.Linear(config.hidden_size, config.head_size(level), bias=True) for level in range(config.num_heads)
        )
        self.codec_model = EncodecModel(config.codec_config)
        self.codec_model.requires_grad_(False)  # the codec is never trained with the model
        self.vocoder = VocosModel(config.vocoder_config) if config.vocoder_config is not None else None
        if self.vocoder is not None:
            self.vocoder.requires_grad_(False)
        self.post_init()
        self.generation_config = default_generation_config(config)

    def head_index(self, level: int, task: str) -> int:
        """Index of the classifier a pass uses: level k for TTS, the text head for STT."""
        if task == "stt" and not self.config.text_head:
            raise ValueError("this checkpoint has no text head (it was exported without one): it cannot transcribe "
                             "speech (task='stt'); use a checkpoint with the STT head, such as the released "
                             "ar+nar-llama-8")
        return self.config.num_rvq_levels if task == "stt" else level

    def mixed_logits(self, hidden: torch.Tensor, level, task) -> torch.Tensor:
        """Logits of a batch whose rows use different heads: each row through its own head.

        Narrower heads are right-padded with -inf to the widest one present, as in the original; that changes
        neither the softmax nor the cross-entropy of a row.
        """
        passes = row_passes(level, task, hidden.shape[0], hidden.device)
        heads = [(self.classifiers[self.head_index(row_level, row_task)], rows) for row_level, row_task, rows in passes]
        width = max(head.out_features for head, _ in heads)
        logits = None
        for head, rows in heads:
            part = head(hidden[rows])
            if logits is None:
                logits = part.new_full((*hidden.shape[:2], width), float("-inf"))
            logits[rows, :, : part.shape[-1]] = part
        return logits

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
            input_ids: `[B, L]` ids of the unified space (`VallEConfig`), left-padded with `pad_token_id`.
            prompt_codes: `[B, Tp, 8]` codes of the voice prompt, one frame per `prompt_frame_token_id`.
            audio_codes: `[B, T, n]` codes for the `audio_frame_token_id` placeholders (NAR response or STT audio).
            level: the RVQ level predicted (0 = AR; 1..7 = NAR). task: "tts" or "stt". Both may be given per row
                (`level` a LongTensor `[B]`, `task` a list of str or a LongTensor of `TASKS` indices) for a training
                batch that mixes passes; rows with different heads then get -inf-padded logits (`mixed_logits`).
            logits_to_keep: compute logits for the last N positions only (0 = all).
            labels: `[B, L]` training targets aligned with `input_ids`, in each row's head classes, -100 where not
                scored (`valle_hf.training.build_training_sequence` makes them). The returned `loss` is then the
                original's: per-row cross-entropy with a one-step shift for level-0 rows (AR and STT), none for NAR
                rows, a token mean per row and a mean over rows (`valle_hf.training.valle_loss`).
            early_exit: layer-skip settings (`valle_hf.layer_skip.LayerSkip`); the layers each row ran are appended
                to `early_exit.exit_layers`.
        """
        if early_exit is not None:
            if is_mixed_batch(level, task):
                raise ValueError("early_exit runs one pass at a time: give one level and task for the batch")
            kwargs.update(early_exit=early_exit, exit_head=self.classifiers[self.head_index(level, task)],
                          scored_rows=logits_to_keep)
        cache = cache if cache is not None else past_key_values
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            prompt_codes=prompt_codes,
            audio_codes=audio_codes,
            level=level,
            task=task,
            use_cache=use_cache,
            **kwargs,
        )
        hidden = outputs.last_hidden_state
        if logits_to_keep:
            if labels is not None:
                raise ValueError("labels need the logits of every position: do not pass logits_to_keep with labels")
            hidden = hidden[:, -logits_to_keep:]
        if is_mixed_batch(level, task):
            logits = self.mixed_logits(hidden, level, task)
        else:
            logits = self.classifiers[self.head_index(level, task)](hidden)
        loss = item_losses = token_losses = None
        if labels is not None:
            from .training import valle_loss

            shift = torch.as_tensor(level == 0, device=logits.device).expand(logits.shape[0])  # AR and STT rows
            loss, item_losses, token_losses, _ = valle_loss(logits, labels, shift, attention_mask)
        return VallEOutput(
            loss=loss,
            item_losses=item_losses,
            token_losses=token_losses,
            logits=logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            **{CACHE_FIELD: getattr(outputs, CACHE_FIELD, None)},
        )
