"""Fine-tune VALL-E with `transformers.Trainer`: full fine-tuning or LoRA, with the original's loss and optimiser.

    # 1. prepare the data once (phoneme ids + EnCodec codes):
    python scripts/prepare_dataset.py my_audio/ my_data/ --tokenizer MODEL_DIR
    # 2. train (one GPU or CPU):
    python examples/finetune.py --model MODEL_DIR --data my_data/ --output runs/my_voice [--lora]
    # 2'. several GPUs / nodes: the same script under accelerate (or torchrun); the Trainer does the rest
    accelerate launch --multi_gpu --num_processes 8 examples/finetune.py --model MODEL_DIR --data my_data/ ...
    # 2''. several CPU processes: the same launch (torchrun starts them, gloo joins them)

MODEL_DIR is a converted model (`python -m valle_hf.convert`, or any `save_pretrained` folder / hub id). The result
is a plain checkpoint in OUTPUT/final that `VallEForConditionalGeneration.from_pretrained` loads (with --lora the
adapter is merged into it; the adapter alone is also kept in OUTPUT/adapter).

The loss is the original's, number for number (`valle_hf.training`): one RVQ level per item drawn with
P(k) = (8 - k)/36, AR items shifted over the whole sequence with the stop token, NAR items unshifted, STT items
scoring only the level token and the text; per-item token means averaged over items.

Optimiser defaults are the original's dataclass defaults (`vall_e/config.py`, `vall_e/engines`), which the Trainer
expresses exactly: AdamW (torch) with lr 3.25e-4, betas (0.9, 0.96), eps 1e-7, weight decay 0.01 on *every* parameter
(the Trainer's own default would exempt biases and norms), a constant learning rate with no warm-up, gradient clipping
at global norm 10, batch 8 with 32 gradient-accumulation steps (the loss of each micro-batch divided by 32, as the
original does), attention dropout 0.1. The released model's own `data/config.yaml` used Prodigy (lr 1.0, d_coef
1.0), batch 16 x 4, clipping 1.0 and 100 warm-up steps instead; Prodigy is not a Trainer optimiser and is not used
here. Mixed precision: --bf16 / --fp16 keep float32 master weights under autocast (the original's amp setting).
Fine-tuning in the original is the same training started from the released weights, with no separate recipe.

Exit status: 0 when trained; 1 with one ``error:`` line for a bad argument, model or data set, found before any
training starts (a model that cannot be had fails at once, without download retries); 130 after Ctrl-C (the
checkpoints saved are kept; before the first, an --output folder the run made is removed).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import shutil
import sys
import zipfile
from pathlib import Path

# valle_hf first: it imports transformers without torchao's import-time messages for CUDA
import valle_hf  # noqa: F401

# isort: split
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from transformers import SchedulerType, Trainer, TrainerCallback, TrainerState, TrainingArguments, set_seed
from transformers.trainer import OPTIMIZER_NAME, SCHEDULER_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from transformers.utils import ADAPTER_SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_NAME

from valle_hf.cli import whole_number
from valle_hf.configuration import TASKS
from valle_hf.dataset import (
    MANIFEST,
    VallEDataset,
    check_codec,
    check_prompt_duration,
    check_seconds_range,
    check_tokenizer,
)
from valle_hf.errors import (
    ArgumentParser,
    OutputError,
    UsageError,
    as_typed,
    entry_point,
    found_by_every_process,
    is_main_process,
    named,
    named_path,
    one_line,
    option_name,
    value_refused,
)
from valle_hf.files import check_output_folder, plain_file_modes, refused_write
from valle_hf.hub import model_name
from valle_hf.loading import (
    CONVERTED_CHOICES,
    check_hub_model,
    load_model,
    load_processor,
    no_progress_bars,
)
from valle_hf.processing import VallEProcessor
from valle_hf.tokenization import saved_tokenizer
from valle_hf.training import StopOnNonFiniteWeights, VallEDataCollator, add_lora, set_attention_dropout

# transformers 5.24 renamed `gradient_checkpointing` to `activation_checkpointing` (the old name warns).
CHECKPOINTING = ("activation_checkpointing" if "activation_checkpointing" in TrainingArguments.__dataclass_fields__
                 else "gradient_checkpointing")


class VallETrainer(Trainer):
    """`Trainer` with the original's weight decay: AdamW decays every parameter, biases and norms included."""

    def get_decay_parameter_names(self, model) -> list[str]:
        return [name for name, _ in model.named_parameters()]


def task_list(text: str) -> tuple[str, ...]:
    """--tasks: comma-separated task names, each one of the model's (argparse type)."""
    tasks = tuple(task.strip() for task in text.split(",") if task.strip())
    if not tasks or any(task not in TASKS for task in tasks):
        raise argparse.ArgumentTypeError(f"expected comma-separated tasks among {', '.join(TASKS)}, got {text!r}")
    return tasks


def scheduler_name(text: str) -> str:
    """--lr-scheduler: one of transformers' scheduler names (argparse type). Checked here, since TrainingArguments'
    own refusal does not name the option."""
    names = [scheduler.value for scheduler in SchedulerType]
    if text not in names:
        raise argparse.ArgumentTypeError(f"expected one of transformers' schedulers ({', '.join(names)}), got {text!r}")
    return text


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(prog="examples/finetune.py", description=__doc__.split("\n\n")[0],
                            formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--model", type=named, required=True, help="converted VALL-E model folder or hub id")
    parser.add_argument("--data", type=named_path, required=True, help="folder made by scripts/prepare_dataset.py")
    parser.add_argument("--output", type=named_path, required=True, help="output folder (checkpoints, final model)")
    lora = parser.add_argument_group("LoRA (the original's targets: q/v/o/gate/up/down projections)")
    lora.add_argument("--lora", action="store_true", help="train a LoRA adapter instead of every weight")
    lora.add_argument("--lora-rank", type=whole_number, default=None, help="LoRA rank (original default 128)")
    lora.add_argument("--lora-alpha", type=float, default=None, help="LoRA alpha (original default 128)")
    lora.add_argument("--lora-dropout", type=float, default=None, help="dropout on the LoRA input (original 0.1)")
    train = parser.add_argument_group("training (defaults: the original's)")
    train.add_argument("--tasks", type=task_list, default=("tts",),
                       help="comma-separated tasks drawn per item: tts, stt (e.g. tts,stt)")
    train.add_argument("--max-steps", type=whole_number, default=-1, help="optimiser steps (-1: run --epochs)")
    train.add_argument("--epochs", type=float, default=None, help="passes over the data, without --max-steps [1]")
    train.add_argument("--batch-size", type=whole_number, default=8, help="items per device and micro-batch")
    train.add_argument("--gradient-accumulation-steps", type=whole_number, default=32)
    train.add_argument("--learning-rate", type=float, default=3.25e-4)
    train.add_argument("--weight-decay", type=float, default=0.01)
    train.add_argument("--adam-beta1", type=float, default=0.9)
    train.add_argument("--adam-beta2", type=float, default=0.96)
    train.add_argument("--adam-epsilon", type=float, default=1e-7)
    train.add_argument("--max-grad-norm", type=float, default=10.0)
    train.add_argument("--lr-scheduler", type=scheduler_name, default="constant",
                       help="transformers scheduler name (original: constant)")
    train.add_argument("--warmup-steps", type=whole_number, default=0,
                       help="steps of linear warm-up, for a scheduler that has one (not constant)")
    train.add_argument("--attention-dropout", type=float, default=0.1)
    train.add_argument("--prompt-duration", type=float, nargs=2, default=(3.0, 6.0), metavar=("MIN", "MAX"),
                       help="prompt length drawn per item, seconds")
    train.add_argument("--duration-range", type=float, nargs=2, default=(1.0, 12.0), metavar=("MIN", "MAX"),
                       help="utterances outside this duration (seconds) are not used")
    train.add_argument("--padding-side", choices=("right", "left"), default="right")
    train.add_argument("--seed", type=whole_number, default=0)
    train.add_argument("--bf16", action="store_true", help="bfloat16 autocast (float32 master weights)")
    train.add_argument("--fp16", action="store_true", help="float16 autocast with loss scaling")
    train.add_argument("--gradient-checkpointing", action="store_true")
    train.add_argument("--num-workers", type=whole_number, default=0, help="DataLoader worker processes")
    train.add_argument("--logging-steps", type=whole_number, default=10)
    train.add_argument("--save-steps", type=whole_number, default=250,
                       help="checkpoint every N steps (0: only at the end)")
    train.add_argument("--save-total-limit", type=whole_number, default=2)
    train.add_argument("--resume", action="store_true", help="resume from the last checkpoint in --output")
    train.add_argument("--report-to", default="none",
                       help="tensorboard, wandb, ... (comma-separated; installed ones only) (default: none)")
    return parser.parse_args(argv)


# The CPUs this process may run on (its affinity, as torch's DataLoader counts them, where the system has one).
USABLE_CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1

# The LoRA options' defaults (the original's), taken with --lora only
LORA_DEFAULTS = {"lora_rank": 128, "lora_alpha": 128.0, "lora_dropout": 0.1}
# transformers' schedulers that have no warm-up: --warmup-steps would be ignored
SCHEDULERS_WITHOUT_WARMUP = ("constant", "reduce_lr_on_plateau", "greedy")

# Each numeric option's range: out of it the optimiser, the Trainer or the data set would fail mid-run (or train
# nothing and say it saved a model).
RANGES = {
    "epochs": ("a number > 0", lambda v: v > 0),
    "max_steps": ("-1 (run --epochs) or an integer >= 1", lambda v: v == -1 or v >= 1),
    "batch_size": ("an integer >= 1", lambda v: v >= 1),
    "gradient_accumulation_steps": ("an integer >= 1", lambda v: v >= 1),
    "learning_rate": ("a number > 0", lambda v: v > 0),  # 0 trains nothing, then says it saved a model
    "weight_decay": ("a number >= 0", lambda v: v >= 0),
    "adam_beta1": ("a number in [0, 1)", lambda v: 0 <= v < 1),
    "adam_beta2": ("a number in [0, 1)", lambda v: 0 <= v < 1),
    "adam_epsilon": ("a number >= 0", lambda v: v >= 0),
    "max_grad_norm": ("a number >= 0", lambda v: v >= 0),
    "warmup_steps": ("an integer >= 0", lambda v: v >= 0),
    "attention_dropout": ("a number in [0, 1)", lambda v: 0 <= v < 1),
    "lora_rank": ("an integer >= 1", lambda v: v >= 1),
    "lora_alpha": ("a number > 0", lambda v: v > 0),
    "lora_dropout": ("a number in [0, 1)", lambda v: 0 <= v < 1),
    # more worker processes than CPUs made each step ~30x slower (torch only warns)
    "num_workers": (f"an integer from 0 to {USABLE_CPUS} (the CPUs this run may use)", lambda v: 0 <= v <= USABLE_CPUS),
    "seed": ("an integer >= 0", lambda v: v >= 0),
    "logging_steps": ("an integer >= 1", lambda v: v >= 1),
    "save_steps": ("an integer >= 0 (0: only at the end)", lambda v: v >= 0),
    "save_total_limit": ("an integer >= 1", lambda v: v >= 1),
}


# The options that shape what a run trains on, and how: each checkpoint records them (`RecordRunOptions`), and
# --resume continues a run with the same ones only. --max-steps and --epochs may grow (a longer run), the others
# (workers, logging, saving, reporting) change nothing the run learns, and --lora, --lora-rank and --lora-alpha are
# checked against the checkpoint's weights and adapter (`check_fits`).
RUN_OPTIONS = ("lora_dropout", "tasks", "batch_size", "gradient_accumulation_steps",
               "learning_rate", "weight_decay", "adam_beta1", "adam_beta2", "adam_epsilon", "max_grad_norm",
               "lr_scheduler", "warmup_steps", "attention_dropout", "prompt_duration", "duration_range",
               "padding_side", "seed", "bf16", "fp16")
RUN_OPTIONS_FILE = "finetune_options.json"
# Recorded beside them: the data set's identity, its manifest's SHA-256 (a folder moved or copied is the same set; one
# prepared further, or another, is not).
DATA_FINGERPRINT = "data_manifest_sha256"


def data_fingerprint(data: Path) -> str | None:
    """The SHA-256 of `data`'s manifest, or None where it cannot be read (the data set's own check says why)."""
    try:
        return hashlib.sha256((data / MANIFEST).read_bytes()).hexdigest()
    except OSError:
        return None


def run_options(args: argparse.Namespace) -> dict:
    """The run's `RUN_OPTIONS`, as JSON writes them (a pair as a list)."""
    return {name: list(value) if isinstance(value, tuple) else value
            for name in RUN_OPTIONS if (value := getattr(args, name)) is not None}


class RecordRunOptions(TrainerCallback):
    """Writes the run's options (`run_options`) into each checkpoint it saves, for --resume to compare."""

    def __init__(self, args: argparse.Namespace):
        self.options = {**run_options(args), DATA_FINGERPRINT: data_fingerprint(args.data)}

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
            (folder / RUN_OPTIONS_FILE).write_text(json.dumps(self.options, indent=1) + "\n", encoding="utf-8")


def check_run_options(args: argparse.Namespace, checkpoint: Path) -> None:
    """Refuse (`UsageError`) to resume from `checkpoint` with other `RUN_OPTIONS` than its run's, or another data set
    (`DATA_FINGERPRINT`): the Trainer took any and trained on, with other draws, rates or adapter than the run it
    continued (on another data set, skipping as many of its batches as the run had trained on). A checkpoint that
    records none (of an earlier version) is taken."""
    try:
        saved = json.loads((checkpoint / RUN_OPTIONS_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return
    except (OSError, ValueError) as error:
        raise unusable(checkpoint, f"{RUN_OPTIONS_FILE} cannot be read ({one_line(error)})") from None
    ours = run_options(args)
    differ = [name for name in RUN_OPTIONS if isinstance(saved, dict) and saved.get(name) != ours.get(name)]
    if differ:
        shown = ", ".join(f"{option_name(name)} {as_shown(name, saved.get(name))}" for name in differ)
        raise UsageError(f"--resume: {checkpoint.name} in --output {args.output} was saved by a run with {shown}: "
                         "resume with the options it was started with (only --max-steps and --epochs may grow), or "
                         "start a new run in another --output")
    recorded, ours = saved.get(DATA_FINGERPRINT) if isinstance(saved, dict) else None, data_fingerprint(args.data)
    # the Trainer skipped as many of the new set's batches as the run had trained on; a --data without a readable
    # manifest is the data set's own check to report
    if None not in (recorded, ours) and recorded != ours:
        raise UsageError(f"--resume: {checkpoint.name} in --output {args.output} was saved by a run on another data "
                         f"set than --data {args.data} (its manifest differs): resume with the data the run started "
                         "with, or start a new run in another --output")


def as_shown(name: str, value) -> str:
    """Option `name`'s value as a command line gives it: a flag given or not, a pair (--prompt-duration,
    --duration-range) as two numbers, anything else as `as_typed` writes it (--tasks comma-separated)."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "given" if value else "not given"
    return " ".join(map(as_typed, value)) if name in ("prompt_duration", "duration_range") else as_typed(value)


def check_ignored_options(args: argparse.Namespace) -> None:
    """Refuse (`UsageError`) what the run would ignore without a word: --lora-rank, --lora-alpha or --lora-dropout
    without --lora (a full fine-tune ran, with no adapter), --warmup-steps with a scheduler that has none (the
    learning rate stayed constant), --epochs with --max-steps; and a warm-up as long as the run (a one-step run
    trained at learning rate 0 and saved the model unchanged). Then give the LoRA options and --epochs their
    defaults (`LORA_DEFAULTS`, 1 epoch)."""
    given = [option_name(name) for name in LORA_DEFAULTS if getattr(args, name) is not None]
    if given and not args.lora:
        raise UsageError(f"{', '.join(given)} {'shape' if len(given) > 1 else 'shapes'} a LoRA adapter, and without "
                         f"--lora every weight is trained: add --lora, or drop {', '.join(given)}")
    if args.warmup_steps and args.lr_scheduler in SCHEDULERS_WITHOUT_WARMUP:
        raise UsageError(f"--warmup-steps {args.warmup_steps} does nothing with --lr-scheduler {args.lr_scheduler}, "
                         "which has no warm-up: give --lr-scheduler constant_with_warmup (or linear, cosine, ...)")
    if args.epochs is not None and args.max_steps != -1:  # the Trainer's max_steps wins
        raise UsageError(f"--epochs {as_typed(args.epochs)} does nothing with --max-steps {args.max_steps}, which "
                         "sets the run's length: drop one of the two")
    if args.max_steps != -1 and args.warmup_steps >= args.max_steps > 0:  # a one-step run with any: trained at 0
        raise UsageError(f"--warmup-steps {args.warmup_steps} is not below --max-steps {args.max_steps}: the learning "
                         "rate, which starts at 0, would still be rising when the run ends: give fewer warm-up steps "
                         "or more steps")
    args.epochs = 1.0 if args.epochs is None else args.epochs
    for name, default in LORA_DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, default)


def warn(message: str) -> None:
    """Print ``warning: <message>`` on stderr, once for a run of several processes (from the main one)."""
    if is_main_process():
        print(f"warning: {message}", file=sys.stderr)


def check_options(args: argparse.Namespace) -> dict[str, dict[str, tuple[int, ...]]]:
    """Refuse, before anything loads, an option out of its range (`RANGES`), a duration pair with MIN > MAX, a
    --prompt-duration that gives no prompt, an --output that is a file, and one that already holds a trained model
    (final/) unless --resume continues its run. Raises `UsageError` (or `VallEValueError`) naming the option. Returns
    the weights' shapes of the checkpoint --resume continues from, by file (`check_checkpoint`; none without one).
    Options the run would ignore are refused too: a LoRA option without --lora, --warmup-steps with a scheduler
    that has no warm-up."""
    check_ignored_options(args)
    for name, (rule, allowed) in RANGES.items():
        value = getattr(args, name)
        if not (math.isfinite(value) and allowed(value)):
            raise value_refused(option_name(name), value, rule)
    for name in ("prompt_duration", "duration_range"):
        check_seconds_range(getattr(args, name), option_name(name))
    if "tts" in args.tasks:  # MAX 0 passed, then failed at the first TTS item; STT items read no prompt
        check_prompt_duration(args.prompt_duration, "--prompt-duration")
    if args.model == "tiny-random":
        raise UsageError("--model tiny-random is an installation check built in memory, not a model folder to "
                         "fine-tune: give a converted model's folder (python -m valle_hf.convert)")
    check_report_to(args.report_to)
    check_output_folder(args.output, "--output")
    for flag, folder in (("--data", args.data), ("--model", Path(args.model).expanduser())):
        output, inputs = args.output.resolve(), folder.resolve()
        if folder.is_dir() and output.is_relative_to(inputs):  # the checkpoints and final/ among its own files
            where = "the folder" if output == inputs else "inside the folder"
            raise UsageError(f"--output {args.output} is {where} of {flag} {folder}: the run's checkpoints and final/ "
                             "would be mixed into its files; choose an --output outside it")
    if (args.output / "final").exists() and not args.resume:
        raise UsageError(f"--output {args.output} already holds a trained model ({args.output / 'final'}): choose "
                         "another --output, or --resume to continue its run")
    saved = checkpoints(args.output)
    if saved and not args.resume:  # a new run would save over them, and rotate the rest away
        raise UsageError(f"--output {args.output} already holds checkpoints of a run ({saved[-1][0].name}, ...): "
                         "--resume to continue it, or choose another --output")
    if not args.resume:
        return {}
    complete = [path for path, whole in saved if whole]
    incomplete = [path for path, whole in saved[saved.index((complete[-1], True)) + 1 if complete else 0:]]
    if incomplete:
        kept = f"resuming from {complete[-1].name}" if complete else "starting a new run"
        warn(f"--resume: {', '.join(path.name for path in incomplete)} in --output {args.output} "
             f"{'is' if len(incomplete) == 1 else 'are'} incomplete (the run stopped while saving): {kept}")
    if complete:
        check_run_options(args, complete[-1])
        return check_checkpoint(complete[-1])
    if (args.output / "final").exists():  # a new run from --model would replace the trained model
        raise UsageError(f"--resume: --output {args.output} holds a trained model (final/) but no checkpoint to "
                         "continue its run from (--save-steps 0 keeps none): train it further with --model "
                         f"{args.output / 'final'} and another --output")
    warn(f"--resume: --output {args.output} holds no checkpoint yet (checkpoint-N folders, saved every "
         "--save-steps): starting a new run")  # a preempted job's first launch: start, and say so
    return {}


def checkpoints(output: Path) -> list[tuple[Path, bool]]:
    """The checkpoint-N folders a run saved in `output`, in step order, each with whether it is complete (the
    Trainer writes trainer_state.json last, after the weights and the optimiser: a run stopped while saving leaves a
    folder without it)."""
    pattern = re.compile(rf"{PREFIX_CHECKPOINT_DIR}-(\d+)")
    found = sorted((int(match.group(1)), path) for path in (output.iterdir() if output.is_dir() else ())
                   if path.is_dir() and (match := pattern.fullmatch(path.name)))
    return [(path, (path / "trainer_state.json").is_file()) for _, path in found]


def check_checkpoint(path: Path) -> dict[str, dict[str, tuple[int, ...]]]:
    """Refuse (`UsageError`, naming the file) a checkpoint --resume cannot load, before the model loads: a
    trainer_state.json that is no JSON object of the Trainer's fields, a safetensors file whose header cannot be
    read, or a torch file (the optimiser's, ...) cut short (no zip directory at its end). Reads headers only; returns
    each safetensors file's weights' shapes (`saved_shapes`), by its name, for `check_fits`."""
    shapes = {}
    for file in [path / "trainer_state.json", *sorted(path.glob("*.safetensors")), *sorted(path.glob("*.pt")),
                 *sorted(path.glob("*.pth"))]:
        try:
            header = _read_header(file)
        except (ValueError, TypeError, OSError, SafetensorError, zipfile.BadZipFile) as error:
            raise unusable(path, f"{file.name} is damaged ({one_line(error)})") from None
        if header is not None:
            shapes[file.name] = header
    return shapes


def unusable(checkpoint: Path, what: str) -> UsageError:
    """The refusal of a checkpoint --resume cannot load because of `what` is wrong with one of its files."""
    return UsageError(f"--resume: {checkpoint}/{what}: delete {checkpoint.name} to resume from the checkpoint before "
                      "it, or start again in another --output")


def _read_header(file: Path) -> dict[str, tuple[int, ...]] | None:
    """Read what says whether `file` (a checkpoint's JSON, safetensors or torch zip file) is whole; raise if not.
    Returns a safetensors file's weights' shapes (`saved_shapes`), None for the others."""
    if file.suffix == ".safetensors":
        return saved_shapes(file)
    if file.suffix == ".json":  # as the Trainer reads it: a TypeError for fields it does not know, or no object
        TrainerState.load_from_json(str(file))
    else:
        zipfile.ZipFile(file).close()
    return None


# What a run's checkpoint holds, by --lora: its weights file, and the words that say what they are.
SAVED = {False: (SAFE_WEIGHTS_NAME, "a whole model's weights (a run without --lora)"),
         True: (ADAPTER_SAFE_WEIGHTS_NAME, "a LoRA adapter (a run with --lora)")}


def check_fits(model, checkpoint: Path, shapes: dict[str, dict[str, tuple[int, ...]]],
               args: argparse.Namespace) -> None:
    """Refuse (`UsageError`) a `checkpoint` that `model`, built for this run from --model (a peft model with --lora),
    cannot continue from: weights of the other kind (a LoRA run resumed without --lora, or the reverse), of other names
    or shapes (another model's size, layers or levels, another --lora-rank), or a LoRA adapter of another
    --lora-alpha. The Trainer failed on them with a traceback, or loaded the names that matched and trained on.
    `shapes` are its safetensors files' (`check_checkpoint`, which read their headers); reads the adapter's config,
    no weights."""
    file = SAVED[args.lora][0]
    ours = f"--model {args.model} {'with' if args.lora else 'without'} --lora"
    if file not in shapes:
        other_file, other = SAVED[not args.lora]
        if other_file not in shapes:
            raise unusable(checkpoint, f"{file} is missing (a run stopped while saving, or the file was deleted)")
        raise not_fitting(checkpoint, other, ours)
    differs = first_difference(shapes[file], model_shapes(model, args.lora))
    if differs:
        raise not_fitting(checkpoint, f"weights of other names or shapes ({differs})", ours)
    if args.lora:
        check_lora_alpha(model, checkpoint)


def not_fitting(checkpoint: Path, held: str, ours: str) -> UsageError:
    """The refusal of a `checkpoint` that holds `held`, which this run (`ours`, its options) cannot continue from."""
    return UsageError(f"--resume: {checkpoint} holds {held}, which {ours} does not fit: resume with the --model (and "
                      "--lora options) the run started with, or start again in another --output")


def saved_shapes(file: Path) -> dict[str, tuple[int, ...]]:
    """Each tensor's name and shape in a safetensors `file`, read from its header."""
    with safe_open(str(file), framework="pt") as weights:
        return {name: tuple(weights.get_slice(name).get_shape()) for name in weights.keys()}


def model_shapes(model, lora: bool) -> dict[str, tuple[int, ...]]:
    """Each weight's name and shape as the Trainer saves `model`: its adapter's alone with `lora` (named as peft saves
    them), else all of them."""
    from peft import get_peft_model_state_dict

    state = get_peft_model_state_dict(model) if lora else model.state_dict()
    return {name: tuple(tensor.shape) for name, tensor in state.items()}


def first_difference(saved: dict, built: dict) -> str | None:
    """The first weight (by name) where `saved` (a checkpoint's) and `built` (--model's) differ, said in words; None
    when every name and shape is the same."""
    for name in sorted(saved.keys() | built.keys()):
        if name not in built:
            return f"{name} is not in --model"
        if name not in saved:
            return f"--model's {name} is not there"
        if saved[name] != built[name]:
            return f"{name} is {list(saved[name])} there and {list(built[name])} in --model"
    return None


def check_lora_alpha(model, checkpoint: Path) -> None:
    """Refuse a LoRA `checkpoint` saved with another --lora-alpha than `model`'s adapter: peft loads an adapter's
    weights into the one it has, keeping its scale, so the run would continue from other outputs than it saved."""
    from peft import LoraConfig
    from peft.utils import CONFIG_NAME

    try:
        saved = LoraConfig.from_pretrained(str(checkpoint)).lora_alpha
    except (ValueError, TypeError, OSError) as error:
        raise unusable(checkpoint, f"{CONFIG_NAME} cannot be read ({one_line(error)})") from None
    alpha = model.peft_config[model.active_adapter].lora_alpha
    if saved != alpha:
        raise not_fitting(checkpoint, f"a LoRA adapter of --lora-alpha {as_typed(saved)}",
                          f"--lora-alpha {as_typed(alpha)}")


def last_checkpoint(output: Path) -> str | None:
    """The latest complete checkpoint-N folder a run saved in `output` (`checkpoints`), or None."""
    complete = [path for path, whole in checkpoints(output) if whole]
    return str(complete[-1]) if complete else None


def check_report_to(report_to: str) -> None:
    """Refuse a --report-to that transformers does not know, or whose package is not installed (the Trainer would
    fail with a traceback once the model is loaded). "none" and "all" are always allowed."""
    from transformers.integrations import get_available_reporting_integrations, get_reporting_integration_callbacks

    installed = get_available_reporting_integrations()
    for name in (part.strip() for part in report_to.split(",")):
        if name in ("none", "all") or name in installed:
            continue
        try:
            get_reporting_integration_callbacks([name])
        except ValueError:
            raise UsageError(f"--report-to {name}: not a reporting integration transformers knows (tensorboard, "
                             "wandb, mlflow, ...; none for no reporting)") from None
        raise UsageError(f"--report-to {name} needs its package, which is not installed: pip install {name}, or "
                         "--report-to none")


def training_arguments(args: argparse.Namespace) -> TrainingArguments:
    """The Trainer's arguments; a combination it refuses (e.g. --bf16 where bfloat16 is not supported) is a
    `UsageError`."""
    try:
        return _training_arguments(args)
    except ValueError as error:
        raise UsageError(f"the training arguments are not allowed: {one_line(error, 300)}") from None


def _training_arguments(args: argparse.Namespace) -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(args.output),
        max_steps=args.max_steps,
        num_train_epochs=args.epochs,
        per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        learning_rate=args.learning_rate,
        weight_decay=args.weight_decay,
        adam_beta1=args.adam_beta1,
        adam_beta2=args.adam_beta2,
        adam_epsilon=args.adam_epsilon,
        max_grad_norm=args.max_grad_norm,
        optim="adamw_torch",
        lr_scheduler_type=args.lr_scheduler,
        warmup_steps=args.warmup_steps,
        bf16=args.bf16,
        fp16=args.fp16,
        use_cpu=not torch.accelerator.is_available(),  # transformers refuses --bf16 without a GPU unless it is said
        **({CHECKPOINTING: True, f"{CHECKPOINTING}_kwargs": {"use_reentrant": False}} if args.gradient_checkpointing
           else {}),
        dataloader_num_workers=args.num_workers,
        dataloader_pin_memory=torch.cuda.is_available(),
        logging_steps=args.logging_steps,
        save_strategy="steps" if args.save_steps > 0 else "no",
        save_steps=max(args.save_steps, 1),
        save_total_limit=args.save_total_limit,
        seed=args.seed,
        logging_nan_inf_filter=False,  # a NaN loss is logged as NaN (StopOnNonFiniteWeights then stops the run)
        report_to=args.report_to,
        # Each batch reads only its items' heads and embedding tables: the others have no gradient in that step.
        ddp_find_unused_parameters=True,
        label_names=["labels"],
    )


def train(argv: list[str] | None = None) -> Path:
    """Train, then save the (merged) model to OUTPUT/final; returns that folder.

    The data set, the model and the settings are checked before any training starts (package errors, one line each
    under `main`).
    """
    with found_by_every_process():  # every process of a launcher parses the same command line
        args = parse_args(argv)
    resumed_shapes = check_options(args)
    made = not args.output.exists()  # this run's: removed if an interrupt leaves it empty
    tasks = args.tasks
    set_seed(args.seed)

    dataset = VallEDataset(args.data, prompt_duration=tuple(args.prompt_duration),
                           duration_range=tuple(args.duration_range), task=tasks[0] if len(tasks) == 1 else None,
                           seed=args.seed)
    model, processor = model_and_processor(args.model, args.data)
    dataset.check_utterances(model.config)
    if dataset.rvq_levels < model.config.num_rvq_levels:  # the collator caps levels to those present: no error later
        warn(f"{args.data} holds {dataset.rvq_levels} RVQ levels and the model reads {model.config.num_rvq_levels}: "
             f"its NAR levels {dataset.rvq_levels}..{model.config.num_rvq_levels - 1} are not trained (prepare the "
             "data with --bandwidth 6 for 8 levels)")
    if "stt" in tasks and dataset.rvq_levels < model.config.stt_levels:  # refused by the first STT item, mid-run
        raise UsageError(f"--tasks {','.join(tasks)}: STT reads {model.config.stt_levels} RVQ levels of its audio and "
                         f"{args.data} holds {dataset.rvq_levels}: prepare the data with --bandwidth 6 (8 levels), or "
                         "train tts only")
    collator = VallEDataCollator(model.config, padding_side=args.padding_side, seed=args.seed, tasks=tasks)
    arguments = training_arguments(args)
    set_attention_dropout(model, args.attention_dropout)
    if args.lora:
        model = add_lora(model, args.lora_rank, args.lora_alpha, args.lora_dropout)
        model.print_trainable_parameters()
    resumed = last_checkpoint(args.output) if args.resume else None
    if resumed is not None:
        check_fits(model, Path(resumed), resumed_shapes, args)
    # the collator as a callback too: draws keyed on the epoch, so --resume trains on the draws of an uninterrupted run
    trainer = VallETrainer(model=model, args=arguments, train_dataset=dataset, data_collator=collator,
                           callbacks=[collator, StopOnNonFiniteWeights(), RecordRunOptions(args)])
    ended = resumed is not None and _ended(trainer, resumed, args.output)
    if resumed is not None and not ended:
        warn_fresh_optimizer(Path(resumed))
    if ended and (args.output / "final").is_dir():
        return args.output / "final"
    try:
        if ended:  # its final/ was never saved (a run stopped while saving it): saved now from the last checkpoint
            load_checkpoint_weights(trainer.model, resumed, args.lora)
        else:
            trainer.train(resume_from_checkpoint=resumed)
        return save_final(trainer, processor, args)
    except KeyboardInterrupt as interrupt:
        if last_checkpoint(args.output) is None:  # the line said that checkpoints were kept
            interrupt.said = "interrupted before the first checkpoint: nothing was saved"
            if made and not any(path.is_file() for path in args.output.rglob("*")):
                shutil.rmtree(args.output, ignore_errors=True)  # this run's folder, left empty
        raise
    except Exception as error:  # the file system refusing a save: safetensors and torch raise their own errors
        reason = refused_write(error)
        if reason is None:
            raise
        raise OutputError(f"could not save in {args.output} ({reason}): free some space (or raise the limit), then "
                          "run the same command with --resume to continue from the last checkpoint saved whole"
                          ) from None


def _ended(trainer, resumed: str, output: Path) -> bool:
    """Whether the checkpoint --resume would continue from is at the run's last step (said in a warning): the Trainer
    trained one step past it (when that step ends mid-epoch) and saved final/ over the trained model, or where
    final/ was missing, saved that step's model as the run's."""
    step = TrainerState.load_from_json(str(Path(resumed) / "trainer_state.json")).global_step
    if step < run_steps(trainer):
        return False
    kept = "final/ holds its model" if (output / "final").is_dir() else f"final/ is saved from {Path(resumed).name}"
    warn(f"--resume: the run in --output {output} had already ended (step {step}): nothing more was trained "
         f"({kept}); raise --max-steps or --epochs to train further")
    return True


def warn_fresh_optimizer(checkpoint: Path) -> None:
    """Say that the run continues from `checkpoint` with a new optimiser where its optimizer.pt or scheduler.pt was
    deleted (to save space): the Trainer then loads neither, in silence."""
    missing = [name for name in (OPTIMIZER_NAME, SCHEDULER_NAME) if not (checkpoint / name).is_file()]
    if missing:
        warn(f"--resume: {checkpoint} has no {' or '.join(missing)}: training continues from its weights with a new "
             "optimiser (AdamW's moments start again from zero, and the learning-rate schedule from its first step)")


def run_steps(trainer) -> int:
    """The optimiser steps of the Trainer's run: its max_steps when given (which the Trainer takes over the epochs),
    else the Trainer's own count for its epochs of its data loader (built for that alone: its length is the
    Trainer's, sharded across the processes)."""
    if trainer.args.max_steps > 0:
        return trainer.args.max_steps
    return trainer.set_initial_training_values(trainer.args, trainer.get_train_dataloader())[-1]


def load_checkpoint_weights(model, checkpoint: str, lora: bool) -> None:
    """Load into `model` (the Trainer's, as built for the run) the weights the Trainer saved in `checkpoint`: with
    `lora`, `model` is a peft model and the checkpoint holds its adapter, which peft loads; else every weight of the
    model, from its safetensors file (the Trainer saves a VALL-E model whole in one), all of them or an error."""
    if lora:
        model.load_adapter(checkpoint, adapter_name=model.active_adapter, is_trainable=True)
    else:
        model.load_state_dict(load_file(Path(checkpoint) / SAFE_WEIGHTS_NAME))


def save_final(trainer, processor, args) -> Path:
    """Write OUTPUT/final whole: the model (a LoRA merged into it) and its processor go to final.partial/, renamed to
    final/ once complete, so that a save cut short leaves no final/ that a next run would take for a trained model."""
    final, partial = args.output / "final", args.output / "final.partial"
    main_process = trainer.is_world_process_zero()
    if main_process:
        shutil.rmtree(partial, ignore_errors=True)  # a save cut short before
    if args.lora:
        adapted = trainer.accelerator.unwrap_model(trainer.model)
        if main_process:
            adapted.save_pretrained(str(args.output / "adapter"))
            adapted.merge_and_unload().save_pretrained(str(partial))  # a plain VallEForConditionalGeneration
    else:
        trainer.save_model(str(partial))
    if main_process:
        if processor is not None:
            processor.save_pretrained(str(partial))
        for folder in (partial, args.output / "adapter") if args.lora else (partial,):
            plain_file_modes(folder)  # safetensors writes owner-only files: others on the machine could not load them
        shutil.rmtree(final, ignore_errors=True)  # the run --resume continued: its new final/ is complete
        os.replace(partial, final)
    # every process ends together and takes the process group down: one that left first tore it down at the
    # interpreter's exit, which can abort there (a crash of the run, for the launcher)
    trainer.accelerator.wait_for_everyone()
    trainer.accelerator.end_training()
    return final


def model_and_processor(name: str, data: Path) -> tuple:
    """The model and its processor (`model_processor`), refusing data whose codes come from another codec
    (`check_codec`, once the model is loaded) or whose phoneme ids come from another tokenizer (`check_tokenizer`: a
    folder's before its model loads, a Hub model's once the model's loading has fetched it; a model that cannot be
    had fails there, in one line)."""
    name = model_name(name, "--model")  # a folder's "~" read as the home folder, as every loader reads it
    local = Path(name).is_dir()
    if not local:  # a Hub model without a tokenizer is refused before its weights (gigabytes) are fetched
        check_hub_model(name, CONVERTED_CHOICES, instead="fine-tune a downloaded copy of the model (a folder without "
                        "one is taken)")
    processor = model_processor(name) if local else None
    if processor is not None:
        check_tokenizer(data, processor.tokenizer, name)
    with no_progress_bars():  # a refusal after loading (a --lora-rank past the model) stays the one line on stderr
        model = load_model(name, choices=CONVERTED_CHOICES)
    check_codec(data, model.codec_model, name)
    if not local:
        processor = model_processor(name)
        check_tokenizer(data, processor.tokenizer, name)
    return model, processor


def model_processor(model: str) -> VallEProcessor | None:
    """The processor of `model` (a folder or a Hub id), saved beside the trained weights with its code, so that
    final/ is a complete model folder, for `--model` and for `trust_remote_code=True` alike; None for a folder saved
    without one (final/ then has none either). Raises `CheckpointError` when it cannot be read."""
    if Path(model).is_dir() and saved_tokenizer(model) is None:
        return None
    return load_processor(model)


@entry_point(interrupted="interrupted: the checkpoints saved so far are kept in --output; --resume continues from the "
             "last one")
def main(argv: list[str] | None = None) -> int:
    """`python examples/finetune.py`: returns the exit status (see the module docstring)."""
    final = train(argv)
    if is_main_process():  # one line for the run, not one per process
        print(f"saved to {final}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
