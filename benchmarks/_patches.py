"""Experiment: the step-path changes recommended in benchmarks/README.md, as monkeypatches of valle_hf.

`bench_generate.py --patch` applies them to measure their effect without editing `src/`. Once the equivalent changes
are in `src/valle_hf`, this module (and the flag) can go.

1. Position ids of cached steps in O(1): `segment_position_ids` runs once, on the prompt, in
   `_prepare_position_ids_for_generation`, which stores per row the offset between a response token's column and its
   position id (`response_position_offset`, kept in `model_kwargs` by `generate`). A cached step's new tokens are
   always response tokens of the last segment, so their ids are `column - offset`. The current code re-derives the
   whole row's segment ids (~15 tensor ops over `[B, L]`) at every step.
3. `PreallocatedDynamicCache`: a `DynamicCache` whose layers write into buffers allocated once (grown by doubling
   when full) and hand attention views of the filled part. A stock `DynamicCache` `torch.cat`s every layer's K and V
   at every step: O(length) copies plus, on glibc, fresh page-faulting allocations (the buffers grow past malloc's
   mmap threshold at every step); a `StaticCache` avoids that but makes SDPA read all `max_cache_len` slots at every
   step (CPU flash attention does not skip masked blocks).
2. The embedding of a cached step: its new tokens are response tokens only, so `prepare_inputs_for_generation` passes
   `inputs_embeds` from one table lookup instead of letting `VallEModel.embed` run its chain of lookups and
   `torch.where`s over every segment kind.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache, GenerationMixin
from transformers.cache_utils import DynamicLayer

_ORIGINAL = {}


def segment_position_ids(input_ids, config):
    try:
        from valle_hf.layout import segment_position_ids as function
    except ImportError:  # before it moved to layout.py
        from valle_hf.modeling import segment_position_ids as function
    return function(input_ids, config)


def _prepare_position_ids_for_generation(self, inputs_tensor, model_kwargs):
    if torch.is_tensor(inputs_tensor) and inputs_tensor.dim() == 2 and inputs_tensor.shape[1] > 0:
        # Position the first generated token will get: append one response token (id 0 is a response id for both TTS
        # and STT) and read its segment position. Any later response token at column c gets c - offset.
        probe = torch.cat([inputs_tensor, inputs_tensor.new_zeros(inputs_tensor.shape[0], 1)], dim=1)
        first = segment_position_ids(probe, self.config)[:, -1:]
        model_kwargs["response_position_offset"] = inputs_tensor.shape[1] - first
    return None  # as before: position ids are supplied by prepare_inputs_for_generation


def prepare_inputs_for_generation(self, input_ids, response_position_offset=None, **kwargs):
    first_iteration = bool(kwargs.get("is_first_iteration"))
    inputs = GenerationMixin.prepare_inputs_for_generation(self, input_ids, **kwargs)
    length, total = inputs["input_ids"].shape[1], input_ids.shape[1]
    if length < total and not first_iteration and response_position_offset is not None:
        # A cached step: the new tokens extend the response segment.
        columns = torch.arange(total - length, total, device=input_ids.device)
        inputs["position_ids"] = columns.unsqueeze(0) - response_position_offset
        new_ids = inputs["input_ids"]
        model = self.model
        if kwargs.get("task", "tts") == "stt":
            inputs["inputs_embeds"] = model.embed_text(new_ids.clamp(0, self.config.text_vocab_size - 1))
        else:
            inputs["inputs_embeds"] = model.embed_response.levels[0](new_ids.clamp(0, self.config.audio_vocab_size))
    else:
        # Prefill (or no cache): the whole row, as before.
        inputs["position_ids"] = segment_position_ids(input_ids, self.config)[:, -length:]
    if length < total:  # the prefix frames are already in the cache
        inputs.pop("prompt_codes", None)
        inputs.pop("audio_codes", None)
    return inputs


class PreallocatedLayer(DynamicLayer):
    """A `DynamicLayer` backed by a buffer with spare capacity: `keys`/`values` are views of its filled part."""

    def __init__(self, capacity: int = 256, **kwargs):
        super().__init__(**kwargs)
        self.capacity = max(int(capacity), 1)
        self._keys = self._values = None

    def _reserve(self, needed: int, like_keys: torch.Tensor, like_values: torch.Tensor) -> None:
        if self._keys is not None and needed <= self._keys.shape[-2]:
            return
        capacity = max(needed, self.capacity, 2 * (self._keys.shape[-2] if self._keys is not None else 0))
        batch, heads, _, _ = like_keys.shape
        keys = like_keys.new_empty(batch, heads, capacity, like_keys.shape[-1])
        values = like_values.new_empty(batch, heads, capacity, like_values.shape[-1])
        length = self.get_seq_length()
        if length:
            keys[:, :, :length].copy_(self.keys)
            values[:, :, :length].copy_(self.values)
        self._keys, self._values = keys, values

    def update(self, key_states, value_states, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        length = self.get_seq_length()
        if self._keys is not None and length and self.keys.data_ptr() != self._keys.data_ptr():
            self._keys = self._values = None  # keys were replaced from outside (reorder, crop, ...): re-seat them
        if self._keys is not None and (key_states.shape[0] != self._keys.shape[0]):
            self._keys = self._values = None
        end = length + key_states.shape[-2]
        self._reserve(end, key_states, value_states)
        self._keys[:, :, length:end].copy_(key_states)
        self._values[:, :, length:end].copy_(value_states)
        self.keys, self.values = self._keys[:, :, :end], self._values[:, :, :end]
        return self.keys, self.values


class PreallocatedDynamicCache(DynamicCache):
    """`DynamicCache` with `PreallocatedLayer`s (pass `capacity` = the expected final length, e.g. `max_length`)."""

    def __init__(self, config, capacity: int = 256):
        super().__init__(config=config)
        self.layers = [PreallocatedLayer(capacity) for _ in self.layers]


def apply() -> None:
    from valle_hf import generation

    cls = generation.VallEGenerationMixin
    if _ORIGINAL:
        return
    for name in ("_prepare_position_ids_for_generation", "prepare_inputs_for_generation"):
        _ORIGINAL[name] = getattr(cls, name)
    cls._prepare_position_ids_for_generation = _prepare_position_ids_for_generation
    cls.prepare_inputs_for_generation = prepare_inputs_for_generation


def remove() -> None:
    from valle_hf import generation

    cls = generation.VallEGenerationMixin
    for name, function in _ORIGINAL.items():
        setattr(cls, name, function)
    _ORIGINAL.clear()
