"""`python -m valle_hf TEXT REFERENCES OUT_PATH`: the original CLI's flags, on top of `model.generate`.

Every failure a user can cause (missing or unreadable audio, empty text, unknown language, an unwritable output,
no model) raises one of the package's error types, which `errors.entry_point` turns into exit status 1 and one line
on stderr; anything else is a bug and shows its traceback. Ctrl-C ends with one line and status 130, a SIGTERM
with the same line and 143.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import os
import random
import re
import shlex
import sys
from decimal import Decimal, InvalidOperation
from pathlib import Path

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from .configuration import (
    DEFAULT_CODEC,
    FRAME_RATE,
    MAX_SETTING_SECONDS,
    SETTING_RULES,
    TTS_ONLY_SETTINGS,
    SettingError,
    check_settings,
    check_settings_fit,
    decoding_by_temperature,
    is_seconds,
)
from .errors import (
    ArgumentParser,
    UsageError,
    as_typed,
    entry_point,
    get_logger,
    named,
    one_line,
    option_name,
    value_refused,
)
from .seeding import sentence_seeds
from .streaming import (
    CHUNK_SECONDS_RULE,
    DEFAULT_CHUNK_SECONDS,
    AudioFileStreamer,
    chunk_seconds_allowed,
    not_streamable,
)
from .vocos import DEFAULT_VOCODER

logger = get_logger(__name__)


def whole_number(text: str) -> int:
    """An integer (argparse type). A whole number written with a decimal point or an exponent (3.0, 1e3) is that
    integer: spreadsheets and JSON writers store integer columns that way."""
    try:
        number = Decimal(text.strip())
    except InvalidOperation:
        number = Decimal("NaN")
    # the digit limit keeps int() from building a huge number out of a short "1e999999999"
    whole = number.is_finite() and number == number.to_integral_value()
    if not whole or (number and number.adjusted() > 4000):
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}")
    return int(number)


def seed_value(text: str) -> int:
    """A seed: an integer >= 0 (argparse type), written as `whole_number` takes it."""
    try:
        seed = whole_number(text)
    except argparse.ArgumentTypeError:
        seed = -1
    if seed < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return seed


def count_value(text: str) -> int:
    """A count of steps or tokens: an integer >= 1 (argparse type), written as `whole_number` takes it."""
    count = whole_number(text)
    if count < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return count


def seconds_value(text: str) -> float:
    """A prompt length: seconds in [0, `MAX_SETTING_SECONDS`] (argparse type), 0 meaning the whole prompt."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not is_seconds(seconds):
        raise argparse.ArgumentTypeError(f"expected seconds in [0, {MAX_SETTING_SECONDS}] (0: all), got {text!r}")
    return seconds


def check_flags_fit(settings: dict, model_config) -> None:
    """`settings` (`generate` keyword arguments, each set by the flag of its own name: max_new_tokens by
    --max-new-tokens, as in examples/) against their ranges (`check_settings`) and the loaded model's limits
    (`check_settings_fit`). Raises `UsageError` naming the flag."""
    try:
        check_settings(settings)
        check_settings_fit(settings, model_config)
    except SettingError as error:
        raise value_refused(option_name(error.setting), error.value, error.rule) from None


def _token_ids(text: str) -> list[int]:
    """A comma-separated list of token ids, e.g. "1,2,3" (argparse type); "" is none. An empty place ("1,,2") is
    refused: a lost id, most likely."""
    if not text.strip():
        return []
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated token ids such as 12,40, got {text!r}") from None


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The model options every command shares (the CLI, the web demo, corpus synthesis): which model, and where and
    in which precision it runs; `load_model(args)` loads what they say."""
    add = parser.add_argument
    add("--model", type=named, help="converted directory, Hub id, original fp32.sft/.pth, or 'tiny-random' "
        "(default: the released ar+nar-llama-8, downloaded and converted once)")
    add("--revision", default=None, help="with a Hub id as --model: the branch, tag or commit to load [main]")
    add("--tokenizer", type=named, help="a phoneme tokenizer.json for the model (default: the model's own; for an "
        "original checkpoint, the released model's, shipped with valle-hf)")
    add("--yaml", type=named, help="the original's config.yaml: without --model, loads the checkpoint it names "
        "(<yaml dir>/ckpt/<full name>/fp32.sft, the full name as the original writes it: ar+nar-llama-8), as the "
        "original does; with --model fp32.sft, that checkpoint with this config")
    add("--codec", type=named, help=f"EnCodec weights used when converting a checkpoint [{DEFAULT_CODEC}]")
    add("--vocoder", type=named, help="Vocos decoder used when converting a checkpoint (Hub id, directory, "
        f"'tiny-random' or 'none') [{DEFAULT_VOCODER}]")
    add("--device", type=named, default=None, help="cuda when available, else cpu")
    add("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"],
        help="the model's precision; auto: float16 on CUDA; on the CPU float32, or bfloat16 where the CPU has bfloat16 "
        "matrix hardware and its AR streams at least 10%% faster in it (measured once per machine); the choice is "
        "printed")
    add("--quantize", default=None, choices=["int8"], help="int8 decoder weights (torchao through transformers' "
        "TorchAoConfig; pip install -e '.[int8]'), applied where they make the AR faster on this machine")
    add("--onednn", action="store_true", help="CPU, float32: run the decoder's linears through oneDNN on prepacked "
        "weights (faster batches; a second copy of those weights in memory)")
    add("--attention", default="auto", choices=ATTENTION_IMPLEMENTATIONS,
        help="the backbone's attention (transformers' attn_implementation); auto: sdpa [auto]")
    add("--amp", action="store_true", help="the original's mixed precision: refused with what to use instead, "
        "--dtype and --nar-dtype")


# --attention's choices: "auto" (the default, sdpa) and transformers' attention implementations.
ATTENTION_IMPLEMENTATIONS = ("auto", "sdpa", "eager", "flex_attention", "flash_attention_2", "flash_attention_3")


def _set_attention(model, name: str) -> None:
    """Switch `model` to the attention implementation --attention names. Raises `UsageError` where it cannot run here
    (flash attention without its package or a GPU)."""
    if name == "auto":
        return
    try:
        model.set_attn_implementation(name)
    except (ImportError, ValueError) as error:
        raise UsageError(f"--attention {name} cannot run here ({one_line(error, 200)}): use --attention sdpa or "
                         "eager") from None


def model_precision(args, rows: int = 1):
    """The precision (`hardware.Precision`) that `add_model_arguments`' options ask for on this machine: measured
    here with --dtype auto and --quantize, at `rows` rows per AR step (the most sentences one `generate` call of the
    run decodes). Raises `UsageError` for a device that cannot run here."""
    from .hardware import choose_precision

    precision = choose_precision(torch.device(check_device(args)), "float32" if args.onednn else args.dtype,
                                 args.quantize, nar_dtype=getattr(args, "nar_dtype", None) or "auto", rows=rows)
    if args.onednn and args.dtype == "auto":  # the line named a --dtype float32 no one gave
        return dataclasses.replace(precision, reason="--onednn runs float32")
    return precision


def _refuse_amp(args) -> None:
    """Refuse the original's --amp (one autocast over every stage), naming the flags that set each stage's precision
    here: accepted and ignored, it would leave the user believing the run is in mixed precision."""
    if args.amp:
        raise UsageError("--amp: valle-hf sets each stage's precision instead of one autocast: --dtype for the "
                         "weights and the AR, --nar-dtype for the NAR (--dtype float32 --nar-dtype bfloat16 is "
                         "closest to the original's --amp --dtype bfloat16); drop --amp")


def _check_converting_flags(args) -> None:
    """Refuse --codec / --vocoder where no checkpoint is converted (a converted directory, a Hub id, tiny-random): the
    model has its own, and the flags would be ignored without a word."""
    from .loading import names_original_checkpoint

    given = [flag for flag, value in (("--codec", args.codec), ("--vocoder", args.vocoder)) if value is not None]
    if given and args.model is not None and not names_original_checkpoint(args.model):
        flags = " and ".join(given)
        raise UsageError(f"{flags} {'apply' if len(given) > 1 else 'applies'} when a checkpoint is converted (an "
                         f"original fp32.sft / .pth, or the released model on first use); {args.model} has its own: "
                         f"drop {flags}")


def _vocoder(args) -> str | None:
    """The Vocos decoder --vocoder names for a conversion (None: EnCodec's own decoder)."""
    vocoder = args.vocoder or DEFAULT_VOCODER
    return None if vocoder == "none" else vocoder


def model_identity(args) -> str:
    """The model `load_model` loads for `add_model_arguments`' options, named for a record of what spoke
    (`resolved_name`): the folder or file it loads from (the release: its cached conversion for --codec and
    --vocoder, the folder that `loading.released_model_directory` makes and the Python API's model is named by; --yaml
    alone: the checkpoint it names), else its Hub id at --revision, or tiny-random; then the files and decoders a
    checkpoint is converted with (--yaml, --tokenizer, --codec, --vocoder), which change what it speaks. Raises
    `VallEFileNotFoundError` where --yaml alone names no checkpoint."""
    from .conversion import checkpoint_of_yaml
    from .loading import released_folder_name

    if args.model is None and args.yaml is None:
        return f"{CACHE_NAME}/{released_folder_name(args.codec or DEFAULT_CODEC, _vocoder(args))}"  # made or not
    model = args.model if args.model is not None else checkpoint_of_yaml(args.yaml)
    name = resolved_name(model) + (f"@{args.revision}" if args.revision else "")
    converted = {flag: resolved_name(value) for flag in ("yaml", "tokenizer", "codec", "vocoder")
                 if (value := getattr(args, flag)) is not None}
    return f"{name} converted with {converted}" if converted else name


# --language-switch's default, which --task stt (no text to phonemize) tells from a switch given
LANGUAGE_SWITCH_DEFAULT = "keep"

CACHE_NAME = "<valle-hf cache>"  # how `resolved_name` names the package's cache folder, wherever it is


def resolved_name(name: str | Path) -> str:
    """`name` (a model, tokenizer or decoder) as a path resolved where it is one, so that each file or folder has one
    name however it is written; one in the package's cache (`VALLE_HF_CACHE`: the released model's conversions) by
    its place there, so that a moved cache or another user's names it alike; a Hub id or tiny-random as it is."""
    from .hub import default_cache_dir

    path = Path(name).expanduser()
    if not path.exists():
        return str(name)
    path, cache = path.resolve(), default_cache_dir().resolve()
    return f"{CACHE_NAME}/{path.relative_to(cache).as_posix()}" if path.is_relative_to(cache) else str(path)


def load_model(args, precision=None):
    """The model and processor that `add_model_arguments`' options name, on their device, in `precision` (default:
    `model_precision(args)`), and that precision as the model runs it (`loaded_precision`). Raises `UsageError` for a
    device or precision that cannot run here (checked before anything loads)."""
    from .hardware import loaded_precision
    from .loading import OFFLINE_CHOICES, check_revision, load_model_and_processor

    device = check_device(args)
    _refuse_amp(args)
    _check_converting_flags(args)
    check_revision(args.model, args.revision, args.yaml)
    precision = precision or model_precision(args)
    model, processor = load_model_and_processor(
        args.model, tokenizer=args.tokenizer, config_yaml=args.yaml, codec=args.codec or DEFAULT_CODEC,
        vocoder=_vocoder(args), dtype=precision.dtype, quantize=precision.quantize, revision=args.revision,
        choices=OFFLINE_CHOICES,
    )
    model.to(device)
    _set_attention(model, args.attention)
    loaded = loaded_precision(precision, model)
    if args.onednn:
        if loaded.quantize:  # only the model's own config can say so: it was saved quantized
            raise UsageError(f"--onednn runs float32 weights, and {args.model} was saved with {loaded.quantize} "
                             "weights (its config's quantization_config): drop --onednn")
        from .cpu_kernels import enable_onednn_linears

        enable_onednn_linears(model)
    return model, processor, loaded


def build_parser(positionals: bool = True) -> argparse.ArgumentParser:
    """The CLI's arguments: the original's positional text, references and output path (without them with
    `positionals=False`), and its flags."""
    parser = ArgumentParser(
        prog="python -m valle_hf",
        description="VALL-E text-to-speech (and --task stt speech-to-text) with the original project's flags.",
    )
    if positionals:
        parser.add_argument("text", help="text to speak ('' for --task stt)")
        parser.add_argument("references", help="reference audio: a voice prompt (TTS) or the speech to transcribe "
                            "(STT); join several files with ';'. An empty one is refused: use --no-prompt for a random "
                            "voice")
        parser.add_argument("out_path", nargs="?", default=None, help="output WAV file (TTS)")
    parser.add_argument("--out-path", dest="out_path_option", default=None, help="same as OUT_PATH")
    add = parser.add_argument
    add_model_arguments(parser)
    add("--no-prompt", action="store_true", help="speak in a random voice, without a voice prompt (REFERENCES must "
        "then be '')")
    add("--language", type=named, default="en", help="espeak language code (en, fr, de, ja, ...) or 'auto'")
    add("--language-switch", default=LANGUAGE_SWITCH_DEFAULT, choices=["keep", "remove"],
        help="espeak's markers for words read in another language, '(en)...(fr)': keep (as the model was trained) "
        "or remove (for mixed-language text) [keep]")
    add("--task", default="tts", choices=["tts", "stt"])
    add("--seed", type=seed_value, default=None, help="random seed, an integer >= 0: sentence i of the text draws "
        "from seed + i (a random seed when not given, printed once the run worked)")
    add("--stream", action="store_true", help="write the output as it is generated: a file beside OUT_PATH grows "
        "chunk by chunk (printed at the start) and becomes OUT_PATH when complete")
    add("--stream-chunk", type=float, default=None,
        help=f"seconds of codes per streamed chunk, with --stream [{DEFAULT_CHUNK_SECONDS}]")
    add_sampler_arguments(parser)
    return parser


def add_sampler_arguments(parser: argparse.ArgumentParser) -> None:
    """The original CLI's sampler flags (`FLAG_SETTINGS`), which every command that speaks shares; each defaults to
    None, so that a flag left out keeps the model's generation config."""
    add = parser.add_argument
    add("--audio-backend", default=None, choices=["vocos", "encodec"],
        help="decoder of the codes (default: the model's; vocos for converted original checkpoints, as the original)")
    # Sampler flags default to None: the model's generation_config.json decides (for a converted original
    # checkpoint, the original CLI's tuned values, given in brackets).
    add("--max-ar-steps", type=whole_number, default=None, help="AR step limit [900 = 12 s]")
    add("--max-nar-levels", type=whole_number, default=None, help="NAR levels to fill, 0 = level 0 only [all: 7]")
    add("--ar-temp", type=float, default=None, help="AR temperature; 0 = greedy [0.5]")
    add("--nar-temp", type=float, default=None, help="NAR temperature; 0 = greedy [0.0]")
    add("--nar-dtype", default=None, choices=["auto", "float32", "bfloat16", "float16"],
        help="precision of the NAR's matrix products; auto: bfloat16 where the hardware multiplies it fast [auto]")
    add("--min-ar-temp", type=float, default=None, help="dynamic temperature lower bound, < 0 = off [-1]")
    add("--min-nar-temp", type=float, default=None, help="the NAR's dynamic temperature lower bound (per frame, with "
        "--nar-temp > 0), < 0 = off [-1]")
    add("--input-prompt-length", type=float, default=None,
        help="seconds of prompt codes kept (looped if shorter); 0 = all [3.0]")
    add("--input-prompt-prefix", action="store_true", default=None,
        help="start the AR response with the prompt itself")
    add("--prefix-silence", type=float, default=None, help="seconds of silence the AR response starts from [0.0]")
    add("--top-p", type=float, default=None, help="[1.0 = off]")
    add("--top-k", type=whole_number, default=None, help="[0 = off]")
    add("--min-p", type=float, default=None, help="[0.0 = off]")
    add("--min-p-keep", type=whole_number, default=None, help="tokens min-p always keeps (the original kept 32) [1]")
    add("--repetition-penalty", type=float, default=None, help="[1.5]")
    add("--repetition-penalty-decay", type=float, default=None,
        help="fades the penalty with distance: 1 + (penalty - 1) / d**decay [0.0]")
    add("--repetition-penalty-mode", default=None, choices=["per_occurrence", "per_token"],
        help="per_occurrence: every occurrence penalises again, as the original (the tuned 1.5 assumes it); "
        "per_token: once per token, as transformers [per_occurrence]")
    add("--repetition-penalty-decay-mode", default=None, choices=["nearer", "original"],
        help="original: the original's penalty * d**decay, which penalises older occurrences more [nearer]")
    add("--length-penalty", type=float, default=None, help="penalty on the stop token by current length [0.0]")
    add("--beam-width", type=whole_number, default=None, help="beam search width (real beam search); 0/1 = off [0]")
    add("--mirostat-tau", type=float, default=None, help="[0.0 = off]")
    add("--mirostat-eta", type=float, default=None, help="[0.1]")
    add("--entropix-sampling", action="store_true", default=None,
        help="entropix: each AR step adapts temperature, top-k, top-p and min-p to the model's entropy and attention")
    add("--dry-multiplier", type=float, default=None, help="[0.0 = off]")
    add("--dry-base", type=float, default=None, help="[1.75]")
    add("--dry-allowed-length", type=whole_number, default=None, help="[2]")
    add("--dry-sequence-breakers", type=_token_ids, default=None,
        help="comma-separated token ids that end a DRY match (audio codes for TTS, phoneme ids for STT) [none]")
    add("--layer-skip", action="store_true", default=None, help="early exit by entropy/varentropy (lossy, faster)")
    add("--layer-skip-exit-layer", type=whole_number, default=None,
        help="the last layer that runs, a 0-based index; -1 = all [-1]")
    add("--layer-skip-entropy-threshold", type=float, default=None, help="[0.1]")
    add("--layer-skip-varentropy-threshold", type=float, default=None, help="[0.1]")
    add("--refine-on-stop", action="store_true", default=None,
        help="re-predict the whole AR output in one teacher-forced pass")
    add("--sampler-order", default=None, choices=["original", "transformers"],
        help="original: penalties and filters before temperature, as the model was tuned [original]")


class StepProgress(StoppingCriteria):
    """Advances a progress bar once per AR step; it never stops generation itself."""

    def __init__(self, bar):
        self.bar = bar

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        self.bar.update(1)
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


# Each sampler flag of the original CLI and the `generate` setting it sets.
FLAG_SETTINGS = {
    "max_ar_steps": "max_new_tokens",
    "max_nar_levels": "max_levels",
    "ar_temp": "temperature",
    "nar_temp": "nar_temperature",
    "nar_dtype": "nar_dtype",
    "min_ar_temp": "min_temperature",
    "min_nar_temp": "nar_min_temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "repetition_penalty": "repetition_penalty",
    "repetition_penalty_decay": "repetition_penalty_decay",
    "repetition_penalty_mode": "repetition_penalty_mode",
    "repetition_penalty_decay_mode": "repetition_penalty_decay_mode",
    "min_p_keep": "min_p_keep",
    "dry_sequence_breakers": "dry_sequence_breakers",
    "length_penalty": "stop_length_penalty",
    "beam_width": "num_beams",
    "mirostat_tau": "mirostat_tau",
    "mirostat_eta": "mirostat_eta",
    "entropix_sampling": "entropix",
    "dry_multiplier": "dry_multiplier",
    "dry_base": "dry_base",
    "dry_allowed_length": "dry_allowed_length",
    "layer_skip": "layer_skip",
    "layer_skip_exit_layer": "layer_skip_exit_layer",
    "layer_skip_entropy_threshold": "layer_skip_entropy_threshold",
    "layer_skip_varentropy_threshold": "layer_skip_varentropy_threshold",
    "refine_on_stop": "refine_on_stop",
    "sampler_order": "sampler_order",
    "input_prompt_length": "input_prompt_length",
    "input_prompt_prefix": "input_prompt_prefix",
    "prefix_silence": "prefix_silence",
    "audio_backend": "audio_backend",
}
# Each setting as the CLI's warnings name it: by its flag (`valle_hf.generation.setting_names`).
FLAG_NAMES = {setting: option_name(flag) for flag, setting in FLAG_SETTINGS.items()}


@functools.cache
def flag_actions() -> dict[str, argparse.Action]:
    """The sampler flags as the CLI's parser declares them (type, choices, help), by destination name."""
    return {action.dest: action for action in build_parser()._actions if action.dest in FLAG_SETTINGS}


_TRUE, _FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off")
_EXPECTED = {whole_number: "an integer", float: "a number", _token_ids: "comma-separated token ids such as 12,40"}


def parse_flag(flag: str, value, cell: bool = False):
    """A sampler flag's value as the CLI would parse it, from text (a table's cell, a text field) or a JSON value:
    None (or an empty cell) for not given; for an on/off flag a bool, or true/false/yes/no/1/0.

    Raises `UsageError` naming the flag (`flag`: its destination name, e.g. "ar_temp") for an unknown flag or a value
    it cannot take; ranges are `generation_kwargs`'s to check. `cell`: the value is a manifest's cell, named as its
    column (``ar_temp 'hot'``, not ``--ar-temp 'hot'``), and a JSON value of the wrong kind (true, a list, an object)
    as JSON.
    """
    action = flag_actions().get(flag)
    if action is None:
        raise UsageError(f"unknown sampler setting {flag!r}: use one of {', '.join(FLAG_SETTINGS)}")
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    listed = isinstance(value, (list, tuple))
    text = ",".join(map(str, value)) if listed else str(value).strip()
    if action.nargs == 0:
        if isinstance(value, bool) or (not listed and text.lower() in _TRUE + _FALSE):
            return value if isinstance(value, bool) else text.lower() in _TRUE
        expected = "true or false"
    elif action.choices:
        if not listed and text in action.choices:
            return text
        expected = " or ".join(action.choices)
    else:
        if not isinstance(value, (bool, dict)) and (not listed or action.type is _token_ids):
            try:
                return action.type(text)
            except (argparse.ArgumentTypeError, ValueError):
                pass
        expected = _EXPECTED[action.type]
    if cell and isinstance(value, (bool, dict, list)):
        raise UsageError(f"{flag}: expected {expected}, got the JSON {json.dumps(value)[:60]}")
    raise UsageError(f"{flag if cell else action.option_strings[0]} {value!r}: expected {expected}")


# A flag's range where it differs from its setting's: the original's 0 beams means off, and a flag takes one value
# where `generate` also takes None or one per row. It replaces that range only, never a rule that ties the setting to
# another (beams with entropix or mirostat) or to the model (its levels, its heads).
FLAG_RULES = {
    "beam_width": "an integer >= 0 (0 or 1: no beam search)",
    "max_nar_levels": "an integer >= 0 (0 = level 0 only; unset: all levels)",
    "input_prompt_length": f"0 (the whole prompt) or a number of seconds in [1/{FRAME_RATE}, {MAX_SETTING_SECONDS}] "
                           "(one frame at least)",
    "dry_sequence_breakers": "comma-separated token ids (integers >= 0)",
}


def generation_kwargs(args: argparse.Namespace, model=None, cells=()) -> dict:
    """The sampler flags the user gave, as `generate` keyword arguments; the rest come from the generation config.

    Raises `UsageError`, naming the flag and its allowed range, for a value outside it: checked with the rules
    `generate` applies, before any model loads, and with `model` (once loaded) also against its RVQ levels and layers
    and against the generation settings the flags leave to it (--min-ar-temp above the model's own AR temperature,
    --prefix-silence that leaves its own max_new_tokens no positions).
    `cells`: the flags (by name, e.g. "ar_temp") a manifest's row set, named as its columns (`flag_refusal`'s
    `cell`).
    """
    given = {flag: getattr(args, flag) for flag in FLAG_SETTINGS}
    kwargs = {FLAG_SETTINGS[flag]: value for flag, value in given.items() if value is not None}
    if kwargs.get("num_beams") == 0:
        kwargs["num_beams"] = 1  # the original's 0 means off
    try:  # every flag given, even one the task does not use: a value out of range is a mistake either way
        check_settings(kwargs)
        if model is not None:  # as `generate` checks them, where it would name the setting, not the flag
            merged = {**{name: getattr(model.generation_config, name, None) for name in SETTING_RULES}, **kwargs}
            check_settings_fit(merged, model.config, args.task)  # speech to text's own heads
            check_settings(merged)
    except SettingError as error:
        if error.setting not in FLAG_SETTINGS.values():  # the model's own setting, which no flag sets
            raise
        raise flag_refusal(error, cell=any(FLAG_SETTINGS[flag] == error.setting for flag in cells)) from None
    return decoding_by_temperature(kwargs)


def flag_refusal(error: SettingError, cell: bool = False) -> UsageError:
    """`error` (a setting refused, with the value the flag gave it) in the words of the sampler flag that set it:
    ``--max-nar-levels 9 is not allowed ...`` (`cell`: ``max_nar_levels 9``, as a manifest's column names it)."""
    flag = next(flag for flag, setting in FLAG_SETTINGS.items() if setting == error.setting)
    own_range = flag in FLAG_RULES and error.rule == SETTING_RULES[error.setting][0]
    rule = FLAG_RULES[flag] if own_range else error.rule
    return value_refused(flag if cell else option_name(flag), error.value, rule)


def check_streaming(args) -> None:
    """--stream's own rules, checked before any model loads: chunks of a finite number of seconds > 0, and nothing
    that changes the output after the AR's end (beam search, --refine-on-stop). Raises `UsageError` naming the
    flags."""
    if args.stream_chunk is not None and not chunk_seconds_allowed(args.stream_chunk):
        raise value_refused("--stream-chunk", args.stream_chunk, CHUNK_SECONDS_RULE)
    refused = not_streamable({"num_beams": args.beam_width, "refine_on_stop": args.refine_on_stop})
    if args.stream and refused:
        name, reason = refused
        flag = f"--beam-width {args.beam_width}" if name == "num_beams" else "--refine-on-stop"
        raise UsageError(f"--stream cannot run with {flag}: {reason} (drop one of the two)")


def _check_model_streams(args, model, kwargs: dict) -> None:
    """Refuse (`UsageError`) --stream where the model's own generation config sets what a stream cannot follow
    (`check_streaming` sees only the flags)."""
    refused = not_streamable(kwargs, model)
    if refused:
        name, reason = refused
        fix = "give --beam-width 1 or drop --stream" if name == "num_beams" else "drop --stream"
        model_name = args.model or "the released model"
        raise UsageError(f"--stream cannot follow {model_name}'s {name}={getattr(model.generation_config, name)} (its "
                         f"generation config): {reason}; {fix}")


def check_ignored_flags(args) -> None:
    """Flags that would be ignored, refused before any model loads (`UsageError`): --stream-chunk without --stream,
    --input-prompt-prefix with --no-prompt;
    with --task stt, a TEXT, --stream, --no-prompt, --language-switch and the settings of `TTS_ONLY_SETTINGS`.
    --language must still be a language with --task stt (unused, but a code that does not exist is a mistake)."""
    from .phonemes import resolve_language

    if args.task != "stt":
        if args.no_prompt and args.input_prompt_prefix:
            raise UsageError("--input-prompt-prefix starts the response from the voice prompt, and --no-prompt gives "
                             "none: drop one of the two")
        if args.stream_chunk is not None and not args.stream:
            raise UsageError(f"--stream-chunk {as_typed(args.stream_chunk)} sets the chunks of --stream, which was not "
                             "given: add --stream, or drop --stream-chunk")
        return
    if args.stream:
        raise UsageError("--stream writes speech as it is generated; --task stt prints a transcript: drop --stream")
    if args.no_prompt:
        raise UsageError("--no-prompt is for text-to-speech; --task stt transcribes REFERENCES: drop --no-prompt")
    unused = [option_name(flag) for flag, setting in FLAG_SETTINGS.items()
              if setting in TTS_ONLY_SETTINGS and getattr(args, flag) is not None]
    unused += ["--stream-chunk"] if args.stream_chunk is not None else []
    unused += ["--language-switch"] if args.language_switch != LANGUAGE_SWITCH_DEFAULT else []
    if unused:
        them = "it" if len(unused) == 1 else "them"
        raise UsageError(f"{', '.join(unused)}: text-to-speech only; --task stt would ignore {them}: drop {them}")
    resolve_language("", args.language)
    if args.text.strip():
        raise UsageError("--task stt transcribes REFERENCES and reads no text, so TEXT would be ignored: give '' as "
                         "TEXT")


def usable_device(device: str | None) -> str:
    """--device checked: one torch knows, with data, and available here (None: CUDA where there is one, else the
    CPU). Raises `UsageError` naming the flag."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError:
        raise UsageError(f"--device {device}: not a device torch knows; use cpu, cuda or cuda:N") from None
    if chosen.type == "meta":
        raise UsageError(f"--device {device}: a device without data, nothing can run on it; use cpu, cuda or cuda:N")
    missing = _missing_device(chosen)
    if missing:
        raise UsageError(f"--device {device}: {missing}")
    return device


def _missing_device(device: torch.device) -> str | None:
    """Why this machine has no `device` (a device torch knows by name), or None where it has. torch.cuda, torch.mps,
    torch.xpu or a plug-in's module (torch.npu) says whether its devices are here: moving a model to one that is not
    fails with that backend's own error (a RuntimeError, an AssertionError, a ModuleNotFoundError)."""
    if device.type == "cpu":
        return None
    backend = getattr(torch, device.type, None)
    if not callable(getattr(backend, "is_available", None)) or not backend.is_available():
        return f"{device.type.upper()} is not available here: use --device cpu"
    count = backend.device_count() if callable(getattr(backend, "device_count", None)) else None
    if device.index is not None and count is not None and device.index >= count:
        return f"this machine has {count} {device.type} device(s): use {device.type}:0 to {device.type}:{count - 1}"
    return None


def check_device(args) -> str:
    """The device that --device asks for, checked with --dtype, --quantize, --onednn and --nar-dtype; `UsageError`
    where they cannot run together here."""
    from .hardware import widened_to_float32

    device = usable_device(args.device)
    if args.onednn and (torch.device(device).type != "cpu" or args.dtype not in ("auto", "float32") or args.quantize):
        raise UsageError("--onednn needs the CPU and float32 (drop --onednn, or use --device cpu --dtype float32 "
                         "without --quantize)")
    narrow = "bfloat16" if args.quantize else args.dtype  # int8 weights run with bfloat16 activations
    if getattr(args, "nar_dtype", None) == "float32" and narrow in ("bfloat16", "float16") and not widened_to_float32(
            getattr(torch, narrow), torch.device(device)):  # where it is widened, a float32 NAR is what runs
        model = "int8 weights (bfloat16 activations)" if args.quantize else args.dtype
        fix = "drop --quantize" if args.quantize else "use --dtype float32 or auto"
        raise UsageError(f"--nar-dtype float32 cannot run with {model}: the NAR runs in the model's dtype or "
                         f"narrower ({fix}, or drop --nar-dtype)")
    if args.quantize:
        from .loading import int8_quantization_config

        int8_quantization_config()  # torchao is installed
    return device


def _check_output(path: str | None, references: str) -> Path:
    from .audio import check_output_path

    if not path:
        raise UsageError("no output path: give OUT_PATH (or --out-path) for text-to-speech")
    return check_output_path(path, references)


def run_seed(seed: int | None) -> int:
    """The seed of a run: `seed`, or a random one when None (to be printed, so that the run can be repeated)."""
    return random.SystemRandom().randrange(2**31) if seed is None else seed


def _prompt(args, load):
    """The voice prompt, as the processor's `prompt_audio` for every sentence: `[waveforms]`, the whole waveforms of
    its references (read with `load`) as one prompt (a bare list of two would be read as one prompt per sentence);
    or None for `--no-prompt` (`_check_no_prompt`: a random voice is a choice, never an empty path)."""
    return None if args.no_prompt else [load(args.references)]


def _check_no_prompt(args) -> None:
    """--no-prompt with a reference given is refused; without an output path, the reference is most likely the output
    read as REFERENCES (`TEXT --no-prompt out.wav`), and the message says how to write it."""
    from .audio import reference_sources

    if not args.no_prompt or not reference_sources(args.references):
        return
    if args.out_path or args.out_path_option:
        raise UsageError(f"--no-prompt speaks without a voice prompt, but a reference was given ({args.references}): "
                         "drop one of them")
    raise UsageError(f"--no-prompt speaks without a voice prompt, but {args.references} was read as REFERENCES (the "
                     f"arguments are TEXT REFERENCES OUT_PATH): give \"\" as REFERENCES, as in TEXT \"\" "
                     f"{args.references} --no-prompt")


def prepare_inputs(args) -> dict:
    """Check and load everything the user gave before any model is loaded, so bad input fails fast, in one line."""
    from .feature_extraction import VallEFeatureExtractor
    from .phonemes import check_text, resolve_language, split_sentences

    load = VallEFeatureExtractor().load  # 24 kHz waveforms, passed on with their rate
    paths = [path for path in (args.out_path, args.out_path_option) if path]
    if args.task == "stt":
        if paths:
            raise UsageError(f"--task stt prints its transcript and writes no file: drop the output path {paths[0]}")
        return {"audio": load(args.references, to_transcribe=True)}
    if len(set(paths)) > 1:
        raise UsageError(f"two output paths, {paths[0]} and --out-path {paths[1]}: give one")
    _check_no_prompt(args)
    out = _check_output(paths[0] if paths else None, args.references)
    _warn_if_a_file_name(args.text)
    sentences = split_sentences(check_text(args.text), args.language)
    for sentence in sentences:
        resolve_language(sentence, args.language)
    return {"out": out, "sentences": sentences, "prompt": _prompt(args, load)}


def _warn_if_a_file_name(text: str) -> None:
    """TEXT is spoken as written: one that names a file ("story.txt") would be spoken as its name, "story dot t x t",
    where its user most likely meant the file's text."""
    name = text.strip()
    if name and "\n" not in name and len(name) < 4096 and os.path.isfile(os.path.expanduser(name)):
        logger.warning(f"TEXT {name} is the name of a file here: it is spoken as written, not read; to speak the "
                       f"file's text, give it as TEXT (\"$(cat {shlex.quote(name)})\")")


def run_tts(args, model, processor, inputs: dict, seed: int) -> None:
    """Speak the text's sentences as one batch in the prompt's voice and write them, joined, to the output file;
    sentence i draws from seed + i (`valle_hf.seeding.sentence_seeds`)."""
    from tqdm import tqdm

    from .audio import joined_sentences, save_audio
    from .generation import setting_names

    batch = processor(inputs["sentences"], prompt_audio=inputs["prompt"], language=args.language,
                      sampling_rate=processor.feature_extractor.sampling_rate, language_switch=args.language_switch)
    kwargs = generation_kwargs(args, model)
    steps = kwargs.get("max_new_tokens", model.generation_config.max_new_tokens)
    streamer = None
    try:  # the stream's partial file is made in here, so that Ctrl-C or a SIGTERM right after removes it too
        if args.stream:
            _check_model_streams(args, model, kwargs)
            chunk_seconds = DEFAULT_CHUNK_SECONDS if args.stream_chunk is None else args.stream_chunk
            streamer = AudioFileStreamer(inputs["out"], model.config.sampling_rate, chunk_seconds)
            print(f"streaming into {streamer.partial}", file=sys.stderr)
        with tqdm(total=steps, desc="AR", unit="step", disable=None) as bar, setting_names(FLAG_NAMES):
            audio = model.generate(**batch.to(model.device), audio_streamer=streamer,
                                   seeds=sentence_seeds(seed, len(inputs["sentences"])),
                                   stopping_criteria=StoppingCriteriaList([StepProgress(bar)]), **kwargs)
        waveform = joined_sentences(audio, inputs["sentences"])
    except BaseException:
        if streamer is not None:
            streamer.abort()
        raise
    if streamer is not None:
        streamer.commit()
    else:
        save_audio(inputs["out"], waveform, model.config.sampling_rate)
    print(f"wrote {inputs['out']} ({waveform.numel() / model.config.sampling_rate:.2f} s)", file=sys.stderr)


def run_stt(args, model, processor, inputs: dict, seed: int) -> None:
    """Print the IPA transcription of the reference audio."""
    from .generation import setting_names

    batch = processor(audio=[inputs["audio"]], sampling_rate=processor.feature_extractor.sampling_rate)
    kwargs = generation_kwargs(args, model)
    with setting_names(FLAG_NAMES):
        text_ids = model.generate(**batch.to(model.device), task="stt", seeds=[seed], **kwargs)
    print(processor.decode(text_ids[0].cpu()))


def parse_command_line(given: list[str]) -> argparse.Namespace:
    """The CLI's arguments, with positionals around options (`TEXT REF --seed 1 OUT`) and after `--`, where a text or
    a file may start with '-' (`TEXT --seed 1 -- -voice.wav OUT`). argparse's intermixed parse drops `--`, so with
    one the options before it are parsed alone and the words among them join those after it as positionals."""
    if "--" not in given:
        return build_parser().parse_intermixed_args(given)
    split = given.index("--")
    parser = build_parser(positionals=False)
    options, words = parser.parse_known_args(given[:split])
    unknown = [word for word in words if word.startswith("-")]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    positionals = build_parser().parse_args(["--", *words, *given[split + 1:]])
    return argparse.Namespace(**{**vars(positionals), **vars(options)})


@entry_point()
def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0; 1 with one `error:` line on stderr for a user's mistake)."""
    given = [str(arg) for arg in (sys.argv[1:] if argv is None else argv)]
    try:
        args = parse_command_line(given)
    except UsageError as error:
        if "references" in str(error) and ("stt" in given or "--task=stt" in given):  # the audio was read as TEXT
            raise UsageError(f"{error}; with --task stt, give '' as TEXT: python -m valle_hf '' speech.wav --task "
                             "stt") from None
        ignored = re.search(r"ignored explicit argument '(.*)'", str(error))  # "-hello": -h and its value "ello"
        word = ignored and next((word for word in given if re.fullmatch(rf"-\w{re.escape(ignored[1])}", word)), None)
        if word:
            raise UsageError(f"{word!r} was read as the option {word[:2]}: a text or file that starts with '-' goes "
                             "after `--`, the options go before it and TEXT REFERENCES OUT after it: python -m "
                             "valle_hf [options] -- TEXT REFERENCES OUT") from None
        unrecognized = str(error).split(" (see ")[0]
        first = unrecognized.removeprefix("unrecognized arguments: ").split(" ")[0]
        if unrecognized.startswith("unrecognized arguments: ") and not first.startswith("--") and (
                "--" in given or first.startswith("-")):  # not a misspelt option
            how = "with `--`," if "--" in given else "a text or file that starts with '-' goes after `--`,"
            raise UsageError(f"{unrecognized}: {how} the options go before it and TEXT REFERENCES OUT after it: "
                             "python -m valle_hf [options] -- TEXT REFERENCES OUT") from None
        raise
    check_device(args)
    generation_kwargs(args)
    check_streaming(args)
    check_ignored_flags(args)
    inputs = prepare_inputs(args)
    model, processor, precision = load_model(args)
    seed = run_seed(args.seed)
    (run_stt if args.task == "stt" else run_tts)(args, model, processor, inputs, seed)
    # Printed once it worked, so that a failed run still says one line only; also for a --dtype given, since the NAR's
    # precision (nar_dtype "auto") is still chosen for the machine.
    print(precision.describe(nar=args.task != "stt"), file=sys.stderr)  # speech-to-text runs no NAR
    if args.seed is None:
        print(f"seed: {seed} (--seed {seed} repeats this run)", file=sys.stderr)
    return 0
