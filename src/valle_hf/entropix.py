"""Entropix sampling (`--entropix-sampling`, `entropix=True`): at every AR step the sampler adapts its temperature,
top-k, top-p and min-p to how uncertain the model is, read from the entropy and varentropy of the next-token
distribution and from the attention of the last decoder layer that ran (e-c-k-e-r/vall-e `vall_e/samplers.py`
`sample_entropix` and `calculate_entropix_metrics`, after xjdr-alt/entropix).

The attention comes from `AttentionProbe`: while `generate` runs with entropix, the backbone's "sdpa" attention
(`valle_hf.cpu_kernels.sdpa_attention`) records each layer's pre-softmax scores for the last position
(`record_attention`), and the forward notes the layers each row ran (`note_layers_run`, for layer skip).

Branches, per row, on the entropy H and varentropy V of the next-token distribution (bits), tested in this order:

| branch | condition | the step's settings |
|---|---|---|
| confident | H < 0.1 and V < 0.1 | the most likely token |
| unsure, consistent | H > 5 and V < 0.1 | T x (1.3 + 0.2 attention entropy) |
| spread | H < 5 and V > 5 | T x (1.2 + 0.3 interaction); top-k x (1 + 0.5 (1 - agreement)), at least 5 |
| lost | H > 3 and V > 5 | T x (2 + 0.5 attention varentropy); top-p - 0.2 attention entropy, at least 0.5 |
| adaptive | otherwise | T, top-p, top-k and min-p scaled by all the metrics; the most likely of 5 draws |

Then T is kept in [0.5, 1.25], top-p in [0.1, 1], top-k in [1, V] (0: V) and min-p in [0.01, 0.5], as the original
does, and the row samples from the tempered distribution filtered by min-p, top-k and top-p.

Where the original is wrong, this does the intended thing (each is a crash or a silent difference there): the
confident branch takes the argmax (the original raised IndexError); min-p filters (the original computed its mask and
dropped it); top-p keeps the most likely tokens (the original's ascending order dropped them); the attention is one
softmax of the scores (the original applied softmax to probabilities), and the interaction strength is the mean
absolute score, as entropix defines it; the adaptive branch scores its draws by their probability at the sampled
position (the original summed log-probabilities over every position and added a constant); top-k 0 stays off in the
spread branch (the original made it 5); the draws use the logits' device and each row's own seeded stream; the
metrics read only a row's own positions, so a row samples the same alone or in any batch; and the penalties
(repetition, length, DRY) still apply before it (the original skipped them). Greedy decoding (temperature 0) stays
greedy, as with mirostat; the original clamped the temperature to 0.5 instead.
"""

from __future__ import annotations

import contextlib
import math
from contextvars import ContextVar

import torch
from torch import nn
from transformers import LogitsProcessor

from .errors import VallEValueError
from .layer_skip import entropy_and_varentropy
from .seeding import AR_STAGE, draw

__all__ = ["AttentionProbe", "EntropixLogitsWarper", "entropix_metrics", "note_layers_run", "probing_attention",
           "record_attention", "start_pass"]

# The original's thresholds (`EntropixSamplerConfig`), in bits.
LOW_ENTROPY, LOW_VARENTROPY = 0.1, 0.1
MEDIUM_ENTROPY, HIGH_ENTROPY, HIGH_VARENTROPY = 3.0, 5.0, 5.0
# How many draws the adaptive branch chooses from.
ADAPTIVE_DRAWS = 5

_PROBE: ContextVar[AttentionProbe | None] = ContextVar("valle_hf_attention_probe", default=None)


def _listening() -> AttentionProbe | None:
    """The probe of the running call, if any; none inside torch.compile, which cannot trace a context variable
    (entropix runs eagerly)."""
    return None if torch.compiler.is_compiling() else _PROBE.get()


class AttentionProbe:
    """The attention of the last position in the running pass: each layer's pre-softmax scores `[B, heads, keys]`
    (masked keys -inf), and the layers each row ran (all of them, unless layer skip stopped a row early)."""

    def __init__(self):
        self.scores: dict[int, torch.Tensor] = {}
        self.layers_run: torch.LongTensor | None = None

    def last_layer_scores(self) -> torch.Tensor:
        """Each row's scores in the last layer it ran `[B, heads, keys]`; forgets this pass. Raises
        `VallEValueError` when no layer recorded any (an attention other than the backbone's "sdpa")."""
        if not self.scores:
            raise VallEValueError("entropix reads the attention of the backbone's 'sdpa' implementation run eagerly, "
                                  "and this pass recorded none: load the model with attn_implementation='sdpa' (the "
                                  "default), and generate without torch.compile (no compile_config, no compiled "
                                  "forward)")
        device = next(iter(self.scores.values())).device  # a model split across devices records on several
        layers = torch.stack([self.scores[index].to(device) for index in sorted(self.scores)])  # [layers, B, H, keys]
        if self.layers_run is None:
            chosen = layers[-1]
        else:
            last = (self.layers_run - 1).clamp(0, len(layers) - 1).to(layers.device)
            chosen = layers[last, torch.arange(layers.shape[1], device=layers.device)]
        self.scores, self.layers_run = {}, None
        return chosen


@contextlib.contextmanager
def probing_attention(active: bool = True):
    """Record the backbone's attention for `EntropixLogitsWarper` inside (if `active`)."""
    if not active:
        yield None
        return
    token = _PROBE.set(AttentionProbe())
    try:
        yield _PROBE.get()
    finally:
        _PROBE.reset(token)


def record_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, attention_mask: torch.Tensor | None,
                     scaling: float | None) -> None:
    """Keep the scores of attention `module` (its `layer_idx`) for the last query position, if a probe is listening.
    `query` `[B, heads, L, head_dim]`, `key` `[B, kv_heads, keys, head_dim]` (after the cache), `attention_mask`
    boolean (True = attend) or additive `[B, 1, L, >= keys]`, or None (causal: the last position attends to every
    key)."""
    probe = _listening()
    if probe is None:
        return
    keys = key.shape[-2]
    key = key.float().repeat_interleave(query.shape[1] // key.shape[1], dim=1)
    scaling = scaling if scaling is not None else query.shape[-1] ** -0.5
    scores = (query[:, :, -1:].float() @ key.transpose(-1, -2)).squeeze(2) * scaling
    if attention_mask is not None:
        mask = attention_mask[:, :, -1, :keys]
        scores = scores.masked_fill(~mask, -math.inf) if mask.dtype == torch.bool else scores + mask.float()
    probe.scores[module.layer_idx] = scores


def start_pass() -> None:
    """Forget what a listening probe holds: every forward pass records its own layers (a streamed NAR chunk runs
    between two AR steps, and layer skip leaves some layers unrun)."""
    probe = _listening()
    if probe is not None:
        probe.scores, probe.layers_run = {}, None


def note_layers_run(layers_run: torch.LongTensor) -> None:
    """Tell a listening probe how many layers each row of this pass ran (layer skip)."""
    probe = _listening()
    if probe is not None:
        probe.layers_run = layers_run


def entropix_metrics(logits: torch.Tensor, scores: torch.Tensor) -> dict[str, torch.Tensor]:
    """The metrics the branches read, one value per row: `logits` `[B, V]` the next-token logits, `scores` `[B, heads,
    keys]` the last layer's pre-softmax attention scores of the last position (masked keys -inf).

    entropy, varentropy: of the next-token distribution (bits); attention_entropy: the heads' mean entropy (bits);
    attention_varentropy: its variance across heads (0 for one head); agreement: the mean absolute difference between
    each head's attention and the heads' mean; interaction: the mean absolute score. Means run over the row's own
    keys, so that padding does not change them.
    """
    entropy, varentropy = entropy_and_varentropy(logits)
    valid = torch.isfinite(scores)
    probs = torch.softmax(scores, dim=-1)
    head_entropy = -(probs * torch.log2(probs.clamp(min=1e-10))).sum(-1)  # [B, heads]
    head_variance = head_entropy.var(dim=1) if head_entropy.shape[1] > 1 else torch.zeros_like(head_entropy[:, 0])
    cells = valid.sum(dim=(1, 2)).clamp(min=1)
    spread = (probs - probs.mean(dim=1, keepdim=True)).abs()
    return {
        "entropy": entropy,
        "varentropy": varentropy,
        "attention_entropy": head_entropy.mean(dim=1),
        "attention_varentropy": torch.nan_to_num(head_variance),
        "agreement": torch.where(valid, spread, 0.0).sum(dim=(1, 2)) / cells,
        "interaction": torch.where(valid, scores.abs(), 0.0).sum(dim=(1, 2)) / cells,
    }


class EntropixLogitsWarper(LogitsProcessor):
    """Entropix as the last sampler of an AR step (see the module's docstring): from the step's scores `[B, V]` and
    the probe's attention, each row's adapted distribution (log-probabilities, -inf where filtered), or, for the
    confident and adaptive branches, only the chosen token left possible.

    `temperature` > 0, `top_k` (0 = off), `top_p` and `min_p` are the run's settings that the branches scale.
    """

    def __init__(self, temperature: float, top_k: int = 0, top_p: float = 1.0, min_p: float = 0.0):
        if not temperature > 0:
            raise VallEValueError(f"entropix samples: it needs a temperature > 0, got {temperature}")
        self.temperature, self.top_k, self.top_p, self.min_p = float(temperature), int(top_k), float(top_p), min_p

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        probe = _PROBE.get()
        if probe is None:
            raise VallEValueError("EntropixLogitsWarper needs the attention: generate with entropix=True")
        attention = probe.last_layer_scores().to(scores.device)
        if attention.shape[0] != scores.shape[0]:
            raise VallEValueError(f"the attention has {attention.shape[0]} rows for {scores.shape[0]} rows of scores")
        logits = scores.float()
        metrics = entropix_metrics(logits, attention)
        branch = self._branches(metrics)
        temperature, top_k, top_p, min_p = self._settings(branch, metrics, logits.shape[-1])
        log_probs = self._filtered(logits, temperature, top_k, top_p, min_p)
        chosen = torch.where(branch == 0, logits.argmax(dim=-1), self._most_likely_draw(log_probs))
        single = (branch == 0) | (branch == 4)
        one_hot = torch.full_like(log_probs, -math.inf).scatter(1, chosen[:, None], 0.0)
        return torch.where(single[:, None], one_hot, log_probs).to(scores.dtype)

    @staticmethod
    def _branches(m: dict[str, torch.Tensor]) -> torch.LongTensor:
        """Each row's branch, 0 (confident) to 4 (adaptive), the first whose condition holds."""
        entropy, varentropy = m["entropy"], m["varentropy"]
        conditions = [
            (entropy < LOW_ENTROPY) & (varentropy < LOW_VARENTROPY),
            (entropy > HIGH_ENTROPY) & (varentropy < LOW_VARENTROPY),
            (entropy < HIGH_ENTROPY) & (varentropy > HIGH_VARENTROPY),
            (entropy > MEDIUM_ENTROPY) & (varentropy > HIGH_VARENTROPY),
        ]
        branch = torch.full_like(entropy, 4, dtype=torch.long)
        for index, condition in reversed(list(enumerate(conditions))):
            branch = torch.where(condition, index, branch)
        return branch

    def _settings(self, branch, m, vocab: int):
        """Each row's temperature, top-k, top-p and min-p for its branch, clamped as the original clamps them."""
        total = m["entropy"] + m["varentropy"]
        attention = m["attention_entropy"] + m["attention_varentropy"]
        agreement, interaction = m["agreement"], m["interaction"]
        factor = torch.stack([
            torch.ones_like(total),
            1.3 + 0.2 * m["attention_entropy"],
            1.2 + 0.3 * interaction,
            2.0 + 0.5 * m["attention_varentropy"],
            1.0 + 0.3 * total + 0.2 * attention - 0.2 * agreement,
        ]).gather(0, branch[None])[0]
        temperature = (self.temperature * factor).clamp(0.5, 1.25)
        top_k = torch.full_like(total, float(self.top_k))
        if self.top_k > 0:  # 0 stays off in every branch
            top_k = torch.where(branch == 2, (top_k * (1 + 0.5 * (1 - agreement))).floor().clamp(min=5), top_k)
            top_k = torch.where(branch == 4, (top_k * (1 + 0.3 * interaction - 0.2 * agreement)).round(), top_k)
        top_k = torch.where(top_k == 0, float(vocab), top_k).clamp(1, vocab).long()
        top_p = torch.full_like(total, self.top_p)
        top_p = torch.where(branch == 3, (top_p - 0.2 * m["attention_entropy"]).clamp(min=0.5), top_p)
        top_p = torch.where(branch == 4, top_p * (1 + 0.1 * m["attention_varentropy"]), top_p).clamp(0.1, 1.0)
        min_p = torch.where(branch == 4, 0.01 * (1 - 0.5 * total), torch.full_like(total, self.min_p)).clamp(0.01, 0.5)
        return temperature, top_k, top_p, min_p

    @staticmethod
    def _filtered(logits, temperature, top_k, top_p, min_p) -> torch.Tensor:
        """Log-probabilities of softmax(logits / T) kept by min-p, top-k and top-p (each row its own), renormalised."""
        probs = torch.softmax(logits / temperature[:, None], dim=-1)
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        rank = torch.arange(probs.shape[-1], device=probs.device)
        before = sorted_probs.cumsum(dim=-1) - sorted_probs  # the mass of the more likely tokens
        keep_sorted = (rank < top_k[:, None]) & (before <= top_p[:, None])
        keep_sorted &= sorted_probs >= min_p[:, None] * sorted_probs[:, :1]
        keep_sorted[:, 0] = True
        keep = torch.zeros_like(keep_sorted).scatter(1, order, keep_sorted)
        return torch.log_softmax(torch.where(keep, logits / temperature[:, None], -math.inf), dim=-1)

    @staticmethod
    def _most_likely_draw(log_probs: torch.Tensor) -> torch.LongTensor:
        """The most likely of `ADAPTIVE_DRAWS` independent draws per row (from the row's own stream when seeded)."""
        draws = draw(log_probs.exp(), AR_STAGE, num_samples=ADAPTIVE_DRAWS, replacement=True)
        best = log_probs.gather(1, draws).argmax(dim=1, keepdim=True)
        return draws.gather(1, best)[:, 0]
