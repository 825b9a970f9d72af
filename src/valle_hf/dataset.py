"""A prepared training set on disk, and the `torch.utils.data.Dataset` that reads it (no `datasets` dependency).

Layout of a prepared folder (written once by `scripts/prepare_dataset.py`, appended to as it goes, so an interrupted
run resumes where it stopped)::

    manifest.jsonl            one JSON record per utterance: id, speaker, text, phonemes, frames, file, ...
    utterances/<id>.safetensors   `text_ids` (phoneme ids with BOS/EOS) and `codes` ([T, 8] EnCodec codes), int16
    prepare_config.json       codec, tokenizer and language the folder was made with
    failed.jsonl              the inputs the last run could not use, with the reason

An utterance's file is written (atomically) before its manifest line, so every manifest line names a whole file; a
line that a crash cut short is repaired or cut before the next run appends (`repair_manifest`).
"""

from __future__ import annotations

import errno
import json
import math
import numbers
import os
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .configuration import CODEC_HOP_LENGTH, CODEC_SAMPLING_RATE, TASKS
from .errors import OutputError, VallEFileNotFoundError, VallEValueError, as_typed, get_logger, one_line
from .files import refused_write, written_whole
from .manifest import append_jsonl, numbered_jsonl, read_jsonl, repair_jsonl, write_jsonl
from .tokenization import tokenizer_fingerprint
from .training import check_codes, check_positions, check_text_ids, read_shared_epoch, set_shared_epoch, shared_epoch

logger = get_logger(__name__)

MANIFEST = "manifest.jsonl"
UTTERANCES = "utterances"
PREPARE_CONFIG = "prepare_config.json"
FRAME_RATE = CODEC_SAMPLING_RATE // CODEC_HOP_LENGTH  # codec frames per second


def _recorded(root: str | os.PathLike, name: str):
    """The setting `name` the prepared folder `root` records in its PREPARE_CONFIG; None where it records none (or has
    no readable one: a folder made by other means)."""
    try:
        return json.loads((Path(root) / PREPARE_CONFIG).read_text(encoding="utf-8")).get(name)
    except (OSError, ValueError, AttributeError):
        return None


def check_tokenizer(root: str | os.PathLike, tokenizer, model: str) -> None:
    """Refuse (`VallEValueError`) to train `model` on the prepared folder `root` when the folder's phoneme ids come
    from another tokenizer than the model's (`tokenizer`): its ids would stand for other phonemes. A folder that
    records no tokenizer (made by other means) is taken as it is."""
    recorded = _recorded(root, "tokenizer_sha256")
    if recorded is not None and recorded != tokenizer_fingerprint(tokenizer):
        raise VallEValueError(f"{root} was prepared with another phoneme tokenizer than {model}'s: its ids would stand "
                              f"for other phonemes; prepare it again with --tokenizer {model}")


def check_codec(root: str | os.PathLike, codec, model: str) -> None:
    """Refuse (`VallEValueError`) to train `model` on the prepared folder `root` when the folder's codes come from
    another codec than the model's (`codec`, its `EncodecModel`): its codes would stand for other sounds. A folder
    that records no codec fingerprint (made by other means, or before it was recorded) is taken as it is."""
    from .codec import codebook_fingerprint

    recorded = _recorded(root, "codec_codebooks_sha256")
    if recorded is not None and recorded != codebook_fingerprint(codec):
        raise VallEValueError(f"{root} was prepared with another codec than {model}'s: its codes would stand for "
                              f"other sounds; prepare it again with --tokenizer {model} (its codec)")


def utterance_path(root: str | os.PathLike, utterance_id: str) -> Path:
    """The tensors file of utterance `utterance_id` in the prepared folder `root`."""
    return Path(root) / UTTERANCES / f"{utterance_id}.safetensors"


def save_utterance(root: str | os.PathLike, utterance_id: str, text_ids: torch.Tensor, codes: torch.Tensor) -> str:
    """Write one utterance's tensors atomically (temporary file, then rename); returns its path relative to root.

    Raises `OutputError` when the file cannot be written (disk full, ...), and `VallEValueError` where the id makes a
    file name longer than the file system takes (this utterance's, not every one's)."""
    path = utterance_path(root, utterance_id)
    tensors = {"text_ids": torch.as_tensor(text_ids).to(torch.int16).contiguous(),
               "codes": torch.as_tensor(codes).to(torch.int16).contiguous()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with written_whole(path) as temporary:
            save_file(tensors, str(temporary))
    except OSError as error:
        if error.errno == errno.ENAMETOOLONG:  # this utterance's name, not the disk: the others can be written
            raise VallEValueError(f"utterance id {utterance_id[:40]!r}... ({len(utterance_id)} characters) makes a "
                                  "file name longer than the file system takes: shorten its audio file's "
                                  "name") from None
        raise OutputError(f"could not write {path} ({one_line(error)})") from None
    except Exception as error:  # safetensors raises its own error for a write the file system refused
        reason = refused_write(error)
        if reason is None:
            raise
        raise OutputError(f"could not write {path} ({reason})") from None
    return path.relative_to(root).as_posix()


def append_manifest(root: str | os.PathLike, record: dict) -> None:
    """Append one utterance's record to the manifest (after its tensors file is complete); `OutputError` when the
    line cannot be written (a partial one is repaired by `repair_manifest` on the next run)."""
    append_jsonl(Path(root) / MANIFEST, record)


def drop_from_manifest(root: str | os.PathLike, ids: set[str]) -> None:
    """Rewrite the manifest whole without the records of `ids` (utterances no longer to train on); `OutputError`
    when it cannot be written (it is left as it was)."""
    if ids:
        path = Path(root) / MANIFEST
        write_jsonl(path, [record for record in read_jsonl(path) if record.get("id") not in ids])


def repair_manifest(root: str | os.PathLike) -> None:
    """Make the manifest end with a whole line (`valle_hf.manifest.repair_jsonl`): a record that a crash cut short is
    cut off, so its utterance is prepared again."""
    repair_jsonl(Path(root) / MANIFEST)


def read_manifest(root: str | os.PathLike) -> list[dict]:
    """The manifest's records whose files exist; a line cut off by a crash (the last one) is ignored."""
    return [record for _, record in numbered_manifest(root)]


def numbered_manifest(root: str | os.PathLike) -> list[tuple[int, dict]]:
    """`read_manifest`'s records, each with the number of its line in the manifest."""
    return _manifest_records(root)[0]


def _manifest_records(root: str | os.PathLike) -> tuple[list[tuple[int, dict]], list[str]]:
    """`numbered_manifest`'s records, and the ids (text) of the manifest's utterances whose file is gone: one read."""
    records, listed = {}, set()
    for number, record in numbered_jsonl(Path(root) / MANIFEST):
        _check_fields(root, number, record)
        if isinstance(record.get("id"), str):
            listed.add(record["id"])
        if (Path(root) / record.get("file", "")).is_file():
            records[record["id"]] = (number, record)  # a re-done utterance replaces its earlier line
    return list(records.values()), sorted(listed - set(records))


def _check_fields(root: str | os.PathLike, line: int, record: dict) -> None:
    """Refuse (`VallEValueError` naming the manifest's line) a record without an id, or whose id, file or speaker is
    not text (a manifest edited by hand): the first was left out without a word, each other would fail as a
    TypeError where it is read."""
    if "id" not in record:
        raise VallEValueError(f"{Path(root) / MANIFEST} line {line}: no 'id', which names the utterance: delete the "
                              f"line and run scripts/prepare_dataset.py into {root} again")
    for key in ("id", "file", "speaker"):
        if key in record and not isinstance(record[key], str):
            raise VallEValueError(f"{Path(root) / MANIFEST} line {line}: '{key}' is {json.dumps(record[key])[:60]}, "
                                  "not text: write it as a JSON string, or delete the line and run "
                                  f"scripts/prepare_dataset.py into {root} again")


def _prepare_again(root: str | os.PathLike, path: Path) -> str:
    """How to replace a damaged utterance: `read_manifest` leaves out a record whose file is gone, so the script
    prepares that utterance again."""
    return (f"delete {path} and run scripts/prepare_dataset.py into {root} again (the same inputs and settings): it "
            "prepares that utterance again")


def check_record(root: str | os.PathLike, line: int, record: dict) -> int:
    """Refuse (`VallEValueError` naming the manifest's line and how to redo the utterance) a record that training
    could not read: no number of frames, or a file that is cut short (a copy that stopped, ...) or does not hold
    `text_ids` `[n]` and `codes` `[frames, levels]` of integers. Only the file's header is read. Returns its RVQ
    levels."""
    where, path = f"{Path(root) / MANIFEST} line {line} ({record['id']})", Path(root) / record["file"]
    frames = record.get("frames")
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
        found = "no 'frames'" if "frames" not in record else f"'frames' {json.dumps(frames)}"
        raise VallEValueError(f"{where}: {found}, where a record has its number of codec frames; "
                              f"{_prepare_again(root, path)}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            slices = {key: handle.get_slice(key) for key in handle.keys()}
            shapes = {key: piece.get_shape() for key, piece in slices.items()}
            dtypes = {key: piece.get_dtype() for key, piece in slices.items()}
    except (SafetensorError, OSError) as error:
        raise VallEValueError(f"{where}: {path} is damaged ({one_line(error)}); {_prepare_again(root, path)}") from None
    text, codes = shapes.get("text_ids", []), shapes.get("codes", [])
    if len(text) != 1 or len(codes) != 2 or codes[0] != frames:
        raise VallEValueError(f"{where}: {path} holds {shapes or 'no tensors'} where its record needs text_ids [n] "
                              f"and codes [{frames}, levels]; {_prepare_again(root, path)}")
    not_integer = {key: dtypes[key] for key in ("text_ids", "codes") if not dtypes[key].startswith(("I", "U"))}
    if not_integer:  # read as int64 for training: fractions would be cut off without a word
        raise VallEValueError(f"{where}: {path} holds {not_integer} where ids and codes are integers; "
                              f"{_prepare_again(root, path)}")
    return codes[1]


def load_utterance(root: str | os.PathLike, record: dict) -> dict[str, torch.LongTensor]:
    """An utterance as a `VallEDataCollator` item: `input_ids` (its `text_ids` `[n]`) and `audio_codes` (its `codes`
    `[frames, 8]`), as int64. Raises `VallEValueError` naming the file when it cannot be read."""
    path = Path(root) / record["file"]
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as error:
        raise VallEValueError(f"utterance file {path} cannot be read ({one_line(error)}); "
                              f"{_prepare_again(root, path)}") from None
    return {"input_ids": tensors["text_ids"].long(), "audio_codes": tensors["codes"].long()}


def _warn_if_files_missing(root: Path, missing: list[str]) -> None:
    """Warn about the manifest's utterances whose file is gone (`missing`, their ids): left out of training (and
    prepared again by the script), which a smaller data set would not show."""
    if missing:
        logger.warning(f"{len(missing)} utterance(s) of {root / MANIFEST} have no file and are left out (the first: "
                       f"{missing[0]!r}); run scripts/prepare_dataset.py into {root} again to prepare them")


def _within_duration(root: Path, records: list[dict], duration_range: tuple[float, float] | None) -> list[dict]:
    """The `records` whose duration lies within `duration_range` (seconds; None: all). Those left out are named in a
    warning (a smaller data set would not show it), or in the `VallEValueError` when none is left."""
    if duration_range is None:
        return records
    low, high = duration_range
    kept, outside = [], []
    for record in records:
        (kept if low <= record["frames"] / FRAME_RATE <= high else outside).append(record)
    if not outside:
        return kept
    seconds = sorted(record["frames"] / FRAME_RATE for record in records)
    found = (f"{len(outside)} of the {len(records)} utterance(s) of {root} last outside the duration range "
             f"{low:g}-{high:g} s (its utterances last {seconds[0]:.2f}-{seconds[-1]:.2f} s)")
    widen = "widen the duration range (duration_range; examples/finetune.py's --duration-range)"
    if not kept:
        raise VallEValueError(f"{found}: none is left to train; {widen}")
    logger.warning(f"{found} and are left out (the first: {outside[0]['id']!r}); {widen} to use them")
    return kept


def _seconds(number: numbers.Real) -> float:
    """`number` as a float; an integer past any float as infinity (float() raised an OverflowError)."""
    try:
        return float(number)
    except OverflowError:
        return math.inf


def check_seconds_range(value, name: str, rule: str = "") -> tuple[float, float]:
    """`value` as a range of seconds (MIN, MAX): two finite numbers with 0 <= MIN <= MAX. Raises `VallEValueError`
    naming `name` (an argument's or an option's) for anything else, such as a number alone or text (refused when the
    data set is made, not at its first item); `rule` ends the message where the range needs more."""
    # any sequence: a list, a config library's list, a NumPy pair (text's characters are no numbers)
    pair = tuple(value) if isinstance(value, (Sequence, np.ndarray)) else (value,)
    if len(pair) != 2 or not all(isinstance(end, numbers.Real) and not isinstance(end, (bool, np.bool_))
                                 for end in pair):
        raise VallEValueError(f"{name} must be (MIN, MAX): two numbers of seconds, got {value!r}")
    low, high = (_seconds(end) for end in pair)
    if not (math.isfinite(low) and math.isfinite(high) and 0 <= low <= high):
        raise _range_refused(name, pair, rule)
    return float(low), float(high)


def _range_refused(name: str, pair: tuple, rule: str) -> VallEValueError:
    """The refusal of the range of seconds `pair`, given as `name`, with what more it needs (`rule`)."""
    return VallEValueError(f"{name} {as_typed(pair[0])} {as_typed(pair[1])}: expected MIN MAX seconds, 0 <= MIN <= "
                           f"MAX{rule}")


def check_prompt_duration(prompt_duration: tuple[float, float] | None, name: str = "prompt_duration") -> None:
    """Refuse (`VallEValueError` naming `name`) a prompt length range that is not (MIN, MAX) seconds
    (`check_seconds_range`) with MAX at least one codec frame: a prompt is cut to whole frames, and a TTS item
    without one cannot be trained. None (whole utterances) is allowed."""
    if prompt_duration is None:
        return
    rule = f", MAX at least one codec frame (1/{FRAME_RATE} s): a TTS item needs a voice prompt"
    _, high = check_seconds_range(prompt_duration, name, rule)
    if high * FRAME_RATE < 1:
        raise _range_refused(name, tuple(prompt_duration), rule)


class VallEDataset(torch.utils.data.Dataset):
    """Items for `VallEDataCollator` from a prepared folder: `input_ids`, `audio_codes` and a voice `prompt_codes`.

    The prompt is sampled as the original does (`vall_e/data.py:sample_prompts`): a target length drawn uniformly from
    `prompt_duration` seconds, then up to `prompt_max_samples` (at least one) random utterances of the same speaker
    other than the target (the target itself when it is the speaker's only one), each cut to its first frames, joined
    and cut to the target length. The original's "most similar utterance" preference needs similarity metadata that is
    not prepared here, so picks are uniform. `duration_range` (seconds) drops utterances outside it, with a warning that
    counts them (the original's default is (1, 12)); `task` fixes every item's task (else the collator draws it). Raises
    `VallEFileNotFoundError` when `root` is not a folder, and `VallEValueError` when it holds no usable utterance (none
    within `duration_range` included), when a record cannot be read (`check_record`, naming its manifest line: found
    here, not in the middle of training), for a `prompt_duration` that gives no prompt (`check_prompt_duration`), a
    range that is not two numbers of seconds, a `prompt_max_samples` that is no count or an unknown `task`.
    `check_model` refuses a model the folder was not prepared for (the collator's callback runs it as training starts).
    `rvq_levels`: the RVQ levels every utterance holds (those training can reach).

    Prompt draws are reproducible (the same `seed`, the same prompts). Once an epoch is set (`set_epoch`: accelerate
    calls it in a fresh single-process run, and `VallEDataCollator` passed to the Trainer as a callback in every
    run, resumed ones and several processes included), item `index`'s prompt comes from a generator seeded with
    (`seed`, epoch, `index`), whatever the order, the DataLoader workers or the processes: a run resumed with
    `resume_from_checkpoint` sees the prompts of the run it continues. While none is set, prompts come from one
    seeded stream per process and DataLoader worker. Give the Trainer's evaluation set its own instance: accelerate
    sets an evaluation set's epoch to 0 at each evaluation, which would change the training prompts' key.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        prompt_duration: tuple[float, float] | None = (3.0, 6.0),
        prompt_max_samples: int = 3,
        duration_range: tuple[float, float] | None = None,
        task: str | None = None,
        seed: int = 0,
    ):
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise VallEFileNotFoundError(f"prepared data set not found: {self.root} is not a folder (make one with "
                                         "scripts/prepare_dataset.py)")
        if task not in (None, *TASKS):  # refused by the collator's first batch
            raise VallEValueError(f"task must be None (the collator draws it) or one of {TASKS}, got {task!r}")
        if task != "stt":  # only TTS items read a prompt
            check_prompt_duration(prompt_duration)
        if duration_range is not None:
            duration_range = check_seconds_range(duration_range, "duration_range")
        if isinstance(prompt_max_samples, bool) or not isinstance(prompt_max_samples, numbers.Integral) or (
                prompt_max_samples < 0):  # failed at the first item, in the middle of training, as a TypeError
            raise VallEValueError(f"prompt_max_samples must be an integer >= 0 (0 and 1: one utterance), got "
                                  f"{prompt_max_samples!r}")
        numbered, missing = _manifest_records(self.root)
        levels = [check_record(self.root, line, record) for line, record in numbered]
        self.rvq_levels = min(levels, default=0)  # what every utterance has: the levels training can reach
        _warn_if_files_missing(self.root, missing)
        records = [record for _, record in numbered]
        if not records:
            raise VallEValueError(f"no usable utterances in {self.root} (prepare it with scripts/prepare_dataset.py "
                                  "first)")
        self.records = sorted(_within_duration(self.root, records, duration_range), key=lambda record: record["id"])
        self.prompt_duration = prompt_duration
        self.prompt_max_samples = prompt_max_samples
        self.task = task
        self.seed = seed
        self._rngs: dict = {}
        self._utterances_checked_for: str | None = None  # the config (as JSON) every utterance was checked against
        self._epoch = shared_epoch()  # shared memory: DataLoader workers see set_epoch's value
        self.by_speaker: dict[str, list[int]] = {}
        for index, record in enumerate(self.records):
            self.by_speaker.setdefault(record.get("speaker", ""), []).append(index)

    def check_utterances(self, config) -> None:
        """Refuse (`VallEValueError`, naming the utterance) text ids and codes training would refuse
        (`check_text_ids`: not of `config`'s text vocabulary, or not one text from BOS to EOS; `check_codes`: not
        EnCodec codes of its codebooks, or more levels than the codec's; `check_positions`: longer than the model's
        positions, with the AR's stop token), such as those of a folder written by other means than
        scripts/prepare_dataset.py, or edited since: found before training, not by the batch that meets them, whose
        error could not say which utterance it was. Each file is read once per config (examples/finetune.py checks
        before the Trainer's callback does)."""
        checked_for = config.to_json_string(use_diff=False)
        if checked_for == self._utterances_checked_for:
            return
        for record in self.records:
            path = self.root / record["file"]
            try:
                with safe_open(str(path), framework="pt") as handle:
                    text = check_text_ids(config, handle.get_tensor("text_ids"))
                    codes = check_codes(config, handle.get_tensor("codes"), "codes")
                # as the AR's response, with its stop token: found here, not by the step whose batch meets it
                check_positions(config, text_ids=len(text), codes=len(codes) + 1)
            except VallEValueError as error:
                raise VallEValueError(f"{path} ({record['id']}): {error}; {_prepare_again(self.root, path)}") from None
        self._utterances_checked_for = checked_for

    def check_model(self, model, tokenizer=None) -> None:
        """Refuse (`VallEValueError`) to train `model` on this folder when its codes come from another codec than
        the model's (`check_codec`), its phoneme ids from another tokenizer than `tokenizer` (the model's, where
        given: `check_tokenizer`), an utterance holds what training would refuse (`check_utterances`), or a prompt
        would be longer than the model's positions. The collator runs it when the Trainer starts
        (`VallEDataCollator.on_train_begin`), as examples/finetune.py does before training."""
        name = getattr(model.config, "_name_or_path", "") or "the model"
        check_codec(self.root, model.codec_model, name)
        if self.prompt_duration is not None and self.task != "stt":  # a prompt that long fails at its first item
            check_positions(model.config, prompt_duration=int(self.prompt_duration[1] * FRAME_RATE))
        if tokenizer is not None:
            check_tokenizer(self.root, tokenizer, name)
        self.check_utterances(model.config)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def epoch(self) -> int | None:
        """The epoch the prompt draws are keyed on (`set_epoch`); None: they come from the per-process stream."""
        return read_shared_epoch(self._epoch)

    def set_epoch(self, epoch: int | None) -> None:
        """Key each item's prompt on (`seed`, `epoch`, its index) from now on; None goes back to the stream. DataLoader
        workers, persistent ones included, see the new value."""
        set_shared_epoch(self._epoch, epoch)

    def _rng(self, index: int) -> random.Random:
        """Item `index`'s prompt generator: keyed on (seed, epoch, index) once an epoch is set, else the seeded stream
        of this process / DataLoader worker (workers get their own, reproducible, seeds)."""
        epoch = self.epoch
        if epoch is not None:
            return random.Random(f"valle-hf prompt {self.seed} {epoch} {index}")  # seeded through SHA-512: stable
        info = torch.utils.data.get_worker_info()
        key = None if info is None else info.seed
        if key not in self._rngs:
            self._rngs[key] = random.Random(self.seed if info is None else hash((self.seed, info.seed)))
        return self._rngs[key]

    def sample_prompt(self, index: int, rng: random.Random) -> torch.LongTensor:
        """A voice prompt `[frames, 8]` for item `index`, drawn as described in the class docstring."""
        record = self.records[index]
        pool = self.by_speaker[record.get("speaker", "")]
        others = [other for other in pool if other != index] or pool
        # At least one frame: a draw under one frame (MIN 0) would give an empty prompt, which cannot be trained.
        trim = None if self.prompt_duration is None else max(1, int(rng.uniform(*self.prompt_duration) * FRAME_RATE))
        pieces, total = [], 0
        for _ in range(max(self.prompt_max_samples, 1)):
            codes = load_utterance(self.root, self.records[rng.choice(others)])["audio_codes"]
            codes = codes if trim is None else codes[:trim]
            pieces.append(codes)
            total += len(codes)
            if trim is None or total >= trim:
                break
        prompt = torch.cat(pieces)
        return prompt if trim is None else prompt[:trim]

    def __getitem__(self, index: int) -> dict:
        record = self.records[index]
        item = load_utterance(self.root, record)
        item["id"] = record["id"]
        if self.task is not None:
            item["task"] = self.task
        if self.task != "stt":
            item["prompt_codes"] = self.sample_prompt(index, self._rng(index))
        return item

