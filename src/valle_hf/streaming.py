"""Streaming text-to-speech: audio while the AR runs, equal to what `generate` returns without streaming.

Every forward of the model is causal, the NAR included, and position ids restart in every segment, so NAR level k at
frame t depends only on frames up to t. `generate(..., audio_streamer=streamer)` therefore gathers the level-0 codes
as the AR emits them and, every `streamer.chunk_seconds` of them, runs each NAR level over the new frames only, with a
KV cache per level that holds that level's prefix (text, level token, prompt), computed once. The codes are then
exactly those of a non-streamed run (greedy), whatever the chunk size.

Vocos is not causal (convolutions on both sides, an overlap-add ISTFT), so each chunk of its audio is decoded from a
window with `left` frames of context before it and `right` frames after it, covering its receptive field, and only
the settled part is sent: a chunk's audio waits for `right` further frames (`decoder_context`). EnCodec's decoder is
causal, with a one-way LSTM: each row's `codec.DecoderStream` carries its state from chunk to chunk, and a chunk's
audio is sent at once, but for a row's first, which waits for the frames its first convolution reflects into its
left padding (`DecoderStream.lead`). Both give the non-streamed audio to float precision.
"""

from __future__ import annotations

import math
import os
import queue
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
import torch
from transformers import StoppingCriteria

from .audio import (
    WRITE_ERRORS,
    check_file_rate,
    check_output_path,
    check_samples,
    clipped_samples,
    empty_audio_error,
    output_format,
    warn_clipped,
    write_failure,
)
from .cache import PreallocatedDynamicCache
from .codec import DecoderStream
from .configuration import MAX_SETTING_SECONDS, is_seconds, python_values
from .errors import OutputError, VallETypeError, VallEValueError, get_logger
from .files import put_in_place, temporary_file_beside, write_target
from .layout import pad, response_position_ids, segment_position_ids, tts_sequence

__all__ = [
    "CHUNK_SECONDS_RULE",
    "DEFAULT_CHUNK_SECONDS",
    "AudioChunk",
    "AudioFileStreamer",
    "AudioIteratorStreamer",
    "AudioStreamer",
    "RowOrder",
    "StopRequested",
    "chunk_seconds_allowed",
    "decoder_context",
    "not_streamable",
]

logger = get_logger(__name__)


@dataclass
class AudioChunk:
    """A piece of one batch row's speech.

    row: the batch row. audio: 1-D float32 waveform at the model's sampling rate (None with `output_audio=False`).
    codes: `[frames, levels]` the codes that audio decodes. start_frame: the index of its first frame in the row's
    output. final: the row's last chunk (its stream is complete).
    """

    row: int
    audio: torch.Tensor | None
    codes: torch.LongTensor
    start_frame: int
    final: bool


# A streamed chunk's length: by default (a chunk every 0.5 s of level-0 codes: 37 frames at 75 per second), and as
# error messages state its range.
DEFAULT_CHUNK_SECONDS = 0.5
CHUNK_SECONDS_RULE = f"a number of seconds in (0, {MAX_SETTING_SECONDS}]"


# What a stream cannot follow, as (setting, whether a value sets it, why).
_NOT_STREAMABLE = (
    ("num_beams", lambda value: (value or 1) > 1, "beam search reorders its beams until the end"),
    ("refine_on_stop", bool, "it re-predicts the whole output at the end"),
    ("num_return_sequences", lambda value: (value or 1) > 1, "a stream follows one sequence per row"),
)


def not_streamable(settings: Mapping[str, Any], model=None) -> tuple[str, str] | None:
    """The first of `settings` (generate's names; with `model`, over its generation config, as `generate` merges
    them) that a stream cannot follow, and why; None when all can be."""
    if model is not None:
        settings = {**model.generation_config.to_dict(), **settings}
    for name, is_set, reason in _NOT_STREAMABLE:
        if is_set(settings.get(name)):
            return name, reason
    return None


def chunk_seconds_allowed(value) -> bool:
    """Whether `value` is a streamed chunk's length (`CHUNK_SECONDS_RULE`)."""
    return is_seconds(value) and value > 0


class AudioStreamer:
    """Receives audio while `generate` runs (transformers' `BaseStreamer` style, for audio): subclass and implement
    `put`. `chunk_seconds`: how much level-0 audio the AR produces between two NAR + decoding rounds (the chunk's
    audio follows after the decoder's look-ahead, see `decoder_context`).

    `single_use`: the streamer follows one `generate` call (`start_call` refuses a second); `needs_audio`: it needs the
    chunks' audio (`generate` refuses `output_audio=False`).
    """

    single_use = False
    needs_audio = False

    def __init__(self, chunk_seconds: float = DEFAULT_CHUNK_SECONDS):
        chunk_seconds = python_values({"chunk_seconds": chunk_seconds})["chunk_seconds"]  # np.float32(0.5) is 0.5
        if not chunk_seconds_allowed(chunk_seconds):
            raise VallEValueError(f"chunk_seconds must be {CHUNK_SECONDS_RULE}, got {chunk_seconds!r}")
        self.chunk_seconds = float(chunk_seconds)
        self._started = False

    def start_call(self) -> None:
        """Called when a `generate` call starts, before any chunk. Raises `VallEValueError` for a `single_use`
        streamer that already served a call: its consumer or file ended with that call, so a second one's chunks
        would be lost; `VallETypeError` for a subclass without its own `put` or made without `AudioStreamer.__init__`
        (they failed after the AR and the NAR had run, or deep in the chunking)."""
        kind = type(self).__name__
        if type(self).put is AudioStreamer.put:
            raise VallETypeError(f"{kind} does not implement put(chunk), which receives the audio: implement it, or "
                                 "use AudioIteratorStreamer or AudioFileStreamer")
        if not hasattr(self, "chunk_seconds"):
            raise VallETypeError(f"{kind} was made without AudioStreamer.__init__: call super().__init__() (or "
                                 "super().__init__(chunk_seconds)) in its __init__")
        if self.single_use and self._started:
            raise VallEValueError(f"this {type(self).__name__} already served a generate call, and ended with it: "
                                  "make a new one for each call (the pipeline makes one call per batch of texts)")
        self._started = True

    def put(self, chunk: AudioChunk) -> None:
        """Called with every new chunk, row by row, in order within each row."""
        raise NotImplementedError

    def fail(self, error: BaseException) -> None:
        """Called when `generate` raises `error`, before `end`: the rows' streams are cut short."""

    def abandon(self, error: BaseException) -> None:
        """The call this streamer was given to was refused before a `generate` call took it (by the pipeline's
        checks, or given as `streamer=`): it gets `error` as from a call that failed (`fail`, then `end`), so that
        its consumer does not wait for ever, and serves no other call. One that a call took is left to that call."""
        if not getattr(self, "_started", False):
            self._started = True
            self.fail(error)
            self.end()

    def end(self) -> None:
        """Called once when generation ends (also when it fails)."""

    @property
    def stop_requested(self) -> bool:
        """Whether the `generate` call should end at its next AR step (`AudioIteratorStreamer.stop`)."""
        return False


class StopRequested(StoppingCriteria):
    """Ends a streamed `generate` call at the AR step after its streamer's `stop_requested` turns true."""

    def __init__(self, streamer: AudioStreamer):
        self.streamer = streamer

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        return torch.full((input_ids.shape[0],), self.streamer.stop_requested, dtype=torch.bool,
                          device=input_ids.device)


class AudioIteratorStreamer(AudioStreamer):
    """An `AudioStreamer` to iterate over: run `generate` in a thread and `for chunk in streamer: ...` in yours.

        streamer = AudioIteratorStreamer()
        thread = threading.Thread(target=model.generate, kwargs=dict(**inputs, audio_streamer=streamer))
        thread.start()
        for chunk in streamer:
            play(chunk.audio)

    `timeout` (seconds) bounds each wait for the next chunk (None: wait as long as it takes; past it, `TimeoutError`);
    the iteration ends when `generate` ends. When `generate` fails, the iteration raises its exception (as
    `Future.result` does) once the chunks sent before the failure are read: a cut stream never looks complete.
    `stop()` ends the call early (leaving the loop alone leaves it running to its end). `ready()` takes every chunk
    already sent, without waiting. It serves one `generate` call.
    """

    single_use = True

    def __init__(self, chunk_seconds: float = DEFAULT_CHUNK_SECONDS, timeout: float | None = None):
        super().__init__(chunk_seconds)
        timeout = python_values({"timeout": timeout})["timeout"]
        if timeout is not None and not (isinstance(timeout, (int, float)) and not isinstance(timeout, bool)
                                        and 0 < timeout <= threading.TIMEOUT_MAX):  # past it, waits overflow
            raise VallEValueError(f"timeout must be None (wait as long as it takes) or a number of seconds > 0, at "
                                  f"most {threading.TIMEOUT_MAX:g}, got {timeout!r}")
        self.timeout = timeout
        self._queue: queue.Queue = queue.Queue()
        self._end = object()
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._read_to_end = False  # the iteration met the end of the call
        self._refused: VallEValueError | None = None  # a second call's refusal, for an iteration after the end

    def start_call(self) -> None:
        """`AudioStreamer.start_call`; a second call's refusal is also kept for the iteration, which would otherwise
        wait for ever after the first call's end for chunks that never come."""
        try:
            super().start_call()
        except VallEValueError as error:
            self._refused = error
            raise

    def stop(self) -> None:
        """End the `generate` call at its next AR step, for a consumer that has heard enough: the speech so far is
        finished (its NAR levels and audio) and streamed, then the iteration ends as usual."""
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def put(self, chunk: AudioChunk) -> None:
        self._queue.put(chunk)

    def fail(self, error: BaseException) -> None:
        self._error = error  # read by the consumer after the end, which `end` queues after this

    def end(self) -> None:
        self._queue.put(self._end)

    def __iter__(self):
        return self

    def __next__(self) -> AudioChunk:
        if self._read_to_end:  # its one call has ended: nothing more comes, and a cut stream stays cut
            if self._refused is not None or self._error is not None:
                raise self._refused or self._error
            raise StopIteration
        try:
            chunk = self._queue.get(timeout=self.timeout)
        except queue.Empty:
            raise TimeoutError(f"no audio chunk came within {self.timeout} s (the streamer's timeout)") from None
        if chunk is self._end:
            self._read_to_end = True
            if self._error is not None:
                raise self._error
            raise StopIteration
        return chunk

    def ready(self) -> list[AudioChunk]:
        """Every chunk sent and not read yet, in order, at once: an empty list when none is, never a wait. A consumer
        whose every step costs time (a page's update) takes with one chunk those that came meanwhile. The end, and a
        failure, stay for the iteration: after these chunks, its next step ends it or raises the failure, as it would
        have (raised from here, a `StopIteration` would end a consumer that is a generator in a `RuntimeError`)."""
        chunks = []
        while True:
            try:
                chunk = self._queue.get_nowait()
            except queue.Empty:
                return chunks
            if chunk is self._end:
                self._queue.put(chunk)  # nothing follows the end: queued again, it is still the next item
                return chunks
            chunks.append(chunk)


class RowOrder:
    """The chunks of a batch's rows, which stream side by side, put one row after the other: `add` returns the
    chunks that can now follow those it returned before (row 0's as they come; row 1's, held until then, once row 0's
    final chunk came; ...)."""

    def __init__(self):
        self._waiting: dict[int, list[AudioChunk]] = {}
        self._row = 0  # the row being played

    def add(self, chunk: AudioChunk) -> list[AudioChunk]:
        self._waiting.setdefault(chunk.row, []).append(chunk)
        ready = []
        while self._row in self._waiting:
            pieces = self._waiting.pop(self._row)
            ready += pieces
            if not pieces or not pieces[-1].final:
                self._waiting[self._row] = []
                break
            self._row += 1
        return ready


class AudioFileStreamer(AudioStreamer):
    """Writes the rows' audio, one row after the other, into a file that grows as chunks arrive (`partial`, beside
    `path`'s `write_target`, flushed after every chunk so that players can follow it); `commit` puts the complete file
    in `path`'s place (`put_in_place`: renamed, or written into a pipe), `abort` removes it, so `path` is only ever
    replaced by a whole file; a `generate` call that fails removes it too (`fail`). The format follows `path`'s
    extension. It serves one `generate` call, which must return audio. Raises `VallEValueError` for a path or a rate
    no file takes (`check_output_path`, `check_file_rate`), `OutputError` when the file cannot be made.
    """

    single_use = True
    needs_audio = True

    def __init__(self, path: str | os.PathLike, sampling_rate: int, chunk_seconds: float = DEFAULT_CHUNK_SECONDS):
        super().__init__(chunk_seconds)
        self.path, self.sampling_rate = check_output_path(path), sampling_rate  # `generate` refuses another rate
        container, subtype = output_format(self.path)
        check_file_rate(sampling_rate, container)
        self.target = write_target(self.path)  # the partial file is made beside it, to be renamed onto it
        self._order = RowOrder()
        self.seconds, self._received = 0.0, False  # whether a chunk came, even an empty one
        self._clipped, self._peak = 0, 0.0  # the samples clipped to [-1, 1] so far, and their peak: said at commit
        self._outcome: str | None = None  # "committed" or "aborted", once it is
        self.partial: Path | None = None
        try:  # the last step, so that a Ctrl-C after it returns leaves the caller a streamer to abort. The folder may
            # refuse the partial file itself (a name too long for it, a read-only file system)
            self.partial = temporary_file_beside(self.target)
            self._file = soundfile.SoundFile(self.partial, "w", sampling_rate, 1, subtype, format=container)
            # a streamer dropped neither committed nor aborted (or at exit) would leave its hidden partial file
            self._left_behind = weakref.finalize(self, _remove_left_behind, self._file, self.partial, self.path)
        except BaseException as error:  # also Ctrl-C: the caller has no streamer yet to abort
            if self.partial is not None:
                self.partial.unlink(missing_ok=True)
            if isinstance(error, WRITE_ERRORS):
                raise OutputError(f"could not write {self.path} ({write_failure(error, self.path)})") from None
            raise

    def put(self, chunk: AudioChunk) -> None:
        self._received = True
        for piece in self._order.add(chunk):  # rows in order: a later row waits for the earlier ones to end
            audio, clipped, peak = clipped_samples(check_samples(piece.audio.detach().float().cpu().numpy(),
                                                                 self.path))
            self._clipped, self._peak = self._clipped + clipped, max(self._peak, peak)
            self._write(audio)
            self.seconds += len(audio) / self._file.samplerate

    def _write(self, audio: np.ndarray) -> None:
        """Append and flush; a failed write (disk full, file-size limit) raises `OutputError`, the output path kept
        as it was (the caller aborts the stream)."""
        try:
            self._file.write(audio)
            self._file.flush()
        except WRITE_ERRORS as error:
            raise OutputError(f"could not write {self.path} ({write_failure(error, self.partial)}); it was left as "
                              "it was") from None

    def fail(self, error: BaseException) -> None:
        """The call failed, its rows cut short: the partial file is removed (`abort`), and `commit` refused."""
        self.abort()
        self._outcome = "abandoned when its generate call failed"

    def end(self) -> None:
        if not self._file.closed:
            self._file.close()

    def commit(self) -> Path:
        """The complete file, renamed to `path`. Raises `VallEValueError` while the `generate` call it serves runs
        (the file is not whole yet; nothing changes), when no sample was written (an empty file would look like a
        result) or the stream was already committed or aborted, and `OutputError` when the file cannot be completed
        or renamed; the partial file is removed and `path` left as it was."""
        # a call started and not ended yet (`end` closes the file): a commit from another thread put the audio so
        # far in path's place, cut short
        if self._started and not self._file.closed:
            raise VallEValueError(f"the generate call streaming into {self.path} is still running: commit after it "
                                  "returns (or call stop() on an AudioIteratorStreamer to end a call early)")
        if self._outcome is not None:
            raise VallEValueError(f"the stream into {self.path} was already {self._outcome}: commit it once, after "
                                  "the generate call it served (make a new streamer for another call)")
        if not self._received:  # no call streamed into it: "the audio is empty, try another seed" would mislead
            self.abort()
            raise VallEValueError(f"the stream into {self.path} received no audio: commit it after the generate call "
                                  "it was given to (generate(..., audio_streamer=streamer))")
        if self.seconds == 0:
            self.abort()
            raise empty_audio_error(self.path)
        try:
            self.end()
            put_in_place(self.partial, self.target)
        except WRITE_ERRORS as error:
            self.abort()
            raise OutputError(f"could not write {self.path} ({write_failure(error, self.partial)}); it was left as "
                              "it was") from None
        except BaseException:  # Ctrl-C, such as while a pipe's reader is awaited
            self.abort()
            raise
        self._outcome = "committed"
        self._left_behind.detach()
        warn_clipped(self.path, self._clipped, self._peak)
        return self.path

    def abort(self) -> None:
        """Remove the partial file (the output path is left as it was), even where closing it fails (a full disk).
        After `commit` it changes nothing."""
        try:
            self.end()
        except WRITE_ERRORS:
            pass  # the file is removed below, whatever state closing left it in
        finally:
            self.partial.unlink(missing_ok=True)
            self._outcome = self._outcome or "aborted"
            self._left_behind.detach()


def _remove_left_behind(file: soundfile.SoundFile, partial: Path, path: Path) -> None:
    """The partial file of an `AudioFileStreamer` collected (or alive at exit) neither committed nor aborted, removed
    with a warning: it was left beside the output, hidden, for good."""
    try:
        file.close()
    except WRITE_ERRORS:
        pass  # removed below, whatever state closing left it in
    partial.unlink(missing_ok=True)
    logger.warning(f"the stream into {path} was neither committed nor aborted: its partial file is removed (call "
                   "commit() after the generate call it served, or abort())")


def decoder_context(model, backend: str) -> tuple[int, int]:
    """Frames of context `(left, right)` a decoded chunk needs so that its audio is settled (exactly).

    Vocos: its receptive field, `(num_layers + 1) * 3` frames for the kernel-7 convolutions, plus 2 frames for the
    overlap-add of 4-hop windows. EnCodec: `(0, 0)`, no window: its decoder is causal and `codec.DecoderStream`
    carries its state (only a row's first chunk waits, for `DecoderStream.lead` frames). The right context is the
    latency streaming adds after each chunk.
    """
    if backend == "vocos":
        config = model.vocoder.config
        frames = (config.num_layers + 1) * 3 + math.ceil(config.n_fft / config.hop_length / 2)
        return frames, frames
    return 0, 0


class StreamingTTS:
    """Drives one streamed TTS call: takes the AR's level-0 codes step by step (as transformers' `streamer`), runs
    the NAR levels chunk by chunk with one KV cache per level, decodes settled audio and hands it to `streamer`.

    `prefixes`: each row's level-0 frames that the NAR reads before the generated ones (a silence prefix), which
    condition it but are not part of the output; `prompt_codes` `[B, Tp, levels]` (right-padded) and
    `prompt_lengths`, or None without a prompt; `capacity`: the most frames a row can reach.
    """

    def __init__(self, model, texts, prompt_codes, prompt_lengths, prefixes, config, streamer: AudioStreamer,
                 max_levels: int, skip, capacity: int):
        self.model, self.config, self.streamer = model, config, streamer
        self.texts, self.prompt_codes, self.prompt_lengths = texts, prompt_codes, prompt_lengths
        self.max_levels, self.skip = max_levels, skip
        self.chunk_frames = max(model.config.seconds_to_frames(streamer.chunk_seconds), 1)
        self.backend = config.audio_backend or model.config.audio_backend
        self.left, self.right = decoder_context(model, self.backend) if config.output_audio else (0, 0)
        self.streams = ([DecoderStream(model.codec_model) for _ in texts]
                        if config.output_audio and self.backend == "encodec" else None)
        self.prefix_lengths = [len(prefix) for prefix in prefixes]
        self.frames = [prefix.tolist() for prefix in prefixes]  # level-0 codes per row, prefix included
        self.stopped = [False] * len(texts)
        self.codes = [torch.zeros(0, max_levels + 1, dtype=torch.long, device=model.device) for _ in texts]
        self.sent = [0] * len(texts)  # output frames of each row already sent
        self.finished = [False] * len(texts)
        self.audio: list[list[torch.Tensor]] = [[] for _ in texts]
        self.capacity = capacity
        self.caches: dict[int, tuple] = {}
        self.seen_prompt = False

    # ------------------------------------------------------------------ transformers' streamer interface
    def put(self, value: torch.Tensor) -> None:
        """Receive the AR's input ids (first call), then each step's new level-0 code per row."""
        if not self.seen_prompt:
            self.seen_prompt = True
            return
        stop = self.model.config.stop_token_id
        for row, token in enumerate(value.reshape(-1).tolist()):
            if self.stopped[row]:
                continue
            if token == stop or token >= self.model.config.audio_vocab_size:
                self.stopped[row] = True
            else:
                self.frames[row].append(token)
        pending = max(len(frames) - len(codes) for frames, codes in zip(self.frames, self.codes, strict=True))
        if pending >= self.chunk_frames:
            self._advance()

    def end(self) -> None:
        """transformers' end of the AR loop; `finish` completes the stream."""

    def finish(self) -> tuple[list[torch.LongTensor], list[torch.Tensor] | None]:
        """After the AR: the remaining NAR chunks and audio, the final chunks; returns each row's codes (output
        frames, `[T_i, levels]`) and audio (or None)."""
        self.stopped = [True] * len(self.stopped)
        self._advance()
        outputs = [codes[prefix:] for codes, prefix in zip(self.codes, self.prefix_lengths, strict=True)]
        audio = [torch.cat(pieces) if pieces else torch.zeros(0, device=self.model.device)  # as unstreamed rows
                 for pieces in self.audio]
        return outputs, audio if self.config.output_audio else None

    # ------------------------------------------------------------------ NAR, chunk by chunk
    def _advance(self) -> None:
        new = [torch.tensor(frames[len(codes):], dtype=torch.long, device=self.model.device)
               for frames, codes in zip(self.frames, self.codes, strict=True)]
        if any(len(rows) for rows in new):
            levels = [row.unsqueeze(-1) for row in new]
            with self.model.nar_precision(self.config):
                for level in range(1, self.max_levels + 1):
                    levels = self._nar_chunk(level, levels)
            self.codes = [torch.cat([codes, chunk]) for codes, chunk in zip(self.codes, levels, strict=True)]
        for row in range(len(self.codes)):
            self._send(row)

    def _nar_chunk(self, level: int, chunk: list[torch.LongTensor]) -> list[torch.LongTensor]:
        """Level `level` of each row's new frames `[n_i, level]` (levels 0..level-1), through the level's cache."""
        cache, seen = self._level_cache(level)  # the attention mask of the prefix and the chunks before
        done = [len(codes) for codes in self.codes]  # frames each row already has in the cache
        prefix_lengths = [tokens - frames for tokens, frames in zip(seen.sum(dim=1).tolist(), done, strict=True)]
        width = max(len(rows) for rows in chunk)
        model_config = self.model.config
        ids = torch.full((len(chunk), width), model_config.pad_token_id, device=self.model.device)
        valid = torch.zeros(len(chunk), width, dtype=torch.long, device=self.model.device)
        positions = torch.ones(len(chunk), width, dtype=torch.long, device=self.model.device)
        for row, rows in enumerate(chunk):
            ids[row, : len(rows)] = model_config.audio_frame_token_id
            valid[row, : len(rows)] = 1
            positions[row, : len(rows)] = response_position_ids(model_config, prefix_lengths[row], done[row],
                                                                len(rows), self.model.device)
        codes = pad([rows if len(rows) else rows.new_zeros(0, level) for rows in chunk], 0, side="right")[0]
        mask = torch.cat([seen, valid], dim=1)
        logits = self.model(
            input_ids=ids, attention_mask=mask, position_ids=positions, audio_codes=codes, level=level, task="tts",
            cache=cache, use_cache=True, early_exit=self.skip,
        ).logits
        self.caches[level] = (cache, mask)
        sampled = self.model._sample_frames(logits[valid.bool()], self.config.nar_temperature, level,
                                           [len(rows) for rows in chunk], self.config.nar_min_temperature)
        new_level, start = [], 0
        for rows in chunk:
            new_level.append(torch.cat([rows, sampled[start: start + len(rows), None]], dim=1))
            start += len(rows)
        return new_level

    def _level_cache(self, level: int):
        """The level's cache and attention mask, filled with its prefix on first use."""
        if level not in self.caches:
            lengths = self.prompt_lengths or [None] * len(self.texts)
            sequences = [tts_sequence(self.model.config, text, level, prompt, response_frames=0)
                         for text, prompt in zip(self.texts, lengths, strict=True)]
            ids, mask = pad(sequences, self.model.config.pad_token_id)
            cache = PreallocatedDynamicCache(self.model.config.backbone_config(), ids.shape[1] + self.capacity)
            self.model(input_ids=ids, attention_mask=mask, position_ids=segment_position_ids(ids, self.model.config),
                       prompt_codes=self.prompt_codes, level=level, task="tts", cache=cache, use_cache=True,
                       logits_to_keep=1)
            self.caches[level] = (cache, mask)
        return self.caches[level]

    # ------------------------------------------------------------------ decoding
    def _send(self, row: int) -> None:
        """Decode and send the row's settled output frames that were not sent yet (all of them once it stopped)."""
        if self.finished[row]:
            return
        codes = self.codes[row][self.prefix_lengths[row]:]
        final = self.stopped[row] and len(self.codes[row]) == len(self.frames[row])
        settled = len(codes) if final else self._settled(row, len(codes))
        start = self.sent[row]
        if settled <= start and not final:
            return
        audio = None
        if self.config.output_audio and settled > start:
            audio = self._decode(row, codes, start, settled, final)
            self.audio[row].append(audio)
        elif self.config.output_audio:
            audio = torch.zeros(0, device=self.model.device)
        self.streamer.put(AudioChunk(row, audio, codes[start:settled], start, final))
        self.sent[row], self.finished[row] = settled, final

    def _settled(self, row: int, frames: int) -> int:
        """How many of a row's `frames` output frames (it goes on) no later frame changes the audio of."""
        if self.streams is not None:
            return frames if frames >= self.streams[row].lead else 0
        return max(frames - self.right, 0)

    def _decode(self, row: int, codes: torch.LongTensor, start: int, settled: int, final: bool) -> torch.Tensor:
        """The audio of the row's output frames `start:settled` of `codes`."""
        if self.streams is not None:
            return self.streams[row](codes[start:settled], last=final)
        first = max(start - self.left, 0)
        last = len(codes) if final else min(settled + self.right, len(codes))
        window = self.model._decode([codes[first:last]], self.config.audio_backend)[0]
        hop = self.model.config.hop_length
        return window[(start - first) * hop: (settled - first) * hop]
