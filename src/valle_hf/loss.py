"""The original's training loss (e-c-k-e-r/vall-e `vall_e/models/base.py:Base.calc_loss`, its whole-sequence path).

The released weights were trained with exactly this objective, so a fine-tune that computes another one quietly pulls
the model away from what it learned:

* targets are aligned with the input rows (see `valle_hf.training.build_training_sequence`), -100 where not scored;
* level-0 rows (AR and STT) are shifted by one position over the whole joined sequence, NAR rows not at all;
* each row's token mean, then the mean over rows: a short item weighs as much as a long one (a row with nothing
  scored is left out of the mean; the original's items always have targets).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .errors import VallEValueError, is_integer_tensor

IGNORE_INDEX = -100

__all__ = ["IGNORE_INDEX", "shift_targets", "valle_loss"]


def shift_targets(
    labels: torch.LongTensor, shift: torch.BoolTensor, attention_mask: torch.Tensor | None = None
) -> torch.LongTensor:
    """The target of every logit row: `labels[j + 1]` for rows that shift (level 0: AR, STT), `labels[j]` otherwise.

    The original shifts over the whole joined sequence (row j predicts target j + 1 across segment boundaries), so
    an item's first target is never scored and its last row predicts nothing. Padding rows score nothing either,
    whichever side the padding is on.
    """
    next_labels = F.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)
    targets = torch.where(shift.to(labels.device).reshape(-1, 1), next_labels, labels)
    if attention_mask is not None:
        targets = targets.masked_fill(attention_mask[:, -labels.shape[1]:] == 0, IGNORE_INDEX)
    return targets


def valle_loss(
    logits: torch.Tensor,
    labels: torch.LongTensor,
    shift: torch.BoolTensor,
    attention_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.LongTensor]:
    """The original's training loss: the mean over items of each item's token-mean cross-entropy.

    `logits` `[B, L, V]` (rows of narrower heads padded with -inf), `labels` `[B, L]` aligned with the input rows,
    `shift` `[B]` True for level-0 items. Cross-entropy runs in float32, as the original's does under autocast.
    A short item weighs as much as a long one, and padding never changes an item's loss.
    Returns `(loss, item_losses [B], token_losses [B, L], targets [B, L])`; token_losses[b, j] is row j's CE
    against targets[b, j] (0 where that is IGNORE_INDEX).
    """
    labels = _checked_labels(labels, logits.shape)
    targets = shift_targets(labels, shift, attention_mask)
    token_losses = F.cross_entropy(
        logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="none"
    ).view_as(targets)
    counts = (targets != IGNORE_INDEX).sum(dim=1)
    item_losses = token_losses.sum(dim=1) / counts.clamp(min=1)
    # The mean over the items with something scored: an item whose labels are all -100 has no loss (its 0 diluted
    # the others'); none scored gives 0, with the graph kept. No branch, so no device sync.
    loss = item_losses.sum() / (counts > 0).sum().clamp(min=1)
    return loss, item_losses, token_losses, targets


def _checked_labels(labels: torch.Tensor, logits_shape: torch.Size) -> torch.LongTensor:
    """`labels` as int64 (any integer dtype is taken), refused (`VallEValueError`) where the loss cannot read them: not
    `[B, L]` like the logits' rows, not integers, or ids outside the heads' width other than IGNORE_INDEX."""
    if not torch.is_tensor(labels) or labels.shape != logits_shape[:2]:
        shape = tuple(labels.shape) if torch.is_tensor(labels) else type(labels).__name__
        raise VallEValueError(f"labels must have the shape of input_ids, {tuple(logits_shape[:2])}, got {shape} "
                              "(VallEDataCollator builds them)")
    if not is_integer_tensor(labels):
        raise VallEValueError(f"labels must be integer ids, got dtype {labels.dtype}")
    labels = labels.long()
    wrong = (labels != IGNORE_INDEX) & ((labels < 0) | (labels >= logits_shape[-1]))
    if wrong.any():
        raise VallEValueError(f"labels must be ids in 0..{logits_shape[-1] - 1} or {IGNORE_INDEX} (not scored), got "
                              f"{int(labels[wrong][0])}")
    return labels

