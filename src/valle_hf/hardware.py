"""Which number formats are fast on the machine at hand, decided when the model runs (machines differ).

The AR stage multiplies one row by every weight at each step (matrix-vector products, bound by memory bandwidth); the
NAR multiplies a thousand rows (matrix products, bound by compute). On CPUs, bfloat16 matrix products are several
times faster than float32 where the CPU has AMX or AVX512-BF16, and slower elsewhere, while bfloat16 or int8
matrix-vector products may stream faster or slower than float32 depending on the CPU. So the precision is chosen per
stage and per machine: `nar_autocast_dtype` for the NAR's matrix products (from the CPU's flags), `choose_precision`
for the AR (from a measurement of one decoder layer's products on this machine, cached per machine).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .errors import VallEValueError, get_logger
from .files import written_whole

__all__ = [
    "NAR_DTYPES",
    "Precision",
    "choose_precision",
    "cpu_multiplies_fast",
    "decoding_attention",
    "widened_to_float32",
    "decoder_layer_step_ms",
    "loaded_precision",
    "nar_autocast_dtype",
]

logger = get_logger(__name__)

NAR_DTYPES = ("auto", "float32", "bfloat16", "float16")
# A 16-bit AR must be this much faster than float32 to be chosen automatically: float32 is the original's precision.
_AUTO_MARGIN = 1.1


def cpu_multiplies_fast(dtype: torch.dtype) -> bool:
    """Whether this CPU multiplies matrices of `dtype` in hardware (torch's CPU flags): float32 always, bfloat16 with
    AMX tiles or AVX512-BF16, float16 with AMX-FP16. Without them a 16-bit matrix product runs several times slower
    than in float32 (1019 rows through one decoder layer's linears on an AMD Zen 3 with AVX2: bfloat16 1.73 s, float32
    0.23 s)."""
    return dtype == torch.float32 or dtype in _cpu_fast_16bit()


@functools.cache
def _cpu_fast_16bit() -> frozenset[torch.dtype]:
    def flag(name: str) -> bool:
        return getattr(torch.cpu, name, lambda: False)()

    # torch reports no AVX512-FP16 flag: float16 counts as slow on CPUs that have only that (Sapphire Rapids), where
    # its products are then widened to float32, perhaps needlessly (auto never chooses float16 on the CPU)
    fast = {torch.bfloat16: flag("_is_amx_tile_supported") or flag("_is_avx512_bf16_supported"),
            torch.float16: flag("_is_amx_fp16_supported")}
    return frozenset(dtype for dtype, has in fast.items() if has)


# The memory cgroup the process sees at its mount (in a container: the container's own), cgroup v2 or v1, each with
# its files for the limit, the usage and the statistics, and the statistics' names for reclaimable page cache.
_CGROUP_ROOT = Path("/sys/fs/cgroup")
_CGROUP_FILES = (("memory.max", "memory.current", "memory.stat", ("active_file", "inactive_file")),
                 ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes", "memory/memory.stat",
                  ("total_active_file", "total_inactive_file")))


def free_memory(device: torch.device) -> int | None:
    """Bytes `device` can still give to new tensors: on CUDA the GPU's free memory plus what PyTorch holds cached but
    unused; on a Linux CPU what the kernel can hand out without swapping (MemAvailable), read from /proc/meminfo so
    that a model's remote code needs no package for it, or less where the process's memory cgroup (`docker run
    --memory`, a Kubernetes limit) leaves less (`_cgroup_headroom`); None where it is not known (other devices, other
    systems)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    if device.type != "cpu":
        return None
    fields = _fields(Path("/proc/meminfo"), ":")
    available = fields.get("MemAvailable", "").split()
    if not available:  # not Linux
        return None
    headroom = _cgroup_headroom()
    return int(available[0]) * 1024 if headroom is None else min(int(available[0]) * 1024, headroom)


def _cgroup_headroom() -> int | None:
    """Bytes the process's memory cgroup takes before its limit, where the kernel's OOM killer ends the process as it
    would on a full machine (MemAvailable is the host's and does not show the limit): the limit less the usage, the
    page cache counted free (the kernel drops it first). None without a limit, or where no cgroup file reads. A limit
    set on a parent cgroup only (a systemd slice's MemoryMax outside a container) is not seen."""
    for limit_file, usage_file, stat_file, cache_names in _CGROUP_FILES:
        try:
            limit = (_CGROUP_ROOT / limit_file).read_text(encoding="ascii").strip()
            usage = int((_CGROUP_ROOT / usage_file).read_text(encoding="ascii"))
        except (OSError, ValueError):  # no such cgroup version here, or unreadable
            continue
        if not limit.isdigit():  # "max": no limit
            return None
        stat = _fields(_CGROUP_ROOT / stat_file, " ")
        cache = sum(int(stat.get(name, "0")) for name in cache_names)
        return max(int(limit) - usage + cache, 0)
    return None


def _fields(path: Path, separator: str) -> dict[str, str]:
    """A kernel statistics file's lines "name<separator>value" as a dict; empty where it cannot be read."""
    try:
        with open(path, encoding="ascii") as lines:
            return dict(line.split(separator, 1) for line in lines if separator in line)
    except OSError:
        return {}


def widened_to_float32(dtype: torch.dtype, device: torch.device) -> bool:
    """Whether a model of 16-bit `dtype` (or int8 weights with `dtype` activations) on `device` multiplies its passes
    over many rows (the prefill, the NAR) in float32: on a CPU without fast products of that dtype, through oneDNN
    (`valle_hf.cpu_kernels`)."""
    return (dtype in (torch.bfloat16, torch.float16) and device.type == "cpu" and not cpu_multiplies_fast(dtype)
            and torch.backends.mkldnn.is_available())


def nar_autocast_dtype(setting: str, device: torch.device, model_dtype: torch.dtype) -> torch.dtype | None:
    """The dtype the NAR's matrix products run in under `torch.autocast`, or None to run in `model_dtype` as is.

    `setting`: "float32" / "bfloat16" / "float16", or "auto": bfloat16 on CUDA (where supported) and on CPUs with fast
    bfloat16 matrix products, the model's own dtype elsewhere. A model already loaded in a 16-bit dtype (or with int8
    weights, whose activations are 16-bit) is left as is.
    """
    if setting not in NAR_DTYPES:
        raise VallEValueError(f"nar_dtype must be one of {NAR_DTYPES}, got {setting!r}")
    if model_dtype != torch.float32:
        name = str(model_dtype).removeprefix("torch.")
        runs = "float32" if widened_to_float32(model_dtype, device) else name
        if setting not in ("auto", runs):
            where = (f"multiplies its weights in float32 on this CPU (no fast {name} products)" if runs == "float32"
                     else "runs in the model's dtype")
            logger.warning_once(f"nar_dtype={setting!r} does not apply to a {name} model: its NAR {where} (load the "
                                "model in float32 for another)")
        return None
    if setting == "auto":
        return torch.bfloat16 if _fast_bf16_matmul(device) else None
    dtype = getattr(torch, setting)
    return None if dtype == model_dtype else dtype


def _fast_bf16_matmul(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_multiplies_fast(torch.bfloat16)


# ------------------------------------------------------------------------------------------------ decoding's attention
_DECODING = threading.Lock()
_decoding_calls = 0
_cudnn_before: bool | None = None


@contextlib.contextmanager
def decoding_attention():
    """The block's `scaled_dot_product_attention` calls run without cuDNN's backend; the other backends stay as they
    were. For decoding loops (the AR, STT).

    cuDNN's attention builds an execution plan for each new shape of query and keys, and a cached decoding step's
    keys grow by one position at every step: each step built a plan per layer, about 3 ms of host time each. On an
    H200 (torch 2.11) a step of the released model took 42-48 ms in float16 or bfloat16 that way, and 8-9 ms with
    cuDNN's backend off, which torch does not pick for float32 anyway. No effect on the CPU, nor where cuDNN's is the
    only backend left on (`torch.nn.attention.sdpa_kernel`): attention would have none.

    The switch is process-wide (torch keeps it so): it is turned off by the first of concurrent blocks (threads of a
    server) and put back as it was by the last.
    """
    global _decoding_calls, _cudnn_before
    with _DECODING:
        if _decoding_calls == 0:
            _cudnn_before = torch.backends.cuda.cudnn_sdp_enabled()
            cuda = torch.backends.cuda
            if cuda.flash_sdp_enabled() or cuda.mem_efficient_sdp_enabled() or cuda.math_sdp_enabled():
                cuda.enable_cudnn_sdp(False)  # else it is the one backend the caller left on (`sdpa_kernel`)
        _decoding_calls += 1
    try:
        yield
    finally:
        with _DECODING:
            _decoding_calls -= 1
            if _decoding_calls == 0:
                torch.backends.cuda.enable_cudnn_sdp(_cudnn_before)


# ------------------------------------------------------------------------------------------------ the AR's precision
def _layer_linears(hidden: int, intermediate: int, kind: str, device: torch.device) -> nn.ModuleList:
    """The seven linears of one llama decoder layer (q, k, v, o, gate, up, down) in `kind`: a dtype name, or "int8"
    (weight-only int8 with bfloat16 activations, torchao's `Int8WeightOnlyConfig` as `TorchAoConfig` applies it)."""
    shapes = [(hidden, hidden)] * 4 + [(intermediate, hidden)] * 2 + [(hidden, intermediate)]
    dtype = torch.bfloat16 if kind == "int8" else getattr(torch, kind)
    linears = nn.ModuleList(nn.Linear(fan_in, fan_out, bias=False) for fan_out, fan_in in shapes).to(device, dtype)
    if kind == "int8":
        from torchao.quantization import Int8WeightOnlyConfig, quantize_

        quantize_(linears, Int8WeightOnlyConfig())
    return linears.requires_grad_(False)


def decoder_layer_step_ms(hidden: int, intermediate: int, kind: str, device: torch.device, repeats: int = 15,
                          rows: int = 1) -> float:
    """The time (ms) of one cached AR step's products through one decoder layer (`rows` rows, one per sequence of the
    batch, through each of its seven linears), in `kind` ("float32", "bfloat16", "float16" or "int8"), run as
    `generate` runs them (through the CPU kernels of `valle_hf.cpu_kernels`): the fastest of `repeats` runs, since
    other processes only ever add time."""
    from .cpu_kernels import CPULinearForward, decoding_step

    linears = _layer_linears(hidden, intermediate, kind, device)
    forwards = [CPULinearForward(linear) for linear in linears]
    activation = torch.bfloat16 if kind == "int8" else linears[0].weight.dtype
    inputs = {size: torch.randn(rows, size, device=device, dtype=activation) for size in (hidden, intermediate)}
    times = []
    with torch.no_grad(), decoding_step():
        for _ in range(repeats + 2):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            for forward, linear in zip(forwards, linears, strict=True):
                forward(inputs[linear.in_features])
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append((time.perf_counter() - start) * 1e3)
    return min(times[2:])


# Changes whenever the kernels `generate` runs the linears with change, so that measurements of the former ones are
# taken again (2: int8 weights through ATen's int8 matrix-vector kernel).
_KERNELS_VERSION = 2


def _machine_key(device: torch.device, hidden: int, intermediate: int, rows: int = 1) -> str:
    """What a measurement depends on: the processor, torch's build, the thread count, the layer's shapes, the rows
    and the kernels."""
    if device.type == "cuda":
        processor = torch.cuda.get_device_name(device)
    else:
        processor = "cpu"
        with contextlib.suppress(OSError):
            processor = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                              if line.startswith("model name")), processor)
        processor += f", {torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()}"
    return (f"{processor} | torch {torch.__version__} | layer {hidden}x{intermediate} | rows {rows} | kernels "
            f"{_KERNELS_VERSION}")


def _measurements_file() -> Path:
    from .hub import default_cache_dir

    return default_cache_dir() / "precision_measurements.json"


_ROUNDS = 3


def _measured_step_ms(kinds: list[str], device: torch.device, hidden: int, intermediate: int,
                      rows: int = 1) -> dict[str, float]:
    """`decoder_layer_step_ms` of each kind at `rows` rows, measured once per machine and kept in the cache directory
    (a file that cannot be read or written only means measuring again)."""
    path, key = _measurements_file(), _machine_key(device, hidden, intermediate, rows)
    saved = _saved_measurements(path)
    known = saved.get(key, {})
    missing = [kind for kind in kinds if kind not in known]
    for _ in range(_ROUNDS if missing else 0):  # interleaved, so that a busy moment slows every kind alike
        for kind in missing:
            known[kind] = min(known.get(kind, math.inf),
                              decoder_layer_step_ms(hidden, intermediate, kind, device, rows=rows))
    if missing:
        saved[key] = known
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            with written_whole(path) as temporary:
                temporary.write_text(json.dumps(saved, indent=1), encoding="utf-8")
    return {kind: known[kind] for kind in kinds}


def _saved_measurements(path: Path) -> dict[str, dict[str, float]]:
    """The times (ms) kept in `path`, by machine key and kind. What is not a time there (a damaged or hand-edited
    file: not JSON, another structure, a time of 0 or a string) is left out, to be measured again."""
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(saved, dict):
        return {}
    return {key: {kind: ms for kind, ms in times.items() if _is_time(ms)}
            for key, times in saved.items() if isinstance(times, dict)}


def _is_time(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < math.inf


def _where_kept() -> str:
    """Where the measurements are kept: a busy moment can tip the choice, so say how to measure again."""
    kept = _measurements_file()
    if kept.is_file():
        return f" (measured on this machine; kept in {kept}: delete it to measure again)"
    return f" (measured on this machine; not kept, as {kept.parent} cannot be written: measured again at each run)"


@dataclass
class Precision:
    """The precision of each stage: `dtype` the model loads in, `quantize` ("int8", another quantization a saved
    model came with, or None) its decoder's weights, `nar` what the NAR's products run in, and `reason` the
    measurements behind the choice (one line)."""

    dtype: torch.dtype
    quantize: str | None
    nar: str
    reason: str

    def describe(self, nar: bool = True) -> str:
        """The one line a command prints; without the NAR's part for a run that has no NAR (`nar=False`: STT)."""
        ar = str(self.dtype).removeprefix("torch.")
        ar = _quantized_description(self.quantize, self.dtype) if self.quantize else ar
        return f"precision: AR {ar}{f', NAR {self.nar}' if nar else ''} ({self.reason})"


def _quantized_description(kind: str, dtype: torch.dtype) -> str:
    return f"{kind} weights, {str(dtype).removeprefix('torch.')} activations"


def loaded_precision(precision: Precision, model) -> Precision:
    """`precision` as `model` runs: a model saved with quantized weights (a `quantization_config` in its config.json)
    loads with them whatever was asked, so its line names them rather than a dtype its linears lack."""
    quantization = getattr(model.config, "quantization_config", None)
    if quantization is None or precision.quantize:
        return precision
    kind = type(getattr(quantization, "quant_type", quantization)).__name__
    kind = "int8" if kind == "Int8WeightOnlyConfig" else kind
    return Precision(model.dtype, kind, _nar_description(model.dtype, kind, model.device, "auto"),
                     f"{precision.reason}; the model was saved with {kind} weights (its config's quantization_config)")


def _nar_description(dtype: torch.dtype, quantize: str | None, device: torch.device, nar_dtype: str) -> str:
    if quantize in (None, "int8") and widened_to_float32(dtype, device):
        return f"float32 products of {quantize or str(dtype).removeprefix('torch.')} weights"
    if quantize:
        return _quantized_description(quantize, dtype)
    autocast = nar_autocast_dtype(nar_dtype, device, dtype) if dtype == torch.float32 else None
    if autocast is None:
        return str(dtype).removeprefix("torch.")
    return f"{str(autocast).removeprefix('torch.')} (autocast; nar_dtype={nar_dtype!r})"


def choose_precision(device: torch.device, dtype: str = "auto", quantize: str | None = None, hidden: int = 1024,
                     intermediate: int = 4096, nar_dtype: str = "auto", rows: int = 1) -> Precision:
    """The precision a model should load in on `device`, measured on this machine at the layer shapes given (the
    released model's by default) with `rows` rows per AR step (the batch size the model will decode: a kind that
    streams one row fastest may stream eight slower).

    `dtype` "auto": on CUDA float16; on the CPU float32, or, where the CPU has bfloat16 matrix hardware
    (`cpu_multiplies_fast`), bfloat16 if its matrix-vector products stream at least 10% faster here. Without that
    hardware (AVX2 only) float32, unmeasured: there a bfloat16 step's linears stream faster, but its elementwise ops
    and the NAR's float32 products of its weights cost about as much again (10 s of speech on an AMD Zen 3: 69.4 s in
    bfloat16, 70.5 s in float32). Any other value is kept. `quantize="int8"` (torchao through `TorchAoConfig`; needs
    the `valle-hf[int8]` extra) is kept where one decoder layer's int8 step is faster than in the chosen dtype, and
    dropped otherwise: the AR runs in whichever this machine streams fastest. With int8 kept, the activations are
    bfloat16 on the CPU and where the chosen dtype was float32. The NAR of a float32 model then runs in bfloat16
    where the hardware multiplies it fast, or in `nar_dtype` (`nar_autocast_dtype`); `nar_dtype="float32"` makes
    "auto" float32, since autocast only narrows a model's dtype. A 16-bit or int8 model's NAR multiplies in float32
    on a CPU without fast products of its dtype (`valle_hf.cpu_kernels`).
    """
    if quantize not in (None, "int8"):
        raise VallEValueError(f"quantize must be None or 'int8', got {quantize!r}")
    reasons, measured = [], False
    if dtype != "auto":
        chosen = getattr(torch, dtype)
        reasons.append(f"--dtype {dtype}")
    elif nar_dtype == "float32" and not quantize:
        chosen = torch.float32  # autocast only narrows: a float32 NAR needs a float32 model
        reasons.append("nar_dtype='float32' needs a float32 model")
    elif device.type == "cuda":
        chosen = torch.float16
        reasons.append("--dtype auto on CUDA")
    elif not cpu_multiplies_fast(torch.bfloat16):
        chosen = torch.float32
        reasons.append("--dtype auto on a CPU without bfloat16 matrix hardware")
    else:
        speed, measured = _measured_step_ms(["float32", "bfloat16"], device, hidden, intermediate, rows), True
        faster = speed["float32"] / speed["bfloat16"]
        chosen = torch.bfloat16 if faster >= _AUTO_MARGIN else torch.float32
        reasons.append(f"one decoder layer's AR step{f' of {rows} rows' if rows > 1 else ''}: float32 "
                       f"{speed['float32']:.2f} ms, bfloat16 {speed['bfloat16']:.2f} ms")
    if quantize:
        name = str(chosen).removeprefix("torch.")
        speed, measured = _measured_step_ms([name, "int8"], device, hidden, intermediate, rows), True
        if speed["int8"] < speed[name]:
            reasons.append(f"int8 {speed['int8']:.2f} ms vs {name} {speed[name]:.2f} ms: int8 applied")
        else:
            reasons.append(f"int8 {speed['int8']:.2f} ms vs {name} {speed[name]:.2f} ms: int8 streams slower here, "
                           "not applied")
            quantize = None
    if quantize and (chosen == torch.float32 or device.type == "cpu"):
        # int8 weights are multiplied fast with 16-bit activations only, and on the CPU with bfloat16 ones only
        # (float16 ones were several times slower there than bfloat16 ones, through either int8 product)
        chosen = torch.bfloat16
    reason = "; ".join(reasons) + (_where_kept() if measured else "")
    return Precision(chosen, quantize, _nar_description(chosen, quantize, device, nar_dtype), reason)


@contextlib.contextmanager
def quiet_torchao_import():
    """Import-time messages of torchao that do not concern a CPU user (its CUDA kernels' libraries cannot load there;
    torch's deprecation notes about its enums) are kept out of the user's terminal during the block."""
    names = ("torchao", "torch.utils._pytree")
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    quiet = not torch.cuda.is_available()
    for logger in loggers:
        if quiet:
            logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
