"""Cached AR steps: ms per step through `model.generate` in each precision, against the step's weight-read floor.

Every run goes through `model.generate` (transformers' decoding loop, processors, stopping criteria, cache) with the
stop token suppressed (`min_new_tokens`), so the step count is fixed; the gaps between the steps' logits-processor
calls are the cached steps. Each run starts from an empty cache, as a user's call does (`generate` refuses a cache
that holds positions), so each pays its prefill; `--budget-s` counts from the first step, not the prefill's.

Variants: `float32` (what `generate` runs by default: oneDNN's inner product on the plain weights, the preallocated
cache), `float32-prepacked` (the `--onednn` opt-in), `bfloat16`, `int8` (decoder weights int8 through transformers'
`TorchAoConfig`, bfloat16 activations, multiplied by ATen's int8 kernel as `generate` runs them), at batch 1 and 8.
A row's steps are measured in rounds (`--ar-rounds`) with the floor (`floors.weight_read_ms`, same kernel family)
measured before and after each round: memory bandwidth drifts by a third from minute to minute on shared machines, so
each round's median step is compared with the floor measured around it, and the row's ratio is the median of its
rounds' ratios. Options add the cache-kind matrix (transformers' `DynamicCache`, `StaticCache`, static under
`torch.compile`), runs that start after some seconds of generated audio, and the original's no-cache decoding.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from dataclasses import dataclass, field

import torch

from valle_hf.errors import UsageError

from .common import (
    COUNT,
    FRAME_RATE,
    NOT_NEGATIVE,
    POSITIONS,
    SECONDS,
    StepTimer,
    Target,
    batch_sizes,
    calm,
    fmt,
    fmt_pct,
    log,
    make_inputs,
    one_of,
    option_list,
    profiler_activities,
    quiet,
    require,
    sampler_kwargs,
    summary,
    synchronize,
    top_ops,
    top_ops_lines,
)
from .floors import onednn_applies, weight_read_ms

NAME, TITLE = "ar", "cached AR steps (model.generate, stop suppressed)"
DEFAULTS = {"steps": (150, 12), "budget_s": (20.0, 6.0), "batch_sizes": ("1,8", "1,2"), "ar_rounds": (5, 2)}
# AR variant -> (model precision, how its floor's linears run: the kernel family the variant's steps use)
VARIANTS = {
    "float32": ("float32", "kernels"),
    "float32-prepacked": ("float32", "prepacked"),
    "bfloat16": ("bfloat16", "linear"),
    "int8": ("int8", "kernels"),
}
MATRIX = (("dynamic", False), ("static", False), ("static", True))  # beside the default prealloc cache
TARGET_RATIO, TARGET_BATCH_GAIN = 1.25, 5.0


def add_arguments(parser) -> None:
    group = parser.add_argument_group(NAME)
    group.add_argument("--steps", type=int, default=None, help="AR steps per run [150; quick 12]")
    group.add_argument("--budget-s", type=float, default=None,
                       help="cap on a row's decoding time (from its runs' first steps, the prefills left out): slow "
                            "rows measure fewer steps [20; quick 6]")
    group.add_argument("--ar-rounds", type=int, default=None,
                       help="rounds per row, each between two floor measurements; --steps and --budget-s are shared "
                            "among them [5; quick 2]")
    group.add_argument("--batch-sizes", default=None, help="comma-separated batch sizes [1,8; quick 1,2]")
    group.add_argument("--ar-variants", default=",".join(VARIANTS), help="comma-separated variants [all]")
    group.add_argument("--ar-start", default="0",
                       help="comma-separated seconds of generated audio before the measured steps start [0]")
    group.add_argument("--cache-matrix", action="store_true",
                       help="also run the float32 and bfloat16 variants with transformers' DynamicCache, StaticCache "
                            "and StaticCache under torch.compile (slow: compiles)")
    group.add_argument("--compile-mode", default=None,
                       choices=["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"],
                       help="torch.compile mode of --cache-matrix (default: inductor freezing on the CPU, "
                            "'reduce-overhead' on CUDA)")
    group.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True,
                       help="the original's decoding (no cache: the whole sequence recomputed per step) at 0 s and "
                            "after --seconds of audio")
    group.add_argument("--baseline-steps", type=int, default=1, help="no-cache steps per baseline run")
    group.add_argument("--ar-profile", action="store_true",
                       help="a torch.profiler table of 20 cached steps per variant (smallest batch, from 0 s)")


def check(args) -> None:
    """The module's options, before anything is built; `UsageError` for a value it cannot use."""
    require(args, {"steps": COUNT, "budget_s": SECONDS, "ar_rounds": COUNT, "baseline_steps": COUNT,
                   "floor_repeats": COUNT, "profile_rows": NOT_NEGATIVE})
    batch_sizes(args)
    variants(args)
    if args.steps <= args.ar_rounds:  # a round's steps are timed from its first (the prefill ends there)
        raise UsageError(f"--steps {args.steps} shared by --ar-rounds {args.ar_rounds} leaves a round one step, and a "
                         f"round's first step only starts its timing: give --steps above {args.ar_rounds}, or fewer "
                         "--ar-rounds")
    # the silence before the steps and the steps share the response's positions (its frames counted as generate's
    # prefix_silence counts them); so do the no-cache baseline's, after --seconds of silence
    runs = [("--ar-start", start_s, "--steps", args.steps, args.steps) for start_s in start_seconds(args)]
    if args.baseline:  # its runs take one step more than --baseline-steps
        runs.append(("--seconds", args.seconds, "--baseline-steps", args.baseline_steps, args.baseline_steps + 1))
    for start_flag, start_s, steps_flag, given, steps in runs:
        if int(start_s * FRAME_RATE) + steps > POSITIONS:
            raise UsageError(f"{start_flag} {start_s:g} with {steps_flag} {given} is past the model's positions: the "
                             f"silence before the measured steps and the steps take at most {POSITIONS} frames "
                             f"({POSITIONS / FRAME_RATE:g} s); give a smaller {start_flag} or fewer {steps_flag}")


def start_seconds(args) -> list[float]:
    """`--ar-start`: seconds of generated audio before the measured steps, each finite and >= 0."""

    def seconds(text: str) -> float:
        if not 0 <= float(text) < float("inf"):
            raise ValueError(text)
        return float(text)

    return option_list(args, "ar_start", seconds, "comma-separated finite seconds >= 0, such as 0,10")


def variants(args) -> list[str]:
    """`--ar-variants`, of `VARIANTS`."""
    return option_list(args, "ar_variants", one_of(VARIANTS), f"comma-separated variants of: {', '.join(VARIANTS)}")


# ---------------------------------------------------------------------------------------------------- prompt state
@dataclass
class PromptState:
    """A batch's inputs, after `start_s` seconds of (silence) response; `cache(kind, dtype)` hands each run an empty
    cache of that kind (None: the one `generate` chooses by default)."""

    text: torch.Tensor
    prompt: torch.Tensor
    start_s: float
    length: int
    capacity: int
    static: dict = field(default_factory=dict)

    def cache(self, kind: str, config, dtype: torch.dtype):
        from transformers import DynamicCache, StaticCache

        if kind == "prealloc":
            return None
        if kind == "dynamic":
            return DynamicCache(config=config)
        cache = self.static.get(dtype)  # one per dtype: a compiled step would be traced again for every new cache
        if cache is None:
            cache = self.static[dtype] = StaticCache(config=config, max_cache_len=self.capacity)
        cache.reset()
        return cache


def prompt_state(model, batch: int, start_s: float, args, device: torch.device) -> PromptState:
    """The inputs of a batch's runs; `start_s` seconds of silence frames as the response prefix, exactly what
    `generate(prefix_silence=start_s)` builds: the state after that much audio."""
    from valle_hf.layout import tts_sequence

    config = model.config
    text, prompt = make_inputs(config, batch, args, device)
    silence = torch.full((config.seconds_to_frames(start_s),), config.silence_codes[0], device=device)
    length = tts_sequence(config, text[0], 0, prompt.shape[1], silence).shape[0]
    # Static caches are sized as a generate() call of --seconds sizes them: a static step reads every slot.
    capacity = length + max(args.steps, round(args.seconds * FRAME_RATE)) + 1
    return PromptState(text, prompt, start_s, length, capacity)


class StepBudget:
    """A stopping criterion: the call ends once `seconds` passed since its first step (`timer`'s first timestamp),
    so that the prefill, which grows with the batch and the prompt, does not eat the steps' budget."""

    def __init__(self, timer: StepTimer, seconds: float | None):
        self.timer, self.seconds = timer, seconds

    def __call__(self, input_ids, scores, **kwargs) -> torch.BoolTensor:
        times = self.timer.times
        done = self.seconds is not None and bool(times) and time.perf_counter() - times[0] > self.seconds
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)


# ---------------------------------------------------------------------------------------------------- runs
def ar_run(model, text, prompt, steps: int, args, device: torch.device, budget_s: float | None = None,
           **extra) -> dict:
    """One generate() call of `steps` AR steps (stop suppressed; fewer where `budget_s` seconds of steps run out),
    level 0 only; the step times."""
    timer = StepTimer(device)
    synchronize(device)
    start = time.perf_counter()
    with quiet(), torch.no_grad():
        model.generate(input_ids=text, prompt_codes=prompt, max_new_tokens=steps, min_new_tokens=steps, max_levels=0,
                       output_audio=False, logits_processor=[timer], stopping_criteria=[StepBudget(timer, budget_s)],
                       **sampler_kwargs(args.sampler), **extra)
    synchronize(device)
    return {"steps_ms": timer.steps_ms(), "wall_s": time.perf_counter() - start}


@contextlib.contextmanager
def variant_linears(model, variant: str):
    """The `--onednn` opt-in for the prepacked variant; the others run as `generate` runs them."""
    if variant != "float32-prepacked":
        yield
        return
    from valle_hf.cpu_kernels import disable_onednn_linears, enable_onednn_linears

    enable_onednn_linears(model)
    try:
        yield
    finally:
        disable_onednn_linears(model)  # generate puts its default forwards back


def compile_config(args, device: torch.device):
    """transformers' `CompileConfig` for the static-cache runs (`torch.compile` of the decoding step)."""
    from transformers import CompileConfig

    if args.compile_mode or device.type == "cuda":
        config = CompileConfig(fullgraph=False, mode=args.compile_mode or "reduce-overhead")
    else:  # torch.compile takes a mode or options, not both
        config = CompileConfig(fullgraph=False, mode=None, options={"freezing": True})
    config._compile_all_devices = True  # transformers only auto-compiles on accelerators unless told otherwise
    return config


def measure(model, variant: str, state: PromptState, args, device, cache: str = "prealloc",
            compiled: bool = False) -> dict:
    """One row: the median cached step of `variant` from `state`, its floor next to it, frames/s."""
    batch = state.text.shape[0]
    how = VARIANTS[variant][1]
    row = {"variant": variant, "batch": batch, "start_s": state.start_s, "cache": cache, "compile": compiled,
           "positions": f"{state.length}..{state.length + args.steps}"}
    name = f"{variant} b{batch} {cache}{' compiled' if compiled else ''} from {state.start_s:g} s"
    extra = {"prefix_silence": state.start_s} if state.start_s else {}
    if compiled:
        extra["compile_config"] = compile_config(args, device)
    else:  # transformers compiles a static-cache call on its own on accelerators
        extra["disable_compile"] = True

    def one_run(steps, budget):
        return ar_run(model, state.text, state.prompt, steps, args, device, budget,
                      cache=state.cache(cache, model.config, model.dtype), **extra)

    rounds = max(1, args.ar_rounds)
    try:
        with variant_linears(model, variant):
            if compiled:  # compile outside the timed run
                row["compile_s"] = one_run(4, None)["wall_s"]
            floors = [weight_read_ms(model, how, batch, device, args.floor_repeats)]
            runs = []
            for _ in range(rounds):
                runs.append(calm(args, name, one_run, -(-args.steps // rounds), args.budget_s / rounds))
                floors.append(weight_read_ms(model, how, batch, device, args.floor_repeats))
    except Exception as error:  # a failing configuration is reported in the table; the others still run
        log(f"{name}: FAILED {type(error).__name__}: {error}")
        return {**row, "error": f"{type(error).__name__}: {str(error).splitlines()[0][:160]}"}
    step = summary([ms for run in runs for ms in run["steps_ms"]])
    # Each round against the floor measured around it: the mean of the floors before and after it.
    paired = [(summary(run["steps_ms"]).get("median"), (before + after) / 2)
              for run, before, after in zip(runs, floors, floors[1:], strict=False)]
    ratios = [ms / floor for ms, floor in paired if ms]
    foreign = max(run["foreign_load"] for run in runs)
    row.update(step_ms=step, floor_ms=statistics.median(floors), floors_ms=floors, round_ratios=ratios,
               foreign_load=foreign, runs=sum(run["runs"] for run in runs),
               ratio=statistics.median(ratios) if ratios else None,
               frames_per_s=batch * 1e3 / step["median"] if step["n"] else None)
    log(f"{name}: {fmt(step.get('median'))} ms/step over {step['n']} steps; floor {row['floor_ms']:.1f} ms "
        f"({min(floors):.1f}-{max(floors):.1f}); x floor per round " + " ".join(f"{r:.2f}" for r in ratios)
        + f"; others {fmt_pct(foreign)}")
    return row


def profile_steps(model, variant: str, state: PromptState, args, device, steps: int = 20) -> dict:
    """torch.profiler over `steps` cached steps of a variant: the top ops by self time per step. A short run first,
    so that one-time work (the prepacked variant packs its weights on first use) stays out of the table."""
    from torch.profiler import profile

    def one_run(count):
        ar_run(model, state.text, state.prompt, count, args, device,
               cache=state.cache("prealloc", model.config, model.dtype))

    with variant_linears(model, variant):
        one_run(2)
        with profile(activities=profiler_activities(device)) as prof:
            one_run(steps)
    return {"variant": variant, "batch": state.text.shape[0], **top_ops(prof, args.profile_rows, device, per=steps)}


def baseline(model, args, device) -> list[dict]:
    """The original's decoding: the whole sequence re-embedded and recomputed at every step (`use_cache=False`),
    at batch 1 from the start of the response and after `--seconds` of audio."""
    rows = []
    for seconds in sorted({0.0, args.seconds}):
        text, prompt = make_inputs(model.config, 1, args, device)
        run = calm(args, f"no-cache baseline after {seconds:g} s", ar_run, model, text, prompt,
                   args.baseline_steps + 1, args, device, use_cache=False, prefix_silence=seconds)
        rows.append({"audio_s": seconds, "step_ms": summary(run["steps_ms"]), "foreign_load": run["foreign_load"]})
        log(f"no-cache baseline after {seconds:g} s: {rows[-1]['step_ms']['median']:.0f} ms/step")
    return rows


def run(args, context) -> dict:
    device = context.device
    batches, starts, chosen = batch_sizes(args), start_seconds(args), variants(args)
    if not onednn_applies(device) and "float32-prepacked" in chosen:
        chosen.remove("float32-prepacked")  # oneDNN prepacking is a CPU path
    rows, profiles = [], []
    for start_s in starts:
        for batch in batches:
            state = prompt_state(context.model("float32"), batch, start_s, args, device)
            for variant in chosen:
                rows.append(measure(context.model(VARIANTS[variant][0]), variant, state, args, device))
                if args.ar_profile and batch == min(batches) and start_s == starts[0]:
                    profiles.append(profile_steps(context.model(VARIANTS[variant][0]), variant, state, args, device))
            if args.cache_matrix:
                for variant in [v for v in chosen if v in ("float32", "bfloat16")]:
                    rows += [measure(context.model(variant), variant, state, args, device, cache, compiled)
                             for cache, compiled in MATRIX]
            del state
    base = baseline(context.model("float32"), args, device) if args.baseline else []
    return {"rows": rows, "baseline": base, "profiles": profiles}


# ---------------------------------------------------------------------------------------------------- report
def _row(result: dict, variant: str, batch: int, start_s: float = 0.0) -> dict | None:
    return next((r for r in result["rows"] if r["variant"] == variant and r["batch"] == batch
                 and r["start_s"] == start_s and r["cache"] == "prealloc" and not r["compile"] and r.get("step_ms")
                 and r["step_ms"]["n"]), None)


def report(result: dict) -> list[str]:
    lines = [f"  {'variant':18} {'batch':>5} {'from':>5} {'cache':8} {'compile':7} {'ms/step':>8} {'p10-p90':>13} "
             f"{'floor':>6} {'x floor':>7} {'frames/s':>8} {'vs b1':>5} {'others':>6}"]
    for row in result["rows"]:
        head = (f"  {row['variant']:18} {row['batch']:>5} {row['start_s']:>4g}s {row['cache']:8} "
                f"{'yes' if row['compile'] else '-':7}")
        if "error" in row:
            lines.append(f"{head} FAILED: {row['error']}")
            continue
        step, one = row["step_ms"], _row(result, row["variant"], 1, row["start_s"])
        gain = row["frames_per_s"] / one["frames_per_s"] if one and row["frames_per_s"] and row["batch"] > 1 else None
        lines.append(f"{head} {fmt(step.get('median')):>8} {fmt(step.get('p10')):>6}-{fmt(step.get('p90')):<6} "
                     f"{row['floor_ms']:6.1f} {fmt(row['ratio'], '.2f'):>7} {fmt(row['frames_per_s']):>8} "
                     f"{fmt(gain, '.2f'):>5} {fmt_pct(row['foreign_load']):>6}"
                     + (f"  (compile {row['compile_s']:.0f} s)" if "compile_s" in row else ""))
    for row in result["baseline"]:
        lines.append(f"  no-cache baseline (float32, b1) after {row['audio_s']:g} s of audio: "
                     f"{fmt(row['step_ms'].get('median'), '.0f')} ms/step (others {fmt_pct(row['foreign_load'])})")
    for profile in result["profiles"]:
        lines += top_ops_lines(profile, f"one cached step of {profile['variant']} b{profile['batch']} (per step)")
    return lines


def targets(result: dict) -> list[Target]:
    found = []
    for variant in ("float32", "bfloat16", "int8"):
        row = _row(result, variant, 1)
        text = f"AR cached step b1 {variant} <= {TARGET_RATIO}x its floor"
        if row is None:
            found.append(Target(None, f"{text}: not measured"))
            continue
        found.append(Target(row["ratio"] <= TARGET_RATIO, f"{text}: {row['ratio']:.2f}x (median of "
                            f"{len(row['round_ratios'])} rounds, each against the floor measured around it; "
                            f"{row['step_ms']['median']:.1f} ms/step, floor {row['floor_ms']:.1f} ms)",
                            row["foreign_load"]))
    one, eight = _row(result, "float32", 1), _row(result, "float32", 8)
    text = f"AR batch 8 >= {TARGET_BATCH_GAIN:g}x the frames/s of batch 1 (float32, default path)"
    if one and eight:
        gain = eight["frames_per_s"] / one["frames_per_s"]
        found.append(Target(gain >= TARGET_BATCH_GAIN, f"{text}: {gain:.2f}x ({eight['frames_per_s']:.0f} vs "
                            f"{one['frames_per_s']:.0f} frames/s)", max(one["foreign_load"], eight["foreign_load"])))
    else:
        found.append(Target(None, f"{text}: not measured (needs --batch-sizes with 1 and 8)"))
    return found


if __name__ == "__main__":
    import sys

    from .__main__ import main

    sys.exit(main(only=[NAME]))
