"""Training: the original's per-item RVQ level draw, training sequences, a data collator and LoRA.

The released weights were trained with one exact recipe; a fine-tune that differs quietly pulls the model away from
what it learned. Everything here reproduces the original (e-c-k-e-r/vall-e `vall_e/models/ar_nar.py:AR_NAR.forward`,
its training branch; the loss itself is `valle_hf.loss`):

* each item gets its own RVQ level k, drawn from P(k) = (8 - k) / 36 (`sample_levels`), 0 for STT;
* AR items (k = 0) see ``text SEP [0] SEP prompt SEP codes[:, 0] 1024``; NAR items (k >= 1) see the response as
  multi-level frames; STT items see ``audio SEP [0] SEP text`` (`build_training_sequence`);
* targets are aligned with the input rows: text ids (through the item's own head, even for audio heads), the level
  token k, the response's level-k codes (plus the stop 1024 for the AR); -100 on separators, prompt and STT audio;
* the loss shifts by one position over the whole joined sequence for level-0 items (AR and STT) and not at all for
  NAR items, takes each item's token mean and then the mean over items (`valle_hf.loss.valle_loss`).

`VallEForConditionalGeneration.forward(..., labels=...)` computes this loss in one backbone pass for a batch that
mixes levels and tasks; `VallEDataCollator` builds such batches from (phoneme ids, prompt codes, codes, task) items.
Passed to the Trainer as a callback too, it keys each item's draws on the epoch, so that `resume_from_checkpoint`
trains on the draws an uninterrupted run would have seen.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import re
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from transformers import TrainerCallback

from .configuration import TASKS, VallEConfig
from .errors import VallEValueError, get_logger, is_integer_tensor
from .layout import pad, stt_sequence, tts_sequence
from .loss import IGNORE_INDEX

logger = get_logger(__name__)

# Segment of each target token (the loss fixtures' labels): which part of the sequence a target belongs to.
SEGMENT_TEXT, SEGMENT_SEP, SEGMENT_LEVEL, SEGMENT_PROMPT, SEGMENT_RESPONSE, SEGMENT_STOP = range(6)


# ---------------------------------------------------------------------------------------------------- levels


def level_pool(num_levels: int = 8) -> list[int]:
    """The original's pool of RVQ levels: level k appears (num_levels - k) times, so P(k) = (8 - k) / 36 for 8.

    The original's "equal" setting builds the same pool (a bug: the string is cleared before it is compared), so
    this is the distribution every released-config training run used.
    """
    return [level for level in range(num_levels) for _ in range(num_levels - level)]


def sample_levels(count: int, generator: torch.Generator | None = None, num_levels: int = 8) -> torch.LongTensor:
    """Draw `count` levels uniformly from `level_pool` (the original's `random.choice(pool)` per item)."""
    pool = torch.tensor(level_pool(num_levels))
    return pool[torch.randint(len(pool), (count,), generator=generator)]


# ---------------------------------------------------------------------------------------------------- sequences


@dataclass
class TrainingSequence:
    """One item as the model reads it: unified ids, the targets aligned with them, and the codes behind the frames.

    `labels[j]` is the class row j's *target* (the original's target vector, before any shift); `segments[j]` says
    which part of the sequence that target belongs to (SEGMENT_*), for diagnostics and tests.
    """

    input_ids: torch.LongTensor
    labels: torch.LongTensor
    segments: torch.LongTensor
    level: int
    task: str
    prompt_codes: torch.LongTensor | None = None
    audio_codes: torch.LongTensor | None = None


def _joined(parts: list[tuple[torch.Tensor, int]]) -> tuple[torch.LongTensor, torch.LongTensor]:
    """Targets and segment labels of consecutive segments, with IGNORE_INDEX (segment SEP) between them."""
    labels, segments = [], []
    for index, (targets, segment) in enumerate(parts):
        if index:
            labels.append(torch.tensor([IGNORE_INDEX]))
            segments.append(torch.tensor([SEGMENT_SEP]))
        labels.append(targets.long().cpu())
        segments.append(torch.full((len(targets),), segment, dtype=torch.long))
    return torch.cat(labels), torch.cat(segments)


def _checked_ids(value, name: str, dims: int, high: int) -> torch.LongTensor:
    """An item's ids or codes as int64, checked: an integer dtype (floats and bools are refused, never cast), `dims`
    dimensions, at least one entry along the first (a token or frame), and every value in 0..high-1."""
    tensor = torch.as_tensor(value)
    if not is_integer_tensor(tensor):
        raise VallEValueError(f"{name} must be integer ids, got dtype {tensor.dtype}")
    if tensor.dim() != dims:
        layout = "[tokens]" if dims == 1 else "[frames, levels]"
        raise VallEValueError(f"{name} must have shape {layout}, got {tuple(tensor.shape)}")
    if tensor.numel() == 0:
        raise VallEValueError(f"{name} is empty (shape {tuple(tensor.shape)}): every item needs text and audio")
    low_value, high_value = int(tensor.min()), int(tensor.max())  # as ints: `high` overflows a uint8's or int8's
    if low_value < 0 or high_value >= high:
        raise VallEValueError(f"{name} must lie in 0..{high - 1}, got values from {low_value} to {high_value}")
    return tensor.long()


def check_codes(config: VallEConfig, value, name: str) -> torch.LongTensor:
    """An item's codes, checked as `_checked_ids` does, and refused with more levels per frame than the codec makes:
    a `[levels, frames]` tensor (an encoder's own layout) read as `[frames, levels]` trained on a few "frames" of
    the first levels, without a word. Levels past the model's and up to the codec's are kept, as the original does."""
    codes = _checked_ids(value, name, 2, config.audio_vocab_size)
    most = config.codec_config.num_quantizers
    if codes.shape[1] > most:
        raise VallEValueError(f"{name} has shape {tuple(codes.shape)}: {codes.shape[1]} levels per frame, more than "
                              f"the codec's {most}; codes are [frames, levels] (a [levels, frames] tensor needs .T)")
    return codes


def _checked_text(config: VallEConfig, input_ids: torch.LongTensor) -> torch.LongTensor:
    """One text's ids from BOS to EOS, neither inside: a row of a padded batch (ids after EOS) or ids without BOS/EOS
    would train every item on targets the model never meets (an STT model that never learns to stop, or to stop
    and then emit padding)."""
    bos, eos = config.text_bos_token_id, config.text_eos_token_id
    inner = input_ids[1:-1]
    if len(input_ids) < 2 or input_ids[0] != bos or input_ids[-1] != eos or ((inner == bos) | (inner == eos)).any():
        shown = input_ids.tolist()
        shown = shown if len(shown) <= 12 else [*shown[:6], "...", *shown[-6:]]
        raise VallEValueError(f"input_ids must be one text's phoneme ids from <bos> ({bos}) to </eos> ({eos}), neither "
                              f"inside, as the processor gives them (a padded batch's row: cut it with its "
                              f"attention_mask), got {shown}")
    if len(input_ids) == 2:  # what the processor refuses: nothing for TTS to say, nor for STT to transcribe
        raise VallEValueError(f"input_ids hold no phoneme between <bos> and </eos> (an empty text), got "
                              f"{input_ids.tolist()}: leave the utterance out")
    return input_ids


def check_positions(config: VallEConfig, **lengths: int | None) -> None:
    """Refuse (`VallEValueError`) a segment (text, prompt, response: each `name=length`, None for none) longer than
    the model's positions, which restart in each, as `generate` refuses it: it trained on positions the model has
    no rotation for in the generation it learns."""
    for name, length in lengths.items():
        if length is not None and length > config.max_position_embeddings:
            raise VallEValueError(f"{name} is {length} long, and this model has positions for "
                                  f"{config.max_position_embeddings}: give shorter utterances (VallEDataset's "
                                  "duration_range leaves longer ones out) and prompts (its prompt_duration)")


def check_text_ids(config: VallEConfig, input_ids) -> torch.LongTensor:
    """An item's `input_ids` as int64, refused (`VallEValueError`) unless they are integer phoneme ids of `config`'s
    text vocabulary that make one text from BOS to EOS."""
    return _checked_text(config, _checked_ids(input_ids, "input_ids", 1, config.text_vocab_size))


def build_training_sequence(
    config: VallEConfig,
    input_ids: torch.LongTensor,
    audio_codes: torch.LongTensor,
    level: int,
    task: str = "tts",
    prompt_codes: torch.LongTensor | None = None,
) -> TrainingSequence:
    """The original's training input and targets for one item (`AR_NAR.forward` and `Base.calc_loss` targets).

    `input_ids`: phoneme ids with BOS/EOS; `audio_codes`: `[T, levels]` target codes (TTS) or the audio to transcribe
    (STT); `prompt_codes`: `[Tp, levels]` voice prompt or None (TTS only). `level` is the item's RVQ level (0 for
    STT). The AR response is level 0 plus the stop token as ids; NAR responses and STT audio are placeholders whose
    codes travel in the sequence's `audio_codes` (the embedding reads only the levels the original reads).

    Raises `VallEValueError` for what the model cannot train on: float or bool ids (never cast), empty text, text ids
    that are not one text from BOS to EOS (a padded row), 0 frames, phoneme ids outside the text vocabulary, codes
    outside EnCodec's 0..1023, a segment longer than the model's positions, an unknown task or a level the codes do
    not have.
    """
    input_ids = check_text_ids(config, input_ids)
    audio_codes = _checked_ids(audio_codes, "audio_codes", 2, config.audio_vocab_size)
    if prompt_codes is not None:
        prompt_codes = _checked_ids(prompt_codes, "prompt_codes", 2, config.audio_vocab_size)
    # the response's positions hold the AR's stop token after its frames
    check_positions(config, input_ids=len(input_ids), prompt_codes=None if prompt_codes is None else len(prompt_codes),
                     audio_codes=len(audio_codes) + (task == "tts" and level == 0))
    if task == "stt":
        if level != 0:
            raise VallEValueError(f"STT items are always level 0, got level {level}")
        if audio_codes.shape[1] < config.stt_levels:
            raise VallEValueError(f"STT audio needs {config.stt_levels}+ code levels, got {audio_codes.shape[1]}")
        ids = stt_sequence(config, len(audio_codes), input_ids)
        labels, segments = _joined(
            [(torch.full((len(audio_codes),), IGNORE_INDEX), SEGMENT_RESPONSE), (torch.tensor([0]), SEGMENT_LEVEL),
             (input_ids, SEGMENT_TEXT)]
        )
        return TrainingSequence(ids, labels, segments, 0, task, None, audio_codes)
    if task != "tts":
        raise VallEValueError(f"unknown task {task!r}; expected 'tts' or 'stt'")
    if not 0 <= level < min(config.num_rvq_levels, audio_codes.shape[1]):
        raise VallEValueError(f"level {level} needs codes with more than {level} levels, got {audio_codes.shape[1]}")
    prompt_frames = None if prompt_codes is None else len(prompt_codes)
    parts = [(input_ids, SEGMENT_TEXT), (torch.tensor([level]), SEGMENT_LEVEL)]
    if prompt_codes is not None:
        parts.append((torch.full((prompt_frames,), IGNORE_INDEX), SEGMENT_PROMPT))
    if level == 0:
        response = torch.cat([audio_codes[:, 0], torch.tensor([config.stop_token_id])])
        ids = tts_sequence(config, input_ids, 0, prompt_frames, response)
        labels, segments = _joined(parts + [(response, SEGMENT_RESPONSE)])
        segments[-1] = SEGMENT_STOP
        nar_codes = None
    else:
        ids = tts_sequence(config, input_ids, level, prompt_frames, response_frames=len(audio_codes))
        labels, segments = _joined(parts + [(audio_codes[:, level], SEGMENT_RESPONSE)])
        nar_codes = audio_codes
    return TrainingSequence(ids, labels, segments, level, task, prompt_codes, nar_codes)


# ---------------------------------------------------------------------------------------------------- collator


def _rank() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return 0


def shared_epoch() -> torch.Tensor:
    """An epoch number (-1: none set) in shared memory: DataLoader workers, persistent ones included, read the value
    that the main process sets, where a plain attribute would stay at its value when the workers started."""
    return torch.full((), -1, dtype=torch.long).share_memory_()


def set_shared_epoch(epoch_tensor: torch.Tensor, epoch: int | None) -> None:
    """Set a `shared_epoch` tensor: a non-negative integer, or None to unset it (`VallEValueError` otherwise)."""
    if epoch is not None and (isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral)
                              or not 0 <= epoch < 2**63):
        raise VallEValueError(f"epoch must be a non-negative integer (below 2**63) or None, got {epoch!r}")
    epoch_tensor.fill_(-1 if epoch is None else int(epoch))


def read_shared_epoch(epoch_tensor: torch.Tensor) -> int | None:
    """The epoch a `shared_epoch` tensor holds; None when none is set."""
    epoch = int(epoch_tensor)
    return None if epoch < 0 else epoch


# The token ids transformers' Trainer sets to its `processing_class` tokenizer's at each `train()`
# (`align_special_tokens`): a VALL-E model's are audio codes and segment tokens, the tokenizer's phoneme ids (its
# end token 2 is an audio code to the AR). Generation then refused pad_token_id=0, and the checkpoint did not load.
_SPECIAL_TOKENS = tuple((part, name) for part in ("config", "generation_config")
                        for name in ("eos_token_id", "pad_token_id", "bos_token_id"))
_ABSENT = object()


def _special_token_ids(model) -> dict:
    """The end, pad and start token ids of `model`'s config and generation config (`_ABSENT` where unset)."""
    return {key: getattr(getattr(model, key[0], None), key[1], _ABSENT) for key in _SPECIAL_TOKENS}


def _config_token_ids(config) -> dict:
    """`_special_token_ids` as a model built from `config` has them: its generation config holds its config's ids
    (None where the config has none)."""
    ids = {name: getattr(config, name, _ABSENT) for _, name in _SPECIAL_TOKENS}
    return {(part, name): None if part == "generation_config" and ids[name] is _ABSENT else ids[name]
            for part, name in _SPECIAL_TOKENS}


def _keep_special_token_ids(model, saved: dict) -> None:
    """Set back the ids of `saved` (`_special_token_ids`) that differ in `model` now, saying which."""
    changed = []
    for (part, name), value in saved.items():
        holder = getattr(model, part, None)
        if holder is None or getattr(holder, name, _ABSENT) == value:
            continue
        changed.append(f"{part}.{name}")
        if value is _ABSENT:
            delattr(holder, name)
        else:
            setattr(holder, name, value)
    if changed:
        logger.warning(f"kept the model's own {', '.join(changed)}: the Trainer set them to its processing_class's "
                       "tokenizer's, whose phoneme ids are other tokens to a VALL-E model")


def _datasets_within(dataset) -> list:
    """`dataset` and the datasets it wraps (`Subset`, as `random_split` gives, and `ConcatDataset`), to the bottom."""
    if isinstance(dataset, torch.utils.data.Subset):
        return [dataset, *_datasets_within(dataset.dataset)]
    if isinstance(dataset, torch.utils.data.ConcatDataset):
        return [dataset, *(inner for part in dataset.datasets for inner in _datasets_within(part))]
    return [] if dataset is None else [dataset]


def _content_digest(input_ids: torch.LongTensor, audio_codes: torch.LongTensor) -> bytes:
    """What identifies an item for its draws: its text ids and its codes (shapes and values)."""
    digest = hashlib.blake2b(f"{tuple(input_ids.shape)} {tuple(audio_codes.shape)}".encode(), digest_size=16)
    for tensor in (input_ids, audio_codes):
        digest.update(tensor.cpu().contiguous().numpy().tobytes())
    return digest.digest()


@dataclass
class VallEDataCollator(TrainerCallback):
    """Turns items into a padded training batch for `VallEForConditionalGeneration.forward(**batch)`.

    An item is a dict with `input_ids` (phoneme ids with BOS/EOS, as the processor gives them), `audio_codes`
    (`[T, levels]`: the target, or the audio for STT), optionally `prompt_codes` (`[Tp, levels]`, TTS), `task`
    ("tts"/"stt"; drawn uniformly from `tasks` when absent, as the original draws from `tasks_list`) and `level`
    (drawn from P(k) = (8 - k)/36 when absent, capped to the levels present, as the original does; always 0 for
    STT). Every key is an argument of the model's `forward`, so the Trainer's default `remove_unused_columns=True`
    keeps them all. A given level outside the model's 0..num_rvq_levels-1 or above the levels its codes (and prompt)
    have, an empty batch, and any item `build_training_sequence` refuses raise `VallEValueError` naming the item, so
    bad data never trains silently; `tasks` with "stt" for a model without a text head is refused when the collator
    is made.

    The batch holds `input_ids`, `attention_mask`, `labels`, `level` `[B]`, `task` `[B]` (indices into TASKS, so
    that it travels through accelerate like any tensor), and `prompt_codes` / `audio_codes` (right-padded; the i-th
    placeholder of a row reads frame i whatever the padding side of the ids). `padding_side` is "right" (the
    original's) or "left"; neither changes any item's loss.

    Draws are reproducible (the same `seed`, the same draws), and keyed in one of two ways:

    * **Per item and epoch**, once an epoch is set (`set_epoch`): each item's task and level come from a generator
      seeded with (`seed`, epoch, the item's `input_ids` and `audio_codes`, how many items of the same text and codes
      come before it in the batch). An item's draws then depend on nothing else: not on the order of the items, the
      batch size, the DataLoader workers or the number of processes; a new epoch draws anew. Pass the collator to
      the Trainer as a callback too (`Trainer(..., data_collator=collator, callbacks=[collator])`): it sets the
      Trainer's epoch at the start of each epoch (and on the training set, when it has `set_epoch`, as
      `VallEDataset` has), so a run resumed with `resume_from_checkpoint` trains on the very draws of the run it
      continues (the Trainer skips the batches already trained without collating them, so a stream of draws would
      start again from its seed). Items that are copies of each other (the same text and codes) in different
      batches of one epoch get the same draws. As a callback it also keeps the model's end, pad and start token
      ids, which the Trainer sets to those of its `processing_class` tokenizer.
    * **As a stream**, while no epoch is set (a collator used on its own, or a Trainer without the callback): one
      seeded `torch.Generator` per process and DataLoader worker, its seed combined with the worker's own seed
      (different per worker and per epoch, reproducible under the Trainer's seed) and with the process rank under
      torch.distributed. A resumed run then draws other levels and tasks than the run it continues.

    Evaluation batches draw the same way (keyed on the training epoch, or from the stream): give an evaluation set's
    items their `level` (and `prompt_codes`) to compare checkpoints on the same draws.
    """

    config: VallEConfig
    padding_side: str = "right"
    seed: int = 0
    tasks: Sequence[str] = ("tts",)
    _generators: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    _epoch: torch.Tensor = field(default_factory=shared_epoch, init=False, repr=False, compare=False)
    _next_epoch: int = field(default=0, init=False, repr=False, compare=False)
    _warned_shared_evaluation: bool = field(default=False, init=False, repr=False, compare=False)
    _special_ids: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self):
        # the ids to keep, where the Trainer's on_init_end comes too late to read the model's (`add_callback`)
        self._special_ids = _config_token_ids(self.config)
        if self.padding_side not in ("left", "right"):
            raise VallEValueError(f"padding_side must be 'left' or 'right', got {self.padding_side!r}")
        unknown = [task for task in self.tasks if task not in TASKS]
        if unknown or not self.tasks:
            raise VallEValueError(f"tasks must be a non-empty list of {TASKS}, got {list(self.tasks)}")
        if "stt" in self.tasks and not self.config.text_head:  # refused here, not at the first STT item's forward
            raise VallEValueError(f"tasks {list(self.tasks)} include 'stt', but the model has no text head (it was "
                                  "exported without one): it cannot learn to transcribe; train tts only, or start "
                                  "from a checkpoint with the STT head, such as the released ar+nar-llama-8")

    @property
    def epoch(self) -> int | None:
        """The epoch the draws are keyed on (`set_epoch`); None: draws come from the per-process stream."""
        return read_shared_epoch(self._epoch)

    def set_epoch(self, epoch: int | None) -> None:
        """Key each item's draws on `epoch` from now on (see the class docstring); None goes back to the stream.

        The Trainer calls it through the callback (`on_epoch_begin`); a loop of your own calls it at the start of
        each epoch. DataLoader workers, persistent ones included, see the new value."""
        set_shared_epoch(self._epoch, epoch)

    def on_init_end(self, args, state, control, model=None, **kwargs):
        """TrainerCallback: note the model's end, pad and start token ids, which `on_train_begin` keeps (a collator
        added later keeps those of the config it was made with)."""
        if model is not None:
            self._special_ids = _special_token_ids(model)

    def on_train_begin(self, args, state, control, model=None, processing_class=None, train_dataloader=None,
                       **kwargs):
        """TrainerCallback: the model keeps its own end, pad and start token ids (the Trainer set them to its
        `processing_class` tokenizer's phoneme ids); a resumed run continues the epoch its checkpoint was saved in; a
        training set that can check itself against the model (`VallEDataset.check_model`: prepared with another
        codec, or with another tokenizer than the Trainer's `processing_class`) is checked before the first step: the
        Trainer trained on codes that stand for other sounds without a word."""
        if model is not None:
            _keep_special_token_ids(model, self._special_ids)
        self._next_epoch = math.floor(state.epoch or 0)
        tokenizer = getattr(processing_class, "tokenizer", processing_class)
        for dataset in _datasets_within(getattr(train_dataloader, "dataset", None)):
            if model is not None and hasattr(dataset, "check_model"):
                dataset.check_model(model, tokenizer)

    def on_epoch_begin(self, args, state, control, train_dataloader=None, **kwargs):
        """TrainerCallback: key the draws on the Trainer's epoch, here and in the training set (its `set_epoch`, which
        accelerate leaves uncalled on a resumed run and under several processes; also within a `Subset` or
        `ConcatDataset`). The Trainer calls it before the epoch's DataLoader iterator (and so its workers) starts."""
        epoch, self._next_epoch = self._next_epoch, self._next_epoch + 1
        self.set_epoch(epoch)
        for dataset in _datasets_within(getattr(train_dataloader, "dataset", None)):
            if callable(getattr(dataset, "set_epoch", None)):
                dataset.set_epoch(epoch)

    def on_evaluate(self, args, state, control, train_dataloader=None, eval_dataloader=None, **kwargs):
        """TrainerCallback: warn (once) where the evaluation set is a training set's own instance: accelerate sets the
        epoch of the evaluation set itself (not of a `Subset`'s dataset) at each evaluation, so the training prompts
        drawn after it are keyed on that, and a resumed run trains on other prompts than an uninterrupted one."""
        evaluation = getattr(eval_dataloader, "dataset", None)
        training = _datasets_within(getattr(train_dataloader, "dataset", None))
        if callable(getattr(evaluation, "set_epoch", None)) and any(evaluation is dataset for dataset in training) \
                and not self._warned_shared_evaluation:
            self._warned_shared_evaluation = True
            logger.warning(f"the evaluation set is the training set's own {type(evaluation).__name__} instance: each "
                           "evaluation sets its epoch, so the training prompts drawn after it, and a run resumed from "
                           "a checkpoint, differ from an uninterrupted run's; evaluate on another instance (made "
                           "again with the same settings), or on a Subset of it")

    def _item_generator(self, content: bytes, occurrence: int) -> torch.Generator:
        """The generator of one item's draws in the current epoch: seeded with (`seed`, epoch, `content`: the item's
        `_content_digest`, `occurrence`: how many items of the same content come before it in the batch)."""
        key = f"{self.seed} {self.epoch} {occurrence} ".encode() + content
        seed = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little")
        return torch.Generator().manual_seed(seed % 2**63)

    def generator(self) -> torch.Generator:
        """The seeded stream generator of this process and DataLoader worker (used while no epoch is set)."""
        info = torch.utils.data.get_worker_info()
        key = (_rank(), None if info is None else info.seed)
        if key not in self._generators:
            seed = self.seed + 1_000_003 * key[0] + (0 if info is None else 7_919 * (info.seed % 2**31 + 1))
            self._generators[key] = torch.Generator().manual_seed(seed % 2**63)
        return self._generators[key]

    def item_sequence(self, item: dict, generator: torch.Generator | None = None,
                      seen: Counter | None = None) -> TrainingSequence:
        """Task, level (drawn or given, then capped) and the training sequence of one item.

        The draws come from `generator`, or, when it is None, from the item's own, keyed on the epoch (see the class
        docstring); `seen` counts the items of each text and codes met before in the batch (updated here), so that
        copies in one batch draw apart."""
        if not isinstance(item, Mapping):
            raise VallEValueError(f"an item is a dict (input_ids, audio_codes, ...), got {type(item).__name__}")
        missing = [key for key in ("input_ids", "audio_codes") if item.get(key) is None]
        if missing:
            raise VallEValueError(f"the item has no {' or '.join(missing)}: every item needs input_ids (phoneme ids) "
                                  "and audio_codes ([frames, levels])")
        codes = check_codes(self.config, item["audio_codes"], "audio_codes")
        if generator is None:
            text = _checked_ids(item["input_ids"], "input_ids", 1, self.config.text_vocab_size)
            seen = Counter() if seen is None else seen
            content = _content_digest(text, codes)
            generator = self._item_generator(content, seen[content])
            seen[content] += 1
        task = item.get("task")
        if task is None:
            task = self.tasks[int(torch.randint(len(self.tasks), (1,), generator=generator))]
        prompt = item.get("prompt_codes") if task == "tts" else None
        prompt = None if prompt is None else check_codes(self.config, prompt, "prompt_codes")
        level = item.get("level")
        if level is not None and not _is_level(level, self.config.num_rvq_levels):
            raise VallEValueError(f"level must be an integer in 0..{self.config.num_rvq_levels - 1}, got {level!r}")
        # The original caps a drawn level to the levels the response and the prompt have; STT is always level 0. A
        # level given that they do not have is refused: capped, it trained another level than the one asked for.
        cap = min([codes.shape[-1] - 1] + ([] if prompt is None else [prompt.shape[-1] - 1]))
        if level is None:
            level = min(int(sample_levels(1, generator, self.config.num_rvq_levels)), cap)
        elif task != "stt" and int(level) > cap:
            raise VallEValueError(f"level {int(level)} needs audio_codes{'' if prompt is None else ' and prompt_codes'}"
                                  f" with more than {int(level)} levels, got {codes.shape[-1]}"
                                  f"{'' if prompt is None else f' and {prompt.shape[-1]}'}")
        level = 0 if task == "stt" else int(level)
        return build_training_sequence(self.config, item["input_ids"], codes, level, task, prompt)

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        if not items:
            raise VallEValueError("the collator got a batch of 0 items")
        generator = self.generator() if self.epoch is None else None  # None: each item its own
        sequences, seen = [], Counter()
        for index, item in enumerate(items):
            try:
                sequences.append(self.item_sequence(item, generator, seen))
            except VallEValueError as error:
                name = f" ({item['id']})" if isinstance(item, Mapping) and "id" in item else ""
                raise VallEValueError(f"item {index}{name} of the batch: {error}") from None
        return collate_sequences(self.config, sequences, self.padding_side)


def _is_level(value, num_levels: int) -> bool:
    """An integer (Python, numpy or a one-element integer tensor; never a bool or a float) in 0..num_levels-1."""
    if torch.is_tensor(value):
        if value.numel() != 1 or not is_integer_tensor(value):
            return False
        value = int(value)
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and 0 <= value < num_levels


def collate_sequences(
    config: VallEConfig, sequences: list[TrainingSequence], padding_side: str = "right"
) -> dict[str, torch.Tensor]:
    """Pad training sequences into one batch (see `VallEDataCollator`)."""
    input_ids, attention_mask = pad([s.input_ids for s in sequences], config.pad_token_id, side=padding_side)
    labels, _ = pad([s.labels for s in sequences], IGNORE_INDEX, side=padding_side)
    batch = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "labels": labels,
        "level": torch.tensor([s.level for s in sequences]),
        "task": torch.tensor([TASKS.index(s.task) for s in sequences]),
    }
    for name in ("prompt_codes", "audio_codes"):
        rows = [getattr(s, name) for s in sequences]
        present = [row for row in rows if row is not None]
        if present:
            width = max(row.shape[-1] for row in present)
            filled = [torch.zeros(0, width, dtype=torch.long) if row is None else _widen(row, width) for row in rows]
            batch[name] = pad(filled, 0, side="right")[0]
    return batch


def _widen(codes: torch.LongTensor, width: int) -> torch.LongTensor:
    """Codes with fewer levels than the batch's widest: the missing levels are never read, so zeros do."""
    return F.pad(codes.long(), (0, width - codes.shape[-1]))


# ---------------------------------------------------------------------------------------------------- helpers


class StopOnNonFiniteWeights(TrainerCallback):
    """TrainerCallback: stop a diverged run. At each log (every `logging_steps`, and the one that ends training) it
    raises `VallEValueError` when a trainable weight is no longer a number (NaN or inf), so that the run fails
    instead of saving such weights as a trained model; the Trainer would log that run's NaN losses as finite numbers
    (`logging_nan_inf_filter`) and its end as a success.

    `Trainer(..., callbacks=[collator, StopOnNonFiniteWeights()])`."""

    def on_log(self, args, state, control, model=None, **kwargs):
        if model is None:
            return
        trainable = [(name, weight) for name, weight in model.named_parameters() if weight.requires_grad]
        if not trainable:
            return
        finite = torch.stack([weight.detach().isfinite().all() for _, weight in trainable])  # one sync, not one each
        if not finite.all():
            name = trainable[int((~finite).nonzero()[0])][0]
            raise VallEValueError(f"training diverged: at step {state.global_step} the weights ({name}, ...) are no "
                                  f"longer numbers (NaN or inf), so nothing is saved as trained; lower the learning "
                                  f"rate ({args.learning_rate:g}) and start again (checkpoints saved since the last "
                                  "finite loss hold the diverged weights)")


def set_attention_dropout(model, probability: float) -> None:
    """Attention-probability dropout of the backbone (the original trains with 0.1; the config default is 0).

    The Llama attention layers read their dropout once at construction, so it is set on each of them too.
    """
    model.config.attention_dropout = probability
    for module in model.modules():
        if hasattr(module, "attention_dropout") and hasattr(module, "q_proj"):
            module.attention_dropout = probability


# ---------------------------------------------------------------------------------------------------- LoRA

# The original's LoRA policy for Llama (`vall_e/models/lora.py`): the attention's q, v, o and the MLP's gate, up,
# down projections of every backbone layer (k_proj excluded); nothing outside the backbone (heads, embeddings, codec).
LORA_TARGET_MODULES = ("q_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
LORA_TARGET_PATTERN = r"(.*\.)?backbone\.layers\.\d+\.(self_attn|mlp)\.(" + "|".join(LORA_TARGET_MODULES) + ")"


def add_lora(model, rank: int = 128, alpha: float = 128.0, dropout: float = 0.1):
    """Wrap `model` in a peft LoRA on the original's targets; only the adapters are trainable afterwards.

    peft's LoRA is the original's `LoRALinear`: y = x W^T + b + dropout(x) A^T B^T * alpha / rank, with A
    kaiming-uniform and B zero at the start. Defaults are the original's (rank = alpha = 128, dropout 0.1).
    `merge_and_unload()` on the result gives back a plain `VallEForConditionalGeneration` with merged weights.

    Raises `VallEValueError` for a rank above the smallest size (input or output) of the layers it adapts: a
    rank-r update of such a layer can be no more than full rank, so the rest would be parameters that add nothing.
    """
    from peft import LoraConfig, get_peft_model

    smallest = min(min(module.in_features, module.out_features) for name, module in model.named_modules()
                   if re.fullmatch(LORA_TARGET_PATTERN, name))
    if rank > smallest:
        raise VallEValueError(f"LoRA rank {rank} is above {smallest}, the smallest size of the layers it adapts: an "
                              f"adapter of that rank trains parameters that add nothing; give a rank of at most "
                              f"{smallest}")
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=LORA_TARGET_PATTERN, bias="none")
    with warnings.catch_warnings():  # peft asks transformers a question it deprecated: nothing for our user to do
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        return get_peft_model(model, config)


__all__ = [
    "TrainingSequence",
    "LORA_TARGET_MODULES",
    "StopOnNonFiniteWeights",
    "VallEDataCollator",
    "add_lora",
    "build_training_sequence",
    "collate_sequences",
    "level_pool",
    "sample_levels",
    "set_attention_dropout",
]
