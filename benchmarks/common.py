"""What the benchmark modules share: the machine, load and timing helpers, peak memory, the model and its inputs.

The model is the released size (`VallEConfig()` defaults: d_model 1024, 16 heads, 12 layers, EnCodec 24 kHz and the
released Vocos decoder) with random weights, so nothing is downloaded. `Context` builds it once per run and hands each
module the precision it asks for.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from valle_hf.configuration import VallEConfig
from valle_hf.errors import OutputError, UsageError, named, named_path, option_name, value_refused
from valle_hf.files import written_whole

FRAME_RATE = 75  # EnCodec 24 kHz frames per second: one AR step per frame
NAR_LEVELS = 7  # RVQ levels 1..7, one NAR pass each
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx_vnni")
LOG_START = time.perf_counter()

# Defaults that differ between the full run and `--quick` (a smoke run that checks every module works).
DEFAULTS = {"seconds": (10.0, 1.0), "retries": (2, 0)}


def log(message: str) -> None:
    """Progress on stderr; the report goes to stdout."""
    print(f"[{time.perf_counter() - LOG_START:7.1f}s] {message}", file=sys.stderr, flush=True)


def torch_seed(text: str) -> int:
    """A seed of torch's generators (argparse type): an integer in [0, 2**64 - 1], written as the CLI's --seed is."""
    from valle_hf.cli import seed_value

    seed = seed_value(text)
    if seed >= 2**64:  # torch's generators refused it mid-run ("Overflow when unpacking long")
        raise argparse.ArgumentTypeError(f"expected an integer in [0, 2**64 - 1] (a seed of torch's generators), got "
                                         f"{text!r}")
    return seed


def add_arguments(parser) -> None:
    """Options every module reads."""
    group = parser.add_argument_group("common")
    group.add_argument("--quick", action="store_true", help="smoke run: short runs that check every module works")
    group.add_argument("--device", type=named, default=None, help="cpu or cuda (default: cuda when available)")
    group.add_argument("--threads", type=int, default=None, help="torch.set_num_threads on the CPU (default: torch's)")
    group.add_argument("--json", type=named_path, default=None, help="also write every result to this JSON file")
    group.add_argument("--seed", type=torch_seed, default=0, help="seed of the inputs and weights drawn [0]")
    group.add_argument("--seconds", type=float, default=None,
                       help="seconds of speech of the NAR, end-to-end and streaming runs [10; quick 1]")
    group.add_argument("--prompt-seconds", type=float, default=3.0, help="length of the voice prompt")
    group.add_argument("--text-tokens", type=int, default=40, help="phoneme ids per row (BOS/EOS included)")
    group.add_argument("--sampler", choices=["greedy", "sample", "full"], default="sample",
                       help="greedy; sample: multinomial at T=1; full: every VALL-E sampler on")
    group.add_argument("--retries", type=int, default=None,
                       help="extra runs of a measurement while other processes used more than --max-foreign-load "
                            "of the CPU during it [2; quick 0]")
    group.add_argument("--max-foreign-load", type=float, default=0.15,
                       help="share of the machine's CPU time other processes may use during a measurement")


def fill_defaults(args, defaults: dict) -> None:
    """Give every option left at None its full-run or `--quick` default."""
    for name, (full, quick) in defaults.items():
        if getattr(args, name, None) is None:
            setattr(args, name, quick if args.quick else full)


# ---------------------------------------------------------------------------------------------------- options
# Rules of numeric options: (whether a value is allowed, what the value must be, as the error says it).
COUNT = (lambda value: value >= 1, "an integer >= 1")
NOT_NEGATIVE = (lambda value: value >= 0, "an integer >= 0")
SECONDS = (lambda value: math.isfinite(value) and value > 0, "a finite number of seconds > 0")
# The released model's positions, which restart in every segment (text, prompt, response): each segment of a run
# fits them, as `generate` requires (a longer one failed while allocating its inputs or cache, with a traceback).
POSITIONS = VallEConfig().max_position_embeddings
POSITION_SECONDS = POSITIONS / FRAME_RATE
# Speech and prompt lengths: at least one frame (a shorter one would round to no frame at all), at most the positions.
FRAME_SECONDS = (lambda value: math.isfinite(value) and 1 / FRAME_RATE <= value <= POSITION_SECONDS,
                 f"a finite number of seconds in [1/{FRAME_RATE} (one frame), {POSITION_SECONDS:g}] (the model's "
                 f"positions)")
SHARE = (lambda value: 0 <= value <= 1, "a share of the CPU between 0 and 1")


def require(args, rules: dict) -> None:
    """Each option named in `rules` (by its `args` name) against its rule, a pair such as `COUNT`. Options left at
    None are not checked. Raises `UsageError` naming the flag, the value and the rule."""
    for name, (allowed, rule) in rules.items():
        value = getattr(args, name)
        if value is not None and not allowed(value):
            raise value_refused(option_name(name), value, rule)


def option_list(args, name: str, item, rule: str) -> list:
    """A comma-separated option (`args.<name>`) as a list, each entry read by `item` (which raises ValueError for an
    entry it does not take). Raises `UsageError` naming the flag and `rule` for such an entry, or for no entry."""
    text = str(getattr(args, name))
    try:
        values = [item(part.strip()) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values:
        raise value_refused(option_name(name), text, rule)
    return values


def one_of(choices) -> Callable[[str], str]:
    """An `option_list` reader that takes the names in `choices` only."""

    def item(text: str) -> str:
        if text not in choices:
            raise ValueError(text)
        return text

    return item


def batch_sizes(args) -> list[int]:
    """`--batch-sizes` as integers >= 1 (the AR's rows, and host_work's)."""

    def size(text: str) -> int:
        if int(text) < 1:
            raise ValueError(text)
        return int(text)

    return option_list(args, "batch_sizes", size, "comma-separated integers >= 1, such as 1,8")


def check(args) -> None:
    """The common options, checked before anything is built (`UsageError` for a value no run can use)."""
    require(args, {"threads": COUNT, "seconds": FRAME_SECONDS, "prompt_seconds": FRAME_SECONDS,
                   "retries": NOT_NEGATIVE, "max_foreign_load": SHARE,
                   "text_tokens": (lambda value: 3 <= value <= POSITIONS,
                                   f"an integer in [3 (BOS, one phoneme, EOS), {POSITIONS}] (the model's positions)")})
    if args.json:
        check_output_file(args.json, "--json")


def check_output_file(path: str | os.PathLike, flag: str) -> None:
    """Refuse (`UsageError`), before any work, a file path that cannot be written: a folder, a folder that does not
    exist or is not writable, a read-only file."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{flag} {path} is a folder: give a file name such as {path / 'results.json'}")
    if not path.parent.is_dir() or not os.access(path.parent, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write {flag} {path}: its folder does not exist or is not writable")
    if path.exists() and not os.access(path, os.W_OK):
        raise UsageError(f"cannot write {flag} {path}: the file is read-only")


def write_json(path: str | os.PathLike, data, flag: str) -> None:
    """`data` as JSON in `path`, written whole (a failure leaves what was there); `OutputError` naming `flag`."""
    try:
        with written_whole(Path(path)) as temporary:
            temporary.write_text(json.dumps(data, indent=1, default=str) + "\n", encoding="utf-8")
    except OSError as error:
        raise OutputError(f"cannot write {flag} {path}: {error.strerror or error}") from None


def setup(args) -> torch.device:
    """The device of the run (and the CPU thread count, which every timing depends on). Raises `UsageError` for a
    device torch does not know or that is not here."""
    from valle_hf.cli import usable_device

    args.device = usable_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    return torch.device(args.device)


# ---------------------------------------------------------------------------------------------------- the machine
def cpu_info() -> dict:
    """CPU model name, logical CPUs and which of `CPU_FLAGS` it has (Linux /proc/cpuinfo; empty elsewhere)."""
    info = {"model": platform.processor() or platform.machine(), "logical_cpus": os.cpu_count(), "flags": {}}
    with contextlib.suppress(OSError):
        lines = open("/proc/cpuinfo").read().splitlines()
        info["model"] = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
                             info["model"])
        flags = next((set(line.split(":", 1)[1].split()) for line in lines if line.startswith("flags")), set())
        info["flags"] = {flag: flag in flags for flag in CPU_FLAGS}
    with contextlib.suppress(OSError, ValueError):
        info["mem_total_gib"] = round(int(open("/proc/meminfo").readline().split()[1]) / 2**20, 1)
    return info


def machine_info(device: torch.device) -> dict:
    import transformers

    info = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "python": platform.python_version(), "torch": torch.__version__,
        "transformers": transformers.__version__, "device": str(device), "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu": cpu_info(), "loadavg": load_average(),
    }
    with contextlib.suppress(ImportError), quiet():
        import torchao

        info["torchao"] = torchao.__version__
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def load_average() -> list[float] | None:
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def machine_lines(info: dict) -> list[str]:
    cpu = info["cpu"]
    present = [flag for flag, has in cpu["flags"].items() if has]
    absent = [flag for flag, has in cpu["flags"].items() if not has]
    return [
        f"date {info['date']}; device {info['device']}" + (f" ({info['gpu']})" if "gpu" in info else ""),
        f"CPU {cpu['model']}, {cpu['logical_cpus']} logical CPUs, {cpu.get('mem_total_gib', '?')} GiB; flags: "
        f"{' '.join(present) or 'none'}" + (f" (no {', '.join(absent)})" if absent else "")
        + f"; torch CPU capability {info['cpu_capability']}",
        f"torch {info['torch']}, transformers {info['transformers']}, torchao {info.get('torchao', 'absent')}, "
        f"python {info['python']}; threads {info['threads']}; load average {fmt_load(info['loadavg'])}",
    ]


class ForeignLoad:
    """Share of the machine's CPU time used by *other* processes (and the hypervisor's steal) over an interval.

    Busy time from /proc/stat minus this process's own CPU time, divided by wall time x logical CPUs: with as many
    threads as cores, every op's barrier waits whenever another process holds a core, so a measurement is only
    meaningful when this share was low. None where /proc/stat is unavailable.
    """

    def __init__(self):
        self.start = self._sample()

    @staticmethod
    def _sample():
        try:
            fields = [int(x) for x in open("/proc/stat").readline().split()[1:]]
        except (OSError, ValueError):
            return None
        hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        busy = (sum(fields[:8]) - idle) / hz  # user..steal, without guest (already counted in user)
        own = os.times()  # includes finished children (the end-to-end subprocess)
        return time.perf_counter(), busy, own.user + own.system + own.children_user + own.children_system

    def share(self) -> float | None:
        end = self._sample()
        if self.start is None or end is None:
            return None
        wall = end[0] - self.start[0]
        foreign = (end[1] - self.start[1]) - (end[2] - self.start[2])
        return max(0.0, foreign / (wall * (os.cpu_count() or 1))) if wall > 0 else None


def calm(args, name: str, measure, *arguments, **keywords) -> dict:
    """`measure(*arguments, **keywords)` (returning a dict), run again while other processes used more than
    `--max-foreign-load` of the CPU during it (at most `--retries` more times); returns the calmest run, with its
    `foreign_load` and `runs`."""
    runs = []
    for _ in range(1 + args.retries):
        load = ForeignLoad()
        result = measure(*arguments, **keywords)
        share = load.share()
        runs.append((share or 0.0, result))
        if share is None or share <= args.max_foreign_load:
            break
        log(f"{name}: other processes used {fmt_pct(share)} of the CPU during the run")
    share, result = min(runs, key=lambda run: run[0])
    return {**result, "foreign_load": share, "runs": len(runs)}


# ---------------------------------------------------------------------------------------------------- timing
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(fn, repeats: int, device: torch.device, warmup: int = 1) -> float:
    """Median wall time of `fn()` in ms over `repeats` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def summary(values: list[float]) -> dict:
    """Count, median, 10th and 90th percentiles of a list of step times."""
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def pick(q):
        return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]

    return {"n": len(values), "median": statistics.median(values), "p10": pick(0.1), "p90": pick(0.9)}


class StepTimer:
    """A logits processor that timestamps every decoding step; the gaps between calls are the cached steps (the
    prefill happens before the first call)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.times: list[float] = []

    def __call__(self, input_ids, scores):
        synchronize(self.device)
        self.times.append(time.perf_counter())
        return scores

    def steps_ms(self) -> list[float]:
        return [(b - a) * 1e3 for a, b in zip(self.times, self.times[1:], strict=False)]


@contextlib.contextmanager
def timed_method(obj, name: str, device: torch.device, into: dict):
    """Time each call of `obj.name` (summed into `into[name]`, seconds) for the block; the method is put back after."""
    original = getattr(obj, name)
    into[name] = 0.0

    def wrapper(*args, **kwargs):
        synchronize(device)
        start = time.perf_counter()
        result = original(*args, **kwargs)
        synchronize(device)
        into[name] += time.perf_counter() - start
        return result

    setattr(obj, name, wrapper)
    try:
        yield into
    finally:
        delattr(obj, name)  # back to the class's method


def top_ops(prof, rows: int, device: torch.device, per: int = 1) -> dict:
    """A finished `torch.profiler.profile`'s top `rows` ops by self time on the device (CPU, or CUDA kernels),
    divided by `per` (the number of steps or passes profiled)."""
    cuda = device.type == "cuda"

    def self_us(event):
        return (event.self_device_time_total if cuda else event.self_cpu_time_total) / per

    events = sorted(prof.key_averages(), key=self_us, reverse=True)
    top = [{"op": event.key, "self_ms": self_us(event) / 1e3, "calls": event.count / per} for event in events[:rows]]
    return {"total_ms": sum(self_us(event) for event in events) / 1e3, "top": top, "on": "CUDA" if cuda else "CPU"}


def profiler_activities(device: torch.device) -> list:
    from torch.profiler import ProfilerActivity

    return [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])


def top_ops_lines(profile: dict, what: str) -> list[str]:
    """The report lines of `top_ops`' table."""
    lines = [f"    {what} under torch.profiler: {profile['total_ms']:.1f} ms of op time; top ops by self "
             f"{profile['on']} time:"]
    return lines + [f"      {op['op'][:44]:44} {op['self_ms']:8.2f} ms {op['self_ms'] / profile['total_ms']:6.1%} "
                    f"{op['calls']:6.0f} calls" for op in profile["top"]]


# ---------------------------------------------------------------------------------------------------- memory
def reset_peak_memory(device: torch.device) -> bool:
    """Reset the process's peak RSS (Linux: ``echo 5 > /proc/self/clear_refs``) and CUDA's peak counter; whether
    the RSS peak could be reset."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _status_bytes(field: str) -> int | None:
    with contextlib.suppress(OSError):
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return None


def trim_heap() -> None:
    """Collect garbage and hand the allocator's freed memory back to the OS (glibc `malloc_trim`), so that RSS is
    the live memory: freed model copies and temporaries would otherwise stay in it."""
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def rss_bytes() -> int | None:
    return _status_bytes("VmRSS")


def peak_rss_bytes() -> int:
    """Peak RSS since the last `reset_peak_memory` (elsewhere than Linux: since the process started)."""
    peak = _status_bytes("VmHWM")
    if peak is None:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak = peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere
    return peak


# ---------------------------------------------------------------------------------------------------- the model
def build_model(device: torch.device, seed: int):
    """The released size with random weights: decoder, full-size EnCodec 24 kHz, the released Vocos config.

    The parameters keep `requires_grad` as `from_pretrained` leaves them: autocast caches its casts of such weights
    only, so the NAR's bfloat16 path runs as it does for a user's model.
    """
    from valle_hf.configuration import VallEConfig
    from valle_hf.modeling import VallEForConditionalGeneration
    from valle_hf.vocos import VocosConfig

    config = VallEConfig(vocoder_config=VocosConfig().to_dict())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = VallEForConditionalGeneration(config)
    return model.eval().to(device)


def int8_model(model, dtype: torch.dtype = torch.bfloat16):
    """`model` with int8 decoder weights and `dtype` activations, as `load_model_and_processor(quantize="int8")`
    makes it: saved, then loaded through transformers' `TorchAoConfig` (`valle_hf.loading.load_model`)."""
    from valle_hf.hardware import quiet_torchao_import
    from valle_hf.loading import load_model

    with tempfile.TemporaryDirectory(prefix="valle_bench_int8_") as folder, quiet(), quiet_torchao_import():
        model.save_pretrained(folder)
        return load_model(folder, dtype=dtype, quantize="int8").to(model.device)


def model_in(model, precision: str):
    """A copy of `model` in `precision`: "float32", "bfloat16", "float16" or "int8"."""
    if precision == "int8":
        return int8_model(model)
    return copy.deepcopy(model).to(getattr(torch, precision))


class Context:
    """What the modules of one run share: the options, the device and the released-size model in each precision
    (built on first use, kept for the run)."""

    def __init__(self, args, device: torch.device):
        self.args, self.device = args, device
        self._models: dict[str, torch.nn.Module] = {}

    def model(self, precision: str = "float32"):
        if precision not in self._models:
            log(f"building the released-size model in {precision} on {self.device}")
            if precision == "float32":
                self._models[precision] = build_model(self.device, self.args.seed)
            else:
                self._models[precision] = model_in(self.model("float32"), precision)
        return self._models[precision]


def parameter_counts(model) -> dict:
    total = sum(p.numel() for p in model.parameters())
    audio = sum(p.numel() for p in model.codec_model.parameters())
    if model.vocoder is not None:
        audio += sum(p.numel() for p in model.vocoder.parameters())
    return {"decoder": total - audio, "codec_and_vocoder": audio}


# ---------------------------------------------------------------------------------------------------- inputs
def make_inputs(config, batch: int, args, device: torch.device):
    """`batch` rows of random phoneme ids (`--text-tokens`, BOS/EOS included) and voice-prompt codes
    (`--prompt-seconds`), the same for every module of the run."""
    generator = torch.Generator().manual_seed(args.seed)
    middle = torch.randint(3, config.text_vocab_size, (batch, max(args.text_tokens - 2, 1)), generator=generator)
    bos = torch.full((batch, 1), config.text_bos_token_id)
    eos = torch.full((batch, 1), config.text_eos_token_id)
    frames = round(args.prompt_seconds * config.frame_rate)
    prompt = torch.randint(0, config.audio_vocab_size, (batch, frames, config.num_rvq_levels), generator=generator)
    return torch.cat([bos, middle, eos], dim=1).to(device), prompt.to(device)


def sampler_kwargs(name: str) -> dict:
    """`generate` settings of a sampler: greedy; sample (multinomial, T=1); full (every VALL-E processor on, values
    in the range the original's CLI uses). The prompt is kept whole (it is `--prompt-seconds` long already)."""
    plain = {"input_prompt_length": 0, "repetition_penalty": 1.0}
    if name == "greedy":
        return {**plain, "temperature": 0.0}
    if name == "sample":
        return {**plain, "do_sample": True, "temperature": 1.0}
    return {
        "input_prompt_length": 0, "do_sample": True, "temperature": 1.0, "min_temperature": 0.5, "top_k": 64,
        "top_p": 0.95, "min_p": 0.05, "repetition_penalty": 1.25, "repetition_penalty_decay": 0.5,
        "stop_length_penalty": 0.5, "dry_multiplier": 0.8,
    }


@contextlib.contextmanager
def quiet():
    """Silence the expected warnings (the stop token is suppressed on purpose; generation flags; compile) and
    transformers' progress bars (saving and loading the int8 model)."""
    import transformers

    verbosity, bars = transformers.logging.get_verbosity(), transformers.logging.is_progress_bar_enabled()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            yield
        finally:
            transformers.logging.set_verbosity(verbosity)
            if bars:
                transformers.logging.enable_progress_bar()


# ---------------------------------------------------------------------------------------------------- reporting
@dataclass
class Target:
    """One checked target: `met` True/False, or None where this run could not measure it; `load`: other processes'
    CPU share during the measurement behind it."""

    met: bool | None
    text: str
    load: float | None = None

    def line(self, max_load: float) -> str:
        verdict = "n/a" if self.met is None else "MET" if self.met else "MISSED"
        disturbed = self.load is not None and self.load > max_load
        return f"[{verdict}] {self.text}" + (f" (disturbed: others used {fmt_pct(self.load)} of the CPU)"
                                             if disturbed else "")


def fmt(value, spec: str = ".1f", missing: str = "-") -> str:
    return missing if value is None or (isinstance(value, float) and value != value) else format(value, spec)


def fmt_pct(share) -> str:
    return "-" if share is None else f"{100 * share:.0f}%"


def fmt_load(load) -> str:
    return "-" if not load else "/".join(f"{x:.2f}" for x in load)
