"""End to end: one real `generate` call (AR, 7 NAR levels, Vocos decoding) in a fresh process.

`--seconds` of speech at batch 1 (the stop token suppressed, so the AR takes exactly 75 steps per second), in a
subprocess so that peak RSS is that of a user process (the model and one call; reset right before the call through
`/proc/self/clear_refs`, read from `VmHWM`; on CUDA, `max_memory_allocated`). Variants:

* `default`: the float32 model as `generate` runs it by default (float32 AR through oneDNN, `nar_dtype="auto"`);
* `auto`: what `valle_hf.hardware.choose_precision(device)` decides on this machine (the CLI's `--dtype auto`),
  measured afresh (a temporary package cache), `nar_dtype="auto"`; the same as `default` where it keeps float32;
* `int8`: what `choose_precision(device, quantize="int8")` decides (int8 requested), loaded as
  `load_model_and_processor(quantize=...)` would, `nar_dtype="auto"`.

Reported: prefill, AR steps, NAR and decoding times, the real-time factor (RTF, wall time / seconds of speech), its
floor (the AR steps at the weight-read floor plus the NAR at its compute floor, `floors`), peak memory; and for the
default variant, frames per second of batch `--e2e-batch` against batch 1. One short untimed call first does the
kernels' first-call setup, as an already-running service would have.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from valle_hf.errors import option_name

from .common import (
    COUNT,
    FRAME_RATE,
    NOT_NEGATIVE,
    ForeignLoad,
    StepTimer,
    Target,
    build_model,
    fmt,
    fmt_pct,
    int8_model,
    log,
    make_inputs,
    one_of,
    option_list,
    peak_rss_bytes,
    quiet,
    require,
    reset_peak_memory,
    rss_bytes,
    sampler_kwargs,
    setup,
    summary,
    synchronize,
    timed_method,
    trim_heap,
)
from .floors import nar_floor_ms, nar_kind, nar_length, weight_read_ms

NAME, TITLE = "e2e", "end to end: one generate() call in a fresh process"
DEFAULTS = {"e2e_batch": (8, 2)}
VARIANTS = ("default", "auto", "int8")
REPO = Path(__file__).resolve().parents[1]
# The child gets the run's options that shape its measurement.
FORWARDED = ("device", "seconds", "seed", "prompt_seconds", "text_tokens", "sampler", "e2e_batch", "floor_repeats",
             "nar_repeats")
TARGET_MEMORY_BYTES = 2e9


def add_arguments(parser) -> None:
    group = parser.add_argument_group(NAME)
    group.add_argument("--e2e-variants", default=",".join(VARIANTS), help="comma-separated: default, auto, int8")
    group.add_argument("--e2e-batch", type=int, default=None,
                       help="batch size compared with batch 1 (default variant; 0: none) [8; quick 2]")
    group.add_argument("--e2e-child", default=None, help=argparse.SUPPRESS)  # VARIANT:RESULT_PATH, in the child


def check(args) -> None:
    """The module's options, before anything is built; `UsageError` for a value it cannot use."""
    require(args, {"e2e_batch": NOT_NEGATIVE, "floor_repeats": COUNT, "nar_repeats": COUNT})
    variants(args)


def variants(args) -> list[str]:
    """`--e2e-variants`, of `VARIANTS`."""
    return option_list(args, "e2e_variants", one_of(VARIANTS), f"comma-separated variants of: {', '.join(VARIANTS)}")


# ---------------------------------------------------------------------------------------------------- the parent
def in_subprocess(args, variant: str) -> dict:
    """One variant's measurement in a fresh Python process; its result dict (or an error)."""
    with tempfile.TemporaryDirectory(prefix="valle_bench_e2e_") as folder:
        path = os.path.join(folder, "result.json")
        command = [sys.executable, "-m", "benchmarks.end_to_end", "--threads", str(torch.get_num_threads()),
                   "--e2e-child", f"{variant}:{path}"]
        for name in FORWARDED:
            command += [option_name(name), str(getattr(args, name))]
        # A fresh package cache: choose_precision measures this machine now, and the user's cache stays untouched.
        env = {**os.environ, "VALLE_HF_CACHE": os.path.join(folder, "cache")}
        log(f"end to end ({variant}) in a fresh process")
        completed = subprocess.run(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL)
        if completed.returncode != 0 or not os.path.exists(path):
            return {"variant": variant, "error": f"the subprocess failed (exit {completed.returncode})"}
        with open(path) as handle:
            return json.load(handle)


def run(args, context) -> dict:
    return {"runs": [in_subprocess(args, variant) for variant in variants(args)]}


# ---------------------------------------------------------------------------------------------------- the child
def load_variant(variant: str, args, device: torch.device):
    """The model of a variant and the line that says its precision."""
    model = build_model(device, args.seed)
    if variant == "default":
        return model, "AR float32" + (" through oneDNN" if device.type == "cpu" else "") + ", nar_dtype auto"
    from valle_hf.hardware import choose_precision, quiet_torchao_import
    with quiet_torchao_import():
        precision = choose_precision(device, quantize="int8" if variant == "int8" else None)
    model = int8_model(model, precision.dtype) if precision.quantize else model.to(precision.dtype)
    return model, precision.describe()


def timed_generate(model, batch: int, args, device: torch.device) -> dict:
    """One generate() of `--seconds` of speech at `batch` rows, after a short untimed call; times and memory."""
    steps = round(args.seconds * FRAME_RATE)
    text, prompt = make_inputs(model.config, batch, args, device)
    kwargs = dict(input_ids=text, prompt_codes=prompt, nar_dtype="auto", output_audio=True,
                  return_dict_in_generate=True, **sampler_kwargs(args.sampler))
    with quiet():
        model.generate(**kwargs, max_new_tokens=2, min_new_tokens=2)
    trim_heap()
    rss_before, reset = rss_bytes(), reset_peak_memory(device)
    timer, parts = StepTimer(device), {}
    with quiet(), timed_method(model, "_generate_nar", device, parts), timed_method(model, "_decode", device, parts):
        load = ForeignLoad()
        synchronize(device)
        start = time.perf_counter()
        model.generate(**kwargs, max_new_tokens=steps, min_new_tokens=steps, logits_processor=[timer])
        synchronize(device)
        total = time.perf_counter() - start
    prefill = timer.times[0] - start
    row = {"batch": batch, "seconds": args.seconds, "steps": steps, "total_s": total, "prefill_s": prefill,
           "ar_steps_s": timer.times[-1] - timer.times[0], "nar_s": parts["_generate_nar"],
           "decode_s": parts["_decode"], "rtf": total / args.seconds, "frames_per_s": batch * steps / total,
           "step_ms": summary(timer.steps_ms()), "rss_before_bytes": rss_before, "peak_rss_bytes": peak_rss_bytes(),
           "peak_reset": reset, "foreign_load": load.share()}
    if device.type == "cuda":
        row["cuda_peak_bytes"] = torch.cuda.max_memory_allocated(device)
    log(f"end to end b{batch}: {total:.1f} s for {args.seconds:g} s, RTF {row['rtf']:.2f}")
    return row


def floor(model, args, device: torch.device) -> dict:
    """The RTF floor of the call: its AR steps at the weight-read floor, its NAR at the compute floor."""
    steps = round(args.seconds * FRAME_RATE)
    step_ms = weight_read_ms(model, "kernels", 1, device, args.floor_repeats)  # the kernels generate runs
    rows, frames = nar_length(model.config, args)
    nar_s = nar_floor_ms(model, nar_kind(model, "auto", device), rows, frames, device, args.nar_repeats) / 1e3
    return {"step_ms": step_ms, "nar_s": nar_s, "rtf": (steps * step_ms / 1e3 + nar_s) / args.seconds}


def child(args) -> None:
    device = setup(args)
    variant, path = args.e2e_child.split(":", 1)
    model, precision = load_variant(variant, args, device)
    result = {"variant": variant, "precision": precision, "b1": timed_generate(model, 1, args, device)}
    if variant == "default" and args.e2e_batch > 1:
        result["batch"] = timed_generate(model, args.e2e_batch, args, device)
    result["floor"] = floor(model, args, device)
    with open(path, "w") as handle:
        json.dump(result, handle)


# ---------------------------------------------------------------------------------------------------- report
def peak_bytes(row: dict) -> int:
    return row.get("cuda_peak_bytes", row["peak_rss_bytes"])


def memory_line(row: dict) -> str:
    line = (f"    memory: peak RSS {row['peak_rss_bytes'] / 1e9:.2f} GB during the call "
            f"({row['rss_before_bytes'] / 1e9:.2f} GB before it)")
    if not row["peak_reset"]:
        line += " (the peak could not be reset: the process's whole lifetime)"
    if "cuda_peak_bytes" in row:
        line += f"; CUDA peak allocated {row['cuda_peak_bytes'] / 1e9:.2f} GB"
    return line


def report(result: dict) -> list[str]:
    lines = []
    for run in result["runs"]:
        if "error" in run:
            lines.append(f"  {run['variant']}: FAILED: {run['error']}")
            continue
        b1, low = run["b1"], run["floor"]
        glue = b1["total_s"] - b1["prefill_s"] - b1["ar_steps_s"] - b1["nar_s"] - b1["decode_s"]
        lines += [
            f"  {run['variant']} ({run['precision']}):",
            f"    {b1['seconds']:g} s of speech in {b1['total_s']:.2f} s = prefill {b1['prefill_s']:.2f} + AR steps "
            f"{b1['ar_steps_s']:.2f} ({fmt(b1['step_ms'].get('median'))} ms/step) + NAR {b1['nar_s']:.2f} + decode "
            f"{b1['decode_s']:.2f} (+ {glue:.2f}); RTF {b1['rtf']:.2f}; others {fmt_pct(b1['foreign_load'])}",
            f"    floor: RTF {low['rtf']:.2f} ({b1['steps']} steps x {low['step_ms']:.1f} ms + NAR "
            f"{low['nar_s']:.2f} s)",
            memory_line(b1),
        ]
        if "batch" in run:
            batch = run["batch"]
            lines.append(f"    batch {batch['batch']}: {batch['frames_per_s']:.1f} frames/s against "
                         f"{b1['frames_per_s']:.1f} at batch 1 ({batch['frames_per_s'] / b1['frames_per_s']:.2f}x; "
                         f"RTF per row {batch['rtf'] / batch['batch']:.2f})")
    return lines


def targets(result: dict) -> list[Target]:
    found = []
    for run in result["runs"]:
        if "error" in run:
            found.append(Target(None, f"end to end {run['variant']}: the run failed"))
            continue
        b1, low = run["b1"], run["floor"]
        found.append(Target(b1["rtf"] < 1, f"end to end {b1['seconds']:g} s b1 {run['variant']} faster than real "
                            f"time: RTF {b1['rtf']:.2f} (its floor: RTF {low['rtf']:.2f})", b1["foreign_load"]))
        peak = peak_bytes(b1)
        found.append(Target(peak < TARGET_MEMORY_BYTES, f"peak memory for {b1['seconds']:g} s b1 {run['variant']} "
                                                        f"under 2 GB: {peak / 1e9:.2f} GB"))
    return found


if __name__ == "__main__":
    from .__main__ import main, parse

    if "--e2e-child" in sys.argv:  # the parent's own command line: a mistake there is a bug, with its traceback
        child(parse(only=[NAME])[0])
    else:
        sys.exit(main(only=[NAME]))
