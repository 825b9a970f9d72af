#!/usr/bin/env python
"""Generation benchmark for valle-hf at the released model's size (d_model 1024, 16 heads, 12 layers; random weights).

Everything is measured in one run and printed at the end (and optionally written as JSON with ``--json``):

* **floor**: the time to stream exactly the weights one cached AR step reads (the 12 decoder layers and the level-0
  head) through matrix-vector products on the model's own weight tensors, in the run's dtype: the faster of
  ``F.linear`` and (fp32 on CPU) oneDNN on prepacked weights, i.e. the memory-bandwidth floor of a decode step; at
  batch 8 the same with 8 rows.
* **AR matrix**: ms per cached AR step (median) for every dtype x cache (prealloc: valle_hf's default; dynamic:
  transformers' stock DynamicCache; static) x compile (eager, ``torch.compile`` for the static cache) x batch size,
  plus the opt-in oneDNN linears (``valle_hf.onednn``; fp32 CPU), with the stop token suppressed
  (``min_new_tokens``) so the step count is fixed.
  Every run goes through ``model.generate`` (transformers' decoding loop, processors, stopping criteria, cache).
  To keep the run short, the prompt's KV cache is computed once per batch size and copied into each run's cache
  (the first generated position is still computed by ``generate``); prefill time is measured in the end-to-end run.
* **baseline**: the original's way of decoding, a full recompute of the whole sequence per step
  (``use_cache=False``), at the start of the response and after ``--e2e-seconds`` of generated audio.
* **end to end**: one real ``model.generate`` call producing ``--e2e-seconds`` of audio at batch 1 (AR + 7 NAR levels):
  prefill, AR, NAR and codec times, real-time factor, cached step at the end of the run, and peak memory (process
  peak RSS, reset just before the call through ``/proc/self/clear_refs``; CUDA: ``max_memory_allocated``).

Examples::

    python benchmarks/bench_generate.py --quick            # ~1-2 minutes smoke run (fp32, eager, short runs)
    python benchmarks/bench_generate.py                    # the full default matrix (~13 minutes on 2 CPU cores)
    python benchmarks/bench_generate.py --dtypes fp32 --cache static --batch-sizes 1 --steps 300 --no-compile

On CUDA the same script runs on the GPU (``--device cuda``, the default when one is available).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import json
import math
import os
import platform
import statistics
import sys
import time
import warnings

import torch

FRAME_RATE = 75  # EnCodec 24 kHz frames per second (one AR step per frame)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
LOG_START = time.perf_counter()


def log(message: str) -> None:
    print(f"[{time.perf_counter() - LOG_START:7.1f}s] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------- arguments
def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=150, help="AR steps per configuration of the AR matrix")
    parser.add_argument("--budget-s", type=float, default=20.0,
                        help="wall-clock cap per AR-matrix run (generate's max_time): slow configurations measure "
                             "fewer steps (never fewer than the first few)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="timed runs per AR-matrix configuration; the run with the lowest median is kept")
    parser.add_argument("--retries", type=int, default=2,
                        help="extra timed runs of an AR-matrix configuration while other processes used more than "
                             "--max-foreign-load of the machine's CPU time during it (shared machines)")
    parser.add_argument("--max-foreign-load", type=float, default=0.15,
                        help="share of the machine's CPU time other processes may use during a timed run before it "
                             "is retried")
    parser.add_argument("--batch-sizes", default="1,8", help="comma-separated batch sizes of the AR matrix")
    parser.add_argument("--dtypes", default="fp32,bf16", help="comma-separated: fp32, bf16, fp16")
    parser.add_argument("--cache", default="prealloc,dynamic,static",
                        help="comma-separated cache kinds: prealloc (valle_hf's default, PreallocatedDynamicCache), "
                             "dynamic (transformers' stock DynamicCache), static (StaticCache)")
    parser.add_argument("--onednn", action=argparse.BooleanOptionalAction, default=None,
                        help="also run the prealloc configuration with valle_hf's opt-in oneDNN linears "
                             "(valle_hf.onednn: prepacked weights; eager, fp32, CPU); default: on for CPU")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                        help="also run every static-cache configuration under torch.compile (transformers' "
                             "CompileConfig path); compile time is measured separately")
    parser.add_argument("--compile-dynamic", action=argparse.BooleanOptionalAction, default=False,
                        help="also torch.compile the dynamic and prealloc cache configurations (model.forward compiled "
                             "with dynamic shapes; transformers itself never compiles a DynamicCache)")
    parser.add_argument("--freezing", action=argparse.BooleanOptionalAction, default=None,
                        help="inductor freezing of the compiled configurations (meant to fold and prepack the "
                             "weights; measured here it did not speed up the compiled steps, see README); default: on "
                             "for CPU")
    parser.add_argument("--compile-mode", default=None,
                        help="torch.compile mode (default: 'default' on CPU, 'reduce-overhead' on CUDA)")
    parser.add_argument("--baseline-steps", type=int, default=2,
                        help="full-recompute (no cache) steps per baseline run (each recomputes the whole sequence)")
    parser.add_argument("--baseline-batch-sizes", default="1,8",
                        help="batch sizes of the baseline at the start of the response (batch 1 is also measured "
                             "after --e2e-seconds of audio)")
    parser.add_argument("--e2e-seconds", type=float, default=10.0, help="seconds of audio of the end-to-end run")
    parser.add_argument("--e2e-cache", default="prealloc", choices=["dynamic", "static", "prealloc"],
                        help="cache of the end-to-end run (fp32, batch 1; prealloc = what generate() uses by default)")
    parser.add_argument("--e2e-compile", action=argparse.BooleanOptionalAction, default=None,
                        help="torch.compile the end-to-end run (default: when --compile and --e2e-cache static)")
    parser.add_argument("--no-e2e", dest="e2e", action="store_false", help="skip the end-to-end run")
    parser.add_argument("--long-batch-sizes", default="1,8",
                        help="batch sizes also measured after --e2e-seconds of generated audio (eager, each cache); "
                             "empty to skip")
    parser.add_argument("--long-steps", type=int, default=60, help="AR steps of those runs")
    parser.add_argument("--e2e-only-json", default=None, help=argparse.SUPPRESS)  # internal: the e2e subprocess
    parser.add_argument("--codec", choices=["full", "none"], default="full",
                        help="also time decoding the end-to-end codes with a full-size (random) EnCodec 24 kHz")
    parser.add_argument("--prompt-seconds", type=float, default=3.0, help="length of the voice prompt")
    parser.add_argument("--text-tokens", type=int, default=40, help="phoneme ids per row (BOS/EOS included)")
    parser.add_argument("--sampler", choices=["greedy", "sample", "full"], default="sample",
                        help="greedy; sample = the shipped generation config (multinomial, T=1); full = every "
                             "VALL-E sampler on (rep. penalty, stop length penalty, min-p, top-k, top-p, DRY, ...)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (CPU)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", action="store_true",
                        help="print a torch.profiler table of 20 cached steps per dtype and cache kind (smallest "
                             "batch, eager)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run (~1-2 min on 2 CPU cores): fp32 only, eager only, 12 steps, batch 1 and 2, "
                             "1 s end-to-end, one baseline step")
    parser.add_argument("--json", default=None, help="also write all results to this JSON file")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.budget_s = 12, 6.0
        args.dtypes, args.batch_sizes = "fp32", "1,2"
        args.compile = args.compile_dynamic = False
        args.onednn = bool(args.onednn)  # off unless asked for
        args.baseline_steps, args.baseline_batch_sizes = 1, "1"
        args.retries = 0
        args.long_batch_sizes, args.long_steps = "1", 12
        args.e2e_seconds = 1.0
        args.codec = "none"
    args.batch_sizes = [int(b) for b in str(args.batch_sizes).split(",") if b]
    args.baseline_batch_sizes = [int(b) for b in str(args.baseline_batch_sizes).split(",") if b]
    args.long_batch_sizes = [int(b) for b in str(args.long_batch_sizes).split(",") if b]
    args.dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    args.cache = [c.strip() for c in args.cache.split(",") if c.strip()]
    for dtype in args.dtypes:
        if dtype not in DTYPES:
            parser.error(f"unknown dtype {dtype!r}; choose from {sorted(DTYPES)}")
    for cache in args.cache:
        if cache not in ("dynamic", "static", "prealloc"):
            parser.error(f"unknown cache {cache!r}; choose from dynamic, static, prealloc")
    if args.onednn is None:
        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        args.onednn = "fp32" in args.dtypes and device == "cpu"
    if args.e2e_compile is None:
        args.e2e_compile = bool(args.compile and args.e2e_cache == "static")
    return args


# ---------------------------------------------------------------------------------------------------- environment
def cpu_info() -> dict:
    info = {"model": platform.processor() or platform.machine(), "logical_cpus": os.cpu_count(), "flags": []}
    with contextlib.suppress(OSError):
        text = open("/proc/cpuinfo").read()
        for line in text.splitlines():
            if line.startswith("model name") and info["model"] in ("", platform.machine(), platform.processor()):
                info["model"] = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_bf16", "amx_tile")
                info["flags"] = [flag for flag in wanted if flag in flags]
                break
    with contextlib.suppress(OSError):
        info["mem_total_gib"] = round(int(open("/proc/meminfo").readline().split()[1]) / 2**20, 1)
    return info


def environment(args, device: torch.device) -> dict:
    import transformers

    env = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "cpu": cpu_info(),
        "loadavg_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def native_bf16(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    flags = set(cpu_info()["flags"])
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class ForeignLoad:
    """Share of the machine's CPU time used by *other* processes (and the hypervisor's steal) over an interval.

    Busy time from /proc/stat minus this process's own CPU time, divided by wall time x logical CPUs. On a shared
    machine this says which measurements ran undisturbed (a step with 2 threads on 2 cores stalls whenever another
    process holds one of them). None where /proc/stat is unavailable.
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
        own = os.times()
        return time.perf_counter(), busy, own.user + own.system

    def share(self) -> float | None:
        end = self._sample()
        if self.start is None or end is None:
            return None
        wall = end[0] - self.start[0]
        foreign = (end[1] - self.start[1]) - (end[2] - self.start[2])
        return max(0.0, foreign / (wall * (os.cpu_count() or 1))) if wall > 0 else None


# ---------------------------------------------------------------------------------------------------- memory
def reset_peak_memory(device: torch.device) -> bool:
    """Reset the process's peak RSS (Linux: ``echo 5 > /proc/self/clear_refs``) and CUDA's peak counter."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _status_kib(field: str) -> int | None:
    with contextlib.suppress(OSError):
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def rss_bytes() -> int | None:
    kib = _status_kib("VmRSS")
    return None if kib is None else kib * 1024


def peak_rss_bytes() -> int:
    kib = _status_kib("VmHWM")
    if kib is None:  # not Linux: ru_maxrss (KiB on Linux, bytes on macOS); it cannot be reset
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024
    return kib * 1024


# ---------------------------------------------------------------------------------------------------- model and inputs
def build_model(device: torch.device, seed: int):
    from valle_hf.codec import tiny_random_codec
    from valle_hf.configuration import VallEConfig
    from valle_hf.modeling import VallEForConditionalGeneration

    # The released size (VallEConfig defaults) with a 0.17 M-parameter codec, so that the 15 M-parameter EnCodec is
    # not part of the model's numbers (it is timed separately with --codec full).
    config = VallEConfig(codec_config=tiny_random_codec().config.to_dict())
    torch.manual_seed(seed)
    model = VallEForConditionalGeneration(config).eval().to(device)
    model.requires_grad_(False)
    return model


def step_linears(model) -> list[torch.nn.Linear]:
    """The linears one cached AR step runs: every linear of the decoder layers and the level-0 head."""
    linears = [module for module in model.model.backbone.layers.modules() if isinstance(module, torch.nn.Linear)]
    return linears + [model.classifiers[0]]


def step_weights(model) -> list[torch.Tensor]:
    return [module.weight for module in step_linears(model)]


def parameter_counts(model) -> dict:
    total = sum(p.numel() for p in model.parameters())
    codec = sum(p.numel() for p in model.codec_model.parameters())
    step = sum(w.numel() for w in step_weights(model))
    return {"total_without_codec": total - codec, "codec": codec, "read_per_ar_step": step}


def make_inputs(config, batch: int, prompt_seconds: float, text_tokens: int, seed: int, device: torch.device):
    generator = torch.Generator().manual_seed(seed)
    middle = torch.randint(3, config.text_vocab_size, (batch, max(text_tokens - 2, 1)), generator=generator)
    bos = torch.full((batch, 1), config.text_bos_token_id)
    eos = torch.full((batch, 1), config.text_eos_token_id)
    text = torch.cat([bos, middle, eos], dim=1)
    frames = round(prompt_seconds * config.frame_rate)
    prompt = torch.randint(0, config.audio_vocab_size, (batch, frames, config.num_rvq_levels), generator=generator)
    return text.to(device), prompt.to(device)


def prefix_ids(config, text: torch.Tensor, prompt: torch.Tensor) -> torch.Tensor:
    """The AR input generate() builds for these rows: ``text SEP [level 0] SEP prompt SEP`` (no padding needed)."""
    from valle_hf.layout import tts_sequence

    return torch.stack([tts_sequence(config, row, 0, prompt.shape[1]) for row in text])


def sampler_kwargs(name: str) -> dict:
    if name == "greedy":
        return {"temperature": 0.0}
    if name == "sample":
        return {"do_sample": True, "temperature": 1.0}
    return {  # every VALL-E processor on, values in the range the original's CLI uses
        "do_sample": True, "temperature": 1.0, "min_temperature": 0.5, "top_k": 64, "top_p": 0.95, "min_p": 0.05,
        "repetition_penalty": 1.25, "repetition_penalty_decay": 0.5, "stop_length_penalty": 0.5,
        "dry_multiplier": 0.8,
    }


# ---------------------------------------------------------------------------------------------------- timing helpers
class StepTimer:
    """A logits processor that timestamps every decoding step (one call per generated token)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.times: list[float] = []

    def __call__(self, input_ids, scores):
        synchronize(self.device)
        self.times.append(time.perf_counter())
        return scores

    def steps_ms(self) -> list[float]:
        return [(b - a) * 1e3 for a, b in zip(self.times, self.times[1:], strict=False)]


def summary(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]  # noqa: E731
    return {"n": len(values), "median": statistics.median(values), "p10": pick(0.1), "p90": pick(0.9),
            "min": ordered[0], "mean": statistics.fmean(values)}


def median_time_ms(fn, repeats: int, warmup: int = 2, device: torch.device | None = None) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device is not None:
            synchronize(device)
        start = time.perf_counter()
        fn()
        if device is not None:
            synchronize(device)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


@contextlib.contextmanager
def quiet():
    """Silence the expected warnings (no stop token: it is suppressed on purpose; generation flags; compile)."""
    import transformers

    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            yield
        finally:
            transformers.logging.set_verbosity(verbosity)


def compile_mode(args, device) -> str:
    return args.compile_mode or ("reduce-overhead" if device.type == "cuda" else "default")


def compile_options(args, device) -> dict | None:
    freezing = args.freezing if args.freezing is not None else device.type == "cpu"
    return {"freezing": True} if freezing else None


def compile_config(args, device):
    from transformers import CompileConfig

    options = compile_options(args, device)
    # torch.compile takes a mode or options, not both
    config = CompileConfig(fullgraph=False, mode=None if options else compile_mode(args, device), options=options)
    config._compile_all_devices = True  # transformers only auto-compiles on accelerators unless told otherwise
    return config


# ---------------------------------------------------------------------------------------------------- measurements
def floor_ms(model, batch: int, device: torch.device, repeats: int) -> dict:
    """Median time of one pass over exactly the weights a cached AR step reads (`batch` rows): through `F.linear`,
    and (fp32 CPU) through oneDNN on prepacked weights, as `valle_hf.onednn` runs them; `ms` is the lower one."""
    linears = step_linears(model)
    inputs = {m.in_features: torch.randn(batch, m.in_features, dtype=model.dtype, device=device) for m in linears}
    result = {}
    with torch.no_grad():
        result["linear_ms"] = median_time_ms(
            lambda: [torch.nn.functional.linear(inputs[m.in_features], m.weight) for m in linears], repeats,
            warmup=1, device=device)
        if onednn_applies(model, device):
            from valle_hf.onednn import OneDNNLinearForward

            packed = [OneDNNLinearForward(m, prepack=True) for m in linears]
            result["onednn_ms"] = median_time_ms(lambda: [p(inputs[p.module.in_features]) for p in packed], repeats,
                                                 warmup=1, device=device)
    result["ms"] = min(result.values())
    return result


def onednn_applies(model, device: torch.device) -> bool:
    return device.type == "cpu" and model.dtype == torch.float32 and torch.backends.mkldnn.is_available()


@contextlib.contextmanager
def onednn_linears(model):
    """valle_hf's opt-in oneDNN linears (`valle_hf.onednn`) for one block."""
    from valle_hf.onednn import disable_onednn_linears, enable_onednn_linears

    enable_onednn_linears(model)
    try:
        yield
    finally:
        disable_onednn_linears(model)


def measure_floor(model, dtype_name: str, batch_sizes: list[int], device: torch.device, repeats: int) -> dict:
    weights = step_weights(model)
    nbytes = sum(w.numel() * w.element_size() for w in weights)
    result = {"bytes": nbytes}
    for batch in batch_sizes:
        floor = floor_ms(model, batch, device, repeats)
        result[batch] = {**floor, "gb_per_s": nbytes / floor["ms"] / 1e6}
        log(f"floor {dtype_name} batch {batch}: {floor['ms']:.1f} ms for {nbytes / 1e9:.3f} GB "
            f"({nbytes / floor['ms'] / 1e6:.1f} GB/s; F.linear {floor['linear_ms']:.1f} ms, oneDNN prepacked "
            f"{fmt(floor.get('onednn_ms'))} ms)")
    return result


def prefill_kv(model, text, prompt, response_frames: int = 0) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], int]:
    """KV of the AR input minus its last position (that one is computed by generate), from one forward pass.

    `response_frames` > 0 adds that many silence frames as the response prefix, exactly what generate() builds with
    `prefix_silence=response_frames / 75`: the state after that much generated audio.
    """
    from transformers import DynamicCache

    from valle_hf.layout import tts_sequence

    config = model.config
    silence = torch.full((response_frames,), config.silence_codes[0], device=text.device)
    ids = torch.stack([tts_sequence(config, row, 0, prompt.shape[1], silence) for row in text])
    cache = DynamicCache(config=model.config)
    with torch.no_grad():
        model(input_ids=ids[:, :-1], prompt_codes=prompt, cache=cache, use_cache=True, level=0, task="tts")
    kv = [(layer.keys, layer.values) for layer in cache.layers]
    return kv, ids.shape[1]


class CacheFactory:
    """Fresh caches pre-filled with the prompt's KV; static caches are reused per (dtype, batch) for stable addresses
    (a compiled decode step would otherwise be traced again for every new cache)."""

    def __init__(self, model, max_cache_len: int):
        self.model, self.max_cache_len = model, max_cache_len
        self.static = {}

    def make(self, kind: str, kv, dtype: torch.dtype):
        from transformers import DynamicCache, StaticCache

        from valle_hf.cache import PreallocatedDynamicCache

        if kind == "dynamic":
            cache = DynamicCache(config=self.model.config)
        elif kind == "prealloc":
            cache = PreallocatedDynamicCache(self.model.config.backbone_config(), self.max_cache_len)
        else:
            key = (dtype, kv[0][0].shape[0])
            cache = self.static.get(key)
            if cache is None:
                cache = self.static[key] = StaticCache(config=self.model.config, max_cache_len=self.max_cache_len)
            cache.reset()
        for layer, (keys, values) in enumerate(kv):
            cache.update(keys.to(dtype), values.to(dtype), layer)
        return cache

    def clear(self):
        self.static.clear()


def ar_run(model, text, prompt, steps, args, device, *, cache=None, budget=None, **extra) -> dict:
    """One generate() call of `steps` AR steps (stop suppressed), level 0 only; per-step timestamps."""
    timer = StepTimer(device)
    kwargs = dict(
        input_ids=text, prompt_codes=prompt, max_new_tokens=steps, min_new_tokens=steps, max_levels=0,
        output_audio=False, logits_processor=[timer], **sampler_kwargs(args.sampler), **extra,
    )
    if cache is not None:
        kwargs["cache"] = cache
    if budget is not None:
        kwargs["max_time"] = budget
    synchronize(device)
    load = ForeignLoad()
    start = time.perf_counter()
    with quiet(), torch.no_grad():
        model.generate(**kwargs)
    synchronize(device)
    total = time.perf_counter() - start
    return {"wall_s": total, "first_ms": (timer.times[0] - start) * 1e3 if timer.times else None,
            "steps_ms": timer.steps_ms(), "foreign_load": load.share()}


@contextlib.contextmanager
def compiled_forward(model, dynamic: bool, args, device):
    """torch.compile the model's forward for one block (used for DynamicCache, which transformers never compiles)."""
    original = model.forward
    options = compile_options(args, device)
    mode = None if options else compile_mode(args, device)  # torch.compile takes either a mode or options
    model.forward = torch.compile(original, dynamic=dynamic, mode=mode, options=options)
    try:
        yield
    finally:
        del model.forward  # back to the class attribute
        assert model.forward.__func__ is original.__func__


def matrix_combos(args, compiled: bool = True) -> list[tuple[str, bool]]:
    combos = []
    for cache_kind in args.cache:
        combos.append((cache_kind, False))
        if compiled and cache_kind == "static" and args.compile:
            combos.append((cache_kind, True))
        if compiled and cache_kind in ("dynamic", "prealloc") and args.compile_dynamic:
            combos.append((cache_kind, True))
    if args.onednn:
        combos.append((ONEDNN_KIND, False))
    return combos


ONEDNN_KIND = "prealloc+onednn"  # the row label of the opt-in: prealloc cache, valle_hf.onednn linears


def run_ar_matrix(model, dtype_name, args, device, kv_by_batch, factory, results, *, batch_sizes, steps, combos,
                  start_s: float = 0.0):
    """AR step timings for each batch size x (cache, compile), starting after `start_s` seconds of response."""
    dtype = DTYPES[dtype_name]
    for batch in batch_sizes:
        text, prompt, kv, prefix_len = kv_by_batch[batch]
        for cache_kind, use_compile in combos:
            if cache_kind == ONEDNN_KIND and not onednn_applies(model, device):
                continue
            name = (f"{dtype_name} b{batch} {cache_kind}{' compiled' if use_compile else ''}"
                    + (f" after {start_s:g} s" if start_s else ""))
            row = {"dtype": dtype_name, "batch": batch, "cache": cache_kind, "compile": use_compile,
                   "prefix_len": prefix_len, "start_s": start_s, "positions": f"{prefix_len}..{prefix_len + steps}"}
            extra = {"prefix_silence": start_s} if start_s else {}
            context = contextlib.nullcontext()
            if use_compile and cache_kind == "static":
                extra["compile_config"] = compile_config(args, device)
            elif use_compile:
                context = compiled_forward(model, dynamic=True, args=args, device=device)
            elif cache_kind == ONEDNN_KIND:
                context = onednn_linears(model)
            base_cache = cache_kind.split("+")[0]
            try:
                with context:
                    if use_compile:  # compile (and any recompile of the first steps) outside the timed run
                        warm_steps = 4
                        warm = ar_run(model, text, prompt, warm_steps, args, device,
                                      cache=factory.make(base_cache, kv, dtype), **extra)
                        row["compile_s"] = warm["wall_s"] - sum(sorted(warm["steps_ms"])[:1]) / 1e3 * warm_steps
                        log(f"{name}: first call (compile + {warm_steps} steps) {warm['wall_s']:.1f} s")
                    runs, floors = [], [floor_ms(model, batch, device, 5)["ms"]]
                    retries = args.retries
                    while len(runs) < max(1, args.repeats) or (
                        retries > 0 and all((r["foreign_load"] or 0) > args.max_foreign_load for r in runs)
                    ):
                        if len(runs) >= max(1, args.repeats):
                            retries -= 1
                            log(f"{name}: other processes used {fmt_pct(runs[-1]['foreign_load'])} of the CPU "
                                "during the run; running it again")
                        cache = factory.make(base_cache, kv, dtype)
                        runs.append(ar_run(model, text, prompt, steps, args, device, cache=cache,
                                           budget=args.budget_s, **extra))
                    floors.append(floor_ms(model, batch, device, 5)["ms"])
                    # Prefer runs that were not disturbed; among those, the lowest median.
                    calm = [r for r in runs if (r["foreign_load"] or 0) <= args.max_foreign_load] or runs
                    run = min(calm, key=lambda r: statistics.median(r["steps_ms"]) if r["steps_ms"] else math.inf)
                    row["timed_runs"] = len(runs)
            except Exception as error:  # keep going: report the failure in the table
                row["error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
                log(f"{name}: FAILED {row['error']}")
                results["ar"].append(row)
                continue
            row["step_ms"] = summary(run["steps_ms"])
            row["steps_measured"] = len(run["steps_ms"])
            # The floor measured right before and after this run (the lower one): on a shared machine the load
            # drifts, and the step/floor ratio is only meaningful against a floor taken under the same conditions.
            row["adjacent_floor_ms"] = min(floors)
            row["foreign_load"] = run["foreign_load"]
            row["frames_per_s"] = batch * 1e3 / row["step_ms"]["median"] if run["steps_ms"] else None
            results["ar"].append(row)
            log(f"{name}: {row['step_ms'].get('median', float('nan')):.1f} ms/step median over "
                f"{row['steps_measured']} steps (p10 {row['step_ms'].get('p10', float('nan')):.1f}, "
                f"p90 {row['step_ms'].get('p90', float('nan')):.1f}); floor next to it "
                f"{row['adjacent_floor_ms']:.1f} ms; "
                f"other processes' CPU share {fmt_pct(row['foreign_load'])}")


def run_baseline(model, args, device, results) -> None:
    """The original's decoding: the whole sequence is embedded and recomputed at every step (no KV cache)."""
    cases = [(batch, 0.0) for batch in args.baseline_batch_sizes]
    if args.e2e_seconds > 0 and 1 in args.baseline_batch_sizes:
        cases.append((1, args.e2e_seconds))
    for batch, seconds in cases:
        text, prompt = make_inputs(model.config, batch, args.prompt_seconds, args.text_tokens, args.seed, device)
        # prefix_silence puts `seconds` of (silence) frames in the response before the first generated step, so each
        # step recomputes prompt + that much audio: the cost of the original's step after that much generated speech.
        run = ar_run(model, text, prompt, args.baseline_steps + 1, args, device, use_cache=False,
                     prefix_silence=seconds)
        length = prefix_ids(model.config, text[:1], prompt[:1]).shape[1] + round(seconds * FRAME_RATE)
        row = {"batch": batch, "audio_s": seconds, "sequence_len": length, "step_ms": summary(run["steps_ms"]),
               "first_pass_ms": run["first_ms"], "foreign_load": run["foreign_load"]}
        results["baseline"].append(row)
        log(f"baseline (no cache) b{batch} after {seconds:g} s of audio ({length} positions): "
            f"{row['step_ms']['median']:.0f} ms/step (other processes {fmt_pct(row['foreign_load'])})")


def run_e2e(model, args, device, results) -> None:
    """One real generate() at batch 1: text + prompt -> level 0 (AR) -> levels 1..7 (NAR), fp32."""
    steps = round(args.e2e_seconds * FRAME_RATE)
    text, prompt = make_inputs(model.config, 1, args.prompt_seconds, args.text_tokens, args.seed, device)
    nar_time = {}
    original_nar = model._generate_nar

    def timed_nar(*a, **k):
        synchronize(device)
        start = time.perf_counter()
        out = original_nar(*a, **k)
        synchronize(device)
        nar_time["s"] = time.perf_counter() - start
        return out

    extra = {"cache_implementation": "dynamic"} if args.e2e_cache == "dynamic" else {}  # prealloc: the default
    if args.e2e_cache == "static":
        extra["cache_implementation"] = "static"
        extra["max_cache_len"] = results["max_cache_len"]  # same shape as the AR matrix: its compiled step is reused
        if args.e2e_compile:
            extra["compile_config"] = compile_config(args, device)
    timer = StepTimer(device)
    kwargs = dict(input_ids=text, prompt_codes=prompt, max_new_tokens=steps, min_new_tokens=steps, output_audio=False,
                  logits_processor=[timer], return_dict_in_generate=True, **sampler_kwargs(args.sampler), **extra)
    warm = None
    if args.e2e_compile:  # compile outside the timed call, with the same shapes (same cache length)
        warm_start = time.perf_counter()
        with quiet(), torch.no_grad():
            model.generate(**{**kwargs, "logits_processor": [], "max_levels": 0, "max_new_tokens": 4,
                              "min_new_tokens": 4})
        warm = time.perf_counter() - warm_start
        log(f"e2e warm-up (compile) {warm:.1f} s")
    gc.collect()
    rss_before = rss_bytes()
    reset_ok = reset_peak_memory(device)
    model._generate_nar = timed_nar
    try:
        synchronize(device)
        load = ForeignLoad()
        start = time.perf_counter()
        with quiet(), torch.no_grad():
            out = model.generate(**kwargs)
        synchronize(device)
        total = time.perf_counter() - start
    finally:
        del model._generate_nar
    peak = peak_rss_bytes()
    steps_ms = timer.steps_ms()
    tail = steps_ms[-50:]
    row = {
        "audio_s": args.e2e_seconds, "steps": steps, "cache": args.e2e_cache, "compile": bool(args.e2e_compile),
        "total_s": total, "prefill_s": timer.times[0] - start, "ar_s": timer.times[-1] - start,
        "nar_s": nar_time.get("s"), "step_ms": summary(steps_ms), "step_ms_last50": summary(tail),
        "step_ms_first50": summary(steps_ms[:50]), "rtf": total / args.e2e_seconds,
        "rss_before_bytes": rss_before, "peak_rss_bytes": peak, "peak_rss_reset": reset_ok,
        "frames": int(out.lengths[0]), "warmup_s": warm, "foreign_load": load.share(),
        "compile_options": compile_options(args, device) if args.e2e_compile else None,
    }
    if device.type == "cuda":
        row["cuda_peak_allocated_bytes"] = torch.cuda.max_memory_allocated(device)
    if args.codec == "full":
        from transformers import EncodecConfig, EncodecModel

        from valle_hf.codec import decode

        codec = EncodecModel(EncodecConfig()).eval().to(device)  # encodec_24khz's architecture, random weights
        codes = out.codes[0, : out.lengths[0]]
        with torch.no_grad():
            decode(codec, codes)  # warm-up
            synchronize(device)
            start = time.perf_counter()
            decode(codec, codes)
            synchronize(device)
        row["codec_decode_s"] = time.perf_counter() - start
        row["codec_params"] = sum(p.numel() for p in codec.parameters())
        row["rtf_with_codec"] = (total + row["codec_decode_s"]) / args.e2e_seconds
        del codec
    results["e2e"] = row
    log(f"e2e {args.e2e_seconds:g} s: total {total:.1f} s (prefill {row['prefill_s']:.2f}, AR {row['ar_s']:.1f}, "
        f"NAR {row['nar_s']:.1f}), RTF {row['rtf']:.2f}, step at the end {row['step_ms_last50']['median']:.1f} ms, "
        f"peak RSS {peak / 2**30:.2f} GiB")


def continuing_call_ms(processor, ids, scores, device) -> float:
    """Median time of a processor's call at `ids` right after its call at `ids[:, :-1]`: a decoding step (stateful
    processors such as DRY update their state instead of recomputing it)."""
    times = []
    for _ in range(30):
        processor(ids[:, :-1], scores.clone())
        synchronize(device)
        start = time.perf_counter()
        processor(ids, scores.clone())
        synchronize(device)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def measure_host_overheads(model, args, device, results) -> None:
    """Per-step work outside the backbone, timed on its own (fp32) at the start of the response and after
    `--e2e-seconds` of audio: the step's model inputs (`prepare_inputs_for_generation`: position ids and the
    embedding of the new token) and each sampler processor of the 'full' chain. None of it should grow with the
    sequence."""
    from valle_hf.logits_process import build_sampler_processors

    config = model.config
    rows = []
    processor_settings = {k: v for k, v in sampler_kwargs("full").items() if k != "do_sample"}
    processors = build_sampler_processors(stop_token_id=config.stop_token_id, **processor_settings)
    for batch in sorted(set(args.batch_sizes)):
        text, prompt = make_inputs(config, batch, args.prompt_seconds, args.text_tokens, args.seed, device)
        prefix = prefix_ids(config, text, prompt)
        offset = torch.full((batch, 1), prefix.shape[1], device=device)
        for audio_s in sorted({0.0, args.e2e_seconds}):
            response = torch.randint(0, config.audio_vocab_size, (batch, round(audio_s * FRAME_RATE) + 1),
                                     device=device)
            ids = torch.cat([prefix, response], dim=1)
            mask = torch.ones_like(ids)
            scores = torch.randn(batch, config.audio_vocab_size + 1, device=device)
            step_inputs = functools.partial(model.prepare_inputs_for_generation, ids, next_sequence_length=1,
                                            attention_mask=mask, response_position_offset=offset, task="tts", level=0)
            with torch.no_grad():
                inputs_ms = median_time_ms(step_inputs, 30, device=device)
                per_processor = {type(p).__name__: continuing_call_ms(p, ids, scores, device) for p in processors}
            row = {"batch": batch, "sequence_len": ids.shape[1], "step_inputs_ms": inputs_ms,
                   "processors_ms": per_processor, "processors_total_ms": sum(per_processor.values())}
            rows.append(row)
            log(f"host work b{batch} L={ids.shape[1]}: step inputs {inputs_ms:.3f} ms, full sampler chain "
                f"{row['processors_total_ms']:.2f} ms")
    results["host_overheads"] = rows


def profile_steps(model, args, device, kv_by_batch, factory) -> None:
    from torch.profiler import ProfilerActivity, profile

    text, prompt, kv, _ = kv_by_batch[min(args.batch_sizes)]
    for cache_kind in args.cache:
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        cache = factory.make(cache_kind, kv, model.dtype)
        with profile(activities=activities) as prof:
            run = ar_run(model, text, prompt, 20, args, device, cache=cache)
        print(f"\n=== profile: {model.dtype} batch {text.shape[0]} {cache_kind} cache, eager, 20 steps "
              f"(median {statistics.median(run['steps_ms']):.1f} ms/step with the profiler on) ===")
        print(f"(per step: {sum(e.self_cpu_time_total for e in prof.key_averages()) / 1e3 / 20:.1f} ms of op time)")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=14))


# ---------------------------------------------------------------------------------------------------- report
def fmt(value, spec=".1f", missing="-"):
    return missing if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def report(results: dict, args) -> None:
    env = results["env"]
    print("\n" + "=" * 100)
    print(f"valle-hf generation benchmark  {env['date']}")
    cpu = env["cpu"]
    print(f"device {env['device']}  {env.get('gpu') or cpu['model']}  ({cpu['logical_cpus']} logical CPUs, "
          f"flags {','.join(cpu['flags'])})  threads {env['threads']}")
    print(f"torch {env['torch']}  transformers {env['transformers']}  python {env['python']}  "
          f"loadavg start {fmt_load(env.get('loadavg_start'))} end {fmt_load(env.get('loadavg_end'))}")
    params = results["params"]
    print(f"model: {params['total_without_codec'] / 1e6:.1f} M parameters (+{params['codec'] / 1e6:.2f} M tiny codec); "
          f"one AR step reads {params['read_per_ar_step'] / 1e6:.1f} M of them; prompt {args.prompt_seconds:g} s + "
          f"{args.text_tokens} phoneme ids; sampler '{args.sampler}'")
    print("ratios to the floor use the floor measured right before/after each run (same load); medians are over the "
          "measured steps" + (f", best of {args.repeats} runs" if args.repeats > 1 else ""))

    print("\n-- weight-read floor (the step's own weights: the faster of F.linear and oneDNN on prepacked weights) --")
    for dtype_name, floor in results["floor"].items():
        parts = [f"b{b}: {floor[b]['ms']:.1f} ms ({floor[b]['gb_per_s']:.1f} GB/s; F.linear {floor[b]['linear_ms']:.1f}"
                 f", oneDNN {fmt(floor[b].get('onednn_ms'))})" for b in floor if b != "bytes"]
        print(f"  {dtype_name}: {floor['bytes'] / 1e9:.3f} GB  " + "  ".join(parts))
    if "fp32" in results["floor"] and "bf16" in results["floor"]:
        fp32 = results["floor"]["fp32"]
        print(f"  bf16 bytes at the fp32 GEMV bandwidth (what native bf16 would reach): "
              f"{results['floor']['bf16']['bytes'] / fp32[1]['gb_per_s'] / 1e6:.1f} ms" if 1 in fp32 else "")

    print("\n-- cached AR step (model.generate, stop suppressed) --")
    header = f"  {'after':>5} {'dtype':5} {'batch':>5} {'cache':15} {'compile':8} {'ms/step':>8} {'p10':>7} " \
             f"{'p90':>7} {'steps':>5} " \
             f"{'floor':>7} {'x floor':>7} {'frames/s':>9} {'vs b1':>6} {'compile s':>9} {'others':>6}"
    print(header)
    b1 = {(r["dtype"], r["cache"], r["compile"], r["start_s"]): r for r in results["ar"]
          if r["batch"] == 1 and "step_ms" in r}
    for row in results["ar"]:
        if "error" in row:
            print(f"  {row['start_s']:>4g}s {row['dtype']:5} {row['batch']:>5} {row['cache']:15} "
                  f"{str(row['compile']):8} FAILED: {row['error']}")
            continue
        floor = row.get("adjacent_floor_ms") or results["floor"].get(row["dtype"], {}).get(row["batch"], {}).get("ms")
        med = row["step_ms"].get("median")
        base = b1.get((row["dtype"], row["cache"], row["compile"], row["start_s"]))
        speedup = row["frames_per_s"] / base["frames_per_s"] if base and row["frames_per_s"] else None
        print(f"  {row['start_s']:>4g}s {row['dtype']:5} {row['batch']:>5} {row['cache']:15} {str(row['compile']):8} "
              f"{fmt(med):>8} "
              f"{fmt(row['step_ms'].get('p10')):>7} {fmt(row['step_ms'].get('p90')):>7} {row['steps_measured']:>5} "
              f"{fmt(floor):>7} {fmt(med / floor if floor and med else None, '.2f'):>7} "
              f"{fmt(row['frames_per_s']):>9} {fmt(speedup, '.2f'):>6} {fmt(row.get('compile_s')):>9} "
              f"{fmt_pct(row.get('foreign_load')):>6}")
    print(f"  ('after': seconds of audio already generated when the measured steps start; from 0 s the steps run over "
          f"positions {results['ar'][0]['prefix_len'] if results['ar'] else '?'}..+{args.steps} and static caches hold "
          f"{results.get('max_cache_len')} positions, as a generate() call of the end-to-end length sizes them)")

    print("\n-- no-cache baseline (full recompute per step, fp32) --")
    for row in results["baseline"]:
        print(f"  b{row['batch']} after {row['audio_s']:g} s of audio ({row['sequence_len']} positions): "
              f"{row['step_ms']['median']:.0f} ms/step (n={row['step_ms']['n']}; other processes "
              f"{fmt_pct(row.get('foreign_load'))})")

    e2e = results.get("e2e")
    if e2e:
        print(f"\n-- end to end, batch 1, fp32, {e2e['cache']} cache{', compiled' if e2e['compile'] else ''}: "
              f"{e2e['audio_s']:g} s of audio ({e2e['steps']} AR steps + 7 NAR levels) --")
        print(f"  total {e2e['total_s']:.1f} s = prefill {e2e['prefill_s']:.2f} s + AR steps "
              f"{e2e['ar_s'] - e2e['prefill_s']:.1f} s + NAR {fmt(e2e['nar_s'], '.1f')} s (+ glue); "
              f"RTF {e2e['rtf']:.2f}" + (f"; codec decode (full-size EnCodec) {e2e['codec_decode_s']:.2f} s, RTF with "
                                         f"codec {e2e['rtf_with_codec']:.2f}" if 'codec_decode_s' in e2e else ""))
        print(f"  AR step median {e2e['step_ms']['median']:.1f} ms; first 50 steps "
              f"{e2e['step_ms_first50']['median']:.1f} ms;"
              f" last 50 steps {e2e['step_ms_last50']['median']:.1f} ms; other processes' CPU share during the call "
              f"{fmt_pct(e2e.get('foreign_load'))}")
        print(f"  memory: RSS before the call {e2e['rss_before_bytes'] / 2**30:.2f} GiB, peak RSS during it "
              f"{e2e['peak_rss_bytes'] / 2**30:.2f} GiB"
              + ("" if e2e["peak_rss_reset"] else " (peak could not be reset: process-lifetime peak)")
              + (f"; CUDA peak allocated {e2e['cuda_peak_allocated_bytes'] / 2**30:.2f} GiB"
                 if "cuda_peak_allocated_bytes" in e2e else ""))
        if e2e.get("warmup_s"):
            print(f"  (compile warm-up before the timed call: {e2e['warmup_s']:.1f} s)")

    if results.get("host_overheads"):
        print("\n-- per-step host work outside the backbone, timed alone (a continuing call at each length) --")
        for row in results["host_overheads"]:
            procs = ", ".join(f"{name.replace('LogitsProcessor', '').replace('LogitsWarper', '')} {ms:.2f}"
                              for name, ms in row["processors_ms"].items())
            print(f"  b{row['batch']} L={row['sequence_len']}: step inputs (position ids + embedding) "
                  f"{row['step_inputs_ms']:.3f} ms; 'full' sampler chain {row['processors_total_ms']:.2f} ms "
                  f"({procs})")

    print("\n-- targets --")
    for line in verdicts(results, args):
        print("  " + line)
    print("=" * 100)


def fmt_pct(share):
    return "-" if share is None else f"{100 * share:.0f}%"


def fmt_load(load):
    return "-" if not load else "/".join(f"{x:.1f}" for x in load)


def best_step(results, dtype, batch, start_s=0.0):
    rows = [r for r in results["ar"] if r["dtype"] == dtype and r["batch"] == batch and "step_ms" in r
            and r["step_ms"].get("n") and r["start_s"] == start_s]
    return min(rows, key=lambda r: r["step_ms"]["median"]) if rows else None


def verdicts(results, args) -> list[str]:
    lines = []
    for dtype in ("fp32", "bf16"):
        best = best_step(results, dtype, 1)
        floor = best and (best.get("adjacent_floor_ms") or results["floor"].get(dtype, {}).get(1, {}).get("ms"))
        if best and floor:
            ratio = best["step_ms"]["median"] / floor
            lines.append(f"[{'MET' if ratio <= 1.5 else 'MISSED'}] {dtype} cached step b1 within 1.5x of its floor: "
                         f"{ratio:.2f}x ({best['step_ms']['median']:.1f} / {floor:.1f} ms, best = {best['cache']}"
                         f"{' compiled' if best['compile'] else ''})")
    e2e = results.get("e2e")
    base = [r for r in results["baseline"] if r["batch"] == 1 and r["audio_s"] == args.e2e_seconds and r["audio_s"] > 0]
    if e2e and base:
        ratio = base[0]["step_ms"]["median"] / e2e["step_ms_last50"]["median"]
        lines.append(f"[{'MET' if ratio >= 20 else 'MISSED'}] >= 20x faster per step than no-cache after "
                     f"{args.e2e_seconds:g} s of audio: {ratio:.1f}x ({base[0]['step_ms']['median']:.0f} / "
                     f"{e2e['step_ms_last50']['median']:.1f} ms, last 50 steps of the end-to-end run)")
    for dtype in results["floor"]:
        one, eight = best_step(results, dtype, 1), best_step(results, dtype, 8)
        if one and eight:
            ratio = eight["frames_per_s"] / one["frames_per_s"]
            lines.append(f"[{'MET' if ratio >= 5 else 'MISSED'}] {dtype} batch 8 >= 5x the frames/s of batch 1: "
                         f"{ratio:.2f}x ({eight['frames_per_s']:.0f} vs {one['frames_per_s']:.0f} frames/s, best "
                         f"configurations, from 0 s)")
    one, eight = best_step(results, "fp32", 1, args.e2e_seconds), best_step(results, "fp32", 8, args.e2e_seconds)
    if one and eight:
        ratio = eight["frames_per_s"] / one["frames_per_s"]
        lines.append(f"[{'MET' if ratio >= 5 else 'MISSED'}] fp32 batch 8 >= 5x the frames/s of batch 1 after "
                     f"{args.e2e_seconds:g} s (eager): {ratio:.2f}x ({eight['frames_per_s']:.0f} vs "
                     f"{one['frames_per_s']:.0f} frames/s)")
    if e2e and e2e.get("nar_s") is not None:
        ar = e2e["ar_s"] - e2e["prefill_s"]
        share = e2e["nar_s"] / ar
        lines.append(f"[{'MET' if share < 0.10 else 'MISSED'}] NAR under 10% of the AR time for {e2e['audio_s']:g} s: "
                     f"{100 * share:.0f}% ({e2e['nar_s']:.1f} s / {ar:.1f} s)")
        peak = e2e["peak_rss_bytes"]
        lines.append(f"[{'MET' if peak < 2e9 else 'MISSED'}] peak memory for {e2e['audio_s']:g} s at b1 under 2 GB "
                     f"(fp32): {peak / 1e9:.2f} GB peak RSS")
    return lines


# ---------------------------------------------------------------------------------------------------- main
def e2e_in_subprocess(args, argv, results) -> None:
    """The end-to-end run in a fresh process, so that its peak memory is that of a plain user process (model + one
    generate call), not the benchmark's (prompt KVs of every batch size, other dtypes, several compiled graphs)."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "e2e.json")
        command = [sys.executable, os.path.abspath(__file__), *argv, "--e2e-only-json", path]
        log("end-to-end run in a fresh process: " + " ".join(command[1:]))
        completed = subprocess.run(command, stdout=subprocess.DEVNULL)
        if completed.returncode != 0 or not os.path.exists(path):
            log(f"end-to-end subprocess failed (exit {completed.returncode})")
            return
        with open(path) as handle:
            child = json.load(handle)
    results["e2e"] = child["e2e"]


def e2e_only(args, device) -> None:
    results = {}
    log(f"[e2e process] building the released-size model on {device} ({torch.get_num_threads()} threads)")
    model = build_model(device, args.seed)
    text, prompt = make_inputs(model.config, 1, args.prompt_seconds, args.text_tokens, args.seed, device)
    prefix_len = prefix_ids(model.config, text, prompt).shape[1]
    results["max_cache_len"] = prefix_len + round(args.e2e_seconds * FRAME_RATE) + 1
    run_e2e(model, args, device, results)
    with open(args.e2e_only_json, "w") as handle:
        json.dump({"e2e": results["e2e"]}, handle, default=str)


def main(argv=None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    if args.e2e_only_json:
        e2e_only(args, device)
        return {}
    results = {"env": environment(args, device), "args": {k: v for k, v in vars(args).items()}, "floor": {},
               "ar": [], "baseline": []}
    if args.e2e:  # first, while this process is idle
        e2e_in_subprocess(args, argv, results)

    log(f"building the released-size model on {device} ({torch.get_num_threads()} threads)")
    model = build_model(device, args.seed)
    results["params"] = parameter_counts(model)
    fp32_first = sorted(args.dtypes, key=lambda d: d != "fp32")

    # Prompt KV per batch size, computed once in fp32 (each run copies it into its own cache).
    def prompt_kvs(batch_sizes, response_frames):
        table = {}
        for batch in batch_sizes:
            text, prompt = make_inputs(model.config, batch, args.prompt_seconds, args.text_tokens, args.seed, device)
            start = time.perf_counter()
            kv, length = prefill_kv(model, text, prompt, response_frames)
            table[batch] = (text, prompt, kv, length + 0)
            log(f"KV of the first {length - 1} positions for batch {batch}: {time.perf_counter() - start:.1f} s")
        return table

    kv_by_batch = prompt_kvs(args.batch_sizes, 0)
    prefix_len = next(iter(kv_by_batch.values()))[3]
    # Static caches are sized like a real generate() call of the end-to-end length (generate sizes them to
    # prompt + max_new_tokens), so a step reads that many cache slots whatever the current length.
    max_cache_len = prefix_len + max(args.steps, round(args.e2e_seconds * FRAME_RATE)) + 1
    results["max_cache_len"] = max_cache_len
    factory = CacheFactory(model, max_cache_len)

    for dtype_name in fp32_first:
        if dtype_name != "fp32":
            factory.clear()
            gc.collect()
            model.to(DTYPES[dtype_name])
            if dtype_name == "bf16" and not native_bf16(device):
                log("note: no native bf16 matrix instructions on this device (no AVX512-BF16/AMX): bf16 matrix-vector "
                    "products are fine, but bf16 GEMMs with several rows run through a slow conversion path")
        results["floor"][dtype_name] = measure_floor(model, dtype_name, sorted(set(args.batch_sizes) | {1}), device,
                                                     repeats=7 if not args.quick else 3)
        if dtype_name == "fp32":
            run_baseline(model, args, device, results)
            measure_host_overheads(model, args, device, results)
        if args.profile:
            profile_steps(model, args, device, kv_by_batch, factory)
        run_ar_matrix(model, dtype_name, args, device, kv_by_batch, factory, results,
                      batch_sizes=args.batch_sizes, steps=args.steps, combos=matrix_combos(args))
        if dtype_name == "fp32" and args.long_batch_sizes and args.e2e_seconds > 0:
            # The same steps after `e2e_seconds` of generated audio (eager; the end-to-end run has the compiled one).
            frames = round(args.e2e_seconds * FRAME_RATE)
            long_kv = prompt_kvs(args.long_batch_sizes, frames)
            long_len = next(iter(long_kv.values()))[3]
            long_factory = CacheFactory(model, long_len + args.long_steps + 1)
            run_ar_matrix(model, dtype_name, args, device, long_kv, long_factory, results,
                          batch_sizes=args.long_batch_sizes, steps=args.long_steps,
                          combos=matrix_combos(args, compiled=False), start_s=args.e2e_seconds)
            del long_kv, long_factory
            gc.collect()
    model.to(torch.float32)

    results["env"]["loadavg_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    report(results, args)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1, default=str)
        log(f"wrote {args.json}")
    return results


if __name__ == "__main__":
    main()
