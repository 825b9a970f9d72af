"""Text-to-speech with `transformers.pipeline("text-to-speech")`.

    python examples/pipeline_example.py "Hello there." examples/prompt.wav out.wav --model user/repo
    python examples/pipeline_example.py "Hello there." examples/prompt.wav out.wav --model tiny-random  # offline, noise

The voice prompt goes in `forward_params={"prompt_audio": ...}`, sampler settings in `generate_kwargs`, processor
settings (the text's language) in `processor_kwargs`. `import valle_hf` first: it registers the `valle` model type,
so the pipeline finds the model and its processor (no `trust_remote_code`). `--model`: nothing for the released
ar+nar-llama-8, a converted directory, a Hub id, an original checkpoint (fp32.sft, converted on the fly with the
EnCodec and Vocos weights from the Hub; offline, convert it first with `python -m valle_hf.convert`, whose `--codec` and
`--vocoder` take local copies, and give the folder), or "tiny-random" (these two show the other way in: a model
instance with its processor).
"""

from __future__ import annotations

import sys
from pathlib import Path

# valle_hf first: it registers the model with the Auto classes (required before pipeline(...)), and it imports
# transformers without torchao's import-time messages for CUDA
import valle_hf  # noqa: F401

# isort: split
import torch
from transformers import pipeline

from valle_hf.audio import check_audio_file, check_output_path, reference_paths, save_audio
from valle_hf.cli import check_flags_fit, count_value, seconds_value, seed_value, usable_device
from valle_hf.errors import ArgumentParser, entry_point, named
from valle_hf.loading import (
    EXAMPLE_CHOICES,
    TINY_RANDOM,
    check_converted_model,
    check_hub_model,
    load_model_and_processor,
    names_original_checkpoint,
    released_model_directory,
)


def build_parser() -> ArgumentParser:
    # valle_hf's ArgumentParser and entry_point: a mistake ends with one "error: ..." line and exit status 1.
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("text", nargs="+", help="one or more texts (each becomes one output file)")
    parser.add_argument("prompt", help="reference audio of the voice to clone")
    parser.add_argument("output", help="audio file to write, .wav, .flac, ... (several texts: name-0.wav, "
                        "name-1.wav, ...)")
    parser.add_argument("--model", type=named, default=None,
                        help="directory, Hub id, original fp32.sft, 'tiny-random', or nothing for the release")
    parser.add_argument("--language", default="en", help="espeak language of the text (en, fr, de, ja, auto, ...)")
    parser.add_argument("--input-prompt-length", type=seconds_value, default=None,
                        help="seconds of the prompt used, 0 = all (default: the model's, 3 s for the release)")
    parser.add_argument("--temperature", type=float, default=None,
                        help="AR temperature; 0 = greedy (default: the model's, 0.5 for the release)")
    parser.add_argument("--max-new-tokens", type=count_value, default=None, help="AR steps (75 per second of speech)")
    parser.add_argument("--seed", type=seed_value, default=0, help="seed of the sampling [0]")
    parser.add_argument("--device", type=named, default="cuda" if torch.cuda.is_available() else "cpu",
                        help="cpu, cuda, ... (default: cuda when available)")
    return parser


def build_pipeline(model_name: str | None, device: str):
    if model_name != TINY_RANDOM and not names_original_checkpoint(model_name or ""):
        model_name = model_name or str(released_model_directory(choices=EXAMPLE_CHOICES))
        if not cache_only(model_name):
            # A directory or Hub id: the pipeline loads model and processor (AutoProcessor) by itself.
            return pipeline("text-to-speech", model=model_name, device=device)
    # A model instance (tiny-random, an original checkpoint converted in memory, a Hub model's cached files while the
    # Hub is out of reach): give the pipeline its processor and tokenizer too.
    model, processor = load_model_and_processor(model_name, choices=EXAMPLE_CHOICES)
    return pipeline("text-to-speech", model=model, tokenizer=processor.tokenizer, processor=processor, device=device)


def cache_only(model_name: str) -> bool:
    """Check a converted model's name first (a folder that is no model, an unreachable Hub id, a Hub id without its
    tokenizer: one line, not the loaders' traceback, and before any weights are fetched); whether the Hub is out of
    reach but the model's files are cached, which the pipeline's loaders would ask the Hub for again and again."""
    if Path(model_name).exists():
        return check_converted_model(model_name, EXAMPLE_CHOICES)
    fix = "download the model into a folder, add its tokenizer.json, and give the folder as --model"
    return check_hub_model(model_name, EXAMPLE_CHOICES, instead=fix)


def output_paths(output: str, count: int) -> list[str]:
    """`output` for one text; name-0.wav, name-1.wav, ... (its extension kept) for several."""
    if count == 1:
        return [output]
    path = Path(output)
    return [str(path.with_name(f"{path.stem}-{index}{path.suffix}")) for index in range(count)]


@entry_point()
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    paths = output_paths(args.output, len(args.text))
    for path in paths:  # before any work: a bad path would fail after generating
        check_output_path(path, [args.prompt])
    for path in reference_paths(args.prompt):  # and a missing prompt before the model loads
        check_audio_file(path)
    torch.manual_seed(args.seed)
    tts = build_pipeline(args.model, usable_device(args.device))
    # The model's generation_config.json holds the original CLI's tuned settings (AR temperature 0.5, repetition
    # penalty 1.5, a 3 s prompt): pass only what you want to change.
    generate_kwargs = {}
    if args.temperature is not None:
        generate_kwargs.update(temperature=args.temperature, do_sample=args.temperature > 0)
    if args.input_prompt_length is not None:
        generate_kwargs["input_prompt_length"] = args.input_prompt_length
    if args.max_new_tokens is not None:
        generate_kwargs["max_new_tokens"] = args.max_new_tokens
    check_flags_fit(generate_kwargs, tts.model.config)  # the model's limits, in the flags' words
    # The model encodes the whole reference with its codec, then loops or trims the codes to input_prompt_length.
    results = tts(args.text, forward_params={"prompt_audio": args.prompt}, generate_kwargs=generate_kwargs,
                  processor_kwargs={"language": args.language})
    results = [results] if isinstance(results, dict) else results
    for path, result in zip(paths, results, strict=True):
        save_audio(path, result["audio"], result["sampling_rate"])  # whole or not at all
        print(f"{path}: {len(result['audio']) / result['sampling_rate']:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
