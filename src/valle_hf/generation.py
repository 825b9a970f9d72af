"""Generation: the voice prompt, the AR stage through transformers' own loop, the NAR, then audio.

`VallEGenerationMixin.generate` turns phoneme ids and a voice prompt into codes and audio:

1. the voice prompt: codes as given, or each reference encoded whole by the attached EnCodec; then looped or cut to
   `input_prompt_length` seconds (`prompt_rows`; this is the only place that sets the prompt's length);
2. each row becomes ``text SEP [level 0] SEP prompt SEP response`` in the unified id space, left-padded;
3. `GenerationMixin.generate` samples level 0 until the stop token (cached, batched, any decoding strategy);
4. one parallel forward per NAR level fills levels 1..`max_levels` (argmax, or sampling at `nar_temperature`, dynamic
   per frame with `nar_min_temperature`);
5. the decoder (Vocos or EnCodec, `audio_backend`) turns the codes into audio.

STT (`task="stt"`) runs step 3 over ``audio SEP [level 0] SEP <bos> ...`` with the text head and returns phoneme ids.
The sampler settings live in `VallEGenerationConfig`; the processors they make are in `valle_hf.logits_process`.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import os
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass

import torch
from transformers import Cache, DynamicCache, GenerationConfig, GenerationMixin, MaxLengthCriteria, StoppingCriteriaList
from transformers.generation.utils import GenerateDecoderOnlyOutput

from .audio import as_samples, check_output_path
from .cache import CACHE_FIELD, CACHE_KWARG, PreallocatedDynamicCache
from .codec import decode_batch, encode
from .configuration import (
    INERT_WITHOUT,
    TTS_ONLY_SETTINGS,
    VALLE_GENERATION_DEFAULTS,
    SettingError,
    VallEGenerationConfig,
    check_hub_config_file,
    check_settings,
    check_settings_fit,
    decoding_by_temperature,
    inert_settings,
    python_values,
)
from .cpu_kernels import use_cpu_kernels
from .entropix import probing_attention
from .errors import (
    MissingDependencyError,
    VallEMemoryError,
    VallETypeError,
    VallEValueError,
    as_typed,
    get_logger,
    is_integer_tensor,
    one_line,
    with_hints,
)
from .feature_extraction import VallEFeatureExtractor, check_prompt_for_texts
from .hardware import decoding_attention, free_memory, nar_autocast_dtype
from .layer_skip import LayerSkip
from .layout import pad, segment_position_ids, stt_sequence, tts_sequence
from .logits_process import sampler_processors, temperature_processor
from .seeding import AR_STAGE, RowGenerators, SeededRowSampler, active_generators, draw, multinomial_per_row, seeded
from .streaming import AudioFileStreamer, AudioStreamer, StopRequested, StreamingTTS, not_streamable

__all__ = ["VallEGenerateOutput", "VallEGenerationMixin", "row_names", "setting_names"]

logger = get_logger(__name__)


@dataclass
class VallEGenerateOutput(GenerateDecoderOnlyOutput):
    """`GenerateDecoderOnlyOutput` plus what a TTS/STT call produces.

    codes: `[B, T_max, levels]` EnCodec codes, right-padded; `lengths`: frames per row.
    audio: one 1-D waveform per row at `config.sampling_rate` (when a decoder decoded them).
    text_ids: one LongTensor of phoneme ids per row (STT; without BOS/EOS).
    stopped: whether each row emitted its stop token before `max_new_tokens`.
    exit_layers: `[B, steps]` layers each row ran at every AR step (with `layer_skip`); `nar_exit_layers`:
    `[B, levels]` the same for the NAR passes (None when streamed: the NAR runs chunk by chunk).
    sequences_scores, beam_indices: as in `GenerateBeamDecoderOnlyOutput` (beam search only).
    scores, logits, attentions, hidden_states: those of the AR (or STT) steps, per step as transformers returns them
    (`output_scores`, `output_logits`, `output_attentions`, `output_hidden_states`); the NAR passes add none. The
    attentions need `attn_implementation="eager"`: the default sdpa computes none (each step's tuple is empty).
    With `num_return_sequences=n` every per-row field has `n` consecutive rows per input row.
    """

    sequences_scores: torch.FloatTensor | None = None
    beam_indices: torch.LongTensor | None = None
    codes: torch.LongTensor | None = None
    lengths: torch.LongTensor | None = None
    audio: list[torch.Tensor] | None = None
    text_ids: list[torch.LongTensor] | None = None
    stopped: torch.BoolTensor | None = None
    exit_layers: torch.LongTensor | None = None
    nar_exit_layers: torch.LongTensor | None = None


def _rows(tensor: torch.Tensor, mask: torch.Tensor | None, name: str, dims: int) -> list[torch.Tensor]:
    """Split a padded batch of ids or codes into its rows (any padding side), dropping the masked entries.

    Raises `VallEValueError` for float or bool values (never cast silently), a wrong shape and a batch of 0 rows.
    """
    if not is_integer_tensor(tensor):
        raise VallEValueError(f"{name} must be integer ids, got dtype {tensor.dtype}")
    if tensor.dim() == dims - 1:
        tensor = tensor.unsqueeze(0)
        mask = None if mask is None else mask.reshape(1, -1)
    if tensor.dim() != dims:
        raise VallEValueError(f"{name} must have {dims} dimensions ([batch, ...]), got shape {tuple(tensor.shape)}")
    if len(tensor) == 0:
        raise VallEValueError(f"{name} is an empty batch (0 rows): give at least one row")
    if mask is None:
        return list(tensor)
    if mask.shape != tensor.shape[:2]:
        raise VallEValueError(f"the mask of {name} must have shape {tuple(tensor.shape[:2])}, got {tuple(mask.shape)}")
    return [row[row_mask.bool()] for row, row_mask in zip(tensor, mask, strict=True)]


# The mask that goes with each padded input of `generate`.
_MASK_OF = {"input_ids": "attention_mask", "prompt_codes": "prompt_attention_mask",
            "audio_codes": "audio_attention_mask"}
# The id the processor pads text with: `<unk>`, as the phoneme vocabulary has no pad token
# (`valle_hf.tokenization.load_phoneme_tokenizer`).
TEXT_PADDING_ID = 0


def _text_is_padded(row: torch.Tensor, bos: int, eos: int) -> bool:
    """Whether a row of phoneme ids is padding, then its text from its begin-of-text id (left padding), or its text up
    to its end-of-text id, then padding (right padding): the processor frames every text with the two ids, so only
    padding can precede or follow them."""
    kept = (row != TEXT_PADDING_ID).nonzero().flatten()
    if len(kept) == 0:
        return False
    first, last = int(kept[0]), int(kept[-1])
    return (first > 0 and int(row[first]) == bos) or (last < len(row) - 1 and int(row[last]) == eos)


def _codes_are_padded(rows: list[torch.Tensor]) -> list[bool]:
    """Which rows of a batch of codes start or end in an all-zero frame while another row does not at that end: left
    or right padding (the longest row has none); EnCodec gives no all-zero frame in practice, so a batch where every
    row has one at that end is left alone."""
    padded = [False] * len(rows)
    for end in (0, -1):
        zero = [len(row) > 0 and not bool(row[end].any()) for row in rows]
        if not all(zero):
            padded = [before or now for before, now in zip(padded, zero, strict=True)]
    return padded


def _refuse_unmasked_padding(padded: list[bool], name: str, read_as: str, fix: str) -> None:
    """Refuse a batch given without its mask whose rows hold padding: read as `read_as`, the padding would change
    those rows' output without a word. Raises `VallEValueError` naming the rows, the mask to pass and `fix`."""
    rows = [index for index, is_padded in enumerate(padded) if is_padded]
    if rows:
        raise VallEValueError(f"row(s) {rows} of {name} hold padding, but no {_MASK_OF[name]} was given, so the "
                              f"padding would be read as {read_as}: pass {_MASK_OF[name]} ({fix})")


def _per_row(value, count: int, name: str) -> list:
    """A setting given once for the batch, or once per row (a pipeline batch lists each item's own value)."""
    if torch.is_tensor(value):
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        return [value] * count
    if len(value) != count:
        raise VallEValueError(f"{name}: got {len(value)} values for {count} rows; give one, or one per row")
    return list(value)


def _repeat_rows(rows: list, copies: int) -> list:
    """Each row `copies` times in a row (the order of `num_return_sequences` outputs)."""
    return [row for row in rows for _ in range(copies)]


def _same_audio(first: list[torch.Tensor], second: list[torch.Tensor]) -> bool:
    return len(first) == len(second) and all(
        a.shape == b.shape and torch.equal(a, b) for a, b in zip(first, second, strict=True)
    )


def _ar_fields(output) -> dict:
    """The fields of transformers' generate output that `VallEGenerateOutput` passes on as they are."""
    return dict(sequences=output.sequences, scores=output.scores, logits=output.logits,
                attentions=output.attentions, hidden_states=output.hidden_states)


def _cut_at_stop(tokens: torch.LongTensor, stop: int, vocab: int) -> tuple[list[torch.LongTensor], torch.BoolTensor]:
    """Each row up to (excluding) its first stop token, or its first padding (an id >= `vocab`: the row was ended by
    a stopping criterion); returns the rows and whether each emitted its stop token."""
    ended = (tokens == stop) | (tokens >= vocab)
    stopped = (tokens == stop).any(dim=1) & ((tokens == stop).long().argmax(dim=1) == ended.long().argmax(dim=1))
    ends = torch.where(ended.any(dim=1), ended.long().argmax(dim=1), tokens.shape[1])
    return [row[:end] for row, end in zip(tokens, ends.tolist(), strict=True)], stopped


# The settings that turn transformers' generation into assisted (speculative) decoding.
SPECULATIVE_SETTINGS = ("assistant_model", "prompt_lookup_num_tokens", "assistant_early_exit", "use_mtp")
# transformers' settings that cannot work on VALL-E's passes, with why; each is off at its default or at the values
# listed. They failed deep inside transformers (an index out of range, a missing vocab_size).
UNSUPPORTED_SETTINGS = {
    "guidance_scale": ((None, 1, 1.0), "classifier-free guidance re-runs the model on unconditioned ids, without "
                                       "the segment positions and prompt codes its passes need"),
    "encoder_repetition_penalty": ((None, 1, 1.0), "it is for encoder-decoder models (repetition_penalty is the "
                                                   "original's penalty)"),
    "encoder_no_repeat_ngram_size": ((None, 0), "it is for encoder-decoder models (no_repeat_ngram_size works)"),
    "watermarking_config": ((None,), "watermarking works on a text vocabulary"),
    "stop_strings": ((None,), "stop strings are matched in decoded text, and the AR decodes audio codes: its stop "
                              "token ends a row"),
    "token_healing": ((None, False), "it re-tokenizes the end of a text prompt, and the AR's input is phoneme ids, "
                                     "segment tokens and audio codes"),
    # transformers' chunked prefill runs the input in pieces, each read as if it were the whole input: every code
    # after it was another one, without a word
    "prefill_chunk_size": ((None,), "each pass reads the segment positions and prompt codes of its whole input at "
                                    "once"),
    # Decoding strategies that transformers loads from the Hub as remote code (`custom_generate`), which calls the
    # model without the segment positions and prompt codes its passes need; transformers asked for
    # trust_remote_code=True, which generate then refused as unknown.
    "penalty_alpha": ((None, 0, 0.0), "contrastive search is a custom_generate strategy from the Hub"),
    "num_beam_groups": ((None, 1), "group beam search is a custom_generate strategy from the Hub; num_beams works"),
    "diversity_penalty": ((None, 0, 0.0), "it is group beam search's, a custom_generate strategy from the Hub"),
    "constraints": ((None,), "constrained beam search is a custom_generate strategy from the Hub"),
    "force_words_ids": ((None,), "constrained beam search is a custom_generate strategy from the Hub"),
    "dola_layers": ((None,), "DoLa decoding is a custom_generate strategy from the Hub"),
}


def _without_cache(output):
    """transformers' generate output without its KV cache (a `ModelOutput` keeps it in its dict as well)."""
    return type(output)(**{key: value for key, value in output.items() if key != CACHE_FIELD})


# The inputs of each task; the other task's are refused rather than ignored.
_TASK_INPUTS = {
    "tts": ("input_ids", "attention_mask", "prompt_codes", "prompt_attention_mask", "prompt_audio"),
    "stt": ("audio_codes", "audio_attention_mask", "audio"),
}
# Two forms of one input: a call gives one of them.
_ONE_OF = (("prompt_codes", "prompt_audio"), ("audio_codes", "audio"))
# What each task cannot run without (one of the inputs named), and how to make it.
_REQUIRED = {
    "tts": (("input_ids",), "text-to-speech needs input_ids (phoneme ids): generate(**processor(text, "
                            "prompt_audio=...))"),
    "stt": (("audio", "audio_codes"), "speech-to-text needs audio or audio_codes: generate(**processor("
                                      "audio=...), task='stt')"),
}


def _refuse_missing_input(task: str, given: set[str]) -> None:
    """Refuse a call without its task's required input, naming the other task's inputs given instead: the task is
    most likely the mistake, not those inputs. Raises `VallEValueError`."""
    required, needs = _REQUIRED.get(task, ((), ""))
    if not required or given & set(required):
        return
    others = sorted(given - set(_TASK_INPUTS[task]))
    if others:
        other = next(name for name in _TASK_INPUTS if name != task)
        verb = "is an input" if len(others) == 1 else "are inputs"
        needs += f"; {', '.join(others)} {verb} of task={other!r}: for that task pass task={other!r}"
    raise VallEValueError(needs)


def _check_inputs_of(task: str, **inputs) -> None:
    """Refuse a call without its task's required input (`_refuse_missing_input`), inputs `generate` would ignore
    (another task's: a TTS voice given as `audio`, the STT task's input, instead of `prompt_audio`), an input
    given both as codes and as audio, or one on the meta device. Raises `VallEValueError`."""
    given = {name for name, value in inputs.items() if value is not None}
    _refuse_missing_input(task, given)
    for name in sorted(given - set(_TASK_INPUTS.get(task, given))):
        other = next(other for other, names in _TASK_INPUTS.items() if name in names)
        hint = " (a voice prompt is prompt_audio or prompt_codes)" if task == "tts" else ""
        raise VallEValueError(f"{name} is an input of task={other!r}, not of task={task!r}: drop it{hint}")
    for pair in _ONE_OF:
        if set(pair) <= given:
            raise VallEValueError(f"{pair[0]} and {pair[1]} given together: give one of them")
    for name in sorted(given):
        if _on_meta_device(inputs[name]):
            raise VallEValueError(f"{name} is on the meta device, which holds shapes but no values: give it real data "
                                  "(a tensor made or loaded on 'cpu' or the model's device)")


def _on_meta_device(value) -> bool:
    """Whether `value`, a tensor or a list of them (one waveform per row), has a tensor on the meta device: torch
    failed deep inside the call with "Cannot copy out of meta tensor"."""
    if isinstance(value, (list, tuple)):
        return any(_on_meta_device(item) for item in value)
    return torch.is_tensor(value) and value.is_meta


def _kind_of(value) -> str:
    """A value's type as an error names it: "the class X" for a class given where an instance belongs."""
    return f"the class {value.__name__}" if isinstance(value, type) else type(value).__name__


def _is_streamer(streamer) -> bool:
    """Whether `streamer` is an instance (not a class) with callable `put` and `end`, what a generation loop calls."""
    return not isinstance(streamer, type) and all(callable(getattr(streamer, name, None)) for name in ("put", "end"))


# transformers' `generate` arguments that hold lists of objects its loop calls, and the class of those objects.
_CALLED_LISTS = {"stopping_criteria": "StoppingCriteria", "logits_processor": "LogitsProcessor"}


def _check_called_arguments(model_kwargs: dict) -> None:
    """Refuse (`VallETypeError`, naming the argument) a `streamer`, `stopping_criteria` or `logits_processor` that
    transformers' loop cannot call: a string, a class or a bare criterion failed deep inside it as an AttributeError
    or a TypeError, after the voice prompt had been encoded. An `AudioStreamer` given as `streamer` is refused too:
    it was handed token ids without a word (its reader found tensors where chunks belong; a file streamer failed with
    an AttributeError)."""
    streamer = model_kwargs.get("streamer")
    if streamer is not None and not _is_streamer(streamer):
        raise VallETypeError(f"streamer must be an instance with put and end methods (a transformers BaseStreamer such "
                             f"as TextStreamer), got {_kind_of(streamer)}")
    if isinstance(streamer, AudioStreamer):  # it would be handed token ids where its reader expects audio chunks
        error = VallETypeError(f"streamer= receives the AR's token ids, but {type(streamer).__name__} streams audio: "
                               "pass it as audio_streamer= instead")
        streamer.abandon(error)  # its consumer, in another thread, gets the error too
        raise error
    for name, kind in _CALLED_LISTS.items():
        hooks = model_kwargs.get(name)
        if hooks is None:
            continue
        rule = f"a {kind}List or a list of {kind} instances (or callables of input_ids and scores)"
        if not isinstance(hooks, (list, tuple)):
            raise VallETypeError(f"{name} must be {rule}, got {_kind_of(hooks)}")
        wrong = [hook for hook in hooks if isinstance(hook, type) or not callable(hook)]
        if wrong:
            raise VallETypeError(f"{name} must be {rule}, got a list holding {_kind_of(wrong[0])}")


@contextlib.contextmanager
def _ends(streamer: AudioStreamer | None):
    """Calls `streamer.end()` (if there is a streamer) once the block ends, however it ends, and before it
    `streamer.fail(error)` when the block raises: a consumer iterating over the streamer must not wait for ever for a
    call that failed before its first chunk, nor take a cut stream for a whole one. Raises `VallETypeError` for a
    streamer that is no `AudioStreamer` instance (a transformers streamer, ended first: it failed after the prompt was
    encoded, wanting `chunk_seconds`), and what its `start_call` raises (a streamer that already served a call)."""
    if streamer is not None and not isinstance(streamer, AudioStreamer):
        if _is_streamer(streamer):  # its reader, in another thread, must not wait for ever
            streamer.end()
        tokens = _is_streamer(streamer) and not hasattr(streamer, "chunk_seconds")  # a transformers streamer
        raise VallETypeError("audio_streamer must be a valle_hf.streaming.AudioStreamer instance "
                             "(AudioIteratorStreamer, AudioFileStreamer, or a subclass with put), got "
                             f"{_kind_of(streamer)}" + (": it receives token ids, so pass it as streamer=" if tokens
                                                        else ""))
    if streamer is not None:
        streamer.start_call()
    try:
        yield
    except BaseException as error:
        if streamer is not None:
            streamer.fail(error)
        raise
    finally:
        if streamer is not None:
            streamer.end()


def _refuse_unsupported(config: VallEGenerationConfig, model_kwargs: dict) -> None:
    """Refuse transformers' settings that cannot work on VALL-E's passes (`UNSUPPORTED_SETTINGS`) and speculative
    decoding: assisted decoding drafts tokens by calling a model's `generate` on the unified ids, which for VALL-E
    starts a whole TTS run, and its draft steps cannot give the response's positions and prompt codes that each AR
    step needs."""
    given = [name for name in SPECULATIVE_SETTINGS if model_kwargs.get(name) or getattr(config, name, None)]
    if given:
        raise VallEValueError(f"VALL-E does not support speculative decoding ({', '.join(given)}): drop the "
                              "setting; its AR steps read segment positions and prompt codes that a draft cannot give")
    for name, (off, why) in UNSUPPORTED_SETTINGS.items():
        value = getattr(config, name, None)
        if not any(value is setting or value == setting for setting in off):
            raise VallEValueError(f"VALL-E does not support {name} ({why}): drop the setting")
    if model_kwargs.get("custom_generate") is not None:
        raise VallEValueError("VALL-E does not support custom_generate (a decoding loop from the Hub calls the model "
                              "without the segment positions and prompt codes its passes need): drop the argument")


def check_generation_config(generation_config) -> None:
    """Refuse (`VallETypeError`) a `generation_config` that is neither None nor a `GenerationConfig`: a dict of
    settings, say, which transformers' pipelines read as one (an AttributeError, before `generate` was called)."""
    if generation_config is not None and not isinstance(generation_config, GenerationConfig):
        raise VallETypeError(f"generation_config must be a GenerationConfig, got {type(generation_config).__name__}: "
                             "give settings as keyword arguments of generate, or build one with "
                             "copy.deepcopy(model.generation_config)")


def _warn_if_unread(settings: Mapping, source: str) -> None:
    """Warn about the names in `settings` (of `source`) that no generation reads: transformers keeps any name given
    to a `GenerationConfig` as an attribute, so a misspelt setting was ignored without a word."""
    known = VallEGenerationConfig().to_dict()
    unknown = [name for name in settings if name not in known]
    if unknown:
        logger.warning(f"{source} has setting(s) {with_hints(unknown, known)} that no generation reads: they are "
                       "ignored; check the names")


def _check_seeded_rows(rows: int) -> None:
    """Refuse a seeded call without one seed per input row."""
    generators = active_generators()
    if generators is not None:
        generators.check_rows(rows)


def _check_input_lengths(config: VallEGenerationConfig, mask: torch.Tensor, max_new_tokens: int | None) -> None:
    """Refuse the length settings that count the AR's input too (phonemes, segment tokens and prompt frames, or the
    STT's audio frames), as transformers' `max_length` and `min_length` do, where they cannot hold: over rows of
    other input lengths (counted from the batch's padded input, a row's limit would hang on the other rows), and a
    `min_length` that asks for more steps than `max_new_tokens` allows (transformers ran to the most). `mask`: the
    AR's attention mask `[B, T]`; `max_new_tokens`: the one in force (`_max_new_tokens`)."""
    lengths = mask.sum(dim=1).tolist()
    limiting = {  # max_length is in force only without max_new_tokens, as in transformers; a min_length within
        # every row's input asks for no step, alone or in the batch
        "max_length": max_new_tokens is None and config.max_length is not None,
        "min_length": (config.min_length or 0) > min(lengths),
    }
    for name, limits in limiting.items():
        if limits and len(set(lengths)) > 1:
            instead = _setting_name(name.replace("length", "new_tokens"))
            raise SettingError(name, getattr(config, name), f"left out for rows of other input lengths "
                               f"({min(lengths)} to {max(lengths)}): it counts each row's input padded to the "
                               f"longest, so a row would get another limit than alone; give {instead} (AR steps) "
                               "instead")
    least = (config.min_length or 0) - mask.shape[1]
    if max_new_tokens is not None and least > max_new_tokens:
        raise SettingError("min_length", config.min_length, f"at most the input ({mask.shape[1]} tokens) plus "
                           f"{_setting_name('max_new_tokens')} ({max_new_tokens}), which ends the run first")


_ROW_NAMES: ContextVar[list[str] | None] = ContextVar("valle_hf_row_names", default=None)


@contextlib.contextmanager
def row_names(names: Sequence[str]) -> Iterator[None]:
    """Name the output rows of the `generate` calls made inside this context in their warnings (a manifest's row ids,
    say), instead of batch positions. A call whose output has another number of rows keeps the positions."""
    token = _ROW_NAMES.set([str(name) for name in names])
    try:
        yield
    finally:
        _ROW_NAMES.reset(token)


# The most rows a warning names one by one: a long text's thousands of sentences, each a row, made one warning of
# 29,000 characters (a notice filling the web page, a line of the CLI's).
MAX_NAMED_ROWS = 10


def _named_rows(rows: list[int], total: int) -> str:
    """`rows` (output positions) as a warning names them: by the names `row_names` gave, else by position; beyond
    `MAX_NAMED_ROWS`, the first ones, how many more, and the last."""
    names = _ROW_NAMES.get()
    named = names is not None and len(names) == total
    shown = [names[row] if named else str(row) for row in rows]
    if len(shown) > MAX_NAMED_ROWS:
        shown = [*shown[:MAX_NAMED_ROWS - 1], f"… ({len(shown) - MAX_NAMED_ROWS} more)", shown[-1]]
    return "row(s) " + (", ".join(shown) if named else f"[{', '.join(shown)}]")


@dataclass
class _SettingNames:
    names: Mapping[str, str]
    warned: set[str]


_SETTING_NAMES: ContextVar[_SettingNames | None] = ContextVar("valle_hf_setting_names", default=None)


@contextlib.contextmanager
def setting_names(names: Mapping[str, str] | None = None) -> Iterator[None]:
    """Name the settings in the warnings of the `generate` calls made inside this context as the caller's interface
    does (``{"temperature": "--ar-temp"}``; a setting not in `names` keeps its own name), and give each such warning
    once for the whole context, however many calls it makes (a corpus spoken batch by batch). Inside another such
    context, `names` add to the outer one's (a corpus row's cells name their settings by the manifest's columns), and
    a warning is given once for both."""
    outer = _SETTING_NAMES.get() or _SettingNames({}, set())
    token = _SETTING_NAMES.set(_SettingNames({**outer.names, **dict(names or {})}, outer.warned))
    try:
        yield
    finally:
        _SETTING_NAMES.reset(token)


def _setting_name(setting: str) -> str:
    """`setting` as the interface of the calls in progress names it (`setting_names`)."""
    naming = _SETTING_NAMES.get()
    return setting if naming is None else naming.names.get(setting, setting)


def _given_settings(config: VallEGenerationConfig, kwargs: dict) -> set[str]:
    """The settings a call asks for: those passed as keyword arguments, and those whose value is not their default
    (set in a passed config, or in the model's own); one merely at its default in the model's config asks for
    nothing. The temperature counts only where given: the model's own is what `do_sample=False` turns off."""
    differing = {name for name, *_ in INERT_WITHOUT
                 if name != "temperature" and getattr(config, name, None) != VALLE_GENERATION_DEFAULTS.get(name)}
    return differing | {name for name, value in kwargs.items() if value is not None}


def _warn_once(message: str) -> None:
    """Warn `message`, once for the `setting_names` context in progress (once for this call without one)."""
    naming = _SETTING_NAMES.get()
    if naming is None or message not in naming.warned:
        if naming is not None:
            naming.warned.add(message)
        logger.warning(message)


def _warn_if_inert(config: VallEGenerationConfig, given: set[str]) -> None:
    """Warn, once per setting, about each given setting that does nothing without its switch (`inert_settings`): the
    original accepted them without a word, and the caller would believe them applied."""
    # an interface that renames the temperature (the CLI's --ar-temp) and has no do_sample of its own
    do_sample = _setting_name("temperature") == "temperature" or _setting_name("do_sample") != "do_sample"
    for setting, switch, condition in inert_settings(config, given, do_sample):
        name, switch_name = _setting_name(setting), _setting_name(switch)
        # a command line's on/off flag is on by being given
        needed = switch_name if condition == "=True" and switch_name.startswith("--") else f"{switch_name}{condition}"
        _warn_once(f"{name} has no effect without {needed}: set {switch_name}, or drop {name}")


def _warn_if_for_speech(settings: dict) -> None:
    """Warn, once per call, about the text-to-speech settings (`TTS_ONLY_SETTINGS`) given to speech to text, which
    ignores them: they were ignored without a word. (The command line refuses them: its flags are given for one run.)"""
    given = [_setting_name(name) for name in TTS_ONLY_SETTINGS if settings.get(name) is not None]
    if given:
        _warn_once(f"{', '.join(given)}: text-to-speech only; task='stt' ignores {'it' if len(given) == 1 else 'them'}")


def _warn_if_for_a_prompt(settings: dict) -> None:
    """Warn about an `input_prompt_length` given to a call without a voice prompt, which has none to loop or cut: it
    was ignored without a word."""
    seconds = settings.get("input_prompt_length")
    if any(value is not None for value in (seconds if isinstance(seconds, (list, tuple)) else [seconds])):
        name = _setting_name("input_prompt_length")
        _warn_once(f"{name} has no effect without a voice prompt: give one, or drop {name}")


def _warn_if_unspoken(lengths: torch.Tensor, audio: list[torch.Tensor] | None) -> None:
    """Warn about rows that came out unspoken, which callers joining or saving the rows would otherwise miss: 0
    frames (the AR stopped at its first step: empty audio) or audio with NaN or infinite samples."""
    empty = (lengths == 0).nonzero().flatten().tolist()
    if empty:
        logger.warning(f"{_named_rows(empty, len(lengths))} stopped at their first step: their codes and audio are "
                       "empty (another seed may speak)")
    broken = [row for row, waveform in enumerate(audio or []) if not bool(torch.isfinite(waveform).all())]
    if broken:
        logger.warning(f"{_named_rows(broken, len(lengths))} decoded to NaN or infinite samples: the model's numbers "
                       "overflowed (in float16? try bfloat16 or float32)")


def _active_dropout(model: torch.nn.Module) -> float:
    """The highest dropout rate a forward of `model` applies in its modules' present modes: an `nn.Dropout` in
    training mode (a LoRA's, say), or an attention's `attention_dropout`, a rate transformers' attention functions
    apply in training mode only."""
    rates = [module.p if isinstance(module, torch.nn.Dropout) else getattr(module, "attention_dropout", 0.0)
             for module in model.modules() if module.training]
    return max((rate for rate in rates if isinstance(rate, (int, float))), default=0.0)


def _warn_if_dropping_out(model: torch.nn.Module) -> None:
    """Warn when `generate` runs in training mode with dropout active (`Trainer.train()` leaves a model in training
    mode, and fine-tuning sets attention dropout): every call then gives other output, greedy or seeded."""
    rate = _active_dropout(model)  # any module in training mode: `model.train()` may have been called on a part
    if rate > 0:
        logger.warning(f"generate runs in training mode with dropout {rate:g} active, so every call gives other "
                       "output, greedy or seeded: call model.eval() first (Trainer.train() leaves the model in "
                       "training mode)")


def _ar_generate(model, **generate_kwargs):
    """`GenerationMixin.generate` for the AR (or STT) stage. A seeded, sampled run returns as its `scores` those its
    tokens were drawn from, not the one-token distributions `SeededRowSampler` handed on. With entropix sampling,
    the attention it reads is recorded meanwhile. cuDNN's attention is off meanwhile (`decoding_attention`)."""
    config = generate_kwargs["generation_config"]
    _check_first_step_memory(model, generate_kwargs["input_ids"], config)
    with probing_attention(bool(config.entropix) and config.is_sampling), decoding_attention():
        output = GenerationMixin.generate(model, **generate_kwargs)
    generators = active_generators()
    if generators is not None and generators.drawn_from is not None and output.scores is not None:
        output.scores = tuple(generators.drawn_from[: len(output.scores)])
    return output


def _check_first_step_memory(model, input_ids: torch.LongTensor, config: VallEGenerationConfig) -> None:
    """Refuse (`VallEMemoryError`) a call whose first step alone needs more memory than the device has free: the keys
    and values of the whole input `[B, L]` in every layer, for each row it expands to (beams, or takes per row).
    On Linux the allocator does not refuse such a run (memory is promised, then found missing as it is filled), and
    the kernel kills the process without a word, or another process of the machine."""
    expand = max(config.num_beams or 1, config.num_return_sequences or 1)
    rows, positions = input_ids.shape[0] * expand, input_ids.shape[1]
    per_position = 2 * model.config.num_hidden_layers * model.config.hidden_size * model.dtype.itemsize
    needed, free = rows * positions * per_position, free_memory(model.device)
    if free is None or needed <= free:
        return
    setting = "num_beams" if (config.num_beams or 1) >= expand else "num_return_sequences"
    name = _setting_name(setting)
    rows_of = (f"{input_ids.shape[0]} row(s) x {as_typed(expand)} ({name}={as_typed(expand)})" if expand > 1
               else f"{rows} row(s)")
    raise VallEMemoryError(f"{rows_of} need {_gigabytes(needed)} GB for the keys and values of their {positions} "
                           f"input positions alone, and {model.device} has {_gigabytes(free)} GB free: "
                           f"{f'lower {name}, or ' if expand > 1 else ''}give fewer or shorter texts at once",
                           setting if expand > 1 else None)


def _gigabytes(count: int) -> str:
    """`count` bytes in GB, to three digits, however many (a float cannot hold a count past 1e308: a beam width of
    1e309 failed while its refusal was written)."""
    return f"{count / 1e9:.3g}" if count < 1e300 else as_typed(count // 10**9)


def _layer_skip(config: VallEGenerationConfig) -> LayerSkip | None:
    if not config.layer_skip:
        return None
    return LayerSkip(config.layer_skip_exit_layer, config.layer_skip_entropy_threshold,
                     config.layer_skip_varentropy_threshold)


@dataclass
class _Prompts:
    """The voice prompt of a batch, padded once: `codes` `[B, Tp, levels]` (right padding) and `lengths` `[B]`."""

    codes: torch.LongTensor
    lengths: list[int]

    def repeat(self, copies: int) -> _Prompts:
        return _Prompts(self.codes.repeat_interleave(copies, dim=0), _repeat_rows(self.lengths, copies))


class VallEGenerationMixin(GenerationMixin):
    """`generate()` for VALL-E; everything step-wise is left to `GenerationMixin` (cache, processors, stopping)."""

    # ------------------------------------------------------------------ hooks of GenerationMixin
    def adjust_generation_fn(self, generation_config, from_auto_class, from_pipeline, pretrained_model_name_or_path,
                             *args, **kwargs):
        """`from_pretrained` loads `generation_config.json` as a plain `GenerationConfig`: read it as ours. Without
        that file transformers derives one from `config.json`, which holds no VALL-E setting (every sampler None, its
        own 20-token max_length): the tuned settings (`VallEGenerationConfig.tuned`) stand in for it, as in a model
        built from its config. (A saved file can carry transformers' `_from_model_config` flag too: one that sets a
        sampler is kept.) A Hub model's file is checked as a folder's is (`check_hub_config_file`)."""
        name = pretrained_model_name_or_path
        try:
            super().adjust_generation_fn(generation_config, from_auto_class, from_pipeline, name, *args, **kwargs)
        finally:  # transformers' own reader fails with a bare TypeError on a file that is no JSON object
            # a folder's file was checked before loading; a Hub model's is at hand only now, in the cache
            if generation_config is None and name is not None and not os.path.isdir(name):
                check_hub_config_file(os.fspath(name), "generation_config.json", self.config, **kwargs)
        derived = self.generation_config
        unset = derived.max_new_tokens is None and derived.temperature is None  # config.json holds no sampler
        if getattr(derived, "_from_model_config", False) and unset:
            logger.info("no generation_config.json: generating with the tuned settings of a model built from its "
                        "config (VallEGenerationConfig.tuned)")
            self.generation_config = VallEGenerationConfig.tuned(self.config)
        elif not isinstance(self.generation_config, VallEGenerationConfig):
            # transformers sets every keyword of from_pretrained on the config it reads (num_hidden_layers=1): those
            # that are no generation setting were the model config's
            config_only = kwargs.keys() - VallEGenerationConfig().to_dict().keys()
            saved = {key: value for key, value in self.generation_config.to_dict().items() if key not in config_only}
            _warn_if_unread(saved, "generation_config.json")
            self.generation_config = VallEGenerationConfig.from_dict(saved)

    def _prepare_generation_config(self, generation_config: GenerationConfig | None, **kwargs):
        """transformers' merge (model config < `generation_config` < keyword arguments), as a `VallEGenerationConfig`;
        a temperature <= 0 means greedy decoding, as in the original."""
        generation_config, model_kwargs = super()._prepare_generation_config(generation_config, **kwargs)
        if not isinstance(generation_config, VallEGenerationConfig):
            generation_config = VallEGenerationConfig.from_dict(generation_config.to_dict())
        generation_config.do_sample = generation_config.is_sampling
        return generation_config, model_kwargs

    def _prepare_position_ids_for_generation(self, inputs_tensor, model_kwargs):
        """No position ids up front (they restart per segment); records where the response's positions start.

        Every token a cached step feeds extends the response, the last segment, so its position id is its column
        minus a per-row offset that the input fixes once: `response_position_offset`, read off the position the
        first generated token gets (a response id appended to the input).
        """
        if torch.is_tensor(inputs_tensor) and inputs_tensor.dim() == 2 and inputs_tensor.shape[1] > 0:
            probe = torch.cat([inputs_tensor, inputs_tensor.new_zeros(inputs_tensor.shape[0], 1)], dim=1)
            first = segment_position_ids(probe, self.config)[:, -1:]
            model_kwargs["response_position_offset"] = inputs_tensor.shape[1] - first
        return None

    def prepare_inputs_for_generation(self, input_ids, response_position_offset=None, **kwargs):
        """Model inputs of one step; a cached step's new response tokens cost O(1), whatever the sequence length."""
        inputs = super().prepare_inputs_for_generation(input_ids, **kwargs)
        new_ids, total = inputs["input_ids"], input_ids.shape[1]
        cached_step = new_ids.shape[1] < total and not kwargs.get("is_first_iteration")
        if cached_step and response_position_offset is not None:
            columns = torch.arange(total - new_ids.shape[1], total, device=input_ids.device)
            inputs["position_ids"] = columns.unsqueeze(0) - response_position_offset
            inputs["inputs_embeds"] = self.model.embeddings.response_tokens(new_ids, kwargs.get("task", "tts"))
            inputs["input_ids"] = None
        else:  # the first step (the whole input, or whatever a caller's cache does not hold yet) or no cache
            inputs["position_ids"] = segment_position_ids(input_ids, self.config)[:, -new_ids.shape[1]:]
        if new_ids.shape[1] < total:  # the prefix frames are already in the cache
            inputs.pop("prompt_codes", None)
            inputs.pop("audio_codes", None)
        return inputs

    def _prepare_cache_for_generation(self, generation_config, model_kwargs, generation_mode, batch_size,
                                      max_cache_length):
        """transformers' cache choice, except that its default `DynamicCache` becomes a `PreallocatedDynamicCache`
        with room for the whole generation (`max_cache_length`: the final sequence length)."""
        try:
            super()._prepare_cache_for_generation(generation_config, model_kwargs, generation_mode, batch_size,
                                                  max_cache_length)
        except ImportError as error:  # a quantized cache's backend: transformers' message names its pip install
            raise MissingDependencyError(one_line(error)) from None
        cache = model_kwargs.get(CACHE_KWARG)
        chosen = generation_config.cache_implementation is not None or getattr(cache, "_is_user_defined", False)
        if type(cache) is DynamicCache and not chosen:
            model_kwargs[CACHE_KWARG] = PreallocatedDynamicCache(self.config.backbone_config(), max_cache_length)

    def _get_logits_processor(self, generation_config: VallEGenerationConfig, *args, **kwargs):
        """transformers' processors for everything but the samplers VALL-E applies itself, then VALL-E's samplers in
        the configured (by default the original's) order."""
        processors = super()._get_logits_processor(generation_config.for_transformers(), *args, **kwargs)
        processors.extend(sampler_processors(generation_config))
        generators = active_generators()
        if generators is not None and generation_config.do_sample and (generation_config.num_beams or 1) == 1:
            generators.drawn_from = [] if generation_config.output_scores else None
            processors.append(SeededRowSampler(generators))
        return processors

    def _get_stopping_criteria(self, *args, **kwargs) -> StoppingCriteriaList:
        """transformers' criteria, without the length criterion's "friendly reminder" that the sequence has outgrown
        `max_position_embeddings`: positions restart in every segment (text, prompt, response), so a long AR sequence
        holds no position past the model's (`unified_position_ids` counts them through, and keeps the reminder)."""
        criteria = super()._get_stopping_criteria(*args, **kwargs)
        if not self.config.unified_position_ids:
            for criterion in criteria:
                if isinstance(criterion, MaxLengthCriteria):
                    criterion.max_position_embeddings = None
        return criteria

    def _get_top_k_continuations(self, accumulated_log_probs: torch.Tensor, *, do_sample: bool, beams_to_keep: int,
                                 batch_size: int, **kwargs):
        """transformers' choice of the next beams; with seeds, a sampled choice draws each row's beams from the row's
        own stream, then lets transformers keep exactly those (every other continuation -inf, taken by its top-k)."""
        generators = active_generators()
        if do_sample and generators is not None:
            streams = generators.for_stage(AR_STAGE, batch_size)
            chosen = multinomial_per_row(torch.softmax(accumulated_log_probs, dim=-1), streams,
                                         num_samples=beams_to_keep)
            accumulated_log_probs = torch.full_like(accumulated_log_probs, -float("inf")).scatter(
                1, chosen, accumulated_log_probs.gather(1, chosen))
            do_sample = False
        return super()._get_top_k_continuations(accumulated_log_probs, do_sample=do_sample,
                                                beams_to_keep=beams_to_keep, batch_size=batch_size, **kwargs)

    # ------------------------------------------------------------------ public entry point
    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.LongTensor | None = None,
        prompt_codes: torch.LongTensor | None = None,
        prompt_attention_mask: torch.LongTensor | None = None,
        prompt_audio=None,
        audio_codes: torch.LongTensor | None = None,
        audio_attention_mask: torch.LongTensor | None = None,
        audio=None,
        sampling_rate: int | list[int] | None = None,
        task: str = "tts",
        generation_config: GenerationConfig | None = None,
        return_dict_in_generate: bool | None = None,
        audio_streamer: AudioStreamer | None = None,
        seeds: Sequence[int] | None = None,
        **kwargs,
    ):
        r"""Text-to-speech (default) or speech-to-text.

        TTS: `input_ids` (or transformers' `inputs`) `[B, L]` phoneme ids with BOS/EOS (any padding side, given
        `attention_mask`: padded rows without their mask are refused, as are padded codes without theirs), and a voice
        prompt as `prompt_codes` `[B, Tp, 8]` (+ `prompt_attention_mask`) or `prompt_audio` (one prompt for every row,
        or one per row; a prompt is a path, a ';'-joined string of paths, a file's bytes, a waveform or a list of those:
        see `VallEFeatureExtractor.load`). STT: `audio_codes` `[B, T, 8]` (+ `audio_attention_mask`) or `audio`, with
        `task="stt"`. `sampling_rate` is the rate (Hz) of waveforms in `prompt_audio` / `audio`, required with them
        (the processor's output carries it); one value, or one per row as a pipeline batch lists it.

        Settings: every `GenerationConfig` field (`do_sample`, `temperature` (0 = greedy), `top_k`, `top_p`,
        `min_p`, `repetition_penalty`, `num_beams`, `max_new_tokens`, ...) and the original's own, listed in
        `VallEGenerationConfig`. Defaults come from the model's generation config (the original CLI's tuned values
        for converted checkpoints). A setting given (a keyword argument, or a value off its default) that does nothing
        without another (`valle_hf.configuration.INERT_WITHOUT`: dry_base without dry_multiplier > 0, ...) is warned
        about, naming both (as `setting_names` names them).

        `audio_streamer` (TTS): an `valle_hf.streaming.AudioStreamer` that receives each row's audio in chunks while the
        AR runs (greedy codes equal a non-streamed run's); beams, `refine_on_stop` and `num_return_sequences` > 1
        cannot be streamed and are refused.

        `seeds`: one integer >= 0 per row of `input_ids` (STT: of the audio). Each row then draws from generators of
        its own (AR and beam sampling, mirostat, NAR sampling; `valle_hf.seeding`), so its result does not depend on
        the rest of the batch: a row gives what it gives alone with its seed. Without seeds, draws come from torch's
        global generator (`torch.manual_seed`), shared by the batch.

        Returns a `VallEGenerateOutput` when `return_dict_in_generate`; otherwise the list of waveforms (TTS, or the
        codes when `output_audio=False`) or the list of phoneme-id tensors (STT). Raises `VallEValueError` (a
        ValueError) for inputs or settings it cannot use.
        """
        with _ends(audio_streamer):  # however the call ends, before streaming or during it
            inputs = kwargs.pop("inputs", None)  # transformers' name for the main input: the phoneme ids here
            if inputs is not None:
                if input_ids is not None:
                    raise VallEValueError("got both inputs and input_ids: give the phoneme ids once")
                input_ids = inputs
            _check_inputs_of(task, input_ids=input_ids, attention_mask=attention_mask, prompt_codes=prompt_codes,
                             prompt_attention_mask=prompt_attention_mask, prompt_audio=prompt_audio,
                             audio_codes=audio_codes, audio_attention_mask=audio_attention_mask, audio=audio)
            config, model_kwargs, configured_dict = self._merge_settings(generation_config, kwargs, task)
            check_settings({"return_dict_in_generate": return_dict_in_generate})  # a keyword of its own here
            if return_dict_in_generate is None:  # as transformers: the keyword, else the config's
                return_dict_in_generate = configured_dict
            _warn_if_dropping_out(self)
            if task == "tts" and prompt_codes is None and prompt_audio is None:
                _warn_if_for_a_prompt(kwargs)
            if torch.is_tensor(input_ids) and input_ids.dim() == 2:
                check_prompt_for_texts(prompt_audio, len(input_ids))
            if isinstance(audio_streamer, AudioFileStreamer):  # the CLI's and corpus synthesis's refusal too
                check_output_path(audio_streamer.path, prompt_audio)
            prompt_audio = self._waveform_rows(prompt_audio, sampling_rate)
            audio = self._waveform_rows(audio, sampling_rate, to_transcribe=True)
            use_cpu_kernels(self)  # the CPU kernels of float32 and int8 linears (see valle_hf.cpu_kernels)
            with seeded(None if seeds is None else RowGenerators(seeds, self.device)):
                if task == "stt":
                    if audio_streamer is not None:
                        raise VallEValueError("audio_streamer streams speech: it works with task='tts' only")
                    result = self._generate_stt(audio_codes, audio_attention_mask, audio, config, model_kwargs)
                    return result if return_dict_in_generate else result.text_ids
                if task != "tts":
                    raise VallEValueError(f"unknown task {task!r}; expected 'tts' or 'stt'")
                self._check_streamer(audio_streamer, config, model_kwargs)
                result = self._generate_tts(input_ids, attention_mask, prompt_codes, prompt_attention_mask,
                                            prompt_audio, config, model_kwargs, streamer=audio_streamer)
        return self._tts_return(result, return_dict_in_generate)

    @staticmethod
    def _tts_return(result: VallEGenerateOutput, return_dict_in_generate: bool | None):
        if return_dict_in_generate:
            return result
        if result.audio is not None:
            return result.audio
        return [codes[:length] for codes, length in zip(result.codes, result.lengths, strict=True)]

    def _check_streamer(self, streamer: AudioStreamer | None, config, model_kwargs: dict) -> None:
        """A streamer that writes at a rate of its own (`AudioFileStreamer`) must write at the model's, and one that
        `needs_audio` must get audio. transformers' `streamer=` cannot come with it: the streamed call hands its AR's
        codes to the audio streamer (both ended in a TypeError about a private method)."""
        if streamer is not None and model_kwargs.get("streamer") is not None:
            model_kwargs["streamer"].end()  # its reader, in another thread, must not wait for ever
            raise VallEValueError("streamer= and audio_streamer= cannot be given together: a streamed call hands the "
                                  "AR's codes to the audio streamer; drop streamer=")
        if getattr(streamer, "needs_audio", False) and not config.output_audio:
            raise VallEValueError(f"the {type(streamer).__name__} writes audio, but output_audio=False makes none: "
                                  "drop output_audio=False")
        rate = getattr(streamer, "sampling_rate", None)
        if rate is not None and rate != self.config.sampling_rate:
            raise VallEValueError(f"the audio streamer writes at {rate} Hz but the model's audio is "
                                  f"{self.config.sampling_rate} Hz: make it with "
                                  "sampling_rate=model.config.sampling_rate")

    # ------------------------------------------------------------------ inputs
    def _merge_settings(self, generation_config, kwargs, task: str) -> tuple[VallEGenerationConfig, dict, bool]:
        """This call's settings for `task`: a copy of `generation_config` (default: the model's; `_completed`) updated
        with the keyword arguments it knows; returns it, the other keyword arguments (model inputs for the AR loop)
        and the config's `return_dict_in_generate` (the copy always returns a dict internally)."""
        check_generation_config(generation_config)
        config = self._own_settings() if generation_config is None else self._completed(generation_config)
        configured_dict = bool(config.return_dict_in_generate)
        config.return_dict_in_generate = True  # internally always; the caller's choice decides the return form
        # A VALL-E setting given as None is not set, where None is no value of its own (max_levels None is "all")
        unset = {name for name, default in VALLE_GENERATION_DEFAULTS.items() if default is not None
                 and name in kwargs and kwargs[name] is None}
        settings = decoding_by_temperature(python_values(kwargs))  # a temperature alone samples even where greedy
        model_kwargs = config.update(**{name: value for name, value in settings.items() if name not in unset})
        for name, default in VALLE_GENERATION_DEFAULTS.items():  # a config that holds None: the default
            if getattr(config, name) is None and default is not None:
                setattr(config, name, default)
        if config.eos_token_id is None:  # unset (a plain GenerationConfig): the AR's stop token, as converted
            config.eos_token_id = self.config.eos_token_id
        check_settings_fit(config.to_dict(), self.config, task)
        if task == "stt":
            _warn_if_for_speech(kwargs)
        self._check_end_token(config, kwargs, task)
        _warn_if_inert(config, _given_settings(config, kwargs))
        config.do_sample = config.is_sampling
        _refuse_unsupported(config, model_kwargs)
        self._check_cache(config, model_kwargs)
        self._refuse_unknown_arguments(model_kwargs, config)
        _check_called_arguments(model_kwargs)
        return config, model_kwargs, configured_dict

    def _check_end_token(self, config: VallEGenerationConfig, kwargs: dict, task: str) -> None:
        """Refuse an `eos_token_id` other than the task's own end token: speech to text ends on its text head's
        (`_generate_stt` sets it), and the AR's rows end on its stop token, which `_cut_at_stop` cuts them at. Another
        id ended a TTS row that then kept that audio code and was reported as not stopped."""
        if task == "stt":
            stop, given = self.config.text_eos_token_id, kwargs.get("eos_token_id")
            why = "task='stt', which ends on its text head's end token"
        else:
            stop, given = self.config.stop_token_id, config.eos_token_id
            why = "task='tts', whose AR ends each row on its stop token"
        ids = given.tolist() if torch.is_tensor(given) else given
        if ids is not None and set(ids if isinstance(ids, (list, tuple)) else [ids]) != {stop}:
            raise SettingError("eos_token_id", given, f"left out (or {stop}) with {why}")

    def _check_cache(self, config: VallEGenerationConfig, model_kwargs: dict) -> None:
        """Refuse a KV cache the AR cannot decode with, before any work: a cache argument that is no transformers
        `Cache` (an AttributeError deep in transformers) or that holds an earlier call's keys (the AR attended to them
        as if they preceded its input, and decoded other codes without a word), or an offloaded
        `cache_implementation` for a model on the CPU (offloading moves the cache out of an accelerator's memory:
        torch's "not compiled with CUDA")."""
        for name in (CACHE_KWARG, "past_key_values"):  # transformers 5.24 still takes the old name
            cache = model_kwargs.get(name)
            if cache is not None and not isinstance(cache, Cache):
                raise VallETypeError(f"{name} must be a transformers Cache (such as DynamicCache()), got "
                                     f"{_kind_of(cache)}: or leave it out, and choose one with cache_implementation")
            if cache is not None and cache.get_seq_length() > 0:
                raise VallEValueError(f"{name} already holds {cache.get_seq_length()} positions (of an earlier call): "
                                      "a call starts from its own text and prompt, so give each call a new Cache")
        if (config.cache_implementation or "").startswith("offloaded") and self.device.type == "cpu":
            raise SettingError("cache_implementation", config.cache_implementation, "one that is not offloaded "
                               "for a model on the CPU: offloading moves the KV cache out of an accelerator's memory")

    def _refuse_unknown_arguments(self, model_kwargs: dict, config: VallEGenerationConfig) -> None:
        """Refuse (`VallETypeError`, with the closest setting's name) a keyword argument that is no setting, no model
        input and none of transformers' `generate` arguments: a typo such as `temprature`. transformers' own check
        (`_validate_model_kwargs`, the rule used here, one name at a time) came after the voice prompt was encoded,
        as a bare ValueError."""
        own = inspect.signature(GenerationMixin.generate).parameters  # stopping_criteria, streamer, ...

        def unknown(name: str) -> bool:
            try:
                self._validate_model_kwargs({name: model_kwargs[name]})
            except ValueError:
                return True
            return False

        names = [name for name in model_kwargs if name not in own and unknown(name)]
        if names:
            known = [*config.to_dict(), *inspect.signature(self.generate).parameters, *own]
            raise VallETypeError(f"generate got unexpected keyword argument(s) {with_hints(names, known)}: not a "
                                 "setting of GenerationConfig or VallEGenerationConfig, nor an input of the model; "
                                 "check the name")

    def _own_settings(self) -> VallEGenerationConfig:
        """A copy of the model's generation config, as a `VallEGenerationConfig`. One assigned as a plain
        `GenerationConfig` (`model.generation_config = GenerationConfig(...)`, as for any transformers model; it was
        an AttributeError here) has no VALL-E setting: each takes its default, as when that model is saved and loaded
        again. The assigned object itself is left as it is, so later edits to it still count."""
        own = self.generation_config
        if isinstance(own, VallEGenerationConfig):
            return copy.deepcopy(own)
        return VallEGenerationConfig.from_dict(own.to_dict())

    def _completed(self, generation_config: GenerationConfig) -> VallEGenerationConfig:
        """A `generation_config` the caller passed, with what it leaves unset taken from the model's, as transformers
        does: its fields that are None, and the VALL-E settings it lacks (a plain `GenerationConfig`) or leaves at
        their defaults (so a setting passed at its default value must be a keyword argument of `generate`). Its
        temperature without a `do_sample` of its own says which decoding runs (`decoding_by_temperature`)."""
        given = generation_config.to_dict()
        _warn_if_unread(given, "the generation_config passed to generate")
        passed = {name: value for name, value in given.items() if value is not None
                  and not (name in VALLE_GENERATION_DEFAULTS and value == VALLE_GENERATION_DEFAULTS[name])}
        return VallEGenerationConfig.from_dict({**self.generation_config.to_dict(), **decoding_by_temperature(passed)})

    def _moved(self, tensor: torch.Tensor | None, name: str) -> torch.Tensor | None:
        """An input tensor on the model's device (None stays None); raises `VallETypeError` for anything else, such
        as lists or the processor's numpy output (`return_tensors="np"`)."""
        if tensor is None:
            return None
        if not torch.is_tensor(tensor):
            raise VallETypeError(f"{name} must be a torch tensor, got {type(tensor).__name__}: call the processor "
                                 "with return_tensors='pt' (its default), or wrap it in torch.tensor(...)")
        return tensor.to(self.device)

    def _text_rows(self, input_ids, attention_mask) -> list[torch.Tensor]:
        rows = _rows(self._moved(input_ids, "input_ids"), self._moved(attention_mask, "the mask of input_ids"),
                     "input_ids", 2)
        if attention_mask is None:
            bos, eos = self.config.text_bos_token_id, self.config.text_eos_token_id
            _refuse_unmasked_padding([_text_is_padded(row, bos, eos) for row in rows], "input_ids", "text",
                                     "the processor returns it beside input_ids: generate(**processor(texts, ...))")
        for row in rows:
            if len(row) == 0:
                raise VallEValueError("empty text: every row of input_ids needs at least one phoneme id")
            if int(row.min()) < 0 or int(row.max()) >= self.config.text_vocab_size:  # ints: uint8 ids overflow
                raise VallEValueError(f"input_ids must be phoneme ids in 0..{self.config.text_vocab_size - 1}")
        return rows

    def check_segments_fit(self, texts: Sequence[torch.Tensor] = (), prompts: Sequence[torch.Tensor] = (),
                           audio: Sequence[torch.Tensor] = (), **settings) -> None:
        """Refuse a row whose text (phoneme ids), voice prompt (codes) or audio to transcribe (codes) is longer than
        the model's positions: they restart in every segment, and a position past the model's last was never
        trained, so what it would speak there is out of its range, without a word. Raises `VallEValueError` naming
        the row as warnings do (`row_names`).

        `settings`: `generate`'s, over the model's generation config. The prompt is looped or cut to
        `input_prompt_length` as `generate` speaks it (0: the codes as they are). With `input_prompt_prefix` it also
        starts the response, whose positions it then shares with up to `max_new_tokens` generated frames.
        """
        def setting(name: str):
            value = settings.get(name)
            return value if value is not None else getattr(self.generation_config, name)

        prompts = [self._loop_or_cut(prompt, setting("input_prompt_length")) for prompt in prompts]
        self._check_positions(texts, "the text", "phoneme ids", "split it into shorter sentences")
        fix = f"cut it with {_setting_name('input_prompt_length')} (3 s is the original's)"
        limit, steps = self.config.max_position_embeddings, setting("max_new_tokens")
        if setting("input_prompt_prefix") and steps is not None:
            limit -= steps
            fix += f" or lower {_setting_name('max_new_tokens')}: with {_setting_name('input_prompt_prefix')} it " \
                   f"starts the response, which may add {steps} frames"
        self._check_positions(prompts, "the voice prompt", "frames", fix, limit)
        self._check_positions(audio, "the audio to transcribe", "frames", "transcribe it in shorter parts")

    def _check_positions(self, rows: Sequence[torch.Tensor], what: str, unit: str, fix: str,
                         limit: int | None = None) -> None:
        positions = self.config.max_position_embeddings
        limit = positions if limit is None else limit
        for row, segment in enumerate(rows):
            if len(segment) > limit:
                fits = "" if limit == positions else f" ({limit} of them left for it)"
                raise VallEValueError(f"{what} of {_named_rows([row], len(rows))} is {len(segment)} {unit} long, "
                                      f"and this model has positions for {positions}{fits}: {fix}")

    def _waveform_rows(self, references, sampling_rate, to_transcribe: bool = False
                       ) -> list[list[torch.Tensor]] | None:
        """`prompt_audio` / `audio` (`to_transcribe`) as each row's whole waveforms at the model's rate
        (`VallEFeatureExtractor.load`): one source for every row, or a list with one per row; arrays at
        `sampling_rate`, paths at their own."""
        if references is None:
            return None
        references = as_samples(references)  # a list of samples is no list of rows
        rows = list(references) if isinstance(references, (list, tuple)) else [references]
        if not rows:
            name = "audio" if to_transcribe else "prompt_audio"
            raise VallEValueError(f"{name} is an empty list: give one source for every row, or a list of one per row")
        extractor = VallEFeatureExtractor(sampling_rate=self.config.sampling_rate)
        rates = _per_row(sampling_rate, len(rows), "sampling_rate")
        return [extractor.load(row, rate, to_transcribe) for row, rate in zip(rows, rates, strict=True)]

    def _code_rows(self, codes, mask, references, name: str, batch: int | None) -> list[torch.Tensor] | None:
        """Per-row `[T, 8]` codes, from padded codes or from reference audio encoded with the attached codec.

        `references`: one list of whole waveforms at the model's rate for every row, or one such list per row.
        """
        if codes is None and references is None:
            return None
        if codes is None:
            rows = self._encode_references(references)
        else:
            rows = _rows(self._moved(codes, name), self._moved(mask, f"the mask of {name}"), name, 3)
        if batch is not None and len(rows) == 1 and batch > 1:
            rows = rows * batch
        if batch is not None and len(rows) != batch:
            given = name if codes is not None else dict(_ONE_OF)[name]  # the argument given: the codes or audio
            raise VallEValueError(f"{given}: got {len(rows)} rows for a batch of {batch}")
        for row in rows:
            if len(row) == 0:
                raise VallEValueError(f"{name}: a row has no frames (0 frames, or an all-zero attention mask)")
            if row.shape[-1] != self.config.num_rvq_levels:
                raise VallEValueError(f"{name} must have {self.config.num_rvq_levels} RVQ levels, got {row.shape[-1]}")
            if row.numel() and (int(row.min()) < 0 or int(row.max()) >= self.config.audio_vocab_size):
                raise VallEValueError(f"{name} must be EnCodec codes in 0..{self.config.audio_vocab_size - 1}")
        if codes is not None and mask is None:
            _refuse_unmasked_padding(_codes_are_padded(rows), name, "audio frames",
                                     "1 for each real frame; for generate's codes, torch.arange(out.codes.shape[1]) "
                                     "< out.lengths[:, None]")
        return [row.long() for row in rows]

    def _encode_references(self, rows: list) -> list[torch.LongTensor]:
        """Each row's references encoded whole and on their own, their codes joined, as the original does
        (`vall_e/inference.py:encode_audio`). Rows with the same audio (a prompt broadcast to a batch) are encoded
        once."""
        encoded: list[tuple[list[torch.Tensor], torch.LongTensor]] = []
        codes_per_row = []
        for waveforms in rows:
            codes = next((codes for seen, codes in encoded if _same_audio(seen, waveforms)), None)
            if codes is None:
                codes = torch.cat([encode(self.codec_model, waveform.to(self.device), self.config.codec_bandwidth)
                                   for waveform in waveforms])
                encoded.append((waveforms, codes))
            codes_per_row.append(codes)
        return codes_per_row

    def prompt_rows(self, prompt_codes, prompt_mask, prompt_audio, batch: int,
                    seconds: float | list[float] | None) -> list[torch.LongTensor] | None:
        """The voice prompt of each row as the model reads it: `[frames, levels]` codes, or None without a prompt.

        The codes are `prompt_codes` or the encoded `prompt_audio` (each row's waveforms at the model's rate), then
        looped or cut to exactly `int(75 * seconds)` frames from their start (the original's `repeat_extend_audio`);
        `seconds` 0 or None keeps them all, and may be given per row (a pipeline batch lists each item's own). The
        one place where a prompt's length is decided.
        """
        prompts = self._code_rows(prompt_codes, prompt_mask, prompt_audio, "prompt_codes", batch)
        if prompts is None:
            return None
        return [self._loop_or_cut(prompt, row_seconds)
                for prompt, row_seconds in zip(prompts, _per_row(seconds, len(prompts), "input_prompt_length"),
                                               strict=True)]

    def _loop_or_cut(self, prompt: torch.LongTensor, seconds: float | None) -> torch.LongTensor:
        """One row's prompt codes looped or cut to `seconds` (0 or None: as they are)."""
        if not seconds:
            return prompt
        frames = self.config.seconds_to_frames(seconds)
        if seconds < 0 or frames == 0:
            raise VallEValueError(f"input_prompt_length must be at least one frame (1/{self.config.frame_rate} s), "
                                  f"got {seconds}")
        return prompt.repeat(-(-frames // len(prompt)), 1)[:frames]

    # ------------------------------------------------------------------ TTS
    def _generate_tts(self, input_ids, attention_mask, prompt_codes, prompt_mask, prompt_audio, config, kwargs,
                      streamer: AudioStreamer | None = None):
        max_levels = config.max_levels if config.max_levels is not None else self.config.num_rvq_levels - 1
        texts = self._text_rows(input_ids, attention_mask)
        _check_seeded_rows(len(texts))
        prompt_list = self.prompt_rows(prompt_codes, prompt_mask, prompt_audio, len(texts), config.input_prompt_length)
        self.check_segments_fit(texts, prompt_list or (), input_prompt_length=0,  # prompts looped or cut already
                                input_prompt_prefix=config.input_prompt_prefix, max_new_tokens=config.max_new_tokens)
        prompts = None if prompt_list is None else _Prompts(pad(prompt_list, 0, side="right")[0],
                                                            [len(prompt) for prompt in prompt_list])
        prefixes = self._response_prefixes(texts, prompt_list, config)
        # The original's NAR reads the generated frames after a prompt prefix (it has the prompt in its own segment),
        # but a silence prefix with them (`vall_e/models/ar_nar.py`)
        nar_prefixes = [prefix[:0] for prefix in prefixes] if config.input_prompt_prefix else prefixes
        sequences = [
            tts_sequence(self.config, text, 0, self._prompt_frames(prompts, row, config.input_prompt_prefix), prefix)
            for row, (text, prefix) in enumerate(zip(texts, prefixes, strict=True))
        ]
        ar_ids, ar_mask = pad(sequences, self.config.pad_token_id)
        _check_input_lengths(config, ar_mask, self._max_new_tokens(config))
        skip = _layer_skip(config)
        if streamer is not None:
            return self._generate_streamed(streamer, texts, prompts, nar_prefixes, ar_ids, ar_mask, max_levels, skip,
                                           config, kwargs)
        output, exit_layers = self._traced_generate(
            skip, input_ids=ar_ids, attention_mask=ar_mask, prompt_codes=None if prompts is None else prompts.codes,
            task="tts", level=0, generation_config=config, **kwargs,
        )
        output = _without_cache(output)  # the AR's KV cache is not needed any more: free it before the NAR
        copies = output.sequences.shape[0] // len(texts)  # num_return_sequences: consecutive rows per input row
        if copies > 1:
            texts, nar_prefixes = _repeat_rows(texts, copies), _repeat_rows(nar_prefixes, copies)
            prompts = None if prompts is None else prompts.repeat(copies)
            ar_mask = ar_mask.repeat_interleave(copies, dim=0)
        generated, stopped = self._response(output, ar_ids.shape[1], self.config.stop_token_id,
                                            self.config.head_size(0), config)
        if config.refine_on_stop:
            generated = self._refine(output.sequences, ar_mask, generated, self.config.stop_token_id, task="tts",
                                     prompt_codes=None if prompts is None else prompts.codes)
        level0 = [torch.cat([prefix, tokens]) for prefix, tokens in zip(nar_prefixes, generated, strict=True)]
        with self.nar_precision(config, keep_casts=False):
            codes, nar_exit_layers = self._generate_nar(texts, prompts, level0, max_levels, config.nar_temperature,
                                                        skip, min_temperature=config.nar_min_temperature)
        # A silence prefix conditioned the NAR but is not part of the output.
        rows = [row[len(prefix):] for row, prefix in zip(codes, nar_prefixes, strict=True)]
        lengths = torch.tensor([len(row) for row in rows], device=self.device)
        audio = self._decode(rows, config.audio_backend) if config.output_audio else None
        _warn_if_unspoken(lengths, audio)
        return VallEGenerateOutput(
            **_ar_fields(output), codes=pad(rows, 0, side="right")[0] if rows else None, lengths=lengths, audio=audio,
            stopped=stopped,
            exit_layers=exit_layers, nar_exit_layers=nar_exit_layers,
            sequences_scores=getattr(output, "sequences_scores", None),
            beam_indices=getattr(output, "beam_indices", None),
        )

    def _generate_streamed(self, streamer, texts, prompts, prefixes, ar_ids, ar_mask, max_levels, skip, config,
                           kwargs) -> VallEGenerateOutput:
        """The AR with a `StreamingTTS` as transformers' streamer: NAR and decoding chunk by chunk as codes arrive."""
        refused = not_streamable(config.to_dict())
        if refused:
            name, reason = refused
            raise VallEValueError(f"{name}={getattr(config, name)} cannot be streamed: {reason} (drop it, or the "
                                  "audio_streamer)")
        steps = self._length_limit(config, ar_ids.shape[1])[0]  # max_new_tokens may be None (max_length applies)
        capacity = max(len(prefix) for prefix in prefixes) + (steps or 0)  # the cache grows past it if need be
        if isinstance(streamer, AudioStreamer):  # its consumer may ask the call to end early (`stop_requested`)
            kwargs["stopping_criteria"] = StoppingCriteriaList([*(kwargs.get("stopping_criteria") or []),
                                                                StopRequested(streamer)])
        driver = StreamingTTS(self, texts, None if prompts is None else prompts.codes,
                              None if prompts is None else prompts.lengths, prefixes, config, streamer, max_levels,
                              skip, capacity)
        # An outer autocast region, off for the AR, keeps the NAR chunks' weight casts for the whole call.
        with torch.autocast(self.device.type, enabled=False):
            output, exit_layers = self._traced_generate(
                skip, input_ids=ar_ids, attention_mask=ar_mask, prompt_codes=None if prompts is None else prompts.codes,
                task="tts", level=0, generation_config=config, streamer=driver, **kwargs,
            )
            rows, audio = driver.finish()
        stopped = self._response(output, ar_ids.shape[1], self.config.stop_token_id, self.config.head_size(0),
                                 config)[1]
        lengths = torch.tensor([len(row) for row in rows], device=self.device)
        _warn_if_unspoken(lengths, audio)
        return VallEGenerateOutput(**_ar_fields(output), codes=pad(rows, 0, side="right")[0], lengths=lengths,
                                   audio=audio, stopped=stopped, exit_layers=exit_layers)

    @staticmethod
    def _prompt_frames(prompts: _Prompts | None, row: int, as_prefix: bool) -> int | None:
        """Prompt placeholders of a row's TTS sequence: none without a prompt, 0 when the prompt is the AR prefix."""
        if prompts is None:
            return None
        return 0 if as_prefix else prompts.lengths[row]

    def _traced_generate(self, skip: LayerSkip | None, **generate_kwargs):
        """`GenerationMixin.generate`, and with layer skip the layers each row ran at every step (`[B, steps]`)."""
        if skip is None:
            return _ar_generate(self, **generate_kwargs), None
        trace = []

        def record(module, args, kwargs, output):
            # this call's steps only: a streamed call runs NAR chunks between them, and another thread's call on the
            # model (its own LayerSkip) runs through this hook too
            if kwargs.get("early_exit") is skip and kwargs.get("level") == generate_kwargs["level"]:
                trace.append(output.exit_layers)

        handle = self.register_forward_hook(record, with_kwargs=True)
        try:
            output = _ar_generate(self, early_exit=skip, **generate_kwargs)
        finally:
            handle.remove()
        return output, torch.stack(trace, dim=1)

    def _response_prefixes(self, texts, prompts, config) -> list[torch.LongTensor]:
        """Level-0 frames the AR response starts from: the prompt itself, or `prefix_silence` seconds of silence."""
        if config.input_prompt_prefix:
            if prompts is None:
                name = _setting_name("input_prompt_prefix")
                raise VallEValueError(f"{name} starts the response from the voice prompt, but none was given: give "
                                      f"one, or turn {name} off")
            return [prompt[:, 0] for prompt in prompts]
        frames = self.config.seconds_to_frames(config.prefix_silence)
        return [torch.full((frames,), self.config.silence_codes[0], device=self.device) for _ in texts]

    def _response(self, output, input_length: int, stop: int, vocab: int, config
                  ) -> tuple[list[torch.LongTensor], torch.BoolTensor]:
        """The AR's response of each row, up to its stop token (`_cut_at_stop`: ids `[T_i]`), and whether it
        stopped; warns when the run ended on its length limit with rows that never emitted their stop token (a run
        that a stopping criterion, `max_time` or the stop tokens ended is not cut off, whatever its rows did)."""
        generated, stopped = _cut_at_stop(output.sequences[:, input_length:], stop, vocab)
        steps = output.sequences.shape[1] - input_length
        limit, setting = self._length_limit(config, input_length)
        if not bool(stopped.all()) and (limit is None or steps >= limit):
            rows = (~stopped).nonzero().flatten().tolist()
            name = _setting_name("max_new_tokens")  # in the caller's words: the CLI's --max-ar-steps, say
            logger.warning(f"{_named_rows(rows, len(stopped))} reached the length limit ({setting}: {steps} steps) "
                           f"without a stop token; the output may be cut off (raise {name})")
        return generated, stopped

    def _max_new_tokens(self, config) -> int | None:
        """The `max_new_tokens` in force: the call's, or where it is None the model's generation config's (so that a
        `max_new_tokens=None` in the call leaves the model's in force, with transformers' warning that it takes
        precedence over a `max_length`)."""
        return config.max_new_tokens if config.max_new_tokens is not None else self.generation_config.max_new_tokens

    def _length_limit(self, config, input_length: int) -> tuple[int | None, str]:
        """The AR's step limit as transformers applies it, and the setting that made it: `max_new_tokens`, else
        `max_length` minus the input, where unset (None) values fall back to the model's generation config."""
        max_new_tokens = self._max_new_tokens(config)
        if max_new_tokens is not None:
            return max_new_tokens, f"{_setting_name('max_new_tokens')}={max_new_tokens}"
        max_length = config.max_length if config.max_length is not None else self.generation_config.max_length
        if max_length is not None:
            return max_length - input_length, f"max_length={max_length}"
        return None, "transformers' default max_length"

    def _refine(self, sequences, prefix_mask, generated, stop: int, **pass_inputs) -> list[torch.LongTensor]:
        """Refine-on-stop: one teacher-forced pass over the final sequences; argmax at every response position.

        `pass_inputs`: the pass's `task` and its `prompt_codes` (TTS) or `audio_codes` (STT). Stop tokens the argmax
        predicts inside the response are removed (the original keeps them).
        """
        prefix_length = prefix_mask.shape[1]
        mask = torch.cat([prefix_mask, torch.ones_like(sequences[:, prefix_length:])], dim=1)  # left padding
        logits = self(input_ids=sequences, attention_mask=mask, level=0, use_cache=False,
                      logits_to_keep=sequences.shape[1] - prefix_length + 1, **pass_inputs).logits
        refined = logits[:, :-1].argmax(dim=-1)
        rows = [row[: len(tokens)] for row, tokens in zip(refined, generated, strict=True)]
        return [row[row != stop] for row in rows]

    # ------------------------------------------------------------------ NAR
    def nar_precision(self, config: VallEGenerationConfig, keep_casts: bool = True):
        """The context the NAR's forwards run in: `torch.autocast` to `config.nar_dtype` where that pays
        (`valle_hf.hardware.nar_autocast_dtype`), else nothing.

        `keep_casts`: keep each weight's cast for the whole outer autocast region, so that the many small chunks of a
        stream cast every weight once. The NAR of a whole call (`keep_casts=False`) casts the weights again at each
        of its levels instead (a few percent of its time) rather than hold a cast copy of the decoder beside the
        weights (0.4 GB at the released size, in bfloat16).
        """
        dtype = nar_autocast_dtype(config.nar_dtype, self.device, self.dtype)
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype, cache_enabled=keep_casts)

    def _generate_nar(self, texts, prompts: _Prompts | None, level0, max_levels: int, temperature: float,
                      skip: LayerSkip | None, min_temperature: float = -1.0,
                      ) -> tuple[list[torch.LongTensor], torch.LongTensor | None]:
        """Levels 1..max_levels, one batched forward per level, each row conditioned on its levels so far, sampled at
        `temperature` (dynamic down to `min_temperature` >= 0, see `_sample_frames`).

        Returns the codes of each row `[T_i, max_levels + 1]` and, with layer skip, the layers each row ran per level.
        """
        codes = [row.unsqueeze(-1) for row in level0]
        frames = max(len(row) for row in codes)
        exit_layers = []
        for level in range(1, max_levels + 1):
            if frames == 0:
                codes = [torch.cat([row, row[:, :1]], dim=1) for row in codes]
                continue
            sequences = [
                tts_sequence(self.config, text, level, self._prompt_frames(prompts, row, False),
                             response_frames=len(frame_codes))
                for row, (text, frame_codes) in enumerate(zip(texts, codes, strict=True))
            ]
            ids, mask = pad(sequences, self.config.pad_token_id)
            audio_batch, valid = pad(codes, 0, side="right")
            output = self(
                input_ids=ids, attention_mask=mask, prompt_codes=None if prompts is None else prompts.codes,
                audio_codes=audio_batch, level=level, task="tts", logits_to_keep=frames, early_exit=skip,
                use_cache=False,
            )
            exit_layers.append(output.exit_layers)
            rows_logits = output.logits[(ids == self.config.audio_frame_token_id)[:, -frames:]]
            new_level = torch.zeros_like(valid)
            new_level[valid.bool()] = self._sample_frames(rows_logits, temperature, level, valid.sum(dim=1),
                                                          min_temperature)
            codes = [torch.cat([row, new_level[index, : len(row), None]], dim=1) for index, row in enumerate(codes)]
        traced = [layers for layers in exit_layers if layers is not None]
        return codes, torch.stack(traced, dim=1) if traced else None

    @staticmethod
    def _sample_frames(logits: torch.Tensor, temperature: float, level: int,
                       frames_per_row: torch.Tensor | list[int], min_temperature: float = -1.0) -> torch.LongTensor:
        """Level `level`'s codes from its logits `[frames, V]` (the rows' frames one row after the other,
        `frames_per_row`): the argmax at `temperature` <= 0, else a draw at that temperature (with `min_temperature`
        >= 0, each frame's dynamic temperature between the two, as the AR's `min_temperature`), from each row's own
        stream for the level when the call is seeded (only then are the counts read on the host)."""
        if temperature <= 0:
            return logits.argmax(dim=-1)
        processor = temperature_processor(temperature, min_temperature)
        scores = logits.float() if processor is None else processor(None, logits.float())
        return draw(torch.softmax(scores, dim=-1), level, frames_per_row).squeeze(-1)

    def _decode(self, rows: list[torch.LongTensor], backend: str | None) -> list[torch.Tensor]:
        """Waveforms of code rows `[T_i, levels]` with `backend` ("vocos", "encodec"; None: the model's own)."""
        backend = backend or self.config.audio_backend
        if backend not in ("vocos", "encodec"):
            raise VallEValueError(f"audio_backend must be 'vocos' or 'encodec', got {backend!r}")
        if not rows:
            return []
        codes, mask = pad(rows, 0, side="right")
        lengths = mask.sum(dim=1)
        if backend == "vocos":
            return self.vocoder.decode(codes, lengths=lengths)
        return decode_batch(self.codec_model, codes, lengths)

    # ------------------------------------------------------------------ STT
    def _generate_stt(self, audio_codes, audio_mask, audio, config, kwargs) -> VallEGenerateOutput:
        self.head_index(0, "stt")  # refuses a checkpoint without the text head, before any work
        rows = self._code_rows(audio_codes, audio_mask, audio, "audio_codes", None)  # one is given: _check_inputs_of
        _check_seeded_rows(len(rows))
        self.check_segments_fit(audio=rows)
        bos = torch.tensor([self.config.text_bos_token_id], device=self.device)
        ids, mask = pad([stt_sequence(self.config, len(row), bos) for row in rows], self.config.pad_token_id)
        _check_input_lengths(config, mask, self._max_new_tokens(config))
        audio_batch = pad(rows, 0, side="right")[0]
        stop = self.config.text_eos_token_id
        config.eos_token_id = stop
        output, exit_layers = self._traced_generate(
            _layer_skip(config), input_ids=ids, attention_mask=mask, audio_codes=audio_batch, task="stt", level=0,
            generation_config=config, **kwargs,
        )
        text_ids, stopped = self._response(output, ids.shape[1], stop, self.config.text_vocab_size, config)
        if config.refine_on_stop:
            copies = output.sequences.shape[0] // len(rows)
            text_ids = self._refine(output.sequences, mask.repeat_interleave(copies, dim=0), text_ids, stop,
                                    task="stt", audio_codes=audio_batch.repeat_interleave(copies, dim=0))
        return VallEGenerateOutput(**_ar_fields(output), text_ids=text_ids, stopped=stopped, exit_layers=exit_layers)
