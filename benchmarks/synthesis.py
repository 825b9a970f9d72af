"""Corpus synthesis throughput at the released model's size: rows per second and seconds of audio per second of
`valle_hf.synthesize` for several batch sizes.

    python -m benchmarks.synthesis                      # batch sizes 1, 4, 8, 16; 16 rows of 40 AR steps
    python -m benchmarks.synthesis --batch-sizes 1,8 --rows 8 --max-ar-steps 75 --json synthesis.json

The model is `VallEConfig()` (the released ar+nar-llama-8 size: 12 layers, d_model 1024) with random weights, a
full-size random Vocos decoder and the tiny test codec for the prompts, so nothing is downloaded. Every batch size
speaks the same manifest (one sentence per row, three voices) through `valle_hf.synthesize.synthesize`, the path
the command runs: phonemes, prompt cache, batching by length, `generate` (AR, the 7 NAR levels, Vocos), WAVs and
done.jsonl. Rows have their own seeds, so every batch size speaks exactly the same rows and the same seconds of
audio (random weights rarely emit the stop token, so rows run to about --max-ar-steps). The defaults (40 steps,
1 s voice prompts, where the CLI's default is 3 s) keep a run of the four batch sizes to about 10 minutes on 2 CPU
cores: the NAR's 7 passes over text, prompt and response cost the same per row at any batch size, and dominate short
rows. The model is built once; a warm-up row runs first. `others` is the share of the machine's CPU time other
processes took during a run (this machine is shared): read rows where it is high as slowed down.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
import torch

from valle_hf.errors import ArgumentParser, entry_point, named, named_path

from .common import (
    COUNT,
    FRAME_SECONDS,
    POSITIONS,
    ForeignLoad,
    batch_sizes,
    check_output_file,
    fmt_pct,
    machine_info,
    require,
    setup,
    write_json,
)

SENTENCES = [
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It is easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.",
    "A large size in stockings is hard to sell.",
    "The boy was there when the sun rose.",
    "A rod is used to catch pink salmon.",
    "The source of the huge river is the clear spring.",
    "Kick the ball straight and follow through.",
    "Help the woman get back to her feet.",
    "A pot of tea helps to pass the evening.",
]


def parse_args(argv=None) -> argparse.Namespace:
    """The options, checked before the model is built (`UsageError` for one the run cannot use)."""
    parser = ArgumentParser(prog="python -m benchmarks.synthesis", description=__doc__.split("\n\n")[0],
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--batch-sizes", default="1,4,8,16", help="comma-separated batch sizes (sentences per call)")
    parser.add_argument("--rows", type=int, default=16, help="rows of the manifest (one sentence each)")
    parser.add_argument("--max-ar-steps", type=int, default=40, help="AR step limit per row (75 steps = 1 s)")
    parser.add_argument("--prompt-seconds", type=float, default=1.0,
                        help="length of each voice prompt (its input_prompt_length; the CLI's default is 3 s)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--device", type=named, default="cpu", help="cpu, cuda, ... [cpu]")
    parser.add_argument("--json", type=named_path, default=None, help="also write the results to this file")
    args = parser.parse_args(argv)
    steps = (lambda value: 1 <= value <= POSITIONS, f"an integer in [1, {POSITIONS}] (the model's positions)")
    require(args, {"rows": COUNT, "max_ar_steps": steps, "prompt_seconds": FRAME_SECONDS, "threads": COUNT})
    args.batch_sizes = batch_sizes(args)
    if args.json:
        check_output_file(args.json, "--json")
    setup(args)
    return args


def build_model(device: str):
    """The released size with random weights: a full-size Vocos, the tiny test codec (only the prompts use it)."""
    from valle_hf.codec import tiny_random_codec
    from valle_hf.configuration import VallEConfig
    from valle_hf.modeling import VallEForConditionalGeneration
    from valle_hf.processing import VallEProcessor
    from valle_hf.vocos import VocosConfig

    config = VallEConfig(codec_config=tiny_random_codec().config.to_dict(), vocoder_config=VocosConfig().to_dict())
    torch.manual_seed(0)
    model = VallEForConditionalGeneration(config).eval().to(device)
    model.requires_grad_(False)
    return model, VallEProcessor.from_tokenizer_file()


def write_corpus(root: Path, rows: int, prompt_seconds: float) -> Path:
    """A manifest of `rows` one-sentence rows over three voices (tones with noise), each row with its own seed."""
    samples = np.arange(round(24000 * prompt_seconds)) / 24000
    generator = np.random.default_rng(0)
    for index, frequency in enumerate((180.0, 260.0, 340.0)):
        voice = 0.3 * np.sin(2 * np.pi * frequency * samples) + 0.05 * generator.standard_normal(len(samples))
        soundfile.write(root / f"voice{index}.wav", voice.astype(np.float32), 24000)
    lines = [json.dumps({"id": f"row{index:03d}", "text": SENTENCES[index % len(SENTENCES)],
                         "prompt": f"voice{index % 3}.wav", "seed": index}) for index in range(rows)]
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root / "manifest.jsonl"


def measure(model, processor, manifest: Path, batch_size: int, max_ar_steps: int, prompt_seconds: float) -> dict:
    """One synthesis of the whole manifest into a fresh folder, timed."""
    from valle_hf.synthesize import synthesize

    with tempfile.TemporaryDirectory(prefix="valle_synthesis_") as out:
        load = ForeignLoad()
        started = time.perf_counter()
        plan, report = synthesize(manifest, out, model, processor, batch_size=batch_size, progress=False,
                                  max_ar_steps=max_ar_steps, input_prompt_length=prompt_seconds)
        seconds = time.perf_counter() - started
        others = load.share()
        audio = {path.name: soundfile.read(path, dtype="float32")[0] for path in Path(out).glob("*.wav")}
    assert report.rows == len(audio) and not plan.failures and not report.failed
    return {"batch_size": batch_size, "rows": report.rows, "audio_seconds": round(report.audio_seconds, 3),
            "seconds": round(seconds, 2), "rows_per_second": round(report.rows / seconds, 4),
            "audio_seconds_per_second": round(report.audio_seconds / seconds, 4), "calls": len(plan.batches),
            "others": None if others is None else round(others, 3), "audio": audio}


@entry_point()
def main(argv=None) -> int:
    args = parse_args(argv)
    from transformers.utils import logging

    logging.set_verbosity_error()  # random weights rarely stop: every row would warn that it reached the step limit
    model, processor = build_model(args.device)
    with tempfile.TemporaryDirectory(prefix="valle_corpus_") as root:
        manifest = write_corpus(Path(root), args.rows, args.prompt_seconds)
        warm_up = Path(root) / "warm_up"
        warm_up.mkdir()
        measure(model, processor, write_corpus(warm_up, 1, args.prompt_seconds), 1, 5, args.prompt_seconds)
        results = []
        for batch_size in args.batch_sizes:
            result = measure(model, processor, manifest, batch_size, args.max_ar_steps, args.prompt_seconds)
            print(f"batch {batch_size}: {result['rows_per_second']} rows/s, {result['audio_seconds_per_second']} "
                  f"audio s/s ({result['seconds']} s)", file=sys.stderr, flush=True)
            results.append(result)
    reference = results[0].pop("audio")
    for result in results[1:]:
        audio = result.pop("audio")
        result["max_abs_difference_to_first"] = float(max(np.abs(audio[name] - reference[name]).max()
                                                          for name in reference))
    settings = {key: value for key, value in vars(args).items() if key != "json"}
    report = {"machine": machine_info(torch.device(args.device)), "settings": settings, "results": results}
    print(json.dumps(report, indent=2))
    print(f"\n{'batch':>5} {'calls':>5} {'rows':>4} {'audio s':>8} {'wall s':>7} {'rows/s':>7} {'audio s/s':>9} "
          f"{'others':>6}")
    for result in results:
        print(f"{result['batch_size']:>5} {result['calls']:>5} {result['rows']:>4} {result['audio_seconds']:>8.2f} "
              f"{result['seconds']:>7.1f} {result['rows_per_second']:>7.3f} {result['audio_seconds_per_second']:>9.3f} "
              f"{fmt_pct(result['others']):>6}")
    if args.json:
        write_json(args.json, report, "--json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
