"""Layer skip (entropy/varentropy early exit) inside the forward pass, with a consistent KV cache."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from conftest import original_generate_kwargs

from valle_hf.layer_skip import entropy_and_varentropy
from valle_hf.layout import tts_sequence


@pytest.fixture(scope="module")
def inputs(fixtures):
    case = fixtures.cases["tts_e2e_greedy"]
    return dict(input_ids=fixtures.case_tensor(case, "text")[None],
                prompt_codes=fixtures.case_tensor(case, "prom")[None], **original_generate_kwargs(case),
                output_audio=False, return_dict_in_generate=True)


def truncated(model, layers: int):
    """The same weights with only the first `layers` decoder layers."""
    short = copy.deepcopy(model)
    short.model.backbone.layers = short.model.backbone.layers[:layers]
    short.config.num_hidden_layers = short.model.backbone.config.num_hidden_layers = layers
    return short


def test_entropy_and_varentropy_in_bits():
    uniform, certain = torch.zeros(1, 8), torch.tensor([[0.0, -1e4, -1e4, -1e4]])
    entropy, varentropy = entropy_and_varentropy(torch.cat([uniform[:, :4], certain]))
    assert torch.allclose(entropy, torch.tensor([2.0, 0.0]), atol=1e-5)
    assert torch.allclose(varentropy, torch.tensor([0.0, 0.0]), atol=1e-5)
    two_level = torch.tensor([[math.log(3.0), 0.0]])  # p = (3/4, 1/4)
    entropy, varentropy = entropy_and_varentropy(two_level)
    surprisal = torch.tensor([math.log2(4 / 3), 2.0])
    mean = 0.75 * surprisal[0] + 0.25 * surprisal[1]
    assert torch.allclose(entropy, mean.reshape(1), atol=1e-5)
    variance = 0.75 * (surprisal[0] - mean) ** 2 + 0.25 * (surprisal[1] - mean) ** 2
    assert torch.allclose(varentropy, variance.reshape(1), atol=1e-5)


def test_a_threshold_that_never_fires_equals_plain_generation(fixture_model, inputs):
    plain = fixture_model.generate(**inputs)
    skipped = fixture_model.generate(**inputs, layer_skip=True, layer_skip_entropy_threshold=0.0)
    assert torch.equal(plain.codes, skipped.codes)
    layers = fixture_model.config.num_hidden_layers
    prefix = tts_sequence(fixture_model.config, inputs["input_ids"][0], 0, inputs["prompt_codes"].shape[1],
                          torch.zeros(0, dtype=torch.long))
    steps = skipped.sequences.shape[1] - len(prefix)  # one forward pass per generated token
    assert skipped.exit_layers.shape == (1, steps) and (skipped.exit_layers == layers).all()
    assert skipped.nar_exit_layers.shape == (1, fixture_model.config.num_rvq_levels - 1)
    assert (skipped.nar_exit_layers == layers).all()


@pytest.mark.parametrize("cache_implementation", [None, "static"])
def test_a_forced_exit_equals_a_truncated_model(fixture_model, inputs, cache_implementation):
    layers = fixture_model.config.num_hidden_layers - 1
    if layers < 1:
        pytest.skip("the fixture model has a single layer")
    forced = fixture_model.generate(**inputs, layer_skip=True, layer_skip_exit_layer=layers,
                                    cache_implementation=cache_implementation)
    reference = truncated(fixture_model, layers).generate(**inputs, cache_implementation=cache_implementation)
    assert torch.equal(forced.codes, reference.codes)
    assert (forced.exit_layers == layers).all()


def test_exits_at_the_first_allowed_layer_when_every_step_is_confident(fixture_model, inputs):
    out = fixture_model.generate(**inputs, layer_skip=True, layer_skip_entropy_threshold=1e9,
                                 layer_skip_varentropy_threshold=1e9)
    first = fixture_model.config.num_hidden_layers // 2 + 1  # the original: from layer index n // 2 on
    assert (out.exit_layers == first).all()
    assert torch.equal(out.codes, truncated(fixture_model, first).generate(**inputs).codes)


def test_stt_and_bad_exit_layer(fixture_model, fixtures):
    case = fixtures.cases["stt_e2e_greedy"]
    audio = fixtures.case_tensor(case, "resp")[None]
    out = fixture_model.generate(audio_codes=audio, task="stt", temperature=0.0, max_new_tokens=5, layer_skip=True,
                                 layer_skip_exit_layer=1, return_dict_in_generate=True)
    assert out.exit_layers.shape == (1, 5) and (out.exit_layers == 1).all()  # five steps, no stop token
    with pytest.raises(ValueError, match="layer_skip_exit_layer"):
        fixture_model.generate(audio_codes=audio, task="stt", max_new_tokens=2, layer_skip=True,
                               layer_skip_exit_layer=99)
