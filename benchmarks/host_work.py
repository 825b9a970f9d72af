"""Per-step host work outside the backbone, timed on its own (float32), none of which should grow with the sequence.

At the start of the response and after `--seconds` of audio, at each AR batch size: the step's model inputs
(`prepare_inputs_for_generation`: position ids and the embedding of the new token) and each processor of the "full"
sampler chain (every VALL-E processor on), each timed as a continuing call (the call at length L follows the call at
L - 1, as in decoding, so stateful processors such as DRY update their state instead of recomputing it).
"""

from __future__ import annotations

import functools
import statistics
import time

import torch

from .common import FRAME_RATE, batch_sizes, make_inputs, median_ms, sampler_kwargs, synchronize

NAME, TITLE = "host", "per-step host work outside the backbone (timed alone, continuing calls)"


def add_arguments(parser) -> None:
    """No options of its own: the batch sizes are the AR's (`--batch-sizes`), the lengths follow `--seconds`."""


def check(args) -> None:
    batch_sizes(args)


def continuing_call_ms(processor, ids, scores, device: torch.device, repeats: int = 30) -> float:
    """Median time of a processor's call at `ids` right after its call at `ids[:, :-1]`: a decoding step."""
    times = []
    for _ in range(repeats):
        processor(ids[:, :-1], scores.clone())
        synchronize(device)
        start = time.perf_counter()
        processor(ids, scores.clone())
        synchronize(device)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def measure(model, processors, batch: int, audio_s: float, args, device: torch.device) -> dict:
    from valle_hf.layout import tts_sequence

    config = model.config
    text, prompt = make_inputs(config, batch, args, device)
    prefix = torch.stack([tts_sequence(config, row, 0, prompt.shape[1]) for row in text])
    response = torch.randint(0, config.audio_vocab_size, (batch, round(audio_s * FRAME_RATE) + 1), device=device)
    ids = torch.cat([prefix, response], dim=1)
    scores = torch.randn(batch, config.audio_vocab_size + 1, device=device)
    offset = torch.full((batch, 1), prefix.shape[1], device=device)
    step_inputs = functools.partial(model.prepare_inputs_for_generation, ids, next_sequence_length=1,
                                    attention_mask=torch.ones_like(ids), response_position_offset=offset, task="tts",
                                    level=0)
    with torch.no_grad():
        inputs_ms = median_ms(step_inputs, 30, device)
        per_processor = {type(p).__name__: continuing_call_ms(p, ids, scores, device) for p in processors}
    return {"batch": batch, "sequence_len": ids.shape[1], "step_inputs_ms": inputs_ms, "processors_ms": per_processor,
            "processors_total_ms": sum(per_processor.values())}


def run(args, context) -> dict:
    from valle_hf.logits_process import build_sampler_processors

    model = context.model("float32")
    settings = {k: v for k, v in sampler_kwargs("full").items() if k not in ("do_sample", "input_prompt_length")}
    processors = build_sampler_processors(stop_token_id=model.config.stop_token_id, **settings)
    batches = sorted(set(batch_sizes(args)))
    return {"rows": [measure(model, processors, batch, audio_s, args, context.device)
                     for batch in batches for audio_s in sorted({0.0, args.seconds})]}


def report(result: dict) -> list[str]:
    lines = []
    for row in result["rows"]:
        names = ", ".join(f"{name.replace('LogitsProcessor', '').replace('LogitsWarper', '')} {ms:.2f}"
                          for name, ms in row["processors_ms"].items())
        lines.append(f"  b{row['batch']} L={row['sequence_len']}: step inputs {row['step_inputs_ms']:.3f} ms; 'full' "
                     f"sampler chain {row['processors_total_ms']:.2f} ms ({names})")
    return lines


if __name__ == "__main__":
    import sys

    from .__main__ import main

    sys.exit(main(only=[NAME]))
