"""Speech-to-text: transcribe WAV files to IPA phonemes with the model's STT task.

    python examples/stt.py speech.wav [more.wav ...]
    python examples/stt.py examples/prompt.wav --model tiny-random --max-new-tokens 8  # offline, prints noise

The model transcribes to phonemes (IPA as espeak-ng writes it), not to words. Several files are transcribed as one
batch. `--model`: nothing for the released ar+nar-llama-8, a converted directory, a Hub id, or "tiny-random".
"""

from __future__ import annotations

import sys

# valle_hf first: it registers the model with the Auto classes (needed before from_pretrained /
# pipeline), and while it loads torch and transformers, Ctrl-C ends the command in one line
import valle_hf  # noqa: F401

# isort: split
import torch

from valle_hf.audio import check_audio_file, reference_paths
from valle_hf.cli import check_flags_fit, count_value, usable_device
from valle_hf.errors import ArgumentParser, entry_point, named
from valle_hf.loading import EXAMPLE_CHOICES, load_model_and_processor


def build_parser() -> ArgumentParser:
    # valle_hf's ArgumentParser and entry_point: a mistake ends with one "error: ..." line and exit status 1.
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("audio", nargs="+", help="audio files to transcribe (any sample rate, mono or stereo)")
    parser.add_argument("--model", default=None, help="directory, Hub id, 'tiny-random', or nothing for the release")
    parser.add_argument("--max-new-tokens", type=count_value, default=None, help="phoneme tokens at most per file")
    parser.add_argument("--device", type=named, default="cuda" if torch.cuda.is_available() else "cpu",
                        help="cpu, cuda, ... (default: cuda when available)")
    return parser


def transcribe(model, processor, audio: list, max_new_tokens: int | None = None,
               sampling_rate: int | None = None) -> list[str]:
    """IPA transcriptions of `audio` (paths, or waveforms at `sampling_rate` Hz), greedy, as one batch."""
    inputs = processor(audio=audio, sampling_rate=sampling_rate).to(model.device)  # 24 kHz mono, for the codec
    settings = {} if max_new_tokens is None else {"max_new_tokens": max_new_tokens}
    text_ids = model.generate(**inputs, task="stt", temperature=0.0, repetition_penalty=1.0, **settings)
    return [processor.decode(ids.cpu()) for ids in text_ids]  # one LongTensor of phoneme ids per file


@entry_point()
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for path in reference_paths(args.audio):  # before the model loads: a missing file is told at once
        check_audio_file(path)
    device = usable_device(args.device)
    model, processor = load_model_and_processor(args.model, choices=EXAMPLE_CHOICES)  # its flag, --model, named
    model.to(device)
    if args.max_new_tokens is not None:
        check_flags_fit({"max_new_tokens": args.max_new_tokens}, model.config)  # refused in the flag's words
    for path, ipa in zip(args.audio, transcribe(model, processor, args.audio, args.max_new_tokens), strict=True):
        print(f"{path}\t{ipa}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
