"""The NAR: levels 1..7 over `--seconds` of speech at batch 1, per `nar_dtype`, against its compute floor.

The AR is skipped: `model._generate_nar` (what `generate` calls after the AR) runs on fixed random level-0 codes, in
the contexts `generate` gives it (oneDNN linears for float32 on the CPU, the `nar_dtype`'s autocast, no gradients).
Settings: `float32` (float32 model, `nar_dtype="float32"`), `auto` (float32 model, `nar_dtype="auto"`: bfloat16
autocast where the hardware multiplies it fast, float32 elsewhere), `int8` (int8 decoder weights, bfloat16
activations).

* **Compute floor**: 7 x the time of one level's matrix products at their own shapes, in the same precision and
  kernels, measured right before and after the run (`floors.nar_products`: 12 x (one layer's seven linears + causal
  SDPA at the sequence length) + the head over the response frames). Above it: embeddings, norms, rotary,
  elementwise work and casts; one pass's `torch.profiler` table (top ops by self CPU time) shows which.
* **Text segment**: the text precedes the level token and attention is causal, so the text positions' keys and values
  are the same at every level and could be computed once. The share of a pass's time they take is measured as the
  time of a pass minus that of a pass without the text (a slight over-estimate: the other positions would still
  attend to the text's keys); reuse would save 6/7 of it over the 7 levels.
"""

from __future__ import annotations

import contextlib
import copy
import time

import torch

from .common import (
    COUNT,
    NAR_LEVELS,
    NOT_NEGATIVE,
    Target,
    calm,
    fmt_pct,
    log,
    make_inputs,
    median_ms,
    one_of,
    option_list,
    profiler_activities,
    require,
    synchronize,
    top_ops,
    top_ops_lines,
)
from .floors import nar_floor_ms, nar_kind, nar_length

NAME, TITLE = "nar", "NAR (7 levels, batch 1) against its compute floor"
DEFAULTS = {"nar_repeats": (3, 1)}
SETTINGS = {"float32": ("float32", "float32"), "auto": ("float32", "auto"), "int8": ("int8", "auto")}
TARGET_RATIO = 1.3


def add_arguments(parser) -> None:
    group = parser.add_argument_group(NAME)
    group.add_argument("--nar-settings", default=",".join(SETTINGS),
                       help="comma-separated: float32, auto (nar_dtype='auto' on the float32 model), int8")
    group.add_argument("--nar-repeats", type=int, default=None,
                       help="timed single passes for the text-segment share and the floor [3; quick 1]")
    group.add_argument("--profile-rows", type=int, default=8,
                       help="ops in the profile tables (one NAR pass; with --ar-profile, AR steps); 0: none")


def check(args) -> None:
    """The module's options, before anything is built; `UsageError` for a value it cannot use."""
    require(args, {"nar_repeats": COUNT, "profile_rows": NOT_NEGATIVE})
    settings(args)


def settings(args) -> list[str]:
    """`--nar-settings`, of `SETTINGS`."""
    return option_list(args, "nar_settings", one_of(SETTINGS), f"comma-separated settings of: {', '.join(SETTINGS)}")


def nar_inputs(model, args, device: torch.device):
    """`_generate_nar`'s inputs for batch 1: the text row, the prompt, random level-0 codes of `--seconds`."""
    from valle_hf.generation import _Prompts

    config = model.config
    text, prompt = make_inputs(config, 1, args, device)
    frames = round(args.seconds * config.frame_rate)
    level0 = torch.randint(0, config.audio_vocab_size, (frames,), generator=torch.Generator().manual_seed(args.seed))
    return [text[0]], _Prompts(prompt, [prompt.shape[1]]), [level0.to(device)]


@contextlib.contextmanager
def as_generate(model, nar_dtype: str):
    """The state `generate` runs the NAR in: no gradients, the CPU kernels of the linears, the NAR's autocast."""
    from valle_hf.cpu_kernels import use_cpu_kernels

    config = copy.copy(model.generation_config)
    config.nar_dtype = nar_dtype
    use_cpu_kernels(model)
    with torch.no_grad(), model.nar_precision(config, keep_casts=False):
        yield


def time_nar(model, inputs, nar_dtype: str, device: torch.device, levels: int = NAR_LEVELS) -> dict:
    """Seconds of one `_generate_nar` call (greedy) filling `levels` levels."""
    with as_generate(model, nar_dtype):
        synchronize(device)
        start = time.perf_counter()
        model._generate_nar(*inputs, levels, 0.0, None)
        synchronize(device)
    return {"s": time.perf_counter() - start}


def pass_inputs(model, inputs, level: int = 1, with_text: bool = True) -> dict:
    """The forward arguments of one NAR pass, as `_generate_nar` builds them (optionally without the text)."""
    from valle_hf.layout import tts_sequence

    texts, prompts, level0 = inputs
    text = texts[0] if with_text else texts[0][:0]
    frames = len(level0[0])
    ids = tts_sequence(model.config, text, level, prompts.lengths[0], response_frames=frames)[None]
    codes = level0[0][None, :, None].expand(-1, -1, level)  # the codes of levels < `level`; values do not matter
    return dict(input_ids=ids, attention_mask=torch.ones_like(ids), prompt_codes=prompts.codes, audio_codes=codes,
                level=level, task="tts", logits_to_keep=frames, use_cache=False)


def text_share(model, inputs, nar_dtype: str, args, device: torch.device) -> dict:
    """Time of one pass with and without the text segment: the part computing the text's KV once would save."""
    full, bare = pass_inputs(model, inputs), pass_inputs(model, inputs, with_text=False)
    with as_generate(model, nar_dtype):
        full_ms = median_ms(lambda: model(**full), args.nar_repeats, device)
        bare_ms = median_ms(lambda: model(**bare), args.nar_repeats, device)
    share = max(0.0, (full_ms - bare_ms) / full_ms)
    return {"text_positions": len(inputs[0][0]), "positions": full["input_ids"].shape[1], "pass_ms": full_ms,
            "pass_without_text_ms": bare_ms, "share": share, "saving_7_levels": share * (NAR_LEVELS - 1) / NAR_LEVELS}


def profile_pass(model, inputs, nar_dtype: str, rows: int) -> dict:
    """torch.profiler over one NAR pass: the top ops by self time on the device (CPU, or CUDA kernels). An untimed
    pass first, in the same autocast region: a generate call casts each weight once for its 7 levels, so a level's
    pass does not cast."""
    from torch.profiler import profile

    arguments = pass_inputs(model, inputs)
    with as_generate(model, nar_dtype):
        model(**arguments)
        with profile(activities=profiler_activities(model.device)) as prof:
            model(**arguments)
            synchronize(model.device)
    return top_ops(prof, rows, model.device)


def measure(model, label: str, nar_dtype: str, args, device: torch.device) -> dict:
    """One setting: the 7 levels timed between two floor measurements, the text share and a profile."""
    inputs = nar_inputs(model, args, device)
    rows, frames = nar_length(model.config, args)
    kind = nar_kind(model, nar_dtype, device)
    time_nar(model, inputs, nar_dtype, device, levels=1)  # warm-up: kernels' first-call setup
    floors = [nar_floor_ms(model, kind, rows, frames, device, args.nar_repeats) / 1e3]
    run = calm(args, f"NAR {label}", time_nar, model, inputs, nar_dtype, device)
    floors.append(nar_floor_ms(model, kind, rows, frames, device, args.nar_repeats) / 1e3)
    result = {"setting": label, "kind": kind, "seconds": args.seconds, "positions": rows, "frames": frames,
              "nar_s": run["s"], "floor_s": min(floors), "ratio": run["s"] / min(floors),
              "foreign_load": run["foreign_load"], "text": text_share(model, inputs, nar_dtype, args, device)}
    if args.profile_rows:
        result["profile"] = profile_pass(model, inputs, nar_dtype, args.profile_rows)
    log(f"NAR {label} ({kind}): {run['s']:.2f} s, floor {min(floors):.2f} s")
    return result


def run(args, context) -> dict:
    return {"settings": [measure(context.model(SETTINGS[label][0]), label, SETTINGS[label][1], args, context.device)
                         for label in settings(args)]}


def report(result: dict) -> list[str]:
    lines = []
    for row in result["settings"]:
        text = row["text"]
        lines.append(f"  {row['setting']:8} ({row['kind']}): {NAR_LEVELS} levels over {row['seconds']:g} s "
                     f"({row['positions']} positions) {row['nar_s']:.2f} s; compute floor {row['floor_s']:.2f} s; "
                     f"{row['ratio']:.2f}x, {row['nar_s'] - row['floor_s']:.2f} s above it; others "
                     f"{fmt_pct(row['foreign_load'])}")
        lines.append(f"    text segment ({text['text_positions']} of {text['positions']} positions): a pass takes "
                     f"{text['pass_ms']:.0f} ms, {text['pass_without_text_ms']:.0f} ms without it "
                     f"({fmt_pct(text['share'])}); computing its KV once would save "
                     f"{fmt_pct(text['saving_7_levels'])} of the NAR")
        if "profile" in row:
            lines += top_ops_lines(row["profile"], "one pass")
    return lines


def targets(result: dict) -> list[Target]:
    return [Target(row["ratio"] <= TARGET_RATIO, f"NAR ({NAR_LEVELS} levels, {row['seconds']:g} s, {row['setting']}: "
                   f"{row['kind']}) <= {TARGET_RATIO}x its compute floor: {row['ratio']:.2f}x ({row['nar_s']:.2f} / "
                   f"{row['floor_s']:.2f} s)", row["foreign_load"]) for row in result["settings"]]


if __name__ == "__main__":
    import sys

    from .__main__ import main

    sys.exit(main(only=[NAME]))
