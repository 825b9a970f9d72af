"""`pipeline("text-to-speech")` and `pipeline("automatic-speech-recognition")` for VALL-E: transformers' pipelines
with their calls checked first.

transformers' `TextToAudioPipeline` indexes, merges and decodes what it is given before the model sees any of it, so
an empty batch, `forward_params` that is not a dict, or `output_audio=False` (which leaves it codes where it expects
audio) end in errors from deep inside transformers. `VallETextToAudioPipeline` refuses those in one line, naming the
argument, for VALL-E models. Its batching splits `generate`'s output into the batch's texts by rows, which with
`num_return_sequences` > 1 took one text's takes for the next texts, so for VALL-E each text's takes are kept
together, and one seed serves every text of a batch; and a VALL-E pipeline built with a tokenizer but no processor
(a model instance needs `tokenizer=`) phonemises its texts all the same. For every other model it is transformers'
pipeline unchanged.

`VallESpeechRecognitionPipeline` runs VALL-E's STT task in `pipeline("automatic-speech-recognition")`, whose own
steps (ffmpeg, torchaudio, a CTC or encoder-decoder model, Whisper's five beams) do not fit it. Importing the
package makes them the classes of the "text-to-audio" (alias "text-to-speech") and "automatic-speech-recognition"
tasks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from transformers.pipelines import PIPELINE_REGISTRY
from transformers.pipelines.automatic_speech_recognition import AutomaticSpeechRecognitionPipeline
from transformers.pipelines.text_to_audio import TextToAudioPipeline

from .audio import as_samples
from .errors import VallETypeError, VallEValueError, shown
from .generation import check_generation_config, setting_names
from .phonemes import check_texts
from .processing import VallEProcessor
from .streaming import AudioStreamer

__all__ = ["VallESpeechRecognitionPipeline", "VallETextToAudioPipeline", "check_pipeline_call", "register_pipeline"]

# The keyword arguments of the pipeline's call that transformers passes on as dicts of keyword arguments.
_KEYWORD_DICTS = ("forward_params", "generate_kwargs", "processor_kwargs")
# The ones that reach `generate`.
_SETTINGS = ("forward_params", "generate_kwargs")
# The other keyword arguments of the text-to-speech pipeline's call (transformers' `Pipeline.__call__`).
_TTS_CALL_ARGUMENTS = ("preprocess_params", "batch_size", "num_workers")
# The processor's arguments that the text-to-speech pipeline gives it itself (each text), or that would make the call
# speech recognition's (audio to transcribe).
_SET_BY_TTS_PIPELINE = ("text", "audio")
# generate's settings that take one value per row, which the pipeline gives each of its calls whole.
_PER_ROW_SETTINGS = ("input_prompt_length", "sampling_rate")


def check_batch_size(batch_size: Any) -> None:
    """Refuse (`VallEValueError`) a pipeline's `batch_size` that is not None or an integer >= 1: torch's sampler
    refused 0 deep in the run, and "2" as "batch_size=2", which reads as allowed."""
    if batch_size is not None and (not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool)
                                   or batch_size < 1):
        raise VallEValueError(f"batch_size must be an integer >= 1 (inputs per generate call), got {batch_size!r}")


def check_pipeline_call(text_inputs: Any, kwargs: Mapping[str, Any]) -> None:
    """Refuse what the text-to-speech pipeline cannot run on a VALL-E model: raises `VallEValueError` for an empty
    list of texts, a `batch_size` that is no integer >= 1, a list of prompts, or of the processor's languages, prompt
    lengths or sampling rates (one per text: the processor reads one text at a time), `output_audio=False`, another
    task than TTS, an argument given both to the processor and to `generate` (or to the processor twice, in
    `preprocess_params` and `processor_kwargs`), or a text or `return_tensors` other than "pt" for the processor, and
    `VallETypeError` for a text that is no str, a keyword dict that is not a dict, a keyword argument the call does
    not take (a setting outside `generate_kwargs`) or a `generation_config` that is no `GenerationConfig`. The texts
    themselves are checked by the processor (`VallEProcessor.__call__`)."""
    if isinstance(text_inputs, (list, tuple)) and not text_inputs:
        raise VallEValueError("the text-to-speech pipeline got an empty list of texts: give a str or a non-empty "
                              "list of str")
    for index, text in enumerate(text_inputs if isinstance(text_inputs, (list, tuple)) else ()):
        if not isinstance(text, (str, list, tuple)):  # the processor's refusal did not say which text
            raise VallETypeError(f"text {index} of the {len(text_inputs)} given to the text-to-speech pipeline is "
                                 f"{shown(text):.60}: give each text as a str")
    if isinstance(text_inputs, (list, tuple)) and all(isinstance(text, str) for text in text_inputs):
        # each text is a call of its own: a text with nothing to speak was refused after those before it were spoken
        check_texts(text_inputs, " to the text-to-speech pipeline")
    unknown = sorted(set(kwargs) - {*_KEYWORD_DICTS, *_TTS_CALL_ARGUMENTS})
    if unknown:  # transformers' TypeError named its _sanitize_parameters, and not where the argument belongs
        raise VallETypeError(f"the text-to-speech pipeline got unexpected keyword argument(s) {', '.join(unknown)}: "
                             "give generation settings in generate_kwargs (generate_kwargs={'temperature': 0.5}) and "
                             "the processor's arguments in processor_kwargs (processor_kwargs={'language': 'en', "
                             "'prompt_audio': 'voice.wav'})")
    check_batch_size(kwargs.get("batch_size"))
    for name in ("preprocess_params", *_KEYWORD_DICTS):
        value = kwargs.get(name)
        if value is not None and not isinstance(value, Mapping):
            example = "{'temperature': 0.5}" if name == "generate_kwargs" else "{'prompt_audio': 'voice.wav'}"
            raise VallETypeError(f"{name} must be a dict of keyword arguments, got {type(value).__name__} "
                                 f"({shown(value):.60}): e.g. {name}={example}")
    for name in ("processor_kwargs", *_SETTINGS):
        prompts = as_samples((kwargs.get(name) or {}).get("prompt_audio"))
        if isinstance(prompts, (list, tuple)) and len(prompts) > 1:
            raise VallEValueError(
                f"{name} has a list of {len(prompts)} prompts, but the pipeline gives every text the same settings: "
                "give one voice (several references of one voice: nest them, [[a, b]], or join paths with ';'); for "
                "a voice per text, call the pipeline once per text, or model.generate(**processor(texts, "
                "prompt_audio=[...]))")
    processed = _processor_arguments(kwargs)
    own = [key for key in _SET_BY_TTS_PIPELINE if key in processed]
    if own:  # the processor's text replaced every text the pipeline was given
        raise VallEValueError(f"processor_kwargs has {', '.join(own)}: the pipeline gives the processor each text it "
                              "is called with: drop it (the texts are the pipeline's first argument)")
    if processed.get("return_tensors", "pt") != "pt":  # generate takes tensors
        raise VallEValueError(f"processor_kwargs has return_tensors={processed['return_tensors']!r}: the pipeline "
                              "gives generate tensors: drop it")
    for key in ("language", *_PER_ROW_SETTINGS):
        if _count(processed.get(key)) > 1:  # the processor sees one text at a time
            fix = (f"model.generate(**processor(texts, {key}=[...]))" if key == "language" else
                   "give them in generate_kwargs, with every text in one batch (batch_size=len(texts))")
            raise VallEValueError(f"processor_kwargs has a list of {_count(processed[key])} values of {key}, but the "
                                  f"pipeline's processor reads one text at a time: give one; for one per text, {fix}")
    for name in _SETTINGS:
        check_generation_config((kwargs.get(name) or {}).get("generation_config"))
        twice = sorted(set(processed) & set(kwargs.get(name) or {}))
        if twice:  # the processor passes them on to generate, which would get them twice
            raise VallEValueError(f"{', '.join(twice)} given in both processor_kwargs and {name}: give each once")
        if (kwargs.get(name) or {}).get("task", "tts") != "tts":
            raise VallEValueError(f"{name} has task={kwargs[name]['task']!r}, but the text-to-speech pipeline speaks "
                                  "text: drop it (speech to text is model.generate(audio=..., task='stt'))")
        if (kwargs.get(name) or {}).get("output_audio", True) is False:
            raise VallEValueError(f"{name} has output_audio=False, but the text-to-speech pipeline returns audio: "
                                  "drop it (model.generate(..., output_audio=False) returns the codes)")


def _processor_arguments(kwargs: Mapping[str, Any]) -> dict:
    """The processor's arguments of a pipeline call: `processor_kwargs`, and `preprocess_params` (transformers passes
    them to the processor too, with a `processor_kwargs` of their own). Raises `VallEValueError` for one given in two of
    them: the processor took one without a word."""
    preprocess = dict(kwargs.get("preprocess_params") or {})
    parts = {"preprocess_params": preprocess, "preprocess_params' processor_kwargs":
             preprocess.pop("processor_kwargs", None) or {}, "processor_kwargs": kwargs.get("processor_kwargs") or {}}
    merged: dict = {}
    for name, arguments in parts.items():
        if not isinstance(arguments, Mapping):
            raise VallETypeError(f"{name} must be a dict of keyword arguments, got {type(arguments).__name__}")
        twice = sorted(set(merged) & set(arguments))
        if twice:
            raise VallEValueError(f"{', '.join(twice)} given twice, the last time in {name}: give each once, in "
                                  "processor_kwargs")
        merged.update(arguments)
    return merged


def _count(values: Any) -> int:
    """How many values `values` gives (one per row where it is a list, tuple or array), 1 for a single value."""
    if isinstance(values, (np.ndarray, torch.Tensor)):
        values = values.tolist()
    return len(values) if isinstance(values, (list, tuple)) else 1


def _one_call(text_inputs: Any, batch_size: int | None) -> bool:
    """Whether the pipeline speaks `text_inputs` in one generate call: one text, a tuple of texts (one item), or a
    list of at most `batch_size` texts."""
    return isinstance(text_inputs, (str, tuple)) or isinstance(text_inputs, list) and len(text_inputs) <= (
        batch_size or 1)


def _batches(text_inputs: Any, batch_size: int | None) -> str:
    """How the pipeline batches `text_inputs` (not one call, `_one_call`), in words: "3 texts, batch_size=1"."""
    texts = f"{len(text_inputs)} texts" if isinstance(text_inputs, list) else "texts from an iterator"
    return f"{texts}, batch_size={batch_size or 1}"


def check_per_row_settings(text_inputs: Any, batch_size: int | None, kwargs: Mapping[str, Any]) -> None:
    """Refuse (`VallEValueError`) one value per text of a generate setting (`_PER_ROW_SETTINGS`) where the pipeline
    makes several generate calls, each given the whole list: it failed after the first batch was generated."""
    if _one_call(text_inputs, batch_size):
        return
    for name in _SETTINGS:
        for key in _PER_ROW_SETTINGS:
            count = _count((kwargs.get(name) or {}).get(key))
            if count > 1:
                raise VallEValueError(f"{name} has {count} values of {key}, but the pipeline makes one generate call "
                                      f"per batch of texts ({_batches(text_inputs, batch_size)}), each given them "
                                      "all: give one, or every text in one batch (batch_size=len(texts))")


def _audio_streamers(kwargs: Mapping[str, Any]) -> list:
    """The `audio_streamer`s given in the pipeline call's settings (`_SETTINGS`)."""
    given = (kwargs.get(name) for name in _SETTINGS)
    return [settings["audio_streamer"] for settings in given
            if isinstance(settings, Mapping) and settings.get("audio_streamer") is not None]


def check_one_streamed_call(text_inputs: Any, batch_size: int | None, kwargs: Mapping[str, Any]) -> None:
    """Refuse (`VallEValueError`) an `audio_streamer` when the pipeline would make several `generate` calls (one per
    batch of texts): a streamer follows one call, so the later texts' audio would be lost. Two streamers (one in
    each of `forward_params` and `generate_kwargs`) are refused too: generate_kwargs' was used, and the other's
    consumer waited for ever."""
    streamers = _audio_streamers(kwargs)
    if not streamers:
        return
    if len({id(streamer) for streamer in streamers}) > 1:
        raise VallEValueError("an audio_streamer in both forward_params and generate_kwargs: a call streams to one, "
                              "give it once")
    if _one_call(text_inputs, batch_size):
        return
    raise VallEValueError(f"an audio_streamer follows one generate call, and the pipeline makes one per batch of "
                          f"texts ({_batches(text_inputs, batch_size)}): give batch_size=len(texts), or stream each "
                          "text with a streamer of its own")


def _for_batch(settings: Mapping[str, Any], rows: int, name: str) -> Mapping[str, Any]:
    """`settings` fitted to a batch of `rows` inputs (texts, or audio to transcribe), as a pipeline gives the same
    settings to every batch: a voice prompt is one voice for every text (an array in a list of one, which `generate`
    cannot take for one per text), and one seed serves each input (as it does for inputs run one by one); more seeds
    are refused, as the pipeline cannot tell which batch an input falls in."""
    prompt = settings.get("prompt_audio")
    if isinstance(prompt, (torch.Tensor, np.ndarray)):
        settings = {**settings, "prompt_audio": [prompt]}
    seeds = settings.get("seeds")
    if isinstance(seeds, (torch.Tensor, np.ndarray)):
        seeds = seeds.tolist()
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        seeds = [seeds]  # one seed, given as a number
    if not isinstance(seeds, (list, tuple)):
        return settings  # none, or not a list: generate refuses it in one line
    if len(seeds) != 1:
        raise VallEValueError(f"{name} has {len(seeds)} seeds: the pipeline gives the same settings to each batch of "
                              "inputs, so give one seed (every input gets it), or call model.generate with one seed "
                              "per row")
    return {**settings, "seeds": list(seeds) * rows}


class _VallEPipeline:
    """What both of VALL-E's pipelines ask before each step: whether their model is VALL-E's (every other model gets
    transformers' pipeline unchanged)."""

    def _is_valle(self) -> bool:
        return self.model.config.model_type == "valle"


class VallETextToAudioPipeline(_VallEPipeline, TextToAudioPipeline):
    """transformers' `TextToAudioPipeline`; for a VALL-E model, the call is checked first (`check_pipeline_call`),
    and each text of a batch gets what it gets alone: its `num_return_sequences` takes as one item, and the same
    `seeds` (one seed, given once for every batch). Given a model instance with `tokenizer=` but no `processor=`, it
    makes the processor around that tokenizer."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self._is_valle():
            # The model's generation config, not the pipeline's defaults, where it leaves a setting unset: their pad
            # is the phoneme tokenizer's (id 0, an audio code to the AR: refused), their 256 new tokens 3.4 s of speech.
            self._generation_defaults = {}
        if self._is_valle() and self.processor is None:
            # The phoneme tokenizer alone would read the text's letters as phonemes, and the model would speak them.
            self.processor = VallEProcessor(self.tokenizer)

    def __call__(self, text_inputs, **kwargs):
        if not self._is_valle():
            return super().__call__(text_inputs, **kwargs)
        try:
            check_pipeline_call(text_inputs, kwargs)
            check_per_row_settings(text_inputs, kwargs.get("batch_size", self._batch_size), kwargs)
            check_one_streamed_call(text_inputs, kwargs.get("batch_size", self._batch_size), kwargs)
            with setting_names():  # a warning about the settings once per call, not once per batch of texts
                return super().__call__(text_inputs, **kwargs)
        except BaseException as error:  # refused before generate took the streamer: its consumer gets the error
            for streamer in _audio_streamers(kwargs):
                if isinstance(streamer, AudioStreamer):
                    streamer.abandon(error)
            raise

    def _forward(self, model_inputs, **kwargs):
        if not self._is_valle():
            return super()._forward(model_inputs, **kwargs)
        for name in _SETTINGS:
            twice = sorted(set(model_inputs) & set(kwargs.get(name) or {}))
            if twice:  # generate would get them twice
                raise VallEValueError(f"{', '.join(twice)} given in {name}, but the pipeline's processor gives "
                                      f"generate {'that' if len(twice) == 1 else 'those'} from the texts and "
                                      f"processor_kwargs: drop it from {name}, or give the processor's arguments in "
                                      "processor_kwargs")
        rows = model_inputs["input_ids"].shape[0]
        kwargs = {**kwargs, **{name: _for_batch(kwargs.get(name) or {}, rows, name) for name in _SETTINGS}}
        audio = super()._forward(model_inputs, **kwargs).audio
        takes = len(audio) // rows  # with num_return_sequences: text 0's takes, then text 1's, ...
        if takes > 1:
            audio = [audio[row * takes:(row + 1) * takes] for row in range(rows)]
        # One entry per text, the batch's first field (transformers splits a batch into its items by the first field)
        return {"audio": audio}

    def postprocess(self, audio):
        entries = audio["audio"] if self._is_valle() else None
        if isinstance(entries, list) and len(entries) == 1:  # a batch of one text, not split: its entry
            audio = {"audio": entries[0]}
        elif isinstance(entries, list):  # one item of several rows (a tuple of texts): each row's takes, in order
            audio = {"audio": [take for entry in entries for take in (entry if isinstance(entry, list) else [entry])]}
        return super().postprocess(audio)


# What transformers' speech-recognition pipeline offers that VALL-E's STT has not: it transcribes one utterance whole.
_NOT_FOR_STT = ("chunk_length_s", "stride_length_s", "return_timestamps", "return_language", "decoder_kwargs")
# generate's arguments that the speech-recognition pipeline gives itself.
_SET_BY_STT_PIPELINE = ("task", "audio", "audio_codes", "audio_attention_mask", "input_ids", "sampling_rate",
                        "return_dict_in_generate", "output_audio")


class VallESpeechRecognitionPipeline(_VallEPipeline, AutomaticSpeechRecognitionPipeline):
    """transformers' `AutomaticSpeechRecognitionPipeline`; for a VALL-E model, its STT task: each input is transcribed
    to phonemes (IPA) by `generate(task="stt")` with the model's generation config (not the pipeline's Whisper
    defaults, five beams), giving `{"text": ...}`.

    An input is a file path, an audio file's bytes or open binary file, an array (or a list of numbers) at the
    feature extractor's sampling rate (24 kHz), or a
    dict with "raw" or "array" and its "sampling_rate" (as the `datasets` library gives), read and resampled by
    valle-hf's own audio functions (no ffmpeg, no torchaudio). With `batch_size` > 1, that many inputs share one
    `generate` call (each transcript as `model.generate(**processor(audio=[...]), task="stt")` gives it for the
    batch); one seed serves every input, as it does for inputs run one by one; with `num_return_sequences` > 1 each
    input gets its first sequence (the best beam). Chunking, timestamps, an empty list and settings the pipeline sets
    itself (the task, the audio, the output's form) are refused in one line. For every other model it is
    transformers' pipeline unchanged."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self._is_valle():
            self._generation_defaults = {}
            if self.processor is None:  # a model instance given with its tokenizer and feature extractor
                self.processor = VallEProcessor(self.tokenizer, self.feature_extractor)

    def __call__(self, inputs, **kwargs):
        if not self._is_valle():
            return super().__call__(inputs, **kwargs)
        inputs = as_samples(inputs)  # one waveform (at 24 kHz, as an array), not a batch of numbers
        if isinstance(inputs, (list, tuple)):  # each input given as a list of numbers is one such waveform too
            inputs = [as_samples(item) for item in inputs]
        if isinstance(inputs, (list, tuple)) and not inputs:
            raise VallEValueError("the speech-recognition pipeline got an empty list of inputs: give a path, an array "
                                  "or a dict of audio, or a non-empty list of them")
        check_batch_size(kwargs.get("batch_size"))
        return super().__call__(inputs, **kwargs)

    def _sanitize_parameters(self, **kwargs):
        if not self._is_valle():
            return super()._sanitize_parameters(**kwargs)
        given = [name for name in _NOT_FOR_STT if kwargs.pop(name, None)]  # off (False, 0, None) is what runs
        if given:
            raise VallEValueError(f"{', '.join(given)}: VALL-E's speech to text transcribes a whole utterance, without "
                                  "chunks or timestamps: drop it")
        kwargs.pop("ignore_warning", None)
        settings = kwargs.pop("generate_kwargs", None) or {}
        if not isinstance(settings, Mapping):
            raise VallETypeError(f"generate_kwargs must be a dict of keyword arguments, got {type(settings).__name__} "
                                 f"({settings!r:.60}): e.g. generate_kwargs={{'temperature': 0.0}}")
        settings = {**settings, **kwargs}
        check_generation_config(settings.get("generation_config"))
        own = sorted(set(settings) & set(_SET_BY_STT_PIPELINE))
        if own:
            raise VallEValueError(f"{', '.join(own)}: the speech-recognition pipeline sets the task and the audio and "
                                  "returns text: drop it (model.generate(**processor(audio=...), task='stt') gives "
                                  "the ids and scores)")
        return {}, settings, {}

    def preprocess(self, inputs, **kwargs):
        if not self._is_valle():
            yield from super().preprocess(inputs, **kwargs)
            return
        audio, rate = inputs, None
        if isinstance(inputs, Mapping):
            if "sampling_rate" not in inputs or not ({"raw", "array"} & inputs.keys()):
                raise VallEValueError("a dict given to the speech-recognition pipeline needs the audio under 'raw' or "
                                      "'array' and its 'sampling_rate'")
            audio, rate = inputs.get("raw", inputs.get("array")), inputs["sampling_rate"]
            empty = [key for key, value in (("raw" if "raw" in inputs else "array", audio), ("sampling_rate", rate))
                     if value is None]
            if empty:  # the processor's words for None ask for arguments this pipeline does not take
                raise VallEValueError(f"the dict given to the speech-recognition pipeline has {' and '.join(empty)} "
                                      "None: give the audio's samples and the rate (Hz) they were recorded at")
        elif isinstance(inputs, (np.ndarray, torch.Tensor)):
            rate = self.feature_extractor.sampling_rate  # transformers' convention for a bare array
        prepared = self.processor(audio=audio, sampling_rate=rate)
        # One row's waveforms, the item transformers' batching lists (`pad_collate_fn` keeps non-tensors as lists)
        yield {"audio": prepared["audio"][0], "sampling_rate": prepared["sampling_rate"], "is_last": True}

    def _forward(self, model_inputs, **generate_kwargs):
        if not self._is_valle():
            return super()._forward(model_inputs, **generate_kwargs)
        is_last, audio = model_inputs.pop("is_last"), model_inputs.pop("audio")
        rows = audio if isinstance(is_last, list) else [audio]  # a batch of inputs (batch_size > 1), or one input
        generate_kwargs = self._prepare_generate_kwargs(generate_kwargs)
        generate_kwargs = _for_batch(generate_kwargs, len(rows), "generate_kwargs")
        tokens = self.model.generate(audio=rows, **model_inputs, task="stt", return_dict_in_generate=False,
                                     **generate_kwargs)  # the ids, whatever the model's config says
        return {"is_last": is_last, "tokens": tokens[:: len(tokens) // len(rows)]}  # each input's first sequence

    def postprocess(self, model_outputs, **kwargs):
        if not self._is_valle():
            return super().postprocess(model_outputs, **kwargs)
        return {"text": self.processor.decode(model_outputs[0]["tokens"][0])}


def register_pipeline() -> None:
    """Make `VallETextToAudioPipeline` the class of the "text-to-audio" task (and its alias "text-to-speech"), and
    `VallESpeechRecognitionPipeline` that of "automatic-speech-recognition", keeping each task's model classes and
    default. Other models get the same pipelines as before, as the classes change nothing for them."""
    for name, impl in (("text-to-audio", VallETextToAudioPipeline),
                       ("automatic-speech-recognition", VallESpeechRecognitionPipeline)):
        task = PIPELINE_REGISTRY.supported_tasks[name]
        if task["impl"] is not impl:
            PIPELINE_REGISTRY.supported_tasks[name] = {**task, "impl": impl}
