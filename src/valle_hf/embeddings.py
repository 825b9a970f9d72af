"""The segment embeddings: a unified-id sequence → `inputs_embeds`, built segment by segment as the original does.

The original embeds each segment from its own table (e-c-k-e-r/vall-e `vall_e/models/base.py:Base.inputs_to_embeddings`)
and joins them with one learned separator vector: text from the text table, the "RVQ level k" token from the level
table, prompt frames as a sum over some of their levels (one table per level), and the response as level-0 codes
(AR), as a sum over the levels generated so far (NAR), or as text ids (STT). Which levels are summed is the original's
off-by-one rule, `VallEConfig.summed_levels`.

A batch may run different passes in different rows (a training batch mixes levels and tasks): rows are grouped by
pass (`passes_of`) and each group is embedded on its own; a batch with one level and task is a single group.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .configuration import TASKS, VallEConfig
from .errors import VallEValueError, is_integer_tensor

__all__ = ["Pass", "SegmentEmbedding", "VallEAudioEmbedding", "VallEEmbeddings", "frames_at_placeholders",
           "level_argument", "passes_of"]


@dataclass(frozen=True)
class Pass:
    """One pass of the model (`level` 0 = AR, 1..L-1 = NAR; `task` "tts" or "stt") and the batch rows that run it."""

    level: int
    task: str
    rows: slice | torch.LongTensor


def _check_pass(level: int, task: str, num_levels: int) -> None:
    if task not in TASKS:
        raise VallEValueError(f"unknown task {task!r}; expected one of {TASKS}")
    if not 0 <= level < num_levels or (task == "stt" and level != 0):
        raise VallEValueError(f"level must be 0..{num_levels - 1} (0 for STT), got {level}")


def level_argument(level):
    """`level` as the passes and the loss read it: an integer, or an integer tensor with one per row (a list or array
    of them becomes one). Raises `VallEValueError` for a float or bool level: it was read as int(level), so 1.5 or
    True ran level 1, and a list was a TypeError deep inside."""
    if isinstance(level, (list, tuple, np.ndarray)):
        level = torch.as_tensor(level)
    if torch.is_tensor(level):
        integer = is_integer_tensor(level)
    else:
        integer = isinstance(level, numbers.Integral) and not isinstance(level, bool)
    if not integer:
        raise VallEValueError(f"level must be an integer, or integers with one per row (a LongTensor [B]), got "
                              f"{level!r:.80}")
    return level


def passes_of(
    level: int | torch.LongTensor, task: str | list[str] | torch.LongTensor, batch_size: int, num_levels: int,
    device: torch.device | None = None,
) -> list[Pass]:
    """The passes of a batch, each with its rows, in order of first row; checked against the model's levels.

    `level` is an int or a LongTensor `[B]`; `task` a str, a sequence of str, or a LongTensor `[B]` of indices into
    `TASKS` (0 = tts, 1 = stt), the form a data collator can hand through accelerate. One level and one task give a
    single pass over every row (`rows=slice(None)`). Raises ValueError for an unknown task or level.
    """
    level = level_argument(level)
    if (not torch.is_tensor(level) or level.dim() == 0) and isinstance(task, str):
        _check_pass(int(level), task, num_levels)
        return [Pass(int(level), task, slice(None))]
    levels = level.reshape(-1).tolist() if torch.is_tensor(level) else [int(level)] * batch_size
    if isinstance(task, str):
        tasks = [task] * batch_size
    elif torch.is_tensor(task):
        tasks = [TASKS[index] if 0 <= index < len(TASKS) else index for index in task.reshape(-1).tolist()]
    else:
        tasks = list(task)
    if len(levels) != batch_size or len(tasks) != batch_size:
        raise VallEValueError(
            f"level and task need one value per row ({batch_size}), got {len(levels)} and {len(tasks)}"
        )
    groups: dict[tuple[int, str], list[int]] = {}
    for row, key in enumerate(zip(levels, tasks, strict=True)):
        groups.setdefault(key, []).append(row)
    for row_level, row_task in groups:
        _check_pass(row_level, row_task, num_levels)
    return [Pass(lvl, tsk, torch.tensor(rows, device=device)) for (lvl, tsk), rows in groups.items()]


def frames_at_placeholders(mask: torch.BoolTensor, codes: torch.LongTensor, name: str) -> torch.LongTensor:
    """Codes [B, L, n] aligned with the sequence: the i-th True of `mask` in a row takes frame i of `codes[b]`."""
    if codes.dim() != 3 or codes.shape[0] != mask.shape[0]:
        raise VallEValueError(
            f"{name} must have shape [batch={mask.shape[0]}, frames, levels], got {tuple(codes.shape)}"
        )
    if mask.any() and int(mask.sum(dim=1).max()) > codes.shape[1]:
        raise VallEValueError(f"the sequence has more {name} placeholders than {name} has frames ({codes.shape[1]})")
    index = (mask.long().cumsum(dim=1) - 1).clamp(min=0, max=max(codes.shape[1] - 1, 0))
    return torch.gather(codes, 1, index.unsqueeze(-1).expand(-1, -1, codes.shape[-1]))


class SegmentEmbedding(nn.Embedding):
    """An embedding table of one segment type; the original initialises them all unit-normal (torch's default)."""


class VallEAudioEmbedding(nn.Module):
    """One table per RVQ level; a frame is embedded as a (weighted) sum over some of its levels."""

    def __init__(self, table_sizes: list[int], hidden_size: int):
        super().__init__()
        self.levels = nn.ModuleList(SegmentEmbedding(size, hidden_size) for size in table_sizes)

    def forward(
        self, codes: torch.LongTensor, first_table: int = 0, weights: list[float] | None = None
    ) -> torch.Tensor:
        """Sum of ``weights[j] * levels[first_table + j](codes[..., j])`` over the levels j of `codes` `[..., n]`."""
        total = 0
        for j in range(codes.shape[-1]):
            term = self.levels[first_table + j](codes[..., j])
            total = total + (term if weights is None else weights[j] * term)
        return total


class VallEEmbeddings(nn.Module):
    """The tables of every segment and the separator (the original's `text_emb`, `rvq_l_emb`, `sep`, `proms_emb`,
    `resps_emb`). Only the tables the original can reach are built (see `VallEConfig.num_prompt_tables`)."""

    def __init__(self, config: VallEConfig):
        super().__init__()
        self.config = config
        hidden, audio = config.hidden_size, config.audio_vocab_size
        self.text = SegmentEmbedding(config.text_vocab_size, hidden)
        self.level = SegmentEmbedding(config.num_rvq_levels, hidden)
        self.separator = nn.Parameter(torch.zeros(hidden))
        self.prompt = VallEAudioEmbedding([audio] * config.num_prompt_tables, hidden)
        self.response = VallEAudioEmbedding([audio + 1] + [audio] * (config.num_response_tables - 1), hidden)

    def forward(
        self,
        input_ids: torch.LongTensor,
        passes: list[Pass],
        prompt_codes: torch.LongTensor | None = None,
        audio_codes: torch.LongTensor | None = None,
    ) -> torch.Tensor:
        """`inputs_embeds` `[B, L, hidden]` of unified ids `[B, L]`; each pass's rows embedded on their own.

        `prompt_codes` `[B, Tp, levels]` fill the prompt-frame placeholders, `audio_codes` `[B, T, levels]` the audio
        frames (NAR response or STT audio), the i-th placeholder of a row taking frame i. Only the tables some row
        reads are used, so the others receive no gradient, as in the original.
        """
        if len(passes) == 1:
            return self.embed_pass(input_ids, passes[0].level, passes[0].task, prompt_codes, audio_codes)
        embeds = None
        for one in passes:
            part = self.embed_pass(
                input_ids[one.rows], one.level, one.task,
                None if prompt_codes is None else prompt_codes[one.rows],
                None if audio_codes is None else audio_codes[one.rows],
            )
            if embeds is None:
                embeds = part.new_zeros(*input_ids.shape, part.shape[-1])
            embeds[one.rows] = part
        return embeds

    def embed_pass(self, ids, level: int, task: str, prompt_codes, audio_codes) -> torch.Tensor:
        """The embeddings of rows that all run one pass."""
        config = self.config
        # Response ids are text (STT) or level-0 codes (AR). A NAR sequence has none (its frames are placeholders), so
        # it does not read level 0's table and training leaves that table without a gradient, as the original does.
        embeds = 0.0
        if task == "stt" or level == 0:
            is_response = (ids < config.text_token_offset).unsqueeze(-1)
            embeds = torch.where(is_response, self.response_tokens(ids, task), 0.0)
        is_text = (ids >= config.text_token_offset) & (ids < config.separator_token_id)
        text = self.text((ids - config.text_token_offset).clamp(0, config.text_vocab_size - 1))
        embeds = torch.where(is_text.unsqueeze(-1), text, embeds)
        embeds = torch.where((ids == config.separator_token_id).unsqueeze(-1), self.separator.to(embeds.dtype), embeds)
        is_level = (ids >= config.level_token_offset) & (ids < config.prompt_frame_token_id)
        level_tokens = self.level((ids - config.level_token_offset).clamp(0, config.num_rvq_levels - 1))
        embeds = torch.where(is_level.unsqueeze(-1), level_tokens, embeds)
        is_prompt = ids == config.prompt_frame_token_id
        if prompt_codes is not None:
            frames = frames_at_placeholders(is_prompt, prompt_codes, "prompt_codes")[..., : config.summed_levels(level)]
            embeds = torch.where(is_prompt.unsqueeze(-1), self.prompt(frames), embeds)
        is_audio = ids == config.audio_frame_token_id
        if audio_codes is not None:
            frames = frames_at_placeholders(is_audio, audio_codes, "audio_codes")
            embeds = torch.where(is_audio.unsqueeze(-1), self.audio_frames(frames, level, task), embeds)
        return embeds

    def response_tokens(self, ids: torch.LongTensor, task: str = "tts") -> torch.Tensor:
        """The response ids of an AR (level-0 codes) or STT (phoneme ids) row: one table lookup.

        A cached decoding step feeds response ids only, so `generate` embeds them here rather than through `forward`,
        whose per-segment lookups would all be discarded. Ids outside the table (padding of finished rows) are
        clamped into it; those rows' outputs are never used.
        """
        if task == "stt":
            return self.text(ids.clamp(0, self.config.text_vocab_size - 1))
        return self.response.levels[0](ids.clamp(0, self.config.audio_vocab_size))

    def audio_frames(self, frames: torch.LongTensor, level: int, task: str) -> torch.Tensor:
        """Multi-level audio frames `[..., levels]`: the NAR's response at `level`, or the audio of an STT item.

        STT reads `resps_emb[0](L0) + sum_{l=1..L-2} sum_{j<l} resps_emb[j+1](L_j)`: level j counts (L-2-j) times
        (`vall_e/models/base.py`, the stt branch).
        """
        if task == "stt":
            depth = self.config.stt_levels
            weights = [float(depth - j) for j in range(depth)]
            return self.response(frames[..., :1]) + self.response(frames[..., :depth], 1, weights)
        return self.response(frames[..., : self.config.summed_levels(level)], first_table=1)
