"""The KV cache `generate` decodes with by default, and the name transformers gives the cache argument.

A stock `DynamicCache` grows by `torch.cat` at every step: each layer's keys and values are copied into a buffer one
position longer, an O(length) copy per layer and step (and, on CPU, a fresh allocation that page-faults once it
passes malloc's mmap threshold). A `StaticCache` avoids the copies but makes attention read every allocated slot from
the first step. `PreallocatedDynamicCache` does neither: its layers write into buffers allocated once for the whole
generation and hand attention views of the filled part only. benchmarks/README.md has the measurements.
"""

from __future__ import annotations

import inspect

import torch
from transformers import DynamicCache, LlamaModel
from transformers.cache_utils import DynamicLayer
from transformers.modeling_outputs import CausalLMOutputWithPast

# transformers 5.24 renamed the cache keyword and output field from `past_key_values` to `cache`.
CACHE_KWARG = "cache" if "cache" in inspect.signature(LlamaModel.forward).parameters else "past_key_values"
CACHE_FIELD = "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


# The most positions a layer allocates ahead of those it holds: a generous step limit (a user's hours of audio) must
# not allocate its whole cache up front; a generation that goes on past it grows the buffers by doubling.
MAX_HEADROOM = 2048


class PreallocatedLayer(DynamicLayer):
    """A `DynamicLayer` backed by buffers with room for `capacity` positions (at most `MAX_HEADROOM` beyond the first
    update's); `keys`/`values` view their filled part.

    Anything that replaces `keys` from outside (`batch_select_indices`, `batch_repeat_interleave`, offloading) is
    noticed at the next update, which then re-seats the new tensors in fresh buffers; the buffers grow by doubling if
    a generation outlives `capacity`.
    """

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity = max(int(capacity), 1)
        self._key_buffer: torch.Tensor | None = None
        self._value_buffer: torch.Tensor | None = None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        """Write the new positions' keys/values `[B, heads, new, head_dim]` in place; returns the filled views."""
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        start = self.get_seq_length()
        end = start + key_states.shape[-2]
        if not self._buffers_hold(start, end, key_states):
            self._reseat(start, end, key_states, value_states)
        self._key_buffer[:, :, start:end].copy_(key_states)
        self._value_buffer[:, :, start:end].copy_(value_states)
        self.keys, self.values = self._key_buffer[:, :, :end], self._value_buffer[:, :, :end]
        return self.keys, self.values

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """Beam search: permute the rows inside the buffers (the stock version would replace them)."""
        if self.get_seq_length() > 0:
            beam_idx = beam_idx.to(self.keys.device)
            self.keys.copy_(self.keys.index_select(0, beam_idx))
            self.values.copy_(self.values.index_select(0, beam_idx))

    def _buffers_hold(self, start: int, end: int, key_states: torch.Tensor) -> bool:
        """Whether the buffers exist, fit `end` positions of this batch, and `keys` is still their view."""
        buffer = self._key_buffer
        return (
            buffer is not None
            and end <= buffer.shape[-2]
            and buffer.shape[0] == key_states.shape[0]
            and buffer.dtype == key_states.dtype
            and buffer.device == key_states.device
            and (start == 0 or self.keys.data_ptr() == buffer.data_ptr())
        )

    def _reseat(self, start: int, end: int, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        """New buffers for at least `end` positions, holding the `start` cached ones."""
        old = 0 if self._key_buffer is None else self._key_buffer.shape[-2]
        capacity = max(end, min(self.capacity, end + MAX_HEADROOM), 2 * old if start else 0)
        batch, heads = key_states.shape[:2]
        keys = key_states.new_empty(batch, heads, capacity, key_states.shape[-1])
        values = value_states.new_empty(batch, heads, capacity, value_states.shape[-1])
        if start:
            keys[:, :, :start].copy_(self.keys)
            values[:, :, :start].copy_(self.values)
        self._key_buffer, self._value_buffer = keys, values


class PreallocatedDynamicCache(DynamicCache):
    """A `DynamicCache` of `PreallocatedLayer`s, sized for `capacity` positions (prompt + new tokens)."""

    def __init__(self, config, capacity: int):
        super().__init__(config=config)
        self.layers = [PreallocatedLayer(capacity) for _ in self.layers]
