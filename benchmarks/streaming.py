"""Streaming: time to first audio and the streamed real-time factor at batch 1.

`generate(audio_streamer=AudioIteratorStreamer(chunk_seconds))` runs in a thread while this one takes the chunks, as
an application would (`valle_hf.streaming`). The decoder is the default one, Vocos, at the released size
(`VocosConfig()` defaults: 8 ConvNeXt blocks of width 384; random weights); the model runs as `generate` does by
default (float32 AR through oneDNN, `nar_dtype="auto"`) and with int8 decoder weights (`--streaming-precisions`).
Time to first audio is from the call to the first chunk
with audio: the prefill, `chunk_seconds` of AR steps, the 7 levels' prefix caches and NAR chunk, and the decoder's
look-ahead (`decoder_context`: the first chunk's audio waits for that many further frames). One short untimed
streamed call first does the kernels' first-call setup.
"""

from __future__ import annotations

import threading
import time

import torch

from .common import (
    FRAME_RATE,
    ForeignLoad,
    Target,
    fmt,
    fmt_pct,
    log,
    make_inputs,
    one_of,
    option_list,
    quiet,
    require,
    sampler_kwargs,
)
from .floors import is_int8

NAME, TITLE = "streaming", "streaming: time to first audio, streamed RTF (batch 1, Vocos)"
TARGET_FIRST_AUDIO_S = 1.5


def add_arguments(parser) -> None:
    group = parser.add_argument_group(NAME)
    group.add_argument("--chunk-seconds", type=float, default=0.5,
                       help="seconds of level-0 codes between two NAR + decoding rounds (AudioIteratorStreamer)")
    group.add_argument("--streaming-precisions", default="float32,int8",
                       help="comma-separated model precisions to stream with, of: float32 (the default path), int8")


def check(args) -> None:
    """The module's options, before anything is built; `UsageError` for a value it cannot use."""
    from valle_hf.streaming import CHUNK_SECONDS_RULE, chunk_seconds_allowed

    require(args, {"chunk_seconds": (chunk_seconds_allowed, CHUNK_SECONDS_RULE)})
    precisions(args)


def precisions(args) -> list[str]:
    """`--streaming-precisions`: float32, int8."""
    return option_list(args, "streaming_precisions", one_of(("float32", "int8")),
                       "comma-separated precisions of: float32, int8")


def streamed(model, kwargs: dict, chunk_seconds: float) -> dict:
    """One streamed generate() in a thread; when each chunk arrived and how much audio it held."""
    from valle_hf.streaming import AudioIteratorStreamer

    streamer = AudioIteratorStreamer(chunk_seconds)
    failure = []

    def target():
        try:
            with quiet():
                model.generate(**kwargs, audio_streamer=streamer)
        except Exception as error:  # re-raised in the caller's thread
            failure.append(error)

    thread = threading.Thread(target=target)
    start = time.perf_counter()
    thread.start()
    arrivals = [(time.perf_counter() - start, len(chunk.audio)) for chunk in streamer if chunk.audio is not None]
    thread.join()
    if failure:
        raise failure[0]
    return {"total_s": time.perf_counter() - start, "arrivals": arrivals}


def run(args, context) -> dict:
    return {"runs": [{"precision": name, **stream_one(context.model(name), args, context.device)}
                     for name in precisions(args)]}


def stream_one(model, args, device: torch.device) -> dict:
    steps = round(args.seconds * FRAME_RATE)
    text, prompt = make_inputs(model.config, 1, args, device)
    kwargs = dict(input_ids=text, prompt_codes=prompt, nar_dtype="auto", **sampler_kwargs(args.sampler))
    warm = round(args.chunk_seconds * FRAME_RATE) + 2
    streamed(model, {**kwargs, "max_new_tokens": warm, "min_new_tokens": warm}, args.chunk_seconds)
    load = ForeignLoad()
    result = streamed(model, {**kwargs, "max_new_tokens": steps, "min_new_tokens": steps}, args.chunk_seconds)
    first = next((at for at, samples in result["arrivals"] if samples), None)
    audio_s = sum(samples for _, samples in result["arrivals"]) / model.config.sampling_rate
    vocoder = sum(p.numel() for p in model.vocoder.parameters())
    log(f"streaming ({model.dtype}{', int8' if is_int8(model) else ''}): first audio after {fmt(first, '.2f')} s, "
        f"{result['total_s']:.1f} s in all")
    return {"seconds": args.seconds, "chunk_seconds": args.chunk_seconds, "first_audio_s": first,
            "total_s": result["total_s"], "audio_s": audio_s, "rtf": result["total_s"] / args.seconds,
            "chunks": len(result["arrivals"]), "vocoder_params": vocoder, "foreign_load": load.share(),
            "device": str(device), "threads": torch.get_num_threads()}


def report(result: dict) -> list[str]:
    return [f"  {run['precision']:7} {run['seconds']:g} s of speech in chunks of {run['chunk_seconds']:g} s (Vocos "
            f"{run['vocoder_params'] / 1e6:.1f} M parameters): first audio after {fmt(run['first_audio_s'], '.2f')} s; "
            f"{run['chunks']} chunks, {run['audio_s']:.2f} s of audio in {run['total_s']:.2f} s: streamed RTF "
            f"{run['rtf']:.2f}; others {fmt_pct(run['foreign_load'])}" for run in result["runs"]]


def targets(result: dict) -> list[Target]:
    return [Target(run["first_audio_s"] is not None and run["first_audio_s"] <= TARGET_FIRST_AUDIO_S,
                   f"time to first audio <= {TARGET_FIRST_AUDIO_S:g} s (b1, {run['precision']}, chunks of "
                   f"{run['chunk_seconds']:g} s): {fmt(run['first_audio_s'], '.2f')} s", run["foreign_load"])
            for run in result["runs"]]


if __name__ == "__main__":
    import sys

    from .__main__ import main

    sys.exit(main(only=[NAME]))
