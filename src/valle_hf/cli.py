"""`python -m valle_hf TEXT REFERENCES OUT_PATH`: the original CLI's flags, on top of `model.generate`.

Every failure a user can cause (missing or unreadable audio, empty text, unknown language, an unwritable output,
no model) ends with exit status 1 and one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from pathlib import Path

import torch
from transformers import StoppingCriteria, StoppingCriteriaList


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m valle_hf",
        description="VALL-E text-to-speech (and --task stt speech-to-text) with the original project's flags.",
    )
    parser.add_argument("text", help="text to speak (ignored for --task stt)")
    parser.add_argument("references", help="reference audio: a voice prompt (TTS) or the speech to transcribe (STT); "
                        "join several files with ';'")
    parser.add_argument("out_path", nargs="?", default=None, help="output WAV file (TTS)")
    parser.add_argument("--out-path", dest="out_path_option", default=None, help="same as OUT_PATH")
    add = parser.add_argument
    add("--model", default=None, help="converted directory, Hub id, original fp32.sft/.pth, or 'tiny-random' "
        "(default: the released ar+nar-llama-8, downloaded and converted once)")
    add("--tokenizer", default=None, help="the original's tokenizer.json (needed with an original checkpoint)")
    add("--yaml", default=None, help="the original's config.yaml for an original checkpoint")
    add("--codec", default="facebook/encodec_24khz", help="EnCodec weights used when converting a checkpoint")
    add("--language", default="en", help="espeak language code (en, fr, de, ja, ...) or 'auto'")
    add("--task", default="tts", choices=["tts", "stt"])
    add("--device", default=None, help="cuda when available, else cpu")
    add("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"])
    add("--onednn", action="store_true", help="CPU, float32: run the decoder's linears through oneDNN on prepacked "
        "weights (faster decoding; a second copy of those weights in memory)")
    add("--seed", type=int, default=None, help="random seed (printed when not given)")
    add("--max-ar-steps", type=int, default=None, help="AR step limit (default: the model's, 12 s for real models)")
    add("--max-nar-levels", type=int, default=7)
    add("--ar-temp", type=float, default=0.5, help="AR temperature; 0 = greedy")
    add("--nar-temp", type=float, default=0.0, help="NAR temperature; 0 = greedy")
    add("--min-ar-temp", type=float, default=-1.0, help="dynamic temperature lower bound (< 0: off)")
    add("--input-prompt-length", type=float, default=3.0, help="seconds of prompt kept (looped if shorter); 0 = all")
    add("--input-prompt-prefix", action="store_true", help="start the AR response with the prompt itself")
    add("--prefix-silence", type=float, default=0.0, help="seconds of silence the AR response starts from")
    add("--top-p", type=float, default=1.0)
    add("--top-k", type=int, default=0)
    add("--min-p", type=float, default=0.0)
    add("--repetition-penalty", type=float, default=1.5)
    add("--repetition-penalty-decay", type=float, default=0.0)
    add("--length-penalty", type=float, default=0.0, help="penalty on the stop token by current length")
    add("--beam-width", type=int, default=0, help="beam search width (real beam search); 0/1 = off")
    add("--mirostat-tau", type=float, default=0.0)
    add("--mirostat-eta", type=float, default=0.1)
    add("--dry-multiplier", type=float, default=0.0)
    add("--dry-base", type=float, default=1.75)
    add("--dry-allowed-length", type=int, default=2)
    add("--layer-skip", action="store_true", help="early exit by entropy/varentropy (lossy, faster)")
    add("--layer-skip-exit-layer", type=int, default=-1, help="forced exit layer (-1: the last)")
    add("--layer-skip-entropy-threshold", type=float, default=0.1)
    add("--layer-skip-varentropy-threshold", type=float, default=0.1)
    add("--refine-on-stop", action="store_true", help="re-predict the whole AR output in one teacher-forced pass")
    add("--sampler-order", default="original", choices=["original", "transformers"],
        help="original: penalties and filters before temperature (as the model was tuned)")
    return parser


class StepProgress(StoppingCriteria):
    """Advances a progress bar once per AR step; it never stops generation itself."""

    def __init__(self, bar):
        self.bar = bar

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        self.bar.update(1)
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


def generation_kwargs(args: argparse.Namespace) -> dict:
    """The original CLI's sampler flags as `generate` keyword arguments."""
    kwargs = dict(
        max_levels=args.max_nar_levels,
        temperature=args.ar_temp,
        do_sample=args.ar_temp > 0,
        min_temperature=args.min_ar_temp,
        nar_temperature=args.nar_temp,
        top_p=args.top_p,
        top_k=args.top_k,
        min_p=args.min_p,
        repetition_penalty=args.repetition_penalty,
        repetition_penalty_decay=args.repetition_penalty_decay,
        stop_length_penalty=args.length_penalty,
        mirostat_tau=args.mirostat_tau,
        mirostat_eta=args.mirostat_eta,
        dry_multiplier=args.dry_multiplier,
        dry_base=args.dry_base,
        dry_allowed_length=args.dry_allowed_length,
        refine_on_stop=args.refine_on_stop,
        sampler_order=args.sampler_order,
        input_prompt_prefix=args.input_prompt_prefix,
        prefix_silence=args.prefix_silence,
    )
    if args.max_ar_steps is not None:
        kwargs["max_new_tokens"] = args.max_ar_steps
    if args.beam_width > 1:
        kwargs["num_beams"] = args.beam_width
    if args.layer_skip:
        kwargs.update(
            layer_skip=True,
            layer_skip_exit_layer=args.layer_skip_exit_layer,
            layer_skip_entropy_threshold=args.layer_skip_entropy_threshold,
            layer_skip_varentropy_threshold=args.layer_skip_varentropy_threshold,
        )
    return kwargs


def _device_and_dtype(args) -> tuple[str, torch.dtype]:
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device} requested but CUDA is not available")
    dtype = getattr(torch, args.dtype) if args.dtype != "auto" else (
        torch.float16 if device.startswith("cuda") else torch.float32)
    if args.onednn and (device != "cpu" or dtype != torch.float32):
        raise ValueError("--onednn needs the CPU and float32 (drop --onednn, or use --device cpu --dtype float32)")
    return device, dtype


def _check_output(path: str | None) -> Path:
    if not path:
        raise ValueError("no output path: give OUT_PATH (or --out-path) for text-to-speech")
    out = Path(path)
    if out.is_dir():
        raise ValueError(f"output path is a directory: {out}")
    if not out.parent.exists() or not os.access(out.parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise ValueError(f"cannot write the output file: {out}")
    return out


def _seed(seed: int | None) -> int:
    if seed is None:
        seed = random.SystemRandom().randrange(2**31)
        print(f"seed: {seed}", file=sys.stderr)
    torch.manual_seed(seed)
    return seed


def prepare_inputs(args) -> dict:
    """Check and load everything the user gave before any model is loaded, so bad input fails fast, in one line."""
    from .processing import load_prompt, resolve_language, split_sentences

    if args.task == "stt":
        return {"audio": load_prompt(args.references)}
    out = _check_output(args.out_path_option or args.out_path)
    if not args.text.strip():
        raise ValueError("empty text: nothing to speak")
    sentences = split_sentences(args.text)
    for sentence in sentences:
        resolve_language(sentence, args.language)
    prompt = load_prompt(args.references, args.input_prompt_length) if args.references else None
    return {"out": out, "sentences": sentences, "prompt": prompt}


def run_tts(args, model, processor, inputs: dict) -> None:
    import soundfile
    from tqdm import tqdm

    batch = processor(inputs["sentences"], prompt_audio=inputs["prompt"], language=args.language)
    steps = args.max_ar_steps or model.generation_config.max_new_tokens
    with tqdm(total=steps, desc="AR", unit="step", disable=None) as bar:
        audio = model.generate(**batch.to(model.device), stopping_criteria=StoppingCriteriaList([StepProgress(bar)]),
                               **generation_kwargs(args))
    waveform = torch.cat([piece.float().cpu() for piece in audio]).clamp(-1.0, 1.0)
    soundfile.write(str(inputs["out"]), waveform.numpy(), model.config.sampling_rate, subtype="PCM_16")
    print(f"wrote {inputs['out']} ({waveform.numel() / model.config.sampling_rate:.2f} s)", file=sys.stderr)


def run_stt(args, model, processor, inputs: dict) -> None:
    kwargs = generation_kwargs(args)
    for key in ("max_levels", "nar_temperature", "input_prompt_prefix", "prefix_silence"):
        kwargs.pop(key)
    text_ids = model.generate(**processor(audio=inputs["audio"]).to(model.device), task="stt", **kwargs)
    print(processor.decode(text_ids[0].cpu()))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from .loading import load_model_and_processor

        device, dtype = _device_and_dtype(args)
        inputs = prepare_inputs(args)
        model, processor = load_model_and_processor(
            args.model, tokenizer=args.tokenizer, config_yaml=args.yaml, codec=args.codec, dtype=dtype
        )
        model.to(device)
        if args.onednn:
            from .onednn import enable_onednn_linears

            enable_onednn_linears(model)
        _seed(args.seed)
        (run_stt if args.task == "stt" else run_tts)(args, model, processor, inputs)
    except (ValueError, OSError, TypeError, RuntimeError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
