"""Layer skip: the original's entropy/varentropy early exit (`--layer-skip*`), done inside the forward pass.

After each layer from the middle of the stack on, the hidden state of the rows that will be sampled is passed
through the final norm and the pass's own classifier; a batch row whose mean entropy and varentropy (in bits) are
both at or below the thresholds stops there, and `exit_layer` caps how many layers run at all. Unlike the original,
the metric is taken on the normed state of the sampled rows only, a forced exit runs exactly `exit_layer` layers,
and the KV cache stays consistent: every skipped layer still receives keys and values for the new positions,
computed from the exit state (LayerSkip-style state propagation), so later steps attend over a complete cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from transformers import LlamaModel
from transformers.masking_utils import create_causal_mask
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

LN2 = 0.6931471805599453


@dataclass
class LayerSkip:
    """Early-exit settings for one `generate` call; `exit_layers` collects the layers run per forward, per row.

    exit_layer: run at most this many layers (-1: all). The thresholds are in bits; exits are considered from
    `min_layers` layers on (default: half the stack, as in the original).
    """

    exit_layer: int = -1
    entropy_threshold: float = 0.1
    varentropy_threshold: float = 0.1
    min_layers: int | None = None
    exit_layers: list[torch.Tensor] = field(default_factory=list, repr=False)

    def layer_limit(self, num_layers: int) -> int:
        if self.exit_layer == -1:
            return num_layers
        if not 1 <= self.exit_layer <= num_layers:
            raise ValueError(f"layer_skip_exit_layer must be 1..{num_layers} layers or -1, got {self.exit_layer}")
        return self.exit_layer


def entropy_and_varentropy(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Entropy and varentropy (variance of the surprisal) of softmax(logits) over the last axis, in bits."""
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    probs = log_probs.exp()
    surprisal = -log_probs / LN2
    entropy = (probs * surprisal).sum(-1)
    varentropy = (probs * (surprisal - entropy.unsqueeze(-1)) ** 2).sum(-1)
    return entropy, varentropy


def _fill_cache(layer: nn.Module, hidden: torch.Tensor, position_embeddings, cache) -> None:
    """Write a skipped layer's keys and values for the new positions, computed from the exit hidden state."""
    attention = layer.self_attn
    normed = layer.input_layernorm(hidden)
    shape = (*hidden.shape[:-1], -1, attention.head_dim)
    key = attention.k_proj(normed).view(shape).transpose(1, 2)
    value = attention.v_proj(normed).view(shape).transpose(1, 2)
    cos, sin = position_embeddings
    key = apply_rotary_pos_emb(key, key, cos, sin)[1]
    cache.update(key, value, attention.layer_idx)


def early_exit_forward(
    backbone: LlamaModel,
    head: nn.Module,
    inputs_embeds: torch.Tensor,
    attention_mask: torch.Tensor,
    position_ids: torch.LongTensor,
    cache,
    skip: LayerSkip,
    scored_rows: int,
    cache_kwarg: str,
) -> tuple[torch.Tensor, torch.LongTensor]:
    """The backbone's layer loop with early exit; returns the normed hidden states and the layers run per row."""
    num_layers = len(backbone.layers)
    limit = skip.layer_limit(num_layers)
    first_check = skip.min_layers if skip.min_layers is not None else num_layers // 2
    mask = create_causal_mask(config=backbone.config, inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                              position_ids=position_ids, **{cache_kwarg: cache})
    position_embeddings = backbone.rotary_emb(inputs_embeds, position_ids=position_ids)
    batch = inputs_embeds.shape[0]
    layers_run = torch.full((batch,), limit, dtype=torch.long, device=inputs_embeds.device)
    done = torch.zeros(batch, dtype=torch.bool, device=inputs_embeds.device)
    hidden = inputs_embeds
    for index, layer in enumerate(backbone.layers):
        if index >= limit or bool(done.all()):
            if cache is not None:
                _fill_cache(layer, hidden, position_embeddings, cache)
            continue
        output = layer(hidden, attention_mask=mask, position_embeddings=position_embeddings,
                       position_ids=position_ids, use_cache=cache is not None, **{cache_kwarg: cache})
        hidden = torch.where(done[:, None, None], hidden, output)  # exited rows keep their exit state
        if first_check <= index + 1 < limit:
            logits = head(backbone.norm(hidden[:, -scored_rows:]))
            entropy, varentropy = (metric.mean(dim=1) for metric in entropy_and_varentropy(logits))
            exits = ~done & (entropy <= skip.entropy_threshold) & (varentropy <= skip.varentropy_threshold)
            layers_run = torch.where(exits, index + 1, layers_run)
            done = done | exits
    skip.exit_layers.append(layers_run)
    return backbone.norm(hidden), layers_run
