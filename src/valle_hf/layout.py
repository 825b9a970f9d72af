"""The original's sequence layouts and position ids, written in the unified id space of `VallEConfig`.

TTS (AR at level 0, NAR at level k):  ``text SEP [level] SEP prompt SEP response``
STT:                                  ``audio SEP [level 0] SEP text``

Segments are joined by one separator between consecutive segments (none at the ends); an empty segment still gets
its separators, as in the original. Prompt frames and multi-level response frames are placeholders whose codes
travel beside the ids (`prompt_codes`, `audio_codes`).
"""

from __future__ import annotations

import torch

from .configuration import VallEConfig
from .errors import VallEValueError


def _join(config: VallEConfig, segments: list[torch.Tensor]) -> torch.LongTensor:
    separator = torch.tensor([config.separator_token_id], dtype=torch.long, device=segments[0].device)
    pieces = []
    for index, segment in enumerate(segments):
        if index:
            pieces.append(separator)
        pieces.append(segment.long())
    return torch.cat(pieces)


def tts_sequence(
    config: VallEConfig,
    text_ids: torch.LongTensor,
    level: int,
    prompt_frames: int | None,
    response: torch.LongTensor | None = None,
    response_frames: int = 0,
) -> torch.LongTensor:
    """A TTS sequence: `response` holds level-0 ids (AR), or `response_frames` placeholders are used (NAR).

    `prompt_frames=None` omits the prompt segment (no voice prompt); 0 keeps an empty one.
    """
    device = text_ids.device
    segments = [
        text_ids.long() + config.text_token_offset,
        torch.tensor([config.level_token_offset + level], device=device),
    ]
    if prompt_frames is not None:
        segments.append(torch.full((prompt_frames,), config.prompt_frame_token_id, device=device))
    if response is None:
        response = torch.full((response_frames,), config.audio_frame_token_id, device=device)
    segments.append(response)
    return _join(config, segments)


def stt_sequence(config: VallEConfig, audio_frames: int, text_ids: torch.LongTensor) -> torch.LongTensor:
    """An STT sequence over `audio_frames` placeholders; `text_ids` (response so far, from BOS) are raw ids."""
    device = text_ids.device
    segments = [
        torch.full((audio_frames,), config.audio_frame_token_id, device=device),
        torch.tensor([config.level_token_offset], device=device),
        text_ids,
    ]
    return _join(config, segments)


def response_position_ids(config: VallEConfig, prefix_length: int, start: int, count: int,
                          device: torch.device | None = None) -> torch.LongTensor:
    """Position ids `[count]` of response frames `start .. start + count - 1` of a TTS sequence whose tokens before
    the response (``text SEP [level] SEP prompt SEP``) number `prefix_length`, as `segment_position_ids` gives them
    over the whole sequence: the response restarts at 0, or with `unified_position_ids` counts on from the prefix.
    For a sequence fed in pieces (the streamed NAR)."""
    first = start + (prefix_length if config.unified_position_ids else 0)
    return torch.arange(first, first + count, device=device)


def pad(sequences: list[torch.Tensor], pad_value: int, side: str = "left") -> tuple[torch.Tensor, torch.LongTensor]:
    """Stack 1-D sequences (or [T, n] code tensors) padded on `side`, with a 0/1 mask of the real entries."""
    if side not in ("left", "right"):
        raise VallEValueError(f"padding side must be 'left' or 'right', got {side!r}")
    length = max(len(sequence) for sequence in sequences)
    first = sequences[0]
    padded = first.new_full((len(sequences), length, *first.shape[1:]), pad_value)
    mask = torch.zeros(len(sequences), length, dtype=torch.long, device=first.device)
    for row, sequence in enumerate(sequences):
        start = length - len(sequence) if side == "left" else 0
        padded[row, start : start + len(sequence)] = sequence
        mask[row, start : start + len(sequence)] = 1
    return padded, mask


def segment_position_ids(input_ids: torch.LongTensor, config: VallEConfig) -> torch.LongTensor:
    """Position ids as the original assigns them: they restart at 0 in every segment.

    Each segment's range also covers the separator that follows it, except for the response (audio) segment, which
    has no such slot: once it has been passed, every separator opens the range of the segment after it instead
    (STT: ``frames 0..T-1, SEP 0, level 1, SEP 0, text 1..n``). Padding gets 1, as in the original. With
    `unified_position_ids` the ids simply count the real tokens.
    """
    is_pad = input_ids == config.pad_token_id
    if config.unified_position_ids:
        return ((~is_pad).long().cumsum(-1) - 1).clamp(min=0).masked_fill(is_pad, 1)

    def previous(mask: torch.Tensor, fill: bool) -> torch.Tensor:
        return torch.cat([torch.full_like(mask[:, :1], fill), mask[:, :-1]], dim=1)

    is_sep = input_ids == config.separator_token_id
    no_slot = (input_ids < config.text_token_offset) | (input_ids == config.audio_frame_token_id)
    sep_opens = is_sep & previous(no_slot.long().cumsum(dim=1) > 0, False)
    starts = (~is_pad & previous(is_pad, True)) | sep_opens | (previous(is_sep, False) & ~previous(sep_opens, False))
    index = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
    range_start = torch.where(starts, index, torch.zeros_like(index)).cummax(dim=1).values
    return (index - range_start).masked_fill(is_pad, 1)
