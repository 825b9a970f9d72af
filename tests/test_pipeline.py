"""pipeline("text-to-speech") with a local directory and with a model instance."""

from __future__ import annotations

import math

import numpy as np
import pytest
from transformers import pipeline

import valle_hf  # noqa: F401  (registers the Auto classes)

GENERATE = {"temperature": 0.0, "max_new_tokens": 8, "min_new_tokens": 8}


def test_pipeline_from_a_directory(converted_dir, prompt_wav):
    tts = pipeline("text-to-speech", model=str(converted_dir))
    assert isinstance(tts.processor, valle_hf.VallEProcessor)
    result = tts("Hello there.", forward_params={"prompt_audio": str(prompt_wav)}, generate_kwargs=GENERATE)
    assert result["sampling_rate"] == 24000
    assert isinstance(result["audio"], np.ndarray) and result["audio"].shape == (8 * 320,)


def test_pipeline_with_a_model_instance_and_a_batch(converted_dir, prompt_wav):
    model = valle_hf.VallEForConditionalGeneration.from_pretrained(converted_dir)
    processor = valle_hf.VallEProcessor.from_pretrained(converted_dir)
    tts = pipeline("text-to-speech", model=model, tokenizer=processor.tokenizer, processor=processor)
    results = tts(["Hello.", "A second sentence."], forward_params={"prompt_audio": str(prompt_wav)},
                  generate_kwargs=GENERATE)
    assert len(results) == 2
    assert all(result["audio"].shape == (8 * 320,) for result in results)


@pytest.mark.parametrize("setting, value", [("temperature", math.nan), ("repetition_penalty", 0.0), ("num_beams", -1),
                                            ("layer_skip_entropy_threshold", -1.0), ("nar_temperature", -1.0)])
def test_the_pipeline_checks_every_setting(converted_dir, prompt_wav, setting, value):
    tts = pipeline("text-to-speech", model=str(converted_dir))
    with pytest.raises(ValueError, match=f"{setting}=.* is not allowed: it must be "):
        tts("Hello.", forward_params={"prompt_audio": str(prompt_wav)}, generate_kwargs={setting: value})
