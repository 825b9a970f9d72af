"""PreallocatedDynamicCache: the keys and values of a stock DynamicCache, in buffers allocated once."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import tiny_config
from transformers import DynamicCache

from valle_hf.cache import CACHE_KWARG, PreallocatedDynamicCache


def _states(batch, length, seed):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, 2, length, 4, generator=generator) for _ in range(2)]


def _fill(cache, chunks, batch=3, layer=0):
    for index, length in enumerate(chunks):
        keys, values = cache.update(*_states(batch, length, seed=index), layer)
    return keys, values


def _pair(capacity):
    config = tiny_config().backbone_config()
    return DynamicCache(config=config), PreallocatedDynamicCache(config, capacity)


def test_updates_match_the_stock_cache_and_stay_in_one_buffer():
    """Up to and including the step that fills the capacity exactly."""
    capacity = 16
    stock, prealloc = _pair(capacity)
    _fill(stock, [5])
    _fill(prealloc, [5])
    assert prealloc.layers[0]._key_buffer.shape[-2] == capacity  # what the generation needs, no more headroom
    first = prealloc.layers[0].keys.data_ptr()
    for step in range(1, capacity - 5 + 1):
        expected = stock.update(*_states(3, 1, seed=100 + step), 0)
        got = prealloc.update(*_states(3, 1, seed=100 + step), 0)
        for a, b in zip(expected, got, strict=True):
            assert torch.equal(a, b)
        assert prealloc.layers[0].keys.data_ptr() == first  # no new allocation per step
    assert prealloc.get_seq_length() == stock.get_seq_length() == capacity


def test_grows_past_its_capacity_by_doubling():
    stock, prealloc = _pair(capacity=4)
    for a, b in zip(_fill(stock, [3, 2, 1, 6]), _fill(prealloc, [3, 2, 1, 6]), strict=True):
        assert torch.equal(a, b)
    assert prealloc.layers[0]._key_buffer.shape[-2] >= 12
    steps = 64  # one position at a time: a few reallocations, not one per step
    reallocations, buffer = 0, prealloc.layers[0]._key_buffer.data_ptr()
    for step in range(steps):
        prealloc.update(*_states(3, 1, seed=step), 0)
        reallocations += prealloc.layers[0]._key_buffer.data_ptr() != buffer
        buffer = prealloc.layers[0]._key_buffer.data_ptr()
    assert reallocations <= math.log2(steps)


def test_a_huge_step_limit_allocates_a_bounded_headroom_and_still_grows():
    from valle_hf.cache import MAX_HEADROOM

    stock, prealloc = _pair(capacity=10**12)  # what a generous max_new_tokens asks for: terabytes up front
    _fill(prealloc, [3])
    assert prealloc.layers[0]._key_buffer.shape[-2] == 3 + MAX_HEADROOM
    steps = [3] + [1] * (MAX_HEADROOM + 2)
    for a, b in zip(_fill(stock, steps), _fill(_pair(capacity=10**12)[1], steps), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("chunks", [[4, 1], [1]])  # after a prefill and a step, or after one position
@pytest.mark.parametrize("selected", [[0, 2], [2, 0, 1]])  # fewer rows, or as many in another order
def test_beam_reorder_and_batch_selection_match_the_stock_cache(selected, chunks):
    stock, prealloc = _pair(capacity=32)
    _fill(stock, chunks)
    _fill(prealloc, chunks)
    order = torch.tensor([2, 2, 0])
    stock.reorder_cache(order)
    prealloc.reorder_cache(order)
    stock.batch_select_indices(torch.tensor(selected))
    prealloc.batch_select_indices(torch.tensor(selected))
    expected = stock.update(*_states(len(selected), 1, seed=7), 0)
    got = prealloc.update(*_states(len(selected), 1, seed=7), 0)
    for a, b in zip(expected, got, strict=True):
        assert torch.equal(a, b)


def test_reset_and_crop_keep_working():
    stock, prealloc = _pair(capacity=32)
    for cache in (stock, prealloc):
        _fill(cache, [6, 1, 1])
        cache.crop(-2)
        cache.update(*_states(3, 1, seed=9), 0)
    assert torch.equal(stock.layers[0].keys, prealloc.layers[0].keys)
    prealloc.reset()
    assert prealloc.get_seq_length() == 0
    keys, _ = prealloc.update(*_states(3, 2, seed=10), 0)
    assert torch.equal(keys, _states(3, 2, seed=10)[0])
    for batch, dtype in ((1, torch.float32), (1, torch.float64)):  # reused for another batch, then dtype
        prealloc.reset()
        states = [state.to(dtype) for state in _states(batch, 2, seed=11)]
        keys, values = prealloc.update(*states, 0)
        assert keys.dtype == values.dtype == dtype
        assert torch.equal(keys, states[0]) and torch.equal(values, states[1])
    prealloc.reset()  # and reused as last, but on another device (the meta device stands in for an accelerator)
    keys, values = prealloc.update(*(state.to("meta", keys.dtype) for state in _states(1, 2, seed=12)), 0)
    assert keys.device.type == values.device.type == "meta" and keys.shape == (1, 2, 2, 4)


def _one_text(model) -> torch.LongTensor:
    return torch.tensor([[model.config.text_bos_token_id, 5, model.config.text_eos_token_id]])


def test_a_cache_choice_is_one_transformers_builds_named_in_its_refusal(tiny_model):
    """An unknown cache_implementation was transformers' ValueError from inside generate, after the prompt had been
    encoded; each of its choices but the offloaded ones (an accelerator's) decodes here."""
    from transformers.generation.configuration_utils import ALL_CACHE_IMPLEMENTATIONS

    from valle_hf.configuration import SettingError, check_settings

    with pytest.raises(SettingError, match=r"^cache_implementation='x' is not allowed: it must be None") as refusal:
        tiny_model.generate(input_ids=_one_text(tiny_model), max_new_tokens=2, cache_implementation="x")
    assert all(choice in str(refusal.value) for choice in ALL_CACHE_IMPLEMENTATIONS)
    for choice in ALL_CACHE_IMPLEMENTATIONS:
        check_settings({"cache_implementation": choice})


@pytest.mark.parametrize("choice", ["offloaded", "offloaded_static"])
def test_an_offloaded_cache_for_a_model_on_the_cpu_is_refused_by_name(tiny_model, choice):
    """Offloading moves the cache out of an accelerator's memory: on the CPU it failed in torch ("Torch not compiled
    with CUDA enabled"), an AssertionError from inside transformers."""
    from valle_hf.configuration import SettingError

    with pytest.raises(SettingError, match=rf"^cache_implementation='{choice}' is not allowed: it must be one that is "
                                           "not offloaded for a model on the CPU"):
        tiny_model.generate(input_ids=_one_text(tiny_model), max_new_tokens=2, cache_implementation=choice)


@pytest.mark.parametrize("name", sorted({CACHE_KWARG, "past_key_values"}))  # the old name is still taken
@pytest.mark.parametrize("cache", ["x", DynamicCache])
def test_a_cache_argument_that_is_no_cache_is_refused_by_name(tiny_model, name, cache):
    """A string or a class failed deep in transformers ("'str' object has no attribute '_is_user_defined'")."""
    from valle_hf.errors import VallETypeError

    with pytest.raises(VallETypeError, match=rf"^{name} must be a transformers Cache \(such as DynamicCache\(\)\), "
                                             "got (str|the class DynamicCache)"):
        tiny_model.generate(input_ids=_one_text(tiny_model), max_new_tokens=2, **{name: cache})


def test_a_cache_that_holds_an_earlier_calls_keys_is_refused(tiny_model):
    """A cache given to a second call still held the first call's keys: the AR attended to them as if they preceded
    its input and decoded other codes, without a word."""
    cache = DynamicCache()
    tiny_model.generate(input_ids=_one_text(tiny_model), max_new_tokens=2, **{CACHE_KWARG: cache})
    held = cache.get_seq_length()
    with pytest.raises(ValueError, match=rf"^{CACHE_KWARG} already holds {held} positions \(of an earlier call\): a "
                                         "call starts from its own text and prompt, so give each call a new Cache"):
        tiny_model.generate(input_ids=_one_text(tiny_model), max_new_tokens=2, **{CACHE_KWARG: cache})


def test_a_quantized_cache_without_its_backend_names_the_package_to_install(tiny_model):
    """transformers' ImportError came from inside generate, a traceback in the CLI's and a pipeline's output."""
    from transformers.utils import is_optimum_quanto_available

    from valle_hf.errors import MissingDependencyError

    if is_optimum_quanto_available():
        pytest.skip("optimum-quanto is installed: the quantized cache's backend is there")
    with pytest.raises(MissingDependencyError, match="pip install optimum-quanto"):
        tiny_model.generate(input_ids=_one_text(tiny_model), max_new_tokens=2, cache_implementation="quantized")
