"""`pipeline("text-to-speech")` for VALL-E: transformers' text-to-audio pipeline with its call checked first.

transformers' `TextToAudioPipeline` indexes, merges and decodes what it is given before the model sees any of it, so
an empty batch, `forward_params` that is not a dict, or `output_audio=False` (which leaves it codes where it expects
audio) end in errors from deep inside transformers. `VallETextToAudioPipeline` refuses those in one line, naming the
argument, for VALL-E models; for every other model it is transformers' pipeline unchanged. Importing the package
makes it the "text-to-audio" (alias "text-to-speech") task's class.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from transformers.pipelines import PIPELINE_REGISTRY
from transformers.pipelines.text_to_audio import TextToAudioPipeline

from .errors import VallETypeError, VallEValueError

__all__ = ["VallETextToAudioPipeline", "check_pipeline_call", "register_pipeline"]

# The keyword arguments of the pipeline's call that transformers passes on as dicts of keyword arguments.
_KEYWORD_DICTS = ("forward_params", "generate_kwargs", "processor_kwargs")


def check_pipeline_call(text_inputs: Any, kwargs: Mapping[str, Any]) -> None:
    """Refuse what the text-to-speech pipeline cannot run on a VALL-E model: raises `VallEValueError` for an empty
    list of texts, `output_audio=False` or an argument given both to the processor and to `generate`, and
    `VallETypeError` for a keyword dict that is not a dict. The texts themselves are checked by the processor
    (`VallEProcessor.__call__`)."""
    if isinstance(text_inputs, (list, tuple)) and not text_inputs:
        raise VallEValueError("the text-to-speech pipeline got an empty list of texts: give a str or a non-empty "
                              "list of str")
    for name in _KEYWORD_DICTS:
        value = kwargs.get(name)
        if value is not None and not isinstance(value, Mapping):
            raise VallETypeError(f"{name} must be a dict of keyword arguments, got {type(value).__name__} "
                                 f"({value!r:.60}): e.g. {name}={{'prompt_audio': 'voice.wav'}}")
    processed = kwargs.get("processor_kwargs") or {}
    for name in ("forward_params", "generate_kwargs"):
        twice = sorted(set(processed) & set(kwargs.get(name) or {}))
        if twice:  # the processor passes them on to generate, which would get them twice
            raise VallEValueError(f"{', '.join(twice)} given in both processor_kwargs and {name}: give each once")
        if (kwargs.get(name) or {}).get("output_audio", True) is False:
            raise VallEValueError(f"{name} has output_audio=False, but the text-to-speech pipeline returns audio: "
                                  "drop it (model.generate(..., output_audio=False) returns the codes)")


class VallETextToAudioPipeline(TextToAudioPipeline):
    """transformers' `TextToAudioPipeline`; for a VALL-E model, the call is checked first (`check_pipeline_call`)."""

    def __call__(self, text_inputs, **kwargs):
        if self.model.config.model_type == "valle":
            check_pipeline_call(text_inputs, kwargs)
        return super().__call__(text_inputs, **kwargs)


def register_pipeline() -> None:
    """Make `VallETextToAudioPipeline` the class of the "text-to-audio" task (and its alias "text-to-speech"), keeping
    the task's model classes and default. Other models get the same pipeline as before, as the class changes nothing
    for them."""
    task = PIPELINE_REGISTRY.supported_tasks["text-to-audio"]
    if task["impl"] is not VallETextToAudioPipeline:
        PIPELINE_REGISTRY.supported_tasks["text-to-audio"] = {**task, "impl": VallETextToAudioPipeline}
