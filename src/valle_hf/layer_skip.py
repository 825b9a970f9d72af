"""Layer skip: the original's entropy/varentropy early exit (`--layer-skip*`), as a decoder layer that can step aside.

`VallEDecoderLayer` is transformers' `LlamaDecoderLayer`; given an `EarlyExit` (through the backbone's keyword
arguments) it lets the rows that have exited pass through unchanged. After each layer from layer n//2 (0-based) on,
that is after n//2 + 1 layers as in the original, the hidden state of the rows that will be sampled goes through the
final norm and the pass's own classifier; a row whose mean entropy and varentropy (in bits) are both at or below the
thresholds stops there, and `exit_layer` (a 0-based layer index) is the last layer that runs at all (e-c-k-e-r/vall-e
`vall_e/models/arch/llama.py`, `LlamaModel_Adapted`).

Unlike the original, the metric is taken on the normed state of each row's own sampled positions (so a row exits alike
alone or in any batch), a forced exit stops after layer `exit_layer` as the flag says (the original ran one layer
more, and never fewer than n//2 + 1), and the KV cache stays consistent: every skipped layer still receives keys and
values for the new positions, computed from the exit state (LayerSkip-style state propagation), so later steps attend
over a complete cache.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers.models.llama.modeling_llama import LlamaDecoderLayer, apply_rotary_pos_emb

from .cache import CACHE_KWARG
from .errors import VallEValueError

LN2 = 0.6931471805599453

__all__ = ["EarlyExit", "LayerSkip", "VallEDecoderLayer", "entropy_and_varentropy"]


@dataclass(frozen=True)
class LayerSkip:
    """Early-exit settings: run layers 0..`exit_layer` at most (a 0-based index; -1: all); a row exits once the
    entropy and varentropy
    (bits) of its scored rows are at or below the thresholds, considered once `min_layers` layers have run (default:
    n//2 + 1, the original's `min_layer = n_layers // 2` counted as a 0-based layer index)."""

    exit_layer: int = -1
    entropy_threshold: float = 0.1
    varentropy_threshold: float = 0.1
    min_layers: int | None = None

    def layer_limit(self, num_layers: int) -> int:
        """Layers that run at most, of `num_layers`; raises `VallEValueError` for an exit layer outside
        0..num_layers - 1 (or -1)."""
        if self.exit_layer == -1:
            return num_layers
        if not 0 <= self.exit_layer < num_layers:
            raise VallEValueError(f"layer_skip_exit_layer must be a layer index 0..{num_layers - 1} or -1, got "
                                  f"{self.exit_layer}")
        return self.exit_layer + 1


def entropy_and_varentropy(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Entropy and varentropy (variance of the surprisal) of softmax(logits) over the last axis, in bits. Tokens a
    processor made impossible (-inf) count for nothing."""
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    probs = log_probs.exp()
    surprisal = torch.where(probs > 0, -log_probs / LN2, 0.0)
    entropy = (probs * surprisal).sum(-1)
    varentropy = (probs * (surprisal - entropy.unsqueeze(-1)) ** 2).sum(-1)
    return entropy, varentropy


class EarlyExit:
    """The early exit of one forward pass: which batch rows have exited, and after how many layers (`layers_run`).

    Made by `VallEForConditionalGeneration.forward` for an `early_exit` pass and handed to every `VallEDecoderLayer`
    through the backbone's keyword arguments (`exit_state`). `head` is the pass's classifier, `norm` the backbone's
    final norm; the metric of a row is its mean over the positions `scored` marks among the last `scored.shape[1]`
    `[B, K]` (the positions it samples from).
    """

    def __init__(self, settings: LayerSkip, head: nn.Module, norm: nn.Module, scored: torch.BoolTensor,
                 num_layers: int):
        self.settings, self.head, self.norm, self.scored = settings, head, norm, scored
        batch_size, device = scored.shape[0], scored.device
        self.limit = settings.layer_limit(num_layers)
        self.first_check = settings.min_layers if settings.min_layers is not None else num_layers // 2 + 1
        self.done = torch.zeros(batch_size, dtype=torch.bool, device=device)
        self.layers_run = torch.full((batch_size,), self.limit, dtype=torch.long, device=device)

    def skips(self, index: int) -> bool:
        """Whether layer `index` runs for no row (it is past the limit, or every row has exited)."""
        return index >= self.limit or bool(self.done.all())

    def update(self, index: int, hidden: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        """The hidden state after layer `index`: exited rows keep their exit state; rows that exit now are marked."""
        hidden = torch.where(self.done[:, None, None], hidden, output)
        if self.first_check <= index + 1 < self.limit:
            logits = self.head(self.norm(hidden[:, -self.scored.shape[1]:]))
            counts = self.scored.sum(dim=1).clamp(min=1)
            entropy, varentropy = (torch.where(self.scored, metric, 0.0).sum(dim=1) / counts
                                   for metric in entropy_and_varentropy(logits))
            exits = ~self.done & (entropy <= self.settings.entropy_threshold) & (
                varentropy <= self.settings.varentropy_threshold)
            self.layers_run = torch.where(exits, index + 1, self.layers_run)
            self.done = self.done | exits
        return hidden


class VallEDecoderLayer(LlamaDecoderLayer):
    """`LlamaDecoderLayer` that an `EarlyExit` can step around; without one it is the stock layer."""

    def forward(self, hidden_states: torch.Tensor, *args, exit_state: EarlyExit | None = None, **kwargs):
        if exit_state is None:
            return super().forward(hidden_states, *args, **kwargs)
        index = self.self_attn.layer_idx
        if exit_state.skips(index):
            cache = kwargs.get(CACHE_KWARG)
            if cache is not None:
                self._fill_cache(hidden_states, kwargs["position_embeddings"], cache)
            return hidden_states
        return exit_state.update(index, hidden_states, super().forward(hidden_states, *args, **kwargs))

    def _fill_cache(self, hidden: torch.Tensor, position_embeddings, cache) -> None:
        """Write this skipped layer's keys and values for the new positions, computed from the exit hidden state."""
        attention = self.self_attn
        normed = self.input_layernorm(hidden)
        shape = (*hidden.shape[:-1], -1, attention.head_dim)
        key = attention.k_proj(normed).view(shape).transpose(1, 2)
        value = attention.v_proj(normed).view(shape).transpose(1, 2)
        cos, sin = position_embeddings
        key = apply_rotary_pos_emb(key, key, cos, sin)[1]
        cache.update(key, value, attention.layer_idx)
