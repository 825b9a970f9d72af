"""Text-to-speech with the Python API: load, prepare text and a voice prompt, generate, write a WAV.

    python examples/tts.py "The birch canoe slid on the smooth planks." examples/prompt.wav out.wav
    python examples/tts.py "Hello there." examples/prompt.wav out.wav --model tiny-random  # offline: makes noise

`--model`: nothing for the released ar+nar-llama-8 (downloaded and converted once), a converted directory, a Hub id,
or "tiny-random" (a tiny random model for checking an installation: it makes noise, not speech).
"""

from __future__ import annotations

import sys

# valle_hf first: it registers the model with the Auto classes (needed before from_pretrained /
# pipeline), and while it loads torch and transformers, Ctrl-C ends the command in one line
import valle_hf  # noqa: F401

# isort: split
import torch

from valle_hf.audio import check_audio_file, check_output_path, reference_paths, save_audio
from valle_hf.cli import check_flags_fit, count_value, seconds_value, seed_value, usable_device
from valle_hf.errors import ArgumentParser, entry_point, named
from valle_hf.loading import EXAMPLE_CHOICES, load_model_and_processor
from valle_hf.phonemes import check_text, split_sentences
from valle_hf.seeding import sentence_seeds

# A few sampler settings for `model.generate`; every GenerationConfig field and the original's samplers can be mixed.
PRESETS = {
    # Always the most likely token: repeatable, but prone to loops on real models.
    "greedy": dict(do_sample=False, repetition_penalty=1.0),
    # The original CLI's defaults: temperature 0.5 with a repetition penalty over the last 75 tokens.
    "original": dict(do_sample=True, temperature=0.5, repetition_penalty=1.5),
    # Nucleus + min-p filtering, dynamic temperature between 0.5 and 1.0, a little NAR sampling, and a stop-token
    # length penalty that makes ending early less likely.
    "varied": dict(do_sample=True, temperature=1.0, min_temperature=0.5, top_p=0.95, min_p=0.05,
                   repetition_penalty=1.2, stop_length_penalty=0.1, nar_temperature=0.2),
    # DRY penalises repeating token sequences longer than `dry_allowed_length`.
    "dry": dict(do_sample=True, temperature=0.7, dry_multiplier=0.8, dry_base=1.75, dry_allowed_length=2),
    # Real beam search over the AR stage.
    "beam": dict(do_sample=False, num_beams=4, repetition_penalty=1.0),
}


def build_parser() -> ArgumentParser:
    # valle_hf's ArgumentParser and entry_point: a mistake ends with one "error: ..." line and exit status 1.
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("text", help="text to speak (long text: one sentence per batch row is generated at once)")
    parser.add_argument("prompt", help="reference audio of the voice to clone (several files: join with ';')")
    parser.add_argument("output", help="audio file to write, by its extension: .wav, .flac, .ogg or .mp3")
    parser.add_argument("--model", default=None, help="directory, Hub id, 'tiny-random', or nothing for the release")
    parser.add_argument("--preset", default="original", choices=sorted(PRESETS),
                        help="a set of sampler settings (see PRESETS in this file) [original]")
    parser.add_argument("--language", default="en", help="espeak language of the text (en, fr, de, ja, auto, ...)")
    parser.add_argument("--input-prompt-length", type=seconds_value, default=3.0,
                        help="seconds of the prompt used (0: all of it)")
    parser.add_argument("--max-new-tokens", type=count_value, default=None, help="AR steps (75 per second of speech)")
    parser.add_argument("--seed", type=seed_value, default=0, help="sentence i draws from seed + i (an integer >= 0)")
    parser.add_argument("--device", type=named, default="cuda" if torch.cuda.is_available() else "cpu",
                        help="cpu, cuda, ... (default: cuda when available)")
    return parser


@entry_point()
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_output_path(args.output, [args.prompt])  # before any work: a bad path would fail after generating
    for path in reference_paths(args.prompt):  # and a missing prompt before the model loads
        check_audio_file(path)
    device = usable_device(args.device)

    # Or: VallEForConditionalGeneration.from_pretrained(dir_or_repo) and VallEProcessor.from_pretrained(dir_or_repo).
    model, processor = load_model_and_processor(args.model, choices=EXAMPLE_CHOICES)  # its flag, --model, named
    model.to(device)

    # Text -> IPA (espeak-ng) -> phoneme ids; the prompt is loaded, resampled to 24 kHz and cut/looped to 3 s.
    # The model encodes the prompt with its EnCodec inside `generate`.
    sentences = split_sentences(check_text(args.text), args.language)
    inputs = processor(sentences, prompt_audio=args.prompt, input_prompt_length=args.input_prompt_length,
                       language=args.language).to(model.device)

    settings = dict(PRESETS[args.preset])
    if args.max_new_tokens is not None:
        settings["max_new_tokens"] = args.max_new_tokens
    check_flags_fit(settings, model.config)  # the model's limits, in the flags' words (generate would name them too)
    # One seed per row: each sentence's draws are its own, whatever else is in the batch.
    out = model.generate(**inputs, seeds=sentence_seeds(args.seed, len(sentences)), return_dict_in_generate=True,
                         **settings)

    # out.codes [rows, frames, 8] / out.lengths: EnCodec codes; out.audio: one 24 kHz waveform per row.
    waveform = torch.cat([row.float().cpu() for row in out.audio])
    save_audio(args.output, waveform, model.config.sampling_rate)  # whole or not at all; format by extension
    print(f"{args.output}: {waveform.numel() / model.config.sampling_rate:.2f} s, {len(sentences)} sentence(s), "
          f"frames {out.lengths.tolist()}, stopped by itself {out.stopped.tolist()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
