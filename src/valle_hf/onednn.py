"""Opt-in CPU speed-up: the decoder's linear layers run oneDNN's inner product on weights prepacked once.

A cached decoding step streams every weight once, so its speed is the speed at which the matrix-vector products read
memory. Through `F.linear` (MKL's sgemm) a CPU reaches well below its bandwidth, and sgemm with a few rows (a batch)
is worse still; oneDNN on prepacked weights gets much closer (benchmarks/README.md: about 1.2x faster at batch 1 and
2x at batch 8 on the benchmark machine). The price is a second, packed copy of those weights (0.8 GB for the
released model in fp32), which is why it is not the default.

    from valle_hf.onednn import enable_onednn_linears
    enable_onednn_linears(model)   # fp32 on CPU; disable_onednn_linears(model) undoes it

Only inference is affected: with gradients enabled the layers run `F.linear` as usual, and a weight that changes
(loading, LoRA merging, training) is repacked on its next use, so packing can never serve stale weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .errors import MissingDependencyError, VallEValueError

# The batch size oneDNN is told to pack for; that layout serves batch 1 at least as well as one packed for 1 row.
_PACKED_FOR_ROWS = 8


class PrepackedForward:
    """Replaces one `nn.Linear`'s forward (like accelerate's hooks), keeping the module and its state dict as is."""

    def __init__(self, module: nn.Linear):
        self.module = module
        self.packed, self.packed_from = None, None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.module.weight
        training = torch.is_grad_enabled() and (weight.requires_grad or x.requires_grad)
        if training or torch.is_autocast_enabled(x.device.type):  # autocast casts the weights itself (the NAR)
            return F.linear(x, weight, self.module.bias)
        source = (weight.data_ptr(), weight._version, weight.dtype, weight.device)
        if source != self.packed_from:
            self.packed, self.packed_from = torch.ops.mkldnn._reorder_linear_weight(weight, _PACKED_FOR_ROWS), source
        flat = torch.ops.mkldnn._linear_pointwise(x.reshape(-1, x.shape[-1]), self.packed, self.module.bias, "none",
                                                  [], "")
        return flat.reshape(*x.shape[:-1], weight.shape[0])


def _decoder_linears(model) -> list[nn.Linear]:
    """The linears a decoding step runs: every one of the backbone and the classifier heads."""
    modules = list(model.model.backbone.modules()) + list(model.classifiers)
    return [module for module in modules if isinstance(module, nn.Linear)]


def enable_onednn_linears(model):
    """Run the model's decoder linears through oneDNN on prepacked weights (CPU, fp32); returns the model."""
    linears = _decoder_linears(model)
    weight = linears[0].weight
    if weight.device.type != "cpu" or weight.dtype != torch.float32:
        raise VallEValueError(f"oneDNN linears need an fp32 model on the CPU, got {weight.dtype} on {weight.device}")
    if not torch.backends.mkldnn.is_available():
        raise MissingDependencyError("this torch build has no oneDNN (mkldnn) support: drop --onednn, or install a "
                                     "torch build with it (the CPU wheels have it)")
    for module in linears:
        if not isinstance(module.__dict__.get("forward"), PrepackedForward):
            module.forward = PrepackedForward(module)
    return model


def disable_onednn_linears(model):
    """Undo `enable_onednn_linears` (and free the packed copies); returns the model."""
    for module in _decoder_linears(model):
        if isinstance(module.__dict__.get("forward"), PrepackedForward):
            del module.forward
    return model
